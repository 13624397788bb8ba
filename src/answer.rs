//! Answer stage: turn a decision into the records of a reply.
//!
//! Blocked answers carry a synthesised SOA so clients cache the block negatively for the
//! block TTL (and no longer: a later unblock must take effect quickly). Block-page answers
//! give A/AAAA of the block page and NODATA for other types, never a made-up address for a
//! type that cannot hold one.

pub mod ede;

use std::sync::LazyLock;

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::opt::EdnsOption;
use hickory_proto::rr::rdata::{A, AAAA, CNAME, SOA};
use hickory_proto::rr::{Name, RData, Record, RecordType};

use crate::config::BlockPageConfig;
use crate::policy::BlockAnswer;
use crate::resolve::Answer;

/// Default TTL of block answers, seconds, when no `[block_page]` sets one.
pub const DEFAULT_BLOCK_TTL: u32 = 60;

/// The reply to send, before it is put on the wire.
#[derive(Debug, Clone)]
pub struct Reply {
    /// Response code.
    pub rcode: ResponseCode,
    /// Answer section.
    pub answers: Vec<Record>,
    /// Authority section.
    pub authorities: Vec<Record>,
    /// An Extended DNS Error option (RFC 8914) saying why, sent if the client sent EDNS.
    pub ede: Option<EdnsOption>,
    /// AA: answered from Chaperone's own data (local records and zones), not resolved.
    pub authoritative: bool,
}

impl Reply {
    /// A reply with only a response code.
    pub fn rcode(rcode: ResponseCode) -> Self {
        Self {
            rcode,
            answers: Vec::new(),
            authorities: Vec::new(),
            ede: None,
            authoritative: false,
        }
    }

    /// The same reply carrying `ede` (see [`ede`]).
    pub fn with_ede(mut self, ede: Option<ede::Ede<'_>>) -> Self {
        self.ede = ede.map(|e| e.to_option());
        self
    }

    /// A resolved answer as a reply.
    pub fn from_answer(a: Answer) -> Self {
        Self {
            rcode: a.rcode,
            answers: a.answers,
            authorities: a.authorities,
            ede: None,
            authoritative: false,
        }
    }
}

static SOA_MNAME: LazyLock<Name> =
    LazyLock::new(|| Name::from_ascii("chaperone.invalid.").unwrap_or_else(|_| Name::root()));
static SOA_RNAME: LazyLock<Name> = LazyLock::new(|| {
    Name::from_ascii("hostmaster.chaperone.invalid.").unwrap_or_else(|_| Name::root())
});

/// The SOA that goes with a blocked answer: owned by the listed name that matched, so a
/// resolver caching it negatively covers what the list covers.
fn block_soa(zone: &Name, ttl: u32) -> Record {
    let soa = SOA::new(
        SOA_MNAME.clone(),
        SOA_RNAME.clone(),
        1,
        3600,
        600,
        86400,
        ttl,
    );
    Record::from_rdata(zone.clone(), ttl, RData::SOA(soa))
}

/// Records for a blocked query.
pub fn blocked(
    qname: &Name,
    qtype: RecordType,
    answer: BlockAnswer,
    zone: &Name,
    page: Option<&BlockPageConfig>,
) -> Reply {
    let ttl = page.map_or(DEFAULT_BLOCK_TTL, |p| p.ttl);
    let negative = |rcode| Reply {
        rcode,
        answers: Vec::new(),
        authorities: vec![block_soa(zone, ttl)],
        ede: None,
        authoritative: false,
    };
    match answer {
        BlockAnswer::NxDomain => negative(ResponseCode::NXDomain),
        BlockAnswer::NoData => negative(ResponseCode::NoError),
        BlockAnswer::BlockPage => {
            let rdata = match (qtype, page) {
                (RecordType::A, Some(BlockPageConfig { ipv4: Some(ip), .. })) => {
                    Some(RData::A(A(*ip)))
                }
                (RecordType::AAAA, Some(BlockPageConfig { ipv6: Some(ip), .. })) => {
                    Some(RData::AAAA(AAAA(*ip)))
                }
                _ => None,
            };
            match rdata {
                Some(r) => Reply {
                    rcode: ResponseCode::NoError,
                    answers: vec![Record::from_rdata(qname.clone(), ttl, r)],
                    authorities: Vec::new(),
                    ede: None,
                    authoritative: false,
                },
                None => negative(ResponseCode::NoError),
            }
        }
    }
}

/// A SafeSearch rewrite: the CNAME from the asked name to the safe host, followed by the
/// safe host's own records as resolved.
pub fn rewritten(qname: &Name, target: &Name, resolved: Answer) -> Reply {
    let ttl = resolved
        .answers
        .iter()
        .map(|r| r.ttl)
        .min()
        .unwrap_or(300)
        .min(3600);
    let mut answers = Vec::with_capacity(resolved.answers.len() + 1);
    answers.push(Record::from_rdata(
        qname.clone(),
        ttl,
        RData::CNAME(CNAME(target.clone())),
    ));
    answers.extend(resolved.answers);
    Reply {
        rcode: resolved.rcode,
        answers,
        authorities: resolved.authorities,
        ede: None,
        authoritative: false,
    }
}
