//! Query log write throughput: how many events per second the writer thread sustains into
//! SQLite (batched transactions) and into a JSON lines file, with and without
//! pseudonymisation, and what offering one event costs the DNS path.
//!
//! The producer offers events as fast as it can; when the bounded queue is full it waits
//! for room (the server would drop and count instead), so events/s is the writer's
//! sustained drain rate, from the first offer until `flush()` returns with every event
//! written. On a shared machine wall time is noisy, so the writer thread's own CPU time
//! per event is reported too (Linux schedstat), and the rate one core would sustain.
//!
//! Run: `cargo bench --bench querylog` (release build); events per run:
//! CHAPERONE_QUERYLOG_EVENTS (default 500000).
//!
//! PostgreSQL too when `CHAPERONE_BENCH_PG` is a superuser URL of a running server (the
//! bench starts nothing; each run gets a fresh database, dropped afterwards), e.g. a
//! throwaway cluster: `initdb -D /tmp/b --auth=trust -U postgres` and
//! `postgres -D /tmp/b -p 5544 -c fsync=off` as the postgres user, then
//! `CHAPERONE_BENCH_PG=postgres://postgres@127.0.0.1:5544/postgres cargo bench --bench querylog`.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaperone::config::QueryLogFormat;
use chaperone::metrics::Metrics;
use chaperone::policy::clock::SystemClock;
use chaperone::record::LogEvent;
use chaperone::state::{self, State};
use chaperone::store::querylog;

fn main() {
    let n: usize = std::env::var("CHAPERONE_QUERYLOG_EVENTS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(500_000);
    let events = synthetic_events(n);
    println!(
        "| sink | pseudonymise | events | seconds | events/s | writer CPU ns/event | events/s per writer core | offer ns (producer, incl. 2 clock reads) |"
    );
    println!("|---|---|---|---|---|---|---|---|");
    let pg = std::env::var("CHAPERONE_BENCH_PG")
        .ok()
        .filter(|u| !u.is_empty());
    let mut runs = vec![
        (QueryLogFormat::Sqlite, false, None),
        (QueryLogFormat::Sqlite, true, None),
        (QueryLogFormat::Jsonl, false, None),
    ];
    if let Some(url) = &pg {
        runs.push((QueryLogFormat::Sqlite, false, Some(url.as_str())));
        runs.push((QueryLogFormat::Sqlite, true, Some(url.as_str())));
    }
    for (format, pseudo, pg) in runs {
        let dir = tempfile::tempdir().expect("temp dir");
        let db = pg.map(PgDatabase::create);
        let (secs, offer_ns, writer_ns) = run(dir.path(), format, pseudo, db.as_ref(), &events);
        println!(
            "| {} | {} | {n} | {secs:.2} | {:.0} | {writer_ns:.0} | {:.0} | {offer_ns:.0} |",
            match (format, &db) {
                (_, Some(_)) => "postgres (COPY)",
                (QueryLogFormat::Sqlite, None) => "sqlite",
                (QueryLogFormat::Jsonl, None) => "jsonl file",
            },
            if pseudo { "all clients" } else { "none" },
            n as f64 / secs,
            1e9 / writer_ns,
        );
    }
}

/// Realistic events: 2000 clients, 20000 names, one in eight blocked.
fn synthetic_events(n: usize) -> Vec<LogEvent> {
    let start = jiff::Timestamp::now().as_microsecond();
    (0..n)
        .map(|i| {
            let blocked = i % 8 == 0;
            LogEvent {
                ts_us: start + i as i64,
                client: format!("10.20.{}.{}", (i / 250) % 8, i % 250),
                group: "pupils".to_owned(),
                device: None,
                mac: None,
                hostname: None,
                user: None,
                device_id: None,
                name: format!("www.site{}.example.org", i % 20_000),
                qtype: if i % 3 == 0 { "AAAA" } else { "A" }.to_owned(),
                decision: if blocked { "blocked" } else { "allowed" }.to_owned(),
                category: blocked.then(|| "social".to_owned()),
                rule: Some(if blocked {
                    format!("site{}.example.org", i % 20_000)
                } else {
                    "Unlisted".to_owned()
                }),
                rcode: if blocked {
                    "Non-Existent Domain"
                } else {
                    "No Error"
                }
                .to_owned(),
                incident: false,
                count: 1,
            }
        })
        .collect()
}

/// (wall seconds, producer ns per accepted offer, writer-thread CPU ns per event)
fn run(
    dir: &Path,
    format: QueryLogFormat,
    pseudo: bool,
    pg: Option<&PgDatabase>,
    events: &[LogEvent],
) -> (f64, f64, f64) {
    std::fs::write(dir.join("social.txt"), "site1.example.org\n").expect("list");
    let querylog = match format {
        QueryLogFormat::Sqlite => "",
        QueryLogFormat::Jsonl => "format = \"jsonl\"\njsonl_path = \"queries.jsonl\"\n",
    };
    let pseudonymise = if pseudo {
        "pseudonymise = [\"pupils\"]"
    } else {
        ""
    };
    let config = dir.join("chaperone.toml");
    std::fs::write(
        &config,
        format!(
            r#"
[server]
listen = ["127.0.0.1:0"]

[upstream]
servers = ["127.0.0.1:9"]

[lists]
bundle = "lists.fstb"

[[lists.source]]
category = "social"
path = "social.txt"

[[network]]
cidrs = ["10.0.0.0/8"]
group = "pupils"

[group.pupils]
block = ["social"]

[querylog]
{querylog}{pseudonymise}
{storage}"#,
            storage = pg.map_or_else(String::new, |d| format!("[storage]\nurl = \"{}\"\n", d.url)),
        ),
    )
    .expect("config");
    let loaded = state::load(&config, Vec::new()).expect("config loads");
    let cfg = loaded.config.querylog.clone();
    let db = loaded.config.storage_path.clone();
    let store = chaperone::store::open(&loaded.config).expect("open the store");
    let state = State::new(&config, loaded, Arc::new(Metrics::new()));
    let (log, writer) =
        querylog::start(store, &cfg, state, Arc::new(SystemClock)).expect("start the writer");

    let started = Instant::now();
    let mut offer = Duration::ZERO;
    for e in events {
        loop {
            let attempt = e.clone();
            let t = Instant::now();
            let accepted = log.offer(attempt);
            if accepted {
                offer += t.elapsed();
                break;
            }
            // Full: the server would drop and count it; here we wait, to measure the
            // writer's sustained rate.
            std::thread::yield_now();
        }
    }
    log.flush();
    let secs = started.elapsed().as_secs_f64();
    let writer_ns = thread_cpu_ns("querylog");
    drop(log);
    let _ = writer.join();
    let written = match format {
        QueryLogFormat::Sqlite if pg.is_some() => pg.map_or(0, PgDatabase::rows),
        QueryLogFormat::Sqlite => rusqlite::Connection::open(&db)
            .and_then(|c| c.query_row("SELECT SUM(count) FROM queries", [], |r| r.get::<_, i64>(0)))
            .expect("count rows") as usize,
        // The file is rotated by size (max_bytes / max_files): count every part.
        QueryLogFormat::Jsonl => std::fs::read_dir(dir)
            .expect("read the log directory")
            .filter_map(Result::ok)
            .filter(|f| f.file_name().to_string_lossy().starts_with("queries.jsonl"))
            .map(|f| {
                std::fs::read_to_string(f.path())
                    .expect("read the log")
                    .lines()
                    .count()
            })
            .sum(),
    };
    assert_eq!(written, events.len(), "every event written");
    let per_event = |ns: u64| ns as f64 / events.len() as f64;
    (
        secs,
        per_event(offer.as_nanos() as u64),
        writer_ns.map_or(f64::NAN, per_event),
    )
}

/// CPU time a thread of this process has used, by name (Linux: schedstat, nanoseconds).
/// Unlike wall time it is not inflated by other work on a shared machine.
fn thread_cpu_ns(name: &str) -> Option<u64> {
    std::fs::read_dir("/proc/self/task").ok()?.find_map(|t| {
        let dir = t.ok()?.path();
        let comm = std::fs::read_to_string(dir.join("comm")).ok()?;
        if comm.trim() != name {
            return None;
        }
        std::fs::read_to_string(dir.join("schedstat"))
            .ok()?
            .split_whitespace()
            .next()?
            .parse()
            .ok()
    })
}

/// A fresh database on the `CHAPERONE_BENCH_PG` server, dropped afterwards.
struct PgDatabase {
    admin: String,
    name: String,
    url: String,
}

impl PgDatabase {
    fn create(admin: &str) -> Self {
        let name = format!("chaperone_bench_{:08x}", rand::random::<u32>());
        let mut c = postgres::Client::connect(admin, postgres::NoTls).expect("CHAPERONE_BENCH_PG");
        c.batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create the bench database");
        let base = admin.rsplit_once('/').map_or(admin, |(b, _)| b);
        Self {
            admin: admin.to_owned(),
            url: format!("{base}/{name}"),
            name,
        }
    }

    fn rows(&self) -> usize {
        let mut c = postgres::Client::connect(&self.url, postgres::NoTls).expect("connect");
        let n: i64 = c
            .query_one("SELECT SUM(count) FROM queries", &[])
            .expect("count rows")
            .get(0);
        n as usize
    }
}

impl Drop for PgDatabase {
    fn drop(&mut self) {
        if let Ok(mut c) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
