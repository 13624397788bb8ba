//! Lists by URL: a loopback HTTP server started by each test serves real list files
//! (`tests/fixtures/ut1-sample`, `lists/doh/domains`), plain, gzip, xz, zstd and as a UT1
//! `blacklists.tar.gz`, then misbehaves (304, 500, cut-short bodies, slow answers, an error
//! page, a shrunken list, bytes that do not match a pin). Through it all the server keeps
//! blocking with the last good copy, asked through real sockets, and counts each result.

use std::collections::HashMap;
use std::io::Write;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaperone::server::{self, StartOptions};
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::RecordType;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;

use crate::support::*;

/// How a route answers.
#[derive(Clone)]
enum Mode {
    /// 200 with the body and its ETag; 304 when the client has that ETag.
    Serve,
    /// 500.
    Fail,
    /// Content-Length larger than the body, then the connection closes.
    Truncated,
    /// Nothing for this long, then the body.
    Slow(Duration),
}

struct Route {
    body: Vec<u8>,
    etag: String,
    mode: Mode,
}

/// A minimal HTTP/1.1 file server on loopback whose routes a test changes as it goes.
#[derive(Clone)]
struct Files {
    addr: SocketAddr,
    routes: Arc<Mutex<HashMap<String, Route>>>,
    task: Arc<tokio::task::JoinHandle<()>>,
}

impl Files {
    async fn start() -> Files {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let routes: Arc<Mutex<HashMap<String, Route>>> = Arc::default();
        let r = routes.clone();
        let task = tokio::spawn(async move {
            loop {
                let Ok((conn, _)) = listener.accept().await else {
                    return;
                };
                tokio::spawn(answer(conn, r.clone()));
            }
        });
        Files {
            addr,
            routes,
            task: Arc::new(task),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://{}{path}", self.addr)
    }

    /// Serve `body` at `path` with a fresh ETag.
    fn put(&self, path: &str, body: Vec<u8>) {
        let mut routes = self.routes.lock().unwrap();
        let n = routes.len();
        let etag = format!("\"{}-{n}-{}\"", body.len(), rand_tag(&body));
        routes.insert(
            path.to_owned(),
            Route {
                body,
                etag,
                mode: Mode::Serve,
            },
        );
    }

    fn set_mode(&self, path: &str, mode: Mode) {
        self.routes.lock().unwrap().get_mut(path).unwrap().mode = mode;
    }

    fn stop(&self) {
        self.task.abort();
    }
}

/// A cheap content tag for ETags.
fn rand_tag(body: &[u8]) -> u32 {
    crc32fast::hash(body)
}

async fn answer(mut conn: tokio::net::TcpStream, routes: Arc<Mutex<HashMap<String, Route>>>) {
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match conn.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let head = String::from_utf8_lossy(&head).into_owned();
    let path = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
    let if_none_match = header_of(&head, "if-none-match");
    let route = {
        let routes = routes.lock().unwrap();
        routes
            .get(&path)
            .map(|r| (r.body.clone(), r.etag.clone(), r.mode.clone()))
    };
    let Some((body, etag, mode)) = route else {
        let _ = conn
            .write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
            .await;
        return;
    };
    let ok_head = |len: usize| {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Length: {len}\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
        )
    };
    match mode {
        Mode::Serve if if_none_match.as_deref() == Some(etag.as_str()) => {
            let _ = conn
                .write_all(
                    format!(
                        "HTTP/1.1 304 Not Modified\r\nETag: {etag}\r\nConnection: close\r\n\r\n"
                    )
                    .as_bytes(),
                )
                .await;
        }
        Mode::Serve => {
            let _ = conn.write_all(ok_head(body.len()).as_bytes()).await;
            let _ = conn.write_all(&body).await;
        }
        Mode::Fail => {
            let _ = conn
                .write_all(b"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 5\r\nConnection: close\r\n\r\noops\n")
                .await;
        }
        Mode::Truncated => {
            let _ = conn
                .write_all(ok_head(body.len() + 10_000).as_bytes())
                .await;
            let _ = conn.write_all(&body[..body.len() / 2]).await;
        }
        Mode::Slow(d) => {
            tokio::time::sleep(d).await;
            let _ = conn.write_all(ok_head(body.len()).as_bytes()).await;
            let _ = conn.write_all(&body).await;
        }
    }
    let _ = conn.shutdown().await;
}

fn fixture(rel: &str) -> Vec<u8> {
    std::fs::read(crate_root().join(rel)).unwrap()
}

/// The first plain name of a list (skipping comments, IP entries and `.`/`*.` forms).
fn first_name(list: &[u8]) -> String {
    String::from_utf8_lossy(list)
        .lines()
        .map(str::trim)
        .find(|l| {
            !l.is_empty()
                && !l.starts_with(['#', '.', '*'])
                && l.contains('.')
                && l.parse::<std::net::IpAddr>().is_err()
        })
        .unwrap()
        .to_owned()
}

fn gzip(b: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

fn xz(b: &[u8]) -> Vec<u8> {
    let mut e = liblzma::write::XzEncoder::new(Vec::new(), 1);
    e.write_all(b).unwrap();
    e.finish().unwrap()
}

/// A UT1-style `blacklists.tar.gz` of the fixture categories.
fn ut1_tarball() -> Vec<u8> {
    let mut tar = tar::Builder::new(flate2::write::GzEncoder::new(
        Vec::new(),
        flate2::Compression::fast(),
    ));
    for cat in ["sect", "dynamic-dns"] {
        let body = fixture(&format!("tests/fixtures/ut1-sample/{cat}/domains"));
        let mut h = tar::Header::new_gnu();
        h.set_size(body.len() as u64);
        h.set_mode(0o644);
        h.set_cksum();
        tar.append_data(&mut h, format!("blacklists/{cat}/domains"), &body[..])
            .unwrap();
    }
    tar.into_inner().unwrap().finish().unwrap()
}

fn sha256_hex(b: &[u8]) -> String {
    use sha2::Digest;
    hex::encode(sha2::Sha256::digest(b))
}

/// A config with one group blocking `block`, admin on, and URL sources.
fn config(block: &str, sources: &str) -> String {
    format!(
        r#"
[server]
listen = ["127.0.0.1:0"]
[upstream]
servers = ["{{UPSTREAM}}"]
timeout_ms = 300
attempts = 1
[lists]
max_shrink = 0.5
{sources}
[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"
[group.pupils]
block = [{block}]
[admin]
listen = "127.0.0.1:0"
"#
    )
}

fn source(category: &str, name: &str, url: &str, extra: &str) -> String {
    format!(
        "[[lists.source]]\ncategory = \"{category}\"\nname = \"{name}\"\nurl = \"{url}\"\nallow_http = true\nrefresh = \"1s\"\nconnect_timeout = \"1s\"\ntimeout = \"1s\"\n{extra}\n"
    )
}

/// The value of `chaperone_list_refresh_total{source,result}`.
async fn refreshes(admin: SocketAddr, source: &str, result: &str) -> f64 {
    metric(
        admin,
        &format!("chaperone_list_refresh_total{{result=\"{result}\",source=\"{source}\"}}"),
    )
    .await
}

/// Wait (bounded) until the counter of `result` for `source` passes `above`.
async fn wait_for(admin: SocketAddr, source: &str, result: &str, above: f64) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let n = refreshes(admin, source, result).await;
        if n > above {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{source}: no refresh with result {result} (at {n})"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn blocked(c: &Client, name: &str) -> bool {
    let m = c.udp(&format!("{name}."), RecordType::A).await;
    rcode(&m) == ResponseCode::NXDomain
}

/// Nothing listens on this port any more.
async fn dead_port() -> SocketAddr {
    let l = TcpListener::bind("127.0.0.1:0").await.unwrap();
    l.local_addr().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn compressed_and_archived_lists_by_url_block_at_start() {
    let files = Files::start().await;
    let doh = fixture("lists/doh/domains");
    let text = String::from_utf8(doh.clone()).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    let (a, b) = (
        lines[..900].join("\n") + "\n",
        lines[900..].join("\n") + "\n",
    );
    files.put("/pinned.txt.gz", gzip(a.as_bytes()));
    files.put("/packed.txt.xz", xz(b.as_bytes()));
    let zst_list = fixture("tests/fixtures/ut1-sample/sect/domains");
    files.put("/packed.zst", zstd::encode_all(&zst_list[..], 1).unwrap());
    files.put("/blacklists.tar.gz", ut1_tarball());
    let pin = sha256_hex(&gzip(a.as_bytes()));
    let sources = [
        source(
            "pinned",
            "pinned",
            &files.url("/pinned.txt.gz"),
            &format!("sha256 = \"{pin}\""),
        ),
        source("packed_xz", "xz", &files.url("/packed.txt.xz"), ""),
        source("packed_zst", "zst", &files.url("/packed.zst"), ""),
        format!(
            "[[lists.source]]\nformat = \"ut1\"\nname = \"ut1\"\nurl = \"{}\"\nallow_http = true\nrefresh = \"1s\"\n",
            files.url("/blacklists.tar.gz")
        ),
    ]
    .concat();
    let cfg = config(
        r#""pinned", "packed_xz", "packed_zst", "sect", "dynamic-dns""#,
        &sources,
    );
    let h = start(&cfg, dead_port().await, &[], school_morning()).await;
    let c = h.client("127.0.0.2");
    for (name, source) in [
        (first_name(a.as_bytes()), "pinned"),
        (first_name(b.as_bytes()), "xz"),
        (first_name(&zst_list), "zst"),
        (
            first_name(&fixture("tests/fixtures/ut1-sample/dynamic-dns/domains")),
            "ut1",
        ),
    ] {
        assert!(blocked(&c, &name).await, "{name} from {source}");
        assert_eq!(
            refreshes(h.admin(), source, "updated").await,
            1.0,
            "{source}"
        );
    }
    // The copies are unpacked on disk beside the bundle, with their validators.
    let cache = h.dir.path().join("lists-cache");
    let copies: Vec<String> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        copies.iter().filter(|n| n.ends_with(".meta.json")).count(),
        4,
        "{copies:?}"
    );
    assert!(
        copies
            .iter()
            .any(|n| n.starts_with("blacklists-tar-gz-") && n.ends_with(".dir"))
    );

    // The pinned file changes upstream: refused, the old copy keeps blocking.
    files.put("/pinned.txt.gz", gzip(b"other.example\n"));
    wait_for(h.admin(), "pinned", "sha256_mismatch", 0.0).await;
    assert!(blocked(&c, &first_name(a.as_bytes())).await);
    assert!(!blocked(&c, "other.example").await);
    // Unchanged archives are answered 304 and cost nothing.
    wait_for(h.admin(), "ut1", "not_modified", 0.0).await;
    files.stop();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bad_download_never_replaces_the_last_good_copy() {
    let files = Files::start().await;
    let list = fixture("tests/fixtures/ut1-sample/dynamic-dns/domains");
    let listed = first_name(&list);
    files.put("/plain.txt", list.clone());
    let cfg = config(
        r#""plain""#,
        &source("plain", "plain", &files.url("/plain.txt"), ""),
    );
    let h = start(&cfg, dead_port().await, &[], school_morning()).await;
    let (c, admin) = (h.client("127.0.0.2"), h.admin());
    assert!(blocked(&c, &listed).await);
    assert_eq!(refreshes(admin, "plain", "updated").await, 1.0);
    wait_for(admin, "plain", "not_modified", 0.0).await;

    let slow = Mode::Slow(Duration::from_secs(3));
    for (mode, result) in [
        (Mode::Fail, "http_error"),
        (Mode::Truncated, "truncated"),
        (slow, "timeout"),
    ] {
        files.set_mode("/plain.txt", mode);
        wait_for(admin, "plain", result, 0.0).await;
        assert!(blocked(&c, &listed).await, "after {result}");
    }
    // An error page served as 200, then a list cut to a tenth.
    files.put(
        "/plain.txt",
        b"<html>\n<head><title>Maintenance</title></head>\n<body>back soon</body>\n</html>\n"
            .to_vec(),
    );
    wait_for(admin, "plain", "bad_lines", 0.0).await;
    assert!(blocked(&c, &listed).await);
    let text = String::from_utf8(list.clone()).unwrap();
    let tenth: String = text
        .lines()
        .skip(text.lines().count() * 9 / 10)
        .map(|l| format!("{l}\n"))
        .collect();
    files.put("/plain.txt", tenth.into_bytes());
    wait_for(admin, "plain", "shrunk", 0.0).await;
    assert!(blocked(&c, &listed).await);
    assert_eq!(refreshes(admin, "plain", "updated").await, 1.0);

    // A good update is taken and compiled in, off the serving threads.
    let mut grown = list.clone();
    grown.extend_from_slice(b"newly-listed.example\n");
    files.put("/plain.txt", grown);
    wait_for(admin, "plain", "updated", 1.0).await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while !blocked(&c, "newly-listed.example").await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the update was never swapped in"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert!(blocked(&c, &listed).await);
    let (_, text) = http(admin, "GET", "/metrics", None, None).await;
    assert!(
        text.contains("chaperone_list_age_seconds{source=\"plain\"}"),
        "{text}"
    );
    files.stop();
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn boot_with_a_last_good_copy_and_no_network_blocks_from_the_first_query() {
    let files = Files::start().await;
    let list = fixture("lists/doh/domains");
    files.put("/doh.txt", list.clone());
    let dir = tempfile::tempdir().unwrap();
    let cfg = config(
        r#""plain""#,
        &source("plain", "plain", &files.url("/doh.txt"), ""),
    );
    let path = dir.path().join("chaperone.toml");
    std::fs::write(
        &path,
        cfg.replace("{UPSTREAM}", &dead_port().await.to_string()),
    )
    .unwrap();
    let opts = || StartOptions {
        watch_files: false,
        signals: false,
        ..StartOptions::default()
    };
    // First start downloads; then the list server goes away for good.
    server::start(&path, opts()).await.unwrap().shutdown().await;
    files.stop();
    // Let the aborted listener close before the port is reused as "nobody there".
    tokio::time::sleep(Duration::from_millis(50)).await;

    let running = server::start(&path, opts()).await.unwrap();
    let c = Client::new("127.0.0.2", running.dns_addrs[0]);
    assert!(
        blocked(&c, "dns.google").await,
        "blocked from the first query"
    );
    let admin = running.admin_addr.unwrap();
    wait_for(admin, "plain", "unreachable", 0.0).await;
    assert!(blocked(&c, "dns.google").await);
    running.shutdown().await;

    // Without a copy and without the network, start-up refuses, naming the source.
    std::fs::remove_dir_all(dir.path().join("lists-cache")).unwrap();
    let err = match server::start(&path, opts()).await {
        Ok(_) => panic!("started without any copy of a configured list"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("lists.source[0]") && err.contains("no last good copy"),
        "{err}"
    );
}

#[test]
fn plain_http_is_refused_at_load_unless_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let write = |extra: &str| {
        let text = config(r#""plain""#, &format!(
            "[[lists.source]]\ncategory = \"plain\"\nurl = \"http://lists.example/a.txt\"\n{extra}\n"
        ))
        .replace("{UPSTREAM}", "127.0.0.1:53");
        let p = dir.path().join("c.toml");
        std::fs::write(&p, text).unwrap();
        chaperone::config::Config::load(&p)
    };
    let err = write("").unwrap_err().to_string();
    assert!(
        err.contains("lists.source[0].url") && err.contains("allow_http"),
        "{err}"
    );
    assert!(write("allow_http = true").is_ok());
    let err = write("allow_http = true\nrefresh = \"often\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("lists.source[0].refresh"), "{err}");
    let err = write("allow_http = true\npath = \"x.txt\"")
        .unwrap_err()
        .to_string();
    assert!(err.contains("lists.source[0].path"), "{err}");
}
