//! Change notifications between instances: a dedicated thread with its own connection
//! LISTENs on [`CHANGES_CHANNEL`] and hands each [`Change`] to a callback.
//!
//! When the server goes away the thread reconnects with backoff (100 ms doubling to 5 s)
//! and, once listening (the first time too), calls the callback for every kind of change:
//! notifications sent before LISTEN took effect are lost, so the caller re-reads
//! everything (the periodic resync is the second safety net).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use postgres::fallible_iterator::FallibleIterator;

use crate::config::storage::PostgresConfig;
use crate::store::{CHANGES_CHANNEL, Change};

/// How long one wait for notifications lasts before the stop flag is looked at again.
const WAIT: Duration = Duration::from_millis(500);
/// How often an idle connection is checked with a round trip.
const PING_EVERY: Duration = Duration::from_secs(10);
/// First and longest pause between reconnection attempts.
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

/// Every kind of change, for a resync after a reconnect.
const ALL: [Change; 3] = [Change::Exceptions, Change::Devices, Change::Lists];

/// The listening thread; [`Listener::stop`] ends it (within about half a second).
pub struct Listener {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl Listener {
    /// Stop the thread and wait for it.
    pub fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }

    /// Whether the thread is still running.
    pub fn is_running(&self) -> bool {
        !self.handle.is_finished()
    }
}

/// Start a thread that LISTENs for changes announced by any instance
/// ([`crate::store::Store::announce`]) and calls `on_change` for each, on that thread
/// (keep it short: hand work to another thread). Once LISTEN is in effect, after the first
/// connection and after every reconnection, `on_change` is called once per kind of
/// change, since changes made before then were announced to nobody here.
pub fn listen(
    cfg: &PostgresConfig,
    on_change: impl Fn(Change) + Send + 'static,
) -> std::io::Result<Listener> {
    let cfg = cfg.clone();
    let stop = Arc::new(AtomicBool::new(false));
    let flag = stop.clone();
    let handle = std::thread::Builder::new()
        .name("pg-listen".into())
        .spawn(move || run(&cfg, &flag, &on_change))?;
    Ok(Listener { stop, handle })
}

fn run(cfg: &PostgresConfig, stop: &AtomicBool, on_change: &dyn Fn(Change)) {
    let mut backoff = BACKOFF_MIN;
    let mut first = true;
    while !stop.load(Ordering::Relaxed) {
        let mut client = match super::open_client(cfg).and_then(|mut c| {
            c.batch_execute(&format!("LISTEN {CHANGES_CHANNEL}"))
                .map_err(super::pg)?;
            Ok(c)
        }) {
            Ok(c) => c,
            Err(e) => {
                if first || backoff == BACKOFF_MIN {
                    tracing::warn!("change notifications: {e}; retrying");
                }
                first = false;
                sleep_unless_stopped(backoff, stop);
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        // Whatever changed before LISTEN took effect (since the caller's own start-up
        // read, or while disconnected) was announced to nobody here: re-read it all.
        if !first {
            tracing::info!("change notifications: connected again; re-reading everything");
        }
        for c in ALL {
            on_change(c);
        }
        first = false;
        backoff = BACKOFF_MIN;
        if let Err(e) = receive(&mut client, stop, on_change) {
            tracing::warn!("change notifications: connection lost: {e}");
        }
    }
}

/// Deliver notifications until the connection fails or `stop` is set.
fn receive(
    client: &mut postgres::Client,
    stop: &AtomicBool,
    on_change: &dyn Fn(Change),
) -> Result<(), String> {
    let mut pinged = Instant::now();
    while !stop.load(Ordering::Relaxed) {
        let mut n = client.notifications();
        let mut it = n.timeout_iter(WAIT);
        while let Some(note) = it.next().map_err(|e| e.to_string())? {
            if note.channel() != CHANGES_CHANNEL {
                continue;
            }
            match Change::parse(note.payload()) {
                Some(c) => on_change(c),
                None => tracing::debug!("unknown change notification {:?}", note.payload()),
            }
        }
        drop(it);
        drop(n);
        if client.is_closed() {
            return Err("the connection closed".into());
        }
        if pinged.elapsed() >= PING_EVERY {
            client.simple_query("SELECT 1").map_err(|e| e.to_string())?;
            pinged = Instant::now();
        }
    }
    Ok(())
}

fn sleep_unless_stopped(d: Duration, stop: &AtomicBool) {
    let end = Instant::now() + d;
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(50).min(end - Instant::now()));
    }
}
