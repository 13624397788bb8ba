//! Identities beyond the source address: enrolled devices (an ID the device sends over DoT
//! or DoH, wherever it is) and users (RADIUS accounting sessions for the address).
//!
//! This module owns the shared types and the two live indexes the identity sources swap in
//! ([`Identities`]); the identify stage ([`crate::identify`]) reads them. It does no I/O:
//! the enrolment store and the admin API fill [`DeviceIndex`], the RADIUS listener fills
//! [`SessionIndex`], and the encrypted listeners only pass on the raw [`Credential`] they
//! read from the connection (SNI label, DoH path), which is resolved here.
//!
//! Precedence (documented in the README and shown by `explain`): device ID (encrypted
//! listener) > RADIUS user for the source address > DHCP-lease MAC / nominated device >
//! network.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;

use arc_swap::ArcSwap;

/// Bound on enrolled devices held in the index (a school has thousands, not millions).
pub const MAX_DEVICES: usize = 200_000;
/// Bound on RADIUS sessions held at once.
pub const MAX_SESSIONS: usize = 200_000;

/// What an encrypted listener read from the connection that may name the device. The
/// transport does not interpret it: the identify stage resolves it against the indexes.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Credential<'a> {
    /// Plain DNS (UDP/TCP on port 53): the address is all there is.
    #[default]
    None,
    /// DoT: the first label of the TLS server name (SNI) the client asked for.
    Sni(&'a str),
    /// DoH: the path after `/dns-query/` (empty when the client used `/dns-query`).
    Path(&'a str),
}

impl Credential<'_> {
    /// Whether the query came over an encrypted listener that requires a known ID (it is
    /// refused otherwise, so the public listener is never an open resolver).
    pub fn is_encrypted(&self) -> bool {
        !matches!(self, Credential::None)
    }
}

/// A device enrolled through the admin API (or `[[enrolled_device]]` in the config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EnrolledDevice {
    /// The random ID the device sends (a DNS label: lower-case letters and digits).
    pub id: Arc<str>,
    /// The device's name, e.g. "ks2-ipad-14".
    pub name: Arc<str>,
    /// Who the device belongs to (a user name or "school").
    pub owner: Arc<str>,
    /// The policy group its queries are decided in.
    pub group: Arc<str>,
    /// Unix seconds after which the ID is no longer accepted.
    pub expires: Option<i64>,
}

/// The enrolled devices by ID, swapped whole when one is enrolled or revoked.
#[derive(Debug, Default)]
pub struct DeviceIndex {
    by_id: HashMap<Arc<str>, Arc<EnrolledDevice>>,
}

impl DeviceIndex {
    /// An index of `devices` (at most [`MAX_DEVICES`]; a later duplicate ID wins).
    pub fn new(devices: impl IntoIterator<Item = EnrolledDevice>) -> Self {
        let by_id = devices
            .into_iter()
            .take(MAX_DEVICES)
            .map(|d| (d.id.clone(), Arc::new(d)))
            .collect();
        Self { by_id }
    }

    /// The device enrolled with `id`, unless its enrolment expired before `now` (Unix s).
    pub fn lookup(&self, id: &str, now: i64) -> Option<&Arc<EnrolledDevice>> {
        self.by_id
            .get(id)
            .filter(|d| d.expires.is_none_or(|e| now < e))
    }

    /// Number of devices.
    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every device (for listing).
    pub fn iter(&self) -> impl Iterator<Item = &Arc<EnrolledDevice>> {
        self.by_id.values()
    }
}

/// A user signed in on an address, from RADIUS accounting.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UserSession {
    /// The RADIUS User-Name, e.g. "j.smith@pupils.example-school.org.uk".
    pub user: Arc<str>,
    /// The group the user rules put this user in, if any rule matched.
    pub group: Option<Arc<str>>,
    /// Calling-Station-Id (the device's MAC), if sent and well formed.
    pub mac: Option<[u8; 6]>,
    /// Acct-Session-Id.
    pub session: Arc<str>,
    /// Unix seconds after which the session is forgotten unless an Interim-Update renews it.
    pub expires: i64,
}

/// RADIUS sessions by address, swapped whole on every accounting change.
#[derive(Debug, Default)]
pub struct SessionIndex {
    by_ip: HashMap<IpAddr, Arc<UserSession>>,
}

impl SessionIndex {
    /// An index of `sessions` (at most [`MAX_SESSIONS`]; a later one for an address wins).
    pub fn new(sessions: impl IntoIterator<Item = (IpAddr, Arc<UserSession>)>) -> Self {
        let by_ip = sessions
            .into_iter()
            .take(MAX_SESSIONS)
            .map(|(ip, s)| (ip.to_canonical(), s))
            .collect();
        Self { by_ip }
    }

    /// The session on `ip`, unless it expired before `now` (Unix seconds).
    pub fn lookup(&self, ip: IpAddr, now: i64) -> Option<&Arc<UserSession>> {
        self.by_ip
            .get(&ip.to_canonical())
            .filter(|s| now < s.expires)
    }

    /// Number of sessions.
    pub fn len(&self) -> usize {
        self.by_ip.len()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.by_ip.is_empty()
    }

    /// Every session (for listing and expiry sweeps).
    pub fn iter(&self) -> impl Iterator<Item = (&IpAddr, &Arc<UserSession>)> {
        self.by_ip.iter()
    }
}

/// The live identity indexes, held by [`crate::state::State`].
#[derive(Debug, Default)]
pub struct Identities {
    /// Enrolled devices by ID: [`Identities::stored`] and the config's
    /// `[[enrolled_device]]` entries, rebuilt by [`Identities::rebuild_devices`].
    pub devices: ArcSwap<DeviceIndex>,
    /// Devices enrolled through the admin API (the store's live enrolments).
    pub stored: ArcSwap<Vec<EnrolledDevice>>,
    /// RADIUS sessions by address.
    pub sessions: ArcSwap<SessionIndex>,
}

/// Whom an encrypted listener's [`Credential`] names: the enrolment it matched and,
/// where the credential carries them (a ChromeOS templated path), the user and device
/// directory name it also identified.
#[derive(Debug, Clone)]
pub struct Named {
    /// The enrolment the ID matched (its group decides unless a user rule overrides).
    pub device: Arc<EnrolledDevice>,
    /// A user the credential identified, if any.
    pub user: Option<Arc<str>>,
}

impl Identities {
    /// Rebuild the device index from the stored enrolments and the config's entries (the
    /// config wins on an ID clash: the file is what the school reviewed). Called at start,
    /// on every reload, and after an enrolment or revocation.
    pub fn rebuild_devices(&self, configured: &[EnrolledDevice]) {
        let stored = self.stored.load();
        let all = stored.iter().chain(configured).cloned();
        self.devices.store(Arc::new(DeviceIndex::new(all)));
    }

    /// The group the user rules put `user` in, if any rule matches.
    pub fn user_group(&self, _user: &str) -> Option<Arc<str>> {
        None
    }

    /// The RADIUS session on `ip` at `now` (Unix seconds), if any.
    pub fn session_for(&self, ip: IpAddr, now: i64) -> Option<Arc<UserSession>> {
        let sessions = self.sessions.load();
        if sessions.is_empty() {
            return None;
        }
        sessions.lookup(ip, now).cloned()
    }

    /// Resolve a credential at `now` (Unix seconds): None for plain DNS, and for an
    /// unknown, revoked or expired ID (the listener refuses those). The SNI's first label
    /// and a DoH path of one segment are enrolled device IDs.
    pub fn resolve(&self, credential: Credential<'_>, now: i64) -> Option<Named> {
        let id = match credential {
            Credential::None => return None,
            Credential::Sni(id) | Credential::Path(id) => id,
        };
        let devices = self.devices.load();
        let device = devices.lookup(id, now)?.clone();
        Some(Named { device, user: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn device(id: &str, expires: Option<i64>) -> EnrolledDevice {
        EnrolledDevice {
            id: id.into(),
            name: "ks2-ipad-14".into(),
            owner: "school".into(),
            group: "pupils".into(),
            expires,
        }
    }

    #[test]
    fn an_expired_enrolment_is_not_accepted() {
        let idx = DeviceIndex::new([device("abc", Some(100)), device("def", None)]);
        assert!(idx.lookup("abc", 99).is_some());
        assert!(idx.lookup("abc", 100).is_none());
        assert!(idx.lookup("def", i64::MAX).is_some());
        assert!(idx.lookup("nope", 0).is_none());
    }

    #[test]
    fn a_credential_names_an_enrolled_device_or_nothing() {
        let ids = Identities::default();
        ids.devices
            .store(Arc::new(DeviceIndex::new([device("k3x9", None)])));
        let named = ids.resolve(Credential::Path("k3x9"), 0);
        assert_eq!(
            named.map(|n| n.device.name.clone()).as_deref(),
            Some("ks2-ipad-14")
        );
        assert!(ids.resolve(Credential::Sni("k3x9"), 0).is_some());
        assert!(ids.resolve(Credential::Sni("other"), 0).is_none());
        assert!(ids.resolve(Credential::None, 0).is_none());
    }

    #[test]
    fn sessions_match_ipv4_mapped_addresses() {
        let s = Arc::new(UserSession {
            user: "j.smith".into(),
            group: Some("pupils".into()),
            mac: None,
            session: "1".into(),
            expires: 50,
        });
        let idx = SessionIndex::new([("10.0.0.5".parse().unwrap(), s)]);
        let mapped: IpAddr = "::ffff:10.0.0.5".parse().unwrap();
        assert!(idx.lookup(mapped, 49).is_some());
        assert!(idx.lookup(mapped, 50).is_none());
    }
}
