//! The block page end to end in a real browser: Debian's headless Chromium, driven through
//! chromedriver's W3C WebDriver REST API, is sent to the block page for a name blocked for
//! the pupils' network. It must show why, take an unblock request and a site report, and the
//! admin API must then list both. A screenshot of the page is left in `target/blockpage.png`
//! for a person to look at.
//!
//! Needs `/usr/bin/chromium` and `/usr/bin/chromedriver` (`apt-get install -y chromium
//! chromium-driver`; `.ci/run` installs them). Without them the test fails, it never skips.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::safeguarding::{FILES, VIEWER, config, receiver};
use crate::support::*;

const CHROMIUM: &str = "/usr/bin/chromium";
const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "run `apt-get install -y chromium chromium-driver` (as root) to install \
                       Debian's headless Chromium and chromedriver; .ci/run does this in CI";

/// The blocked name the browser asks for.
const BLOCKED: &str = "social.listed.test";

/// Longest time for one WebDriver command (page loads are bounded separately, below).
const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);
/// Longest time to wait for something to appear (chromedriver up, a page after a click).
const WAIT: Duration = Duration::from_secs(20);
/// The whole test: whatever happens, it ends (and the browser is killed) by then.
const WHOLE_TEST: Duration = Duration::from_secs(240);

/// The W3C WebDriver key of an element reference.
const ELEMENT: &str = "element-6066-11e4-a52e-4f735466cecf";

/// chromedriver (and the Chromium it starts) as child processes, with a WebDriver session.
/// Dropping it ends the session and kills chromedriver's whole process group, so neither
/// process outlives the test, even when an assertion fails half-way.
struct Browser {
    http: reqwest::Client,
    /// `http://127.0.0.1:PORT` of chromedriver.
    base: String,
    driver: SocketAddr,
    session: Option<String>,
    child: Child,
    /// What chromedriver printed (for failure messages).
    output: Arc<Mutex<String>>,
    /// Holds the browser profile (`--user-data-dir`) and its config and cache homes;
    /// removed at the end.
    dir: tempfile::TempDir,
}

/// Fail (not skip) with the install hint when the browser is not there.
fn require_browser() {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(bin).is_file(),
            "{bin} is missing: the block page browser test needs it; {INSTALL}"
        );
    }
}

impl Browser {
    /// Start chromedriver on a free loopback port, and a headless Chromium session in a fresh
    /// profile that resolves `host` to `target` (and nothing else: no traffic leaves).
    async fn start(host: &str, target: SocketAddr) -> Browser {
        require_browser();
        let dir = tempfile::tempdir().expect("temp dir for the browser profile");
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg("--port=0")
            .arg("--allowed-ips=127.0.0.1")
            .env_remove("http_proxy")
            .env_remove("https_proxy")
            .env_remove("HTTP_PROXY")
            .env_remove("HTTPS_PROXY")
            .env_remove("all_proxy")
            .env_remove("ALL_PROXY")
            // Chromium's crash handler keeps its database under the config home: keep
            // that in the temp dir too, not in the user's home.
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        // Its own process group: Chromium and its helpers join it, so the guard can end
        // every one of them with one signal to this group (and to nothing else).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let mut child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}; {INSTALL}"));
        let output = Arc::new(Mutex::new(String::new()));
        let (port_tx, mut port_rx) = tokio::sync::mpsc::unbounded_channel();
        drain(child.stdout.take().unwrap(), output.clone(), Some(port_tx));
        drain(child.stderr.take().unwrap(), output.clone(), None);

        let http = reqwest::Client::builder()
            .no_proxy()
            .timeout(COMMAND_TIMEOUT)
            .build()
            .unwrap();
        let port = tokio::time::timeout(WAIT, port_rx.recv())
            .await
            .ok()
            .flatten();
        let mut browser = Browser {
            http,
            base: String::new(),
            driver: "127.0.0.1:0".parse().unwrap(),
            session: None,
            child,
            output,
            dir,
        };
        let Some(port) = port else {
            panic!(
                "chromedriver did not say which port it listens on within {WAIT:?}: {}",
                browser.output()
            );
        };
        browser.driver = SocketAddr::from(([127, 0, 0, 1], port));
        browser.base = format!("http://{}", browser.driver);

        // Wait (bounded) until it is ready for a session.
        let deadline = Instant::now() + WAIT;
        loop {
            let ready = match browser
                .http
                .get(format!("{}/status", browser.base))
                .send()
                .await
            {
                Ok(r) => r
                    .json::<Value>()
                    .await
                    .is_ok_and(|v| v["value"]["ready"] == true),
                Err(_) => false,
            };
            if ready {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "chromedriver not ready within {WAIT:?}: {}",
                browser.output()
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }

        let args = [
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-quic".to_owned(),
            "--no-proxy-server".to_owned(),
            "--window-size=1024,1200".to_owned(),
            format!(
                "--user-data-dir={}",
                browser.dir.path().join("profile").display()
            ),
            // The blocked name goes to the block page server, as DNS would send it there;
            // every other name fails to resolve, so the browser reaches nothing else.
            format!(
                "--host-resolver-rules=MAP {host} {target}, MAP * ~NOTFOUND, EXCLUDE localhost"
            ),
        ];
        let caps = json!({
            "capabilities": {
                "alwaysMatch": {
                    "browserName": "chrome",
                    "pageLoadStrategy": "normal",
                    "timeouts": { "implicit": 0, "pageLoad": 15_000, "script": 10_000 },
                    "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
                }
            }
        });
        let created = browser.cmd("POST", "/session", Some(caps)).await;
        let id = created["sessionId"]
            .as_str()
            .unwrap_or_else(|| panic!("no session id in {created}"))
            .to_owned();
        browser.session = Some(id);
        browser
    }

    /// What chromedriver has printed so far.
    fn output(&self) -> String {
        self.output.lock().unwrap().clone()
    }

    /// Send one WebDriver command; its `value`. Any error fails the test with the reason.
    async fn cmd(&self, method: &str, path: &str, body: Option<Value>) -> Value {
        let url = format!("{}{path}", self.base);
        let req = match method {
            "GET" => self.http.get(&url),
            "DELETE" => self.http.delete(&url),
            _ => self
                .http
                .post(&url)
                .json(&body.unwrap_or_else(|| json!({}))),
        };
        let resp = req
            .send()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: {e}\n{}", self.output()));
        let status = resp.status();
        let v: Value = resp
            .json()
            .await
            .unwrap_or_else(|e| panic!("WebDriver {method} {path}: not JSON ({e})"));
        assert!(
            status.is_success(),
            "WebDriver {method} {path}: HTTP {status}: {}",
            v["value"]
        );
        v["value"].clone()
    }

    /// `/session/{id}` + `rest`.
    fn s(&self, rest: &str) -> String {
        format!("/session/{}{rest}", self.session.as_deref().unwrap())
    }

    async fn goto(&self, url: &str) {
        self.cmd("POST", &self.s("/url"), Some(json!({ "url": url })))
            .await;
    }

    async fn url(&self) -> String {
        self.cmd("GET", &self.s("/url"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn title(&self) -> String {
        self.cmd("GET", &self.s("/title"), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    /// The element matching a CSS selector (fails if there is none).
    async fn find(&self, css: &str) -> String {
        let v = self
            .cmd(
                "POST",
                &self.s("/element"),
                Some(json!({ "using": "css selector", "value": css })),
            )
            .await;
        v[ELEMENT]
            .as_str()
            .unwrap_or_else(|| panic!("no element {css}: {v}"))
            .to_owned()
    }

    /// How many elements match a CSS selector.
    async fn count(&self, css: &str) -> usize {
        self.cmd(
            "POST",
            &self.s("/elements"),
            Some(json!({ "using": "css selector", "value": css })),
        )
        .await
        .as_array()
        .map_or(0, Vec::len)
    }

    /// The rendered text of the element matching `css`.
    async fn text(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.cmd("GET", &self.s(&format!("/element/{el}/text")), None)
            .await
            .as_str()
            .unwrap_or_default()
            .to_owned()
    }

    async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        let el = self.find(css).await;
        self.cmd(
            "GET",
            &self.s(&format!("/element/{el}/attribute/{name}")),
            None,
        )
        .await
        .as_str()
        .map(str::to_owned)
    }

    /// The current value of a form field (what a person sees in it).
    async fn value(&self, css: &str) -> String {
        let el = self.find(css).await;
        self.cmd(
            "GET",
            &self.s(&format!("/element/{el}/property/value")),
            None,
        )
        .await
        .as_str()
        .unwrap_or_default()
        .to_owned()
    }

    /// Clear a form field and type into it, as a person would.
    async fn type_into(&self, css: &str, text: &str) {
        let el = self.find(css).await;
        self.cmd("POST", &self.s(&format!("/element/{el}/clear")), None)
            .await;
        self.cmd(
            "POST",
            &self.s(&format!("/element/{el}/value")),
            Some(json!({ "text": text })),
        )
        .await;
    }

    async fn click(&self, css: &str) {
        let el = self.find(css).await;
        self.cmd("POST", &self.s(&format!("/element/{el}/click")), None)
            .await;
    }

    /// Wait (bounded) until the page's title is `want`.
    async fn wait_for_title(&self, want: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let title = self.title().await;
            if title == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "page title still {title:?} (at {}) after {WAIT:?}, wanted {want:?}; page text: {}",
                self.url().await,
                self.text("body").await
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the viewport.
    async fn screenshot(&self) -> Vec<u8> {
        let v = self.cmd("GET", &self.s("/screenshot"), None).await;
        let png = base64_decode(v.as_str().expect("screenshot is a base64 string"));
        assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "screenshot is a PNG");
        png
    }

    /// End the session (Chromium quits); the guard then stops chromedriver. Returns the
    /// temp dir's path, which every process of this browser named on its command line.
    async fn quit(mut self) -> PathBuf {
        if let Some(id) = self.session.take() {
            let _ = self
                .http
                .delete(format!("{}/session/{id}", self.base))
                .send()
                .await;
        }
        self.dir.path().to_path_buf()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        // After a failure the session is still open: ask chromedriver to close Chromium
        // (blocking, bounded: this may run while a panic unwinds, outside any runtime).
        if let Some(id) = self.session.take() {
            delete_blocking(self.driver, &format!("/session/{id}"));
        }
        // Then end chromedriver and anything left of Chromium: the process group that
        // `process_group(0)` made for them (its id is chromedriver's pid).
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group only.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Chromium's crash handlers start their own sessions, outside that group; they
        // name this test's temp dir on their command line, so find them by it.
        for pid in processes_naming(self.dir.path()) {
            // SAFETY: kill(2) on one process id.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Ids of the processes whose command line contains `path` (this test's unique temp dir).
fn processes_naming(path: &Path) -> Vec<libc::pid_t> {
    let needle = path.as_os_str().as_encoded_bytes();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<libc::pid_t>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
        .collect()
}

/// `DELETE path` to chromedriver over a plain socket with short timeouts; errors ignored.
fn delete_blocking(addr: SocketAddr, path: &str) {
    let Ok(mut s) = std::net::TcpStream::connect_timeout(&addr, Duration::from_secs(2)) else {
        return;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(10)));
    let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
    let req = format!(
        "DELETE {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"
    );
    if s.write_all(req.as_bytes()).is_err() {
        return;
    }
    // chromedriver answers once Chromium has quit, and may keep the connection open: stop
    // at the end of the response head rather than waiting for the socket to close.
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    while !got.windows(4).any(|w| w == b"\r\n\r\n") {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => got.extend_from_slice(&buf[..n]),
        }
    }
}

/// Copy a child's output into `into` on a thread; the first "on port N." line is sent to
/// `port` (chromedriver started with `--port=0` says there which port it took).
fn drain(
    from: impl Read + Send + 'static,
    into: Arc<Mutex<String>>,
    port: Option<tokio::sync::mpsc::UnboundedSender<u16>>,
) {
    std::thread::spawn(move || {
        let mut port = port;
        let mut reader = BufReader::new(from);
        let mut raw = Vec::new();
        // Bytes, not `lines()`: a line that is not UTF-8 must not stop the draining (a
        // full pipe would block chromedriver).
        while matches!(reader.read_until(b'\n', &mut raw), Ok(n) if n > 0) {
            let line = String::from_utf8_lossy(&raw).trim_end().to_owned();
            raw.clear();
            if let Some(tx) = &port
                && let Some(p) = line
                    .strip_prefix("ChromeDriver was started successfully on port ")
                    .and_then(|r| r.trim_end_matches('.').parse().ok())
            {
                let _ = tx.send(p);
                port = None;
            }
            let mut out = into.lock().unwrap();
            if out.len() < 64 * 1024 {
                out.push_str(&line);
                out.push('\n');
            }
        }
    });
}

/// Standard base64 (with padding), as WebDriver returns screenshots.
fn base64_decode(s: &str) -> Vec<u8> {
    fn val(c: u8) -> u32 {
        match c {
            b'A'..=b'Z' => u32::from(c - b'A'),
            b'a'..=b'z' => u32::from(c - b'a') + 26,
            b'0'..=b'9' => u32::from(c - b'0') + 52,
            b'+' => 62,
            b'/' => 63,
            _ => panic!("not base64: {:?}", c as char),
        }
    }
    let bytes: Vec<u8> = s
        .bytes()
        .filter(|c| !c.is_ascii_whitespace() && *c != b'=')
        .collect();
    let mut out = Vec::with_capacity(bytes.len() * 3 / 4);
    for chunk in bytes.chunks(4) {
        let mut n = 0u32;
        for (i, &c) in chunk.iter().enumerate() {
            n |= val(c) << (18 - 6 * i);
        }
        let b = n.to_be_bytes();
        out.extend_from_slice(&b[1..chunk.len()]);
    }
    out
}

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

    let browser = Browser::start(BLOCKED, page_addr).await;

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
    browser.type_into("#requester", requester).await;
    browser.type_into("#reason", reason).await;
    browser.type_into("#days", "3").await;
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
    browser.type_into("#url", url).await;
    browser.type_into("#reporter", reporter).await;
    browser.type_into("#comment", comment).await;
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
