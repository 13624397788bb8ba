//! The live snapshot (config + lists + policy) behind an `ArcSwap`, and reloading it.
//!
//! A query loads the snapshot once and uses that one version throughout, so an answer never
//! mixes an old policy with new lists. A reload builds a complete new snapshot off the hot
//! path (compiling lists if the config names sources), checks it, and only then swaps it
//! in; any failure leaves the running snapshot untouched, is logged with its reason and is
//! counted in `chaperone_reloads_total{result="failure"}`. One reload runs at a time.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use arc_swap::ArcSwap;

use crate::config::{Config, ConfigError, Problem};
use crate::lists::bundle::{self, Bundle, BundleError};
use crate::lists::compile::{self, CompileError, CompileReport};
use crate::metrics::{GroupCounters, Metrics};
use crate::policy::{Exception, Policy};

/// Everything a query needs, immutable.
pub struct Snapshot {
    /// The configuration.
    pub config: Arc<Config>,
    /// The policy (holds the bundle).
    pub policy: Policy,
    /// Rises by one on every successful reload.
    pub generation: u64,
    /// Metric handles for this snapshot's groups and categories.
    pub counters: GroupCounters,
}

/// Why a snapshot could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LoadError {
    /// The config file.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Compiling the configured lists.
    #[error(transparent)]
    Compile(#[from] CompileError),
    /// Writing the compiled bundle.
    #[error("cannot write bundle {}: {source}", path.display())]
    WriteBundle {
        /// Where.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// Opening the bundle.
    #[error(transparent)]
    Bundle(#[from] BundleError),
    /// The policy does not fit the lists (unknown categories...).
    #[error("{}: policy does not match the lists:\n{}", path.display(), problems.iter().map(|p| format!("  {p}")).collect::<Vec<_>>().join("\n"))]
    Policy {
        /// The config file.
        path: PathBuf,
        /// Problems, with key paths.
        problems: Vec<Problem>,
    },
}

/// A loaded config and bundle, before it becomes a snapshot.
pub struct Loaded {
    /// Config.
    pub config: Config,
    /// Policy built on the bundle.
    pub policy: Policy,
    /// The compile report, when lists were compiled from sources.
    pub report: Option<CompileReport>,
}

/// Load a config, compile its sources (if any) into its bundle, open the bundle and build
/// the policy. Used at start-up, on reload, and by `check` / `explain`.
pub fn load(config_path: &Path, exceptions: Vec<Exception>) -> Result<Loaded, LoadError> {
    let config = Config::load(config_path)?;
    let (bundle, report) = open_lists(&config)?;
    let policy = Policy::build(&config, Arc::new(bundle), exceptions).map_err(|problems| {
        LoadError::Policy {
            path: config_path.to_owned(),
            problems,
        }
    })?;
    Ok(Loaded {
        config,
        policy,
        report,
    })
}

/// Compile (when sources are configured) and open the bundle.
fn open_lists(config: &Config) -> Result<(Bundle, Option<CompileReport>), LoadError> {
    if config.lists.sources.is_empty() {
        return Ok((Bundle::open(&config.lists.bundle)?, None));
    }
    let (bytes, report) = compile::compile_sources(&config.lists.sources)?;
    let path = &config.lists.bundle;
    bundle::write_atomically(path, &bytes).map_err(|source| LoadError::WriteBundle {
        path: path.clone(),
        source,
    })?;
    Ok((Bundle::open(path)?, Some(report)))
}

/// The shared, swappable state.
pub struct State {
    current: ArcSwap<Snapshot>,
    config_path: PathBuf,
    metrics: Arc<Metrics>,
    generation: AtomicU64,
    reload_lock: tokio::sync::Mutex<()>,
}

impl State {
    /// Start from a loaded config.
    pub fn new(config_path: &Path, loaded: Loaded, metrics: Arc<Metrics>) -> Arc<State> {
        let snap = make_snapshot(loaded.config, loaded.policy, 1, &metrics);
        Arc::new(State {
            current: ArcSwap::from_pointee(snap),
            config_path: config_path.to_owned(),
            metrics,
            generation: AtomicU64::new(1),
            reload_lock: tokio::sync::Mutex::new(()),
        })
    }

    /// The snapshot in force. Hold the guard only for one query.
    pub fn load(&self) -> arc_swap::Guard<Arc<Snapshot>> {
        self.current.load()
    }

    /// The snapshot in force, as an owned `Arc` (for work spanning an `.await`).
    pub fn snapshot(&self) -> Arc<Snapshot> {
        self.current.load_full()
    }

    /// Metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Re-read the config file and lists, and swap them in if they are good. Keeps the
    /// current snapshot on any error. Live exceptions carry over.
    pub async fn reload(&self) -> Result<u64, Arc<LoadError>> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let started = Instant::now();
        let path = self.config_path.clone();
        let exceptions = self.load().policy.exceptions().to_vec();
        let result = tokio::task::spawn_blocking(move || load(&path, exceptions))
            .await
            .unwrap_or_else(|e| {
                Err(LoadError::WriteBundle {
                    path: PathBuf::new(),
                    source: std::io::Error::other(format!("reload task failed: {e}")),
                })
            });
        let now = jiff::Timestamp::now().as_second();
        match result {
            Ok(loaded) => {
                self.warn_about_restart_only_changes(&loaded.config);
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                let snap = make_snapshot(loaded.config, loaded.policy, generation, &self.metrics);
                self.current.store(Arc::new(snap));
                self.metrics.reloads.with_label_values(&["success"]).inc();
                self.metrics
                    .last_reload
                    .with_label_values(&["success"])
                    .set(now);
                tracing::info!(
                    generation,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "reloaded config and lists"
                );
                Ok(generation)
            }
            Err(e) => {
                self.metrics.reloads.with_label_values(&["failure"]).inc();
                self.metrics
                    .last_reload
                    .with_label_values(&["failure"])
                    .set(now);
                tracing::error!(
                    "reload failed, still serving generation {}: {e}",
                    self.load().generation
                );
                Err(Arc::new(e))
            }
        }
    }

    /// Swap in the same config and lists with a new set of live exceptions.
    pub fn set_exceptions(&self, exceptions: Vec<Exception>) {
        self.current.rcu(|cur| {
            let policy = cur.policy.with_exceptions(exceptions.clone());
            let groups: Vec<String> = policy.groups().iter().map(|g| g.name.clone()).collect();
            Snapshot {
                config: cur.config.clone(),
                counters: self
                    .metrics
                    .group_counters(&groups, policy.bundle().categories()),
                policy,
                generation: cur.generation,
            }
        });
        self.metrics.exceptions_active.set(exceptions.len() as i64);
    }

    fn warn_about_restart_only_changes(&self, new: &Config) {
        let old = &self.load().config;
        if old.server.listen != new.server.listen {
            tracing::warn!(
                "server.listen changed: restart Chaperone to listen on the new addresses"
            );
        }
        if old.admin.as_ref().map(|a| a.listen) != new.admin.as_ref().map(|a| a.listen) {
            tracing::warn!("admin.listen changed: restart Chaperone to apply it");
        }
    }
}

fn make_snapshot(config: Config, policy: Policy, generation: u64, metrics: &Metrics) -> Snapshot {
    let groups: Vec<String> = policy.groups().iter().map(|g| g.name.clone()).collect();
    let counters = metrics.group_counters(&groups, policy.bundle().categories());
    metrics.generation.set(generation as i64);
    metrics
        .exceptions_active
        .set(policy.exceptions().len() as i64);
    metrics.list_entries.reset();
    for (cat, n) in &policy.bundle().header().counts {
        metrics
            .list_entries
            .with_label_values(&[cat])
            .set(*n as i64);
    }
    Snapshot {
        config: Arc::new(config),
        policy,
        generation,
        counters,
    }
}
