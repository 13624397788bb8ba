//! The runtime the forwarder talks to upstreams with: tokio's, except that each UDP query
//! socket is *connected* to the server it asks.
//!
//! hickory binds unconnected UDP sockets, and Linux does not report ICMP errors on those,
//! so an upstream whose port is closed (ICMP port unreachable) looked exactly like one that
//! never answers: the forwarder waited the whole timeout before trying the next server, and
//! a client waited the whole 4.5 s deadline for its SERVFAIL. On a connected socket the ICMP
//! error comes back at once as ECONNREFUSED, which hickory's pool treats as a failed
//! server and moves on (test `hardening::a_refusing_upstream_is_passed_over_at_once`).
//! tokio only wakes a UDP receive on readable data, not on a socket error, so
//! [`ConnectedSocket`] waits for errors too and returns them.
//! A connected socket also takes datagrams only from that server, so spoofed answers from
//! other addresses never reach hickory.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use hickory_resolver::net::runtime::{
    DnsUdpSocket, RuntimeProvider, TokioRuntimeProvider, TokioTime,
};
use tokio::io::Interest;

/// tokio's runtime provider with connected UDP sockets.
#[derive(Clone, Default)]
pub struct ConnectedUdp(TokioRuntimeProvider);

impl RuntimeProvider for ConnectedUdp {
    type Handle = <TokioRuntimeProvider as RuntimeProvider>::Handle;
    type Timer = <TokioRuntimeProvider as RuntimeProvider>::Timer;
    type Udp = ConnectedSocket;
    type Tcp = <TokioRuntimeProvider as RuntimeProvider>::Tcp;

    fn create_handle(&self) -> Self::Handle {
        self.0.create_handle()
    }

    fn connect_tcp(
        &self,
        server_addr: SocketAddr,
        bind_addr: Option<SocketAddr>,
        timeout: Option<Duration>,
    ) -> Pin<Box<dyn Send + Future<Output = Result<Self::Tcp, io::Error>>>> {
        self.0.connect_tcp(server_addr, bind_addr, timeout)
    }

    fn bind_udp(
        &self,
        local_addr: SocketAddr,
        server_addr: SocketAddr,
    ) -> Pin<Box<dyn Send + Future<Output = Result<Self::Udp, io::Error>>>> {
        Box::pin(async move {
            let socket = tokio::net::UdpSocket::bind(local_addr).await?;
            socket.connect(server_addr).await?;
            Ok(ConnectedSocket(socket))
        })
    }
}

/// A UDP socket connected to one upstream, whose receive also ends on a socket error.
pub struct ConnectedSocket(tokio::net::UdpSocket);

#[async_trait::async_trait]
impl DnsUdpSocket for ConnectedSocket {
    type Time = TokioTime;

    fn poll_recv_from(
        &self,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<(usize, SocketAddr)>> {
        let mut buf = tokio::io::ReadBuf::new(buf);
        match self.0.poll_recv_from(cx, &mut buf) {
            Poll::Ready(Ok(from)) => Poll::Ready(Ok((buf.filled().len(), from))),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    }

    /// Wait for data or an error (ICMP unreachable arrives as one); hickory receives with
    /// this method, so a refused query ends here at once.
    async fn recv_from(&self, buf: &mut [u8]) -> io::Result<(usize, SocketAddr)> {
        loop {
            let ready = self.0.ready(Interest::READABLE | Interest::ERROR).await?;
            if ready.is_error() {
                return Err(self
                    .0
                    .take_error()?
                    .unwrap_or_else(|| io::Error::other("UDP socket error")));
            }
            match self.0.try_recv_from(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                r => return r,
            }
        }
    }

    fn poll_send_to(
        &self,
        cx: &mut Context<'_>,
        buf: &[u8],
        target: SocketAddr,
    ) -> Poll<io::Result<usize>> {
        self.0.poll_send_to(cx, buf, target)
    }
}
