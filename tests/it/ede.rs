//! Blocked and refused answers say why (RFC 8914 Extended DNS Errors), on the UDP fast path
//! and the general path alike, read back by hickory and by `dig`.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};

use crate::policy::setup;
use crate::support::*;

/// The EDE (info-code, EXTRA-TEXT) in a reply, if any.
fn ede(m: &Message) -> Option<(u16, String)> {
    let opt = m.edns.as_ref()?.options();
    match opt.get(EdnsCode::from(chaperone::answer::ede::OPTION_CODE))? {
        EdnsOption::Unknown(_, data) => chaperone::answer::ede::parse(data),
        other => panic!("EDE option decoded as {other:?}"),
    }
}

#[tokio::test]
async fn blocked_and_refused_answers_carry_an_extended_dns_error() {
    let (up, h) = setup(school_morning()).await;
    let cases: &[(&str, &str, u16, &str)] = &[
        (
            "127.0.0.2",
            "games.listed.test.",
            15,
            "blocked by Chaperone: games",
        ),
        (
            "127.0.0.2",
            "www.games.listed.test.",
            15,
            "blocked by Chaperone: games",
        ),
        // Illegal categories: a fixed text naming nothing, as the block page.
        (
            "127.0.0.2",
            "abuse.listed.test.",
            15,
            "blocked by school policy",
        ),
        (
            "127.0.0.4",
            "www.example.test.",
            17,
            "blocked by Chaperone: not on the approved list",
        ),
        (
            "127.0.0.2",
            "use-application-dns.net.",
            17,
            "blocked by Chaperone: bypass prevention (Firefox DoH canary)",
        ),
        (
            "127.0.0.9",
            "www.example.test.",
            18,
            "Chaperone answers school networks only",
        ),
    ];
    for &(from, name, code, text) in cases {
        let c = h.client(from);
        let want = Some((code, text.to_owned()));
        let udp = c.udp(name, RecordType::A).await;
        assert_eq!(ede(&udp), want, "UDP {name} from {from}");
        let tcp = c.tcp(name, RecordType::A).await;
        assert_eq!(ede(&tcp), want, "TCP {name} from {from}");
        assert_eq!(rcode(&udp), rcode(&tcp), "{name} from {from}");
    }
    // Allowed names carry none, and a client without EDNS gets no OPT record at all.
    let pupil = h.client("127.0.0.2");
    assert_eq!(
        ede(&pupil.udp("www.example.test.", RecordType::A).await),
        None
    );
    assert_eq!(
        ede(&pupil.tcp("www.example.test.", RecordType::A).await),
        None
    );
    let mut plain = Client::message("games.listed.test.", RecordType::A);
    plain.edns = None;
    let r = pupil.send_udp(&plain).await.expect("an answer");
    assert_eq!(rcode(&r), ResponseCode::NXDomain);
    assert!(r.edns.is_none(), "no OPT for a client that sent none (UDP)");
    let r = pupil.send_tcp(&plain).await.expect("an answer");
    assert!(r.edns.is_none(), "no OPT for a client that sent none (TCP)");
    h.stop().await;
    up.stop().await;
}

/// `dig` prints the EDE; run it over UDP and over TCP from a pupil's address.
#[tokio::test]
async fn dig_shows_why_a_name_is_blocked() {
    let (up, h) = setup(school_morning()).await;
    let addr = h.dns();
    for tcp in [false, true] {
        let mut cmd = std::process::Command::new("dig");
        cmd.args([
            "-b",
            "127.0.0.2",
            &format!("@{}", addr.ip()),
            "-p",
            &addr.port().to_string(),
            "+tries=1",
            "+time=2",
            "games.listed.test",
            "A",
        ]);
        if tcp {
            cmd.arg("+tcp");
        }
        let out = tokio::task::spawn_blocking(move || cmd.output())
            .await
            .unwrap()
            .expect("dig runs");
        let text = String::from_utf8_lossy(&out.stdout);
        assert!(
            text.contains("; EDE: 15 (Blocked): (blocked by Chaperone: games)"),
            "tcp={tcp}: {text}"
        );
        assert!(text.contains("status: NXDOMAIN"), "tcp={tcp}: {text}");
    }
    h.stop().await;
    up.stop().await;
}
