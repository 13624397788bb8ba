//! Many schools in one deployment (issue 15 §3), through real sockets: two schools with
//! their own groups, networks, time zones, block-page names and scoped admin tokens, and a
//! trust-wide baseline no school can loosen.

use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::support::*;

const OAK_TECH: &str = "oak-technician-token";
const OAK_DSL: &str = "oak-dsl-token";
const ELM_TECH: &str = "elm-technician-token";
const TRUST_DSL: &str = "trust-dsl-token";

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
category = "social"
path = "social.txt"
[[lists.source]]
category = "games"
path = "games.txt"
[[lists.source]]
category = "gambling"
path = "gambling.txt"
[[lists.source]]
category = "illegal"
path = "illegal.txt"

[category.illegal]
verdict = "illegal"

[trust]
block = ["gambling"]

[block_page]
ipv4 = "192.0.2.200"
listen = "127.0.0.1:0"

[[network]]
cidrs = ["127.0.0.2/32"]
group = "oak-pupils"
[[network]]
cidrs = ["127.0.0.5/32"]
group = "elm-pupils"

[group.oak-pupils]
block = ["social", "games"]
block_answer = "block_page"
[[group.oak-pupils.schedule]]
name = "lunch"
days = ["weekdays"]
from = "12:00"
to = "13:00"
allow = ["games"]

[group.elm-pupils]
block = ["social", "games"]
block_answer = "block_page"
[[group.elm-pupils.schedule]]
name = "lunch"
days = ["weekdays"]
from = "12:00"
to = "13:00"
allow = ["games"]

[[school]]
id = "oak"
name = "Oak Primary"
timezone = "Asia/Tokyo"
groups = ["oak-pupils"]
contact = "Ms Tanaka, IT office"
block_page_text = "Oak pupils: ask your class teacher first."

[[school]]
id = "elm"
name = "Elm Academy"
groups = ["elm-pupils"]
contact = "Elm helpdesk, room 4"

[admin]
listen = "127.0.0.1:0"

[[admin.token]]
name = "Oak Technician"
role = "technician"
sha256 = "{}"
school = "oak"

[[admin.token]]
name = "Oak DSL"
role = "dsl"
sha256 = "{}"
school = "oak"

[[admin.token]]
name = "Elm Technician"
role = "technician"
sha256 = "{}"
school = "elm"

[[admin.token]]
name = "Trust DSL"
role = "dsl"
sha256 = "{}"
"#,
        token_hash(OAK_TECH),
        token_hash(OAK_DSL),
        token_hash(ELM_TECH),
        token_hash(TRUST_DSL)
    )
}

const FILES: &[(&str, &str)] = &[
    ("social.txt", "social.listed.test\n"),
    ("games.txt", "game.listed.test\n"),
    ("gambling.txt", "bet.listed.test\n"),
    ("illegal.txt", "abuse.listed.test\n"),
];

const OAK: &str = "127.0.0.2";
const ELM: &str = "127.0.0.5";

async fn setup(at: &str) -> (Authority, Harness) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let h = start(&config(), up.addr, FILES, at.parse().unwrap()).await;
    (up, h)
}

async fn call(
    h: &Harness,
    method: &str,
    path: &str,
    token: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let body = body.map(|b| b.to_string());
    let (status, text) = http(h.admin(), method, path, Some(token), body.as_deref()).await;
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

fn grant(domain: &str, groups: &[&str]) -> Value {
    json!({ "domain": domain, "groups": groups, "reason": "lesson", "requested_by": "Teacher", "days": 1 })
}

fn ids(v: &Value) -> Vec<i64> {
    v.as_array()
        .unwrap_or_else(|| panic!("a list: {v}"))
        .iter()
        .filter_map(|r| r["id"].as_i64())
        .collect()
}

async fn allowed(h: &Harness, from: &str, name: &str) -> bool {
    let m = h.client(from).udp(&format!("{name}."), RecordType::A).await;
    rcode(&m) == ResponseCode::NoError
        && m.answers.iter().any(|r| r.data.to_string() == "192.0.2.99")
}

#[tokio::test]
async fn school_tokens_see_and_change_only_their_school() {
    let (up, h) = setup("2026-11-23T10:00:00Z").await;

    // Each school's technician grants for its own groups; none named = all of its groups.
    let (s, elm_ex) = call(
        &h,
        "POST",
        "/exceptions",
        ELM_TECH,
        Some(grant("social.listed.test", &["elm-pupils"])),
    )
    .await;
    assert_eq!(s, 201, "{elm_ex}");
    let elm_id = elm_ex["id"].as_i64().unwrap();
    let (s, oak_ex) = call(
        &h,
        "POST",
        "/exceptions",
        OAK_TECH,
        Some(grant("social.listed.test", &[])),
    )
    .await;
    assert_eq!(s, 201, "{oak_ex}");
    assert_eq!(
        oak_ex["groups"],
        json!(["oak-pupils"]),
        "no groups = this school's groups"
    );
    let oak_id = oak_ex["id"].as_i64().unwrap();
    assert!(allowed(&h, OAK, "social.listed.test").await);

    // Oak may not grant for Elm's groups, nor see, fetch or revoke Elm's exception.
    let (s, body) = call(
        &h,
        "POST",
        "/exceptions",
        OAK_TECH,
        Some(grant("social.listed.test", &["elm-pupils"])),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    let (_, list) = call(&h, "GET", "/exceptions", OAK_TECH, None).await;
    assert_eq!(ids(&list), [oak_id], "{list}");
    let (s, _) = call(&h, "GET", &format!("/exceptions/{elm_id}"), OAK_TECH, None).await;
    assert_eq!(s, 404);
    let (s, _) = call(
        &h,
        "POST",
        &format!("/exceptions/{elm_id}/revoke"),
        OAK_TECH,
        Some(json!({"reason": "x"})),
    )
    .await;
    assert_eq!(s, 404);
    assert!(
        allowed(&h, ELM, "social.listed.test").await,
        "Elm's exception still stands"
    );

    // The trust sees both.
    let (_, list) = call(&h, "GET", "/exceptions", TRUST_DSL, None).await;
    let mut all = ids(&list);
    all.sort();
    assert_eq!(all, [elm_id, oak_id], "{list}");

    // The baseline: a school may not unblock a gambling site; the trust may.
    let (s, body) = call(
        &h,
        "POST",
        "/exceptions",
        OAK_TECH,
        Some(grant("bet.listed.test", &[])),
    )
    .await;
    assert_eq!(s, 403, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("trust-wide"),
        "{body}"
    );
    let (s, body) = call(
        &h,
        "POST",
        "/exceptions",
        TRUST_DSL,
        Some(grant("bet.listed.test", &["oak-pupils"])),
    )
    .await;
    assert_eq!(s, 201, "{body}");

    // Trust-wide data needs a trust token.
    let (s, _) = call(&h, "GET", "/audit", OAK_DSL, None).await;
    assert_eq!(s, 403);
    let (s, _) = call(&h, "GET", "/reports", OAK_TECH, None).await;
    assert_eq!(s, 403);

    // Incidents: each school's DSL sees its own; the trust sees both.
    assert!(!allowed(&h, OAK, "abuse.listed.test").await);
    assert!(!allowed(&h, ELM, "abuse.listed.test").await);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    let trust_groups = loop {
        let (_, rows) = call(&h, "GET", "/incidents", TRUST_DSL, None).await;
        let groups: Vec<String> = rows
            .as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["group"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default();
        if groups.len() >= 2 || tokio::time::Instant::now() > deadline {
            break groups;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert!(
        trust_groups.contains(&"oak-pupils".to_owned()),
        "{trust_groups:?}"
    );
    assert!(
        trust_groups.contains(&"elm-pupils".to_owned()),
        "{trust_groups:?}"
    );
    let (s, rows) = call(&h, "GET", "/incidents", OAK_DSL, None).await;
    assert_eq!(s, 200);
    let rows = rows.as_array().unwrap().clone();
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r["group"] == "oak-pupils"), "{rows:?}");

    // Metrics carry the school label.
    let blocked = metric(
        h.admin(),
        "chaperone_school_queries_total{outcome=\"blocked\",school=\"elm\"}",
    )
    .await;
    assert!(blocked >= 1.0, "elm blocked {blocked}");
    let incidents = metric(
        h.admin(),
        "chaperone_school_incidents_total{category=\"illegal\",school=\"oak\"}",
    )
    .await;
    assert_eq!(incidents, 1.0);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn schedules_follow_each_schools_time_zone() {
    // 03:30 UTC on a Monday: 12:30 in Tokyo (Oak's lunch), 03:30 in London.
    let (up, h) = setup("2026-11-23T03:30:00Z").await;
    assert!(
        allowed(&h, OAK, "game.listed.test").await,
        "Oak's lunch is open"
    );
    assert!(!allowed(&h, ELM, "game.listed.test").await, "Elm is asleep");
    // 12:30 UTC: 21:30 in Tokyo, 12:30 in London.
    h.clock.set("2026-11-23T12:30:00Z".parse().unwrap());
    assert!(!allowed(&h, OAK, "game.listed.test").await);
    assert!(
        allowed(&h, ELM, "game.listed.test").await,
        "Elm's lunch is open"
    );
    // The baseline holds for both schools at any time.
    assert!(!allowed(&h, OAK, "bet.listed.test").await);
    assert!(!allowed(&h, ELM, "bet.listed.test").await);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn the_block_page_names_the_clients_school() {
    let (up, h) = setup("2026-11-23T10:00:00Z").await;
    let addr = h.running.as_ref().unwrap().block_page_addr.unwrap();
    let page = |from: &'static str| async move {
        http_from(
            from,
            addr,
            "GET",
            "/",
            &[("Host", "social.listed.test")],
            None,
        )
        .await
    };
    let (status, _, oak) = page(OAK).await;
    assert_eq!(status, 403, "{oak}");
    assert!(oak.contains("Ms Tanaka, IT office"), "{oak}");
    assert!(oak.contains("ask your class teacher first"), "{oak}");
    assert!(oak.contains("JST"), "the time in Oak's zone: {oak}");
    let (_, _, elm) = page(ELM).await;
    assert!(
        elm.contains("Elm Academy") && elm.contains("Elm helpdesk, room 4"),
        "{elm}"
    );
    assert!(!elm.contains("Oak"), "{elm}");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn the_governors_report_runs_per_school() {
    let (up, h) = setup("2026-11-23T10:00:00Z").await;
    assert!(!allowed(&h, OAK, "social.listed.test").await);
    assert!(!allowed(&h, ELM, "social.listed.test").await);
    assert!(!allowed(&h, ELM, "abuse.listed.test").await);
    h.running
        .as_ref()
        .unwrap()
        .pipeline
        .recorder()
        .query_log()
        .expect("query log on")
        .flush();
    let cfg = h.config.to_str().unwrap();
    let report = |format: &str, extra: &[&str]| {
        let mut args = vec![
            "report",
            "--config",
            cfg,
            "--since",
            "2026-11-01T00:00:00Z",
            "--format",
            format,
        ];
        args.extend_from_slice(extra);
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
            .args(&args)
            .output()
            .unwrap();
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        (out.status.success(), text)
    };
    let (ok, oak) = report("csv", &["--school", "oak"]);
    assert!(ok, "{oak}");
    assert!(
        oak.lines()
            .any(|l| l.starts_with("Block rate by group,oak-pupils,")),
        "{oak}"
    );
    assert!(!oak.contains("elm-pupils"), "{oak}");
    assert!(
        !oak.lines()
            .any(|l| l.starts_with("Safeguarding incidents,illegal,illegal,")),
        "{oak}"
    );
    let (ok, elm) = report("csv", &["--school", "elm"]);
    assert!(ok, "{elm}");
    assert!(
        elm.lines()
            .any(|l| l.starts_with("Safeguarding incidents,illegal,illegal,1")),
        "{elm}"
    );
    let (ok, trust) = report("csv", &[]);
    assert!(ok, "{trust}");
    assert!(
        trust.contains("oak-pupils") && trust.contains("elm-pupils"),
        "{trust}"
    );
    let (ok, text) = report("text", &["--school", "oak"]);
    assert!(
        ok && text.contains("Chaperone filtering summary, Oak Primary,"),
        "{text}"
    );
    let (ok, bad) = report("csv", &["--school", "ash"]);
    assert!(!ok && bad.contains("no [[school]]"), "{bad}");
    h.stop().await;
    up.stop().await;
}

#[test]
fn check_refuses_a_school_loosening_the_baseline() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), FILES);
    let text = config().replace("{UPSTREAM}", "127.0.0.1:53").replace(
        "allow = [\"games\"]\n\n[group.elm-pupils]",
        "allow = [\"games\", \"gambling\"]\n\n[group.elm-pupils]",
    );
    let path = dir.path().join("chaperone.toml");
    std::fs::write(&path, text).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("group.oak-pupils.schedule[0].allow[1]: \"gambling\" is blocked trust-wide ([trust] block) and cannot be opened by a school"),
        "{text}"
    );
}
