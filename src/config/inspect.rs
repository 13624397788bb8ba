//! `[inspect]`: response inspection (issue 13). On by default, as Pi-hole's deep CNAME
//! inspection and AdGuard Home's response filtering are; a switch exists for a school that
//! must trade it for throughput, and for measuring its cost.

use serde::Deserialize;

/// `[inspect]`, as written and as used (both keys are plain switches).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct InspectConfig {
    /// Check every CNAME/DNAME target in an allowed name's answer against the policy.
    #[serde(default = "yes")]
    pub cname: bool,
    /// Check every A/AAAA address in an allowed name's answer against the IP entries of
    /// the lists.
    #[serde(default = "yes")]
    pub addresses: bool,
}

fn yes() -> bool {
    true
}

impl Default for InspectConfig {
    fn default() -> Self {
        Self {
            cname: true,
            addresses: true,
        }
    }
}
