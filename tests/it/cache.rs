//! The answer cache against real authorities started by the test, counting the questions
//! they receive: negative answers without an SOA are not cached (RFC 2308 §5), names
//! below a cached NXDOMAIN are answered without asking (RFC 8020), and a popular name
//! with a short TTL is refreshed before it expires (prefetch), so it never misses.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::RecordType;
use tokio::net::UdpSocket;

use crate::support::*;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[upstream]
servers = ["{UPSTREAM}"]
timeout_ms = 800
attempts = 1

[lists]
bundle = "lists.fstb"

[[lists.source]]
category = "adult"
path = "adult.txt"

[[network]]
cidrs = ["127.0.0.0/8"]
group = "all"

[group.all]
block = ["adult"]

[admin]
listen = "127.0.0.1:0"

[cache]
{CACHE}
"#;

async fn start_with(upstream: SocketAddr, cache: &str) -> Harness {
    start(
        &CONFIG.replace("{CACHE}", cache),
        upstream,
        &[("adult.txt", "adult.listed.test\n")],
        school_morning(),
    )
    .await
}

/// A scripted authority as some minimal or broken servers behave: every question gets a
/// negative answer without an SOA in the authority section — NXDOMAIN for names starting
/// with `gone.`, NODATA otherwise. It counts the questions it receives.
async fn no_soa_authority() -> (SocketAddr, Arc<AtomicUsize>, tokio::task::JoinHandle<()>) {
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let addr = sock.local_addr().unwrap();
    let asked = Arc::new(AtomicUsize::new(0));
    let counter = asked.clone();
    let task = tokio::spawn(async move {
        let mut buf = vec![0u8; 4096];
        loop {
            let Ok((n, src)) = sock.recv_from(&mut buf).await else {
                return;
            };
            let Ok(q) = Message::from_vec(&buf[..n]) else {
                continue;
            };
            counter.fetch_add(1, Ordering::SeqCst);
            let mut r = Message::new(q.metadata.id, MessageType::Response, OpCode::Query);
            r.metadata.recursion_desired = q.metadata.recursion_desired;
            r.metadata.authoritative = true;
            let gone = q
                .queries
                .first()
                .is_some_and(|q| q.name().to_ascii().starts_with("gone."));
            r.metadata.response_code = if gone {
                ResponseCode::NXDomain
            } else {
                ResponseCode::NoError
            };
            r.queries = q.queries.clone();
            if let Ok(bytes) = r.to_vec() {
                let _ = sock.send_to(&bytes, src).await;
            }
        }
    });
    (addr, asked, task)
}

/// RFC 2308 §5: a NODATA or NXDOMAIN reply without an SOA must not be cached; every
/// question goes upstream again, on the UDP fast path and on TCP alike.
#[tokio::test]
async fn negative_answer_without_soa_is_not_cached() {
    let (up, asked, task) = no_soa_authority().await;
    let h = start_with(up, "").await;
    let c = h.client("127.0.0.2");
    for (name, qtype, rcode) in [
        ("empty.nosoa.test.", RecordType::AAAA, ResponseCode::NoError),
        ("gone.nosoa.test.", RecordType::A, ResponseCode::NXDomain),
    ] {
        let before = asked.load(Ordering::SeqCst);
        for _ in 0..2 {
            let m = c.udp(name, qtype).await;
            assert_eq!(m.metadata.response_code, rcode, "{name}");
            assert!(m.answers.is_empty());
            let m = c.tcp(name, qtype).await;
            assert_eq!(m.metadata.response_code, rcode, "{name}");
        }
        assert_eq!(
            asked.load(Ordering::SeqCst) - before,
            4,
            "{name}: every question went upstream"
        );
    }
    assert_eq!(metric(h.admin(), "chaperone_cache_entries").await, 0.0);
    h.stop().await;
    task.abort();
}

/// The same negative answers with an SOA are cached (the control: the authority above
/// would be asked once).
#[tokio::test]
async fn negative_answer_with_soa_is_cached() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("example.test.", EXAMPLE_ZONE)],
    )
    .await;
    let h = start_with(up.addr, "").await;
    let c = h.client("127.0.0.2");
    for _ in 0..3 {
        let m = c.udp("mail.example.test.", RecordType::AAAA).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NoError);
        assert!(m.answers.is_empty());
        let m = c.tcp("gone.example.test.", RecordType::A).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(up.count("mail.example.test."), 1);
    assert_eq!(up.count("gone.example.test."), 1);
    h.stop().await;
    up.stop().await;
}

/// RFC 8020: once `gone.example.test.` is a cached NXDOMAIN, names below it are NXDOMAIN
/// without a question upstream (any type, UDP and TCP), while the cut is on; siblings are
/// still asked.
#[tokio::test]
async fn names_below_a_cached_nxdomain_are_not_asked() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("example.test.", EXAMPLE_ZONE)],
    )
    .await;
    let h = start_with(up.addr, "").await;
    let c = h.client("127.0.0.2");
    let m = c.udp("gone.example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    for qtype in [RecordType::A, RecordType::AAAA, RecordType::HTTPS] {
        let m = c.udp("a.b.gone.example.test.", qtype).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(!m.authorities.is_empty(), "the NXDOMAIN's SOA comes along");
        let m = c.tcp("x.GONE.example.test.", qtype).await;
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    }
    assert_eq!(up.count("a.b.gone.example.test."), 0);
    assert_eq!(up.count("x.gone.example.test."), 0);
    assert!(metric(h.admin(), "chaperone_cache_lookups_total{result=\"cut\"}").await >= 6.0);
    let m = c.udp("www.example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NoError);
    assert_eq!(up.count("www.example.test."), 1);
    h.stop().await;

    // With the cut off, the names below are asked.
    let h = start_with(up.addr, "nxdomain_cut = false").await;
    let c = h.client("127.0.0.2");
    c.udp("gone.example.test.", RecordType::A).await;
    let m = c.udp("c.gone.example.test.", RecordType::A).await;
    assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
    assert_eq!(up.count("c.gone.example.test."), 1);
    h.stop().await;
    up.stop().await;
}

const SHORT_ZONE: &str = r#"
$TTL 300
@        IN SOA ns.short.test. hostmaster.short.test. 1 3600 600 86400 60
@        IN NS  ns.short.test.
ns       IN A   192.0.2.53
popular  3 IN A 192.0.2.77
"#;

/// Ask `popular.short.test.` (TTL 3 s) every 200 ms for `secs` seconds; returns the
/// cache misses counted and the questions the authority received.
async fn ask_repeatedly(cache: &str, secs: u64) -> (f64, usize) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("short.test.", SHORT_ZONE)],
    )
    .await;
    let h = start_with(up.addr, cache).await;
    let c = h.client("127.0.0.2");
    for _ in 0..secs * 5 {
        let m = c.udp("popular.short.test.", RecordType::A).await;
        assert_eq!(
            ips(&m),
            vec!["192.0.2.77".parse::<std::net::IpAddr>().unwrap()]
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let misses = metric(h.admin(), "chaperone_cache_lookups_total{result=\"miss\"}").await;
    let asked = up.count("popular.short.test.");
    h.stop().await;
    up.stop().await;
    (misses, asked)
}

/// Prefetch: a name asked all the time is refreshed in its last second, in the background,
/// so after the first question it never misses, while the authority is still asked about
/// once per TTL. Without prefetch the same run misses once per TTL.
#[tokio::test]
async fn popular_name_with_short_ttl_never_misses() {
    let (misses, asked) = ask_repeatedly("", 8).await;
    assert_eq!(misses, 1.0, "only the first question missed");
    assert!(
        asked >= 3,
        "refreshed in the background: asked {asked} times"
    );
    let (misses, _) = ask_repeatedly("prefetch = false", 8).await;
    assert!(
        misses >= 2.0,
        "without prefetch it expires and misses: {misses}"
    );
}
