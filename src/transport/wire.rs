//! DNS wire format for the UDP fast path: parse the common query shape without
//! allocating, and write the answers that need no upstream (refused, blocked, block page)
//! straight into a buffer.
//!
//! Only the shape nearly every stub resolver sends is handled here: a standard query with
//! one question and at most an OPT record. Anything else (and anything malformed) returns
//! `None` and takes the full hickory path, which answers FORMERR/NOTIMP as the RFCs
//! require. Written from RFC 1035 §4 and RFC 6891; the layouts are simple enough that a
//! hand-written reader is shorter than adapting a general decoder to zero allocation.

use std::net::{Ipv4Addr, Ipv6Addr};

use crate::answer::ede::Ede;
use crate::lists::key::ReversedName;

/// Header length.
pub const HEADER: usize = 12;
/// Our advertised EDNS UDP payload size (DNS flag day 2020).
pub const OUR_PAYLOAD: u16 = 1232;
/// The EDNS0 option dnsmasq uses for the client MAC.
const MAC_OPTION: u16 = crate::identify::EDNS_MAC_OPTION;

/// A parsed simple query. Borrowed views into the packet, no allocation.
#[derive(Debug, Clone)]
pub struct Query {
    /// Transaction id.
    pub id: u16,
    /// RD flag.
    pub rd: bool,
    /// CD flag.
    pub cd: bool,
    /// End of the question section (header + qname + type + class).
    pub question_end: usize,
    /// Offsets of each label's length byte in the packet, leftmost label first.
    pub label_offsets: [u8; 128],
    /// Number of labels.
    pub labels: u8,
    /// Query type.
    pub qtype: u16,
    /// Query class.
    pub qclass: u16,
    /// The request carried an OPT record.
    pub edns: bool,
    /// Requester's UDP payload size (512 without EDNS).
    pub payload: u16,
    /// DNSSEC OK.
    pub dnssec_ok: bool,
    /// MAC from the EDNS0 MAC option.
    pub mac: Option<[u8; 6]>,
    /// The lower-cased question name in wire form (for cache keys).
    pub lower_name: [u8; 255],
    /// Length of `lower_name`.
    pub name_len: u8,
    /// The EDNS payload size we advertise in our OPT record.
    pub advertise: u16,
    /// The largest UDP answer this requester may get: min(its size, ours); 512 without
    /// EDNS. See [`Query::set_udp_size`].
    pub limit: u16,
}

impl Query {
    /// Apply our configured UDP payload size: advertise it, and never answer larger than
    /// it or than the requester's own size (RFC 6891 §6.2.5).
    pub fn set_udp_size(&mut self, ours: u16) {
        self.advertise = ours;
        self.limit = if self.edns {
            self.payload.min(ours).max(512)
        } else {
            512
        };
    }

    /// The lower-cased wire name.
    pub fn wire_name(&self) -> &[u8] {
        &self.lower_name[..self.name_len as usize]
    }

    /// The reversed-label key the policy matches on.
    pub fn key(&self) -> Option<ReversedName> {
        let name = self.wire_name();
        ReversedName::from_labels(LabelIter {
            name,
            pos: 0,
            end: name.len().saturating_sub(1),
        })
    }
}

/// Labels of an uncompressed, validated wire name (without the root label).
struct LabelIter<'a> {
    name: &'a [u8],
    pos: usize,
    /// Index of the root label's zero byte.
    end: usize,
}

impl<'a> Iterator for LabelIter<'a> {
    type Item = &'a [u8];
    fn next(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.end {
            return None;
        }
        let len = self.name[self.pos] as usize;
        let label = &self.name[self.pos + 1..self.pos + 1 + len];
        self.pos += 1 + len;
        Some(label)
    }
}

impl<'a> DoubleEndedIterator for LabelIter<'a> {
    fn next_back(&mut self) -> Option<&'a [u8]> {
        if self.pos >= self.end {
            return None;
        }
        // Find the last label starting at or after pos by walking forward (names are short).
        let mut p = self.pos;
        let mut last = p;
        while p < self.end {
            last = p;
            p += 1 + self.name[p] as usize;
        }
        let len = self.name[last] as usize;
        let label = &self.name[last + 1..last + 1 + len];
        self.end = last;
        Some(label)
    }
}

fn u16_at(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Parse a standard query with one question and at most one additional OPT record.
pub fn parse_query(pkt: &[u8]) -> Option<Query> {
    if pkt.len() < HEADER + 5 {
        return None;
    }
    let flags = u16_at(pkt, 2)?;
    let qr = flags & 0x8000 != 0;
    let opcode = (flags >> 11) & 0xf;
    let (qd, an, ns, ar) = (
        u16_at(pkt, 4)?,
        u16_at(pkt, 6)?,
        u16_at(pkt, 8)?,
        u16_at(pkt, 10)?,
    );
    if qr || opcode != 0 || qd != 1 || an != 0 || ns != 0 || ar > 1 || flags & 0x0040 != 0 {
        return None;
    }
    let mut q = Query {
        id: u16_at(pkt, 0)?,
        rd: flags & 0x0100 != 0,
        cd: flags & 0x0010 != 0,
        question_end: 0,
        label_offsets: [0; 128],
        labels: 0,
        qtype: 0,
        qclass: 0,
        edns: false,
        payload: 512,
        dnssec_ok: false,
        mac: None,
        lower_name: [0; 255],
        name_len: 0,
        advertise: OUR_PAYLOAD,
        limit: 512,
    };
    let mut pos = HEADER;
    let mut out = 0usize;
    loop {
        let len = *pkt.get(pos)? as usize;
        if len & 0xc0 != 0 {
            return None; // compression or extended label types in a question: slow path
        }
        if out + 1 + len > 255 {
            return None;
        }
        q.lower_name[out] = len as u8;
        if len == 0 {
            out += 1;
            pos += 1;
            break;
        }
        if q.labels as usize >= q.label_offsets.len() || pos > u8::MAX as usize {
            return None;
        }
        q.label_offsets[q.labels as usize] = pos as u8;
        q.labels += 1;
        let label = pkt.get(pos + 1..pos + 1 + len)?;
        for (i, &c) in label.iter().enumerate() {
            q.lower_name[out + 1 + i] = c.to_ascii_lowercase();
        }
        out += 1 + len;
        pos += 1 + len;
    }
    if q.labels == 0 {
        return None; // the root: rare, let hickory handle it
    }
    q.name_len = out as u8;
    q.qtype = u16_at(pkt, pos)?;
    q.qclass = u16_at(pkt, pos + 2)?;
    pos += 4;
    q.question_end = pos;
    if ar == 1 {
        parse_opt(pkt, pos, &mut q)?;
    } else if pos != pkt.len() {
        return None;
    }
    Some(q)
}

/// The OPT pseudo-record: root owner, type 41, class = payload, TTL = ext-rcode, version,
/// flags; options. Only version 0 is taken on the fast path.
fn parse_opt(pkt: &[u8], pos: usize, q: &mut Query) -> Option<()> {
    if *pkt.get(pos)? != 0 || u16_at(pkt, pos + 1)? != 41 {
        return None;
    }
    let payload = u16_at(pkt, pos + 3)?;
    let version = *pkt.get(pos + 6)?;
    let do_flags = u16_at(pkt, pos + 7)?;
    let rdlen = u16_at(pkt, pos + 9)? as usize;
    let start = pos + 11;
    if version != 0 || start + rdlen != pkt.len() {
        return None;
    }
    q.edns = true;
    q.payload = payload.max(512);
    q.limit = q.payload.min(OUR_PAYLOAD);
    q.dnssec_ok = do_flags & 0x8000 != 0;
    let mut o = start;
    while o < start + rdlen {
        let code = u16_at(pkt, o)?;
        let len = u16_at(pkt, o + 2)? as usize;
        let data = pkt.get(o + 4..o + 4 + len)?;
        if code == MAC_OPTION {
            q.mac = crate::identify::parse_mac_payload(data);
        }
        o += 4 + len;
    }
    (o == start + rdlen).then_some(())
}

/// Response codes used here.
pub mod rcode {
    /// NOERROR
    pub const NOERROR: u16 = 0;
    /// NXDOMAIN
    pub const NXDOMAIN: u16 = 3;
    /// REFUSED
    pub const REFUSED: u16 = 5;
    /// FORMERR
    pub const FORMERR: u16 = 1;
}

/// The answer for questions no resolver should pass upstream, as unbound gives them
/// (daemon/worker.c): zone transfers (AXFR, IXFR) are REFUSED; meta types that cannot be
/// asked for (OPT, TSIG, TKEY, MAILA, MAILB and the 128–248 range) are FORMERR; classes other
/// than IN (CHAOS, HESIOD, NONE, 0, …) are REFUSED. Class ANY is resolved as IN.
pub fn unanswerable(qtype: u16, qclass: u16) -> Option<u16> {
    match qtype {
        251 | 252 => return Some(rcode::REFUSED),
        41 | 128..=250 | 253 | 254 => return Some(rcode::FORMERR),
        _ => {}
    }
    (qclass != 1 && qclass != 255).then_some(rcode::REFUSED)
}

/// True if a question section (as on the wire: name, type, class) uses a compression
/// pointer or an extended label type in its name. A question has nothing earlier to point
/// at, so such a name is malformed (FORMERR), and echoing it would send the pointer back.
pub fn question_has_pointer(question: &[u8]) -> bool {
    let mut pos = 0;
    while let Some(&len) = question.get(pos) {
        if len == 0 {
            return false;
        }
        if len & 0xc0 != 0 {
            return true;
        }
        pos += 1 + usize::from(len);
    }
    false
}

/// Cut a response to at most `max` bytes at a record boundary, as unbound does: the header,
/// the question and as many whole answer records as fit beside the OPT record (RFC 6891
/// §7: it stays), nothing else; TC set and the counts matching what is left. A response
/// that cannot be walked is cut to its header and question. Returns true if it was cut.
pub fn truncate(msg: &mut Vec<u8>, max: usize) -> bool {
    if msg.len() <= max {
        return false;
    }
    let (kept, opt) = truncation_plan(msg, max).unwrap_or(((HEADER.min(msg.len()), 0), None));
    let opt_bytes = opt.map(|(a, b)| msg[a..b].to_vec()).unwrap_or_default();
    let answers = u16::try_from(kept.1).unwrap_or(0);
    msg.truncate(kept.0);
    msg.extend_from_slice(&opt_bytes);
    if msg.len() >= HEADER {
        msg[2] |= 0x02;
        if kept.0 == HEADER {
            msg[4..6].copy_from_slice(&[0, 0]);
        }
        set_counts(msg, answers, 0, u16::from(!opt_bytes.is_empty()));
    }
    true
}

/// Where to cut: (end of what is kept, answer records kept), and the OPT record's span.
#[allow(clippy::type_complexity)]
fn truncation_plan(msg: &[u8], max: usize) -> Option<((usize, usize), Option<(usize, usize)>)> {
    let (qd, an, ns, ar) = (
        u16_at(msg, 4)?,
        u16_at(msg, 6)?,
        u16_at(msg, 8)?,
        u16_at(msg, 10)?,
    );
    let mut pos = HEADER;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let question_end = pos;
    let mut answer_ends = Vec::with_capacity(usize::from(an));
    let mut opt = None;
    let total = u32::from(an) + u32::from(ns) + u32::from(ar);
    for i in 0..total {
        let start = pos;
        pos = skip_name(msg, pos)?;
        let rtype = u16_at(msg, pos)?;
        let rdlen = usize::from(u16_at(msg, pos + 8)?);
        pos += 10 + rdlen;
        if pos > msg.len() {
            return None;
        }
        if i < u32::from(an) {
            answer_ends.push(pos);
        } else if rtype == 41 && i >= u32::from(an) + u32::from(ns) {
            opt = Some((start, pos));
        }
    }
    let room = max.saturating_sub(opt.map_or(0, |(a, b)| b - a));
    if question_end > room {
        return Some(((HEADER, 0), opt));
    }
    let fit = answer_ends.iter().take_while(|&&end| end <= room).count();
    let end = if fit == 0 {
        question_end
    } else {
        answer_ends[fit - 1]
    };
    Some(((end, fit), opt))
}

/// Start a response in `out`: header, the request's question copied as asked (case
/// preserved), counts filled in by the caller via [`set_counts`].
pub fn begin_response(out: &mut Vec<u8>, pkt: &[u8], q: &Query, rcode: u16) {
    out.clear();
    out.extend_from_slice(&q.id.to_be_bytes());
    let flags: u16 = 0x8000 | u16::from(q.rd) << 8 | 0x0080 | u16::from(q.cd) << 4 | (rcode & 0xf);
    out.extend_from_slice(&flags.to_be_bytes());
    out.extend_from_slice(&[0, 1, 0, 0, 0, 0, 0, 0]);
    out.extend_from_slice(&pkt[HEADER..q.question_end]);
}

/// Set answer, authority and additional counts.
pub fn set_counts(out: &mut [u8], an: u16, ns: u16, ar: u16) {
    out[6..8].copy_from_slice(&an.to_be_bytes());
    out[8..10].copy_from_slice(&ns.to_be_bytes());
    out[10..12].copy_from_slice(&ar.to_be_bytes());
}

/// Append our OPT record if the request had one (echoing DO).
pub fn push_opt(out: &mut Vec<u8>, q: &Query) -> u16 {
    if !q.edns {
        return 0;
    }
    out.push(0);
    out.extend_from_slice(&41u16.to_be_bytes());
    out.extend_from_slice(&q.advertise.to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    out.extend_from_slice(&(if q.dnssec_ok { 0x8000u16 } else { 0 }).to_be_bytes());
    out.extend_from_slice(&[0, 0]);
    1
}

/// Add an Extended DNS Error (RFC 8914) to the response just written by
/// [`error_response`], [`negative_response`] or [`address_response`]: their OPT record
/// (present only if the request had one) is the last thing in `out`, with empty RDATA, so
/// the option goes at the end and the OPT's RDLEN (the last two bytes) is set to its size.
pub fn push_ede(out: &mut Vec<u8>, q: &Query, ede: Option<Ede<'_>>) {
    let Some(ede) = ede else { return };
    if !q.edns || out.len() < HEADER + 11 {
        return;
    }
    let rdlen_at = out.len() - 2;
    let start = out.len();
    ede.write(out);
    let len = u16::try_from(out.len() - start).unwrap_or(0);
    out[rdlen_at..rdlen_at + 2].copy_from_slice(&len.to_be_bytes());
}

/// A rate-limited REFUSED answer that slips through: no records, TC set, so a genuine
/// client retries over TCP while a spoofed flood's victim gets only a small packet.
pub fn slip_response(out: &mut Vec<u8>, pkt: &[u8], q: &Query) {
    error_response(out, pkt, q, rcode::REFUSED);
    out[2] |= 0x02;
}

/// A header-only answer (REFUSED and the like).
pub fn error_response(out: &mut Vec<u8>, pkt: &[u8], q: &Query, rcode: u16) {
    begin_response(out, pkt, q, rcode);
    let ar = push_opt(out, q);
    set_counts(out, 0, 0, ar);
}

/// Wire form of `chaperone.invalid.` and `hostmaster.chaperone.invalid.` as the SOA's
/// MNAME and RNAME (the RNAME points back into the MNAME).
const MNAME: &[u8] = b"\x09chaperone\x07invalid\x00";

/// A negative answer (NXDOMAIN, or NODATA with `rcode::NOERROR`) carrying an SOA owned by
/// the last `zone_labels` labels of the question name (0: the whole name), so clients
/// cache the block negatively for `ttl` seconds.
pub fn negative_response(
    out: &mut Vec<u8>,
    pkt: &[u8],
    q: &Query,
    rcode: u16,
    zone_labels: u8,
    ttl: u32,
) {
    begin_response(out, pkt, q, rcode);
    let skip = if zone_labels == 0 || zone_labels >= q.labels {
        0
    } else {
        q.labels - zone_labels
    };
    let owner = q.label_offsets[skip as usize] as u16;
    out.extend_from_slice(&(0xc000 | owner).to_be_bytes());
    out.extend_from_slice(&6u16.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    let rdlen_at = out.len();
    out.extend_from_slice(&[0, 0]);
    let mname_at = out.len() as u16;
    out.extend_from_slice(MNAME);
    out.extend_from_slice(b"\x0ahostmaster");
    out.extend_from_slice(&(0xc000 | mname_at).to_be_bytes());
    for v in [1u32, 3600, 600, 86400, ttl] {
        out.extend_from_slice(&v.to_be_bytes());
    }
    let rdlen = (out.len() - rdlen_at - 2) as u16;
    out[rdlen_at..rdlen_at + 2].copy_from_slice(&rdlen.to_be_bytes());
    let ar = push_opt(out, q);
    set_counts(out, 0, 1, ar);
}

/// A block-page answer: the question name pointing at an address (A with `v4`, AAAA with
/// `v6`; exactly one is given).
pub fn address_response(
    out: &mut Vec<u8>,
    pkt: &[u8],
    q: &Query,
    v4: Option<Ipv4Addr>,
    v6: Option<Ipv6Addr>,
    ttl: u32,
) {
    let octets4;
    let octets6;
    let (rtype, data): (u16, &[u8]) = match (v4, v6) {
        (Some(ip), _) => {
            octets4 = ip.octets();
            (1, &octets4)
        }
        (None, Some(ip)) => {
            octets6 = ip.octets();
            (28, &octets6)
        }
        (None, None) => return negative_response(out, pkt, q, rcode::NOERROR, 0, ttl),
    };
    begin_response(out, pkt, q, rcode::NOERROR);
    out.extend_from_slice(&0xc00cu16.to_be_bytes());
    out.extend_from_slice(&rtype.to_be_bytes());
    out.extend_from_slice(&1u16.to_be_bytes());
    out.extend_from_slice(&ttl.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    let ar = push_opt(out, q);
    set_counts(out, 1, 0, ar);
}

/// Offsets and values of the TTL fields of every record in a response (answer, authority
/// and additional sections, except OPT), so a cached response can be served with its TTLs
/// counted down. None if the message cannot be walked.
pub fn ttl_fields(msg: &[u8]) -> Option<Vec<(u16, u32)>> {
    let (qd, an, ns, ar) = (
        u16_at(msg, 4)?,
        u16_at(msg, 6)?,
        u16_at(msg, 8)?,
        u16_at(msg, 10)?,
    );
    let mut pos = HEADER;
    for _ in 0..qd {
        pos = skip_name(msg, pos)? + 4;
    }
    let mut out = Vec::with_capacity(usize::from(an + ns + ar));
    for _ in 0..(u32::from(an) + u32::from(ns) + u32::from(ar)) {
        pos = skip_name(msg, pos)?;
        let rtype = u16_at(msg, pos)?;
        let ttl_at = pos + 4;
        let ttl = u32::from_be_bytes([
            *msg.get(ttl_at)?,
            *msg.get(ttl_at + 1)?,
            *msg.get(ttl_at + 2)?,
            *msg.get(ttl_at + 3)?,
        ]);
        let rdlen = u16_at(msg, pos + 8)? as usize;
        if rtype != 41 {
            out.push((u16::try_from(ttl_at).ok()?, ttl));
        }
        pos += 10 + rdlen;
    }
    (pos == msg.len()).then_some(out)
}

/// Skip a (possibly compressed) name; returns the offset after it.
fn skip_name(msg: &[u8], mut pos: usize) -> Option<usize> {
    loop {
        let len = *msg.get(pos)?;
        match len {
            0 => return Some(pos + 1),
            l if l & 0xc0 == 0xc0 => return Some(pos + 2),
            l if l & 0xc0 == 0 => pos += 1 + l as usize,
            _ => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use hickory_proto::op::{Edns, Message, MessageType, OpCode, Query as HQuery, ResponseCode};
    use hickory_proto::rr::rdata::opt::EdnsOption;
    use hickory_proto::rr::{Name, RData, RecordType};
    use hickory_proto::serialize::binary::BinEncodable;

    fn query(name: &str, qtype: RecordType, edns: bool) -> Vec<u8> {
        let mut m = Message::new(0x1234, MessageType::Query, OpCode::Query);
        m.metadata.recursion_desired = true;
        m.add_query(HQuery::query(Name::from_ascii(name).unwrap(), qtype));
        if edns {
            let mut e = Edns::new();
            e.set_max_payload(4096);
            e.set_dnssec_ok(true);
            e.options_mut().insert(EdnsOption::Unknown(
                MAC_OPTION,
                vec![2, 0, 0x5e, 0x10, 0, 1],
            ));
            m.edns = Some(e);
        }
        m.to_bytes().unwrap()
    }

    #[test]
    fn parses_the_common_query_shape() {
        let pkt = query("WWW.Example.test.", RecordType::AAAA, true);
        let q = parse_query(&pkt).unwrap();
        assert_eq!(q.id, 0x1234);
        assert!(q.rd && q.edns && q.dnssec_ok);
        assert_eq!(q.payload, 4096);
        assert_eq!(q.qtype, 28);
        assert_eq!(q.mac, Some([2, 0, 0x5e, 0x10, 0, 1]));
        assert_eq!(q.labels, 3);
        assert_eq!(q.wire_name(), b"\x03www\x07example\x04test\x00");
        assert_eq!(q.key().unwrap().as_bytes(), b"test.example.www");
        let plain = parse_query(&query("a.test.", RecordType::A, false)).unwrap();
        assert!(!plain.edns);
        assert_eq!(plain.payload, 512);
    }

    #[test]
    fn unusual_messages_take_the_slow_path() {
        assert!(parse_query(&[0; 5]).is_none());
        let mut resp = query("a.test.", RecordType::A, false);
        resp[2] |= 0x80;
        assert!(parse_query(&resp).is_none(), "responses");
        let mut status = query("a.test.", RecordType::A, false);
        status[2] |= 2 << 3;
        assert!(parse_query(&status).is_none(), "other opcodes");
        let mut trailing = query("a.test.", RecordType::A, false);
        trailing.push(0);
        assert!(parse_query(&trailing).is_none(), "trailing garbage");
        assert!(
            parse_query(&query(".", RecordType::NS, false)).is_none(),
            "the root"
        );
    }

    fn decode(b: &[u8]) -> Message {
        Message::from_vec(b).expect("our response decodes")
    }

    #[test]
    fn written_responses_decode_as_intended() {
        let pkt = query("x.Ads.example.test.", RecordType::A, true);
        let q = parse_query(&pkt).unwrap();
        let mut out = Vec::new();
        negative_response(&mut out, &pkt, &q, rcode::NXDOMAIN, 3, 60);
        let m = decode(&out);
        assert_eq!(m.metadata.id, 0x1234);
        assert_eq!(m.metadata.response_code, ResponseCode::NXDomain);
        assert!(m.metadata.recursion_available && m.metadata.recursion_desired);
        assert_eq!(
            m.queries[0].name().to_string(),
            "x.Ads.example.test.",
            "question echoed as asked"
        );
        let soa = &m.authorities[0];
        assert_eq!(soa.name.to_string().to_lowercase(), "ads.example.test.");
        assert!(
            matches!(&soa.data, RData::SOA(s) if s.minimum == 60 && s.rname.to_string() == "hostmaster.chaperone.invalid.")
        );
        assert!(m.edns.as_ref().unwrap().flags().dnssec_ok);
        assert_eq!(ttl_fields(&out).unwrap().len(), 1);

        address_response(
            &mut out,
            &pkt,
            &q,
            Some("192.0.2.200".parse().unwrap()),
            None,
            60,
        );
        let m = decode(&out);
        assert!(
            matches!(m.answers[0].data, RData::A(a) if a.0 == std::net::Ipv4Addr::new(192, 0, 2, 200))
        );
        assert_eq!(
            ttl_fields(&out).unwrap(),
            vec![(u16::try_from(out.len() - 11 - 4 - 2 - 4).unwrap(), 60)]
        );

        error_response(&mut out, &pkt, &q, rcode::REFUSED);
        assert_eq!(decode(&out).metadata.response_code, ResponseCode::Refused);
    }
}
