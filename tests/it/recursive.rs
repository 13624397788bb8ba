//! Recursive mode (issue 5) against an offline internet on loopback: a root, TLDs,
//! `co.uk.` and second-level zones, each on its own authoritative server at 127.0.0.x:53
//! (the zones are in `examples/internet/zones.rs`, shared with the unbound comparison).
//!
//! The internet is started once per test binary, on a runtime thread of its own that keeps
//! it alive: port 53 on an address can be bound only once, and tests run in parallel. Each
//! test starts its own Chaperone (own cache, own recursor) and uses names no other test
//! asks for, so what one authority has seen can be asserted per test.
//!
//! Needs root (or CAP_NET_BIND_SERVICE) for port 53, as CI has.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant};

use hickory_proto::op::{Header, HeaderCounts, Message, Metadata, ResponseCode};
use hickory_proto::rr::{Name, RData, RecordType};
use hickory_server::Server;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::Catalog;

use crate::support::*;

#[path = "../../examples/internet/zones.rs"]
#[allow(dead_code)]
mod zones;

/// Chaperone in recursive mode from the test root. The upstream budget is
/// 400 ms × 2 + 500 ms = 1.3 s (`upstream_deadline` in src/pipeline.rs), well inside the
/// test client's 2 s wait.
const CONFIG: &str = r#"
[server]
listen = ["127.0.0.1:0"]

[upstream]
mode = "recursive"
root_hints = ["127.0.0.10"]
timeout_ms = 400
attempts = 2

[cache]
serve_stale = {STALE}

[lists]
bundle = "lists.fstb"

[[lists.source]]
category = "games"
path = "games.txt"

[[network]]
cidrs = ["127.0.0.2/32"]
group = "pupils"

[[network]]
cidrs = ["127.0.0.3/32"]
group = "staff"

[group.pupils]
block = ["games"]

[group.staff]
block = []
"#;

/// Upstream budget of [`CONFIG`].
const BUDGET: Duration = Duration::from_millis(1300);
/// How long [`CONFIG`] waits for one authoritative server (`timeout_ms`).
const PER_SERVER: Duration = Duration::from_millis(400);

const GAMES: &str = "games.example.com\n";

/// A catalog that can be silenced: while muted it drops every question, as a name server
/// behind a dead link would.
struct Muteable {
    catalog: Catalog,
    muted: Arc<AtomicBool>,
}

#[async_trait::async_trait]
impl RequestHandler for Muteable {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        rh: R,
    ) -> ResponseInfo {
        if self.muted.load(Ordering::SeqCst) {
            return ResponseInfo::from(Header {
                metadata: Metadata::response_from_request(&request.metadata),
                counts: HeaderCounts::default(),
            });
        }
        self.catalog.handle_request::<R, T>(request, rh).await
    }
}

/// The running test internet.
struct Internet {
    /// The answering servers, by host name.
    authorities: Mutex<Vec<(&'static str, Authority)>>,
    /// flaky.org's server; it records nothing (no test asserts on it).
    _flaky: Mutex<Server<Muteable>>,
    flaky_muted: Arc<AtomicBool>,
    /// Bound and never read: the silent server.
    _silent: Vec<std::net::UdpSocket>,
}

impl Internet {
    async fn build() -> Internet {
        let mut authorities = Vec::new();
        let mut silent = Vec::new();
        let mut flaky = None;
        let flaky_muted = Arc::new(AtomicBool::new(false));
        for s in zones::servers() {
            let bind = SocketAddr::new(IpAddr::V4(s.ip), 53);
            match (s.behaviour, s.host) {
                (zones::Behaviour::Silent, _) => {
                    silent.push(std::net::UdpSocket::bind(bind).unwrap_or_else(|e| {
                        panic!(
                            "the recursion tests own {bind}, but it cannot be bound (in use?): {e}"
                        )
                    }));
                }
                (zones::Behaviour::Answer, "ns-flaky") => {
                    let mut catalog = Catalog::new();
                    for (origin, text) in &s.zones {
                        let (name, handler) = zone(origin, text);
                        catalog.upsert(name.into(), vec![handler]);
                    }
                    let mut server = Server::new(Muteable {
                        catalog,
                        muted: flaky_muted.clone(),
                    });
                    let (udp, tcp) = bind_udp_and_tcp(bind).await;
                    server.register_socket(udp);
                    server.register_listener(tcp, Duration::from_secs(5), 32);
                    flaky = Some(server);
                }
                (zones::Behaviour::Answer, host) => {
                    let zs: Vec<(&str, &str)> = s
                        .zones
                        .iter()
                        .map(|(o, t)| (o.as_str(), t.as_str()))
                        .collect();
                    authorities.push((host, authority(bind, &zs).await));
                }
            }
        }
        Internet {
            authorities: Mutex::new(authorities),
            _flaky: Mutex::new(flaky.expect("flaky.org is served")),
            flaky_muted,
            _silent: silent,
        }
    }

    /// Every question any answering server has seen for `name` or a name below it.
    fn questions_at_or_below(&self, name: &str) -> Vec<String> {
        let name = Name::from_ascii(name).unwrap();
        let mut out = Vec::new();
        for (host, a) in self.authorities.lock().unwrap().iter() {
            for q in a.seen() {
                let Some(qname) = q.split(' ').next() else {
                    continue;
                };
                if name.zone_of(&Name::from_ascii(qname).unwrap()) {
                    out.push(format!("{host}: {q}"));
                }
            }
        }
        out
    }

    /// The questions one server has seen.
    fn seen_by(&self, host: &str) -> Vec<String> {
        self.authorities
            .lock()
            .unwrap()
            .iter()
            .find(|(h, _)| *h == host)
            .map(|(_, a)| a.seen())
            .unwrap_or_default()
    }
}

static INTERNET: OnceLock<Internet> = OnceLock::new();

/// The test internet, started on first use and kept until the test binary exits.
fn internet() -> &'static Internet {
    INTERNET.get_or_init(|| {
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::Builder::new()
            .name("test-internet".to_owned())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .unwrap();
                rt.block_on(async move {
                    tx.send(Internet::build().await).unwrap();
                    std::future::pending::<()>().await
                })
            })
            .unwrap();
        rx.recv()
            .expect("the test internet starts (port 53 needs root or CAP_NET_BIND_SERVICE)")
    })
}

/// Mutes flaky.org's server until dropped.
struct Muted(&'static Internet);

impl Muted {
    fn flaky(net: &'static Internet) -> Self {
        net.flaky_muted.store(true, Ordering::SeqCst);
        Muted(net)
    }
}

impl Drop for Muted {
    fn drop(&mut self) {
        self.0.flaky_muted.store(false, Ordering::SeqCst);
    }
}

async fn chaperone(serve_stale: bool) -> (&'static Internet, Harness) {
    let net = internet();
    let config = CONFIG.replace("{STALE}", if serve_stale { "true" } else { "false" });
    // No forwarding target in recursive mode: the address is unused.
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let h = start(&config, unused, &[("games.txt", GAMES)], school_morning()).await;
    (net, h)
}

fn soa_owner(m: &Message) -> Option<String> {
    m.authorities.iter().find_map(|r| match r.data {
        RData::SOA(_) => Some(r.name.to_string()),
        _ => None,
    })
}

fn cname_targets(m: &Message) -> Vec<(String, String)> {
    m.answers
        .iter()
        .filter_map(|r| match &r.data {
            RData::CNAME(c) => Some((r.name.to_string(), c.0.to_string())),
            _ => None,
        })
        .collect()
}

#[tokio::test]
async fn resolves_through_three_delegations() {
    let (net, h) = chaperone(false).await;
    let staff = h.client("127.0.0.3");

    let a = staff.udp("portal.school.co.uk.", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError);
    assert_eq!(ips(&a), vec!["192.0.2.22".parse::<IpAddr>().unwrap()]);
    assert!(a.metadata.recursion_available);
    assert!(!a.metadata.authoritative);

    // Each level was asked in turn (QNAME minimisation: each parent only learns the next
    // label), and only the school's server saw the full question.
    assert!(
        net.seen_by("ns-root").iter().any(|q| q == "uk. NS"),
        "root: {:?}",
        net.seen_by("ns-root")
    );
    assert!(net.seen_by("ns-uk").iter().any(|q| q == "co.uk. NS"));
    assert!(
        net.seen_by("ns-couk")
            .iter()
            .any(|q| q == "school.co.uk. NS")
    );
    assert!(
        net.seen_by("ns-school")
            .iter()
            .any(|q| q == "portal.school.co.uk. A")
    );
    for upper in ["ns-root", "ns-uk", "ns-couk"] {
        assert!(
            !net.seen_by(upper)
                .iter()
                .any(|q| q.starts_with("portal.school.co.uk.")),
            "{upper} saw the full name: {:?}",
            net.seen_by(upper)
        );
    }

    // Other types and TCP through the same delegations.
    let mx = staff.tcp("mail.school.co.uk.", RecordType::MX).await;
    assert_eq!(rcode(&mx), ResponseCode::NoError);
    assert!(
        matches!(&mx.answers[0].data, RData::MX(m) if m.exchange.to_string() == "portal.school.co.uk.")
    );

    // The apex of a delegated zone.
    let apex = staff.udp("school.co.uk.", RecordType::A).await;
    assert_eq!(ips(&apex), vec!["192.0.2.21".parse::<IpAddr>().unwrap()]);

    // Second time from Chaperone's cache: the school's server is not asked again.
    let before = net
        .seen_by("ns-school")
        .iter()
        .filter(|q| *q == "portal.school.co.uk. A")
        .count();
    let again = staff.udp("portal.school.co.uk.", RecordType::A).await;
    assert_eq!(ips(&again), ips(&a));
    let after = net
        .seen_by("ns-school")
        .iter()
        .filter(|q| *q == "portal.school.co.uk. A")
        .count();
    assert_eq!(before, after);
    h.stop().await;
}

#[tokio::test]
async fn cname_into_other_zones_returns_the_chain() {
    let (_net, h) = chaperone(false).await;
    let staff = h.client("127.0.0.3");

    let a = staff.udp("www.school.co.uk.", RecordType::A).await;
    assert_eq!(rcode(&a), ResponseCode::NoError);
    assert_eq!(
        cname_targets(&a),
        vec![(
            "www.school.co.uk.".to_owned(),
            "www.example.com.".to_owned()
        )]
    );
    assert_eq!(ips(&a), vec!["192.0.2.10".parse::<IpAddr>().unwrap()]);
    let a_owner = a
        .answers
        .iter()
        .find(|r| r.record_type() == RecordType::A)
        .map(|r| r.name.to_string());
    assert_eq!(a_owner.as_deref(), Some("www.example.com."));

    // Two hops, across three zones under three TLDs.
    let v = staff.udp("video.school.co.uk.", RecordType::A).await;
    assert_eq!(rcode(&v), ResponseCode::NoError);
    assert_eq!(
        cname_targets(&v),
        vec![
            (
                "video.school.co.uk.".to_owned(),
                "media.example.com.".to_owned()
            ),
            (
                "media.example.com.".to_owned(),
                "cdn.charity.org.".to_owned()
            ),
        ]
    );
    assert_eq!(ips(&v), vec!["192.0.2.30".parse::<IpAddr>().unwrap()]);

    // AAAA follows the same CNAME.
    let six = staff.udp("www.school.co.uk.", RecordType::AAAA).await;
    assert_eq!(ips(&six), vec!["2001:db8::10".parse::<IpAddr>().unwrap()]);
    h.stop().await;
}

#[tokio::test]
async fn nxdomain_carries_the_soa_of_the_zone_that_said_so() {
    let (_net, h) = chaperone(false).await;
    let staff = h.client("127.0.0.3");
    for (name, zone) in [
        ("missing.school.co.uk.", "school.co.uk."),
        ("deep.missing.school.co.uk.", "school.co.uk."),
        ("nosuchschool.co.uk.", "co.uk."),
        ("nothing.charity.org.", "charity.org."),
        // A name under a TLD that does not exist (a bare single label never leaves the
        // site: it is answered locally, see `zones::reserved_names_are_answered_locally_and_never_reach_upstream`).
        ("www.no-such-tld.", "."),
    ] {
        let m = staff.udp(name, RecordType::A).await;
        assert_eq!(rcode(&m), ResponseCode::NXDomain, "{name}");
        assert!(m.answers.is_empty(), "{name}");
        assert_eq!(soa_owner(&m).as_deref(), Some(zone), "{name}: {m:?}");
    }
    // NODATA: the name exists, the type does not; the SOA still comes from the zone.
    let m = staff.udp("portal.school.co.uk.", RecordType::TXT).await;
    assert_eq!(rcode(&m), ResponseCode::NoError);
    assert!(m.answers.is_empty());
    assert_eq!(soa_owner(&m).as_deref(), Some("school.co.uk."));
    h.stop().await;
}

#[tokio::test]
async fn truncated_udp_answer_is_fetched_over_tcp() {
    let (net, h) = chaperone(false).await;
    let expected_len = zones::BIG_TXT_STRINGS * zones::BIG_TXT_LEN;

    // The authority itself truncates the RRset over UDP at a 1232-byte payload...
    let direct = Client::new("127.0.0.1", "127.0.0.22:53".parse().unwrap())
        .udp("big.charity.org.", RecordType::TXT)
        .await;
    assert!(
        direct.metadata.truncation,
        "the authority did not truncate: {direct:?}"
    );
    let asked_before = net
        .seen_by("ns-charity")
        .iter()
        .filter(|q| *q == "big.charity.org. TXT")
        .count();

    // ...so the recursor must have retried over TCP to hand Chaperone the whole RRset.
    let staff = h.client("127.0.0.3");
    let tcp = staff.tcp("big.charity.org.", RecordType::TXT).await;
    assert_eq!(rcode(&tcp), ResponseCode::NoError);
    assert!(!tcp.metadata.truncation);
    assert_eq!(tcp.answers.len(), zones::BIG_TXT_STRINGS);
    let total: usize = tcp
        .answers
        .iter()
        .map(|r| match &r.data {
            RData::TXT(t) => t.txt_data.iter().map(|s| s.len()).sum(),
            _ => 0,
        })
        .sum();
    assert_eq!(total, expected_len);
    let asked_after = net
        .seen_by("ns-charity")
        .iter()
        .filter(|q| *q == "big.charity.org. TXT")
        .count();
    assert!(
        asked_after >= asked_before + 2,
        "expected a UDP try and a TCP retry, saw {} questions",
        asked_after - asked_before
    );

    // A UDP client with a 1232-byte payload gets TC from Chaperone (from its cache now) and
    // can retry over TCP like any stub.
    let udp = staff.udp("big.charity.org.", RecordType::TXT).await;
    assert!(udp.metadata.truncation, "{udp:?}");
    h.stop().await;
}

#[tokio::test]
async fn silent_authority_gives_servfail_within_budget_and_others_still_resolve() {
    let (_net, h) = chaperone(false).await;
    let staff = h.client("127.0.0.3");

    let dns = h.dns();
    let started = Instant::now();
    let dead = tokio::spawn(async move {
        let c = Client::new("127.0.0.3", dns);
        let m = c.udp("www.dead.com.", RecordType::A).await;
        (m, started.elapsed())
    });

    // While that hangs on the silent server, other names are answered at once.
    tokio::time::sleep(Duration::from_millis(50)).await;
    let t = Instant::now();
    let ok = staff.udp("www.example.com.", RecordType::A).await;
    assert_eq!(ips(&ok), vec!["192.0.2.10".parse::<IpAddr>().unwrap()]);
    assert!(
        t.elapsed() < Duration::from_millis(800),
        "other names waited: {:?}",
        t.elapsed()
    );
    assert!(!dead.is_finished(), "the silent server answered?");

    // Each of the two attempts waits 400 ms for the one server of dead.com, then gives up:
    // SERVFAIL after about 800 ms, inside the 1.3 s budget.
    let (m, took) = dead.await.unwrap();
    assert_eq!(rcode(&m), ResponseCode::ServFail);
    assert!(
        took >= PER_SERVER * 2 - Duration::from_millis(50),
        "SERVFAIL before both attempts timed out: {took:?}"
    );
    assert!(
        took < BUDGET + Duration::from_millis(200),
        "SERVFAIL too late: {took:?}"
    );

    // And after: the server is still answering.
    let after = staff.udp("portal.school.co.uk.", RecordType::A).await;
    assert_eq!(rcode(&after), ResponseCode::NoError);
    h.stop().await;
}

#[tokio::test]
async fn serves_stale_when_the_authority_goes_silent() {
    let (net, h) = chaperone(true).await;
    let staff = h.client("127.0.0.3");

    let fresh = staff.udp("www.flaky.org.", RecordType::A).await;
    assert_eq!(ips(&fresh), vec!["192.0.2.50".parse::<IpAddr>().unwrap()]);
    assert_eq!(fresh.answers[0].ttl, 1);

    let _muted = Muted::flaky(net);
    // The zone's TTL is 1 s and the cache keeps `std::time::Instant`: wait it out (the one
    // sleep of this suite).
    tokio::time::sleep(Duration::from_millis(1500)).await;

    let started = Instant::now();
    let stale = staff.udp("www.flaky.org.", RecordType::A).await;
    let took = started.elapsed();
    assert_eq!(rcode(&stale), ResponseCode::NoError);
    assert_eq!(ips(&stale), vec!["192.0.2.50".parse::<IpAddr>().unwrap()]);
    // RFC 8767 §4: stale answers go out with a short TTL (30 s recommended).
    assert_eq!(stale.answers[0].ttl, 30);
    assert!(took < BUDGET + Duration::from_millis(500), "{took:?}");

    // A name never resolved before has nothing stale to give: SERVFAIL.
    let never = staff.udp("other.flaky.org.", RecordType::A).await;
    assert_eq!(rcode(&never), ResponseCode::ServFail);
    h.stop().await;
}

#[tokio::test]
async fn blocked_names_never_leave_the_resolver() {
    let (net, h) = chaperone(false).await;
    let pupil = h.client("127.0.0.2");
    let staff = h.client("127.0.0.3");

    for qtype in [RecordType::A, RecordType::AAAA, RecordType::TXT] {
        let m = pupil.udp("games.example.com.", qtype).await;
        assert_eq!(rcode(&m), ResponseCode::NXDomain, "{qtype}");
        let m = pupil.udp("level1.games.example.com.", qtype).await;
        assert_eq!(rcode(&m), ResponseCode::NXDomain, "{qtype}");
    }
    // A sibling in the same zone resolves for the same pupil: the recursion path works.
    let sibling = pupil.udp("puzzles.example.com.", RecordType::A).await;
    assert_eq!(ips(&sibling), vec!["192.0.2.67".parse::<IpAddr>().unwrap()]);

    let leaked = net.questions_at_or_below("games.example.com.");
    assert!(
        leaked.is_empty(),
        "blocked name left the resolver: {leaked:?}"
    );

    // Staff are not blocked: the name is then asked, and seen, as it should be.
    let m = staff.udp("games.example.com.", RecordType::A).await;
    assert_eq!(ips(&m), vec!["192.0.2.66".parse::<IpAddr>().unwrap()]);
    assert!(!net.questions_at_or_below("games.example.com.").is_empty());
    h.stop().await;
}

/// A zone delegated to a silent server and a live one still resolves, every time.
/// Regression test: hickory 0.26.3 waits 5 s for one server and demotes the live one each
/// time it answers a QNAME-minimisation probe with NODATA, so the silent server was always
/// asked first and the pipeline's budget (shorter than 5 s) ran out on every query, for
/// every fresh resolver (8 out of 8 before `PerServerTimeout`).
#[tokio::test]
async fn one_silent_name_server_of_two_is_passed_over() {
    internet();
    for round in 0..3 {
        let (_net, h) = chaperone(false).await;
        let staff = h.client("127.0.0.3");
        for name in ["www.halfdead.org.", "halfdead.org.", "portal.halfdead.org."] {
            let started = Instant::now();
            let m = staff.udp(name, RecordType::A).await;
            assert_eq!(
                rcode(&m),
                ResponseCode::NoError,
                "round {round}, {name}, after {:?}",
                started.elapsed()
            );
            assert!(!ips(&m).is_empty(), "round {round}, {name}");
            // At worst two waits for the silent server (hickory may ask it for the
            // QNAME-minimisation probe and again for the question), then the live one.
            let took = started.elapsed();
            assert!(
                took < PER_SERVER * 2 + Duration::from_millis(250),
                "round {round}, {name}: {took:?}"
            );
        }
        h.stop().await;
    }
}

/// With `dnssec = true` the recursor validates from the IANA root trust anchor, which the
/// test root (unsigned, on loopback) cannot chain to: everything it says is bogus, as a
/// forged root's answers would be, and must never reach a client. Regression test: the
/// recursor only labels records with their proof, and bogus answers used to be served.
/// (Validation of a properly signed tree is not tested here: the test internet is unsigned
/// and the trust anchor cannot be configured.)
#[tokio::test]
async fn dnssec_rejects_a_forged_root() {
    internet();
    let config = CONFIG
        .replace("{STALE}", "false")
        .replace("attempts = 2", "attempts = 2\ndnssec = true");
    let unused: SocketAddr = "127.0.0.1:9".parse().unwrap();
    let h = start(&config, unused, &[("games.txt", GAMES)], school_morning()).await;
    let staff = h.client("127.0.0.3");
    for (name, qtype) in [
        ("portal.school.co.uk.", RecordType::A),
        ("www.school.co.uk.", RecordType::A),
        ("missing.school.co.uk.", RecordType::A),
        ("portal.school.co.uk.", RecordType::TXT),
    ] {
        let started = Instant::now();
        let m = staff.udp(name, qtype).await;
        assert_eq!(rcode(&m), ResponseCode::ServFail, "{name} {qtype}: {m:?}");
        assert!(m.answers.is_empty(), "{name} {qtype}");
        assert!(!m.metadata.authentic_data);
        // Bogus is final: no second attempt, no waiting out the budget.
        assert!(started.elapsed() < PER_SERVER, "{name} {qtype}");
    }
    h.stop().await;
}
