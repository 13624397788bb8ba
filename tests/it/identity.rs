//! Identity beyond the address, as the pipeline acts on it: an enrolled device's group on
//! any network, a RADIUS user's group on a school network, and who asked in the query
//! log, incidents, alerts, the report and `explain`. The listeners that bring these
//! identities (DoT/DoH, RADIUS) are tested end to end in their own files; here the live
//! indexes are filled as those sources fill them.

use std::process::Command;
use std::sync::Arc;

use chaperone::identity::{SessionIndex, UserSession};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::safeguarding::{DSL, FILES, Receiver, config, receiver};
use crate::support::*;

const ENROLLED: &str = r#"
[[enrolled_device]]
id = "k3x9q2pupil"
name = "ks2-ipad-14"
owner = "school"
group = "pupils"
"#;

async fn setup() -> (Authority, Harness, Receiver) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let rx = receiver(0).await;
    let text = format!("{}{ENROLLED}", config(&rx.url));
    let h = start(&text, up.addr, FILES, school_morning()).await;
    (up, h, rx)
}

/// Sign `user` in on `ip` as RADIUS accounting does (the listener swaps the same index).
fn sign_in(h: &Harness, ip: &str, user: &str, group: Option<&str>) {
    let session = Arc::new(UserSession {
        user: user.into(),
        group: group.map(Into::into),
        mac: Some([2, 0, 0x5e, 0x10, 0, 0x77]),
        session: "acct-1".into(),
        expires: i64::MAX,
    });
    let index = SessionIndex::new([(ip.parse().unwrap(), session)]);
    let state = h.running.as_ref().unwrap().pipeline.state();
    state.identities().sessions.store(Arc::new(index));
}

fn flush(h: &Harness) -> rusqlite::Connection {
    if let Some(log) = h.running.as_ref().unwrap().pipeline.recorder().query_log() {
        log.flush();
    }
    rusqlite::Connection::open(h.dir.path().join("chaperone.db")).unwrap()
}

async fn get(h: &Harness, path: &str) -> Value {
    let (status, text) = http(h.admin(), "GET", path, Some(DSL), None).await;
    assert_eq!(status, 200, "{path}: {text}");
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}: {text}"))
}

#[tokio::test]
async fn a_radius_users_group_replaces_the_networks_and_the_user_is_logged() {
    let (up, h, rx) = setup().await;
    let ask = |name: &'static str| {
        let c = h.client("127.0.0.2");
        async move { rcode(&c.udp(name, RecordType::A).await) }
    };
    // On the pupils' network, social media is blocked (block page: an address).
    let as_pupil = h
        .client("127.0.0.2")
        .udp("social.listed.test.", RecordType::A)
        .await;
    assert_eq!(
        ips(&as_pupil),
        vec!["192.0.2.200".parse::<std::net::IpAddr>().unwrap()]
    );
    // A member of staff signs in on the same address: the staff group decides.
    sign_in(
        &h,
        "127.0.0.2",
        "t.jones@staff.example-school.org.uk",
        Some("staff"),
    );
    let as_staff = h
        .client("127.0.0.2")
        .udp("social.listed.test.", RecordType::A)
        .await;
    assert_ne!(ips(&as_staff), ips(&as_pupil), "allowed for staff");
    // A pupil with no user rule: the network's group, and the user is named.
    sign_in(
        &h,
        "127.0.0.2",
        "j.smith@pupils.example-school.org.uk",
        None,
    );
    assert_eq!(ask("abuse.listed.test.").await, ResponseCode::NXDomain);

    let db = flush(&h);
    let rows: Vec<(String, Option<String>, Option<String>)> = db
        .prepare("SELECT grp, user, mac FROM queries WHERE name = 'social.listed.test' ORDER BY id")
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))
        .unwrap()
        .collect::<Result<_, _>>()
        .unwrap();
    assert_eq!(rows[0], ("pupils".into(), None, None));
    // Staff are pseudonymised in this config: the user name is too.
    assert_eq!(rows[1].0, "staff");
    let staff_user = rows[1].1.as_deref().unwrap();
    assert!(staff_user.starts_with("anon-"), "{staff_user}");
    assert!(
        rows[1].2.as_deref().unwrap().starts_with("anon-"),
        "the session's MAC too"
    );

    // The incident and its alert name the pupil.
    let mut delivered = Vec::new();
    for _ in 0..100 {
        delivered = rx.bodies.lock().unwrap().clone();
        if !delivered.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(delivered[0]["user"], "j.smith@pupils.example-school.org.uk");
    let incidents = get(&h, "/incidents").await;
    assert_eq!(incidents[0]["user"], "j.smith@pupils.example-school.org.uk");

    // explain says who, and why the group.
    let explained = get(&h, "/explain?client=127.0.0.2&name=social.listed.test").await;
    assert_eq!(explained["user"], "j.smith@pupils.example-school.org.uk");
    let trace = explained["trace"].to_string();
    assert!(trace.contains("RADIUS user j.smith"), "{trace}");

    // The report for the DSL has a user column; the governors' summary has none.
    let cfg = h.config.to_str().unwrap().to_owned();
    let report = |extra: &'static [&'static str]| {
        let cfg = cfg.clone();
        move || {
            Command::new(env!("CARGO_BIN_EXE_chaperone"))
                .args(["report", "--config", &cfg, "--format", "csv"])
                .args(extra)
                .output()
                .unwrap()
        }
    };
    let detail = tokio::task::spawn_blocking(report(&["--detail"]))
        .await
        .unwrap();
    let detail = String::from_utf8_lossy(&detail.stdout).into_owned();
    assert!(
        detail.contains("j.smith@pupils.example-school.org.uk"),
        "{detail}"
    );
    let summary = tokio::task::spawn_blocking(report(&[])).await.unwrap();
    let summary = String::from_utf8_lossy(&summary.stdout).into_owned();
    assert!(
        !summary.contains("j.smith") && !summary.contains("anon-"),
        "{summary}"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn explain_decides_as_an_enrolled_device_from_any_address_and_reload_revokes_it() {
    let (up, h, _rx) = setup().await;
    // From an address in no school network (home), as the enrolled device.
    let path = "/explain?client=203.0.113.9&name=social.listed.test&device=k3x9q2pupil";
    let e = get(&h, path).await;
    assert_eq!(e["decision"], "blocked", "{e}");
    assert_eq!(e["enrolled"]["name"], "ks2-ipad-14");
    assert!(e["trace"].to_string().contains("enrolled device"), "{e}");
    let unknown = get(
        &h,
        "/explain?client=203.0.113.9&name=social.listed.test&device=nope",
    )
    .await;
    assert_eq!(unknown["decision"], "refused");

    let cfg = h.config.to_str().unwrap().to_owned();
    let out = tokio::task::spawn_blocking(move || {
        Command::new(env!("CARGO_BIN_EXE_chaperone"))
            .args(["explain", "--config", &cfg, "--client", "203.0.113.9"])
            .args(["--device", "k3x9q2pupil", "social.listed.test"])
            .output()
            .unwrap()
    })
    .await
    .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("identity: device ID k3x9q2pupil → enrolled device \"ks2-ipad-14\""),
        "{text}"
    );
    assert!(text.contains("decision: blocked"), "{text}");

    // The school takes the entry out of the config: after a reload the ID is refused.
    let without = std::fs::read_to_string(&h.config)
        .unwrap()
        .replace(ENROLLED, "");
    std::fs::write(&h.config, without).unwrap();
    let (status, body) = http(
        h.admin(),
        "POST",
        "/reload",
        Some(crate::safeguarding::TECH),
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let gone = get(&h, path).await;
    assert_eq!(gone["decision"], "refused", "{gone}");
    h.stop().await;
    up.stop().await;
}
