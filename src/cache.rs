//! The answer cache: upstream answers keyed by (name, type, class, DO bit, ECH-stripped),
//! honouring TTLs, negative caching (RFC 2308), serve-stale (RFC 8767), the NXDOMAIN cut
//! (RFC 8020) and prefetch of popular names before they expire.
//!
//! Each answer is held once, compactly, in wire form: the response a query without EDNS
//! would get (header, lower-cased question, answer and authority sections), the offsets of
//! its TTL fields, and the answer's [`Findings`] for response inspection. The UDP fast path
//! serves it by copying the bytes and patching id, flags, question case, counted-down TTLs
//! and the OPT record ([`AnswerCache::serve_wire`]); the general path (TCP, DoT, DoH,
//! rewrites) parses it back into records on demand ([`AnswerCache::get`]). Before, an
//! answer was held twice (hickory records here, finished bytes in a wire cache): about
//! 1.3 kB per name instead of a few hundred bytes.
//!
//! It holds only upstream answers, never policy decisions: the policy runs on every query,
//! cached or not, so an unblock or a schedule change applies at once; the findings let the
//! policy check each client's answer again. HTTPS/SVCB answers rewritten for bypass
//! prevention (ECH removed) are kept apart from the unrewritten ones by a key bit.
//! `quick_cache` gives a sharded, bounded cache with an eviction policy that resists scans,
//! without a global lock; the bound is in entries or, with `max_memory_mb`, in bytes.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use hickory_proto::op::{Message, MessageType, OpCode, Query};
use hickory_proto::rr::{DNSClass, LowerName, Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable};
use quick_cache::Equivalent;

use crate::config::CacheConfig;
use crate::inspect::Findings;
use crate::resolve::Answer;
use crate::transport::wire::{self, HEADER};

const DNSSEC_OK: u8 = 1;
const STRIPPED: u8 = 2;

/// What identifies a cached answer: the lower-cased wire name, type, class and flags
/// (DO bit, ECH-stripped form).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CacheKey {
    name: Box<[u8]>,
    qtype: u16,
    qclass: u16,
    flags: u8,
}

/// A borrowed key, for lookups that allocate nothing.
#[derive(Debug, Clone, Copy)]
pub struct KeyRef<'a> {
    name: &'a [u8],
    qtype: u16,
    qclass: u16,
    flags: u8,
}

impl CacheKey {
    /// The key of an (unstripped) answer to `name` (any case).
    pub fn new(name: &Name, qtype: RecordType, qclass: DNSClass, dnssec_ok: bool) -> Self {
        let name = LowerName::new(name).to_bytes().unwrap_or_default();
        Self {
            name: name.into(),
            qtype: qtype.into(),
            qclass: qclass.into(),
            flags: u8::from(dnssec_ok) * DNSSEC_OK,
        }
    }

    /// The same question's key for the unstripped answer.
    pub fn unstripped(&self) -> Self {
        Self {
            flags: self.flags & !STRIPPED,
            ..self.clone()
        }
    }

    /// The question name.
    pub fn name(&self) -> Option<Name> {
        Name::read(&mut BinDecoder::new(&self.name)).ok()
    }

    /// The question type.
    pub fn qtype(&self) -> RecordType {
        RecordType::from(self.qtype)
    }

    /// The DNSSEC OK bit.
    pub fn dnssec_ok(&self) -> bool {
        self.flags & DNSSEC_OK != 0
    }

    fn as_ref(&self) -> KeyRef<'_> {
        KeyRef {
            name: &self.name,
            qtype: self.qtype,
            qclass: self.qclass,
            flags: self.flags,
        }
    }
}

impl<'a> KeyRef<'a> {
    /// The key of a parsed UDP query; `stripped` for the ECH-less form of an HTTPS/SVCB
    /// answer.
    pub fn of(q: &'a wire::Query, stripped: bool) -> Self {
        Self {
            name: q.wire_name(),
            qtype: q.qtype,
            qclass: q.qclass,
            flags: (u8::from(q.dnssec_ok) * DNSSEC_OK) | (u8::from(stripped) * STRIPPED),
        }
    }

    /// The owned key.
    pub fn to_owned_key(self) -> CacheKey {
        CacheKey {
            name: self.name.into(),
            qtype: self.qtype,
            qclass: self.qclass,
            flags: self.flags,
        }
    }
}

// Owned and borrowed keys must hash identically for `Equivalent` lookups.
impl Hash for CacheKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        self.as_ref().hash(h);
    }
}

impl Hash for KeyRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write(self.name);
        h.write_u16(self.qtype);
        h.write_u16(self.qclass);
        h.write_u8(self.flags);
    }
}

impl Equivalent<CacheKey> for KeyRef<'_> {
    fn equivalent(&self, k: &CacheKey) -> bool {
        *self.name == *k.name
            && self.qtype == k.qtype
            && self.qclass == k.qclass
            && self.flags == k.flags
    }
}

/// One cached answer, in one allocation besides its findings.
#[derive(Debug)]
struct Entry {
    /// The response to a query without EDNS, then its TTL fields' offsets (u16 each).
    data: Box<[u8]>,
    /// Length of the response in `data`.
    len: u16,
    stored: Instant,
    /// Seconds the entry is fresh (smallest TTL, clamped by config).
    ttl: u32,
    /// A prefetch was started for this entry (one per entry, however many hits).
    prefetching: AtomicBool,
    findings: Option<Arc<Findings>>,
}

impl Entry {
    fn response(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }

    fn ttl_offsets(&self) -> impl Iterator<Item = usize> + '_ {
        self.data[usize::from(self.len)..]
            .chunks_exact(2)
            .map(|c| usize::from(u16::from_be_bytes([c[0], c[1]])))
    }

    fn rcode(&self) -> u8 {
        self.data.get(3).map_or(0, |b| b & 0x0f)
    }

    fn age(&self, now: Instant) -> u32 {
        u32::try_from(now.saturating_duration_since(self.stored).as_secs()).unwrap_or(u32::MAX)
    }

    /// The answer it encodes, every record's TTL mapped by `f`.
    fn answer(&self, f: impl Fn(u32) -> u32) -> Option<Answer> {
        let m = Message::from_vec(self.response()).ok()?;
        let adjust = |mut rs: Vec<Record>| {
            for r in &mut rs {
                r.ttl = f(r.ttl);
            }
            rs
        };
        Some(Answer {
            rcode: m.metadata.response_code,
            answers: adjust(m.answers),
            authorities: adjust(m.authorities),
            findings: self.findings.clone(),
        })
    }
}

/// Bytes an entry costs, roughly: its data, key, the entry itself and its findings.
fn entry_bytes(key: &CacheKey, e: &Entry) -> u64 {
    /// Arc and key headers, quick_cache's slot and hash table share.
    const OVERHEAD: usize = 96;
    let findings = e.findings.as_deref().map_or(0, |f| {
        16 + std::mem::size_of::<Findings>()
            + f.addrs.len() * std::mem::size_of::<std::net::IpAddr>()
            + f.targets.iter().map(|t| t.len() + 16).sum::<usize>()
    });
    (e.data.len() + key.name.len() + std::mem::size_of::<Entry>() + OVERHEAD + findings) as u64
}

/// Weighs entries by count (`max_entries`) or by bytes (`max_memory_mb`).
#[derive(Debug, Clone, Copy)]
struct Weigh {
    bytes: bool,
}

impl quick_cache::Weighter<CacheKey, Arc<Entry>> for Weigh {
    fn weight(&self, key: &CacheKey, e: &Arc<Entry>) -> u64 {
        if self.bytes { entry_bytes(key, e) } else { 1 }
    }
}

/// The result of a cache lookup.
#[derive(Debug)]
pub enum Cached {
    /// A live answer, TTLs already reduced by its age; `refresh`: it is near expiry and
    /// this hit should prefetch it (at most once per entry).
    Fresh {
        /// The answer.
        answer: Answer,
        /// Start a prefetch.
        refresh: bool,
    },
    /// A name below a cached NXDOMAIN (RFC 8020): NXDOMAIN with that name's SOA.
    Cut(Answer),
    /// An expired answer still within the serve-stale window (TTLs set to the stale TTL).
    Stale(Answer),
    /// Nothing usable.
    Miss,
}

/// A fast-path hit: the response is in the caller's buffer. It holds the entry itself, so
/// reading its findings costs no reference count of its own.
#[derive(Debug)]
pub struct Hit {
    entry: Arc<Entry>,
    refresh: bool,
}

impl Hit {
    /// The response code.
    pub fn rcode(&self) -> u8 {
        self.entry.rcode()
    }

    /// What response inspection must check for this client.
    pub fn findings(&self) -> Option<&Findings> {
        self.entry.findings.as_deref()
    }

    /// The entry is near expiry and this hit should prefetch it.
    pub fn refresh(&self) -> bool {
        self.refresh
    }
}

/// TTL given to stale answers (RFC 8767 recommends 30 s).
const STALE_TTL: u32 = 30;

/// The shared answer cache.
pub struct AnswerCache {
    inner: quick_cache::sync::Cache<CacheKey, Arc<Entry>, Weigh>,
    /// Names with a cached NXDOMAIN (RFC 8020) → type, class and flags of the entry that
    /// holds it, so a name below them is answered from that entry while it lives.
    cuts: quick_cache::sync::Cache<Box<[u8]>, (u16, u16, u8)>,
    /// TTL limits, serve-stale, prefetch and the cut, swapped on reload (the size bound is
    /// fixed at start).
    cfg: arc_swap::ArcSwap<CacheConfig>,
}

impl AnswerCache {
    /// An empty cache.
    pub fn new(cfg: &CacheConfig) -> Self {
        let inner = match cfg.max_memory_mb {
            Some(mb) => {
                let bytes = mb.saturating_mul(1 << 20).max(1 << 20);
                let estimated = usize::try_from(bytes / 300).unwrap_or(usize::MAX).max(16);
                quick_cache::sync::Cache::with_weighter(estimated, bytes, Weigh { bytes: true })
            }
            None => quick_cache::sync::Cache::with_weighter(
                cfg.max_entries.max(1),
                cfg.max_entries.max(1) as u64,
                Weigh { bytes: false },
            ),
        };
        Self {
            inner,
            cuts: quick_cache::sync::Cache::new((cfg.max_entries / 4).max(64)),
            cfg: arc_swap::ArcSwap::from_pointee(cfg.clone()),
        }
    }

    /// Apply reloaded TTL limits, serve-stale, prefetch and the cut from the next lookup
    /// on (`max_entries` and `max_memory_mb` only take effect at start).
    pub fn set_config(&self, cfg: &CacheConfig) {
        self.cfg.store(Arc::new(cfg.clone()));
    }

    /// Look up an answer (the general path: records parsed from the stored response).
    pub fn get(&self, key: &CacheKey, now: Instant) -> Cached {
        let Some(e) = self.inner.get(key) else {
            return self.cut(key, now);
        };
        let age = e.age(now);
        if age < e.ttl {
            let answer = e.answer(|t| t.min(e.ttl).saturating_sub(age).max(1));
            return match answer {
                Some(answer) => Cached::Fresh {
                    answer,
                    refresh: self.refresh_due(&e, age),
                },
                None => Cached::Miss,
            };
        }
        let cfg = self.cfg.load();
        if cfg.serve_stale && age - e.ttl < cfg.max_stale_secs {
            return e.answer(|_| STALE_TTL).map_or(Cached::Miss, Cached::Stale);
        }
        self.cut(key, now)
    }

    /// RFC 8020: a name below a name with a live cached NXDOMAIN does not exist either.
    /// Only for answers without DNSSEC (a DO query wants the proofs from upstream).
    fn cut(&self, key: &CacheKey, now: Instant) -> Cached {
        if key.flags != 0 || !self.cfg.load().nxdomain_cut {
            return Cached::Miss;
        }
        let name = &key.name[..];
        let mut pos = 0;
        while let Some(&len) = name.get(pos) {
            pos += 1 + usize::from(len);
            // Stop before the root: an NXDOMAIN for it means nothing.
            if len == 0 || name.get(pos).is_none_or(|&l| l == 0) {
                break;
            }
            let suffix = &name[pos..];
            let Some((qtype, qclass, flags)) = self.cuts.get(suffix) else {
                continue;
            };
            let parent = KeyRef {
                name: suffix,
                qtype,
                qclass,
                flags,
            };
            let Some(e) = self.inner.get(&parent) else {
                continue;
            };
            let age = e.age(now);
            if e.rcode() == 3
                && age < e.ttl
                && let Some(a) = e.answer(|t| t.min(e.ttl).saturating_sub(age).max(1))
            {
                return Cached::Cut(Answer {
                    findings: None,
                    ..a
                });
            }
        }
        Cached::Miss
    }

    /// True once per entry, on a hit in the last tenth of its life (at least its last
    /// second), when prefetch is on.
    fn refresh_due(&self, e: &Entry, age: u32) -> bool {
        e.ttl >= 2
            && age >= e.ttl - (e.ttl / 10).max(1)
            && self.cfg.load().prefetch
            && !e.prefetching.swap(true, Ordering::Relaxed)
    }

    /// The UDP fast path: write the fresh cached response for `q` into `out`, ready to send
    /// (id, RD/CD, question case, TTLs and OPT as the query needs); None on a miss or an
    /// expired entry. A response larger than the requester may get ([`wire::Query::limit`])
    /// is cut at a record boundary with TC set. Allocates nothing.
    pub fn serve_wire(
        &self,
        pkt: &[u8],
        q: &wire::Query,
        stripped: bool,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Option<Hit> {
        let e = self.inner.get(&KeyRef::of(q, stripped))?;
        let age = e.age(now);
        if age >= e.ttl {
            return None;
        }
        let resp = e.response();
        out.clear();
        out.extend_from_slice(resp);
        out[0..2].copy_from_slice(&q.id.to_be_bytes());
        // RD and CD as asked; the rest of the flags as stored.
        out[2] = (out[2] & !0x01) | u8::from(q.rd);
        out[3] = (out[3] & !0x10) | u8::from(q.cd) << 4;
        // The question exactly as asked (clients may randomise case).
        out[HEADER..q.question_end].copy_from_slice(&pkt[HEADER..q.question_end]);
        for at in e.ttl_offsets() {
            let stored = u32::from_be_bytes([resp[at], resp[at + 1], resp[at + 2], resp[at + 3]]);
            out[at..at + 4].copy_from_slice(&stored.saturating_sub(age).max(1).to_be_bytes());
        }
        // The stored response has no additional records: the OPT is the only one.
        let ar = wire::push_opt(out, q);
        out[10..12].copy_from_slice(&ar.to_be_bytes());
        wire::truncate(out, usize::from(q.limit));
        let refresh = self.refresh_due(&e, age);
        Some(Hit { entry: e, refresh })
    }

    /// Store an answer to `name` under its TTL, clamped by config, and return it as the
    /// cache will serve it (every record's TTL capped at that TTL), so the first reply to a
    /// question and every cached reply after it agree. Answers with a TTL of 0 are not
    /// stored (unless `min_ttl` raises it, or serve-stale keeps them), nor negative
    /// answers without an SOA (RFC 2308 §5).
    pub fn insert(&self, key: CacheKey, name: &Name, answer: &Answer, now: Instant) -> Answer {
        let ttl = self.ttl_for(answer);
        let served = with_ttl(answer, |t| t.min(ttl));
        if (ttl == 0 && !self.cfg.load().serve_stale) || negative_without_soa(answer) {
            return served;
        }
        self.store(key, name, &served, ttl, now);
        served
    }

    /// Store an answer already shaped for serving (TTLs capped), fresh for `ttl` seconds:
    /// the ECH-less form of an HTTPS/SVCB answer, under its own key.
    pub fn store(&self, key: CacheKey, name: &Name, a: &Answer, ttl: u32, now: Instant) {
        if ttl == 0 && !self.cfg.load().serve_stale {
            return;
        }
        let Some(data) = encode(name, &key, a) else {
            return;
        };
        let Ok(len) = u16::try_from(data.len()) else {
            return;
        };
        let Some(ttls) = wire::ttl_fields(&data) else {
            return;
        };
        let mut data = data;
        data.reserve_exact(ttls.len() * 2);
        for (at, _) in ttls {
            data.extend_from_slice(&at.to_be_bytes());
        }
        let entry = Entry {
            data: data.into_boxed_slice(),
            len,
            stored: now,
            ttl,
            prefetching: AtomicBool::new(false),
            findings: a.findings.clone(),
        };
        if entry.rcode() == 3 && key.flags == 0 && !a.authorities.is_empty() {
            self.cuts
                .insert(key.name.clone(), (key.qtype, key.qclass, key.flags));
        }
        self.inner.insert(key, Arc::new(entry));
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Bytes held, roughly (what `max_memory_mb` bounds).
    pub fn bytes(&self) -> u64 {
        self.inner
            .iter()
            .map(|(k, e)| entry_bytes(&k, &e))
            .sum::<u64>()
    }

    /// Drop everything (after a config change that alters upstreams).
    pub fn clear(&self) {
        self.inner.clear();
        self.cuts.clear();
    }

    /// Seconds an answer stays fresh: its smallest TTL (the SOA minimum for negative
    /// answers), clamped by config. 0 for a negative answer without an SOA: RFC 2308 §5
    /// says not to cache it.
    pub fn ttl_for(&self, a: &Answer) -> u32 {
        let cfg = self.cfg.load();
        if a.is_negative() {
            return match soa_ttl(a) {
                Some(t) => t
                    .min(cfg.max_negative_ttl)
                    .max(cfg.min_ttl.min(cfg.max_negative_ttl)),
                None => 0,
            };
        }
        let min = a.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
        min.clamp(cfg.min_ttl, cfg.max_ttl)
    }
}

/// The negative TTL an SOA in the authority section gives (RFC 2308 §5: min(TTL, minimum)).
fn soa_ttl(a: &Answer) -> Option<u32> {
    a.authorities.iter().find_map(|r| match &r.data {
        RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
        _ => None,
    })
}

fn negative_without_soa(a: &Answer) -> bool {
    a.is_negative() && soa_ttl(a).is_none()
}

/// The response to a query for `name` without EDNS, as stored: id 0, RD and RA set (the
/// fast path sets RD and CD as asked), question lower-cased.
fn encode(name: &Name, key: &CacheKey, a: &Answer) -> Option<Vec<u8>> {
    let mut m = Message::new(0, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = true;
    m.metadata.recursion_available = true;
    m.metadata.response_code = a.rcode;
    let mut query = Query::query(name.to_lowercase(), RecordType::from(key.qtype));
    query.set_query_class(DNSClass::from(key.qclass));
    m.add_query(query);
    m.answers = a.answers.clone();
    m.authorities = a.authorities.clone();
    m.to_vec().ok()
}

fn with_ttl(a: &Answer, f: impl Fn(u32) -> u32) -> Answer {
    let adjust = |rs: &[Record]| {
        rs.iter()
            .map(|r| {
                let mut r = r.clone();
                r.ttl = f(r.ttl);
                r
            })
            .collect()
    };
    Answer {
        rcode: a.rcode,
        answers: adjust(&a.answers),
        authorities: adjust(&a.authorities),
        findings: a.findings.clone(),
    }
}

#[cfg(test)]
mod tests;
