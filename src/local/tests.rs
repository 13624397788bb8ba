use std::path::Path;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};

use super::LocalZones;
use crate::config::Config;
use crate::lists::key::{normalize_domain, reverse_key};

fn zones(extra: &str) -> LocalZones {
    let text = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
[upstream]
servers = ["192.0.2.53"]
[[network]]
cidrs = ["10.0.0.0/8"]
group = "staff"
[group.staff]
{extra}
"#
    );
    let c = Config::from_str(Path::new("/tmp/local.toml"), &text).unwrap_or_else(|e| panic!("{e}"));
    LocalZones::new(&c)
}

fn ask(z: &LocalZones, name: &str, qtype: RecordType) -> Option<(ResponseCode, usize, bool)> {
    let key = reverse_key(&normalize_domain(name).unwrap());
    let qname = Name::from_ascii(format!("{name}.")).unwrap();
    let r = z
        .records(&key, &qname, qtype)
        .or_else(|| z.after_forwarding(&key, &qname, qtype))?;
    assert!(r.authoritative, "local answers carry AA");
    Some((r.rcode, r.answers.len(), !r.authorities.is_empty()))
}

const SCHOOL: &str = r#"
[[zone]]
name = "ad.example-school.internal"
servers = ["127.0.0.1:5300"]
[[zone]]
name = "10.in-addr.arpa"
servers = ["127.0.0.1:5300"]
[local]
zones = ["example-school.internal"]
records = [
  "mis.example-school.internal A 10.10.0.20",
  "_ldap._tcp.example-school.internal SRV 0 100 389 dc1.example-school.internal",
  "intranet.example-school.internal CNAME mis.example-school.internal",
]
"#;

#[test]
fn records_answer_their_types_and_nodata_for_others() {
    let z = zones(SCHOOL);
    let ok = Some((ResponseCode::NoError, 1, false));
    assert_eq!(ask(&z, "mis.example-school.internal", RecordType::A), ok);
    assert_eq!(
        ask(&z, "mis.example-school.internal", RecordType::AAAA),
        Some((ResponseCode::NoError, 0, true))
    );
    assert_eq!(
        ask(&z, "_ldap._tcp.example-school.internal", RecordType::SRV),
        ok
    );
    // CNAME followed inside local data.
    assert_eq!(
        ask(&z, "intranet.example-school.internal", RecordType::A),
        Some((ResponseCode::NoError, 2, false))
    );
}

#[test]
fn local_zones_say_nxdomain_but_step_aside_for_deeper_forwarded_zones() {
    let z = zones(SCHOOL);
    assert_eq!(
        ask(&z, "printer.example-school.internal", RecordType::A),
        Some((ResponseCode::NXDomain, 0, true))
    );
    // Empty non-terminal: exists, no data.
    assert_eq!(
        ask(&z, "_tcp.example-school.internal", RecordType::A),
        Some((ResponseCode::NoError, 0, true))
    );
    assert_eq!(
        ask(&z, "dc1.ad.example-school.internal", RecordType::A),
        None
    );
    assert_eq!(ask(&z, "www.example.com", RecordType::A), None);
}

#[test]
fn reserved_names_are_answered_unless_forwarded() {
    let z = zones(SCHOOL);
    let nx = Some((ResponseCode::NXDomain, 0, true));
    assert_eq!(ask(&z, "1.0.168.192.in-addr.arpa", RecordType::PTR), nx);
    assert_eq!(ask(&z, "1.16.172.in-addr.arpa", RecordType::PTR), nx);
    assert_eq!(ask(&z, "printer.home.arpa", RecordType::A), nx);
    assert_eq!(ask(&z, "laptop.local", RecordType::A), nx);
    assert_eq!(ask(&z, "printer", RecordType::A), nx);
    assert_eq!(
        ask(&z, "com", RecordType::DS),
        None,
        "TLD infrastructure resolves"
    );
    // 10.in-addr.arpa is forwarded to the DC...
    assert_eq!(ask(&z, "5.0.0.10.in-addr.arpa", RecordType::PTR), None);
    // ...but the auto PTR of a local record is answered first.
    assert_eq!(
        ask(&z, "20.0.10.10.in-addr.arpa", RecordType::PTR),
        Some((ResponseCode::NoError, 1, false))
    );
    assert_eq!(
        ask(&z, "localhost", RecordType::A),
        Some((ResponseCode::NoError, 1, false))
    );
    assert_eq!(ask(&z, "8.8.8.8.in-addr.arpa", RecordType::PTR), None);
    let apex = ask(&z, "168.192.in-addr.arpa", RecordType::SOA);
    assert_eq!(apex, Some((ResponseCode::NoError, 1, false)));
}

#[test]
fn switches_turn_reserved_names_and_auto_ptr_off() {
    let z = zones(
        r#"
[local]
serve_rfc6303 = false
auto_ptr = false
records = ["mis.example-school.internal A 10.10.0.20"]
"#,
    );
    assert_eq!(ask(&z, "1.0.168.192.in-addr.arpa", RecordType::PTR), None);
    assert_eq!(ask(&z, "printer", RecordType::A), None);
    assert_eq!(ask(&z, "20.0.10.10.in-addr.arpa", RecordType::PTR), None);
}

#[test]
fn ordinary_names_are_not_covered() {
    let z = zones(SCHOOL);
    for name in [
        "www.example.com",
        "bbc.co.uk",
        "ad.example-school.internalx",
    ] {
        let key = reverse_key(&normalize_domain(name).unwrap());
        assert!(!z.covers(&key), "{name}");
    }
    let key = reverse_key("mis.example-school.internal");
    assert!(z.covers(&key));
    assert!(z.covers(b"printer"));
    assert!(!z.covers(b""), "the root is resolved like any name");
    let root = Name::root();
    assert!(z.after_forwarding(b"", &root, RecordType::A).is_none());
}

#[test]
fn explain_names_the_source() {
    let z = zones(SCHOOL);
    let e = |n: &str| {
        let key = reverse_key(n);
        z.explain(&key, &Name::from_ascii(format!("{n}.")).unwrap())
    };
    assert_eq!(
        e("mis.example-school.internal").unwrap(),
        "answered locally: mis.example-school.internal A 10.10.0.20 (local.records[0])"
    );
    assert_eq!(
        e("dc1.ad.example-school.internal").unwrap(),
        "forwarded to zone ad.example-school.internal: 127.0.0.1:5300"
    );
    assert_eq!(
        e("1.0.168.192.in-addr.arpa").unwrap(),
        "private reverse zone (RFC 6303): answered NXDOMAIN locally"
    );
    assert_eq!(e("www.example.com"), None);
}

/// RFC 9462: a resolver with no designated encrypted resolver answers NODATA for
/// `resolver.arpa` and everything below it, whatever the type, and never forwards it.
#[test]
fn resolver_arpa_is_nodata_for_every_name_and_type() {
    let z = zones("");
    let nodata = Some((ResponseCode::NoError, 0, true));
    for (name, qtype) in [
        ("_dns.resolver.arpa", RecordType::SVCB),
        ("_dns.resolver.arpa", RecordType::HTTPS),
        ("_dns.resolver.arpa", RecordType::ANY),
        ("resolver.arpa", RecordType::A),
        ("deep.below._dns.resolver.arpa", RecordType::AAAA),
    ] {
        assert_eq!(ask(&z, name, qtype), nodata, "{name} {qtype}");
    }
    assert_eq!(
        ask(&z, "resolver.arpa", RecordType::SOA),
        Some((ResponseCode::NoError, 1, false))
    );
    let key = reverse_key("_dns.resolver.arpa");
    let qname = Name::from_ascii("_dns.resolver.arpa.").unwrap();
    let why = z.explain(&key, &qname).unwrap_or_default();
    assert!(why.contains("RFC 9462") && why.contains("NODATA"), "{why}");
}
