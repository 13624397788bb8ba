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
    /// A DoT/DoH credential the listener has already resolved to admit the query
    /// ([`crate::transport::handler::Handler::admit`]): carried into the pipeline so the
    /// index is not searched twice, and the query is decided for the enrolment it was
    /// admitted for even if it is revoked in between.
    Admitted(&'a Named),
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
    /// Which group a user name is in (`[users]` rules and CSV), swapped on config reload
    /// and when the CSV changes.
    pub users: ArcSwap<crate::users::UserDirectory>,
    /// ChromeOS templated identifiers: hashed user names and device directory IDs.
    pub chrome: ArcSwap<ChromeIdentifiers>,
}

/// An enrolment from the store, with what only the store knows about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEnrolment {
    /// The device (revoked ones are never held here).
    pub device: EnrolledDevice,
    /// The Google Admin directory ID of a Chromebook (`${DEVICE_DIRECTORY_ID}`), if given.
    pub directory_id: Option<Arc<str>>,
}

/// The device index from both sources: the config's `[[enrolled_device]]` entries and
/// the store's enrolments. A config entry wins over a stored one with the same ID (the
/// config is what the school reviewed); config entries come first, so they are never the
/// ones cut by [`MAX_DEVICES`].
pub fn device_index(config: &[EnrolledDevice], stored: &[EnrolledDevice]) -> DeviceIndex {
    let from_config: std::collections::HashSet<&str> = config.iter().map(|d| &*d.id).collect();
    let stored = stored
        .iter()
        .filter(|d| !from_config.contains(&*d.id))
        .cloned();
    // DeviceIndex keeps the later of two equal IDs: none are left after the filter.
    DeviceIndex::new(config.iter().cloned().chain(stored))
}

/// Whom an encrypted listener's [`Credential`] names: the enrolment it matched and,
/// where the credential carries them (a ChromeOS templated path), the user and device
/// directory name it also identified.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Named {
    /// The enrolment the ID matched (its group decides unless a user rule overrides).
    pub device: Arc<EnrolledDevice>,
    /// A user the credential identified, if any.
    pub user: Option<Arc<str>>,
}

impl Identities {
    /// Swap in the store's enrolments and rebuild the device index with the config's
    /// `[[enrolled_device]]` entries, and the ChromeOS directory IDs (the admin API calls
    /// this at start and after an enrol or revoke).
    pub fn set_stored(&self, stored: Vec<StoredEnrolment>, config: &[EnrolledDevice]) {
        let directory: Vec<(Arc<str>, Arc<str>)> = stored
            .iter()
            .filter_map(|s| {
                s.directory_id
                    .as_ref()
                    .map(|d| (d.clone(), s.device.id.clone()))
            })
            .collect();
        self.stored
            .store(Arc::new(stored.into_iter().map(|s| s.device).collect()));
        self.rebuild_devices(config);
        let chrome = self.chrome.load();
        self.chrome
            .store(Arc::new(chrome.with_directory(Arc::new(directory))));
    }

    /// Rebuild the device index from the stored enrolments and the config's entries (the
    /// config wins on an ID clash: the file is what the school reviewed; see
    /// [`device_index`]). Called at start, on every reload, and after an enrolment or
    /// revocation.
    pub fn rebuild_devices(&self, configured: &[EnrolledDevice]) {
        let stored = self.stored.load();
        self.devices
            .store(Arc::new(device_index(configured, &stored)));
    }

    /// Rebuild the ChromeOS identifier index under `salt` (`[enrolment] chromeos_salt`;
    /// None empties it): `users` are the user directory's names (e-mail addresses, as
    /// Chrome's `${USER_EMAIL}` gives them); device directory IDs are the stored
    /// enrolments' (kept from [`Identities::set_stored`]). Call at start and after every
    /// reload, once the user directory is loaded.
    pub fn rebuild_chrome<S: AsRef<str>>(
        &self,
        salt: Option<&str>,
        users: impl IntoIterator<Item = S>,
    ) {
        let directory = self.chrome.load().directory.clone();
        let index = match salt {
            Some(salt) => ChromeIdentifiers::new(salt, users, directory.iter().cloned()),
            None => ChromeIdentifiers {
                directory,
                ..ChromeIdentifiers::default()
            },
        };
        self.chrome.store(Arc::new(index));
    }

    /// The group the user rules put `user` in, if any rule matches.
    pub fn user_group(&self, user: &str) -> Option<Arc<str>> {
        self.users.load().group_of(user)
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
            Credential::Admitted(named) => return Some(named.clone()),
            Credential::Sni(id) => id,
            Credential::Path(path) if path.contains('/') => {
                return self.resolve_templated(path, now);
            }
            Credential::Path(id) => id,
        };
        let devices = self.devices.load();
        let device = devices.lookup(id, now)?.clone();
        Some(Named { device, user: None })
    }

    /// A ChromeOS templated path, `{id}/{USER_HASH}/{DEVICE_HASH}` (as Chrome fills in
    /// `${USER_EMAIL}` and `${DEVICE_DIRECTORY_ID}`): the first segment is the enrolment
    /// and must be known; each further segment is a hash that may name a user or an
    /// enrolled Chromebook. Unknown hashes name no one but do not refuse the query (a
    /// user missing from the directory is still filtered as the enrolment's group);
    /// a segment that is not a hash, or too many segments, is refused.
    ///
    /// The hashes identify, they do not authenticate: the salt is readable on the device
    /// (chrome://policy), so anyone can compute the hash of another user's address. So a
    /// hash never changes the group: a Chromebook found by its directory ID replaces the
    /// enrolment only when it is in the same group, and the user is reported as a name.
    fn resolve_templated(&self, path: &str, now: i64) -> Option<Named> {
        let mut segments = path.split('/');
        let id = segments.next()?;
        let devices = self.devices.load();
        let mut device = devices.lookup(id, now)?.clone();
        let chrome = self.chrome.load();
        let mut user = None;
        for (n, segment) in segments.enumerate() {
            if n >= MAX_TEMPLATE_HASHES {
                return None;
            }
            if segment.is_empty() {
                // Chrome deletes placeholders it does not know, leaving `//`.
                continue;
            }
            let hash = parse_hash(segment)?;
            if let Some(u) = chrome.users.get(&hash) {
                user.get_or_insert_with(|| u.clone());
            } else if let Some(found) = chrome
                .devices
                .get(&hash)
                .and_then(|id| devices.lookup(id, now))
                .filter(|d| d.group == device.group)
            {
                device = found.clone();
            }
        }
        Some(Named { device, user })
    }
}

/// Most hashed segments after the enrolment ID in a templated path (user, device and a
/// few more identifiers a school may add to its template).
const MAX_TEMPLATE_HASHES: usize = 4;

/// Bound on user names and directory IDs held in the ChromeOS identifier index.
pub const MAX_CHROME_IDENTIFIERS: usize = 400_000;

/// Chrome's hash of a templated identifier: SHA-256 of the salt followed by the value,
/// upper-case hex (Chromium's `FormatVariable` in
/// `chrome/browser/ash/net/dns_over_https/templates_uri_resolver_impl.cc`:
/// `HexEncode(SHA256HashString(salt + input))`).
pub fn chrome_hash(salt: &str, value: &str) -> String {
    hex::encode_upper(chrome_digest(salt, value))
}

fn chrome_digest(salt: &str, value: &str) -> [u8; 32] {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(salt.as_bytes());
    h.update(value.as_bytes());
    h.finalize().into()
}

fn hash_directory(salt: &str, directory: &[(Arc<str>, Arc<str>)]) -> HashMap<[u8; 32], Arc<str>> {
    directory
        .iter()
        .take(MAX_CHROME_IDENTIFIERS)
        .map(|(dir, id)| (chrome_digest(salt, dir), id.clone()))
        .collect()
}

/// A 64-digit hex segment as the 32 bytes it encodes (either case).
fn parse_hash(segment: &str) -> Option<[u8; 32]> {
    let mut out = [0u8; 32];
    hex::decode_to_slice(segment, &mut out).ok()?;
    Some(out)
}

/// Hashed ChromeOS identifiers mapped back: user names by the hash of `${USER_EMAIL}`,
/// enrolled device IDs by the hash of `${DEVICE_DIRECTORY_ID}`, under one salt
/// (`[enrolment] chromeos_salt`, the Google Admin `DnsOverHttpsSalt`).
#[derive(Debug, Default)]
pub struct ChromeIdentifiers {
    salt: Option<Arc<str>>,
    users: Arc<HashMap<[u8; 32], Arc<str>>>,
    devices: HashMap<[u8; 32], Arc<str>>,
    /// (directory ID, enrolment ID) of the stored enrolments, to hash again under a new
    /// salt.
    directory: Arc<Vec<(Arc<str>, Arc<str>)>>,
}

impl ChromeIdentifiers {
    /// The index of `users` (e-mail addresses) and `devices` (directory ID, enrolled
    /// device ID) under `salt`, at most [`MAX_CHROME_IDENTIFIERS`] of each. Chrome sends
    /// the address as the account has it, which Google keeps in lower case; a name given
    /// in another case is indexed in lower case too.
    pub fn new<S: AsRef<str>>(
        salt: &str,
        users: impl IntoIterator<Item = S>,
        devices: impl IntoIterator<Item = (Arc<str>, Arc<str>)>,
    ) -> Self {
        let mut by_user = HashMap::new();
        for name in users.into_iter().take(MAX_CHROME_IDENTIFIERS) {
            let name = name.as_ref();
            let shared: Arc<str> = name.into();
            by_user.insert(chrome_digest(salt, name), shared.clone());
            let lower = name.to_lowercase();
            if lower != name {
                by_user.entry(chrome_digest(salt, &lower)).or_insert(shared);
            }
        }
        let directory: Vec<(Arc<str>, Arc<str>)> =
            devices.into_iter().take(MAX_CHROME_IDENTIFIERS).collect();
        Self {
            salt: Some(salt.into()),
            users: Arc::new(by_user),
            devices: hash_directory(salt, &directory),
            directory: Arc::new(directory),
        }
    }

    /// The same users and salt with another set of enrolled Chromebooks.
    fn with_directory(&self, directory: Arc<Vec<(Arc<str>, Arc<str>)>>) -> Self {
        Self {
            salt: self.salt.clone(),
            users: self.users.clone(),
            devices: self
                .salt
                .as_deref()
                .map(|s| hash_directory(s, &directory))
                .unwrap_or_default(),
            directory,
        }
    }

    /// The salt the hashes were made with, if any.
    pub fn salt(&self) -> Option<&str> {
        self.salt.as_deref()
    }

    /// The user whose hashed address is `hash` (64 hex digits).
    pub fn user(&self, hash: &str) -> Option<&Arc<str>> {
        self.users.get(&parse_hash(hash)?)
    }

    /// The enrolled device ID whose hashed directory ID is `hash`.
    pub fn device(&self, hash: &str) -> Option<&Arc<str>> {
        self.devices.get(&parse_hash(hash)?)
    }

    /// Number of users and devices indexed.
    pub fn counts(&self) -> (usize, usize) {
        (self.users.len(), self.devices.len())
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
        // An admitted credential is not looked up again: the query is decided for the
        // enrolment it was admitted for, even if the index changed since.
        let admitted = ids.resolve(Credential::Sni("k3x9"), 0).unwrap();
        ids.devices.store(Arc::new(DeviceIndex::default()));
        assert_eq!(
            ids.resolve(Credential::Admitted(&admitted), 0),
            Some(admitted.clone())
        );
        assert!(ids.resolve(Credential::Sni("k3x9"), 0).is_none());
    }

    #[test]
    fn the_config_wins_an_id_clash_and_is_never_cut_by_the_bound() {
        let mut staff = device("same", None);
        staff.group = "staff".into();
        let stored = vec![device("same", None), device("other", None)];
        let idx = device_index(std::slice::from_ref(&staff), &stored);
        assert_eq!(idx.len(), 2);
        assert_eq!(&*idx.lookup("same", 0).unwrap().group, "staff");
        assert!(idx.lookup("other", 0).is_some());
    }

    #[test]
    fn stored_enrolments_and_a_new_salt_rebuild_the_indexes() {
        let ids = Identities::default();
        ids.rebuild_chrome(Some("first-salt"), ["a@school.test"]);
        ids.set_stored(
            vec![StoredEnrolment {
                device: device("cb1", None),
                directory_id: Some("dir-1".into()),
            }],
            &[device("cfg", None)],
        );
        assert!(ids.resolve(Credential::Path("cfg"), 0).is_some());
        let chrome = ids.chrome.load();
        assert_eq!(chrome.counts(), (1, 1), "users kept, device added");
        assert!(chrome.device(&chrome_hash("first-salt", "dir-1")).is_some());
        assert!(
            chrome
                .user(&chrome_hash("first-salt", "a@school.test"))
                .is_some()
        );
        drop(chrome);
        ids.rebuild_chrome(Some("second-salt"), ["A.Capital@School.test"]);
        let chrome = ids.chrome.load();
        assert!(
            chrome
                .device(&chrome_hash("second-salt", "dir-1"))
                .is_some()
        );
        assert!(chrome.device(&chrome_hash("first-salt", "dir-1")).is_none());
        let lower = chrome.user(&chrome_hash("second-salt", "a.capital@school.test"));
        assert_eq!(lower.map(|u| &**u), Some("A.Capital@School.test"));
        ids.set_stored(Vec::new(), &[]);
        assert!(
            ids.resolve(Credential::Path("cfg"), 0).is_none(),
            "config gone too"
        );
        // The name as given and in lower case; no Chromebooks left.
        assert_eq!(ids.chrome.load().counts(), (2, 0));
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
