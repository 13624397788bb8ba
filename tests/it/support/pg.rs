//! A throwaway PostgreSQL for the tests whose names contain `postgres`: `initdb` into a
//! temp dir and `postgres` on 127.0.0.1 (a free port) and a unix socket in that dir, as
//! the `postgres` OS user when the tests run as root (initdb refuses root). fsync is off:
//! nothing here needs to survive a crash.
//!
//! - [`shared`]: one cluster per test process, started on first use; each test takes its
//!   own database from it with [`Cluster::database`] (dropped when the test ends).
//! - [`Cluster::start`]: a cluster of one's own, for tests that stop and restart it.
//! - `CHAPERONE_TEST_PG=postgres://superuser@host:port/db`: use that server instead of
//!   starting one (tests that stop the server still start their own).
//!
//! No postgres process outlives the test binary: each cluster has a watchdog (`sh`, as
//! root) reading a pipe only this process holds; when the pipe closes (cluster dropped,
//! test binary exits or is killed) it stops the postmaster (immediate shutdown, then
//! SIGKILL) and removes the temp dir. A parent-death signal would not do: it is cleared
//! when the child changes uid and fires when the *thread* that spawned it ends, which
//! for the shared cluster is whichever test happened to start it.

use std::io::Write;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// The message when neither PostgreSQL binaries nor `CHAPERONE_TEST_PG` are there.
pub const NEED_POSTGRES: &str = "PostgreSQL tests need PostgreSQL: install Debian's postgresql \
     (.ci/run does) or set CHAPERONE_TEST_PG";

/// How long a cluster may take to accept connections.
const READY: Duration = Duration::from_secs(60);

/// A PostgreSQL server for tests.
pub struct Cluster {
    /// Superuser connection target without a database: host, port and user.
    host: String,
    port: u16,
    user: String,
    password: Option<String>,
    /// Only for a cluster this process started.
    local: Option<Mutex<Local>>,
}

/// What a cluster this process started needs to stop and start again.
struct Local {
    bin: PathBuf,
    /// The temp dir (socket dir); the data directory is `dir/data`.
    dir: PathBuf,
    postmaster: Option<Child>,
    /// Closing it tells the watchdog to clean up.
    watchdog: Option<(Child, ChildStdin)>,
    owner: Option<(u32, u32)>,
}

/// A database of one's own on a [`Cluster`], dropped (with its connections) on drop.
pub struct Database {
    /// `postgres://user@host:port/name`, no password (trust on loopback).
    pub url: String,
    /// The password for `CHAPERONE_TEST_PG` servers that need one.
    pub password: Option<String>,
    /// The database name.
    pub name: String,
    admin: String,
    password_for_drop: Option<String>,
}

impl Database {
    /// The URL.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// `[storage]` for this database, as a Chaperone config takes it.
    pub fn config(&self) -> chaperone::config::storage::PostgresConfig {
        chaperone::config::storage::PostgresConfig {
            url: self.url.clone(),
            password: self.password.clone(),
            tls: chaperone::config::storage::PgTls::Disable,
            ca_file: None,
            connect_timeout: Duration::from_secs(3),
            resync: Duration::from_secs(30),
        }
    }

    /// A superuser connection to this database (to tamper with it, look at catalogs).
    pub fn superuser(&self) -> postgres::Client {
        let mut cfg: postgres::Config = self.url.parse().expect("test database URL");
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        cfg.connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to {}: {e}", self.url))
    }
}

impl Drop for Database {
    fn drop(&mut self) {
        let mut cfg: postgres::Config = match self.admin.parse() {
            Ok(c) => c,
            Err(_) => return,
        };
        if let Some(p) = &self.password_for_drop {
            cfg.password(p);
        }
        cfg.connect_timeout(Duration::from_secs(2));
        if let Ok(mut c) = cfg.connect(postgres::NoTls) {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ));
        }
    }
}

/// The cluster shared by this test process: `CHAPERONE_TEST_PG` if set, else one started
/// here on first use. Panics with [`NEED_POSTGRES`] when there is neither.
pub fn shared() -> &'static Cluster {
    static SHARED: OnceLock<Cluster> = OnceLock::new();
    SHARED.get_or_init(|| match std::env::var("CHAPERONE_TEST_PG") {
        Ok(url) if !url.is_empty() => Cluster::external(&url),
        _ => Cluster::start(),
    })
}

/// A fresh database on the shared cluster.
pub fn database() -> Database {
    shared().database()
}

impl Cluster {
    /// Start a cluster of one's own (panics with [`NEED_POSTGRES`] if there are no
    /// PostgreSQL binaries).
    pub fn start() -> Cluster {
        let bin = bindir().unwrap_or_else(|| panic!("{NEED_POSTGRES}"));
        let tmp = tempfile::Builder::new()
            .prefix("chaperone-pg-")
            .tempdir()
            .expect("temp dir for PostgreSQL");
        // Kept until the watchdog removes it.
        let dir = tmp.keep();
        let owner = run_as();
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(&dir, Some(uid), Some(gid)).expect("chown the temp dir");
        }
        let watchdog = spawn_watchdog(&dir);
        let mut local = Local {
            bin,
            dir,
            postmaster: None,
            watchdog: Some(watchdog),
            owner,
        };
        local.initdb();
        let port = local.launch_on_free_port();
        Cluster {
            host: "127.0.0.1".into(),
            port,
            user: "postgres".into(),
            password: None,
            local: Some(Mutex::new(local)),
        }
    }

    /// A server someone else runs (`CHAPERONE_TEST_PG`).
    fn external(url: &str) -> Cluster {
        let cfg: postgres::Config = url
            .parse()
            .unwrap_or_else(|e| panic!("CHAPERONE_TEST_PG is not a PostgreSQL URL: {e}"));
        let host = match cfg.get_hosts().first() {
            Some(postgres::config::Host::Tcp(h)) => h.clone(),
            Some(postgres::config::Host::Unix(p)) => p.display().to_string(),
            None => "localhost".into(),
        };
        Cluster {
            host,
            port: cfg.get_ports().first().copied().unwrap_or(5432),
            user: cfg.get_user().unwrap_or("postgres").to_owned(),
            password: cfg
                .get_password()
                .map(|p| String::from_utf8_lossy(p).into_owned()),
            local: None,
        }
    }

    /// The port it listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A superuser URL for database `db`.
    pub fn url(&self, db: &str) -> String {
        if self.host.starts_with('/') {
            format!(
                "postgres://{}@/{db}?host={}&port={}",
                self.user, self.host, self.port
            )
        } else {
            format!("postgres://{}@{}:{}/{db}", self.user, self.host, self.port)
        }
    }

    /// A superuser connection to the `postgres` database.
    pub fn admin(&self) -> postgres::Client {
        let mut cfg: postgres::Config = self.url("postgres").parse().expect("admin URL");
        if let Some(p) = &self.password {
            cfg.password(p);
        }
        cfg.connect(postgres::NoTls)
            .unwrap_or_else(|e| panic!("connect to the test PostgreSQL: {e}"))
    }

    /// CREATE a fresh database (random name); dropped with the returned guard.
    pub fn database(&self) -> Database {
        let name = format!("chaperone_test_{:016x}", rand::random::<u64>());
        self.admin()
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .unwrap_or_else(|e| panic!("CREATE DATABASE {name}: {e}"));
        Database {
            url: self.url(&name),
            password: self.password.clone(),
            name,
            admin: self.url("postgres"),
            password_for_drop: self.password.clone(),
        }
    }

    /// Stop the server (fast shutdown), keeping its data for [`Cluster::start_again`].
    pub fn stop(&self) {
        let local = self
            .local
            .as_ref()
            .expect("only a cluster started here stops");
        local.lock().unwrap().stop();
    }

    /// Start it again after [`Cluster::stop`], on the same port (retried while the port
    /// is briefly still taken).
    pub fn start_again(&self) {
        let local = self
            .local
            .as_ref()
            .expect("only a cluster started here restarts");
        let mut l = local.lock().unwrap();
        let deadline = Instant::now() + READY;
        loop {
            match l.launch(self.port) {
                Ok(()) => return,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("PostgreSQL restart on {}: {e}; retrying", self.port);
                    std::thread::sleep(Duration::from_millis(200));
                }
                Err(e) => panic!("PostgreSQL did not start again on {}: {e}", self.port),
            }
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        if let Some(local) = &self.local {
            let mut l = local.lock().unwrap_or_else(|p| p.into_inner());
            l.stop();
            // Closing the pipe: the watchdog removes the temp dir and exits.
            if let Some((mut child, stdin)) = l.watchdog.take() {
                drop(stdin);
                let _ = child.wait();
            }
        }
    }
}

impl Local {
    fn command(&self, program: &str) -> Command {
        let mut cmd = Command::new(self.bin.join(program));
        if let Some((uid, gid)) = self.owner {
            cmd.uid(uid).gid(gid);
            cmd.env("HOME", &self.dir);
        }
        cmd.current_dir(&self.dir);
        cmd
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn initdb(&self) {
        let out = self
            .command("initdb")
            .arg("-D")
            .arg(self.data())
            .args(["-U", "postgres", "--auth=trust", "-E", "UTF8", "--locale=C"])
            .arg("--no-sync")
            .output()
            .expect("run initdb");
        assert!(
            out.status.success(),
            "initdb failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
    }

    /// Start on a free port, retrying on a fresh one if it was taken meanwhile.
    fn launch_on_free_port(&mut self) -> u16 {
        let mut last = String::new();
        for _ in 0..5 {
            let port = TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .expect("a free port")
                .port();
            match self.launch(port) {
                Ok(()) => return port,
                Err(e) => last = e,
            }
        }
        panic!("PostgreSQL did not start: {last}");
    }

    /// Start the postmaster on `port` and wait until it accepts connections.
    fn launch(&mut self, port: u16) -> Result<(), String> {
        let log =
            std::fs::File::create(self.dir.join("postgres.log")).map_err(|e| e.to_string())?;
        let mut child = self
            .command("postgres")
            .arg("-D")
            .arg(self.data())
            .args(["-c", "listen_addresses=127.0.0.1"])
            .args(["-c", &format!("port={port}")])
            .arg("-c")
            .arg(format!("unix_socket_directories={}", self.dir.display()))
            .args(["-c", "fsync=off", "-c", "synchronous_commit=off"])
            .args(["-c", "full_page_writes=off", "-c", "max_connections=300"])
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("spawn postgres: {e}"))?;
        let deadline = Instant::now() + READY;
        let url = format!("postgres://postgres@127.0.0.1:{port}/postgres");
        loop {
            if let Ok(Some(status)) = child.try_wait() {
                let log =
                    std::fs::read_to_string(self.dir.join("postgres.log")).unwrap_or_default();
                return Err(format!("postgres exited ({status}): {log}"));
            }
            let mut cfg: postgres::Config = url.parse().map_err(|e| format!("{e}"))?;
            cfg.connect_timeout(Duration::from_secs(1));
            if cfg.connect(postgres::NoTls).is_ok() {
                self.postmaster = Some(child);
                return Ok(());
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(format!(
                    "not accepting connections on {port} after {READY:?}"
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fast shutdown (SIGINT), then SIGKILL if it lingers.
    fn stop(&mut self) {
        let Some(mut child) = self.postmaster.take() else {
            return;
        };
        let pid = child.id() as libc::pid_t;
        // SAFETY: signalling a child of ours that has not been reaped yet.
        unsafe { libc::kill(pid, libc::SIGINT) };
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }
}

/// The directory holding `initdb` and `postgres`: `pg_config --bindir`, else the newest
/// `/usr/lib/postgresql/*/bin` (Debian keeps them off PATH).
pub fn bindir() -> Option<PathBuf> {
    let has = |d: &Path| d.join("initdb").is_file() && d.join("postgres").is_file();
    if let Ok(out) = Command::new("pg_config").arg("--bindir").output()
        && out.status.success()
    {
        let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
        if has(&d) {
            return Some(d);
        }
    }
    let mut found: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .ok()?
        .flatten()
        .filter_map(|e| {
            let v: u32 = e.file_name().to_str()?.parse().ok()?;
            let d = e.path().join("bin");
            has(&d).then_some((v, d))
        })
        .collect();
    found.sort();
    found.pop().map(|(_, d)| d)
}

/// The `postgres` user's uid and gid when running as root (PostgreSQL refuses root).
fn run_as() -> Option<(u32, u32)> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return None;
    }
    let id = |flag: &str| -> u32 {
        let out = Command::new("id")
            .args([flag, "postgres"])
            .output()
            .expect("run id");
        assert!(
            out.status.success(),
            "running as root, PostgreSQL needs the postgres OS user (Debian's postgresql creates it)"
        );
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .expect("numeric id")
    };
    Some((id("-u"), id("-g")))
}

/// A watchdog for the cluster in `dir`: when its stdin closes (this process let go of
/// it or died), it stops whatever postmaster `dir/data/postmaster.pid` names and removes
/// `dir`.
fn spawn_watchdog(dir: &Path) -> (Child, ChildStdin) {
    const SCRIPT: &str = r#"
cat >/dev/null
pid=$(head -n 1 "$1/data/postmaster.pid" 2>/dev/null)
if [ -n "$pid" ]; then
  kill -QUIT "$pid" 2>/dev/null
  i=0
  while kill -0 "$pid" 2>/dev/null && [ $i -lt 50 ]; do sleep 0.1; i=$((i+1)); done
  kill -KILL "$pid" 2>/dev/null
fi
rm -rf "$1"
"#;
    let mut child = Command::new("sh")
        .args(["-c", SCRIPT, "chaperone-pg-watchdog"])
        .arg(dir)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: a ^C to the tests still closes the pipe, and the
        // watchdog outlives us long enough to clean up.
        .process_group(0)
        .spawn()
        .expect("spawn the PostgreSQL watchdog");
    let mut stdin = child.stdin.take().expect("watchdog stdin");
    let _ = stdin.flush();
    (child, stdin)
}
