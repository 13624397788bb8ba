//! Safeguarding workflow through real HTTP and DNS sockets: request → approve → resolves →
//! expiry (clock moved, not slept) → blocked again; roles; exception rules; audit chain
//! tamper detection; incident webhooks with retry; site reports into a local list.

use std::sync::{Arc, Mutex};

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinEncodable;
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

/// An anonymous JSON POST to the admin API from a chosen client address.
async fn post_from(h: &Harness, from: &str, path: &str, body: Value) -> (u16, Value) {
    let (status, _, text) = http_from(
        from,
        h.admin(),
        "POST",
        path,
        &[],
        Some(("application/json", &body.to_string())),
    )
    .await;
    let v = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, v)
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

    // Anonymous, from a pupil's device: the request is for the pupils' group.
    let (status, req) = post_from(&h, "127.0.0.2", "/requests", serde_json::json!({
        "domain": "social.listed.test", "reason": "Year 9 media studies project", "requester": "Ms Patel", "days": 2
    })).await;
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["groups"], serde_json::json!(["pupils"]));
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
        400,
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
    let (status, report) = post_from(&h, "127.0.0.3", "/reports", serde_json::json!({
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

#[tokio::test]
async fn out_of_range_days_get_a_400_naming_the_field_and_never_panic() {
    let (up, h, _rx) = setup(0).await;
    for days in [10_000_000u64, 4_294_967_295] {
        let (status, err) = post(&h, "/exceptions", Some(TECH), serde_json::json!({"domain": "social.listed.test", "reason": "lesson", "requested_by": "Ms Patel", "days": days})).await;
        assert_eq!(status, 400, "days {days}: {err}");
        assert!(err["error"].as_str().unwrap().contains("days"), "{err}");
        let (status, err) = post(&h, "/requests", Some(TECH), serde_json::json!({"domain": "social.listed.test", "reason": "lesson", "requester": "Ms Patel", "days": days, "groups": ["pupils"]})).await;
        assert_eq!(status, 400, "request days {days}: {err}");
        assert!(err["error"].as_str().unwrap().contains("days"), "{err}");
    }
    let (status, req) = post(&h, "/requests", Some(TECH), serde_json::json!({"domain": "social.listed.test", "reason": "lesson", "requester": "Ms Patel", "days": 2, "groups": ["pupils"]})).await;
    assert_eq!(status, 201, "{req}");
    let id = req["id"].as_i64().unwrap();
    for days in [10_000_000u64, 4_294_967_295] {
        let (status, err) = post(
            &h,
            &format!("/requests/{id}/approve"),
            Some(TECH),
            serde_json::json!({"reason": "ok", "days": days}),
        )
        .await;
        assert_eq!(status, 400, "approve days {days}: {err}");
        assert!(err["error"].as_str().unwrap().contains("days"), "{err}");
    }
    assert_eq!(get(&h, "/healthz", None).await.0, 200, "still serving");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn anonymous_submissions_are_bounded_scoped_and_rate_limited() {
    let (up, h, _rx) = setup(0).await;
    let ask = |requester: String, reason: String| serde_json::json!({"domain": "social.listed.test", "reason": reason, "requester": requester, "days": 1});
    // No network, no request.
    let (status, err) = post_from(
        &h,
        "127.0.0.1",
        "/requests",
        ask("Ann".into(), "homework".into()),
    )
    .await;
    assert_eq!(status, 403, "a client in no network: {err}");
    let (status, _) = post_from(
        &h,
        "127.0.0.1",
        "/reports",
        serde_json::json!({"url": "bad.listed.test", "reporter": "Ann"}),
    )
    .await;
    assert_eq!(status, 403, "reports too");
    // Bounded fields, each error naming its field.
    let (status, err) = post_from(
        &h,
        "127.0.0.2",
        "/requests",
        ask("x".repeat(101), "homework".into()),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert!(
        err["error"].as_str().unwrap().contains("requester"),
        "{err}"
    );
    let (status, err) = post_from(
        &h,
        "127.0.0.2",
        "/requests",
        ask("Ann".into(), "y".repeat(1001)),
    )
    .await;
    assert_eq!(status, 422, "{err}");
    assert!(err["error"].as_str().unwrap().contains("reason"), "{err}");
    let (status, err) = post_from(
        &h,
        "127.0.0.2",
        "/requests",
        ask("Ann\r\nBob".into(), "homework".into()),
    )
    .await;
    assert_eq!(status, 422, "control characters: {err}");
    let (status, _) = post_from(
        &h,
        "127.0.0.2",
        "/requests",
        ask("Ann".into(), "z".repeat(20_000)),
    )
    .await;
    assert_eq!(status, 413, "a body over http.max_body_bytes");
    // An anonymous request is for the asker's own group, whatever it claims; never for all.
    let mut claim = ask("Ann".into(), "homework".into());
    claim["groups"] = serde_json::json!(["staff"]);
    let (status, req) = post_from(&h, "127.0.0.2", "/requests", claim).await;
    assert_eq!(status, 201, "{req}");
    assert_eq!(req["groups"], serde_json::json!(["pupils"]));
    let (status, err) = post(
        &h,
        "/requests",
        Some(TECH),
        ask("Ann".into(), "homework".into()),
    )
    .await;
    assert_eq!(status, 422, "staff must name the groups: {err}");
    assert!(err["error"].as_str().unwrap().contains("groups"), "{err}");
    // The hourly budget (http.submissions_per_hour, default 10) per address.
    let mut statuses = Vec::new();
    for i in 0..11 {
        let (status, _) = post_from(
            &h,
            "127.0.0.3",
            "/reports",
            serde_json::json!({"url": format!("site{i}.listed.test"), "reporter": "Mr Jones"}),
        )
        .await;
        statuses.push(status);
    }
    assert_eq!(statuses[..10], [201; 10], "{statuses:?}");
    assert_eq!(statuses[10], 429, "{statuses:?}");
    let (status, _) = post_from(
        &h,
        "127.0.0.2",
        "/reports",
        serde_json::json!({"url": "other.listed.test", "reporter": "Ann"}),
    )
    .await;
    assert_eq!(status, 201, "another address has its own budget");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn requests_without_groups_are_never_approved_for_everyone() {
    let (up, h, _rx) = setup(0).await;
    // A legacy row (stored before groups were required) with no groups.
    let db = h.dir.path().join("chaperone.db");
    let conn = rusqlite::Connection::open(&db).unwrap();
    conn.execute("INSERT INTO unblock_requests (created_us, domain, reason, requester, days, groups) VALUES (0, 'social.listed.test', 'x', 'y', 1, '[]')", []).unwrap();
    let id = conn.last_insert_rowid();
    drop(conn);
    let (status, err) = post(
        &h,
        &format!("/requests/{id}/approve"),
        Some(TECH),
        serde_json::json!({"reason": "ok"}),
    )
    .await;
    assert_eq!(status, 409, "{err}");
    assert_eq!(
        get(&h, "/exceptions", Some(VIEWER)).await.1,
        serde_json::json!([])
    );
    h.stop().await;
    up.stop().await;
}

/// The safeguarding config with hosts, Adblock and RPZ lists for staff as well.
fn formats_config(webhook: &str) -> String {
    let text = config(webhook);
    let local = "[[lists.source]]\ncategory = \"local\"\npath = \"local.txt\"\n";
    let staff = "[group.staff]\nblock = [\"local\"]";
    assert!(text.contains(local) && text.contains(staff));
    text.replace(
        local,
        &format!("{local}\n[[lists.source]]\ncategory = \"adult\"\npath = \"adult.hosts\"\n\n[[lists.source]]\ncategory = \"ads\"\npath = \"ads.txt\"\n\n[[lists.source]]\ncategory = \"malware\"\npath = \"malware.rpz\"\n"),
    )
    .replace(
        staff,
        "[group.staff]\nblock = [\"local\", \"adult\", \"ads\", \"malware\"]",
    )
}

const RPZ: &str = "$TTL 300\n$ORIGIN rpz.school.invalid.\n@ IN SOA ns.school.invalid. hostmaster.school.invalid. 1 3600 600 86400 60\n  IN NS ns.school.invalid.\nknown.listed.test CNAME .\n";

#[tokio::test]
async fn report_approval_writes_each_list_in_its_own_syntax_and_checks_the_block() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let rx = receiver(0).await;
    let mut files = FILES.to_vec();
    files.extend([
        (
            "adult.hosts",
            "0.0.0.0 porn.listed.test\n0.0.0.0 more.listed.test\n",
        ),
        ("ads.txt", "||ads.listed.test^\n||tracker.listed.test^\n"),
        ("malware.rpz", RPZ),
    ]);
    let h = start(&formats_config(&rx.url), up.addr, &files, school_morning()).await;
    let staff = h.client("127.0.0.3");
    for (i, (category, name, file, line)) in [
        (
            "adult",
            "nasty.listed.test",
            "adult.hosts",
            "0.0.0.0 nasty.listed.test",
        ),
        ("ads", "pop.listed.test", "ads.txt", "||pop.listed.test^"),
        (
            "malware",
            "worm.listed.test",
            "malware.rpz",
            "worm.listed.test CNAME .",
        ),
    ]
    .into_iter()
    .enumerate()
    {
        assert_eq!(
            rcode(&staff.udp(&format!("{name}."), RecordType::A).await),
            ResponseCode::NoError
        );
        let (status, report) = post_from(
            &h,
            "127.0.0.3",
            "/reports",
            serde_json::json!({"url": format!("https://{name}/x"), "reporter": "Mr Jones"}),
        )
        .await;
        assert_eq!(status, 201, "{report}");
        let id = report["id"].as_i64().unwrap();
        let (status, done) = post(
            &h,
            &format!("/reports/{id}/approve"),
            Some(TECH),
            serde_json::json!({"category": category, "reason": "confirmed"}),
        )
        .await;
        assert_eq!(status, 200, "{category}: {done}");
        assert_eq!(done["reloaded"], true, "{done}");
        assert_eq!(done["blocked"], true, "{done}");
        assert_eq!(
            rcode(&staff.udp(&format!("www.{name}."), RecordType::A).await),
            ResponseCode::NXDomain,
            "{name} (and below) blocked for staff once approved into {file}"
        );
        let text = std::fs::read_to_string(h.dir.path().join(file)).unwrap();
        assert!(
            text.lines().any(|l| l.starts_with(line)),
            "{file} gets {line:?}:\n{text}"
        );
        assert_eq!(
            text.lines()
                .filter(|l| l.contains(&format!("report {}", i + 1)))
                .count(),
            1,
            "one comment line: {text}"
        );
    }
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn incidents_are_listed_a_page_at_a_time() {
    let (up, h, _rx) = setup(0).await;
    let pupil = h.client("127.0.0.2");
    for name in [
        "abuse.listed.test.",
        "a.abuse.listed.test.",
        "b.abuse.listed.test.",
    ] {
        pupil.udp(name, RecordType::A).await;
    }
    let mut all = Value::Null;
    for _ in 0..100 {
        all = get(&h, "/incidents", Some(DSL)).await.1;
        if all.as_array().map_or(0, Vec::len) == 3 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(all.as_array().unwrap().len(), 3, "{all}");
    let (status, head, body) = http_from(
        "127.0.0.1",
        h.admin(),
        "GET",
        "/incidents?limit=2",
        &[("Authorization", &format!("Bearer {DSL}"))],
        None,
    )
    .await;
    assert_eq!(status, 200, "{body}");
    let page: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(page.as_array().unwrap().len(), 2, "{page}");
    assert_eq!(page[0]["id"], all[0]["id"], "newest first");
    let next = header_of(&head, "x-next-before").expect("a full page names the next cursor");
    assert_eq!(next, page[1]["id"].to_string());
    let (_, rest) = get(&h, &format!("/incidents?limit=2&before={next}"), Some(DSL)).await;
    assert_eq!(rest.as_array().unwrap().len(), 1, "{rest}");
    assert_eq!(rest[0]["id"], all[2]["id"]);
    let (status, err) = get(&h, "/incidents?limit=5000", Some(DSL)).await;
    assert_eq!(status, 400, "{err}");
    assert!(err["error"].as_str().unwrap().contains("limit"), "{err}");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn alert_deliveries_in_flight_are_bounded_and_drops_counted() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    // The DSL's endpoint never accepts: every alert keeps retrying.
    let rx = receiver(usize::MAX).await;
    let text = config(&rx.url).replace(
        &format!("[alerts]\nwebhook = \"{}\"", rx.url),
        &format!("[alerts]\nwebhook = \"{}\"\nmax_in_flight = 1", rx.url),
    );
    assert!(text.contains("max_in_flight"));
    let h = start(&text, up.addr, FILES, school_morning()).await;
    let pupil = h.client("127.0.0.2");
    for name in [
        "abuse.listed.test.",
        "a.abuse.listed.test.",
        "b.abuse.listed.test.",
    ] {
        pupil.udp(name, RecordType::A).await;
    }
    let mut dropped = 0.0;
    for _ in 0..100 {
        dropped = metric(h.admin(), "chaperone_incident_alerts_dropped_total").await;
        if dropped >= 2.0 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(dropped, 2.0, "one alert in flight, two dropped");
    let mut statuses = Vec::new();
    for _ in 0..100 {
        let (_, incidents) = get(&h, "/incidents", Some(DSL)).await;
        statuses = incidents
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["alert_status"].as_str().unwrap_or_default().to_owned())
            .collect();
        if statuses.iter().filter(|s| *s == "dropped").count() == 2 {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    assert_eq!(
        statuses.iter().filter(|s| *s == "dropped").count(),
        2,
        "{statuses:?}"
    );
    assert_eq!(statuses.len(), 3, "every incident is still recorded");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_held_database_lock_does_not_stall_dns_answers() {
    let (up, h, _rx) = setup(0).await;
    let pupil = h.client("127.0.0.2");
    let query = Client::message("www.example.test.", RecordType::A)
        .to_bytes()
        .unwrap();
    assert!(
        pupil
            .send_raw_udp(&query, std::time::Duration::from_secs(2))
            .await
            .is_some(),
        "warm the cache"
    );
    // Another process holds a write transaction on the database.
    let db = h.dir.path().join("chaperone.db");
    let holder = rusqlite::Connection::open(&db).unwrap();
    holder.execute_batch("BEGIN IMMEDIATE").unwrap();
    // A block-page style submission now waits for the lock (up to SQLite's busy timeout).
    let admin = h.admin();
    let waiting = tokio::spawn(async move {
        http_from("127.0.0.2", admin, "POST", "/requests", &[], Some(("application/json", &serde_json::json!({"domain": "social.listed.test", "reason": "homework", "requester": "Ann", "days": 1}).to_string()))).await.0
    });
    // Meanwhile cached answers keep coming: at least one in every half second for 2 s.
    let start = std::time::Instant::now();
    let window = std::time::Duration::from_millis(500);
    let mut per_window = [0usize; 4];
    while start.elapsed() < window * 4 {
        if pupil
            .send_raw_udp(&query, std::time::Duration::from_millis(300))
            .await
            .is_some()
            && let Some(slot) = per_window.get_mut(start.elapsed().as_millis() as usize / 500)
        {
            *slot += 1;
        }
    }
    assert!(
        per_window.iter().all(|&n| n > 0),
        "answers per half second while the database was locked: {per_window:?}"
    );
    holder.execute_batch("ROLLBACK").unwrap();
    drop(holder);
    let status = tokio::time::timeout(std::time::Duration::from_secs(20), waiting)
        .await
        .expect("the submission finishes once the lock is released")
        .unwrap();
    assert_eq!(status, 201, "and it was stored");
    h.stop().await;
    up.stop().await;
}
