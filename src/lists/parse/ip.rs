//! IP entries in lists: a bare address or CIDR (domains, UT1, Adblock `||a^`) and RPZ
//! `rpz-ip` trigger names. Answers whose A/AAAA addresses fall in a listed range are
//! blocked by response inspection (`policy`), so a mistyped range is refused here rather
//! than guessed at: a wrong guess would block or pass a whole network.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnet::IpNet;

/// The broadest IPv4 prefix a list may name: a `/0`–`/7` typo would block a large share
/// of the internet for every group using the category.
pub const MIN_V4_PREFIX: u8 = 8;
/// The broadest IPv6 prefix a list may name (see [`MIN_V4_PREFIX`]).
pub const MIN_V6_PREFIX: u8 = 16;

/// `text` as an IP entry: `Ok(Some(net))` for an address (a /32 or /128) or a CIDR,
/// `Ok(None)` when it is not an address at all (a name: the caller goes on), and
/// `Err(reason)` when it is meant as an address but is not a usable one: leading zeros
/// (`010.0.0.1`: octal to some tools, decimal to others), octets over 255, ranges
/// (`a-b`), zone suffixes (`fe80::1%eth0`), host bits after the prefix
/// (`10.0.0.1/8`), or a prefix broader than [`MIN_V4_PREFIX`]/[`MIN_V6_PREFIX`].
/// `[v6]` brackets are accepted. IPv4-mapped IPv6 (`::ffff:a.b.c.d`) becomes IPv4.
pub fn ip_net(text: &str) -> Result<Option<IpNet>, String> {
    let s = text
        .strip_prefix('[')
        .and_then(|b| b.strip_suffix(']'))
        .unwrap_or(text);
    if let Some((a, b)) = s.split_once('-')
        && a.parse::<IpAddr>().is_ok()
        && b.parse::<IpAddr>().is_ok()
    {
        return Err("address ranges are not supported: write the range as CIDRs".into());
    }
    let (addr, len) = match s.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (s, None),
    };
    if let Some((a, _)) = addr.split_once('%')
        && a.parse::<IpAddr>().is_ok()
    {
        return Err("an address with a zone suffix (%…) cannot be listed".into());
    }
    let ip: IpAddr = match addr.parse() {
        Ok(ip) => ip,
        Err(_) if looks_like_v4(addr) => {
            return Err(
                "not a valid IPv4 address (four octets 0-255 without leading zeros)".into(),
            );
        }
        Err(_) if addr.contains(':') || (len.is_some() && looks_numeric(addr)) => {
            return Err("not a valid IP address".into());
        }
        Err(_) => return Ok(None),
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix = match len {
        None => max,
        Some(l) => {
            let plain = l.bytes().all(|b| b.is_ascii_digit()) && (l == "0" || !l.starts_with('0'));
            l.parse::<u8>()
                .ok()
                .filter(|&p| plain && p <= max)
                .ok_or_else(|| format!("bad prefix length {l:?} (0-{max})"))?
        }
    };
    check_net(ip, prefix).map(Some)
}

/// A network from an address and prefix: host bits must be clear, the prefix no broader
/// than the minimum, and IPv4-mapped IPv6 becomes IPv4.
pub fn check_net(ip: IpAddr, prefix: u8) -> Result<IpNet, String> {
    let net = IpNet::new(ip, prefix).map_err(|_| format!("bad prefix length /{prefix}"))?;
    if net.trunc() != net {
        return Err(format!(
            "host bits set after the prefix: did you mean {}?",
            net.trunc()
        ));
    }
    let net = canonical(net);
    let min = match net {
        IpNet::V4(_) => MIN_V4_PREFIX,
        IpNet::V6(_) => MIN_V6_PREFIX,
    };
    if net.prefix_len() < min {
        return Err(format!(
            "prefix /{} is too broad (at most /{MIN_V4_PREFIX} for IPv4, /{MIN_V6_PREFIX} for IPv6)",
            net.prefix_len()
        ));
    }
    Ok(net)
}

/// IPv4-mapped IPv6 networks (`::ffff:0:0/96` and inside) as the IPv4 networks they are,
/// the way answers' addresses are looked up.
pub fn canonical(net: IpNet) -> IpNet {
    match net {
        IpNet::V6(n) if n.prefix_len() >= 96 => match n.addr().to_ipv4_mapped() {
            Some(v4) => IpNet::new(IpAddr::V4(v4), n.prefix_len() - 96).unwrap_or(net),
            None => net,
        },
        other => other,
    }
}

fn looks_like_v4(s: &str) -> bool {
    let parts: Vec<&str> = s.split('.').collect();
    parts.len() == 4
        && parts
            .iter()
            .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

fn looks_numeric(s: &str) -> bool {
    !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit() || b == b'.')
}

/// The network an RPZ `rpz-ip` trigger names, given its labels before `rpz-ip`
/// (draft-vixie-dnsop-dns-rpz §4.2): the prefix length, then the address reversed —
/// four decimal octets for IPv4 (`32.66.113.0.203`), or eight hex groups for IPv6 with
/// at most one `zz` standing for a run of zero groups (`128.1.zz.db8.2001` is
/// 2001:db8::1/128).
pub fn rpz_ip(labels: &[&str]) -> Result<IpNet, String> {
    let bad = || "malformed rpz-ip trigger".to_owned();
    let (first, rest) = labels.split_first().ok_or_else(bad)?;
    let prefix: u8 = first.parse().map_err(|_| bad())?;
    let ip = if rest.len() == 4 && rest.iter().all(|l| l.bytes().all(|b| b.is_ascii_digit())) {
        let mut o = [0u8; 4];
        for (i, l) in rest.iter().rev().enumerate() {
            if l.len() > 1 && l.starts_with('0') {
                return Err(bad());
            }
            o[i] = l.parse().map_err(|_| bad())?;
        }
        IpAddr::V4(Ipv4Addr::from(o))
    } else {
        IpAddr::V6(rpz_v6(rest).ok_or_else(bad)?)
    };
    let max = if ip.is_ipv4() { 32 } else { 128 };
    if prefix == 0 || prefix > max {
        return Err(format!("rpz-ip prefix length {prefix} (1-{max})"));
    }
    check_net(ip, prefix)
}

fn rpz_v6(rev: &[&str]) -> Option<Ipv6Addr> {
    let zz = rev.iter().filter(|l| l.eq_ignore_ascii_case("zz")).count();
    if zz > 1 || rev.len() > 8 || (zz == 0 && rev.len() != 8) || (zz == 1 && rev.len() == 8) {
        return None;
    }
    let mut groups: Vec<u16> = Vec::with_capacity(8);
    for l in rev.iter().rev() {
        if l.eq_ignore_ascii_case("zz") {
            groups.extend(std::iter::repeat_n(0, 9 - rev.len()));
        } else if (1..=4).contains(&l.len()) {
            groups.push(u16::from_str_radix(l, 16).ok()?);
        } else {
            return None;
        }
    }
    let g: [u16; 8] = groups.try_into().ok()?;
    Some(Ipv6Addr::from(g))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    #[test]
    fn addresses_and_cidrs() {
        assert_eq!(ip_net("203.0.113.66"), Ok(Some(net("203.0.113.66/32"))));
        assert_eq!(ip_net("198.51.100.0/24"), Ok(Some(net("198.51.100.0/24"))));
        assert_eq!(ip_net("2001:db8::1"), Ok(Some(net("2001:db8::1/128"))));
        assert_eq!(ip_net("[2001:db8::1]"), Ok(Some(net("2001:db8::1/128"))));
        assert_eq!(ip_net("::ffff:192.0.2.1"), Ok(Some(net("192.0.2.1/32"))));
        assert_eq!(
            ip_net("::ffff:192.0.2.0/120"),
            Ok(Some(net("192.0.2.0/24")))
        );
        // Names, including ones that start with digits, are not addresses.
        for name in [
            "example.com",
            "209.8.180.34.com",
            "198.98.48.4oss.sh",
            "1.2.3",
        ] {
            assert_eq!(ip_net(name), Ok(None), "{name}");
        }
    }

    #[test]
    fn odd_addresses_are_refused_with_a_reason() {
        for (text, why) in [
            ("010.0.0.1", "leading zeros"),
            ("256.1.1.1", "0-255"),
            ("1.2.3.4-1.2.3.9", "ranges"),
            ("fe80::1%eth0", "zone"),
            ("10.0.0.1/8", "did you mean 10.0.0.0/8"),
            ("10.0.0.0/33", "bad prefix length"),
            ("10.0.0.0/", "bad prefix length"),
            ("10.0.0.0/08", "bad prefix length"),
            ("0.0.0.0/0", "too broad"),
            ("2000::/3", "too broad"),
            ("2001:db8::g", "not a valid IP address"),
        ] {
            let err = ip_net(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }

    #[test]
    fn rpz_ip_triggers() {
        let t = |s: &str| rpz_ip(&s.split('.').collect::<Vec<_>>());
        assert_eq!(t("32.66.113.0.203"), Ok(net("203.0.113.66/32")));
        assert_eq!(t("24.0.100.51.198"), Ok(net("198.51.100.0/24")));
        // Groups are reversed too: the brief's `128.zz.1.db8.2001` is 2001:db8:1::.
        assert_eq!(t("128.1.zz.db8.2001"), Ok(net("2001:db8::1/128")));
        assert_eq!(t("128.zz.1.db8.2001"), Ok(net("2001:db8:1::/128")));
        assert_eq!(t("48.zz.db8.2001"), Ok(net("2001:db8::/48")));
        assert_eq!(t("128.1.0.0.0.0.0.db8.2001"), Ok(net("2001:db8::1/128")));
        assert_eq!(t("128.1.zz.0.0.0.0.db8.2001").ok(), None, "zz and 8 groups");
        assert!(t("24.1.100.51.198").unwrap_err().contains("host bits"));
        for bad in [
            "x.1.2.3.4",
            "33.1.2.3.4",
            "0.1.2.3.4",
            "32.1.2.3",
            "128.zz.zz.1",
            "32.01.2.3.4",
        ] {
            assert!(t(bad).is_err(), "{bad}");
        }
    }
}
