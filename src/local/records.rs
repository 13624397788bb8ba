//! Local records in memory: owner name (reversed key) → records, with the PTR records made
//! from A/AAAA records and the empty non-terminals (`_tcp.example.internal` exists when
//! `_ldap._tcp.example.internal` does, so it is NODATA, not NXDOMAIN).
//!
//! Built once per snapshot from the checked `[local]` config; read without locks.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::config::LocalConfig;
use crate::lists::key::ReversedName;
use crate::suffix::top_label;

/// One record and where it was written (`local.records[0]`, or the auto PTR's source).
#[derive(Debug, Clone)]
pub struct Entry {
    /// The record.
    pub record: Record,
    /// Where it came from, for explain.
    pub source: Arc<str>,
}

/// Every local record by owner.
#[derive(Debug, Default)]
pub struct Records {
    owners: HashMap<Box<[u8]>, Vec<Entry>>,
    ents: HashSet<Box<[u8]>>,
    tops: Vec<Box<[u8]>>,
}

/// The reversed key of a hickory name (None for the root).
pub fn key_of(name: &Name) -> Option<ReversedName> {
    ReversedName::from_labels(name.iter())
}

impl Records {
    /// From `[local]`: the records as written, then (with `auto_ptr`) a PTR for every
    /// A/AAAA address that has no PTR written for it.
    pub fn new(c: &LocalConfig) -> Self {
        let mut r = Records::default();
        for lr in &c.records {
            r.add(lr.record.clone(), Arc::from(lr.source.as_str()));
        }
        if c.auto_ptr {
            for lr in &c.records {
                let ip = match &lr.record.data {
                    RData::A(a) => std::net::IpAddr::V4(a.0),
                    RData::AAAA(a) => std::net::IpAddr::V6(a.0),
                    _ => continue,
                };
                let owner = Name::from(ip);
                let written = key_of(&owner)
                    .and_then(|k| r.owners.get(k.as_bytes()))
                    .is_some_and(|es| {
                        es.iter().any(|e| {
                            e.record.record_type() == RecordType::PTR
                                && !e.source.starts_with("auto")
                        })
                    });
                if written {
                    continue;
                }
                let ptr = Record::from_rdata(
                    owner,
                    lr.record.ttl,
                    RData::PTR(PTR(lr.record.name.clone())),
                );
                r.add(ptr, Arc::from(format!("auto PTR of {}", lr.source)));
            }
        }
        r
    }

    fn add(&mut self, record: Record, source: Arc<str>) {
        let Some(key) = key_of(&record.name) else {
            return;
        };
        let key = key.as_bytes();
        let top = top_label(key);
        if !self.tops.iter().any(|t| **t == *top) {
            self.tops.push(top.into());
        }
        let mut end = key.len();
        while let Some(dot) = key[..end].iter().rposition(|&b| b == b'.') {
            self.ents.insert(key[..dot].into());
            end = dot;
        }
        let list = self.owners.entry(key.into()).or_default();
        if !list.iter().any(|e| e.record == record) {
            list.push(Entry { record, source });
        }
    }

    /// The records owned by exactly this name.
    #[inline]
    pub fn get(&self, key: &[u8]) -> Option<&[Entry]> {
        if self.owners.is_empty() || !self.tops.iter().any(|t| **t == *top_label(key)) {
            return None;
        }
        self.owners.get(key).map(Vec::as_slice)
    }

    /// A name that owns nothing but has records below it.
    pub fn is_empty_non_terminal(&self, key: &[u8]) -> bool {
        self.ents.contains(key)
    }

    /// Number of owner names.
    pub fn len(&self) -> usize {
        self.owners.len()
    }

    /// True with no records.
    pub fn is_empty(&self) -> bool {
        self.owners.is_empty()
    }
}
