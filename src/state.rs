//! The live snapshot (config + lists + policy) behind an `ArcSwap`, and reloading it.
//!
//! A query loads the snapshot once and uses that one version throughout, so an answer never
//! mixes an old policy with new lists. A reload builds a complete new snapshot off the hot
//! path (compiling lists if the config names sources), checks it, and only then swaps it
//! in; any failure leaves the running snapshot untouched, is logged with its reason and is
//! counted in `chaperone_reloads_total{result="failure"}`. One reload runs at a time.
//!
//! A reload is also refused (unless forced) when a list shrank by more than
//! `lists.max_shrink` (a half-downloaded list must not unblock sites), and when a setting
//! that only takes effect at start-up changed (the error names the key: restart instead).
//! Live exceptions are not part of what a reload reads: they are taken from the snapshot
//! in force at the moment of the swap, so a grant or revoke made while lists compile is
//! never overwritten.

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
    /// Entries per list file and per category, to catch a list that shrank on reload.
    pub list_counts: ListCounts,
    /// Local records and zones (`[local]`, reserved names), built from `config`.
    pub local: Arc<crate::local::LocalZones>,
}

pub use crate::lists::compile::ListCounts;

/// What a reload checks the new config and lists against.
pub struct ReloadCheck {
    /// The snapshot in force.
    pub previous: Arc<Snapshot>,
    /// Accept lists that shrank by more than `lists.max_shrink`.
    pub force: bool,
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
    /// A list shrank by more than `lists.max_shrink` since the running snapshot.
    #[error("refusing to reload: {}; more than lists.max_shrink = {:.0}% of the entries went, which looks like a truncated download (the old lists keep serving; reload with force to accept)", shrunk.join("; "), max_shrink * 100.0)]
    Shrunk {
        /// One line per file or category that shrank.
        shrunk: Vec<String>,
        /// The configured limit.
        max_shrink: f64,
    },
    /// A setting changed that only takes effect at start-up.
    #[error("refusing to reload: {} changed, which only takes effect on restart (restart Chaperone, or put the old value back to reload the rest)", keys.join(", "))]
    RestartNeeded {
        /// The key paths that changed.
        keys: Vec<&'static str>,
    },
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
    /// Entries per list file and category.
    pub counts: ListCounts,
}

/// Load a config, compile its sources (if any) into its bundle, open the bundle and build
/// the policy. Used at start-up and by `check` / `explain`.
pub fn load(config_path: &Path, exceptions: Vec<Exception>) -> Result<Loaded, LoadError> {
    load_checked(config_path, exceptions, None)
}

/// [`load`], and with `check` (a reload) also refuse restart-only changes and lists that
/// shrank too much, before a shrunken bundle is written over the good one.
pub fn load_checked(
    config_path: &Path,
    exceptions: Vec<Exception>,
    check: Option<&ReloadCheck>,
) -> Result<Loaded, LoadError> {
    let config = Config::load(config_path)?;
    if let Some(c) = check {
        let keys = restart_only_changes(&c.previous.config, &config);
        if !keys.is_empty() {
            return Err(LoadError::RestartNeeded { keys });
        }
    }
    let (bundle, report, counts) = open_lists(&config, check)?;
    let policy = Policy::build(&config, Arc::new(bundle), exceptions).map_err(|problems| {
        LoadError::Policy {
            path: config_path.to_owned(),
            problems,
        }
    })?;
    let problems = crate::alerts::themes::check(&config.themes, policy.bundle());
    if !problems.is_empty() {
        return Err(LoadError::Policy {
            path: config_path.to_owned(),
            problems,
        });
    }
    Ok(Loaded {
        config,
        policy,
        report,
        counts,
    })
}

/// Compile (when sources are configured) and open the bundle. On reload, a bundle whose
/// lists shrank too much is refused before it is written.
fn open_lists(
    config: &Config,
    check: Option<&ReloadCheck>,
) -> Result<(Bundle, Option<CompileReport>, ListCounts), LoadError> {
    let guard = |counts: &ListCounts| match check {
        Some(c) if !c.force => {
            let max_shrink = config.lists.max_shrink;
            let shrunk = counts.shrunk_from(&c.previous.list_counts, max_shrink);
            if shrunk.is_empty() {
                Ok(())
            } else {
                Err(LoadError::Shrunk { shrunk, max_shrink })
            }
        }
        _ => Ok(()),
    };
    if config.lists.sources.is_empty() {
        let bundle = Bundle::open(&config.lists.bundle)?;
        // Every category, listed with names or IPs or not: an emptied one counts as 0.
        let counts = ListCounts::from_bundle(&bundle);
        guard(&counts)?;
        return Ok((bundle, None, counts));
    }
    let (bytes, report) =
        compile::compile_with_services(&config.lists.sources, &config.services.categories())?;
    let counts = ListCounts::from_report(&report);
    guard(&counts)?;
    let path = &config.lists.bundle;
    bundle::write_atomically(path, &bytes).map_err(|source| LoadError::WriteBundle {
        path: path.clone(),
        source,
    })?;
    Ok((Bundle::open(path)?, Some(report), counts))
}

/// The key paths of settings read only at start-up whose values differ between `old` and
/// `new`. Everything else (policy, lists, tokens, upstreams, TTL limits, serve-stale,
/// retention and log caps) applies on reload.
pub fn restart_only_changes(old: &Config, new: &Config) -> Vec<&'static str> {
    let (o, n) = (old, new);
    let checks: &[(&'static str, bool)] = &[
        ("server.listen", o.server.listen != n.server.listen),
        ("server.threads", o.server.threads != n.server.threads),
        (
            "server.tcp_idle_timeout_secs",
            o.server.tcp_idle_timeout != n.server.tcp_idle_timeout,
        ),
        (
            "server.max_inflight",
            o.server.max_inflight != n.server.max_inflight,
        ),
        (
            "cache.max_entries",
            o.cache.max_entries != n.cache.max_entries,
        ),
        ("storage.path", o.storage_path != n.storage_path),
        (
            "admin.listen",
            o.admin.as_ref().map(|a| a.listen) != n.admin.as_ref().map(|a| a.listen),
        ),
        (
            "block_page.listen",
            o.block_page.as_ref().and_then(|b| b.listen)
                != n.block_page.as_ref().and_then(|b| b.listen),
        ),
        ("querylog.enabled", o.querylog.enabled != n.querylog.enabled),
        ("querylog.format", o.querylog.format != n.querylog.format),
        (
            "querylog.jsonl_path",
            o.querylog.jsonl_path != n.querylog.jsonl_path,
        ),
        ("querylog.queue", o.querylog.queue != n.querylog.queue),
        ("audit.key_file", o.audit.key_file != n.audit.key_file),
        ("audit.head_file", o.audit.head_file != n.audit.head_file),
        (
            "radius.listen",
            o.radius.as_ref().map(|r| &r.listen) != n.radius.as_ref().map(|r| &r.listen),
        ),
        (
            "dot.listen",
            o.encrypted.dot_listen != n.encrypted.dot_listen,
        ),
        (
            "doh.listen",
            o.encrypted.doh_listen != n.encrypted.doh_listen,
        ),
    ];
    checks
        .iter()
        .filter_map(|&(k, changed)| changed.then_some(k))
        .collect()
}

/// The shared, swappable state.
pub struct State {
    current: ArcSwap<Snapshot>,
    config_path: PathBuf,
    metrics: Arc<Metrics>,
    generation: AtomicU64,
    reload_lock: tokio::sync::Mutex<()>,
    /// DHCP leases: swapped on their own (files change far more often than the config).
    leases: Arc<crate::leases::Leases>,
    /// Enrolled devices and RADIUS sessions: swapped by their own sources.
    identities: Arc<crate::identity::Identities>,
}

impl State {
    /// Start from a loaded config.
    pub fn new(config_path: &Path, loaded: Loaded, metrics: Arc<Metrics>) -> Arc<State> {
        let snap = make_snapshot(loaded, 1, &metrics);
        let identities = Arc::new(crate::identity::Identities::default());
        identities.rebuild_devices(&snap.config.enrolled_devices);
        let lease_metrics = crate::leases::LeaseMetrics::register(metrics.registry())
            .map_err(|e| tracing::error!("lease metrics not registered: {e}"))
            .ok();
        Arc::new(State {
            current: ArcSwap::from_pointee(snap),
            config_path: config_path.to_owned(),
            metrics,
            generation: AtomicU64::new(1),
            reload_lock: tokio::sync::Mutex::new(()),
            leases: Arc::new(crate::leases::Leases::new(lease_metrics)),
            identities,
        })
    }

    /// The DHCP lease map (device names and MACs by address).
    pub fn leases(&self) -> &Arc<crate::leases::Leases> {
        &self.leases
    }

    /// Enrolled devices and RADIUS user sessions.
    pub fn identities(&self) -> &Arc<crate::identity::Identities> {
        &self.identities
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
        self.reload_with(false).await
    }

    /// [`State::reload`]; with `force`, accept lists that shrank by more than
    /// `lists.max_shrink`.
    pub async fn reload_with(&self, force: bool) -> Result<u64, Arc<LoadError>> {
        let _one_at_a_time = self.reload_lock.lock().await;
        let started = Instant::now();
        let path = self.config_path.clone();
        let check = ReloadCheck {
            previous: self.snapshot(),
            force,
        };
        let result = tokio::task::spawn_blocking(move || {
            // Exceptions are set again at the swap; these only let the policy build.
            let exceptions = check.previous.policy.exceptions().to_vec();
            load_checked(&path, exceptions, Some(&check))
        })
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
                let generation = self.generation.fetch_add(1, Ordering::SeqCst) + 1;
                self.swap_in(loaded, generation);
                self.identities
                    .rebuild_devices(&self.load().config.enrolled_devices);
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

    /// Swap a loaded config and lists in, with the exceptions of the snapshot in force at
    /// this moment (not those read when the reload began: a revoke or grant made while the
    /// lists compiled must survive). `rcu` retries if an exception change lands in between.
    fn swap_in(&self, loaded: Loaded, generation: u64) {
        let Snapshot {
            config,
            policy,
            counters,
            list_counts,
            local,
            ..
        } = make_snapshot(loaded, generation, &self.metrics);
        let mut counters = Some(counters);
        self.current.rcu(|cur| {
            let policy = policy.with_exceptions(cur.policy.exceptions().to_vec());
            let counters = counters.take().unwrap_or_else(|| {
                let groups: Vec<String> = policy.groups().iter().map(|g| g.name.clone()).collect();
                self.metrics.group_counters(
                    &groups,
                    &school_labels(&config, &groups),
                    policy.bundle().categories(),
                )
            });
            Snapshot {
                config: config.clone(),
                policy,
                generation,
                counters,
                list_counts: list_counts.clone(),
                local: local.clone(),
            }
        });
        self.metrics
            .exceptions_active
            .set(self.load().policy.exceptions().len() as i64);
    }

    /// Swap in the same config and lists with a new set of live exceptions.
    pub fn set_exceptions(&self, exceptions: Vec<Exception>) {
        self.current.rcu(|cur| {
            let policy = cur.policy.with_exceptions(exceptions.clone());
            let groups: Vec<String> = policy.groups().iter().map(|g| g.name.clone()).collect();
            Snapshot {
                config: cur.config.clone(),
                counters: self.metrics.group_counters(
                    &groups,
                    &school_labels(&cur.config, &groups),
                    policy.bundle().categories(),
                ),
                policy,
                generation: cur.generation,
                list_counts: cur.list_counts.clone(),
                local: cur.local.clone(),
            }
        });
        self.metrics.exceptions_active.set(exceptions.len() as i64);
    }
}

/// The `school` metrics label of each group (its `[[school]]` id, or "none").
fn school_labels<'a>(config: &'a Config, groups: &[String]) -> Vec<&'a str> {
    groups
        .iter()
        .map(|g| config.schools.label_of_group(g))
        .collect()
}

fn make_snapshot(loaded: Loaded, generation: u64, metrics: &Metrics) -> Snapshot {
    let Loaded {
        config,
        policy,
        counts,
        ..
    } = loaded;
    let groups: Vec<String> = policy.groups().iter().map(|g| g.name.clone()).collect();
    let counters = metrics.group_counters(
        &groups,
        &school_labels(&config, &groups),
        policy.bundle().categories(),
    );
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
    let local = Arc::new(crate::local::LocalZones::new(&config));
    Snapshot {
        config: Arc::new(config),
        policy,
        generation,
        counters,
        list_counts: counts,
        local,
    }
}
