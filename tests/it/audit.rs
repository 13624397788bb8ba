//! The audit chain through the server and the CLI: deleting the newest records, or
//! rewriting the chain without the key, is caught and named.

use crate::support::*;

const TECH: &str = "audit-tech-token";
const DSL: &str = "audit-dsl-token";

fn config() -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
[upstream]
servers = ["{{UPSTREAM}}"]
[lists]
bundle = "lists.fstb"
[[lists.source]]
category = "adult"
path = "adult.txt"
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
name = "dsl"
role = "dsl"
sha256 = "{}"
"#,
        token_hash(TECH),
        token_hash(DSL)
    )
}

async fn setup() -> (Authority, Harness) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let h = start_in(
        tempfile::tempdir().unwrap(),
        &config(),
        up.addr,
        &[("adult.txt", "adult.listed.test\n")],
        school_morning(),
    )
    .await;
    for i in 0..5 {
        let body = format!(
            r#"{{"domain": "site{i}.listed.test", "reason": "lesson", "requested_by": "Ms Patel", "days": 1}}"#
        );
        let (s, b) = http(h.admin(), "POST", "/exceptions", Some(TECH), Some(&body)).await;
        assert_eq!(s, 201, "{b}");
    }
    (up, h)
}

fn verify_cli(h: &Harness, extra: &[&str]) -> (bool, String) {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["audit", "verify", "--config"])
        .arg(&h.config)
        .args(extra)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
    )
}

#[tokio::test]
async fn deleting_the_newest_audit_records_is_detected() {
    let (up, h) = setup().await;
    let (ok, out) = verify_cli(&h, &[]);
    assert!(ok, "{out}");
    assert!(out.contains("intact: 5 records"), "{out}");
    let metrics = http(h.admin(), "GET", "/metrics", None, None).await.1;
    assert!(metrics.contains("chaperone_audit_records 5"), "{metrics}");
    let key = h.dir.path().join("audit.key");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&key).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the key file is private");
    }
    let head = {
        let (_, b) = http(h.admin(), "GET", "/audit/verify", Some(DSL), None).await;
        serde_json::from_str::<serde_json::Value>(&b).unwrap()["head"]
            .as_str()
            .unwrap()
            .to_owned()
    };

    // Someone with the database alone deletes the two newest records.
    let conn = rusqlite::Connection::open(h.dir.path().join("chaperone.db")).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_delete; DELETE FROM audit WHERE id > 3;")
        .unwrap();
    drop(conn);
    let (status, body) = http(h.admin(), "GET", "/audit/verify", Some(DSL), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("newest 2 record(s) were deleted"), "{body}");
    let (ok, out) = verify_cli(&h, &[]);
    assert!(!ok);
    assert!(out.contains("BROKEN at record 4"), "{out}");

    // Without the head file, a count and head noted elsewhere do the same.
    std::fs::remove_file(h.dir.path().join("audit.head")).unwrap();
    let (ok, out) = verify_cli(&h, &["--expect-count", "5", "--expect-head", &head]);
    assert!(!ok, "{out}");
    assert!(out.contains("says 5"), "{out}");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_chain_rewritten_without_the_key_is_detected() {
    let (up, h) = setup().await;
    // Edit record 2 and recompute every later hash the way the old unkeyed chain did:
    // the old verifier accepted this as intact.
    let conn = rusqlite::Connection::open(h.dir.path().join("chaperone.db")).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update;").unwrap();
    let rows: Vec<(i64, i64, [String; 5])> = {
        let mut st = conn
            .prepare(
                "SELECT id, ts_us, actor, role, action, subject, detail FROM audit ORDER BY id",
            )
            .unwrap();
        st.query_map([], |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                [r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?, r.get(6)?],
            ))
        })
        .unwrap()
        .map(Result::unwrap)
        .collect()
    };
    let mut prev: String = conn
        .query_row("SELECT hash FROM audit WHERE id = 1", [], |r| r.get(0))
        .unwrap();
    for (id, ts, mut f) in rows.into_iter().skip(1) {
        if id == 2 {
            f[4] = f[4].replace("lesson", "because");
        }
        use sha2::Digest;
        let mut hasher = sha2::Sha256::new();
        for part in [
            prev.as_str(),
            &ts.to_string(),
            &f[0],
            &f[1],
            &f[2],
            &f[3],
            &f[4],
        ] {
            hasher.update((part.len() as u64).to_be_bytes());
            hasher.update(part.as_bytes());
        }
        let hash = hex::encode(hasher.finalize());
        conn.execute(
            "UPDATE audit SET detail = ?1, prev_hash = ?2, hash = ?3 WHERE id = ?4",
            rusqlite::params![f[4], prev, hash, id],
        )
        .unwrap();
        prev = hash;
    }
    drop(conn);
    let (status, body) = http(h.admin(), "GET", "/audit/verify", Some(DSL), None).await;
    assert_eq!(status, 409, "{body}");
    assert!(body.contains("\"first_bad_record\":2"), "{body}");
    let (ok, out) = verify_cli(&h, &[]);
    assert!(!ok);
    assert!(out.contains("BROKEN at record 2"), "{out}");
    h.stop().await;
    up.stop().await;
}
