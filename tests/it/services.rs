//! The app/service catalogue end to end: `service:NAME` and `service-group:NAME` in a
//! group's block list and schedules, an exception on a service, a prebuilt bundle, the
//! `chaperone services` command, `check` on a misspelt service, metrics and the report.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

const TECH: &str = "services-tech-token";

/// An upstream that answers every name of these zones (apex and below) with one address.
const ZONES: &[(&str, &str)] = &[
    ("tiktok.com.", "192.0.2.10"),
    ("roblox.com.", "192.0.2.11"),
    ("steamcommunity.com.", "192.0.2.12"),
    ("netflix.com.", "192.0.2.13"),
    ("nflxvideo.net.", "192.0.2.14"),
    ("listed.test.", "192.0.2.99"),
];

fn zone_text(origin: &str, addr: &str) -> String {
    format!(
        "$TTL 300\n@ IN SOA ns.{origin} h.{origin} 1 3600 600 86400 60\n@ IN NS ns.{origin}\n@ IN A {addr}\n* IN A {addr}\n"
    )
}

async fn upstream() -> Authority {
    let texts: Vec<(String, String)> = ZONES
        .iter()
        .map(|(o, a)| (o.to_string(), zone_text(o, a)))
        .collect();
    let zones: Vec<(&str, &str)> = texts
        .iter()
        .map(|(o, t)| (o.as_str(), t.as_str()))
        .collect();
    authority("127.0.0.1:0".parse().unwrap(), &zones).await
}

fn catalogue_dir() -> String {
    crate_root().join("lists/services").display().to_string()
}

/// The example config's shape: pupils block a list category, TikTok, every games service
/// (open at lunchtime) and Netflix; staff block nothing. `SOURCES` is where the list
/// sources go (left out for a prebuilt bundle).
const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
timezone = "Europe/London"

[upstream]
servers = ["{UPSTREAM}"]
timeout_ms = 500
attempts = 1

[services]
dir = "{SERVICES}"

[lists]
bundle = "lists.fstb"
{SOURCES}

[querylog]
enabled = true
format = "sqlite"

[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"

[[network]]
cidrs = ["127.0.0.3/32"]
group = "staff"

[group.pupils]
block = ["social", "service:tiktok", "service-group:games", "service:netflix"]

[[group.pupils.schedule]]
name = "lunchtime gaming"
days = ["weekdays"]
from = "12:00"
to = "13:00"
allow = ["service-group:games"]

[group.staff]
block = []

[admin]
listen = "127.0.0.1:0"

[[admin.token]]
name = "tech"
role = "technician"
sha256 = "{TOKEN}"
"#;

const SOURCES: &str = "[[lists.source]]\ncategory = \"social\"\npath = \"social.txt\"\n";
const FILES: &[(&str, &str)] = &[("social.txt", "social.listed.test\n")];

fn config(sources: &str) -> String {
    CONFIG
        .replace("{SERVICES}", &catalogue_dir())
        .replace("{SOURCES}", sources)
        .replace("{TOKEN}", &token_hash(TECH))
}

async fn setup(at: jiff::Timestamp) -> (Authority, Harness) {
    let up = upstream().await;
    let h = start(&config(SOURCES), up.addr, FILES, at).await;
    (up, h)
}

fn ts(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

async fn blocked(c: &Client, name: &str) -> bool {
    let m = c.udp(name, RecordType::A).await;
    match rcode(&m) {
        ResponseCode::NXDomain => true,
        ResponseCode::NoError if !ips(&m).is_empty() => false,
        other => panic!("{name}: unexpected answer {other:?}: {m:?}"),
    }
}

fn cli(args: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(args)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

#[tokio::test]
async fn www_tiktok_com_is_blocked_for_a_pupil_and_allowed_for_staff() {
    let (up, h) = setup(school_morning()).await;
    let (pupil, staff) = (h.client("127.0.0.2"), h.client("127.0.0.3"));
    assert!(
        blocked(&pupil, "www.tiktok.com.").await,
        "a pupil asks www.tiktok.com"
    );
    assert!(
        !blocked(&staff, "www.tiktok.com.").await,
        "staff block nothing"
    );
    assert!(
        blocked(&pupil, "social.listed.test.").await,
        "list categories still apply"
    );
    assert_eq!(
        metric(
            h.admin(),
            "chaperone_service_blocks_total{group=\"pupils\",service=\"tiktok\"}"
        )
        .await,
        1.0
    );
    assert_eq!(
        metric(
            h.admin(),
            "chaperone_blocks_total{category=\"service:tiktok\",group=\"pupils\"}"
        )
        .await,
        1.0,
        "a service's blocks add up in chaperone_blocks_total too"
    );
    assert_eq!(
        metric(
            h.admin(),
            "chaperone_service_blocks_total{group=\"staff\",service=\"tiktok\"}"
        )
        .await,
        0.0
    );

    // The governors' report shows the block as a service, not as an odd category name.
    h.running
        .as_ref()
        .unwrap()
        .pipeline
        .recorder()
        .query_log()
        .expect("query log on")
        .flush();
    let (ok, report) = cli(&[
        "report",
        "--config",
        h.config.to_str().unwrap(),
        "--since",
        "2026-11-01T00:00:00Z",
        "--format",
        "csv",
    ]);
    assert!(ok, "{report}");
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("Blocks by service,tiktok,1,")),
        "{report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("Blocks by group and service,pupils,tiktok,1,")),
        "{report}"
    );
    assert!(
        !report
            .lines()
            .any(|l| l.starts_with("Block rate by category,service:")),
        "services are not listed among categories: {report}"
    );
    assert!(
        report
            .lines()
            .any(|l| l.starts_with("Block rate by category,social,1,")),
        "{report}"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_service_group_in_a_schedule_opens_its_members_at_lunchtime() {
    let (up, h) = setup(school_morning()).await;
    let pupil = h.client("127.0.0.2");
    assert!(
        blocked(&pupil, "www.roblox.com.").await,
        "10:00: games services blocked"
    );
    assert!(blocked(&pupil, "steamcommunity.com.").await);
    h.clock.set(ts("2026-11-23T12:30:00Z"));
    assert!(!blocked(&pupil, "www.roblox.com.").await, "12:30: open");
    assert!(!blocked(&pupil, "steamcommunity.com.").await);
    assert!(
        blocked(&pupil, "www.tiktok.com.").await,
        "tiktok is not a games service"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn an_exception_on_a_service_unblocks_every_domain_of_it() {
    let (up, h) = setup(school_morning()).await;
    let pupil = h.client("127.0.0.2");
    assert!(blocked(&pupil, "www.netflix.com.").await);
    assert!(blocked(&pupil, "ipv4-c001.1.nflxvideo.net.").await);

    let (s, b) = http(
        h.admin(),
        "POST",
        "/exceptions",
        Some(TECH),
        Some(r#"{"domain": "service:netflixx", "groups": ["pupils"], "reason": "film studies", "requested_by": "Mr Okafor", "days": 1}"#),
    )
    .await;
    assert_eq!(s, 422, "{b}");
    assert!(
        b.contains("did you mean \\\"netflix\\\"") || b.contains("did you mean \"netflix\""),
        "{b}"
    );

    let (s, b) = http(
        h.admin(),
        "POST",
        "/exceptions",
        Some(TECH),
        Some(r#"{"domain": "service:netflix", "groups": ["pupils"], "reason": "film studies", "requested_by": "Mr Okafor", "days": 1}"#),
    )
    .await;
    assert_eq!(s, 201, "{b}");
    assert!(b.contains("service:netflix"), "{b}");
    assert!(!blocked(&pupil, "www.netflix.com.").await, "the site");
    assert!(
        !blocked(&pupil, "ipv4-c001.1.nflxvideo.net.").await,
        "and its video servers"
    );
    assert!(
        blocked(&pupil, "www.tiktok.com.").await,
        "other services stay blocked"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_prebuilt_bundle_from_compile_config_carries_the_services() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), FILES);
    let compile_config = dir.path().join("compile.toml");
    std::fs::write(
        &compile_config,
        config(SOURCES).replace("{UPSTREAM}", "192.0.2.53"),
    )
    .unwrap();
    let (ok, out) = cli(&["compile", "--config", compile_config.to_str().unwrap()]);
    assert!(ok, "{out}");
    assert!(out.contains("service:tiktok"), "{out}");

    let up = upstream().await;
    // Served from the bundle alone: no [[lists.source]].
    let h = start_in(dir, &config(""), up.addr, &[], school_morning()).await;
    let pupil = h.client("127.0.0.2");
    assert!(blocked(&pupil, "www.tiktok.com.").await);
    assert!(blocked(&pupil, "social.listed.test.").await);
    h.stop().await;
    up.stop().await;
}

#[test]
fn check_names_the_key_of_an_unknown_service_with_a_suggestion() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), FILES);
    let path = dir.path().join("bad.toml");
    let text = config(SOURCES)
        .replace("\"service:tiktok\"", "\"service:tiktokk\"")
        .replace("\"service-group:games\"]", "\"service-group:gamez\"]")
        .replace("{UPSTREAM}", "192.0.2.53");
    std::fs::write(&path, text).unwrap();
    let (ok, out) = cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains(
            "group.pupils.block[1]: unknown service \"tiktokk\" (did you mean \"tiktok\"?)"
        ),
        "{out}"
    );
    assert!(
        out.contains("group.pupils.schedule[0].allow[0]: unknown service group \"gamez\" (did you mean \"games\"?)"),
        "{out}"
    );
}

#[test]
fn a_bad_catalogue_file_fails_check_naming_the_file_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services");
    std::fs::create_dir_all(&services).unwrap();
    for f in ["tiktok.toml", "roblox.toml", "netflix.toml", "steam.toml"] {
        std::fs::copy(
            crate_root().join("lists/services").join(f),
            services.join(f),
        )
        .unwrap();
    }
    let bad = std::fs::read_to_string(services.join("roblox.toml"))
        .unwrap()
        .replace("\"rbxcdn.com\"", "\"rbx cdn.com\"");
    std::fs::write(services.join("roblox.toml"), bad).unwrap();
    write_files(dir.path(), FILES);
    let text = config(SOURCES)
        .replace(&catalogue_dir(), "services")
        .replace("{UPSTREAM}", "192.0.2.53");
    let path = dir.path().join("c.toml");
    std::fs::write(&path, text).unwrap();
    let (ok, out) = cli(&["check", "--config", path.to_str().unwrap()]);
    assert!(!ok, "{out}");
    assert!(
        out.contains("roblox.toml: domains[1]: \"rbx cdn.com\" is not a domain name"),
        "{out}"
    );
}

#[test]
fn chaperone_services_lists_the_catalogue_and_shows_one_service() {
    let dir = catalogue_dir();
    let (ok, all) = cli(&["services", "--dir", &dir]);
    assert!(ok, "{all}");
    let row = all
        .lines()
        .find(|l| l.starts_with("tiktok "))
        .expect("a tiktok row");
    assert!(
        row.contains("social,video") && row.contains("TikTok"),
        "{row}"
    );
    let (ok, ai) = cli(&["services", "--dir", &dir, "--group", "ai"]);
    assert!(ok, "{ai}");
    assert!(ai.lines().any(|l| l.starts_with("chatgpt ")), "{ai}");
    assert!(!ai.lines().any(|l| l.starts_with("tiktok ")), "{ai}");
    let (ok, one) = cli(&["services", "--dir", &dir, "tiktok"]);
    assert!(ok, "{one}");
    assert!(
        one.contains("service:tiktok (TikTok)") && one.contains("\n  tiktokcdn.com\n"),
        "{one}"
    );
    assert!(one.contains("source: "), "{one}");
    let (ok, json) = cli(&["services", "--dir", &dir, "--json"]);
    assert!(ok, "{json}");
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert!(v.as_array().unwrap().len() >= 60);
    let (ok, typo) = cli(&["services", "--dir", &dir, "robolx"]);
    assert!(!ok && typo.contains("did you mean \"roblox\""), "{typo}");
    let (ok, typo) = cli(&["services", "--dir", &dir, "--group", "gamez"]);
    assert!(!ok && typo.contains("did you mean \"games\""), "{typo}");
}

/// Checked from outside: in the example config a pupil asking www.tiktok.com is blocked,
/// staff are not.
#[test]
fn the_example_config_blocks_tiktok_for_pupils() {
    let example = crate_root().join("config/example.toml");
    let explain = |client: &str| {
        cli(&[
            "explain",
            "--config",
            example.to_str().unwrap(),
            "--client",
            client,
            "www.tiktok.com",
        ])
    };
    let (ok, pupil) = explain("127.0.0.2");
    assert!(ok, "{pupil}");
    assert!(
        pupil.contains("decision: blocked (category service:tiktok"),
        "{pupil}"
    );
    let (ok, staff) = explain("127.0.0.1");
    assert!(ok && staff.contains("decision: allowed"), "{staff}");
}

#[tokio::test]
async fn a_reload_reads_the_catalogue_again() {
    let dir = tempfile::tempdir().unwrap();
    let services = dir.path().join("services");
    std::fs::create_dir_all(&services).unwrap();
    for f in ["tiktok.toml", "roblox.toml", "netflix.toml", "steam.toml"] {
        std::fs::copy(
            crate_root().join("lists/services").join(f),
            services.join(f),
        )
        .unwrap();
    }
    let up = upstream().await;
    let text = config(SOURCES).replace(&catalogue_dir(), "services");
    let h = start_in(dir, &text, up.addr, FILES, school_morning()).await;
    let pupil = h.client("127.0.0.2");
    assert!(!blocked(&pupil, "www.listed.test.").await);
    let file = h.dir.path().join("services/tiktok.toml");
    let edited = std::fs::read_to_string(&file)
        .unwrap()
        .replace("\"tiktok.com\",", "\"tiktok.com\", \"www.listed.test\",");
    std::fs::write(&file, edited).unwrap();
    let (s, b) = http(h.admin(), "POST", "/reload", Some(TECH), None).await;
    assert_eq!(s, 200, "{b}");
    assert!(
        blocked(&pupil, "www.listed.test.").await,
        "a domain added to the service"
    );

    // A broken catalogue file keeps the running policy.
    std::fs::write(&file, "name = \"tiktok\"\n").unwrap();
    let (s, b) = http(h.admin(), "POST", "/reload", Some(TECH), None).await;
    assert_ne!(s, 200, "{b}");
    assert!(b.contains("tiktok.toml"), "{b}");
    assert!(
        blocked(&pupil, "www.tiktok.com.").await,
        "the old snapshot serves"
    );
    h.stop().await;
    up.stop().await;
}
