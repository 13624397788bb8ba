//! Test support: an in-process authoritative "internet", a DNS client that can pick its
//! source address (to act as clients on different school networks), and a config builder
//! that starts a real Chaperone on loopback port 0.

#![allow(dead_code)]

pub mod browser;
pub mod pg;
pub mod scripted;
pub mod smtp;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chaperone::policy::clock::{Clock, ManualClock};
use chaperone::server::{self, Running, StartOptions};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};

/// Path of the crate root (for the shipped lists and configs).
pub fn crate_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// A catalog that remembers every question it was asked.
pub struct Recording {
    catalog: Catalog,
    seen: Arc<Mutex<Vec<String>>>,
}

#[async_trait::async_trait]
impl RequestHandler for Recording {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        rh: R,
    ) -> ResponseInfo {
        if let Ok(info) = request.request_info() {
            let q = format!("{} {}", info.query.name(), info.query.query_type());
            self.seen.lock().unwrap().push(q);
        }
        self.catalog.handle_request::<R, T>(request, rh).await
    }
}

/// An authoritative server for test zones, on loopback.
pub struct Authority {
    /// Where it answers (UDP and TCP).
    pub addr: SocketAddr,
    seen: Arc<Mutex<Vec<String>>>,
    server: Server<Recording>,
}

impl Authority {
    /// Questions received so far, as "name. TYPE".
    pub fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }

    /// How many times a name was asked (any type).
    pub fn count(&self, name: &str) -> usize {
        let want = if name.ends_with('.') {
            name.to_owned()
        } else {
            format!("{name}.")
        };
        self.seen()
            .iter()
            .filter(|q| q.split(' ').next() == Some(want.as_str()))
            .count()
    }

    /// Stop it.
    pub async fn stop(mut self) {
        let _ = self.server.shutdown_gracefully().await;
    }
}

/// Build a zone handler from zone-file text.
pub fn zone(origin: &str, text: &str) -> (Name, Arc<InMemoryZoneHandler>) {
    let origin = Name::from_ascii(origin).unwrap();
    let (origin, records) = hickory_proto::serialize::txt::Parser::new(text, None, Some(origin))
        .parse()
        .expect("test zone parses");
    let handler = InMemoryZoneHandler::new(
        origin.clone(),
        records,
        ZoneType::Primary,
        AxfrPolicy::Deny,
        None,
    )
    .expect("test zone loads");
    (origin, Arc::new(handler))
}

/// Serve zones (origin, zone text) on `bind` (port 0 for any).
pub async fn authority(bind: SocketAddr, zones: &[(&str, &str)]) -> Authority {
    let mut catalog = Catalog::new();
    for (origin, text) in zones {
        let (name, handler) = zone(origin, text);
        catalog.upsert(name.into(), vec![handler]);
    }
    let seen = Arc::new(Mutex::new(Vec::new()));
    let mut server = Server::new(Recording {
        catalog,
        seen: seen.clone(),
    });
    let (udp, tcp) = bind_udp_and_tcp(bind).await;
    let addr = udp.local_addr().unwrap();
    server.register_socket(udp);
    server.register_listener(tcp, Duration::from_secs(5), 32);
    Authority { addr, seen, server }
}

/// A UDP and a TCP socket on the same address and port. With port 0 the UDP port the
/// kernel picks may already be taken for TCP, so try fresh ports a few times; a fixed
/// address that is taken fails with a message that says which.
pub async fn bind_udp_and_tcp(bind: SocketAddr) -> (UdpSocket, TcpListener) {
    let mut last = None;
    for _ in 0..20 {
        let udp = UdpSocket::bind(bind)
            .await
            .unwrap_or_else(|e| panic!("cannot bind UDP {bind} for a test server: {e}"));
        let addr = udp.local_addr().unwrap();
        match TcpListener::bind(addr).await {
            Ok(tcp) => return (udp, tcp),
            Err(e) if bind.port() == 0 => last = Some(e),
            Err(e) => panic!("cannot bind TCP {addr} for a test server (is it in use?): {e}"),
        }
    }
    panic!(
        "no port on {} was free for both UDP and TCP: {last:?}",
        bind.ip()
    )
}

/// The zone most tests use as "the internet".
pub const EXAMPLE_ZONE: &str = r#"
$TTL 300
@        IN SOA ns.example.test. hostmaster.example.test. 1 3600 600 86400 60
@        IN NS  ns.example.test.
ns       IN A   192.0.2.53
www      IN A   192.0.2.10
www      IN AAAA 2001:db8::10
mail     IN MX  10 mx.example.test.
mx       IN A   192.0.2.25
alias    IN CNAME www.example.test.
big      IN TXT "padding padding padding padding padding padding padding padding padding padding"
"#;

/// Test zone for names that the sample lists block, so a leak would be visible.
pub const LISTED_ZONE: &str = r#"
$TTL 300
@          IN SOA ns.listed.test. hostmaster.listed.test. 1 3600 600 86400 60
@          IN NS  ns.listed.test.
ns         IN A   192.0.2.53
*          IN A   192.0.2.99
"#;

/// A DNS query from a chosen source address.
pub struct Client {
    /// Source address to bind (127.0.0.x acts as different school networks).
    pub from: IpAddr,
    /// The server.
    pub server: SocketAddr,
}

impl Client {
    /// A client at `from` asking `server`.
    pub fn new(from: &str, server: SocketAddr) -> Self {
        Self {
            from: from.parse().unwrap(),
            server,
        }
    }

    /// A standard recursive query message with EDNS.
    pub fn message(name: &str, qtype: RecordType) -> Message {
        let mut m = Message::new(rand_id(), MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name).unwrap(), qtype));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        m.edns = Some(edns);
        m
    }

    /// Ask over UDP.
    pub async fn udp(&self, name: &str, qtype: RecordType) -> Message {
        self.send_udp(&Self::message(name, qtype))
            .await
            .expect("an answer")
    }

    /// Ask over TCP.
    pub async fn tcp(&self, name: &str, qtype: RecordType) -> Message {
        self.send_tcp(&Self::message(name, qtype))
            .await
            .expect("an answer")
    }

    /// Send a message over UDP; None on timeout (2 s). The reply is checked against the
    /// query (see [`checked_reply`]).
    pub async fn send_udp(&self, m: &Message) -> Option<Message> {
        let bytes = m.to_bytes().unwrap();
        let reply = self.send_raw_udp(&bytes, Duration::from_secs(2)).await?;
        Some(checked_reply(m, &reply))
    }

    /// Send raw bytes over UDP and wait for raw bytes back.
    pub async fn send_raw_udp(&self, bytes: &[u8], wait: Duration) -> Option<Vec<u8>> {
        let sock = UdpSocket::bind(SocketAddr::new(self.from, 0))
            .await
            .expect("bind client");
        sock.send_to(bytes, self.server).await.ok()?;
        let mut buf = vec![0u8; 65535];
        let (n, _) = tokio::time::timeout(wait, sock.recv_from(&mut buf))
            .await
            .ok()?
            .ok()?;
        buf.truncate(n);
        Some(buf)
    }

    /// Send a message over TCP.
    pub async fn send_tcp(&self, m: &Message) -> Option<Message> {
        let sock = tokio::net::TcpSocket::new_v4().ok()?;
        sock.bind(SocketAddr::new(self.from, 0)).ok()?;
        let mut s: TcpStream =
            tokio::time::timeout(Duration::from_secs(2), sock.connect(self.server))
                .await
                .ok()?
                .ok()?;
        let bytes = m.to_bytes().unwrap();
        s.write_all(&(bytes.len() as u16).to_be_bytes())
            .await
            .ok()?;
        s.write_all(&bytes).await.ok()?;
        let mut len = [0u8; 2];
        tokio::time::timeout(Duration::from_secs(2), s.read_exact(&mut len))
            .await
            .ok()?
            .ok()?;
        let mut buf = vec![0u8; u16::from_be_bytes(len) as usize];
        s.read_exact(&mut buf).await.ok()?;
        Some(checked_reply(m, &buf))
    }

    /// Ask over TCP with an EDNS0 option added.
    pub async fn tcp_with_option(&self, name: &str, qtype: RecordType, opt: EdnsOption) -> Message {
        let mut m = Self::message(name, qtype);
        if let Some(e) = m.edns.as_mut() {
            e.options_mut().insert(opt);
        }
        self.send_tcp(&m).await.expect("an answer")
    }

    /// Ask with an EDNS0 option added (e.g. the MAC option).
    pub async fn udp_with_option(&self, name: &str, qtype: RecordType, opt: EdnsOption) -> Message {
        let mut m = Self::message(name, qtype);
        if let Some(e) = m.edns.as_mut() {
            e.options_mut().insert(opt);
        }
        self.send_udp(&m).await.expect("an answer")
    }
}

/// Decode a reply and check it answers `query` as RFC 1035 §4.1.1 and RFC 6891 ask, so a
/// server that echoes a stale ID, changes the question's case, forgets QR/RD or leaves
/// bytes after the last record fails every test that talks to it, not only a test
/// written to look for it.
///
/// FORMERR and NOTIMP replies may omit the question (the server could not parse it), so
/// only their header is checked.
#[track_caller]
pub fn checked_reply(query: &Message, bytes: &[u8]) -> Message {
    use hickory_proto::serialize::binary::BinDecoder;
    let mut decoder = BinDecoder::new(bytes);
    let reply = Message::read(&mut decoder).unwrap_or_else(|e| panic!("undecodable reply: {e}"));
    assert!(
        decoder.is_empty(),
        "{} bytes after the last record of a {}-byte reply",
        bytes.len() - decoder.index(),
        bytes.len()
    );
    let (q, r) = (&query.metadata, &reply.metadata);
    assert_eq!(r.id, q.id, "the reply's ID must be the query's");
    assert_eq!(r.message_type, MessageType::Response, "QR must be set");
    assert_eq!(r.op_code, q.op_code, "the opcode is echoed");
    assert_eq!(r.recursion_desired, q.recursion_desired, "RD is echoed");
    if matches!(
        r.response_code,
        ResponseCode::FormErr | ResponseCode::NotImp
    ) {
        return reply;
    }
    let asked: Vec<String> = query.queries.iter().map(question_text).collect();
    let echoed: Vec<String> = reply.queries.iter().map(question_text).collect();
    assert_eq!(
        echoed, asked,
        "the question is echoed exactly, case included"
    );
    // A resolver's answers carry RA; the test authorities' (AA) do not.
    if !r.authoritative
        && matches!(
            r.response_code,
            ResponseCode::NoError | ResponseCode::NXDomain
        )
    {
        assert!(r.recursion_available, "RA is set on a resolver's answers");
    }
    assert_eq!(
        reply.edns.is_some(),
        query.edns.is_some(),
        "OPT in the reply exactly when the query had one (RFC 6891 §7)"
    );
    reply
}

fn question_text(q: &Query) -> String {
    format!(
        "{} {:?} {:?}",
        q.name().to_ascii(),
        q.query_class(),
        q.query_type()
    )
}

fn rand_id() -> u16 {
    use std::sync::atomic::{AtomicU16, Ordering};
    static NEXT: AtomicU16 = AtomicU16::new(4242);
    NEXT.fetch_add(7, Ordering::Relaxed)
}

/// Addresses in the answer section.
pub fn ips(m: &Message) -> Vec<IpAddr> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::A(a) => Some(IpAddr::V4(a.0)),
            RData::AAAA(a) => Some(IpAddr::V6(a.0)),
            _ => None,
        })
        .collect()
}

/// Response code.
pub fn rcode(m: &Message) -> ResponseCode {
    m.metadata.response_code
}

/// A temporary directory holding a config and lists, and the server started on it.
pub struct Harness {
    /// Temp dir (kept alive).
    pub dir: tempfile::TempDir,
    /// Config path.
    pub config: PathBuf,
    /// The running server.
    pub running: Option<Running>,
    /// The test clock.
    pub clock: Arc<ManualClock>,
}

impl Harness {
    /// The DNS address.
    pub fn dns(&self) -> SocketAddr {
        self.running.as_ref().unwrap().dns_addrs[0]
    }

    /// The admin address.
    pub fn admin(&self) -> SocketAddr {
        self.running
            .as_ref()
            .unwrap()
            .admin_addr
            .expect("admin configured")
    }

    /// A client at `from`.
    pub fn client(&self, from: &str) -> Client {
        Client::new(from, self.dns())
    }

    /// Stop the server.
    pub async fn stop(mut self) {
        if let Some(r) = self.running.take() {
            r.shutdown().await;
        }
    }
}

/// Write files into a fresh temp dir: (relative path, contents).
pub fn write_files(dir: &Path, files: &[(&str, &str)]) {
    for (rel, text) in files {
        let p = dir.join(rel);
        std::fs::create_dir_all(p.parent().unwrap()).unwrap();
        std::fs::write(p, text).unwrap();
    }
}

/// Monday 23 November 2026, 10:00 in London (GMT): a school day, outside lunch.
pub fn school_morning() -> jiff::Timestamp {
    "2026-11-23T10:00:00Z".parse().unwrap()
}

/// Start Chaperone on `config_text` (with `{UPSTREAM}` replaced by `upstream`) and extra
/// files, at the given time.
pub async fn start(
    config_text: &str,
    upstream: SocketAddr,
    files: &[(&str, &str)],
    at: jiff::Timestamp,
) -> Harness {
    start_in(
        tempfile::tempdir().unwrap(),
        config_text,
        upstream,
        files,
        at,
    )
    .await
}

/// [`start`] in a directory the test has already put files in (a prebuilt bundle).
pub async fn start_in(
    dir: tempfile::TempDir,
    config_text: &str,
    upstream: SocketAddr,
    files: &[(&str, &str)],
    at: jiff::Timestamp,
) -> Harness {
    write_files(dir.path(), files);
    let config = dir.path().join("chaperone.toml");
    std::fs::write(
        &config,
        config_text.replace("{UPSTREAM}", &upstream.to_string()),
    )
    .unwrap();
    let clock = ManualClock::new(at);
    let opts = StartOptions {
        clock: clock.clone() as Arc<dyn Clock>,
        watch_files: false,
        signals: false,
    };
    let running = server::start(&config, opts)
        .await
        .unwrap_or_else(|e| panic!("server starts: {e}"));
    Harness {
        dir,
        config,
        running: Some(running),
        clock,
    }
}

/// A map from list file name to its text, for configs.
pub type Files = BTreeMap<&'static str, &'static str>;

/// A minimal HTTP/1.1 client for the admin API: (status, body).
pub async fn http(
    addr: SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<&str>,
) -> (u16, String) {
    let mut s = TcpStream::connect(addr).await.expect("connect admin");
    let mut req = format!("{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n");
    if let Some(t) = token {
        req.push_str(&format!("Authorization: Bearer {t}\r\n"));
    }
    let body = body.unwrap_or("");
    if !body.is_empty() {
        req.push_str("Content-Type: application/json\r\n");
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, dechunk(&body))
}

/// Undo `Transfer-Encoding: chunked` if the body looks chunked.
fn dechunk(body: &str) -> String {
    let mut out = String::new();
    let mut rest = body;
    loop {
        let Some((size, after)) = rest.split_once("\r\n") else {
            return body.to_owned();
        };
        let Ok(n) = usize::from_str_radix(size.trim(), 16) else {
            return body.to_owned();
        };
        if n == 0 {
            return out;
        }
        if after.len() < n {
            return body.to_owned();
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
}

/// The SHA-256 hex of a token, for configs.
pub fn token_hash(token: &str) -> String {
    hex::encode(chaperone::admin::auth::hash_token(token))
}

/// A minimal HTTP/1.1 request from a chosen source address (127.0.0.x acts as a device on
/// a school network) with extra header lines: (status, response head, body).
pub async fn http_from(
    from: &str,
    addr: SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<(&str, &str)>,
) -> (u16, String, String) {
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.bind(SocketAddr::new(from.parse().unwrap(), 0))
        .expect("bind client address");
    let mut s = tokio::time::timeout(Duration::from_secs(5), sock.connect(addr))
        .await
        .expect("connect in time")
        .expect("connect");
    let mut req = format!("{method} {path} HTTP/1.1\r\nConnection: close\r\n");
    if !headers.iter().any(|(n, _)| n.eq_ignore_ascii_case("host")) {
        req.push_str(&format!("Host: {addr}\r\n"));
    }
    for (n, v) in headers {
        req.push_str(&format!("{n}: {v}\r\n"));
    }
    let (ctype, body) = body.unwrap_or(("", ""));
    if !ctype.is_empty() {
        req.push_str(&format!("Content-Type: {ctype}\r\n"));
    }
    req.push_str(&format!("Content-Length: {}\r\n\r\n{body}", body.len()));
    s.write_all(req.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(20), s.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).into_owned();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let (head, body) = text
        .split_once("\r\n\r\n")
        .map(|(h, b)| (h.to_owned(), b.to_owned()))
        .unwrap_or_default();
    (status, head, dechunk(&body))
}

/// The value of a header in a response head (case-insensitive name).
pub fn header_of(head: &str, name: &str) -> Option<String> {
    head.lines().find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// The value of a Prometheus sample line that starts with `series` (name and labels).
pub async fn metric(admin: SocketAddr, series: &str) -> f64 {
    let (_, text) = http(admin, "GET", "/metrics", None, None).await;
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
        .unwrap_or(0.0)
}

/// Chaperone in recursive mode from `root`, with nothing blocked for the staff address
/// 127.0.0.3, each authoritative server given `timeout_ms` per attempt (2 attempts). The
/// tests of recursion against their own test internets start it.
pub async fn recursive_chaperone(root: IpAddr, timeout_ms: u32) -> Harness {
    let config = format!(
        r#"
[server]
listen = ["127.0.0.1:0"]

[upstream]
mode = "recursive"
root_hints = ["{root}"]
timeout_ms = {timeout_ms}
attempts = 2

[lists]
bundle = "lists.fstb"

[[lists.source]]
category = "games"
path = "games.txt"

[[network]]
cidrs = ["127.0.0.3/32"]
group = "staff"

[group.staff]
block = []
"#
    );
    // No forwarding target in recursive mode: the address is unused.
    let unused: SocketAddr = "127.0.0.1:9".parse().expect("a literal address");
    start(
        &config,
        unused,
        &[("games.txt", "games.invalid\n")],
        school_morning(),
    )
    .await
}
