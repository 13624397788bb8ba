//! Rate limiting: per-client query limits and response-rate limiting (RRL) of REFUSED
//! answers, for the UDP fast path and every other listener.
//!
//! One hostile device must not be able to take the whole resolver (issue 11: one address
//! got 320,000 answers in 8 s), and a server that answers REFUSED to the world must not be a
//! reflector for spoofed floods. Two limits, each a token bucket per client *prefix* (one
//! IPv4 address and one IPv6 /64 by default, configurable down to /24 and /56 so an
//! attacker cannot escape it by rotating through the addresses of one network):
//! - **queries**: every query from a prefix takes a token; with none left the query is
//!   dropped unanswered. Exempt networks (the staff server VLAN) are never limited.
//! - **REFUSED answers** to clients in no network: with no token left the answer is
//!   dropped, except every `slip`th one, which is sent truncated (TC=1, no records) so a
//!   genuine client whose address is being spoofed can still get through over TCP (BIND's
//!   and Knot's "slip"). TCP has no slip: its source address cannot be spoofed.
//!
//! Memory is bounded whatever the number of source addresses: buckets live in a fixed table
//! of `2^16` atomic words per limit (512 KiB), indexed by a keyed hash of the prefix, and
//! updated with compare-and-swap, so the hot path takes no lock and allocates nothing. Each
//! prefix maps to two slots (count-min style) and is limited only when both are empty, so
//! an innocent prefix is only caught by a flood if both its slots collide with flooders.
//!
//! This module must not decide policy or write answers; it only says allow, drop or slip.

use std::hash::BuildHasher;
use std::net::IpAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use prometheus::IntCounter;

use crate::config::RateLimitConfig;
use crate::metrics::{Metrics, RATELIMIT_SERIES};

/// Slots per table (a power of two).
const SLOTS: usize = 1 << 16;
/// Milli-tokens per token: rates and elapsed milliseconds stay integers.
const MILLI: u64 = 1000;

/// What to do with a query or answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// Within the limit (or not limited).
    Allow,
    /// Over the limit: send nothing.
    Drop,
    /// Over the limit, but send a truncated answer (TC=1) so a real client retries on TCP.
    Slip,
}

/// A fixed table of token buckets, one 64-bit word each: the high 32 bits are the time of
/// the last update (milliseconds, wrapping), the low 32 the milli-tokens left. Zero means
/// never used (a full bucket).
struct Buckets {
    slots: Box<[AtomicU64]>,
    hasher: std::hash::RandomState,
    salt: u8,
}

impl Buckets {
    fn new(salt: u8) -> Self {
        Self {
            slots: (0..SLOTS).map(|_| AtomicU64::new(0)).collect(),
            hasher: std::hash::RandomState::new(),
            salt,
        }
    }

    /// Take a token for `key` (a client prefix or a device ID) at `now_ms`; true if one
    /// was there.
    fn take(&self, key: impl std::hash::Hash, now_ms: u32, rate: u32, burst: u32) -> bool {
        let h = self.hasher.hash_one((self.salt, key));
        let a = (h as usize) & (SLOTS - 1);
        let mut b = ((h >> 32) as usize) & (SLOTS - 1);
        if a == b {
            b ^= 1;
        }
        // Count-min: both slots pay; the prefix is limited only if neither had a token.
        let got_a = take_slot(&self.slots[a], now_ms, rate, burst);
        let got_b = take_slot(&self.slots[b], now_ms, rate, burst);
        got_a || got_b
    }
}

/// Refill one bucket for the time since its last update and take a token if there is one.
fn take_slot(slot: &AtomicU64, now_ms: u32, rate: u32, burst: u32) -> bool {
    let cap = u64::from(burst) * MILLI;
    let mut cur = slot.load(Ordering::Relaxed);
    loop {
        let (stamp, tokens) = ((cur >> 32) as u32, cur & 0xffff_ffff);
        let (tokens, stamp) = if cur == 0 {
            (cap, now_ms)
        } else {
            let elapsed = now_ms.wrapping_sub(stamp);
            // Another thread stored a later time: no time has passed for us.
            if elapsed > u32::MAX / 2 {
                (tokens.min(cap), stamp)
            } else {
                let refill = u64::from(elapsed) * u64::from(rate);
                (tokens.saturating_add(refill).min(cap), now_ms)
            }
        };
        let allowed = tokens >= MILLI;
        let left = if allowed { tokens - MILLI } else { tokens };
        let new = (u64::from(stamp) << 32) | left;
        if new == cur {
            return allowed;
        }
        match slot.compare_exchange_weak(cur, new, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => return allowed,
            Err(seen) => cur = seen,
        }
    }
}

/// The limiter: both tables, the slip counter, the clock origin, and its metrics.
pub struct RateLimiter {
    queries: Buckets,
    refused: Buckets,
    slipped: AtomicU64,
    epoch: Instant,
    query_drops: IntCounter,
    refused_drops: IntCounter,
    refused_slips: IntCounter,
}

impl RateLimiter {
    /// Empty tables (about 1 MiB), counting into `metrics`.
    pub fn new(metrics: &Metrics) -> Self {
        let counter = |l: [&str; 2]| metrics.ratelimited.with_label_values(&l);
        Self {
            queries: Buckets::new(1),
            refused: Buckets::new(2),
            slipped: AtomicU64::new(0),
            epoch: Instant::now(),
            query_drops: counter(RATELIMIT_SERIES[0]),
            refused_drops: counter(RATELIMIT_SERIES[1]),
            refused_slips: counter(RATELIMIT_SERIES[2]),
        }
    }

    /// Milliseconds since the limiter started, wrapping; never 0 in the first 49 days so a
    /// stored stamp is never mistaken for an unused slot.
    fn now_ms(&self) -> u32 {
        (self.epoch.elapsed().as_millis() as u32).wrapping_add(1)
    }

    /// May this client's query be answered at all?
    pub fn query(&self, ip: IpAddr, cfg: &RateLimitConfig) -> Verdict {
        if !cfg.enabled || cfg.queries_per_second == 0 || exempt(ip, cfg) {
            return Verdict::Allow;
        }
        if self.queries.take(
            prefix(ip, cfg),
            self.now_ms(),
            cfg.queries_per_second,
            cfg.burst,
        ) {
            return Verdict::Allow;
        }
        self.query_drops.inc();
        Verdict::Drop
    }

    /// May this enrolled device's query be answered? Devices on the encrypted listeners are
    /// limited by their ID, not their address: a school's devices share one NATed address
    /// off site, and one device roaming between networks is still one device. Queries from
    /// an exempt network are not limited.
    pub fn query_device(&self, ip: IpAddr, id: &str, cfg: &RateLimitConfig) -> Verdict {
        if !cfg.enabled || cfg.queries_per_second == 0 || exempt(ip, cfg) {
            return Verdict::Allow;
        }
        // Tagged so an ID never shares a bucket key with an address prefix.
        if self
            .queries
            .take((7u8, id), self.now_ms(), cfg.queries_per_second, cfg.burst)
        {
            return Verdict::Allow;
        }
        self.query_drops.inc();
        Verdict::Drop
    }

    /// May a REFUSED answer go to this client (one in no network)? `udp` allows slip.
    pub fn refused(&self, ip: IpAddr, cfg: &RateLimitConfig, udp: bool) -> Verdict {
        if !cfg.enabled || cfg.refused_per_second == 0 || exempt(ip, cfg) {
            return Verdict::Allow;
        }
        if self.refused.take(
            prefix(ip, cfg),
            self.now_ms(),
            cfg.refused_per_second,
            cfg.refused_burst,
        ) {
            return Verdict::Allow;
        }
        if udp && cfg.slip > 0 {
            let n = self.slipped.fetch_add(1, Ordering::Relaxed);
            if n.is_multiple_of(u64::from(cfg.slip)) {
                self.refused_slips.inc();
                return Verdict::Slip;
            }
        }
        self.refused_drops.inc();
        Verdict::Drop
    }
}

fn exempt(ip: IpAddr, cfg: &RateLimitConfig) -> bool {
    let ip = ip.to_canonical();
    cfg.exempt.iter().any(|n| n.contains(&ip))
}

/// The client's prefix: address family and the address with host bits cleared.
fn prefix(ip: IpAddr, cfg: &RateLimitConfig) -> (u8, u128) {
    match ip.to_canonical() {
        IpAddr::V4(v4) => {
            let shift = 32 - u32::from(cfg.ipv4_prefix.clamp(1, 32));
            let mask = u32::MAX.checked_shl(shift).unwrap_or(0);
            (4, u128::from(u32::from(v4) & mask))
        }
        IpAddr::V6(v6) => {
            let shift = 128 - u32::from(cfg.ipv6_prefix.clamp(1, 128));
            let mask = u128::MAX.checked_shl(shift).unwrap_or(0);
            (6, u128::from(v6) & mask)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> RateLimitConfig {
        RateLimitConfig {
            enabled: true,
            queries_per_second: 1,
            burst: 5,
            refused_per_second: 1,
            refused_burst: 2,
            slip: 2,
            ipv4_prefix: 24,
            ipv6_prefix: 56,
            exempt: vec!["10.9.0.0/16".parse().unwrap()],
        }
    }

    #[test]
    fn a_bucket_allows_its_burst_then_refills_at_the_rate() {
        let slot = AtomicU64::new(0);
        let got: usize = (0..10).filter(|_| take_slot(&slot, 100, 2, 5)).count();
        assert_eq!(got, 5);
        assert!(!take_slot(&slot, 499, 2, 5), "0.8 tokens after 399 ms");
        assert!(take_slot(&slot, 600, 2, 5), "1 token after 500 ms at 2/s");
        assert!(!take_slot(&slot, 600, 2, 5));
        assert!(
            !take_slot(&slot, 500, 2, 5),
            "a time from the past adds nothing"
        );
        let got: usize = (0..10).filter(|_| take_slot(&slot, 100_000, 2, 5)).count();
        assert_eq!(got, 5, "refill stops at the burst");
    }

    #[test]
    fn devices_are_limited_by_id_not_by_their_shared_address() {
        let l = RateLimiter::new(&Metrics::new());
        let c = cfg();
        let nat: IpAddr = "203.0.113.7".parse().unwrap();
        let a = (0..20)
            .filter(|_| l.query_device(nat, "k3x9", &c) == Verdict::Allow)
            .count();
        assert!((5..=6).contains(&a), "{a}");
        assert_eq!(l.query_device(nat, "k3x9", &c), Verdict::Drop);
        // Another device behind the same address, and the address itself, still have theirs.
        assert_eq!(l.query_device(nat, "p7q2", &c), Verdict::Allow);
        assert_eq!(l.query(nat, &c), Verdict::Allow);
        let staff: IpAddr = "10.9.4.4".parse().unwrap();
        assert!((0..100).all(|_| l.query_device(staff, "k3x9", &c) == Verdict::Allow));
    }

    #[test]
    fn prefixes_share_a_bucket_and_exempt_networks_are_never_limited() {
        let l = RateLimiter::new(&Metrics::new());
        let c = cfg();
        let a: IpAddr = "10.1.2.3".parse().unwrap();
        let same_24: IpAddr = "10.1.2.200".parse().unwrap();
        let other: IpAddr = "10.1.3.3".parse().unwrap();
        let allowed = (0..20).filter(|_| l.query(a, &c) == Verdict::Allow).count();
        assert!((5..=6).contains(&allowed), "{allowed}");
        assert_eq!(l.query(same_24, &c), Verdict::Drop);
        assert_eq!(l.query(other, &c), Verdict::Allow);
        let staff: IpAddr = "10.9.4.4".parse().unwrap();
        assert!((0..100).all(|_| l.query(staff, &c) == Verdict::Allow));
        let v6: IpAddr = "2001:db8:0:1::1".parse().unwrap();
        let v6_same_56: IpAddr = "2001:db8:0:ff::2".parse().unwrap();
        assert_ne!(prefix(v6, &c), prefix(a, &c));
        assert_eq!(prefix(v6, &c), prefix(v6_same_56, &c));
        assert_eq!(
            prefix("::ffff:10.1.2.3".parse().unwrap(), &c),
            prefix(a, &c),
            "mapped IPv4 counts as IPv4"
        );
    }

    #[test]
    fn refused_answers_over_the_limit_slip_every_nth_on_udp_only() {
        let l = RateLimiter::new(&Metrics::new());
        let c = cfg();
        let ip: IpAddr = "192.0.2.1".parse().unwrap();
        let v: Vec<Verdict> = (0..12).map(|_| l.refused(ip, &c, true)).collect();
        let allowed = v.iter().filter(|v| **v == Verdict::Allow).count();
        let slips = v.iter().filter(|v| **v == Verdict::Slip).count();
        assert!((2..=3).contains(&allowed), "{v:?}");
        assert!(slips >= 4, "every 2nd limited answer slips: {v:?}");
        let tcp = RateLimiter::new(&Metrics::new());
        let v: Vec<Verdict> = (0..12).map(|_| tcp.refused(ip, &c, false)).collect();
        assert!(!v.contains(&Verdict::Slip), "no slip on TCP: {v:?}");
    }
}
