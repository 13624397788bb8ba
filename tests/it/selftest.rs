//! `chaperone selftest` against a running server on the example config: every answer as
//! the policy says (exit 0, a passing checks-log row per group), and a server enforcing a
//! different policy is caught (exit 1, a failing row naming the mismatch).

use std::path::Path;
use std::sync::Arc;

use chaperone::policy::clock::{Clock, SystemClock};
use chaperone::server::{self, Running, StartOptions};
use chaperone::store::Store;
use chaperone::store::records::Period;
use chaperone::store::sqlite::Sqlite;

use crate::support::{Authority, authority, crate_root};

/// The upstream: the SafeSearch targets resolve (a rewrite answers with the target's
/// addresses, so without them the server answers SERVFAIL), everything else is refused.
async fn upstream() -> Authority {
    const SOA: &str = "$TTL 300\n@ IN SOA ns.example. h.example. 1 3600 600 86400 60\n";
    let zones: Vec<(String, String)> = [
        ("google.com.", "forcesafesearch"),
        ("bing.com.", "strict"),
        ("duckduckgo.com.", "safe"),
        ("youtube.com.", "restrict"),
        ("pixabay.com.", "safesearch"),
        ("brave.com.", "forcesafe.search"),
    ]
    .iter()
    .map(|(z, host)| {
        let mut text = format!("{SOA}{host} IN A 192.0.2.10\n");
        if *z == "youtube.com." {
            text.push_str("restrictmoderate IN A 192.0.2.11\n");
        }
        (z.to_string(), text)
    })
    .collect();
    let refs: Vec<(&str, &str)> = zones
        .iter()
        .map(|(z, t)| (z.as_str(), t.as_str()))
        .collect();
    authority("127.0.0.1:0".parse().unwrap(), &refs).await
}

/// `config/example.toml` made runnable in `dir`: listeners on port 0, paths absolute, the
/// bundle and database in `dir`, the test's upstream. `edit` changes it further.
fn example_in(
    dir: &Path,
    upstream: std::net::SocketAddr,
    edit: impl FnOnce(&mut toml::Table),
) -> std::path::PathBuf {
    let text = std::fs::read_to_string(crate_root().join("config/example.toml")).unwrap();
    let mut value: toml::Value = toml::from_str(&text).unwrap();
    fix(&mut value, "");
    let t = value.as_table_mut().unwrap();
    t["upstream"]["servers"] = toml::Value::Array(vec![upstream.to_string().into()]);
    t["upstream"]["attempts"] = 1.into();
    t["upstream"]["timeout_ms"] = 500.into();
    t["lists"]["bundle"] = dir.join("lists.fstb").display().to_string().into();
    t["storage"]["path"] = dir.join("chaperone.db").display().to_string().into();
    edit(t);
    let path = dir.join("chaperone.toml");
    std::fs::write(&path, toml::to_string(&value).unwrap()).unwrap();
    path
}

fn fix(v: &mut toml::Value, key: &str) {
    match v {
        toml::Value::Table(t) => t.iter_mut().for_each(|(k, v)| fix(v, k)),
        toml::Value::Array(a) => a.iter_mut().for_each(|v| fix(v, key)),
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

/// The server on the real clock (selftest computes what to expect at the real time).
async fn serve(config: &Path) -> Running {
    let opts = StartOptions {
        clock: Arc::new(SystemClock) as Arc<dyn Clock>,
        watch_files: false,
        signals: false,
    };
    server::start(config, opts)
        .await
        .unwrap_or_else(|e| panic!("server starts: {e}"))
}

async fn selftest(config: &Path, server: std::net::SocketAddr) -> (bool, String) {
    let config = config.to_owned();
    tokio::task::spawn_blocking(move || {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
            .arg("selftest")
            .arg("--config")
            .arg(&config)
            .arg("--server")
            .arg(server.to_string())
            .output()
            .unwrap();
        (
            out.status.success(),
            String::from_utf8_lossy(&out.stdout).into_owned()
                + &String::from_utf8_lossy(&out.stderr),
        )
    })
    .await
    .unwrap()
}

#[tokio::test]
async fn selftest_passes_on_the_example_config_and_records_the_check() {
    let up = upstream().await;
    let dir = tempfile::tempdir().unwrap();
    let config = example_in(dir.path(), up.addr, |_| {});
    let running = serve(&config).await;
    let (ok, out) = selftest(&config, running.dns_addrs[0]).await;
    assert!(ok, "{out}");
    assert!(!out.contains("FAIL"), "{out}");
    for needle in [
        "pupils  127.0.0.2  category adult",
        "safesearch google",
        "doh canary",
        "allowed name",
        "EDE 17",
    ] {
        assert!(out.contains(needle), "{needle:?} in\n{out}");
    }
    running.shutdown().await;
    let mut db = Sqlite::open(&dir.path().join("chaperone.db")).unwrap();
    let checks = db.list_checks(Period::default(), 10).unwrap();
    let mut groups: Vec<&str> = checks.iter().map(|c| c.target.as_str()).collect();
    groups.sort();
    assert_eq!(
        groups,
        [
            "group guests (from 127.0.0.4)",
            "group ks1 (from 127.0.0.3)",
            "group pupils (from 127.0.0.2)",
            "group staff (from 127.0.0.1)"
        ]
    );
    assert!(
        checks
            .iter()
            .all(|c| c.passed && c.source == "selftest" && c.who == "selftest")
    );
    let audit = db.audit_list(None, 100).unwrap();
    assert_eq!(
        audit.iter().filter(|r| r.action == "check.record").count(),
        4
    );
}

#[tokio::test]
async fn selftest_fails_when_the_server_enforces_another_policy() {
    let up = upstream().await;
    // The server runs a config where pupils no longer block adult sites...
    let served_dir = tempfile::tempdir().unwrap();
    let served = example_in(served_dir.path(), up.addr, |t| {
        let block = t["group"]["pupils"]["block"].as_array_mut().unwrap();
        block.retain(|c| c.as_str() != Some("adult"));
    });
    let running = serve(&served).await;
    // ...while the selftest checks the example's policy.
    let dir = tempfile::tempdir().unwrap();
    let config = example_in(dir.path(), up.addr, |_| {});
    let (ok, out) = selftest(&config, running.dns_addrs[0]).await;
    running.shutdown().await;
    assert!(!ok, "{out}");
    let fail = out
        .lines()
        .find(|l| l.ends_with("FAIL"))
        .unwrap_or_else(|| panic!("a FAIL row in\n{out}"));
    assert!(
        fail.starts_with("pupils") && fail.contains("category adult"),
        "{fail}"
    );
    let mut db = Sqlite::open(&dir.path().join("chaperone.db")).unwrap();
    let checks = db.list_checks(Period::default(), 10).unwrap();
    let pupils = checks
        .iter()
        .find(|c| c.target.starts_with("group pupils"))
        .unwrap();
    assert!(!pupils.passed);
    assert!(
        pupils.detail.contains("category adult"),
        "{}",
        pupils.detail
    );
    assert!(pupils.action.starts_with("investigate"));
    assert!(
        checks
            .iter()
            .filter(|c| !c.target.starts_with("group pupils"))
            .all(|c| c.passed)
    );
}
