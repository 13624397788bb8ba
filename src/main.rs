//! The `chaperone` command: serve, check, explain, compile, export, hash-token.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};

use chaperone::config::parse_mac;
use chaperone::identity::Credential;
use chaperone::lists::bundle;
use chaperone::lists::compile;
use chaperone::lists::fetch;
use chaperone::lists::key::{ReversedName, normalize_domain};
use chaperone::server::{self, StartOptions};
use chaperone::state;

/// mimalloc rather than glibc malloc: query-log records are built on the DNS worker threads
/// and freed on the writer thread, and mimalloc frees across threads without taking a lock
/// (the log's cost on the DNS path, issue 17; measured with benches/querylog-real.sh).
#[global_allocator]
static ALLOC: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A DNS filtering resolver for schools.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Answer DNS on the configured addresses until SIGTERM.
    Serve {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config and its lists; exit 1 on any problem.
    Check {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Show how a query from a client would be decided, and why.
    Explain {
        /// Config file.
        #[arg(long, short)]
        config: PathBuf,
        /// Client address.
        #[arg(long)]
        client: IpAddr,
        /// Client MAC (as a relay would send in the EDNS0 MAC option).
        #[arg(long)]
        mac: Option<String>,
        /// Decide at this time instead of now: RFC 3339 (2026-11-23T12:30:00Z), school
        /// time ("2026-12-01 12:30", 2026-12-01T12:30), "mon 12:30" (the next Monday at
        /// 12:30 school time, today if still to come) or 12:30 (today).
        #[arg(long)]
        at: Option<String>,
        /// Explain as the device enrolled with this ID asking over DoT/DoH (from any
        /// address: its group applies on and off site).
        #[arg(long)]
        device: Option<String>,
        /// Explain as this user signed in on the address (as RADIUS accounting would say):
        /// the group the `[users]` rules give them.
        #[arg(long)]
        user: Option<String>,
        /// For an allowed name, ask the configured upstream (or its [[zone]]) and inspect
        /// the answer as the server does: a CNAME target or an address that is blocked.
        #[arg(long)]
        resolve: bool,
        /// The record type to resolve with --resolve.
        #[arg(long = "type", default_value = "A")]
        qtype: String,
        /// The name queried.
        name: String,
    },
    /// Compile lists into a bundle: from the config's [lists] sources, or from arguments
    /// CATEGORY=PATH, CATEGORY=FORMAT:PATH or ut1:FOLDER.
    Compile {
        /// Output bundle file (written atomically).
        #[arg(long, short)]
        out: Option<PathBuf>,
        /// Take sources from this config's [lists] section.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// Lists to compile.
        lists: Vec<String>,
    },
    /// Print firewall rules dropping traffic to a category's IP entries on ports 53, 443
    /// and 853 (tcp and udp), for the school's gateway: what DNS filtering cannot stop
    /// (DoH or DoT to a hard-coded resolver address).
    Export {
        /// Config file (its lists are compiled, or its bundle opened).
        #[arg(long, short)]
        config: PathBuf,
        /// Firewall dialect: an nft script, or an ipset + iptables shell script.
        #[arg(long, value_enum)]
        firewall: chaperone::lists::export::Firewall,
        /// Reject (TCP reset, ICMP administratively prohibited) instead of dropping.
        #[arg(long)]
        reject: bool,
        /// The category (e.g. doh).
        category: String,
    },
    /// List the app/service catalogue (service:NAME in configs), or show one service with
    /// its domains and source.
    Services {
        /// One service to show in full.
        name: Option<String>,
        /// The catalogue of this config's [services] dir.
        #[arg(long, short)]
        config: Option<PathBuf>,
        /// The catalogue folder (default: /usr/share/chaperone/services).
        #[arg(long, conflicts_with = "config")]
        dir: Option<PathBuf>,
        /// Only services in this group (social, games, ai, ...).
        #[arg(long)]
        group: Option<String>,
        /// JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print the argon2id hash of a console password (read from stdin, or asked for on a
    /// terminal without echo), for [[console.user]] password_hash; with --totp, a new TOTP
    /// secret for totp_secret and its otpauth:// URL for an authenticator app.
    Passwd {
        /// Make a TOTP secret instead of hashing a password.
        #[arg(long)]
        totp: bool,
        /// The account name shown in the authenticator app (with --totp).
        #[arg(long, default_value = "console")]
        name: String,
    },
    /// Print the SHA-256 of an admin token, for [[admin.token]] sha256.
    HashToken {
        /// The token.
        token: String,
    },
    /// Filtering report from the query log: a governors' summary (no personal data), or
    /// with --detail blocked attempts per device for the safeguarding lead.
    Report {
        /// Config file (for the storage database).
        #[arg(long, short)]
        config: PathBuf,
        /// Period: 30d, 12h, 2w or an RFC 3339 start time.
        #[arg(long, default_value = "30d")]
        since: String,
        /// Output format.
        #[arg(long, value_enum, default_value = "text")]
        format: chaperone::report::Format,
        /// Per-device detail for the safeguarding lead (contains personal data).
        #[arg(long)]
        detail: bool,
        /// Only this [[school]] (its id): its groups' queries, incidents and unblocks.
        /// Default: the whole trust.
        #[arg(long)]
        school: Option<String>,
        /// Start of the period, school time: a date (2026-09-01) or a time
        /// (2026-09-01T08:00, RFC 3339). Overrides --since.
        #[arg(long)]
        from: Option<String>,
        /// End of the period, school time: a date (included: 2026-12-18 means up to the
        /// end of that day) or a time. Default: now.
        #[arg(long)]
        to: Option<String>,
        /// A named term from [[report.term]] (e.g. "Autumn 2026") instead of --from/--to.
        #[arg(long, conflicts_with_all = ["from", "to"])]
        term: Option<String>,
    },
    /// Audit log tools.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// Send test queries to a running server from each test source ([[selftest.source]])
    /// and check every answer against the config's policy: a name from each blocked
    /// category's list, the SafeSearch engines, the DoH canary, an allowed name. Prints a
    /// table, records the result in the checks log, exits 1 on any mismatch.
    Selftest {
        /// Config file (the policy expected, the store the result is recorded in).
        #[arg(long, short)]
        config: PathBuf,
        /// The server's DNS address (default: the first [server] listen address).
        #[arg(long)]
        server: Option<SocketAddr>,
    },
    /// Talk to a running Chaperone's admin API (token from --token or CHAPERONE_TOKEN).
    Admin {
        /// Admin API base URL.
        #[arg(long, default_value = "http://127.0.0.1:8053", env = "CHAPERONE_ADMIN")]
        url: String,
        /// Bearer token.
        #[arg(long, env = "CHAPERONE_TOKEN", hide_env_values = true)]
        token: Option<String>,
        /// Print the API's JSON (for scripts) instead of tables.
        #[arg(long)]
        json: bool,
        /// Config whose server.timezone times are shown in (else the system's zone).
        #[arg(long, short, default_value = "/etc/chaperone/chaperone.toml")]
        config: PathBuf,
        #[command(subcommand)]
        command: chaperone::cli_admin::AdminCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the audit log's keyed hash chain against its key and published head; exit 1
    /// if any record was edited, forged or deleted (newest records included).
    Verify {
        /// Config file (for the storage database and `[audit]` key and head files).
        #[arg(long, short)]
        config: PathBuf,
        /// The record count known from elsewhere (a log line, `chaperone_audit_records`).
        #[arg(long)]
        expect_count: Option<u64>,
        /// The head hash known from elsewhere (the "audit log appended" log line).
        #[arg(long)]
        expect_head: Option<String>,
    },
    /// Print the audit log.
    List {
        /// Config file (for the storage database).
        #[arg(long, short)]
        config: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    init_logging();
    let result = match cli.command {
        Command::Serve { config } => serve(&config),
        Command::Check { config } => check(&config),
        Command::Selftest { config, server } => selftest(&config, server),
        Command::Explain {
            config,
            client,
            mac,
            at,
            device,
            user,
            resolve,
            qtype,
            name,
        } => explain(&ExplainArgs {
            config: &config,
            ip: client,
            mac: mac.as_deref(),
            at: at.as_deref(),
            device: device.as_deref(),
            user: user.as_deref(),
            resolve: resolve.then_some(qtype.as_str()),
            name: &name,
        }),
        Command::Compile { out, config, lists } => compile_cmd(out, config, &lists),
        Command::Export {
            config,
            firewall,
            reject,
            category,
        } => export_cmd(&config, firewall, reject, &category),
        Command::Services {
            name,
            config,
            dir,
            group,
            json,
        } => services_cmd(
            config,
            dir,
            chaperone::services::show::Query { name, group, json },
        ),
        Command::Passwd { totp, name } => passwd_cmd(totp, &name),
        Command::HashToken { token } => {
            println!(
                "{}",
                hex::encode(chaperone::admin::auth::hash_token(&token))
            );
            Ok(true)
        }
        Command::Report {
            config,
            since,
            format,
            detail,
            school,
            from,
            to,
            term,
        } => report(
            &config,
            &ReportPeriod {
                since,
                from,
                to,
                term,
            },
            format,
            detail,
            school.as_deref(),
        ),
        Command::Audit { command } => audit(command),
        Command::Admin {
            url,
            token,
            json,
            config,
            command,
        } => admin(&url, token.as_deref(), command, json, &config),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs go to stderr. hickory logs every query with the client address at INFO, and the
/// recursor warns on every ordinary NXDOMAIN: both are held back so pupils' lookups do not
/// end up in system logs (the query log, with its retention, is the place for them).
fn init_logging() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| {
        tracing_subscriber::EnvFilter::new(
            "info,hickory_server=warn,hickory_proto=warn,hickory_net=warn,hickory_resolver=warn,hickory_resolver::recursor=error",
        )
    });
    // Colour only on a terminal: journald and log files get plain text (and NO_COLOR,
    // https://no-color.org, turns it off everywhere).
    use std::io::IsTerminal;
    let colour = std::io::stderr().is_terminal()
        && std::env::var_os("NO_COLOR").is_none_or(|v| v.is_empty());
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(colour)
        .init();
}

fn serve(config: &Path) -> Result<bool> {
    // Before anything opens a descriptor: the connection caps, not the systemd default
    // of 1,024 open files, must decide how many clients are served.
    #[cfg(unix)]
    match chaperone::transport::raise_open_files_limit() {
        Ok(n) => tracing::info!("open files limit: {n}"),
        Err(e) => tracing::warn!("cannot raise the open files limit: {e}"),
    }
    let rt = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(async {
        let running = server::start(config, StartOptions::default()).await?;
        running.wait().await;
        Ok(true)
    })
}

/// `check`, `compile` and `explain` with URL sources: use each source's last good copy as
/// it is (saying so, and how old it is), and download only the sources that have none yet.
/// They never replace a copy the server is using; the server's refresher does that.
fn prepare_url_sources(config: &Path) -> Result<bool> {
    match chaperone::config::Config::load(config) {
        Ok(cfg) => ensure_url_copies(&cfg),
        // The load that follows reports the config's problems.
        Err(_) => Ok(true),
    }
}

/// Download every URL source that has no last good copy yet (never replacing one), saying
/// how old each copy is. False if one has no copy to use.
fn ensure_url_copies(cfg: &chaperone::config::Config) -> Result<bool> {
    if cfg.lists.sources.iter().all(|s| s.url.is_none()) {
        return Ok(true);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let mut ok = true;
    for (url, status) in rt.block_on(fetch::ensure_copies(&cfg.lists, None)) {
        ok &= !matches!(status, fetch::CopyStatus::Failed(_));
        eprintln!("{}", fetch::describe(&url, &status));
    }
    Ok(ok)
}

fn check(config: &Path) -> Result<bool> {
    if !prepare_url_sources(config)? {
        return Ok(false);
    }
    match state::load(config, Vec::new()) {
        Ok(loaded) => {
            if let Some(r) = &loaded.report {
                print!("{}", r.summary());
                for e in &r.errors {
                    println!("{e}");
                }
                if !r.errors.is_empty() {
                    println!("{}: {} bad list lines", config.display(), r.errors.len());
                    return Ok(false);
                }
            }
            let b = loaded.policy.bundle();
            println!(
                "{}: OK ({} groups, {} networks, {} categories, {} listed names, {} IP entries)",
                config.display(),
                loaded.config.groups.len(),
                loaded.config.networks.len(),
                b.categories().len(),
                b.header().names,
                b.header().ip_counts.values().sum::<u64>()
            );
            Ok(true)
        }
        Err(e) => {
            println!("{e}");
            Ok(false)
        }
    }
}

/// `explain --resolve`: resolve an allowed name as the server would (its `[[zone]]`, else
/// the upstream; names answered locally are not inspected) and inspect the answer.
fn explain_answer(
    loaded: &state::Loaded,
    name: &str,
    qtype: &str,
    outcome: &mut chaperone::policy::Outcome,
    now: jiff::Timestamp,
    trace: &mut Vec<String>,
) -> Result<Option<chaperone::policy::Found>> {
    use hickory_proto::rr::{Name, RecordType};
    if !matches!(outcome.decision, chaperone::policy::Decision::Allow(_)) {
        return Ok(None);
    }
    let qtype: RecordType = qtype
        .to_ascii_uppercase()
        .parse()
        .map_err(|_| anyhow::anyhow!("--type: unknown record type {qtype:?}"))?;
    let fqdn = Name::from_ascii(format!("{name}.")).context("name")?;
    let local = chaperone::local::LocalZones::new(&loaded.config);
    if local
        .explain(&chaperone::lists::key::reverse_key(name), &fqdn)
        .is_some()
    {
        return Ok(None);
    }
    let config = &loaded.config;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    let answer = rt.block_on(async {
        let zones = chaperone::resolve::zones::Zones::new(&config.zones)?;
        match zones.route(&fqdn) {
            Some(z) => z.forwarder.resolve(&fqdn, qtype).await,
            None => {
                let upstream = chaperone::resolve::Upstream::from_config(&config.upstream)?;
                upstream.resolve(&fqdn, qtype, false).await
            }
        }
    });
    let answer = match answer {
        Ok(a) => a,
        Err(e) => {
            trace.push(format!("answer: {qtype} not inspected: {e}"));
            return Ok(None);
        }
    };
    let findings = chaperone::inspect::Findings::of_records(&answer.answers);
    Ok(loaded
        .policy
        .explain_answer(outcome, &qtype.to_string(), &findings, now, trace))
}

/// What `chaperone explain` was asked.
struct ExplainArgs<'a> {
    config: &'a Path,
    ip: IpAddr,
    mac: Option<&'a str>,
    at: Option<&'a str>,
    device: Option<&'a str>,
    user: Option<&'a str>,
    /// `--resolve`: the record type whose upstream answer is inspected.
    resolve: Option<&'a str>,
    name: &'a str,
}

/// `chaperone selftest`: see [`chaperone::selftest`].
fn selftest(config: &Path, server: Option<SocketAddr>) -> Result<bool> {
    use chaperone::selftest;
    let cfg = chaperone::config::Config::load(config)?;
    ensure_url_copies(&cfg)?;
    let now = jiff::Timestamp::now();
    // The policy as the server has it: with the exceptions in force.
    let live = chaperone::store::open(&cfg)?
        .live_exceptions(now)
        .context("reading live exceptions")?;
    let loaded = state::load(config, live)?;
    let sources = selftest::sources(&loaded.config).map_err(anyhow::Error::msg)?;
    let server = match server {
        Some(s) => s,
        None => {
            let first = *loaded
                .config
                .server
                .listen
                .first()
                .context("no [server] listen address: pass --server")?;
            match first.ip().is_unspecified() {
                true => SocketAddr::new(IpAddr::from([127, 0, 0, 1]), first.port()),
                false => first,
            }
        }
    };
    let mut cases = Vec::new();
    for src in &sources {
        let (c, notes) = selftest::cases(&loaded.config, &loaded.policy, src, now);
        for n in notes {
            println!("note: {n}");
        }
        cases.extend(c);
    }
    let outcomes = selftest::run(
        &loaded.policy,
        server,
        cases,
        loaded.config.selftest.timeout,
        &jiff::Timestamp::now,
    );
    print!("{}", selftest::table(&outcomes));
    let failed = outcomes.iter().filter(|o| !o.passed()).count();
    let ids = selftest::record(&loaded.config, &outcomes, jiff::Timestamp::now())
        .context("recording the result in the checks log")?;
    println!(
        "{} of {} answers as the policy says; {} checks log entries recorded (ids {:?})",
        outcomes.len() - failed,
        outcomes.len(),
        ids.len(),
        ids
    );
    Ok(failed == 0 && !outcomes.is_empty())
}

fn explain(args: &ExplainArgs<'_>) -> Result<bool> {
    let ExplainArgs {
        config,
        ip,
        mac,
        at,
        name,
        ..
    } = *args;
    let cfg = chaperone::config::Config::load(config)?;
    ensure_url_copies(&cfg)?;
    let mac = mac
        .map(parse_mac)
        .transpose()
        .map_err(anyhow::Error::msg)
        .context("--mac")?;
    let tz = cfg.server.timezone.clone();
    let now = match at {
        Some(t) => {
            chaperone::policy::when::parse(t, &tz, jiff::Timestamp::now()).context("--at")?
        }
        None => jiff::Timestamp::now(),
    };
    // The exceptions in force at that time, read from the database as the server reads
    // them at start and on every refresh.
    let live = if cfg.postgres.is_some() {
        chaperone::store::open(&cfg)?.live_exceptions(now)
    } else {
        chaperone::store::sqlite::safeguarding::live_exceptions_at(&cfg.storage_path, now)
    }
    .context("reading live exceptions")?;
    let loaded = state::load(config, live)?;
    let normalized =
        normalize_domain(name).with_context(|| format!("{name:?} is not a domain name"))?;
    let key = ReversedName::from_labels(normalized.split('.').map(str::as_bytes))
        .context("name too long")?;
    let mut trace = Vec::new();
    let leases = chaperone::leases::Leases::default();
    for (path, r) in leases.refresh(&loaded.config.identify.leases, true) {
        if let chaperone::leases::FileResult::Failed(e) = r {
            trace.push(format!("leases: {} not read: {e}", path.display()));
        }
    }
    let identities = chaperone::identity::Identities::default();
    identities.rebuild_devices(&loaded.config.enrolled_devices);
    let lease_map = leases.load();
    let sources = chaperone::identify::Sources {
        trust: &loaded.config.identify,
        leases: &lease_map,
        identities: &identities,
        policy: &loaded.policy,
    };
    let credential = args.device.map_or(Credential::None, Credential::Path);
    let src = std::net::SocketAddr::new(ip, 0);
    let mut who = chaperone::identify::client(src, mac, credential, &sources, now);
    if let Some(user) = args.user {
        chaperone::identify::as_user(&mut who, user, &sources);
    }
    trace.extend(chaperone::identify::describe(&who));
    if who.mac_ignored {
        trace.push(format!(
            "identify: MAC ignored: {ip} is not a trusted relay ([identify] edns_mac_from)"
        ));
    }
    let client = who.client;
    let mut outcome = loaded
        .policy
        .decide(&client, key.as_bytes(), now, Some(&mut trace));
    let found = match args.resolve {
        Some(qtype) => explain_answer(&loaded, &normalized, qtype, &mut outcome, now, &mut trace)?,
        None => None,
    };
    println!(
        "query: {normalized} from {ip} at {} ({now})",
        now.to_zoned(tz.clone()).strftime("%a %Y-%m-%d %H:%M %Z")
    );
    for line in &trace {
        println!("  {line}");
    }
    let (decision, category, mut rule, incident) =
        chaperone::record::describe(&loaded.policy, outcome.decision, key.as_bytes());
    if let Some(f) = found {
        rule = Some(f.to_string());
    }
    print!("decision: {decision}");
    if let chaperone::policy::Decision::Allow(reason) = outcome.decision {
        print!(" ({})", allow_words(&loaded.policy, reason, &tz));
    }
    if let Some(c) = category {
        print!(" (category {c}");
        if let Some(r) = rule {
            print!(", rule {r}");
        }
        print!(")");
    }
    if incident {
        print!(" — INCIDENT: illegal category");
    }
    println!();
    if matches!(outcome.decision, chaperone::policy::Decision::Allow(_)) {
        let local = chaperone::local::LocalZones::new(&loaded.config);
        println!("answer: {}", local.route(&loaded.config, &normalized));
    }
    Ok(true)
}

/// Why a name is allowed, in words; an exception says which, and until when.
fn allow_words(
    policy: &chaperone::policy::Policy,
    reason: chaperone::policy::AllowReason,
    tz: &jiff::tz::TimeZone,
) -> String {
    match reason {
        chaperone::policy::AllowReason::Exception(i) => match policy.exceptions().get(i as usize) {
            Some(e) => format!(
                "by exception #{} for {} until {}",
                e.id,
                e.domain,
                e.expires
                    .to_zoned(tz.clone())
                    .strftime("%a %Y-%m-%d %H:%M %Z")
            ),
            None => "by exception".to_owned(),
        },
        other => other.to_string(),
    }
}

fn admin(
    url: &str,
    token: Option<&str>,
    command: chaperone::cli_admin::AdminCommand,
    json: bool,
    config: &Path,
) -> Result<bool> {
    let timezone = chaperone::config::Config::load(config)
        .map(|c| c.server.timezone)
        .unwrap_or_else(|_| jiff::tz::TimeZone::system());
    let output = chaperone::cli_admin::Output { json, timezone };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    rt.block_on(chaperone::cli_admin::run(url, token, command, &output))
}

fn open_store(config: &Path) -> Result<Box<dyn chaperone::store::Store>> {
    let cfg = chaperone::config::Config::load(config)?;
    if cfg.postgres.is_none() && !cfg.storage_path.exists() {
        anyhow::bail!(
            "{} does not exist yet: Chaperone has not run with this config",
            cfg.storage_path.display()
        );
    }
    Ok(chaperone::store::open(&cfg)?)
}

/// The period options of `chaperone report`.
struct ReportPeriod {
    since: String,
    from: Option<String>,
    to: Option<String>,
    term: Option<String>,
}

/// The period the options ask for, in the school's time zone (`[server] timezone`).
fn report_period(
    cfg: &chaperone::config::Config,
    p: &ReportPeriod,
    now: jiff::Timestamp,
) -> Result<chaperone::report::Period> {
    use chaperone::report::{Period, parse_bound, parse_since, term_period};
    let tz = cfg.server.timezone.clone();
    if let Some(name) = &p.term {
        let Some(term) = cfg
            .report_terms
            .iter()
            .find(|t| t.name.eq_ignore_ascii_case(name))
        else {
            let known: Vec<&str> = cfg.report_terms.iter().map(|t| t.name.as_str()).collect();
            anyhow::bail!(
                "--term {name:?}: no [[report.term]] with that name in {} (known: {known:?})",
                cfg.path.display()
            );
        };
        return term_period(term, &tz).map_err(anyhow::Error::msg);
    }
    let from = match &p.from {
        Some(f) => parse_bound(f, &tz, now, false).map_err(|e| anyhow::anyhow!("--from {e}"))?,
        None => parse_since(&p.since, now).map_err(|e| anyhow::anyhow!("--since {e}"))?,
    };
    let to = match &p.to {
        Some(t) => parse_bound(t, &tz, now, true).map_err(|e| anyhow::anyhow!("--to {e}"))?,
        None => now,
    };
    if to <= from {
        anyhow::bail!("the period ends ({to}) before it starts ({from})");
    }
    Ok(Period { from, to, tz })
}

fn report(
    config: &Path,
    period: &ReportPeriod,
    format: chaperone::report::Format,
    detail: bool,
    school: Option<&str>,
) -> Result<bool> {
    let cfg = chaperone::config::Config::load(config)?;
    let scope = match school {
        None => None,
        Some(id) => {
            let Some(s) = cfg.schools.get(id) else {
                anyhow::bail!(
                    "--school {id:?}: no [[school]] with that id in {}",
                    config.display()
                );
            };
            Some((s.name.clone(), s.groups.clone()))
        }
    };
    let groups = scope.as_ref().map(|(_, g)| g.as_slice());
    let whose = scope
        .as_ref()
        .map_or_else(|| "the trust".to_owned(), |(n, _)| n.clone());
    let period = report_period(&cfg, period, jiff::Timestamp::now())?;
    let mut db = open_store(config)?;
    let span = period.describe();
    let (tables, heading) = if detail {
        (
            chaperone::report::detail_period(db.as_mut(), &period, groups)?,
            format!(
                "Chaperone blocked attempts by device, {whose}, {span} (CONFIDENTIAL: safeguarding lead only)"
            ),
        )
    } else {
        (
            chaperone::report::summary_period(db.as_mut(), &period, groups)?,
            if school.is_some() {
                format!("Chaperone filtering summary, {whose}, {span}")
            } else {
                format!("Chaperone filtering summary, {span}")
            },
        )
    };
    print!("{}", chaperone::report::render(&tables, format, &heading));
    Ok(true)
}

fn audit(command: AuditCommand) -> Result<bool> {
    use chaperone::store::audit;
    match command {
        AuditCommand::Verify {
            config,
            expect_count,
            expect_head,
        } => {
            let mut db = open_store(&config)?;
            let cfg = chaperone::config::Config::load(&config)?;
            let key = if cfg.audit.key_file.exists() {
                Some(audit::load_key(&cfg.audit.key_file)?)
            } else {
                None
            };
            let published = audit::read_head(&cfg.audit.head_file)?;
            if published.is_none() && expect_count.is_none() && expect_head.is_none() {
                println!(
                    "note: no published head ({} is absent) and no --expect-count/--expect-head: deleted newest records cannot be detected",
                    cfg.audit.head_file.display()
                );
            }
            let expect = audit::Expect {
                key: key.as_deref(),
                published,
                count: expect_count,
                head: expect_head,
            };
            let unkeyed = db
                .audit_list(None, usize::MAX >> 1)?
                .iter()
                .filter(|r| !r.keyed)
                .count();
            match audit::verify(db.as_mut(), &expect)? {
                audit::Verification::Intact(n) => {
                    println!(
                        "audit log intact: {n} records, head {}",
                        db.audit_head()?.head
                    );
                    if unkeyed > 0 {
                        println!(
                            "note: {unkeyed} records predate the audit key (plain SHA-256): they prove order, not authorship"
                        );
                    }
                    Ok(true)
                }
                audit::Verification::Broken { id, reason } => {
                    println!("audit log BROKEN at record {id}: {reason}");
                    Ok(false)
                }
                audit::Verification::Unverifiable(reason) => {
                    println!(
                        "audit log NOT VERIFIED: {reason} (key file {})",
                        cfg.audit.key_file.display()
                    );
                    Ok(false)
                }
            }
        }
        AuditCommand::List { config } => {
            let mut db = open_store(&config)?;
            for r in db.audit_list(None, usize::MAX >> 1)? {
                println!(
                    "{} {} {} ({}) {} {} {}",
                    r.id, r.at, r.actor, r.role, r.action, r.subject, r.detail
                );
            }
            Ok(true)
        }
    }
}

fn compile_cmd(out: Option<PathBuf>, config: Option<PathBuf>, lists: &[String]) -> Result<bool> {
    let (sources, default_out, services) = match &config {
        Some(c) => {
            let cfg = chaperone::config::Config::load(c)?;
            if !ensure_url_copies(&cfg)? {
                anyhow::bail!("a URL source has no copy to compile from");
            }
            // The services the config names go into the bundle too, so a prebuilt bundle
            // serves `service:NAME` as a server compiling its own sources would.
            let services = cfg.services.categories();
            (
                cfg.lists.sources.clone(),
                Some(cfg.lists.bundle.clone()),
                services,
            )
        }
        None => (
            compile::sources_from_args(lists).map_err(anyhow::Error::msg)?,
            None,
            Vec::new(),
        ),
    };
    if sources.is_empty() && services.is_empty() {
        anyhow::bail!(
            "nothing to compile: give lists as CATEGORY=PATH, or --config with [[lists.source]] entries"
        );
    }
    let out = out
        .or(default_out)
        .context("--out is required when compiling lists given as arguments")?;
    let started = std::time::Instant::now();
    let (bytes, report) = compile::compile_with_services(&sources, &services)?;
    for e in &report.errors {
        eprintln!("{e}");
    }
    bundle::write_atomically(&out, &bytes).with_context(|| format!("writing {}", out.display()))?;
    print!("{}", report.summary());
    println!(
        "wrote {} in {:.2} s",
        out.display(),
        started.elapsed().as_secs_f64()
    );
    Ok(true)
}

/// `chaperone export --firewall`: the category's IP entries from the config's lists
/// (compiled in memory when it has sources, else its bundle), as a ruleset on stdout.
fn export_cmd(
    config: &Path,
    firewall: chaperone::lists::export::Firewall,
    reject: bool,
    category: &str,
) -> Result<bool> {
    let cfg = chaperone::config::Config::load(config)?;
    let bundle = if cfg.lists.sources.is_empty() {
        bundle::Bundle::open(&cfg.lists.bundle)?
    } else {
        if !ensure_url_copies(&cfg)? {
            anyhow::bail!("a URL source has no copy to export from");
        }
        let (bytes, report) = compile::compile_sources(&cfg.lists.sources)?;
        if !report.errors.is_empty() {
            eprintln!(
                "note: {} bad list lines skipped (see `chaperone check`)",
                report.errors.len()
            );
        }
        bundle::Bundle::from_vec(bytes)?
    };
    let text = chaperone::lists::export::render(&bundle, category, firewall, reject)?;
    print!("{text}");
    Ok(true)
}

fn services_cmd(
    config: Option<PathBuf>,
    dir: Option<PathBuf>,
    query: chaperone::services::show::Query,
) -> Result<bool> {
    let catalogue = match (config, dir) {
        (Some(c), _) => chaperone::config::Config::load(&c)?
            .services
            .catalogue
            .as_ref()
            .clone(),
        (None, dir) => {
            let dir = dir.unwrap_or_else(|| PathBuf::from(chaperone::services::DEFAULT_DIR));
            chaperone::services::Catalogue::load(&dir).map_err(|problems| {
                let lines: Vec<String> = problems.iter().map(|p| format!("  {p}")).collect();
                anyhow::anyhow!("the service catalogue has problems:\n{}", lines.join("\n"))
            })?
        }
    };
    let text = chaperone::services::show::render(&catalogue, &query).map_err(anyhow::Error::msg)?;
    print!("{text}");
    Ok(true)
}

/// `chaperone passwd`: hash a password, or make a TOTP secret.
fn passwd_cmd(totp: bool, name: &str) -> Result<bool> {
    use chaperone::config::console;
    if totp {
        let secret = console::new_totp_secret();
        println!("totp_secret = \"{secret}\"");
        println!("{}", chaperone::console::auth::otpauth_url(name, &secret));
        return Ok(true);
    }
    let password = read_password()?;
    anyhow::ensure!(
        password.chars().count() >= 8,
        "the password must be at least 8 characters"
    );
    let hash = console::hash_password(&password).map_err(anyhow::Error::msg)?;
    println!("password_hash = \"{hash}\"");
    Ok(true)
}

/// One line from stdin; on a terminal, asked for on stderr with echo turned off.
fn read_password() -> Result<String> {
    use std::io::{BufRead, IsTerminal};
    let stdin = std::io::stdin();
    let tty = stdin.is_terminal();
    let saved = tty.then(|| {
        eprint!("Password: ");
        echo_off()
    });
    let mut line = String::new();
    let read = stdin.lock().read_line(&mut line);
    if let Some(Some(t)) = saved {
        // SAFETY: restores the terminal settings read from fd 0 by echo_off.
        unsafe { libc::tcsetattr(0, libc::TCSANOW, &t) };
        eprintln!();
    }
    read.context("reading the password from stdin")?;
    Ok(line.trim_end_matches(['\r', '\n']).to_owned())
}

/// Turn terminal echo off on stdin; the previous settings, to restore.
fn echo_off() -> Option<libc::termios> {
    // SAFETY: tcgetattr/tcsetattr on fd 0 with a zeroed termios the call fills in.
    unsafe {
        let mut t: libc::termios = std::mem::zeroed();
        if libc::tcgetattr(0, &mut t) != 0 {
            return None;
        }
        let saved = t;
        t.c_lflag &= !libc::ECHO;
        libc::tcsetattr(0, libc::TCSANOW, &t);
        Some(saved)
    }
}
