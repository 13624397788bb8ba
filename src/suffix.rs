//! Longest-suffix lookup of names in the reversed-label key form (`com.example.www`) the
//! policy already builds for every query: which configured zone, if any, holds a name.
//!
//! Built for the hot path: a name whose top-level label is not the top-level label of any
//! entry is rejected after comparing that one label with a handful of short slices, so
//! ordinary names pay (almost) nothing. Only names under a matching top-level label are
//! looked up, one hash probe per label boundary, longest first. It must not know what a
//! zone means (forwarding, local answers): callers keep that in the value.

use std::collections::HashMap;

/// Zones keyed by reversed name, with the longest match wins.
#[derive(Debug, Clone)]
pub struct SuffixMap<V> {
    map: HashMap<Box<[u8]>, V>,
    /// Distinct top-level labels of the entries, for the fast reject.
    tops: Vec<Box<[u8]>>,
}

impl<V> Default for SuffixMap<V> {
    fn default() -> Self {
        Self {
            map: HashMap::new(),
            tops: Vec::new(),
        }
    }
}

/// The top-level label of a reversed key (everything before the first `.`).
pub fn top_label(key: &[u8]) -> &[u8] {
    key.split(|&b| b == b'.').next().unwrap_or(key)
}

impl<V> SuffixMap<V> {
    /// Add (or replace) the zone whose reversed key is `key`.
    pub fn insert(&mut self, key: &[u8], value: V) {
        let top = top_label(key);
        if !self.tops.iter().any(|t| **t == *top) {
            self.tops.push(top.into());
        }
        self.map.insert(key.into(), value);
    }

    /// Number of zones.
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True if there are none.
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Could `key` be at or below an entry? False is certain; true only means "look".
    #[inline]
    pub fn may_hold(&self, key: &[u8]) -> bool {
        let top = top_label(key);
        self.tops.iter().any(|t| **t == *top)
    }

    /// The entry exactly at `key`.
    pub fn get(&self, key: &[u8]) -> Option<&V> {
        self.map.get(key)
    }

    /// The longest entry at or above `key`: (its key length, value).
    pub fn longest(&self, key: &[u8]) -> Option<(usize, &V)> {
        if !self.may_hold(key) {
            return None;
        }
        if let Some(v) = self.map.get(key) {
            return Some((key.len(), v));
        }
        let mut end = key.len();
        while let Some(dot) = key[..end].iter().rposition(|&b| b == b'.') {
            if let Some(v) = self.map.get(&key[..dot]) {
                return Some((dot, v));
            }
            end = dot;
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_longest_zone_wins_and_label_boundaries_count() {
        let mut m = SuffixMap::default();
        m.insert(b"internal.example-school", 1);
        m.insert(b"internal.example-school.ad", 2);
        assert_eq!(m.longest(b"internal.example-school.ad.dc1"), Some((26, &2)));
        assert_eq!(m.longest(b"internal.example-school.ad"), Some((26, &2)));
        assert_eq!(m.longest(b"internal.example-school.mis"), Some((23, &1)));
        assert_eq!(m.longest(b"internal.example-schoolx"), None);
        assert_eq!(m.longest(b"internal.example-school.adx"), Some((23, &1)));
        assert_eq!(m.longest(b"com.example"), None);
        assert!(!m.may_hold(b"com.example.www"));
        assert!(m.may_hold(b"internal"));
    }
}
