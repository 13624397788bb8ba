//! DNS over TCP (RFC 7766) and over TLS (RFC 7858): accept, limit, read length-prefixed
//! messages, hand each one to the pipeline through the request handler
//! ([`crate::transport::handler::Handler`], the same path the UDP listener's general
//! queries take), and write the replies. DoT is the same framing on a TLS stream: one code
//! path over any `AsyncRead + AsyncWrite` stream, with the device ID read from the TLS
//! server name (SNI) as the connection's credential.
//!
//! Why not hickory-server's listener: it gives no control over connections, so one client
//! could hold every file descriptor, and it answers one query per connection at a time.
//! Here:
//! - connections are capped in total and per client ([`super::client_key`]); when a cap is
//!   reached the oldest *idle* connection (no query in flight) is closed to make room, as
//!   unbound does, and if none is idle the new connection is closed at once;
//! - each connection answers its queries concurrently and out of order (RFC 7766
//!   §6.2.1.1), at most [`MAX_PIPELINED`] at a time: beyond that it stops reading, so a
//!   client cannot queue work without bound;
//! - a message is at most 65,535 bytes (the length prefix), an idle connection is closed
//!   after the idle timeout, and a reply that cannot be written within it closes the
//!   connection; a TLS handshake must finish within it too;
//! - when the process is out of file descriptors (EMFILE/ENFILE), the accept loop backs off
//!   instead of spinning on the error.
//!
//! It must not decide or resolve anything itself; whether a DoT credential names a known
//! device is asked of the handler ([`Handler::answer_as`]).

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use hickory_proto::op::{Message, MessageType, OpCode, ResponseCode};
use hickory_proto::serialize::binary::{BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, WriteHalf};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use super::accept::{BACKOFF_MIN, next_connection};
use super::handler::Handler;
use crate::identity::Credential;

/// Queries answered at once on one connection; further messages wait unread.
pub const MAX_PIPELINED: usize = 16;

/// Shortest DNS message (a header).
const HEADER: usize = 12;

/// The bounds on TCP clients.
#[derive(Debug, Clone)]
pub struct TcpLimits {
    /// Connections open at once, all clients together.
    pub max_connections: usize,
    /// Connections open at once from one client ([`super::client_key`]).
    pub max_per_client: usize,
    /// An idle connection (nothing read, nothing in flight) is closed after this; it also
    /// bounds the time to read one message and to write one reply.
    pub idle_timeout: Duration,
}

/// The TLS side of a DoT listener.
#[derive(Clone)]
pub struct DotTls {
    /// Handshakes with the certificate in force.
    pub acceptor: tokio_rustls::TlsAcceptor,
    /// The configured server name (`tls.server_name`, read live): an SNI of
    /// `{id}.{server_name}` carries the device ID.
    pub server_name: Arc<dyn Fn() -> Arc<str> + Send + Sync>,
}

/// What a listener speaks: plain DNS over TCP, or DoT.
#[derive(Clone)]
enum Security {
    Plain,
    Tls(DotTls),
}

/// Serve DNS over TCP on `listeners` until `shutdown`; the returned tracker finishes when
/// every accept loop, connection and query in flight is done.
/// `formerr` counts messages too malformed for the handler.
pub fn spawn(
    listeners: Vec<TcpListener>,
    handler: Arc<Handler>,
    formerr: prometheus::IntCounter,
    limits: TcpLimits,
    shutdown: CancellationToken,
) -> TaskTracker {
    spawn_with(
        listeners,
        handler,
        formerr,
        limits,
        Security::Plain,
        shutdown,
    )
}

/// Serve DNS over TLS on `listeners` until `shutdown`, with the same caps as TCP (its own
/// registry of connections) and each connection's device ID read from its SNI.
pub fn spawn_tls(
    listeners: Vec<TcpListener>,
    handler: Arc<Handler>,
    formerr: prometheus::IntCounter,
    limits: TcpLimits,
    tls: DotTls,
    shutdown: CancellationToken,
) -> TaskTracker {
    spawn_with(
        listeners,
        handler,
        formerr,
        limits,
        Security::Tls(tls),
        shutdown,
    )
}

fn spawn_with(
    listeners: Vec<TcpListener>,
    handler: Arc<Handler>,
    formerr: prometheus::IntCounter,
    limits: TcpLimits,
    security: Security,
    shutdown: CancellationToken,
) -> TaskTracker {
    let tracker = TaskTracker::new();
    let ctx = Ctx {
        registry: Arc::new(Registry::new(limits)),
        handler,
        formerr,
        tracker: tracker.clone(),
        security,
    };
    for l in listeners {
        tracker.spawn(accept_loop(l, ctx.clone(), shutdown.clone()));
    }
    tracker.close();
    tracker
}

#[derive(Clone)]
struct Ctx {
    registry: Arc<Registry>,
    handler: Arc<Handler>,
    formerr: prometheus::IntCounter,
    tracker: TaskTracker,
    security: Security,
}

async fn accept_loop(listener: TcpListener, ctx: Ctx, shutdown: CancellationToken) {
    let mut backoff = BACKOFF_MIN;
    let what = match ctx.security {
        Security::Plain => {
            "TCP DNS accept (raise the open files limit or lower server.tcp_max_connections)"
        }
        Security::Tls(_) => {
            "DoT accept (raise the open files limit or lower server.tcp_max_connections)"
        }
    };
    while let Some((stream, peer)) = next_connection(&listener, &mut backoff, &shutdown, what).await
    {
        let Some(conn) = ctx.registry.admit(peer.ip(), &shutdown) else {
            tracing::debug!(client = %peer.ip(), "TCP DNS connection refused: limit reached, none idle");
            continue;
        };
        let _ = stream.set_nodelay(true);
        let c = ctx.clone();
        match &ctx.security {
            Security::Plain => {
                ctx.tracker.spawn(serve(stream, peer, conn, None, c));
            }
            Security::Tls(tls) => {
                let tls = tls.clone();
                ctx.tracker.spawn(async move {
                    let idle = c.registry.limits.idle_timeout;
                    let handshake = tokio::select! {
                        h = tokio::time::timeout(idle, tls.acceptor.accept(super::QuickAck(stream))) => h,
                        _ = conn.0.close.cancelled() => return,
                    };
                    let Ok(Ok(stream)) = handshake else {
                        tracing::debug!(client = %peer.ip(), "DoT handshake failed or timed out");
                        return;
                    };
                    let sni = stream.get_ref().1.server_name();
                    let id: Arc<str> = super::tls::sni_id(sni, &(tls.server_name)()).into();
                    serve(stream, peer, conn, Some(id), c).await;
                });
            }
        }
    }
}

/// One connection: read messages, answer each in its own task, close when idle, evicted,
/// shut down or broken. `sni` is a DoT connection's device ID (empty: none given).
async fn serve<S>(stream: S, peer: SocketAddr, conn: ConnGuard, sni: Option<Arc<str>>, ctx: Ctx)
where
    S: AsyncRead + AsyncWrite + Send + Unpin + 'static,
{
    let idle = ctx.registry.limits.idle_timeout;
    let (mut rd, wr) = tokio::io::split(stream);
    let wr = Arc::new(tokio::sync::Mutex::new(wr));
    let slots = Arc::new(Semaphore::new(MAX_PIPELINED));
    let state = conn.0.clone();
    loop {
        let permit = tokio::select! {
            p = slots.clone().acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = state.close.cancelled() => break,
        };
        let frame = tokio::select! {
            f = read_message(&mut rd, &state, idle) => f,
            _ = state.close.cancelled() => break,
        };
        let Some(pkt) = frame else { break };
        state.touch(ctx.registry.epoch);
        let busy = Busy::new(state.clone());
        let responder = TcpResponder {
            wr: wr.clone(),
            conn: state.clone(),
            timeout: idle,
        };
        let c = ctx.clone();
        let sni = sni.clone();
        ctx.tracker.spawn(async move {
            answer(&c, pkt, peer, sni.as_deref(), responder).await;
            drop((busy, permit));
        });
    }
    // Dropping `conn` removes it from the registry; the socket closes when the last
    // query task of this connection has written its reply.
    drop(conn);
}

/// Wait for the next message. While queries are in flight the client may stay silent (it
/// waits for answers); otherwise silence beyond `idle` ends the connection. Reads of the
/// length prefix are cancel-safe (`read` into a buffer kept across the wait), so a timeout
/// never loses a byte of a prefix that arrives split.
async fn read_message<R: AsyncRead + Unpin>(
    rd: &mut R,
    conn: &Conn,
    idle: Duration,
) -> Option<Vec<u8>> {
    let mut prefix = [0u8; 2];
    let mut got = 0;
    while got < 2 {
        match tokio::time::timeout(idle, rd.read(&mut prefix[got..])).await {
            Ok(Ok(0)) | Ok(Err(_)) => return None,
            Ok(Ok(n)) => got += n,
            Err(_) if got == 0 && conn.in_flight.load(Ordering::Relaxed) > 0 => continue,
            Err(_) => return None,
        }
    }
    let len = usize::from(u16::from_be_bytes(prefix));
    if len < HEADER {
        return None;
    }
    let mut buf = vec![0u8; len];
    tokio::time::timeout(idle, rd.read_exact(&mut buf))
        .await
        .ok()?
        .ok()?;
    Some(buf)
}

/// Answer one message: hickory parses it and the handler answers it (with the DoT
/// connection's credential, if any); a message hickory cannot parse but whose header is
/// readable gets FORMERR; responses are ignored.
async fn answer<W>(
    ctx: &Ctx,
    pkt: Vec<u8>,
    peer: SocketAddr,
    sni: Option<&str>,
    mut responder: TcpResponder<W>,
) where
    W: AsyncWrite + Send + Unpin + 'static,
{
    if pkt[2] & 0x80 != 0 {
        return;
    }
    let id = u16::from_be_bytes([pkt[0], pkt[1]]);
    let (protocol, credential) = match sni {
        None => (Protocol::Tcp, Credential::None),
        Some(id) => (Protocol::Tls, Credential::Sni(id)),
    };
    match Request::from_bytes(pkt, peer, protocol) {
        Ok(request) => {
            ctx.handler
                .answer_as(&request, responder, true, credential)
                .await;
        }
        Err(_) => {
            ctx.formerr.inc();
            let mut m = Message::new(id, MessageType::Response, OpCode::Query);
            m.metadata.response_code = ResponseCode::FormErr;
            if let Ok(bytes) = m.to_bytes() {
                let _ = responder.write(&bytes).await;
            }
        }
    }
}

/// Writes hickory responses, length-prefixed, on the connection they came from.
struct TcpResponder<W> {
    wr: Arc<tokio::sync::Mutex<WriteHalf<W>>>,
    conn: Arc<Conn>,
    timeout: Duration,
}

impl<W> Clone for TcpResponder<W> {
    fn clone(&self) -> Self {
        Self {
            wr: self.wr.clone(),
            conn: self.conn.clone(),
            timeout: self.timeout,
        }
    }
}

impl<W: AsyncWrite + Send + Unpin> TcpResponder<W> {
    /// Write one message with its length prefix. A client that does not take its reply
    /// within the timeout loses the connection.
    async fn write(&mut self, msg: &[u8]) -> std::io::Result<()> {
        let len = u16::try_from(msg.len())
            .map_err(|_| std::io::Error::other("DNS message longer than 65,535 bytes"))?;
        let mut framed = Vec::with_capacity(msg.len() + 2);
        framed.extend_from_slice(&len.to_be_bytes());
        framed.extend_from_slice(msg);
        let write = async {
            let mut wr = self.wr.lock().await;
            wr.write_all(&framed).await?;
            // TLS holds records until flushed; a plain socket's flush does nothing.
            wr.flush().await
        };
        match tokio::time::timeout(self.timeout, write).await {
            Ok(r) => r,
            Err(_) => {
                self.conn.close.cancel();
                Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "client did not read its reply",
                ))
            }
        }
    }
}

#[async_trait::async_trait]
impl<W: AsyncWrite + Send + Unpin + 'static> ResponseHandler for TcpResponder<W> {
    async fn send_response<'a>(
        &mut self,
        response: MessageResponse<
            '_,
            'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
            impl Iterator<Item = &'a hickory_proto::rr::Record> + Send + 'a,
        >,
    ) -> Result<ResponseInfo, hickory_server::net::NetError> {
        let mut bytes = Vec::with_capacity(512);
        let info = {
            let mut encoder = BinEncoder::new(&mut bytes);
            encoder.set_max_size(u16::MAX);
            response.destructive_emit(&mut encoder)?
        };
        self.write(&bytes).await?;
        Ok(info)
    }
}

/// The connections open now, for the caps (one per listener kind: TCP, DoT, DoH).
pub(super) struct Registry {
    pub(super) limits: TcpLimits,
    pub(super) epoch: Instant,
    inner: Mutex<Conns>,
}

#[derive(Default)]
struct Conns {
    next_id: u64,
    all: HashMap<u64, Arc<Conn>>,
    per_client: HashMap<IpAddr, usize>,
}

/// One open connection, as the registry sees it.
pub(super) struct Conn {
    id: u64,
    client: IpAddr,
    /// Milliseconds since the registry's epoch when a message was last read.
    last_active: AtomicU64,
    /// Queries read and not yet answered.
    in_flight: AtomicUsize,
    /// Cancelled to close the connection (eviction, shutdown, unwritable client).
    pub(super) close: CancellationToken,
}

impl Conn {
    pub(super) fn touch(&self, epoch: Instant) {
        let ms = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        self.last_active.store(ms, Ordering::Relaxed);
    }

    /// Time since a message was last read (for idle timeouts where reads are not ours to
    /// time, as in DoH).
    pub(super) fn quiet_for(&self, epoch: Instant) -> Duration {
        let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
        Duration::from_millis(now.saturating_sub(self.last_active.load(Ordering::Relaxed)))
    }

    pub(super) fn idle(&self) -> bool {
        self.in_flight.load(Ordering::Relaxed) == 0
    }
}

/// Counts a query in flight on its connection while alive.
pub(super) struct Busy(Arc<Conn>);

impl Busy {
    pub(super) fn new(conn: Arc<Conn>) -> Self {
        conn.in_flight.fetch_add(1, Ordering::Relaxed);
        Self(conn)
    }
}

impl Drop for Busy {
    fn drop(&mut self) {
        self.0.in_flight.fetch_sub(1, Ordering::Relaxed);
    }
}

/// A connection's place in the registry, given up on drop.
pub(super) struct ConnGuard(pub(super) Arc<Conn>, Arc<Registry>);

impl Drop for ConnGuard {
    fn drop(&mut self) {
        self.1.lock().remove(self.0.id);
    }
}

impl Registry {
    pub(super) fn new(limits: TcpLimits) -> Self {
        Self {
            limits,
            epoch: Instant::now(),
            inner: Mutex::new(Conns::default()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Conns> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Make room for a connection from `ip` (closing the oldest idle connection of the
    /// client, then of everyone, if a cap is reached) and register it; None if a cap is
    /// reached and no connection is idle.
    pub(super) fn admit(
        self: &Arc<Self>,
        ip: IpAddr,
        shutdown: &CancellationToken,
    ) -> Option<ConnGuard> {
        let client = super::client_key(ip);
        let mut c = self.lock();
        if c.per_client.get(&client).copied().unwrap_or(0) >= self.limits.max_per_client.max(1) {
            let victim = oldest_idle(c.all.values().filter(|x| x.client == client))?;
            c.evict(victim);
        }
        if c.all.len() >= self.limits.max_connections.max(1) {
            let victim = oldest_idle(c.all.values())?;
            c.evict(victim);
        }
        c.next_id += 1;
        let conn = Arc::new(Conn {
            id: c.next_id,
            client,
            last_active: AtomicU64::new(0),
            in_flight: AtomicUsize::new(0),
            close: shutdown.child_token(),
        });
        conn.touch(self.epoch);
        c.all.insert(conn.id, conn.clone());
        *c.per_client.entry(client).or_default() += 1;
        Some(ConnGuard(conn, self.clone()))
    }
}

fn oldest_idle<'a>(conns: impl Iterator<Item = &'a Arc<Conn>>) -> Option<u64> {
    conns
        .filter(|c| c.idle())
        .min_by_key(|c| (c.last_active.load(Ordering::Relaxed), c.id))
        .map(|c| c.id)
}

impl Conns {
    fn remove(&mut self, id: u64) -> Option<Arc<Conn>> {
        let conn = self.all.remove(&id)?;
        if let Some(n) = self.per_client.get_mut(&conn.client) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_client.remove(&conn.client);
            }
        }
        Some(conn)
    }

    fn evict(&mut self, id: u64) {
        if let Some(conn) = self.remove(id) {
            tracing::debug!(client = %conn.client, "TCP DNS connection limit: closing the oldest idle connection");
            conn.close.cancel();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_registry_closes_the_oldest_idle_connection_of_the_client_first() {
        let reg = Arc::new(Registry::new(TcpLimits {
            max_connections: 3,
            max_per_client: 2,
            idle_timeout: Duration::from_secs(10),
        }));
        let shutdown = CancellationToken::new();
        let a: IpAddr = "10.0.0.1".parse().unwrap();
        let b: IpAddr = "10.0.0.2".parse().unwrap();
        let a1 = reg.admit(a, &shutdown).unwrap();
        let a2 = reg.admit(a, &shutdown).unwrap();
        let _busy = Busy::new(a1.0.clone());
        // a1 is busy, so a's third connection closes a2, not a1.
        let a3 = reg.admit(a, &shutdown).unwrap();
        assert!(a2.0.close.is_cancelled() && !a1.0.close.is_cancelled());
        let b1 = reg.admit(b, &shutdown).unwrap();
        let _busy_b1 = Busy::new(b1.0.clone());
        // Total cap (3: a1, a3, b1): b's second connection closes the oldest idle one of
        // anyone, a3 (a1 and b1 are busy).
        let b2 = reg.admit(b, &shutdown).unwrap();
        assert!(a3.0.close.is_cancelled());
        // b at its cap with nothing idle: a third connection from b is refused.
        let _busy_b2 = Busy::new(b2.0.clone());
        assert!(reg.admit(b, &shutdown).is_none(), "nothing idle to close");
        drop((a2, a3));
    }
}
