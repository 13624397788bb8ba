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
    let h = start(&config("http://127.0.0.1:9/none"), up.addr, FILES, school_morning()).await;
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
    let before = tokio::task::spawn_blocking(explain("2026-11-23 12:00")).await.unwrap();
    assert!(before.status.success(), "{}", String::from_utf8_lossy(&before.stderr));
    assert!(stdout(&before).contains("decision: blocked (category social"), "{}", stdout(&before));

    let body = r#"{"domain": "chat.listed.test", "groups": ["pupils"], "reason": "class project", "requested_by": "Ms Patel", "days": 1}"#;
    let (status, created) = http(h.admin(), "POST", "/exceptions", Some(TECH), Some(body)).await;
    assert_eq!(status, 201, "{created}");
    assert!(
        !ips(&h.client("127.0.0.2").udp("chat.listed.test.", RecordType::A).await).is_empty(),
        "the server allows it"
    );

    let after = tokio::task::spawn_blocking(explain("2026-11-23 12:00")).await.unwrap();
    let text = stdout(&after);
    assert!(after.status.success(), "{}", String::from_utf8_lossy(&after.stderr));
    assert!(
        text.contains("decision: allowed (by exception #1 for chat.listed.test until Tue 2026-11-24 10:00 GMT)"),
        "{text}"
    );
    assert!(text.contains("exception #1: chat.listed.test allowed until"), "{text}");
    // The day after it expires, explain says blocked again, as the server would.
    let later = tokio::task::spawn_blocking(explain("2026-11-25T09:00:00Z")).await.unwrap();
    assert!(stdout(&later).contains("decision: blocked"), "{}", stdout(&later));
    h.stop().await;
    up.stop().await;
}

#[test]
fn explain_at_takes_school_time_and_names_the_forms_it_accepts() {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), FILES);
    let cfg = dir.path().join("chaperone.toml");
    std::fs::write(&cfg, config("http://127.0.0.1:9/none").replace("{UPSTREAM}", "127.0.0.1:9")).unwrap();
    let cfg = cfg.to_str().unwrap();
    let run = |at: &str| {
        chaperone(&["explain", "--config", cfg, "--client", "127.0.0.2", "--at", at, "www.example.test"])
    };
    // 12:30 in London in July is 11:30 UTC (BST).
    let out = run("2026-07-01 12:30");
    assert!(out.status.success());
    assert!(stdout(&out).contains("at Wed 2026-07-01 12:30 BST (2026-07-01T11:30:00Z)"), "{}", stdout(&out));
    assert!(stdout(&out).contains("decision: allowed (on no list)"), "{}", stdout(&out));
    let out = run("mon 12:30");
    assert!(out.status.success());
    assert!(stdout(&out).contains("at Mon "), "{}", stdout(&out));
    let bad = run("next tuesday");
    assert!(!bad.status.success());
    let err = String::from_utf8_lossy(&bad.stderr);
    assert!(err.contains("RFC 3339") && err.contains("mon 12:30") && err.contains("2026-12-01 12:30"), "{err}");
}
