//! The larger offline test internet as a program, for `benches/recursion.sh` (Chaperone
//! against unbound, both recursing from the same root) and for trying recursive mode by hand.
//!
//! ```text
//! cargo run --release --example test_internet -- serve [SECS]  # needs root
//! cargo run --release --example test_internet -- names     # every question: NAME TYPE
//! cargo run --release --example test_internet -- measure 127.0.0.1:5399 names.txt
//! ```
//!
//! `serve` answers the 514 zones of `examples/internet/world/` (the very zones
//! `tests/it/recursion_compare.rs` uses) on 127.0.1.0/24 port 53, and prints
//! `ready: root hint 127.0.1.1` once every socket is bound; it runs until SIGTERM/SIGINT or
//! for SECS seconds. On SIGUSR1 it prints `questions=N`, the questions all its servers have
//! received so far (how much work a resolver made for them), then `server HOST IP N` for
//! each server. `measure` asks a resolver each question of the file (`NAME [TYPE]` a line,
//! A by default) once, in order, over UDP from 127.0.0.1, and prints the latency of each
//! question and a summary (microseconds), so cold and cached passes can be compared without
//! dig's millisecond resolution.

use std::net::SocketAddr;
use std::net::UdpSocket as StdUdpSocket;
use std::str::FromStr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinEncodable};

#[path = "internet/world/mod.rs"]
mod world;

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
            for (n, t) in world::data::names() {
                println!("{n} {t}");
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

/// Serve every zone until told to stop, or for `limit`.
fn serve(limit: Option<Duration>) -> anyhow::Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()?;
    rt.block_on(async {
        let servers = world::data::servers();
        eprintln!(
            "{} zones on {} servers",
            world::data::zone_count(),
            servers.len()
        );
        let running = world::serve::start(servers).await?;
        println!("ready: root hint {}", world::data::ROOT);
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
                _ = usr1.recv() => {
                    let mut out = format!("questions={}\n", running.questions());
                    for (host, ip, n) in running.per_server() {
                        out.push_str(&format!("server {host} {ip} {n}\n"));
                    }
                    print!("{out}");
                }
            }
        }
        running.shutdown().await;
        Ok(())
    })
}

/// Ask `server` each question of `file` (`NAME [TYPE]`, A by default), one after the other.
fn measure(server: SocketAddr, file: &str) -> anyhow::Result<()> {
    let names = std::fs::read_to_string(file).with_context(|| format!("read {file}"))?;
    let sock = StdUdpSocket::bind("127.0.0.1:0")?;
    sock.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut micros = Vec::new();
    let mut failed = 0usize;
    let mut buf = vec![0u8; 65535];
    for (i, line) in names.lines().filter(|l| !l.trim().is_empty()).enumerate() {
        let mut words = line.split_whitespace();
        let name = words.next().unwrap_or_default();
        let qtype = match words.next() {
            Some(t) => RecordType::from_str(t).with_context(|| format!("type {t}"))?,
            None => RecordType::A,
        };
        let id = (i as u16).wrapping_mul(7919).wrapping_add(17);
        let mut m = Message::new(id, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(Query::query(Name::from_ascii(name)?, qtype));
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
        // NXDOMAIN is the right answer for some names; only no answer or SERVFAIL fail.
        if !matches!(
            outcome,
            Some(ResponseCode::NoError) | Some(ResponseCode::NXDomain)
        ) {
            failed += 1;
        }
        eprintln!("{name} {qtype} {code} {us}");
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
