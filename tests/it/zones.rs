//! Conditional forwarding (`[[zone]]`), local records and zones (`[local]`), reserved names
//! (RFC 6303 / 8375 / 6761), DNS rebinding protection and dynamic-update refusal, through
//! real sockets: a stand-in domain controller (the support module's `authority`) answers
//! the AD zone, a second authority plays the internet and records every question it sees.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{DNSClass, Name, RData, Record, RecordType};

use crate::support::*;

/// The AD domain as a domain controller serves it, with a TXT record too large for UDP.
fn dc_zone() -> String {
    let chunk = "x".repeat(250);
    let big: Vec<String> = (0..6).map(|i| format!("\"{i}{chunk}\"")).collect();
    format!(
        r#"
$TTL 600
@        IN SOA dc1.ad.example-school.internal. hostmaster.ad.example-school.internal. 7 900 600 86400 60
@        IN NS  dc1.ad.example-school.internal.
dc1      IN A   10.0.0.5
_ldap._tcp.dc._msdcs IN SRV 0 100 389 dc1.ad.example-school.internal.
_kerberos._tcp IN SRV 0 100 88 dc1.ad.example-school.internal.
big      IN TXT {}
blocked  IN A   10.0.0.66
"#,
        big.join(" ")
    )
}

const DC_REVERSE: &str = r#"
$TTL 600
@        IN SOA dc1.ad.example-school.internal. hostmaster.ad.example-school.internal. 7 900 600 86400 60
@        IN NS  dc1.ad.example-school.internal.
5.0.0    IN PTR dc1.ad.example-school.internal.
"#;

/// The internet, with names that answer internal addresses (rebinding attempts).
const INTERNET: &str = r#"
$TTL 300
@        IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
@        IN NS  ns.example.test.
ns       IN A   192.0.2.53
www      IN A   192.0.2.10
rebind   IN A   10.0.0.5
mixed    IN A   192.0.2.7
mixed    IN A   192.168.1.1
mixed6   IN AAAA fd00::1
mixed6   IN AAAA 2001:db8::7
alias    IN CNAME rebind.example.test.
allowed  IN A   10.9.9.9
"#;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[upstream]
servers = ["{UPSTREAM}"]
timeout_ms = 500
attempts = 1

[lists]
bundle = "lists.fstb"

[[lists.source]]
category = "adult"
path = "adult.txt"

[[network]]
cidrs = ["127.0.0.1/32"]
group = "staff"

[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"

[group.staff]

[group.pupils]
block = ["adult"]

[admin]
listen = "127.0.0.1:0"

[[zone]]
name = "ad.example-school.internal"
servers = ["{DC}"]
timeout_ms = 800

[[zone]]
name = "10.in-addr.arpa"
servers = ["{DC}"]

[local]
zones = ["example-school.internal"]
records = [
  "mis.example-school.internal A 10.10.0.20",
  "mis.example-school.internal TXT \"management information system\"",
  "_ipp._tcp.example-school.internal SRV 0 100 631 printer.example-school.internal",
  "printer.example-school.internal A 10.10.0.31",
  "intranet.example-school.internal CNAME mis.example-school.internal",
  "wifi.example-school.internal AAAA fd00:10::1",
]

[rebinding]
allow = ["allowed.example.test"]
"#;

const ADULT: &str = "blocked.ad.example-school.internal\n";

struct Site {
    dc: Authority,
    internet: Authority,
    h: Harness,
}

async fn site_with(config: &str) -> Site {
    let dc_text = dc_zone();
    let dc = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[
            ("ad.example-school.internal.", dc_text.as_str()),
            ("10.in-addr.arpa.", DC_REVERSE),
        ],
    )
    .await;
    let internet = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("example.test.", INTERNET)],
    )
    .await;
    let config = config.replace("{DC}", &dc.addr.to_string());
    let h = start(
        &config,
        internet.addr,
        &[("adult.txt", ADULT)],
        school_morning(),
    )
    .await;
    Site { dc, internet, h }
}

async fn site() -> Site {
    site_with(CONFIG).await
}

fn names_seen(a: &Authority) -> Vec<String> {
    a.seen()
}

fn soa_owner(m: &Message) -> Option<String> {
    m.authorities
        .iter()
        .find(|r| r.record_type() == RecordType::SOA)
        .map(|r| r.name.to_ascii())
}

#[tokio::test]
async fn the_ad_zone_is_forwarded_to_its_servers_srv_and_soa() {
    let s = site().await;
    let staff = s.h.client("127.0.0.1");
    let srv = staff
        .udp(
            "_ldap._tcp.dc._msdcs.ad.example-school.internal.",
            RecordType::SRV,
        )
        .await;
    assert_eq!(rcode(&srv), ResponseCode::NoError);
    let target = srv.answers.iter().find_map(|r| match &r.data {
        RData::SRV(v) => Some((v.port, v.target.to_ascii())),
        _ => None,
    });
    assert_eq!(
        target,
        Some((389, "dc1.ad.example-school.internal.".to_owned()))
    );
    assert!(!srv.metadata.authoritative, "forwarded, not our own data");
    let soa = staff
        .tcp("ad.example-school.internal.", RecordType::SOA)
        .await;
    let serial = soa.answers.iter().find_map(|r| match &r.data {
        RData::SOA(v) => Some(v.serial),
        _ => None,
    });
    assert_eq!(serial, Some(7), "the DC's SOA: {soa:?}");
    let a = staff
        .udp("dc1.ad.example-school.internal.", RecordType::A)
        .await;
    assert_eq!(ips(&a), ["10.0.0.5".parse::<std::net::IpAddr>().unwrap()]);
    let ptr = staff.udp("5.0.0.10.in-addr.arpa.", RecordType::PTR).await;
    assert_eq!(rcode(&ptr), ResponseCode::NoError);
    assert_eq!(ptr.answers.len(), 1, "reverse zone forwarded: {ptr:?}");
    // A name the DC does not have: its NXDOMAIN, with its SOA.
    let nx = staff
        .udp("nothing.ad.example-school.internal.", RecordType::A)
        .await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain);
    assert_eq!(
        soa_owner(&nx).as_deref(),
        Some("ad.example-school.internal.")
    );
    // Cached like any other answer: asked again, the DC is not asked again.
    let before = s.dc.count("dc1.ad.example-school.internal.");
    staff
        .udp("dc1.ad.example-school.internal.", RecordType::A)
        .await;
    assert_eq!(s.dc.count("dc1.ad.example-school.internal."), before);
    let leaked: Vec<String> = names_seen(&s.internet)
        .into_iter()
        .filter(|q| q.contains("example-school") || q.contains("in-addr"))
        .collect();
    assert!(
        leaked.is_empty(),
        "AD names reached the internet: {leaked:?}"
    );
    s.h.stop().await;
}

#[tokio::test]
async fn a_large_txt_in_the_ad_zone_arrives_whole_over_tcp() {
    let s = site().await;
    let staff = s.h.client("127.0.0.1");
    let udp = staff
        .udp("big.ad.example-school.internal.", RecordType::TXT)
        .await;
    assert!(
        udp.metadata.truncation,
        "over 1232 bytes: UDP says TC so the client retries over TCP"
    );
    let tcp = staff
        .tcp("big.ad.example-school.internal.", RecordType::TXT)
        .await;
    let text: usize = tcp
        .answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::TXT(t) => Some(t.txt_data.iter().map(|s| s.len()).sum::<usize>()),
            _ => None,
        })
        .sum();
    assert!(text > 1232, "whole TXT over TCP, got {text} bytes: {tcp:?}");
    s.h.stop().await;
}

#[tokio::test]
async fn a_listed_name_in_a_forwarded_zone_stays_blocked() {
    let s = site().await;
    let pupil = s.h.client("127.0.0.2");
    let m = pupil
        .udp("blocked.ad.example-school.internal.", RecordType::A)
        .await;
    assert_eq!(rcode(&m), ResponseCode::NXDomain);
    assert!(ips(&m).is_empty());
    assert_eq!(s.dc.count("blocked.ad.example-school.internal."), 0);
    // Staff are not blocked: the DC answers them.
    let staff =
        s.h.client("127.0.0.1")
            .udp("blocked.ad.example-school.internal.", RecordType::A)
            .await;
    assert_eq!(ips(&staff).len(), 1);
    s.h.stop().await;
}

/// A Windows client registering its name: opcode UPDATE, zone section = the AD zone.
fn dynamic_update() -> Message {
    let mut m = Message::new(0x5151, MessageType::Query, OpCode::Update);
    let mut zone = Query::query(
        Name::from_ascii("ad.example-school.internal.").unwrap(),
        RecordType::SOA,
    );
    zone.set_query_class(DNSClass::IN);
    m.add_query(zone);
    let rr = Record::from_rdata(
        Name::from_ascii("laptop7.ad.example-school.internal.").unwrap(),
        1200,
        RData::A(A::new(10, 20, 3, 7)),
    );
    m.authorities.push(rr);
    m
}

#[tokio::test]
async fn a_dynamic_update_is_refused_at_once_and_never_forwarded() {
    let s = site().await;
    let staff = s.h.client("127.0.0.1");
    let m = dynamic_update();
    let started = Instant::now();
    let udp = staff.send_udp(&m).await.expect("an answer over UDP");
    assert!(
        matches!(rcode(&udp), ResponseCode::NotImp | ResponseCode::Refused),
        "{:?}",
        rcode(&udp)
    );
    let tcp = staff.send_tcp(&m).await.expect("an answer over TCP");
    assert!(
        matches!(rcode(&tcp), ResponseCode::NotImp | ResponseCode::Refused),
        "{:?}",
        rcode(&tcp)
    );
    assert!(started.elapsed() < Duration::from_secs(2), "prompt");
    assert!(
        s.dc.seen().is_empty(),
        "an update never reaches the DC: {:?}",
        s.dc.seen()
    );
    s.h.stop().await;
}

#[tokio::test]
async fn local_records_are_answered_authoritatively() {
    let s = site().await;
    let staff = s.h.client("127.0.0.1");
    for tcp in [false, true] {
        let ask = |name: &'static str, t| {
            let c = &staff;
            async move {
                if tcp {
                    c.tcp(name, t).await
                } else {
                    c.udp(name, t).await
                }
            }
        };
        let a = ask("MIS.example-school.internal.", RecordType::A).await;
        assert!(a.metadata.authoritative, "AA on a local answer (tcp {tcp})");
        assert_eq!(ips(&a), ["10.10.0.20".parse::<std::net::IpAddr>().unwrap()]);
        let nodata = ask("mis.example-school.internal.", RecordType::AAAA).await;
        assert_eq!(rcode(&nodata), ResponseCode::NoError);
        assert!(nodata.answers.is_empty() && nodata.metadata.authoritative);
        assert_eq!(
            soa_owner(&nodata).as_deref(),
            Some("example-school.internal.")
        );
        let nx = ask("nobody.example-school.internal.", RecordType::A).await;
        assert_eq!(rcode(&nx), ResponseCode::NXDomain);
        assert!(nx.metadata.authoritative);
        let srv = ask("_ipp._tcp.example-school.internal.", RecordType::SRV).await;
        assert_eq!(srv.answers.len(), 1);
        let txt = ask("mis.example-school.internal.", RecordType::TXT).await;
        assert_eq!(txt.answers.len(), 1);
        let cname = ask("intranet.example-school.internal.", RecordType::A).await;
        assert_eq!(cname.answers.len(), 2, "CNAME then its local A: {cname:?}");
        let ptr = ask("20.0.10.10.in-addr.arpa.", RecordType::PTR).await;
        let target = ptr.answers.iter().find_map(|r| match &r.data {
            RData::PTR(p) => Some(p.0.to_ascii()),
            _ => None,
        });
        assert_eq!(target.as_deref(), Some("mis.example-school.internal."));
        let v6 = ask("wifi.example-school.internal.", RecordType::AAAA).await;
        assert_eq!(
            v6.answers.len(),
            1,
            "local private addresses are not rebinding"
        );
    }
    assert!(
        !names_seen(&s.internet)
            .iter()
            .chain(names_seen(&s.dc).iter())
            .any(|q| q.contains("mis.") || q.contains("20.0.10.10")),
        "local names are never asked upstream"
    );
    s.h.stop().await;
}

#[tokio::test]
async fn reserved_names_are_answered_locally_and_never_reach_upstream() {
    let s = site().await;
    let staff = s.h.client("127.0.0.1");
    let names = [
        ("1.0.168.192.in-addr.arpa.", RecordType::PTR),
        ("9.1.16.172.in-addr.arpa.", RecordType::PTR),
        ("1.0.0.127.in-addr.arpa.", RecordType::PTR),
        ("4.3.254.169.in-addr.arpa.", RecordType::PTR),
        (
            "1.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.0.d.f.ip6.arpa.",
            RecordType::PTR,
        ),
        ("printer.home.arpa.", RecordType::A),
        ("laptop.local.", RecordType::A),
        ("printer.", RecordType::A),
        ("wpad.", RecordType::AAAA),
        ("anything.invalid.", RecordType::A),
    ];
    for (name, t) in names {
        let m = staff.udp(name, t).await;
        assert_eq!(rcode(&m), ResponseCode::NXDomain, "{name}");
        assert!(m.metadata.authoritative, "{name}: AA");
        assert!(soa_owner(&m).is_some(), "{name}: SOA for negative caching");
    }
    let lo = staff.udp("localhost.", RecordType::A).await;
    assert_eq!(ips(&lo), ["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]);
    let seen: Vec<String> = names_seen(&s.internet)
        .into_iter()
        .chain(names_seen(&s.dc))
        .collect();
    for (name, _) in names {
        assert!(
            !seen.iter().any(|q| q.starts_with(name)),
            "{name} leaked upstream: {seen:?}"
        );
    }
    assert!(!seen.iter().any(|q| q.starts_with("localhost")));
    // Not reserved: a public reverse name still goes upstream.
    staff.udp("8.8.8.8.in-addr.arpa.", RecordType::PTR).await;
    assert!(
        names_seen(&s.internet)
            .iter()
            .any(|q| q.starts_with("8.8.8.8.in-addr.arpa.")),
        "{:?}",
        names_seen(&s.internet)
    );
    s.h.stop().await;
}

#[tokio::test]
async fn rebinding_answers_lose_their_internal_addresses() {
    let s = site().await;
    let staff = s.h.client("127.0.0.1");
    let rebind = staff.udp("rebind.example.test.", RecordType::A).await;
    assert_eq!(
        rcode(&rebind),
        ResponseCode::NoError,
        "NODATA, not NXDOMAIN"
    );
    assert!(ips(&rebind).is_empty(), "{rebind:?}");
    // Served from the cache and the fast path: still filtered.
    let again = staff.udp("rebind.example.test.", RecordType::A).await;
    assert!(ips(&again).is_empty());
    let mixed = staff.udp("mixed.example.test.", RecordType::A).await;
    assert_eq!(
        ips(&mixed),
        ["192.0.2.7".parse::<std::net::IpAddr>().unwrap()]
    );
    let mixed6 = staff.tcp("mixed6.example.test.", RecordType::AAAA).await;
    assert_eq!(
        ips(&mixed6),
        ["2001:db8::7".parse::<std::net::IpAddr>().unwrap()]
    );
    let alias = staff.udp("alias.example.test.", RecordType::A).await;
    assert!(ips(&alias).is_empty(), "through a CNAME too: {alias:?}");
    let allowed = staff.udp("allowed.example.test.", RecordType::A).await;
    assert_eq!(ips(&allowed).len(), 1, "rebinding.allow keeps it");
    let www = staff.udp("www.example.test.", RecordType::A).await;
    assert_eq!(ips(&www).len(), 1);
    let blocked = metric(s.h.admin(), "chaperone_rebinding_blocked_total").await;
    assert!(blocked >= 4.0, "counted: {blocked}");
    s.h.stop().await;
}

#[tokio::test]
async fn rebinding_protection_can_be_turned_off() {
    let config = CONFIG.replace("allow = [\"allowed.example.test\"]", "enabled = false");
    let s = site_with(&config).await;
    let m =
        s.h.client("127.0.0.1")
            .udp("rebind.example.test.", RecordType::A)
            .await;
    assert_eq!(ips(&m).len(), 1);
    s.h.stop().await;
}

#[tokio::test]
async fn zones_are_forwarded_in_recursive_mode_too() {
    // The root hint is TEST-NET-1: never reachable, and never needed for the AD zone.
    let config = CONFIG.replace(
        "servers = [\"{UPSTREAM}\"]",
        "mode = \"recursive\"\nroot_hints = [\"192.0.2.1\"]",
    );
    let s = site_with(&config).await;
    let staff = s.h.client("127.0.0.1");
    let srv = staff
        .udp(
            "_ldap._tcp.dc._msdcs.ad.example-school.internal.",
            RecordType::SRV,
        )
        .await;
    assert_eq!(srv.answers.len(), 1, "{srv:?}");
    let mis = staff
        .udp("mis.example-school.internal.", RecordType::A)
        .await;
    assert!(mis.metadata.authoritative);
    s.h.stop().await;
}

#[tokio::test]
async fn a_reload_applies_zone_and_local_record_changes() {
    let before = CONFIG
        .replace(
            "name = \"ad.example-school.internal\"",
            "name = \"old.example-school.internal\"",
        )
        .replace("\"mis.example-school.internal A 10.10.0.20\",", "");
    let s = site_with(&before).await;
    let staff = s.h.client("127.0.0.1");
    // Without the zone the AD name is under the local zone: NXDOMAIN from us.
    let m = staff
        .udp("dc1.ad.example-school.internal.", RecordType::A)
        .await;
    assert_eq!(rcode(&m), ResponseCode::NXDomain);
    let m = staff
        .udp("mis.example-school.internal.", RecordType::A)
        .await;
    assert!(ips(&m).is_empty(), "no A record yet: {m:?}");
    let text = CONFIG
        .replace("{DC}", &s.dc.addr.to_string())
        .replace("{UPSTREAM}", &s.internet.addr.to_string());
    std::fs::write(&s.h.config, text).unwrap();
    s.h.running
        .as_ref()
        .unwrap()
        .pipeline
        .reload()
        .await
        .expect("reload");
    let m = staff
        .udp("dc1.ad.example-school.internal.", RecordType::A)
        .await;
    assert_eq!(ips(&m).len(), 1, "the new zone forwards: {m:?}");
    let m = staff
        .udp("mis.example-school.internal.", RecordType::A)
        .await;
    assert_eq!(ips(&m).len(), 1, "the new record answers: {m:?}");
    s.h.stop().await;
}

#[test]
fn bad_zone_and_record_entries_are_errors_naming_the_key() {
    let bad = CONFIG
        .replace("{DC}", "127.0.0.1:5300")
        .replace("{UPSTREAM}", "127.0.0.1:53")
        .replace(
            "\"printer.example-school.internal A 10.10.0.31\",",
            "\"printer.example-school.internal A 10.10.0\",",
        )
        .replace(
            "servers = [\"127.0.0.1:5300\"]\ntimeout_ms = 800",
            "servers = [\"dc1\"]",
        );
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("adult.txt", ADULT)]);
    let path = dir.path().join("bad.toml");
    std::fs::write(&path, bad).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text =
        String::from_utf8_lossy(&out.stdout).into_owned() + &String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("local.records[3]"), "{text}");
    assert!(text.contains("zone[0].servers[0]"), "{text}");
}

/// The example config's `[[zone]]`, `[local]` and `[rebinding]` sections, with the stand-in
/// DC's real address in place of 127.0.0.1:5300.
fn example_sections(dc: SocketAddr) -> String {
    let text = std::fs::read_to_string(crate_root().join("config/example.toml")).unwrap();
    let value: toml::Value = toml::from_str(&text).unwrap();
    let mut t = toml::Table::new();
    for key in ["zone", "local", "rebinding"] {
        let v = value
            .get(key)
            .unwrap_or_else(|| panic!("example has [{key}]"));
        t.insert(key.to_owned(), v.clone());
    }
    toml::to_string(&t)
        .unwrap()
        .replace("127.0.0.1:5300", &dc.to_string())
}

const EXAMPLE_BASE: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[upstream]
servers = ["{UPSTREAM}"]
timeout_ms = 500
attempts = 1

[lists]
bundle = "lists.fstb"

[[lists.source]]
category = "adult"
path = "adult.txt"

[[network]]
name = "staff-vlan"
cidrs = ["127.0.0.1/32", "10.10.0.0/16"]
group = "staff"

[group.staff]
"#;

fn dig(server: SocketAddr, args: &[&str]) -> String {
    let out = std::process::Command::new("dig")
        .arg(format!("@{}", server.ip()))
        .args([
            "-p",
            &server.port().to_string(),
            "-b",
            "127.0.0.1",
            "+tries=1",
            "+time=3",
        ])
        .args(args)
        .output()
        .expect("dig runs");
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[tokio::test]
async fn the_example_config_forwards_the_ad_domain_and_answers_local_names() {
    let dc_text = dc_zone();
    let dc = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[
            ("ad.example-school.internal.", dc_text.as_str()),
            ("10.in-addr.arpa.", DC_REVERSE),
        ],
    )
    .await;
    let internet = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("example.test.", INTERNET)],
    )
    .await;
    let config = format!("{EXAMPLE_BASE}\n{}", example_sections(dc.addr));
    let h = start(
        &config,
        internet.addr,
        &[("adult.txt", ADULT)],
        school_morning(),
    )
    .await;
    let server = h.dns();
    let (srv, mis, ptr, dcptr) = tokio::task::spawn_blocking(move || {
        (
            dig(
                server,
                &["_ldap._tcp.dc._msdcs.ad.example-school.internal", "SRV"],
            ),
            dig(server, &["mis.example-school.internal", "A"]),
            dig(server, &["-x", "192.168.0.1"]),
            dig(server, &["-x", "10.0.0.5"]),
        )
    })
    .await
    .unwrap();
    assert!(
        srv.contains("status: NOERROR") && srv.contains("389 dc1.ad.example-school.internal."),
        "{srv}"
    );
    assert!(mis.contains("status: NOERROR"), "{mis}");
    assert!(
        mis.contains("flags: qr aa"),
        "answered locally with AA: {mis}"
    );
    assert!(mis.contains("10.10.0.20"), "{mis}");
    assert!(
        ptr.contains("status: NXDOMAIN") && ptr.contains("flags: qr aa"),
        "{ptr}"
    );
    assert!(dcptr.contains("dc1.ad.example-school.internal."), "{dcptr}");
    let dc_seen = dc.seen();
    assert!(
        dc_seen
            .iter()
            .any(|q| q.starts_with("_ldap._tcp.dc._msdcs")),
        "{dc_seen:?}"
    );
    let leaked: Vec<String> = internet
        .seen()
        .into_iter()
        .chain(dc_seen)
        .filter(|q| q.contains("168.192") || q.starts_with("mis."))
        .collect();
    assert!(leaked.is_empty(), "{leaked:?}");
    h.stop().await;
}

#[test]
fn explain_says_who_answers_a_name() {
    let explain = |name: &str| {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
            .args(["explain", "--config"])
            .arg(crate_root().join("config/example.toml"))
            .args(["--client", "127.0.0.1", name])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout).into_owned()
    };
    let mis = explain("mis.example-school.internal");
    assert!(
        mis.contains(
            "answer: answered locally: mis.example-school.internal A 10.10.0.20 (local.records[0])"
        ),
        "{mis}"
    );
    let dc = explain("dc1.ad.example-school.internal");
    assert!(
        dc.contains("answer: forwarded to zone ad.example-school.internal: 127.0.0.1:5300"),
        "{dc}"
    );
    let ptr = explain("1.0.168.192.in-addr.arpa");
    assert!(
        ptr.contains("answer: private reverse zone (RFC 6303): answered NXDOMAIN locally"),
        "{ptr}"
    );
    let www = explain("www.bbc.co.uk");
    assert!(
        www.contains("answer: resolved upstream: forwarded to 9.9.9.9:53"),
        "{www}"
    );
}

#[tokio::test]
async fn a_zone_file_is_served_authoritatively() {
    let internet = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("example.test.", INTERNET)],
    )
    .await;
    let config =
        format!("{EXAMPLE_BASE}\n[local]\nzone_files = [\"school.zone\"]\nauto_ptr = false\n");
    let zone = "$ORIGIN example-school.internal.\n$TTL 120\n@ IN SOA ns hostmaster 1 3600 600 86400 60\n@ IN NS ns\nmis IN A 10.10.0.20\n_ldap._tcp IN SRV 0 100 389 dc1\n";
    let h = start(
        &config,
        internet.addr,
        &[("adult.txt", ADULT), ("school.zone", zone)],
        school_morning(),
    )
    .await;
    let staff = h.client("127.0.0.1");
    let a = staff
        .udp("mis.example-school.internal.", RecordType::A)
        .await;
    assert!(a.metadata.authoritative);
    assert_eq!(ips(&a), ["10.10.0.20".parse::<std::net::IpAddr>().unwrap()]);
    assert_eq!(a.answers[0].ttl, 120, "the file's $TTL");
    let srv = staff
        .tcp("_ldap._tcp.example-school.internal.", RecordType::SRV)
        .await;
    assert_eq!(srv.answers.len(), 1);
    let nx = staff
        .udp("nobody.example-school.internal.", RecordType::A)
        .await;
    assert_eq!(
        rcode(&nx),
        ResponseCode::NXDomain,
        "the file's SOA makes it a zone"
    );
    assert!(nx.metadata.authoritative);
    assert!(
        internet
            .seen()
            .iter()
            .all(|q| !q.contains("example-school"))
    );
    h.stop().await;
}
