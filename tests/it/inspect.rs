//! Response inspection end to end (issue 13 §1–2): an allowed name whose upstream answer
//! leads to a blocked CNAME target or a blocked address is blocked for the client whose
//! policy blocks it, on the UDP fast path (first answer and wire-cache hits), over TCP
//! (the general path and the answer cache), with the reason in EDE, the query log,
//! metrics and `explain`. The upstream is an authoritative server started by the test that
//! serves the tricky answers.

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::rr::rdata::opt::{EdnsCode, EdnsOption};
use serde_json::Value;

use crate::support::*;

const TECH: &str = "tech-token";

fn config() -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
timezone = "Europe/London"

[upstream]
servers = ["{{UPSTREAM}}"]
timeout_ms = 500
attempts = 1

[lists]
bundle = "lists.fstb"

[[lists.source]]
category = "gambling"
path = "gambling.txt"

[[lists.source]]
category = "games"
path = "games.txt"

[[lists.source]]
category = "adult"
path = "adult.txt"

[[lists.source]]
category = "illegal"
path = "illegal.txt"

[category.illegal]
verdict = "illegal"

[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"

[[network]]
cidrs = ["127.0.0.3/32"]
group = "staff"

[group.pupils]
block = ["gambling", "games", "adult"]

[group.staff]
block = ["gambling"]
bypass_prevention = false

[querylog]
retention_days = 30

[admin]
listen = "127.0.0.1:0"

[[admin.token]]
name = "Sam Technician"
role = "technician"
sha256 = "{}"
"#,
        token_hash(TECH)
    )
}

const FILES: &[(&str, &str)] = &[
    ("gambling.txt", "gambling.test\n"),
    ("games.txt", "games.test\n"),
    (
        "adult.txt",
        "adult.test\n203.0.113.66\n198.51.100.0/24\n2001:db8:bad::/48\n",
    ),
    ("illegal.txt", "abuse.test\n"),
];

/// The upstream: names on no list whose answers lead somewhere listed.
const ZONE: &str = r#"
$TTL 300
@              IN SOA ns.test. hostmaster.test. 1 3600 600 86400 60
@              IN NS  ns.test.
ns             IN A   192.0.2.53
cloaked        IN CNAME casino.gambling.test.
casino.gambling IN A  192.0.2.70
deep           IN CNAME hop1.cdn.test.
hop1.cdn       IN CNAME play.games.test.
play.games     IN A   192.0.2.71
front          IN A   203.0.113.66
front          IN A   192.0.2.72
ranged         IN A   198.51.100.9
front6         IN AAAA 2001:db8:bad::1
abusive        IN CNAME cdn.abuse.test.
cdn.abuse      IN A   192.0.2.73
clean          IN CNAME edge.cdn.test.
edge.cdn       IN A   192.0.2.74
"#;

async fn setup() -> (Authority, Harness) {
    let up = authority("127.0.0.1:0".parse().unwrap(), &[("test.", ZONE)]).await;
    let h = start(&config(), up.addr, FILES, school_morning()).await;
    (up, h)
}

fn ede(m: &Message) -> Option<(u16, String)> {
    let opt = m.edns.as_ref()?.options();
    match opt.get(EdnsCode::from(chaperone::answer::ede::OPTION_CODE))? {
        EdnsOption::Unknown(_, data) => chaperone::answer::ede::parse(data),
        _ => None,
    }
}

/// Every way a client can be answered: UDP twice (the fast path's first answer, then its
/// wire cache), TCP twice (the general path, then its answer cache).
async fn every_path(c: &Client, name: &str, qtype: RecordType) -> Vec<Message> {
    vec![
        c.udp(name, qtype).await,
        c.udp(name, qtype).await,
        c.tcp(name, qtype).await,
        c.tcp(name, qtype).await,
    ]
}

#[tokio::test]
async fn a_cname_chain_to_a_blocked_name_blocks_the_asked_name() {
    let (up, h) = setup().await;
    let pupil = h.client("127.0.0.2");
    let staff = h.client("127.0.0.3");
    // One hop to gambling (blocked for both groups), two hops to games (pupils only).
    for m in every_path(&pupil, "cloaked.test.", RecordType::A).await {
        assert_eq!(rcode(&m), ResponseCode::NXDomain, "{m:?}");
        assert!(m.answers.is_empty(), "nothing of the chain leaks: {m:?}");
        assert_eq!(
            ede(&m),
            Some((15, "blocked by Chaperone: gambling (CNAME target)".into()))
        );
    }
    for m in every_path(&staff, "cloaked.test.", RecordType::A).await {
        assert_eq!(
            rcode(&m),
            ResponseCode::NXDomain,
            "staff block gambling too"
        );
    }
    for m in every_path(&pupil, "deep.test.", RecordType::A).await {
        assert_eq!(rcode(&m), ResponseCode::NXDomain, "{m:?}");
        assert_eq!(
            ede(&m).map(|e| e.1),
            Some("blocked by Chaperone: games (CNAME target)".into())
        );
    }
    for m in every_path(&staff, "deep.test.", RecordType::A).await {
        assert_eq!(rcode(&m), ResponseCode::NoError);
        assert_eq!(
            ips(&m),
            vec!["192.0.2.71".parse::<std::net::IpAddr>().unwrap()]
        );
    }
    // A chain to nothing listed is answered whole.
    for m in every_path(&pupil, "clean.test.", RecordType::A).await {
        assert_eq!(
            ips(&m),
            vec!["192.0.2.74".parse::<std::net::IpAddr>().unwrap()]
        );
    }
    // The upstream was asked once per name: the blocks came from cached answers.
    assert_eq!(up.count("deep.test."), 1, "{:?}", up.seen());
    let blocked = metric(h.admin(), "chaperone_answer_blocks_total{via=\"cname\"}").await;
    assert!(blocked >= 12.0, "cname blocks counted: {blocked}");
    h.stop().await;
}

#[tokio::test]
async fn an_answer_address_in_a_blocked_range_blocks_the_name() {
    let (_up, h) = setup().await;
    let pupil = h.client("127.0.0.2");
    let staff = h.client("127.0.0.3");
    for (name, qtype) in [
        ("front.test.", RecordType::A),
        ("ranged.test.", RecordType::A),
        ("front6.test.", RecordType::AAAA),
    ] {
        for m in every_path(&pupil, name, qtype).await {
            assert_eq!(rcode(&m), ResponseCode::NXDomain, "{name}: {m:?}");
            assert_eq!(
                ede(&m).map(|e| e.1),
                Some("blocked by Chaperone: adult (answer address)".into()),
                "{name}"
            );
        }
        for m in every_path(&staff, name, qtype).await {
            assert_eq!(
                rcode(&m),
                ResponseCode::NoError,
                "staff allow adult: {name}"
            );
            assert!(!m.answers.is_empty(), "{name}");
        }
    }
    let blocked = metric(h.admin(), "chaperone_answer_blocks_total{via=\"address\"}").await;
    assert!(blocked >= 12.0, "address blocks counted: {blocked}");
    h.stop().await;
}

#[tokio::test]
async fn an_illegal_target_blocks_for_everyone_even_under_an_exception() {
    let (_up, h) = setup().await;
    // Staff do not block games; an exception lets pupils reach deep.test explicitly.
    let body = serde_json::json!({"domain": "deep.test", "groups": ["pupils"], "reason": "lesson", "requested_by": "Ms Patel", "days": 1});
    let (status, text) = http(
        h.admin(),
        "POST",
        "/exceptions",
        Some(TECH),
        Some(&body.to_string()),
    )
    .await;
    assert!(status == 200 || status == 201, "{status}: {text}");
    let pupil = h.client("127.0.0.2");
    for m in every_path(&pupil, "deep.test.", RecordType::A).await {
        assert_eq!(
            rcode(&m),
            ResponseCode::NoError,
            "an explicit unblock covers its chain"
        );
    }
    for from in ["127.0.0.2", "127.0.0.3"] {
        for m in every_path(&h.client(from), "abusive.test.", RecordType::A).await {
            assert_eq!(rcode(&m), ResponseCode::NXDomain, "{from}");
            assert_eq!(
                ede(&m).map(|e| e.1),
                Some(chaperone::answer::ede::ILLEGAL_TEXT.into())
            );
        }
    }
    h.stop().await;
}

#[tokio::test]
async fn the_query_log_and_explain_name_what_the_answer_led_to() {
    let (_up, h) = setup().await;
    let pupil = h.client("127.0.0.2");
    pupil.udp("cloaked.test.", RecordType::A).await;
    pupil.udp("front.test.", RecordType::A).await;
    if let Some(log) = h.running.as_ref().unwrap().pipeline.recorder().query_log() {
        log.flush();
    }
    let db = rusqlite::Connection::open(h.dir.path().join("chaperone.db")).unwrap();
    let rows: Vec<(String, String, Option<String>, Option<String>)> = db
        .prepare("SELECT name, decision, category, rule FROM queries WHERE client = '127.0.0.2' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(
        rows,
        vec![
            (
                "cloaked.test".into(),
                "blocked".into(),
                Some("gambling".into()),
                Some("CNAME target casino.gambling.test".into())
            ),
            (
                "front.test".into(),
                "blocked".into(),
                Some("adult".into()),
                Some("answer address 203.0.113.66".into())
            ),
        ]
    );

    let (status, text) = http(
        h.admin(),
        "GET",
        "/explain?client=127.0.0.2&name=deep.test",
        Some(TECH),
        None,
    )
    .await;
    assert_eq!(status, 200, "{text}");
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["decision"], "blocked", "{v}");
    assert_eq!(v["category"], "games", "{v}");
    assert_eq!(v["rule"], "CNAME target play.games.test", "{v}");
    let trace = v["trace"].to_string();
    assert!(
        trace.contains("CNAME target play.games.test is in games"),
        "{trace}"
    );
    // For staff the same answer is inspected and passes.
    let (_, text) = http(
        h.admin(),
        "GET",
        "/explain?client=127.0.0.3&name=deep.test",
        Some(TECH),
        None,
    )
    .await;
    let v: Value = serde_json::from_str(&text).unwrap();
    assert_eq!(v["decision"], "allowed", "{v}");
    assert!(
        v["trace"]
            .to_string()
            .contains("inspected, nothing blocked"),
        "{v}"
    );
    h.stop().await;
}

/// `config/example.toml` as shipped, made runnable in a temp dir: every listener on port
/// 0, file paths made absolute (they are relative to `config/`), the bundle and database
/// in the temp dir, and the test's upstream in place of the public resolvers.
fn runnable_example() -> String {
    let text = std::fs::read_to_string(crate_root().join("config/example.toml")).unwrap();
    let mut value: toml::Value = toml::from_str(&text).unwrap();
    fix_example(&mut value, "");
    let t = value.as_table_mut().unwrap();
    t["upstream"]["servers"] = toml::Value::Array(vec!["{UPSTREAM}".into()]);
    t["upstream"]["attempts"] = 1.into();
    t["upstream"]["timeout_ms"] = 500.into();
    t["lists"]["bundle"] = "lists.fstb".into();
    t["storage"]["path"] = "chaperone.db".into();
    toml::to_string(&value).unwrap()
}

fn fix_example(v: &mut toml::Value, key: &str) {
    match v {
        toml::Value::Table(t) => t.iter_mut().for_each(|(k, v)| fix_example(v, k)),
        toml::Value::Array(a) => a.iter_mut().for_each(|v| fix_example(v, key)),
        toml::Value::String(s) if key == "listen" => {
            let addr: std::net::SocketAddr = s.parse().unwrap();
            *s = std::net::SocketAddr::new(addr.ip(), 0).to_string();
        }
        toml::Value::String(s)
            if ["path", "cert", "key", "csv", "dir"].contains(&key) && !s.starts_with('/') =>
        {
            *s = crate_root().join("config").join(&*s).display().to_string();
        }
        _ => {}
    }
}

/// The issue's acceptance check on the example config itself: for a pupil, a CNAME to
/// `casino.gambling.test` and an answer `A 203.0.113.66` are blocked, DDR discovery gets
/// NODATA, and `www.tiktok.com` is blocked; staff reach the clean names.
#[tokio::test]
async fn the_example_config_blocks_every_evasion_for_pupils() {
    let zone = r#"
$TTL 300
@                IN SOA ns.example. h.example. 1 3600 600 86400 60
cloaked          IN CNAME casino.gambling.test.
front            IN A 203.0.113.66
clean            IN A 192.0.2.80
"#;
    let gambling =
        "$TTL 300\n@ IN SOA ns.example. h.example. 1 3600 600 86400 60\ncasino IN A 192.0.2.81\n";
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("example.", zone), ("gambling.test.", gambling)],
    )
    .await;
    let h = start(&runnable_example(), up.addr, &[], school_morning()).await;
    let pupil = h.client("127.0.0.2");
    for (name, qtype) in [
        ("cloaked.example.", RecordType::A),
        ("front.example.", RecordType::A),
        ("www.tiktok.com.", RecordType::A),
    ] {
        for m in [pupil.udp(name, qtype).await, pupil.tcp(name, qtype).await] {
            // Pupils get the block page's address (or NXDOMAIN without one).
            let ede = ede(&m).map(|e| e.0);
            assert_eq!(ede, Some(15), "{name} blocked for a pupil: {m:?}");
        }
    }
    for m in [
        pupil.udp("_dns.resolver.arpa.", RecordType::SVCB).await,
        pupil.tcp("_dns.resolver.arpa.", RecordType::SVCB).await,
    ] {
        assert_eq!(rcode(&m), ResponseCode::NoError);
        assert!(m.answers.is_empty(), "DDR gets NODATA: {m:?}");
    }
    let clean = pupil.udp("clean.example.", RecordType::A).await;
    assert_eq!(
        ips(&clean),
        vec!["192.0.2.80".parse::<std::net::IpAddr>().unwrap()]
    );
    h.stop().await;
}

/// The offline `chaperone explain --resolve` asks the configured upstream and inspects the
/// answer as the server does; without `--resolve` it explains the name alone.
#[tokio::test]
async fn explain_resolve_inspects_the_answer_from_the_command_line() {
    let (_up, h) = setup().await;
    // The test's upstream runs on this runtime: the command runs on a blocking thread.
    let config = h.config.clone();
    let run = |extra: &[&str]| {
        let mut args = vec!["explain".to_owned(), "--config".into()];
        args.push(config.display().to_string());
        args.extend(extra.iter().map(|a| a.to_string()));
        async move {
            let out = tokio::task::spawn_blocking(move || {
                std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
                    .args(&args)
                    .output()
            })
            .await
            .unwrap()
            .unwrap();
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
    };
    let text = run(&["--client", "127.0.0.2", "--resolve", "deep.test"]).await;
    assert!(
        text.contains("CNAME target play.games.test is in games"),
        "{text}"
    );
    assert!(
        text.contains("decision: blocked (category games, rule CNAME target play.games.test)"),
        "{text}"
    );
    let text = run(&[
        "--client",
        "127.0.0.2",
        "--resolve",
        "--type",
        "A",
        "front.test",
    ])
    .await;
    assert!(text.contains("rule answer address 203.0.113.66"), "{text}");
    let text = run(&["--client", "127.0.0.3", "--resolve", "deep.test"]).await;
    assert!(text.contains("decision: allowed"), "{text}");
    assert!(text.contains("inspected, nothing blocked"), "{text}");
    let text = run(&["--client", "127.0.0.2", "deep.test"]).await;
    assert!(
        text.contains("decision: allowed"),
        "without --resolve: {text}"
    );
    h.stop().await;
}
