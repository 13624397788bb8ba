//! The block page end to end in a real browser: Debian's headless Chromium, driven through
//! chromedriver by `support::browser` (fantoccini), is sent to the block page for a name blocked for
//! the pupils' network. It must show why, take an unblock request and a site report, and the
//! admin API must then list both. A screenshot of the page is left in `target/blockpage.png`
//! for a person to look at.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`apt-get install -y chromium
//! chromium-driver`; `.ci/run` installs them). Without them the test fails, it never skips.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::safeguarding::{FILES, VIEWER, config, receiver};
use crate::support::browser::{Browser, processes_naming, require_browser};
use crate::support::*;

/// The blocked name the browser asks for.
const BLOCKED: &str = "social.listed.test";

/// The whole test: whatever happens, it ends (and the browser is killed) by then.
const WHOLE_TEST: Duration = Duration::from_secs(240);

/// Where cargo builds (`target/`, or `CARGO_TARGET_DIR`): the parent of the integration
/// tests' scratch directory.
fn target_dir() -> PathBuf {
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(tmp).to_path_buf()
}

/// The safeguarding tests' config, with the browser's address (127.0.0.1) on the pupils'
/// network as well.
fn browser_config(webhook: &str) -> String {
    let text = config(webhook);
    let pupils = "cidrs = [\"127.0.0.2/32\"]\ngroup = \"pupils\"";
    assert!(
        text.contains(pupils),
        "the safeguarding config has moved on"
    );
    text.replace(
        pupils,
        "cidrs = [\"127.0.0.1/32\", \"127.0.0.2/32\"]\ngroup = \"pupils\"",
    )
}

/// The number after `#` in text such as "#12".
fn number(text: &str) -> i64 {
    text.trim()
        .trim_start_matches('#')
        .parse()
        .unwrap_or_else(|_| panic!("not a request number: {text:?}"))
}

async fn admin_get(h: &Harness, path: &str) -> Vec<Value> {
    let (status, body) = http(h.admin(), "GET", path, Some(VIEWER), None).await;
    assert_eq!(status, 200, "GET {path}: {body}");
    let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{path}: {e}: {body}"));
    v.as_array()
        .unwrap_or_else(|| panic!("{path} is not a list: {v}"))
        .clone()
}

#[tokio::test]
async fn a_pupil_browser_sees_why_asks_for_access_and_reports_a_site() {
    // Fail at once, and say how to fix it, when the browser is not installed.
    require_browser();
    tokio::time::timeout(WHOLE_TEST, browser_journey())
        .await
        .unwrap_or_else(|_| panic!("the block page browser test took over {WHOLE_TEST:?}"));
}

async fn browser_journey() {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let rx = receiver(0).await;
    let h = start(&browser_config(&rx.url), up.addr, FILES, school_morning()).await;
    let page_addr = h
        .running
        .as_ref()
        .unwrap()
        .block_page_addr
        .expect("block page listener configured");

    // DNS first: a pupil at the browser's address is sent to the block page.
    let dns = h
        .client("127.0.0.1")
        .udp("social.listed.test.", hickory_proto::rr::RecordType::A)
        .await;
    assert_eq!(
        ips(&dns),
        vec!["192.0.2.200".parse::<std::net::IpAddr>().unwrap()],
        "127.0.0.1 is on the pupils' network and gets the block page address"
    );

    let browser = Browser::start(&[(BLOCKED, page_addr)], 1280, 900).await;

    // 1. The block page says what, why, for whom and when.
    browser.goto(&format!("http://{BLOCKED}/")).await;
    assert_eq!(browser.title().await, "This site is blocked");
    let main = browser.text("main").await;
    for want in [
        BLOCKED,
        // The kind of site in plain words, not the category's config name or the group.
        "Social media",
        "Monday 23 November 2026",
        "Ask for access",
        "Report a mistake",
    ] {
        assert!(main.contains(want), "block page lacks {want:?}:\n{main}");
    }
    assert_eq!(browser.text("h1").await, "This site is blocked");
    // Every form field has a visible label (accessibility).
    for id in ["requester", "reason", "days"] {
        assert_eq!(
            browser.count(&format!("label[for='{id}']")).await,
            1,
            "a label for #{id}"
        );
    }
    let png = browser.screenshot().await;
    let shot = target_dir().join("blockpage.png");
    std::fs::write(&shot, &png).unwrap_or_else(|e| panic!("write {}: {e}", shot.display()));
    eprintln!("block page screenshot: {}", shot.display());

    // 2. Ask for access through the form.
    let requester = "Alex Pupil (9B)";
    let reason = "Media studies homework on how brands use social networks";
    browser.fill("#requester", requester).await;
    browser.fill("#reason", reason).await;
    browser.fill("#days", "3").await;
    browser
        .click("form[action='/request'] button[type='submit']")
        .await;
    browser.wait_for_title("Request sent").await;
    let confirmation = browser.text("[role='status']").await;
    assert!(
        confirmation.contains(BLOCKED),
        "confirmation names the site: {confirmation}"
    );
    let id = number(&browser.text("[role='status'] strong").await);
    let _ = std::fs::write(
        target_dir().join("blockpage-request-sent.png"),
        browser.screenshot().await,
    );

    let requests = admin_get(&h, "/requests").await;
    let row = requests
        .iter()
        .find(|r| r["id"] == id)
        .unwrap_or_else(|| panic!("request #{id} is not in GET /requests: {requests:?}"));
    assert_eq!(row["domain"], BLOCKED, "{row}");
    assert_eq!(row["reason"], reason, "{row}");
    assert_eq!(row["requester"], requester, "{row}");
    assert_eq!(row["days"], 3, "{row}");
    assert_eq!(row["groups"], json!(["pupils"]), "{row}");
    assert_eq!(row["category"], "social", "{row}");
    assert_eq!(row["status"], "pending", "{row}");

    // 3. Report a site, through the block page's link.
    browser.goto(&format!("http://{BLOCKED}/")).await;
    assert_eq!(
        browser
            .attribute("a[href='/report']", "href")
            .await
            .as_deref(),
        Some("/report")
    );
    browser.click("a[href='/report']").await;
    browser.wait_for_title("Report a site").await;
    assert_eq!(browser.url().await, format!("http://{BLOCKED}/report"));
    let _ = std::fs::write(
        target_dir().join("blockpage-report.png"),
        browser.screenshot().await,
    );
    assert_eq!(
        browser.value("#url").await,
        BLOCKED,
        "the report form starts with the blocked site"
    );
    let url = "https://games.listed.test/unblocked/poker";
    let reporter = "Mr Jones";
    let comment = "Gambling games on a site the pupils found in a Year 7 lesson";
    browser.fill("#url", url).await;
    browser.fill("#reporter", reporter).await;
    browser.fill("#comment", comment).await;
    browser
        .click("form[action='/report'] button[type='submit']")
        .await;
    browser.wait_for_title("Report sent").await;
    let report_id = number(&browser.text("[role='status'] strong").await);

    let reports = admin_get(&h, "/reports").await;
    let row = reports
        .iter()
        .find(|r| r["id"] == report_id)
        .unwrap_or_else(|| panic!("report #{report_id} is not in GET /reports: {reports:?}"));
    assert_eq!(row["url"], url, "{row}");
    assert_eq!(row["domain"], "games.listed.test", "{row}");
    assert_eq!(row["reporter"], reporter, "{row}");
    assert_eq!(row["comment"], comment, "{row}");
    assert_eq!(row["status"], "pending", "{row}");

    // Chromium, its helpers and chromedriver are all gone afterwards.
    let dir = browser.quit().await;
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_naming(&dir).is_empty() {
        assert!(
            Instant::now() < deadline,
            "browser processes left: {:?}",
            processes_naming(&dir)
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    h.stop().await;
    up.stop().await;
}

/// GET the block page as a browser at `from` asking for `host`: (status, head, body).
async fn page_as(h: &Harness, from: &str, host: &str, path: &str) -> (u16, String, String) {
    let addr = h.running.as_ref().unwrap().block_page_addr.unwrap();
    http_from(from, addr, "GET", path, &[("Host", host)], None).await
}

/// The value of the hidden `csrf` field in a page.
fn csrf_of(body: &str) -> String {
    body.split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .unwrap_or_else(|| panic!("no csrf field in {body}"))
        .to_owned()
}

fn form(fields: &[(&str, &str)]) -> String {
    fields
        .iter()
        .map(|(k, v)| format!("{k}={}", v.replace(' ', "+")))
        .collect::<Vec<_>>()
        .join("&")
}

#[tokio::test]
async fn block_page_sends_security_headers_and_forms_need_same_origin_and_a_token() {
    let (up, h, _rx) = crate::safeguarding::setup(0).await;
    let (status, head, body) = page_as(&h, "127.0.0.2", BLOCKED, "/").await;
    assert_eq!(status, 403, "{body}");
    let csp = header_of(&head, "content-security-policy").expect("a CSP");
    assert!(csp.contains("frame-ancestors 'none'"), "{csp}");
    assert!(csp.contains("default-src 'none'"), "{csp}");
    assert_eq!(header_of(&head, "x-frame-options").as_deref(), Some("DENY"));
    assert_eq!(
        header_of(&head, "x-content-type-options").as_deref(),
        Some("nosniff")
    );
    let token = csrf_of(&body);
    let addr = h.running.as_ref().unwrap().block_page_addr.unwrap();
    let post = |origin: Option<&'static str>, token: String| async move {
        let mut headers = vec![("Host", BLOCKED)];
        if let Some(o) = origin {
            headers.push(("Origin", o));
        }
        let body = form(&[
            ("domain", BLOCKED),
            ("requester", "Alex"),
            ("reason", "homework"),
            ("days", "1"),
            ("csrf", &token),
        ]);
        http_from(
            "127.0.0.2",
            addr,
            "POST",
            "/request",
            &headers,
            Some(("application/x-www-form-urlencoded", &body)),
        )
        .await
    };
    let (status, head, _) = post(None, token.clone()).await;
    assert_eq!(status, 403, "no Origin or Referer");
    assert!(
        header_of(&head, "content-security-policy").is_some(),
        "errors too"
    );
    assert_eq!(
        post(Some("http://evil.example"), token.clone()).await.0,
        403,
        "cross-origin"
    );
    assert_eq!(
        post(Some("http://social.listed.test"), "1.00".into())
            .await
            .0,
        403,
        "a forged token"
    );
    let (status, _, body) = post(Some("http://social.listed.test"), token).await;
    assert_eq!(status, 200, "{body}");
    assert!(body.contains("Request sent"), "{body}");
    assert_eq!(
        metric(h.admin(), "chaperone_http_rejected_total{reason=\"csrf\"}").await,
        1.0
    );
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn block_page_discloses_nothing_about_illegal_lists_or_names_not_blocked_here() {
    let (up, h, _rx) = crate::safeguarding::setup(0).await;
    // Illegal: one fixed page, whatever the name and whoever asks; nothing echoed.
    let (status, _, first) = page_as(&h, "127.0.0.2", "abuse.listed.test", "/").await;
    assert_eq!(status, 403);
    for word in [
        "abuse",
        "illegal (",
        "IWF",
        "Category",
        "Matched rule",
        "pupils",
    ] {
        assert!(
            !first.contains(word),
            "the illegal page shows {word:?}:\n{first}"
        );
    }
    let (_, _, other) = page_as(&h, "127.0.0.1", "www.abuse.listed.test", "/").await;
    assert_eq!(
        other, first,
        "the same page for every illegal name and client"
    );
    assert_eq!(
        metric(h.admin(), "chaperone_blockpage_illegal_hits_total").await,
        2.0,
        "each view is counted"
    );
    let (_, _, report) = page_as(&h, "127.0.0.2", "abuse.listed.test", "/report").await;
    assert!(
        !report.contains("abuse"),
        "the report form does not echo it"
    );
    // Blocked for pupils only: details for a pupil, a generic page for staff and strangers.
    let (_, _, pupil) = page_as(&h, "127.0.0.2", BLOCKED, "/").await;
    assert!(
        pupil.contains("Social media") && pupil.contains("Kind of site"),
        "{pupil}"
    );
    for from in ["127.0.0.3", "127.0.0.1"] {
        let (status, _, page) = page_as(&h, from, BLOCKED, "/").await;
        assert_eq!(status, 200);
        assert!(
            !page.contains("social") && !page.contains("Category"),
            "{from} is not blocked from {BLOCKED}: no details\n{page}"
        );
    }
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn http_connections_are_capped_per_client_and_idle_ones_time_out() {
    use tokio::io::AsyncReadExt;
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    let rx = receiver(0).await;
    let text = format!(
        "{}\n[http]\nheader_timeout_ms = 3000\nmax_connections_per_client = 4\n",
        config(&rx.url)
    );
    let h = start(&text, up.addr, FILES, school_morning()).await;
    // One device opens 8 idle connections: past its 4, each is closed at once.
    let mut idle = Vec::new();
    for _ in 0..8 {
        idle.push(
            tokio::net::TcpStream::connect(h.admin())
                .await
                .expect("connect"),
        );
    }
    let deadline = tokio::time::Instant::now() + Duration::from_millis(1500);
    let mut closed_early = 0;
    let mut still_open = Vec::new();
    for mut s in idle {
        let mut buf = [0u8; 64];
        match tokio::time::timeout_at(deadline, s.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => closed_early += 1,
            _ => still_open.push(s),
        }
    }
    assert_eq!(
        closed_early, 4,
        "connections past the per-client cap are closed"
    );
    // Another address is still served.
    let (status, _, body) = http_from("127.0.0.2", h.admin(), "GET", "/healthz", &[], None).await;
    assert_eq!(status, 200, "{body}");
    // The idle ones, which never sent a request head, are closed after the header timeout.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    for mut s in still_open {
        let mut buf = [0u8; 64];
        let read = tokio::time::timeout_at(deadline, s.read(&mut buf)).await;
        assert!(
            matches!(read, Ok(Ok(0)) | Ok(Err(_))),
            "an idle connection is closed after http.header_timeout_ms: {read:?}"
        );
    }
    h.stop().await;
    up.stop().await;
}
