//! The safeguarding lead's console at `/console/` on the admin listener: sign-in, sessions,
//! CSRF and rate limits over plain HTTP, and a real headless Chromium that signs in,
//! approves a request (then a real DNS query resolves the name), acknowledges an incident
//! made by a real DNS query and verifies the audit log. Screenshots of every page go to
//! `$CHAPERONE_SCREENSHOTS` (else `target/screenshots/`).

use std::time::Duration;

use chaperone::policy::clock::Clock;
use hickory_proto::rr::RecordType;
use serde_json::{Value, json};

use crate::safeguarding::{FILES, TECH, config, receiver};
use crate::support::browser::{Browser, processes_naming, require_browser};
use crate::support::*;

const PASSWORD: &str = "correct horse battery staple";
/// A fixed TOTP secret (base32) for the account that needs a code.
const TOTP: &str = "JBSWY3DPEHPK3PXPJBSWY3DPEHPK3PXP";

/// The safeguarding tests' config with console accounts: a DSL, and a technician with
/// TOTP; a short idle timeout; and the browser's address (127.0.0.1) on the pupils' net.
fn console_config(webhook: &str) -> String {
    let hash = chaperone::config::console::hash_password(PASSWORD).unwrap();
    let text = config(webhook).replace(
        "cidrs = [\"127.0.0.2/32\"]\ngroup = \"pupils\"",
        "cidrs = [\"127.0.0.1/32\", \"127.0.0.2/32\"]\ngroup = \"pupils\"",
    );
    format!(
        "{text}\n[console]\nidle_timeout_mins = 10\n\n[[console.user]]\nname = \"dee\"\nrole = \"dsl\"\npassword_hash = \"{hash}\"\n\n[[console.user]]\nname = \"tom\"\nrole = \"technician\"\npassword_hash = \"{hash}\"\ntotp_secret = \"{TOTP}\"\n"
    )
}

/// URL-encode a form.
fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| {
            let enc: String = v
                .bytes()
                .map(|b| match b {
                    b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' => {
                        (b as char).to_string()
                    }
                    _ => format!("%{b:02X}"),
                })
                .collect();
            format!("{k}={enc}")
        })
        .collect::<Vec<_>>()
        .join("&")
}

/// POST a sign-in from `from`: (status, head, body).
async fn login(h: &Harness, from: &str, user: &str, pw: &str, code: &str) -> (u16, String, String) {
    let body = form(&[("username", user), ("password", pw), ("code", code)]);
    http_from(
        from,
        h.admin(),
        "POST",
        "/console/login",
        &[],
        Some(("application/x-www-form-urlencoded", &body)),
    )
    .await
}

/// The `name=value` of the session cookie a sign-in set.
fn cookie_of(head: &str) -> String {
    let set = header_of(head, "set-cookie").unwrap_or_else(|| panic!("no cookie in {head}"));
    set.split(';').next().unwrap().to_owned()
}

async fn get(h: &Harness, cookie: &str, path: &str) -> (u16, String) {
    let (s, _, b) = http_from(
        "127.0.0.1",
        h.admin(),
        "GET",
        path,
        &[("Cookie", cookie)],
        None,
    )
    .await;
    (s, b)
}

async fn post(h: &Harness, cookie: &str, path: &str, body: &str) -> (u16, String, String) {
    http_from(
        "127.0.0.1",
        h.admin(),
        "POST",
        path,
        &[("Cookie", cookie)],
        Some(("application/x-www-form-urlencoded", body)),
    )
    .await
}

fn csrf_of(body: &str) -> String {
    body.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no csrf field in {body}"))
        .to_owned()
}

fn is_login_form(body: &str) -> bool {
    body.contains("action=\"/console/login\"") && body.contains("type=\"password\"")
}

#[tokio::test]
async fn console_sign_in_sessions_csrf_totp_and_rate_limits() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let rx = receiver(0).await;
    let h = start(&console_config(&rx.url), up.addr, FILES, school_morning()).await;

    // No session: the sign-in form, at /console/ itself.
    let (s, _, body) = http_from("127.0.0.1", h.admin(), "GET", "/console/", &[], None).await;
    assert_eq!(s, 200);
    assert!(is_login_form(&body), "{body}");

    // Wrong password, unknown account: the same refusal.
    let (s, _, body) = login(&h, "127.0.0.1", "dee", "wrong", "").await;
    assert_eq!(s, 401);
    assert!(body.contains("Wrong name, password or code"), "{body}");
    let (s, _, _) = login(&h, "127.0.0.1", "nobody", PASSWORD, "").await;
    assert_eq!(s, 401);

    // The right password: a session cookie with the safe attributes.
    let (s, head, _) = login(&h, "127.0.0.1", "dee", PASSWORD, "").await;
    assert_eq!(s, 303, "{head}");
    let set = header_of(&head, "set-cookie").unwrap();
    for want in [
        "chaperone_console=",
        "HttpOnly",
        "SameSite=Strict",
        "Path=/console",
    ] {
        assert!(set.contains(want), "{set}");
    }
    assert!(!set.contains("Secure"), "no https url configured: {set}");
    let cookie = cookie_of(&head);
    let (s, body) = get(&h, &cookie, "/console/").await;
    assert_eq!(s, 200);
    assert!(
        body.contains("<h1>Today</h1>") && body.contains("Is filtering working?"),
        "{body}"
    );

    // A POST without the session's CSRF token is refused.
    let (s, _, body) = post(&h, &cookie, "/console/audit/verify", "").await;
    assert_eq!(s, 403, "{body}");
    let (s, _, body) = post(&h, &cookie, "/console/audit/verify", "csrf=00").await;
    assert_eq!(s, 403, "{body}");
    let (_, page) = get(&h, &cookie, "/console/audit").await;
    let token = csrf_of(&page);
    let (s, _, body) = post(
        &h,
        &cookie,
        "/console/audit/verify",
        &form(&[("csrf", &token)]),
    )
    .await;
    assert_eq!(s, 200, "{body}");
    assert!(body.contains("Intact"), "{body}");

    // TOTP: the password alone is not enough; the current code is.
    let (s, _, _) = login(&h, "127.0.0.1", "tom", PASSWORD, "").await;
    assert_eq!(s, 401);
    let secret = chaperone::config::console::decode_totp(TOTP).unwrap();
    let code = chaperone::console::auth::totp_code(&secret, h.clock.now()).unwrap();
    let wrong = format!("{:06}", (code.parse::<u32>().unwrap() + 1) % 1_000_000);
    let (s, _, _) = login(&h, "127.0.0.1", "tom", PASSWORD, &wrong).await;
    assert_eq!(s, 401);
    let (s, head, _) = login(&h, "127.0.0.1", "tom", PASSWORD, &code).await;
    assert_eq!(s, 303);
    let tom = cookie_of(&head);
    // A code once used is spent: the same code cannot sign in again.
    let (s, _, _) = login(&h, "127.0.0.7", "tom", PASSWORD, &code).await;
    assert_eq!(s, 401, "a TOTP code was accepted twice");
    // A technician may not see incidents.
    let (s, _) = get(&h, &tom, "/console/incidents").await;
    assert_eq!(s, 403);

    // Idle timeout (10 minutes, by the server's clock).
    h.clock.advance(Duration::from_secs(9 * 60));
    let (_, body) = get(&h, &cookie, "/console/").await;
    assert!(!is_login_form(&body), "still signed in after 9 minutes");
    h.clock.advance(Duration::from_secs(11 * 60));
    let (s, body) = get(&h, &cookie, "/console/").await;
    assert_eq!(s, 200);
    assert!(
        is_login_form(&body),
        "signed out after 11 idle minutes: {body}"
    );

    // Logout ends the session.
    let (_, head, _) = login(&h, "127.0.0.1", "dee", PASSWORD, "").await;
    let cookie = cookie_of(&head);
    let (_, page) = get(&h, &cookie, "/console/").await;
    let (s, _, body) = post(
        &h,
        &cookie,
        "/console/logout",
        &form(&[("csrf", &csrf_of(&page))]),
    )
    .await;
    assert_eq!(s, 200);
    assert!(body.contains("You have signed out"), "{body}");
    let (_, body) = get(&h, &cookie, "/console/").await;
    assert!(is_login_form(&body));

    // Rate limit: five failures from one address, then even the right password is refused.
    for _ in 0..5 {
        let (s, _, _) = login(&h, "127.0.0.5", "dee", "guess", "").await;
        assert_eq!(s, 401);
    }
    let (s, _, body) = login(&h, "127.0.0.5", "dee", PASSWORD, "").await;
    assert_eq!(s, 429, "{body}");
    assert!(body.contains("Too many failed sign-ins"), "{body}");
    // ... and the account is held too, from any address, for 15 minutes.
    let (s, _, _) = login(&h, "127.0.0.6", "dee", PASSWORD, "").await;
    assert_eq!(s, 429);
    h.clock.advance(Duration::from_secs(16 * 60));
    let (s, _, _) = login(&h, "127.0.0.6", "dee", PASSWORD, "").await;
    assert_eq!(s, 303);

    // Sign-ins, failures and sign-outs are in the audit log.
    let (_, audit) = http(
        h.admin(),
        "GET",
        "/audit",
        Some(crate::safeguarding::DSL),
        None,
    )
    .await;
    let rows: Vec<Value> = serde_json::from_str(&audit).unwrap();
    for action in ["console.login", "console.login_failed", "console.logout"] {
        assert!(
            rows.iter().any(|r| r["action"] == action),
            "{action} in {audit}"
        );
    }
    h.stop().await;
    up.stop().await;
}

/// The browser's journey, bounded as a whole.
#[tokio::test]
async fn a_dsl_signs_in_approves_a_request_and_acknowledges_an_incident_in_chromium() {
    require_browser();
    tokio::time::timeout(Duration::from_secs(240), journey())
        .await
        .expect("the console browser test took over 240 s");
}

async fn journey() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let rx = receiver(0).await;
    let h = start(&console_config(&rx.url), up.addr, FILES, school_morning()).await;
    let pupil = h.client("127.0.0.2");
    assert_eq!(
        ips(&pupil.udp("social.listed.test.", RecordType::A).await),
        vec!["192.0.2.200".parse::<std::net::IpAddr>().unwrap()],
        "blocked for pupils before the approval"
    );
    // A pending request (as a technician would file it through the API).
    let (s, body) = http(
        h.admin(),
        "POST",
        "/requests",
        Some(TECH),
        Some(&json!({ "domain": "social.listed.test", "reason": "Year 9 media studies", "requester": "Ms Green", "days": 2, "groups": ["pupils"] }).to_string()),
    )
    .await;
    assert_eq!(s, 201, "{body}");
    let request: Value = serde_json::from_str(&body).unwrap();
    let rid = request["id"].as_i64().unwrap();
    // An incident, from a real DNS query for an illegal-category name.
    let _ = pupil.udp("abuse.listed.test.", RecordType::A).await;

    let host = "console.school.test";
    let b = Browser::start(&[(host, h.admin())], 1280, 900).await;
    let base = format!("http://{host}");
    b.goto(&format!("{base}/console/")).await;
    assert_eq!(b.title().await, "Sign in · Chaperone");
    b.save_screenshot("console-login").await;
    b.fill("#username", "dee").await;
    b.fill("#password", PASSWORD).await;
    b.submit("form[action='/console/login'] button[type='submit']")
        .await;
    b.wait_for_title("Today · Chaperone").await;
    let main = b.text("main").await;
    assert!(main.contains("1 open incidents"), "{main}");
    assert!(main.contains("1 unblock requests waiting"), "{main}");
    b.save_screenshot("console-today").await;

    // Approve the request with a duration and groups.
    b.goto(&format!("{base}/console/requests")).await;
    b.save_screenshot("console-requests").await;
    b.fill(&format!("#days-{rid}"), "1").await;
    b.fill(&format!("#groups-{rid}"), "pupils").await;
    b.fill(&format!("#approve-reason-{rid}"), "Lesson resource checked")
        .await;
    b.submit(&format!(
        "form[action='/console/requests/{rid}/approve'] button"
    ))
    .await;
    b.wait_for_title("Requests and reports · Chaperone").await;
    let main = b.text("main").await;
    assert!(main.contains("approved"), "{main}");
    // The exception takes effect: a real DNS query now resolves the name.
    assert_eq!(
        ips(&pupil.udp("social.listed.test.", RecordType::A).await),
        vec!["192.0.2.99".parse::<std::net::IpAddr>().unwrap()],
        "allowed for pupils after the approval"
    );
    b.goto(&format!("{base}/console/exceptions")).await;
    let main = b.text("main").await;
    assert!(
        main.contains("social.listed.test") && main.contains("1 day 0 hours"),
        "{main}"
    );
    b.save_screenshot("console-exceptions").await;

    // Acknowledge the incident with a note.
    b.goto(&format!("{base}/console/incidents")).await;
    let main = b.text("main").await;
    assert!(
        main.contains("abuse.listed.test") && main.contains("Open"),
        "{main}"
    );
    b.save_screenshot("console-incidents").await;
    b.submit("main table a").await;
    b.wait_for_title("Incident #1 · Chaperone").await;
    assert!(b.text("main").await.contains("Mon 23 Nov 2026 10:00"));
    b.save_screenshot("console-incident").await;
    let note = "Spoke to the pupil and their form tutor; parents informed";
    b.fill("#note", note).await;
    b.submit("form[action='/console/incidents/1/ack'] button")
        .await;
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !b.text("main").await.contains("Acknowledged by dee") {
        assert!(
            std::time::Instant::now() < deadline,
            "acknowledgement not shown"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // The note is in the audit log, and the chain verifies.
    b.goto(&format!("{base}/console/audit")).await;
    let main = b.text("main").await;
    assert!(
        main.contains("incident.acknowledge") && main.contains(note),
        "{main}"
    );
    b.submit("form[action='/console/audit/verify'] button")
        .await;
    let verdict = b.text("#verdict").await;
    assert!(verdict.starts_with("Intact"), "{verdict}");
    b.save_screenshot("console-audit").await;

    // The pupil's look-up is in the query log (the writer flushes in the background).
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    loop {
        b.goto(&format!("{base}/console/search")).await;
        b.fill("#name", "social.listed.test").await;
        b.submit("form[action='/console/search'] button[type='submit']")
            .await;
        let main = b.text("main").await;
        if main.contains("social.listed.test") && main.contains("127.0.0.2") {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the look-up never appeared in the query log search: {main}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    b.save_screenshot("console-search").await;

    // The policy in words, and a filtering check recorded.
    b.goto(&format!("{base}/console/policy")).await;
    assert!(b.text("main").await.contains("pupils"));
    b.save_screenshot("console-policy").await;
    b.goto(&format!("{base}/console/checks")).await;
    b.fill("#what", "adult test site from a pupil laptop").await;
    b.fill("#target", "pupils, IT suite PC 12").await;
    b.click("input[name='result'][value='pass']").await;
    b.fill("#action", "none needed").await;
    b.submit("form[action='/console/checks'] button[type='submit']")
        .await;
    let main = b.text("main").await;
    assert!(
        main.contains("adult test site from a pupil laptop") && main.contains("IT suite PC 12"),
        "{main}"
    );
    b.save_screenshot("console-checks").await;

    // Today on a phone.
    b.client.set_window_size(390, 844).await.expect("resize");
    b.goto(&format!("{base}/console/")).await;
    b.save_screenshot("console-today-phone").await;

    let dir = b.quit().await;
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !processes_naming(&dir).is_empty() {
        assert!(
            std::time::Instant::now() < deadline,
            "browser processes left"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
    up.stop().await;
}
