//! The UDP fast path (`udp.rs` + `wire.rs`: blocks, refusals and wire-cache hits written
//! straight to the wire) and the general path (hickory's `Message` encoding, which TCP
//! always takes) must give the same answer to the same query. This sends one query of every
//! decision kind over UDP, then TCP, then UDP again (a wire-cache hit for allowed names),
//! and compares the three replies field by field.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::{Record, RecordType};

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
category = "games"
path = "games.txt"

[[lists.source]]
category = "social"
path = "social.txt"

[[lists.source]]
category = "illegal"
path = "illegal.txt"

[[lists.source]]
category = "ads"
path = "ads.rpz"
format = "rpz"

[category.illegal]
verdict = "illegal"

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
block = ["games", "social", "ads"]

[group.pupils.safe_search]
google = true

[[group.pupils.schedule]]
name = "social all day"
days = ["all"]
from = "00:00"
to = "23:59"
allow = ["social"]

[group.staff]
block = ["games"]
block_answer = "block_page"

[admin]
listen = "127.0.0.1:0"

[[admin.token]]
name = "Sam Technician"
role = "technician"
sha256 = "{TECH}"
"#;

const FILES: &[(&str, &str)] = &[
    ("games.txt", "games.listed.test\n"),
    ("social.txt", "social.listed.test\n"),
    ("illegal.txt", "abuse.listed.test\n"),
    (
        "ads.rpz",
        "$TTL 300\n$ORIGIN rpz.test.\n@ IN SOA ns.rpz.test. h.rpz.test. 1 3600 600 86400 60\n@ IN NS ns.rpz.test.\ntracker.ads.listed.test IN CNAME *.\n",
    ),
];

const GOOGLE_ZONE: &str = "$TTL 300\n@ IN SOA ns.google.com. h.google.com. 1 3600 600 86400 60\nwww IN A 192.0.2.1\nforcesafesearch IN A 216.239.38.120\n";

/// (client, name, type, what it exercises)
const QUERIES: &[(&str, &str, RecordType, &str)] = &[
    ("127.0.0.2", "www.example.test.", RecordType::A, "allowed"),
    (
        "127.0.0.2",
        "WwW.ExAmPlE.TeSt.",
        RecordType::AAAA,
        "allowed, mixed case",
    ),
    (
        "127.0.0.2",
        "mail.example.test.",
        RecordType::MX,
        "allowed, additional data",
    ),
    (
        "127.0.0.2",
        "alias.example.test.",
        RecordType::A,
        "allowed, CNAME",
    ),
    (
        "127.0.0.2",
        "nothing.example.test.",
        RecordType::A,
        "upstream NXDOMAIN",
    ),
    (
        "127.0.0.2",
        "www.example.test.",
        RecordType::TXT,
        "upstream NODATA",
    ),
    (
        "127.0.0.2",
        "play.games.listed.test.",
        RecordType::A,
        "exception",
    ),
    (
        "127.0.0.2",
        "chat.social.listed.test.",
        RecordType::A,
        "schedule allows",
    ),
    (
        "127.0.0.2",
        "tracker.ads.listed.test.",
        RecordType::A,
        "blocked, NODATA entry",
    ),
    ("127.0.0.2", "Abuse.Listed.Test.", RecordType::A, "illegal"),
    (
        "127.0.0.2",
        "www.google.com.",
        RecordType::A,
        "SafeSearch rewrite",
    ),
    (
        "127.0.0.2",
        "use-application-dns.net.",
        RecordType::A,
        "bypass prevention",
    ),
    (
        "127.0.0.3",
        "games.listed.test.",
        RecordType::A,
        "block page A",
    ),
    (
        "127.0.0.3",
        "games.listed.test.",
        RecordType::AAAA,
        "block page AAAA",
    ),
    (
        "127.0.0.3",
        "games.listed.test.",
        RecordType::MX,
        "block page, other type",
    ),
    (
        "127.0.0.3",
        "www.abuse.listed.test.",
        RecordType::A,
        "illegal for staff",
    ),
    ("127.0.0.9", "www.example.test.", RecordType::A, "refused"),
];

/// A reply as comparable text: header flags, rcode, OPT, and each section's records.
/// TTLs are kept apart: a second may pass between the replies.
fn shape(m: &Message) -> (String, Vec<u32>) {
    let h = &m.metadata;
    let edns = m.edns.as_ref().map(|e| {
        format!(
            "OPT v{} do={} size={} options={:?}",
            e.version(),
            e.flags().dnssec_ok,
            e.max_payload(),
            e.options().options
        )
    });
    let mut text = format!(
        "{:?} aa={} tc={} rd={} ra={} ad={} cd={} {:?}\n",
        h.response_code,
        h.authoritative,
        h.truncation,
        h.recursion_desired,
        h.recursion_available,
        h.authentic_data,
        h.checking_disabled,
        edns
    );
    let mut ttls = Vec::new();
    for (section, records) in [
        ("answer", &m.answers),
        ("authority", &m.authorities),
        ("additional", &m.additionals),
    ] {
        for r in records.iter() {
            text.push_str(&format!("{section}: {}\n", record_text(r)));
            ttls.push(r.ttl);
        }
    }
    (text, ttls)
}

fn record_text(r: &Record) -> String {
    format!(
        "{} {:?} {:?} {}",
        r.name.to_ascii().to_ascii_lowercase(),
        r.dns_class,
        r.record_type(),
        r.data
    )
}

#[tokio::test]
async fn the_fast_path_and_the_general_path_give_identical_answers() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[
            ("example.test.", EXAMPLE_ZONE),
            ("listed.test.", LISTED_ZONE),
            ("google.com.", GOOGLE_ZONE),
        ],
    )
    .await;
    let config = CONFIG.replace("{TECH}", &token_hash("technician-token"));
    let h = start(&config, up.addr, FILES, school_morning()).await;
    let exception = r#"{"domain": "games.listed.test", "groups": ["pupils"], "reason": "club research", "requested_by": "Mr Jones", "days": 1}"#;
    let (status, body) = http(
        h.admin(),
        "POST",
        "/exceptions",
        Some("technician-token"),
        Some(exception),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let mut kinds = std::collections::BTreeSet::new();
    for &(from, name, qtype, what) in QUERIES {
        let c = h.client(from);
        let first_udp = c.udp(name, qtype).await;
        let tcp = c.tcp(name, qtype).await;
        let cached_udp = c.udp(name, qtype).await;
        let (udp_shape, udp_ttls) = shape(&first_udp);
        for (how, reply) in [("TCP", &tcp), ("UDP again", &cached_udp)] {
            let (s, ttls) = shape(reply);
            assert_eq!(
                s, udp_shape,
                "{what}: {name} {qtype} from {from}: {how} differs from UDP"
            );
            for (a, b) in udp_ttls.iter().zip(&ttls) {
                assert!(
                    a.abs_diff(*b) <= 1,
                    "{what}: {name} {qtype}: TTL {b} over {how}, {a} over UDP"
                );
            }
        }
        kinds.insert(format!("{:?}", first_udp.metadata.response_code));
    }
    for code in [
        ResponseCode::NoError,
        ResponseCode::NXDomain,
        ResponseCode::Refused,
    ] {
        assert!(
            kinds.contains(&format!("{code:?}")),
            "no {code:?} among {kinds:?}"
        );
    }
    h.stop().await;
    up.stop().await;
}
