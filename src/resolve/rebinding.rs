//! DNS rebinding protection: an upstream answer for a public name must not point into the
//! school's network. A page on `evil.example` whose name later resolves to 10.0.0.5 could
//! otherwise script the printer, the MIS server or the router from a pupil's browser.
//!
//! Addresses that are private (RFC 1918, fc00::/7), loopback, link-local, shared
//! (100.64/10, carrier-grade NAT), unspecified (0.0.0.0/8, ::) or IPv4-mapped forms of
//! these are stripped from A/AAAA answers, unless the query name is in `[rebinding] allow`
//! or in a `[[zone]]` (the domain controllers answer private addresses by design). If no
//! address is left the answer becomes NODATA (NOERROR, CNAMEs kept, no address) — the
//! name exists, it just has no address a client may use; unbound's `private-address`
//! does the same (it removes the addresses), while an NXDOMAIN would claim the name does
//! not exist and be cached as such. Runs before the cache, so cached and fast-path
//! answers are filtered too.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use hickory_proto::rr::{Name, RData};

use super::Answer;
use crate::config::{RebindingConfig, ZoneConfig};
use crate::local::records::key_of;
use crate::suffix::SuffixMap;

/// The filter for one config.
#[derive(Debug, Default)]
pub struct Rebinding {
    enabled: bool,
    allow: SuffixMap<()>,
}

impl Rebinding {
    /// From `[rebinding]`; every `[[zone]]` is allowed too.
    pub fn new(c: &RebindingConfig, zones: &[ZoneConfig]) -> Self {
        let mut allow = SuffixMap::default();
        for name in c.allow.iter().chain(zones.iter().map(|z| &z.name)) {
            if let Some(k) = key_of(name) {
                allow.insert(k.as_bytes(), ());
            }
        }
        Self {
            enabled: c.enabled,
            allow,
        }
    }

    /// Strip internal addresses from an answer for `name`; true if any were dropped.
    pub fn filter(&self, name: &Name, a: &mut Answer) -> bool {
        if !self.enabled || !a.answers.iter().any(|r| internal_record(&r.data)) {
            return false;
        }
        if let Some(k) = key_of(name)
            && self.allow.longest(k.as_bytes()).is_some()
        {
            return false;
        }
        a.answers.retain(|r| !internal_record(&r.data));
        true
    }
}

fn internal_record(d: &RData) -> bool {
    match d {
        RData::A(a) => is_internal(IpAddr::V4(a.0)),
        RData::AAAA(a) => is_internal(IpAddr::V6(a.0)),
        _ => false,
    }
}

/// An address that must never come back for a public name.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => internal_v4(v4),
            None => internal_v6(v6),
        },
    }
}

fn internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    a == 0
        || ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || (a == 100 && (64..128).contains(&b))
}

fn internal_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    ip.is_unspecified()
        || ip.is_loopback()
        || (first & 0xfe00) == 0xfc00
        || (first & 0xffc0) == 0xfe80
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn internal_ranges() {
        for ip in [
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "127.0.0.1",
            "169.254.1.1",
            "100.64.0.1",
            "0.0.0.0",
            "::",
            "::1",
            "fd00::1",
            "fc00::1",
            "fe80::1",
            "::ffff:10.0.0.1",
        ] {
            assert!(is_internal(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "192.0.2.10",
            "8.8.8.8",
            "172.32.0.1",
            "100.128.0.1",
            "2001:db8::1",
            "::ffff:8.8.8.8",
        ] {
            assert!(!is_internal(ip.parse().unwrap()), "{ip}");
        }
    }
}
