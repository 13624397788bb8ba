//! PTR answers for leased addresses, from the DHCP lease map ([`crate::leases`]).
//!
//! A school's DHCP server knows every device's name; Windows and the Wi-Fi controller ask
//! the reverse of an address to show it. Answering those from the leases keeps them on
//! site and gives the names the school's own DHCP server handed out. This module only
//! turns a lease into a record: when to ask it is the pipeline's decision.

use hickory_proto::op::ResponseCode;
use hickory_proto::rr::rdata::PTR;
use hickory_proto::rr::{Name, RData, Record};

use super::authoritative;
use crate::answer::Reply;
use crate::leases::LeaseMap;

/// TTL of a PTR answered from a lease: short, since the lease can move to another device.
const LEASE_PTR_TTL: u32 = 60;

/// The PTR answer for `qname` (an `in-addr.arpa` / `ip6.arpa` name of one whole address)
/// if a live lease at `now` names that address; None otherwise, so the name is answered
/// by whatever comes next (zone forwarding, reserved zones, upstream).
pub fn ptr(leases: &LeaseMap, qname: &Name, now: i64) -> Option<Reply> {
    let net = qname.parse_arpa_name().ok()?;
    if net.prefix_len() != net.max_prefix_len() {
        return None;
    }
    let host = leases.hostname_for(net.addr(), now)?;
    let mut target = Name::from_ascii(host).ok()?;
    target.set_fqdn(true);
    let record = Record::from_rdata(qname.clone(), LEASE_PTR_TTL, RData::PTR(PTR(target)));
    Some(authoritative(
        ResponseCode::NoError,
        vec![record],
        Vec::new(),
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_whole_addresses_are_reverse_names() {
        let leases = LeaseMap::empty();
        let partial = Name::from_ascii("10.in-addr.arpa.").unwrap();
        assert!(ptr(leases, &partial, 0).is_none());
        let other = Name::from_ascii("www.example.org.").unwrap();
        assert!(ptr(leases, &other, 0).is_none());
    }
}
