//! A real headless Chromium driven through chromedriver with `fantoccini` (W3C WebDriver).
//!
//! chromedriver runs as a child process in its own process group on a free loopback port;
//! dropping the [`Browser`] ends the session and kills that whole group, so neither
//! chromedriver nor Chromium outlives a test, even one that fails half-way. Needs
//! `/usr/bin/chromium` and `/usr/bin/chromedriver` (`apt-get install -y chromium
//! chromium-driver`); without them tests fail with that hint, they never skip.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::{Client, ClientBuilder, Locator};
use serde_json::{Value, json};

/// The browser binary.
pub const CHROMIUM: &str = "/usr/bin/chromium";
/// The WebDriver server.
pub const CHROMEDRIVER: &str = "/usr/bin/chromedriver";
const INSTALL: &str = "run `apt-get install -y chromium chromium-driver` (as root) to install \
                       Debian's headless Chromium and chromedriver; .ci/run does this in CI";
/// Longest wait for chromedriver to listen, or for something to appear on a page.
pub const WAIT: Duration = Duration::from_secs(20);

/// Fail (not skip) with the install hint when the browser is not there.
pub fn require_browser() {
    for bin in [CHROMIUM, CHROMEDRIVER] {
        assert!(
            Path::new(bin).is_file(),
            "{bin} is missing: the browser tests need it; {INSTALL}"
        );
    }
}

/// chromedriver, Chromium and a WebDriver session.
pub struct Browser {
    /// The WebDriver client.
    pub client: Client,
    child: Child,
    /// The profile, config and cache homes of this browser; removed at the end.
    dir: tempfile::TempDir,
}

/// A free loopback TCP port (bound and released: chromedriver takes it next).
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

impl Browser {
    /// Start chromedriver and a headless Chromium of `width`x`height` whose resolver maps
    /// every host in `hosts` to its address and nothing else (no traffic leaves loopback).
    pub async fn start(hosts: &[(&str, SocketAddr)], width: u32, height: u32) -> Browser {
        require_browser();
        let dir = tempfile::tempdir().expect("temp dir for the browser profile");
        let port = free_port();
        let mut cmd = Command::new(CHROMEDRIVER);
        cmd.arg(format!("--port={port}"))
            .arg("--allowed-ips=127.0.0.1")
            .env("XDG_CONFIG_HOME", dir.path().join("config"))
            .env("XDG_CACHE_HOME", dir.path().join("cache"))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        for v in [
            "http_proxy",
            "https_proxy",
            "HTTP_PROXY",
            "HTTPS_PROXY",
            "all_proxy",
            "ALL_PROXY",
        ] {
            cmd.env_remove(v);
        }
        // Its own process group: Chromium and its helpers join it, so Drop can end every
        // one of them with one signal to this group (and to nothing else).
        std::os::unix::process::CommandExt::process_group(&mut cmd, 0);
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {CHROMEDRIVER}: {e}; {INSTALL}"));
        let driver = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + WAIT;
        while tokio::net::TcpStream::connect(driver).await.is_err() {
            assert!(
                Instant::now() < deadline,
                "chromedriver not listening within {WAIT:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let rules: Vec<String> = hosts.iter().map(|(h, a)| format!("MAP {h} {a}")).collect();
        let args = vec![
            "--headless".to_owned(),
            "--no-sandbox".to_owned(),
            "--disable-gpu".to_owned(),
            "--disable-quic".to_owned(),
            "--no-first-run".to_owned(),
            "--disable-background-networking".to_owned(),
            "--disable-component-update".to_owned(),
            "--disable-sync".to_owned(),
            "--no-proxy-server".to_owned(),
            "--hide-scrollbars".to_owned(),
            format!("--window-size={width},{height}"),
            format!("--user-data-dir={}", dir.path().join("profile").display()),
            format!(
                "--host-resolver-rules={}, MAP * ~NOTFOUND, EXCLUDE localhost",
                rules.join(", ")
            ),
        ];
        let caps = json!({
            "browserName": "chrome",
            "pageLoadStrategy": "normal",
            "timeouts": { "implicit": 0, "pageLoad": 15_000, "script": 10_000 },
            "goog:chromeOptions": { "binary": CHROMIUM, "args": args }
        });
        let Value::Object(caps) = caps else {
            unreachable!()
        };
        let mut builder =
            ClientBuilder::new(hyper_util::client::legacy::connect::HttpConnector::new());
        builder.capabilities(caps);
        let client = builder
            .connect(&format!("http://{driver}"))
            .await
            .unwrap_or_else(|e| panic!("WebDriver session: {e}"));
        Browser { client, child, dir }
    }

    /// Load `url`.
    pub async fn goto(&self, url: &str) {
        self.client
            .goto(url)
            .await
            .unwrap_or_else(|e| panic!("goto {url}: {e}"));
    }

    /// The page's title.
    pub async fn title(&self) -> String {
        self.client.title().await.expect("title")
    }

    /// The current URL.
    pub async fn url(&self) -> String {
        self.client.current_url().await.expect("url").to_string()
    }

    /// The element matching `css` (waiting up to [`WAIT`] for it).
    pub async fn find(&self, css: &str) -> fantoccini::elements::Element {
        let deadline = Instant::now() + WAIT;
        loop {
            match self.client.find(Locator::Css(css)).await {
                Ok(e) => return e,
                Err(e) => assert!(Instant::now() < deadline, "no {css:?} on the page: {e}"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// How many elements match `css`.
    pub async fn count(&self, css: &str) -> usize {
        self.client
            .find_all(Locator::Css(css))
            .await
            .map(|v| v.len())
            .unwrap_or(0)
    }

    /// The visible text of the element matching `css`.
    pub async fn text(&self, css: &str) -> String {
        self.find(css).await.text().await.expect("text")
    }

    /// An attribute of the element matching `css`.
    pub async fn attribute(&self, css: &str, name: &str) -> Option<String> {
        self.find(css).await.attr(name).await.expect("attribute")
    }

    /// The current value of the form field matching `css`.
    pub async fn value(&self, css: &str) -> String {
        self.find(css)
            .await
            .prop("value")
            .await
            .expect("value")
            .unwrap_or_default()
    }

    /// Clear the field matching `css` and type `text` into it.
    pub async fn fill(&self, css: &str, text: &str) {
        let e = self.find(css).await;
        e.clear().await.expect("clear");
        e.send_keys(text).await.expect("type");
    }

    /// Click the element matching `css`.
    pub async fn click(&self, css: &str) {
        self.find(css).await.click().await.expect("click");
    }

    /// Click the element matching `css` (a submit button or a link) and wait (bounded)
    /// until the browser has left this page and loaded the next: without it, reading the
    /// page straight after a click can see the old page, or an element of it that the
    /// new page has just replaced.
    pub async fn submit(&self, css: &str) {
        let old = self.find("html").await;
        self.click(css).await;
        let deadline = Instant::now() + WAIT;
        // The old document's root goes stale once the next page has replaced it.
        while old.tag_name().await.is_ok() {
            assert!(
                Instant::now() < deadline,
                "still on the same page {WAIT:?} after clicking {css}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        loop {
            let state = self
                .client
                .execute("return document.readyState", vec![])
                .await;
            if matches!(&state, Ok(Value::String(s)) if s == "complete") {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the page after clicking {css} did not finish loading: {state:?}"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Wait (bounded) until the page's title is `want`.
    pub async fn wait_for_title(&self, want: &str) {
        let deadline = Instant::now() + WAIT;
        loop {
            let t = self.title().await;
            if t == want {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "title stayed {t:?}, not {want:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// A PNG of the window.
    pub async fn screenshot(&self) -> Vec<u8> {
        self.client.screenshot().await.expect("screenshot")
    }

    /// Save a PNG of the window as `name`.png in [`screenshot_dir`].
    pub async fn save_screenshot(&self, name: &str) -> PathBuf {
        let dir = screenshot_dir();
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let path = dir.join(format!("{name}.png"));
        std::fs::write(&path, self.screenshot().await)
            .unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
        path
    }

    /// End the session (Chromium quits); Drop then stops chromedriver. Returns the temp
    /// dir's path, which every process of this browser names on its command line.
    pub async fn quit(self) -> PathBuf {
        let _ = self.client.clone().close().await;
        self.dir.path().to_path_buf()
    }
}

impl Drop for Browser {
    fn drop(&mut self) {
        let pgid = self.child.id() as libc::pid_t;
        // SAFETY: kill(2) with a negative pid signals that process group only.
        unsafe {
            libc::kill(-pgid, libc::SIGKILL);
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
        // Chromium's crash handlers start their own sessions, outside that group; they
        // name this browser's temp dir on their command line, so find them by it.
        for pid in processes_naming(self.dir.path()) {
            // SAFETY: kill(2) on one process id.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
}

/// Ids of the processes whose command line contains `path` (a test's unique temp dir).
pub fn processes_naming(path: &Path) -> Vec<libc::pid_t> {
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

/// Where screenshots go: `$CHAPERONE_SCREENSHOTS`, else `target/screenshots/`.
pub fn screenshot_dir() -> PathBuf {
    match std::env::var_os("CHAPERONE_SCREENSHOTS") {
        Some(d) if !d.is_empty() => {
            let d = PathBuf::from(d);
            if d.is_absolute() {
                d
            } else {
                super::crate_root().join(d)
            }
        }
        _ => {
            let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
            tmp.parent().unwrap_or(tmp).join("screenshots")
        }
    }
}
