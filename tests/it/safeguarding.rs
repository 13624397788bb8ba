//! Safeguarding workflow through real HTTP and DNS sockets: request → approve → resolves →
//! expiry (clock moved, not slept) → blocked again; roles; exception rules; audit chain
//! tamper detection; incident webhooks with retry; site reports into a local list.

use std::sync::{Arc, Mutex};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::support::*;

pub const TECH: &str = "technician-token";
pub const DSL: &str = "dsl-token";
pub const VIEWER: &str = "viewer-token";

pub fn config(webhook: &str) -> String {
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

[[lists.source]]
category = "social"
path = "social.txt"

[[lists.source]]
category = "illegal"
path = "illegal.txt"

[[lists.source]]
category = "local"
path = "local.txt"

[category.illegal]
verdict = "illegal"
description = "IWF-style list"

[block_page]
ipv4 = "192.0.2.200"
listen = "127.0.0.1:0"

[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"

[[network]]
cidrs = ["127.0.0.3/32"]
group = "staff"

[group.pupils]
block = ["social", "local"]
block_answer = "block_page"

[group.staff]
block = ["local"]

[querylog]
retention_days = 30
pseudonymise = ["staff"]

[alerts]
webhook = "{webhook}"

[admin]
listen = "127.0.0.1:0"
max_exception_days = 14

[[admin.token]]
name = "Sam Technician"
role = "technician"
sha256 = "{}"

[[admin.token]]
name = "Dee Safeguarding"
role = "dsl"
sha256 = "{}"

[[admin.token]]
name = "Gov Viewer"
role = "viewer"
sha256 = "{}"
"#,
        token_hash(TECH),
        token_hash(DSL),
        token_hash(VIEWER)
    )
}

pub const FILES: &[(&str, &str)] = &[
    ("social.txt", "social.listed.test\nchat.listed.test\n"),
    ("illegal.txt", "abuse.listed.test\n"),
    ("local.txt", "# sites reported by staff\n"),
];

/// A webhook receiver: answers 500 to the first `fail_first` POSTs, then 200; keeps bodies.
pub struct Receiver {
    pub url: String,
    pub bodies: Arc<Mutex<Vec<Value>>>,
    pub attempts: Arc<Mutex<usize>>,
}

pub async fn receiver(fail_first: usize) -> Receiver {
    use axum::extract::State;
    use axum::http::StatusCode;
    type Shared = (Arc<Mutex<Vec<Value>>>, Arc<Mutex<usize>>, usize);
    async fn hook(State((bodies, attempts, fail)): State<Shared>, body: String) -> StatusCode {
        let n = {
            let mut a = attempts.lock().unwrap();
            *a += 1;
            *a
        };
        if n <= fail {
            return StatusCode::INTERNAL_SERVER_ERROR;
        }
        bodies
            .lock()
            .unwrap()
            .push(serde_json::from_str(&body).unwrap_or(Value::Null));
        StatusCode::NO_CONTENT
    }
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let attempts = Arc::new(Mutex::new(0));
    let app = axum::Router::new()
        .route("/hook", axum::routing::post(hook))
        .with_state((bodies.clone(), attempts.clone(), fail_first));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    Receiver {
        url,
        bodies,
        attempts,
    }
}

pub async fn setup(fail_first: usize) -> (Authority, Harness, Receiver) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[
            ("example.test.", EXAMPLE_ZONE),
            ("listed.test.", LISTED_ZONE),
        ],
    )
    .await;
    let rx = receiver(fail_first).await;
    let h = start(&config(&rx.url), up.addr, FILES, school_morning()).await;
    (up, h, rx)
}

fn json(body: &str) -> Value {
    serde_json::from_str(body).unwrap_or_else(|e| panic!("JSON body ({e}): {body}"))
}

async fn post(h: &Harness, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let (status, text) = http(h.admin(), "POST", path, token, Some(&body.to_string())).await;
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            json(&text)
        },
    )
}

async fn get(h: &Harness, path: &str, token: Option<&str>) -> (u16, Value) {
    let (status, text) = http(h.admin(), "GET", path, token, None).await;
    (
        status,
        if text.is_empty() {
            Value::Null
        } else {
            json(&text)
        },
    )
}

#[tokio::test]
async fn blocked_request_approve_resolves_expires_blocked_again() {
    let (up, h, _rx) = setup(0).await;
    let pupil = h.client("127.0.0.2");
    let blocked = pupil.udp("social.listed.test.", RecordType::A).await;
    assert_eq!(
        ips(&blocked),
        vec!["192.0.2.200".parse::<std::net::IpAddr>().unwrap()],
        "block page"
    );

    let (status, req) = post(&h, "/requests", None, serde_json::json!({
        "domain": "social.listed.test", "reason": "Year 9 media studies project", "requester": "Ms Patel", "days": 2, "groups": ["pupils"]
    })).await;
    assert_eq!(status, 201, "{req}");
    let id = req["id"].as_i64().unwrap();
    assert_eq!(req["status"], "pending");

    assert_eq!(
        post(
            &h,
            &format!("/requests/{id}/approve"),
            None,
            serde_json::json!({"reason": "ok"})
        )
        .await
        .0,
        401,
        "no token"
    );
    assert_eq!(
        post(
            &h,
            &format!("/requests/{id}/approve"),
            Some(VIEWER),
            serde_json::json!({"reason": "ok"})
        )
        .await
        .0,
        403,
        "viewer cannot approve"
    );
    assert_eq!(
        post(
            &h,
            &format!("/requests/{id}/approve"),
            Some(TECH),
            serde_json::json!({})
        )
        .await
        .0,
        422,
        "a reason is required"
    );
    let (status, approved) = post(
        &h,
        &format!("/requests/{id}/approve"),
        Some(TECH),
        serde_json::json!({"reason": "supports the curriculum"}),
    )
    .await;
    assert_eq!(status, 200, "{approved}");
    assert_eq!(approved["status"], "approved");
    assert_eq!(approved["decided_by"], "Sam Technician");
    let exception = approved["exception_id"].as_i64().unwrap();

    // Takes effect on the very next query, without a restart.
    assert_eq!(
        ips(&pupil.udp("social.listed.test.", RecordType::A).await),
        vec!["192.0.2.99".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        ips(&pupil.udp("www.social.listed.test.", RecordType::A).await),
        vec!["192.0.2.99".parse::<std::net::IpAddr>().unwrap()],
        "subdomains too"
    );
    assert_eq!(
        ips(&pupil.udp("chat.listed.test.", RecordType::A).await),
        vec!["192.0.2.200".parse::<std::net::IpAddr>().unwrap()],
        "only the excepted domain"
    );

    let (_, list) = get(&h, "/exceptions", Some(VIEWER)).await;
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["reason"], "Year 9 media studies project");
    assert_eq!(list[0]["requested_by"], "Ms Patel");
    assert_eq!(list[0]["request_id"], id);

    // Two days and a minute later it has expired by itself.
    h.clock
        .advance(std::time::Duration::from_secs(2 * 86_400 + 60));
    assert_eq!(
        ips(&pupil.udp("social.listed.test.", RecordType::A).await),
        vec!["192.0.2.200".parse::<std::net::IpAddr>().unwrap()],
        "blocked again"
    );
    let (_, one) = get(&h, &format!("/exceptions/{exception}"), Some(VIEWER)).await;
    assert_eq!(one["state"], "expired");
    assert_eq!(
        get(&h, "/exceptions", Some(VIEWER))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        0
    );

    let (status, audit) = get(&h, "/audit", Some(DSL)).await;
    assert_eq!(status, 200);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["request.create", "request.approve"]);
    assert_eq!(audit[1]["actor"], "Sam Technician");
    assert_eq!(
        get(&h, "/audit", Some(TECH)).await.0,
        403,
        "the audit log is for the DSL"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn exceptions_need_a_reason_an_expiry_and_cannot_touch_illegal_content() {
    let (up, h, _rx) = setup(0).await;
    let body = |v: Value| v;
    let base = serde_json::json!({"domain": "social.listed.test", "reason": "trip research", "requested_by": "Mr Jones", "days": 1});
    let mut no_reason = base.clone();
    no_reason["reason"] = "".into();
    assert_eq!(
        post(&h, "/exceptions", Some(TECH), body(no_reason)).await.0,
        422
    );
    let mut no_expiry = base.clone();
    no_expiry.as_object_mut().unwrap().remove("days");
    let (status, err) = post(&h, "/exceptions", Some(TECH), no_expiry).await;
    assert_eq!(status, 422);
    assert!(
        err["error"].as_str().unwrap().contains("temporary"),
        "{err}"
    );
    let mut too_long = base.clone();
    too_long["days"] = 30.into();
    assert_eq!(
        post(&h, "/exceptions", Some(TECH), too_long).await.0,
        422,
        "over admin.max_exception_days"
    );
    let mut illegal = base.clone();
    illegal["domain"] = "www.abuse.listed.test".into();
    let (status, err) = post(&h, "/exceptions", Some(DSL), illegal).await;
    assert_eq!(status, 422);
    assert!(err["error"].as_str().unwrap().contains("illegal"), "{err}");
    assert_eq!(
        post(&h, "/exceptions", Some(VIEWER), base.clone()).await.0,
        403
    );

    let (status, created) = post(&h, "/exceptions", Some(TECH), base.clone()).await;
    assert_eq!(status, 201, "{created}");
    let id = created["id"].as_i64().unwrap();
    let pupil = h.client("127.0.0.2");
    assert_eq!(
        rcode(&pupil.udp("social.listed.test.", RecordType::A).await),
        ResponseCode::NoError
    );
    assert_eq!(
        ips(&pupil.udp("social.listed.test.", RecordType::A).await),
        vec!["192.0.2.99".parse::<std::net::IpAddr>().unwrap()]
    );
    let (status, revoked) = post(
        &h,
        &format!("/exceptions/{id}/revoke"),
        Some(TECH),
        serde_json::json!({"reason": "project finished"}),
    )
    .await;
    assert_eq!(status, 200, "{revoked}");
    assert_eq!(revoked["state"], "revoked");
    assert_eq!(
        ips(&pupil.udp("social.listed.test.", RecordType::A).await),
        vec!["192.0.2.200".parse::<std::net::IpAddr>().unwrap()]
    );
    assert_eq!(
        post(
            &h,
            &format!("/exceptions/{id}/revoke"),
            Some(TECH),
            serde_json::json!({})
        )
        .await
        .0,
        409,
        "already revoked"
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn the_audit_chain_detects_tampering() {
    let (up, h, _rx) = setup(0).await;
    for i in 0..3 {
        let (s, _) = post(&h, "/exceptions", Some(TECH), serde_json::json!({"domain": format!("site{i}.listed.test"), "reason": "lesson", "requested_by": "Ms Patel", "days": 1})).await;
        assert_eq!(s, 201);
    }
    let (status, ok) = get(&h, "/audit/verify", Some(DSL)).await;
    assert_eq!(status, 200);
    assert_eq!(ok["records"], 3);
    // Someone with database access rewrites the reason of the second grant.
    let db = h.dir.path().join("chaperone.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute_batch("DROP TRIGGER audit_no_update; UPDATE audit SET detail = replace(detail, 'lesson', 'because') WHERE id = 2;").unwrap();
    drop(conn);
    let (status, broken) = get(&h, "/audit/verify", Some(DSL)).await;
    assert_eq!(status, 409);
    assert_eq!(broken["first_bad_record"], 2);
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["audit", "verify", "--config"])
        .arg(&h.config)
        .output()
        .unwrap();
    assert!(!out.status.success(), "the CLI fails too");
    assert!(String::from_utf8_lossy(&out.stdout).contains("BROKEN at record 2"));
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn an_illegal_hit_is_an_incident_alerted_with_retries() {
    // The DSL's endpoint fails twice before accepting.
    let (up, h, rx) = setup(2).await;
    let pupil = h.client("127.0.0.2");
    assert_eq!(
        rcode(&pupil.udp("abuse.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain,
        "illegal: NXDOMAIN even with a block page"
    );
    let mut delivered = Vec::new();
    for _ in 0..100 {
        delivered = rx.bodies.lock().unwrap().clone();
        if !delivered.is_empty() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(delivered.len(), 1, "delivered once, after retries");
    assert_eq!(*rx.attempts.lock().unwrap(), 3);
    let alert = &delivered[0];
    assert_eq!(alert["category"], "illegal");
    assert_eq!(alert["name"], "abuse.listed.test");
    assert_eq!(alert["client"], "127.0.0.2");
    assert_eq!(alert["group"], "pupils");
    assert_eq!(alert["kind"], "illegal-category-hit");
    let mut incidents = Value::Null;
    for _ in 0..50 {
        incidents = get(&h, "/incidents", Some(DSL)).await.1;
        if incidents[0]["alert_status"] == "delivered" {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(incidents[0]["alert_status"], "delivered");
    assert_eq!(incidents[0]["alert_attempts"], 3);
    assert_eq!(
        get(&h, "/incidents", Some(TECH)).await.0,
        403,
        "incidents are for the DSL"
    );
    // Query-log retention never deletes incidents.
    h.clock
        .advance(std::time::Duration::from_secs(400 * 86_400));
    let log = h
        .running
        .as_ref()
        .unwrap()
        .pipeline
        .recorder()
        .query_log()
        .unwrap()
        .clone();
    log.flush();
    log.retain_now();
    log.flush();
    assert_eq!(
        get(&h, "/incidents", Some(DSL))
            .await
            .1
            .as_array()
            .unwrap()
            .len(),
        1
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn an_approved_site_report_is_blocked_at_once() {
    let (up, h, _rx) = setup(0).await;
    let staff = h.client("127.0.0.3");
    assert_eq!(
        ips(&staff.udp("nasty.listed.test.", RecordType::A).await),
        vec!["192.0.2.99".parse::<std::net::IpAddr>().unwrap()]
    );
    let (status, report) = post(&h, "/reports", None, serde_json::json!({
        "url": "https://nasty.listed.test/page?x=1", "reporter": "Mr Jones", "comment": "violent images in a Year 7 lesson"
    })).await;
    assert_eq!(status, 201, "{report}");
    assert_eq!(report["domain"], "nasty.listed.test");
    let id = report["id"].as_i64().unwrap();
    let (_, pending) = get(&h, "/reports", Some(VIEWER)).await;
    assert_eq!(pending[0]["comment"], "violent images in a Year 7 lesson");
    let (status, done) = post(
        &h,
        &format!("/reports/{id}/approve"),
        Some(TECH),
        serde_json::json!({"category": "local", "reason": "confirmed"}),
    )
    .await;
    assert_eq!(status, 200, "{done}");
    assert_eq!(done["reloaded"], true);
    assert_eq!(
        rcode(&staff.udp("nasty.listed.test.", RecordType::A).await),
        ResponseCode::NXDomain,
        "blocked for staff now"
    );
    let local = std::fs::read_to_string(h.dir.path().join("local.txt")).unwrap();
    assert!(
        local.contains("nasty.listed.test  # report 1 by Mr Jones"),
        "{local}"
    );
    h.stop().await;
    up.stop().await;
}
