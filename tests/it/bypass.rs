//! Bypass protocols (issue 13 §3) end to end: DDR discovery (RFC 9462) answered NODATA and
//! never forwarded, and HTTPS/SVCB records rewritten without `ech` and blocked address
//! hints, checked with the real `dig` and `kdig`.

use std::net::{IpAddr, SocketAddr};
use std::process::Command;

use hickory_proto::op::{Message, MessageType, ResponseCode};
use hickory_proto::rr::{RData, Record, RecordType};
use tokio::net::UdpSocket;

use crate::support::*;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
timezone = "Europe/London"

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
cidrs = ["127.0.0.2/32"]
group = "pupils"

[[network]]
cidrs = ["127.0.0.3/32"]
group = "staff"

[group.pupils]
block = ["adult"]

[group.staff]
block = []
bypass_prevention = false

[admin]
listen = "127.0.0.1:0"
"#;

const FILES: &[(&str, &str)] = &[("adult.txt", "adult.listed.test\n203.0.113.66\n")];

/// An ECHConfigList: opaque bytes to DNS, base64 in zone files.
const ECH: &str = "AEX+DQBBpQAgACB/RSCtLvdMYjxOvYhYA7r5PbHCpsDyfvzXqjgRPMjdAgAEAAEAAQASY2xvdWRmbGFyZS1lY2guY29tAAA=";

/// What a hostile or merely helpful upstream says: a designated resolver of its own for
/// DDR, and HTTPS records with ECH and address hints.
fn zones() -> Vec<(&'static str, String)> {
    vec![
        (
            "resolver.arpa.",
            "$TTL 300\n@ IN SOA ns.resolver.arpa. h.resolver.arpa. 1 3600 600 86400 60\n\
             _dns IN SVCB 1 doh.upstream.test. alpn=h2 port=443\n"
                .to_owned(),
        ),
        (
            "example.test.",
            format!(
                "$TTL 300\n@ IN SOA ns.example.test. h.example.test. 1 3600 600 86400 60\n\
                 www IN A 192.0.2.10\n\
                 www IN HTTPS 1 . alpn=h2,h3 ipv4hint=192.0.2.10,203.0.113.66 ech={ECH} ipv6hint=2001:db8::10\n"
            ),
        ),
    ]
}

async fn setup() -> (Authority, Harness) {
    let z = zones();
    let zones: Vec<(&str, &str)> = z.iter().map(|(o, t)| (*o, t.as_str())).collect();
    let up = authority("127.0.0.1:0".parse().unwrap(), &zones).await;
    let h = start(CONFIG, up.addr, FILES, school_morning()).await;
    (up, h)
}

/// Run `tool` (dig or kdig) against `server` from `from` and return its output.
async fn run(tool: &str, from: &str, server: SocketAddr, args: &[&str]) -> String {
    let (tries, time) = match tool {
        "kdig" => ("+retry=0", "+timeout=2"),
        _ => ("+tries=1", "+time=2"),
    };
    let mut cmd = Command::new(tool);
    cmd.args([
        "-b",
        from,
        &format!("@{}", server.ip()),
        "-p",
        &server.port().to_string(),
        tries,
        time,
    ])
    .args(args);
    let out = tokio::task::spawn_blocking(move || cmd.output())
        .await
        .unwrap()
        .unwrap_or_else(|e| panic!("{tool} runs: {e}"));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn authority_section_has_soa(m: &Message) -> bool {
    m.authorities
        .iter()
        .any(|r| r.record_type() == RecordType::SOA)
}

/// RFC 9462: a pupil's discovery query gets NODATA with an SOA and EDE 17 (bypass
/// prevention, counted as a block), over the UDP fast path (dig) and TCP; staff, without
/// bypass prevention, get the reserved zone's authoritative NODATA. The upstream, which
/// would designate its own encrypted resolver, is never asked.
#[tokio::test]
async fn ddr_discovery_gets_nodata_and_is_never_forwarded() {
    let (up, h) = setup().await;
    let pupil = h.client("127.0.0.2");
    let staff = h.client("127.0.0.3");
    for (name, qtype) in [
        ("_dns.resolver.arpa.", RecordType::SVCB),
        ("_dns.resolver.arpa.", RecordType::A),
        ("resolver.arpa.", RecordType::SOA),
        ("resolver.arpa.", RecordType::AAAA),
    ] {
        for (who, c) in [("pupil", &pupil), ("staff", &staff)] {
            for m in [c.udp(name, qtype).await, c.tcp(name, qtype).await] {
                assert_eq!(rcode(&m), ResponseCode::NoError, "{who} {name} {qtype}");
                let want = usize::from(
                    who == "staff" && name == "resolver.arpa." && qtype == RecordType::SOA,
                );
                assert_eq!(m.answers.len(), want, "{who} {name} {qtype}: {m:?}");
                if want == 0 {
                    assert!(authority_section_has_soa(&m), "{who} {name} {qtype}: {m:?}");
                }
            }
        }
    }
    assert_eq!(up.count("_dns.resolver.arpa."), 0, "{:?}", up.seen());
    assert_eq!(up.count("resolver.arpa."), 0, "{:?}", up.seen());

    let dig = run("dig", "127.0.0.2", h.dns(), &["_dns.resolver.arpa", "SVCB"]).await;
    assert!(dig.contains("status: NOERROR"), "{dig}");
    assert!(dig.contains("ANSWER: 0, AUTHORITY: 1"), "{dig}");
    assert!(
        dig.contains("resolver.arpa.") && dig.contains("SOA"),
        "{dig}"
    );
    assert!(
        dig.contains("EDE: 17 (Filtered): (blocked by Chaperone: bypass prevention (DDR"),
        "{dig}"
    );
    let dig = run("dig", "127.0.0.3", h.dns(), &["_dns.resolver.arpa", "SVCB"]).await;
    assert!(dig.contains("status: NOERROR"), "{dig}");
    assert!(
        dig.contains("flags: qr aa"),
        "staff: an authoritative local answer: {dig}"
    );
    assert!(!dig.contains("EDE"), "staff: not a block: {dig}");

    let (_, text) = http(h.admin(), "GET", "/metrics", None, None).await;
    let blocked: f64 = text
        .lines()
        .filter(|l| l.starts_with("chaperone_blocks_total{"))
        .filter(|l| l.contains("group=\"pupils\"") && l.contains("category=\"bypass\""))
        .find_map(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0.0);
    assert!(
        blocked >= 9.0,
        "pupil DDR queries count as bypass blocks: {blocked}\n{text}"
    );
    h.stop().await;
    up.stop().await;
}

/// `chaperone explain` says what happens to a DDR query for each group.
#[tokio::test]
async fn explain_says_ddr_is_answered_nodata() {
    let (up, h) = setup().await;
    let cfg = h.config.to_str().unwrap().to_owned();
    let explain = |client: &'static str| {
        let cfg = cfg.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_chaperone"))
                .args(["explain", "--config", &cfg, "--client", client])
                .arg("_dns.resolver.arpa")
                .env_remove("RUST_LOG")
                .output()
                .expect("the chaperone binary runs")
        }
    };
    let pupil = tokio::task::spawn_blocking(explain("127.0.0.2"))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&pupil.stdout);
    assert!(
        pupil.status.success(),
        "{}",
        String::from_utf8_lossy(&pupil.stderr)
    );
    assert!(
        text.contains(
            "bypass prevention: resolver.arpa (DDR encrypted-resolver discovery) → NODATA"
        ),
        "{text}"
    );
    let staff = tokio::task::spawn_blocking(explain("127.0.0.3"))
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&staff.stdout);
    assert!(
        text.contains("RFC 9462") && text.contains("answered NODATA locally"),
        "{text}"
    );
    h.stop().await;
    up.stop().await;
}

/// A stand-in upstream that answers every query with the same answer records (already
/// rewritten by the test), so the real `dig` and `kdig` parse exactly what `strip` made.
async fn serve_records(records: Vec<Record>) -> SocketAddr {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        // Bounded: a test asks a handful of questions.
        for _ in 0..64 {
            let Ok((n, from)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            let mut m = Message::new(q.metadata.id, MessageType::Response, q.metadata.op_code);
            m.metadata.recursion_desired = q.metadata.recursion_desired;
            m.metadata.recursion_available = true;
            m.add_queries(q.queries.iter().cloned());
            m.add_answers(records.iter().cloned());
            if let Ok(wire) = m.to_vec() {
                let _ = sock.send_to(&wire, from).await;
            }
        }
    });
    addr
}

fn https_records(zone: &str) -> Vec<Record> {
    let text = format!("$TTL 300\n$ORIGIN example.test.\n{zone}");
    let (_, sets) = hickory_proto::serialize::txt::Parser::new(text, None, None)
        .parse()
        .expect("test records parse");
    sets.into_values()
        .flat_map(|s| s.records_without_rrsigs().cloned().collect::<Vec<_>>())
        .filter(|r| matches!(r.data, RData::HTTPS(_) | RData::SVCB(_)))
        .collect()
}

fn blocked(ip: IpAddr) -> bool {
    ip == "203.0.113.66".parse::<IpAddr>().unwrap()
        || ip == "2001:db8:bad::66".parse::<IpAddr>().unwrap()
}

/// The rewritten records are valid on the wire for real DNS tools: `dig` and `kdig` parse
/// them (no "malformed" / "FORMERR"), show no `ech`, keep the allowed hints in order, and
/// drop `mandatory` entries for removed keys. The unrewritten records are the control: the
/// same tools show their `ech`, so the assertions can fail.
#[tokio::test]
async fn stripped_https_records_parse_in_dig_and_kdig() {
    let zone = format!(
        "$TTL 300\n@ IN SOA ns.example.test. h.example.test. 1 3600 600 86400 60\n\
         www IN HTTPS 1 . alpn=h2,h3 ipv4hint=192.0.2.10,203.0.113.66 ech={ECH} ipv6hint=2001:db8::10,2001:db8:bad::66\n\
         www IN HTTPS 2 alt.example.test. mandatory=ipv4hint,ech port=8443 ipv4hint=203.0.113.66 ech={ECH}\n"
    );
    let original = https_records(&zone);
    assert_eq!(original.len(), 2);
    let mut stripped = original.clone();
    assert!(chaperone::inspect::svcb::strip(&mut stripped, blocked));

    let control = serve_records(original).await;
    let server = serve_records(stripped).await;
    for tool in ["dig", "kdig"] {
        let before = run(tool, "127.0.0.1", control, &["www.example.test", "HTTPS"]).await;
        assert!(before.contains("ech="), "{tool} control: {before}");
        assert!(before.contains("203.0.113.66"), "{tool} control: {before}");

        let after = run(tool, "127.0.0.1", server, &["www.example.test", "HTTPS"]).await;
        assert!(after.contains("NOERROR"), "{tool}: {after}");
        assert!(
            !after.to_lowercase().contains("malformed"),
            "{tool}: {after}"
        );
        assert!(!after.contains("ech="), "{tool}: {after}");
        assert!(!after.contains("203.0.113.66"), "{tool}: {after}");
        assert!(!after.contains("2001:db8:bad::66"), "{tool}: {after}");
        assert!(!after.contains("mandatory"), "{tool}: {after}");
        assert!(
            after.contains("alpn=h2,h3 ipv4hint=192.0.2.10 ipv6hint=2001:db8::10")
                || after.contains("alpn=\"h2,h3\" ipv4hint=192.0.2.10 ipv6hint=2001:db8::10"),
            "{tool}: {after}"
        );
        assert!(
            after.contains("alt.example.test. port=8443"),
            "{tool}: {after}"
        );
    }
}

/// A pupil's HTTPS answer comes without `ech` and without the hint in the blocked IP
/// range (`203.0.113.66` is listed in `adult`); staff (no bypass prevention) get the
/// upstream's record unchanged.
#[tokio::test]
async fn a_pupils_https_answer_comes_without_ech_and_staffs_with_it() {
    let (up, h) = setup().await;
    for (from, ech) in [("127.0.0.2", false), ("127.0.0.3", true)] {
        let c = h.client(from);
        // Twice: the second answer comes from the cache (and the wire cache fast path).
        for _ in 0..2 {
            for m in [
                c.udp("www.example.test.", RecordType::HTTPS).await,
                c.tcp("www.example.test.", RecordType::HTTPS).await,
            ] {
                let text: Vec<String> = m.answers.iter().map(|r| r.data.to_string()).collect();
                let text = text.join(" ");
                assert!(text.contains("h2"), "{from}: {text}");
                assert_eq!(text.contains("ech="), ech, "{from}: {text}");
                assert_eq!(text.contains("203.0.113.66"), ech, "{from}: {text}");
                assert!(text.contains("192.0.2.10"), "{from}: {text}");
            }
        }
        let dig = run("dig", from, h.dns(), &["www.example.test", "HTTPS"]).await;
        assert_eq!(dig.contains("ech="), ech, "{from}: {dig}");
    }
    h.stop().await;
    up.stop().await;
}
