//! The background refresher: one task per server that downloads each URL source when it
//! is due (its `refresh` interval, jittered by ±10% so a fleet of schools does not hit a
//! vendor in the same second) and asks for one reload when anything changed.
//!
//! It reads the sources from the config in force at every wake-up, so a reload that adds,
//! removes or retimes a source is followed without a restart. It never compiles or swaps
//! anything itself: [`Host::reload`] does (the server's normal reload path, which compiles
//! off the serving threads and keeps the old snapshot on any failure).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use super::{FetchMetrics, lastgood, refresh_source};
use crate::config::{ListsConfig, SourceConfig};

/// The longest sleep between wake-ups, so the age gauge stays current and config changes
/// are picked up.
const MAX_SLEEP: Duration = Duration::from_secs(30);
/// After a failed download, try again after at most this long (or the source's own
/// interval, if shorter), not a whole day later.
const RETRY_AFTER_FAILURE: Duration = Duration::from_secs(600);

/// What the refresher needs from the server.
#[async_trait::async_trait]
pub trait Host: Send + Sync + 'static {
    /// The `[lists]` config in force.
    fn lists(&self) -> ListsConfig;
    /// Compile and swap in the lists (a reload).
    async fn reload(&self);
}

/// Start the refresher; it stops when `shutdown` is cancelled.
pub fn spawn(host: Arc<dyn Host>, metrics: Arc<FetchMetrics>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut due: HashMap<String, Instant> = HashMap::new();
        loop {
            let lists = host.lists();
            let changed = refresh_due(&lists, &mut due, &metrics).await;
            if changed {
                tracing::info!("list sources changed: reloading");
                host.reload().await;
            }
            metrics.update_ages(&lists.sources);
            let now = Instant::now();
            let next = due
                .values()
                .min()
                .copied()
                .unwrap_or(now + MAX_SLEEP)
                .min(now + MAX_SLEEP);
            tokio::select! {
                _ = tokio::time::sleep_until(next) => {}
                _ = shutdown.cancelled() => return,
            }
        }
    });
}

/// Download every source that is due; whether any copy was replaced.
async fn refresh_due(
    lists: &ListsConfig,
    due: &mut HashMap<String, Instant>,
    metrics: &FetchMetrics,
) -> bool {
    let urls: Vec<&SourceConfig> = lists.sources.iter().filter(|s| s.url.is_some()).collect();
    // Bounded by the config: forget sources no longer configured.
    due.retain(|k, _| {
        urls.iter()
            .any(|s| s.url.as_ref().is_some_and(|u| &u.url == k))
    });
    let mut changed = false;
    for src in urls {
        let Some(url) = &src.url else { continue };
        let when = *due
            .entry(url.url.clone())
            .or_insert_with(|| first_due(src, url.refresh));
        if when > Instant::now() {
            continue;
        }
        let next = match refresh_source(src, lists).await {
            Ok(r) => {
                metrics.count(&url.name, r.result());
                tracing::debug!(source = %url.name, "list refresh: {}", r.result());
                changed |= r == super::Refreshed::Updated;
                if r == super::Refreshed::Updated {
                    tracing::info!(source = %url.name, "downloaded a new copy of {}", url.url);
                }
                url.refresh
            }
            Err(e) => {
                metrics.count(&url.name, e.result());
                tracing::warn!(
                    source = %url.name,
                    "keeping the last good copy of {} ({}): {e}",
                    url.url,
                    url.key
                );
                url.refresh.min(RETRY_AFTER_FAILURE)
            }
        };
        due.insert(url.url.clone(), Instant::now() + jitter(next));
    }
    changed
}

/// When a source first falls due after start-up: its interval after the copy was last
/// confirmed (now, if that is past).
fn first_due(src: &SourceConfig, refresh: Duration) -> Instant {
    let now = Instant::now();
    let Some(meta) = lastgood::read_meta(&src.path) else {
        return now;
    };
    let age = jiff::Timestamp::now().as_second() - meta.checked_at;
    let age = Duration::from_secs(u64::try_from(age).unwrap_or(0));
    match refresh.checked_sub(age) {
        Some(left) => now + jitter(left),
        None => now,
    }
}

/// `d` ±10%.
fn jitter(d: Duration) -> Duration {
    d.mul_f64(rand::random_range(0.9..1.1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_within_ten_percent() {
        for _ in 0..1000 {
            let j = jitter(Duration::from_secs(1000));
            assert!((900..=1100).contains(&j.as_secs()), "{j:?}");
        }
    }
}
