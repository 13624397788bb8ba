//! Identify stage: who is asking. The client's address (canonicalised, so IPv4 clients on
//! dual-stack sockets match IPv4 networks) and, when a relay such as dnsmasq (`add-mac`)
//! sent one, the device's MAC address from the EDNS0 MAC option.
//!
//! The MAC option is believed only from relays the school configured
//! (`[identify] edns_mac_from`): any device can write any MAC into its own query, so a MAC
//! from anyone else is dropped here and counted, before policy could see it.
//!
//! It must not decide anything; it only reads the request.

use std::net::SocketAddr;

use hickory_proto::op::Edns;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use crate::config::IdentifyConfig;
use crate::policy::Client;

/// EDNS0 option code dnsmasq uses for the client MAC (`--add-mac`), also used by Pi-hole
/// and others. The payload is the 6 raw bytes, or with `add-mac=base64` / `add-mac=text`
/// the base64 or "aa:bb:cc:dd:ee:ff" text forms.
pub const EDNS_MAC_OPTION: u16 = 65001;

/// Who is asking, as far as the request can be believed.
#[derive(Debug, Clone, Copy)]
pub struct Identified {
    /// The client.
    pub client: Client,
    /// The request carried a MAC option from an address not trusted to send one; it was
    /// dropped.
    pub mac_ignored: bool,
}

/// The client of a request: its address, canonicalised, and the MAC a trusted relay sent
/// (from [`mac`] for parsed requests, or the UDP fast path's own OPT reader).
pub fn client(src: SocketAddr, mac: Option<[u8; 6]>, trust: &IdentifyConfig) -> Identified {
    let ip = src.ip().to_canonical();
    let trusted = mac.is_some() && trust.trusts_mac_from(ip);
    Identified {
        client: Client {
            ip: Some(ip),
            mac: mac.filter(|_| trusted),
        },
        mac_ignored: mac.is_some() && !trusted,
    }
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
        };
        let mac = Some([2, 0, 0x5e, 0x10, 0, 1]);
        let relay: SocketAddr = "10.0.0.1:5353".parse().unwrap();
        let pupil: SocketAddr = "10.0.0.2:5353".parse().unwrap();
        let mapped: SocketAddr = "[::ffff:10.0.0.1]:5353".parse().unwrap();

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
