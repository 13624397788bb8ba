//! The block page's words, through the real block-page listener: plain words for a pupil
//! (no rule, group or raw category), who to ask from `[block_page]`, when a schedule opens
//! the site (worked out by the live policy at the server's clock), the one-sentence page
//! of an allow-only (Key Stage 1) group, Welsh by `Accept-Language`, and a request page
//! that promises no notification when none is configured.
//!
//! Screenshots of the four pages (English, Welsh, KS1, "opens at") are taken by Debian's
//! headless Chromium (`--screenshot`, its own command line, no WebDriver) into
//! `$CHAPERONE_SCREENSHOTS`, else `target/screenshots/`.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use crate::support::*;

const PUPIL: &str = "127.0.0.2";
const INFANT: &str = "127.0.0.4";
const BLOCKED: &str = "social.listed.test";

/// Pupils (127.0.0.2, or 127.0.0.1 with `browser_is`) with social media open at
/// lunchtime on weekdays; Key Stage 1 (127.0.0.4) reaching only its approved list.
fn config(browser_is: &str) -> String {
    let net = |ip: &str, group: &str| {
        let mut cidrs = vec![format!("\"{ip}/32\"")];
        if browser_is == group {
            cidrs.push("\"127.0.0.1/32\"".into());
        }
        format!(
            "[[network]]\ncidrs = [{}]\ngroup = \"{group}\"\n",
            cidrs.join(", ")
        )
    };
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
timezone = "Europe/London"

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
category = "ks1-approved"
path = "approved.txt"

[block_page]
ipv4 = "192.0.2.200"
listen = "127.0.0.1:0"
school_name = "Ysgol Example Primary"
contact = "Ask Mr Jones in IT, room 12"
text = "Our school keeps you safe online."

{pupils}
{ks1}
[group.pupils]
block = ["social"]
block_answer = "block_page"

[[group.pupils.schedule]]
name = "lunchtime social"
days = ["weekdays"]
from = "12:00"
to = "13:00"
allow = ["social"]

[group.ks1]
allow_only = true
approved = ["ks1-approved"]
block_answer = "block_page"

[admin]
listen = "127.0.0.1:0"
"#,
        pupils = net(PUPIL, "pupils"),
        ks1 = net(INFANT, "ks1"),
    )
}

const FILES: &[(&str, &str)] = &[
    ("social.txt", "social.listed.test\n"),
    ("approved.txt", "learn.listed.test\n"),
];

async fn setup(browser_is: &str) -> (Authority, Harness) {
    let up = authority(
        "127.0.0.1:0".parse().unwrap(),
        &[("listed.test.", LISTED_ZONE)],
    )
    .await;
    // Monday 23 November 2026, 10:00 in London (GMT).
    let h = start(&config(browser_is), up.addr, FILES, school_morning()).await;
    (up, h)
}

fn page_addr(h: &Harness) -> SocketAddr {
    h.running
        .as_ref()
        .and_then(|r| r.block_page_addr)
        .expect("block page listener configured")
}

async fn get(h: &Harness, from: &str, host: &str, lang: Option<&str>) -> (u16, String) {
    let mut headers = vec![("Host", host)];
    if let Some(l) = lang {
        headers.push(("Accept-Language", l));
    }
    let (status, _, body) = http_from(from, page_addr(h), "GET", "/", &headers, None).await;
    (status, body)
}

#[tokio::test]
async fn the_block_page_speaks_to_a_pupil_and_says_when_the_site_opens() {
    let (up, h) = setup("").await;
    let (status, page) = get(&h, PUPIL, BLOCKED, None).await;
    assert_eq!(status, 403, "{page}");
    for want in [
        "<html lang=\"en\">",
        "<h1>This site is blocked</h1>",
        BLOCKED,
        "Social media",
        "Ysgol Example Primary",
        "Ask Mr Jones in IT, room 12",
        "Our school keeps you safe online.",
        "Monday 23 November 2026, 10:00 GMT",
        // The policy's own schedule, at the server's clock.
        "Social media sites open at 12:00 today.",
    ] {
        assert!(page.contains(want), "no {want:?} in\n{page}");
    }
    for jargon in [
        "Matched rule",
        "matched rule",
        "Policy group",
        "policy group",
        "for your network",
        "pupils",
        ">social<",
        "lunchtime social",
    ] {
        assert!(!page.contains(jargon), "{jargon:?} on the page:\n{page}");
    }
    // No notification channel is configured: the form must not promise one.
    assert!(
        page.contains("Your request is kept until a member of staff looks at it"),
        "{page}"
    );
    assert!(
        !page.contains("told about your request straight away"),
        "{page}"
    );

    // After lunch on Monday the next opening is Tuesday's.
    h.clock.set("2026-11-23T13:30:00Z".parse().unwrap());
    let (_, later) = get(&h, PUPIL, BLOCKED, None).await;
    assert!(
        later.contains("Social media sites open at 12:00 tomorrow."),
        "{later}"
    );
    // On Friday afternoon, Monday's.
    h.clock.set("2026-11-27T14:00:00Z".parse().unwrap());
    let (_, friday) = get(&h, PUPIL, BLOCKED, None).await;
    assert!(
        friday.contains("Social media sites open on Monday at 12:00."),
        "{friday}"
    );
    // At lunchtime it is not blocked at all: no page about it.
    h.clock.set("2026-11-23T12:30:00Z".parse().unwrap());
    let (status, lunch) = get(&h, PUPIL, BLOCKED, None).await;
    assert_eq!(status, 200, "{lunch}");
    assert!(!lunch.contains("Social media"), "{lunch}");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn welsh_is_chosen_by_accept_language_for_every_string() {
    let (up, h) = setup("").await;
    let (_, cy) = get(&h, PUPIL, BLOCKED, Some("cy-GB,cy;q=0.9,en;q=0.8")).await;
    for want in [
        "<html lang=\"cy\">",
        "<h1>Mae'r wefan hon wedi'i rhwystro</h1>",
        "Cyfryngau cymdeithasol",
        "dydd Llun 23 Tachwedd 2026",
        "Bydd gwefannau cyfryngau cymdeithasol ar agor am 12:00 heddiw.",
        "Eich enw",
        "Pwy i'w holi",
        "Rhywbeth o'i le?",
    ] {
        assert!(cy.contains(want), "no {want:?} in\n{cy}");
    }
    for english in [
        "This site is blocked",
        "Your name",
        "Ask for access",
        "Social media",
        "Something wrong",
        "Monday",
    ] {
        assert!(
            !cy.contains(english),
            "English {english:?} on the Welsh page"
        );
    }
    // English preferred over Welsh by q-value, and no header at all: English.
    for lang in [Some("en-GB,en;q=0.9,cy;q=0.5"), None] {
        let (_, en) = get(&h, PUPIL, BLOCKED, lang).await;
        assert!(en.contains("<html lang=\"en\">"), "{lang:?}");
    }
    // The generic page too.
    let (_, generic) = get(&h, PUPIL, "www.listed.test", Some("cy")).await;
    assert!(generic.contains("Hidlydd gwe'r ysgol"), "{generic}");
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn an_allow_only_group_gets_one_sentence_and_no_form() {
    let (up, h) = setup("").await;
    for (lang, sentence) in [
        (
            None,
            "This website isn't on your class's list. Ask your teacher.",
        ),
        (
            Some("cy"),
            "Dydy'r wefan hon ddim ar restr eich dosbarth. Gofynnwch i'ch athro.",
        ),
    ] {
        let (status, page) = get(&h, INFANT, "games.listed.test", lang).await;
        assert_eq!(status, 403, "{page}");
        assert!(page.contains(sentence), "{lang:?}: {page}");
        for absent in ["<form", "<img", "<textarea", "<input", "games.listed.test"] {
            assert!(
                !page.contains(absent),
                "{absent:?} on the KS1 page:\n{page}"
            );
        }
    }
    // Its approved site is simply allowed: the generic page.
    let (status, _) = get(&h, INFANT, "learn.listed.test", None).await;
    assert_eq!(status, 200);
    h.stop().await;
    up.stop().await;
}

#[tokio::test]
async fn a_sent_request_promises_no_notification_when_none_is_configured() {
    let (up, h) = setup("").await;
    let addr = page_addr(&h);
    let (_, _, page) = http_from(PUPIL, addr, "GET", "/", &[("Host", BLOCKED)], None).await;
    let csrf = page
        .split("name=\"csrf\" value=\"")
        .nth(1)
        .and_then(|r| r.split('"').next())
        .expect("a csrf field")
        .to_owned();
    let body =
        format!("domain={BLOCKED}&requester=Alex&reason=Homework+on+media&days=1&csrf={csrf}");
    let origin = format!("http://{BLOCKED}");
    let (status, _, sent) = http_from(
        PUPIL,
        addr,
        "POST",
        "/request",
        &[
            ("Host", BLOCKED),
            ("Origin", &origin),
            ("Accept-Language", "cy"),
        ],
        Some(("application/x-www-form-urlencoded", &body)),
    )
    .await;
    assert_eq!(status, 200, "{sent}");
    assert!(sent.contains("Cais wedi'i anfon"), "{sent}");
    assert!(
        sent.contains("Does neb yn cael gwybod amdano ar unwaith"),
        "{sent}"
    );
    assert!(!sent.contains("wedi'i anfon at dechnegydd"), "{sent}");
    h.stop().await;
    up.stop().await;
}

/// Where screenshots go: `$CHAPERONE_SCREENSHOTS`, else `target/screenshots`.
fn screenshot_dir() -> PathBuf {
    let dir = std::env::var_os("CHAPERONE_SCREENSHOTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| {
            let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            tmp.parent()
                .map_or(tmp.clone(), |t| t.to_path_buf())
                .join("screenshots")
        });
    std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
    dir
}

/// Headless Chromium loads `http://{host}/` (every name mapped to the block page
/// listener, so nothing leaves loopback) and writes a PNG.
fn chromium_screenshot(addr: SocketAddr, host: &str, lang: &str, out: &std::path::Path) {
    let profile = tempfile::tempdir().unwrap();
    let status = Command::new("/usr/bin/chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--hide-scrollbars",
            "--window-size=800,1100",
        ])
        .arg(format!("--user-data-dir={}", profile.path().display()))
        .arg(format!("--host-resolver-rules=MAP * {addr}"))
        .arg(format!("--accept-lang={lang}"))
        .arg(format!("--lang={lang}"))
        .arg(format!("--screenshot={}", out.display()))
        .arg(format!("http://{host}/"))
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .status()
        .expect("run /usr/bin/chromium (apt-get install -y chromium)");
    assert!(status.success(), "chromium --screenshot {host}: {status}");
    let png = std::fs::read(out).unwrap_or_else(|e| panic!("{}: {e}", out.display()));
    assert!(
        png.starts_with(b"\x89PNG\r\n\x1a\n"),
        "{} is a PNG",
        out.display()
    );
}

#[tokio::test]
async fn screenshots_of_the_block_pages_in_a_real_browser() {
    let dir = screenshot_dir();
    // The browser connects from 127.0.0.1: first a pupil, then an infant.
    let (up, h) = setup("pupils").await;
    let addr = page_addr(&h);
    let run = |host: &'static str, lang: &'static str, name: &'static str| {
        let out = dir.join(name);
        tokio::task::spawn_blocking(move || chromium_screenshot(addr, host, lang, &out))
    };
    run(BLOCKED, "en-GB", "blockpage-en.png").await.unwrap();
    run(BLOCKED, "cy", "blockpage-cy.png").await.unwrap();
    // The "opens at" sentence is on both; one more, later in the week.
    h.clock.set("2026-11-27T14:00:00Z".parse().unwrap());
    run(BLOCKED, "en-GB", "blockpage-opens-monday.png")
        .await
        .unwrap();
    h.stop().await;
    let (up2, h) = setup("ks1").await;
    let addr = page_addr(&h);
    let out = dir.join("blockpage-ks1.png");
    tokio::task::spawn_blocking(move || {
        chromium_screenshot(addr, "games.listed.test", "en-GB", &out)
    })
    .await
    .unwrap();
    eprintln!("block page screenshots in {}", dir.display());
    h.stop().await;
    up.stop().await;
    up2.stop().await;
}
