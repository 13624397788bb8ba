//! The answer section as the client should see it: only the records that answer the
//! question, each once. It owns no I/O and no policy; `Recursive::pass` calls it on every
//! answer the recursor hands back.
//!
//! Why. Authoritative servers get it wrong in ways hickory's recursor (0.26.3) passes
//! through: an AAAA question answered with an A record, the same CNAME twice, records for
//! names the question never led to (hickory drops only those outside the answering zone).
//! Unbound scrubs all three; so does this. The answer kept is the CNAME chain that starts
//! at the question's name, and at each name of it the records of the asked type (their
//! RRSIGs too, and DNAMEs above the chain, for DNSSEC-aware clients).

use hickory_proto::dnssec::rdata::DNSSECRData;
use hickory_proto::rr::{Name, RData, Record, RecordType};

/// The longest CNAME chain followed: as many links as there are records, at most this.
const MAX_CHAIN: usize = 32;

/// Keep only the records that answer `qtype` at `qname` or along its CNAME chain, each
/// (owner, data) once.
pub fn scrub(qname: &Name, qtype: RecordType, answers: Vec<Record>) -> Vec<Record> {
    let chain = chain_names(qname, &answers);
    let mut kept: Vec<Record> = Vec::with_capacity(answers.len());
    for r in answers {
        if answers_question(&r, qtype, &chain) && !kept.iter().any(|k| same(k, &r)) {
            kept.push(r);
        }
    }
    kept
}

/// The names of the CNAME chain from `qname`, `qname` first; a loop ends it.
fn chain_names(qname: &Name, answers: &[Record]) -> Vec<Name> {
    let mut chain = vec![qname.clone()];
    while chain.len() <= MAX_CHAIN {
        let Some(last) = chain.last() else { break };
        let next = answers.iter().find_map(|r| match &r.data {
            RData::CNAME(c) if r.name == *last => Some(c.0.clone()),
            _ => None,
        });
        match next {
            Some(target) if !chain.contains(&target) => chain.push(target),
            _ => break,
        }
    }
    chain
}

/// True if `r` is part of the answer to `qtype` along `chain`.
fn answers_question(r: &Record, qtype: RecordType, chain: &[Name]) -> bool {
    let covered = match &r.data {
        RData::DNSSEC(DNSSECRData::RRSIG(sig)) => sig.input().type_covered,
        _ => r.record_type(),
    };
    if covered == RecordType::DNAME {
        // A DNAME is owned by an ancestor of the name it rewrites.
        return chain.iter().any(|n| r.name.zone_of(n));
    }
    chain.contains(&r.name)
        && (qtype == RecordType::ANY || covered == qtype || covered == RecordType::CNAME)
}

/// Same owner, type and data (the TTL may differ between copies).
fn same(a: &Record, b: &Record) -> bool {
    a.name == b.name && a.record_type() == b.record_type() && a.data == b.data
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::rr::rdata::{A, AAAA, CNAME};

    fn n(s: &str) -> Name {
        Name::from_ascii(s).unwrap()
    }
    fn a(o: &str, ip: &str) -> Record {
        Record::from_rdata(n(o), 60, RData::A(A(ip.parse().unwrap())))
    }
    fn aaaa(o: &str, ip: &str) -> Record {
        Record::from_rdata(n(o), 60, RData::AAAA(AAAA(ip.parse().unwrap())))
    }
    fn cname(o: &str, t: &str) -> Record {
        Record::from_rdata(n(o), 60, RData::CNAME(CNAME(n(t))))
    }

    #[test]
    fn wrong_type_is_dropped() {
        let kept = scrub(
            &n("x.test."),
            RecordType::AAAA,
            vec![a("x.test.", "192.0.2.1"), aaaa("x.test.", "2001:db8::1")],
        );
        assert_eq!(kept, vec![aaaa("x.test.", "2001:db8::1")]);
    }

    #[test]
    fn chain_is_kept_once_and_strays_dropped() {
        let kept = scrub(
            &n("x.test."),
            RecordType::A,
            vec![
                cname("x.test.", "y.other."),
                cname("x.test.", "y.other."),
                a("stray.test.", "192.0.2.9"),
                a("y.other.", "192.0.2.2"),
                a("y.other.", "192.0.2.2"),
                a("y.other.", "192.0.2.3"),
            ],
        );
        assert_eq!(
            kept,
            vec![
                cname("x.test.", "y.other."),
                a("y.other.", "192.0.2.2"),
                a("y.other.", "192.0.2.3"),
            ]
        );
    }

    #[test]
    fn a_cname_loop_ends() {
        let records = vec![cname("x.test.", "y.test."), cname("y.test.", "x.test.")];
        assert_eq!(
            scrub(&n("x.test."), RecordType::A, records.clone()),
            records
        );
    }
}
