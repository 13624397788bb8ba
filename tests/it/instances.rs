//! Instances that agree (issue 15): two Chaperone instances sharing one PostgreSQL. A
//! change made through either's admin API applies on the other (measured, printed, and
//! bounded generously); both keep answering DNS while PostgreSQL is down and write again
//! after it is back; concurrent admin actions on both keep one audit chain.
//!
//! Every test here needs PostgreSQL (`support::pg`), so every name contains `postgres`.

use std::time::{Duration, Instant};

use chaperone::identity::Credential;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::safeguarding::{DSL, TECH};
use crate::support::*;

/// The issue's bound is 1 s; the tests assert this much (a loaded CI machine), and print
/// what they measured.
const BOUND: Duration = Duration::from_secs(10);

const FILES: &[(&str, &str)] = &[
    ("social.txt", "social.listed.test\nchat.listed.test\n"),
    ("local.txt", "# sites reported by staff\n"),
];

/// One instance's config: its own SQLite-free storage (`db_url`), the trust's shared
/// audit key, a small query log queue (`queue`), a resync every `resync_secs`.
fn config(db_url: &str, key_file: &std::path::Path, queue: usize, resync_secs: u64) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[ratelimit]
enabled = false

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
category = "local"
path = "local.txt"

[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"

[group.pupils]
block = ["social", "local"]

[querylog]
queue = {queue}
retention_days = 30

[storage]
url = "{db_url}"
connect_timeout_ms = 500
resync_secs = {resync_secs}

[audit]
key_file = "{key}"

[enrolment]
doh_url = "https://dns.example-school.org.uk/dns-query"
dot_name = "dns.example-school.org.uk"

[admin]
listen = "127.0.0.1:0"
max_exception_days = 14

[[admin.token]]
name = "Sam Technician"
role = "technician"
sha256 = "{tech}"

[[admin.token]]
name = "Dee Safeguarding"
role = "dsl"
sha256 = "{dsl}"
"#,
        key = key_file.display(),
        tech = token_hash(TECH),
        dsl = token_hash(DSL),
    )
}

/// Run `f` on a thread outside the async runtime (the PostgreSQL client and the test
/// harness block, and panic inside a runtime).
fn off_runtime<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    std::thread::scope(|s| s.spawn(f).join().expect("harness call"))
}

/// Drops its value outside the runtime too (a test database is dropped over a connection).
struct Off<T: Send>(Option<T>);

impl<T: Send> Drop for Off<T> {
    fn drop(&mut self) {
        if let Some(v) = self.0.take() {
            off_runtime(move || drop(v));
        }
    }
}

impl<T: Send> std::ops::Deref for Off<T> {
    type Target = T;
    fn deref(&self) -> &T {
        self.0.as_ref().expect("present until dropped")
    }
}

/// Two instances on one database, and the upstream they share.
struct Pair {
    a: Harness,
    b: Harness,
    _up: Authority,
    _keys: tempfile::TempDir,
}

async fn pair(db_url: &str, queue: usize, resync_secs: u64) -> Pair {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let keys = tempfile::tempdir().unwrap();
    let key = keys.path().join("audit.key");
    let text = config(db_url, &key, queue, resync_secs);
    let a = start(&text, up.addr, FILES, school_morning()).await;
    let b = start(&text, up.addr, FILES, school_morning()).await;
    Pair {
        a,
        b,
        _up: up,
        _keys: keys,
    }
}

fn json_of(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"))
}

async fn post(h: &Harness, path: &str, token: &str, body: Value) -> (u16, Value) {
    let (s, text) = http(
        h.admin(),
        "POST",
        path,
        Some(token),
        Some(&body.to_string()),
    )
    .await;
    (s, json_of(&text))
}

async fn get(h: &Harness, path: &str, token: &str) -> (u16, Value) {
    let (s, text) = http(h.admin(), "GET", path, Some(token), None).await;
    (s, json_of(&text))
}

/// Grant a day's unblock of `domain` to the pupils through `h`'s admin API; its id.
async fn grant(h: &Harness, domain: &str) -> i64 {
    grant_at(h.admin(), domain.to_owned()).await
}

async fn grant_at(admin: std::net::SocketAddr, domain: String) -> i64 {
    let body = json!({"domain": domain, "groups": ["pupils"], "reason": "Year 9 project", "requested_by": "Ms Patel", "days": 1});
    let (s, text) = http(
        admin,
        "POST",
        "/exceptions",
        Some(TECH),
        Some(&body.to_string()),
    )
    .await;
    assert_eq!(s, 201, "grant {domain}: {text}");
    json_of(&text)["id"].as_i64().expect("exception id")
}

/// Whether a pupil's query for `name` on `h` resolves (to the upstream's address).
async fn resolves(h: &Harness, name: &str) -> bool {
    let m = h.client("127.0.0.2").udp(name, RecordType::A).await;
    rcode(&m) == ResponseCode::NoError && !ips(&m).is_empty()
}

/// Poll `check` every 5 ms until it holds; how long it took, or None after [`BOUND`].
async fn until<F: AsyncFnMut() -> bool>(mut check: F) -> Option<Duration> {
    let started = Instant::now();
    while started.elapsed() < BOUND {
        if check().await {
            return Some(started.elapsed());
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

/// Whether `id` is in `h`'s live device index, as a DoH path and as a DoT name.
fn device_known(h: &Harness, id: &str) -> bool {
    let p = &h.running.as_ref().unwrap().pipeline;
    let now = p.clock().now().as_second();
    let ids = p.state().identities();
    ids.resolve(Credential::Path(id), now).is_some()
        && ids.resolve(Credential::Sni(id), now).is_some()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_changes_on_one_instance_apply_on_the_other() {
    let db = Off(Some(off_runtime(pg::database)));
    // Resync once an hour: what arrives here arrives by notification.
    let p = pair(&db.url, 1024, 3600).await;
    let name = "social.listed.test.";
    assert!(
        !resolves(&p.a, name).await && !resolves(&p.b, name).await,
        "blocked on both"
    );

    // Granted on A → resolves on B.
    let id = grant(&p.a, "social.listed.test").await;
    let took = until(async || resolves(&p.b, name).await).await;
    println!("exception granted on A, resolving on B after {took:?}");
    assert!(
        took.is_some(),
        "B did not apply A's exception within {BOUND:?}"
    );

    // Revoked on B → blocked again on A.
    let (s, row) = post(
        &p.b,
        &format!("/exceptions/{id}/revoke"),
        TECH,
        json!({"reason": "project over"}),
    )
    .await;
    assert_eq!(s, 200, "{row}");
    let took = until(async || !resolves(&p.a, name).await).await;
    println!("exception revoked on B, blocked on A after {took:?}");
    assert!(
        took.is_some(),
        "A did not apply B's revocation within {BOUND:?}"
    );

    // A device enrolled on A is known on B (its DoH path and DoT name).
    let (s, dev) = post(
        &p.a,
        "/devices",
        TECH,
        json!({"name": "Ipad 7", "group": "pupils", "days": 30}),
    )
    .await;
    assert_eq!(s, 201, "{dev}");
    let dev_id = dev["id"].as_str().expect("device id").to_owned();
    let took = until(async || device_known(&p.b, &dev_id)).await;
    println!("device enrolled on A, known on B after {took:?}");
    assert!(
        took.is_some(),
        "B did not learn A's device within {BOUND:?}"
    );
    let (s, row) = post(
        &p.b,
        &format!("/devices/{dev_id}/revoke"),
        TECH,
        json!({"reason": "lost"}),
    )
    .await;
    assert_eq!(s, 200, "{row}");
    assert!(
        until(async || !device_known(&p.a, &dev_id)).await.is_some(),
        "A still accepts the revoked device"
    );

    // A report approved on B: A adds the domain to its own local list and blocks it.
    let reported = "games.listed.test.";
    assert!(resolves(&p.a, reported).await, "not listed yet");
    let (s, rep) = post(
        &p.b,
        "/reports",
        TECH,
        json!({"url": "https://games.listed.test/play", "reporter": "Mr Jones"}),
    )
    .await;
    assert_eq!(s, 201, "{rep}");
    let rid = rep["id"].as_i64().unwrap();
    let (s, body) = post(
        &p.b,
        &format!("/reports/{rid}/approve"),
        TECH,
        json!({"reason": "gambling", "category": "local"}),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    let took = until(async || !resolves(&p.a, reported).await).await;
    println!("report approved on B, blocked on A after {took:?}");
    assert!(
        took.is_some(),
        "A did not block B's approved report within {BOUND:?}"
    );
    let local = std::fs::read_to_string(p.a.dir.path().join("local.txt")).unwrap();
    assert!(
        local.contains("games.listed.test") && local.contains(&format!("report {rid} ")),
        "{local}"
    );

    // Both serve the same lists, and say so.
    let (_, ha) = get(&p.a, "/healthz", TECH).await;
    let (_, hb) = get(&p.b, "/healthz", TECH).await;
    assert_eq!(ha["storage"], "postgres");
    assert_eq!(ha["bundle_content"], hb["bundle_content"], "{ha} {hb}");
    assert!(
        metric(
            p.b.admin(),
            "chaperone_store_changes_applied_total{change=\"exceptions\"}"
        )
        .await
            >= 1.0
    );
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_concurrent_admin_actions_on_both_instances_keep_one_audit_chain() {
    let db = Off(Some(off_runtime(pg::database)));
    let p = pair(&db.url, 1024, 3600).await;
    // Four grants at a time on each instance: the admin listener holds at most
    // `[http] max_connections_per_client` (8) connections from one address.
    let mut ids = Vec::new();
    for round in 0..5 {
        let mut grants = tokio::task::JoinSet::new();
        for i in round * 4..round * 4 + 4 {
            grants.spawn(grant_at(p.a.admin(), format!("a{i}.example.test")));
            grants.spawn(grant_at(p.b.admin(), format!("b{i}.example.test")));
        }
        ids.extend(grants.join_all().await);
    }
    assert_eq!(ids.len(), 40);
    for h in [&p.a, &p.b] {
        let (s, v) = get(h, "/audit/verify", DSL).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["intact"], true, "{v}");
        assert_eq!(v["records"], 40, "{v}");
    }
    let (_, log) = get(&p.a, "/audit", DSL).await;
    let log = log.as_array().expect("audit records");
    let mut positions: Vec<i64> = log.iter().map(|r| r["id"].as_i64().unwrap()).collect();
    positions.sort();
    assert_eq!(
        positions,
        (1..=40).collect::<Vec<_>>(),
        "one chain, no gaps"
    );
    // Both instances see every exception (their own and, by notification, the other's).
    let all = until(async || {
        let (_, b) = get(&p.b, "/healthz", TECH).await;
        b["exceptions_active"] == 40
    })
    .await;
    assert!(all.is_some(), "B did not load all 40 exceptions");
    p.a.stop().await;
    p.b.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_down_both_instances_answer_then_writes_and_changes_resume() {
    let cluster = Off(Some(off_runtime(pg::Cluster::start)));
    let db = Off(Some(off_runtime(|| cluster.database())));
    // A tiny query log queue (fills at once while the database is away) and a resync
    // every second.
    let p = pair(&db.url, 16, 1).await;
    grant(&p.a, "social.listed.test").await;
    assert!(
        until(async || resolves(&p.b, "social.listed.test.").await)
            .await
            .is_some()
    );
    // B answered those queries: its writer reaches PostgreSQL.
    assert!(
        until(async || metric(p.b.admin(), "chaperone_querylog_written_total").await > 0.0)
            .await
            .is_some(),
        "query log writes"
    );

    off_runtime(|| cluster.stop());
    let started = Instant::now();
    // Both keep answering (allowed, blocked, and the exception granted before).
    for i in 0..300 {
        for h in [&p.a, &p.b] {
            assert!(
                resolves(h, &format!("q{i}.listed.test.")).await,
                "query {i} answered"
            );
        }
    }
    for h in [&p.a, &p.b] {
        assert!(
            resolves(h, "social.listed.test.").await,
            "the exception stays in force"
        );
        assert!(!resolves(h, "chat.listed.test.").await, "still filtering");
    }
    println!(
        "600 queries answered with PostgreSQL down in {:?}",
        started.elapsed()
    );
    let dropped =
        until(async || metric(p.a.admin(), "chaperone_querylog_dropped_total").await > 0.0).await;
    assert!(dropped.is_some(), "dropped query log events counted");
    let down = until(async || metric(p.b.admin(), "chaperone_store_up").await == 0.0).await;
    assert!(down.is_some(), "chaperone_store_up shows the outage");

    off_runtime(|| cluster.start_again());
    let written = metric(p.a.admin(), "chaperone_querylog_written_total").await;
    let mut n = 0;
    let resumed = until(async || {
        n += 1;
        resolves(&p.a, &format!("after{n}.listed.test.")).await;
        metric(p.a.admin(), "chaperone_querylog_written_total").await > written
    })
    .await;
    println!("query log writes resumed {resumed:?} after PostgreSQL came back");
    assert!(resumed.is_some(), "query log writes resume");

    // Changes made after the restart propagate again.
    let granted = Instant::now();
    let _ = until(async || {
        let (s, _) = post(&p.a, "/exceptions", TECH, json!({"domain": "chat.listed.test", "groups": ["pupils"], "reason": "after the outage", "requested_by": "Ms Patel", "days": 1})).await;
        s == 201
    })
    .await
    .expect("the admin API writes again");
    let took = until(async || resolves(&p.b, "chat.listed.test.").await).await;
    println!(
        "after the restart: exception granted on A, resolving on B {took:?} later ({:?} since the first try)",
        granted.elapsed()
    );
    assert!(took.is_some(), "changes propagate after the restart");
    assert!(
        until(async || metric(p.b.admin(), "chaperone_store_up").await == 1.0)
            .await
            .is_some()
    );
    p.a.stop().await;
    p.b.stop().await;
}
