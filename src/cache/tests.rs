use super::*;
use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::{A, SOA};
use std::time::Duration;

fn cfg(serve_stale: bool) -> CacheConfig {
    CacheConfig {
        max_entries: 100,
        max_memory_mb: None,
        min_ttl: 0,
        max_ttl: 86400,
        max_negative_ttl: 3600,
        serve_stale,
        max_stale_secs: 3600,
        prefetch: true,
        nxdomain_cut: true,
    }
}

fn name(n: &str) -> Name {
    Name::from_ascii(n).unwrap()
}

fn key(n: &str) -> CacheKey {
    CacheKey::new(&name(n), RecordType::A, DNSClass::IN, false)
}

fn a_answer(ttl: u32) -> Answer {
    Answer {
        rcode: ResponseCode::NoError,
        answers: vec![Record::from_rdata(
            name("www.example.test."),
            ttl,
            RData::A(A::new(192, 0, 2, 1)),
        )],
        authorities: vec![],
        findings: None,
    }
}

fn soa(zone: &str) -> Record {
    let z = name(zone);
    let soa = SOA::new(z.clone(), z.clone(), 1, 3600, 600, 86400, 120);
    Record::from_rdata(z, 3600, RData::SOA(soa))
}

fn insert(c: &AnswerCache, n: &str, a: &Answer, t: Instant) {
    c.insert(key(n), &name(n), a, t);
}

fn fresh(c: &AnswerCache, n: &str, t: Instant) -> (Answer, bool) {
    match c.get(&key(n), t) {
        Cached::Fresh { answer, refresh } => (answer, refresh),
        other => panic!("expected fresh, got {other:?}"),
    }
}

#[test]
fn ttl_counts_down_and_expires() {
    let c = AnswerCache::new(&cfg(false));
    let t0 = Instant::now();
    insert(&c, "www.example.test.", &a_answer(300), t0);
    let (a, _) = fresh(&c, "WWW.example.test.", t0 + Duration::from_secs(100));
    assert_eq!(a.answers[0].ttl, 200);
    assert_eq!(a.answers[0].data, RData::A(A::new(192, 0, 2, 1)));
    assert!(matches!(
        c.get(&key("www.example.test."), t0 + Duration::from_secs(300)),
        Cached::Miss
    ));
}

#[test]
fn stale_served_only_when_enabled() {
    let c = AnswerCache::new(&cfg(true));
    let t0 = Instant::now();
    insert(&c, "www.example.test.", &a_answer(10), t0);
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
    let a = Answer::negative(ResponseCode::NXDomain, Some(soa("example.test.")));
    assert_eq!(c.ttl_for(&a), 120);
}

/// RFC 2308 §5: a negative answer without an SOA is not cached, even with serve-stale.
#[test]
fn negative_without_soa_not_cached() {
    for stale in [false, true] {
        let c = AnswerCache::new(&cfg(stale));
        let t0 = Instant::now();
        for rcode in [ResponseCode::NXDomain, ResponseCode::NoError] {
            let a = Answer::negative(rcode, None);
            assert_eq!(c.ttl_for(&a), 0);
            insert(&c, "gone.example.test.", &a, t0);
        }
        assert!(c.is_empty());
    }
}

/// RFC 8020: below a cached NXDOMAIN, nothing exists, until that NXDOMAIN expires.
#[test]
fn nxdomain_cut_answers_names_below() {
    let c = AnswerCache::new(&cfg(false));
    let t0 = Instant::now();
    let nx = Answer::negative(ResponseCode::NXDomain, Some(soa("test.")));
    insert(&c, "example.test.", &nx, t0);
    match c.get(&key("a.b.example.test."), t0 + Duration::from_secs(20)) {
        Cached::Cut(a) => {
            assert_eq!(a.rcode, ResponseCode::NXDomain);
            assert_eq!(a.authorities[0].ttl, 100);
        }
        other => panic!("expected a cut, got {other:?}"),
    }
    // Not its parent or a sibling, nor after expiry, nor with the cut off.
    assert!(matches!(c.get(&key("test."), t0), Cached::Miss));
    assert!(matches!(c.get(&key("other.test."), t0), Cached::Miss));
    let late = t0 + Duration::from_secs(120);
    assert!(matches!(c.get(&key("a.example.test."), late), Cached::Miss));
    c.set_config(&CacheConfig {
        nxdomain_cut: false,
        ..cfg(false)
    });
    assert!(matches!(c.get(&key("a.example.test."), t0), Cached::Miss));
}

#[test]
fn prefetch_due_once_near_expiry() {
    let c = AnswerCache::new(&cfg(false));
    let t0 = Instant::now();
    insert(&c, "www.example.test.", &a_answer(100), t0);
    assert!(!fresh(&c, "www.example.test.", t0 + Duration::from_secs(89)).1);
    assert!(fresh(&c, "www.example.test.", t0 + Duration::from_secs(90)).1);
    assert!(!fresh(&c, "www.example.test.", t0 + Duration::from_secs(95)).1);
    c.set_config(&CacheConfig {
        prefetch: false,
        ..cfg(false)
    });
    insert(&c, "www.example.test.", &a_answer(100), t0);
    assert!(!fresh(&c, "www.example.test.", t0 + Duration::from_secs(95)).1);
}

#[test]
fn byte_bound_keeps_memory_within_limit() {
    let c = AnswerCache::new(&CacheConfig {
        max_entries: 1_000_000,
        max_memory_mb: Some(1),
        ..cfg(false)
    });
    let t0 = Instant::now();
    for i in 0..20_000 {
        insert(&c, &format!("host{i}.example.test."), &a_answer(300), t0);
    }
    assert!(c.len() < 20_000, "evicted by bytes: {}", c.len());
    assert!(c.bytes() <= 1 << 20, "{} bytes", c.bytes());
}
