//! The answer cache: upstream answers keyed by (name, type, class, DO bit), honouring TTLs,
//! negative caching (RFC 2308) and, optionally, serve-stale (RFC 8767).
//!
//! It holds only upstream answers, never policy decisions: the policy runs on every query,
//! cached or not, so an unblock or a schedule change applies at once. `quick_cache` gives a
//! sharded, bounded cache with an eviction policy that resists scans, without a global lock.

use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{DNSClass, LowerName, RData, Record, RecordType};

use crate::config::CacheConfig;
use crate::resolve::Answer;

/// What identifies a cached answer.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct CacheKey {
    /// Query name (lower-cased).
    pub name: LowerName,
    /// Query type.
    pub qtype: RecordType,
    /// Query class.
    pub qclass: DNSClass,
    /// DNSSEC OK bit: answers with and without signatures differ.
    pub dnssec_ok: bool,
}

#[derive(Debug)]
struct Entry {
    answer: Answer,
    stored: Instant,
    ttl: u32,
}

/// The result of a cache lookup.
#[derive(Debug)]
pub enum Cached {
    /// A live answer, TTLs already reduced by its age.
    Fresh(Answer),
    /// An expired answer still within the serve-stale window (TTLs set to the stale TTL).
    Stale(Answer),
    /// Nothing usable.
    Miss,
}

/// TTL given to stale answers (RFC 8767 recommends 30 s).
const STALE_TTL: u32 = 30;
/// Negative answers without an SOA are cached this long (seconds) at most.
const NO_SOA_NEGATIVE_TTL: u32 = 30;

/// The shared answer cache.
pub struct AnswerCache {
    inner: quick_cache::sync::Cache<CacheKey, Arc<Entry>>,
    /// TTL limits and serve-stale, swapped on reload (the capacity is fixed at start).
    cfg: arc_swap::ArcSwap<CacheConfig>,
}

impl AnswerCache {
    /// An empty cache.
    pub fn new(cfg: &CacheConfig) -> Self {
        Self {
            inner: quick_cache::sync::Cache::new(cfg.max_entries),
            cfg: arc_swap::ArcSwap::from_pointee(cfg.clone()),
        }
    }

    /// Apply reloaded TTL limits and serve-stale from the next lookup on (`max_entries`
    /// only takes effect at start).
    pub fn set_config(&self, cfg: &CacheConfig) {
        self.cfg.store(Arc::new(cfg.clone()));
    }

    /// Look up an answer.
    pub fn get(&self, key: &CacheKey, now: Instant) -> Cached {
        let Some(e) = self.inner.get(key) else {
            return Cached::Miss;
        };
        let age = now.saturating_duration_since(e.stored).as_secs();
        let age = u32::try_from(age).unwrap_or(u32::MAX);
        if age < e.ttl {
            return Cached::Fresh(with_ttl(&e.answer, |t| {
                t.min(e.ttl).saturating_sub(age).max(1)
            }));
        }
        let cfg = self.cfg.load();
        if cfg.serve_stale && age - e.ttl < cfg.max_stale_secs {
            return Cached::Stale(with_ttl(&e.answer, |_| STALE_TTL));
        }
        Cached::Miss
    }

    /// Store an answer under its TTL, clamped by config, and return it as the cache will
    /// serve it (every record's TTL capped at that TTL), so the first reply to a question
    /// and every cached reply after it agree. Answers with a TTL of 0 are not stored
    /// (unless `min_ttl` raises it).
    pub fn insert(&self, key: CacheKey, answer: &Answer, now: Instant) -> Answer {
        let ttl = self.ttl_for(answer);
        let served = with_ttl(answer, |t| t.min(ttl));
        if ttl == 0 && !self.cfg.load().serve_stale {
            return served;
        }
        self.inner.insert(
            key,
            Arc::new(Entry {
                answer: answer.clone(),
                stored: now,
                ttl,
            }),
        );
        served
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }

    /// Drop everything (after a config change that alters upstreams).
    pub fn clear(&self) {
        self.inner.clear();
    }

    /// Seconds an answer stays fresh: its smallest TTL (the SOA minimum for negative
    /// answers), clamped by config.
    pub fn ttl_for(&self, a: &Answer) -> u32 {
        let cfg = self.cfg.load();
        if a.rcode == ResponseCode::NXDomain || a.answers.is_empty() {
            let soa_ttl = a.authorities.iter().find_map(|r| match &r.data {
                RData::SOA(soa) => Some(r.ttl.min(soa.minimum)),
                _ => None,
            });
            let t = soa_ttl.unwrap_or(NO_SOA_NEGATIVE_TTL);
            return t
                .min(cfg.max_negative_ttl)
                .max(cfg.min_ttl.min(cfg.max_negative_ttl));
        }
        let min = a.answers.iter().map(|r| r.ttl).min().unwrap_or(0);
        min.clamp(cfg.min_ttl, cfg.max_ttl)
    }
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
mod tests {
    use super::*;
    use hickory_proto::rr::Name;
    use hickory_proto::rr::rdata::{A, SOA};
    use std::time::Duration;

    fn cfg(serve_stale: bool) -> CacheConfig {
        CacheConfig {
            max_entries: 100,
            min_ttl: 0,
            max_ttl: 86400,
            max_negative_ttl: 3600,
            serve_stale,
            max_stale_secs: 3600,
        }
    }

    fn key(n: &str) -> CacheKey {
        CacheKey {
            name: LowerName::from(Name::from_ascii(n).unwrap()),
            qtype: RecordType::A,
            qclass: DNSClass::IN,
            dnssec_ok: false,
        }
    }

    fn a_answer(ttl: u32) -> Answer {
        let name = Name::from_ascii("www.example.test.").unwrap();
        Answer {
            rcode: ResponseCode::NoError,
            answers: vec![Record::from_rdata(
                name,
                ttl,
                RData::A(A::new(192, 0, 2, 1)),
            )],
            authorities: vec![],
            findings: None,
        }
    }

    #[test]
    fn ttl_counts_down_and_expires() {
        let c = AnswerCache::new(&cfg(false));
        let t0 = Instant::now();
        c.insert(key("www.example.test."), &a_answer(300), t0);
        match c.get(&key("WWW.example.test."), t0 + Duration::from_secs(100)) {
            Cached::Fresh(a) => assert_eq!(a.answers[0].ttl, 200),
            other => panic!("expected fresh, got {other:?}"),
        }
        assert!(matches!(
            c.get(&key("www.example.test."), t0 + Duration::from_secs(300)),
            Cached::Miss
        ));
    }

    #[test]
    fn stale_served_only_when_enabled() {
        let c = AnswerCache::new(&cfg(true));
        let t0 = Instant::now();
        c.insert(key("www.example.test."), &a_answer(10), t0);
        match c.get(&key("www.example.test."), t0 + Duration::from_secs(60)) {
            Cached::Stale(a) => assert_eq!(a.answers[0].ttl, STALE_TTL),
            other => panic!("expected stale, got {other:?}"),
        }
        assert!(matches!(
            c.get(&key("www.example.test."), t0 + Duration::from_secs(4000)),
            Cached::Miss
        ));
    }

    #[test]
    fn negative_ttl_from_soa_minimum() {
        let c = AnswerCache::new(&cfg(false));
        let zone = Name::from_ascii("example.test.").unwrap();
        let soa = SOA::new(zone.clone(), zone.clone(), 1, 3600, 600, 86400, 120);
        let a = Answer::negative(
            ResponseCode::NXDomain,
            Some(Record::from_rdata(zone, 3600, RData::SOA(soa))),
        );
        assert_eq!(c.ttl_for(&a), 120);
        assert_eq!(
            c.ttl_for(&Answer::negative(ResponseCode::NXDomain, None)),
            NO_SOA_NEGATIVE_TTL
        );
    }
}
