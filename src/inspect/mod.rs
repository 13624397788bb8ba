//! Response inspection: what an upstream answer says that the policy must see again.
//!
//! A name can be allowed while its answer leads somewhere blocked: a CNAME (or DNAME) chain
//! to a listed name ("CNAME cloaking"), or an A/AAAA address in a blocked IP range. This
//! module reads an answer once, when it enters the cache, into [`Findings`]: the chain's
//! targets as reversed keys and the answer's addresses. The policy then checks those per
//! query ([`crate::policy::Policy::decide_answer`]), because the cache is shared by every
//! group while the decision belongs to one client at one time.
//!
//! It also owns the rewriting of HTTPS/SVCB records for groups with bypass prevention
//! ([`svcb`]). It decides nothing itself and never touches the network.

pub mod svcb;

use std::net::IpAddr;

use hickory_proto::rr::{Name, RData, Record, RecordType};
use hickory_proto::serialize::binary::{BinDecodable, BinDecoder};

use crate::lists::key::ReversedName;

/// At most this many chain targets are kept per answer (a longer chain is checked on its
/// first targets; resolvers give up on chains far shorter than this).
pub const MAX_TARGETS: usize = 16;
/// At most this many addresses are kept per answer.
pub const MAX_ADDRS: usize = 32;

/// What one answer holds for the policy to check again.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Findings {
    /// CNAME and DNAME targets, in answer order, as reversed keys.
    pub targets: Box<[Box<[u8]>]>,
    /// A and AAAA addresses in the answer section.
    pub addrs: Box<[IpAddr]>,
    /// The answer holds HTTPS or SVCB records (ECH and address hints to check).
    pub svcb: bool,
}

impl Findings {
    /// Read answer-section records.
    pub fn of_records(records: &[Record]) -> Findings {
        let mut targets: Vec<Box<[u8]>> = Vec::new();
        let mut addrs = Vec::new();
        let mut svcb = false;
        for r in records {
            match &r.data {
                RData::CNAME(c) => push_target(&mut targets, &c.0),
                // hickory keeps DNAME as unknown data: its target is an uncompressed name
                // (RFC 6672 §2.1). The CNAME synthesised from it is checked as well.
                RData::Unknown { code, rdata } if *code == RecordType::DNAME => {
                    let mut d = BinDecoder::new(&rdata.anything);
                    if let Ok(target) = Name::read(&mut d) {
                        push_target(&mut targets, &target);
                    }
                }
                RData::A(a) if addrs.len() < MAX_ADDRS => addrs.push(IpAddr::V4(a.0)),
                RData::AAAA(a) if addrs.len() < MAX_ADDRS => addrs.push(IpAddr::V6(a.0)),
                RData::HTTPS(_) | RData::SVCB(_) => svcb = true,
                _ => {}
            }
        }
        Findings {
            targets: targets.into(),
            addrs: addrs.into(),
            svcb,
        }
    }

    /// Shared, or None when there is nothing to check (most negative answers), so such
    /// cache entries carry no allocation.
    pub fn into_shared(self) -> Option<std::sync::Arc<Findings>> {
        (!self.is_empty()).then(|| std::sync::Arc::new(self))
    }

    /// True when there is nothing to check.
    pub fn is_empty(&self) -> bool {
        self.targets.is_empty() && self.addrs.is_empty() && !self.svcb
    }
}

fn push_target(targets: &mut Vec<Box<[u8]>>, name: &Name) {
    if targets.len() >= MAX_TARGETS {
        return;
    }
    if let Some(k) = ReversedName::from_labels(name.iter()) {
        let k: Box<[u8]> = k.as_bytes().into();
        if !targets.contains(&k) {
            targets.push(k);
        }
    }
}
