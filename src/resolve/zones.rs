//! Conditional forwarding: one forwarder per `[[zone]]` (the school's domain controllers
//! for the AD domain and its reverse zones), chosen by the longest zone that holds the
//! name, before the main upstream — in forward and recursive mode alike.
//!
//! Each zone's forwarder is an ordinary [`Forwarder`] with the zone's own servers,
//! timeout and attempts (UDP with TCP when truncated, or `tcp://`), so large answers and
//! AD's SRV records come back whole. Answers go through the same cache as any other.

use hickory_proto::rr::Name;

use super::UpstreamError;
use super::forward::Forwarder;
use crate::config::{UpstreamConfig, ZoneConfig};
use crate::local::records::key_of;
use crate::suffix::SuffixMap;

/// One forwarded zone.
pub struct ZoneForwarder {
    /// The zone.
    pub name: Name,
    /// Its settings (for the deadline).
    pub config: UpstreamConfig,
    /// Its resolver.
    pub forwarder: Forwarder,
}

/// Every forwarded zone, by name.
#[derive(Default)]
pub struct Zones {
    map: SuffixMap<usize>,
    zones: Vec<ZoneForwarder>,
}

impl Zones {
    /// Build one forwarder per zone.
    pub fn new(configs: &[ZoneConfig]) -> Result<Self, UpstreamError> {
        let mut z = Zones::default();
        for c in configs {
            let Some(key) = key_of(&c.name) else {
                continue;
            };
            let forwarder = Forwarder::new(&c.upstream)
                .map_err(|e| UpstreamError::Setup(format!("zone {}: {e}", c.name.to_ascii())))?;
            z.map.insert(key.as_bytes(), z.zones.len());
            z.zones.push(ZoneForwarder {
                name: c.name.clone(),
                config: c.upstream.clone(),
                forwarder,
            });
        }
        Ok(z)
    }

    /// The zone whose servers answer `name`: the longest that holds it.
    pub fn route(&self, name: &Name) -> Option<&ZoneForwarder> {
        if self.zones.is_empty() {
            return None;
        }
        let key = key_of(name)?;
        let (_, &i) = self.map.longest(key.as_bytes())?;
        self.zones.get(i)
    }
}
