//! RADIUS accounting packets (RFC 2865 §3 and §5, RFC 2866 §3 and §5, RFC 6911 for
//! Framed-IPv6-Address): the header and its bounds, the Request Authenticator check, the
//! attributes Chaperone uses, and the Accounting-Response.
//!
//! Pure functions over bytes: no I/O, no state. Every length is checked before it is used,
//! so a packet from anyone can at worst be refused.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use md5::{Digest, Md5};

/// Smallest RADIUS packet: the header alone.
pub const MIN_LEN: usize = 20;
/// Largest RADIUS packet (RFC 2865 §3).
pub const MAX_LEN: usize = 4096;
/// Accounting-Request.
pub const ACCOUNTING_REQUEST: u8 = 4;
/// Accounting-Response.
pub const ACCOUNTING_RESPONSE: u8 = 5;
/// Most addresses taken from one packet (one IPv4, several IPv6).
pub const MAX_ADDRESSES: usize = 8;

const USER_NAME: u8 = 1;
const FRAMED_IP_ADDRESS: u8 = 8;
const SESSION_TIMEOUT: u8 = 27;
const CALLING_STATION_ID: u8 = 31;
const ACCT_STATUS_TYPE: u8 = 40;
const ACCT_SESSION_ID: u8 = 44;
const ACCT_INTERIM_INTERVAL: u8 = 85;
const FRAMED_IPV6_PREFIX: u8 = 97;
const FRAMED_IPV6_ADDRESS: u8 = 168;

/// Why a datagram is not a usable Accounting-Request.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PacketError {
    /// Shorter than the header, or longer than [`MAX_LEN`].
    #[error("datagram of {0} bytes is outside the 20 to 4096 of a RADIUS packet")]
    Size(usize),
    /// The Length field disagrees with the datagram.
    #[error("Length field {0} is outside the datagram")]
    Length(usize),
    /// Not an Accounting-Request.
    #[error("code {0} is not an Accounting-Request")]
    Code(u8),
    /// An attribute runs past the end or has a length its type cannot have.
    #[error("attribute {0} is malformed")]
    Attribute(u8),
}

/// An Accounting-Request whose header is well formed (its authenticator not yet checked).
#[derive(Debug, Clone, Copy)]
pub struct Request<'a> {
    /// The packet, exactly Length bytes (padding beyond Length is dropped, RFC 2865 §3).
    bytes: &'a [u8],
}

/// Acct-Status-Type values Chaperone acts on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// A session began.
    Start,
    /// A session ended.
    Stop,
    /// A session goes on (renews its expiry).
    InterimUpdate,
    /// The NAS (re)started: none of its old sessions exist any more.
    AccountingOn,
    /// The NAS is going down: none of its sessions will last.
    AccountingOff,
    /// Any other value (Failed, tunnel records...): acknowledged, nothing recorded.
    Other(u32),
}

impl Status {
    fn from_u32(v: u32) -> Self {
        match v {
            1 => Self::Start,
            2 => Self::Stop,
            3 => Self::InterimUpdate,
            7 => Self::AccountingOn,
            8 => Self::AccountingOff,
            other => Self::Other(other),
        }
    }
}

/// The attributes of an Accounting-Request that name a user on an address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Accounting {
    /// Acct-Status-Type (None if missing, which RFC 2866 forbids).
    pub status: Option<Status>,
    /// User-Name, control characters removed.
    pub user: Option<String>,
    /// Framed-IP-Address, Framed-IPv6-Address and /128 Framed-IPv6-Prefix values (at most
    /// [`MAX_ADDRESSES`]).
    pub addresses: Vec<IpAddr>,
    /// Calling-Station-Id read as a MAC address, if it is one.
    pub mac: Option<[u8; 6]>,
    /// Acct-Session-Id, control characters removed.
    pub session_id: Option<String>,
    /// Acct-Interim-Interval, seconds.
    pub interim_interval: Option<u32>,
    /// Session-Timeout, seconds.
    pub session_timeout: Option<u32>,
}

impl<'a> Request<'a> {
    /// Check the header of `datagram`: size bounds, Length field, code.
    pub fn parse(datagram: &'a [u8]) -> Result<Self, PacketError> {
        if !(MIN_LEN..=MAX_LEN).contains(&datagram.len()) {
            return Err(PacketError::Size(datagram.len()));
        }
        let len = usize::from(u16::from_be_bytes([datagram[2], datagram[3]]));
        if !(MIN_LEN..=datagram.len()).contains(&len) {
            return Err(PacketError::Length(len));
        }
        if datagram[0] != ACCOUNTING_REQUEST {
            return Err(PacketError::Code(datagram[0]));
        }
        Ok(Self {
            bytes: &datagram[..len],
        })
    }

    /// The Identifier, copied into the response.
    pub fn identifier(&self) -> u8 {
        self.bytes[1]
    }

    /// Whether the Request Authenticator is MD5(Code + Identifier + Length + 16 zero
    /// octets + Attributes + Secret) (RFC 2866 §3): the packet came from a NAS that knows
    /// the shared secret, unchanged.
    pub fn verify(&self, secret: &[u8]) -> bool {
        let mut h = Md5::new();
        h.update(&self.bytes[..4]);
        h.update([0u8; 16]);
        h.update(&self.bytes[MIN_LEN..]);
        h.update(secret);
        let want: [u8; 16] = h.finalize().into();
        let got = &self.bytes[4..MIN_LEN];
        want.iter().zip(got).fold(0u8, |acc, (a, b)| acc | (a ^ b)) == 0
    }

    /// The Accounting-Response to this request: no attributes, Response Authenticator
    /// MD5(Code + Identifier + Length + Request Authenticator + Secret) (RFC 2866 §3).
    pub fn response(&self, secret: &[u8]) -> [u8; MIN_LEN] {
        let mut out = [0u8; MIN_LEN];
        out[0] = ACCOUNTING_RESPONSE;
        out[1] = self.identifier();
        out[2..4].copy_from_slice(&(MIN_LEN as u16).to_be_bytes());
        let mut h = Md5::new();
        h.update(&out[..4]);
        h.update(&self.bytes[4..MIN_LEN]);
        h.update(secret);
        out[4..].copy_from_slice(&h.finalize());
        out
    }

    /// Read the attributes. Unknown ones are skipped; a known one with the wrong length,
    /// or any that runs past the packet, makes the packet malformed.
    pub fn attributes(&self) -> Result<Accounting, PacketError> {
        let mut acct = Accounting::default();
        let mut rest = &self.bytes[MIN_LEN..];
        while !rest.is_empty() {
            let kind = rest[0];
            let len = rest.get(1).map_or(0, |l| usize::from(*l));
            if len < 2 || len > rest.len() {
                return Err(PacketError::Attribute(kind));
            }
            let value = &rest[2..len];
            read_attribute(&mut acct, kind, value).ok_or(PacketError::Attribute(kind))?;
            rest = &rest[len..];
        }
        Ok(acct)
    }
}

/// Fold one attribute into `acct`; None if its value cannot be of its type. The first of a
/// repeated single-valued attribute wins.
fn read_attribute(acct: &mut Accounting, kind: u8, value: &[u8]) -> Option<()> {
    match kind {
        USER_NAME => set_first(&mut acct.user, text(value)?),
        ACCT_SESSION_ID => set_first(&mut acct.session_id, text(value)?),
        CALLING_STATION_ID if acct.mac.is_none() => {
            acct.mac = std::str::from_utf8(value).ok().and_then(parse_mac);
        }
        CALLING_STATION_ID => {}
        ACCT_STATUS_TYPE => set_first(&mut acct.status, Status::from_u32(int(value)?)),
        ACCT_INTERIM_INTERVAL => set_first(&mut acct.interim_interval, int(value)?),
        SESSION_TIMEOUT => set_first(&mut acct.session_timeout, int(value)?),
        FRAMED_IP_ADDRESS => {
            let ip = Ipv4Addr::from(<[u8; 4]>::try_from(value).ok()?);
            // 255.255.255.255 / .254 ask the NAS to pick one (RFC 2865 §5.8): not an address.
            if !ip.is_unspecified() && ip.octets()[..3] != [255, 255, 255] {
                push_address(acct, IpAddr::V4(ip));
            }
        }
        FRAMED_IPV6_ADDRESS => {
            let ip = Ipv6Addr::from(<[u8; 16]>::try_from(value).ok()?);
            push_address(acct, IpAddr::V6(ip));
        }
        FRAMED_IPV6_PREFIX => {
            // Reserved, Prefix-Length, then the prefix (RFC 3162 §2.3). Only a /128 names
            // one address; a shared prefix cannot name a user.
            let (&plen, prefix) = value.get(1..)?.split_first()?;
            if plen > 128 || prefix.len() > 16 {
                return None;
            }
            if plen == 128 && prefix.len() == 16 {
                let ip = Ipv6Addr::from(<[u8; 16]>::try_from(prefix).ok()?);
                push_address(acct, IpAddr::V6(ip));
            }
        }
        _ => {}
    }
    Some(())
}

fn set_first<T>(slot: &mut Option<T>, v: T) {
    if slot.is_none() {
        *slot = Some(v);
    }
}

fn push_address(acct: &mut Accounting, ip: IpAddr) {
    if acct.addresses.len() < MAX_ADDRESSES && !acct.addresses.contains(&ip) {
        acct.addresses.push(ip);
    }
}

/// A 4-octet integer attribute.
fn int(value: &[u8]) -> Option<u32> {
    Some(u32::from_be_bytes(value.try_into().ok()?))
}

/// A text attribute: at least one octet (RFC 2865 §5), any bytes, read as UTF-8 with
/// invalid sequences replaced and control characters removed (it ends up in logs).
fn text(value: &[u8]) -> Option<String> {
    if value.is_empty() {
        return None;
    }
    Some(
        String::from_utf8_lossy(value)
            .chars()
            .filter(|c| !c.is_control())
            .collect(),
    )
}

/// A Calling-Station-Id as a MAC address, in the forms NASes send: `AA-BB-CC-DD-EE-FF`
/// (RFC 3580 §3.21), `aa:bb:cc:dd:ee:ff`, Cisco's `aabb.ccdd.eeff`, or twelve bare hex
/// digits. Anything else (a phone number, an IP address) is not a MAC.
pub fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let s = s.trim();
    let hex: String = match s.len() {
        17 => {
            let sep = s.as_bytes()[2];
            if sep != b':' && sep != b'-' {
                return None;
            }
            let parts: Vec<&str> = s.split(char::from(sep)).collect();
            if parts.len() != 6 || parts.iter().any(|p| p.len() != 2) {
                return None;
            }
            parts.concat()
        }
        14 => {
            let parts: Vec<&str> = s.split('.').collect();
            if parts.len() != 3 || parts.iter().any(|p| p.len() != 4) {
                return None;
            }
            parts.concat()
        }
        12 => s.to_owned(),
        _ => return None,
    };
    let mut mac = [0u8; 6];
    hex::decode_to_slice(&hex, &mut mac).ok()?;
    Some(mac)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An Accounting-Request with `attrs`, signed with `secret` (the same construction as
    /// `verify`, written out separately from the RFC's wording).
    fn signed(id: u8, attrs: &[u8], secret: &[u8]) -> Vec<u8> {
        let len = (20 + attrs.len()) as u16;
        let mut p = vec![4, id];
        p.extend_from_slice(&len.to_be_bytes());
        p.extend_from_slice(&[0; 16]);
        p.extend_from_slice(attrs);
        let mut input = p.clone();
        input.extend_from_slice(secret);
        let digest = Md5::digest(&input);
        p[4..20].copy_from_slice(&digest);
        p
    }

    fn attr(kind: u8, value: &[u8]) -> Vec<u8> {
        let mut a = vec![kind, (value.len() + 2) as u8];
        a.extend_from_slice(value);
        a
    }

    /// A vector computed with Python's hashlib, independently of this code: the request
    /// authenticator is `md5(bytes.fromhex("0407001a" + "00"*16 + "280600000001") +
    /// b"testing123")`, the response's `md5(bytes.fromhex("05070014") + that + b"testing123")`.
    #[test]
    fn the_request_authenticator_matches_an_independent_vector() {
        let mut p = hex::decode("0407001a").unwrap();
        p.extend_from_slice(&hex::decode("599538e50c652eabcc714c72a3e77b72").unwrap());
        p.extend_from_slice(&[40, 6, 0, 0, 0, 1]);
        let req = Request::parse(&p).unwrap();
        assert!(req.verify(b"testing123"));
        assert!(!req.verify(b"testing124"));
        // Response: MD5(05 07 0014 + request authenticator + secret).
        let resp = req.response(b"testing123");
        assert_eq!(
            hex::encode(resp),
            "050700144e5c288bc82eec797e9c7d960764fe1d"
        );
    }

    #[test]
    fn a_signed_request_verifies_and_its_attributes_are_read() {
        let mut attrs = attr(40, &1u32.to_be_bytes());
        attrs.extend(attr(1, b"j.smith@pupils.example.org"));
        attrs.extend(attr(8, &[10, 0, 0, 77]));
        attrs.extend(attr(168, &"fd00::77".parse::<Ipv6Addr>().unwrap().octets()));
        let mut prefix = vec![0, 128];
        prefix.extend("fd00::78".parse::<Ipv6Addr>().unwrap().octets());
        attrs.extend(attr(97, &prefix));
        attrs.extend(attr(97, &[0, 64, 0xfd, 0, 0, 0, 0, 0, 0, 1]));
        attrs.extend(attr(31, b"02-00-5E-10-00-77"));
        attrs.extend(attr(44, b"s\x001"));
        attrs.extend(attr(85, &600u32.to_be_bytes()));
        attrs.extend(attr(26, &[0, 0, 0, 9, 1, 3, b'x'])); // vendor-specific: skipped
        let p = signed(9, &attrs, b"secret");
        let req = Request::parse(&p).unwrap();
        assert!(req.verify(b"secret"));
        let a = req.attributes().unwrap();
        assert_eq!(a.status, Some(Status::Start));
        assert_eq!(a.user.as_deref(), Some("j.smith@pupils.example.org"));
        assert_eq!(
            a.addresses,
            ["10.0.0.77", "fd00::77", "fd00::78"]
                .map(|s| s.parse::<IpAddr>().unwrap())
                .to_vec()
        );
        assert_eq!(a.mac, Some([2, 0, 0x5e, 0x10, 0, 0x77]));
        assert_eq!(
            a.session_id.as_deref(),
            Some("s1"),
            "control characters dropped"
        );
        assert_eq!(a.interim_interval, Some(600));
    }

    #[test]
    fn bad_sizes_lengths_codes_and_attributes_are_refused() {
        assert_eq!(Request::parse(&[4; 19]).err(), Some(PacketError::Size(19)));
        assert_eq!(
            Request::parse(&[4; 4097]).err(),
            Some(PacketError::Size(4097))
        );
        let mut p = signed(1, &attr(40, &[0, 0, 0, 2]), b"s");
        p[3] = 200; // Length beyond the datagram
        assert_eq!(Request::parse(&p).err(), Some(PacketError::Length(200)));
        let mut p = signed(1, &[], b"s");
        p[0] = 1;
        assert_eq!(Request::parse(&p).err(), Some(PacketError::Code(1)));
        for bad in [
            vec![40, 5, 0, 0, 2],      // integer of 3 octets
            vec![1, 1],                // length below 2
            vec![8, 6, 10, 0],         // runs past the end
            vec![1, 2],                // empty User-Name
            vec![97, 4, 0, 129, 0, 0], // prefix length > 128
        ] {
            let p = signed(1, &bad, b"s");
            let req = Request::parse(&p).unwrap();
            assert!(req.attributes().is_err(), "{bad:?}");
        }
        // Padding after Length is ignored.
        let mut p = signed(1, &attr(40, &[0, 0, 0, 2]), b"s");
        p.extend_from_slice(&[0xff; 7]);
        let req = Request::parse(&p).unwrap();
        assert!(req.verify(b"s"));
        assert_eq!(req.attributes().unwrap().status, Some(Status::Stop));
    }

    #[test]
    fn placeholder_framed_addresses_are_not_addresses() {
        for ip in [[255, 255, 255, 255], [255, 255, 255, 254], [0, 0, 0, 0]] {
            let p = signed(1, &attr(8, &ip), b"s");
            let a = Request::parse(&p).unwrap().attributes().unwrap();
            assert!(a.addresses.is_empty(), "{ip:?}");
        }
    }

    #[test]
    fn mac_forms() {
        let m = Some([0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff]);
        for s in [
            "AA-BB-CC-DD-EE-FF",
            "aa:bb:cc:dd:ee:ff",
            "aabb.ccdd.eeff",
            "AABBCCDDEEFF",
            " aa-bb-cc-dd-ee-ff ",
        ] {
            assert_eq!(parse_mac(s), m, "{s}");
        }
        for s in [
            "aa:bb-cc:dd:ee:ff",
            "aa:bb:cc:dd:ee:fg",
            "aabb.ccdd.eef",
            "01632960000",
            "10.0.0.1",
            "aa:bb:cc:dd:ee:ff:00",
            "aaa:bb:cc:dd:ee:f",
        ] {
            assert_eq!(parse_mac(s), None, "{s}");
        }
    }
}
