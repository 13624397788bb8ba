//! The `chaperone` command as a technician runs it, beside a running server: the built
//! binary, its output read as text.

use std::process::{Command, Output};

use hickory_proto::rr::RecordType;

use crate::safeguarding::{FILES, TECH, config};
use crate::support::*;

fn chaperone(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(args)
        .env_remove("RUST_LOG")
        .output()
        .expect("the chaperone binary runs")
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Grant an unblock through the admin API of a running server, then ask the `explain`
/// command: it reads the live exceptions from the database exactly as the server does.
#[tokio::test]
async fn explain_sees_an_exception_granted_through_the_admin_api() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let h = start(
        &config("http://127.0.0.1:9/none"),
        up.addr,
        FILES,
        school_morning(),
    )
    .await;
    let cfg = h.config.to_str().unwrap().to_owned();
    let explain = |at: &'static str| {
        let cfg = cfg.clone();
        move || {
            chaperone(&[
                "explain",
                "--config",
                &cfg,
                "--client",
                "127.0.0.2",
                "--at",
                at,
                "chat.listed.test",
            ])
        }
    };
    // 12:00 on the school day the test's clock is set to (Monday 23 November 2026, GMT).
    let before = tokio::task::spawn_blocking(explain("2026-11-23 12:00"))
        .await
        .unwrap();
    assert!(
        before.status.success(),
        "{}",
        String::from_utf8_lossy(&before.stderr)
    );
    assert!(
        stdout(&before).contains("decision: blocked (category social"),
        "{}",
        stdout(&before)
    );

    let body = r#"{"domain": "chat.listed.test", "groups": ["pupils"], "reason": "class project", "requested_by": "Ms Patel", "days": 1}"#;
    let (status, created) = http(h.admin(), "POST", "/exceptions", Some(TECH), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert!(
        !ips(&h
            .client("127.0.0.2")
            .udp("chat.listed.test.", RecordType::A)
            .await)
        .is_empty(),
        "the server allows it"
    );

    let after = tokio::task::spawn_blocking(explain("2026-11-23 12:00"))
        .await
        .unwrap();
    let text = stdout(&after);
    assert!(
        after.status.success(),
        "{}",
        String::from_utf8_lossy(&after.stderr)
    );
    assert!(
        text.contains("decision: allowed (by exception #1 for chat.listed.test until Tue 2026-11-24 10:00 GMT)"),
        "{text}"
    );
    assert!(
        text.contains("exception #1: chat.listed.test allowed until"),
        "{text}"
    );
    // The day after it expires, explain says blocked again, as the server would.
    let later = tokio::task::spawn_blocking(explain("2026-11-25T09:00:00Z"))
        .await
        .unwrap();
    assert!(
        stdout(&later).contains("decision: blocked"),
        "{}",
        stdout(&later)
    );
    h.stop().await;
    up.stop().await;
}

#[test]
fn explain_at_takes_school_time_and_names_the_forms_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), FILES);
    let cfg = dir.path().join("chaperone.toml");
    std::fs::write(
        &cfg,
        config("http://127.0.0.1:9/none").replace("{UPSTREAM}", "127.0.0.1:9"),
    )
    .unwrap();
    let cfg = cfg.to_str().unwrap();
    let run = |at: &str| {
        chaperone(&[
            "explain",
            "--config",
            cfg,
            "--client",
            "127.0.0.2",
            "--at",
            at,
            "www.example.test",
        ])
    };
    // 12:30 in London in July is 11:30 UTC (BST).
    let out = run("2026-07-01 12:30");
    assert!(out.status.success());
    assert!(
        stdout(&out).contains("at Wed 2026-07-01 12:30 BST (2026-07-01T11:30:00Z)"),
        "{}",
        stdout(&out)
    );
    assert!(
        stdout(&out).contains("decision: allowed (on no list)"),
        "{}",
        stdout(&out)
    );
    let out = run("mon 12:30");
    assert!(out.status.success());
    assert!(stdout(&out).contains("at Mon "), "{}", stdout(&out));
    let bad = run("next tuesday");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(
        err.contains("RFC 3339") && err.contains("mon 12:30") && err.contains("2026-12-01 12:30"),
        "{err}"
    );
}

/// `chaperone admin` prints tables a person reads, and the API's JSON with `--json`.
#[tokio::test]
async fn admin_prints_tables_for_people_and_json_for_scripts() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let h = start(
        &config("http://127.0.0.1:9/none"),
        up.addr,
        FILES,
        school_morning(),
    )
    .await;
    let url = format!("http://{}", h.admin());
    let cfg = h.config.to_str().unwrap().to_owned();
    let admin = move |args: Vec<&'static str>| {
        let (url, cfg) = (url.clone(), cfg.clone());
        move || {
            let mut all = vec!["admin", "--url", &url, "--token", TECH, "--config", &cfg];
            all.extend(args);
            chaperone(&all)
        }
    };
    let granted = tokio::task::spawn_blocking(admin(vec![
        "unblock",
        "chat.listed.test",
        "--reason",
        "class project",
        "--requested-by",
        "Ms Patel",
        "--days",
        "3",
        "--group",
        "pupils",
    ]))
    .await
    .unwrap();
    let text = stdout(&granted);
    assert!(granted.status.success(), "{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("domain ") && l.ends_with("chat.listed.test")),
        "{text}"
    );
    assert!(
        !text.contains('{') && !text.contains("\"domain\""),
        "not JSON: {text}"
    );

    let listed = tokio::task::spawn_blocking(admin(vec!["exceptions"]))
        .await
        .unwrap();
    let text = stdout(&listed);
    let lines: Vec<&str> = text.lines().collect();
    assert!(lines[0].starts_with("id  state   domain"), "{text}");
    let row = lines[1];
    assert!(
        row.starts_with("1   active  chat.listed.test  pupils"),
        "{text}"
    );
    // The expiry in the school's time zone (GMT in November), aligned under its header.
    assert!(row.contains("Thu 26 Nov 2026 10:00 GMT"), "{text}");
    assert_eq!(
        lines[0].find("expires"),
        row.find("Thu 26 Nov"),
        "aligned: {text}"
    );

    let json = tokio::task::spawn_blocking(admin(vec!["--json", "exceptions"]))
        .await
        .unwrap();
    assert!(json.status.success());
    let v: serde_json::Value = serde_json::from_slice(&json.stdout).expect("--json prints JSON");
    assert_eq!(v[0]["domain"], "chat.listed.test");
    assert_eq!(v[0]["expires"], "2026-11-26T10:00:00Z");
    h.stop().await;
    up.stop().await;
}

/// Logs to a file (or journald) are plain words: no colour codes, no Rust debug output.
#[test]
fn logs_written_to_a_file_carry_no_colour_codes() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), FILES);
    let cfg = dir.path().join("chaperone.toml");
    std::fs::write(
        &cfg,
        config("http://127.0.0.1:9/none").replace("{UPSTREAM}", "127.0.0.1:9"),
    )
    .unwrap();
    let log = dir.path().join("stderr.log");
    let mut child = Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["serve", "--config"])
        .arg(&cfg)
        .env_remove("NO_COLOR")
        .env_remove("RUST_LOG")
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(&log).unwrap())
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    let mut text = String::new();
    while std::time::Instant::now() < deadline {
        text = std::fs::read_to_string(&log).unwrap_or_default();
        if text.contains("answering") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    child.kill().ok();
    child.wait().ok();
    assert!(
        text.contains("Chaperone is answering DNS on 127.0.0.1:"),
        "{text}"
    );
    assert!(
        !text.contains("\x1b["),
        "colour codes in a log file: {text:?}"
    );
    assert!(
        !text.contains("Some(") && !text.contains("None"),
        "debug output: {text}"
    );
}
