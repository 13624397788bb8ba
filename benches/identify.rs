//! What naming devices from DHCP leases adds to every query: `identify::client` (run by
//! the UDP fast path for each query) with no lease files (the pipeline then passes a
//! static empty map and loads nothing), with lease files that name nobody, and with 5,000 leases where the
//! asker is leased (hash hit, `Arc` clone of the lease) or not (hash miss), each loading
//! the lease map from its `ArcSwap` as the pipeline does.
//!
//! Run: `cargo bench --bench identify`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use chaperone::config::IdentifyConfig;
use chaperone::identify;
use chaperone::leases::{Lease, LeaseMap, Leases};
use criterion::{Criterion, criterion_group, criterion_main};

fn leased(n: u32) -> HashMap<IpAddr, Arc<Lease>> {
    (0..n)
        .map(|i| {
            let ip = IpAddr::V4(Ipv4Addr::from(0x0a14_0000 + i));
            let b = i.to_be_bytes();
            let lease = Lease {
                mac: Some([2, 0, b[0], b[1], b[2], b[3]]),
                hostname: Some(Arc::from(format!("ks2-laptop-{i}"))),
                expires: None,
                source: Arc::from("dnsmasq.leases"),
            };
            (ip, Arc::new(lease))
        })
        .collect()
}

fn bench(c: &mut Criterion) {
    let trust = IdentifyConfig::default();
    let now = jiff::Timestamp::now();
    let empty = Leases::default();
    let file = leased(5000);
    // Swap in a map the way a refresh does.
    let map = LeaseMap::merge([&file]);
    let full_swap = arc_swap::ArcSwap::from_pointee(map);
    let hit: SocketAddr = "10.20.7.208:40000".parse().unwrap();
    let miss: SocketAddr = "10.30.0.1:40000".parse().unwrap();
    c.bench_function("identify/no lease files (as before leases)", |b| {
        b.iter(|| {
            let l = LeaseMap::empty();
            black_box(identify::client(black_box(hit), None, &trust, l, now))
        })
    });
    c.bench_function("identify/lease files configured, all empty", |b| {
        b.iter(|| {
            let l = empty.load();
            black_box(identify::client(black_box(hit), None, &trust, &l, now))
        })
    });
    c.bench_function("identify/5000 leases, asker leased", |b| {
        b.iter(|| {
            let l = full_swap.load();
            black_box(identify::client(black_box(hit), None, &trust, &l, now))
        })
    });
    c.bench_function("identify/5000 leases, asker not leased", |b| {
        b.iter(|| {
            let l = full_swap.load();
            black_box(identify::client(black_box(miss), None, &trust, &l, now))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
