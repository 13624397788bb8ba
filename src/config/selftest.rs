//! `[selftest]` and `[[selftest.source]]`: where `chaperone selftest` sends its test
//! queries from. Each source is an address in one of a group's networks that this host
//! can bind (on Linux every 127.0.0.x is local), so the server places the test queries in
//! that group exactly as it places a pupil's.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use serde::Deserialize;

use super::{GroupConfig, NetworkConfig, Problem};

/// Most sources (each sends a handful of queries).
pub const MAX_SOURCES: usize = 64;
/// The name expected to be allowed for a group that is not allow-only, by default: the
/// IANA-reserved example domain, on no category list.
pub const DEFAULT_ALLOWED: &str = "example.com";

/// `[selftest]` as written.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSelftest {
    /// The test sources.
    #[serde(default)]
    pub source: Vec<RawSource>,
    /// A name on no list, expected allowed for every group that is not allow-only.
    pub allowed_name: Option<String>,
    /// How long to wait for each answer, in milliseconds (default 5000: longer than the
    /// server's upstream timeout, since an allowed name is resolved upstream).
    pub timeout_ms: Option<u64>,
}

/// `[[selftest.source]]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawSource {
    /// The group the address stands for.
    pub group: String,
    /// The address the test queries are sent from.
    pub address: String,
}

/// `[selftest]`, resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SelftestConfig {
    /// Configured sources (empty: one per group with a loopback address in its networks).
    pub sources: Vec<Source>,
    /// The name expected allowed for groups that are not allow-only.
    pub allowed_name: String,
    /// Wait per answer.
    pub timeout: Duration,
}

impl Default for SelftestConfig {
    fn default() -> Self {
        Self {
            sources: Vec::new(),
            allowed_name: DEFAULT_ALLOWED.to_owned(),
            timeout: Duration::from_millis(5000),
        }
    }
}

/// One test source.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Source {
    /// Group.
    pub group: String,
    /// Address.
    pub address: IpAddr,
}

/// Resolve `[selftest]`: every source's group must exist and its address must be in one
/// of that group's networks (else the test would check another group's policy).
pub(super) fn selftest(
    raw: RawSelftest,
    groups: &BTreeMap<String, GroupConfig>,
    networks: &[NetworkConfig],
    problems: &mut Vec<Problem>,
) -> SelftestConfig {
    if raw.source.len() > MAX_SOURCES {
        problems.push(Problem::new(
            "selftest.source",
            format!("at most {MAX_SOURCES} sources"),
        ));
    }
    let mut sources = Vec::new();
    for (i, s) in raw.source.into_iter().take(MAX_SOURCES).enumerate() {
        let key = format!("selftest.source[{i}]");
        if !groups.contains_key(&s.group) {
            problems.push(Problem::new(
                format!("{key}.group"),
                format!("no group {:?}", s.group),
            ));
            continue;
        }
        let Ok(address) = s.address.parse::<IpAddr>() else {
            problems.push(Problem::new(
                format!("{key}.address"),
                format!("{:?} is not an IP address", s.address),
            ));
            continue;
        };
        match network_group(networks, address) {
            Some(g) if g == s.group => sources.push(Source {
                group: s.group,
                address,
            }),
            Some(g) => problems.push(Problem::new(
                format!("{key}.address"),
                format!(
                    "{address} is in a network of group {g:?}, not {:?}",
                    s.group
                ),
            )),
            None => problems.push(Problem::new(
                format!("{key}.address"),
                format!("{address} is in no [[network]]"),
            )),
        }
    }
    let allowed_name = match raw.allowed_name {
        None => DEFAULT_ALLOWED.to_owned(),
        Some(n) => match crate::lists::key::normalize_domain(&n) {
            Ok(n) => n,
            Err(e) => {
                problems.push(Problem::new("selftest.allowed_name", e.to_string()));
                DEFAULT_ALLOWED.to_owned()
            }
        },
    };
    let timeout = match raw.timeout_ms {
        None => Duration::from_millis(5000),
        Some(ms) if (100..=60_000).contains(&ms) => Duration::from_millis(ms),
        Some(_) => {
            problems.push(Problem::new("selftest.timeout_ms", "expected 100 to 60000"));
            Duration::from_millis(5000)
        }
    };
    SelftestConfig {
        sources,
        allowed_name,
        timeout,
    }
}

/// The group of the most specific network holding `ip` (as the policy's prefix table
/// decides).
pub fn network_group(networks: &[NetworkConfig], ip: IpAddr) -> Option<&str> {
    networks
        .iter()
        .flat_map(|n| n.cidrs.iter().map(move |c| (c, n)))
        .filter(|(c, _)| c.contains(&ip))
        .max_by_key(|(c, _)| c.prefix_len())
        .map(|(_, n)| n.group.as_str())
}
