//! List file formats: plain domain lists, hosts files, Adblock-style rules, RPZ zone files
//! and UT1-style category folders, all read into [`Entry`] values.
//!
//! This module owns the syntax of list files and nothing else: it does not dedupe, merge
//! categories or decide precedence (that is the bundle and `policy`).
//!
//! Real lists are messy (CRLF, inline comments, IP entries, cosmetic filter rules, hosts
//! headers), so parsing never stops at a bad line: every rejected line is reported as
//! `file:line: reason: text`, well-formed lines with no DNS meaning are counted as
//! `unsupported`, and the rest become entries. What each syntax means (`lists/README.md`
//! says the same for list maintainers):
//!
//! | syntax | format | kind | action |
//! |---|---|---|---|
//! | `example.com` | domains, ut1 | source default (subtree) | block |
//! | `.example.com` | domains | subtree | block |
//! | `*.example.com` | domains | below (subdomains only) | block |
//! | `0.0.0.0 example.com` | hosts | source default | block |
//! | `\|\|example.com^` | adblock | subtree | block |
//! | `@@\|\|example.com^` | adblock | subtree | pass |
//! | `example.com CNAME .` | rpz | exact | block (NXDOMAIN) |
//! | `*.example.com CNAME .` | rpz | below | block |
//! | `example.com CNAME *.` | rpz | exact | NODATA |
//! | `example.com CNAME rpz-passthru.` | rpz | exact | pass |
//! | `example.com CNAME rpz-drop.` | rpz | exact | block |

use std::net::IpAddr;
use std::path::{Path, PathBuf};

use super::key::normalize_domain;

/// How an entry matches query names.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum MatchKind {
    /// Only the name itself.
    Exact,
    /// The name and every name below it.
    Subtree,
    /// Only names strictly below it (`*.example.com`).
    Below,
}

/// What a listed name asks for.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize,
)]
pub enum Action {
    /// Blocked (NXDOMAIN or the group's block answer).
    Block,
    /// NOERROR with no records (RPZ `CNAME *.`).
    NoData,
    /// Explicitly allowed (RPZ `rpz-passthru.`, Adblock `@@||d^`).
    Pass,
}

/// One list entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Name normalised by [`normalize_domain`].
    pub name: String,
    /// How it matches.
    pub kind: MatchKind,
    /// What it asks for.
    pub action: Action,
}

/// One rejected line, reported as `file:line: reason: text`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LineError {
    /// The file.
    pub path: PathBuf,
    /// 1-based line number (for a multi-line RPZ record, the line it starts on).
    pub line: usize,
    /// The line (trimmed, at most 120 characters).
    pub text: String,
    /// Why it was rejected.
    pub reason: String,
}

impl std::fmt::Display for LineError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}: {}: {}",
            self.path.display(),
            self.line,
            self.reason,
            self.text
        )
    }
}

/// List file formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Format {
    /// Sniffed per file from its first lines.
    Auto,
    /// One name per line.
    Domains,
    /// `IP name...` lines.
    Hosts,
    /// Adblock-style `||name^` rules.
    Adblock,
    /// RPZ zone file.
    Rpz,
    /// A UT1-style folder of `<category>/domains` files ([`parse_ut1_dir`]); a single file
    /// in this format is read as [`Format::Domains`].
    Ut1,
}

/// The result of parsing one file.
#[derive(Debug, Default, Clone)]
pub struct Parsed {
    /// Entries, in file order (duplicates kept: the bundle builder counts them).
    pub entries: Vec<Entry>,
    /// Rejected lines.
    pub errors: Vec<LineError>,
    /// Comment lines, and lines that are boilerplate rather than entries (hosts-file
    /// `localhost`, RPZ SOA/NS/`$TTL`).
    pub comments: usize,
    /// Well-formed lines with no DNS meaning (cosmetic rules, RPZ local data).
    pub unsupported: usize,
}

/// Where a line came from, for error reports.
#[derive(Clone, Copy)]
struct At<'a> {
    path: &'a Path,
    line: usize,
    text: &'a str,
}

impl Parsed {
    /// Normalise `name` and keep it, or report why not.
    fn entry(&mut self, at: At<'_>, name: &str, kind: MatchKind, action: Action) {
        match normalize_domain(name) {
            Ok(name) => self.entries.push(Entry { name, kind, action }),
            Err(e) => self.bad(at, e.to_string()),
        }
    }

    fn bad(&mut self, at: At<'_>, reason: impl Into<String>) {
        self.errors.push(LineError {
            path: at.path.to_owned(),
            line: at.line,
            text: at.text.trim().chars().take(120).collect(),
            reason: reason.into(),
        });
    }
}

/// Parse the text of one list file. `default_kind` applies to plain entries (subtree
/// normally, exact when the source says `match = "exact"`); explicit syntax (`*.d`, `.d`,
/// `||d^`, RPZ owners) overrides it. RPZ ignores it: RPZ defines its own matching.
pub fn parse_text(path: &Path, text: &str, format: Format, default_kind: MatchKind) -> Parsed {
    // A UTF-8 byte-order mark (Windows editors) would otherwise spoil the first name.
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let format = match format {
        Format::Auto => sniff(text),
        other => other,
    };
    let mut out = Parsed::default();
    if format == Format::Rpz {
        rpz::parse(path, text, &mut out);
        return out;
    }
    for (i, raw) in text.lines().enumerate() {
        let at = At {
            path,
            line: i + 1,
            text: raw,
        };
        match format {
            Format::Hosts => hosts_line(&mut out, at, default_kind),
            Format::Adblock => adblock_line(&mut out, at),
            _ => domain_line(&mut out, at, default_kind),
        }
    }
    out
}

/// Read and parse one file. A file that is not UTF-8 is an `InvalidData` error naming the
/// file and the line of the first bad byte: guessing an encoding could turn a name into a
/// different, valid one.
pub fn parse_file(path: &Path, format: Format, default_kind: MatchKind) -> std::io::Result<Parsed> {
    let bytes = std::fs::read(path)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        let valid = e.utf8_error().valid_up_to();
        let line = 1 + e.as_bytes()[..valid]
            .iter()
            .filter(|&&b| b == b'\n')
            .count();
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("{}:{line}: not UTF-8 text", path.display()),
        )
    })?;
    Ok(parse_text(path, &text, format, default_kind))
}

/// A UT1-style folder: every immediate subfolder holding a `domains` file is a category
/// named after the folder, read as a plain domain list. Sorted by category.
///
/// UT1 ships aliases as symbolic links (`porn -> adult`, `ads -> publicite`); they are
/// skipped when reading every category, so each list is read once under its real name,
/// but an alias named in `only` is read under that name. `only`, if not empty, limits the
/// result to those categories, and one that is missing is an error naming it.
pub fn parse_ut1_dir(
    dir: &Path,
    only: &[String],
    default_kind: MatchKind,
) -> std::io::Result<Vec<(String, Parsed)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name().to_string_lossy().into_owned();
        let is_alias = entry.file_type()?.is_symlink();
        let wanted = if only.is_empty() {
            !is_alias
        } else {
            only.contains(&name)
        };
        let domains = entry.path().join("domains");
        if wanted && domains.is_file() {
            found.push((name, domains));
        }
    }
    found.sort();
    for want in only {
        if !found.iter().any(|(c, _)| c == want) {
            let folder = dir.join(want);
            let why = if !folder.is_dir() {
                "no such category folder"
            } else if folder.join("domains.xz").exists() || folder.join("domains.gz").exists() {
                "its domains file is compressed; decompress it first"
            } else {
                "the folder has no domains file"
            };
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                // The caller names `dir`.
                format!("UT1 category {want:?}: {why}"),
            ));
        }
    }
    found
        .into_iter()
        .map(
            |(c, p)| match parse_file(&p, Format::Domains, default_kind) {
                Ok(parsed) => Ok((c, parsed)),
                // The caller names `dir`; say which file inside it failed.
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => Err(e),
                Err(e) => Err(std::io::Error::new(
                    e.kind(),
                    format!("{}: {e}", p.display()),
                )),
            },
        )
        .collect()
}

/// Guess a file's format from its first 200 meaningful lines.
///
/// Directives and SOA records only occur in zone files, so one is enough for RPZ. Otherwise
/// each line votes for the syntax it looks like and the majority wins; on a tie the more
/// distinctive syntax (RPZ, Adblock, hosts) beats plain domains, whose lines are what
/// every other format's malformed lines also look like.
pub fn sniff(text: &str) -> Format {
    let mut votes = [0usize; 4]; // rpz, adblock, hosts, domains
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with(';'))
        .take(200)
    {
        let mut fields = line.split_whitespace();
        let first = fields.next().unwrap_or_default();
        let rest: Vec<&str> = fields.collect();
        let first_upper = first.to_ascii_uppercase();
        if matches!(first_upper.as_str(), "$ORIGIN" | "$TTL" | "$INCLUDE")
            || rest.iter().any(|f| f.eq_ignore_ascii_case("SOA"))
        {
            return Format::Rpz;
        }
        let slot = if rest.iter().any(|f| f.eq_ignore_ascii_case("CNAME")) {
            0
        } else if first.starts_with("||")
            || first.starts_with("@@")
            || first.starts_with('!')
            || first.starts_with("[Adblock")
            || line.contains("##")
        {
            1
        } else if !rest.is_empty() && parse_host_address(first).is_some() {
            2
        } else {
            3
        };
        votes[slot] += 1;
    }
    let formats = [Format::Rpz, Format::Adblock, Format::Hosts, Format::Domains];
    let mut best = 3;
    for (i, &n) in votes.iter().enumerate() {
        if n > votes[best] || (n == votes[best] && n > 0 && i < best) {
            best = i;
        }
    }
    formats[best]
}

/// Strip an inline `#` comment (hosts and domain lists) and surrounding whitespace.
fn strip_comment(line: &str) -> &str {
    line.split_once('#')
        .map_or(line, |(before, _)| before)
        .trim()
}

/// Plain domain lists and UT1 `domains` files. `#` starts a comment anywhere; `!` and `;`
/// at the start of a line are accepted as comments too, because exported lists use them.
fn domain_line(out: &mut Parsed, at: At<'_>, default_kind: MatchKind) {
    let line = strip_comment(at.text);
    if line.is_empty() || line.starts_with('!') || line.starts_with(';') {
        out.comments += 1;
        return;
    }
    if line.contains(char::is_whitespace) {
        let hint = if line
            .split_whitespace()
            .next()
            .is_some_and(|f| parse_host_address(f).is_some())
        {
            " (this looks like a hosts file: set format = \"hosts\")"
        } else {
            ""
        };
        out.bad(at, format!("expected one name per line{hint}"));
        return;
    }
    let (name, kind) = if let Some(rest) = line.strip_prefix("*.") {
        (rest, MatchKind::Below)
    } else if let Some(rest) = line.strip_prefix('.') {
        (rest, MatchKind::Subtree)
    } else {
        (line, default_kind)
    };
    out.entry(at, name, kind, Action::Block);
}

/// The address field of a hosts line; a zone suffix (`fe80::1%lo0`) is allowed.
fn parse_host_address(field: &str) -> Option<IpAddr> {
    field.split('%').next().unwrap_or(field).parse().ok()
}

/// Names every hosts file carries for the machine itself, not as blocks.
const HOSTS_BOILERPLATE: &[&str] = &[
    "localhost",
    "localhost.localdomain",
    "local",
    "broadcasthost",
    "ip6-localhost",
    "ip6-loopback",
    "ip6-localnet",
    "ip6-mcastprefix",
    "ip6-allnodes",
    "ip6-allrouters",
    "ip6-allhosts",
    "0.0.0.0",
];

/// Hosts files: `IP name [name...]`. Any address is accepted (blocklists use `0.0.0.0`,
/// `127.0.0.1`, `::` or `::1`): the address is dropped and the names blocked.
///
/// Skipped silently (as comments): the boilerplate names above, single-label names (a hosts
/// file's own host names such as `codespaces-a0de1a` or a mangled `ip6-allblackhole`: as a
/// subtree entry one label would be a whole top-level domain), and lines for multicast,
/// link-local or broadcast addresses, which are system configuration, never blocks.
fn hosts_line(out: &mut Parsed, at: At<'_>, default_kind: MatchKind) {
    let line = strip_comment(at.text);
    let mut fields = line.split_whitespace();
    let Some(first) = fields.next() else {
        out.comments += 1;
        return;
    };
    let Some(addr) = parse_host_address(first) else {
        out.bad(at, "expected an IP address followed by names");
        return;
    };
    let system = match addr {
        IpAddr::V4(a) => a.is_broadcast() || a.is_multicast() || a.is_link_local(),
        IpAddr::V6(a) => a.is_multicast() || (a.segments()[0] & 0xffc0) == 0xfe80,
    };
    let mut any = false;
    let mut kept = 0;
    for name in fields {
        any = true;
        let single_label =
            !name.trim_end_matches('.').contains('.') && name.parse::<IpAddr>().is_err();
        let skip = system
            || single_label
            || HOSTS_BOILERPLATE.contains(&name.to_ascii_lowercase().as_str());
        if !skip {
            out.entry(at, name, default_kind, Action::Block);
            kept += 1;
        }
    }
    if !any {
        out.bad(at, "no names after the address");
    } else if kept == 0 {
        out.comments += 1;
    }
}

/// Adblock options that leave a `||domain^` rule meaning "block the whole domain", so a
/// DNS filter can honour them. Everything else narrows the rule to some requests (e.g.
/// `$third-party`, `$script`, `$popup`, `$domain=`), which DNS cannot see: applying them
/// to the whole domain would over-block, so such rules are counted as unsupported.
const ADBLOCK_DNS_OPTIONS: &[&str] = &["important", "all", "document", "doc"];

/// Adblock-style rules: `||d^` (block d and below), `@@||d^` (exception).
fn adblock_line(out: &mut Parsed, at: At<'_>) {
    let mut line = at.text.trim();
    if line.is_empty() {
        out.comments += 1;
        return;
    }
    // Cosmetic rules (element hiding, scriptlets, CSS) and their exceptions.
    if ["##", "#@#", "#?#", "#$#", "#%#", "#@$#", "#@?#"]
        .iter()
        .any(|m| line.contains(m))
    {
        out.unsupported += 1;
        return;
    }
    if line.starts_with('!') || line.starts_with('[') || line.starts_with('#') {
        out.comments += 1;
        return;
    }
    // A ` # comment` after a rule (whitespace first: `#` is part of rule syntax).
    if let Some((rule, _)) = line.split_once(" #").or_else(|| line.split_once("\t#")) {
        line = rule.trim_end();
    }
    let (action, rule) = match line.strip_prefix("@@") {
        Some(rest) => (Action::Pass, rest),
        None => (Action::Block, line),
    };
    let Some(rule) = rule.strip_prefix("||") else {
        // Plain substrings, `|http://` anchors and `/regex/` rules match URLs, not names.
        out.unsupported += 1;
        return;
    };
    let (body, options) = match rule.split_once('$') {
        Some((b, o)) => (b, Some(o)),
        None => (rule, None),
    };
    if let Some(opts) = options
        && !opts
            .split(',')
            .all(|o| ADBLOCK_DNS_OPTIONS.contains(&o.trim().to_ascii_lowercase().as_str()))
    {
        out.unsupported += 1;
        return;
    }
    let name = body
        .strip_suffix("^|")
        .or_else(|| body.strip_suffix('^'))
        .unwrap_or(body);
    // Paths, wildcards and mid-rule separators: the rule is about URLs on that host.
    if name.is_empty() || name.contains(['/', '*', '^', '|', ':', '?', '=']) {
        out.unsupported += 1;
        return;
    }
    out.entry(at, name, MatchKind::Subtree, action);
}

mod rpz {
    //! RPZ zone files: RFC 1035 master-file syntax carrying the QNAME-trigger actions of the
    //! RPZ draft (draft-vixie-dnsop-dns-rpz). Only QNAME triggers with the standard actions
    //! mean anything to a name filter; everything else is counted, not guessed at.

    use super::*;

    /// Suffixes (last label of the owner, relative to the zone) of the non-QNAME triggers.
    const OTHER_TRIGGERS: &[&str] = &["rpz-ip", "rpz-nsip", "rpz-nsdname", "rpz-client-ip"];

    /// One record: where it starts, its fields with `;` comments and parentheses removed,
    /// whether it began with whitespace (owner omitted), and its original text.
    struct Record {
        line: usize,
        fields: Vec<String>,
        blank_owner: bool,
        text: String,
    }

    /// Split `line` into fields, honouring `"quoted strings"`, stopping at a `;` comment,
    /// dropping `(` `)` and tracking how many parentheses are open.
    fn fields(line: &str, depth: &mut i32, into: &mut Vec<String>) {
        let mut cur = String::new();
        let mut quoted = false;
        let mut chars = line.chars();
        while let Some(c) = chars.next() {
            match c {
                '"' => {
                    quoted = !quoted;
                    cur.push(c);
                }
                '\\' if quoted => {
                    cur.push(c);
                    if let Some(n) = chars.next() {
                        cur.push(n);
                    }
                }
                _ if quoted => cur.push(c),
                ';' => break,
                '(' | ')' => {
                    *depth += if c == '(' { 1 } else { -1 };
                    if !cur.is_empty() {
                        into.push(std::mem::take(&mut cur));
                    }
                }
                c if c.is_whitespace() => {
                    if !cur.is_empty() {
                        into.push(std::mem::take(&mut cur));
                    }
                }
                c => cur.push(c),
            }
        }
        if !cur.is_empty() {
            into.push(cur);
        }
    }

    /// Join multi-line records (parentheses), counting comment-only lines.
    fn records(text: &str, comments: &mut usize) -> Vec<Record> {
        let mut out = Vec::new();
        let mut open: Option<Record> = None;
        let mut depth = 0;
        for (i, raw) in text.lines().enumerate() {
            let rec = match open.as_mut() {
                Some(rec) => {
                    rec.text.push(' ');
                    rec.text.push_str(raw.trim());
                    rec
                }
                None => open.insert(Record {
                    line: i + 1,
                    fields: Vec::new(),
                    blank_owner: raw.starts_with([' ', '\t']),
                    text: raw.trim().to_owned(),
                }),
            };
            fields(raw, &mut depth, &mut rec.fields);
            if depth <= 0 {
                depth = 0;
                if let Some(rec) = open.take() {
                    if rec.fields.is_empty() {
                        *comments += 1;
                    } else {
                        out.push(rec);
                    }
                }
            }
        }
        // An unclosed parenthesis: keep what there is; the record will be judged on it.
        out.extend(open.filter(|r| !r.fields.is_empty()));
        out
    }

    /// A TTL field: digits, optionally with BIND unit suffixes (`3600`, `1h30m`, `1D`).
    fn is_ttl(f: &str) -> bool {
        f.starts_with(|c: char| c.is_ascii_digit())
            && f.chars()
                .all(|c| c.is_ascii_digit() || "smhdwSMHDW".contains(c))
    }

    fn is_class(f: &str) -> bool {
        ["IN", "CH", "HS", "CS"]
            .iter()
            .any(|c| f.eq_ignore_ascii_case(c))
    }

    /// The zone state a record is read in.
    #[derive(Default)]
    struct Zone {
        /// Lower-case origin without the trailing dot, once known.
        origin: Option<String>,
        previous_owner: Option<String>,
    }

    /// Parse an RPZ zone into `out`.
    pub(super) fn parse(path: &Path, text: &str, out: &mut Parsed) {
        let mut zone = Zone::default();
        for rec in records(text, &mut out.comments) {
            let at = At {
                path,
                line: rec.line,
                text: &rec.text,
            };
            record(out, at, &rec, &mut zone);
        }
    }

    fn record(out: &mut Parsed, at: At<'_>, rec: &Record, zone: &mut Zone) {
        let mut fields = rec.fields.iter().map(String::as_str);
        let owner = if rec.blank_owner {
            match &zone.previous_owner {
                Some(o) => o.clone(),
                None => return out.bad(at, "record without an owner name"),
            }
        } else {
            let Some(first) = fields.next() else {
                out.comments += 1;
                return;
            };
            if first.starts_with('$') {
                return directive(out, at, first, fields.next(), zone);
            }
            zone.previous_owner = Some(first.to_owned());
            first.to_owned()
        };
        let mut rest = fields.skip_while(|f| is_ttl(f) || is_class(f));
        let Some(rtype) = rest.next() else {
            return out.bad(at, "record without a type");
        };
        // Mnemonics (`CNAME`) or generic `TYPE65`: anything else means the owner field
        // was not what it seemed, e.g. a name with a space in it.
        if !(rtype.starts_with(|c: char| c.is_ascii_alphabetic())
            && rtype.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
        {
            return out.bad(at, format!("expected a record type, found {rtype:?}"));
        }
        let rtype = rtype.to_ascii_uppercase();
        if rtype == "SOA" && zone.origin.is_none() && owner.ends_with('.') && owner.len() > 1 {
            // No $ORIGIN: the SOA's owner names the zone (as named.conf would).
            zone.origin = Some(owner.trim_end_matches('.').to_ascii_lowercase());
        }
        match rtype.as_str() {
            "SOA" | "NS" => out.comments += 1,
            "CNAME" => cname(out, at, &owner, rest.next(), zone),
            _ => out.unsupported += 1,
        }
    }

    fn directive(out: &mut Parsed, at: At<'_>, name: &str, arg: Option<&str>, zone: &mut Zone) {
        match name.to_ascii_uppercase().as_str() {
            "$ORIGIN" => {
                let Some(arg) = arg else {
                    return out.bad(at, "$ORIGIN without a name");
                };
                let arg = arg.to_ascii_lowercase();
                zone.origin = Some(match (arg.strip_suffix('.'), &zone.origin) {
                    (Some(abs), _) => abs.to_owned(),
                    (None, Some(o)) if !o.is_empty() => format!("{arg}.{o}"),
                    (None, _) => arg,
                });
                out.comments += 1;
            }
            "$TTL" => out.comments += 1,
            "$INCLUDE" => out.bad(
                at,
                "$INCLUDE is not supported: configure the included file as its own source",
            ),
            _ => out.bad(at, format!("unknown directive {name}")),
        }
    }

    fn cname(out: &mut Parsed, at: At<'_>, owner: &str, target: Option<&str>, zone: &Zone) {
        let Some(target) = target else {
            return out.bad(at, "CNAME without a target");
        };
        let action = match target.to_ascii_lowercase().as_str() {
            "." | "rpz-drop." => Action::Block,
            "*." => Action::NoData,
            "rpz-passthru." => Action::Pass,
            // rpz-tcp-only., a redirect to a walled garden, or a relative target: local
            // data or behaviour a name filter cannot give.
            _ => {
                out.unsupported += 1;
                return;
            }
        };
        let name = match relative(owner, zone.origin.as_deref()) {
            Ok(name) => name,
            Err(reason) => return out.bad(at, reason),
        };
        if name
            .rsplit('.')
            .next()
            .is_some_and(|last| OTHER_TRIGGERS.contains(&last))
        {
            out.unsupported += 1;
            return;
        }
        match name.strip_prefix("*.") {
            Some(rest) => out.entry(at, rest, MatchKind::Below, action),
            None => out.entry(at, &name, MatchKind::Exact, action),
        }
    }

    /// The trigger name of an owner: relative owners are already relative to the zone;
    /// absolute ones must be inside it and lose the origin suffix.
    fn relative(owner: &str, origin: Option<&str>) -> Result<String, String> {
        let lower = owner.to_ascii_lowercase();
        if lower == "@" {
            return Err("the zone apex is not a trigger name".into());
        }
        let Some(abs) = lower.strip_suffix('.') else {
            return Ok(lower);
        };
        let Some(origin) = origin.filter(|o| !o.is_empty()) else {
            return Ok(abs.to_owned());
        };
        if abs == origin {
            return Err("the zone apex is not a trigger name".into());
        }
        match abs.strip_suffix(origin).and_then(|n| n.strip_suffix('.')) {
            Some(name) => Ok(name.to_owned()),
            None => Err(format!("owner name is outside the zone {origin}.")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(text: &str, format: Format) -> Parsed {
        parse_text(Path::new("list.txt"), text, format, MatchKind::Subtree)
    }

    fn names(parsed: &Parsed) -> Vec<(String, MatchKind, Action)> {
        parsed
            .entries
            .iter()
            .map(|e| (e.name.clone(), e.kind, e.action))
            .collect()
    }

    fn error_lines(parsed: &Parsed) -> Vec<usize> {
        parsed.errors.iter().map(|e| e.line).collect()
    }

    fn block(name: &str, kind: MatchKind) -> (String, MatchKind, Action) {
        (name.to_owned(), kind, Action::Block)
    }

    use MatchKind::{Below, Exact, Subtree};

    #[test]
    fn domain_lists_with_comments_wildcards_crlf_and_bad_lines() {
        let text = "# header\r\nexample.com\r\n  Ads.Example.NET.  # inline\r\n*.wild.example\r\n\
                    .dot.example\r\n\r\nbad name.example\r\n10.0.0.1\r\nbücher.example\r\n\
                    \t# indented comment\r\n! bang comment\r\nend.example#no space\r\n";
        let parsed = p(text, Format::Domains);
        assert_eq!(
            names(&parsed),
            vec![
                block("example.com", Subtree),
                block("ads.example.net", Subtree),
                block("wild.example", Below),
                block("dot.example", Subtree),
                block("xn--bcher-kva.example", Subtree),
                block("end.example", Subtree),
            ]
        );
        assert_eq!(error_lines(&parsed), [7, 8]);
        assert_eq!(
            parsed.errors[0].to_string(),
            "list.txt:7: expected one name per line: bad name.example"
        );
        assert_eq!(
            parsed.errors[1].to_string(),
            "list.txt:8: IP address, not a domain name: 10.0.0.1"
        );
        assert_eq!(parsed.comments, 4);
        assert_eq!(parsed.unsupported, 0);
    }

    #[test]
    fn domain_list_errors_say_why() {
        let long = format!("{}.example", "x".repeat(64));
        let text = format!(
            "ok.example\n0.0.0.0 hosts.example\na..b.example\n{long}\n*.\nfoo/bar.example\n.\n"
        );
        let parsed = p(&text, Format::Domains);
        assert_eq!(names(&parsed), [block("ok.example", Subtree)]);
        let got: Vec<(usize, &str)> = parsed
            .errors
            .iter()
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (
                    2,
                    "expected one name per line (this looks like a hosts file: set format = \"hosts\")"
                ),
                (3, "empty label"),
                (4, "label longer than 63 bytes"),
                (5, "empty name"),
                (6, "invalid character '/'"),
                (7, "empty name"),
            ]
        );
    }

    #[test]
    fn error_text_is_trimmed_and_capped() {
        let text = format!("  {}!  \n", "a".repeat(300));
        let parsed = p(&text, Format::Domains);
        assert_eq!(parsed.errors[0].text.len(), 120);
        assert!(parsed.errors[0].text.starts_with("aaa"));
    }

    #[test]
    fn a_byte_order_mark_is_not_part_of_the_first_name() {
        let parsed = p("\u{feff}first.example\nsecond.example\n", Format::Domains);
        assert_eq!(parsed.entries[0].name, "first.example");
        assert!(parsed.errors.is_empty());
        assert_eq!(
            p("\u{feff}0.0.0.0 a.example\n", Format::Auto).entries.len(),
            1
        );
    }

    #[test]
    fn exact_sources_keep_plain_entries_exact() {
        let parsed = parse_text(
            Path::new("h"),
            "a.example\n*.b.example\n.c.example\n",
            Format::Domains,
            Exact,
        );
        assert_eq!(
            names(&parsed),
            [
                block("a.example", Exact),
                block("b.example", Below),
                block("c.example", Subtree)
            ]
        );
        let hosts = parse_text(Path::new("h"), "0.0.0.0 a.example\n", Format::Hosts, Exact);
        assert_eq!(hosts.entries[0].kind, Exact);
    }

    #[test]
    fn hosts_files_skip_boilerplate_and_reject_non_addresses() {
        let text = "# StevenBlack\n\
                    127.0.0.1 localhost\n\
                    127.0.0.1 localhost.localdomain\n\
                    ::1 localhost ip6-localhost ip6-loopback\n\
                    fe80::1%lo0 localhost\n\
                    ff02::3 ip6-allblackhole\n\
                    255.255.255.255 broadcasthost\n\
                    127.0.1.1 codespaces-a0de1a\n\
                    0.0.0.0 0.0.0.0\n\
                    0.0.0.0 ads.example tracker.example # two\n  \
                    # indented comment\n\
                    ads2.example\n\
                    0.0.0.0 bad_host!.example good.example\n\
                    127.0.0.1\tTabbed.Example\r\n\
                    :: v6.example\n\
                    0.0.0.0\n\
                    0.0.0.0 bücher.example\n\
                    0.0.0.0 192.0.2.1\n";
        let parsed = p(text, Format::Hosts);
        assert_eq!(
            names(&parsed).into_iter().map(|n| n.0).collect::<Vec<_>>(),
            [
                "ads.example",
                "tracker.example",
                "good.example",
                "tabbed.example",
                "v6.example",
                "xn--bcher-kva.example"
            ]
        );
        let got: Vec<(usize, &str)> = parsed
            .errors
            .iter()
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (12, "expected an IP address followed by names"),
                (13, "invalid character '!'"),
                (16, "no names after the address"),
                (18, "IP address, not a domain name"),
            ]
        );
        // Header comment, 8 boilerplate lines, the indented comment.
        assert_eq!(parsed.comments, 10);
    }

    #[test]
    fn adblock_rules() {
        let text = "[Adblock Plus 2.0]\n\
                    ! comment\n\
                    ||ads.example^\n\
                    ||track.example^$important\n\
                    @@||ok.ads.example^\n\
                    ||cdn.example/path/ad.js\n\
                    example.org##.banner\n\
                    ||x.example^$script\n\
                    ||bad host.example^\n\
                    ||Upper.Example^|\r\n\
                    ||popup.example^$popup\n\
                    ||third.example^$third-party\n\
                    ||doc.example^$document,important\n\
                    /banner[0-9]+/\n\
                    |https://url.example/\n\
                    ##.generic-cosmetic\n\
                    ||noanchor.example\n\
                    ||wild.*.example^\n\
                    ||bücher.example^ # idn\n\
                    @@||allow.example^$important\n\
                    # hash comment\n\
                    ||a..b.example^\n\
                    plain.example\n";
        let parsed = p(text, Format::Adblock);
        assert_eq!(
            names(&parsed),
            vec![
                block("ads.example", Subtree),
                block("track.example", Subtree),
                ("ok.ads.example".into(), Subtree, Action::Pass),
                block("upper.example", Subtree),
                block("doc.example", Subtree),
                block("noanchor.example", Subtree),
                block("xn--bcher-kva.example", Subtree),
                ("allow.example".into(), Subtree, Action::Pass),
            ]
        );
        // Path, cosmetic, $script, $popup, $third-party, regex, URL anchor, generic
        // cosmetic, wildcard, plain substring.
        assert_eq!(parsed.unsupported, 10);
        assert_eq!(error_lines(&parsed), [9, 22]);
        assert_eq!(parsed.comments, 3);
    }

    const ZONE: &str = "$TTL 300\n\
        $ORIGIN rpz.school.invalid.\n\
        @ IN SOA ns.school.invalid. hostmaster.school.invalid. (\n\
        \x20 1 ; serial\n\
        \x20 3600 600 86400 60 )\n\
        \x20 IN NS ns.school.invalid.\n\
        ; triggers\n\
        bad.example CNAME .\n\
        *.bad.example CNAME .\n\
        empty.example 300 IN CNAME *.\n\
        ok.bad.example CNAME rpz-passthru.\n\
        abs.example.rpz.school.invalid. CNAME rpz-drop.\n\
        local.example A 192.0.2.1\n\
        \x20 TXT \"local; data (not a comment)\"\n\
        redirect.example CNAME walled.garden.example.\n\
        32.1.2.0.192.rpz-ip CNAME .\n\
        ns.example.rpz-nsdname CNAME .\n\
        Mixed.Example 1h IN CNAME .\n\
        outside.example. CNAME .\n\
        bad name.example CNAME .\n\
        rpz-lookalike.example CNAME .\n";

    #[test]
    fn rpz_zones() {
        let parsed = p(ZONE, Format::Rpz);
        assert_eq!(
            names(&parsed),
            vec![
                block("bad.example", Exact),
                block("bad.example", Below),
                ("empty.example".into(), Exact, Action::NoData),
                ("ok.bad.example".into(), Exact, Action::Pass),
                block("abs.example", Exact),
                block("mixed.example", Exact),
                block("rpz-lookalike.example", Exact),
            ]
        );
        // A, TXT, redirect, rpz-ip, rpz-nsdname.
        assert_eq!(parsed.unsupported, 5);
        // $TTL, $ORIGIN, SOA, NS, the comment line.
        assert_eq!(parsed.comments, 5);
        let got: Vec<(usize, &str)> = parsed
            .errors
            .iter()
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (19, "owner name is outside the zone rpz.school.invalid."),
                (20, "expected a record type, found \"name.example\""),
            ]
        );
    }

    #[test]
    fn rpz_multi_line_soa_keeps_line_numbers() {
        let text = "$ORIGIN z.invalid.\n\
                    @ SOA ns hostmaster (\n\
                    \x20   1     ; serial\n\
                    \x20   3600  ; refresh\n\
                    \x20   600 86400\n\
                    \x20   60 )\n\
                    a.example CNAME .\n\
                    b\u{00e9}!.example CNAME .\n";
        let parsed = p(text, Format::Rpz);
        assert_eq!(names(&parsed), [block("a.example", Exact)]);
        assert_eq!(error_lines(&parsed), [8]);
        assert_eq!(parsed.comments, 2);
    }

    #[test]
    fn rpz_without_origin_takes_the_soa_owner() {
        let text = "rpz.example.invalid. 3600 IN SOA ns. h. 1 2 3 4 5\n\
                    rpz.example.invalid. NS ns.\n\
                    ads.test.rpz.example.invalid. CNAME .\n\
                    rel.test CNAME .\n\
                    *.wild.test.rpz.example.invalid. 60 CNAME *.\n";
        let parsed = p(text, Format::Rpz);
        assert_eq!(
            names(&parsed),
            [
                block("ads.test", Exact),
                block("rel.test", Exact),
                ("wild.test".into(), Below, Action::NoData),
            ]
        );
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    }

    #[test]
    fn rpz_relative_origin_and_bad_records() {
        let text = "$ORIGIN invalid.\n\
                    $ORIGIN rpz\n\
                    x.test.rpz.invalid. CNAME .\n\
                    @ CNAME .\n\
                    \x20 CNAME\n\
                    $INCLUDE other.zone\n\
                    $GENERATE 1-5 a$ CNAME .\n";
        let parsed = p(text, Format::Rpz);
        assert_eq!(names(&parsed), [block("x.test", Exact)]);
        let got: Vec<(usize, &str)> = parsed
            .errors
            .iter()
            .map(|e| (e.line, e.reason.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (4, "the zone apex is not a trigger name"),
                (5, "CNAME without a target"),
                (
                    6,
                    "$INCLUDE is not supported: configure the included file as its own source"
                ),
                (7, "unknown directive $GENERATE"),
            ]
        );
        let orphan = p("  CNAME .\n", Format::Rpz);
        assert_eq!(orphan.errors[0].reason, "record without an owner name");
    }

    #[test]
    fn rpz_crlf_and_unclosed_parenthesis() {
        let parsed = p(
            "$ORIGIN r.invalid.\r\na.test CNAME .\r\n@ SOA ns h ( 1 2\r\n",
            Format::Rpz,
        );
        assert_eq!(names(&parsed), [block("a.test", Exact)]);
        assert!(parsed.errors.is_empty());
    }

    #[test]
    fn sniffing() {
        assert_eq!(
            sniff("0.0.0.0 a.example\n0.0.0.0 b.example\n"),
            Format::Hosts
        );
        assert_eq!(sniff("# StevenBlack\n127.0.0.1 localhost\n"), Format::Hosts);
        assert_eq!(sniff("! title\n||a.example^\n"), Format::Adblock);
        assert_eq!(
            sniff("[Adblock Plus 2.0]\nfoo.example##.ad\n"),
            Format::Adblock
        );
        assert_eq!(sniff("$TTL 60\na CNAME .\n"), Format::Rpz);
        assert_eq!(
            sniff("a.example CNAME .\nb.example CNAME *.\n"),
            Format::Rpz
        );
        assert_eq!(
            sniff("; zone\nrpz. SOA ns. h. 1 2 3 4 5\nx CNAME .\n"),
            Format::Rpz
        );
        assert_eq!(sniff("# x\na.example\nb.example\n"), Format::Domains);
        // Names that contain "cname" or "soa" are still names.
        assert_eq!(sniff("cname.example\nsoa.example\n"), Format::Domains);
        // Mostly plain names with one stray hosts line: plain wins.
        assert_eq!(
            sniff("a.example\nb.example\n0.0.0.0 c.example\n"),
            Format::Domains
        );
        assert_eq!(sniff(""), Format::Domains);
        let parsed = p("0.0.0.0 a.example\n", Format::Auto);
        assert_eq!(parsed.entries[0].name, "a.example");
        let parsed = p("||a.example^\n@@||b.a.example^\n", Format::Auto);
        assert_eq!(parsed.entries[1].action, Action::Pass);
        let parsed = p("$ORIGIN r.invalid.\nx.test CNAME .\n", Format::Auto);
        assert_eq!(names(&parsed), [block("x.test", Exact)]);
    }

    #[test]
    fn ut1_format_reads_a_single_file_as_domains() {
        let parsed = p("casino.example\n192.0.2.7\n", Format::Ut1);
        assert_eq!(names(&parsed), [block("casino.example", Subtree)]);
        assert_eq!(
            parsed.errors[0].to_string(),
            "list.txt:2: IP address, not a domain name: 192.0.2.7"
        );
    }

    #[test]
    fn ut1_folders() {
        let dir = tempfile::tempdir().unwrap();
        for (cat, text) in [
            ("gambling", "casino.example\n1.2.3.4\n"),
            ("games", "play.example\r\n.dot.example\r\n"),
        ] {
            std::fs::create_dir(dir.path().join(cat)).unwrap();
            std::fs::write(dir.path().join(cat).join("domains"), text).unwrap();
            std::fs::write(dir.path().join(cat).join("urls"), "x.example/y\n").unwrap();
        }
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        std::fs::create_dir(dir.path().join("packed")).unwrap();
        std::fs::write(dir.path().join("packed/domains.xz"), b"").unwrap();
        std::fs::write(dir.path().join("README"), "not a category\n").unwrap();
        #[cfg(unix)]
        std::os::unix::fs::symlink(dir.path().join("gambling"), dir.path().join("jeux")).unwrap();

        let cats = parse_ut1_dir(dir.path(), &[], Subtree).unwrap();
        assert_eq!(
            cats.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
            ["gambling", "games"]
        );
        let gambling = &cats[0].1;
        assert_eq!(names(gambling), [block("casino.example", Subtree)]);
        assert_eq!(gambling.errors[0].line, 2);
        assert_eq!(gambling.errors[0].path, dir.path().join("gambling/domains"));
        assert_eq!(cats[1].1.entries.len(), 2);

        let only = parse_ut1_dir(dir.path(), &["games".into()], Exact).unwrap();
        assert_eq!(only.len(), 1);
        assert_eq!(only[0].1.entries[0].kind, Exact);
        #[cfg(unix)]
        {
            let alias = parse_ut1_dir(dir.path(), &["jeux".into()], Subtree).unwrap();
            assert_eq!(alias[0].0, "jeux");
            assert_eq!(alias[0].1.entries.len(), 1);
        }

        for (want, why) in [
            ("missing", "no such category folder"),
            ("empty", "the folder has no domains file"),
            ("packed", "compressed"),
        ] {
            let err = parse_ut1_dir(dir.path(), &["games".into(), want.into()], Subtree)
                .unwrap_err()
                .to_string();
            assert!(err.contains(want) && err.contains(why), "{err}");
        }
        assert!(parse_ut1_dir(&dir.path().join("nope"), &[], Subtree).is_err());
    }

    #[test]
    fn files_that_are_not_utf8_are_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("latin1.txt");
        std::fs::write(&path, b"ok.example\ncaf\xe9.example\n").unwrap();
        let err = parse_file(&path, Format::Domains, Subtree).unwrap_err();
        assert_eq!(err.kind(), std::io::ErrorKind::InvalidData);
        assert!(
            err.to_string().ends_with("latin1.txt:2: not UTF-8 text"),
            "{err}"
        );
        let ok = dir.path().join("ok.txt");
        std::fs::write(&ok, "ok.example\n").unwrap();
        assert_eq!(
            parse_file(&ok, Format::Auto, Subtree)
                .unwrap()
                .entries
                .len(),
            1
        );
        assert!(parse_file(&dir.path().join("absent"), Format::Auto, Subtree).is_err());
    }

    #[test]
    fn the_sample_lists_parse_cleanly() {
        let lists = Path::new(env!("CARGO_MANIFEST_DIR")).join("lists");
        for (file, format, min) in [
            ("adult.txt", Format::Domains, 10),
            ("gambling.hosts", Format::Hosts, 10),
            ("malware.adblock", Format::Adblock, 10),
            ("illegal.rpz", Format::Rpz, 10),
            ("games.txt", Format::Domains, 10),
            ("social.txt", Format::Domains, 10),
            ("ks1-approved.txt", Format::Domains, 10),
            ("doh/domains", Format::Domains, 1000),
        ] {
            let path = lists.join(file);
            let parsed = parse_file(&path, format, Subtree).unwrap();
            assert!(parsed.errors.is_empty(), "{file}: {:?}", parsed.errors);
            assert!(
                parsed.entries.len() >= min,
                "{file}: {}",
                parsed.entries.len()
            );
            // The sniffer agrees with the declared format.
            let sniffed = parse_file(&path, Format::Auto, Subtree).unwrap();
            assert_eq!(sniffed.entries, parsed.entries, "{file}");
        }
        // The syntax the samples demonstrate (lists/README.md) means what it says.
        let has = |file: &str, format, entry: (&str, MatchKind, Action)| {
            let parsed = parse_file(&lists.join(file), format, Subtree).unwrap();
            let want = Entry {
                name: entry.0.to_owned(),
                kind: entry.1,
                action: entry.2,
            };
            assert!(parsed.entries.contains(&want), "{file}: {want:?}");
            parsed
        };
        has(
            "adult.txt",
            Format::Domains,
            ("cams.test", Below, Action::Block),
        );
        has(
            "adult.txt",
            Format::Domains,
            ("strip-club-listings.test", Subtree, Action::Block),
        );
        let hosts = has(
            "gambling.hosts",
            Format::Hosts,
            ("xn--glcksspiel-beb.test", Subtree, Action::Block),
        );
        assert!(hosts.entries.iter().all(|e| e.name != "localhost"));
        let adblock = has(
            "malware.adblock",
            Format::Adblock,
            ("safe.malware.example", Subtree, Action::Pass),
        );
        assert_eq!(adblock.unsupported, 3);
        has(
            "illegal.rpz",
            Format::Rpz,
            ("mirror-07.invalid", Below, Action::Block),
        );
        has(
            "illegal.rpz",
            Format::Rpz,
            ("nodata-09.invalid", Exact, Action::NoData),
        );
        has(
            "games.txt",
            Format::Domains,
            ("games.example", Subtree, Action::Block),
        );
    }

    /// The real-world lists in `../shared/lists-real` (not shipped with the crate, but
    /// always beside it in the workplace and in CI). A missing file fails the test: a test
    /// that passes because its fixture vanished proves nothing.
    fn real(rel: &str) -> PathBuf {
        let path = Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../shared/lists-real")
            .join(rel);
        assert!(
            path.exists(),
            "fixture {} is missing: these tests need shared/lists-real beside the repository",
            path.display()
        );
        path
    }

    #[test]
    fn real_doh_list_parses_cleanly() {
        let doh = real("dibdot-doh/doh-domains_overall.txt");
        let parsed = parse_file(&doh, Format::Auto, Subtree).unwrap();
        assert!(parsed.entries.len() > 1800, "{}", parsed.entries.len());
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert!(parsed.entries.iter().any(|e| e.name == "dns.google"));
    }

    #[test]
    fn real_hosts_file_parses_cleanly() {
        let hosts = real("stevenblack/alternates/fakenews-only/blackhole");
        let parsed = parse_file(&hosts, Format::Auto, Subtree).unwrap();
        assert!(parsed.entries.len() > 2000, "{}", parsed.entries.len());
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
    }

    /// The larger StevenBlack files are xz-compressed; decompress them with `xz`. They carry the full hosts header (localhost, ip6-*, fe80::1%lo0,
    /// the build machine's own name), inline `#[tags]`, and the unified one CRLF endings
    /// and indented comments.
    #[test]
    fn real_compressed_hosts_files_parse_cleanly() {
        for (rel, min) in [
            ("stevenblack/alternates/gambling-only/blackhole.xz", 8_000),
            ("stevenblack/blackhole.xz", 120_000),
        ] {
            let xz = real(rel);
            let out = std::process::Command::new("xz")
                .arg("-dc")
                .arg(&xz)
                .output()
                .expect("xz (Debian xz-utils) runs; .ci/run installs it");
            assert!(out.status.success(), "xz -dc {}", xz.display());
            let text = String::from_utf8(out.stdout).unwrap();
            let parsed = parse_text(&xz, &text, Format::Auto, Subtree);
            assert!(
                parsed.entries.len() >= min,
                "{rel}: {}",
                parsed.entries.len()
            );
            assert!(
                parsed.errors.is_empty(),
                "{rel}: {:?}",
                &parsed.errors[..parsed.errors.len().min(5)]
            );
            // No header name slipped through, and no single label (a whole TLD).
            assert!(
                !parsed.entries.iter().any(|e| !e.name.contains('.')),
                "{rel}"
            );
        }
    }

    #[test]
    fn real_ut1_folder_parses() {
        let ut1 = real("ut1");
        // Only the categories stored uncompressed have a `domains` file.
        let cats = parse_ut1_dir(&ut1, &[], Subtree).unwrap();
        assert!(cats.len() > 40, "{} categories", cats.len());
        let (mut entries, mut errors) = (0, 0);
        for (cat, parsed) in &cats {
            entries += parsed.entries.len();
            errors += parsed.errors.len();
            for e in &parsed.errors {
                // UT1 lists a few addresses; those are the only expected rejects.
                assert_eq!(e.reason, "IP address, not a domain name", "{cat}: {e}");
            }
        }
        assert!(entries > 30_000, "{entries}");
        assert!(errors < entries / 20, "{errors} errors");
        // Ask for one category by name.
        let doh = parse_ut1_dir(&ut1, &["doh".into()], Subtree).unwrap();
        assert!(doh[0].1.entries.len() > 2000);
    }
}
