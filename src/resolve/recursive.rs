//! Recursive resolution from root hints with hickory's recursor (hickory-resolver's
//! `recursor` feature).
//!
//! The recursor refuses by default to query private and loopback name servers (a defence
//! against rebinding through a public root). When the configured root hints are themselves
//! private or loopback, the operator is running a private DNS tree (an isolated network,
//! or the test internet), so that refusal is lifted.

use std::time::Instant;

use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{Name, RecordType};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::recursor::{DnssecConfig, DnssecPolicy, Recursor, RecursorOptions};

use super::{Answer, UpstreamError};
use crate::config::UpstreamConfig;

/// A recursive resolver.
pub struct Recursive {
    recursor: Recursor<TokioRuntimeProvider>,
}

fn is_private(ip: &std::net::IpAddr) -> bool {
    match ip.to_canonical() {
        std::net::IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        std::net::IpAddr::V6(v6) => {
            v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local()
        }
    }
}

impl Recursive {
    /// Build from config.
    pub fn new(c: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let mut opts = RecursorOptions::default();
        if c.root_hints.iter().any(is_private) {
            opts.deny_server.clear();
        }
        // Our own cache sits in front; keep the recursor's response cache modest.
        opts.response_cache_size = 16_384;
        let policy = if c.dnssec {
            // Default config: the built-in root trust anchor.
            DnssecPolicy::ValidateWithStaticKey(DnssecConfig::default())
        } else {
            DnssecPolicy::SecurityUnaware
        };
        let recursor = Recursor::new(
            &c.root_hints,
            policy,
            None,
            opts,
            TokioRuntimeProvider::default(),
        )
        .map_err(|e| UpstreamError::Setup(e.to_string()))?;
        Ok(Self { recursor })
    }

    /// Resolve one question.
    pub async fn resolve(
        &self,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        now: Instant,
    ) -> Result<Answer, UpstreamError> {
        let mut fqdn = name.clone();
        fqdn.set_fqdn(true);
        match self
            .recursor
            .resolve(Query::query(fqdn, qtype), now, dnssec_ok)
            .await
        {
            Ok(msg) if msg.metadata.response_code == ResponseCode::ServFail => {
                Err(UpstreamError::Failed("SERVFAIL from authority".to_owned()))
            }
            Ok(msg) => Ok(Answer {
                rcode: msg.metadata.response_code,
                answers: msg.answers,
                authorities: msg.authorities,
            }),
            Err(e) if e.is_nx_domain() => Ok(Answer::negative(
                ResponseCode::NXDomain,
                e.into_soa().map(|s| s.into_record_of_rdata()),
            )),
            Err(e) if e.is_no_records_found() => Ok(Answer::negative(
                ResponseCode::NoError,
                e.into_soa().map(|s| s.into_record_of_rdata()),
            )),
            Err(e) => Err(UpstreamError::Failed(e.to_string())),
        }
    }
}
