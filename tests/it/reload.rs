//! Hot swap: reload under concurrent queries answers every query; a corrupt bundle or a
//! bad config never replaces the running snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chaperone::lists::bundle::{BundleBuilder, write_atomically};
use chaperone::lists::parse::{Action, MatchKind};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;

use crate::support::*;

const TOKEN: &str = "reload-test-token";

fn config() -> String {
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
[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"
[group.pupils]
block = ["adult"]
[admin]
listen = "127.0.0.1:0"
[[admin.token]]
name = "tech"
role = "technician"
sha256 = "{}"
[[admin.token]]
name = "governor"
role = "viewer"
sha256 = "{}"
"#,
        token_hash(TOKEN),
        token_hash("viewer-token")
    )
}

fn bundle_with(names: &[&str]) -> Vec<u8> {
    let mut b = BundleBuilder::new();
    let c = b.category("adult").unwrap();
    for n in names {
        b.add(c, n, MatchKind::Subtree, Action::Block);
    }
    b.finish().unwrap().0
}

async fn setup() -> (Authority, Harness) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[
            ("example.test.", EXAMPLE_ZONE),
            ("listed.test.", LISTED_ZONE),
        ],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    write_atomically(
        &dir.path().join("lists.fstb"),
        &bundle_with(&["adult.listed.test"]),
    )
    .unwrap();
    // Start in a directory that already holds the bundle.
    let files: Vec<(&str, &str)> = Vec::new();
    let h = start_in(dir, &config(), up.addr, &files, school_morning()).await;
    (up, h)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_answers_every_query() {
    let (up, h) = setup().await;
    let server = h.dns();
    let answered = Arc::new(AtomicUsize::new(0));
    let lost = Arc::new(AtomicUsize::new(0));
    let mut load = Vec::new();
    for worker in 0..4 {
        let (answered, lost) = (answered.clone(), lost.clone());
        load.push(tokio::spawn(async move {
            let c = Client::new("127.0.0.2", server);
            for i in 0..250 {
                let name = if i % 2 == 0 {
                    "www.example.test."
                } else {
                    "adult.listed.test."
                };
                let q = Client::message(name, RecordType::A);
                match c.send_udp(&q).await {
                    Some(_) => answered.fetch_add(1, Ordering::Relaxed),
                    None => lost.fetch_add(1, Ordering::Relaxed),
                };
                let _ = worker;
            }
        }));
    }
    let path = h.dir.path().join("lists.fstb");
    for round in 0..5 {
        let extra = format!("new{round}.listed.test");
        write_atomically(&path, &bundle_with(&["adult.listed.test", &extra])).unwrap();
        let (status, body) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
        assert_eq!(status, 200, "{body}");
    }
    for t in load {
        t.await.unwrap();
    }
    assert_eq!(
        lost.load(Ordering::Relaxed),
        0,
        "every query answered during reloads"
    );
    assert_eq!(answered.load(Ordering::Relaxed), 1000);
    let c = h.client("127.0.0.2");
    assert_eq!(
        rcode(&c.udp("new4.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain,
        "new list in force"
    );
    assert_eq!(
        rcode(&c.udp("new0.listed.test.", RecordType::A).await),
        ResponseCode::NoError,
        "old entry gone"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_corrupt_bundle_or_bad_config_keeps_the_old_snapshot() {
    let (up, h) = setup().await;
    let c = h.client("127.0.0.2");
    let path = h.dir.path().join("lists.fstb");
    let generation = || {
        h.running
            .as_ref()
            .unwrap()
            .pipeline
            .state()
            .load()
            .generation
    };
    let g0 = generation();

    let mut corrupt = bundle_with(&["adult.listed.test", "other.listed.test"]);
    let last = corrupt.len() - 1;
    corrupt[last] ^= 0x55;
    write_atomically(&path, &corrupt).unwrap();
    let (status, body) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(status, 422);
    assert!(body.contains("checksum"), "the reason is given: {body}");
    assert_eq!(generation(), g0);
    assert_eq!(
        rcode(&c.udp("adult.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain,
        "old lists still serve"
    );

    write_atomically(&path, b"not a bundle").unwrap();
    let (status, _) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(status, 422);

    write_atomically(&path, &bundle_with(&["adult.listed.test"])).unwrap();
    let good = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(
        &h.config,
        good.replace("block = [\"adult\"]", "block = [\"adlut\"]"),
    )
    .unwrap();
    let (status, body) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(status, 422);
    assert!(
        body.contains("group.pupils.block[0]") && body.contains("adlut"),
        "names the key: {body}"
    );
    assert_eq!(
        rcode(&c.udp("adult.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain
    );

    let metrics = http(h.admin(), "GET", "/metrics", None, None).await.1;
    assert!(
        metrics.contains("chaperone_reloads_total{result=\"failure\"} 3"),
        "{metrics}"
    );
    assert_eq!(generation(), g0);

    std::fs::write(&h.config, good).unwrap();
    let (status, _) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(status, 200);
    assert_eq!(generation(), g0 + 1);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn reload_needs_a_technician_token() {
    let (up, h) = setup().await;
    assert_eq!(http(h.admin(), "POST", "/reload", None, None).await.0, 401);
    assert_eq!(
        http(h.admin(), "POST", "/reload", Some("wrong"), None)
            .await
            .0,
        401
    );
    assert_eq!(
        http(h.admin(), "POST", "/reload", Some("viewer-token"), None)
            .await
            .0,
        403
    );
    assert_eq!(
        http(h.admin(), "POST", "/reload", Some(TOKEN), None)
            .await
            .0,
        200
    );
    h.stop().await;
    up.stop().await;
}

/// A free loopback port (UDP and TCP both free at the time of asking).
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

/// The real binary, started on a config in `dir`; killed on drop.
struct Serve(std::process::Child);

impl Drop for Serve {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

async fn wait_for(what: &str, mut check: impl AsyncFnMut() -> bool) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    panic!("timed out waiting for {what}");
}

#[tokio::test]
async fn the_binary_reloads_on_file_change_and_sighup_and_stops_on_sigterm() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    let (dns, admin) = (free_port(), free_port());
    let text = config()
        .replace("{UPSTREAM}", &up.addr.to_string())
        .replace(
            "listen = [\"127.0.0.1:0\"]",
            &format!("listen = [\"127.0.0.1:{dns}\"]"),
        )
        .replace(
            "listen = \"127.0.0.1:0\"",
            &format!("listen = \"127.0.0.1:{admin}\""),
        );
    let path = dir.path().join("chaperone.toml");
    std::fs::write(&path, text).unwrap();
    let bundle = dir.path().join("lists.fstb");
    write_atomically(&bundle, &bundle_with(&["adult.listed.test"])).unwrap();
    let child = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["serve", "--config"])
        .arg(&path)
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut serve = Serve(child);
    let server: std::net::SocketAddr = format!("127.0.0.1:{dns}").parse().unwrap();
    let admin: std::net::SocketAddr = format!("127.0.0.1:{admin}").parse().unwrap();
    let pupil = Client::new("127.0.0.2", server);
    wait_for("the server to answer", async || {
        pupil
            .send_udp(&Client::message("adult.listed.test.", RecordType::A))
            .await
            .is_some()
    })
    .await;
    assert_eq!(
        rcode(&pupil.udp("adult.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain
    );
    assert_eq!(
        rcode(&pupil.udp("fresh.listed.test.", RecordType::A).await),
        ResponseCode::NoError
    );

    // A new bundle renamed into place is picked up by the file watcher.
    write_atomically(
        &bundle,
        &bundle_with(&["adult.listed.test", "fresh.listed.test"]),
    )
    .unwrap();
    wait_for("the watcher to reload", async || {
        pupil
            .send_udp(&Client::message("fresh.listed.test.", RecordType::A))
            .await
            .is_some_and(|m| rcode(&m) == ResponseCode::NXDomain)
    })
    .await;

    // SIGHUP reloads too: the snapshot generation rises.
    let generation = async || -> i64 {
        let (_, body) = http(admin, "GET", "/healthz", None, None).await;
        serde_json::from_str::<serde_json::Value>(&body).unwrap()["generation"]
            .as_i64()
            .unwrap()
    };
    let before = generation().await;
    let pid = serve.0.id().to_string();
    assert!(
        std::process::Command::new("kill")
            .args(["-HUP", &pid])
            .status()
            .unwrap()
            .success()
    );
    wait_for("SIGHUP to reload", async || generation().await > before).await;

    // SIGTERM: a graceful exit with status 0.
    assert!(
        std::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .unwrap()
            .success()
    );
    let mut status = None;
    for _ in 0..100 {
        if let Some(s) = serve.0.try_wait().unwrap() {
            status = Some(s);
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(status.expect("exits after SIGTERM").success());
    up.stop().await;
}

/// The reload config, with the adult list compiled from `adult.txt` instead of a bundle.
fn source_config() -> String {
    config().replace(
        "bundle = \"lists.fstb\"",
        "bundle = \"lists.fstb\"\n[[lists.source]]\ncategory = \"adult\"\npath = \"adult.txt\"",
    )
}

fn names(n: usize) -> String {
    (0..n).map(|i| format!("site{i}.listed.test\n")).collect()
}

async fn start_with_sources() -> (Authority, Harness) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[
            ("example.test.", EXAMPLE_ZONE),
            ("listed.test.", LISTED_ZONE),
        ],
    )
    .await;
    let adult = names(10);
    let h = start_in(
        tempfile::tempdir().unwrap(),
        &source_config(),
        up.addr,
        &[("adult.txt", adult.as_str())],
        school_morning(),
    )
    .await;
    (up, h)
}

fn generation(h: &Harness) -> u64 {
    h.running
        .as_ref()
        .unwrap()
        .pipeline
        .state()
        .load()
        .generation
}

/// A half-downloaded list must not unblock sites: the reload is refused, says which file
/// shrank and by how much, the old lists keep serving, and it counts as a failure; forced,
/// it goes through.
#[tokio::test]
async fn a_list_that_shrank_past_the_limit_is_refused_unless_forced() {
    let (up, h) = start_with_sources().await;
    let c = h.client("127.0.0.2");
    let g0 = generation(&h);
    let bundle = std::fs::read(h.dir.path().join("lists.fstb")).unwrap();
    std::fs::write(h.dir.path().join("adult.txt"), names(3)).unwrap();
    let (status, body) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("adult.txt") && body.contains("shrank from 10 to 3") && body.contains("-70%"),
        "names the file and the drop: {body}"
    );
    assert!(
        body.contains("category adult shrank from 10 to 3"),
        "{body}"
    );
    assert_eq!(generation(&h), g0);
    assert_eq!(
        rcode(&c.udp("site7.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain,
        "the old lists still block"
    );
    assert_eq!(
        std::fs::read(h.dir.path().join("lists.fstb")).unwrap(),
        bundle,
        "the shrunken bundle was not written (a restart would load it)"
    );
    let metrics = http(h.admin(), "GET", "/metrics", None, None).await.1;
    assert!(
        metrics.contains("chaperone_reloads_total{result=\"failure\"} 1"),
        "{metrics}"
    );
    // Losing half exactly is within the default limit.
    std::fs::write(h.dir.path().join("adult.txt"), names(5)).unwrap();
    let (status, body) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    // Forced, an emptied list goes through.
    std::fs::write(h.dir.path().join("adult.txt"), "").unwrap();
    let (status, body) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(status, 422, "{body}");
    let (status, body) = http(h.admin(), "POST", "/reload?force=true", Some(TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rcode(&c.udp("site1.listed.test.", RecordType::A).await),
        ResponseCode::NoError
    );
    h.stop().await;
    up.stop().await;
}

/// A prebuilt bundle is checked per category.
#[tokio::test]
async fn a_prebuilt_bundle_that_lost_a_category_is_refused() {
    let (up, h) = setup().await;
    let path = h.dir.path().join("lists.fstb");
    write_atomically(&path, &bundle_with(&[])).unwrap();
    let (status, body) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(status, 422, "{body}");
    assert!(
        body.contains("category adult shrank from 1 to 0 entries (-100%)"),
        "{body}"
    );
    assert_eq!(
        rcode(
            &h.client("127.0.0.2")
                .udp("adult.listed.test.", RecordType::A)
                .await
        ),
        ResponseCode::NXDomain
    );
    h.stop().await;
    up.stop().await;
}

/// Settings read only at start-up refuse the reload, naming the key, instead of being
/// silently ignored.
#[tokio::test]
async fn a_restart_only_setting_refuses_the_reload_naming_the_key() {
    let (up, h) = setup().await;
    let good = std::fs::read_to_string(&h.config).unwrap();
    let g0 = generation(&h);
    let cases = [
        (
            "server.max_inflight",
            good.replace("[server]\n", "[server]\nmax_inflight = 7\n"),
        ),
        (
            "server.tcp_idle_timeout_secs",
            good.replace("[server]\n", "[server]\ntcp_idle_timeout_secs = 3\n"),
        ),
        (
            "cache.max_entries",
            format!("{good}\n[cache]\nmax_entries = 10\n"),
        ),
        (
            "storage.path",
            format!("{good}\n[storage]\npath = \"other.db\"\n"),
        ),
    ];
    for (key, text) in cases {
        std::fs::write(&h.config, text).unwrap();
        let (status, body) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
        assert_eq!(status, 422, "{key}: {body}");
        assert!(
            body.contains(key) && body.contains("restart"),
            "{key} named: {body}"
        );
        assert_eq!(generation(&h), g0);
    }
    std::fs::write(&h.config, &good).unwrap();
    let (status, body) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    h.stop().await;
    up.stop().await;
}

/// Cache TTL limits apply from the first query after a reload: with
/// `max_negative_ttl = 0`, a negative answer is no longer cached.
#[tokio::test]
async fn cache_limits_apply_on_reload() {
    let (up, h) = setup().await;
    let c = h.client("127.0.0.2");
    let hits = async || {
        let metrics = http(h.admin(), "GET", "/metrics", None, None).await.1;
        metrics
            .lines()
            .find_map(|l| l.strip_prefix("chaperone_cache_lookups_total{result=\"hit\"} "))
            .and_then(|v| v.trim().parse::<u64>().ok())
            .expect("the hit counter")
    };
    let twice = async |name: &str| {
        for _ in 0..2 {
            let m = c.udp(name, RecordType::A).await;
            assert_eq!(rcode(&m), ResponseCode::NXDomain);
        }
    };
    let h0 = hits().await;
    twice("missing1.example.test.").await;
    assert_eq!(hits().await, h0 + 1, "the negative answer was cached");
    let good = std::fs::read_to_string(&h.config).unwrap();
    std::fs::write(
        &h.config,
        format!("{good}\n[cache]\nmax_negative_ttl = 0\n"),
    )
    .unwrap();
    let (status, body) = http(h.admin(), "POST", "/reload", Some(TOKEN), None).await;
    assert_eq!(status, 200, "{body}");
    twice("missing2.example.test.").await;
    assert_eq!(
        hits().await,
        h0 + 1,
        "max_negative_ttl = 0 applied live: not cached"
    );
    h.stop().await;
    up.stop().await;
}

/// A revoke made while a reload compiles its lists is not undone by the swap. The list
/// file is a FIFO, so the reload blocks reading it until the test has revoked: no sleeps.
#[cfg(unix)]
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_revoke_during_a_reload_is_not_undone() {
    let (up, h) = start_with_sources().await;
    let pupil = h.client("127.0.0.2");
    let body = r#"{"domain": "site1.listed.test", "reason": "project", "requested_by": "Ms Patel", "days": 1}"#;
    let (status, created) = http(h.admin(), "POST", "/exceptions", Some(TOKEN), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    let id = serde_json::from_str::<serde_json::Value>(&created).unwrap()["id"]
        .as_i64()
        .unwrap();
    assert_eq!(
        rcode(&pupil.udp("site1.listed.test.", RecordType::A).await),
        ResponseCode::NoError,
        "unblocked"
    );
    let list = h.dir.path().join("adult.txt");
    std::fs::remove_file(&list).unwrap();
    let made = std::process::Command::new("mkfifo")
        .arg(&list)
        .status()
        .unwrap();
    assert!(made.success());
    let admin = h.admin();
    let reload =
        tokio::spawn(async move { http(admin, "POST", "/reload", Some(TOKEN), None).await });
    // Opening the FIFO for writing returns once the reload has opened it for reading.
    let writer = {
        let list = list.clone();
        tokio::task::spawn_blocking(move || std::fs::OpenOptions::new().write(true).open(list))
            .await
            .unwrap()
            .unwrap()
    };
    let (status, revoked) = http(
        h.admin(),
        "POST",
        &format!("/exceptions/{id}/revoke"),
        Some(TOKEN),
        Some(r#"{"reason": "project finished"}"#),
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(
        rcode(&pupil.udp("site1.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain,
        "revoked"
    );
    tokio::task::spawn_blocking(move || {
        use std::io::Write;
        let mut writer = writer;
        writer.write_all(names(10).as_bytes())
    })
    .await
    .unwrap()
    .unwrap();
    let (status, body) = reload.await.unwrap();
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        rcode(&pupil.udp("site1.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain,
        "the revoke survives the reload"
    );
    h.stop().await;
    up.stop().await;
}
