//! Forwarding through hickory-resolver to the configured upstreams (UDP/TCP/DoT/DoH).
//!
//! hickory's own cache is kept tiny: Chaperone caches answers itself (`crate::cache`) so
//! forward and recursive modes share one cache with serve-stale and metrics, and an answer
//! is never cached twice.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_resolver::Resolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};
use hickory_resolver::net::{DnsError, NetError};

use super::runtime::ConnectedUdp;
use super::{Answer, UpstreamError};
use crate::config::{Transport, UpstreamConfig, UpstreamServer};

/// A forwarding resolver.
pub struct Forwarder {
    resolver: Resolver<ConnectedUdp>,
}

fn name_server(s: &UpstreamServer) -> NameServerConfig {
    let mut conns = match &s.transport {
        Transport::Udp => vec![ConnectionConfig::udp(), ConnectionConfig::tcp()],
        Transport::Tcp => vec![ConnectionConfig::tcp()],
        Transport::Tls { server_name } => {
            vec![ConnectionConfig::tls(Arc::from(server_name.as_str()))]
        }
        Transport::Https { server_name, path } => vec![ConnectionConfig::https(
            Arc::from(server_name.as_str()),
            Some(Arc::from(path.as_str())),
        )],
    };
    for c in &mut conns {
        c.port = s.addr.port();
    }
    NameServerConfig::new(s.addr.ip(), true, conns)
}

impl Forwarder {
    /// Build from config.
    pub fn new(c: &UpstreamConfig) -> Result<Self, UpstreamError> {
        let servers = c.servers.iter().map(name_server).collect();
        let mut opts = ResolverOpts::default();
        opts.timeout = c.timeout;
        opts.attempts = c.attempts;
        // Our cache sits in front; hickory's would only duplicate it.
        opts.cache_size = 0;
        // Never answer clients from this machine's /etc/hosts.
        opts.use_hosts_file = ResolveHosts::Never;
        opts.preserve_intermediates = true;
        opts.ndots = 0;
        opts.edns_payload_len = 1232;
        let resolver = Resolver::builder_with_config(
            ResolverConfig::from_name_servers(servers),
            ConnectedUdp::default(),
        )
        .with_options(opts)
        .build()
        .map_err(|e| UpstreamError::Setup(e.to_string()))?;
        Ok(Self { resolver })
    }

    /// Resolve one question.
    pub async fn resolve(&self, name: &Name, qtype: RecordType) -> Result<Answer, UpstreamError> {
        match self.resolver.lookup(name.clone(), qtype).await {
            Ok(lookup) => Ok(Answer {
                rcode: ResponseCode::NoError,
                answers: lookup.answers().to_vec(),
                authorities: Vec::new(),
                findings: None,
            }),
            Err(e) if e.is_no_records_found() => {
                let rcode = match e.is_nx_domain() {
                    true => ResponseCode::NXDomain,
                    false => ResponseCode::NoError,
                };
                let end = match &e {
                    NetError::Dns(DnsError::NoRecordsFound(n)) => Some(n.query.name().clone()),
                    _ => None,
                };
                let mut answer =
                    Answer::negative(rcode, e.into_soa().map(|s| s.into_record_of_rdata()));
                if let Some(end) = end
                    && end != *name
                {
                    answer.answers = self.cname_chain(name, &end).await;
                }
                Ok(answer)
            }
            Err(e) => Err(UpstreamError::Failed(e.to_string())),
        }
    }

    /// The CNAME records from `name` to `end`, the name a negative answer was really for.
    ///
    /// hickory follows a CNAME to a name that does not exist (or has no records of the
    /// type) and reports only the negative answer for the target, dropping the CNAMEs. A
    /// client must still see them (RFC 2308 §2.1, RFC 6604): NXDOMAIN or NODATA with the
    /// chain in the answer section. So, only for negative answers that went through a
    /// chain, ask for each link's CNAME (cheap: the upstream has them cached, and our own
    /// cache then keeps the whole answer).
    async fn cname_chain(&self, name: &Name, end: &Name) -> Vec<Record> {
        let mut chain = Vec::new();
        let mut current = name.clone();
        for _ in 0..MAX_CHAIN {
            let Ok(lookup) = self
                .resolver
                .lookup(current.clone(), RecordType::CNAME)
                .await
            else {
                break;
            };
            let Some(link) = lookup
                .answers()
                .iter()
                .find(|r| r.name == current && matches!(r.data, RData::CNAME(_)))
                .cloned()
            else {
                break;
            };
            let RData::CNAME(target) = &link.data else {
                break;
            };
            let next = target.0.clone();
            chain.push(link);
            if next == *end {
                break;
            }
            current = next;
        }
        chain
    }
}

/// Most CNAME links rebuilt for one negative answer (unbound follows at most 8 too).
const MAX_CHAIN: usize = 8;
