//! Serving the larger test internet: one hickory `Server` (UDP and TCP, truncation by the
//! client's EDNS payload) per address, answering from zones held in memory.
//!
//! The answers are assembled here rather than by hickory's `Catalog`, because the catalog
//! sends referrals without glue (hickory-dns PR #3978) and so cannot serve an in-bailiwick
//! delegation; the zone text is still parsed by hickory's zone-file parser. What a server
//! says follows RFC 1034 §4.3.2: a referral (no AA, NS in authority, glue in additional)
//! below a cut, CNAMEs chased inside the zone only, NXDOMAIN and NODATA with the zone's SOA,
//! empty non-terminals as NODATA, REFUSED outside its zones.
//!
//! Every server counts the questions it receives, so a test or a bench can tell how much
//! work a resolver made for the authorities.

use std::collections::{HashMap, HashSet};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use anyhow::Context;
use hickory_proto::op::{Edns, Header, HeaderCounts, Metadata, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_server::Server as DnsServer;
use hickory_server::net::runtime::Time;
use hickory_server::server::{Request, RequestHandler, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponseBuilder;

use super::data::{Behaviour, ROOT, ROOT_NS, SLOW_MS, Server};

/// Most CNAMEs chased inside one zone for one answer.
const MAX_IN_ZONE_CNAMES: usize = 8;

/// One zone in memory.
struct Zone {
    origin: Name,
    records: HashMap<(Name, RecordType), Vec<Record>>,
    /// Every owner name and each of its ancestors down to the origin (empty non-terminals).
    exists: HashSet<Name>,
    /// Owners of NS records other than the apex: the zone cuts.
    cuts: HashSet<Name>,
}

impl Zone {
    fn parse(origin: &str, text: &str) -> anyhow::Result<Zone> {
        let origin = Name::from_ascii(origin)?;
        let (origin, sets) =
            hickory_proto::serialize::txt::Parser::new(text, None, Some(origin.clone()))
                .parse()
                .with_context(|| format!("zone {origin}"))?;
        let mut zone = Zone {
            origin: origin.clone(),
            records: HashMap::new(),
            exists: HashSet::new(),
            cuts: HashSet::new(),
        };
        for set in sets.values() {
            let name = set.name().to_lowercase();
            if set.record_type() == RecordType::NS && name != origin {
                zone.cuts.insert(name.clone());
            }
            let mut up = name.clone();
            while origin.zone_of(&up) && zone.exists.insert(up.clone()) && up != origin {
                up = up.base_name();
            }
            zone.records
                .entry((name, set.record_type()))
                .or_default()
                .extend(set.records_without_rrsigs().cloned());
        }
        Ok(zone)
    }

    fn get(&self, name: &Name, t: RecordType) -> &[Record] {
        self.records
            .get(&(name.clone(), t))
            .map(Vec::as_slice)
            .unwrap_or(&[])
    }

    /// The highest cut at or above `name` (below the apex), if any.
    fn cut_for(&self, name: &Name) -> Option<Name> {
        let depth = self.origin.num_labels();
        (depth + 1..=name.num_labels())
            .map(|n| name.trim_to(n as usize))
            .find(|n| self.cuts.contains(n))
    }

    fn soa(&self) -> Vec<Record> {
        self.get(&self.origin, RecordType::SOA).to_vec()
    }

    /// Addresses held in this zone for each name server of `ns` (glue).
    fn glue(&self, ns: &[Record]) -> Vec<Record> {
        let mut out = Vec::new();
        for r in ns {
            if let RData::NS(target) = &r.data {
                let t = target.0.to_lowercase();
                out.extend_from_slice(self.get(&t, RecordType::A));
                out.extend_from_slice(self.get(&t, RecordType::AAAA));
            }
        }
        out
    }

    /// The answer to (`qname`, `qtype`) from this zone.
    fn answer(&self, qname: &Name, qtype: RecordType) -> Answer {
        let mut a = Answer {
            authoritative: true,
            ..Answer::default()
        };
        let mut name = qname.clone();
        for _ in 0..=MAX_IN_ZONE_CNAMES {
            if let Some(cut) = self.cut_for(&name) {
                // A referral; after a CNAME the answer so far stands and the resolver follows.
                if a.answers.is_empty() {
                    a.authoritative = false;
                    a.authorities = self.get(&cut, RecordType::NS).to_vec();
                    a.additionals = self.glue(&a.authorities);
                }
                return a;
            }
            let direct = self.get(&name, qtype);
            if !direct.is_empty() {
                a.answers.extend_from_slice(direct);
                return a;
            }
            let cname = self.get(&name, RecordType::CNAME);
            match cname.first().map(|r| &r.data) {
                Some(RData::CNAME(target)) if qtype != RecordType::CNAME => {
                    a.answers.extend_from_slice(cname);
                    let target = target.0.to_lowercase();
                    if !self.origin.zone_of(&target) {
                        return a; // out of this zone: the resolver follows
                    }
                    name = target;
                }
                _ => {
                    if !self.exists.contains(&name) {
                        a.rcode = ResponseCode::NXDomain;
                    }
                    a.authorities = self.soa();
                    return a;
                }
            }
        }
        a
    }
}

/// What a server puts in its response.
#[derive(Default)]
struct Answer {
    rcode: ResponseCode,
    authoritative: bool,
    answers: Vec<Record>,
    authorities: Vec<Record>,
    additionals: Vec<Record>,
}

/// One authoritative server: its zones, how it behaves, and its question counter.
struct Authority {
    zones: Vec<Zone>,
    behaviour: Behaviour,
    questions: Arc<AtomicU64>,
}

impl Authority {
    fn respond(&self, qname: &Name, qtype: RecordType) -> Answer {
        match self.behaviour {
            Behaviour::Refuse => refused(),
            Behaviour::Lame => upward_referral(),
            Behaviour::Answer | Behaviour::Slow => {
                let qname = qname.to_lowercase();
                // The deepest zone this server holds that contains the name.
                match self
                    .zones
                    .iter()
                    .filter(|z| z.origin.zone_of(&qname))
                    .max_by_key(|z| z.origin.num_labels())
                {
                    Some(z) => z.answer(&qname, qtype),
                    None => refused(),
                }
            }
        }
    }
}

fn refused() -> Answer {
    Answer {
        rcode: ResponseCode::Refused,
        ..Answer::default()
    }
}

/// NOERROR, no AA, the root's NS in authority: a server that has forgotten the zone.
fn upward_referral() -> Answer {
    let root_ns = Name::from_ascii(ROOT_NS).unwrap_or_else(|_| Name::root());
    Answer {
        authorities: vec![Record::from_rdata(
            Name::root(),
            86400,
            RData::NS(hickory_proto::rr::rdata::NS(root_ns.clone())),
        )],
        additionals: vec![Record::from_rdata(
            root_ns,
            86400,
            RData::A(hickory_proto::rr::rdata::A(ROOT)),
        )],
        ..Answer::default()
    }
}

#[async_trait::async_trait]
impl RequestHandler for Authority {
    async fn handle_request<R: ResponseHandler, T: Time>(
        &self,
        request: &Request,
        mut rh: R,
    ) -> ResponseInfo {
        self.questions.fetch_add(1, Ordering::Relaxed);
        if self.behaviour == Behaviour::Slow {
            tokio::time::sleep(Duration::from_millis(SLOW_MS)).await;
        }
        let answer = match request.queries.queries().first() {
            Some(q) => self.respond(q.original().name(), q.query_type()),
            None => Answer {
                rcode: ResponseCode::FormErr,
                ..Answer::default()
            },
        };
        let edns = request.edns.as_ref().map(|e| {
            let mut out = Edns::new();
            out.set_max_payload(e.max_payload().max(512));
            out
        });
        let mut meta = Metadata::response_from_request(&request.metadata);
        meta.authoritative = answer.authoritative;
        meta.response_code = answer.rcode;
        let response = MessageResponseBuilder::new(&request.queries, edns.as_ref()).build(
            meta,
            answer.answers.iter(),
            answer.authorities.iter(),
            std::iter::empty(),
            answer.additionals.iter(),
        );
        match rh.send_response(response).await {
            Ok(info) => info,
            Err(_) => ResponseInfo::from(Header {
                metadata: meta,
                counts: HeaderCounts::default(),
            }),
        }
    }
}

/// The running internet: dropping it stops nothing (its servers live on the runtime that
/// started them); [`Running::shutdown`] stops them.
pub struct Running {
    servers: Vec<DnsServer<Authority>>,
    /// (host, address, questions so far) of every server.
    pub counters: Vec<(String, IpAddr, Arc<AtomicU64>)>,
}

impl Running {
    /// Questions received so far by all servers.
    pub fn questions(&self) -> u64 {
        self.counters
            .iter()
            .map(|(_, _, c)| c.load(Ordering::Relaxed))
            .sum()
    }

    /// Questions received so far by each server.
    pub fn per_server(&self) -> Vec<(String, IpAddr, u64)> {
        self.counters
            .iter()
            .map(|(h, ip, c)| (h.clone(), *ip, c.load(Ordering::Relaxed)))
            .collect()
    }

    /// Stop every server.
    pub async fn shutdown(self) {
        for mut s in self.servers {
            let _ = s.shutdown_gracefully().await;
        }
    }
}

/// Bind and start every server of `servers` on port 53 of its address.
pub async fn start(servers: Vec<Server>) -> anyhow::Result<Running> {
    let mut running = Running {
        servers: Vec::new(),
        counters: Vec::new(),
    };
    for s in servers {
        let bind = SocketAddr::new(IpAddr::V4(s.ip), 53);
        let zones = s
            .zones
            .iter()
            .map(|(o, t)| Zone::parse(o, t))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let questions = Arc::new(AtomicU64::new(0));
        let mut server = DnsServer::new(Authority {
            zones,
            behaviour: s.behaviour,
            questions: questions.clone(),
        });
        let udp = tokio::net::UdpSocket::bind(bind)
            .await
            .with_context(|| format!("bind {bind} (port 53 needs root; in use?)"))?;
        let tcp = tokio::net::TcpListener::bind(bind)
            .await
            .with_context(|| format!("bind {bind}/tcp"))?;
        server.register_socket(udp);
        server.register_listener(tcp, Duration::from_secs(5), 64);
        running.servers.push(server);
        running.counters.push((s.host, bind.ip(), questions));
    }
    Ok(running)
}
