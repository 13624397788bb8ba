//! dnsmasq's `dnsmasq.leases`: one lease a line, `EXPIRY MAC IP HOSTNAME CLIENTID`, with
//! `*` for no host name and an expiry of 0 for an infinite lease. After a `duid SERVER-DUID`
//! line come the IPv6 leases, `EXPIRY IAID IP HOSTNAME CLIENT-DUID`, which carry no MAC.
//! dnsmasq rewrites the whole file on every change, so each address appears once.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Lease, Parsed, clean_hostname, parse_mac};

/// Parse a `dnsmasq.leases` text.
pub fn parse(text: &str, source: &Arc<str>) -> Parsed {
    let mut out = Parsed::default();
    let mut v6 = false;
    for line in text.lines() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with("duid ") {
            v6 = true;
            continue;
        }
        match parse_line(line, v6, source) {
            Some((ip, lease)) => out.set(ip, Some(lease)),
            None => out.bad += 1,
        }
    }
    out
}

fn parse_line(line: &str, v6: bool, source: &Arc<str>) -> Option<(IpAddr, Lease)> {
    let mut f = line.split_ascii_whitespace();
    let expiry: i64 = f.next()?.parse().ok()?;
    let mac_or_iaid = f.next()?;
    let ip: IpAddr = f.next()?.parse().ok()?;
    let hostname = f.next()?;
    let mac = if v6 || ip.is_ipv6() {
        None
    } else {
        Some(parse_mac(mac_or_iaid)?)
    };
    Some((
        ip,
        Lease {
            mac,
            hostname: clean_hostname(hostname),
            expires: (expiry != 0).then_some(expiry),
            source: source.clone(),
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn v4_and_v6_leases_and_bad_lines() {
        let text = "1795000000 02:00:5e:10:00:0e 10.20.1.14 ks2-laptop-14 01:02:00:5e:10:00:0e\n\
                    0 02:00:5e:10:00:0f 10.20.1.15 * *\n\
                    this is not a lease\n\
                    1795000000 zz:00:5e:10:00:0f 10.20.1.16 bad-mac *\n\
                    duid 00:01:00:01:2a:3b:4c:5d:02:00:5e:00:00:01\n\
                    1795000000 1234567 fd00::14 ks2-laptop-14 00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:0e\n";
        let p = parse(text, &Arc::from("dnsmasq.leases"));
        assert_eq!(p.bad, 2);
        let l = &p.leases[&"10.20.1.14".parse::<IpAddr>().unwrap()];
        assert_eq!(l.hostname.as_deref(), Some("ks2-laptop-14"));
        assert_eq!(l.mac, Some([2, 0, 0x5e, 0x10, 0, 0x0e]));
        assert_eq!(l.expires, Some(1_795_000_000));
        let none = &p.leases[&"10.20.1.15".parse::<IpAddr>().unwrap()];
        assert_eq!((none.hostname.as_deref(), none.expires), (None, None));
        let v6 = &p.leases[&"fd00::14".parse::<IpAddr>().unwrap()];
        assert_eq!(
            (v6.hostname.as_deref(), v6.mac),
            (Some("ks2-laptop-14"), None)
        );
    }
}
