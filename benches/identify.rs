//! What naming devices from DHCP leases adds to every query: `identify::client` (run by
//! the UDP fast path for each query) with no lease files (the pipeline then passes a
//! static empty map and loads nothing), with lease files that name nobody, and with 5,000 leases where the
//! asker is leased (hash hit, `Arc` clone of the lease) or not (hash miss), each loading
//! the lease map from its `ArcSwap` as the pipeline does.
//!
//! With RADIUS: 5,000 sessions and the asker signed in (the session's `Arc` cloned, its
//! group looked up). Every case goes through the same `identify::client` the pipeline
//! runs, with the identity indexes as the server holds them.
//!
//! Run: `cargo bench --bench identify`.

use std::collections::HashMap;
use std::hint::black_box;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use chaperone::config::{Config, IdentifyConfig};
use chaperone::identify::{self, Sources};
use chaperone::identity::{Credential, Identities, SessionIndex, UserSession};
use chaperone::leases::{Lease, LeaseMap, Leases};
use chaperone::lists::bundle::{Bundle, BundleBuilder};
use chaperone::policy::Policy;
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

const CONFIG: &str = "[server]\nlisten = [\"127.0.0.1:0\"]\n[upstream]\nservers = [\"127.0.0.1:53\"]\n[[network]]\ncidrs = [\"10.0.0.0/8\"]\ngroup = \"pupils\"\n[group.pupils]\n[group.staff]\n";

fn policy() -> Policy {
    let config = Config::from_str(std::path::Path::new("/tmp/bench.toml"), CONFIG).unwrap();
    let (bytes, _) = BundleBuilder::new().finish().unwrap();
    Policy::build(
        &config,
        Arc::new(Bundle::from_vec(bytes).unwrap()),
        Vec::new(),
    )
    .unwrap()
}

/// 5,000 RADIUS sessions on the leased addresses, users in the staff group.
fn sessions(file: &HashMap<IpAddr, Arc<Lease>>) -> SessionIndex {
    SessionIndex::new(file.keys().enumerate().map(|(i, ip)| {
        let s = UserSession {
            user: Arc::from(format!("user{i}@example-school.org.uk")),
            group: Some(Arc::from("staff")),
            mac: None,
            session: Arc::from(format!("s{i}")),
            expires: i64::MAX,
        };
        (*ip, Arc::new(s))
    }))
}

fn sources<'a>(
    trust: &'a IdentifyConfig,
    leases: &'a LeaseMap,
    identities: &'a Identities,
    policy: &'a Policy,
) -> Sources<'a> {
    Sources {
        trust,
        leases,
        identities,
        policy,
    }
}

fn bench(c: &mut Criterion) {
    let trust = IdentifyConfig::default();
    let policy = policy();
    let none = Identities::default();
    let with_radius = Identities::default();
    let (trust, policy) = (&trust, &policy);

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
            let s = sources(trust, LeaseMap::empty(), &none, policy);
            black_box(identify::client(
                black_box(hit),
                None,
                Credential::None,
                &s,
                now,
            ))
        })
    });
    c.bench_function("identify/lease files configured, all empty", |b| {
        b.iter(|| {
            let l = empty.load();
            let s = sources(trust, &l, &none, policy);
            black_box(identify::client(
                black_box(hit),
                None,
                Credential::None,
                &s,
                now,
            ))
        })
    });
    c.bench_function("identify/5000 leases, asker leased", |b| {
        b.iter(|| {
            let l = full_swap.load();
            let s = sources(trust, &l, &none, policy);
            black_box(identify::client(
                black_box(hit),
                None,
                Credential::None,
                &s,
                now,
            ))
        })
    });
    c.bench_function("identify/5000 leases, asker not leased", |b| {
        b.iter(|| {
            let l = full_swap.load();
            let s = sources(trust, &l, &none, policy);
            black_box(identify::client(
                black_box(miss),
                None,
                Credential::None,
                &s,
                now,
            ))
        })
    });
    with_radius.sessions.store(Arc::new(sessions(&file)));
    c.bench_function("identify/5000 RADIUS sessions, asker signed in", |b| {
        b.iter(|| {
            let s = sources(trust, LeaseMap::empty(), &with_radius, policy);
            black_box(identify::client(
                black_box(hit),
                None,
                Credential::None,
                &s,
                now,
            ))
        })
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
