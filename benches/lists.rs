//! List bundle benchmarks: compile time and size at 1M names, and lookups per second for
//! hits and misses at 2–6 labels against a 1M-name bundle.
//!
//! `ip` measures `Bundle::lookup_ip` against the real UT1 folder (all categories, names
//! and its ~72,000 addresses; `../shared/lists-real/ut1` or `$LISTS_REAL/ut1`), and prints
//! that bundle's compile time and size.
//!
//! Run: `cargo bench --bench lists`. The 5M-name figures (compile time, bytes per name,
//! open time) come from `cargo bench --bench scale`, which is a plain timed run rather than
//! a statistical one because a single 5M compile takes seconds.

use std::hint::black_box;

use chaperone::lists::bundle::{Bundle, BundleBuilder};
use chaperone::lists::key::reverse_key;
use chaperone::lists::parse::{Action, MatchKind};
use criterion::{BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};

#[path = "support/synthetic.rs"]
mod synthetic;

fn build(names: &[String]) -> Bundle {
    let mut b = BundleBuilder::new();
    let cats: Vec<u16> = (0..8)
        .map(|i| b.category(&format!("cat{i}")).unwrap())
        .collect();
    for (i, n) in names.iter().enumerate() {
        b.add(cats[i % cats.len()], n, MatchKind::Subtree, Action::Block);
    }
    Bundle::from_vec(b.finish().unwrap().0).unwrap()
}

fn compile(c: &mut Criterion) {
    let names = synthetic::domains(1_000_000, 1);
    let mut g = c.benchmark_group("compile");
    g.sample_size(10);
    g.throughput(Throughput::Elements(names.len() as u64));
    g.bench_function("1M names", |bench| bench.iter(|| black_box(build(&names))));
    g.finish();
    let bundle = build(&names);
    eprintln!(
        "1M synthetic names: bundle {} bytes, {:.1} bytes/name",
        bundle.file_len(),
        bundle.file_len() as f64 / names.len() as f64
    );
}

fn lookups(c: &mut Criterion) {
    let names = synthetic::domains(1_000_000, 2);
    let bundle = build(&names);
    let mut g = c.benchmark_group("lookup");
    g.throughput(Throughput::Elements(1000));
    for labels in 2..=6usize {
        let hits: Vec<Vec<u8>> = names
            .iter()
            .filter(|n| n.split('.').count() <= labels)
            .step_by(97)
            .take(1000)
            .map(|n| reverse_key(&synthetic::with_labels(n, labels)))
            .collect();
        let misses: Vec<Vec<u8>> = (0..1000)
            .map(|i| {
                reverse_key(&synthetic::with_labels(
                    &format!("unlisted{i}.example"),
                    labels,
                ))
            })
            .collect();
        g.bench_with_input(BenchmarkId::new("hit", labels), &hits, |bench, keys| {
            bench.iter(|| {
                for k in keys {
                    black_box(bundle.verdicts(&bundle.lookup(k)));
                }
            })
        });
        g.bench_with_input(BenchmarkId::new("miss", labels), &misses, |bench, keys| {
            bench.iter(|| {
                for k in keys {
                    black_box(bundle.verdicts(&bundle.lookup(k)));
                }
            })
        });
    }
    g.finish();
}

/// The real UT1 folder, if present beside the repository.
fn ut1_dir() -> Option<std::path::PathBuf> {
    let root = std::env::var_os("LISTS_REAL").map_or_else(
        || std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/lists-real"),
        std::path::PathBuf::from,
    );
    let dir = root.join("ut1");
    dir.is_dir().then_some(dir)
}

fn ip_lookups(c: &mut Criterion) {
    let Some(dir) = ut1_dir() else {
        eprintln!("no ../shared/lists-real/ut1 (set LISTS_REAL): ip benchmark skipped");
        return;
    };
    let started = std::time::Instant::now();
    let mut b = BundleBuilder::new();
    let mut listed: Vec<std::net::IpAddr> = Vec::new();
    chaperone::lists::parse::for_each_ut1_piece(&dir, &[], MatchKind::Subtree, |cat, p| {
        let id = b.category(cat).unwrap();
        for e in &p.entries {
            b.add(id, &e.name, e.kind, e.action);
        }
        for ip in &p.ips {
            b.add_ip(id, ip.net, ip.action).unwrap();
            listed.push(ip.net.addr());
        }
    })
    .unwrap();
    let (bytes, stats) = b.finish().unwrap();
    eprintln!(
        "UT1 (all categories): {} names, {} IP entries, {} IP intervals; compile {:.2} s; bundle {} bytes",
        stats.names,
        stats.ips.values().sum::<u64>(),
        stats.ip_intervals,
        started.elapsed().as_secs_f64(),
        bytes.len()
    );
    let bundle = Bundle::from_vec(bytes).unwrap();
    let hits: Vec<std::net::IpAddr> = listed
        .iter()
        .step_by(listed.len() / 1000 + 1)
        .copied()
        .collect();
    // Addresses spread over the whole IPv4 space: nearly all unlisted.
    let spread: Vec<std::net::IpAddr> = (0..1000u32)
        .map(|i| std::net::Ipv4Addr::from(i.wrapping_mul(4_294_967)).into())
        .collect();
    let v6: Vec<std::net::IpAddr> = (0..1000u128)
        .map(|i| std::net::Ipv6Addr::from(0x2001_0db8_u128 << 96 | i).into())
        .collect();
    let mut g = c.benchmark_group("lookup_ip");
    g.throughput(Throughput::Elements(1000));
    for (name, set) in [
        ("ut1 hit", &hits),
        ("ut1 v4 spread", &spread),
        ("v6 miss", &v6),
    ] {
        g.bench_with_input(BenchmarkId::from_parameter(name), set, |bench, ips| {
            bench.iter(|| {
                for ip in ips.iter() {
                    black_box(bundle.lookup_ip(*ip));
                }
            })
        });
    }
    g.finish();
}

criterion_group!(benches, compile, lookups, ip_lookups);
criterion_main!(benches);
