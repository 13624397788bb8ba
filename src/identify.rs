//! Identify stage: who is asking. The client's address (canonicalised, so IPv4 clients on
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
use crate::leases::{Lease, LeaseMap};
use crate::policy::Client;

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
}

/// The client of a request: its address, canonicalised, the MAC a trusted relay sent
/// (from [`mac`] for parsed requests, or the UDP fast path's own OPT reader), and its
/// lease in `leases` at `now`, whose MAC is used when no trusted relay sent one.
pub fn client(
    src: SocketAddr,
    mac: Option<[u8; 6]>,
    trust: &IdentifyConfig,
    leases: &LeaseMap,
    now: jiff::Timestamp,
) -> Identified {
    let ip = src.ip().to_canonical();
    let trusted = mac.is_some() && trust.trusts_mac_from(ip);
    let relayed = mac.filter(|_| trusted);
    let lease = match relayed {
        Some(m) => leases.lookup_mac(m, now.as_second()),
        None => leases.lookup(ip, now.as_second()),
    };
    Identified {
        client: Client {
            ip: Some(ip),
            mac: relayed.or_else(|| lease.and_then(|l| l.mac)),
        },
        mac_ignored: mac.is_some() && !trusted,
        lease: lease.cloned(),
    }
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
        let now = jiff::Timestamp::UNIX_EPOCH;
        let client = |src, mac, trust: &IdentifyConfig| client(src, mac, trust, &none, now);
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
        let at = |s| jiff::Timestamp::from_second(s).unwrap();
        let pupil: SocketAddr = "10.0.0.2:5353".parse().unwrap();
        let relay: SocketAddr = "10.0.0.1:5353".parse().unwrap();

        let who = client(pupil, None, &trust, &leases, at(10));
        assert_eq!(who.client.mac, Some([2, 0, 0, 0, 0, 2]));
        assert_eq!(
            describe_lease(who.lease.as_deref()).as_deref(),
            Some("device: ks2-laptop-2 (02:00:00:00:00:02), from dnsmasq.leases")
        );
        // A forged MAC from a pupil is dropped; the lease still names the device.
        let forged = client(pupil, Some([2, 0, 0, 0, 0, 3]), &trust, &leases, at(10));
        assert_eq!(forged.client.mac, Some([2, 0, 0, 0, 0, 2]));
        assert!(forged.mac_ignored);
        // Through the relay, the MAC it sent finds the device's lease.
        let relayed = client(relay, Some([2, 0, 0, 0, 0, 3]), &trust, &leases, at(10));
        let name = relayed.lease.as_ref().and_then(|l| l.hostname.clone());
        assert_eq!(name.as_deref(), Some("ks2-laptop-3"));
        // Expired: no name, no MAC.
        let late = client(pupil, None, &trust, &leases, at(1000));
        assert!(late.lease.is_none() && late.client.mac.is_none());
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
