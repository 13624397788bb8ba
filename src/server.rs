//! Process lifecycle: binds the transport listeners ([`crate::transport::udp`],
//! [`crate::transport::tcp`], each handing requests to [`crate::transport::handler`]) and
//! the admin listener, reload triggers (SIGHUP, file change, admin API) and graceful
//! shutdown (SIGTERM/SIGINT).

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, UdpSocket};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::admin::{self, Admin};
use crate::alerts;
use crate::console;
use crate::lists::fetch::{self, FetchMetrics, refresh};
use crate::metrics::Metrics;
use crate::pipeline::Pipeline;
use crate::policy::clock::{SharedClock, SystemClock};
use crate::record::Recorder;
use crate::state::{self, State};
use crate::store::{self, querylog};
use crate::transport::handler::Handler;
use crate::transport::{self, tcp, udp};

mod encrypted;

/// Options for [`start`] that do not come from the config file.
#[derive(Clone)]
pub struct StartOptions {
    /// Time source (tests pass a manual clock).
    pub clock: SharedClock,
    /// Watch the config, bundle and list files and reload on change.
    pub watch_files: bool,
    /// Handle SIGHUP / SIGTERM / SIGINT (the binary does; in-process tests do not).
    pub signals: bool,
}

impl Default for StartOptions {
    fn default() -> Self {
        Self {
            clock: Arc::new(SystemClock),
            watch_files: true,
            signals: true,
        }
    }
}

/// A running Chaperone.
pub struct Running {
    /// DNS addresses actually bound (port 0 in the config is resolved here).
    pub dns_addrs: Vec<SocketAddr>,
    /// Admin API address, if configured.
    pub admin_addr: Option<SocketAddr>,
    /// Block page web server address, if configured.
    pub block_page_addr: Option<SocketAddr>,
    /// RADIUS accounting addresses bound (`[radius] listen`, port 0 resolved).
    pub radius_addrs: Vec<SocketAddr>,
    /// DNS over TLS addresses bound (`[dot]`).
    pub dot_addrs: Vec<SocketAddr>,
    /// DNS over HTTPS addresses bound (`[doh]`).
    pub doh_addrs: Vec<SocketAddr>,
    /// The pipeline (state, cache, upstream).
    pub pipeline: Arc<Pipeline>,
    /// Keeps the query log writer (and so retention) alive while serving.
    _querylog_writer: querylog::QueryLog,
    shutdown: CancellationToken,
    task: tokio::task::JoinHandle<()>,
}

impl Running {
    /// Stop serving and wait until in-flight queries are answered.
    pub async fn shutdown(self) {
        self.shutdown.cancel();
        let _ = self.task.await;
        if let Some(log) = self.pipeline.recorder().query_log() {
            log.flush();
        }
    }

    /// A token that stops the server when cancelled.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    /// Wait until the server stops (signal or token).
    pub async fn wait(self) {
        let _ = self.task.await;
        if let Some(log) = self.pipeline.recorder().query_log() {
            log.flush();
        }
    }
}

/// Why the server could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StartError {
    /// Config or lists.
    #[error(transparent)]
    Load(#[from] state::LoadError),
    /// Upstream setup.
    #[error(transparent)]
    Upstream(#[from] crate::resolve::UpstreamError),
    /// A listener could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// Address.
        addr: SocketAddr,
        /// Cause.
        source: std::io::Error,
    },
    /// Storage (query log, exceptions, audit).
    #[error("storage: {0}")]
    Store(String),
    /// A URL list source has no last good copy and could not be downloaded.
    #[error("{0}")]
    Lists(String),
    /// The encrypted listeners' certificate or key could not be read.
    #[error("TLS: {0}")]
    Tls(String),
}

/// The query log writer's and the alert sender's own store connections, opened on a
/// blocking thread.
async fn open_stores(
    config: &crate::config::Config,
) -> Result<(Box<dyn store::Store>, Box<dyn store::Store>), StartError> {
    let config = config.clone();
    tokio::task::spawn_blocking(move || Ok((store::open(&config)?, store::open(&config)?)))
        .await
        .map_err(|e| StartError::Store(format!("start-up task failed: {e}")))?
        .map_err(|e: store::StoreError| StartError::Store(e.to_string()))
}

/// Load the config, bind every listener and start serving.
pub async fn start(config_path: &Path, opts: StartOptions) -> Result<Running, StartError> {
    let metrics = Arc::new(Metrics::new());
    let fetch_metrics = Arc::new(FetchMetrics::new(metrics.registry()));
    prepare_url_sources(config_path, &fetch_metrics).await?;
    let path = config_path.to_owned();
    let clock = opts.clock.clone();
    let loaded = tokio::task::spawn_blocking(move || -> Result<state::Loaded, StartError> {
        let config = crate::config::Config::load(&path).map_err(state::LoadError::from)?;
        let mut db = store::open(&config).map_err(|e| StartError::Store(e.to_string()))?;
        let live = db
            .live_exceptions(clock.now())
            .map_err(|e| StartError::Store(e.to_string()))?;
        Ok(state::load(&path, live)?)
    })
    .await
    .map_err(|e| StartError::Store(format!("start-up task failed: {e}")))??;
    if let Some(r) = &loaded.report {
        log_compile_report(r);
    }
    let state = State::new(config_path, loaded, metrics.clone());
    let snap = state.snapshot();
    crate::leases::watch::initial(state.leases(), snap.config.identify.leases.clone()).await;
    let (log_db, alert_db) = open_stores(&snap.config).await?;
    // The writer also runs retention, so it starts even with logging off: records kept
    // from when it was on still expire.
    let writer = querylog::start(
        log_db,
        &snap.config.querylog,
        state.clone(),
        opts.clock.clone(),
    )
    .map_err(|e| StartError::Store(e.to_string()))?
    .0;
    let querylog = snap.config.querylog.enabled.then(|| writer.clone());
    let incidents = alerts::start(alert_db, state.clone(), opts.clock.clone())
        .map_err(|e| StartError::Store(e.to_string()))?;
    let recorder = Recorder::new(querylog, Some(incidents), metrics.clone());
    let pipeline = Arc::new(Pipeline::new(state.clone(), opts.clock.clone(), recorder)?);
    pipeline.start_prefetch();

    let handler = Arc::new(Handler::new(pipeline.clone()));
    let shutdown = CancellationToken::new();
    let loops = snap
        .config
        .server
        .threads
        .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let mut dns_addrs = Vec::new();
    let mut udp_sockets = Vec::new();
    let mut tcp_listeners = Vec::new();
    let v6only = transport::v6_only(&snap.config.server.listen);
    for addr in &snap.config.server.listen {
        let (udp, tcp) = bind_pair(*addr, loops, v6only)?;
        dns_addrs.push(udp[0].local_addr().map_err(|source| StartError::Bind {
            addr: *addr,
            source,
        })?);
        udp_sockets.extend(udp);
        tcp_listeners.push(tcp);
    }
    let udp_tasks = udp::spawn(
        udp_sockets,
        pipeline.clone(),
        handler.clone(),
        shutdown.clone(),
    );
    let tcp_tasks = tcp::spawn(
        tcp_listeners,
        handler.clone(),
        pipeline.state().metrics().formerr.clone(),
        tcp_limits(&snap.config.server),
        shutdown.clone(),
    );
    let encrypted = encrypted::start(
        &snap.config,
        &state,
        &handler,
        tcp_limits(&snap.config.server),
        &shutdown,
    )?;
    let admin = Admin::open(pipeline.clone())
        .await
        .map_err(|e| StartError::Store(e.to_string()))?;
    let admin_addr = match &snap.config.admin {
        Some(a) => Some(
            admin::serve(
                a.listen,
                admin::router(admin.clone()).merge(console::router().with_state(admin.clone())),
                &admin,
                shutdown.clone(),
            )
            .await
            .map_err(|source| StartError::Bind {
                addr: a.listen,
                source,
            })?,
        ),
        None => None,
    };
    let block_page_addr = match snap.config.block_page.as_ref().and_then(|b| b.listen) {
        Some(addr) => Some(
            admin::serve(
                addr,
                admin::blockpage::router(admin.clone()),
                &admin,
                shutdown.clone(),
            )
            .await
            .map_err(|source| StartError::Bind { addr, source })?,
        ),
        None => None,
    };
    let radius_addrs = crate::radius::start(&state, opts.clock.clone(), shutdown.clone())
        .await
        .map_err(|(addr, source)| StartError::Bind { addr, source })?;
    if let Some(pg) = &snap.config.postgres {
        admin::sync::start(admin.clone(), pg, shutdown.clone());
    }
    spawn_exception_refresher(admin, shutdown.clone());
    spawn_lease_watcher(&state, shutdown.clone());
    if snap.config.lists.sources.iter().any(|s| s.url.is_some()) {
        fetch_metrics.init(&snap.config.lists.sources);
        refresh::spawn(
            Arc::new(RefreshHost(pipeline.clone())),
            fetch_metrics,
            shutdown.clone(),
        );
    }
    if opts.watch_files {
        spawn_file_watcher(
            pipeline.clone(),
            watched_paths(&snap.config),
            shutdown.clone(),
        );
    }
    drop(snap);
    tracing::info!(
        "Chaperone is answering DNS on {}; admin API {}; block page {}",
        list_addrs(&dns_addrs),
        admin_addr.map_or("off".to_owned(), |a| a.to_string()),
        block_page_addr.map_or("off".to_owned(), |a| a.to_string())
    );
    if !encrypted.dot_addrs.is_empty() || !encrypted.doh_addrs.is_empty() {
        tracing::info!(
            "DNS over TLS on {}; DNS over HTTPS on {}",
            list_addrs(&encrypted.dot_addrs),
            list_addrs(&encrypted.doh_addrs)
        );
    }
    let task = tokio::spawn(run(
        tcp_tasks,
        udp_tasks,
        encrypted.tasks,
        pipeline.clone(),
        shutdown.clone(),
        opts.signals,
    ));
    Ok(Running {
        _querylog_writer: writer,
        dns_addrs,
        admin_addr,
        block_page_addr,
        radius_addrs,
        dot_addrs: encrypted.dot_addrs,
        doh_addrs: encrypted.doh_addrs,
        pipeline,
        shutdown,
        task,
    })
}

/// Keep the DHCP lease map current: the lease files and poll interval come from the live
/// config, so a reload that changes `[[identify.leases]]` applies without a restart. Runs
/// whether or not config files are watched: lease files have no other trigger.
fn spawn_lease_watcher(state: &Arc<State>, shutdown: CancellationToken) {
    let live = Arc::downgrade(state);
    let config = move || match live.upgrade() {
        Some(s) => {
            let snap = s.load();
            let i = &snap.config.identify;
            (i.leases.clone(), i.leases_poll)
        }
        None => (Vec::new(), crate::config::DEFAULT_LEASES_POLL),
    };
    crate::leases::watch::spawn(state.leases().clone(), Arc::new(config), shutdown);
}

/// Drop expired exceptions from the live policy (their expiry already stops them applying;
/// this keeps the table and the active-exceptions gauge current).
fn spawn_exception_refresher(admin: Admin, shutdown: CancellationToken) {
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(30));
        loop {
            tokio::select! {
                _ = tick.tick() => {
                    if let Err(e) = admin.refresh_exceptions().await {
                        tracing::error!("cannot refresh exceptions: {e}");
                    }
                }
                _ = shutdown.cancelled() => return,
            }
        }
    });
}

/// The TCP bounds from `[server]`, with the total cap kept to half the open files limit
/// so that upstream sockets, the database and the web listeners always have descriptors.
fn tcp_limits(c: &crate::config::ServerConfig) -> tcp::TcpLimits {
    let mut max_connections = c.tcp_max_connections;
    #[cfg(unix)]
    if let Some(files) = transport::open_files_limit() {
        let room = usize::try_from(files / 2).unwrap_or(usize::MAX).max(1);
        if max_connections > room {
            tracing::warn!(
                "server.tcp_max_connections = {max_connections} is more than half the open files limit ({files}): using {room}"
            );
            max_connections = room;
        }
    }
    tcp::TcpLimits {
        max_connections,
        max_per_client: c.tcp_max_connections_per_client.min(max_connections),
        idle_timeout: c.tcp_idle_timeout,
    }
}

/// Bind the UDP sockets (one per receive loop, SO_REUSEPORT) and TCP on the same address;
/// with port 0, retry until UDP and TCP get the same port. IPv6 sockets are IPv6-only when
/// `v6only` (an IPv4 address is listed too), else dual-stack.
fn bind_pair(
    addr: SocketAddr,
    loops: usize,
    v6only: bool,
) -> Result<(Vec<Arc<UdpSocket>>, TcpListener), StartError> {
    let bind_err = |source| StartError::Bind { addr, source };
    for _ in 0..20 {
        let udp = udp::bind(addr, loops, v6only).map_err(bind_err)?;
        let bound = udp[0].local_addr().map_err(bind_err)?;
        match transport::bind_tcp(bound, v6only) {
            Ok(tcp) => return Ok((udp, tcp)),
            Err(e) if addr.port() != 0 => return Err(bind_err(e)),
            Err(_) => continue,
        }
    }
    Err(bind_err(std::io::Error::other(
        "no port free for both UDP and TCP",
    )))
}

async fn run(
    tcp_tasks: TaskTracker,
    udp_tasks: TaskTracker,
    encrypted_tasks: Vec<TaskTracker>,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
    signals: bool,
) {
    if signals {
        tokio::spawn(handle_signals(pipeline, shutdown.clone()));
    }
    shutdown.cancelled().await;
    tracing::info!("shutting down: finishing queries in flight");
    tcp_tasks.wait().await;
    for t in encrypted_tasks {
        t.wait().await;
    }
    udp_tasks.wait().await;
}

#[cfg(unix)]
async fn handle_signals(pipeline: Arc<Pipeline>, shutdown: CancellationToken) {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::hangup()),
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers");
        return;
    };
    loop {
        tokio::select! {
            _ = hup.recv() => {
                tracing::info!("SIGHUP: reloading");
                let _ = pipeline.reload().await;
            }
            _ = term.recv() => break,
            _ = int.recv() => break,
            _ = shutdown.cancelled() => return,
        }
    }
    shutdown.cancel();
}

fn watched_paths(c: &crate::config::Config) -> Vec<PathBuf> {
    let mut v = vec![c.path.clone()];
    if c.lists.sources.is_empty() {
        v.push(c.lists.bundle.clone());
    }
    // URL sources' copies are replaced by the refresher, which reloads by itself.
    v.extend(
        c.lists
            .sources
            .iter()
            .filter(|s| s.url.is_none())
            .map(|s| s.path.clone()),
    );
    // The catalogue files of the services the config names: editing one reloads.
    v.extend(c.services.categories().into_iter().map(|(_, file, _)| file));
    v
}

/// Before the first load: every URL source needs a last good copy. Those that have one are
/// used as they are (the server filters from the first packet with no network, and the
/// refresher downloads in the background); those that have none are downloaded now, and
/// one that cannot be is a start-up error naming it: starting without a configured list
/// would let through what it blocks.
async fn prepare_url_sources(config_path: &Path, metrics: &FetchMetrics) -> Result<(), StartError> {
    let path = config_path.to_owned();
    let config = tokio::task::spawn_blocking(move || crate::config::Config::load(&path))
        .await
        .map_err(|e| StartError::Store(format!("start-up task failed: {e}")))?
        .map_err(state::LoadError::from)?;
    let mut failed = Vec::new();
    for (url, status) in fetch::ensure_copies(&config.lists, Some(metrics)).await {
        let line = fetch::describe(&url, &status);
        match status {
            fetch::CopyStatus::Failed(_) => failed.push(line),
            _ => tracing::info!("{line}"),
        }
    }
    if failed.is_empty() {
        Ok(())
    } else {
        Err(StartError::Lists(failed.join("\n")))
    }
}

/// The server side of the list refresher: the lists in force, and the normal reload.
struct RefreshHost(Arc<Pipeline>);

#[async_trait::async_trait]
impl refresh::Host for RefreshHost {
    fn lists(&self) -> crate::config::ListsConfig {
        self.0.state().load().config.lists.clone()
    }

    async fn reload(&self) {
        if let Err(e) = self.0.reload().await {
            tracing::error!(
                "reload after a list download failed (the old lists keep serving): {e}"
            );
        }
    }
}

/// Reload when any watched file changes. Watches the parent folders (editors and
/// `compile --out` replace files by rename, which a watch on the file itself would lose)
/// and debounces bursts of events into one reload.
fn spawn_file_watcher(pipeline: Arc<Pipeline>, paths: Vec<PathBuf>, shutdown: CancellationToken) {
    use notify::{RecursiveMode, Watcher};
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(16);
    let targets: Vec<PathBuf> = paths
        .iter()
        .map(|p| std::fs::canonicalize(p).unwrap_or_else(|_| p.clone()))
        .collect();
    let wanted = targets.clone();
    let handler = move |res: notify::Result<notify::Event>| {
        let Ok(ev) = res else { return };
        if ev.kind.is_access() {
            return;
        }
        if ev
            .paths
            .iter()
            .any(|p| wanted.iter().any(|w| p == w || p.starts_with(w)))
        {
            let _ = tx.try_send(());
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!("file watching unavailable, reload with SIGHUP or the admin API: {e}");
            return;
        }
    };
    // Folders (UT1 lists) are watched whole; for files, their folder but not below it, so
    // busy neighbours (the database's WAL) in sub-folders cost nothing.
    let mut dirs: Vec<(PathBuf, RecursiveMode)> = targets
        .iter()
        .filter_map(|p| match p.is_dir() {
            true => Some((p.clone(), RecursiveMode::Recursive)),
            false => p
                .parent()
                .map(|d| (d.to_path_buf(), RecursiveMode::NonRecursive)),
        })
        .collect();
    dirs.sort_by(|a, b| {
        a.0.cmp(&b.0)
            .then((a.1 == RecursiveMode::NonRecursive).cmp(&(b.1 == RecursiveMode::NonRecursive)))
    });
    dirs.dedup_by(|a, b| a.0 == b.0);
    for (d, mode) in &dirs {
        if let Err(e) = watcher.watch(d, *mode) {
            tracing::warn!("cannot watch {}: {e}", d.display());
        }
    }
    tokio::spawn(async move {
        let _keep_alive = watcher;
        loop {
            tokio::select! {
                got = rx.recv() => if got.is_none() { return },
                _ = shutdown.cancelled() => return,
            }
            // Debounce: wait for the burst of events of one save or rename to finish.
            tokio::time::sleep(Duration::from_millis(300)).await;
            while rx.try_recv().is_ok() {}
            tracing::info!("watched file changed: reloading");
            let _ = pipeline.reload().await;
        }
    });
}

/// Log a compile summary and the first bad lines.
pub fn log_compile_report(r: &crate::lists::compile::CompileReport) {
    tracing::info!("lists compiled:\n{}", r.summary());
    for e in r.errors.iter().take(20) {
        tracing::warn!("{e}");
    }
    if r.errors.len() > 20 {
        tracing::warn!(
            "... and {} more bad lines (run `chaperone check` to see them all)",
            r.errors.len() - 20
        );
    }
}

/// "127.0.0.1:53, [::1]:53" for a log line.
fn list_addrs(addrs: &[SocketAddr]) -> String {
    addrs
        .iter()
        .map(SocketAddr::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
