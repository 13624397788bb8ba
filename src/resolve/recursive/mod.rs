//! Recursive resolution from root hints with hickory's recursor (hickory-resolver's
//! `recursor` feature). It owns the recursor's settings and the translation of its results
//! into [`Answer`]s; it must not cache (the pipeline's cache sits in front) or filter.
//!
//! The recursor refuses by default to query private and loopback name servers (a defence
//! against rebinding through a public root). When the configured root hints are themselves
//! private or loopback, the operator is running a private DNS tree (an isolated network,
//! or the test internet), so that refusal is lifted.
//!
//! Timeouts. hickory 0.26.3 waits up to 5 s (`ResolverOpts::default().timeout`, not
//! configurable through `RecursorOptions`) for one authoritative server, and gives the whole
//! set of servers of a zone those same 5 s. The pipeline's budget for one resolution is
//! shorter (`timeout_ms × attempts + 0.5 s`, 4.5 s by default), so an unreachable name
//! server was never given up on before the client got SERVFAIL; worse, the recursor only
//! demotes a server when a timeout completes, and it demotes a healthy one each time it
//! answers NODATA to a QNAME-minimisation probe, so a zone with one silent server among
//! live ones failed on every query (test
//! `recursive::one_silent_name_server_of_two_is_passed_over`). `PerServerTimeout` therefore
//! gives each authoritative server `[upstream] timeout_ms` (at most half of hickory's 5 s,
//! so a second server of the zone is always tried), and a failed resolution is retried up
//! to `[upstream] attempts` times, like forwarding.
//!
//! Answers. The recursor passes through what a broken authority puts in the answer
//! section; `answer::scrub` keeps only the CNAME chain and the asked type, each record
//! once. The recursor itself is hickory-resolver with a small patch
//! (patches/hickory-resolver/README.chaperone.md): no NS probe for the last label, and a
//! failed QNAME-minimisation probe falls back to the full name.
//!
//! DNSSEC. With `[upstream] dnssec = true` the recursor validates from the built-in root
//! trust anchor, but it only *labels* each record with its proof: dropping bogus data is
//! left to the caller (hickory's own server does it in its `Catalog`). Chaperone calls the
//! recursor directly, so `Recursive::pass` does it: a bogus answer or a bogus denial of
//! existence is SERVFAIL, never served (test `recursive::dnssec_rejects_a_forged_root`).

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use hickory_proto::dnssec::Proof;
use hickory_proto::op::{Query, ResponseCode};
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::config::{ConnectionConfig, ResolverOpts};
use hickory_resolver::net::runtime::TokioRuntimeProvider;
use hickory_resolver::net::{DnsError, NetError};
use hickory_resolver::recursor::{
    DnssecConfig, DnssecPolicy, QNameMinimization, Recursor, RecursorError, RecursorOptions,
};
use hickory_resolver::{ConnectionProvider, PoolContext, TlsConfig};

mod answer;

use super::{Answer, UpstreamError};
use crate::config::UpstreamConfig;

/// A recursive resolver.
pub struct Recursive {
    recursor: Recursor<PerServerTimeout>,
    attempts: usize,
}

fn is_private(ip: &IpAddr) -> bool {
    match ip.to_canonical() {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => v6.is_loopback() || v6.is_unique_local() || v6.is_unicast_link_local(),
    }
}

/// The longest wait for one authoritative server: the configured per-attempt timeout, but
/// at most half of the recursor's fixed per-zone deadline, so that when a zone's first
/// server is silent there is always time left to ask a second.
fn per_server_timeout(configured: Duration) -> Duration {
    configured.min(ResolverOpts::default().timeout / 2)
}

/// hickory's connection provider with a shorter timeout for each exchange with one name
/// server. The recursor hands every new connection its own pool context, whose timeout
/// (5 s) also bounds a whole zone's set of servers; this provider substitutes a context
/// that differs only in that timeout, so one silent server costs `timeout` and the pool
/// moves on (and demotes it) within the same query.
///
/// The substituted context is built like the recursor's own for the options Chaperone
/// uses (no opportunistic encryption, no avoided local ports); if those are ever enabled,
/// they must be copied here too.
#[derive(Clone)]
struct PerServerTimeout {
    runtime: TokioRuntimeProvider,
    cx: Arc<PoolContext>,
}

impl PerServerTimeout {
    fn new(timeout: Duration) -> Result<Self, NetError> {
        let mut opts = ResolverOpts::default();
        opts.timeout = timeout;
        Ok(Self {
            runtime: TokioRuntimeProvider::default(),
            cx: Arc::new(PoolContext::new(opts, TlsConfig::new()?)),
        })
    }
}

impl ConnectionProvider for PerServerTimeout {
    type Conn = <TokioRuntimeProvider as ConnectionProvider>::Conn;
    type FutureConn = <TokioRuntimeProvider as ConnectionProvider>::FutureConn;
    type RuntimeProvider = TokioRuntimeProvider;

    fn new_connection(
        &self,
        ip: IpAddr,
        config: &ConnectionConfig,
        _recursor_cx: &PoolContext,
    ) -> Result<Self::FutureConn, NetError> {
        self.runtime.new_connection(ip, config, &self.cx)
    }

    fn runtime_provider(&self) -> &Self::RuntimeProvider {
        &self.runtime
    }
}

/// The outcome of one pass of the recursor.
enum Pass {
    /// An answer, or a failure that asking again cannot change.
    Done(Result<Answer, UpstreamError>),
    /// A failure that may not recur (a timeout, a SERVFAIL, an unreachable server).
    Retry(UpstreamError),
}

impl Recursive {
    /// Build from config.
    pub fn new(c: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let mut opts = RecursorOptions::default();
        if c.root_hints.iter().any(is_private) {
            opts.deny_server.clear();
            if c.dnssec {
                tracing::warn!(
                    "upstream.dnssec = true with private root_hints: a private root is not signed with the IANA trust anchor, so every answer will fail validation (SERVFAIL)"
                );
            }
        }
        // Our own cache sits in front; keep the recursor's response cache modest.
        opts.response_cache_size = 16_384;
        // Best-effort QNAME minimisation, as unbound's default: an NXDOMAIN (or any other
        // failure) for a minimised probe stops the minimising and the full name is asked
        // (the patch in patches/hickory-resolver), instead of trusting a server that
        // answers NXDOMAIN for an empty non-terminal.
        opts.qname_minimization = QNameMinimization::Relaxed;
        let policy = if c.dnssec {
            // Default config: the built-in root trust anchor.
            DnssecPolicy::ValidateWithStaticKey(DnssecConfig::default())
        } else {
            DnssecPolicy::SecurityUnaware
        };
        let provider = PerServerTimeout::new(per_server_timeout(c.timeout))
            .map_err(|e| UpstreamError::Setup(e.to_string()))?;
        let recursor = Recursor::new(&c.root_hints, policy, None, opts, provider)
            .map_err(|e| UpstreamError::Setup(e.to_string()))?;
        Ok(Self {
            recursor,
            attempts: c.attempts.max(1),
        })
    }

    /// Resolve one question, asking again (up to `attempts` times in all) after a failure
    /// that may be transient. The steps that did succeed are in the recursor's caches, so a
    /// second pass only repeats what failed. The pipeline's deadline bounds the whole.
    pub async fn resolve(
        &self,
        name: &Name,
        qtype: RecordType,
        dnssec_ok: bool,
        now: Instant,
    ) -> Result<Answer, UpstreamError> {
        let mut fqdn = name.clone();
        fqdn.set_fqdn(true);
        let query = Query::query(fqdn, qtype);
        let mut at = now;
        let mut last = UpstreamError::Failed("no attempt made".to_owned());
        for _ in 0..self.attempts {
            match self.pass(query.clone(), at, dnssec_ok).await {
                Pass::Done(r) => return r,
                Pass::Retry(e) => last = e,
            }
            at = Instant::now();
        }
        Err(last)
    }

    async fn pass(&self, query: Query, at: Instant, dnssec_ok: bool) -> Pass {
        let (qname, qtype) = (query.name().clone(), query.query_type());
        match self.recursor.resolve(query, at, dnssec_ok).await {
            Ok(msg) if msg.metadata.response_code == ResponseCode::ServFail => {
                Pass::Retry(UpstreamError::Failed("SERVFAIL from authority".to_owned()))
            }
            Ok(msg) => {
                // As hickory's Catalog: a positive answer stands or falls by its answer
                // section, a negative one by its authority section (SOA, NSEC/NSEC3).
                let judged = if msg.answers.is_empty() {
                    &msg.authorities
                } else {
                    &msg.answers
                };
                if any_bogus(judged) {
                    return Pass::Done(Err(bogus()));
                }
                Pass::Done(Ok(Answer {
                    rcode: msg.metadata.response_code,
                    answers: answer::scrub(&qname, qtype, msg.answers),
                    authorities: msg.authorities,
                    findings: None,
                }))
            }
            Err(e) if e.is_nx_domain() || e.is_no_records_found() => {
                let rcode = if e.is_nx_domain() {
                    ResponseCode::NXDomain
                } else {
                    ResponseCode::NoError
                };
                let soa = e.into_soa().map(|s| s.into_record_of_rdata());
                if soa.as_ref().is_some_and(|s| s.proof == Proof::Bogus) {
                    return Pass::Done(Err(bogus()));
                }
                Pass::Done(Ok(Answer::negative(rcode, soa)))
            }
            // A negative answer whose denial of existence did not validate as secure: bogus
            // is refused; insecure (an unsigned zone below a signed one) is an answer.
            Err(RecursorError::Net(NetError::Dns(DnsError::Nsec {
                proof, response, ..
            }))) => {
                if proof == Proof::Bogus {
                    return Pass::Done(Err(bogus()));
                }
                let soa = response
                    .authorities
                    .iter()
                    .find(|r| matches!(r.data, RData::SOA(_)))
                    .cloned();
                Pass::Done(Ok(Answer::negative(response.metadata.response_code, soa)))
            }
            Err(RecursorError::Net(NetError::Dns(DnsError::DnssecBogus))) => {
                Pass::Done(Err(bogus()))
            }
            // Limits hit by the shape of the data (CNAME loops, delegation depth, too many
            // queries): the same again next time.
            Err(
                e @ (RecursorError::MaxRecordLimitExceeded { .. }
                | RecursorError::RecursionLimitExceeded { .. }
                | RecursorError::QueryBudgetExceeded),
            ) => Pass::Done(Err(UpstreamError::Failed(e.to_string()))),
            Err(e) => Pass::Retry(UpstreamError::Failed(e.to_string())),
        }
    }
}

/// True if DNSSEC validation found any of these records bogus (RRSIGs carry the proof of
/// the RRset they signed, so they are judged with it). Without validation every record is
/// `Indeterminate`.
fn any_bogus(records: &[Record]) -> bool {
    records.iter().any(|r| r.proof == Proof::Bogus)
}

fn bogus() -> UpstreamError {
    UpstreamError::Failed("DNSSEC validation failed (bogus)".to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn per_server_timeout_leaves_room_for_a_second_server() {
        let zone_deadline = ResolverOpts::default().timeout;
        assert_eq!(
            per_server_timeout(Duration::from_millis(400)),
            Duration::from_millis(400)
        );
        assert_eq!(
            per_server_timeout(Duration::from_secs(30)),
            zone_deadline / 2
        );
    }

    #[test]
    fn private_root_hints_are_recognised() {
        for ip in [
            "127.0.0.10",
            "10.1.2.3",
            "192.168.0.1",
            "fd00::1",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            assert!(is_private(&ip.parse().unwrap()), "{ip}");
        }
        for ip in ["198.41.0.4", "2001:503:ba3e::2:30"] {
            assert!(!is_private(&ip.parse().unwrap()), "{ip}");
        }
    }
}
