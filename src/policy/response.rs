//! Step 8, after resolution: the answer to an allowed name checked against the same
//! policy (response inspection). A CNAME or DNAME target in a blocked category, or an
//! A/AAAA address in a blocked IP range, blocks the name that was asked, as if it were
//! listed itself: otherwise any allowed name can front for a blocked one ("CNAME
//! cloaking"), and a blocked site can hide behind a fresh name with its old address.
//!
//! What is checked, and why:
//! - Illegal categories block on every target and address, whatever allowed the name:
//!   illegal content is never unblockable.
//! - A name allowed *explicitly* (the group's allow list, a live exception, a list's
//!   pass rule, an allow-only group's approved list) is not checked further: a
//!   technician's unblock of a site must unblock the CDN names it answers with.
//! - Otherwise each target goes through steps 3, 4 and 6 (bypass names, the group's allow
//!   names and exceptions for the target itself, blocked categories with schedules and
//!   nominated devices); an allow-only group's approved list is not required of targets
//!   (CDNs would break every approved site), its blocked categories are.
//! - Addresses are looked up only when some category with IP entries is blocked for the
//!   client now, so a bundle without IPs costs nothing here.
//! - SafeSearch rewrites are Chaperone's own answers and are not inspected.
//! - `[inspect] cname = false` / `addresses = false` turn either check off.

use std::net::IpAddr;

use super::{
    AllowReason, BlockAnswer, BlockReason, Decision, Group, Matched, Outcome, Policy, Tracer, Via,
    first, group_answer,
};
use crate::inspect::Findings;
use crate::lists::bundle::Mask;
use crate::lists::key::unreverse_key;

/// What in the answer decided a block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Found {
    /// A CNAME/DNAME target (reversed key).
    Target(Box<[u8]>),
    /// An answer address.
    Address(IpAddr),
}

impl std::fmt::Display for Found {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Found::Target(k) => write!(f, "CNAME target {}", unreverse_key(k)),
            Found::Address(ip) => write!(f, "answer address {ip}"),
        }
    }
}

impl Policy {
    /// Check an allowed query's answer. `outcome` is what [`Policy::decide`] said for the
    /// asked name; only an [`Decision::Allow`] is inspected. Some(block, what) when the
    /// answer leads to something blocked for this client now.
    pub fn decide_answer(
        &self,
        outcome: &Outcome,
        findings: &Findings,
        now: jiff::Timestamp,
        trace: Option<&mut Vec<String>>,
    ) -> Option<(Decision, Found)> {
        let Decision::Allow(reason) = outcome.decision else {
            return None;
        };
        if findings.targets.is_empty() && findings.addrs.is_empty() {
            return None;
        }
        let gi = outcome.group?;
        let group = self.groups.get(usize::from(gi))?;
        let mut t = Tracer(trace);
        let explicit = !matches!(reason, AllowReason::Unlisted | AllowReason::NotBlockedHere);
        if explicit {
            t.say(|| format!("answer: {reason}: only illegal categories are checked"));
        }
        let targets = match self.inspect.cname {
            true => &findings.targets[..],
            false => &[],
        };
        for key in targets {
            if let Some(d) =
                self.check_target(group, gi, outcome.device, key, explicit, now, &mut t)
            {
                return Some((d, Found::Target(key.clone())));
            }
        }
        self.check_addresses(group, outcome.device, findings, explicit, now, &mut t)
    }

    /// `explain`'s step 8 (the admin API's and the command line's): inspect a resolved
    /// answer of type `qtype` with the trace, replacing `outcome`'s decision when it blocks.
    pub fn explain_answer(
        &self,
        outcome: &mut Outcome,
        qtype: &str,
        findings: &Findings,
        now: jiff::Timestamp,
        trace: &mut Vec<String>,
    ) -> Option<Found> {
        if findings.is_empty() {
            trace.push(format!(
                "answer: {qtype} has no chain or addresses to inspect"
            ));
            return None;
        }
        match self.decide_answer(outcome, findings, now, Some(trace)) {
            Some((decision, found)) => {
                outcome.decision = decision;
                Some(found)
            }
            None => {
                trace.push(format!("answer: {qtype} inspected, nothing blocked"));
                None
            }
        }
    }

    /// The addresses a client may not reach (for HTTPS/SVCB hints): blocked in one of its
    /// group's categories now, or illegal.
    pub fn blocks_address(&self, outcome: &Outcome, ip: IpAddr, now: jiff::Timestamp) -> bool {
        let Some(group) = outcome.group.and_then(|g| self.groups.get(usize::from(g))) else {
            return false;
        };
        let blocked = self.blocked_mask(group, outcome.device, now, &mut Tracer(None));
        let v = self.bundle.lookup_ip(ip);
        (v.block | v.nodata) & blocked != 0
    }

    /// True when the client's group has bypass prevention (ECH is stripped for it).
    pub fn prevents_bypass(&self, outcome: &Outcome) -> bool {
        outcome
            .group
            .and_then(|g| self.groups.get(usize::from(g)))
            .is_some_and(|g| g.bypass)
    }

    /// One chain target: illegal always; the rest unless the name was allowed explicitly.
    #[allow(clippy::too_many_arguments)]
    fn check_target(
        &self,
        group: &Group,
        gi: u16,
        device: Option<u16>,
        key: &[u8],
        explicit: bool,
        now: jiff::Timestamp,
        t: &mut Tracer,
    ) -> Option<Decision> {
        let m = Matched::new(&self.bundle, key);
        let name = || unreverse_key(key);
        if let Some(d) = self.illegal(&m, &mut Tracer(None)) {
            t.say(|| format!("answer: CNAME target {} is in an illegal category", name()));
            return Some(via(d, Via::Cname));
        }
        if explicit {
            return None;
        }
        if let Some(d) = self.bypass(group, key, &mut Tracer(None)) {
            t.say(|| format!("answer: CNAME target {} is a bypass name", name()));
            return Some(via(d, Via::Cname));
        }
        if self
            .allowed_by_name(group, gi, key, now, &mut Tracer(None))
            .is_some()
        {
            t.say(|| format!("answer: CNAME target {} is allowed by name", name()));
            return None;
        }
        match self.categories(group, device, &m, now, &mut Tracer(None)) {
            Err(d) => {
                t.say(|| {
                    format!(
                        "answer: CNAME target {} is in {} → the asked name is blocked",
                        name(),
                        self.block_category_name(&d)
                    )
                });
                Some(via(d, Via::Cname))
            }
            Ok(_) => None,
        }
    }

    /// Every answer address, in one pass, when a category with IP entries applies.
    fn check_addresses(
        &self,
        group: &Group,
        device: Option<u16>,
        findings: &Findings,
        explicit: bool,
        now: jiff::Timestamp,
        t: &mut Tracer,
    ) -> Option<(Decision, Found)> {
        let with_ips = self.bundle.ip_categories();
        if findings.addrs.is_empty() || with_ips == 0 || !self.inspect.addresses {
            return None;
        }
        let blocked: Mask = if explicit {
            self.illegal
        } else {
            self.blocked_mask(group, device, now, &mut Tracer(None))
        };
        if blocked & with_ips == 0 {
            return None;
        }
        findings.addrs.iter().find_map(|&ip| {
            let v = self.bundle.lookup_ip(ip);
            let cat = first((v.block | v.nodata) & blocked)?;
            let incident = self.is_illegal(cat);
            let answer = if incident {
                BlockAnswer::NxDomain
            } else if v.nodata & (1 << cat) != 0 {
                BlockAnswer::NoData
            } else {
                group_answer(group.block_answer)
            };
            t.say(|| {
                format!(
                    "answer: address {ip} is listed in {} → blocked",
                    self.category_name(cat)
                )
            });
            let d = Decision::Block {
                reason: BlockReason::Category(cat),
                answer,
                rule_labels: 0,
                incident,
                via: Via::Address,
            };
            Some((d, Found::Address(ip)))
        })
    }

    fn block_category_name(&self, d: &Decision) -> &str {
        match d {
            Decision::Block {
                reason: BlockReason::Category(c),
                ..
            } => self.category_name(*c),
            _ => "?",
        }
    }
}

/// A block found on the answer: answered as the asked name's own block, so no rule labels
/// (the synthesised SOA and the block page name the asked name, not the target).
fn via(d: Decision, via: Via) -> Decision {
    match d {
        Decision::Block {
            reason,
            answer,
            incident,
            ..
        } => Decision::Block {
            reason,
            answer,
            rule_labels: 0,
            incident,
            via,
        },
        other => other,
    }
}
