//! Instances that agree (issue 15): several Chaperone instances sharing one PostgreSQL
//! store apply each other's changes. This module owns the applying side:
//!
//! - every state-changing admin call announces what it changed ([`announce`], a NOTIFY on
//!   [`crate::store::CHANGES_CHANNEL`]) right after its write;
//! - [`start`] runs the receiving side: the store's LISTEN thread
//!   ([`crate::store::postgres::listen`]) raises a flag per [`Change`], and one task here
//!   applies the raised flags (re-reads the exceptions, rebuilds the enrolment index, or
//!   appends approved reports' domains to this instance's list files), plus a full resync
//!   every `[storage] resync_secs` as the safety net for a lost notification.
//!
//! It must not block the DNS path: everything runs on its own task, each store call on a
//! blocking thread through [`Admin::with_db`], and a burst of notifications coalesces into
//! one re-read per kind (three flags, not a queue). When the database is down, applying
//! fails, is logged and counted, and what is loaded stays in force (the exceptions in the
//! live policy are only replaced by a successful re-read).

use std::collections::HashSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use prometheus::{IntCounterVec, IntGauge, Opts};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;

use crate::admin::Admin;
use crate::store::{Change, Store, StoreError};

/// Every kind of change, in the order a full resync applies them.
const ALL: [Change; 3] = [Change::Exceptions, Change::Devices, Change::Lists];

/// Tell the other instances sharing the store that `change` happened. A failed
/// announcement is logged, not returned: the write it follows has succeeded, and the other
/// instances' periodic resync picks it up anyway.
pub(crate) fn announce(db: &mut dyn Store, change: Change) {
    if let Err(e) = db.announce(change) {
        tracing::warn!(
            "cannot announce the {} change to other instances (they apply it at their next resync): {e}",
            change.as_str()
        );
    }
}

/// The metrics of this module, registered in the server's registry.
#[derive(Clone)]
pub struct SyncMetrics {
    /// chaperone_store_up: 1 if the last store read (apply or resync) succeeded.
    pub up: IntGauge,
    /// chaperone_store_changes_applied_total{change}: changes from other instances (and
    /// this one's own, echoed) applied after a notification.
    pub applied: IntCounterVec,
    /// chaperone_store_change_failures_total{change}: applying a change failed.
    pub failed: IntCounterVec,
    /// chaperone_store_resync_total{result}: periodic full re-reads.
    pub resync: IntCounterVec,
}

impl SyncMetrics {
    fn new(registry: &prometheus::Registry) -> Result<Self, prometheus::Error> {
        let up = IntGauge::new(
            "chaperone_store_up",
            "1 if the last read of the shared store (a change applied or a resync) succeeded, 0 if it failed.",
        )?;
        let applied = IntCounterVec::new(
            Opts::new(
                "chaperone_store_changes_applied_total",
                "Changes announced by an instance sharing the store (exceptions, devices, lists) and applied here.",
            ),
            &["change"],
        )?;
        let failed = IntCounterVec::new(
            Opts::new(
                "chaperone_store_change_failures_total",
                "Announced changes that could not be applied (the store was unreachable): the next resync retries.",
            ),
            &["change"],
        )?;
        let resync = IntCounterVec::new(
            Opts::new(
                "chaperone_store_resync_total",
                "Periodic full re-reads of exceptions, devices and approved reports, by result.",
            ),
            &["result"],
        )?;
        registry.register(Box::new(up.clone()))?;
        registry.register(Box::new(applied.clone()))?;
        registry.register(Box::new(failed.clone()))?;
        registry.register(Box::new(resync.clone()))?;
        for c in ALL {
            applied.with_label_values(&[c.as_str()]);
            failed.with_label_values(&[c.as_str()]);
        }
        for r in ["success", "failure"] {
            resync.with_label_values(&[r]);
        }
        up.set(1);
        Ok(Self {
            up,
            applied,
            failed,
            resync,
        })
    }
}

/// The changes announced and not yet applied: one flag per kind, so any number of
/// notifications costs one re-read each (bounded by construction).
#[derive(Default)]
pub struct Pending {
    flags: [AtomicBool; 3],
    wake: Notify,
}

impl Pending {
    /// Note a change (called from the LISTEN thread: never blocks).
    pub fn raise(&self, change: Change) {
        self.flags[index(change)].store(true, Ordering::SeqCst);
        self.wake.notify_one();
    }

    /// Take the raised flags.
    fn take(&self) -> Vec<Change> {
        ALL.into_iter()
            .filter(|c| self.flags[index(*c)].swap(false, Ordering::SeqCst))
            .collect()
    }
}

fn index(c: Change) -> usize {
    match c {
        Change::Exceptions => 0,
        Change::Devices => 1,
        Change::Lists => 2,
    }
}

/// Start applying changes from the instances sharing the PostgreSQL store in `pg`:
/// its LISTEN thread and the task that applies and resyncs, until `shutdown`.
pub fn start(
    admin: Admin,
    pg: &crate::config::storage::PostgresConfig,
    shutdown: CancellationToken,
) -> Arc<Pending> {
    let metrics = match SyncMetrics::new(admin.pipeline.state().metrics().registry()) {
        Ok(m) => Some(m),
        Err(e) => {
            tracing::error!("store sync metrics not registered: {e}");
            None
        }
    };
    let pending = Arc::new(Pending::default());
    let raised = pending.clone();
    let listener = match crate::store::postgres::listen(pg, move |c: Change| raised.raise(c)) {
        Ok(l) => Some(l),
        Err(e) => {
            tracing::error!(
                "cannot start the PostgreSQL LISTEN thread (changes apply at each resync only): {e}"
            );
            None
        }
    };
    let applier = Applier {
        admin,
        metrics,
        lists_done: HashSet::new(),
    };
    tokio::spawn(applier.run(pending.clone(), pg.resync, shutdown, listener));
    pending
}

/// The task applying changes.
struct Applier {
    admin: Admin,
    metrics: Option<SyncMetrics>,
    /// Approved reports whose domain this instance has checked is in its lists (so a
    /// resync does not read the list file again for each).
    lists_done: HashSet<i64>,
}

impl Applier {
    async fn run<L: Send + 'static>(
        mut self,
        pending: Arc<Pending>,
        every: Duration,
        shutdown: CancellationToken,
        listener: L,
    ) {
        // Dropped when the task ends, so the LISTEN thread stops with the server.
        let _listener = listener;
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await; // the first tick is immediate: start-up has just read everything
        loop {
            tokio::select! {
                _ = pending.wake.notified() => {
                    for change in pending.take() {
                        let ok = self.apply(change).await;
                        self.count_change(change, ok);
                    }
                }
                _ = tick.tick() => self.resync().await,
                _ = shutdown.cancelled() => return,
            }
        }
    }

    /// Re-read everything: the safety net behind lost notifications (a reconnect, a
    /// change written by an older version).
    async fn resync(&mut self) {
        let mut ok = true;
        for change in ALL {
            ok &= self.apply(change).await;
        }
        if let Some(m) = &self.metrics {
            let result = if ok { "success" } else { "failure" };
            m.resync.with_label_values(&[result]).inc();
            m.up.set(i64::from(ok));
        }
    }

    fn count_change(&self, change: Change, ok: bool) {
        if let Some(m) = &self.metrics {
            let counter = if ok { &m.applied } else { &m.failed };
            counter.with_label_values(&[change.as_str()]).inc();
            m.up.set(i64::from(ok));
        }
    }

    /// Apply one kind of change; false (logged) if the store could not be read.
    async fn apply(&mut self, change: Change) -> bool {
        let result = match change {
            Change::Exceptions => self.admin.refresh_exceptions().await.map(|_| ()),
            Change::Devices => {
                let state = self.admin.pipeline.state().clone();
                self.admin
                    .with_db(move |c| crate::admin::devices::rebuild_from_store(&state, c))
                    .await
                    .map(|_| ())
            }
            Change::Lists => self.apply_lists().await,
        };
        match result {
            Ok(()) => true,
            Err(e) => {
                tracing::warn!(
                    "cannot apply the {} change from the shared store (what is loaded stays in force): {e}",
                    change.as_str()
                );
                false
            }
        }
    }

    /// Make every approved report's domain listed here too: the approving instance
    /// appended it to its own list file; this one appends it to its file of that category
    /// (as `approve_report` does) unless the file already holds the report's entry, then
    /// reloads once.
    async fn apply_lists(&mut self) -> Result<(), StoreError> {
        let approved = self
            .admin
            .with_db(|c| c.list_reports(Some("approved")))
            .await?;
        let mut written = Vec::new();
        for r in approved {
            if self.lists_done.contains(&r.id) {
                continue;
            }
            let Some(category) = r.category.clone() else {
                self.lists_done.insert(r.id);
                continue;
            };
            if crate::admin::routes::listed_in(&self.admin, &r.domain, &category) {
                self.lists_done.insert(r.id);
                continue;
            }
            let config = self.admin.pipeline.state().load().config.clone();
            let Some((path, format)) = crate::admin::routes::list_file_of(&config, &category)
            else {
                tracing::warn!(
                    "report {} was approved into category {category:?} on another instance, but this one has no list file for it in [[lists.source]]",
                    r.id
                );
                self.lists_done.insert(r.id);
                continue;
            };
            let marker = report_marker(r.id);
            let note = format!(
                "{marker} by {}, approved by {} on another instance",
                r.reporter,
                r.decided_by.as_deref().unwrap_or("?")
            );
            let domain = r.domain.clone();
            let appended = tokio::task::spawn_blocking(move || {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                if text.contains(&format!("{marker} ")) {
                    return Ok(false);
                }
                crate::admin::routes::append_entry(&path, format, &domain, &note).map(|()| true)
            })
            .await
            .map_err(|e| StoreError::Invalid(format!("list writer failed: {e}")))?;
            match appended {
                Ok(true) => written.push((r.id, r.domain.clone(), category)),
                Ok(false) => {}
                Err(e) => tracing::error!("report {}: cannot add {}: {e}", r.id, r.domain),
            }
            // Written or already there: a reload (below, or the file watcher's) lists it;
            // it is not retried on every resync.
            self.lists_done.insert(r.id);
        }
        if !written.is_empty() {
            if let Err(e) = self.admin.pipeline.reload().await {
                tracing::error!(
                    "reload after adding approved reports from another instance failed: {e}"
                );
            }
            for (id, domain, category) in written {
                tracing::info!(
                    "report {id}: {domain} added to {category:?} (approved on another instance)"
                );
            }
        }
        Ok(())
    }
}

/// The words that identify a report's entry in a list file's comment ("report 12"), as
/// `approve_report`'s note starts.
fn report_marker(id: i64) -> String {
    format!("report {id}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pending_changes_coalesce_into_one_flag_each() {
        let p = Pending::default();
        for _ in 0..1000 {
            p.raise(Change::Exceptions);
        }
        p.raise(Change::Lists);
        assert_eq!(p.take(), vec![Change::Exceptions, Change::Lists]);
        assert!(p.take().is_empty());
    }

    #[test]
    fn the_marker_matches_the_note_approve_report_writes() {
        // approve_report's note: "report {id} by {reporter}, approved by {who}".
        let note = "report 12 by Ann, approved by Sam";
        assert!(note.contains(&format!("{} ", report_marker(12))));
        assert!(!note.contains(&format!("{} ", report_marker(1))));
    }
}
