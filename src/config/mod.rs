//! Configuration: one TOML file, read into [`raw`] structs, then checked and resolved into
//! [`Config`].
//!
//! Loading never half-succeeds: every problem found is reported together, each naming the
//! key path (`group.pupils.schedule[1].days`), and nothing is returned unless all is well.
//! Paths in the file are relative to the file's own folder so a config can be moved with its
//! lists. Category names are checked later, against the compiled bundle, in `policy`.

pub mod alerts;
pub mod console;
pub mod encrypted;
pub mod enrolled;
mod enrolment;
mod inspect;
mod radius;
pub mod raw;
pub mod report;
mod resolve;
pub mod school;
pub mod selftest;
mod services;
pub mod storage;
pub mod urlsource;
mod zones;
pub use alerts::{AlertsConfig, EmailConfig, StartTls};
pub use inspect::InspectConfig;

use std::collections::BTreeMap;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use ipnet::IpNet;

use crate::lists::parse::{Format, MatchKind};
pub use enrolment::{EnrolmentConfig, RawEnrolment};
pub use radius::{DEFAULT_SESSION_TTL, MAX_SECRET, RadiusClient, RadiusConfig, UsersConfig};
pub use raw::{BlockAnswerKind, QueryLogFormat, UpstreamMode, Verdict, YoutubeMode};
pub use resolve::{default_root_hints, parse_cidr, parse_mac, parse_upstream};
pub use zones::{
    LOCAL_TYPES, LocalConfig, LocalRecord, RebindingConfig, ZoneConfig, parse_record, zone_name,
};

/// A checked configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The file it came from.
    pub path: PathBuf,
    /// `[server]`
    pub server: ServerConfig,
    /// `[upstream]`
    pub upstream: UpstreamConfig,
    /// `[cache]`
    pub cache: CacheConfig,
    /// `[lists]`
    pub lists: ListsConfig,
    /// `[category.NAME]` settings; categories not named here are `unacceptable`.
    pub categories: BTreeMap<String, CategoryConfig>,
    /// `[block_page]`
    pub block_page: Option<BlockPageConfig>,
    /// `[[report.term]]`: named periods for `chaperone report --term`.
    pub report_terms: Vec<report::ReportTerm>,
    /// `[[network]]`
    pub networks: Vec<NetworkConfig>,
    /// `[group.NAME]`
    pub groups: BTreeMap<String, GroupConfig>,
    /// `[[device]]`
    pub devices: Vec<DeviceConfig>,
    /// `[admin]`
    pub admin: Option<AdminConfig>,
    /// The SQLite storage database file (unused with PostgreSQL, except as the place the
    /// audit key and head default to).
    pub storage_path: PathBuf,
    /// PostgreSQL instead of SQLite (`[storage] url`).
    pub postgres: Option<storage::PostgresConfig>,
    /// `[querylog]`
    pub querylog: QueryLogConfig,
    /// `[alerts]`
    pub alerts: Option<AlertsConfig>,
    /// `[identify]`
    pub identify: IdentifyConfig,
    /// `[http]`
    pub http: HttpConfig,
    /// `[audit]`
    pub audit: AuditConfig,
    /// `[ratelimit]`
    pub ratelimit: RateLimitConfig,
    /// `[[zone]]`: conditionally forwarded zones.
    pub zones: Vec<ZoneConfig>,
    /// `[local]`
    pub local: LocalConfig,
    /// `[rebinding]`
    pub rebinding: RebindingConfig,
    /// `[inspect]`
    pub inspect: InspectConfig,
    /// `[enrolment]`: how enrolled devices reach the public DoT/DoH service.
    pub enrolment: EnrolmentConfig,
    /// `[tls]`, `[dot]`, `[doh]`: the encrypted listeners.
    pub encrypted: encrypted::EncryptedConfig,
    /// `[[enrolled_device]]`: devices enrolled in the config file.
    pub enrolled_devices: Vec<crate::identity::EnrolledDevice>,
    /// `[radius]`: the accounting listener, if configured.
    pub radius: Option<RadiusConfig>,
    /// `[users]`: user → group rules and the CSV export.
    pub users: UsersConfig,
    /// `[services]`: the service catalogue and the services the policy names.
    pub services: crate::services::ServicesConfig,
    /// `[[school]]` and `[trust]`: the schools of a trust and its baseline.
    pub schools: school::Schools,
    /// `[alerts.themes]` and `[alerts] incident_window_mins`: which blocked categories make
    /// incidents (built-in defaults apply without an `[alerts]` section).
    pub themes: std::sync::Arc<crate::alerts::themes::Themes>,
    /// `[selftest]`: where `chaperone selftest` sends its test queries from.
    pub selftest: selftest::SelftestConfig,
    /// `[console]` and `[[console.user]]`: the web console's sessions and accounts.
    pub console: console::ConsoleConfig,
}

/// `[ratelimit]`, resolved. Rates of 0 turn that limit off.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RateLimitConfig {
    /// Limiting on.
    pub enabled: bool,
    /// Steady queries per second per client prefix.
    pub queries_per_second: u32,
    /// Bucket size for queries.
    pub burst: u32,
    /// Steady REFUSED answers per second per prefix.
    pub refused_per_second: u32,
    /// Bucket size for REFUSED answers.
    pub refused_burst: u32,
    /// Every Nth limited REFUSED answer is sent truncated (0: none).
    pub slip: u32,
    /// IPv4 aggregation prefix length.
    pub ipv4_prefix: u8,
    /// IPv6 aggregation prefix length.
    pub ipv6_prefix: u8,
    /// Networks never limited.
    pub exempt: Vec<IpNet>,
}

/// `[audit]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditConfig {
    /// The HMAC key file.
    pub key_file: PathBuf,
    /// The published head file.
    pub head_file: PathBuf,
}

/// `[http]`, resolved: limits of each HTTP listener (block page, admin API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HttpConfig {
    /// Time to send a complete request head (and keep-alive idle time).
    pub header_timeout: Duration,
    /// Time to read the body and answer.
    pub request_timeout: Duration,
    /// Open connections per listener.
    pub max_connections: usize,
    /// Open connections per client address per listener.
    pub max_connections_per_client: usize,
    /// Largest request body, bytes.
    pub max_body_bytes: usize,
    /// Anonymous submissions per client address per hour.
    pub submissions_per_hour: u32,
}

/// `[identify]`, resolved.
#[derive(Debug, Clone)]
pub struct IdentifyConfig {
    /// Relays whose EDNS0 MAC option is believed.
    pub edns_mac_from: Vec<IpNet>,
    /// DHCP lease files naming devices.
    pub leases: Vec<crate::leases::LeaseFileConfig>,
    /// Re-read interval of the lease files, as a safety net under the watcher.
    pub leases_poll: Duration,
}

/// Default of `identify.leases_poll_secs`.
pub const DEFAULT_LEASES_POLL: Duration = Duration::from_secs(60);

impl Default for IdentifyConfig {
    fn default() -> Self {
        Self {
            edns_mac_from: Vec::new(),
            leases: Vec::new(),
            leases_poll: DEFAULT_LEASES_POLL,
        }
    }
}

impl IdentifyConfig {
    /// Is `ip` a relay trusted to say which MAC a query came from?
    pub fn trusts_mac_from(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.edns_mac_from.iter().any(|n| n.contains(&ip))
    }
}

/// Most policy groups: group sets are bit masks of a `u128`.
pub const MAX_GROUPS: usize = 128;
/// Most `[[network]]` entries or `[[device]]` entries: each is indexed by a `u16`.
pub const MAX_INDEXED: usize = u16::MAX as usize;

/// `[querylog]`, resolved.
#[derive(Debug, Clone)]
pub struct QueryLogConfig {
    /// Logging on.
    pub enabled: bool,
    /// Destination.
    pub format: QueryLogFormat,
    /// JSON lines file; None = standard output.
    pub jsonl_path: Option<PathBuf>,
    /// Retention.
    pub retention_days: u32,
    /// Groups logged pseudonymously.
    pub pseudonymise: Vec<String>,
    /// Queue length.
    pub queue: usize,
    /// SQLite: most query records kept.
    pub max_rows: u64,
    /// JSON lines file: most bytes across the file and its rotated copies.
    pub max_bytes: u64,
    /// JSON lines file: most files, the current one included.
    pub max_files: u32,
}

/// `[server]`, resolved.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// DNS listen addresses (UDP and TCP each).
    pub listen: Vec<SocketAddr>,
    /// The school's time zone, for schedules.
    pub timezone: jiff::tz::TimeZone,
    /// Idle TCP connection timeout.
    pub tcp_idle_timeout: Duration,
    /// Upstream resolutions in flight at once.
    pub max_inflight: usize,
    /// Worker threads (None: one per core).
    pub threads: Option<usize>,
    /// TCP DNS connections open at once, in total.
    pub tcp_max_connections: usize,
    /// TCP DNS connections open at once from one client.
    pub tcp_max_connections_per_client: usize,
    /// Upstream resolutions in flight at once for one client.
    pub max_inflight_per_client: usize,
    /// EDNS UDP payload size advertised, and the ceiling on every UDP answer.
    pub edns_buffer_size: u16,
}

/// `[upstream]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamConfig {
    /// Forward or recursive.
    pub mode: UpstreamMode,
    /// Forwarding targets.
    pub servers: Vec<UpstreamServer>,
    /// Per-attempt timeout.
    pub timeout: Duration,
    /// Attempts before SERVFAIL.
    pub attempts: usize,
    /// Root hints for recursion.
    pub root_hints: Vec<IpAddr>,
    /// DNSSEC validation in recursive mode.
    pub dnssec: bool,
}

/// One forwarding target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UpstreamServer {
    /// Address and port.
    pub addr: SocketAddr,
    /// Transport.
    pub transport: Transport,
}

/// How a forwarding target is spoken to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Transport {
    /// UDP, retried over TCP when truncated.
    Udp,
    /// TCP only.
    Tcp,
    /// DNS over TLS, verifying this server name.
    Tls {
        /// Name on the server's certificate.
        server_name: String,
    },
    /// DNS over HTTPS, verifying this server name, at this path.
    Https {
        /// Name on the server's certificate.
        server_name: String,
        /// URL path, usually `/dns-query`.
        path: String,
    },
}

/// `[cache]`, resolved.
#[derive(Debug, Clone)]
pub struct CacheConfig {
    /// Most entries kept.
    pub max_entries: usize,
    /// TTL floor, seconds.
    pub min_ttl: u32,
    /// TTL ceiling, seconds.
    pub max_ttl: u32,
    /// Negative TTL ceiling, seconds.
    pub max_negative_ttl: u32,
    /// Serve stale answers when the upstream fails.
    pub serve_stale: bool,
    /// How long past expiry a stale answer is still served, seconds.
    pub max_stale_secs: u32,
    /// Bound the cache by memory (MiB) instead of by entries.
    pub max_memory_mb: Option<u64>,
    /// Refresh a popular answer in the background before it expires.
    pub prefetch: bool,
    /// Answer names below a cached NXDOMAIN with NXDOMAIN (RFC 8020).
    pub nxdomain_cut: bool,
}

/// `[lists]`, resolved.
#[derive(Debug, Clone)]
pub struct ListsConfig {
    /// The bundle file (absolute or relative to the working directory after resolution).
    pub bundle: PathBuf,
    /// Sources compiled into it; empty means the bundle is prebuilt.
    pub sources: Vec<SourceConfig>,
    /// Largest fraction of a list's entries a reload may lose without being forced.
    pub max_shrink: f64,
    /// Where last good copies of URL sources are kept.
    pub cache_dir: PathBuf,
    /// Largest fraction of rejected lines a downloaded list may have.
    pub max_bad_fraction: f64,
}

/// One `[[lists.source]]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceConfig {
    /// Category for its entries (None for ut1 folders).
    pub category: Option<String>,
    /// File or folder.
    pub path: PathBuf,
    /// Format.
    pub format: Format,
    /// Kind of plain entries.
    pub default_kind: MatchKind,
    /// ut1: only these categories.
    pub only: Vec<String>,
    /// Set when the list is downloaded: `path` is then its last good copy.
    pub url: Option<UrlSource>,
}

/// How a `[[lists.source]]` with a `url` is downloaded (see `lists::fetch`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UrlSource {
    /// The URL (`https://`, or `http://` when allowed).
    pub url: String,
    /// The `source` label of its metrics.
    pub name: String,
    /// The config key, e.g. `lists.source[2]`, for messages.
    pub key: String,
    /// Interval between downloads (before jitter).
    pub refresh: std::time::Duration,
    /// Pinned SHA-256 of the downloaded bytes.
    pub sha256: Option<[u8; 32]>,
    /// Most bytes accepted, downloaded and decompressed.
    pub max_bytes: u64,
    /// Connect timeout.
    pub connect_timeout: std::time::Duration,
    /// Timeout of the whole download.
    pub timeout: std::time::Duration,
}

/// `[category.NAME]`, resolved.
#[derive(Debug, Clone, Default)]
pub struct CategoryConfig {
    /// Policy rating.
    pub verdict: Verdict,
    /// Human description.
    pub description: String,
}

/// `[block_page]`, resolved.
#[derive(Debug, Clone)]
pub struct BlockPageConfig {
    /// Address for blocked A queries.
    pub ipv4: Option<Ipv4Addr>,
    /// Address for blocked AAAA queries.
    pub ipv6: Option<Ipv6Addr>,
    /// TTL of block answers.
    pub ttl: u32,
    /// Block page web server listener.
    pub listen: Option<SocketAddr>,
    /// The school's name shown on the page (empty: none).
    pub school_name: String,
    /// Who to ask, shown on the page (empty: "ask your teacher").
    pub contact: String,
    /// The school's own words on the page (empty: none).
    pub text: String,
}

/// `[[network]]`, resolved.
#[derive(Debug, Clone)]
pub struct NetworkConfig {
    /// Label.
    pub name: String,
    /// Client prefixes.
    pub cidrs: Vec<IpNet>,
    /// Group name (checked to exist).
    pub group: String,
}

/// `[group.NAME]`, resolved (category names still unchecked against lists).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    /// Always-blocked categories.
    pub block: Vec<String>,
    /// Always-allowed names (normalised).
    pub allow: Vec<String>,
    /// Allow-only group.
    pub allow_only: bool,
    /// Categories approved for allow-only.
    pub approved: Vec<String>,
    /// Block answer.
    pub block_answer: BlockAnswerKind,
    /// SafeSearch settings.
    pub safe_search: SafeSearchConfig,
    /// Bypass prevention on.
    pub bypass_prevention: bool,
    /// Schedules.
    pub schedules: Vec<ScheduleConfig>,
}

/// Which SafeSearch rewrites a group gets.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SafeSearchConfig {
    /// Google.
    pub google: bool,
    /// Bing.
    pub bing: bool,
    /// DuckDuckGo.
    pub duckduckgo: bool,
    /// YouTube mode.
    pub youtube: YoutubeMode,
    /// Pixabay.
    pub pixabay: bool,
    /// Brave Search.
    pub brave: bool,
}

/// One schedule window, resolved.
#[derive(Debug, Clone)]
pub struct ScheduleConfig {
    /// Label.
    pub name: String,
    /// Bit i set = opens on weekday i (0 = Monday).
    pub days: u8,
    /// Minutes after local midnight the window opens.
    pub from_min: u16,
    /// Minutes after local midnight it closes (may be < from: past midnight).
    pub to_min: u16,
    /// Categories allowed while open.
    pub allow: Vec<String>,
    /// Categories blocked while open.
    pub block: Vec<String>,
}

/// `[[device]]`, resolved.
#[derive(Debug, Clone)]
pub struct DeviceConfig {
    /// Label.
    pub name: String,
    /// Client prefixes.
    pub clients: Vec<IpNet>,
    /// MAC addresses.
    pub macs: Vec<[u8; 6]>,
    /// Categories allowed.
    pub allow: Vec<String>,
    /// Groups it applies in (empty = all).
    pub groups: Vec<String>,
}

/// `[admin]`, resolved.
#[derive(Debug, Clone)]
pub struct AdminConfig {
    /// Listener.
    pub listen: SocketAddr,
    /// Tokens.
    pub tokens: Vec<TokenConfig>,
    /// Longest temporary unblock.
    pub max_exception: Duration,
}

/// An admin role.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Role {
    /// Read only.
    Viewer,
    /// Lists, reloads, exceptions.
    Technician,
    /// Designated safeguarding lead: everything a technician can, plus incidents.
    Dsl,
}

/// One admin token.
#[derive(Debug, Clone)]
pub struct TokenConfig {
    /// Holder.
    pub name: String,
    /// Role.
    pub role: Role,
    /// SHA-256 of the token.
    pub sha256: [u8; 32],
    /// The `[[school]]` it is scoped to (None: trust-wide).
    pub school: Option<String>,
}

/// One configuration problem, naming the key it is about.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// TOML key path, e.g. `group.pupils.schedule[1].days`.
    pub key: String,
    /// What is wrong.
    pub message: String,
}

impl Problem {
    /// A problem at `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The file is not valid TOML or has unknown/mistyped keys.
    #[error("{}: {message}", path.display())]
    Parse {
        /// The file.
        path: PathBuf,
        /// toml's message, with line, column and key.
        message: String,
    },
    /// The file parsed but its values are wrong.
    #[error("{}: invalid configuration:\n{}", path.display(), list(problems))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found.
        problems: Vec<Problem>,
    },
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl Config {
    /// Read, parse and check a config file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_str(path, &text)
    }

    /// Parse and check config text that came from `path` (used for relative paths and
    /// messages).
    pub fn from_str(path: &Path, text: &str) -> Result<Config, ConfigError> {
        let raw: raw::RawConfig = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        resolve::resolve(raw, path, base).map_err(|problems| ConfigError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }

    /// The verdict of a category (unacceptable unless configured).
    pub fn verdict(&self, category: &str) -> Verdict {
        self.categories
            .get(category)
            .map(|c| c.verdict)
            .unwrap_or_default()
    }
}
