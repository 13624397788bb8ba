//! Accepting connections without spinning: every TCP listener (DNS over TCP, the block
//! page, the admin API) takes its connections through [`next_connection`], which backs off
//! when the process is out of descriptors instead of retrying at full CPU.

use std::future::Future;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;

/// First and longest pause of an accept loop when the process is out of descriptors.
pub(crate) const BACKOFF_MIN: Duration = Duration::from_millis(50);
pub(crate) const BACKOFF_MAX: Duration = Duration::from_secs(1);

/// True for the accept errors that mean "no descriptors or memory left": retrying at once
/// fails again, so the loop must wait.
pub(crate) fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM)
    )
}

/// Something connections are accepted from (a [`TcpListener`]; a fake in tests).
pub(crate) trait Acceptor {
    type Stream;
    fn accept(&self) -> impl Future<Output = std::io::Result<(Self::Stream, SocketAddr)>> + Send;
}

impl Acceptor for TcpListener {
    type Stream = TcpStream;
    fn accept(&self) -> impl Future<Output = std::io::Result<(TcpStream, SocketAddr)>> + Send {
        TcpListener::accept(self)
    }
}

/// The next connection, or None at shutdown. Out of descriptors, wait (50 ms doubling to
/// 1 s) before trying again: the error would recur at once, and the loop would spin.
/// `what` names the listener and its remedy in the warning, logged once per episode.
pub(crate) async fn next_connection<A: Acceptor>(
    listener: &A,
    backoff: &mut Duration,
    shutdown: &CancellationToken,
    what: &str,
) -> Option<(A::Stream, SocketAddr)> {
    loop {
        let accepted = tokio::select! {
            r = listener.accept() => r,
            _ = shutdown.cancelled() => return None,
        };
        match accepted {
            Ok(a) => {
                *backoff = BACKOFF_MIN;
                return Some(a);
            }
            Err(e) if out_of_resources(&e) => {
                if *backoff == BACKOFF_MIN {
                    tracing::warn!("{what}: {e}; pausing accepts");
                }
                tokio::select! {
                    _ = tokio::time::sleep(*backoff) => {}
                    _ = shutdown.cancelled() => return None,
                }
                *backoff = (*backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => tracing::debug!("{what}: {e}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Instant;

    use super::*;

    /// Always out of descriptors; stops the loop after a second or 10,000 calls.
    struct OutOfFiles {
        calls: AtomicUsize,
        started: Instant,
        stop: CancellationToken,
    }

    impl Acceptor for OutOfFiles {
        type Stream = ();
        fn accept(&self) -> impl Future<Output = std::io::Result<((), SocketAddr)>> + Send {
            let n = self.calls.fetch_add(1, Ordering::Relaxed) + 1;
            if n >= 10_000 || self.started.elapsed() >= Duration::from_secs(1) {
                self.stop.cancel();
            }
            std::future::ready(Err(std::io::Error::from_raw_os_error(libc::EMFILE)))
        }
    }

    #[tokio::test]
    async fn out_of_descriptors_the_accept_loop_backs_off() {
        let stop = CancellationToken::new();
        let fake = OutOfFiles {
            calls: AtomicUsize::new(0),
            started: Instant::now(),
            stop: stop.clone(),
        };
        let mut backoff = BACKOFF_MIN;
        assert!(
            next_connection(&fake, &mut backoff, &stop, "test")
                .await
                .is_none()
        );
        let calls = fake.calls.load(Ordering::Relaxed);
        // 50 + 100 + 200 + 400 + 800 ms: about six tries in the first second, not a spin.
        assert!(calls <= 10, "{calls} accepts in about a second");
        assert_eq!(backoff, BACKOFF_MAX);
    }

    #[test]
    fn fd_exhaustion_is_told_apart_from_a_dropped_client() {
        for code in [libc::EMFILE, libc::ENFILE, libc::ENOBUFS, libc::ENOMEM] {
            assert!(out_of_resources(&std::io::Error::from_raw_os_error(code)));
        }
        assert!(!out_of_resources(&std::io::Error::from_raw_os_error(
            libc::ECONNABORTED
        )));
    }
}
