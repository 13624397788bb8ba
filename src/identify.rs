//! Identify stage: who is asking. The client's address (canonicalised, so IPv4 clients on
//! dual-stack sockets match IPv4 networks) and, when a relay such as dnsmasq (`add-mac`)
//! sent one, the device's MAC address from the EDNS0 MAC option.
//!
//! It must not decide anything; it only reads the request.

use std::net::SocketAddr;

use hickory_proto::op::Edns;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use crate::policy::Client;

/// EDNS0 option code dnsmasq uses for the client MAC (`--add-mac`), also used by Pi-hole
/// and others. The payload is the 6 raw bytes, or with `add-mac=base64` / `add-mac=text`
/// the base64 or "aa:bb:cc:dd:ee:ff" text forms.
pub const EDNS_MAC_OPTION: u16 = 65001;

/// The client of a request: its address, canonicalised, and the MAC a relay sent (from
/// [`mac`] for parsed requests, or the UDP fast path's own OPT reader).
pub fn client(src: SocketAddr, mac: Option<[u8; 6]>) -> Client {
    Client {
        ip: Some(src.ip().to_canonical()),
        mac,
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
