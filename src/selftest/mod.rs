//! `chaperone selftest`: send real test queries to a running server from each configured
//! test source and check every answer against the policy (DfE: check filtering works,
//! and keep a log of the checks).
//!
//! What is asked, per source (and so per group): one known name per category the group
//! blocks or schedules (taken from the category's loaded list), the SafeSearch engines the
//! group rewrites, the Firefox DoH canary, and a name that should be allowed. What each
//! answer should be is not worked out here: it is the config's own [`Policy::decide`] at
//! the time of the query, turned into what the server puts on the wire (the Extended DNS
//! Error of [`crate::answer::ede`], or a SafeSearch CNAME). A test whose expected answer
//! changes while it runs (a schedule opening) accepts either.
//!
//! This module must not decide anything itself, and it never asks names on an illegal
//! list: each such query would raise a real incident and alert the DSL.

pub mod probe;

use std::net::{IpAddr, SocketAddr};

use crate::answer::ede::Ede;
use crate::config::Config;
use crate::config::selftest::{Source, network_group};
use crate::lists::key::ReversedName;
use crate::policy::{BlockAnswer, Client, Decision, Policy};
use probe::Answer;

/// The Firefox DoH canary: a network that answers it NXDOMAIN asks Firefox not to turn on
/// DNS over HTTPS by itself.
pub const DOH_CANARY: &str = "use-application-dns.net";
/// One host per SafeSearch engine: (engine, host).
pub const SAFESEARCH_HOSTS: &[(&str, &str)] = &[
    ("google", "www.google.com"),
    ("bing", "www.bing.com"),
    ("duckduckgo", "duckduckgo.com"),
    ("youtube", "www.youtube.com"),
    ("pixabay", "pixabay.com"),
    ("brave", "search.brave.com"),
];
/// Test queries in flight at once.
const PARALLEL: usize = 32;

/// One test query.
#[derive(Debug, Clone)]
pub struct Case {
    /// Group of the source.
    pub group: String,
    /// Where it is sent from.
    pub source: IpAddr,
    /// What it tests ("category adult", "safesearch google", "doh canary", "allowed").
    pub test: String,
    /// The name asked.
    pub name: String,
}

/// What the answer should be.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Expect {
    /// REFUSED (the source is in no network).
    Refused,
    /// Resolved as usual: no blocking EDE, no SafeSearch CNAME.
    Allowed,
    /// A CNAME to this safe-mode host.
    Rewritten(String),
    /// Blocked with this EDE; NXDOMAIN when `nxdomain`.
    Blocked {
        /// EDE info-code.
        code: u16,
        /// EDE text.
        text: String,
        /// The block answer is NXDOMAIN.
        nxdomain: bool,
    },
}

impl std::fmt::Display for Expect {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Expect::Refused => f.write_str("REFUSED"),
            Expect::Allowed => f.write_str("allowed"),
            Expect::Rewritten(h) => write!(f, "CNAME {h}"),
            Expect::Blocked {
                code,
                text,
                nxdomain,
            } => {
                if *nxdomain {
                    f.write_str("NXDOMAIN ")?;
                }
                write!(f, "EDE {code} \"{text}\"")
            }
        }
    }
}

impl Expect {
    /// What the server sends for `decision`.
    pub fn of(policy: &Policy, decision: &Decision) -> Expect {
        match decision {
            Decision::Refuse => Expect::Refused,
            Decision::Allow(_) => Expect::Allowed,
            Decision::Rewrite { target, .. } => Expect::Rewritten(target.host().to_owned()),
            Decision::Block { answer, .. } => match Ede::for_decision(policy, decision) {
                Some(e) => Expect::Blocked {
                    code: e.code,
                    text: e.text(),
                    nxdomain: *answer == BlockAnswer::NxDomain,
                },
                None => Expect::Allowed,
            },
        }
    }

    /// Whether `got` is this answer.
    pub fn matches(&self, got: &Answer) -> bool {
        use hickory_proto::op::ResponseCode;
        let blocking_ede = got
            .ede
            .as_ref()
            .is_some_and(|(c, _)| [15, 17, 18].contains(c));
        match self {
            Expect::Refused => got.rcode == ResponseCode::Refused,
            Expect::Allowed => {
                !blocking_ede
                    && got.cnames.is_empty_or_not_safe()
                    && got.rcode != ResponseCode::Refused
            }
            Expect::Rewritten(h) => got.cnames.iter().any(|c| c == h),
            Expect::Blocked {
                code,
                text,
                nxdomain,
            } => {
                got.ede.as_ref() == Some(&(*code, text.clone()))
                    && (!nxdomain || got.rcode == ResponseCode::NXDomain)
            }
        }
    }
}

/// A CNAME chain that is not one of the SafeSearch targets (an allowed name may have
/// ordinary CNAMEs).
trait NotSafe {
    fn is_empty_or_not_safe(&self) -> bool;
}

impl NotSafe for Vec<String> {
    fn is_empty_or_not_safe(&self) -> bool {
        !self
            .iter()
            .any(|c| crate::policy::safesearch::is_target_host(c))
    }
}

/// The policy's decision for `name` asked from `source` at `now`.
pub fn decide(policy: &Policy, source: IpAddr, name: &str, now: jiff::Timestamp) -> Decision {
    let Some(key) = ReversedName::from_labels(name.split('.').map(str::as_bytes)) else {
        return Decision::Refuse;
    };
    let client = Client {
        ip: Some(source),
        mac: None,
        pin: None,
    };
    policy.decide(&client, key.as_bytes(), now, None).decision
}

/// The test sources: the configured ones, else one per group with a loopback address in
/// its networks. An error says what to configure.
pub fn sources(cfg: &Config) -> Result<Vec<Source>, String> {
    if !cfg.selftest.sources.is_empty() {
        return Ok(cfg.selftest.sources.clone());
    }
    let mut out: Vec<Source> = Vec::new();
    for n in &cfg.networks {
        if out.iter().any(|s| s.group == n.group) {
            continue;
        }
        let loopback = n.cidrs.iter().find_map(|c| {
            let ip = match c.prefix_len() == c.max_prefix_len() {
                true => c.addr(),
                false => c.hosts().next()?,
            };
            (ip.is_loopback() && network_group(&cfg.networks, ip) == Some(n.group.as_str()))
                .then_some(ip)
        });
        if let Some(address) = loopback {
            out.push(Source {
                group: n.group.clone(),
                address,
            });
        }
    }
    match out.is_empty() {
        true => Err("no test source: no group's networks hold a loopback address. Add one per group to the config, e.g.\n  [[selftest.source]]\n  group = \"pupils\"\n  address = \"10.20.0.250\"   # an address of this host in the pupils network".into()),
        false => Ok(out),
    }
}

/// The test cases for one source.
pub fn cases(
    cfg: &Config,
    policy: &Policy,
    src: &Source,
    now: jiff::Timestamp,
) -> (Vec<Case>, Vec<String>) {
    let mut cases = Vec::new();
    let mut notes = Vec::new();
    let case = |test: String, name: &str| Case {
        group: src.group.clone(),
        source: src.address,
        test,
        name: name.to_owned(),
    };
    let group = cfg.groups.get(&src.group);
    let mentioned = |c: &str| {
        group.is_some_and(|g| {
            g.block.iter().chain(&g.approved).any(|x| x == c)
                || g.schedules
                    .iter()
                    .any(|s| s.allow.iter().chain(&s.block).any(|x| x == c))
        })
    };
    let bundle = policy.bundle();
    for (id, category) in bundle.categories().iter().enumerate() {
        let Ok(id) = u16::try_from(id) else { break };
        if policy.is_illegal(id) {
            notes.push(format!("{}: category {category} not asked: it is an illegal category, and each query would raise a real incident", src.group));
            continue;
        }
        let Some(name) = bundle.sample_names(id, 1).pop() else {
            if mentioned(category) {
                notes.push(format!(
                    "{}: category {category} has no listed names to ask",
                    src.group
                ));
            }
            continue;
        };
        // A service group expands to a category per service: ask only the services the
        // group names one by one, not every member of every service group.
        let service = category.starts_with(crate::services::SERVICE_PREFIX);
        let blocked = matches!(
            decide(policy, src.address, &name, now),
            Decision::Block { .. }
        );
        if mentioned(category) || (blocked && !service) {
            cases.push(case(format!("category {category}"), &name));
        }
    }
    for (engine, host) in SAFESEARCH_HOSTS {
        if matches!(
            decide(policy, src.address, host, now),
            Decision::Rewrite { .. }
        ) {
            cases.push(case(format!("safesearch {engine}"), host));
        }
    }
    cases.push(case("doh canary".into(), DOH_CANARY));
    let allowed = match group.filter(|g| g.allow_only) {
        Some(g) => g.approved.iter().find_map(|c| {
            bundle
                .category_id(c)
                .and_then(|id| bundle.sample_names(id, 1).pop())
        }),
        None => Some(cfg.selftest.allowed_name.clone()),
    };
    match allowed {
        Some(name) => cases.push(case("allowed name".into(), &name)),
        None => notes.push(format!(
            "{}: allow-only group with no approved names to ask",
            src.group
        )),
    }
    (cases, notes)
}

/// One case's result.
#[derive(Debug, Clone)]
pub struct Outcome {
    /// The case.
    pub case: Case,
    /// What the policy expects (before the query).
    pub expected: Expect,
    /// What it expects after the answer, when that differs (a schedule changed meanwhile).
    pub expected_after: Option<Expect>,
    /// The answer, or why there was none.
    pub got: Result<Answer, String>,
}

impl Outcome {
    /// The answer is the policy's.
    pub fn passed(&self) -> bool {
        match &self.got {
            Ok(a) => {
                self.expected.matches(a)
                    || self.expected_after.as_ref().is_some_and(|e| e.matches(a))
            }
            Err(_) => false,
        }
    }
}

/// Run every case against `server`, [`PARALLEL`] at a time; `now` is read before and
/// after each query.
pub fn run(
    policy: &Policy,
    server: SocketAddr,
    cases: Vec<Case>,
    timeout: std::time::Duration,
    now: &(dyn Fn() -> jiff::Timestamp + Sync),
) -> Vec<Outcome> {
    let mut out = Vec::with_capacity(cases.len());
    for chunk in cases.chunks(PARALLEL) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|c| {
                    s.spawn(move || {
                        let before = Expect::of(policy, &decide(policy, c.source, &c.name, now()));
                        let got = probe::ask(c.source, server, &c.name, timeout)
                            .map_err(|e| e.to_string());
                        let after = Expect::of(policy, &decide(policy, c.source, &c.name, now()));
                        Outcome {
                            case: c.clone(),
                            expected_after: (after != before).then_some(after),
                            expected: before,
                            got,
                        }
                    })
                })
                .collect();
            for h in handles {
                if let Ok(o) = h.join() {
                    out.push(o);
                }
            }
        });
    }
    out
}

/// The results as a text table: group, source, test, name, expected, got, PASS/FAIL.
pub fn table(outcomes: &[Outcome]) -> String {
    let rows: Vec<[String; 7]> = outcomes
        .iter()
        .map(|o| {
            let expected = match &o.expected_after {
                Some(a) => format!("{} or {a}", o.expected),
                None => o.expected.to_string(),
            };
            let got = match &o.got {
                Ok(a) => a.to_string(),
                Err(e) => e.clone(),
            };
            [
                o.case.group.clone(),
                o.case.source.to_string(),
                o.case.test.clone(),
                o.case.name.clone(),
                expected,
                got,
                if o.passed() { "PASS" } else { "FAIL" }.to_owned(),
            ]
        })
        .collect();
    let head = [
        "GROUP", "SOURCE", "TEST", "NAME", "EXPECTED", "GOT", "RESULT",
    ]
    .map(String::from);
    let mut widths = head.each_ref().map(|h| h.chars().count());
    for r in &rows {
        for (w, c) in widths.iter_mut().zip(r) {
            *w = (*w).max(c.chars().count());
        }
    }
    let mut s = String::new();
    for r in std::iter::once(&head).chain(&rows) {
        let line: Vec<String> = r
            .iter()
            .zip(widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        s.push_str(line.join("  ").trim_end());
        s.push('\n');
    }
    s
}

/// The checks-log entries for a run: one per source (group), passed when every answer
/// was the policy's, the failures named in the detail.
pub fn check_entries(outcomes: &[Outcome]) -> Vec<(String, bool, String)> {
    let mut groups: Vec<(String, IpAddr)> = Vec::new();
    for o in outcomes {
        if !groups.contains(&(o.case.group.clone(), o.case.source)) {
            groups.push((o.case.group.clone(), o.case.source));
        }
    }
    groups
        .into_iter()
        .map(|(g, src)| {
            let mine: Vec<&Outcome> = outcomes
                .iter()
                .filter(|o| o.case.group == g && o.case.source == src)
                .collect();
            let failed: Vec<String> = mine
                .iter()
                .filter(|o| !o.passed())
                .take(20)
                .map(|o| {
                    format!(
                        "{} {}: expected {}, got {}",
                        o.case.test,
                        o.case.name,
                        o.expected,
                        match &o.got {
                            Ok(a) => a.to_string(),
                            Err(e) => e.clone(),
                        }
                    )
                })
                .collect();
            let detail = match failed.is_empty() {
                true => format!("all {} answers as the policy says", mine.len()),
                false => format!(
                    "{} of {} answers differ from the policy: {}",
                    failed.len(),
                    mine.len(),
                    failed.join("; ")
                ),
            };
            (format!("group {g} (from {src})"), failed.is_empty(), detail)
        })
        .collect()
}

/// What a failed selftest asks the school to do, in the checks log.
pub const FAIL_ACTION: &str = "investigate: the server answered differently from its config (another config running, lists not reloaded, or a bypass); fix and run chaperone selftest again";

/// Record a run in the checks log (source "selftest", one entry per group) with an audit
/// record for each, through the store the config names. Returns the entries' ids.
pub fn record(
    cfg: &Config,
    outcomes: &[Outcome],
    at: jiff::Timestamp,
) -> Result<Vec<i64>, crate::store::StoreError> {
    use crate::store::records::NewCheck;
    let chain = crate::store::audit::Chain::open(&cfg.audit, None)
        .map_err(|e| crate::store::StoreError::Invalid(e.to_string()))?;
    let mut db = crate::store::open(cfg)?;
    let what = format!(
        "chaperone selftest: {} test queries (blocked categories, SafeSearch, DoH canary, an allowed name)",
        outcomes.len()
    );
    let mut ids = Vec::new();
    for (target, passed, detail) in check_entries(outcomes) {
        let check = NewCheck {
            at,
            who: "selftest",
            what: &what,
            target: &target,
            source: "selftest",
            passed,
            detail: &detail,
            action: if passed { "none needed" } else { FAIL_ACTION },
        };
        let id = db.insert_check(&check)?;
        chain.append(
            db.as_mut(),
            at,
            "selftest",
            "selftest",
            "check.record",
            &format!("check {id}"),
            &serde_json::json!({ "target": target, "passed": passed, "source": "selftest" }),
        )?;
        ids.push(id);
    }
    Ok(ids)
}
