//! The names a resolver answers itself rather than asking the internet about: reverse
//! zones of private and special-use address space (RFC 6303, RFC 7793 for 100.64/10),
//! `home.arpa` (RFC 8375), `resolver.arpa` (RFC 9462), and the special-use names of
//! RFC 6761 / RFC 7686 (`local`, `invalid`, `onion`, `localhost`). Queries for them leak the school's internal
//! addresses and names to upstream resolvers and can only ever get NXDOMAIN from the
//! public DNS, so they are answered here (unless a `[[zone]]` forwards them).
//!
//! This file only lists them; `super` decides what each kind is answered with.

/// How a reserved name is answered.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reserved {
    /// An empty zone: NXDOMAIN below its apex, NODATA (and SOA) at it.
    Empty(&'static str),
    /// `localhost` and below: 127.0.0.1 / ::1 (RFC 6761 §6.3).
    Localhost,
    /// NODATA (and SOA) for every name in the zone and every type: `resolver.arpa`,
    /// where RFC 9462 asks a resolver with no designated encrypted resolver for NODATA
    /// rather than NXDOMAIN.
    NoData(&'static str),
}

/// Why a name is reserved, for explain.
pub fn why(r: Reserved) -> &'static str {
    match r {
        Reserved::Empty(w) | Reserved::NoData(w) => w,
        Reserved::Localhost => "localhost (RFC 6761): loopback answered locally",
    }
}

const PRIVATE_REVERSE: &str = "private reverse zone (RFC 6303)";

/// Every reserved zone, as (zone, kind).
pub fn zones() -> Vec<(String, Reserved)> {
    let mut z: Vec<(String, Reserved)> = Vec::new();
    let empty = |s: &'static str| Reserved::Empty(s);
    let mut add = |name: String, why: &'static str| z.push((name, empty(why)));
    // RFC 6303 §4.1 – 4.3: IPv4 private, loopback, link-local, "this network",
    // documentation and broadcast.
    for n in [
        "10.in-addr.arpa",
        "168.192.in-addr.arpa",
        "0.in-addr.arpa",
        "127.in-addr.arpa",
        "254.169.in-addr.arpa",
        "2.0.192.in-addr.arpa",
        "100.51.198.in-addr.arpa",
        "113.0.203.in-addr.arpa",
        "255.255.255.255.in-addr.arpa",
    ] {
        add(n.to_owned(), PRIVATE_REVERSE);
    }
    for b in 16..=31 {
        add(format!("{b}.172.in-addr.arpa"), PRIVATE_REVERSE);
    }
    // RFC 7793: shared address space 100.64/10 (carrier-grade NAT).
    for b in 64..=127 {
        add(format!("{b}.100.in-addr.arpa"), PRIVATE_REVERSE);
    }
    // RFC 6303 §4.4 – 4.6: IPv6 unspecified and loopback, unique local (fd00::/8),
    // link-local (fe80::/10), documentation (2001:db8::/32).
    let zeros = "0.".repeat(31);
    add(format!("{zeros}0.ip6.arpa"), PRIVATE_REVERSE);
    add(format!("1.{zeros}ip6.arpa"), PRIVATE_REVERSE);
    for n in [
        "d.f.ip6.arpa",
        "8.e.f.ip6.arpa",
        "9.e.f.ip6.arpa",
        "a.e.f.ip6.arpa",
        "b.e.f.ip6.arpa",
        "8.b.d.0.1.0.0.2.ip6.arpa",
    ] {
        add(n.to_owned(), PRIVATE_REVERSE);
    }
    add("home.arpa".to_owned(), "home network name (RFC 8375)");
    add(
        "local".to_owned(),
        "multicast DNS name (RFC 6762): never sent to unicast DNS",
    );
    add("invalid".to_owned(), "special-use name (RFC 6761)");
    add("onion".to_owned(), "Tor onion name (RFC 7686)");
    z.push(("localhost".to_owned(), Reserved::Localhost));
    // RFC 9462 §4 and §6.1: Chaperone designates no encrypted resolver, so discovery
    // (`_dns.resolver.arpa SVCB`) gets NODATA here and is never forwarded, where an
    // upstream's answer would send clients to the upstream's encrypted resolver.
    z.push((
        "resolver.arpa".to_owned(),
        Reserved::NoData("DDR discovery name (RFC 9462): no encrypted resolver designated"),
    ));
    z
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_private_ranges_are_all_there() {
        let z = zones();
        let has = |n: &str| z.iter().any(|(name, _)| name == n);
        for n in [
            "10.in-addr.arpa",
            "16.172.in-addr.arpa",
            "31.172.in-addr.arpa",
            "168.192.in-addr.arpa",
            "d.f.ip6.arpa",
            "home.arpa",
            "local",
            "resolver.arpa",
        ] {
            assert!(has(n), "{n}");
        }
        assert!(!has("32.172.in-addr.arpa"));
        assert!(!has("15.172.in-addr.arpa"));
        let v6zero = z
            .iter()
            .find(|(n, _)| n.ends_with(".ip6.arpa") && n.starts_with("0."));
        assert_eq!(v6zero.map(|(n, _)| n.split('.').count()), Some(34));
    }
}
