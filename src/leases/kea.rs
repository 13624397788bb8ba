//! Kea's memfile lease files (`kea-leases4.csv`, `kea-leases6.csv`): CSV with a header
//! row naming the columns (`address,hwaddr,client_id,valid_lifetime,expire,subnet_id,
//! fqdn_fwd,fqdn_rev,hostname,state,…`; the v6 file has `duid` and more), read by header
//! name so either file and every Kea version's column set works.
//!
//! The file is an append-only journal between Kea's lease file cleanups: a later row for
//! an address replaces an earlier one, and a row with `valid_lifetime` 0 (deleted) or a
//! `state` other than 0 (declined, expired-reclaimed) ends the lease. Kea writes commas in
//! host names as `&#x2c`.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Lease, Parsed, clean_hostname, parse_mac};

struct Columns {
    address: usize,
    hwaddr: Option<usize>,
    valid_lifetime: Option<usize>,
    expire: Option<usize>,
    hostname: Option<usize>,
    state: Option<usize>,
}

/// Parse a Kea memfile CSV text.
pub fn parse(text: &str, source: &Arc<str>) -> Parsed {
    let mut out = Parsed::default();
    let mut reader = csv::ReaderBuilder::new()
        .flexible(true)
        .trim(csv::Trim::All)
        .from_reader(text.as_bytes());
    let Some(cols) = reader.headers().ok().and_then(columns) else {
        out.bad += usize::from(!text.trim().is_empty());
        return out;
    };
    for row in reader.records() {
        match row.ok().and_then(|r| parse_row(&r, &cols, source)) {
            Some((ip, lease)) => out.set(ip, lease),
            None => out.bad += 1,
        }
    }
    out
}

fn columns(h: &csv::StringRecord) -> Option<Columns> {
    let find = |name: &str| h.iter().position(|c| c == name);
    Some(Columns {
        address: find("address")?,
        hwaddr: find("hwaddr"),
        valid_lifetime: find("valid_lifetime"),
        expire: find("expire"),
        hostname: find("hostname"),
        state: find("state"),
    })
}

/// One row: the address, and its lease or None if the row ends it.
fn parse_row(
    r: &csv::StringRecord,
    c: &Columns,
    source: &Arc<str>,
) -> Option<(IpAddr, Option<Lease>)> {
    let field = |i: Option<usize>| i.and_then(|i| r.get(i)).filter(|s| !s.is_empty());
    let ip: IpAddr = r.get(c.address)?.parse().ok()?;
    let number = |i| -> Option<Option<i64>> {
        match field(i) {
            Some(s) => Some(Some(s.parse().ok()?)),
            None => Some(None),
        }
    };
    let lifetime = number(c.valid_lifetime)?;
    let expire = number(c.expire)?;
    let state = number(c.state)?.unwrap_or(0);
    if state != 0 || lifetime == Some(0) {
        return Some((ip, None));
    }
    let mac = match field(c.hwaddr) {
        Some(h) => Some(parse_mac(h)?),
        None => None,
    };
    let hostname = field(c.hostname).and_then(|h| clean_hostname(&h.replace("&#x2c", ",")));
    // An infinite lifetime (0xffffffff) never ends.
    let expires = expire.filter(|_| lifetime != Some(i64::from(u32::MAX)));
    Some((
        ip,
        Some(Lease {
            mac,
            hostname,
            expires,
            source: source.clone(),
        }),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    const V4: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id\n\
10.20.1.14,02:00:5e:10:00:0e,01:02:00:5e:10:00:0e,3600,1795000000,1,0,0,ks2-laptop-14,0,,0\n\
10.20.1.15,02:00:5e:10:00:0f,,3600,1795000000,1,0,0,old-name,0,,0\n\
10.20.1.15,02:00:5e:10:00:0f,,3600,1795003600,1,0,0,new-name,0,,0\n\
10.20.1.16,02:00:5e:10:00:10,,3600,1795000000,1,0,0,declined,1,,0\n\
10.20.1.17,02:00:5e:10:00:11,,3600,1795000000,1,0,0,gone,0,,0\n\
10.20.1.17,02:00:5e:10:00:11,,0,1795000000,1,0,0,gone,0,,0\n\
10.20.1.18,02:00:5e:10:00:12,,3600,1795000000,1,0,0,smith&#x2c j,0,,0\n\
not-an-address,02:00:5e:10:00:12,,3600,1795000000,1,0,0,x,0,,0\n";

    #[test]
    fn the_last_row_for_an_address_wins() {
        let p = parse(V4, &Arc::from("kea-leases4.csv"));
        assert_eq!(p.bad, 1);
        let name = |ip: &str| {
            p.leases
                .get(&ip.parse::<IpAddr>().unwrap())
                .map(|l| l.hostname.as_deref().unwrap_or("").to_owned())
        };
        assert_eq!(name("10.20.1.14").as_deref(), Some("ks2-laptop-14"));
        assert_eq!(name("10.20.1.15").as_deref(), Some("new-name"));
        assert_eq!(name("10.20.1.16"), None);
        assert_eq!(name("10.20.1.17"), None);
        assert_eq!(name("10.20.1.18").as_deref(), Some("smith, j"));
        let l = &p.leases[&"10.20.1.14".parse::<IpAddr>().unwrap()];
        assert_eq!(l.mac, Some([2, 0, 0x5e, 0x10, 0, 0x0e]));
        assert_eq!(l.expires, Some(1_795_000_000));
    }

    #[test]
    fn v6_files_are_read_by_header_names() {
        let text = "address,duid,valid_lifetime,expire,subnet_id,pref_lifetime,lease_type,iaid,prefix_len,fqdn_fwd,fqdn_rev,hostname,hwaddr,state,user_context,hwtype,hwaddr_source,pool_id\n\
fd00::14,00:01:00:01:2a:3b:4c:5d:02:00:5e:10:00:0e,3600,1795000000,1,1800,0,1,128,0,0,ks2-laptop-14,02:00:5e:10:00:0e,0,,1,2,0\n";
        let p = parse(text, &Arc::from("kea-leases6.csv"));
        assert_eq!(p.bad, 0);
        let l = &p.leases[&"fd00::14".parse::<IpAddr>().unwrap()];
        assert_eq!(l.hostname.as_deref(), Some("ks2-laptop-14"));
        assert_eq!(l.mac, Some([2, 0, 0x5e, 0x10, 0, 0x0e]));
    }

    #[test]
    fn a_file_without_the_header_is_bad() {
        let p = parse("10.0.0.1,02:00:00:00:00:01\n", &Arc::from("x"));
        assert!(p.leases.is_empty());
        assert_eq!(p.bad, 1);
    }
}
