//! Alerts by theme through real sockets: DNS queries to a running Chaperone, email to a
//! real SMTP sink the test starts (STARTTLS with a CA the test makes), webhooks to a real
//! HTTP receiver; the daily digest at its local time on the moved test clock; the incident
//! window (a device retrying 231 times → one incident, one alert); request notifications;
//! themes off; bad config keys named. The store's incident window runs on both backends.

use std::time::Duration;

use hickory_proto::rr::RecordType;
use serde_json::Value;

use crate::safeguarding::{DSL, TECH, receiver};
use crate::support::smtp::Sink;
use crate::support::*;

const FILES: &[(&str, &str)] = &[
    ("selfharm.txt", "selfharm.listed.test\n"),
    ("gambling.txt", "casino.listed.test\n"),
    ("social.txt", "social.listed.test\n"),
    ("illegal.txt", "abuse.listed.test\n"),
];

/// A config with `alerts` as its `[alerts]` section (`{SMTP_PORT}` filled in).
fn config(alerts: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[upstream]
servers = ["{{UPSTREAM}}"]
timeout_ms = 500
attempts = 1

[ratelimit]
enabled = false

[lists]
bundle = "lists.fstb"

[[lists.source]]
category = "self-harm"
path = "selfharm.txt"

[[lists.source]]
category = "gambling"
path = "gambling.txt"

[[lists.source]]
category = "social"
path = "social.txt"

[[lists.source]]
category = "illegal"
path = "illegal.txt"

[category.illegal]
verdict = "illegal"

[[network]]
cidrs = ["127.0.0.2/32", "127.0.0.4/32"]
group = "pupils"

[group.pupils]
block = ["self-harm", "gambling", "social"]

{alerts}

[admin]
listen = "127.0.0.1:0"

[[admin.token]]
name = "Sam Technician"
role = "technician"
sha256 = "{}"

[[admin.token]]
name = "Dee Safeguarding"
role = "dsl"
sha256 = "{}"
"#,
        token_hash(TECH),
        token_hash(DSL),
    )
}

/// `[alerts]` with email to the sink (STARTTLS, trusting `ca.pem`) and `extra` lines.
fn email_alerts(sink: &Sink, extra: &str) -> String {
    format!(
        r#"[alerts]
console_url = "https://filter.example-school.test/console"
give_up_after_secs = 2
{extra}

[alerts.email]
host = "127.0.0.1"
port = {}
from = "chaperone@example-school.test"
to = ["dsl@example-school.test"]
requests_to = ["technician@example-school.test"]
ca_file = "ca.pem"

[alerts.themes.gambling]
delivery = "digest"
"#,
        sink.addr.port()
    )
}

async fn setup(sink: &Sink, alerts: &str) -> (Authority, Harness) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let dir = tempfile::tempdir().unwrap();
    sink.write_ca(dir.path(), "ca.pem");
    let h = start_in(dir, &config(alerts), up.addr, FILES, school_morning()).await;
    (up, h)
}

async fn incidents(h: &Harness) -> Vec<Value> {
    let (status, body) = http(h.admin(), "GET", "/incidents", Some(DSL), None).await;
    assert_eq!(status, 200, "{body}");
    serde_json::from_str::<Value>(&body)
        .unwrap()
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Poll the incidents until `done` holds (or give up after 10 s); returns the last list.
async fn incidents_until(h: &Harness, done: impl Fn(&[Value]) -> bool) -> Vec<Value> {
    let mut list = Vec::new();
    for _ in 0..200 {
        list = incidents(h).await;
        if done(&list) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    list
}

#[tokio::test]
async fn a_self_harm_hit_emails_the_dsl_over_starttls_naming_only_that_device() {
    let sink = Sink::start(true).await;
    let (up, h) = setup(&sink, &email_alerts(&sink, "")).await;
    h.client("127.0.0.2")
        .udp("selfharm.listed.test.", RecordType::A)
        .await;
    let first = sink.wait_for(1, 10).await;
    assert_eq!(first.len(), 1, "one email");
    h.client("127.0.0.4")
        .udp("www.selfharm.listed.test.", RecordType::A)
        .await;
    let mails = sink.wait_for(2, 10).await;
    assert_eq!(mails.len(), 2, "one email per incident");
    let m = &mails[0];
    assert!(m.tls, "sent after STARTTLS");
    assert_eq!(m.to, ["dsl@example-school.test"]);
    assert_eq!(m.from, "chaperone@example-school.test");
    let text = m.text();
    for want in [
        "Theme:     self-harm",
        "Category:  self-harm",
        "Site:      selfharm.listed.test",
        "Device:    127.0.0.2",
        "Group:     pupils",
        // 10:00 UTC is 10:00 GMT in November, written in the school's zone.
        "Monday 23 November 2026, 10:00:00 (Europe/London)",
        "https://filter.example-school.test/console/incidents/1",
    ] {
        assert!(text.contains(want), "{want:?} missing from:\n{text}");
    }
    assert!(
        !text.contains("127.0.0.4"),
        "never another pupil's data:\n{text}"
    );
    let second = mails[1].text();
    assert!(
        second.contains("127.0.0.4") && !second.contains("127.0.0.2"),
        "{second}"
    );
    let list = incidents_until(&h, |l| {
        l.len() == 2 && l.iter().all(|i| i["alert_status"] == "delivered")
    })
    .await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["theme"], "self-harm");
    assert_eq!(list[0]["hits"], 1);
    assert_eq!(list[0]["alert_status"], "delivered", "{list:?}");
    assert_eq!(
        metric(h.admin(), "chaperone_alert_emails_total{result=\"sent\"}").await,
        2.0
    );
    h.stop().await;
    up.stop().await;
    sink.stop();
}

#[tokio::test]
async fn plain_text_smtp_is_refused_when_starttls_is_required() {
    // The server never offers STARTTLS: nothing may be sent in the clear.
    let sink = Sink::start(false).await;
    let (up, h) = setup(&sink, &email_alerts(&sink, "")).await;
    h.client("127.0.0.2")
        .udp("selfharm.listed.test.", RecordType::A)
        .await;
    let list = incidents_until(&h, |l| {
        l.first().is_some_and(|i| i["alert_status"] == "failed")
    })
    .await;
    assert_eq!(list[0]["alert_status"], "failed", "{list:?}");
    let error = list[0]["alert_last_error"].as_str().unwrap_or_default();
    assert!(error.starts_with("email: "), "{error}");
    assert!(sink.messages().is_empty(), "no message accepted");
    assert_eq!(
        *sink.plain_mail_attempts.lock().unwrap(),
        0,
        "no MAIL FROM in plain text"
    );
    assert!(metric(h.admin(), "chaperone_alert_emails_total{result=\"failed\"}").await >= 1.0);
    h.stop().await;
    up.stop().await;
    sink.stop();
}

#[tokio::test]
async fn one_device_retrying_231_times_makes_one_incident_and_one_alert() {
    let sink = Sink::start(true).await;
    let rx = receiver(0).await;
    let alerts = email_alerts(&sink, &format!("webhook = \"{}\"", rx.url));
    let (up, h) = setup(&sink, &alerts).await;
    let pupil = h.client("127.0.0.2");
    // 231 look-ups over five minutes on the test clock (1.3 s apart).
    for _ in 0..231 {
        pupil.udp("selfharm.listed.test.", RecordType::A).await;
        h.clock.advance(Duration::from_millis(1300));
    }
    let list = incidents_until(&h, |l| l.first().is_some_and(|i| i["hits"] == 231)).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["hits"], 231);
    assert_eq!(list[0]["theme"], "self-harm");
    assert!(list[0]["last_seen"].as_str().unwrap() > list[0]["time"].as_str().unwrap());
    let mails = sink.wait_for(1, 10).await;
    let mut bodies = Vec::new();
    for _ in 0..100 {
        bodies = rx.bodies.lock().unwrap().clone();
        if !bodies.is_empty() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(bodies.len(), 1, "one webhook");
    assert_eq!(bodies[0]["theme"], "self-harm");
    assert_eq!(bodies[0]["hits"], 1);
    assert_eq!(bodies[0]["kind"], "theme-hit");
    assert_eq!(mails.len(), 1, "one email");

    // After the window (10 minutes from the first hit) the next hit is a new incident.
    h.clock.advance(Duration::from_secs(6 * 60));
    pupil.udp("selfharm.listed.test.", RecordType::A).await;
    let list = incidents_until(&h, |l| l.len() == 2).await;
    assert_eq!(list.len(), 2, "{list:?}");
    assert_eq!(list[0]["hits"], 1);
    assert_eq!(sink.wait_for(2, 10).await.len(), 2);
    for _ in 0..100 {
        if rx.bodies.lock().unwrap().len() == 2 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(
        rx.bodies.lock().unwrap().len(),
        2,
        "one webhook per incident"
    );
    h.stop().await;
    up.stop().await;
    sink.stop();
}

#[tokio::test]
async fn digest_themes_wait_for_the_daily_digest_at_its_local_time() {
    let sink = Sink::start(true).await;
    let (up, h) = setup(&sink, &email_alerts(&sink, "digest_at = \"16:00\"")).await;
    h.client("127.0.0.2")
        .udp("casino.listed.test.", RecordType::A)
        .await;
    // A later instant alert is the barrier: hits are handled in order, so had the
    // gambling hit been sent at once, it would have arrived first.
    h.client("127.0.0.4")
        .udp("selfharm.listed.test.", RecordType::A)
        .await;
    let mails = sink.wait_for(1, 10).await;
    assert_eq!(mails.len(), 1);
    assert!(
        mails[0].text().contains("Theme:     self-harm"),
        "{}",
        mails[0].text()
    );
    let list = incidents_until(&h, |l| l.iter().any(|i| i["alert_status"] == "digest")).await;
    let gambling = list.iter().find(|i| i["theme"] == "gambling").unwrap();
    assert_eq!(gambling["alert_status"], "digest", "{list:?}");

    // 16:00:30 in London (GMT in November): the digest goes out.
    h.clock.set("2026-11-23T16:00:30Z".parse().unwrap());
    let mails = sink.wait_for(2, 10).await;
    assert_eq!(mails.len(), 2, "the digest");
    let digest = mails[1].text();
    assert!(mails[1].tls);
    for want in [
        "Subject: Chaperone daily safeguarding digest, Monday 23 November 2026",
        "1 incident of digest themes",
        "Theme: gambling  Category: gambling  Site: casino.listed.test  Hits: 1",
        "Device: 127.0.0.2",
        "Monday 23 November 2026, 10:00:00 (Europe/London)",
    ] {
        assert!(digest.contains(want), "{want:?} missing from:\n{digest}");
    }
    assert!(
        !digest.contains("127.0.0.4"),
        "only digest-theme incidents:\n{digest}"
    );
    let list = incidents_until(&h, |l| l.iter().all(|i| i["alert_status"] == "delivered")).await;
    assert!(
        list.iter().all(|i| i["alert_status"] == "delivered"),
        "{list:?}"
    );

    // Later the same day: nothing is waiting, so no second digest; the next instant
    // alert is the barrier again.
    h.clock.set("2026-11-23T17:00:00Z".parse().unwrap());
    h.client("127.0.0.2")
        .udp("www.selfharm.listed.test.", RecordType::A)
        .await;
    let mails = sink.wait_for(3, 10).await;
    assert_eq!(mails.len(), 3);
    assert!(mails[2].text().contains("Theme:     self-harm"));
    h.stop().await;
    up.stop().await;
    sink.stop();
}

#[tokio::test]
async fn a_new_unblock_request_emails_the_technician() {
    let sink = Sink::start(true).await;
    let (up, h) = setup(&sink, &email_alerts(&sink, "notify_requests = [\"email\"]")).await;
    let body = serde_json::json!({
        "domain": "social.listed.test", "reason": "Year 9 media studies", "requester": "Ms Patel", "days": 2
    })
    .to_string();
    let (status, _, text) = http_from(
        "127.0.0.2",
        h.admin(),
        "POST",
        "/requests",
        &[],
        Some(("application/json", &body)),
    )
    .await;
    assert_eq!(status, 201, "{text}");
    let mails = sink.wait_for(1, 10).await;
    assert_eq!(mails.len(), 1);
    assert_eq!(mails[0].to, ["technician@example-school.test"]);
    let m = mails[0].text();
    for want in [
        "Subject: Chaperone: new unblock request #1 for social.listed.test",
        "Submitted by:  Ms Patel",
        "https://filter.example-school.test/console/requests",
    ] {
        assert!(m.contains(want), "{want:?} missing from:\n{m}");
    }
    assert!(
        !m.contains("media studies"),
        "free text stays in the console:\n{m}"
    );
    h.stop().await;
    up.stop().await;
    sink.stop();
}

#[tokio::test]
async fn a_theme_turned_off_makes_no_incident() {
    let sink = Sink::start(true).await;
    let alerts = email_alerts(&sink, "").replace(
        "[alerts.themes.gambling]",
        "[alerts.themes.self-harm]\ndelivery = \"off\"\n\n[alerts.themes.gambling]",
    );
    let (up, h) = setup(&sink, &alerts).await;
    let pupil = h.client("127.0.0.2");
    pupil.udp("selfharm.listed.test.", RecordType::A).await;
    // The illegal hit is the barrier (and illegal hits are always incidents).
    pupil.udp("abuse.listed.test.", RecordType::A).await;
    let list = incidents_until(&h, |l| !l.is_empty()).await;
    assert_eq!(list.len(), 1, "{list:?}");
    assert_eq!(list[0]["theme"], "illegal");
    assert_eq!(list[0]["category"], "illegal");
    let mails = sink.wait_for(1, 10).await;
    assert_eq!(mails.len(), 1);
    assert!(mails[0].text().contains("Theme:     illegal"));
    h.stop().await;
    up.stop().await;
    sink.stop();
}

/// `chaperone check` on `alerts` as the `[alerts]` section: its output.
fn check(alerts: &str) -> (bool, String) {
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), FILES);
    write_files(dir.path(), &[("ca.pem", "not a certificate\n")]);
    let path = dir.path().join("chaperone.toml");
    std::fs::write(&path, config(alerts).replace("{UPSTREAM}", "192.0.2.53")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"))
        .args(["check", "--config"])
        .arg(&path)
        .output()
        .unwrap();
    (
        out.status.success(),
        format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
    )
}

#[test]
fn bad_alert_settings_are_refused_naming_the_key() {
    let (ok, text) = check("[alerts]\n[alerts.themes.gambling]\ndelivery = \"digest\"\n");
    assert!(ok, "a good config checks clean: {text}");
    let cases: &[(&str, &str)] = &[
        ("[alerts.themes.gambling]\ndeliver = \"digest\"", "deliver"),
        (
            "[alerts.themes.gambling]\ncategories = [\"gambling\", \"casinos\"]",
            "alerts.themes.gambling.categories[1]: \"casinos\" unknown category",
        ),
        (
            "[alerts.themes.gambling]\ndelivery = \"hourly\"",
            "alerts.themes.gambling.delivery: expected \"instant\", \"digest\" or \"off\"",
        ),
        (
            "[alerts.themes.illegal]\ndelivery = \"off\"",
            "alerts.themes.illegal.delivery",
        ),
        (
            "[alerts.themes.self-harm]\ncategories = [\"illegal\"]",
            "alerts.themes.self-harm.categories[0]: \"illegal\" is an illegal category",
        ),
        ("[alerts]\ndigest_at = \"25:00\"", "alerts.digest_at"),
        (
            "[alerts]\nincident_window_mins = 0",
            "alerts.incident_window_mins",
        ),
        (
            "[alerts]\nnotify_requests = [\"email\"]",
            "alerts.notify_requests[0]",
        ),
        (
            "[alerts.email]\nhost = \"smtp.example.org\"\nstarttls = \"none\"\nfrom = \"a@example.org\"\nto = [\"b@example.org\"]",
            "alerts.email.starttls",
        ),
        (
            "[alerts.email]\nhost = \"smtp.example.org\"\nfrom = \"not an address\"\nto = [\"b@example.org\"]\nca_file = \"ca.pem\"",
            "alerts.email.from",
        ),
        (
            "[alerts.email]\nhost = \"smtp.example.org\"\nfrom = \"a@example.org\"\nto = [\"b@example.org\"]\nca_file = \"ca.pem\"",
            "alerts.email.ca_file",
        ),
        (
            "[alerts.email]\nhost = \"smtp.example.org\"\nfrom = \"a@example.org\"\nto = [\"b@example.org\"]\nusername = \"u\"",
            "alerts.email.password_file",
        ),
    ];
    for (section, want) in cases {
        let section = if section.starts_with("[alerts]") {
            (*section).to_owned()
        } else {
            format!("[alerts]\n{section}")
        };
        let (ok, text) = check(&section);
        assert!(!ok, "{section} must fail");
        assert!(text.contains(want), "{want:?} not in:\n{text}");
    }
}

/// The store's incident window on one backend.
fn window_body(mut s: Box<dyn chaperone::store::Store>) {
    use chaperone::store::querylog::LogEvent;
    let base = chaperone::store::micros(school_morning());
    let event = |ts_us: i64, client: &str, name: &str| LogEvent {
        ts_us,
        client: client.to_owned(),
        group: "pupils".into(),
        device: None,
        mac: None,
        hostname: Some("ipad-7".into()),
        user: None,
        device_id: None,
        name: name.to_owned(),
        qtype: "A".into(),
        decision: "blocked".into(),
        category: Some("self-harm".into()),
        rule: None,
        rcode: "NOERROR".into(),
        incident: false,
        count: 1,
    };
    let window = 600_000_000;
    let second = 1_000_000;
    let first = s
        .record_incident(&event(base, "10.0.0.1", "a.test"), "self-harm", window)
        .unwrap();
    assert!(first.new);
    for i in 1..231 {
        let r = s
            .record_incident(
                &event(base + i * 1_300_000, "10.0.0.1", "a.test"),
                "self-harm",
                window,
            )
            .unwrap();
        assert_eq!((r.id, r.new, r.hits), (first.id, false, i + 1));
    }
    // Another device, another name: their own incidents.
    assert!(
        s.record_incident(&event(base, "10.0.0.2", "a.test"), "self-harm", window)
            .unwrap()
            .new
    );
    assert!(
        s.record_incident(&event(base, "10.0.0.1", "b.test"), "self-harm", window)
            .unwrap()
            .new
    );
    // After the window: a new one.
    let later = s
        .record_incident(
            &event(base + 601 * second, "10.0.0.1", "a.test"),
            "self-harm",
            window,
        )
        .unwrap();
    assert!(later.new && later.id != first.id);
    let rows = s.list_incidents(school_morning(), None, 10).unwrap();
    assert_eq!(rows.len(), 4);
    let row = rows.iter().find(|r| r.id == first.id).unwrap();
    assert_eq!(row.hits, 231);
    assert_eq!(row.theme.as_deref(), Some("self-harm"));
    assert_eq!(
        row.last_seen,
        chaperone::store::from_micros(base + 230 * 1_300_000).to_string()
    );
    // The old insert stays: one incident per call.
    let a = s
        .insert_incident(&event(base, "10.0.0.1", "a.test"))
        .unwrap();
    assert_ne!(a, first.id);
}

#[test]
fn the_incident_window_counts_hits_on_sqlite() {
    let dir = tempfile::tempdir().unwrap();
    window_body(Box::new(
        chaperone::store::sqlite::Sqlite::open(&dir.path().join("s.db")).unwrap(),
    ));
}

#[test]
fn the_incident_window_counts_hits_on_postgres() {
    let db = pg::database();
    window_body(Box::new(
        chaperone::store::postgres::Postgres::connect_now(&db.config()).unwrap(),
    ));
}
