//! The zones of the offline test internet: a root, TLDs, `co.uk.` and second-level zones,
//! each level on its own authoritative server at 127.0.0.x port 53 (hickory's recursor only
//! ever asks port 53).
//!
//! Used, by `#[path]`, by the recursive-mode integration tests (`tests/it/recursive.rs`).
//! The larger internet of `world/` (127.0.1.0/24) is the one `examples/test_internet.rs`,
//! `benches/recursion.sh` and the unbound comparison use. It is plain data: no sockets here.
//!
//! hickory's authoritative server sends referrals without glue (hickory-dns PR #3978 is the
//! upstream fix), so an in-bailiwick name server such as `ns1.school.co.uk.` would be
//! unreachable. Every name server host is therefore named under `nic.`, which the root zone
//! serves itself and never delegates: any NS address is then one question to the root away.
//!
//! Addresses 127.0.0.10–127.0.0.30 only: the other integration tests use 127.0.0.1–9 as
//! clients, and port 53 on one address can be bound once per machine.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The root server: the only root hint.
pub const ROOT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 10);

/// Second-level zones per suffix (`siteN.com.`, `siteN.org.`, `siteN.co.uk.`, N from 1)
/// served for the latency comparison: distinct zones, so a cold lookup of `www.siteN...`
/// really walks the delegation instead of reusing one zone's cached name servers.
pub const BENCH_SITES: usize = 20;

/// Suffixes of the bench zones.
pub const BENCH_SUFFIXES: [&str; 3] = ["com", "org", "co.uk"];

/// Size of each string of `big.charity.org. TXT`, and how many there are: about 1.8 kB in
/// all, more than the 1232-byte EDNS payload, so a UDP answer must be truncated.
pub const BIG_TXT_STRINGS: usize = 9;
/// Length of each string of the big TXT RRset.
pub const BIG_TXT_LEN: usize = 200;

/// How a server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer from its zones over UDP and TCP.
    Answer,
    /// A UDP socket is bound and never replies; nothing listens on TCP (an unreachable,
    /// firewalled name server).
    Silent,
}

/// One authoritative server of the test internet.
#[derive(Debug, Clone)]
pub struct Server {
    /// Its host name under `nic.` (without the `.nic.`).
    pub host: &'static str,
    /// Where it listens, port 53.
    pub ip: Ipv4Addr,
    /// (origin, zone text) of every zone it serves.
    pub zones: Vec<(String, String)>,
    /// Answering or silent.
    pub behaviour: Behaviour,
}

/// Name server hosts: (host under `nic.`, address).
const HOSTS: [(&str, [u8; 4]); 11] = [
    ("ns-root", [127, 0, 0, 10]),
    ("ns-com", [127, 0, 0, 11]),
    ("ns-uk", [127, 0, 0, 12]),
    ("ns-org", [127, 0, 0, 13]),
    ("ns-couk", [127, 0, 0, 14]),
    ("ns-example", [127, 0, 0, 20]),
    ("ns-school", [127, 0, 0, 21]),
    ("ns-charity", [127, 0, 0, 22]),
    ("ns-flaky", [127, 0, 0, 23]),
    ("ns-dead", [127, 0, 0, 24]),
    ("ns-bench", [127, 0, 0, 30]),
];

fn ip_of(host: &str) -> Ipv4Addr {
    HOSTS
        .iter()
        .find(|(h, _)| *h == host)
        .map(|(_, ip)| Ipv4Addr::from(*ip))
        .unwrap_or_else(|| panic!("no host {host} in the test internet"))
}

/// SOA and NS lines every zone starts with. `ttl` is the zone's default TTL and its
/// negative-caching TTL (SOA minimum).
fn head(origin: &str, ns_host: &str, ttl: u32) -> String {
    format!(
        "$ORIGIN {origin}\n$TTL {ttl}\n\
         @ IN SOA {ns_host}.nic. hostmaster.nic. 2026112201 3600 600 86400 {ttl}\n\
         @ IN NS {ns_host}.nic.\n"
    )
}

/// The root zone: delegates the TLDs and holds every name server's address under the
/// undelegated `nic.`.
pub fn root_zone() -> String {
    let mut z = head(".", "ns-root", 86400);
    for (tld, host) in [("com.", "ns-com"), ("uk.", "ns-uk"), ("org.", "ns-org")] {
        let _ = writeln!(z, "{tld} IN NS {host}.nic.");
    }
    for (host, ip) in HOSTS {
        let _ = writeln!(z, "{host}.nic. IN A {}", Ipv4Addr::from(ip));
    }
    z
}

fn bench_delegations(z: &mut String, suffix: &str) {
    for n in 1..=BENCH_SITES {
        let _ = writeln!(z, "site{n}.{suffix}. IN NS ns-bench.nic.");
    }
}

/// `com.`: example.com, the silent dead.com, and the bench zones.
pub fn com_zone() -> String {
    let mut z = head("com.", "ns-com", 86400);
    z.push_str("example.com. IN NS ns-example.nic.\n");
    z.push_str("dead.com. IN NS ns-dead.nic.\n");
    bench_delegations(&mut z, "com");
    z
}

/// `uk.`: delegates co.uk. (three levels down to a school).
pub fn uk_zone() -> String {
    let mut z = head("uk.", "ns-uk", 86400);
    z.push_str("co.uk. IN NS ns-couk.nic.\n");
    z
}

/// `co.uk.`: the school and the bench zones.
pub fn co_uk_zone() -> String {
    let mut z = head("co.uk.", "ns-couk", 86400);
    z.push_str("school.co.uk. IN NS ns-school.nic.\n");
    bench_delegations(&mut z, "co.uk");
    z
}

/// `org.`: charity.org, flaky.org (the serve-stale test silences it) and the bench zones.
pub fn org_zone() -> String {
    let mut z = head("org.", "ns-org", 86400);
    z.push_str("charity.org. IN NS ns-charity.nic.\n");
    z.push_str("flaky.org. IN NS ns-flaky.nic.\n");
    z.push_str("halfdead.org. IN NS ns-dead.nic.\nhalfdead.org. IN NS ns-charity.nic.\n");
    bench_delegations(&mut z, "org");
    z
}

/// `example.com.`: a CDN-like target of the school's CNAMEs.
pub fn example_zone() -> String {
    let mut z = head("example.com.", "ns-example", 300);
    z.push_str(
        "@ IN A 192.0.2.10\n\
         www IN A 192.0.2.10\n\
         www IN AAAA 2001:db8::10\n\
         media IN CNAME cdn.charity.org.\n\
         games IN A 192.0.2.66\n\
         puzzles IN A 192.0.2.67\n",
    );
    z
}

/// `school.co.uk.`: three delegations below the root, CNAMEs into other zones.
pub fn school_zone() -> String {
    let mut z = head("school.co.uk.", "ns-school", 300);
    z.push_str(
        "@ IN A 192.0.2.21\n\
         portal IN A 192.0.2.22\n\
         www IN CNAME www.example.com.\n\
         video IN CNAME media.example.com.\n\
         mail IN MX 10 portal.school.co.uk.\n",
    );
    z
}

/// `charity.org.`: a CNAME target and an RRset too big for one UDP answer.
pub fn charity_zone() -> String {
    let mut z = head("charity.org.", "ns-charity", 300);
    z.push_str("cdn IN A 192.0.2.30\n");
    for i in 0..BIG_TXT_STRINGS {
        let fill = char::from(b'a' + i as u8).to_string().repeat(BIG_TXT_LEN);
        let _ = writeln!(z, "big IN TXT \"{fill}\"");
    }
    z
}

/// `halfdead.org.`: delegated to two servers, one of them silent (a lame or unreachable
/// name server, common on the real internet). Served by charity.org's server.
pub fn halfdead_zone() -> String {
    let mut z = head("halfdead.org.", "ns-charity", 300);
    z.push_str(
        "@ IN NS ns-dead.nic.\n@ IN A 192.0.2.40\nwww IN A 192.0.2.41\nportal IN A 192.0.2.42\n",
    );
    z
}

/// `flaky.org.`: one-second TTLs, so a cached answer expires during a test.
pub fn flaky_zone() -> String {
    let mut z = head("flaky.org.", "ns-flaky", 1);
    z.push_str("www IN A 192.0.2.50\nother IN A 192.0.2.51\n");
    z
}

/// A bench zone `siteN.SUFFIX.`: `www` and the apex have addresses.
pub fn bench_zone(origin: &str, n: usize) -> String {
    let mut z = head(origin, "ns-bench", 3600);
    let _ = writeln!(
        z,
        "@ IN A 198.51.100.{n}\nwww IN A 198.51.100.{n}\nwww IN AAAA 2001:db8::{n}"
    );
    z
}

/// The bench names, `www.siteN.SUFFIX.`, interleaving suffixes.
pub fn bench_names() -> Vec<String> {
    let mut out = Vec::new();
    for n in 1..=BENCH_SITES {
        for s in BENCH_SUFFIXES {
            out.push(format!("www.site{n}.{s}."));
        }
    }
    out
}

/// Every server of the test internet.
pub fn servers() -> Vec<Server> {
    let one = |host: &'static str, origin: &str, text: String| Server {
        host,
        ip: ip_of(host),
        zones: vec![(origin.to_owned(), text)],
        behaviour: Behaviour::Answer,
    };
    let mut bench = Vec::new();
    for s in BENCH_SUFFIXES {
        for n in 1..=BENCH_SITES {
            let origin = format!("site{n}.{s}.");
            let text = bench_zone(&origin, n);
            bench.push((origin, text));
        }
    }
    vec![
        one("ns-root", ".", root_zone()),
        one("ns-com", "com.", com_zone()),
        one("ns-uk", "uk.", uk_zone()),
        one("ns-org", "org.", org_zone()),
        one("ns-couk", "co.uk.", co_uk_zone()),
        one("ns-example", "example.com.", example_zone()),
        one("ns-school", "school.co.uk.", school_zone()),
        Server {
            host: "ns-charity",
            ip: ip_of("ns-charity"),
            zones: vec![
                ("charity.org.".to_owned(), charity_zone()),
                ("halfdead.org.".to_owned(), halfdead_zone()),
            ],
            behaviour: Behaviour::Answer,
        },
        one("ns-flaky", "flaky.org.", flaky_zone()),
        Server {
            host: "ns-dead",
            ip: ip_of("ns-dead"),
            zones: Vec::new(),
            behaviour: Behaviour::Silent,
        },
        Server {
            host: "ns-bench",
            ip: ip_of("ns-bench"),
            zones: bench,
            behaviour: Behaviour::Answer,
        },
    ]
}
