//! ISC dhcpd's `dhcpd.leases`: a journal of `lease ADDRESS { … }` blocks, each statement
//! ending in `;`. dhcpd appends a block whenever a lease changes and rewrites the file from
//! time to time, so the **last** block for an address is its state: only a block with
//! `binding state active` (or, from old servers, no binding state at all) names a device;
//! `free`, `expired`, `released`, `abandoned`… end the lease.
//!
//! Read per block: `hardware ethernet MAC;`, `client-hostname "NAME";` (octal escapes for
//! bytes outside ASCII), `ends W YYYY/MM/DD HH:MM:SS;` (UTC), `ends epoch N;`
//! (`db-time-format local`) or `ends never;`. Other top-level blocks (`host`, `failover
//! peer`, `ia-na` of dhcpd -6) and statements are skipped. A block that cannot be read (bad
//! address, unterminated at the end of a half-written file) is counted and skipped.

use std::net::IpAddr;
use std::sync::Arc;

use super::{Lease, Parsed, clean_hostname, parse_mac};

/// Most words kept in one statement (dhcpd writes fewer than ten).
const MAX_WORDS: usize = 32;

#[derive(Debug, PartialEq, Eq)]
enum Tok<'a> {
    Word(&'a str),
    Str(String),
    Open,
    Close,
    Semi,
}

impl Tok<'_> {
    fn text(&self) -> &str {
        match self {
            Tok::Word(w) => w,
            Tok::Str(s) => s,
            _ => "",
        }
    }
}

/// A streaming tokenizer: whitespace and `#` comments skipped, strings unescaped.
struct Tokens<'a> {
    rest: &'a str,
}

impl<'a> Iterator for Tokens<'a> {
    type Item = Tok<'a>;

    fn next(&mut self) -> Option<Tok<'a>> {
        loop {
            self.rest = self.rest.trim_start();
            if let Some(comment) = self.rest.strip_prefix('#') {
                self.rest = comment.split_once('\n').map_or("", |(_, r)| r);
                continue;
            }
            break;
        }
        let c = self.rest.chars().next()?;
        let single = |t| (t, 1);
        let (tok, len) = match c {
            '{' => single(Tok::Open),
            '}' => single(Tok::Close),
            ';' => single(Tok::Semi),
            '"' => string(self.rest)?,
            _ => {
                let end = self
                    .rest
                    .find(|c: char| c.is_whitespace() || matches!(c, '{' | '}' | ';' | '"' | '#'))
                    .unwrap_or(self.rest.len());
                (Tok::Word(&self.rest[..end]), end)
            }
        };
        self.rest = &self.rest[len..];
        Some(tok)
    }
}

/// A quoted string at the start of `s`: its unescaped text and its length. None when
/// unterminated (the end of a half-written file).
fn string(s: &str) -> Option<(Tok<'static>, usize)> {
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 1;
    while i < b.len() {
        match b[i] {
            b'"' => return Some((Tok::Str(String::from_utf8_lossy(&out).into_owned()), i + 1)),
            b'\\' if i + 1 < b.len() => {
                let octal = b
                    .get(i + 1..i + 4)
                    .filter(|d| d.iter().all(|x| (b'0'..=b'7').contains(x)));
                match octal {
                    Some(d) => {
                        let v = d.iter().fold(0u32, |acc, x| acc * 8 + u32::from(x - b'0'));
                        out.push(u8::try_from(v).unwrap_or(b'?'));
                        i += 4;
                    }
                    None => {
                        out.push(b[i + 1]);
                        i += 2;
                    }
                }
            }
            x => {
                out.push(x);
                i += 1;
            }
        }
    }
    None
}

/// One statement: its words, and how it ended.
enum Stmt<'a> {
    /// `words ;`
    Simple(Vec<Tok<'a>>),
    /// `words {`
    Block(Vec<Tok<'a>>),
    /// `}`
    Close,
    /// End of text (with any words read before it).
    End(Vec<Tok<'a>>),
}

fn statement<'a>(t: &mut Tokens<'a>) -> Stmt<'a> {
    let mut words = Vec::new();
    loop {
        match t.next() {
            None => return Stmt::End(words),
            Some(Tok::Semi) => return Stmt::Simple(words),
            Some(Tok::Open) => return Stmt::Block(words),
            Some(Tok::Close) if words.is_empty() => return Stmt::Close,
            // `}` ends an unterminated statement and its block together.
            Some(Tok::Close) => return Stmt::Close,
            Some(w) if words.len() < MAX_WORDS => words.push(w),
            Some(_) => {}
        }
    }
}

/// Skip the rest of a block whose `{` was read. False if the text ended first.
fn skip_block(t: &mut Tokens<'_>) -> bool {
    let mut depth = 1usize;
    for tok in t.by_ref() {
        match tok {
            Tok::Open => depth += 1,
            Tok::Close => {
                depth -= 1;
                if depth == 0 {
                    return true;
                }
            }
            _ => {}
        }
    }
    false
}

/// Parse a `dhcpd.leases` text.
pub fn parse(text: &str, source: &Arc<str>) -> Parsed {
    let mut out = Parsed::default();
    let mut t = Tokens { rest: text };
    loop {
        match statement(&mut t) {
            Stmt::End(words) => {
                out.bad += usize::from(!words.is_empty());
                return out;
            }
            Stmt::Simple(_) => {}
            Stmt::Close => out.bad += 1,
            Stmt::Block(words) => {
                let is_lease = words.first().map(Tok::text) == Some("lease");
                if !is_lease {
                    if !skip_block(&mut t) {
                        out.bad += 1;
                    }
                    continue;
                }
                let ip = words
                    .get(1)
                    .map(Tok::text)
                    .and_then(|w| w.parse::<IpAddr>().ok());
                match (ip, lease_block(&mut t, source)) {
                    (Some(ip), Some(lease)) => out.set(ip, lease),
                    _ => out.bad += 1,
                }
            }
        }
    }
}

/// The statements of a `lease` block: the lease, or None inside if it is not active.
/// None outside if the block is unreadable.
fn lease_block(t: &mut Tokens<'_>, source: &Arc<str>) -> Option<Option<Lease>> {
    let mut lease = Lease {
        mac: None,
        hostname: None,
        expires: None,
        source: source.clone(),
    };
    let mut active = true;
    let mut ok = true;
    loop {
        let words = match statement(t) {
            Stmt::Close => break,
            Stmt::End(_) => return None,
            Stmt::Block(_) => {
                if !skip_block(t) {
                    return None;
                }
                continue;
            }
            Stmt::Simple(w) => w,
        };
        let w: Vec<&str> = words.iter().map(Tok::text).collect();
        match w.as_slice() {
            ["binding", "state", state] => active = *state == "active",
            ["hardware", "ethernet", mac] => match parse_mac(mac) {
                Some(m) => lease.mac = Some(m),
                None => ok = false,
            },
            ["client-hostname", name] => lease.hostname = clean_hostname(name),
            ["ends", "never"] => lease.expires = None,
            ["ends", rest @ ..] => match ends(rest) {
                Some(e) => lease.expires = Some(e),
                None => ok = false,
            },
            _ => {}
        }
    }
    ok.then_some(active.then_some(lease))
}

/// `W YYYY/MM/DD HH:MM:SS` (UTC) or `epoch N`, as Unix seconds.
fn ends(w: &[&str]) -> Option<i64> {
    match w {
        ["epoch", n] => n.parse().ok(),
        [_weekday, date, time] => {
            let dt = jiff::civil::DateTime::strptime("%Y/%m/%d %H:%M:%S", format!("{date} {time}"))
                .ok()?;
            Some(
                dt.to_zoned(jiff::tz::TimeZone::UTC)
                    .ok()?
                    .timestamp()
                    .as_second(),
            )
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LEASES: &str = r#"# The format of this file is documented in the dhcpd.leases(5) manual page.
# This lease file was written by isc-dhcp-4.4.3-P1

# authoring-byte-order entry is generated, DO NOT DELETE
authoring-byte-order little-endian;

server-duid "\000\001\000\001*;L]\002\000^\000\000\001";

lease 10.20.1.14 {
  starts 0 2026/11/29 07:30:00;
  ends 0 2026/11/29 19:30:00;
  cltt 0 2026/11/29 07:30:00;
  binding state active;
  next binding state free;
  rewind binding state free;
  hardware ethernet 02:00:5e:10:00:0e;
  uid "\001\002\000^\020\000\016";
  set vendor-class-identifier = "MSFT 5.0";
  client-hostname "ks2-laptop-14";
}
lease 10.20.1.15 {
  starts 0 2026/11/29 07:00:00;
  ends 0 2026/11/29 19:00:00;
  binding state active;
  hardware ethernet 02:00:5e:10:00:0f;
  client-hostname "old-name";
}
lease 10.20.1.15 {
  starts 0 2026/11/29 08:00:00;
  ends 0 2026/11/29 08:05:00;
  binding state free;
  hardware ethernet 02:00:5e:10:00:0f;
}
lease 10.20.1.16 {
  starts 0 2026/11/29 07:00:00;
  ends epoch 1795980000; # Sun Nov 29 19:20:00 2026
  binding state active;
  hardware ethernet 02:00:5e:10:00:10;
  client-hostname "Zo\303\253's iPad";
}
lease 10.20.1.17 {
  ends never;
  binding state active;
  hardware ethernet 02:00:5e:10:00:11;
}
host printer-1 {
  dynamic;
  hardware ethernet 02:00:5e:10:00:99;
  fixed-address 10.20.1.99;
}
lease not-an-address {
  binding state active;
}
lease 10.20.1.18 {
  starts 0 2026/11/29 07:00:00;
  binding state active;
  hardware ethernet 02:00:5e:10:00:12;
  client-hostname "half-writ"#;

    #[test]
    fn the_last_active_block_wins() {
        let p = parse(LEASES, &Arc::from("dhcpd.leases"));
        let get = |ip: &str| p.leases.get(&ip.parse::<IpAddr>().unwrap());
        let l = get("10.20.1.14").unwrap();
        assert_eq!(l.hostname.as_deref(), Some("ks2-laptop-14"));
        assert_eq!(l.mac, Some([2, 0, 0x5e, 0x10, 0, 0x0e]));
        assert_eq!(l.expires, Some(1_795_980_600));
        assert!(get("10.20.1.15").is_none(), "freed later");
        let ipad = get("10.20.1.16").unwrap();
        assert_eq!(ipad.hostname.as_deref(), Some("Zoë's iPad"));
        assert_eq!(ipad.expires, Some(1_795_980_000));
        let never = get("10.20.1.17").unwrap();
        assert_eq!((never.hostname.as_deref(), never.expires), (None, None));
        assert!(get("10.20.1.18").is_none(), "truncated block");
        assert!(get("10.20.1.99").is_none(), "host blocks are not leases");
        assert_eq!(p.bad, 2, "bad address and truncated block");
    }

    #[test]
    fn garbage_is_counted_not_fatal() {
        let p = parse("}}} lease { ;;; \"unterminated", &Arc::from("x"));
        assert!(p.leases.is_empty());
        assert!(p.bad > 0);
    }
}
