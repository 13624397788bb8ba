//! HTTPS/SVCB rewriting for groups with bypass prevention (RFC 9460): the `ech` SvcParam
//! is removed (Encrypted Client Hello hides the server name from the school's firewall and
//! proxy), and `ipv4hint`/`ipv6hint` addresses in blocked ranges are dropped, leaving
//! every record otherwise valid.
//!
//! Validity (RFC 9460 §2.2, §7.3, §8): the remaining SvcParams keep their strictly
//! ascending key order (they are only ever removed, never moved); a hint left with no
//! address is removed (an empty hint list is invalid); and a key removed here is taken
//! out of `mandatory` too, because every key `mandatory` lists must be present, and
//! `mandatory` itself goes when its list would be empty. A record that listed `ech` as
//! mandatory therefore becomes an ordinary record a client uses without ECH — which is
//! the point: the school's firewall and proxy see the server name again. Records are
//! never dropped (the caller's slice has a fixed length), and with every `ech` gone an
//! ECH-capable client does not go SVCB-reliant (RFC 9460 §9.1), so it falls back to a
//! plain TLS connection.
//!
//! Cost: one pass over the answer's records; nothing allocates.

use std::net::IpAddr;

use hickory_proto::rr::rdata::svcb::{SVCB, SvcParamKey, SvcParamValue};
use hickory_proto::rr::{RData, Record};

/// Rewrite the HTTPS and SVCB records among `records` in place: drop `ech`, and drop
/// hint addresses for which `blocked` is true (a hint left with no address is removed).
/// Returns true if anything changed.
pub fn strip(records: &mut [Record], blocked: impl Fn(IpAddr) -> bool) -> bool {
    let mut changed = false;
    for r in records.iter_mut() {
        let svcb = match &mut r.data {
            RData::HTTPS(h) => &mut h.0,
            RData::SVCB(s) => s,
            _ => continue,
        };
        changed |= strip_one(svcb, &blocked);
    }
    changed
}

/// One record. Removed keys are remembered as bits of a small mask (the three keys this
/// removes are 4, 5 and 6) to take them out of `mandatory` afterwards.
fn strip_one(svcb: &mut SVCB, blocked: &impl Fn(IpAddr) -> bool) -> bool {
    let mut removed: u8 = 0;
    let mut thinned = false;
    svcb.svc_params.retain_mut(|(key, value)| {
        let keep = match value {
            _ if *key == SvcParamKey::EchConfigList => false,
            SvcParamValue::Ipv4Hint(h) => {
                let n = h.0.len();
                h.0.retain(|a| !blocked(IpAddr::V4(a.0)));
                thinned |= h.0.len() != n;
                !h.0.is_empty()
            }
            SvcParamValue::Ipv6Hint(h) => {
                let n = h.0.len();
                h.0.retain(|a| !blocked(IpAddr::V6(a.0)));
                thinned |= h.0.len() != n;
                !h.0.is_empty()
            }
            _ => true,
        };
        if !keep {
            removed |= key_bit(*key);
        }
        keep
    });
    if removed != 0 {
        fix_mandatory(svcb, removed);
    }
    removed != 0 || thinned
}

/// Take removed keys out of `mandatory`, and remove `mandatory` if nothing is left in it.
fn fix_mandatory(svcb: &mut SVCB, removed: u8) {
    svcb.svc_params.retain_mut(|(_, value)| match value {
        SvcParamValue::Mandatory(m) => {
            m.0.retain(|k| key_bit(*k) & removed == 0);
            !m.0.is_empty()
        }
        _ => true,
    });
}

/// A bit for the keys this module may remove (`ipv4hint`, `ech`, `ipv6hint`), 0 for others.
fn key_bit(key: SvcParamKey) -> u8 {
    match key {
        SvcParamKey::Ipv4Hint => 1,
        SvcParamKey::EchConfigList => 2,
        SvcParamKey::Ipv6Hint => 4,
        _ => 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Message, MessageType, OpCode};
    use hickory_proto::rr::{Name, RecordType};

    /// An ECHConfigList as it appears in the wild is opaque to DNS: any base64 will do.
    const ECH: &str = "AEX+DQBBpQAgACB/RSCtLvdMYjxOvYhYA7r5PbHCpsDyfvzXqjgRPMjdAgAEAAEAAQASY2xvdWRmbGFyZS1lY2guY29tAAA=";

    fn records(zone: &str) -> Vec<Record> {
        let text = format!("$TTL 300\n$ORIGIN example.test.\n{zone}");
        let (_, sets) = hickory_proto::serialize::txt::Parser::new(text, None, None)
            .parse()
            .unwrap_or_else(|e| panic!("{e}"));
        let mut out: Vec<Record> = sets
            .into_values()
            .flat_map(|s| s.records_without_rrsigs().cloned().collect::<Vec<_>>())
            .collect();
        out.sort_by_key(|r| (r.name.to_ascii(), r.data.to_string()));
        out
    }

    /// Blocked test ranges: 203.0.113.0/24 and 2001:db8:bad::/48.
    fn blocked(ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(v4) => v4.octets()[..3] == [203, 0, 113],
            IpAddr::V6(v6) => v6.segments()[..3] == [0x2001, 0xdb8, 0xbad],
        }
    }

    fn params(r: &Record) -> Vec<String> {
        let svcb = match &r.data {
            RData::HTTPS(h) => &h.0,
            RData::SVCB(s) => s,
            other => panic!("not SVCB: {other:?}"),
        };
        svcb.svc_params
            .iter()
            // hickory's presentation ends each list with a comma.
            .map(|(k, v)| format!("{k}={}", v.to_string().trim_end_matches(',')))
            .collect()
    }

    /// Encode the records as a response and decode it again: what a client would parse.
    fn round_trip(rs: &[Record]) -> Vec<Record> {
        let mut m = Message::new(7, MessageType::Response, OpCode::Query);
        m.add_answers(rs.iter().cloned());
        let wire = m.to_vec().expect("the rewritten records encode");
        Message::from_vec(&wire)
            .expect("the rewritten records decode")
            .answers
    }

    #[test]
    fn ech_goes_and_everything_else_stays_in_order() {
        let mut rs = records(&format!(
            "www IN HTTPS 1 . alpn=h2,h3 port=8443 ipv4hint=192.0.2.1 ech={ECH} ipv6hint=2001:db8::1\n"
        ));
        assert!(strip(&mut rs, blocked));
        let p = params(&rs[0]);
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(p[0].starts_with("alpn="), "{p:?}");
        assert!(p[1].starts_with("port="), "{p:?}");
        assert!(
            p[2].starts_with("ipv4hint=") && p[2].contains("192.0.2.1"),
            "{p:?}"
        );
        assert!(
            p[3].starts_with("ipv6hint=") && p[3].contains("2001:db8::1"),
            "{p:?}"
        );
        assert_eq!(round_trip(&rs), rs);
    }

    #[test]
    fn blocked_hint_addresses_go_and_an_empty_hint_goes_with_them() {
        let mut rs = records(
            "a IN HTTPS 1 . alpn=h2 ipv4hint=203.0.113.66,192.0.2.7 ipv6hint=2001:db8:bad::1,2001:db8::7\n\
             b IN HTTPS 1 . alpn=h2 ipv4hint=203.0.113.66 ipv6hint=2001:db8:bad::1\n",
        );
        assert!(strip(&mut rs, blocked));
        let a = params(&rs[0]).join(" ");
        assert!(
            a.contains("192.0.2.7") && !a.contains("203.0.113.66"),
            "{a}"
        );
        assert!(
            a.contains("2001:db8::7") && !a.contains("2001:db8:bad::1"),
            "{a}"
        );
        assert_eq!(params(&rs[1]), vec!["alpn=h2".to_owned()]);
        assert_eq!(round_trip(&rs), rs);
    }

    #[test]
    fn mandatory_loses_the_keys_removed_and_goes_when_empty() {
        let mut rs = records(&format!(
            "a IN HTTPS 1 . mandatory=alpn,ech alpn=h2 ech={ECH}\n\
             b IN HTTPS 1 . mandatory=ipv4hint,ech ipv4hint=203.0.113.1 ech={ECH}\n\
             c IN SVCB 1 svc.example.test. mandatory=ech,key65333 ech={ECH} key65333=ex1\n"
        ));
        assert!(strip(&mut rs, blocked));
        assert_eq!(params(&rs[0]), vec!["mandatory=alpn", "alpn=h2"]);
        assert!(params(&rs[1]).is_empty(), "{:?}", params(&rs[1]));
        let c = params(&rs[2]);
        assert_eq!(c.len(), 2, "{c:?}");
        assert!(c[0].starts_with("mandatory=key65333"), "{c:?}");
        assert_eq!(round_trip(&rs), rs);
    }

    /// A hint that keeps some addresses stays, and so does its place in `mandatory`.
    #[test]
    fn a_thinned_hint_stays_mandatory() {
        let mut rs =
            records("a IN HTTPS 1 . mandatory=ipv4hint alpn=h2 ipv4hint=203.0.113.66,192.0.2.7\n");
        assert!(strip(&mut rs, blocked));
        assert_eq!(
            params(&rs[0]),
            vec!["mandatory=ipv4hint", "alpn=h2", "ipv4hint=192.0.2.7"]
        );
        assert_eq!(round_trip(&rs), rs);
    }

    #[test]
    fn records_with_nothing_to_strip_are_left_alone() {
        let zone = "www IN HTTPS 1 . alpn=h2 ipv4hint=192.0.2.1\n\
                    www IN A 203.0.113.66\n\
                    alias IN HTTPS 0 www.example.test.\n\
                    _dns IN SVCB 1 dns.example.test. alpn=dot\n";
        let mut rs = records(zone);
        let before = rs.clone();
        assert!(!strip(&mut rs, blocked));
        assert_eq!(rs, before);
        assert!(!strip(&mut [], blocked));
        // The answer-section types strip looks at, and only those.
        assert!(rs.iter().any(|r| r.record_type() == RecordType::A));
        assert!(
            rs.iter()
                .any(|r| r.name == Name::from_ascii("alias.example.test.").unwrap())
        );
    }
}
