//! Forwarding through hickory-resolver to the configured upstreams (UDP/TCP/DoT/DoH).
//!
//! hickory's own cache is kept tiny: Chaperone caches answers itself (`crate::cache`) so
//! forward and recursive modes share one cache with serve-stale and metrics, and an answer
//! is never cached twice.

use std::sync::Arc;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::{Name, RecordType};
use hickory_resolver::Resolver;
use hickory_resolver::config::{
    ConnectionConfig, NameServerConfig, ResolveHosts, ResolverConfig, ResolverOpts,
};

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
