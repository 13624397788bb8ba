//! The zones and the question list of the larger test internet: plain, computed data (no
//! randomness, no sockets), so every run, the test and the bench see the same tree.
//!
//! Layout (addresses on 127.0.1.0/24, port 53):
//! - the root `.` (127.0.1.1, `a.root-servers.net.`), 8 TLDs (`com net org io de info edu
//!   uk`, one server each, glue in the root) and `co.uk. ac.uk. org.uk.` (one server, glue
//!   in `uk.`);
//! - 10 hosting providers `dnsP.{net,com,org,io}.`, each on two servers (127.0.1.20–39)
//!   that serve the provider zone and every customer zone of the provider;
//! - 480 second-level zones `siteN.SUFFIX.` (48 per suffix) delegated in one of these ways:
//!   in-bailiwick name servers with glue; the provider's name servers (in another TLD: no
//!   glue, the resolver must resolve the name server first; in the same TLD: sibling glue);
//!   a good server next to a lame one that answers REFUSED (127.0.1.60) or an upward
//!   referral without AA (127.0.1.61); a good server next to a slow one (127.0.1.62,
//!   [`SLOW_MS`] per answer) or the slow one alone;
//! - 12 third-level zones `dept.siteN.ac.uk.` on another provider (a deeper cut);
//! - 100 CNAME chains of 2–4 hops, each hop in a zone under another suffix, some ending in
//!   a name that does not exist, some with an in-zone hop;
//! - addresses (A, AAAA), NXDOMAIN and NODATA names, deep names with empty non-terminals.
//!
//! 514 zones in all ([`zone_count`]); [`names`] lists every question the comparison asks.

use std::fmt::Write as _;
use std::net::Ipv4Addr;

/// The root server: the only root hint.
pub const ROOT: Ipv4Addr = Ipv4Addr::new(127, 0, 1, 1);
/// The root server's name (its address is glue in the root zone and data in `net.`).
pub const ROOT_NS: &str = "a.root-servers.net.";
/// How long the slow server waits before each answer, in milliseconds.
pub const SLOW_MS: u64 = 150;

/// The top-level domains and their server's last address byte.
const TLDS: [(&str, u8); 8] = [
    ("com", 2),
    ("net", 3),
    ("org", 4),
    ("io", 5),
    ("de", 6),
    ("info", 7),
    ("edu", 8),
    ("uk", 9),
];
/// Second-level registries under `uk.`, all on one server.
const UK_SUBS: [&str; 3] = ["co.uk", "ac.uk", "org.uk"];
const UK_SUBS_IP: u8 = 10;
/// Suffixes of the customer zones.
pub const SUFFIXES: [&str; 10] = [
    "com", "net", "org", "io", "de", "info", "edu", "co.uk", "ac.uk", "org.uk",
];
/// Customer zones per suffix.
pub const SITES_PER_SUFFIX: usize = 48;
/// Hosting providers; provider P's zone is `dnsP.PROVIDER_TLDS[P % 4].`.
pub const PROVIDERS: usize = 10;
const PROVIDER_TLDS: [&str; 4] = ["net", "com", "org", "io"];
const REFUSING_IP: u8 = 60;
const LAME_IP: u8 = 61;
const SLOW_IP: u8 = 62;
/// CNAME chains.
pub const CHAINS: usize = 100;

/// How a server behaves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Behaviour {
    /// Answer from its zones.
    Answer,
    /// Answer from its zones after [`SLOW_MS`].
    Slow,
    /// REFUSED to every question: delegated to, but serving nothing (a lame server).
    Refuse,
    /// NOERROR without AA and an upward referral to the root: the other kind of lame server.
    Lame,
}

/// One authoritative server.
#[derive(Debug, Clone)]
pub struct Server {
    /// A name for reports (its first name server name).
    pub host: String,
    /// Where it listens, port 53.
    pub ip: Ipv4Addr,
    /// (origin, zone text) of every zone it serves.
    pub zones: Vec<(String, String)>,
    /// How it answers.
    pub behaviour: Behaviour,
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(127, 0, 1, last)
}

fn provider_zone(p: usize) -> String {
    format!("dns{p}.{}.", PROVIDER_TLDS[p % 4])
}

fn provider_ips(p: usize) -> [Ipv4Addr; 2] {
    [ip(20 + 2 * p as u8), ip(21 + 2 * p as u8)]
}

/// How a customer zone is delegated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delegation {
    /// `ns1/ns2.<zone>` with glue in the parent.
    InBailiwick,
    /// The provider's `ns1` and `ns2`.
    Provider,
    /// The provider's `ns1` and its REFUSED-answering `ns3`.
    WithRefusing,
    /// The provider's `ns2` and its upward-referring `ns4`.
    WithLame,
    /// The provider's `ns1` and its slow `ns5`.
    WithSlow,
    /// The slow `ns5` alone.
    SlowOnly,
}

/// A customer zone `siteN.SUFFIX.`: index `z` runs over all of them, suffixes interleaved.
#[derive(Debug, Clone)]
struct Site {
    z: usize,
    origin: String,
    provider: usize,
    delegation: Delegation,
}

fn site(z: usize) -> Site {
    let suffix = SUFFIXES[z % SUFFIXES.len()];
    let n = z / SUFFIXES.len() + 1;
    let delegation = match z % 12 {
        0 | 6 => Delegation::InBailiwick,
        2 | 8 => Delegation::WithRefusing,
        4 => Delegation::WithLame,
        5 if z % 24 == 5 => Delegation::WithSlow,
        10 if z % 48 == 10 => Delegation::SlowOnly,
        _ => Delegation::Provider,
    };
    Site {
        z,
        origin: format!("site{n}.{suffix}."),
        provider: (z * 3 + z / 10) % PROVIDERS,
        delegation,
    }
}

fn sites() -> impl Iterator<Item = Site> {
    (0..SUFFIXES.len() * SITES_PER_SUFFIX).map(site)
}

/// The name servers of a site, and the glue (name, address) its parent holds.
fn site_ns(s: &Site) -> (Vec<String>, Vec<(String, Ipv4Addr)>) {
    let pz = provider_zone(s.provider);
    let [a, b] = provider_ips(s.provider);
    match s.delegation {
        Delegation::InBailiwick => {
            let (n1, n2) = (format!("ns1.{}", s.origin), format!("ns2.{}", s.origin));
            (vec![n1.clone(), n2.clone()], vec![(n1, a), (n2, b)])
        }
        Delegation::Provider => (vec![format!("ns1.{pz}"), format!("ns2.{pz}")], vec![]),
        Delegation::WithRefusing => (vec![format!("ns3.{pz}"), format!("ns1.{pz}")], vec![]),
        Delegation::WithLame => (vec![format!("ns4.{pz}"), format!("ns2.{pz}")], vec![]),
        Delegation::WithSlow => (vec![format!("ns5.{pz}"), format!("ns1.{pz}")], vec![]),
        Delegation::SlowOnly => (vec![format!("ns5.{pz}")], vec![]),
    }
}

/// `dept.` below some `ac.uk.` sites: a third-level cut, hosted by the next provider.
fn has_dept(s: &Site) -> bool {
    s.origin.ends_with(".ac.uk.") && s.z % 40 == 8
}

/// SOA and apex NS lines. The SOA minimum (negative TTL) is 300 s.
fn head(origin: &str, ns: &[String], ttl: u32) -> String {
    let mail = if origin == "." { "nic.net." } else { origin };
    let mut z = format!(
        "$ORIGIN {origin}\n$TTL {ttl}\n@ IN SOA {} hostmaster.{mail} 2026112901 3600 600 86400 300\n",
        ns[0]
    );
    for n in ns {
        let _ = writeln!(z, "@ IN NS {n}");
    }
    z
}

fn delegate(z: &mut String, child: &str, ns: &[String], glue: &[(String, Ipv4Addr)]) {
    for n in ns {
        let _ = writeln!(z, "{child} IN NS {n}");
    }
    for (n, a) in glue {
        let _ = writeln!(z, "{n} IN A {a}");
    }
}

/// Address data of site `z`: `198.18+HI.LO.K`, in the benchmarking range (RFC 2544), which
/// Chaperone's rebinding filter lets through as it would a public address.
fn v4(z: usize, k: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18 + ((z >> 8) & 1) as u8, (z & 0xff) as u8, k)
}

fn root_zone() -> String {
    let mut z = head(".", &[ROOT_NS.to_owned()], 86400);
    let _ = writeln!(z, "{ROOT_NS} IN A {ROOT}");
    for (tld, last) in TLDS {
        let ns = format!("a.nic.{tld}.");
        let glue = [(ns.clone(), ip(last))];
        delegate(&mut z, &format!("{tld}."), std::slice::from_ref(&ns), &glue);
    }
    z
}

fn tld_zone(tld: &str, last: u8) -> String {
    let mut z = head(&format!("{tld}."), &[format!("a.nic.{tld}.")], 86400);
    let _ = writeln!(z, "a.nic IN A {}", ip(last));
    if tld == "net" {
        let _ = writeln!(z, "{ROOT_NS} IN A {ROOT}");
    }
    if tld == "uk" {
        let ns = "b.nic.uk.".to_owned();
        let _ = writeln!(z, "b.nic IN A {}", ip(UK_SUBS_IP));
        for sub in UK_SUBS {
            delegate(&mut z, &format!("{sub}."), std::slice::from_ref(&ns), &[]);
        }
    }
    for p in 0..PROVIDERS {
        let pz = provider_zone(p);
        if pz.ends_with(&format!(".{tld}.")) {
            let [a, b] = provider_ips(p);
            let (n1, n2) = (format!("ns1.{pz}"), format!("ns2.{pz}"));
            delegate(&mut z, &pz, &[n1.clone(), n2.clone()], &[(n1, a), (n2, b)]);
        }
    }
    children(&mut z, tld);
    z
}

/// Delegations of the customer zones directly under `suffix`.
fn children(z: &mut String, suffix: &str) {
    for s in sites().filter(|s| {
        s.origin.strip_prefix("site").is_some_and(|r| {
            r.split_once('.')
                .is_some_and(|(_, rest)| rest == format!("{suffix}."))
        })
    }) {
        let (ns, glue) = site_ns(&s);
        delegate(z, &s.origin, &ns, &glue);
    }
}

fn uk_sub_zone(sub: &str) -> String {
    let mut z = head(&format!("{sub}."), &["b.nic.uk.".to_owned()], 86400);
    children(&mut z, sub);
    z
}

fn provider_zone_text(p: usize) -> String {
    let pz = provider_zone(p);
    let (n1, n2) = (format!("ns1.{pz}"), format!("ns2.{pz}"));
    let mut z = head(&pz, &[n1, n2], 3600);
    let [a, b] = provider_ips(p);
    let _ = writeln!(
        z,
        "ns1 IN A {a}\nns2 IN A {b}\nns3 IN A {}\nns4 IN A {}\nns5 IN A {}\nwww IN A 192.0.2.{}",
        ip(REFUSING_IP),
        ip(LAME_IP),
        ip(SLOW_IP),
        p + 1
    );
    z
}

/// One hop of chain `i`: (site index of its zone, owner name).
fn chain_hop(i: usize, j: usize) -> (usize, String) {
    let total = SUFFIXES.len() * SITES_PER_SUFFIX;
    // An in-zone hop for every tenth chain: hop 1 stays in hop 0's zone.
    let j_zone = if i % 10 == 8 && j == 1 { 0 } else { j };
    let z = (i * 37 + j_zone * 131 + 3) % total;
    (z, format!("c{i}-{j}.{}", site(z).origin))
}

fn chain_hops(i: usize) -> usize {
    2 + i % 3
}

/// The records chain `i` puts in site `z`'s zone.
fn chain_records(z: usize, out: &mut String) {
    for i in 0..CHAINS {
        let hops = chain_hops(i);
        for j in 0..=hops {
            let (hz, owner) = chain_hop(i, j);
            if hz != z {
                continue;
            }
            if j < hops {
                let _ = writeln!(out, "{owner} IN CNAME {}", chain_hop(i, j + 1).1);
            } else if i % 10 != 7 {
                // Chains 7, 17, … end in a name that does not exist: NXDOMAIN after CNAMEs.
                let _ = writeln!(out, "{owner} IN A 203.0.113.{}", i + 1);
                if i % 2 == 0 {
                    let _ = writeln!(out, "{owner} IN AAAA 2001:db8:c::{i:x}");
                }
            }
        }
    }
}

fn site_zone(s: &Site) -> String {
    let (ns, glue) = site_ns(s);
    let mut z = head(&s.origin, &ns, 3600);
    for (n, a) in &glue {
        let _ = writeln!(z, "{n} IN A {a}");
    }
    let zi = s.z;
    let _ = writeln!(z, "@ IN A {}\nwww IN A {}", v4(zi, 1), v4(zi, 2));
    if zi.is_multiple_of(2) {
        let _ = writeln!(z, "www IN AAAA 2001:db8:{zi:x}::2");
    }
    if zi % 5 == 1 {
        let _ = writeln!(z, "@ IN MX 10 mail\nmail IN A {}", v4(zi, 3));
    }
    if zi % 7 == 3 {
        let _ = writeln!(z, "@ IN TXT \"v=spf1 -all\"");
    }
    if zi % 10 == 3 {
        // a.b.c: b.c and c exist only as empty non-terminals.
        let _ = writeln!(z, "a.b.c IN A {}", v4(zi, 4));
        if zi % 20 == 3 {
            let _ = writeln!(z, "a.b.c IN AAAA 2001:db8:{zi:x}::4");
        }
    }
    if has_dept(s) {
        let q = (s.provider + 1) % PROVIDERS;
        let pz = provider_zone(q);
        delegate(
            &mut z,
            "dept",
            &[format!("ns1.{pz}"), format!("ns2.{pz}")],
            &[],
        );
    }
    chain_records(zi, &mut z);
    z
}

fn dept_zone(s: &Site) -> (String, String) {
    let origin = format!("dept.{}", s.origin);
    let pz = provider_zone((s.provider + 1) % PROVIDERS);
    let mut z = head(&origin, &[format!("ns1.{pz}"), format!("ns2.{pz}")], 3600);
    let _ = writeln!(
        z,
        "@ IN A {}\nwww IN A {}\na.b IN A {}",
        v4(s.z, 5),
        v4(s.z, 6),
        v4(s.z, 7)
    );
    (origin, z)
}

/// Every server of the larger test internet, with its zones.
pub fn servers() -> Vec<Server> {
    let mut out = vec![Server {
        host: ROOT_NS.to_owned(),
        ip: ROOT,
        zones: vec![(".".to_owned(), root_zone())],
        behaviour: Behaviour::Answer,
    }];
    for (tld, last) in TLDS {
        out.push(Server {
            host: format!("a.nic.{tld}."),
            ip: ip(last),
            zones: vec![(format!("{tld}."), tld_zone(tld, last))],
            behaviour: Behaviour::Answer,
        });
    }
    out.push(Server {
        host: "b.nic.uk.".to_owned(),
        ip: ip(UK_SUBS_IP),
        zones: UK_SUBS
            .iter()
            .map(|s| (format!("{s}."), uk_sub_zone(s)))
            .collect(),
        behaviour: Behaviour::Answer,
    });
    let mut hosted: Vec<Vec<(String, String)>> = (0..PROVIDERS)
        .map(|p| vec![(provider_zone(p), provider_zone_text(p))])
        .collect();
    let mut slow = Vec::new();
    for s in sites() {
        let zone = (s.origin.clone(), site_zone(&s));
        match s.delegation {
            Delegation::SlowOnly => slow.push(zone),
            Delegation::WithSlow => {
                slow.push(zone.clone());
                hosted[s.provider].push(zone);
            }
            _ => hosted[s.provider].push(zone),
        }
        if has_dept(&s) {
            hosted[(s.provider + 1) % PROVIDERS].push(dept_zone(&s));
        }
    }
    for (p, zones) in hosted.into_iter().enumerate() {
        let pz = provider_zone(p);
        for (k, a) in provider_ips(p).into_iter().enumerate() {
            out.push(Server {
                host: format!("ns{}.{pz}", k + 1),
                ip: a,
                zones: zones.clone(),
                behaviour: Behaviour::Answer,
            });
        }
    }
    for (last, host, behaviour, zones) in [
        (REFUSING_IP, "refusing", Behaviour::Refuse, Vec::new()),
        (LAME_IP, "lame", Behaviour::Lame, Vec::new()),
        (SLOW_IP, "slow", Behaviour::Slow, slow),
    ] {
        out.push(Server {
            host: host.to_owned(),
            ip: ip(last),
            zones,
            behaviour,
        });
    }
    out
}

/// How many distinct zones the internet serves.
pub fn zone_count() -> usize {
    let mut origins: Vec<String> = servers()
        .into_iter()
        .flat_map(|s| s.zones.into_iter().map(|(o, _)| o))
        .collect();
    origins.sort();
    origins.dedup();
    origins.len()
}

/// Every question of the comparison, as (name, type), in the order a cold pass asks them:
/// zone by zone, so the first name of each zone walks its delegation.
pub fn names() -> Vec<(String, &'static str)> {
    let mut out: Vec<(String, &'static str)> = Vec::new();
    let mut push = |n: String, t: &'static str| out.push((n, t));
    for s in sites() {
        let (o, zi) = (&s.origin, s.z);
        push(format!("www.{o}"), "A");
        if zi % 3 == 0 {
            push(format!("www.{o}"), "AAAA"); // an answer for even zones, NODATA for odd
        }
        if zi % 5 == 0 {
            push(o.clone(), "A");
        }
        if zi % 4 == 1 {
            push(format!("nx{zi}.{o}"), "A"); // NXDOMAIN
        }
        if zi % 5 == 1 {
            push(o.clone(), "MX");
        }
        if zi % 7 == 2 {
            push(format!("www.{o}"), "TXT"); // NODATA
        }
        if zi % 7 == 3 {
            push(o.clone(), "TXT");
        }
        if zi % 10 == 3 {
            push(format!("a.b.c.{o}"), "A");
            push(format!("b.c.{o}"), "A"); // an empty non-terminal: NODATA
            push(format!("x.b.c.{o}"), "A"); // NXDOMAIN below an empty non-terminal
            if zi % 20 == 3 {
                push(format!("a.b.c.{o}"), "AAAA");
            }
        }
        if has_dept(&s) {
            push(format!("www.dept.{o}"), "A");
            push(format!("a.b.dept.{o}"), "A");
            push(format!("b.dept.{o}"), "A");
            push(format!("nx.dept.{o}"), "A");
        }
        if zi % 4 == 0 && zi / 4 < CHAINS {
            let i = zi / 4;
            let first = chain_hop(i, 0).1;
            push(first.clone(), "A");
            if i % 4 == 0 {
                push(first, "AAAA");
            }
        }
        if zi % 50 == 7 {
            let p = zi % PROVIDERS;
            // Not the name servers' own addresses: they are on loopback, which Chaperone's
            // rebinding filter rightly strips from answers.
            push(format!("www.{}", provider_zone(p)), "A");
        }
    }
    for k in 0..4 {
        push(format!("www.nosuchsite{k}.{}.", SUFFIXES[k * 3]), "A"); // NXDOMAIN from the registry
    }
    push("www.example.nosuchtld.".to_owned(), "A"); // NXDOMAIN from the root
    out
}
