//! When lease files are read again: on a change the file watcher (notify) sees, every
//! `identify.leases_poll_secs` as a safety net (a watch can miss events, e.g. on network
//! file systems or when a folder is replaced), and when a config reload changes the set
//! of files. Reads run on a blocking thread; the map is swapped whole.
//!
//! The folders of the files are watched, not the files: DHCP servers replace their lease
//! files by rename (dnsmasq, dhcpd's periodic rewrite, Kea's cleanup), which a watch on the
//! old file would lose.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio_util::sync::CancellationToken;

use super::{LeaseFileConfig, Leases};

/// How often the config is looked at for a changed set of lease files.
const CONFIG_CHECK: Duration = Duration::from_secs(1);
/// Quiet time after a file event before reading (a burst of writes is one change).
const DEBOUNCE: Duration = Duration::from_millis(200);

/// The lease files and poll interval in force (read from the live config).
pub type ConfigSource = dyn Fn() -> (Vec<LeaseFileConfig>, Duration) + Send + Sync;

/// Read every file in `config` now (before serving, so the first query is named).
pub async fn initial(leases: &Arc<Leases>, files: Vec<LeaseFileConfig>) {
    leases.init_metrics(&files);
    let l = leases.clone();
    let _ = tokio::task::spawn_blocking(move || l.refresh(&files, true)).await;
}

/// Keep `leases` current until `shutdown`.
pub fn spawn(leases: Arc<Leases>, config: Arc<ConfigSource>, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let (mut files, _) = config();
        let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
        let mut watcher = watch(&files, tx.clone());
        let mut last_read = Instant::now();
        loop {
            let event = tokio::select! {
                got = rx.recv() => got.is_some(),
                _ = tokio::time::sleep(CONFIG_CHECK) => false,
                _ = shutdown.cancelled() => return,
            };
            let (now_files, now_poll) = config();
            let changed_config = now_files != files;
            if changed_config {
                leases.init_metrics(&now_files);
                files = now_files;
                watcher = watch(&files, tx.clone());
            }
            let due = last_read.elapsed() >= now_poll;
            if !(event || changed_config || due) {
                continue;
            }
            if event {
                tokio::time::sleep(DEBOUNCE).await;
                while rx.try_recv().is_ok() {}
            }
            let (l, f) = (leases.clone(), files.clone());
            // A file event forces a read: a rewrite may keep size and time stamp.
            let force = event;
            let _ = tokio::task::spawn_blocking(move || l.refresh(&f, force)).await;
            last_read = Instant::now();
            let _ = &watcher;
        }
    });
}

/// A watcher on the folders of `files` that sends on `tx` when one of them changes. None
/// if watching is unavailable (polling still reads the files).
fn watch(
    files: &[LeaseFileConfig],
    tx: tokio::sync::mpsc::Sender<()>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    if files.is_empty() {
        return None;
    }
    // Events name files by their real path: resolve the folders' symlinks and relative
    // parts the same way (the file itself may not exist yet).
    let real = |p: &PathBuf| -> PathBuf {
        match (p.parent(), p.file_name()) {
            (Some(d), Some(n)) => std::fs::canonicalize(d)
                .map(|d| d.join(n))
                .unwrap_or_else(|_| p.clone()),
            _ => p.clone(),
        }
    };
    let wanted: Vec<PathBuf> = files.iter().map(|f| real(&f.path)).collect();
    let dirs_of = wanted.clone();
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if ev.kind.is_access() {
            return;
        }
        if ev.paths.iter().any(|p| wanted.iter().any(|w| p == w)) {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("cannot watch lease files, reading them every poll interval: {e}");
            return None;
        }
    };
    let mut dirs: Vec<PathBuf> = dirs_of
        .iter()
        .filter_map(|p| p.parent().map(|d| d.to_path_buf()))
        .collect();
    dirs.sort();
    dirs.dedup();
    for d in &dirs {
        if let Err(e) = watcher.watch(d, RecursiveMode::NonRecursive) {
            tracing::warn!(
                "cannot watch {} for lease file changes, reading them every poll interval: {e}",
                d.display()
            );
        }
    }
    Some(watcher)
}
