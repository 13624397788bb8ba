//! The UDP listener: one receive loop per worker thread on SO_REUSEPORT sockets, with a
//! fast path for the queries that make up nearly all school traffic.
//!
//! For a standard query (one question, optional OPT; see [`wire::parse_query`]) the loop
//! decides the policy in place and, without leaving the loop or allocating, writes:
//! REFUSED for unknown clients, the block answer for blocked names, or the cached response
//! for allowed names (the wire cache, with id, flags, question case and TTLs patched).
//! A cache miss is resolved in its own task and its response stored for next time.
//! Everything else — SafeSearch rewrites, local answers (`crate::local`), EDNS versions
//! and shapes we do not take apart here, malformed packets — goes to the general hickory path ([`crate::transport::handler::Handler`])
//! exactly as TCP does, so behaviour never depends on which path answered.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query, ResponseCode};
use hickory_proto::rr::{DNSClass, Name, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder, BinEncodable, BinEncoder};
use hickory_server::net::xfer::Protocol;
use hickory_server::server::{Request, ResponseHandler, ResponseInfo};
use hickory_server::zone_handler::MessageResponse;
use tokio::net::UdpSocket;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::answer::DEFAULT_BLOCK_TTL;
use crate::answer::ede::Ede;
use crate::metrics::Outcome as MetricOutcome;
use crate::pipeline::{Decided, Pipeline};
use crate::policy::{BlockAnswer, Decision};
use crate::ratelimit::Verdict;
use crate::transport::handler::Handler;
use crate::transport::wire::{self, rcode};

/// Largest datagram read.
#[cfg(not(target_os = "linux"))]
const RECV_BUF: usize = 4096;

/// Bind `count` UDP sockets sharing `addr` with SO_REUSEPORT (port 0 resolves to one
/// free port for all of them); IPv6 sockets are IPv6-only when `v6only`.
pub fn bind(addr: SocketAddr, count: usize, v6only: bool) -> std::io::Result<Vec<Arc<UdpSocket>>> {
    let mut sockets = Vec::with_capacity(count);
    let mut target = addr;
    for _ in 0..count.max(1) {
        let s = socket2::Socket::new(
            socket2::Domain::for_address(target),
            socket2::Type::DGRAM,
            Some(socket2::Protocol::UDP),
        )?;
        if target.is_ipv6() {
            s.set_only_v6(v6only)?;
        }
        s.set_reuse_address(true)?;
        #[cfg(unix)]
        s.set_reuse_port(true)?;
        s.set_nonblocking(true)?;
        // Room for bursts while a loop is busy.
        s.set_recv_buffer_size(4 << 20).ok();
        s.bind(&target.into())?;
        let std: std::net::UdpSocket = s.into();
        let tokio = UdpSocket::from_std(std)?;
        target = tokio.local_addr()?;
        sockets.push(Arc::new(tokio));
    }
    Ok(sockets)
}

/// Run one receive loop per socket until `shutdown`; the returned tracker finishes when
/// every loop and every query in flight is done.
pub fn spawn(
    sockets: Vec<Arc<UdpSocket>>,
    pipeline: Arc<Pipeline>,
    handler: Arc<Handler>,
    shutdown: CancellationToken,
) -> TaskTracker {
    let tracker = TaskTracker::new();
    for sock in sockets {
        let ctx = Ctx {
            sock,
            pipeline: pipeline.clone(),
            handler: handler.clone(),
            tracker: tracker.clone(),
        };
        tracker.spawn(receive_loop(ctx, shutdown.clone()));
    }
    tracker.close();
    tracker
}

#[derive(Clone)]
struct Ctx {
    sock: Arc<UdpSocket>,
    pipeline: Arc<Pipeline>,
    handler: Arc<Handler>,
    tracker: TaskTracker,
}

/// Receive in batches (recvmmsg), answer what the fast path can, send those answers in
/// one sendmmsg, and hand the rest to tasks.
#[cfg(target_os = "linux")]
async fn receive_loop(ctx: Ctx, shutdown: CancellationToken) {
    use std::os::fd::AsRawFd;
    use tokio::io::Interest;

    use crate::transport::mmsg::{BATCH, RecvBatch};

    let fd = ctx.sock.as_raw_fd();
    let mut batch = RecvBatch::new();
    let mut outs: Vec<Vec<u8>> = (0..BATCH).map(|_| Vec::with_capacity(512)).collect();
    let mut dsts: Vec<socket2::SockAddr> = Vec::with_capacity(BATCH);
    loop {
        tokio::select! {
            r = ctx.sock.readable() => if let Err(e) = r {
                tracing::warn!("udp socket: {e}");
                return;
            },
            _ = shutdown.cancelled() => return,
        }
        let n = match ctx.sock.try_io(Interest::READABLE, || batch.recv(fd)) {
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(e) => {
                tracing::debug!("udp receive: {e}");
                continue;
            }
        };
        dsts.clear();
        for i in 0..n {
            let Some((pkt, src)) = batch.get(i) else {
                continue;
            };
            if src.port() == 0 {
                continue;
            }
            let out = &mut outs[dsts.len()];
            match fast(&ctx.pipeline, pkt, src, out) {
                Fast::Send => dsts.push(socket2::SockAddr::from(src)),
                other => hand_off(&ctx, other, pkt, src),
            }
        }
        send_batch(&ctx, fd, &outs, &dsts).await;
    }
}

/// Send the batch's answers, waiting for the socket if its buffer is full; a datagram the
/// kernel refuses (an unreachable destination) is skipped, not retried.
#[cfg(target_os = "linux")]
async fn send_batch(
    ctx: &Ctx,
    fd: std::os::fd::RawFd,
    outs: &[Vec<u8>],
    dsts: &[socket2::SockAddr],
) {
    use tokio::io::Interest;
    let msgs: Vec<(&[u8], &socket2::SockAddr)> =
        outs.iter().map(Vec::as_slice).zip(dsts.iter()).collect();
    let mut sent = 0;
    while sent < msgs.len() {
        match ctx.sock.try_io(Interest::WRITABLE, || {
            crate::transport::mmsg::send(fd, &msgs[sent..])
        }) {
            Ok(k) => sent += k.max(1),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                if ctx.sock.writable().await.is_err() {
                    return;
                }
            }
            Err(e) => {
                tracing::debug!("udp send: {e}");
                sent += 1;
            }
        }
    }
}

/// One datagram at a time, for systems without recvmmsg.
#[cfg(not(target_os = "linux"))]
async fn receive_loop(ctx: Ctx, shutdown: CancellationToken) {
    let mut buf = vec![0u8; RECV_BUF];
    let mut out = Vec::with_capacity(1500);
    loop {
        let (n, src) = tokio::select! {
            r = ctx.sock.recv_from(&mut buf) => match r {
                Ok(r) => r,
                Err(e) => {
                    tracing::debug!("udp receive: {e}");
                    continue;
                }
            },
            _ = shutdown.cancelled() => return,
        };
        if src.port() == 0 {
            continue;
        }
        let pkt = &buf[..n];
        match fast(&ctx.pipeline, pkt, src, &mut out) {
            Fast::Send => {
                if let Err(e) = ctx.sock.send_to(&out, src).await {
                    tracing::debug!("udp send to {src}: {e}");
                }
            }
            other => hand_off(&ctx, other, pkt, src),
        }
    }
}

/// Start a task for a query the loop does not answer itself.
fn hand_off(ctx: &Ctx, f: Fast, pkt: &[u8], src: SocketAddr) {
    let (c, pkt) = (ctx.clone(), pkt.to_vec());
    match f {
        Fast::Resolve(q, d) => {
            ctx.tracker
                .spawn(async move { resolve_and_answer(c, pkt, *q, *d, src).await });
        }
        Fast::General { charged } => {
            ctx.tracker
                .spawn(async move { general(c, pkt, src, charged).await });
        }
        Fast::Send | Fast::Drop => {}
    }
}

enum Fast {
    /// `out` holds the response.
    Send,
    /// Allowed, not in the wire cache: resolve.
    Resolve(Box<wire::Query>, Box<Decided>),
    /// Not a shape the fast path answers; `charged` if the query rate limit already
    /// counted it.
    General {
        /// Counted against the query rate limit already.
        charged: bool,
    },
    /// Over a rate limit: no answer.
    Drop,
}

fn fast(p: &Pipeline, pkt: &[u8], src: SocketAddr, out: &mut Vec<u8>) -> Fast {
    let Some(mut q) = wire::parse_query(pkt) else {
        return Fast::General { charged: false };
    };
    if wire::unanswerable(q.qtype, q.qclass).is_some() {
        return Fast::General { charged: false };
    }
    let Some(key) = q.key() else {
        return Fast::General { charged: false };
    };
    {
        let snap = p.state().load();
        if p.limiter().query(src.ip(), &snap.config.ratelimit) == Verdict::Drop {
            return Fast::Drop;
        }
        q.set_udp_size(snap.config.server.edns_buffer_size);
    }
    let mut d = p.decide(
        src,
        q.mac,
        crate::identity::Credential::None,
        key.as_bytes(),
    );
    let qtype = RecordType::from(q.qtype);
    let (code, metric) = match d.outcome.decision {
        Decision::Refuse => {
            match p
                .limiter()
                .refused(src.ip(), &d.snap.config.ratelimit, true)
            {
                Verdict::Allow => {
                    wire::error_response(out, pkt, &q, rcode::REFUSED);
                    wire::push_ede(
                        out,
                        &q,
                        Ede::for_decision(&d.snap.policy, &d.outcome.decision),
                    );
                }
                Verdict::Slip => wire::slip_response(out, pkt, &q),
                Verdict::Drop => return Fast::Drop,
            }
            (ResponseCode::Refused, MetricOutcome::Refused)
        }
        Decision::Block { .. } => (write_block(out, pkt, &q, &d), MetricOutcome::Blocked),
        // Local records and local or reserved zones are answered (with AA) on the general
        // path; the check costs one top-label comparison for ordinary names.
        Decision::Allow(_) if d.snap.local.covers(key.as_bytes()) => {
            return Fast::General { charged: true };
        }
        // PTR names of leased addresses are answered from the leases (general path).
        Decision::Allow(_)
            if q.qtype == u16::from(RecordType::PTR)
                && !d.snap.config.identify.leases.is_empty() =>
        {
            return Fast::General { charged: true };
        }
        Decision::Allow(_) if q.qclass == u16::from(DNSClass::IN) => {
            let stripped = strips_svcb(&q, &d);
            match p.cache().serve_wire(pkt, &q, stripped, Instant::now(), out) {
                Some(hit) => {
                    p.cache_counters().hit.inc();
                    if hit.refresh() {
                        p.prefetch(crate::cache::KeyRef::of(&q, stripped).to_owned_key());
                    }
                    if p.inspect(&mut d, hit.findings()) {
                        (write_block(out, pkt, &q, &d), MetricOutcome::Blocked)
                    } else {
                        (ResponseCode::from(0, hit.rcode()), MetricOutcome::Allowed)
                    }
                }
                None => return Fast::Resolve(Box::new(q), Box::new(d)),
            }
        }
        _ => return Fast::General { charged: true },
    };
    p.finish(&d, key.as_bytes(), qtype, code, metric);
    Fast::Send
}

/// Write the answer to a blocked query (NXDOMAIN, NODATA or the block page, the listed
/// name's SOA, the EDE) into `out`; returns its response code.
fn write_block(out: &mut Vec<u8>, pkt: &[u8], q: &wire::Query, d: &Decided) -> ResponseCode {
    let Decision::Block {
        answer,
        rule_labels,
        ..
    } = d.outcome.decision
    else {
        wire::error_response(out, pkt, q, 2);
        return ResponseCode::ServFail;
    };
    let page = d.snap.config.block_page.as_ref();
    let ttl = page.map_or(DEFAULT_BLOCK_TTL, |b| b.ttl);
    let code = match answer {
        BlockAnswer::NxDomain => {
            wire::negative_response(out, pkt, q, rcode::NXDOMAIN, rule_labels, ttl);
            ResponseCode::NXDomain
        }
        BlockAnswer::BlockPage => {
            let v4 = page.and_then(|b| b.ipv4).filter(|_| q.qtype == 1);
            let v6 = page.and_then(|b| b.ipv6).filter(|_| q.qtype == 28);
            if v4.is_some() || v6.is_some() {
                wire::address_response(out, pkt, q, v4, v6, ttl);
            } else {
                wire::negative_response(out, pkt, q, rcode::NOERROR, rule_labels, ttl);
            }
            ResponseCode::NoError
        }
        BlockAnswer::NoData => {
            wire::negative_response(out, pkt, q, rcode::NOERROR, rule_labels, ttl);
            ResponseCode::NoError
        }
    };
    wire::push_ede(
        out,
        q,
        Ede::for_decision(&d.snap.policy, &d.outcome.decision),
    );
    code
}

/// HTTPS (65) and SVCB (64) answers reach a group with bypass prevention without ECH: in
/// the cache they are kept under their own key.
fn strips_svcb(q: &wire::Query, d: &Decided) -> bool {
    matches!(q.qtype, 64 | 65) && d.snap.policy.prevents_bypass(&d.outcome)
}

/// Resolve an allowed name (answer cache, then upstream, which caches it) and send the
/// answer; an ECH-less HTTPS/SVCB form is cached under its own key. Answers too large for the requester are sent
/// truncated at a record boundary with TC set (RFC 1035 §4.2.1, RFC 6891 §7).
async fn resolve_and_answer(
    ctx: Ctx,
    pkt: Vec<u8>,
    q: wire::Query,
    mut d: Decided,
    src: SocketAddr,
) {
    let p = &ctx.pipeline;
    let Some(key) = q.key() else { return };
    let Ok(name) = Name::read(&mut BinDecoder::new(q.wire_name())) else {
        return;
    };
    let Ok(asked) = Name::read(&mut BinDecoder::new(&pkt[wire::HEADER..])) else {
        return;
    };
    let (qtype, qclass) = (RecordType::from(q.qtype), DNSClass::from(q.qclass));
    let mut out = Vec::with_capacity(512);
    let (code, metric) = match p
        .resolve(&d.snap, src.ip(), &name, qtype, qclass, q.dnssec_ok)
        .await
    {
        Ok(mut answer) => {
            let code = answer.rcode;
            let stripped = strips_svcb(&q, &d);
            // A rewrite that dropped address hints is this client's alone: not shared.
            let (_, private) = p.strip_svcb(&d, &mut answer);
            if stripped && !private {
                p.cache_stripped(&q, &name, &answer);
            }
            let findings = answer.findings.clone();
            match encode(&q, asked, qtype, qclass, answer) {
                Some(bytes) => {
                    if p.inspect(&mut d, findings.as_deref()) {
                        (write_block(&mut out, &pkt, &q, &d), MetricOutcome::Blocked)
                    } else {
                        out = bytes;
                        wire::truncate(&mut out, usize::from(q.limit));
                        (code, MetricOutcome::Allowed)
                    }
                }
                None => return general(ctx.clone(), pkt, src, true).await,
            }
        }
        Err(_) => {
            wire::error_response(&mut out, &pkt, &q, 2);
            (ResponseCode::ServFail, MetricOutcome::Servfail)
        }
    };
    p.finish(&d, key.as_bytes(), qtype, code, metric);
    if let Err(e) = ctx.sock.send_to(&out, src).await {
        tracing::debug!("udp send to {src}: {e}");
    }
}

fn encode(
    q: &wire::Query,
    asked: Name,
    qtype: RecordType,
    qclass: DNSClass,
    a: crate::resolve::Answer,
) -> Option<Vec<u8>> {
    let mut m = Message::new(q.id, MessageType::Response, OpCode::Query);
    m.metadata.recursion_desired = q.rd;
    m.metadata.recursion_available = true;
    m.metadata.checking_disabled = q.cd;
    m.metadata.response_code = a.rcode;
    let mut query = Query::query(asked, qtype);
    query.set_query_class(qclass);
    m.add_query(query);
    m.answers = a.answers;
    m.authorities = a.authorities;
    if q.edns {
        let mut e = Edns::new();
        e.set_max_payload(q.advertise);
        e.set_dnssec_ok(q.dnssec_ok);
        m.edns = Some(e);
    }
    m.to_vec().ok()
}

/// The general path: hickory parses the request and [`Handler`] answers it, exactly as
/// for TCP. Malformed requests with a readable header get FORMERR; responses and
/// fragments shorter than a header are dropped (no reflection).
async fn general(ctx: Ctx, pkt: Vec<u8>, src: SocketAddr, charged: bool) {
    if pkt.len() < wire::HEADER || pkt[2] & 0x80 != 0 {
        return;
    }
    let id = u16::from_be_bytes([pkt[0], pkt[1]]);
    match Request::from_bytes(pkt, src, Protocol::Udp) {
        Ok(request) => {
            let ours = ctx.pipeline.state().load().config.server.edns_buffer_size;
            let responder = UdpResponder {
                sock: ctx.sock.clone(),
                dst: src,
                limit: request
                    .edns
                    .as_ref()
                    .map_or(512, |e| e.max_payload().clamp(512, ours)),
            };
            ctx.handler.answer(&request, responder, !charged).await;
        }
        Err(_) => {
            ctx.pipeline.state().metrics().formerr.inc();
            let mut m = Message::new(id, MessageType::Response, OpCode::Query);
            m.metadata.response_code = ResponseCode::FormErr;
            if let Ok(bytes) = m.to_bytes() {
                let _ = ctx.sock.send_to(&bytes, src).await;
            }
        }
    }
}

/// Sends a hickory response on our UDP socket, truncated to what the requester accepts.
#[derive(Clone)]
struct UdpResponder {
    sock: Arc<UdpSocket>,
    dst: SocketAddr,
    /// min(requester's EDNS size or 512, ours).
    limit: u16,
}

#[async_trait::async_trait]
impl ResponseHandler for UdpResponder {
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
        // Encode whole, then cut at a record boundary: hickory's own size limit leaves the
        // bytes of a half-written record behind the last whole one.
        let mut bytes = Vec::with_capacity(512);
        let mut encoder = BinEncoder::new(&mut bytes);
        let info = response.destructive_emit(&mut encoder)?;
        wire::truncate(&mut bytes, usize::from(self.limit));
        self.sock.send_to(&bytes, self.dst).await?;
        Ok(info)
    }
}
