//! Local answers (part of the answer stage): names Chaperone answers itself,
//! authoritatively (AA set), from memory, without asking any upstream:
//! - [`records`]: `[local] records` (and the PTR records made from their addresses);
//! - `[local] zones`: zones answered completely, NXDOMAIN for names with no record;
//! - [`rfc6303`]: private reverse zones, `home.arpa`, `resolver.arpa`, `local`, `invalid`,
//!   `onion`, `localhost` and single-label names, which must never leak to the internet.
//!
//! [`LocalZones`] is built from the config with each snapshot and swapped with it on
//! reload. It knows the `[[zone]]` names only to step aside for them (a forwarded zone
//! beats a reserved one, and a deeper forwarded zone beats a local zone); forwarding
//! itself is the resolve stage's. The order of the steps is the pipeline's
//! ([`crate::pipeline`]); this module must not resolve, cache or filter.
//!
//! Cost for ordinary names: [`LocalZones::covers`] compares the top-level label of the
//! reversed key with a few short slices and looks for a `.` — no hashing, no allocation
//! — so the UDP fast path keeps its speed for everything outside local and reserved zones.

pub mod leases;
pub mod records;
pub mod rfc6303;

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, AAAA, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::answer::Reply;
use crate::config::Config;
use crate::lists::key::reverse_key;
use crate::suffix::SuffixMap;
use records::{Entry, Records, key_of};
use rfc6303::Reserved;

/// Most CNAME links followed inside local data.
const MAX_CHAIN: usize = 8;

/// A zone answered locally.
#[derive(Debug, Clone)]
enum Zone {
    /// `[local] zones` entry.
    Local { apex: Name, source: Arc<str> },
    /// A reserved name (RFC 6303 and friends).
    Reserved { apex: Name, kind: Reserved },
}

/// A `[[zone]]`'s name and servers, for explain and for stepping aside.
#[derive(Debug, Clone)]
pub struct Forwarded {
    /// The zone.
    pub name: Name,
    /// Its servers as configured.
    pub servers: String,
}

/// Everything answered locally, for one snapshot.
#[derive(Debug, Default)]
pub struct LocalZones {
    records: Records,
    zones: SuffixMap<Zone>,
    forwards: SuffixMap<Forwarded>,
    single_label: bool,
    ttl: u32,
}

impl LocalZones {
    /// Build from a checked config (cannot fail: the config checks every record).
    pub fn new(c: &Config) -> Self {
        let mut zones = SuffixMap::default();
        if c.local.serve_rfc6303 {
            for (name, kind) in rfc6303::zones() {
                let Ok(mut apex) = Name::from_ascii(&name) else {
                    continue;
                };
                apex.set_fqdn(true);
                zones.insert(&reverse_key(&name), Zone::Reserved { apex, kind });
            }
        }
        for (i, apex) in c.local.zones.iter().enumerate() {
            if let Some(k) = key_of(apex) {
                let source = Arc::from(format!("local.zones[{i}]"));
                let apex = apex.clone();
                zones.insert(k.as_bytes(), Zone::Local { apex, source });
            }
        }
        let mut forwards = SuffixMap::default();
        for z in &c.zones {
            if let Some(k) = key_of(&z.name) {
                let servers: Vec<String> = z
                    .upstream
                    .servers
                    .iter()
                    .map(|s| s.addr.to_string())
                    .collect();
                let f = Forwarded {
                    name: z.name.clone(),
                    servers: servers.join(", "),
                };
                forwards.insert(k.as_bytes(), f);
            }
        }
        Self {
            records: Records::new(&c.local),
            zones,
            forwards,
            single_label: c.local.serve_rfc6303,
            ttl: c.local.ttl,
        }
    }

    /// Might this name be answered locally? Near-free for names outside every local and
    /// reserved zone; the UDP fast path sends names for which it is true to the general
    /// path, where [`LocalZones::records`] and [`LocalZones::after_forwarding`] answer.
    #[inline]
    pub fn covers(&self, key: &[u8]) -> bool {
        (self.single_label && is_single_label(key))
            || self.zones.longest(key).is_some()
            || self.records.get(key).is_some()
    }

    /// Step 1: the local records of exactly this name (CNAMEs followed inside local
    /// data), or NODATA if the name has records but none of this type.
    pub fn records(&self, key: &[u8], qname: &Name, qtype: RecordType) -> Option<Reply> {
        let entries = self.records.get(key)?;
        let mut answers = Vec::new();
        self.collect(entries, qtype, &mut answers);
        if answers.is_empty() {
            return Some(self.nodata(key, qname));
        }
        Some(authoritative(ResponseCode::NoError, answers, Vec::new()))
    }

    /// Records of `qtype` (or every record for ANY) among `entries`, following a CNAME
    /// to further local names.
    fn collect(&self, entries: &[Entry], qtype: RecordType, out: &mut Vec<Record>) {
        let mut entries = entries;
        for _ in 0..MAX_CHAIN {
            let wanted = entries
                .iter()
                .filter(|e| qtype == RecordType::ANY || e.record.record_type() == qtype);
            let before = out.len();
            out.extend(wanted.map(|e| e.record.clone()));
            if out.len() > before || qtype == RecordType::CNAME {
                return;
            }
            let Some(cname) = entries
                .iter()
                .find(|e| e.record.record_type() == RecordType::CNAME)
            else {
                return;
            };
            out.push(cname.record.clone());
            let RData::CNAME(target) = &cname.record.data else {
                return;
            };
            match key_of(&target.0).and_then(|k| self.records.get(k.as_bytes())) {
                Some(next) => entries = next,
                None => return,
            }
        }
    }

    /// Step 3 (after forwarding had its chance): local zones and reserved names. None
    /// when the name is forwarded or not local at all (then it is resolved upstream).
    pub fn after_forwarding(&self, key: &[u8], qname: &Name, qtype: RecordType) -> Option<Reply> {
        let forwarded = self.forwards.longest(key).map(|(len, _)| len);
        match self.zones.longest(key) {
            Some((len, zone)) => {
                let forward_wins = match zone {
                    Zone::Reserved { .. } => forwarded.is_some(),
                    Zone::Local { .. } => forwarded.is_some_and(|f| f > len),
                };
                if forward_wins {
                    return None;
                }
                Some(self.zone_answer(zone, key, qname, qtype))
            }
            None if self.single_label && is_single_label(key) && forwarded.is_none() => {
                // Top-level infrastructure types stay resolvable (a validating stub asks
                // for a TLD's DS and DNSKEY); names like `printer` never leave the site.
                match qtype {
                    RecordType::SOA | RecordType::NS | RecordType::DS | RecordType::DNSKEY => None,
                    _ => Some(self.negative(ResponseCode::NXDomain, qname)),
                }
            }
            None => None,
        }
    }

    fn zone_answer(&self, zone: &Zone, key: &[u8], qname: &Name, qtype: RecordType) -> Reply {
        let apex = match zone {
            Zone::Local { apex, .. } | Zone::Reserved { apex, .. } => apex,
        };
        if let Zone::Reserved {
            kind: Reserved::Localhost,
            ..
        } = zone
        {
            let data = match qtype {
                RecordType::A => Some(RData::A(A::new(127, 0, 0, 1))),
                RecordType::AAAA => Some(RData::AAAA(AAAA::new(0, 0, 0, 0, 0, 0, 0, 1))),
                _ => None,
            };
            if let Some(d) = data {
                let r = Record::from_rdata(qname.clone(), self.ttl, d);
                return authoritative(ResponseCode::NoError, vec![r], Vec::new());
            }
            return self.negative(ResponseCode::NoError, apex);
        }
        let at_apex = key_of(apex).is_some_and(|k| k.as_bytes() == key);
        if at_apex && qtype == RecordType::SOA {
            return authoritative(ResponseCode::NoError, vec![self.soa(apex)], Vec::new());
        }
        if let Zone::Reserved {
            kind: Reserved::NoData(_),
            ..
        } = zone
        {
            return self.negative(ResponseCode::NoError, apex);
        }
        if at_apex || self.records.is_empty_non_terminal(key) {
            return self.negative(ResponseCode::NoError, apex);
        }
        self.negative(ResponseCode::NXDomain, apex)
    }

    /// NODATA for a name that owns records: SOA of its local zone, or of itself.
    fn nodata(&self, key: &[u8], qname: &Name) -> Reply {
        let apex = match self.zones.longest(key) {
            Some((_, Zone::Local { apex, .. } | Zone::Reserved { apex, .. })) => apex,
            None => qname,
        };
        self.negative(ResponseCode::NoError, apex)
    }

    fn negative(&self, rcode: ResponseCode, apex: &Name) -> Reply {
        authoritative(rcode, Vec::new(), vec![self.soa(apex)])
    }

    /// The SOA of a local zone (RFC 6303 §3 shape): negative answers are cached for the
    /// local TTL.
    fn soa(&self, apex: &Name) -> Record {
        let rname = Name::from_ascii("nobody.invalid.").unwrap_or_else(|_| Name::root());
        let soa = SOA::new(apex.clone(), rname, 1, 3600, 1200, 604_800, self.ttl);
        Record::from_rdata(apex.clone(), self.ttl, RData::SOA(soa))
    }

    /// The `[[zone]]` that forwards this name, if any (longest).
    pub fn forwarded(&self, key: &[u8]) -> Option<&Forwarded> {
        self.forwards.longest(key).map(|(_, f)| f)
    }

    /// Who answers this name, in the pipeline's order, in words (for `explain`). None:
    /// the main upstream resolves it.
    pub fn explain(&self, key: &[u8], qname: &Name) -> Option<String> {
        if let Some(entries) = self.records.get(key) {
            let each: Vec<String> = entries
                .iter()
                .map(|e| format!("{} ({})", show(&e.record), e.source))
                .collect();
            return Some(format!("answered locally: {}", each.join("; ")));
        }
        let reply = self.after_forwarding(key, qname, RecordType::A);
        if let (Some(f), None) = (self.forwarded(key), &reply) {
            return Some(format!(
                "forwarded to zone {}: {}",
                f.name.to_ascii().trim_end_matches('.'),
                f.servers
            ));
        }
        reply.as_ref()?;
        Some(match self.zones.longest(key) {
            Some((_, Zone::Local { apex, source })) => format!(
                "local zone {} ({source}): answered NXDOMAIN locally for names with no record",
                apex.to_ascii().trim_end_matches('.')
            ),
            Some((_, Zone::Reserved { kind, .. })) => match kind {
                Reserved::Localhost => rfc6303::why(*kind).to_owned(),
                Reserved::NoData(_) => {
                    format!("{}: answered NODATA locally", rfc6303::why(*kind))
                }
                _ => format!("{}: answered NXDOMAIN locally", rfc6303::why(*kind)),
            },
            None => "single-label name: answered NXDOMAIN locally (never sent upstream)".to_owned(),
        })
    }

    /// [`LocalZones::explain`] for a normalised name, with the main upstream spelt out
    /// when nothing local or forwarded answers it.
    pub fn route(&self, config: &Config, normalized: &str) -> String {
        let key = reverse_key(normalized);
        let local = Name::from_ascii(format!("{normalized}."))
            .ok()
            .and_then(|n| self.explain(&key, &n));
        local.unwrap_or_else(|| match config.upstream.mode {
            crate::config::UpstreamMode::Recursive => {
                "resolved upstream: recursion from the root".to_owned()
            }
            crate::config::UpstreamMode::Forward => {
                let servers: Vec<String> = config
                    .upstream
                    .servers
                    .iter()
                    .map(|s| s.addr.to_string())
                    .collect();
                format!("resolved upstream: forwarded to {}", servers.join(", "))
            }
        })
    }

    /// Owner names with local records (auto PTRs included).
    pub fn record_names(&self) -> usize {
        self.records.len()
    }
}

/// A name of one label (`printer`); not the root, which has none (its key is empty).
#[inline]
fn is_single_label(key: &[u8]) -> bool {
    !key.is_empty() && !key.contains(&b'.')
}

/// `mis.example-school.internal A 10.10.0.20`
fn show(r: &Record) -> String {
    format!(
        "{} {} {}",
        r.name.to_ascii().trim_end_matches('.'),
        r.record_type(),
        r.data
    )
}

fn authoritative(rcode: ResponseCode, answers: Vec<Record>, authorities: Vec<Record>) -> Reply {
    Reply {
        rcode,
        answers,
        authorities,
        authoritative: true,
        ede: None,
    }
}

#[cfg(test)]
mod tests;
