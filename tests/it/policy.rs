//! School policy end to end: schedules (with a clock set by the test), DST, allow-only
//! groups, nominated devices by EDNS MAC, illegal categories, SafeSearch, bypass prevention.

use std::net::IpAddr;

use chaperone::identify::EDNS_MAC_OPTION;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RData, RecordType};

use crate::support::*;

pub const CONFIG: &str = r#"
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
category = "ks1-approved"
path = "approved.txt"

[[lists.source]]
category = "doh"
path = "doh.txt"

[category.illegal]
verdict = "illegal"

[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"

[[network]]
cidrs = ["127.0.0.3/32"]
group = "staff"

[[network]]
cidrs = ["127.0.0.4/32"]
group = "ks1"

[[network]]
name = "pupil VLAN relay (dnsmasq add-mac)"
cidrs = ["127.0.0.6/32"]
group = "pupils"

[group.pupils]
block = ["games", "social"]

[group.pupils.safe_search]
google = true
bing = true
duckduckgo = true
youtube = "strict"

[[group.pupils.schedule]]
name = "lunchtime gaming"
days = ["weekdays"]
from = "12:00"
to = "13:00"
allow = ["games"]

[group.staff]
block = []
bypass_prevention = false
allow = ["abuse.listed.test"]

[group.staff.safe_search]
youtube = "moderate"

[group.ks1]
allow_only = true
approved = ["ks1-approved"]
allow = ["phonics.example.test"]

[[device]]
name = "e-safety coordinator laptop"
macs = ["02:00:5e:10:00:01"]
clients = ["127.0.0.5"]
allow = ["social"]
groups = ["pupils"]

[identify]
edns_mac_from = ["127.0.0.6/32"]
"#;

pub const FILES: &[(&str, &str)] = &[
    ("games.txt", "games.listed.test\n"),
    ("social.txt", "social.listed.test\n"),
    ("illegal.txt", "abuse.listed.test\n"),
    ("approved.txt", "learning.listed.test\n"),
    ("doh.txt", "dns.doh.listed.test\n"),
];

pub const SAFE_ZONES: &[(&str, &str)] = &[
    (
        "google.com.",
        "$TTL 300\n@ IN SOA ns.google.com. h.google.com. 1 3600 600 86400 60\nwww IN A 192.0.2.1\nforcesafesearch IN A 216.239.38.120\nforcesafesearch IN AAAA 2001:4860:4802:32::78\n",
    ),
    (
        "youtube.com.",
        "$TTL 300\n@ IN SOA ns.youtube.com. h.youtube.com. 1 3600 600 86400 60\nwww IN A 192.0.2.2\nrestrict IN A 216.239.38.120\nrestrictmoderate IN A 216.239.38.119\n",
    ),
    (
        "bing.com.",
        "$TTL 300\n@ IN SOA ns.bing.com. h.bing.com. 1 3600 600 86400 60\nwww IN A 192.0.2.3\nstrict IN CNAME strict.edge.bing.com.\nstrict.edge IN A 204.79.197.220\n",
    ),
    (
        "use-application-dns.net.",
        "$TTL 300\n@ IN SOA ns.use-application-dns.net. h.use-application-dns.net. 1 3600 600 86400 60\n@ IN A 192.0.2.4\n",
    ),
];

pub async fn setup(at: jiff::Timestamp) -> (Authority, Harness) {
    let mut zones = vec![
        ("example.test.", EXAMPLE_ZONE),
        ("listed.test.", LISTED_ZONE),
    ];
    zones.extend_from_slice(SAFE_ZONES);
    let up = authority("127.0.0.1:0".parse().unwrap(), &zones).await;
    let h = start(CONFIG, up.addr, FILES, at).await;
    (up, h)
}

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

#[tokio::test]
async fn the_same_name_at_lunchtime_and_after() {
    // Monday 23 November 2026: GMT, so UTC = London time.
    let (up, h) = setup(ts("2026-11-23T12:30:00Z")).await;
    let pupil = h.client("127.0.0.2");
    assert_eq!(
        ips(&pupil.udp("games.listed.test.", RecordType::A).await),
        vec![ip("192.0.2.99")],
        "lunchtime: games allowed"
    );
    h.clock.set(ts("2026-11-23T14:00:00Z"));
    assert_eq!(
        rcode(&pupil.udp("games.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain,
        "14:00: blocked again"
    );
    h.clock.set(ts("2026-11-28T12:30:00Z"));
    assert_eq!(
        rcode(&pupil.udp("games.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain,
        "Saturday: no lunchtime window"
    );
    // Social media is not in the window.
    h.clock.set(ts("2026-11-23T12:30:00Z"));
    assert_eq!(
        rcode(&pupil.udp("social.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn schedules_follow_the_school_clock_across_dst() {
    // Clocks go forward on Sunday 29 March 2026; Monday 30 March is BST (UTC+1).
    // 11:30 UTC on Monday 30 March is 12:30 in school: lunchtime.
    let (up, h) = setup(ts("2026-03-30T11:30:00Z")).await;
    let pupil = h.client("127.0.0.2");
    assert_eq!(
        ips(&pupil.udp("games.listed.test.", RecordType::A).await),
        vec![ip("192.0.2.99")]
    );
    // 12:30 UTC that day is 13:30 BST: closed, although it is "12:30" in UTC.
    h.clock.set(ts("2026-03-30T12:30:00Z"));
    assert_eq!(
        rcode(&pupil.udp("games.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain
    );
    // The Friday before (GMT), 12:30 UTC is 12:30 in school: open.
    h.clock.set(ts("2026-03-27T12:30:00Z"));
    assert_eq!(
        ips(&pupil.udp("games.listed.test.", RecordType::A).await),
        vec![ip("192.0.2.99")]
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn key_stage_1_reaches_only_approved_sites() {
    let (up, h) = setup(school_morning()).await;
    let ks1 = h.client("127.0.0.4");
    assert_eq!(
        ips(&ks1.udp("learning.listed.test.", RecordType::A).await),
        vec![ip("192.0.2.99")]
    );
    assert_eq!(
        ips(&ks1.udp("www.learning.listed.test.", RecordType::A).await),
        vec![ip("192.0.2.99")],
        "subdomains of approved sites"
    );
    assert_eq!(
        ips(&ks1.udp("phonics.example.test.", RecordType::A).await).len(),
        0,
        "allowed name resolves (NXDOMAIN upstream here)"
    );
    assert_eq!(
        rcode(&ks1.udp("phonics.example.test.", RecordType::A).await),
        ResponseCode::NXDomain
    );
    assert!(
        up.count("phonics.example.test.") >= 1,
        "the allow-list name went upstream"
    );
    for name in [
        "www.example.test.",
        "games.listed.test.",
        "anything.else.test.",
    ] {
        assert_eq!(
            rcode(&ks1.udp(name, RecordType::A).await),
            ResponseCode::NXDomain,
            "{name} is not approved"
        );
    }
    assert_eq!(
        up.count("www.example.test."),
        0,
        "unapproved names never leave"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_nominated_device_is_recognised_by_its_edns_mac_from_a_trusted_relay() {
    let (up, h) = setup(school_morning()).await;
    let relay = h.client("127.0.0.6");
    assert_eq!(
        rcode(&relay.udp("social.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain,
        "the relay's own queries are a pupil's"
    );
    let mac = || EdnsOption::Unknown(EDNS_MAC_OPTION, vec![0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
    for (how, reply) in [
        (
            "UDP",
            relay
                .udp_with_option("social.listed.test.", RecordType::A, mac())
                .await,
        ),
        (
            "TCP",
            relay
                .tcp_with_option("social.listed.test.", RecordType::A, mac())
                .await,
        ),
    ] {
        assert_eq!(
            ips(&reply),
            vec![ip("192.0.2.99")],
            "the coordinator's laptop may investigate ({how})"
        );
    }
    let other = EdnsOption::Unknown(EDNS_MAC_OPTION, vec![0x02, 0x00, 0x5e, 0x10, 0x00, 0x02]);
    assert_eq!(
        rcode(
            &relay
                .udp_with_option("social.listed.test.", RecordType::A, other)
                .await
        ),
        ResponseCode::NXDomain
    );
    // The text form dnsmasq sends with add-mac=text works too.
    let text = EdnsOption::Unknown(EDNS_MAC_OPTION, b"02:00:5e:10:00:01".to_vec());
    assert_eq!(
        ips(&relay
            .udp_with_option("social.listed.test.", RecordType::A, text)
            .await),
        vec![ip("192.0.2.99")]
    );
    // The device exception does not reach other categories.
    assert_eq!(
        rcode(
            &relay
                .udp_with_option("games.listed.test.", RecordType::A, mac())
                .await
        ),
        ResponseCode::NXDomain
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_pupil_cannot_claim_a_nominated_devices_mac() {
    let (up, h) = setup(school_morning()).await;
    let pupil = h.client("127.0.0.2");
    let mac = || EdnsOption::Unknown(EDNS_MAC_OPTION, vec![0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
    for (how, reply) in [
        (
            "UDP",
            pupil
                .udp_with_option("social.listed.test.", RecordType::A, mac())
                .await,
        ),
        (
            "TCP",
            pupil
                .tcp_with_option("social.listed.test.", RecordType::A, mac())
                .await,
        ),
    ] {
        assert_eq!(
            rcode(&reply),
            ResponseCode::NXDomain,
            "a MAC written by the pupil's own device is not believed ({how})"
        );
    }
    let ignored = h.running.as_ref().unwrap().pipeline.state().metrics();
    assert_eq!(
        ignored.edns_mac_ignored.get(),
        2,
        "each forged MAC is counted"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn illegal_categories_are_blocked_for_everyone_whatever_the_exceptions() {
    let (up, h) = setup(school_morning()).await;
    for from in ["127.0.0.2", "127.0.0.3", "127.0.0.4"] {
        let r = h
            .client(from)
            .udp("abuse.listed.test.", RecordType::A)
            .await;
        assert_eq!(
            rcode(&r),
            ResponseCode::NXDomain,
            "blocked for {from}, even with staff allow listing it"
        );
        let r = h
            .client(from)
            .udp("sub.abuse.listed.test.", RecordType::AAAA)
            .await;
        assert_eq!(rcode(&r), ResponseCode::NXDomain);
    }
    let mac = EdnsOption::Unknown(EDNS_MAC_OPTION, vec![0x02, 0x00, 0x5e, 0x10, 0x00, 0x01]);
    assert_eq!(
        rcode(
            &h.client("127.0.0.2")
                .udp_with_option("abuse.listed.test.", RecordType::A, mac)
                .await
        ),
        ResponseCode::NXDomain
    );
    assert_eq!(up.count("abuse.listed.test."), 0);
    let metrics = &h
        .running
        .as_ref()
        .unwrap()
        .pipeline
        .state()
        .metrics()
        .render();
    assert!(
        metrics.contains("chaperone_incidents_total{category=\"illegal\"} 7"),
        "{metrics}"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn illegal_categories_cannot_be_scheduled_or_excepted() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("example.test.", EXAMPLE_ZONE)],
    )
    .await;
    let bad = CONFIG
        .replace(
            "allow = [\"social\"]\ngroups",
            "allow = [\"social\", \"illegal\"]\ngroups",
        )
        .replace("allow = [\"games\"]", "allow = [\"games\", \"illegal\"]");
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), FILES);
    let path = dir.path().join("chaperone.toml");
    std::fs::write(&path, bad.replace("{UPSTREAM}", &up.addr.to_string())).unwrap();
    let err = match chaperone::state::load(&path, Vec::new()) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("an illegal category in a schedule must be rejected"),
    };
    assert!(err.contains("group.pupils.schedule[0].allow[1]"), "{err}");
    assert!(err.contains("device[0].allow[1]"), "{err}");
    assert!(err.contains("illegal category"), "{err}");
    up.stop().await;
}

#[tokio::test]
async fn safe_search_answers_carry_the_cname_and_the_target_addresses() {
    let (up, h) = setup(school_morning()).await;
    let pupil = h.client("127.0.0.2");
    let g = pupil.udp("www.google.com.", RecordType::A).await;
    assert_eq!(rcode(&g), ResponseCode::NoError);
    assert_eq!(g.answers.len(), 2, "{g:?}");
    assert_eq!(
        g.answers[0].name,
        Name::from_ascii("www.google.com.").unwrap()
    );
    assert!(
        matches!(&g.answers[0].data, RData::CNAME(c) if c.0 == Name::from_ascii("forcesafesearch.google.com.").unwrap())
    );
    assert_eq!(
        g.answers[1].name,
        Name::from_ascii("forcesafesearch.google.com.").unwrap()
    );
    assert_eq!(ips(&g), vec![ip("216.239.38.120")]);
    let g6 = pupil.udp("www.google.com.", RecordType::AAAA).await;
    assert_eq!(ips(&g6), vec![ip("2001:4860:4802:32::78")]);
    assert_eq!(
        up.count("www.google.com."),
        0,
        "the unsafe name is never resolved"
    );

    let y = pupil.udp("www.youtube.com.", RecordType::A).await;
    assert!(
        matches!(&y.answers[0].data, RData::CNAME(c) if c.0 == Name::from_ascii("restrict.youtube.com.").unwrap())
    );
    assert_eq!(ips(&y), vec![ip("216.239.38.120")]);
    let staff_y = h
        .client("127.0.0.3")
        .udp("www.youtube.com.", RecordType::A)
        .await;
    assert!(
        matches!(&staff_y.answers[0].data, RData::CNAME(c) if c.0 == Name::from_ascii("restrictmoderate.youtube.com.").unwrap())
    );
    assert_eq!(
        ips(&staff_y),
        vec![ip("216.239.38.119")],
        "staff get moderate mode"
    );

    // A target that is itself a CNAME: the whole chain is returned.
    let b = pupil.udp("www.bing.com.", RecordType::A).await;
    let names: Vec<String> = b.answers.iter().map(|r| r.name.to_string()).collect();
    assert_eq!(
        names,
        ["www.bing.com.", "strict.bing.com.", "strict.edge.bing.com."]
    );
    assert_eq!(ips(&b), vec![ip("204.79.197.220")]);

    // Staff have no Google rewrite: they get the real answer.
    assert_eq!(
        ips(&h
            .client("127.0.0.3")
            .udp("www.google.com.", RecordType::A)
            .await),
        vec![ip("192.0.2.1")]
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn bypass_prevention_answers_the_doh_canary_and_private_relay_with_nxdomain() {
    let (up, h) = setup(school_morning()).await;
    let pupil = h.client("127.0.0.2");
    for name in [
        "use-application-dns.net.",
        "mask.icloud.com.",
        "mask-h2.icloud.com.",
        "dns.doh.listed.test.",
    ] {
        assert_eq!(
            rcode(&pupil.udp(name, RecordType::A).await),
            ResponseCode::NXDomain,
            "{name}"
        );
    }
    assert_eq!(
        rcode(
            &pupil
                .udp("use-application-dns.net.", RecordType::AAAA)
                .await
        ),
        ResponseCode::NXDomain
    );
    assert_eq!(up.count("use-application-dns.net."), 0);
    // Staff have bypass prevention off: the canary resolves, so Firefox may use DoH there.
    assert_eq!(
        ips(&h
            .client("127.0.0.3")
            .udp("use-application-dns.net.", RecordType::A)
            .await),
        vec![ip("192.0.2.4")]
    );
    h.stop().await;
    up.stop().await;
}

/// "Allowed" means "not blocked", not "unfiltered": an allow entry, an exception and an
/// allow-only approval each lift a block, and SafeSearch / Restricted Mode still apply.
#[tokio::test]
async fn allows_exceptions_and_approvals_keep_safe_search_on() {
    let config = CONFIG
        .replace(
            "[group.pupils]\nblock = [\"games\", \"social\"]\n",
            "[group.pupils]\nblock = [\"games\", \"social\"]\nallow = [\"bing.com\"]\n",
        )
        .replace(
            "[group.ks1]\n",
            "[group.ks1.safe_search]\ngoogle = true\n\n[group.ks1]\n",
        )
        + &format!(
            "\n[admin]\nlisten = \"127.0.0.1:0\"\n\n[[admin.token]]\nname = \"Sam Technician\"\nrole = \"technician\"\nsha256 = \"{}\"\n",
            token_hash("technician-token")
        );
    let files: Vec<(&str, &str)> = FILES
        .iter()
        .map(|&(f, text)| match f {
            "approved.txt" => (f, "learning.listed.test\ngoogle.com\n"),
            _ => (f, text),
        })
        .collect();
    let mut zones = vec![
        ("example.test.", EXAMPLE_ZONE),
        ("listed.test.", LISTED_ZONE),
    ];
    zones.extend_from_slice(SAFE_ZONES);
    let up = authority("127.0.0.1:0".parse().unwrap(), &zones).await;
    let h = start(&config, up.addr, &files, school_morning()).await;

    let exception = r#"{"domain": "youtube.com", "groups": ["pupils"], "reason": "class video", "requested_by": "Ms Patel", "days": 1}"#;
    let (status, body) = http(
        h.admin(),
        "POST",
        "/exceptions",
        Some("technician-token"),
        Some(exception),
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let cname = |m: &hickory_proto::op::Message| match m.answers.first().map(|r| &r.data) {
        Some(RData::CNAME(c)) => c.0.to_ascii(),
        other => format!("no CNAME: {other:?}"),
    };
    let pupil = h.client("127.0.0.2");
    let ks1 = h.client("127.0.0.4");
    for (who, client, name, target) in [
        (
            "pupils, exception",
            &pupil,
            "www.youtube.com.",
            "restrict.youtube.com.",
        ),
        (
            "pupils, allow entry",
            &pupil,
            "www.bing.com.",
            "strict.bing.com.",
        ),
        (
            "KS1, approved",
            &ks1,
            "www.google.com.",
            "forcesafesearch.google.com.",
        ),
    ] {
        for (how, reply) in [
            ("UDP", client.udp(name, RecordType::A).await),
            ("TCP", client.tcp(name, RecordType::A).await),
        ] {
            assert_eq!(cname(&reply), target, "{who}: {name} over {how}");
        }
    }
    assert_eq!(
        up.count("www.youtube.com."),
        0,
        "the unsafe name never leaves"
    );
    h.stop().await;
    up.stop().await;
}
