//! Foundation: forwarding, per-group blocking, REFUSED for unknown clients, TCP, cache,
//! malformed packets. Everything through real sockets on loopback.

use std::time::Duration;

use hickory_proto::op::{Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::BinEncodable;

use crate::support::*;

pub const CONFIG: &str = r#"
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

[[lists.source]]
category = "ads"
path = "ads.hosts"
format = "hosts"

[block_page]
ipv4 = "192.0.2.200"
ipv6 = "2001:db8::200"

[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"

[[network]]
cidrs = ["127.0.0.3/32"]
group = "staff"

[group.pupils]
block = ["adult", "ads"]

[group.staff]
block = ["ads"]
block_answer = "block_page"
allow = ["fine.ads.listed.test"]
"#;

pub const ADULT: &str = "# sample\nadult.listed.test\nexplicit.listed.test  # inline comment\n";
pub const ADS: &str = "0.0.0.0 ads.listed.test\n0.0.0.0 tracker.listed.test\n";

async fn setup() -> (Authority, Harness) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[
            ("example.test.", EXAMPLE_ZONE),
            ("listed.test.", LISTED_ZONE),
        ],
    )
    .await;
    let h = start(
        CONFIG,
        up.addr,
        &[("adult.txt", ADULT), ("ads.hosts", ADS)],
        school_morning(),
    )
    .await;
    (up, h)
}

#[tokio::test]
async fn allowed_names_resolve_with_upstream_data() {
    let (up, h) = setup().await;
    let pupil = h.client("127.0.0.2");
    let a = pupil.udp("www.example.test.", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError);
    assert_eq!(
        ips(&a),
        vec!["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
    );
    assert!(a.metadata.recursion_available);
    let aaaa = pupil.udp("www.example.test.", RecordType::AAAA).await;
    assert_eq!(
        ips(&aaaa),
        vec!["2001:db8::10".parse::<std::net::IpAddr>().unwrap()]
    );
    let mx = pupil.udp("mail.example.test.", RecordType::MX).await;
    assert!(
        matches!(&mx.answers[0].data, RData::MX(m) if m.exchange == Name::from_ascii("mx.example.test.").unwrap())
    );
    let cname = pupil.udp("alias.example.test.", RecordType::A).await;
    assert!(
        matches!(&cname.answers[0].data, RData::CNAME(_)),
        "CNAME chain kept: {cname:?}"
    );
    assert_eq!(
        ips(&cname),
        vec!["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
    );
    let nx = pupil.udp("missing.example.test.", RecordType::A).await;
    assert_eq!(rcode(&nx), ResponseCode::NXDomain);
    assert!(
        nx.authorities
            .iter()
            .any(|r| matches!(r.data, RData::SOA(_))),
        "negative answer carries the SOA"
    );
    let nodata = pupil.udp("www.example.test.", RecordType::TXT).await;
    assert_eq!(rcode(&nodata), ResponseCode::NoError);
    assert!(nodata.answers.is_empty());
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn blocked_names_and_subdomains_get_the_group_block_answer_and_never_leave() {
    let (up, h) = setup().await;
    let pupil = h.client("127.0.0.2");
    for name in [
        "adult.listed.test.",
        "www.adult.listed.test.",
        "a.b.c.adult.listed.test.",
        "EXPLICIT.listed.test.",
    ] {
        let r = pupil.udp(name, RecordType::A).await;
        assert_eq!(
            rcode(&r),
            ResponseCode::NXDomain,
            "{name} blocked for pupils"
        );
        let soa = r
            .authorities
            .iter()
            .find(|r| matches!(r.data, RData::SOA(_)))
            .expect("block carries an SOA");
        assert!(
            soa.ttl <= 60,
            "short negative TTL so unblocks apply quickly"
        );
    }
    let sibling = pupil.udp("notadult.listed.test.", RecordType::A).await;
    assert_eq!(
        rcode(&sibling),
        ResponseCode::NoError,
        "a sibling name is not blocked"
    );
    assert_eq!(up.count("adult.listed.test."), 0);
    assert_eq!(up.count("www.adult.listed.test."), 0);
    assert_eq!(up.count("a.b.c.adult.listed.test."), 0);
    assert_eq!(up.count("notadult.listed.test."), 1);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn the_same_name_is_answered_differently_for_two_groups() {
    let (up, h) = setup().await;
    let pupil = h.client("127.0.0.2");
    let staff = h.client("127.0.0.3");
    assert_eq!(
        rcode(&pupil.udp("adult.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain
    );
    let s = staff.udp("adult.listed.test.", RecordType::A).await;
    assert_eq!(
        ips(&s),
        vec!["192.0.2.99".parse::<std::net::IpAddr>().unwrap()],
        "staff may reach it"
    );
    // ads is blocked for both, but staff get the block page instead of NXDOMAIN.
    assert_eq!(
        rcode(&pupil.udp("ads.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain
    );
    let page = staff.udp("ads.listed.test.", RecordType::A).await;
    assert_eq!(
        ips(&page),
        vec!["192.0.2.200".parse::<std::net::IpAddr>().unwrap()]
    );
    let page6 = staff.udp("ads.listed.test.", RecordType::AAAA).await;
    assert_eq!(
        ips(&page6),
        vec!["2001:db8::200".parse::<std::net::IpAddr>().unwrap()]
    );
    let mx = staff.udp("ads.listed.test.", RecordType::MX).await;
    assert_eq!(rcode(&mx), ResponseCode::NoError);
    assert!(mx.answers.is_empty(), "no made-up MX for a block page");
    // The staff allow list beats the ads category.
    let fine = staff.udp("fine.ads.listed.test.", RecordType::A).await;
    assert_eq!(
        ips(&fine),
        vec!["192.0.2.99".parse::<std::net::IpAddr>().unwrap()]
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_client_in_no_network_is_refused() {
    let (up, h) = setup().await;
    for from in ["127.0.0.9", "127.0.0.1"] {
        let r = h.client(from).udp("www.example.test.", RecordType::A).await;
        assert_eq!(
            rcode(&r),
            ResponseCode::Refused,
            "{from} is not a school network"
        );
        assert!(r.answers.is_empty());
    }
    assert_eq!(
        up.count("www.example.test."),
        0,
        "refused queries never go upstream"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn tcp_answers_like_udp() {
    let (up, h) = setup().await;
    let pupil = h.client("127.0.0.2");
    let a = pupil.tcp("www.example.test.", RecordType::A).await;
    assert_eq!(
        ips(&a),
        vec!["192.0.2.10".parse::<std::net::IpAddr>().unwrap()]
    );
    let b = pupil.tcp("adult.listed.test.", RecordType::A).await;
    assert_eq!(rcode(&b), ResponseCode::NXDomain);
    let refused = h
        .client("127.0.0.9")
        .tcp("www.example.test.", RecordType::A)
        .await;
    assert_eq!(rcode(&refused), ResponseCode::Refused);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_cache_hit_does_not_reach_the_upstream_again() {
    let (up, h) = setup().await;
    let pupil = h.client("127.0.0.2");
    let first = pupil.udp("www.example.test.", RecordType::A).await;
    let second = h
        .client("127.0.0.3")
        .udp("www.example.test.", RecordType::A)
        .await;
    assert_eq!(ips(&first), ips(&second));
    assert_eq!(
        up.count("www.example.test."),
        1,
        "second answer came from the cache"
    );
    assert!(second.answers[0].ttl <= 300);
    // Negative answers are cached too (RFC 2308).
    pupil.udp("nothing.example.test.", RecordType::A).await;
    pupil.udp("nothing.example.test.", RecordType::A).await;
    assert_eq!(up.count("nothing.example.test."), 1);
    // Different types are different entries.
    pupil.udp("www.example.test.", RecordType::AAAA).await;
    assert_eq!(up.count("www.example.test."), 2);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn large_answers_fit_in_udp_thanks_to_echoed_edns() {
    let (up, h) = setup().await;
    let r = h
        .client("127.0.0.2")
        .udp("big.example.test.", RecordType::TXT)
        .await;
    assert!(!r.metadata.truncation);
    assert!(r.edns.is_some(), "EDNS echoed");
    assert_eq!(r.answers.len(), 1);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn garbage_packets_do_not_stop_the_server() {
    let (up, h) = setup().await;
    let pupil = h.client("127.0.0.2");
    // Random bytes, a lone header fragment, a header claiming records that are not there.
    let junk: Vec<Vec<u8>> = vec![
        vec![0xde, 0xad, 0xbe, 0xef],
        vec![0; 5],
        vec![
            0x12, 0x34, 0x01, 0x00, 0x00, 0x05, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xff, 0xff,
        ],
        (0..600u32).map(|i| (i * 37 % 251) as u8).collect(),
    ];
    for j in &junk {
        let reply = pupil.send_raw_udp(j, Duration::from_millis(300)).await;
        if let Some(reply) = reply {
            let m = Message::from_vec(&reply).expect("any reply is a DNS message");
            assert_eq!(m.metadata.response_code, ResponseCode::FormErr);
        }
    }
    // A response sent to the server is ignored (no reflection).
    let mut resp = Client::message("www.example.test.", RecordType::A);
    resp.metadata.message_type = MessageType::Response;
    assert!(
        pupil
            .send_raw_udp(&resp.to_bytes().unwrap(), Duration::from_millis(300))
            .await
            .is_none()
    );
    // Two questions: FORMERR. An unsupported opcode: NOTIMP.
    let mut two = Client::message("www.example.test.", RecordType::A);
    two.add_query(Query::query(
        Name::from_ascii("mail.example.test.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        pupil.send_udp(&two).await.unwrap().metadata.response_code,
        ResponseCode::FormErr
    );
    let mut status = Message::new(99, MessageType::Query, OpCode::Status);
    status.add_query(Query::query(
        Name::from_ascii("www.example.test.").unwrap(),
        RecordType::A,
    ));
    assert_eq!(
        pupil
            .send_udp(&status)
            .await
            .unwrap()
            .metadata
            .response_code,
        ResponseCode::NotImp
    );
    // Still serving.
    let ok = pupil.udp("www.example.test.", RecordType::A).await;
    assert_eq!(ips(&ok).len(), 1);
    let ok_tcp = pupil.tcp("www.example.test.", RecordType::A).await;
    assert_eq!(ips(&ok_tcp).len(), 1);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn an_unreachable_upstream_gives_servfail_quickly() {
    // Nothing listens on this port: the forwarder gives up after its timeout.
    let dead: std::net::SocketAddr = "127.0.0.1:9".parse().unwrap();
    let h = start(
        CONFIG,
        dead,
        &[("adult.txt", ADULT), ("ads.hosts", ADS)],
        school_morning(),
    )
    .await;
    let r = h
        .client("127.0.0.2")
        .udp("www.example.test.", RecordType::A)
        .await;
    assert_eq!(rcode(&r), ResponseCode::ServFail);
    // Blocking still works without an upstream.
    let b = h
        .client("127.0.0.2")
        .udp("adult.listed.test.", RecordType::A)
        .await;
    assert_eq!(rcode(&b), ResponseCode::NXDomain);
    h.stop().await;
}
