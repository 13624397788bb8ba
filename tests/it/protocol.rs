//! Protocol correctness and rate limiting (issue 11, items 3 and 14–19), through real
//! sockets: the root name, EDNS versions, UDP answer sizes and well-formed truncation,
//! unanswerable classes and types, compression pointers in the question, CNAMEs to
//! nothing, and per-client / REFUSED rate limits.

use std::net::SocketAddr;
use std::time::Duration;

use hickory_proto::op::{Edns, Message, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RData, RecordType};
use hickory_proto::serialize::binary::BinEncodable;
use tokio::net::UdpSocket;

use crate::support::*;

const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
{SERVER_EXTRA}

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
cidrs = ["127.0.0.0/24", "127.0.1.0/24", "127.0.2.0/24"]
group = "pupils"

[group.pupils]
block = ["adult"]

{RATELIMIT}
"#;

const ROOT_ZONE: &str = r#"
$TTL 300
@        IN SOA a.root.test. hostmaster.root.test. 1 3600 600 86400 60
@        IN NS  a.root.test.
@        IN A   192.0.2.1
"#;

/// The usual test internet plus records for sizes and CNAMEs.
fn zone_text() -> String {
    let mut z = EXAMPLE_ZONE.to_owned();
    for i in 0..40 {
        z.push_str(&format!(
            "large IN TXT \"record {i:02} of a large answer padded out to a hundred bytes ............................\"\n"
        ));
    }
    z.push_str("dangling IN CNAME nothing-here.example.test.\n");
    z.push_str("to-www IN CNAME www.example.test.\n");
    z
}

async fn setup(server_extra: &str, ratelimit: &str) -> (Authority, Harness) {
    let zone = zone_text();
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[(".", ROOT_ZONE), ("example.test.", &zone)],
    )
    .await;
    let config = CONFIG
        .replace("{SERVER_EXTRA}", server_extra)
        .replace("{RATELIMIT}", ratelimit);
    let h = start(
        &config,
        up.addr,
        &[("adult.txt", "adult.listed.test\n")],
        school_morning(),
    )
    .await;
    (up, h)
}

/// A query as bytes: with EDNS of `payload`, or without EDNS.
fn query(name: &str, qtype: RecordType, payload: Option<u16>) -> Vec<u8> {
    let mut m = Client::message(name, qtype);
    m.edns = payload.map(|p| {
        let mut e = Edns::new();
        e.set_max_payload(p);
        e
    });
    m.to_bytes().unwrap()
}

/// The header's counts and flags of a raw response.
fn flags(r: &[u8]) -> (bool, u8) {
    (r[2] & 0x02 != 0, r[3] & 0x0f)
}

/// Every record is whole and the counts match the bytes exactly (nothing trailing).
fn well_formed(r: &[u8]) -> bool {
    chaperone::transport::wire::ttl_fields(r).is_some()
}

/// Send `packets` from one socket at `from` at once and collect what comes back within
/// `quiet` of the last datagram (bounded by the number sent).
async fn burst(from: &str, server: SocketAddr, packets: &[Vec<u8>]) -> Vec<Vec<u8>> {
    let sock = UdpSocket::bind(SocketAddr::new(from.parse().unwrap(), 0))
        .await
        .unwrap();
    for p in packets {
        sock.send_to(p, server).await.unwrap();
    }
    let mut got = Vec::new();
    let mut buf = vec![0u8; 65535];
    while got.len() < packets.len() {
        match tokio::time::timeout(Duration::from_millis(800), sock.recv_from(&mut buf)).await {
            Ok(Ok((n, _))) => got.push(buf[..n].to_vec()),
            _ => break,
        }
    }
    got
}

/// Send `packets` on one TCP connection from `from` and count the answers that arrive
/// within a second.
async fn tcp_burst(from: &str, server: SocketAddr, packets: &[Vec<u8>]) -> usize {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let sock = tokio::net::TcpSocket::new_v4().unwrap();
    sock.bind(SocketAddr::new(from.parse().unwrap(), 0))
        .unwrap();
    let mut s = sock.connect(server).await.unwrap();
    for p in packets {
        s.write_all(&(p.len() as u16).to_be_bytes()).await.unwrap();
        s.write_all(p).await.unwrap();
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    let mut answered = 0;
    while answered < packets.len() {
        let mut len = [0u8; 2];
        match tokio::time::timeout_at(deadline, s.read_exact(&mut len)).await {
            Ok(Ok(_)) => {}
            _ => break,
        }
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        if s.read_exact(&mut buf).await.is_err() {
            break;
        }
        answered += 1;
    }
    answered
}

#[tokio::test]
async fn the_root_name_is_resolved_like_any_name() {
    let (up, h) = setup("", "").await;
    let c = h.client("127.0.0.2");
    for qtype in [RecordType::NS, RecordType::SOA, RecordType::A] {
        let udp = c.udp(".", qtype).await;
        assert_eq!(
            rcode(&udp),
            ResponseCode::NoError,
            "{qtype} over UDP: {udp:?}"
        );
        assert!(
            udp.answers.iter().any(|r| r.record_type() == qtype),
            "{qtype}: {udp:?}"
        );
        let tcp = c.tcp(".", qtype).await;
        assert_eq!(
            rcode(&tcp),
            ResponseCode::NoError,
            "{qtype} over TCP: {tcp:?}"
        );
    }
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn edns_version_other_than_zero_gets_badvers_with_an_opt_of_version_zero() {
    let (up, h) = setup("", "").await;
    let c = h.client("127.0.0.2");
    let mut m = Client::message("www.example.test.", RecordType::A);
    if let Some(e) = m.edns.as_mut() {
        e.set_version(1);
    }
    for answer in [c.send_udp(&m).await, c.send_tcp(&m).await] {
        let a = answer.expect("an answer");
        // BADVERS is 16: 1 in the OPT's extended bits, 0 in the header (hickory names
        // the value BADSIG, which shares it).
        assert_eq!(u16::from(rcode(&a)), 16, "{a:?}");
        assert_eq!(a.edns.as_ref().map(|e| e.rcode_high()), Some(1));
        let opt = a.edns.as_ref().expect("OPT in the reply");
        assert_eq!(opt.version(), 0);
        assert!(a.answers.is_empty());
    }
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn udp_answers_never_exceed_either_size_and_truncate_at_record_boundaries() {
    let (up, h) = setup("", "").await;
    let c = h.client("127.0.0.2");
    // Twice each: the first answer is resolved, the second comes from the wire cache.
    for (payload, most) in [
        (Some(4096), 1232),
        (None, 512),
        (Some(700), 700),
        (Some(4096), 1232),
        (None, 512),
    ] {
        for _ in 0..2 {
            let r = c
                .send_raw_udp(
                    &query("large.example.test.", RecordType::TXT, payload),
                    Duration::from_secs(2),
                )
                .await
                .expect("an answer");
            assert!(r.len() <= most, "{payload:?}: {} bytes > {most}", r.len());
            let (tc, code) = flags(&r);
            assert!(tc && code == 0, "{payload:?}: truncated NOERROR");
            assert!(well_formed(&r), "{payload:?}: whole records, counts match");
            let m = Message::from_vec(&r).unwrap();
            assert!(!m.answers.is_empty(), "as many records as fit");
            assert_eq!(m.edns.is_some(), payload.is_some(), "OPT kept if asked");
        }
    }
    let full = c.tcp("large.example.test.", RecordType::TXT).await;
    assert_eq!(full.answers.len(), 40, "TCP gets everything");
    assert!(!full.metadata.truncation);
    h.stop().await;
    up.stop().await;

    // A smaller configured size is advertised and honoured.
    let (up, h) = setup("edns_buffer_size = 900", "").await;
    let r = h
        .client("127.0.0.2")
        .send_raw_udp(
            &query("large.example.test.", RecordType::TXT, Some(4096)),
            Duration::from_secs(2),
        )
        .await
        .unwrap();
    assert!(r.len() <= 900 && well_formed(&r), "{} bytes", r.len());
    let m = Message::from_vec(&r).unwrap();
    assert_eq!(m.edns.unwrap().max_payload(), 900);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn classes_and_types_no_resolver_passes_on_get_unbounds_answers() {
    let (up, h) = setup("", "").await;
    let c = h.client("127.0.0.2");
    let ask = |name: &str, qtype: RecordType, class: DNSClass| {
        let mut m = Client::message(name, qtype);
        m.queries[0].set_query_class(class);
        m
    };
    let cases = [
        (RecordType::TXT, DNSClass::CH, ResponseCode::Refused),
        (RecordType::A, DNSClass::Unknown(0), ResponseCode::Refused),
        (RecordType::A, DNSClass::HS, ResponseCode::Refused),
        (RecordType::AXFR, DNSClass::IN, ResponseCode::Refused),
        (RecordType::IXFR, DNSClass::IN, ResponseCode::Refused),
        (RecordType::OPT, DNSClass::IN, ResponseCode::FormErr),
        (
            RecordType::Unknown(250),
            DNSClass::IN,
            ResponseCode::FormErr,
        ),
        (
            RecordType::Unknown(130),
            DNSClass::IN,
            ResponseCode::FormErr,
        ),
    ];
    for (qtype, class, want) in cases {
        for name in ["www.example.test.", "adult.listed.test."] {
            let m = ask(name, qtype, class);
            let udp = c.send_udp(&m).await.expect("a UDP answer");
            assert_eq!(rcode(&udp), want, "{name} {class} {qtype} over UDP");
            let tcp = c.send_tcp(&m).await.expect("a TCP answer");
            assert_eq!(rcode(&tcp), want, "{name} {class} {qtype} over TCP");
        }
    }
    // An unknown opcode (15) with CD set: NOTIMP, and no flag but RD echoed.
    let mut pkt = vec![0x42, 0x43, 0x79, 0x10, 0, 1, 0, 0, 0, 0, 0, 0];
    pkt.extend_from_slice(b"\x03www\x07example\x04test\x00\x00\x01\x00\x01");
    let r = c.send_raw_udp(&pkt, Duration::from_secs(2)).await.unwrap();
    assert_eq!(flags(&r).1, 4, "NOTIMP");
    assert_eq!(r[3] & 0x30, 0, "AD and CD not echoed");
    let any = c
        .send_udp(&ask("www.example.test.", RecordType::A, DNSClass::ANY))
        .await
        .unwrap();
    assert_eq!(rcode(&any), ResponseCode::NoError);
    assert_eq!(
        ips(&any),
        vec!["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_question_name_that_is_a_compression_pointer_gets_formerr_without_echo() {
    let (up, h) = setup("", "").await;
    let c = h.client("127.0.0.2");
    // Header (id 0x4242, RD, one question), then a name that is only a pointer to offset
    // 6 of the header, a zero byte (ANCOUNT) that decodes as the root name; type A, IN.
    let mut pkt = vec![0x42, 0x42, 0x01, 0x00, 0, 1, 0, 0, 0, 0, 0, 0];
    pkt.extend_from_slice(&[0xc0, 0x06, 0, 1, 0, 1]);
    let r = c
        .send_raw_udp(&pkt, Duration::from_secs(2))
        .await
        .expect("a UDP answer");
    assert_eq!(flags(&r).1, 1, "FORMERR");
    assert!(
        !r.windows(2).any(|w| w == [0xc0, 0x06]),
        "pointer not echoed: {r:?}"
    );
    assert_eq!(&r[4..6], &[0, 0], "no question echoed");
    // Over TCP.
    let mut s = tokio::net::TcpStream::connect(h.dns()).await.unwrap();
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    s.write_all(&(pkt.len() as u16).to_be_bytes())
        .await
        .unwrap();
    s.write_all(&pkt).await.unwrap();
    let mut len = [0u8; 2];
    tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut len))
        .await
        .unwrap()
        .unwrap();
    let mut r = vec![0u8; u16::from_be_bytes(len) as usize];
    s.read_exact(&mut r).await.unwrap();
    assert_eq!(flags(&r).1, 1, "FORMERR over TCP");
    assert!(
        !r.windows(2).any(|w| w == [0xc0, 0x06]),
        "pointer not echoed: {r:?}"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_cname_to_nothing_keeps_the_cname_with_the_negative_rcode() {
    let (up, h) = setup("", "").await;
    let c = h.client("127.0.0.2");
    let is_cname = |m: &Message, target: &str| {
        m.answers
            .iter()
            .any(|r| matches!(&r.data, RData::CNAME(t) if t.0 == Name::from_ascii(target).unwrap()))
    };
    // Twice over UDP (the second from the caches), then TCP.
    for round in 0..3 {
        let nx = match round {
            2 => c.tcp("dangling.example.test.", RecordType::A).await,
            _ => c.udp("dangling.example.test.", RecordType::A).await,
        };
        assert_eq!(rcode(&nx), ResponseCode::NXDomain, "round {round}: {nx:?}");
        assert!(
            is_cname(&nx, "nothing-here.example.test."),
            "round {round}: CNAME kept with NXDOMAIN: {nx:?}"
        );
        let nodata = match round {
            2 => c.tcp("to-www.example.test.", RecordType::TXT).await,
            _ => c.udp("to-www.example.test.", RecordType::TXT).await,
        };
        assert_eq!(rcode(&nodata), ResponseCode::NoError, "round {round}");
        assert!(
            is_cname(&nodata, "www.example.test."),
            "round {round}: CNAME kept with NODATA: {nodata:?}"
        );
    }
    h.stop().await;
    up.stop().await;
}

const LIMITS: &str = r#"
[ratelimit]
queries_per_second = 1
burst = 5
refused_per_second = 1
refused_burst = 2
slip = 2
ipv4_prefix = 24
exempt = ["127.0.2.0/24"]
"#;

fn counter(h: &Harness, limit: &str, action: &str) -> u64 {
    h.running
        .as_ref()
        .unwrap()
        .pipeline
        .state()
        .metrics()
        .ratelimited
        .with_label_values(&[limit, action])
        .get()
}

#[tokio::test]
async fn a_flood_from_one_address_is_limited_while_others_keep_their_answers() {
    let (up, h) = setup("", LIMITS).await;
    let c = h.client("127.0.0.2");
    // Warm the cache so the flood is answered from the fast path.
    c.udp("www.example.test.", RecordType::A).await;
    let flood: Vec<Vec<u8>> = (0..40)
        .map(|_| query("www.example.test.", RecordType::A, Some(1232)))
        .collect();
    let got = burst("127.0.0.2", h.dns(), &flood).await;
    // 4 tokens left after the warm-up, plus 1 a second while the burst lasts.
    assert!(got.len() <= 10, "{} of 40 answered", got.len());
    // Its /24 shares the bucket, over TCP too (no slip there): of ten queries on one
    // connection, only what the bucket refilled since is answered.
    let answered = tcp_burst("127.0.0.3", h.dns(), &flood[..10]).await;
    assert!(answered <= 4, "{answered} of 10 answered over TCP");
    // Another network is answered.
    let other = h
        .client("127.0.1.2")
        .udp("www.example.test.", RecordType::A)
        .await;
    assert_eq!(rcode(&other), ResponseCode::NoError);
    // The exempt network is never limited.
    let staff = burst("127.0.2.5", h.dns(), &flood).await;
    assert_eq!(staff.len(), 40, "exempt network answered in full");
    assert!(counter(&h, "query", "drop") >= 30);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_refused_flood_is_limited_and_every_second_answer_over_it_slips() {
    // The query limit is well above the REFUSED one, as by default.
    let limits = LIMITS
        .replace("queries_per_second = 1\n", "queries_per_second = 100\n")
        .replace("burst = 5\n", "burst = 100\n");
    let (up, h) = setup("", &limits).await;
    let flood: Vec<Vec<u8>> = (0..30)
        .map(|_| query("www.example.test.", RecordType::A, Some(1232)))
        .collect();
    // 127.0.9.9 is in no network.
    let got = burst("127.0.9.9", h.dns(), &flood).await;
    let refused = |r: &&Vec<u8>| flags(r).1 == 5;
    assert!(got.iter().all(|r| refused(&r)), "only REFUSED");
    let slips = got.iter().filter(|r| flags(r).0).count();
    let full = got.len() - slips;
    assert!(full <= 4, "{full} untruncated REFUSED answers");
    assert!((10..=20).contains(&slips), "{slips} slips of 30");
    assert!(got.len() < 30, "the rest dropped");
    assert!(got.iter().all(|r| well_formed(r)));
    assert!(counter(&h, "refused", "slip") >= 10);
    assert!(counter(&h, "refused", "drop") >= 10);
    h.stop().await;
    up.stop().await;
}
