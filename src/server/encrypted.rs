//! Starting the encrypted listeners (DoT and DoH, `[dot]`/`[doh]` with `[tls]`): bind
//! their addresses, put the certificate in force and keep it current, and hand the
//! sockets to [`crate::transport::tcp::spawn_tls`] and [`crate::transport::doh::spawn`].

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::StartError;
use crate::config::Config;
use crate::state::State;
use crate::transport::handler::Handler;
use crate::transport::tcp::{self, DotTls, TcpLimits};
use crate::transport::{self, doh, tls};

/// The running encrypted listeners.
#[derive(Default)]
pub(super) struct Encrypted {
    /// DoT addresses bound.
    pub dot_addrs: Vec<SocketAddr>,
    /// DoH addresses bound.
    pub doh_addrs: Vec<SocketAddr>,
    /// Their tasks (finished when every connection is).
    pub tasks: Vec<TaskTracker>,
}

/// Bind and serve the configured encrypted listeners (none without `[tls]`).
pub(super) fn start(
    config: &Config,
    state: &Arc<State>,
    handler: &Arc<Handler>,
    limits: TcpLimits,
    shutdown: &CancellationToken,
) -> Result<Encrypted, StartError> {
    let e = &config.encrypted;
    let Some(t) = &e.tls else {
        return Ok(Encrypted::default());
    };
    let loaded = tls::stamp(&t.cert, &t.key);
    let key =
        tls::load_certified_key(&t.cert, &t.key).map_err(|e| StartError::Tls(e.to_string()))?;
    let store = tls::CertStore::new(key);
    if let Some(m) = handler.encrypted_metrics() {
        tls::watch(
            store.clone(),
            tls_files(state),
            loaded,
            m.clone(),
            shutdown.clone(),
        );
    }
    let mut out = Encrypted::default();
    let formerr = state.metrics().formerr.clone();
    if !e.dot_listen.is_empty() {
        let (listeners, addrs) = bind_all(&e.dot_listen)?;
        let dot = DotTls {
            acceptor: tokio_rustls::TlsAcceptor::from(tls::server_config(store.clone(), &[b"dot"])),
            server_name: server_name(state),
        };
        out.tasks.push(tcp::spawn_tls(
            listeners,
            handler.clone(),
            formerr,
            limits.clone(),
            dot,
            shutdown.clone(),
        ));
        out.dot_addrs = addrs;
    }
    if !e.doh_listen.is_empty() {
        let (listeners, addrs) = bind_all(&e.doh_listen)?;
        let config = tls::server_config(store, &[b"h2", b"http/1.1"]);
        out.tasks.push(doh::spawn(
            listeners,
            handler.clone(),
            limits,
            config,
            shutdown.clone(),
        ));
        out.doh_addrs = addrs;
    }
    Ok(out)
}

fn bind_all(addrs: &[SocketAddr]) -> Result<(Vec<TcpListener>, Vec<SocketAddr>), StartError> {
    let v6only = transport::v6_only(addrs);
    let mut listeners = Vec::new();
    let mut bound = Vec::new();
    for addr in addrs {
        let bind_err = |source| StartError::Bind {
            addr: *addr,
            source,
        };
        let l = transport::bind_tcp(*addr, v6only).map_err(bind_err)?;
        bound.push(l.local_addr().map_err(bind_err)?);
        listeners.push(l);
    }
    Ok((listeners, bound))
}

/// `tls.server_name` from the live config (a reload may change it).
fn server_name(state: &Arc<State>) -> Arc<dyn Fn() -> Arc<str> + Send + Sync> {
    let live = Arc::downgrade(state);
    Arc::new(move || {
        live.upgrade()
            .and_then(|s| {
                let snap = s.load();
                snap.config
                    .encrypted
                    .tls
                    .as_ref()
                    .map(|t| Arc::from(t.server_name.as_str()))
            })
            .unwrap_or_else(|| Arc::from(""))
    })
}

/// The certificate and key files and poll interval from the live config.
fn tls_files(state: &Arc<State>) -> tls::FilesFn {
    let live = Arc::downgrade(state);
    Arc::new(move || {
        let s = live.upgrade()?;
        let snap = s.load();
        let t = snap.config.encrypted.tls.as_ref()?;
        Some((t.cert.clone(), t.key.clone(), t.reload_poll))
    })
}
