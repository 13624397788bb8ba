//! Extended DNS Errors (RFC 8914) for the answers Chaperone makes up: why a name is
//! blocked, or why a client is refused, in the one place that maps decisions to info-codes.
//!
//! The mapping (documented in the README):
//! - **15 Blocked** — the school's own block lists: a category blocked for the client's
//!   group ("blocked by Chaperone: gambling"; "blocked by Chaperone: gambling (CNAME
//!   target)" or "(answer address)" when response inspection found it in the answer). Illegal categories also get 15 but a fixed
//!   text, "blocked by school policy", that names nothing, as the block page does.
//! - **17 Filtered** — the filtering profile the client's group is enrolled in, rather than
//!   a list: an allow-only group (Key Stage 1) and a name not approved for it, and bypass
//!   prevention (the Firefox DoH canary, iCloud Private Relay).
//! - **18 Prohibited** — REFUSED for a client in no school network (RFC 8914 §4.19: "an
//!   unauthorized client").
//!
//! EXTRA-TEXT never carries personal data: no client address, device or group name.
//! It owns no wire layout but the option itself; the transports put it in their OPT
//! record, and only when the request carried EDNS (RFC 8914 §3). Writing it allocates
//! nothing, so the UDP fast path can use it.

use hickory_proto::rr::rdata::opt::EdnsOption;

use crate::policy::{BYPASS_NAMES, BlockReason, Decision, Policy, Via};

/// The EDNS option code of an Extended DNS Error.
pub const OPTION_CODE: u16 = 15;

/// Info-code 15: blocked by the operator's policy.
pub const BLOCKED: u16 = 15;
/// Info-code 17: filtered as the client's profile asks.
pub const FILTERED: u16 = 17;
/// Info-code 18: the client is not allowed to use this resolver.
pub const PROHIBITED: u16 = 18;

/// The fixed text for illegal categories: it names nothing (as the block page).
pub const ILLEGAL_TEXT: &str = "blocked by school policy";

/// One Extended DNS Error: an info-code and EXTRA-TEXT, the text kept as borrowed parts
/// (joined on the wire) so building it allocates nothing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ede<'a> {
    /// INFO-CODE.
    pub code: u16,
    parts: [&'a str; 3],
}

impl<'a> Ede<'a> {
    /// The EDE for a decision, or None for one that is not an error (allowed, rewritten).
    pub fn for_decision(policy: &'a Policy, decision: &Decision) -> Option<Ede<'a>> {
        let (code, parts) = match *decision {
            Decision::Refuse => (
                PROHIBITED,
                ["Chaperone answers school networks only", "", ""],
            ),
            Decision::Block { incident: true, .. } => (BLOCKED, [ILLEGAL_TEXT, "", ""]),
            Decision::Block {
                reason: BlockReason::Category(c),
                ..
            } if policy.is_illegal(c) => (BLOCKED, [ILLEGAL_TEXT, "", ""]),
            Decision::Block {
                reason: BlockReason::Category(c),
                via,
                ..
            } => (
                BLOCKED,
                [
                    "blocked by Chaperone: ",
                    policy.category_name(c),
                    match via {
                        Via::Name => "",
                        Via::Cname => " (CNAME target)",
                        Via::Address => " (answer address)",
                    },
                ],
            ),
            Decision::Block {
                reason: BlockReason::NotApproved,
                ..
            } => (
                FILTERED,
                ["blocked by Chaperone: not on the approved list", "", ""],
            ),
            Decision::Block {
                reason: BlockReason::Bypass(i),
                ..
            } => (
                FILTERED,
                [
                    "blocked by Chaperone: bypass prevention (",
                    BYPASS_NAMES.get(usize::from(i)).map_or("bypass", |b| b.1),
                    ")",
                ],
            ),
            Decision::Allow(_) | Decision::Rewrite { .. } => return None,
        };
        Some(Ede { code, parts })
    }

    /// EXTRA-TEXT, joined.
    pub fn text(&self) -> String {
        self.parts.concat()
    }

    /// Length of the option data (info-code and text), cut to what an option can hold.
    fn data_len(&self) -> u16 {
        let text: usize = self.parts.iter().map(|p| p.len()).sum();
        u16::try_from(2 + text).unwrap_or(u16::MAX)
    }

    /// Append the whole option (code, length, info-code, text) to `out`.
    pub fn write(&self, out: &mut Vec<u8>) {
        let len = self.data_len();
        out.extend_from_slice(&OPTION_CODE.to_be_bytes());
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&self.code.to_be_bytes());
        let mut room = usize::from(len) - 2;
        for p in self.parts {
            let take = p.len().min(room);
            out.extend_from_slice(&p.as_bytes()[..take]);
            room -= take;
        }
    }

    /// The option as hickory carries it (it has no EDE type of its own).
    pub fn to_option(&self) -> EdnsOption {
        let mut data = Vec::with_capacity(usize::from(self.data_len()));
        data.extend_from_slice(&self.code.to_be_bytes());
        data.extend_from_slice(self.text().as_bytes());
        EdnsOption::Unknown(OPTION_CODE, data)
    }
}

/// The info-code and EXTRA-TEXT of an EDE option's data, as a client reads it.
pub fn parse(data: &[u8]) -> Option<(u16, String)> {
    let code = u16::from_be_bytes([*data.first()?, *data.get(1)?]);
    let text = std::str::from_utf8(data.get(2..)?).ok()?;
    Some((code, text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn written_and_hickory_options_carry_the_same_bytes() {
        let e = Ede {
            code: BLOCKED,
            parts: ["blocked by Chaperone: ", "gambling", ""],
        };
        let mut out = Vec::new();
        e.write(&mut out);
        let EdnsOption::Unknown(code, data) = e.to_option() else {
            panic!("an unknown option");
        };
        assert_eq!(code, OPTION_CODE);
        assert_eq!(&out[..2], &OPTION_CODE.to_be_bytes());
        assert_eq!(
            usize::from(u16::from_be_bytes([out[2], out[3]])),
            data.len()
        );
        assert_eq!(&out[4..], &data[..]);
        assert_eq!(
            parse(&data),
            Some((15, "blocked by Chaperone: gambling".to_owned()))
        );
    }
}
