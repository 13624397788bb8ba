//! Monitoring through the real binary and real sockets: the query log (SQLite and JSON
//! lines: every field, pseudonyms, retention), `chaperone report` (governors' summary with
//! no personal data, the DSL's detail), the provisioned Grafana dashboard against what
//! `/metrics` really exports, the docker files, and a real Prometheus scraping Chaperone.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::support::*;

const TECH: &str = "monitoring-technician-token";

/// Pupils at .2 (and the media suite laptop at .5), staff at .3 and .6, nobody at .9.
fn config(querylog: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

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
category = "illegal"
path = "illegal.txt"

[category.illegal]
verdict = "illegal"

[[network]]
cidrs = ["127.0.0.2/32", "127.0.0.5/32"]
group = "pupils"

[[network]]
cidrs = ["127.0.0.3/32", "127.0.0.6/32"]
group = "staff"

[group.pupils]
block = ["social", "games"]

[group.staff]
block = ["games"]

[[device]]
name = "media suite laptop"
clients = ["127.0.0.5"]
allow = ["games"]
groups = ["pupils"]

[querylog]
{querylog}

[admin]
listen = "127.0.0.1:0"
max_exception_days = 14

[[admin.token]]
name = "Sam Technician"
role = "technician"
sha256 = "{}"
"#,
        token_hash(TECH)
    )
}

const FILES: &[(&str, &str)] = &[
    ("social.txt", "social.listed.test\n"),
    ("games.txt", "games.listed.test\n"),
    ("illegal.txt", "abuse.listed.test\n"),
];

const SQLITE_LOG: &str = r#"retention_days = 30
pseudonymise = ["staff"]"#;

async fn setup(querylog: &str) -> (Authority, Harness) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[
            ("example.test.", EXAMPLE_ZONE),
            ("listed.test.", LISTED_ZONE),
        ],
    )
    .await;
    let h = start(&config(querylog), up.addr, FILES, school_morning()).await;
    (up, h)
}

/// The standard traffic: 10 queries, 4 blocked (pupils 3 of 5, staff 1 of 4), 1 refused
/// (counted, not logged: 9 query records).
async fn traffic(h: &Harness) {
    let ask = |from: &'static str, name: &'static str, qtype: RecordType, want: ResponseCode| {
        let c = h.client(from);
        async move {
            let m = c.udp(name, qtype).await;
            assert_eq!(rcode(&m), want, "{from} asking {name} {qtype}");
        }
    };
    use RecordType::{A, AAAA};
    use ResponseCode::{NXDomain, NoError, Refused};
    ask("127.0.0.2", "www.example.test.", A, NoError).await;
    ask("127.0.0.2", "social.listed.test.", A, NXDomain).await;
    ask("127.0.0.2", "abuse.listed.test.", A, NXDomain).await;
    ask("127.0.0.5", "games.listed.test.", A, NoError).await;
    ask("127.0.0.5", "social.listed.test.", A, NXDomain).await;
    ask("127.0.0.3", "www.example.test.", A, NoError).await;
    ask("127.0.0.3", "games.listed.test.", A, NXDomain).await;
    ask("127.0.0.6", "www.example.test.", A, NoError).await;
    ask("127.0.0.3", "www.example.test.", AAAA, NoError).await;
    ask("127.0.0.9", "www.example.test.", A, Refused).await;
}

fn query_log(h: &Harness) -> chaperone::store::querylog::QueryLog {
    h.running
        .as_ref()
        .unwrap()
        .pipeline
        .recorder()
        .query_log()
        .expect("the query log is on")
        .clone()
}

fn db(h: &Harness) -> rusqlite::Connection {
    rusqlite::Connection::open(h.dir.path().join("chaperone.db")).unwrap()
}

/// One query log row, every column.
#[derive(Debug, Clone)]
struct Row {
    ts_us: i64,
    client: String,
    group: String,
    device: Option<String>,
    name: String,
    qtype: String,
    decision: String,
    category: Option<String>,
    rule: Option<String>,
    rcode: String,
}

fn rows(conn: &rusqlite::Connection) -> Vec<Row> {
    let mut stmt = conn
        .prepare(
            "SELECT ts_us, client, grp, device, name, qtype, decision, category, rule, rcode
             FROM queries ORDER BY id",
        )
        .unwrap();
    stmt.query_map([], |r| {
        Ok(Row {
            ts_us: r.get(0)?,
            client: r.get(1)?,
            group: r.get(2)?,
            device: r.get(3)?,
            name: r.get(4)?,
            qtype: r.get(5)?,
            decision: r.get(6)?,
            category: r.get(7)?,
            rule: r.get(8)?,
            rcode: r.get(9)?,
        })
    })
    .unwrap()
    .map(Result::unwrap)
    .collect()
}

fn find<'a>(rows: &'a [Row], client: &str, name: &str, qtype: &str) -> &'a Row {
    rows.iter()
        .find(|r| r.client == client && r.name == name && r.qtype == qtype)
        .unwrap_or_else(|| panic!("no row for {client} {name} {qtype} in {rows:#?}"))
}

/// Incidents are recorded by their own task: wait until `n` are in the database.
async fn wait_for_incidents(h: &Harness, n: i64) {
    let conn = db(h);
    let mut got = 0;
    for _ in 0..100 {
        got = conn
            .query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get(0))
            .unwrap();
        if got >= n {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{got} incidents recorded, expected {n}");
}

#[tokio::test]
async fn sqlite_query_log_has_every_field_pseudonymises_staff_and_expires() {
    let (up, h) = setup(SQLITE_LOG).await;
    traffic(&h).await;
    let log = query_log(&h);
    log.flush();
    let all = rows(&db(&h));
    assert_eq!(
        all.len(),
        9,
        "one row per query but the refused one: {all:#?}"
    );
    let at = school_morning().as_microsecond();
    for r in &all {
        assert_eq!(r.ts_us, at, "time by the server's clock: {r:?}");
        assert!(!r.client.is_empty() && !r.name.is_empty() && !r.rcode.is_empty());
        assert!(["A", "AAAA"].contains(&r.qtype.as_str()), "{r:?}");
    }

    // Pupils: the address itself, with decision, category and rule.
    let blocked = find(&all, "127.0.0.2", "social.listed.test", "A");
    assert_eq!(blocked.group, "pupils");
    assert_eq!(blocked.decision, "blocked");
    assert_eq!(blocked.category.as_deref(), Some("social"));
    assert_eq!(blocked.rule.as_deref(), Some("social.listed.test"));
    assert_eq!(blocked.device, None);
    assert_eq!(
        blocked.rcode,
        chaperone::record::rcode_name(ResponseCode::NXDomain)
    );
    let allowed = find(&all, "127.0.0.2", "www.example.test", "A");
    assert_eq!(allowed.decision, "allowed");
    assert_eq!(allowed.category, None);
    assert!(allowed.rule.is_some(), "why it was allowed: {allowed:?}");
    let incident = find(&all, "127.0.0.2", "abuse.listed.test", "A");
    assert_eq!(incident.category.as_deref(), Some("illegal"));
    // The nominated device is named in its rows, allowed or blocked.
    let laptop = find(&all, "127.0.0.5", "games.listed.test", "A");
    assert_eq!(laptop.device.as_deref(), Some("media suite laptop"));
    assert_eq!(laptop.decision, "allowed");
    assert!(laptop.rule.is_some(), "{laptop:?}");
    let laptop_blocked = find(&all, "127.0.0.5", "social.listed.test", "A");
    assert_eq!(laptop_blocked.device.as_deref(), Some("media suite laptop"));
    assert_eq!(laptop_blocked.decision, "blocked");
    // A client in no school network: refused, counted, not logged.
    assert!(
        !all.iter()
            .any(|r| r.client == "127.0.0.9" || r.decision == "refused")
    );
    let refused: i64 = db(&h)
        .query_row("SELECT SUM(count) FROM refused_queries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(refused, 1, "the refused query is in the per-minute total");

    // Staff: a keyed pseudonym, stable per client, different between clients.
    let staff: Vec<&Row> = all.iter().filter(|r| r.group == "staff").collect();
    assert_eq!(staff.len(), 4);
    assert!(
        staff.iter().all(|r| r.client.starts_with("anon-")),
        "{staff:#?}"
    );
    assert!(
        !all.iter()
            .any(|r| r.client.contains("127.0.0.3") || r.client.contains("127.0.0.6")),
        "no staff address stored"
    );
    let of = |name: &str, qtype: &str| {
        staff
            .iter()
            .filter(|r| r.name == name && r.qtype == qtype)
            .map(|r| r.client.clone())
            .collect::<Vec<_>>()
    };
    let games = of("games.listed.test", "A");
    let aaaa = of("www.example.test", "AAAA");
    assert_eq!(games, aaaa, "the same client keeps its pseudonym");
    let www = of("www.example.test", "A");
    assert_eq!(www.len(), 2);
    assert!(www.contains(&games[0]));
    assert_eq!(
        www.iter().collect::<BTreeSet<_>>().len(),
        2,
        "two staff clients, two pseudonyms"
    );
    let blocked_staff = staff
        .iter()
        .find(|r| r.name == "games.listed.test")
        .unwrap();
    assert_eq!(blocked_staff.category.as_deref(), Some("games"));

    // The writer counts what it wrote.
    let (_, metrics) = http(h.admin(), "GET", "/metrics", None, None).await;
    assert_eq!(
        sample(&metrics, "chaperone_querylog_written_total", &[]),
        Some(9.0),
        "{metrics}"
    );
    assert_eq!(
        sample(&metrics, "chaperone_querylog_refused_total", &[]),
        Some(1.0)
    );
    assert_eq!(
        sample(&metrics, "chaperone_querylog_dropped_total", &[]),
        Some(0.0)
    );

    // Retention: 31 days on, a new query; the old rows go, the incident stays.
    wait_for_incidents(&h, 1).await;
    h.clock.advance(Duration::from_secs(31 * 86_400));
    h.client("127.0.0.2")
        .udp("mail.example.test.", RecordType::MX)
        .await;
    log.flush();
    assert_eq!(
        rows(&db(&h)).len(),
        10,
        "nothing deleted before retention runs"
    );
    log.retain_now();
    log.flush();
    let left = rows(&db(&h));
    assert_eq!(left.len(), 1, "{left:#?}");
    assert_eq!(left[0].name, "mail.example.test");
    assert_eq!(left[0].qtype, "MX");
    let incidents: i64 = db(&h)
        .query_row("SELECT COUNT(*) FROM incidents", [], |r| r.get(0))
        .unwrap();
    assert_eq!(incidents, 1, "retention never deletes incidents");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_steady_trickle_of_queries_reaches_the_database_without_a_flush() {
    // A school at a quiet moment: a query every 100 ms never fills a batch, and the
    // writer must still not sit on them (the batch is written after 500 ms at most).
    let (up, h) = setup(SQLITE_LOG).await;
    let pupil = h.client("127.0.0.2");
    let started = std::time::Instant::now();
    let mut stored = 0i64;
    while started.elapsed() < Duration::from_secs(3) {
        pupil.udp("www.example.test.", RecordType::A).await;
        tokio::time::sleep(Duration::from_millis(100)).await;
        stored = db(&h)
            .query_row("SELECT COUNT(*) FROM queries", [], |r| r.get(0))
            .unwrap();
        if stored > 0 {
            break;
        }
    }
    assert!(stored > 0, "nothing written after 3 s of steady queries");
    assert!(
        started.elapsed() < Duration::from_millis(1500),
        "written after {:?}",
        started.elapsed()
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn jsonl_query_log_has_the_same_fields_and_expires_by_day() {
    let (up, h) = setup(
        r#"format = "jsonl"
jsonl_path = "queries.jsonl"
retention_days = 30
pseudonymise = ["staff"]"#,
    )
    .await;
    traffic(&h).await;
    let log = query_log(&h);
    log.flush();
    let path = h.dir.path().join("queries.jsonl");
    let lines = read_jsonl(&path);
    assert_eq!(lines.len(), 9, "every query but the refused one");
    for l in &lines {
        for field in [
            "ts_us", "client", "group", "device", "name", "qtype", "decision", "category", "rule",
            "rcode",
        ] {
            assert!(l.get(field).is_some(), "{field} missing in {l}");
        }
        assert_eq!(l["ts_us"], school_morning().as_microsecond());
    }
    let one = |client: &str, name: &str| {
        lines
            .iter()
            .find(|l| l["client"] == client && l["name"] == name)
            .unwrap_or_else(|| panic!("no line for {client} {name}"))
            .clone()
    };
    let blocked = one("127.0.0.2", "social.listed.test");
    assert_eq!(blocked["group"], "pupils");
    assert_eq!(blocked["qtype"], "A");
    assert_eq!(blocked["decision"], "blocked");
    assert_eq!(blocked["category"], "social");
    assert_eq!(blocked["rule"], "social.listed.test");
    assert_eq!(blocked["device"], Value::Null);
    assert_eq!(
        one("127.0.0.5", "games.listed.test")["device"],
        "media suite laptop"
    );
    let staff: Vec<&Value> = lines.iter().filter(|l| l["group"] == "staff").collect();
    assert_eq!(staff.len(), 4);
    assert!(
        staff
            .iter()
            .all(|l| l["client"].as_str().unwrap().starts_with("anon-"))
    );
    assert!(
        !std::fs::read_to_string(&path)
            .unwrap()
            .contains("127.0.0.3")
    );
    let rows_in_db: i64 = db(&h)
        .query_row("SELECT COUNT(*) FROM queries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(rows_in_db, 0, "JSON lines mode writes no query rows");

    // 31 days later: the file is rotated at the first event of the new day, and the old
    // day is deleted by retention.
    h.clock.advance(Duration::from_secs(31 * 86_400));
    h.client("127.0.0.2")
        .udp("www.example.test.", RecordType::A)
        .await;
    log.flush();
    let rotated = h.dir.path().join("queries.jsonl.2026-11-23");
    assert_eq!(read_jsonl(&rotated).len(), 9, "the old day, rotated");
    assert_eq!(read_jsonl(&path).len(), 1, "the new day");
    log.retain_now();
    log.flush();
    assert!(!rotated.exists(), "the expired day is deleted");
    let left = read_jsonl(&path);
    assert_eq!(left.len(), 1);
    assert_eq!(
        left[0]["ts_us"],
        (school_morning() + jiff::SignedDuration::from_hours(31 * 24)).as_microsecond()
    );
    h.stop().await;
    up.stop().await;
}

fn read_jsonl(path: &Path) -> Vec<Value> {
    std::fs::read_to_string(path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect()
}

/// Run `chaperone report` with exactly these arguments (no --since): (success, stdout,
/// stderr).
fn report_args(h: &Harness, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .arg("report")
        .arg("--config")
        .arg(&h.config)
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Run `chaperone report` on the harness's config.
fn report(h: &Harness, args: &[&str]) -> String {
    let out = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .arg("report")
        .arg("--config")
        .arg(&h.config)
        .args(["--since", "2026-11-01T00:00:00Z"])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "report {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Whether some line holds these cells next to each other (text, markdown or CSV).
fn has_row(out: &str, cells: &[&str]) -> bool {
    out.lines().any(|line| {
        let tokens: Vec<&str> = line
            .split(|c: char| c == '|' || c == ',' || c.is_whitespace())
            .filter(|t| !t.is_empty())
            .collect();
        tokens.windows(cells.len()).any(|w| w == cells)
    })
}

#[tokio::test]
async fn report_summarises_for_governors_without_personal_data_and_details_for_the_dsl() {
    let (up, h) = setup(SQLITE_LOG).await;
    traffic(&h).await;
    let (status, body) = http(
        h.admin(),
        "POST",
        "/exceptions",
        Some(TECH),
        Some(
            r#"{"domain": "research.listed.test", "reason": "Year 9 media project", "requested_by": "Ms Patel", "days": 2}"#,
        ),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    query_log(&h).flush();
    wait_for_incidents(&h, 1).await;

    for format in ["text", "markdown", "csv"] {
        let out = report(&h, &["--format", format]);
        let rows: &[&[&str]] = &[
            // Block rate per group: queries, blocked, rate.
            &["pupils", "5", "3", "60.0%"],
            &["staff", "4", "1", "25.0%"],
            // Per category, as a share of all 9 logged queries (refused ones are only
            // counted).
            &["social", "2", "22.2%"],
            &["illegal", "1", "11.1%"],
            &["games", "1", "11.1%"],
            // Per group and category, as a share of the group's queries.
            &["pupils", "social", "2", "40.0%"],
            &["staff", "games", "1", "25.0%"],
            // Totals and incidents.
            &["blocked", "4", "44.4%"],
            &["all", "9"],
            &["illegal", "1"],
            &["all", "1"],
            // Temporary unblocks granted: the site and for whom; not who asked, nor the
            // reason (free text, which can name a pupil).
            &["research.listed.test", "all"],
        ];
        for row in rows {
            assert!(has_row(&out, row), "{format}: no row {row:?} in\n{out}");
        }
        for personal in [
            "127.0.0.",
            "anon-",
            "www.example.test",
            "games.listed.test",
            "social.listed.test",
            "abuse.listed.test",
            "media suite laptop",
            "Ms Patel",
            "Sam Technician",
            "Year 9 media project",
        ] {
            assert!(
                !out.contains(personal),
                "{format}: the governors' summary contains {personal:?}:\n{out}"
            );
        }
    }
    let md = report(&h, &["--format", "markdown"]);
    assert!(md.contains("## Block rate by group"), "{md}");
    let csv = report(&h, &["--format", "csv"]);
    assert!(
        csv.lines()
            .any(|l| l == "Block rate by group,pupils,5,3,60.0%"),
        "{csv}"
    );

    // The safeguarding lead's detail: blocked attempts per client and device.
    let detail = report(&h, &["--detail"]);
    assert!(detail.contains("CONFIDENTIAL"), "{detail}");
    assert!(
        has_row(
            &detail,
            &["127.0.0.2", "pupils", "social.listed.test", "social", "1"]
        ),
        "{detail}"
    );
    assert!(
        has_row(
            &detail,
            &["127.0.0.2", "pupils", "abuse.listed.test", "illegal", "1"]
        ),
        "{detail}"
    );
    assert!(
        detail.lines().any(|l| l.contains("127.0.0.5")
            && l.contains("media suite laptop")
            && l.contains("social.listed.test")),
        "{detail}"
    );
    assert!(
        detail
            .lines()
            .any(|l| l.contains("anon-") && l.contains("staff") && l.contains("games.listed.test")),
        "{detail}"
    );
    assert!(
        !detail.contains("www.example.test"),
        "the detail lists blocked attempts, not browsing:\n{detail}"
    );
    let detail_csv = report(&h, &["--detail", "--format", "csv"]);
    assert!(
        detail_csv.lines().any(|l| l.starts_with(
            "Blocked attempts per device,127.0.0.2,,,,,pupils,social.listed.test,social,1,"
        )),
        "{detail_csv}"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn the_governors_report_covers_a_term_in_school_time_by_week_with_a_glossary() {
    let (up, h) = setup(SQLITE_LOG).await;
    traffic(&h).await;
    let (status, body) = http(
        h.admin(),
        "POST",
        "/exceptions",
        Some(TECH),
        Some(r#"{"domain": "research.listed.test", "reason": "for Alex Smith in 9B", "requested_by": "Alex Smith", "days": 2}"#),
    )
    .await;
    assert_eq!(status, 201, "{body}");
    query_log(&h).flush();
    wait_for_incidents(&h, 1).await;
    let mut text = std::fs::read_to_string(&h.config).unwrap();
    text.push_str(
        "\n[report]\n[[report.term]]\nname = \"Autumn 2026\"\nfrom = \"2026-09-01\"\nto = \"2026-12-18\"\n\
         [[report.term]]\nname = \"Summer 2026\"\nfrom = \"2026-04-13\"\nto = \"2026-07-22\"\n",
    );
    std::fs::write(&h.config, text).unwrap();

    // The term: its days in school time (Europe/London, the default), week by week.
    let (ok, md, err) = report_args(&h, &["--term", "Autumn 2026", "--format", "markdown"]);
    assert!(ok, "{err}");
    assert!(
        md.contains("Tue 1 Sep 2026 00:00 BST to Sat 19 Dec 2026 00:00 GMT"),
        "the period in school time: {md}"
    );
    assert!(md.contains("## Trend by week"), "{md}");
    // Traffic on Monday 23 November: 9 logged, 4 blocked, 1 incident; other weeks zero.
    assert!(
        has_row(&md, &["2026-11-23", "9", "4", "44.4%", "1"]),
        "{md}"
    );
    assert!(has_row(&md, &["2026-11-16", "0", "0", "0.0%", "0"]), "{md}");
    // The first week is cut at the term's start (Tuesday), the last at its end.
    assert!(has_row(&md, &["2026-09-01", "0"]), "{md}");
    assert!(has_row(&md, &["2026-12-14", "0"]), "{md}");
    assert!(!md.contains("2026-12-21"), "{md}");
    // Every table explains its labels.
    for label in [
        "*decision*",
        "*block rate*",
        "*week from*",
        "*incidents*",
        "*domain*",
    ] {
        assert!(
            md.contains(&format!("- {label}: ")),
            "no glossary for {label}: {md}"
        );
    }
    assert!(md.contains("granted (Europe/London)"), "{md}");
    assert!(!md.contains("(UTC)"), "{md}");
    assert!(!md.contains("Alex Smith"), "free text from a request: {md}");

    // Another term, and --from/--to dates (the --to day included): nothing outside.
    for args in [
        &["--term", "summer 2026"][..],
        &["--from", "2026-11-24", "--to", "2026-11-30"][..],
    ] {
        let (ok, out, err) = report_args(&h, args);
        assert!(ok, "{args:?}: {err}");
        assert!(has_row(&out, &["all", "0", "0.0%"]), "{args:?}: {out}");
    }
    let (ok, out, err) = report_args(&h, &["--from", "2026-11-16", "--to", "2026-11-23"]);
    assert!(ok, "{err}");
    assert!(has_row(&out, &["all", "9", "100.0%"]), "{out}");
    assert!(
        has_row(&out, &["2026-11-23", "9", "4", "44.4%", "1"]),
        "{out}"
    );

    // Mistakes are named.
    let (ok, _, err) = report_args(&h, &["--term", "Spring 2027"]);
    assert!(
        !ok && err.contains("Spring 2027") && err.contains("Autumn 2026"),
        "{err}"
    );
    let (ok, _, err) = report_args(&h, &["--from", "2026-11-30", "--to", "2026-11-01"]);
    assert!(!ok && err.contains("before it starts"), "{err}");
    let (ok, _, err) = report_args(&h, &["--from", "next tuesday"]);
    assert!(!ok && err.contains("--from"), "{err}");
    h.stop().await;
    up.stop().await;
}

// ---------------------------------------------------------------------------------------
// /metrics, the dashboard and the docker files.

fn docker() -> PathBuf {
    crate_root().join("docker")
}

/// A YAML file as a JSON value, read with serde-saphyr (maintained and panic-free).
fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_saphyr::from_str(&text)
        .unwrap_or_else(|e| panic!("{} does not parse: {e}", path.display()))
}

/// Every `expr` anywhere in a Grafana dashboard (panels, rows, templating).
fn exprs(v: &Value, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, v) in m {
                match (k.as_str(), v) {
                    ("expr", Value::String(s)) => out.push(s.clone()),
                    _ => exprs(v, out),
                }
            }
        }
        Value::Array(a) => a.iter().for_each(|v| exprs(v, out)),
        _ => {}
    }
}

/// Metric names (`chaperone_…`) used in a PromQL expression.
fn metric_names(expr: &str) -> BTreeSet<String> {
    let mut names = BTreeSet::new();
    let bytes = expr.as_bytes();
    let ident = |c: u8| c.is_ascii_alphanumeric() || c == b'_' || c == b':';
    let mut i = 0;
    while let Some(at) = expr[i..].find("chaperone_") {
        let start = i + at;
        let mut end = start;
        while end < bytes.len() && ident(bytes[end]) {
            end += 1;
        }
        if start == 0 || !ident(bytes[start - 1]) {
            names.insert(expr[start..end].to_owned());
        }
        i = end;
    }
    names
}

/// `# TYPE name kind` lines of an exposition.
fn types(exposition: &str) -> BTreeMap<String, String> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_owned(), it.next()?.to_owned()))
        })
        .collect()
}

/// Samples of an exposition: (name, labels, value).
fn samples(exposition: &str) -> Vec<(String, BTreeMap<String, String>, f64)> {
    exposition
        .lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .map(|l| {
            let (series, value) = l.rsplit_once(' ').expect("name value");
            let (name, labels) = match series.split_once('{') {
                Some((n, rest)) => (n, rest.trim_end_matches('}')),
                None => (series, ""),
            };
            let labels = labels
                .split("\",")
                .filter(|p| !p.is_empty())
                .map(|p| {
                    let (k, v) = p.split_once('=').expect("label=value");
                    (k.to_owned(), v.trim_matches('"').to_owned())
                })
                .collect();
            (name.to_owned(), labels, value.parse().expect("a number"))
        })
        .collect()
}

/// The value of one series, if exported.
fn sample(exposition: &str, name: &str, labels: &[(&str, &str)]) -> Option<f64> {
    samples(exposition)
        .into_iter()
        .find(|(n, l, _)| {
            n == name
                && l.len() == labels.len()
                && labels
                    .iter()
                    .all(|(k, v)| l.get(*k).map(String::as_str) == Some(*v))
        })
        .map(|(_, _, v)| v)
}

#[tokio::test]
async fn the_dashboard_uses_only_exported_metrics_and_no_label_identifies_anyone() {
    let (up, h) = setup(SQLITE_LOG).await;
    traffic(&h).await;
    let (status, exposition) = http(h.admin(), "GET", "/metrics", None, None).await;
    assert_eq!(status, 200);
    let exported = types(&exposition);

    let path = docker().join("grafana/dashboards/chaperone.json");
    let dashboard: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap())
        .expect("the dashboard is JSON");
    let mut all = Vec::new();
    exprs(&dashboard, &mut all);
    assert!(all.len() >= 10, "the dashboard has its queries: {all:?}");
    let mut used = BTreeSet::new();
    for e in &all {
        let names = metric_names(e);
        // Prometheus's own `up` for the Chaperone job is the one other series allowed.
        assert!(
            !names.is_empty() || e.contains("up{job=\"chaperone\"}"),
            "no Chaperone metric in {e:?}"
        );
        used.extend(names);
    }
    for name in &used {
        let ok = exported.contains_key(name)
            || ["_bucket", "_sum", "_count"].iter().any(|suffix| {
                name.strip_suffix(suffix)
                    .and_then(|base| exported.get(base))
                    .is_some_and(|kind| kind == "histogram")
            });
        assert!(
            ok,
            "the dashboard uses {name}, which Chaperone does not export:\n{exposition}"
        );
    }
    // Panels read the datasource the provisioning defines.
    let datasource = yaml(&docker().join("grafana/provisioning/datasources/prometheus.yaml"));
    let ds = &datasource["datasources"][0];
    assert_eq!(ds["type"].as_str(), Some("prometheus"));
    assert_eq!(ds["url"].as_str(), Some("http://prometheus:9090"));
    let uid = ds["uid"].as_str().expect("the datasource has a uid");
    for panel in dashboard["panels"].as_array().unwrap() {
        if panel.get("targets").is_some() {
            assert_eq!(
                panel["datasource"]["uid"], uid,
                "panel {} uses another datasource",
                panel["title"]
            );
        }
    }

    // The series governors read carry the traffic.
    let at = |name: &str, labels: &[(&str, &str)]| sample(&exposition, name, labels);
    let q = "chaperone_queries_total";
    assert_eq!(
        at(q, &[("group", "pupils"), ("outcome", "blocked")]),
        Some(3.0)
    );
    assert_eq!(
        at(q, &[("group", "pupils"), ("outcome", "allowed")]),
        Some(2.0)
    );
    assert_eq!(
        at(q, &[("group", "staff"), ("outcome", "blocked")]),
        Some(1.0)
    );
    assert_eq!(
        at(q, &[("group", "none"), ("outcome", "refused")]),
        Some(1.0)
    );
    let b = "chaperone_blocks_total";
    assert_eq!(
        at(b, &[("group", "pupils"), ("category", "social")]),
        Some(2.0)
    );
    assert_eq!(
        at(b, &[("group", "pupils"), ("category", "illegal")]),
        Some(1.0)
    );
    assert_eq!(
        at(b, &[("group", "staff"), ("category", "games")]),
        Some(1.0)
    );
    assert_eq!(
        at("chaperone_incidents_total", &[("category", "illegal")]),
        Some(1.0)
    );
    assert_eq!(
        at("chaperone_list_entries", &[("category", "social")]),
        Some(1.0)
    );
    assert_eq!(at("chaperone_snapshot_generation", &[]), Some(1.0));
    assert_eq!(at("chaperone_last_reload_successful", &[]), Some(1.0));
    assert_eq!(
        at("chaperone_reloads_total", &[("result", "failure")]),
        Some(0.0)
    );
    assert_eq!(
        at("chaperone_upstream_errors_total", &[("mode", "forward")]),
        Some(0.0)
    );
    assert_eq!(
        at("chaperone_answer_duration_seconds_count", &[]),
        Some(10.0)
    );
    assert!(at("chaperone_cache_lookups_total", &[("result", "hit")]).is_some());
    let started = at(
        "chaperone_last_reload_timestamp_seconds",
        &[("result", "success")],
    )
    .expect("start-up counts as the first successful load");
    assert!((jiff::Timestamp::now().as_second() as f64 - started).abs() < 600.0);

    // No label names or values that identify a client or what they asked.
    for (name, labels, _) in samples(&exposition) {
        for (k, v) in &labels {
            assert!(
                ![
                    "client", "ip", "address", "name", "domain", "qname", "mac", "device"
                ]
                .contains(&k.as_str()),
                "{name} has a {k} label"
            );
            assert!(
                !v.contains("127.0.0.") && !v.contains(".test") && !v.contains("laptop"),
                "{name}{{{k}={v:?}}} identifies a client or a name"
            );
        }
    }

    // A failed reload shows in the result gauge.
    std::fs::write(&h.config, "this is not toml = = =").unwrap();
    let (status, _) = http(h.admin(), "POST", "/reload", Some(TECH), None).await;
    assert_ne!(status, 200);
    let (_, after) = http(h.admin(), "GET", "/metrics", None, None).await;
    assert_eq!(
        sample(&after, "chaperone_last_reload_successful", &[]),
        Some(0.0)
    );
    assert_eq!(
        sample(&after, "chaperone_reloads_total", &[("result", "failure")]),
        Some(1.0)
    );
    h.stop().await;
    up.stop().await;
}

#[test]
fn the_docker_files_parse_and_agree_with_each_other() {
    let compose = yaml(&docker().join("compose.yaml"));
    let services = &compose["services"];
    for s in ["chaperone", "prometheus", "grafana"] {
        assert!(services.get(s).is_some(), "compose has no {s} service");
    }
    // Every bind mount points at a file or folder in docker/.
    let mounts = |service: &str| -> Vec<(String, String)> {
        services[service]["volumes"]
            .as_array()
            .unwrap_or(&Vec::new())
            .iter()
            .filter_map(|v| v.as_str())
            .filter(|v| v.starts_with("./"))
            .map(|v| {
                let mut parts = v.split(':');
                let host = parts.next().unwrap().to_owned();
                let container = parts.next().unwrap().to_owned();
                assert!(
                    docker().join(&host).exists(),
                    "{service} mounts {host}, which is not in docker/"
                );
                (host, container)
            })
            .collect()
    };
    let container_of = |service: &str, host: &str| {
        mounts(service)
            .into_iter()
            .find(|(h, _)| h == host)
            .unwrap_or_else(|| panic!("{service} does not mount {host}"))
            .1
    };
    let prom_config = container_of("prometheus", "./prometheus/prometheus.yml");
    let command: Vec<&str> = services["prometheus"]["command"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c.as_str())
        .collect();
    assert!(
        command.contains(&format!("--config.file={prom_config}").as_str()),
        "{command:?}"
    );
    let provisioning = container_of("grafana", "./grafana/provisioning");
    assert_eq!(provisioning, "/etc/grafana/provisioning");
    let dashboards_dir = container_of("grafana", "./grafana/dashboards");

    // Prometheus scrapes Chaperone's admin listener by its compose service name.
    let prom = yaml(&docker().join("prometheus/prometheus.yml"));
    let job = prom["scrape_configs"]
        .as_array()
        .unwrap()
        .iter()
        .find(|j| j["job_name"].as_str() == Some("chaperone"))
        .expect("a chaperone scrape job");
    let targets: Vec<&str> = job["static_configs"][0]["targets"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|t| t.as_str())
        .collect();
    assert_eq!(targets, ["chaperone:8053"]);
    assert_eq!(
        job["metrics_path"].as_str().unwrap_or("/metrics"),
        "/metrics"
    );
    // ... which is where the container's config puts it.
    let toml_text = std::fs::read_to_string(docker().join("chaperone.toml")).unwrap();
    let chaperone: toml::Table = toml::from_str(&toml_text).expect("docker/chaperone.toml parses");
    let admin = chaperone["admin"]["listen"].as_str().unwrap();
    assert!(
        admin.ends_with(":8053") && !admin.starts_with("127."),
        "{admin}"
    );
    // Chaperone runs as a non-root user: everything it writes must be in its data volume,
    // not beside its root-owned config.
    let data = "/var/lib/chaperone";
    assert!(
        mounts_named_volume(services, "chaperone", data),
        "the chaperone service keeps {data} in a volume"
    );
    for (key, path) in [
        ("storage.path", chaperone["storage"]["path"].as_str()),
        ("lists.bundle", chaperone["lists"]["bundle"].as_str()),
    ] {
        let path = path.unwrap_or_else(|| panic!("docker/chaperone.toml sets {key}"));
        assert!(path.starts_with(data), "{key} = {path:?} is outside {data}");
    }
    let dockerfile = std::fs::read_to_string(docker().join("Dockerfile")).unwrap();
    for needed in [
        "USER chaperone",
        "cap_net_bind_service",
        &format!("WORKDIR {data}"),
    ] {
        assert!(
            dockerfile.contains(needed),
            "the Dockerfile lacks {needed:?}"
        );
    }
    assert!(
        dockerfile.matches("FROM ").count() >= 2,
        "a multi-stage build"
    );

    // Grafana provisions the datasource and loads dashboards from the mounted folder.
    let ds = yaml(&docker().join("grafana/provisioning/datasources/prometheus.yaml"));
    assert_eq!(ds["datasources"][0]["type"].as_str(), Some("prometheus"));
    let dash = yaml(&docker().join("grafana/provisioning/dashboards/chaperone.yaml"));
    let provider = &dash["providers"][0];
    assert_eq!(provider["type"].as_str(), Some("file"));
    assert_eq!(
        provider["options"]["path"].as_str(),
        Some(dashboards_dir.as_str()),
        "the dashboards provider reads the folder compose mounts"
    );
    assert!(docker().join("grafana/dashboards/chaperone.json").exists());
}

/// Whether a compose service mounts a named volume at `target`.
fn mounts_named_volume(services: &Value, service: &str, target: &str) -> bool {
    services[service]["volumes"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str())
        .any(|v| {
            let mut parts = v.split(':');
            let source = parts.next().unwrap_or("");
            !source.starts_with('.') && !source.starts_with('/') && parts.next() == Some(target)
        })
}

#[test]
fn the_container_config_passes_chaperone_check() {
    // Lay the files out as the Dockerfile does: /etc/chaperone/{chaperone.toml,lists/}.
    let dir = tempfile::tempdir().unwrap();
    let etc = dir.path();
    copy_dir(&crate_root().join("lists"), &etc.join("lists"));
    let text = std::fs::read_to_string(docker().join("chaperone.toml"))
        .unwrap()
        .replace(
            "/var/lib/chaperone/lists.fstb",
            &etc.join("lists.fstb").display().to_string(),
        );
    std::fs::write(etc.join("chaperone.toml"), text).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["check", "--config"])
        .arg(etc.join("chaperone.toml"))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap() {
        let e = e.unwrap();
        let target = to.join(e.file_name());
        if e.file_type().unwrap().is_dir() {
            copy_dir(&e.path(), &target);
        } else {
            std::fs::copy(e.path(), target).unwrap();
        }
    }
}

// ---------------------------------------------------------------------------------------
// A real Prometheus (Debian's package) scraping a running Chaperone on loopback.

const PROMETHEUS: &str = "/usr/bin/prometheus";
const PROMTOOL: &str = "/usr/bin/promtool";

fn require_prometheus() {
    assert!(
        Path::new(PROMETHEUS).exists() && Path::new(PROMTOOL).exists(),
        "this test runs Debian's Prometheus: `apt-get install prometheus` (.ci/run does)"
    );
}

fn promtool_check_config(path: &Path) {
    let out = Command::new(PROMTOOL)
        .args(["check", "config"])
        .arg(path)
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check config {}:\n{}{}",
        path.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Kills the child process when dropped, so a failing test leaves nothing running.
struct KillOnDrop(std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

#[test]
fn promtool_accepts_the_compose_prometheus_config() {
    require_prometheus();
    promtool_check_config(&docker().join("prometheus/prometheus.yml"));
}

#[tokio::test]
async fn a_real_prometheus_scrapes_chaperone() {
    require_prometheus();
    let (up, h) = setup(SQLITE_LOG).await;
    traffic(&h).await;
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             scrape_configs:\n  - job_name: chaperone\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [\"{}\"]\n",
            h.admin()
        ),
    )
    .unwrap();
    promtool_check_config(&config);

    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let log = std::fs::File::create(work.path().join("prometheus.log")).unwrap();
    let _prometheus = KillOnDrop(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={listen}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("data").display()
            ))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );

    // Ask Prometheus (not Chaperone) until the scraped series is there: up to 30 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let mut last = String::new();
    let found = loop {
        if std::time::Instant::now() > deadline {
            break None;
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        if std::net::TcpStream::connect(listen).is_err() {
            last = "not listening yet".into();
            continue;
        }
        let (status, body) = http(
            listen,
            "GET",
            "/api/v1/query?query=chaperone_queries_total",
            None,
            None,
        )
        .await;
        last = format!("{status} {body}");
        let Ok(v) = serde_json::from_str::<Value>(&body) else {
            continue;
        };
        let hit = v["data"]["result"].as_array().and_then(|series| {
            series
                .iter()
                .find(|s| s["metric"]["group"] == "pupils" && s["metric"]["outcome"] == "blocked")
                .cloned()
        });
        if hit.is_some() {
            break hit;
        }
    };
    let Some(series) = found else {
        let log = std::fs::read_to_string(work.path().join("prometheus.log")).unwrap_or_default();
        panic!("Prometheus never returned the series; last answer: {last}\nprometheus log:\n{log}");
    };
    assert_eq!(series["metric"]["__name__"], "chaperone_queries_total");
    assert_eq!(series["metric"]["job"], "chaperone");
    assert_eq!(series["value"][1], "3", "{series}");
    h.stop().await;
    up.stop().await;
}

/// A flood from a client in no school network leaves no query records: it is counted (a
/// metric and a per-minute total), so it cannot fill the disk.
#[tokio::test]
async fn refused_queries_are_counted_not_logged() {
    let (up, h) = setup(SQLITE_LOG).await;
    // Fewer than the REFUSED rate limit's burst (20), so every one is answered.
    let stranger = h.client("127.0.0.9");
    for i in 0..15 {
        let m = stranger
            .udp(&format!("n{i}.example.test."), RecordType::A)
            .await;
        assert_eq!(rcode(&m), ResponseCode::Refused);
    }
    h.client("127.0.0.2")
        .udp("www.example.test.", RecordType::A)
        .await;
    query_log(&h).flush();
    let all = rows(&db(&h));
    assert_eq!(all.len(), 1, "only the pupil's query: {all:#?}");
    let refused: i64 = db(&h)
        .query_row("SELECT SUM(count) FROM refused_queries", [], |r| r.get(0))
        .unwrap();
    assert_eq!(refused, 15);
    let (_, metrics) = http(h.admin(), "GET", "/metrics", None, None).await;
    assert_eq!(
        sample(&metrics, "chaperone_querylog_refused_total", &[]),
        Some(15.0)
    );
    h.stop().await;
    up.stop().await;
}

/// `querylog.max_rows` caps the SQLite log, oldest first; incidents are kept.
#[tokio::test]
async fn the_sqlite_log_is_capped_by_rows_oldest_first() {
    let (up, h) = setup("max_rows = 10").await;
    let log = query_log(&h);
    let pupil = h.client("127.0.0.2");
    pupil.udp("abuse.listed.test.", RecordType::A).await;
    log.flush();
    for i in 0..30 {
        pupil
            .udp(&format!("n{i}.example.test."), RecordType::A)
            .await;
        if i % 10 == 9 {
            log.flush();
        }
    }
    log.flush();
    let all = rows(&db(&h));
    let names: Vec<&str> = all.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(all.len(), 10, "{names:?}");
    let want: Vec<String> = (20..30).map(|i| format!("n{i}.example.test")).collect();
    assert_eq!(names, want, "the newest ten are kept");
    wait_for_incidents(&h, 1).await;
    let (_, metrics) = http(h.admin(), "GET", "/metrics", None, None).await;
    assert_eq!(
        sample(&metrics, "chaperone_querylog_trimmed_total", &[]),
        Some(21.0)
    );
    h.stop().await;
    up.stop().await;
}

/// A JSON lines log is rotated by size and keeps at most `max_files` files and
/// `max_bytes` in all, deleting the oldest.
#[tokio::test]
async fn a_jsonl_log_is_rotated_by_size_and_bounded() {
    let (up, h) = setup(
        r#"format = "jsonl"
jsonl_path = "q.jsonl"
max_bytes = 6000
max_files = 3"#,
    )
    .await;
    let log = query_log(&h);
    let pupil = h.client("127.0.0.2");
    for i in 0..100 {
        pupil
            .udp(&format!("n{i}.example.test."), RecordType::A)
            .await;
        if i % 5 == 4 {
            log.flush();
        }
    }
    log.flush();
    let files: Vec<std::path::PathBuf> = std::fs::read_dir(h.dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .and_then(|f| f.to_str())
                .is_some_and(|f| f.starts_with("q.jsonl"))
        })
        .collect();
    assert!(files.len() > 1, "rotated by size: {files:?}");
    assert!(files.len() <= 3, "at most max_files: {files:?}");
    let total: u64 = files
        .iter()
        .map(|p| std::fs::metadata(p).unwrap().len())
        .sum();
    assert!(total <= 6000, "{total} bytes in {files:?}");
    let names: Vec<String> = files
        .iter()
        .flat_map(|p| read_jsonl(p))
        .map(|l| l["name"].as_str().unwrap().to_owned())
        .collect();
    assert!(
        names.contains(&"n99.example.test".to_owned()),
        "the newest kept"
    );
    assert!(
        !names.contains(&"n0.example.test".to_owned()),
        "the oldest went"
    );
    h.stop().await;
    up.stop().await;
}

// ---------------------------------------------------------------------------------------
// Every dashboard query and alert rule, run by a real Prometheus scraping Chaperone. No
// Grafana binary is packaged for Debian (or reachable here), so the dashboard is checked
// by its queries and by the JSON fields Grafana needs to load it.

/// The alert rules file compose mounts into Prometheus.
fn rules_file() -> PathBuf {
    docker().join("prometheus/rules/chaperone.yml")
}

#[test]
fn promtool_accepts_the_alert_rules_and_they_cover_what_breaks() {
    require_prometheus();
    let out = Command::new(PROMTOOL)
        .args(["check", "rules"])
        .arg(rules_file())
        .output()
        .expect("run promtool");
    assert!(
        out.status.success(),
        "promtool check rules:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let names: Vec<String> = alert_rules().into_iter().map(|(n, _)| n).collect();
    for want in [
        "ChaperoneDown",
        "ChaperoneListsStale",
        "ChaperoneReloadFailing",
        "ChaperoneQueryLogDropping",
        "ChaperoneIncidentSpike",
    ] {
        assert!(names.iter().any(|n| n == want), "no {want} in {names:?}");
    }
    let prom = yaml(&docker().join("prometheus/prometheus.yml"));
    assert_eq!(
        prom["rule_files"][0].as_str(),
        Some("/etc/prometheus/rules/*.yml")
    );
    let compose = std::fs::read_to_string(docker().join("compose.yaml")).unwrap();
    assert!(
        compose.contains("./prometheus/rules:/etc/prometheus/rules:ro"),
        "compose mounts the rules where prometheus.yml looks"
    );
}

/// (alert name, expr) of every rule in the rules file.
fn alert_rules() -> Vec<(String, String)> {
    let rules = yaml(&rules_file());
    rules["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .flat_map(|g| g["rules"].as_array().cloned().unwrap_or_default())
        .map(|r| {
            (
                r["alert"].as_str().expect("an alert name").to_owned(),
                r["expr"].as_str().expect("an expr").to_owned(),
            )
        })
        .collect()
}

#[test]
fn the_dashboard_has_the_fields_grafana_needs() {
    let path = docker().join("grafana/dashboards/chaperone.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    for key in ["uid", "title"] {
        assert!(
            d[key].as_str().is_some_and(|s| !s.is_empty()),
            "dashboard {key}"
        );
    }
    assert!(
        d["schemaVersion"].as_u64().is_some_and(|v| v >= 36),
        "schemaVersion"
    );
    let panels = d["panels"].as_array().expect("panels");
    let mut ids = BTreeSet::new();
    for p in panels {
        let title = p["title"].as_str().unwrap_or("?");
        assert!(p["type"].as_str().is_some(), "{title}: type");
        assert!(
            ids.insert(p["id"].as_u64().expect("id")),
            "{title}: duplicate id"
        );
        for k in ["x", "y", "w", "h"] {
            assert!(p["gridPos"][k].as_u64().is_some(), "{title}: gridPos.{k}");
        }
        assert!(p["gridPos"]["x"].as_u64().unwrap() + p["gridPos"]["w"].as_u64().unwrap() <= 24);
        if p["type"] == "row" {
            continue;
        }
        assert!(
            p["datasource"]["uid"].as_str().is_some(),
            "{title}: datasource"
        );
        let targets = p["targets"].as_array().expect("targets");
        assert!(!targets.is_empty(), "{title}: targets");
        let mut refs = BTreeSet::new();
        for t in targets {
            let r = t["refId"].as_str().expect("refId");
            assert!(refs.insert(r.to_owned()), "{title}: refId {r} twice");
            assert!(
                t["expr"].as_str().is_some_and(|e| !e.is_empty()),
                "{title}: expr"
            );
        }
    }
    // The first row answers "is filtering working?" with coloured stats.
    assert_eq!(panels[0]["type"], "row");
    assert_eq!(panels[0]["title"], "Is filtering working?");
    let health: Vec<&Value> = first_row(panels);
    let titles: Vec<&str> = health.iter().filter_map(|p| p["title"].as_str()).collect();
    for want in [
        "Chaperone up",
        "List age",
        "Latest reload",
        "Error rate (5 m)",
    ] {
        assert!(
            titles.contains(&want),
            "{want} not in the first row: {titles:?}"
        );
    }
    for p in &health {
        assert_eq!(p["type"], "stat", "{}", p["title"]);
        let steps = p["fieldConfig"]["defaults"]["thresholds"]["steps"]
            .as_array()
            .expect("thresholds");
        assert!(
            steps.iter().any(|s| s["color"] == "red"),
            "{}: a red threshold",
            p["title"]
        );
    }
    let find = |t: &str| {
        panels
            .iter()
            .find(|p| p["title"] == t)
            .unwrap_or_else(|| panic!("no panel {t:?}"))
    };
    let table = find("Blocks by group and category (dashboard period)");
    assert_eq!(table["type"], "table");
    assert_eq!(table["targets"][0]["format"], "table");
    assert_eq!(table["targets"][0]["instant"], true);
    let per_day = find("Queries per day");
    assert_eq!(
        per_day["fieldConfig"]["defaults"]["custom"]["drawStyle"],
        "bars"
    );
    assert!(
        per_day["targets"][0]["expr"]
            .as_str()
            .unwrap()
            .contains("increase(chaperone_queries_total[1d])")
    );
    let incidents = find("Illegal-category incidents (24 h)");
    assert_eq!(
        incidents["fieldConfig"]["defaults"]["thresholds"]["steps"][1]["color"],
        "red"
    );
}

/// The panels between the first row header and the next.
fn first_row(panels: &[Value]) -> Vec<&Value> {
    panels
        .iter()
        .skip(1)
        .take_while(|p| p["type"] != "row")
        .collect()
}

/// Percent-encode a query parameter.
fn encode(s: &str) -> String {
    s.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Grafana's variables as Grafana would fill them for a one-hour view of all schools.
fn grafana_substitute(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__interval", "1m")
        .replace("$__range", "1h")
        .replace("$school", ".*")
}

/// Run an instant query: (status field, result array).
async fn prom_query(prom: std::net::SocketAddr, expr: &str) -> (String, Vec<Value>, String) {
    let (code, body) = http(
        prom,
        "GET",
        &format!("/api/v1/query?query={}", encode(expr)),
        None,
        None,
    )
    .await;
    let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
    let status = v["status"].as_str().unwrap_or("").to_owned();
    let result = v["data"]["result"].as_array().cloned().unwrap_or_default();
    (status, result, format!("{code} {body}"))
}

#[tokio::test]
async fn every_dashboard_query_and_alert_rule_runs_on_a_real_prometheus() {
    require_prometheus();
    let (up, h) = setup(SQLITE_LOG).await;
    traffic(&h).await;
    let work = tempfile::tempdir().unwrap();
    let config = work.path().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n\
             rule_files:\n  - {}\n\
             scrape_configs:\n  - job_name: chaperone\n    metrics_path: /metrics\n    \
             static_configs:\n      - targets: [\"{}\"]\n",
            rules_file().display(),
            h.admin()
        ),
    )
    .unwrap();
    promtool_check_config(&config);
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let listen: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let log = std::fs::File::create(work.path().join("prometheus.log")).unwrap();
    let _prometheus = KillOnDrop(
        Command::new(PROMETHEUS)
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--web.listen-address={listen}"))
            .arg(format!(
                "--storage.tsdb.path={}",
                work.path().join("data").display()
            ))
            .arg("--log.level=warn")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("start prometheus"),
    );
    // Ready once a rate has two scrapes to work from: up to 30 s.
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    let ready = "sum(rate(chaperone_queries_total[5m]))";
    loop {
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus never had two scrapes of Chaperone; log:\n{}",
            std::fs::read_to_string(work.path().join("prometheus.log")).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
        if std::net::TcpStream::connect(listen).is_err() {
            continue;
        }
        let (status, result, _) = prom_query(listen, ready).await;
        if status == "success" && !result.is_empty() {
            break;
        }
    }

    let path = docker().join("grafana/dashboards/chaperone.json");
    let d: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    let panels = d["panels"].as_array().unwrap();
    let health: Vec<String> = first_row(panels)
        .iter()
        .filter_map(|p| p["title"].as_str().map(str::to_owned))
        .collect();
    let mut ran = 0;
    for p in panels.iter().filter(|p| p["type"] != "row") {
        let title = p["title"].as_str().unwrap_or("?");
        for t in p["targets"].as_array().unwrap() {
            let expr = grafana_substitute(t["expr"].as_str().unwrap());
            let (status, result, raw) = prom_query(listen, &expr).await;
            assert_eq!(status, "success", "panel {title:?}: {expr}\n{raw}");
            if health.iter().any(|h| h == title) {
                assert!(
                    !result.is_empty(),
                    "health panel {title:?} has no data: {expr}\n{raw}"
                );
            }
            ran += 1;
        }
    }
    assert!(ran >= 20, "ran {ran} panel queries");
    // The health row reads what is true now: up, a fresh list, the latest load worked.
    let value = |r: &[Value]| {
        r.first()
            .and_then(|s| s["value"][1].as_str())
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(f64::NAN)
    };
    assert_eq!(
        value(&prom_query(listen, "up{job=\"chaperone\"}").await.1),
        1.0
    );
    assert_eq!(
        value(
            &prom_query(listen, "min(chaperone_last_reload_successful)")
                .await
                .1
        ),
        1.0
    );

    // Every alert rule's expression runs, and Prometheus loaded and evaluated each rule.
    let rules = alert_rules();
    for (name, expr) in &rules {
        let (status, _, raw) = prom_query(listen, expr).await;
        assert_eq!(status, "success", "rule {name}: {expr}\n{raw}");
    }
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        let (_, body) = http(listen, "GET", "/api/v1/rules?type=alert", None, None).await;
        let v: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
        let loaded: Vec<&Value> = v["data"]["groups"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|g| g["rules"].as_array().into_iter().flatten())
            .collect();
        let evaluated = loaded
            .iter()
            .filter(|r| {
                r["health"] == "ok"
                    && r["lastEvaluation"]
                        .as_str()
                        .is_some_and(|t| !t.starts_with("0001"))
            })
            .count();
        if loaded.len() == rules.len() && evaluated == rules.len() {
            // Chaperone is up with fresh lists: nothing should be firing but the incident
            // spike, which the traffic's single incident does not reach.
            assert!(
                loaded.iter().all(|r| r["state"] == "inactive"),
                "alerts firing on a healthy server: {body}"
            );
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Prometheus did not load and evaluate every rule: {body}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    h.stop().await;
    up.stop().await;
}
