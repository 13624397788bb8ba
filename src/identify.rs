//! Identify stage: who is asking. Before the address, a stronger identity when there is
//! one (precedence: device ID > RADIUS user > DHCP-lease MAC / nominated device >
//! network): the enrolled device an encrypted listener's ID names ([`crate::identity`]),
//! and the user RADIUS accounting says is signed in on the address.
//!
//! The client's address (canonicalised, so IPv4 clients on
//! dual-stack sockets match IPv4 networks) and, when a relay such as dnsmasq (`add-mac`)
//! sent one, the device's MAC address from the EDNS0 MAC option.
//!
//! The MAC option is believed only from relays the school configured
//! (`[identify] edns_mac_from`): any device can write any MAC into its own query, so a MAC
//! from anyone else is dropped here and counted, before policy could see it.
//!
//! Then the DHCP leases ([`crate::leases`]) name the device: by its address, or, for a
//! query a trusted relay forwarded with the device's MAC, by that MAC. A leased MAC stands
//! in for an EDNS MAC (the DHCP server saw the device itself), so nominated devices
//! (`[[device]] macs`) are matched without a relay; a MAC a trusted relay sent wins over
//! the lease of the relay's own address.
//!
//! It must not decide anything; it only reads the request.

use std::net::SocketAddr;
use std::sync::Arc;

use hickory_proto::op::Edns;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use crate::config::IdentifyConfig;
use crate::identity::{Credential, EnrolledDevice, Identities, UserSession};
use crate::leases::{Lease, LeaseMap};
use crate::policy::{Client, Pin, Policy};

/// EDNS0 option code dnsmasq uses for the client MAC (`--add-mac`), also used by Pi-hole
/// and others. The payload is the 6 raw bytes, or with `add-mac=base64` / `add-mac=text`
/// the base64 or "aa:bb:cc:dd:ee:ff" text forms.
pub const EDNS_MAC_OPTION: u16 = 65001;

/// Who is asking, as far as the request can be believed.
#[derive(Debug, Clone)]
pub struct Identified {
    /// The client.
    pub client: Client,
    /// The request carried a MAC option from an address not trusted to send one; it was
    /// dropped.
    pub mac_ignored: bool,
    /// The device's DHCP lease in force, if one names it (an `Arc` clone: no allocation).
    pub lease: Option<Arc<Lease>>,
    /// The enrolment an encrypted listener's device ID matched.
    pub enrolled: Option<Arc<EnrolledDevice>>,
    /// The RADIUS session on the client's address (plain DNS only).
    pub session: Option<Arc<UserSession>>,
    /// The individual, where known: the RADIUS user, or the user a ChromeOS templated
    /// DoH path named.
    pub user: Option<Arc<str>>,
}

impl Identified {
    /// The device's name: its enrolment's, else its DHCP lease's host name.
    pub fn device_name(&self) -> Option<&str> {
        match (&self.enrolled, &self.lease) {
            (Some(d), _) => Some(&d.name),
            (None, Some(l)) => l.hostname.as_deref(),
            (None, None) => None,
        }
    }
}

/// What identify reads besides the request, all live and swapped by their own sources.
#[derive(Clone, Copy)]
pub struct Sources<'a> {
    /// `[identify]`: which relays are believed about MACs.
    pub trust: &'a IdentifyConfig,
    /// DHCP leases.
    pub leases: &'a LeaseMap,
    /// Enrolled devices and RADIUS sessions.
    pub identities: &'a Identities,
    /// The policy, for group names → indexes.
    pub policy: &'a Policy,
}

/// The client of a request, in precedence order: the device ID an encrypted listener read
/// (`credential`: its enrolment's group on any network; unknown → refused), else the
/// RADIUS user signed in on the address (their group overrides the network's), then the
/// MAC a trusted relay sent (from [`mac`] for parsed requests, or the UDP fast path's own
/// OPT reader), the session's MAC, and the DHCP lease at `now`.
///
/// Leases and RADIUS sessions are matched by address, so they are not used for encrypted
/// queries: an off-site device's home address may be any school address too.
pub fn client(
    src: SocketAddr,
    mac: Option<[u8; 6]>,
    credential: Credential<'_>,
    s: &Sources<'_>,
    now: jiff::Timestamp,
) -> Identified {
    let ip = src.ip().to_canonical();
    let trusted = mac.is_some() && s.trust.trusts_mac_from(ip);
    let relayed = mac.filter(|_| trusted);
    let mut who = Identified {
        client: Client {
            ip: Some(ip),
            mac: relayed,
            pin: None,
        },
        mac_ignored: mac.is_some() && !trusted,
        lease: None,
        enrolled: None,
        session: None,
        user: None,
    };
    if credential.is_encrypted() {
        let named = s.identities.resolve(credential, now.as_second());
        who.client.pin = Some(
            named
                .as_ref()
                .and_then(|n| s.policy.group_index(&n.device.group))
                .map_or(Pin::Unknown, Pin::Device),
        );
        if let Some(n) = named {
            who.user = n.user;
            who.enrolled = Some(n.device);
        }
        return who;
    }
    let session = s.identities.session_for(ip, now.as_second());
    let lease = match relayed {
        Some(m) => s.leases.lookup_mac(m, now.as_second()),
        None => s.leases.lookup(ip, now.as_second()),
    };
    if let Some(sess) = &session {
        who.client.pin = sess
            .group
            .as_deref()
            .and_then(|g| s.policy.group_index(g))
            .map(Pin::User);
        who.user = Some(sess.user.clone());
    }
    who.client.mac = relayed
        .or_else(|| session.as_ref().and_then(|x| x.mac))
        .or_else(|| lease.and_then(|l| l.mac));
    who.session = session;
    who.lease = lease.cloned();
    who
}

/// Identify as if `user` were signed in on the client's address (`explain --user`): the
/// group the user rules give them overrides the network's, as for a RADIUS session.
pub fn as_user(who: &mut Identified, user: &str, s: &Sources<'_>) {
    let group = s.identities.user_group(user);
    who.client.pin = group
        .as_deref()
        .and_then(|g| s.policy.group_index(g))
        .map(Pin::User);
    who.session = Some(Arc::new(UserSession {
        user: user.into(),
        group,
        mac: None,
        session: "(explain)".into(),
        expires: i64::MAX,
    }));
    who.user = Some(user.into());
}

/// "identity: …" lines for `explain`: the enrolment, the RADIUS user, the lease.
pub fn describe(who: &Identified) -> Vec<String> {
    let mut lines = Vec::new();
    if let Some(d) = &who.enrolled {
        lines.push(format!(
            "identity: device ID {} → enrolled device {:?} (owner {}, group {})",
            d.id, d.name, d.owner, d.group
        ));
    }
    if let Some(sess) = &who.session {
        let group = sess
            .group
            .as_deref()
            .unwrap_or("(no user rule: the network's)");
        lines.push(format!(
            "identity: RADIUS user {} (session {}) → group {group}",
            sess.user, sess.session
        ));
    } else if let Some(u) = &who.user {
        lines.push(format!("identity: user {u}"));
    }
    lines.extend(describe_lease(who.lease.as_deref()));
    lines
}

/// "device: NAME (MAC), from FILE" for `explain`, or None without a lease.
pub fn describe_lease(lease: Option<&Lease>) -> Option<String> {
    let l = lease?;
    let name = l.hostname.as_deref().unwrap_or("(no host name)");
    let mac = l.mac_text().map(|m| format!(" ({m})")).unwrap_or_default();
    Some(format!("device: {name}{mac}, from {}", l.source))
}

/// The MAC address in a request's EDNS0 MAC option, if any.
pub fn mac(edns: Option<&Edns>) -> Option<[u8; 6]> {
    match edns?.option(EdnsCode::Unknown(EDNS_MAC_OPTION))? {
        EdnsOption::Unknown(_, data) => parse_mac_payload(data),
        _ => None,
    }
}

/// Decode the three payload forms dnsmasq can send.
pub fn parse_mac_payload(data: &[u8]) -> Option<[u8; 6]> {
    if let Ok(raw) = <[u8; 6]>::try_from(data) {
        return Some(raw);
    }
    let text = std::str::from_utf8(data).ok()?;
    if let Ok(mac) = crate::config::parse_mac(text) {
        return Some(mac);
    }
    decode_base64_mac(text.trim_end_matches('='))
}

fn decode_base64_mac(s: &str) -> Option<[u8; 6]> {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    if s.len() != 8 {
        return None;
    }
    let mut bits: u64 = 0;
    for c in s.bytes() {
        let v = ALPHABET.iter().position(|&a| a == c)? as u64;
        bits = (bits << 6) | v;
    }
    let b = bits.to_be_bytes();
    Some([b[2], b[3], b[4], b[5], b[6], b[7]])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mac_is_believed_only_from_a_trusted_relay() {
        let trust = IdentifyConfig {
            edns_mac_from: vec!["10.0.0.1/32".parse().unwrap()],
            ..IdentifyConfig::default()
        };
        let mac = Some([2, 0, 0x5e, 0x10, 0, 1]);
        let relay: SocketAddr = "10.0.0.1:5353".parse().unwrap();
        let pupil: SocketAddr = "10.0.0.2:5353".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5353".parse().unwrap();

        let none = LeaseMap::default();
        let (ids, policy) = (Identities::default(), crate::policy::tests::policy());
        let now = jiff::Timestamp::UNIX_EPOCH;
        let client = |src, mac, trust: &IdentifyConfig| {
            let s = sources(trust, &none, &ids, &policy);
            client(src, mac, Credential::None, &s, now)
        };
        let via_relay = client(relay, mac, &trust);
        assert_eq!(via_relay.client.mac, mac);
        assert!(!via_relay.mac_ignored);
        assert_eq!(client(mapped, mac, &trust).client.mac, mac);

        let forged = client(pupil, mac, &trust);
        assert_eq!(forged.client.mac, None);
        assert!(forged.mac_ignored);

        let nobody_trusted = client(relay, mac, &IdentifyConfig::default());
        assert_eq!(nobody_trusted.client.mac, None);
        assert!(nobody_trusted.mac_ignored);

        let no_option = client(pupil, None, &trust);
        assert!(!no_option.mac_ignored);
    }

    #[test]
    fn a_lease_names_the_device_and_gives_its_mac() {
        use std::collections::HashMap;
        let trust = IdentifyConfig {
            edns_mac_from: vec!["10.0.0.1/32".parse().unwrap()],
            ..IdentifyConfig::default()
        };
        let lease = |mac: u8, name: &str| {
            Arc::new(Lease {
                mac: Some([2, 0, 0, 0, 0, mac]),
                hostname: crate::leases::clean_hostname(name),
                expires: Some(1000),
                source: Arc::from("dnsmasq.leases"),
            })
        };
        let file: HashMap<std::net::IpAddr, Arc<Lease>> = [
            ("10.0.0.2".parse().unwrap(), lease(2, "ks2-laptop-2")),
            ("10.0.0.3".parse().unwrap(), lease(3, "ks2-laptop-3")),
        ]
        .into();
        let leases = LeaseMap::merge([&file]);
        let (ids, policy) = (Identities::default(), crate::policy::tests::policy());
        let s = sources(&trust, &leases, &ids, &policy);
        let client = |src, mac, now| client(src, mac, Credential::None, &s, now);
        let at = |s| jiff::Timestamp::from_second(s).unwrap();
        let pupil: SocketAddr = "10.0.0.2:5353".parse().unwrap();
        let relay: SocketAddr = "10.0.0.1:5353".parse().unwrap();

        let who = client(pupil, None, at(10));
        assert_eq!(who.client.mac, Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(
            describe_lease(who.lease.as_deref()).as_deref(),
            Some("device: ks2-laptop-2 (02:00:00:00:00:02), from dnsmasq.leases")
        );
        // A forged MAC from a pupil is dropped; the lease still names the device.
        let forged = client(pupil, Some([2, 0, 0, 0, 0, 3]), at(10));
        assert_eq!(forged.client.mac, Some([2, 0, 0, 0, 0, 2]));
        assert!(forged.mac_ignored);
        // Through the relay, the MAC it sent finds the device's lease.
        let relayed = client(relay, Some([2, 0, 0, 0, 0, 3]), at(10));
        let name = relayed.lease.as_ref().and_then(|l| l.hostname.clone());
        assert_eq!(name.as_deref(), Some("ks2-laptop-3"));
        // Expired: no name, no MAC.
        let late = client(pupil, None, at(1000));
        assert!(late.lease.is_none() && late.client.mac.is_none());
    }

    fn sources<'a>(
        trust: &'a IdentifyConfig,
        leases: &'a LeaseMap,
        identities: &'a Identities,
        policy: &'a Policy,
    ) -> Sources<'a> {
        Sources {
            trust,
            leases,
            identities,
            policy,
        }
    }

    fn session(user: &str, group: Option<&str>, mac: Option<[u8; 6]>) -> Arc<UserSession> {
        Arc::new(UserSession {
            user: user.into(),
            group: group.map(Into::into),
            mac,
            session: "s1".into(),
            expires: 100,
        })
    }

    #[test]
    fn a_device_id_wins_over_the_address_and_an_unknown_one_is_refused() {
        let (trust, leases) = (IdentifyConfig::default(), LeaseMap::default());
        let policy = crate::policy::tests::policy();
        let ids = Identities::default();
        ids.rebuild_devices(&[EnrolledDevice {
            id: "k3x9".into(),
            name: "ks2-ipad-14".into(),
            owner: "school".into(),
            group: "pupils".into(),
            expires: None,
        }]);
        // A RADIUS session on the same address is not used for an encrypted query.
        let home: SocketAddr = "10.0.2.5:40000".parse().unwrap();
        let staff_ip = home.ip();
        ids.sessions
            .store(Arc::new(crate::identity::SessionIndex::new([(
                staff_ip,
                session("t.jones", Some("staff"), None),
            )])));
        let s = sources(&trust, &leases, &ids, &policy);
        let now = jiff::Timestamp::UNIX_EPOCH;
        let who = client(home, None, Credential::Path("k3x9"), &s, now);
        let pupils = policy.group_index("pupils").unwrap();
        assert_eq!(who.client.pin, Some(Pin::Device(pupils)));
        assert_eq!(who.device_name(), Some("ks2-ipad-14"));
        assert!(who.user.is_none() && who.session.is_none());
        let unknown = client(home, None, Credential::Sni("nope"), &s, now);
        assert_eq!(unknown.client.pin, Some(Pin::Unknown));
        // Plain DNS from the address: the RADIUS user and their group.
        let plain = client(home, None, Credential::None, &s, now);
        let staff = policy.group_index("staff").unwrap();
        assert_eq!(plain.client.pin, Some(Pin::User(staff)));
        assert_eq!(plain.user.as_deref(), Some("t.jones"));
    }

    #[test]
    fn a_radius_session_gives_the_user_and_its_mac_beats_the_lease() {
        use std::collections::HashMap;
        let trust = IdentifyConfig::default();
        let lease = Arc::new(Lease {
            mac: Some([2, 0, 0, 0, 0, 9]),
            hostname: crate::leases::clean_hostname("ks2-laptop-9"),
            expires: None,
            source: Arc::from("dnsmasq.leases"),
        });
        let ip: std::net::IpAddr = "10.0.1.9".parse().unwrap();
        let file: HashMap<std::net::IpAddr, Arc<Lease>> = [(ip, lease)].into();
        let leases = LeaseMap::merge([&file]);
        let policy = crate::policy::tests::policy();
        let ids = Identities::default();
        let mac = Some([2, 0, 0, 0, 0, 7]);
        ids.sessions
            .store(Arc::new(crate::identity::SessionIndex::new([(
                ip,
                session("j.smith", None, mac),
            )])));
        let s = sources(&trust, &leases, &ids, &policy);
        let who = client(
            SocketAddr::new(ip, 5353),
            None,
            Credential::None,
            &s,
            jiff::Timestamp::UNIX_EPOCH,
        );
        // No user rule matched: the network decides the group; the user is still named.
        assert_eq!(who.client.pin, None);
        assert_eq!(who.user.as_deref(), Some("j.smith"));
        assert_eq!(who.client.mac, mac);
        assert_eq!(who.device_name(), Some("ks2-laptop-9"));
        let lines = describe(&who);
        assert!(lines[0].contains("RADIUS user j.smith"), "{lines:?}");
    }

    #[test]
    fn mac_payload_forms() {
        let mac = [0x00, 0x11, 0x22, 0xaa, 0xbb, 0xcc];
        assert_eq!(parse_mac_payload(&mac), Some(mac));
        assert_eq!(parse_mac_payload(b"00:11:22:aa:bb:cc"), Some(mac));
        assert_eq!(parse_mac_payload(b"ABEiqrvM"), Some(mac));
        assert_eq!(parse_mac_payload(b"not a mac"), None);
        assert_eq!(parse_mac_payload(b"!!!!!!!!"), None);
        assert_eq!(parse_mac_payload(&[1, 2, 3]), None);
    }
}
