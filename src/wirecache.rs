//! The wire cache: finished UDP responses for allowed names, keyed by (lower-cased wire
//! name, type, class, DO bit, EDNS present), served by copying the stored bytes and
//! patching in the query's id, flags, question case and counted-down TTLs.
//!
//! It sits after the policy, like the answer cache, so it only ever holds answers that are
//! the same for every client; the policy still runs for every query, and so does response
//! inspection: each entry keeps the answer's [`Findings`] (chain targets, addresses) for
//! the policy to check per client. HTTPS/SVCB answers rewritten for bypass prevention (ECH
//! removed) are kept apart from the unrewritten ones by a key bit. A lookup allocates
//! nothing: the borrowed key is compared with `Equivalent`, the bytes go into the receive
//! loop's reusable buffer.

use std::hash::{Hash, Hasher};
use std::sync::Arc;
use std::time::Instant;

use quick_cache::Equivalent;

use crate::inspect::Findings;
use crate::transport::wire::{HEADER, Query};

/// Owned key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WireKey {
    name: Box<[u8]>,
    qtype: u16,
    qclass: u16,
    flags: u8,
}

/// Borrowed key for lookups.
#[derive(Debug, Clone, Copy)]
pub struct WireKeyRef<'a> {
    name: &'a [u8],
    qtype: u16,
    qclass: u16,
    flags: u8,
}

impl<'a> WireKeyRef<'a> {
    /// The key of a query; `stripped` for the ECH-less form of an HTTPS/SVCB answer.
    pub fn of(q: &'a Query, stripped: bool) -> Self {
        Self {
            name: q.wire_name(),
            qtype: q.qtype,
            qclass: q.qclass,
            flags: u8::from(q.dnssec_ok) | u8::from(q.edns) << 1 | u8::from(stripped) << 2,
        }
    }

    fn to_owned_key(self) -> WireKey {
        WireKey {
            name: self.name.into(),
            qtype: self.qtype,
            qclass: self.qclass,
            flags: self.flags,
        }
    }
}

// Owned and borrowed keys must hash identically for `Equivalent` lookups.
impl Hash for WireKey {
    fn hash<H: Hasher>(&self, h: &mut H) {
        WireKeyRef {
            name: &self.name,
            qtype: self.qtype,
            qclass: self.qclass,
            flags: self.flags,
        }
        .hash(h);
    }
}

impl Hash for WireKeyRef<'_> {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write(self.name);
        h.write_u16(self.qtype);
        h.write_u16(self.qclass);
        h.write_u8(self.flags);
    }
}

impl Equivalent<WireKey> for WireKeyRef<'_> {
    fn equivalent(&self, k: &WireKey) -> bool {
        *self.name == *k.name
            && self.qtype == k.qtype
            && self.qclass == k.qclass
            && self.flags == k.flags
    }
}

#[derive(Debug)]
struct Entry {
    bytes: Box<[u8]>,
    ttls: Box<[(u16, u32)]>,
    stored: Instant,
    /// Seconds the entry is fresh (smallest TTL, clamped by config).
    fresh_for: u32,
    rcode: u8,
    findings: Option<Arc<Findings>>,
}

/// A wire cache hit: the response is in the caller's buffer. It holds the entry itself,
/// so reading its findings costs no reference count of its own.
#[derive(Debug)]
pub struct Hit(Arc<Entry>);

impl Hit {
    /// The response code.
    pub fn rcode(&self) -> u8 {
        self.0.rcode
    }

    /// What response inspection must check for this client.
    pub fn findings(&self) -> Option<&Findings> {
        self.0.findings.as_deref()
    }
}

/// The cache.
pub struct WireCache {
    inner: quick_cache::sync::Cache<WireKey, Arc<Entry>>,
}

impl WireCache {
    /// A cache holding at most `entries` responses.
    pub fn new(entries: usize) -> Self {
        Self {
            inner: quick_cache::sync::Cache::new(entries.max(1)),
        }
    }

    /// Write the cached response for `q` into `out`, ready to send; returns its response
    /// code and findings, or None on a miss or an expired entry. A response larger than
    /// the requester may get ([`Query::limit`]) is sent truncated at a record boundary with
    /// TC set.
    pub fn answer(
        &self,
        pkt: &[u8],
        q: &Query,
        stripped: bool,
        now: Instant,
        out: &mut Vec<u8>,
    ) -> Option<Hit> {
        let e = self.inner.get(&WireKeyRef::of(q, stripped))?;
        let age =
            u32::try_from(now.saturating_duration_since(e.stored).as_secs()).unwrap_or(u32::MAX);
        if age >= e.fresh_for {
            return None;
        }
        out.clear();
        out.extend_from_slice(&e.bytes);
        out[0..2].copy_from_slice(&q.id.to_be_bytes());
        // RD and CD as asked; the rest of the flags as stored.
        out[2] = (out[2] & !0x01) | u8::from(q.rd);
        out[3] = (out[3] & !0x10) | u8::from(q.cd) << 4;
        // The question exactly as asked (clients may randomise case).
        out[HEADER..q.question_end].copy_from_slice(&pkt[HEADER..q.question_end]);
        for &(at, ttl) in e.ttls.iter() {
            let at = usize::from(at);
            out[at..at + 4].copy_from_slice(&ttl.saturating_sub(age).max(1).to_be_bytes());
        }
        crate::transport::wire::truncate(out, usize::from(q.limit));
        Some(Hit(e))
    }

    /// Store a finished response for `q` (`stripped`: the ECH-less form), fresh for
    /// `fresh_for` seconds, with the findings of the answer it encodes.
    pub fn insert(
        &self,
        q: &Query,
        stripped: bool,
        response: &[u8],
        findings: Option<Arc<Findings>>,
        fresh_for: u32,
        now: Instant,
    ) {
        if fresh_for == 0 || response.len() < q.question_end {
            return;
        }
        let Some(ttls) = crate::transport::wire::ttl_fields(response) else {
            return;
        };
        let entry = Entry {
            bytes: response.into(),
            ttls: ttls.into(),
            stored: now,
            fresh_for,
            rcode: response[3] & 0x0f,
            findings,
        };
        self.inner
            .insert(WireKeyRef::of(q, stripped).to_owned_key(), Arc::new(entry));
    }

    /// Drop everything.
    pub fn clear(&self) {
        self.inner.clear();
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.inner.is_empty()
    }
}
