//! The storage backends: the same test bodies against SQLite and PostgreSQL (a matrix, not
//! a copy: each body takes `&mut dyn Store` and runs once per backend, as
//! `storage::<topic>::sqlite` and `storage::<topic>::postgres`), then what only
//! PostgreSQL has (partitions, NOTIFY, concurrent audit writers, reconnection).

use std::sync::mpsc;
use std::time::{Duration, Instant};

use chaperone::report;
use chaperone::store::audit::{self, Chain, Expect, Verification};
use chaperone::store::devices::NewDevice;
use chaperone::store::postgres::{self, Postgres};
use chaperone::store::querylog::LogEvent;
use chaperone::store::safeguarding::{
    NewException, NewReport, NewRequest, ReportDecision, RequestDecision,
};
use chaperone::store::sqlite::Sqlite;
use chaperone::store::{AlertStatus, Change, Store, micros};

use crate::support::pg;

/// A store of either kind, with what keeps its database alive.
enum Backend {
    Sqlite(tempfile::TempDir),
    Postgres(pg::Database),
}

impl Backend {
    fn sqlite() -> Self {
        Backend::Sqlite(tempfile::tempdir().unwrap())
    }

    fn postgres() -> Self {
        Backend::Postgres(pg::database())
    }

    /// A new connection to the same database.
    fn open(&self) -> Box<dyn Store> {
        match self {
            Backend::Sqlite(dir) => Box::new(Sqlite::open(&dir.path().join("s.db")).unwrap()),
            Backend::Postgres(db) => Box::new(
                Postgres::connect_now(&db.config()).unwrap_or_else(|e| panic!("connect: {e}")),
            ),
        }
    }
}

/// `storage::$name::sqlite` and `storage::$name::postgres` running `$body`.
macro_rules! both {
    ($name:ident, $body:ident) => {
        mod $name {
            #[test]
            fn sqlite() {
                super::$body(&super::Backend::sqlite());
            }
            #[test]
            fn postgres() {
                super::$body(&super::Backend::postgres());
            }
        }
    };
}

fn t(s: &str) -> jiff::Timestamp {
    s.parse().unwrap()
}

const NOW: &str = "2026-11-23T10:00:00Z";

fn exception<'a>(domain: &'a str, groups: &'a [String], days: i64) -> NewException<'a> {
    NewException {
        domain,
        groups,
        reason: "homework",
        requested_by: "teacher",
        granted_by: "dsl",
        created: t(NOW),
        expires: t(NOW) + jiff::SignedDuration::from_hours(24 * days),
        request_id: None,
    }
}

both!(exceptions, exceptions_body);
fn exceptions_body(b: &Backend) {
    let mut s = b.open();
    let g = vec!["pupils".to_owned()];
    let a = s.create_exception(&exception("a.example", &g, 1)).unwrap();
    let c = s.create_exception(&exception("c.example", &[], 3)).unwrap();
    assert!(c > a);
    let all = s.list_exceptions(t(NOW), false).unwrap();
    assert_eq!(
        all.iter().map(|e| e.id).collect::<Vec<_>>(),
        vec![c, a],
        "newest first"
    );
    assert_eq!(all[1].groups, g);
    assert_eq!(all[1].state, "active");
    // Two days on, the first has expired.
    let later = t("2026-11-25T10:00:00Z");
    assert_eq!(s.get_exception(a, later).unwrap().unwrap().state, "expired");
    let live = s.live_exceptions(later).unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(live[0].domain, "c.example");
    s.revoke_exception(c, "dsl", later).unwrap();
    assert!(s.revoke_exception(c, "dsl", later).is_err(), "twice");
    assert!(s.revoke_exception(a, "dsl", later).is_err(), "expired");
    let row = s.get_exception(c, later).unwrap().unwrap();
    assert_eq!(row.state, "revoked");
    assert_eq!(row.revoked_by.as_deref(), Some("dsl"));
    assert!(s.live_exceptions(later).unwrap().is_empty());
    assert!(s.get_exception(9999, later).unwrap().is_none());
}

both!(requests, requests_body);
fn requests_body(b: &Backend) {
    let mut s = b.open();
    let g = vec!["pupils".to_owned()];
    let new = |domain| NewRequest {
        domain,
        reason: "project",
        requester: "pupil",
        days: 3,
        groups: &[],
        category: Some("social"),
        created: t(NOW),
    };
    let r1 = s.create_request(&new("one.example")).unwrap();
    let r2 = s.create_request(&new("two.example")).unwrap();
    assert_eq!(s.list_requests(Some("pending")).unwrap().len(), 2);
    let d = RequestDecision {
        status: "approved",
        by: "dsl",
        reason: "fine",
        now: t(NOW),
        exception_id: None,
    };
    let eid = s
        .approve_request(r1, &exception("one.example", &g, 3), &d)
        .unwrap();
    let row = s.get_request(r1).unwrap().unwrap();
    assert_eq!(row.status, "approved");
    assert_eq!(row.exception_id, Some(eid));
    assert_eq!(row.days, 3);
    assert_eq!(row.category.as_deref(), Some("social"));
    // Approving again fails and creates no second exception (one transaction).
    assert!(
        s.approve_request(r1, &exception("one.example", &g, 3), &d)
            .is_err()
    );
    assert_eq!(s.list_exceptions(t(NOW), false).unwrap().len(), 1);
    let declined = RequestDecision {
        status: "declined",
        ..d
    };
    s.decide_request(r2, &declined).unwrap();
    assert!(s.decide_request(r2, &declined).is_err(), "decided twice");
    assert_eq!(s.list_requests(Some("declined")).unwrap()[0].id, r2);
    assert_eq!(s.list_requests(None).unwrap().len(), 2);
    assert!(s.list_requests(Some("pending")).unwrap().is_empty());
}

both!(reports, reports_body);
fn reports_body(b: &Backend) {
    let mut s = b.open();
    let new = NewReport {
        url: "https://bad.example/page",
        domain: "bad.example",
        reporter: "teacher",
        comment: "gambling",
        now: t(NOW),
    };
    let id = s.create_report(&new).unwrap();
    let other = s.create_report(&new).unwrap();
    assert_eq!(s.list_reports(Some("pending")).unwrap().len(), 2);
    let d = ReportDecision {
        status: "approved",
        by: "dsl",
        reason: "yes",
        category: Some("local"),
        now: t(NOW),
    };
    s.decide_report(id, &d).unwrap();
    assert!(s.decide_report(id, &d).is_err());
    let row = s.get_report(id).unwrap().unwrap();
    assert_eq!(row.status, "approved");
    assert_eq!(row.category.as_deref(), Some("local"));
    assert!(row.decided.is_some());
    assert_eq!(s.list_reports(Some("pending")).unwrap()[0].id, other);
    assert!(s.get_report(9999).unwrap().is_none());
}

fn event(ts_us: i64, client: &str, group: &str, name: &str, decision: &str) -> LogEvent {
    LogEvent {
        ts_us,
        client: client.to_owned(),
        group: group.to_owned(),
        device: None,
        mac: Some("aa:bb:cc:dd:ee:ff".into()),
        hostname: Some("ipad-7".into()),
        user: None,
        device_id: None,
        name: name.to_owned(),
        qtype: "A".into(),
        decision: decision.to_owned(),
        category: (decision == "blocked").then(|| "social".to_owned()),
        rule: None,
        rcode: "NOERROR".into(),
        incident: false,
        count: 1,
    }
}

both!(incidents, incidents_body);
fn incidents_body(b: &Backend) {
    let mut s = b.open();
    let base = micros(t(NOW));
    let mut ids = Vec::new();
    for i in 0..5 {
        let mut e = event(base + i, "10.0.0.1", "pupils", "bad.example", "blocked");
        e.category = Some("illegal".into());
        e.user = Some("pupil@school".into());
        ids.push(s.insert_incident(&e).unwrap());
    }
    s.set_alert_status(
        ids[4],
        &AlertStatus {
            status: "delivered",
            attempts: 2,
            error: None,
            delivered_us: Some(base + 100),
        },
    )
    .unwrap();
    let page = s.list_incidents(t(NOW), None, 2).unwrap();
    assert_eq!(
        page.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![ids[4], ids[3]]
    );
    assert_eq!(page[0].alert_status, "delivered");
    assert_eq!(page[0].alert_attempts, 2);
    assert_eq!(page[0].user.as_deref(), Some("pupil@school"));
    assert_eq!(page[0].category, "illegal");
    let next = s.list_incidents(t(NOW), Some(ids[3]), 10).unwrap();
    assert_eq!(next.len(), 3);
    assert_eq!(next[0].id, ids[2]);
    assert!(
        s.list_incidents(t("2026-11-24T00:00:00Z"), None, 10)
            .unwrap()
            .is_empty()
    );
}

both!(devices, devices_body);
fn devices_body(b: &Backend) {
    let mut s = b.open();
    let new = |name, expires| NewDevice {
        name,
        owner: "school",
        group: "pupils",
        directory_id: Some("dir-1"),
        created_by: "tech",
        created: t(NOW),
        expires,
    };
    let a = s.enrol_device(&new("ipad-1", None), &|_| false).unwrap();
    let c = s
        .enrol_device(&new("ipad-2", Some(t("2026-11-24T00:00:00Z"))), &|_| false)
        .unwrap();
    assert!(
        s.enrol_device(&new("x", None), &|_| true).is_err(),
        "every ID taken"
    );
    let rows = s.list_devices(t("2026-11-25T00:00:00Z")).unwrap();
    assert_eq!(rows.len(), 2);
    let state = |id: &str| rows.iter().find(|r| r.id == id).unwrap().state.clone();
    assert_eq!(state(&a), "active");
    assert_eq!(state(&c), "expired");
    s.revoke_device(&a, "tech", "lost", t(NOW)).unwrap();
    assert!(s.revoke_device(&a, "tech", "again", t(NOW)).is_err());
    let row = s.get_device(&a, t(NOW)).unwrap().unwrap();
    assert_eq!(row.state, "revoked");
    assert_eq!(row.revoked_reason.as_deref(), Some("lost"));
    let live = s.live_devices().unwrap();
    assert_eq!(live.len(), 1);
    assert_eq!(&*live[0].device.id, c.as_str());
    assert_eq!(live[0].directory_id.as_deref(), Some("dir-1"));
}

fn chain(dir: &std::path::Path) -> Chain {
    Chain::open(
        &chaperone::config::AuditConfig {
            key_file: dir.join("audit.key"),
            head_file: dir.join("audit.head"),
        },
        None,
    )
    .unwrap()
}

both!(audit_chain, audit_body);
fn audit_body(b: &Backend) {
    let mut s = b.open();
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(dir.path());
    assert_eq!(s.audit_head().unwrap().records, 0);
    assert_eq!(s.audit_head().unwrap().head, audit::GENESIS);
    for i in 0..5 {
        let id = chain
            .append(
                s.as_mut(),
                t(NOW),
                "dsl",
                "dsl",
                "exception.create",
                &format!("exception {i}"),
                &serde_json::json!({"reason": "homework", "n": i}),
            )
            .unwrap();
        assert_eq!(id, i + 1, "consecutive ids");
    }
    let head = s.audit_head().unwrap();
    assert_eq!(head.records, 5);
    assert_eq!(head.keyed_from, Some(1));
    let list = s.audit_list(None, 3).unwrap();
    assert_eq!(list.len(), 3);
    assert_eq!(list[1].prev_hash, list[0].hash);
    assert!(list[0].keyed);
    assert_eq!(list[2].subject, "exception 2");
    let expect = Expect {
        key: Some(chain.key()),
        published: chain.published().unwrap(),
        ..Expect::default()
    };
    assert_eq!(
        audit::verify(s.as_mut(), &expect).unwrap(),
        Verification::Intact(5)
    );
    // A fresh connection sees the same chain.
    let mut again = b.open();
    assert_eq!(
        audit::verify(again.as_mut(), &expect).unwrap(),
        Verification::Intact(5)
    );
}

both!(secret, secret_body);
fn secret_body(b: &Backend) {
    let k1 = b.open().secret("pseudonym_key").unwrap();
    let k2 = b.open().secret("pseudonym_key").unwrap();
    assert_eq!(k1.len(), 32);
    assert_eq!(k1, k2, "stable across connections");
    assert_ne!(b.open().secret("other").unwrap(), k1);
}

const DAY_US: i64 = 86_400_000_000;

fn count_queries(s: &mut dyn Store) -> u64 {
    s.table("SELECT COUNT(*) FROM queries WHERE ts_us >= $1", i64::MIN)
        .unwrap()[0][0]
        .parse()
        .unwrap()
}

both!(querylog, querylog_body);
fn querylog_body(b: &Backend) {
    let mut s = b.open();
    let day0 = micros(t("2026-11-20T00:00:00Z"));
    // 10 records on each of three days, at 01:00 + i minutes.
    let batch: Vec<LogEvent> = (0..3)
        .flat_map(|d| {
            (0..10).map(move |i| {
                event(
                    day0 + d * DAY_US + 3_600_000_000 + i * 60_000_000,
                    "10.0.0.1",
                    "pupils",
                    "a.example",
                    "allowed",
                )
            })
        })
        .collect();
    s.insert_queries(&batch).unwrap();
    s.insert_refused(day0, 7).unwrap();
    assert_eq!(count_queries(s.as_mut()), 30);
    // Cut at 01:05 on the second day: the whole first day and five of the second go.
    let cutoff = day0 + DAY_US + 3_600_000_000 + 5 * 60_000_000;
    assert_eq!(s.expire_queries(cutoff).unwrap(), 15);
    assert_eq!(count_queries(s.as_mut()), 15);
    assert_eq!(
        s.table(
            "SELECT COUNT(*) FROM refused_queries WHERE ts_us >= $1",
            i64::MIN
        )
        .unwrap()[0][0],
        "0"
    );
    // Cap at 8 rows: the oldest go.
    let trimmed = s.trim_queries(8).unwrap();
    assert_eq!(trimmed, 7);
    assert_eq!(count_queries(s.as_mut()), 8);
    let oldest: i64 = s
        .table("SELECT MIN(ts_us) FROM queries WHERE ts_us >= $1", i64::MIN)
        .unwrap()[0][0]
        .parse()
        .unwrap();
    assert_eq!(oldest, day0 + 2 * DAY_US + 3_600_000_000 + 2 * 60_000_000);
    assert_eq!(s.trim_queries(8).unwrap(), 0, "under the cap");
    // Writing again (to a day already dropped, too) works.
    s.insert_queries(&batch[..1]).unwrap();
    assert_eq!(count_queries(s.as_mut()), 9);
}

both!(repeats, repeats_body);
/// Identical queries (same client, name, type and outcome) in the same second fold into one
/// row whose `count` says how many; search shows it, and reports add counts, not rows.
fn repeats_body(b: &Backend) {
    let mut s = b.open();
    let sec = micros(t(NOW));
    let mut batch = Vec::new();
    // 10.0.0.1 asks a.example (A) five times within one second, then once in the next.
    for i in 0..5 {
        batch.push(event(
            sec + i * 150_000,
            "10.0.0.1",
            "pupils",
            "a.example",
            "allowed",
        ));
    }
    batch.push(event(
        sec + 1_000_000,
        "10.0.0.1",
        "pupils",
        "a.example",
        "allowed",
    ));
    // Not repeats: another client, another type, another outcome.
    batch.push(event(
        sec + 10,
        "10.0.0.2",
        "pupils",
        "a.example",
        "allowed",
    ));
    let mut aaaa = event(sec + 20, "10.0.0.1", "pupils", "a.example", "allowed");
    aaaa.qtype = "AAAA".into();
    batch.push(aaaa);
    batch.push(event(
        sec + 30,
        "10.0.0.1",
        "pupils",
        "a.example",
        "blocked",
    ));
    chaperone::store::querylog::fold_repeats(&mut batch);
    let shape: Vec<(i64, &str, &str, &str, u32)> = batch
        .iter()
        .map(|e| {
            (
                e.ts_us - sec,
                e.client.as_str(),
                e.qtype.as_str(),
                e.decision.as_str(),
                e.count,
            )
        })
        .collect();
    assert_eq!(
        shape,
        vec![
            (0, "10.0.0.1", "A", "allowed", 5),
            (1_000_000, "10.0.0.1", "A", "allowed", 1),
            (10, "10.0.0.2", "A", "allowed", 1),
            (20, "10.0.0.1", "AAAA", "allowed", 1),
            (30, "10.0.0.1", "A", "blocked", 1),
        ],
        "first of each kept, in order, with its repeats counted"
    );
    s.insert_queries(&batch).unwrap();
    assert_eq!(count_queries(s.as_mut()), 5, "rows");
    let total = s
        .table("SELECT SUM(count) FROM queries WHERE ts_us >= $1", i64::MIN)
        .unwrap();
    assert_eq!(total[0][0], "9", "queries");
    let filter = chaperone::store::records::SearchFilter {
        device: Some("10.0.0.1".into()),
        decision: Some("allowed".into()),
        ..Default::default()
    };
    let rows = s.search_queries(&filter, None, 10).unwrap();
    let counts: Vec<(String, i64)> = rows.iter().map(|r| (r.qtype.clone(), r.count)).collect();
    assert_eq!(
        counts,
        vec![("AAAA".into(), 1), ("A".into(), 1), ("A".into(), 5)],
        "newest first"
    );
    assert!(
        rows[2].csv_line().ends_with(",5\n"),
        "{}",
        rows[2].csv_line()
    );
    // The governors' summary counts queries.
    let summary = report::summary(s.as_mut(), t("2026-11-22T00:00:00Z")).unwrap();
    let csv = report::render(&summary, report::Format::Csv, "summary");
    assert!(
        csv.lines().any(|l| l.contains(",allowed,8,")),
        "8 allowed queries in 4 rows: {csv}"
    );
}

/// A database written before `queries.count` gains it on open; its rows count once.
#[test]
fn sqlite_upgrade_adds_the_query_count() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("old.db");
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.execute_batch(
            "CREATE TABLE queries (id INTEGER PRIMARY KEY, ts_us INTEGER NOT NULL, client TEXT NOT NULL,
                grp TEXT NOT NULL, device TEXT, mac TEXT, name TEXT NOT NULL, qtype TEXT NOT NULL,
                decision TEXT NOT NULL, category TEXT, rule TEXT, rcode TEXT NOT NULL);
             INSERT INTO queries (ts_us, client, grp, name, qtype, decision, rcode)
                VALUES (1795392000000000, '10.0.0.9', 'pupils', 'old.example', 'A', 'allowed', 'NOERROR');
             PRAGMA user_version = 2;",
        )
        .unwrap();
    }
    let mut s = Sqlite::open(&path).unwrap();
    let rows = s.search_queries(&Default::default(), None, 10).unwrap();
    assert_eq!(rows.len(), 1);
    assert_eq!((rows[0].name.as_str(), rows[0].count), ("old.example", 1));
    s.insert_queries(&[event(
        1_795_392_000_000_001,
        "10.0.0.9",
        "pupils",
        "new.example",
        "allowed",
    )])
    .unwrap();
    assert_eq!(
        s.search_queries(&Default::default(), None, 10)
            .unwrap()
            .len(),
        2
    );
}

/// The same data in both backends gives the same governors' report, table for table.
#[test]
fn report_tables_are_identical_on_sqlite_and_postgres() {
    let render = |b: &Backend| {
        let mut s = b.open();
        let base = micros(t(NOW));
        let mut batch = Vec::new();
        for i in 0..40i64 {
            let (group, decision) = match i % 4 {
                0 => ("pupils", "blocked"),
                1 => ("staff", "allowed"),
                2 => ("pupils", "allowed"),
                _ => ("staff", "blocked"),
            };
            let mut e = event(
                base + i,
                &format!("10.0.0.{}", i % 3),
                group,
                "x.example",
                decision,
            );
            if i % 8 == 0 {
                e.category = Some("service:tiktok".into());
            }
            if i % 5 == 0 {
                e.user = Some("pupil@school".into());
            }
            batch.push(e);
        }
        s.insert_queries(&batch).unwrap();
        let mut inc = event(base, "10.0.0.1", "pupils", "bad.example", "blocked");
        inc.category = Some("illegal".into());
        s.insert_incident(&inc).unwrap();
        s.create_exception(&exception("ok.example", &["pupils".to_owned()], 2))
            .unwrap();
        let since = t("2026-11-22T00:00:00Z");
        let summary = report::summary(s.as_mut(), since).unwrap();
        let detail = report::detail(s.as_mut(), since).unwrap();
        (
            report::render(&summary, report::Format::Csv, "summary"),
            report::render(&detail, report::Format::Csv, "detail"),
        )
    };
    let (sq_summary, sq_detail) = render(&Backend::sqlite());
    let (pg_summary, pg_detail) = render(&Backend::postgres());
    assert!(sq_summary.lines().count() > 5, "{sq_summary}");
    assert_eq!(sq_summary, pg_summary);
    // The detail's `ORDER BY client, 9 DESC` leaves rows with equal counts in no set
    // order (report.rs), and the two engines break such ties differently: same rows.
    let sorted = |s: &str| {
        let mut v: Vec<String> = s.lines().map(str::to_owned).collect();
        v.sort();
        v
    };
    assert_eq!(sorted(&sq_detail), sorted(&pg_detail));
}

/// Retention drops whole day partitions (gone from pg_inherits), keeping the rest.
#[test]
fn postgres_query_log_retention_drops_day_partitions() {
    let db = pg::database();
    let mut s = Postgres::connect_now(&db.config()).unwrap();
    let day0 = micros(t("2026-11-20T00:00:00Z"));
    let batch: Vec<LogEvent> = (0..4)
        .map(|d| {
            event(
                day0 + d * DAY_US + 1,
                "10.0.0.1",
                "pupils",
                "a.example",
                "allowed",
            )
        })
        .collect();
    s.insert_queries(&batch).unwrap();
    let mut su = db.superuser();
    let parts = |su: &mut ::postgres::Client| -> Vec<String> {
        let mut v: Vec<String> = su
            .query(
                "SELECT c.relname::TEXT FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid WHERE i.inhparent = 'queries'::regclass",
                &[],
            )
            .unwrap()
            .iter()
            .map(|r| r.get(0))
            .collect();
        v.sort();
        v
    };
    assert_eq!(
        parts(&mut su),
        [
            "queries_2026_11_20",
            "queries_2026_11_21",
            "queries_2026_11_22",
            "queries_2026_11_23"
        ]
    );
    assert_eq!(s.expire_queries(day0 + 2 * DAY_US).unwrap(), 2);
    assert_eq!(parts(&mut su), ["queries_2026_11_22", "queries_2026_11_23"]);
    // The cap drops whole partitions too when it can.
    assert_eq!(s.trim_queries(1).unwrap(), 1);
    assert_eq!(parts(&mut su), ["queries_2026_11_23"]);
}

/// Editing a record behind the trigger's back (a superuser disabling it) is detected.
#[test]
fn postgres_audit_refuses_edits_and_detects_tampering() {
    let db = pg::database();
    let mut s = Postgres::connect_now(&db.config()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let chain = chain(dir.path());
    for i in 0..3 {
        chain
            .append(
                &mut s,
                t(NOW),
                "dsl",
                "dsl",
                "exception.create",
                &format!("e{i}"),
                &serde_json::json!({}),
            )
            .unwrap();
    }
    let mut su = db.superuser();
    let err = su
        .execute("UPDATE audit SET detail = '{\"x\":1}' WHERE id = 2", &[])
        .unwrap_err();
    assert!(
        err.to_string().contains("append-only") || format!("{err:?}").contains("append-only"),
        "{err:?}"
    );
    assert!(su.execute("DELETE FROM audit WHERE id = 3", &[]).is_err());
    assert!(su.batch_execute("TRUNCATE audit").is_err());
    su.batch_execute(
        "ALTER TABLE audit DISABLE TRIGGER audit_no_update; UPDATE audit SET detail = '{\"x\":1}' WHERE id = 2; ALTER TABLE audit ENABLE TRIGGER audit_no_update",
    )
    .unwrap();
    let expect = Expect {
        key: Some(chain.key()),
        published: chain.published().unwrap(),
        ..Expect::default()
    };
    match audit::verify(&mut s, &expect).unwrap() {
        Verification::Broken { id, .. } => assert_eq!(id, 2),
        other => panic!("tampering not detected: {other:?}"),
    }
}

/// Appends from several connections at once (several instances) stay one chain.
#[test]
fn postgres_concurrent_audit_appends_keep_one_chain() {
    const THREADS: usize = 4;
    const EACH: usize = 25;
    let db = pg::database();
    let dir = tempfile::tempdir().unwrap();
    let chain = std::sync::Arc::new(chain(dir.path()));
    let cfg = db.config();
    std::thread::scope(|scope| {
        for th in 0..THREADS {
            let chain = chain.clone();
            let cfg = cfg.clone();
            scope.spawn(move || {
                let mut s = Postgres::connect_now(&cfg).unwrap();
                for i in 0..EACH {
                    chain
                        .append(
                            &mut s,
                            t(NOW),
                            "dsl",
                            "dsl",
                            "exception.create",
                            &format!("t{th} #{i}"),
                            &serde_json::json!({}),
                        )
                        .unwrap();
                }
            });
        }
    });
    let mut s = Postgres::connect_now(&cfg).unwrap();
    let expect = Expect {
        key: Some(chain.key()),
        ..Expect::default()
    };
    assert_eq!(
        audit::verify(&mut s, &expect).unwrap(),
        Verification::Intact((THREADS * EACH) as u64)
    );
    assert_eq!(s.audit_head().unwrap().records, (THREADS * EACH) as u64);
}

/// Wait for a change on `rx`, announcing `change` every 100 ms meanwhile (the listener
/// may not be listening yet).
fn announce_until_heard(
    s: &mut dyn Store,
    rx: &mpsc::Receiver<Change>,
    change: Change,
) -> Duration {
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(10) {
        s.announce(change).unwrap();
        if let Ok(got) = rx.recv_timeout(Duration::from_millis(100))
            && got == change
        {
            return start.elapsed();
        }
    }
    panic!("{change:?} not heard within 10 s");
}

#[test]
fn postgres_announce_reaches_listen() {
    let db = pg::database();
    let (tx, rx) = mpsc::channel();
    let listener = postgres::listen(&db.config(), move |c| {
        let _ = tx.send(c);
    })
    .unwrap();
    let mut s = Postgres::connect_now(&db.config()).unwrap();
    for c in [Change::Exceptions, Change::Devices, Change::Lists] {
        let took = announce_until_heard(&mut s, &rx, c);
        eprintln!("{c:?} heard after {took:?}");
    }
    listener.stop();
}

/// The listener reconnects after PostgreSQL restarts and reports every kind of change
/// (notifications sent meanwhile were lost); the store reconnects on its next call.
#[test]
fn postgres_listen_and_store_reconnect_after_a_restart() {
    let cluster = pg::Cluster::start();
    let db = cluster.database();
    let (tx, rx) = mpsc::channel();
    let listener = postgres::listen(&db.config(), move |c| {
        let _ = tx.send(c);
    })
    .unwrap();
    let mut s = Postgres::connect_now(&db.config()).unwrap();
    announce_until_heard(&mut s, &rx, Change::Devices);
    while rx.try_recv().is_ok() {}
    cluster.stop();
    assert!(s.announce(Change::Exceptions).is_err(), "server down");
    cluster.start_again();
    let deadline = Instant::now() + Duration::from_secs(20);
    let mut heard = std::collections::HashSet::new();
    while heard.len() < 3 && Instant::now() < deadline {
        if let Ok(c) = rx.recv_timeout(Duration::from_millis(200)) {
            heard.insert(c);
        }
    }
    assert_eq!(
        heard.len(),
        3,
        "every kind of change after the reconnect: {heard:?}"
    );
    // The store connects again on its own.
    s.create_exception(&exception("back.example", &[], 1))
        .unwrap();
    announce_until_heard(&mut s, &rx, Change::Exceptions);
    listener.stop();
    drop(db);
}

/// Connecting while PostgreSQL is down does not fail: the store connects on first use.
#[test]
fn postgres_store_connects_lazily_when_the_server_is_down() {
    let cluster = pg::Cluster::start();
    let db = cluster.database();
    cluster.stop();
    let mut s = Postgres::connect(&db.config()).expect("no error at start");
    assert!(s.secret("k").is_err());
    cluster.start_again();
    assert_eq!(s.secret("k").unwrap().len(), 32);
}

/// The harness itself: a database of one's own, reachable, dropped afterwards.
#[test]
fn postgres_harness_gives_each_test_its_own_database() {
    let a = pg::database();
    let b = pg::database();
    assert_ne!(a.name, b.name);
    let row = a
        .superuser()
        .query_one("SELECT current_database()", &[])
        .unwrap();
    assert_eq!(row.get::<_, String>(0), a.name);
    let name = b.name.clone();
    drop(b);
    let left = pg::shared()
        .admin()
        .query("SELECT 1 FROM pg_database WHERE datname = $1", &[&name])
        .unwrap();
    assert!(left.is_empty(), "dropped databases are gone");
}

/// A cluster of one's own stops and starts again on the same port, data kept.
#[test]
fn postgres_harness_stops_and_starts_again() {
    let cluster = pg::Cluster::start();
    let db = cluster.database();
    db.superuser()
        .batch_execute("CREATE TABLE t (x int); INSERT INTO t VALUES (7)")
        .unwrap();
    cluster.stop();
    let mut cfg: ::postgres::Config = db.url.parse().unwrap();
    cfg.connect_timeout(Duration::from_secs(1));
    assert!(cfg.connect(::postgres::NoTls).is_err(), "stopped");
    cluster.start_again();
    let row = db.superuser().query_one("SELECT x FROM t", &[]).unwrap();
    assert_eq!(row.get::<_, i32>(0), 7);
}

/// A server with `[storage] url` at PostgreSQL starts and logs its queries there (and
/// the governors' report reads them back from PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_server_logs_queries_to_postgresql() {
    use crate::foundation::{ADS, ADULT, CONFIG};
    use crate::support::*;
    use hickory_proto::rr::RecordType;

    let db = tokio::task::spawn_blocking(pg::database).await.unwrap();
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("example.test.", "@ 3600 IN SOA ns.example.test. admin.example.test. 1 7200 3600 1209600 3600\n@ 3600 IN NS ns.example.test.\nns 3600 IN A 192.0.2.1\nwww 300 IN A 192.0.2.10\n")],
    )
    .await;
    let config = format!("{CONFIG}\n[storage]\nurl = \"{}\"\n", db.url);
    let h = start(
        &config,
        up.addr,
        &[("adult.txt", ADULT), ("ads.hosts", ADS)],
        school_morning(),
    )
    .await;
    let pupil = h.client("127.0.0.2");
    pupil.udp("www.example.test.", RecordType::A).await;
    pupil.udp("adult.listed.test.", RecordType::A).await;
    let cfg = db.config();
    let rows = tokio::task::spawn_blocking(move || {
        let mut s = Postgres::connect_now(&cfg).unwrap();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let rows = s
                .table(
                    "SELECT name, decision FROM queries WHERE ts_us >= $1 ORDER BY name",
                    i64::MIN,
                )
                .unwrap();
            if rows.len() >= 2 || Instant::now() > deadline {
                return rows;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    })
    .await
    .unwrap();
    assert_eq!(
        rows,
        vec![
            vec!["adult.listed.test".to_owned(), "blocked".to_owned()],
            vec!["www.example.test".to_owned(), "allowed".to_owned()],
        ]
    );
    h.stop().await;
    // The driver must not block inside the runtime: drop (DROP DATABASE) off it.
    tokio::task::spawn_blocking(move || drop(db)).await.unwrap();
}
