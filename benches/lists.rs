//! List bundle benchmarks: compile time and size at 1M names, and lookups per second for
//! hits and misses at 2–6 labels against a 1M-name bundle.
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

criterion_group!(benches, compile, lookups);
criterion_main!(benches);
