//! Propagation latency between two instances sharing one PostgreSQL (issue 15's target:
//! a change made on any instance applies on every instance within 1 s).
//!
//! Two Chaperone servers run in this process (each with its own admin API, store
//! connections, LISTEN connection and policy), on one database. The bench makes
//! `CHAPERONE_CHANGES` exception changes (default 1,000: a grant, then its revocation,
//! alternately) through instance A's admin API over HTTP on loopback, and measures for
//! each, from the moment the request is sent to A:
//!
//! - `A answered`: A's response (write, NOTIFY, audit append, A's own refresh);
//! - `B applied`: B's live policy snapshot (the one the DNS path reads on its next query)
//!   shows the change: NOTIFY delivered to B's LISTEN thread, B re-read the exceptions
//!   and swapped its policy. Polled every 50 µs on a thread of its own.
//!
//! B's periodic resync is set to an hour, so every change arrives by notification.
//!
//! Run: `cargo bench --bench propagation` (starts a throwaway PostgreSQL like the tests,
//! or uses `CHAPERONE_TEST_PG`). Loopback only; every wait is bounded (10 s).

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chaperone::server::{self, StartOptions};
use chaperone::state::State;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[allow(dead_code)]
#[path = "../tests/it/support/pg.rs"]
mod pg;

const TOKEN: &str = "bench-technician-token";
/// Longest wait for one change.
const BOUND: Duration = Duration::from_secs(10);

fn main() {
    let changes: usize = std::env::var("CHAPERONE_CHANGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .expect("runtime");
    // The harness's PostgreSQL client blocks: outside the runtime.
    let db = pg::database();
    rt.block_on(run(changes, &db.url));
    drop(rt);
    drop(db);
}

fn config(dir: &Path, url: &str, key: &Path) -> std::path::PathBuf {
    std::fs::write(dir.join("social.txt"), "social.bench.test\n").expect("list");
    let hash = hex::encode(chaperone::admin::auth::hash_token(TOKEN));
    let text = format!(
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
cidrs = ["127.0.0.2/32"]
group = "pupils"
[group.pupils]
block = ["social"]
[querylog]
enabled = false
[storage]
url = "{url}"
resync_secs = 3600
[audit]
key_file = "{key}"
[admin]
listen = "127.0.0.1:0"
[[admin.token]]
name = "Bench"
role = "technician"
sha256 = "{hash}"
"#,
        key = key.display()
    );
    let path = dir.join("chaperone.toml");
    std::fs::write(&path, text).expect("config");
    path
}

async fn run(changes: usize, url: &str) {
    let dirs = [tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap()];
    let key = dirs[0].path().join("audit.key");
    let opts = StartOptions {
        watch_files: false,
        signals: false,
        ..StartOptions::default()
    };
    let a = server::start(&config(dirs[0].path(), url, &key), opts.clone())
        .await
        .expect("A starts");
    let b = server::start(&config(dirs[1].path(), url, &key), opts)
        .await
        .expect("B starts");
    let admin_a = a.admin_addr.expect("A's admin API");
    let state_b = b.pipeline.state().clone();

    let mut answered = Vec::with_capacity(changes);
    let mut applied = Vec::with_capacity(changes);
    let mut id = 0i64;
    let started = Instant::now();
    for i in 0..changes {
        let grant = i % 2 == 0;
        let sent = Instant::now();
        let (status, body) = if grant {
            post(admin_a, "/exceptions", r#"{"domain":"social.bench.test","groups":["pupils"],"reason":"bench","requested_by":"bench","days":1}"#).await
        } else {
            post(
                admin_a,
                &format!("/exceptions/{id}/revoke"),
                r#"{"reason":"bench"}"#,
            )
            .await
        };
        answered.push(sent.elapsed());
        assert!(
            status == 200 || status == 201,
            "change {i}: {status} {body}"
        );
        if grant {
            id = serde_json::from_str::<serde_json::Value>(&body).unwrap()["id"]
                .as_i64()
                .expect("exception id");
        }
        let want = usize::from(grant);
        let state = state_b.clone();
        let took = tokio::task::spawn_blocking(move || wait_for(&state, want, sent))
            .await
            .unwrap();
        match took {
            Some(t) => applied.push(t),
            None => panic!("change {i} not applied on B within {BOUND:?}"),
        }
    }
    let total = started.elapsed();
    println!(
        "{changes} exception changes (grant/revoke alternately) on A, applied on B by notification, in {total:.1?}\n"
    );
    println!("| from the request sent to A | p50 | p90 | p99 | max |");
    println!("|---|---|---|---|---|");
    row("A answered (write + NOTIFY + audit)", &mut answered);
    row("B applied (live policy swapped)", &mut applied);
    a.shutdown().await;
    b.shutdown().await;
}

/// Poll B's live policy until it holds `want` exceptions; the time since `sent`.
fn wait_for(state: &Arc<State>, want: usize, sent: Instant) -> Option<Duration> {
    while sent.elapsed() < BOUND {
        if state.load().policy.exceptions().len() == want {
            return Some(sent.elapsed());
        }
        std::thread::sleep(Duration::from_micros(50));
    }
    None
}

fn row(what: &str, v: &mut [Duration]) {
    v.sort();
    let q = |p: f64| {
        let i = ((v.len() as f64 * p).ceil() as usize).clamp(1, v.len()) - 1;
        format!("{:.2} ms", v[i].as_secs_f64() * 1e3)
    };
    println!(
        "| {what} | {} | {} | {} | {} |",
        q(0.50),
        q(0.90),
        q(0.99),
        q(1.0)
    );
}

/// A minimal HTTP/1.1 POST with the technician token: (status, body).
async fn post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {TOKEN}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("send");
    let mut out = Vec::new();
    tokio::time::timeout(BOUND, s.read_to_end(&mut out))
        .await
        .expect("answer in time")
        .expect("read");
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    // Bodies here are small JSON: take the chunk's payload if chunked.
    let body = match body.split_once("\r\n") {
        Some((size, rest)) if usize::from_str_radix(size.trim(), 16).is_ok() => {
            rest.split("\r\n").next().unwrap_or("").to_owned()
        }
        _ => body.to_owned(),
    };
    (status, body)
}
