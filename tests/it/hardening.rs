//! Hardening of the listeners and the upstream side against one hostile client (issue 11
//! items 1, 2, 4, 5) and the dual-stack listen of issue 18 item 3. Everything through real
//! sockets on loopback; the upstream is a scripted responder started by each test, so a
//! test decides when (and whether) an upstream answer comes, and asserts order and
//! outcome rather than speed.

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::rr::rdata::A;
use hickory_proto::rr::{RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream, UdpSocket};
use tokio::sync::watch;

use crate::support::*;

/// The address every scripted answer carries.
const ANSWER: Ipv4Addr = Ipv4Addr::new(192, 0, 2, 1);

/// A scripted upstream on 127.0.0.1 (UDP): answers every A question with [`ANSWER`]
/// (TTL 300) and other types with NODATA, except that names under `hole.test.` are never
/// answered and names beginning `held` wait until [`ScriptedUpstream::release`].
struct ScriptedUpstream {
    addr: SocketAddr,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    release: watch::Sender<bool>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptedUpstream {
    async fn start() -> Self {
        let sock = Arc::new(UdpSocket::bind("127.0.0.1:0").await.unwrap());
        let addr = sock.local_addr().unwrap();
        let seen = Arc::new(Mutex::new(HashMap::new()));
        let (release, rx) = watch::channel(false);
        let task = tokio::spawn(serve_scripted(sock, seen.clone(), rx));
        Self {
            addr,
            seen,
            release,
            task,
        }
    }

    /// Times a name (lower case, with the final dot) was asked.
    fn count(&self, name: &str) -> usize {
        self.seen.lock().unwrap().get(name).copied().unwrap_or(0)
    }

    /// Questions asked for names under `suffix`.
    fn count_under(&self, suffix: &str) -> usize {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|(n, _)| n.ends_with(suffix))
            .map(|(_, c)| c)
            .sum()
    }

    /// Let the held answers go.
    fn release(&self) {
        let _ = self.release.send(true);
    }
}

impl Drop for ScriptedUpstream {
    fn drop(&mut self) {
        self.task.abort();
    }
}

async fn serve_scripted(
    sock: Arc<UdpSocket>,
    seen: Arc<Mutex<HashMap<String, usize>>>,
    release: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 4096];
    loop {
        let Ok((n, src)) = sock.recv_from(&mut buf).await else {
            return;
        };
        let Ok(req) = Message::from_bytes(&buf[..n]) else {
            continue;
        };
        let Some(q) = req.queries.first().cloned() else {
            continue;
        };
        let name = q.name().to_ascii().to_ascii_lowercase();
        *seen.lock().unwrap().entry(name.clone()).or_default() += 1;
        if name.ends_with("hole.test.") {
            continue;
        }
        let mut resp = Message::new(req.metadata.id, MessageType::Response, OpCode::Query);
        resp.metadata.recursion_desired = req.metadata.recursion_desired;
        resp.metadata.recursion_available = true;
        resp.add_query(q.clone());
        if q.query_type() == RecordType::A {
            resp.add_answer(Record::from_rdata(
                q.name().clone(),
                300,
                RData::A(A(ANSWER)),
            ));
        }
        let Ok(bytes) = resp.to_bytes() else { continue };
        if name.starts_with("held") {
            let (sock, mut release) = (sock.clone(), release.clone());
            tokio::spawn(async move {
                let wait = release.wait_for(|go| *go);
                if tokio::time::timeout(Duration::from_secs(20), wait)
                    .await
                    .is_ok()
                {
                    let _ = sock.send_to(&bytes, src).await;
                }
            });
        } else {
            let _ = sock.send_to(&bytes, src).await;
        }
    }
}

/// Every loopback client is in one network; `{SERVER}` is replaced by extra `[server]` keys.
const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]
{SERVER}

[upstream]
servers = [{SERVERS}]
timeout_ms = {TIMEOUT}
attempts = 1

[lists]
bundle = "lists.fstb"

[[lists.source]]
category = "ads"
path = "ads.txt"

[[network]]
cidrs = ["127.0.0.0/8", "::1/128"]
group = "everyone"

[group.everyone]
block = ["ads"]
"#;

fn config(server: &str, servers: &[SocketAddr], timeout_ms: u64) -> String {
    let list: Vec<String> = servers.iter().map(|s| format!("\"{s}\"")).collect();
    CONFIG
        .replace("{SERVER}", server)
        .replace("{SERVERS}", &list.join(", "))
        .replace("{TIMEOUT}", &timeout_ms.to_string())
}

async fn start_with(config_text: &str) -> Harness {
    start(
        config_text,
        "127.0.0.1:9".parse().unwrap(),
        &[("ads.txt", "ads.listed.test\n")],
        school_morning(),
    )
    .await
}

/// A DNS query message for `name` A with a chosen id.
fn query(name: &str, id: u16) -> Vec<u8> {
    let mut m = Client::message(name, RecordType::A);
    m.metadata.id = id;
    m.to_bytes().unwrap()
}

/// A TCP connection to `server` from `from` (port 0).
async fn connect(from: &str, server: SocketAddr) -> TcpStream {
    let from: IpAddr = from.parse().unwrap();
    let sock = match from {
        IpAddr::V4(_) => TcpSocket::new_v4().unwrap(),
        IpAddr::V6(_) => TcpSocket::new_v6().unwrap(),
    };
    sock.bind(SocketAddr::new(from, 0)).unwrap();
    tokio::time::timeout(Duration::from_secs(2), sock.connect(server))
        .await
        .expect("connect in time")
        .expect("connect")
}

async fn write_msg(s: &mut TcpStream, msg: &[u8]) {
    let mut framed = (msg.len() as u16).to_be_bytes().to_vec();
    framed.extend_from_slice(msg);
    s.write_all(&framed).await.unwrap();
}

/// The next message on `s`, or None on close, error or after `wait`.
async fn read_msg(s: &mut TcpStream, wait: Duration) -> Option<Message> {
    let read = async {
        let mut len = [0u8; 2];
        s.read_exact(&mut len).await.ok()?;
        let mut buf = vec![0u8; usize::from(u16::from_be_bytes(len))];
        s.read_exact(&mut buf).await.ok()?;
        Message::from_bytes(&buf).ok()
    };
    tokio::time::timeout(wait, read).await.ok().flatten()
}

/// Ask `name` on an open connection and expect the scripted answer.
async fn ask_on(s: &mut TcpStream, name: &str, id: u16) {
    write_msg(s, &query(name, id)).await;
    let m = read_msg(s, Duration::from_secs(3))
        .await
        .unwrap_or_else(|| panic!("an answer for {name} on this connection"));
    assert_eq!(m.metadata.id, id);
    assert_eq!(rcode(&m), ResponseCode::NoError, "{name}");
    assert_eq!(ips(&m), vec![IpAddr::V4(ANSWER)], "{name}");
}

/// True if the server closed `s` (EOF or reset) within `wait`.
async fn closed(s: &mut TcpStream, wait: Duration) -> bool {
    let mut b = [0u8; 1];
    matches!(
        tokio::time::timeout(wait, s.read(&mut b)).await,
        Ok(Ok(0)) | Ok(Err(_))
    )
}

async fn udp_ok(h: &Harness, from: &str, name: &str) {
    let m = h.client(from).udp(name, RecordType::A).await;
    assert_eq!(rcode(&m), ResponseCode::NoError, "{name} over UDP");
    assert_eq!(ips(&m), vec![IpAddr::V4(ANSWER)], "{name} over UDP");
}

/// Issue 11 item 1: more connections from one address than its cap close that address's
/// oldest idle connections; the global cap closes the oldest idle connection of anyone;
/// other addresses keep getting TCP answers and UDP answers all through.
#[tokio::test]
async fn tcp_connections_beyond_a_cap_close_the_oldest_idle_ones() {
    let up = ScriptedUpstream::start().await;
    let h = start_with(&config(
        "tcp_max_connections = 6\ntcp_max_connections_per_client = 3\ntcp_idle_timeout_secs = 60",
        &[up.addr],
        2000,
    ))
    .await;
    let dns = h.dns();
    let mut one = Vec::new();
    for i in 0..5u16 {
        let mut s = connect("127.0.0.1", dns).await;
        ask_on(&mut s, &format!("c{i}.example.test."), 100 + i).await;
        one.push(s);
        udp_ok(&h, "127.0.0.1", "udp.example.test.").await;
    }
    // 127.0.0.1 may hold 3: its two oldest were closed to make room.
    assert!(
        closed(&mut one[0], Duration::from_secs(3)).await,
        "oldest closed"
    );
    assert!(
        closed(&mut one[1], Duration::from_secs(3)).await,
        "second oldest closed"
    );
    for (i, s) in one.iter_mut().enumerate().skip(2) {
        ask_on(s, "still.example.test.", 200 + i as u16).await;
    }
    // Another address is unaffected by 127.0.0.1's cap.
    let mut other = Vec::new();
    for i in 0..3u16 {
        let mut s = connect("127.0.0.2", dns).await;
        ask_on(&mut s, &format!("o{i}.example.test."), 300 + i).await;
        other.push(s);
    }
    // Six open, the total cap: a new client's connection closes the oldest idle one
    // (127.0.0.1's third, the least recently used), and is answered.
    let mut third = connect("127.0.0.3", dns).await;
    ask_on(&mut third, "t.example.test.", 400).await;
    assert!(
        closed(&mut one[2], Duration::from_secs(3)).await,
        "globally oldest idle closed"
    );
    ask_on(&mut other[0], "again.example.test.", 401).await;
    udp_ok(&h, "127.0.0.2", "udp2.example.test.").await;
    h.stop().await;
}

/// Issue 11 item 4: one connection's queries are answered concurrently and out of order
/// (RFC 7766 §6.2.1.1): four cached names asked after a name whose upstream answer is held
/// come back first.
#[tokio::test]
async fn pipelined_tcp_answers_cached_names_before_a_slow_one() {
    let up = ScriptedUpstream::start().await;
    let h = start_with(&config("", &[up.addr], 3000)).await;
    let names: Vec<String> = (0..4).map(|i| format!("cached{i}.example.test.")).collect();
    for n in &names {
        udp_ok(&h, "127.0.0.1", n).await;
    }
    let mut s = connect("127.0.0.1", h.dns()).await;
    write_msg(&mut s, &query("held.example.test.", 500)).await;
    for (i, n) in names.iter().enumerate() {
        write_msg(&mut s, &query(n, 501 + i as u16)).await;
    }
    let mut first = Vec::new();
    for _ in 0..4 {
        let m = read_msg(&mut s, Duration::from_secs(5))
            .await
            .expect("an answer");
        assert_eq!(rcode(&m), ResponseCode::NoError);
        first.push(m.metadata.id);
    }
    first.sort_unstable();
    assert_eq!(first, vec![501, 502, 503, 504], "cached answers first");
    up.release();
    let last = read_msg(&mut s, Duration::from_secs(5))
        .await
        .expect("the held answer");
    assert_eq!(last.metadata.id, 500);
    assert_eq!(ips(&last), vec![IpAddr::V4(ANSWER)]);
    h.stop().await;
}

/// Issue 11 item 2: 1,000 concurrent copies of one question cause one upstream query (up
/// to hickory's own UDP retransmissions of it, at most 3) and take one of the 100 upstream
/// slots, not 100 queries and 900 SERVFAILs: every copy is answered.
#[tokio::test]
async fn identical_questions_in_flight_are_asked_upstream_once() {
    let up = ScriptedUpstream::start().await;
    let h = start_with(&config("max_inflight = 100", &[up.addr], 3000)).await;
    let sock = socket2::Socket::new(
        socket2::Domain::IPV4,
        socket2::Type::DGRAM,
        Some(socket2::Protocol::UDP),
    )
    .unwrap();
    sock.set_recv_buffer_size(4 << 20).unwrap();
    sock.set_nonblocking(true).unwrap();
    sock.bind(&"127.0.0.1:0".parse::<SocketAddr>().unwrap().into())
        .unwrap();
    let sock = Arc::new(UdpSocket::from_std(sock.into()).unwrap());
    const N: u16 = 1000;
    let reader = {
        let sock = sock.clone();
        tokio::spawn(async move {
            let mut codes = HashMap::new();
            let mut buf = vec![0u8; 4096];
            for _ in 0..N {
                let r = tokio::time::timeout(Duration::from_secs(10), sock.recv(&mut buf)).await;
                let Ok(Ok(n)) = r else { break };
                if let Ok(m) = Message::from_bytes(&buf[..n]) {
                    *codes.entry(rcode(&m)).or_insert(0usize) += 1;
                }
            }
            codes
        })
    };
    for id in 0..N {
        sock.send_to(&query("held-same.example.test.", id), h.dns())
            .await
            .unwrap();
    }
    // Let every copy reach the server before the answer comes.
    for _ in 0..100 {
        if up.count("held-same.example.test.") > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    up.release();
    let codes = reader.await.unwrap();
    let asked = up.count("held-same.example.test.");
    assert!(
        (1..=4).contains(&asked),
        "1,000 identical questions were asked upstream {asked} times"
    );
    assert_eq!(codes.get(&ResponseCode::ServFail), None, "{codes:?}");
    let ok = codes.get(&ResponseCode::NoError).copied().unwrap_or(0);
    assert!(ok >= 990, "only {ok} of 1,000 answered NOERROR: {codes:?}");
    h.stop().await;
}

/// Issue 11 item 2: one address flooding names whose servers never answer holds at most its
/// share of the upstream slots, so another address's uncached lookups still succeed.
#[tokio::test]
async fn a_black_hole_flood_from_one_address_leaves_others_their_lookups() {
    let up = ScriptedUpstream::start().await;
    let h = start_with(&config(
        "max_inflight = 64\nmax_inflight_per_client = 8",
        &[up.addr],
        1500,
    ))
    .await;
    let dns = h.dns();
    let (stop, stopped) = watch::channel(false);
    let flood = tokio::spawn(async move {
        let sock = UdpSocket::bind("127.0.0.3:0").await.unwrap();
        let mut buf = vec![0u8; 512];
        // Bursts of 100 new names every 10 ms (10,000 q/s) until told to stop.
        for burst in 0..500u32 {
            if *stopped.borrow() {
                break;
            }
            for i in 0..100 {
                let name = format!("n{burst}-{i}.hole.test.");
                let _ = sock.send_to(&query(&name, i as u16), dns).await;
            }
            // Drain the SERVFAILs of names beyond the share.
            while sock.try_recv(&mut buf).is_ok() {}
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    });
    // The flood holds slots before the other client asks.
    for _ in 0..250 {
        if up.count_under("hole.test.") >= 8 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        up.count_under("hole.test.") >= 8,
        "the flood reached upstream"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    for i in 0..20 {
        udp_ok(&h, "127.0.0.2", &format!("staff{i}.example.test.")).await;
    }
    let _ = stop.send(true);
    flood.await.unwrap();
    h.stop().await;
}

/// A loopback UDP port with nothing bound: asking it gets ICMP port unreachable.
async fn refused_port() -> SocketAddr {
    let s = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    s.local_addr().unwrap()
}

/// Issue 11 item 5: an upstream that refuses (ICMP port unreachable) fails at once: alone,
/// the client gets SERVFAIL well before the 4.5 s deadline; with working servers after it,
/// one of those answers.
#[tokio::test]
async fn a_refusing_upstream_is_passed_over_at_once() {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::from_default_env())
        .try_init();
    let dead = refused_port().await;
    let h = start_with(&config("", &[dead], 2000)).await;
    let started = Instant::now();
    let m = h
        .client("127.0.0.1")
        .send_udp(&Client::message("www.example.test.", RecordType::A))
        .await
        .expect("an answer before the client gives up (2 s)");
    assert_eq!(rcode(&m), ResponseCode::ServFail);
    assert!(started.elapsed() < Duration::from_secs(2));
    h.stop().await;

    let up = ScriptedUpstream::start().await;
    let mut servers = Vec::new();
    for _ in 0..4 {
        servers.push(refused_port().await);
    }
    servers.push(up.addr);
    let h = start_with(&config("", &servers, 2000)).await;
    for i in 0..3 {
        let started = Instant::now();
        udp_ok(&h, "127.0.0.1", &format!("w{i}.example.test.")).await;
        assert!(started.elapsed() < Duration::from_secs(2));
    }
    h.stop().await;
}

/// Issue 18 item 3: the documented dual-stack listen list starts, and both families are
/// answered over UDP and TCP.
#[tokio::test]
async fn the_documented_dual_stack_listen_starts() {
    if std::net::UdpSocket::bind("[::1]:0").is_err() {
        eprintln!(
            "SKIPPED the_documented_dual_stack_listen_starts: this machine has no IPv6 loopback"
        );
        return;
    }
    let up = ScriptedUpstream::start().await;
    // A port free on both families for both protocols (a dual-stack probe).
    let port = {
        let probe = std::net::TcpListener::bind("[::]:0").unwrap();
        probe.local_addr().unwrap().port()
    };
    let text = config("", &[up.addr], 2000).replace(
        r#"listen = ["127.0.0.1:0"]"#,
        &format!(r#"listen = ["0.0.0.0:{port}", "[::]:{port}"]"#),
    );
    let h = start_with(&text).await;
    for server in [format!("127.0.0.1:{port}"), format!("[::1]:{port}")] {
        let server: SocketAddr = server.parse().unwrap();
        let from = if server.is_ipv4() { "127.0.0.1" } else { "::1" };
        let c = Client::new(from, server);
        let m = c.udp("www.example.test.", RecordType::A).await;
        assert_eq!(ips(&m), vec![IpAddr::V4(ANSWER)], "UDP to {server}");
        let mut s = connect(from, server).await;
        ask_on(&mut s, "tcp.example.test.", 7).await;
    }
    h.stop().await;
}

/// Issue 11 item 1: `chaperone serve` raises its soft open files limit to the hard limit.
#[cfg(target_os = "linux")]
#[test]
fn serve_raises_the_open_files_limit_to_the_hard_limit() {
    use std::os::unix::process::CommandExt;
    let dir = tempfile::tempdir().unwrap();
    write_files(dir.path(), &[("ads.txt", "ads.listed.test\n")]);
    let cfg = dir.path().join("chaperone.toml");
    std::fs::write(&cfg, config("", &["127.0.0.1:9".parse().unwrap()], 500)).unwrap();
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_chaperone"));
    cmd.args(["serve", "--config"]).arg(&cfg);
    cmd.stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null());
    // SAFETY: setrlimit is async-signal-safe; the closure touches nothing else.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 256,
                rlim_max: 512,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("start chaperone serve");
    let limits = format!("/proc/{}/limits", child.id());
    let mut line = String::new();
    for _ in 0..100 {
        let text = std::fs::read_to_string(&limits).unwrap_or_default();
        line = text
            .lines()
            .find(|l| l.starts_with("Max open files"))
            .unwrap_or_default()
            .to_owned();
        if line.split_whitespace().nth(3) == Some("512") {
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let _ = child.kill();
    let _ = child.wait();
    let fields: Vec<&str> = line.split_whitespace().collect();
    assert_eq!(fields.get(3..5), Some(&["512", "512"][..]), "{line}");
}
