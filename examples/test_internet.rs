//! The offline test internet as a program, for `benches/recursion.sh` (Chaperone against
//! unbound, both recursing from the same root) and for trying recursive mode by hand.
//!
//! ```text
//! cargo run --release --example test_internet -- serve [SECS]  # needs root
//! cargo run --release --example test_internet -- names     # the bench names, one a line
//! cargo run --release --example test_internet -- measure 127.0.0.1:5399 names.txt
//! ```
//!
//! `serve` answers the zones of `examples/internet/zones.rs` (the very zones the integration
//! tests use) on 127.0.0.10–30 port 53 with hickory's authoritative `Catalog`, and prints
//! `ready: root hint 127.0.0.10` once every socket is bound; it runs until SIGTERM/SIGINT or
//! for SECS seconds, and on SIGUSR1 prints `questions=N`, the questions all its servers have
//! received so far (how much work a resolver made for them). `measure` asks a resolver for
//! each name once, in order, over UDP from 127.0.0.1, and prints the latency of each
//! question and a summary (microseconds), so cold and cached passes can be compared without
//! dig's millisecond resolution.

use std::net::{IpAddr, SocketAddr, UdpSocket as StdUdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::store::in_memory::InMemoryZoneHandler;
use hickory_server::zone_handler::{AxfrPolicy, Catalog, ZoneType};

#[path = "internet/zones.rs"]
mod zones;

fn main() -> anyhow::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    match args.first().map(String::as_str) {
        Some("serve") | None => {
            let secs = match args.get(1) {
                Some(s) => Some(s.parse::<u64>().context("serve SECS")?),
                None => None,
            };
            serve(secs.map(Duration::from_secs))
        }
        Some("names") => {
            for n in zones::bench_names() {
                println!("{n}");
            }
            Ok(())
        }
        Some("measure") => {
            let (Some(server), Some(file)) = (args.get(1), args.get(2)) else {
                bail!("usage: test_internet measure SERVER:PORT NAMES_FILE");
            };
            measure(server.parse().context("server address")?, file)
        }
        Some(other) => bail!("unknown mode {other}: serve | names | measure"),
    }
}

/// A catalog that counts the questions it is asked.
struct Counting {
    catalog: Catalog,
    questions: Arc<AtomicU64>,
}

#[async_trait::async_trait]
impl RequestHandler for Counting {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        rh: R,
    ) -> ResponseInfo {
        self.questions.fetch_add(1, Ordering::Relaxed);
        self.catalog.handle_request::<R, T>(request, rh).await
    }
}

/// Serve every zone until told to stop, or for `limit`.
fn serve(limit: Option<Duration>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let mut servers = Vec::new();
        let mut silent = Vec::new();
        let questions = Arc::new(AtomicU64::new(0));
        for s in zones::servers() {
            let bind = SocketAddr::new(IpAddr::V4(s.ip), 53);
            if s.behaviour == zones::Behaviour::Silent {
                // Bound so queries are not refused, never read: a firewalled server.
                silent.push(StdUdpSocket::bind(bind).with_context(|| format!("bind {bind}"))?);
                continue;
            }
            let mut catalog = Catalog::new();
            for (origin, text) in &s.zones {
                let (name, handler) = zone(origin, text)?;
                catalog.upsert(name.into(), vec![handler]);
            }
            let mut server = Server::new(Counting {
                catalog,
                questions: questions.clone(),
            });
            let udp = tokio::net::UdpSocket::bind(bind)
                .await
                .with_context(|| format!("bind {bind} (port 53 needs root)"))?;
            let tcp = tokio::net::TcpListener::bind(bind).await?;
            eprintln!("{}.nic. {bind}: {} zone(s)", s.host, s.zones.len());
            server.register_socket(udp);
            server.register_listener(tcp, Duration::from_secs(5), 32);
            servers.push(server);
        }
        println!("ready: root hint {}", zones::ROOT);
        use tokio::signal::unix::{SignalKind, signal};
        let mut term = signal(SignalKind::terminate())?;
        let mut usr1 = signal(SignalKind::user_defined1())?;
        let end = tokio::time::sleep(limit.unwrap_or(Duration::from_secs(365 * 86400)));
        tokio::pin!(end);
        loop {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => break,
                _ = term.recv() => break,
                _ = &mut end => break,
                _ = usr1.recv() => println!("questions={}", questions.load(Ordering::Relaxed)),
            }
        }
        for mut s in servers {
            let _ = s.shutdown_gracefully().await;
        }
        drop(silent);
        Ok(())
    })
}

fn zone(origin: &str, text: &str) -> anyhow::Result<(Name, Arc<InMemoryZoneHandler>)> {
    let origin = Name::from_ascii(origin)?;
    let (origin, records) =
        hickory_proto::serialize::txt::Parser::new(text, None, Some(origin.clone()))
            .parse()
            .with_context(|| format!("zone {origin}"))?;
    let handler = InMemoryZoneHandler::new(
        origin.clone(),
        records,
        ZoneType::Primary,
        AxfrPolicy::Deny,
        None,
    )
    .map_err(|e| anyhow::anyhow!("zone {origin}: {e}"))?;
    Ok((origin, Arc::new(handler)))
}

/// Ask `server` for each name of `file` (type A), one after the other.
fn measure(server: SocketAddr, file: &str) -> anyhow::Result<()> {
    let names = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
    let sock = StdUdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut micros = Vec::new();
    let mut failed = 0usize;
    let mut buf = vec![0u8; 65535];
    for (i, name) in names.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let id = (i as u16).wrapping_mul(7919).wrapping_add(17);
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name.trim())?, RecordType::A));
        let mut edns = Edns::new();
        edns.set_max_payload(1232);
        m.edns = Some(edns);
        let bytes = m.to_bytes()?;
        let started = Instant::now();
        sock.send_to(&bytes, server)?;
        let outcome = loop {
            match sock.recv_from(&mut buf) {
                Ok((n, _)) => match Message::from_bytes(&buf[..n]) {
                    Ok(r) if r.metadata.id == id => break Some(r.metadata.response_code),
                    _ => continue, // a late answer to an earlier question
                },
                Err(_) => break None,
            }
        };
        let us = started.elapsed().as_micros();
        let code = match outcome {
            Some(c) => c.to_string(),
            None => "timeout".to_owned(),
        };
        if outcome != Some(ResponseCode::NoError) {
            failed += 1;
        }
        eprintln!("{name} {code} {us}");
        micros.push(us);
    }
    micros.sort_unstable();
    let pick = |q: f64| -> u128 {
        if micros.is_empty() {
            return 0;
        }
        let i = ((micros.len() - 1) as f64 * q).round() as usize;
        micros[i]
    };
    let total: u128 = micros.iter().sum();
    println!(
        "n={} failed={failed} median_us={} p90_us={} max_us={} total_us={total}",
        micros.len(),
        pick(0.5),
        pick(0.9),
        pick(1.0),
    );
    Ok(())
}
