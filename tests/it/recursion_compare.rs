//! Recursive mode against unbound on the larger test internet (issue 17 §3): both resolve
//! every name of `examples/internet/world/` (514 zones, glueless delegations, lame and slow
//! servers, cross-zone CNAME chains, NXDOMAIN, NODATA, deep names) from the same root, and
//! must give the same rcode and the same answer section, compared as a set of
//! (name, type, rdata), TTL and order ignored.
//!
//! unbound is the reference: a real Debian `unbound` started in a temp dir by this test
//! (iterator only, no DNSSEC, `do-not-query-localhost: no`, root hints → the test root).
//! Without it the test fails and says to install it.
//!
//! The world is started once per test binary on its own runtime thread, on 127.0.1.0/24
//! (the small internet of `recursive.rs` is on 127.0.0.10–30, so both run at once). Each
//! resolver starts cold; the questions the authorities receive during its pass are
//! printed per server, so upstream work per name can be compared (indicative only:
//! questions are asked a few at a time, and speed is never asserted here).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::str::FromStr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use hickory_proto::op::{Message, ResponseCode};
use hickory_proto::rr::RecordType;
use hickory_proto::serialize::binary::BinEncodable;

use crate::support::*;

#[path = "../../examples/internet/world/mod.rs"]
#[allow(dead_code)]
mod world;

/// How long the test waits for one answer from either resolver.
const WAIT: Duration = Duration::from_secs(6);
/// Questions in flight at once, per resolver: a few, so the run is short but leaves CPU to
/// the tests running beside it (some of `recursive.rs` time their answers).
const IN_FLIGHT: usize = 4;

static WORLD: OnceLock<world::serve::Running> = OnceLock::new();

/// The larger test internet, started on first use and kept until the test binary exits.
fn world() -> &'static world::serve::Running {
    WORLD.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("test-world".to_owned())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    let running = world::serve::start(world::data::servers()).await;
                    tx.send(running).unwrap();
                    std::future::pending::<()>().await
                })
            })
            .unwrap();
        rx.recv()
            .unwrap()
            .unwrap_or_else(|e| panic!("the test world starts (port 53 needs root): {e:#}"))
    })
}

/// A real unbound on a free loopback port, killed on drop.
struct Unbound {
    child: Child,
    addr: SocketAddr,
    _dir: tempfile::TempDir,
}

impl Drop for Unbound {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn unbound_binary() -> String {
    for p in ["/usr/sbin/unbound", "/usr/local/sbin/unbound"] {
        if std::path::Path::new(p).exists() {
            return p.to_owned();
        }
    }
    panic!(
        "unbound is not installed: the recursion comparison needs the real resolver \
         (apt-get install -y unbound; .ci/run installs it)"
    );
}

/// A port free on 127.0.0.1 for both UDP and TCP at the time of asking.
fn free_port() -> u16 {
    loop {
        let udp = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let port = udp.local_addr().unwrap().port();
        if std::net::TcpListener::bind(("127.0.0.1", port)).is_ok() {
            return port;
        }
    }
}

async fn unbound() -> Unbound {
    let bin = unbound_binary();
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().display();
    let port = free_port();
    std::fs::write(
        dir.path().join("root.hints"),
        format!(
            ".  3600000 IN NS {ns}\n{ns} 3600000 IN A {ip}\n",
            ns = world::data::ROOT_NS,
            ip = world::data::ROOT
        ),
    )
    .unwrap();
    let conf = dir.path().join("unbound.conf");
    std::fs::write(
        &conf,
        format!(
            "server:\n  interface: 127.0.0.1@{port}\n  port: {port}\n  do-ip6: no\n  \
             do-not-query-localhost: no\n  access-control: 127.0.0.0/8 allow\n  \
             root-hints: \"{d}/root.hints\"\n  module-config: \"iterator\"\n  \
             qname-minimisation: yes\n  num-threads: 1\n  chroot: \"\"\n  username: \"\"\n  \
             directory: \"{d}\"\n  pidfile: \"{d}/unbound.pid\"\n  use-syslog: no\n  \
             logfile: \"{d}/unbound.log\"\n  verbosity: 1\n\
             remote-control:\n  control-enable: no\n"
        ),
    )
    .unwrap();
    let child = Command::new(&bin)
        .arg("-d")
        .arg("-c")
        .arg(&conf)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("start {bin}: {e}"));
    let u = Unbound {
        child,
        addr: SocketAddr::from(([127, 0, 0, 1], port)),
        _dir: dir,
    };
    // Ready when it answers `localhost.`, a name it answers itself (no upstream question).
    let probe = Client::new("127.0.0.1", u.addr);
    for _ in 0..100 {
        let m = Client::message("localhost.", RecordType::A);
        let bytes = m.to_bytes().unwrap();
        if probe
            .send_raw_udp(&bytes, Duration::from_millis(100))
            .await
            .is_some()
        {
            return u;
        }
    }
    let log = std::fs::read_to_string(u._dir.path().join("unbound.log")).unwrap_or_default();
    panic!("unbound did not start on {}: {log}", u.addr);
}

/// What the comparison looks at in a reply: the rcode and the answer section as a set.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Outcome {
    /// None: no reply within [`WAIT`].
    rcode: Option<ResponseCode>,
    answers: BTreeSet<String>,
}

impl Outcome {
    fn of(m: Option<Message>) -> Outcome {
        match m {
            None => Outcome {
                rcode: None,
                answers: BTreeSet::new(),
            },
            Some(m) => Outcome {
                rcode: Some(m.metadata.response_code),
                answers: m
                    .answers
                    .iter()
                    .map(|r| format!("{} {} {}", r.name, r.record_type(), r.data).to_lowercase())
                    .collect(),
            },
        }
    }

    fn show(&self) -> String {
        let answers: Vec<&str> = self.answers.iter().map(String::as_str).collect();
        let rcode = match self.rcode {
            Some(c) => c.to_string(),
            None => "no reply".to_owned(),
        };
        format!("{rcode} [{}]", answers.join(", "))
    }
}

async fn ask(server: SocketAddr, name: &str, qtype: RecordType) -> Outcome {
    let client = Client::new("127.0.0.3", server);
    let m = Client::message(name, qtype);
    let bytes = m.to_bytes().unwrap();
    let reply = client
        .send_raw_udp(&bytes, WAIT)
        .await
        .map(|b| checked_reply(&m, &b));
    // A truncated reply is asked again over TCP, as a stub would.
    let reply = match reply {
        Some(r) if r.metadata.truncation => client.send_tcp(&m).await,
        other => other,
    };
    Outcome::of(reply)
}

/// Every question of the world asked of `server`, a few at a time; the outcomes in order.
async fn pass(server: SocketAddr, names: &[(String, RecordType)]) -> Vec<Outcome> {
    let gate = Arc::new(tokio::sync::Semaphore::new(IN_FLIGHT));
    let mut tasks = Vec::new();
    for (name, qtype) in names.iter().cloned() {
        let gate = gate.clone();
        tasks.push(tokio::spawn(async move {
            let _permit = gate.acquire_owned().await.unwrap();
            ask(server, &name, qtype).await
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.unwrap());
    }
    out
}

/// Questions each server received between two snapshots, busiest first.
fn per_server_delta(
    before: &[(String, std::net::IpAddr, u64)],
    after: &[(String, std::net::IpAddr, u64)],
) -> String {
    let mut rows: Vec<(u64, String)> = before
        .iter()
        .zip(after)
        .map(|((h, ip, b), (_, _, a))| (a - b, format!("{h} ({ip})")))
        .filter(|(n, _)| *n > 0)
        .collect();
    rows.sort_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    rows.iter()
        .map(|(n, h)| format!("    {n:6}  {h}"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// Ask every name of `resolver` and report the questions the authorities received.
async fn resolve_all(
    who: &str,
    server: SocketAddr,
    names: &[(String, RecordType)],
) -> Vec<Outcome> {
    let net = world();
    let before = net.per_server();
    let outcomes = pass(server, names).await;
    let after = net.per_server();
    let total: u64 =
        after.iter().map(|s| s.2).sum::<u64>() - before.iter().map(|s| s.2).sum::<u64>();
    eprintln!(
        "{who}: {} questions to the authorities for {} names ({:.2} a name)\n{}",
        total,
        names.len(),
        total as f64 / names.len() as f64,
        per_server_delta(&before, &after)
    );
    outcomes
}

#[tokio::test]
async fn every_name_resolves_as_unbound_resolves_it() {
    let net = world();
    let zones = world::data::zone_count();
    assert!(zones >= 500, "the world has {zones} zones");
    let names: Vec<(String, RecordType)> = world::data::names()
        .into_iter()
        .map(|(n, t)| (n, RecordType::from_str(t).unwrap()))
        .collect();
    eprintln!(
        "{} names in {zones} zones on {} servers",
        names.len(),
        net.counters.len()
    );

    let ub = unbound().await;
    let reference = resolve_all("unbound", ub.addr, &names).await;
    drop(ub);

    // Budget per question: 1000 ms × 2 + 500 ms (`upstream_deadline`), inside [`WAIT`].
    let h = recursive_chaperone(world::data::ROOT.into(), 1000).await;
    let ours = resolve_all("chaperone", h.dns(), &names).await;
    h.stop().await;

    // The reference itself must have resolved the world: a broken world (or a broken
    // unbound set-up) would otherwise let two empty answers agree.
    let unanswered: Vec<&(String, RecordType)> = names
        .iter()
        .zip(&reference)
        .filter(|(_, o)| {
            !matches!(
                o.rcode,
                Some(ResponseCode::NoError) | Some(ResponseCode::NXDomain)
            )
        })
        .map(|(n, _)| n)
        .collect();
    assert!(
        unanswered.is_empty(),
        "unbound failed {} names, e.g. {:?}",
        unanswered.len(),
        &unanswered[..unanswered.len().min(10)]
    );

    let mut differ = Vec::new();
    for (((name, qtype), theirs), ours) in names.iter().zip(&reference).zip(&ours) {
        if theirs != ours {
            differ.push(format!(
                "{name} {qtype}\n    unbound:   {}\n    chaperone: {}",
                theirs.show(),
                ours.show()
            ));
        }
    }
    assert!(
        differ.is_empty(),
        "{} of {} names differ from unbound:\n{}",
        differ.len(),
        names.len(),
        differ.join("\n")
    );
}
