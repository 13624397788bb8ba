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
