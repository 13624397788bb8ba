//! Transport: the listeners that accept DNS from clients, bound them, parse what they read
//! and hand each request to the pipeline, then write the reply.
//!
//! Limits on what a client can make the listeners hold (connections, messages in flight,
//! idle time) live here, in one place. Transport must not decide policy or resolve: it only
//! hands requests to the hickory request handler it is given ([`crate::transport::handler::Handler`],
//! and so the pipeline), and imports nothing from the stages, so no import cycle runs
//! through it.
//!
//! - [`udp`]: the UDP fast path (recvmmsg/sendmmsg batches, [`wire`] parsing and encoding,
//!   blocks, refusals and wire-cache hits answered inside the receive loop);
//! - [`tcp`]: DNS over TCP and over TLS (DoT) with connection caps and pipelining;
//! - [`doh`]: DNS over HTTPS (HTTP/2 and HTTP/1.1) with the same caps;
//! - [`tls`]: the certificate (reloaded when its files change) and the SNI's device ID;
//! - [`handler`]: the hickory request handler both use for everything else;
//! - the socket set-up shared by the listeners.

pub(crate) mod accept;
pub mod doh;
pub mod handler;
#[cfg(target_os = "linux")]
pub mod mmsg;
pub mod tcp;
pub mod tls;
pub mod udp;
pub mod wire;

use std::net::{IpAddr, Ipv6Addr, SocketAddr};

/// The key a client is limited by: its IPv4 address, or the /64 of its IPv6 address (one
/// device can take any number of addresses in its /64 with SLAAC privacy addresses, so a
/// per-address limit on IPv6 would limit nothing). IPv4-mapped addresses count as IPv4.
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip.to_canonical() {
        IpAddr::V4(v4) => IpAddr::V4(v4),
        IpAddr::V6(v6) => {
            let bits = u128::from(v6) & !((1u128 << 64) - 1);
            IpAddr::V6(Ipv6Addr::from(bits))
        }
    }
}

/// Whether IPv6 listeners must be IPv6-only: when an IPv4 address is also listed, a
/// dual-stack `[::]:53` would claim the IPv4 port too and the second bind would fail with
/// EADDRINUSE (Linux's default `bindv6only = 0`).
pub fn v6_only(listen: &[SocketAddr]) -> bool {
    listen.iter().any(SocketAddr::is_ipv4)
}

/// Bind a TCP listener with SO_REUSEADDR (restarts do not wait for TIME_WAIT) and, for
/// IPv6, IPV6_V6ONLY set to `v6only`.
pub fn bind_tcp(addr: SocketAddr, v6only: bool) -> std::io::Result<tokio::net::TcpListener> {
    let s = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        Some(socket2::Protocol::TCP),
    )?;
    if addr.is_ipv6() {
        s.set_only_v6(v6only)?;
    }
    s.set_reuse_address(true)?;
    s.set_nonblocking(true)?;
    s.bind(&addr.into())?;
    s.listen(1024)?;
    tokio::net::TcpListener::from_std(s.into())
}

/// A TCP stream that acknowledges what it reads at once (TCP_QUICKACK, renewed after
/// every read, as Linux clears it), for the TLS listeners (DoT and DoH). A client that
/// writes one request in two pieces with Nagle on (dnsperf's DoH POST: HEADERS, then
/// DATA; a DoT client writing the length prefix apart) waits for the ACK of the first
/// before sending the second; the server has nothing to send before it has the whole
/// request, so with delayed ACKs every such query waited ~40 ms.
pub(crate) struct QuickAck(pub(crate) tokio::net::TcpStream);

impl tokio::io::AsyncRead for QuickAck {
    fn poll_read(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &mut tokio::io::ReadBuf<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        let polled = std::pin::Pin::new(&mut self.0).poll_read(cx, buf);
        if polled.is_ready() {
            #[cfg(target_os = "linux")]
            let _ = socket2::SockRef::from(&self.0).set_tcp_quickack(true);
        }
        polled
    }
}

impl tokio::io::AsyncWrite for QuickAck {
    fn poll_write(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
        buf: &[u8],
    ) -> std::task::Poll<std::io::Result<usize>> {
        std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(
        mut self: std::pin::Pin<&mut Self>,
        cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<std::io::Result<()>> {
        std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

/// Raise the soft limit on open files to the hard limit, so connection caps, not the
/// systemd default of 1,024 descriptors, decide how many clients are served; returns the
/// limit now in force.
#[cfg(unix)]
pub fn raise_open_files_limit() -> std::io::Result<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    if lim.rlim_cur < lim.rlim_max {
        let mut want = lim;
        want.rlim_cur = lim.rlim_max;
        // SAFETY: setrlimit reads the struct we pass.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &want) } != 0 {
            return Err(std::io::Error::last_os_error());
        }
        lim = want;
    }
    Ok(lim.rlim_cur)
}

/// The soft limit on open files now in force (None if unknown).
#[cfg(unix)]
pub fn open_files_limit() -> Option<libc::rlim_t> {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we pass and reads nothing else.
    (unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) } == 0).then_some(lim.rlim_cur)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ipv6_clients_are_limited_by_their_64() {
        let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().unwrap();
        let c: IpAddr = "2001:db8:1:3::1".parse().unwrap();
        assert_eq!(client_key(a), client_key(b));
        assert_ne!(client_key(a), client_key(c));
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }

    #[test]
    fn ipv6_is_only_ipv6_when_ipv4_is_listed_too() {
        let both = ["0.0.0.0:53".parse().unwrap(), "[::]:53".parse().unwrap()];
        assert!(v6_only(&both));
        assert!(!v6_only(&both[1..]));
    }
}
