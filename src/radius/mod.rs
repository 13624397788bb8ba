//! Users from RADIUS accounting (RFC 2866): a UDP listener for the Accounting-Requests of
//! the school's NASes (Wi-Fi controllers, 802.1X switches, the RADIUS server itself), and
//! the session table it keeps in [`crate::identity::Identities::sessions`]. Also starts
//! the user directory ([`crate::users`]) the sessions take their groups from.
//!
//! Only NASes listed in `[[radius.client]]` are heard, and only packets whose Request
//! Authenticator proves they know that NAS's shared secret; everything else is dropped
//! and counted in `chaperone_radius_packets_total{result}` (never a crash, never an
//! answer). Packet parsing is [`packet`], the table [`sessions`]. This module must not
//! decide policy: it only records who is signed in where.
//!
//! `radius.listen` is read at start-up; the clients, secrets and session lifetime are read
//! from the live config for every packet, so a reload changes them.

pub mod packet;
pub mod sessions;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;

use crate::policy::clock::SharedClock;
use crate::state::State;
use packet::{MAX_LEN, Request};
use sessions::{Applied, PUBLISH_EVERY, Sessions};

/// How often expired sessions are dropped from the table.
const SWEEP_EVERY: Duration = Duration::from_secs(10);
/// At most one warning about refused packets per this many seconds (the counter has them all).
const WARN_EVERY_SECS: i64 = 60;

/// Every `result` label value of `chaperone_radius_packets_total`.
pub const RESULTS: [&str; 6] = [
    "ok",
    "ignored",
    "unknown_client",
    "bad_authenticator",
    "malformed",
    "full",
];

/// `chaperone_radius_*` metrics.
#[derive(Clone)]
pub struct RadiusMetrics {
    /// Accounting packets by result.
    pub packets: IntCounterVec,
    /// Sessions held.
    pub sessions: IntGauge,
}

impl RadiusMetrics {
    /// Register on `registry` (once per registry).
    pub fn register(registry: &Registry) -> Result<Self, prometheus::Error> {
        let packets = IntCounterVec::new(
            Opts::new(
                "chaperone_radius_packets_total",
                "RADIUS accounting packets by result: ok, ignored (nothing to record), unknown_client, bad_authenticator, malformed, full (session table full).",
            ),
            &["result"],
        )?;
        let sessions = IntGauge::new(
            "chaperone_radius_sessions",
            "RADIUS accounting sessions held (users signed in on an address).",
        )?;
        registry.register(Box::new(packets.clone()))?;
        registry.register(Box::new(sessions.clone()))?;
        for r in RESULTS {
            packets.with_label_values(&[r]);
        }
        Ok(Self { packets, sessions })
    }
}

/// What the listener tasks share.
struct Listener {
    state: Arc<State>,
    sessions: Arc<Sessions>,
    clock: SharedClock,
    metrics: Option<RadiusMetrics>,
    last_warning: AtomicI64,
}

/// Start the user directory and, with `[radius]`, bind the accounting listeners. Returns
/// the bound addresses (port 0 resolved).
pub async fn start(
    state: &Arc<State>,
    clock: SharedClock,
    shutdown: CancellationToken,
) -> Result<Vec<SocketAddr>, (SocketAddr, std::io::Error)> {
    let registry = state.metrics().registry();
    let users_metrics = crate::users::UsersMetrics::register(registry)
        .map_err(|e| tracing::error!("users metrics not registered: {e}"))
        .ok();
    let metrics = RadiusMetrics::register(registry)
        .map_err(|e| tracing::error!("RADIUS metrics not registered: {e}"))
        .ok();
    let sessions = Arc::new(Sessions::new(state.identities().clone()));
    let regroup = sessions.clone();
    crate::users::start(
        state,
        users_metrics,
        Arc::new(move |dir| regroup.regroup(dir)),
        shutdown.clone(),
    )
    .await;
    let Some(radius) = state.load().config.radius.clone() else {
        return Ok(Vec::new());
    };
    let mut sockets = Vec::new();
    for addr in &radius.listen {
        let sock = UdpSocket::bind(addr).await.map_err(|e| (*addr, e))?;
        let bound = sock.local_addr().map_err(|e| (*addr, e))?;
        sockets.push((sock, bound));
    }
    let listener = Arc::new(Listener {
        state: state.clone(),
        sessions: sessions.clone(),
        clock: clock.clone(),
        metrics: metrics.clone(),
        last_warning: AtomicI64::new(i64::MIN),
    });
    let addrs = sockets.iter().map(|(_, a)| *a).collect();
    for (sock, _) in sockets {
        tokio::spawn(serve(sock, listener.clone(), shutdown.clone()));
    }
    tokio::spawn(publish(sessions, clock, metrics, shutdown));
    tracing::info!("RADIUS accounting on {addrs:?}");
    Ok(addrs)
}

/// Receive and answer accounting packets until `shutdown`, one at a time (each is a few
/// microseconds of work).
async fn serve(sock: UdpSocket, l: Arc<Listener>, shutdown: CancellationToken) {
    // One byte more than the largest packet, to tell an oversized datagram.
    let mut buf = vec![0u8; MAX_LEN + 1];
    loop {
        let got = tokio::select! {
            r = sock.recv_from(&mut buf) => r,
            _ = shutdown.cancelled() => return,
        };
        let (n, from) = match got {
            Ok(v) => v,
            Err(e) => {
                tracing::debug!("RADIUS receive: {e}");
                continue;
            }
        };
        let data = buf.get(..n).unwrap_or_default();
        let (result, reply) = l.handle(data, from.ip());
        if let Some(m) = &l.metrics {
            m.packets.with_label_values(&[result]).inc();
        }
        if let Some(reply) = reply
            && let Err(e) = sock.send_to(&reply, from).await
        {
            tracing::debug!("RADIUS reply to {from}: {e}");
        }
    }
}

impl Listener {
    /// The result label and the Accounting-Response to send, if any.
    fn handle(&self, data: &[u8], from: IpAddr) -> (&'static str, Option<[u8; packet::MIN_LEN]>) {
        let snap = self.state.load();
        let Some(radius) = &snap.config.radius else {
            return ("unknown_client", None);
        };
        let Some(client) = radius.client_for(from) else {
            self.warn(format_args!(
                "RADIUS packet from {from}, which is in no [[radius.client]]: dropped"
            ));
            return ("unknown_client", None);
        };
        let req = match Request::parse(data) {
            Ok(r) => r,
            Err(e) => {
                tracing::debug!("RADIUS packet from {from} dropped: {e}");
                return ("malformed", None);
            }
        };
        if !req.verify(&client.secret) {
            self.warn(format_args!(
                "RADIUS packet from {from} ({}) failed the authenticator check: is the shared secret the same on both sides?",
                client.name
            ));
            return ("bad_authenticator", None);
        }
        let acct = match req.attributes() {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!("RADIUS packet from {from} dropped: {e}");
                return ("malformed", None);
            }
        };
        let now = self.clock.now().as_second();
        match self.sessions.apply(from, &acct, now, radius.session_ttl) {
            Applied::Recorded => ("ok", Some(req.response(&client.secret))),
            Applied::Ignored => ("ignored", Some(req.response(&client.secret))),
            Applied::Full => {
                self.warn(format_args!(
                    "RADIUS session table full ({} sessions): not recorded",
                    crate::identity::MAX_SESSIONS
                ));
                ("full", None)
            }
        }
    }

    /// A warning, at most one per [`WARN_EVERY_SECS`].
    fn warn(&self, message: std::fmt::Arguments<'_>) {
        let now = self.clock.now().as_second();
        let last = self.last_warning.load(Ordering::Relaxed);
        if now.saturating_sub(last) >= WARN_EVERY_SECS
            && self
                .last_warning
                .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
                .is_ok()
        {
            tracing::warn!("{message} (further ones counted in chaperone_radius_packets_total)");
        } else {
            tracing::debug!("{message}");
        }
    }
}

/// Publish the table when it changed, and sweep expired sessions, until `shutdown`.
async fn publish(
    sessions: Arc<Sessions>,
    clock: SharedClock,
    metrics: Option<RadiusMetrics>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(PUBLISH_EVERY);
    let mut last_sweep = tokio::time::Instant::now();
    loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = shutdown.cancelled() => return,
        }
        if last_sweep.elapsed() >= SWEEP_EVERY {
            sessions.sweep(clock.now().as_second());
            last_sweep = tokio::time::Instant::now();
        }
        if let (Some(n), Some(m)) = (sessions.publish_if_changed(), &metrics) {
            m.sessions.set(n as i64);
        }
    }
}
