//! Recursive mode against authorities that misbehave the way real ones do (issue 17 §3):
//! a small internet of its own on 127.0.0.40–59 port 53, with a root, a TLD server for
//! `test.`, `one.`…`four.`, and second-level zones on their own servers, some scripted
//! (`support::scripted`) to send broken replies. Every delegation is glueless (name
//! servers are named under `nic.`, which the root serves), as in the main test internet.
//!
//! Each test starts its own Chaperone (empty caches) and asks names no other test asks, so
//! what a server has seen can be asserted per test. Needs root for port 53, as CI has.

use std::net::{IpAddr, SocketAddr};
use std::sync::OnceLock;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::rdata::{A, AAAA, CNAME, NS};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::support::scripted::{Script, ScriptedAuthority, scripted};
use crate::support::*;

const ROOT_ZONE: &str = r#"
$TTL 3600
@            IN SOA ns-root.nic. hostmaster.nic. 1 3600 600 86400 60
@            IN NS  ns-root.nic.
ns-root.nic.   IN A 127.0.0.40
ns-tld.nic.    IN A 127.0.0.41
ns-quirk.nic.  IN A 127.0.0.42
ns-child.nic.  IN A 127.0.0.43
ns-tamper.nic. IN A 127.0.0.44
ns-victim.nic. IN A 127.0.0.45
ns-c1.nic.     IN A 127.0.0.46
ns-c2.nic.     IN A 127.0.0.47
ns-c3.nic.     IN A 127.0.0.48
ns-c4.nic.     IN A 127.0.0.49
ns-refuse.nic.   IN A 127.0.0.50
ns-servfail.nic. IN A 127.0.0.51
ns-lame.nic.     IN A 127.0.0.52
ns-good.nic.     IN A 127.0.0.53
test.        IN NS ns-tld.nic.
one.         IN NS ns-tld.nic.
two.         IN NS ns-tld.nic.
three.       IN NS ns-tld.nic.
four.        IN NS ns-tld.nic.
"#;

fn tld_zone(origin: &str) -> String {
    let delegations = match origin {
        "test." => {
            "refused IN NS ns-quirk.nic.\nformerr IN NS ns-quirk.nic.\n\
             servfail IN NS ns-quirk.nic.\nnxdomain IN NS ns-quirk.nic.\n\
             tamper IN NS ns-tamper.nic.\nvictim IN NS ns-victim.nic.\n\
             halfrefused IN NS ns-refuse.nic.\nhalfrefused IN NS ns-good.nic.\n\
             halfservfail IN NS ns-servfail.nic.\nhalfservfail IN NS ns-good.nic.\n\
             halflame IN NS ns-lame.nic.\nhalflame IN NS ns-good.nic.\n"
        }
        "one." => "shop IN NS ns-c1.nic.\n",
        "two." => "cdn IN NS ns-c2.nic.\n",
        "three." => "akam IN NS ns-c3.nic.\n",
        _ => "edge IN NS ns-c4.nic.\n",
    };
    format!(
        "$TTL 3600\n@ IN SOA ns-tld.nic. hostmaster.nic. 1 3600 600 86400 60\n\
         @ IN NS ns-tld.nic.\n{delegations}"
    )
}

/// The zones whose server answers NS probes below the apex with an error: `www.ent` sits
/// under an empty non-terminal, `sub` is delegated to another server.
const QUIRKS: [(&str, ResponseCode, u8); 4] = [
    ("refused.test.", ResponseCode::Refused, 1),
    ("formerr.test.", ResponseCode::FormErr, 2),
    ("servfail.test.", ResponseCode::ServFail, 3),
    ("nxdomain.test.", ResponseCode::NXDomain, 4),
];

fn quirk_zone(n: u8) -> String {
    format!(
        "$TTL 300\n@ IN SOA ns-quirk.nic. hostmaster.nic. 1 3600 600 86400 60\n\
         @ IN NS ns-quirk.nic.\nwww.ent IN A 192.0.2.{n}\nsub IN NS ns-child.nic.\n"
    )
}

fn child_zone(n: u8) -> String {
    format!(
        "$TTL 300\n@ IN SOA ns-child.nic. hostmaster.nic. 1 3600 600 86400 60\n\
         @ IN NS ns-child.nic.\nwww IN A 192.0.2.1{n}\n"
    )
}

/// The tampering server's zone. The scripted names exist (TXT) so that probes for them
/// get NODATA, as from an honest server.
const TAMPER_ZONE: &str = r#"
$TTL 300
@         IN SOA ns-tamper.nic. hostmaster.nic. 1 3600 600 86400 60
@         IN NS  ns-tamper.nic.
www       IN A    192.0.2.50
www       IN AAAA 2001:db8::50
count     IN A    192.0.2.59
wrongtype IN TXT "scripted"
mixed     IN TXT "scripted"
dup       IN TXT "scripted"
oob       IN TXT "scripted"
poison    IN TXT "scripted"
nosoa     IN A    192.0.2.58
"#;

const VICTIM_ZONE: &str = r#"
$TTL 300
@       IN SOA ns-victim.nic. hostmaster.nic. 1 3600 600 86400 60
@       IN NS  ns-victim.nic.
www     IN A   192.0.2.60
target  IN A   192.0.2.61
"#;

/// Zones with one bad name server beside a good one (`ns-good`), and the bad server's
/// script: it refuses, fails, or refers upward to the root without authority (lame).
fn half_bad() -> [(&'static str, &'static str, Script); 3] {
    [
        (
            "halfrefused.test.",
            "ns-refuse",
            Script::Every {
                rcode: ResponseCode::Refused,
            },
        ),
        (
            "halfservfail.test.",
            "ns-servfail",
            Script::Every {
                rcode: ResponseCode::ServFail,
            },
        ),
        (
            "halflame.test.",
            "ns-lame",
            Script::Lame {
                referral: vec![Record::from_rdata(
                    Name::root(),
                    3600,
                    RData::NS(NS(name("ns-root.nic."))),
                )],
            },
        ),
    ]
}

/// The good server's copy of a half-bad zone: both servers listed, as a real zone would.
fn half_bad_zone(bad: &str) -> String {
    let hosts: String = (1..=6)
        .map(|i| format!("h{i} IN A 192.0.2.7{i}\n"))
        .collect();
    format!(
        "$TTL 300\n@ IN SOA ns-good.nic. hostmaster.nic. 1 3600 600 86400 60\n\
         @ IN NS ns-good.nic.\n@ IN NS {bad}.nic.\n{hosts}"
    )
}

/// A CNAME chain across four zones on four servers under four TLDs:
/// www.shop.one → www.shop.cdn.two → e1.g.akam.three → hop.edge.four → end.edge.four.
const CHAIN_ZONES: [(&str, &str, &str); 4] = [
    (
        "shop.one.",
        "ns-c1",
        "www IN CNAME www.shop.cdn.two.\nimg IN CNAME e1.g.akam.three.\napi IN CNAME hop.edge.four.\n\
         gone IN CNAME missing.edge.four.\n",
    ),
    ("cdn.two.", "ns-c2", "www.shop IN CNAME e1.g.akam.three.\n"),
    ("akam.three.", "ns-c3", "e1.g IN CNAME hop.edge.four.\n"),
    (
        "edge.four.",
        "ns-c4",
        "hop IN CNAME end.edge.four.\nend IN A 192.0.2.140\nend IN AAAA 2001:db8::140\n",
    ),
];

fn chain_zone(ns: &str, body: &str) -> String {
    format!(
        "$TTL 300\n@ IN SOA {ns}.nic. hostmaster.nic. 1 3600 600 86400 60\n@ IN NS {ns}.nic.\n{body}"
    )
}

fn name(s: &str) -> Name {
    Name::from_ascii(s).unwrap()
}

fn a(owner: &str, ip: &str) -> Record {
    Record::from_rdata(name(owner), 300, RData::A(A(ip.parse().unwrap())))
}

fn aaaa(owner: &str, ip: &str) -> Record {
    Record::from_rdata(name(owner), 300, RData::AAAA(AAAA(ip.parse().unwrap())))
}

fn cname(owner: &str, target: &str) -> Record {
    Record::from_rdata(name(owner), 300, RData::CNAME(CNAME(name(target))))
}

fn tamper_scripts() -> Vec<Script> {
    let answer = |n: &str, qtype, answers| Script::Answer {
        name: name(n),
        qtype,
        answers,
    };
    vec![
        // An AAAA question answered with an A record only...
        answer(
            "wrongtype.tamper.test.",
            RecordType::AAAA,
            vec![a("wrongtype.tamper.test.", "192.0.2.51")],
        ),
        // ...or with both.
        answer(
            "mixed.tamper.test.",
            RecordType::AAAA,
            vec![
                aaaa("mixed.tamper.test.", "2001:db8::52"),
                a("mixed.tamper.test.", "192.0.2.52"),
            ],
        ),
        // The same CNAME twice.
        answer(
            "dup.tamper.test.",
            RecordType::A,
            vec![
                cname("dup.tamper.test.", "www.tamper.test."),
                cname("dup.tamper.test.", "www.tamper.test."),
                a("www.tamper.test.", "192.0.2.50"),
            ],
        ),
        // A record for another server's zone slipped into the answer...
        answer(
            "oob.tamper.test.",
            RecordType::A,
            vec![
                a("oob.tamper.test.", "192.0.2.53"),
                a("www.victim.test.", "203.0.113.66"),
            ],
        ),
        // ...or as the "answer" for a CNAME target in another zone.
        answer(
            "poison.tamper.test.",
            RecordType::A,
            vec![
                cname("poison.tamper.test.", "target.victim.test."),
                a("target.victim.test.", "203.0.113.66"),
            ],
        ),
        // NODATA without SOA (RFC 2308 §5: must not be cached; the cache decides).
        answer("nosoa.tamper.test.", RecordType::TXT, vec![]),
    ]
}

/// The running defect internet.
struct Internet {
    quirk: ScriptedAuthority,
    tamper: ScriptedAuthority,
    /// The bad servers of `half_bad()`, in its order.
    bad: Vec<ScriptedAuthority>,
    _others: Vec<ScriptedAuthority>,
}

async fn build() -> Internet {
    let at = |last: u8| SocketAddr::new(IpAddr::from([127, 0, 0, last]), 53);
    let mut others = vec![scripted(at(40), &[(".", ROOT_ZONE)], vec![]).await];
    let tlds: Vec<(&str, String)> = ["test.", "one.", "two.", "three.", "four."]
        .into_iter()
        .map(|o| (o, tld_zone(o)))
        .collect();
    let tld_refs: Vec<(&str, &str)> = tlds.iter().map(|(o, t)| (*o, t.as_str())).collect();
    others.push(scripted(at(41), &tld_refs, vec![]).await);

    let quirk_texts: Vec<(&str, String)> = QUIRKS
        .iter()
        .map(|(o, _, n)| (*o, quirk_zone(*n)))
        .collect();
    let quirk_refs: Vec<(&str, &str)> = quirk_texts.iter().map(|(o, t)| (*o, t.as_str())).collect();
    let quirk_scripts = QUIRKS
        .iter()
        .map(|(o, rcode, _)| Script::NsBelowApex {
            apex: name(o),
            rcode: *rcode,
        })
        .collect();
    let quirk = scripted(at(42), &quirk_refs, quirk_scripts).await;

    let child_texts: Vec<(String, String)> = QUIRKS
        .iter()
        .map(|(o, _, n)| (format!("sub.{o}"), child_zone(*n)))
        .collect();
    let child_refs: Vec<(&str, &str)> = child_texts
        .iter()
        .map(|(o, t)| (o.as_str(), t.as_str()))
        .collect();
    others.push(scripted(at(43), &child_refs, vec![]).await);

    let tamper = scripted(at(44), &[("tamper.test.", TAMPER_ZONE)], tamper_scripts()).await;
    others.push(scripted(at(45), &[("victim.test.", VICTIM_ZONE)], vec![]).await);
    for (i, (origin, ns, body)) in CHAIN_ZONES.iter().enumerate() {
        let text = chain_zone(ns, body);
        others.push(scripted(at(46 + i as u8), &[(origin, &text)], vec![]).await);
    }
    let mut bad = Vec::new();
    let mut good_texts = Vec::new();
    for (i, (origin, ns, script)) in half_bad().into_iter().enumerate() {
        bad.push(scripted(at(50 + i as u8), &[], vec![script]).await);
        good_texts.push((origin, half_bad_zone(ns)));
    }
    let good_refs: Vec<(&str, &str)> = good_texts.iter().map(|(o, t)| (*o, t.as_str())).collect();
    others.push(scripted(at(53), &good_refs, vec![]).await);
    Internet {
        quirk,
        tamper,
        bad,
        _others: others,
    }
}

static INTERNET: OnceLock<Internet> = OnceLock::new();

/// The defect internet, started on first use on a runtime thread of its own and kept until
/// the test binary exits (port 53 on an address can be bound once; tests run in parallel).
fn internet() -> &'static Internet {
    INTERNET.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("defect-internet".to_owned())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    tx.send(build().await).unwrap();
                    std::future::pending::<()>().await
                })
            })
            .unwrap();
        rx.recv()
            .expect("the defect internet starts (port 53 needs root or CAP_NET_BIND_SERVICE)")
    })
}

async fn chaperone() -> (&'static Internet, Harness) {
    let net = internet();
    let h = recursive_chaperone(IpAddr::from([127, 0, 0, 40]), 400).await;
    (net, h)
}

fn owners_of(m: &Message, t: RecordType) -> Vec<String> {
    m.answers
        .iter()
        .filter(|r| r.record_type() == t)
        .map(|r| r.name.to_string())
        .collect()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A server that answers minimised NS probes with REFUSED, FORMERR, SERVFAIL or a wrong
/// NXDOMAIN, but the full name correctly: the resolver falls back to asking the full name
/// (as unbound does) and follows the referral it gets, instead of SERVFAIL or NXDOMAIN.
#[tokio::test]
async fn failed_minimisation_probe_falls_back_to_the_full_name() {
    let (net, h) = chaperone().await;
    let staff = h.client("127.0.0.3");
    for (apex, probe_rcode, n) in QUIRKS {
        // A name below a delegation the broken server would have to reveal to the probe.
        let delegated = format!("www.sub.{apex}");
        let m = staff.udp(&delegated, RecordType::A).await;
        assert_eq!(
            rcode(&m),
            ResponseCode::NoError,
            "{delegated} ({probe_rcode}): {m:?}"
        );
        assert_eq!(ips(&m), vec![ip(&format!("192.0.2.1{n}"))], "{delegated}");

        // A name below an empty non-terminal of the broken server's own zone.
        let ent = format!("www.ent.{apex}");
        let m = staff.udp(&ent, RecordType::A).await;
        assert_eq!(
            rcode(&m),
            ResponseCode::NoError,
            "{ent} ({probe_rcode}): {m:?}"
        );
        assert_eq!(ips(&m), vec![ip(&format!("192.0.2.{n}"))], "{ent}");

        // The full name was asked of the broken server after its probe failed.
        let seen = net.quirk.seen();
        assert!(
            seen.iter().any(|q| *q == format!("{delegated} A")),
            "{apex}: {seen:?}"
        );
    }
    h.stop().await;
}

/// Records of a type not asked for are stripped: an AAAA question answered with an A
/// record is NODATA, and an A beside the AAAA is dropped.
#[tokio::test]
async fn records_of_the_wrong_type_are_stripped() {
    let (_net, h) = chaperone().await;
    let staff = h.client("127.0.0.3");

    let m = staff.udp("wrongtype.tamper.test.", RecordType::AAAA).await;
    assert_eq!(rcode(&m), ResponseCode::NoError, "{m:?}");
    assert!(m.answers.is_empty(), "{m:?}");

    let m = staff.udp("mixed.tamper.test.", RecordType::AAAA).await;
    assert_eq!(rcode(&m), ResponseCode::NoError, "{m:?}");
    assert_eq!(ips(&m), vec![ip("2001:db8::52")], "{m:?}");
    assert!(owners_of(&m, RecordType::A).is_empty(), "{m:?}");
    h.stop().await;
}

/// A CNAME the authority sent twice is served once.
#[tokio::test]
async fn a_duplicated_cname_is_served_once() {
    let (_net, h) = chaperone().await;
    let staff = h.client("127.0.0.3");
    let m = staff.udp("dup.tamper.test.", RecordType::A).await;
    assert_eq!(rcode(&m), ResponseCode::NoError, "{m:?}");
    assert_eq!(
        owners_of(&m, RecordType::CNAME),
        vec!["dup.tamper.test."],
        "{m:?}"
    );
    assert_eq!(ips(&m), vec![ip("192.0.2.50")], "{m:?}");
    // And again from the cache.
    let again = staff.udp("dup.tamper.test.", RecordType::A).await;
    assert_eq!(owners_of(&again, RecordType::CNAME).len(), 1, "{again:?}");
    h.stop().await;
}

/// Records for names outside the answering server's zone are neither served nor believed
/// later: the other zone's own server is asked.
#[tokio::test]
async fn out_of_bailiwick_records_are_stripped() {
    let (_net, h) = chaperone().await;
    let staff = h.client("127.0.0.3");

    let m = staff.udp("oob.tamper.test.", RecordType::A).await;
    assert_eq!(rcode(&m), ResponseCode::NoError, "{m:?}");
    assert_eq!(ips(&m), vec![ip("192.0.2.53")], "{m:?}");
    let m = staff.udp("www.victim.test.", RecordType::A).await;
    assert_eq!(ips(&m), vec![ip("192.0.2.60")], "{m:?}");

    // A CNAME into another zone, with a forged address for its target.
    let m = staff.udp("poison.tamper.test.", RecordType::A).await;
    assert_eq!(rcode(&m), ResponseCode::NoError, "{m:?}");
    assert_eq!(ips(&m), vec![ip("192.0.2.61")], "{m:?}");
    let m = staff.udp("target.victim.test.", RecordType::A).await;
    assert_eq!(ips(&m), vec![ip("192.0.2.61")], "{m:?}");
    h.stop().await;
}

/// CNAME chains of two to four hops, each hop in a zone of its own on a server of its own
/// under a TLD of its own, all glueless, resolved from cold.
#[tokio::test]
async fn cname_chains_across_zones_resolve_from_cold() {
    for (start_name, hops) in [
        ("www.shop.one.", 4),
        ("img.shop.one.", 3),
        ("api.shop.one.", 2),
    ] {
        for (qtype, want) in [
            (RecordType::A, "192.0.2.140"),
            (RecordType::AAAA, "2001:db8::140"),
        ] {
            let (_net, h) = chaperone().await;
            let staff = h.client("127.0.0.3");
            let m = staff.udp(start_name, qtype).await;
            assert_eq!(
                rcode(&m),
                ResponseCode::NoError,
                "{start_name} {qtype}: {m:?}"
            );
            assert_eq!(ips(&m), vec![ip(want)], "{start_name} {qtype}");
            assert_eq!(
                owners_of(&m, RecordType::CNAME).len(),
                hops,
                "{start_name} {qtype}: {m:?}"
            );
            h.stop().await;
        }
    }
}

/// A NODATA reply without SOA reaches the cache as it is (NOERROR, nothing in answer or
/// authority): the recursive path invents no SOA and no error.
#[tokio::test]
async fn nodata_without_soa_is_handed_on_as_it_is() {
    let (_net, h) = chaperone().await;
    let staff = h.client("127.0.0.3");
    let m = staff.udp("nosoa.tamper.test.", RecordType::TXT).await;
    assert_eq!(rcode(&m), ResponseCode::NoError, "{m:?}");
    assert!(m.answers.is_empty(), "{m:?}");
    assert!(
        !m.authorities
            .iter()
            .any(|r| r.record_type() == RecordType::SOA),
        "{m:?}"
    );
    h.stop().await;
}

/// Once the zone's servers are known, a name in it costs one question, asked with its own
/// type: no NS probe for the last label first (hickory-dns #3373, the patch in
/// patches/hickory-resolver).
#[tokio::test]
async fn the_last_label_is_asked_once_with_its_type() {
    let (net, h) = chaperone().await;
    let staff = h.client("127.0.0.3");
    let m = staff.udp("count.tamper.test.", RecordType::A).await;
    assert_eq!(ips(&m), vec![ip("192.0.2.59")], "{m:?}");
    let asked: Vec<String> = net
        .tamper
        .seen()
        .into_iter()
        .filter(|q| q.starts_with("count.tamper.test."))
        .collect();
    assert_eq!(asked, vec!["count.tamper.test. A"]);
    h.stop().await;
}

/// A zone with one bad name server beside a good one: the bad one REFUSEs, SERVFAILs, or
/// answers without authority with a referral up to the root (lame). Every name resolves
/// through the good server (as with unbound), instead of failing with SERVFAIL. A fresh
/// Chaperone orders a zone's servers at random, so fresh ones are started until the bad
/// server has been asked (each time about an even chance; 20 tries).
#[tokio::test]
async fn a_bad_name_server_beside_a_good_one_is_passed_over() {
    let net = internet();
    for (i, (origin, bad_ns, _)) in half_bad().iter().enumerate() {
        for n in 1..=20u8 {
            let (_net, h) = chaperone().await;
            let host = format!("h{}.{origin}", n % 6 + 1);
            let m = h.client("127.0.0.3").udp(&host, RecordType::A).await;
            assert_eq!(rcode(&m), ResponseCode::NoError, "{host} ({bad_ns}): {m:?}");
            assert_eq!(
                ips(&m),
                vec![ip(&format!("192.0.2.7{}", n % 6 + 1))],
                "{host}"
            );
            h.stop().await;
            if !net.bad[i].seen().is_empty() {
                break;
            }
        }
        let seen = net.bad[i].seen();
        assert!(
            seen.iter().any(|q| q.ends_with(&format!("{origin} A"))),
            "{bad_ns} never asked: {seen:?}"
        );
    }
}

/// A CNAME chain into another zone that ends in a name that does not exist: NXDOMAIN with
/// the chain in the answer and the last zone's SOA (RFC 6604 §3), as unbound answers.
#[tokio::test]
async fn nxdomain_at_the_end_of_a_chain_carries_the_chain() {
    let (_net, h) = chaperone().await;
    let staff = h.client("127.0.0.3");
    for _ in 0..2 {
        // Cold, then from the cache.
        let m = staff.udp("gone.shop.one.", RecordType::A).await;
        assert_eq!(rcode(&m), ResponseCode::NXDomain, "{m:?}");
        assert_eq!(
            owners_of(&m, RecordType::CNAME),
            vec!["gone.shop.one."],
            "{m:?}"
        );
        assert!(
            m.authorities
                .iter()
                .any(|r| r.record_type() == RecordType::SOA && r.name == name("edge.four.")),
            "{m:?}"
        );
    }
    h.stop().await;
}
