//! A LISTEN connection on [`CHANGES_CHANNEL`] on its own thread, calling back with each
//! [`Change`] announced by any instance (this one included).
//!
//! Interim: the PostgreSQL backend's own `postgres::listen` (with TLS) replaces this once it
//! lands; this one connects without TLS only. After every (re)connect it reports every
//! kind of change, since notifications sent while it was away are lost.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::storage::{PgTls, PostgresConfig};
use crate::store::{CHANGES_CHANNEL, Change};

/// How long one wait for a notification lasts before the stop flag is checked.
const POLL: Duration = Duration::from_millis(250);
/// Longest pause between reconnection attempts.
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// The running listener; dropping it stops the thread (within [`POLL`]).
pub struct Listener {
    stop: Arc<AtomicBool>,
}

impl Drop for Listener {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
    }
}

/// Start listening; `on_change` runs on the listener's thread and must not block.
pub fn listen(cfg: &PostgresConfig, on_change: impl Fn(Change) + Send + 'static) -> Listener {
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let cfg = cfg.clone();
    let spawned = std::thread::Builder::new()
        .name("pg-listen".into())
        .spawn(move || run(&cfg, &flag, &on_change));
    if let Err(e) = spawned {
        tracing::error!(
            "cannot start the PostgreSQL LISTEN thread (changes apply at each resync only): {e}"
        );
    }
    Listener { stop }
}

fn run(cfg: &PostgresConfig, stop: &AtomicBool, on_change: &dyn Fn(Change)) {
    if cfg.tls == PgTls::Require {
        tracing::error!(
            "the interim LISTEN connection has no TLS: changes from other instances apply at each resync only"
        );
        return;
    }
    let mut backoff = Duration::from_millis(250);
    while !stop.load(Ordering::SeqCst) {
        match connect(cfg) {
            Ok(client) => {
                backoff = Duration::from_millis(250);
                tracing::info!("listening for changes from other instances on {CHANGES_CHANNEL}");
                for c in [Change::Exceptions, Change::Devices, Change::Lists] {
                    on_change(c);
                }
                serve(client, stop, on_change);
            }
            Err(e) => {
                tracing::warn!("LISTEN connection to PostgreSQL failed (retrying): {e}");
                pause(backoff, stop);
                backoff = (backoff * 2).min(MAX_BACKOFF);
            }
        }
    }
}

fn connect(cfg: &PostgresConfig) -> Result<postgres::Client, postgres::Error> {
    let mut pc: postgres::Config = cfg.url.parse()?;
    if let Some(p) = &cfg.password {
        pc.password(p);
    }
    pc.connect_timeout(cfg.connect_timeout);
    pc.application_name("chaperone-listen");
    let mut client = pc.connect(postgres::NoTls)?;
    client.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))?;
    Ok(client)
}

/// Deliver notifications until the connection fails or `stop`.
fn serve(mut client: postgres::Client, stop: &AtomicBool, on_change: &dyn Fn(Change)) {
    while !stop.load(Ordering::SeqCst) {
        if client.is_closed() {
            tracing::warn!("LISTEN connection to PostgreSQL closed: reconnecting");
            return;
        }
        let mut notes = client.notifications();
        let mut it = notes.timeout_iter(POLL);
        loop {
            match postgres::fallible_iterator::FallibleIterator::next(&mut it) {
                Ok(Some(n)) => {
                    if n.channel() == CHANGES_CHANNEL
                        && let Some(c) = Change::parse(n.payload())
                    {
                        on_change(c);
                    }
                }
                Ok(None) => break,
                Err(e) => {
                    tracing::warn!("LISTEN connection to PostgreSQL failed: {e}: reconnecting");
                    return;
                }
            }
        }
    }
}

fn pause(d: Duration, stop: &AtomicBool) {
    let mut left = d;
    while !left.is_zero() && !stop.load(Ordering::SeqCst) {
        let step = left.min(POLL);
        std::thread::sleep(step);
        left -= step;
    }
}
