//! Resolve stage: answers for allowed names from upstream resolvers (forward) or from the
//! root (recursive). Only this module talks to hickory-resolver.
//!
//! It must not filter, cache or log per query: filtering happens before it (a blocked name
//! never leaves the resolver) and caching around it (`cache`), so both modes share one
//! cache and one policy.

mod forward;
pub mod rebinding;
mod recursive;
mod runtime;
pub mod zones;

use std::time::Instant;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, Record, RecordType};

use crate::config::{UpstreamConfig, UpstreamMode};

/// A resolved answer, as cached and served.
#[derive(Debug, Clone)]
pub struct Answer {
    /// NOERROR, NXDOMAIN (SERVFAIL is an error, never an answer).
    pub rcode: ResponseCode,
    /// Answer section, CNAME chain included.
    pub answers: Vec<Record>,
    /// Authority section (the SOA of a negative answer).
    pub authorities: Vec<Record>,
    /// What response inspection must check again for every client (chain targets,
    /// addresses), read once when the answer is cached; None until then.
    pub findings: Option<std::sync::Arc<crate::inspect::Findings>>,
}

impl Answer {
    /// A negative answer (NXDOMAIN or NODATA) carrying the zone's SOA if known.
    pub fn negative(rcode: ResponseCode, soa: Option<Record>) -> Self {
        Self {
            rcode,
            answers: Vec::new(),
            authorities: soa.into_iter().collect(),
            findings: None,
        }
    }

    /// True for NXDOMAIN or NODATA.
    pub fn is_negative(&self) -> bool {
        self.rcode == ResponseCode::NXDomain || self.answers.is_empty()
    }
}

/// Why no answer could be had.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum UpstreamError {
    /// The resolver could not be built from the config.
    #[error("upstream setup: {0}")]
    Setup(String),
    /// Resolution failed (timeout, SERVFAIL upstream, lame delegation...).
    #[error("resolution failed: {0}")]
    Failed(String),
}

/// The configured way of resolving.
pub enum Upstream {
    /// Forward to resolvers.
    Forward(Box<forward::Forwarder>),
    /// Recurse from the root.
    Recursive(Box<recursive::Recursive>),
}

impl Upstream {
    /// Build from config.
    pub fn from_config(c: &UpstreamConfig) -> Result<Upstream, UpstreamError> {
        Ok(match c.mode {
            UpstreamMode::Forward => Upstream::Forward(Box::new(forward::Forwarder::new(c)?)),
            UpstreamMode::Recursive => Upstream::Recursive(Box::new(recursive::Recursive::new(c)?)),
        })
    }

    /// Resolve one question. `name` must be fully qualified.
    pub async fn resolve(
        &self,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
    ) -> Result<Answer, UpstreamError> {
        match self {
            Upstream::Forward(f) => f.resolve(name, qtype).await,
            Upstream::Recursive(r) => r.resolve(name, qtype, dnssec_ok, Instant::now()).await,
        }
    }

    /// "forward" or "recursive", for metrics and logs.
    pub fn mode_name(&self) -> &'static str {
        match self {
            Upstream::Forward(_) => "forward",
            Upstream::Recursive(_) => "recursive",
        }
    }
}
