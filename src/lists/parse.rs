//! List file formats: plain domain lists, hosts files, Adblock-style rules, RPZ zone files
//! and UT1-style category folders, all read into [`Entry`] values.
//!
//! Real lists are messy (CRLF, inline comments, IP entries, cosmetic filter rules, hosts
//! headers), so parsing never stops at a bad line: every rejected line is reported as
//! `file:line: reason`, well-formed lines with no DNS meaning are counted as `unsupported`,
//! and the rest become entries. What each syntax means:
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

use std::path::{Path, PathBuf};

use super::key::{KeyError, normalize_domain};

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
    /// Normalised name.
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
    /// 1-based line number.
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
    /// Sniffed per file.
    Auto,
    /// One name per line.
    Domains,
    /// `IP name...` lines.
    Hosts,
    /// Adblock-style `||name^` rules.
    Adblock,
    /// RPZ zone file.
    Rpz,
    /// A UT1-style folder of `<category>/domains` files.
    Ut1,
}

/// The result of parsing one file.
#[derive(Debug, Default, Clone)]
pub struct Parsed {
    /// Entries.
    pub entries: Vec<Entry>,
    /// Rejected lines.
    pub errors: Vec<LineError>,
    /// Comment lines.
    pub comments: usize,
    /// Well-formed lines with no DNS meaning (cosmetic rules, RPZ local data).
    pub unsupported: usize,
}

/// What one line turned into.
enum Line {
    Entries(Vec<(String, MatchKind, Action)>),
    Comment,
    Unsupported,
    Bad(String),
}

impl Parsed {
    fn take(&mut self, path: &Path, number: usize, raw: &str, line: Line) {
        match line {
            Line::Comment => self.comments += 1,
            Line::Unsupported => self.unsupported += 1,
            Line::Bad(reason) => self.bad(path, number, raw, reason),
            Line::Entries(list) => {
                for (name, kind, action) in list {
                    match normalize_domain(&name) {
                        Ok(name) => self.entries.push(Entry { name, kind, action }),
                        Err(e) => self.bad(path, number, raw, e.to_string()),
                    }
                }
            }
        }
    }

    fn bad(&mut self, path: &Path, line: usize, raw: &str, reason: String) {
        self.errors.push(LineError {
            path: path.to_owned(),
            line,
            text: raw.trim().chars().take(120).collect(),
            reason,
        });
    }
}

/// Strip an inline `#` comment (hosts and domain lists).
fn strip_comment(line: &str) -> &str {
    line.split_once('#')
        .map_or(line, |(before, _)| before)
        .trim()
}

/// Parse the text of one list file. `default_kind` applies to plain entries (subtree
/// normally, exact when the source says `match = "exact"`); explicit syntax overrides it.
pub fn parse_text(path: &Path, text: &str, format: Format, default_kind: MatchKind) -> Parsed {
    let format = match format {
        Format::Auto => sniff(text),
        other => other,
    };
    if format == Format::Rpz {
        return rpz::parse(path, text);
    }
    let mut out = Parsed::default();
    for (i, raw) in text.lines().enumerate() {
        let line = match format {
            Format::Hosts => hosts_line(raw, default_kind),
            Format::Adblock => adblock_line(raw),
            _ => domain_line(raw, default_kind),
        };
        out.take(path, i + 1, raw, line);
    }
    out
}

/// Read and parse one file. A file that is not UTF-8 is an error naming it.
pub fn parse_file(path: &Path, format: Format, default_kind: MatchKind) -> std::io::Result<Parsed> {
    let bytes = std::fs::read(path)?;
    let text = String::from_utf8(bytes).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!(
                "{} is not UTF-8 text (byte {})",
                path.display(),
                e.utf8_error().valid_up_to()
            ),
        )
    })?;
    Ok(parse_text(path, &text, format, default_kind))
}

/// A UT1-style folder: each subfolder with a `domains` file is a category named after the
/// folder. `only` limits it to those categories (each must exist).
pub fn parse_ut1_dir(
    dir: &Path,
    only: &[String],
    default_kind: MatchKind,
) -> std::io::Result<Vec<(String, Parsed)>> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let domains = entry.path().join("domains");
        if entry.file_type()?.is_dir() && domains.is_file() {
            found.push((entry.file_name().to_string_lossy().into_owned(), domains));
        }
    }
    found.sort();
    for want in only {
        if !found.iter().any(|(c, _)| c == want) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::NotFound,
                format!(
                    "{}: no category folder {want:?} with a domains file",
                    dir.display()
                ),
            ));
        }
    }
    found
        .into_iter()
        .filter(|(c, _)| only.is_empty() || only.contains(c))
        .map(|(c, p)| Ok((c, parse_file(&p, Format::Domains, default_kind)?)))
        .collect()
}

/// Guess a file's format from its first meaningful lines.
fn sniff(text: &str) -> Format {
    let (mut hosts, mut adblock, mut rpz, mut plain) = (0, 0, 0, 0);
    for line in text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .take(200)
    {
        let upper = line.to_ascii_uppercase();
        if line.starts_with("$ORIGIN")
            || line.starts_with("$TTL")
            || upper.contains(" SOA ")
            || upper.contains("CNAME")
        {
            rpz += 1;
        } else if line.starts_with("||")
            || line.starts_with("@@")
            || line.starts_with('!')
            || line.starts_with("[Adblock")
        {
            adblock += 1;
        } else if line.starts_with('#') {
            continue;
        } else if line
            .split_whitespace()
            .next()
            .is_some_and(|f| f.parse::<std::net::IpAddr>().is_ok())
            && line.split_whitespace().count() > 1
        {
            hosts += 1;
        } else {
            plain += 1;
        }
    }
    let best = [
        (rpz, Format::Rpz),
        (adblock, Format::Adblock),
        (hosts, Format::Hosts),
        (plain, Format::Domains),
    ];
    best.iter()
        .max_by_key(|(n, _)| *n)
        .map_or(Format::Domains, |(_, f)| *f)
}

fn domain_line(raw: &str, default_kind: MatchKind) -> Line {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') || line.starts_with('!') || line.starts_with(';') {
        return Line::Comment;
    }
    let line = strip_comment(line);
    if line.contains(char::is_whitespace) {
        return Line::Bad("expected one name per line".into());
    }
    if line.parse::<std::net::IpAddr>().is_ok() {
        return Line::Bad(KeyError::IpAddress.to_string());
    }
    let (name, kind) = if let Some(rest) = line.strip_prefix("*.") {
        (rest, MatchKind::Below)
    } else if let Some(rest) = line.strip_prefix('.') {
        (rest, MatchKind::Subtree)
    } else {
        (line, default_kind)
    };
    Line::Entries(vec![(name.to_owned(), kind, Action::Block)])
}

/// Names every hosts file carries that are not blocks.
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

fn hosts_line(raw: &str, default_kind: MatchKind) -> Line {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('#') {
        return Line::Comment;
    }
    let mut fields = strip_comment(line).split_whitespace();
    let Some(first) = fields.next() else {
        return Line::Comment;
    };
    // IPv6 link-local with a zone ("fe80::1%lo0") is still an address.
    let addr = first.split('%').next().unwrap_or(first);
    if addr.parse::<std::net::IpAddr>().is_err() {
        return Line::Bad("expected an IP address followed by names".into());
    }
    let names: Vec<(String, MatchKind, Action)> = fields
        .filter(|n| !HOSTS_BOILERPLATE.contains(&n.to_ascii_lowercase().as_str()))
        .map(|n| (n.to_owned(), default_kind, Action::Block))
        .collect();
    if names.is_empty() {
        return Line::Comment;
    }
    Line::Entries(names)
}

/// Adblock options that do not change what a DNS filter should do with the domain.
const ADBLOCK_DNS_OPTIONS: &[&str] = &[
    "important",
    "third-party",
    "3p",
    "all",
    "document",
    "doc",
    "popup",
];

fn adblock_line(raw: &str) -> Line {
    let line = raw.trim();
    if line.is_empty() || line.starts_with('!') || line.starts_with('[') || line.starts_with('#') {
        return Line::Comment;
    }
    let (action, rule) = match line.strip_prefix("@@") {
        Some(rest) => (Action::Pass, rest),
        None => (Action::Block, line),
    };
    if line.contains("##") || line.contains("#@#") || line.contains("#?#") || line.contains("#$#") {
        return Line::Unsupported;
    }
    let Some(rule) = rule.strip_prefix("||") else {
        return Line::Unsupported;
    };
    let (body, options) = rule
        .split_once('$')
        .map_or((rule, None), |(b, o)| (b, Some(o)));
    if let Some(opts) = options
        && !opts
            .split(',')
            .all(|o| ADBLOCK_DNS_OPTIONS.contains(&o.trim()))
    {
        return Line::Unsupported;
    }
    let Some(name) = body
        .strip_suffix('^')
        .or_else(|| body.strip_suffix("^|"))
        .or(Some(body).filter(|b| !b.contains(['/', '^', '*', '|'])))
    else {
        return Line::Unsupported;
    };
    if name.contains(['/', '*', '^', '|']) {
        return Line::Unsupported;
    }
    Line::Entries(vec![(name.to_owned(), MatchKind::Subtree, action)])
}

mod rpz {
    //! RPZ zone files (RFC-style master files with the RPZ actions of the ISC draft).

    use super::*;

    /// Join multi-line records (parentheses) and strip `;` comments, keeping the number
    /// of the line each record starts on.
    fn records(text: &str) -> Vec<(usize, String, String)> {
        let mut out = Vec::new();
        let mut open: Option<(usize, String, String)> = None;
        for (i, raw) in text.lines().enumerate() {
            let line = raw.split_once(';').map_or(raw, |(b, _)| b);
            match open.as_mut() {
                Some((_, acc, orig)) => {
                    acc.push(' ');
                    acc.push_str(line);
                    orig.push(' ');
                    orig.push_str(raw.trim());
                }
                None => open = Some((i + 1, line.to_owned(), raw.to_owned())),
            }
            let balanced = open
                .as_ref()
                .is_some_and(|(_, acc, _)| acc.matches('(').count() <= acc.matches(')').count());
            if balanced && let Some(rec) = open.take() {
                out.push(rec);
            }
        }
        out.extend(open);
        out
    }

    /// Parse an RPZ zone.
    pub fn parse(path: &Path, text: &str) -> Parsed {
        let mut out = Parsed::default();
        let mut origin: Option<String> = None;
        let mut previous_owner: Option<String> = None;
        for (number, rec, raw) in records(text) {
            let rec = rec.replace(['(', ')'], " ");
            if rec.trim().is_empty() {
                out.comments += 1;
                continue;
            }
            let starts_blank = rec.starts_with(char::is_whitespace);
            let mut fields: Vec<&str> = rec.split_whitespace().collect();
            if fields[0].eq_ignore_ascii_case("$ORIGIN") {
                origin = fields
                    .get(1)
                    .map(|o| o.trim_end_matches('.').to_ascii_lowercase());
                out.comments += 1;
                continue;
            }
            if fields[0].starts_with('$') {
                out.comments += 1;
                continue;
            }
            let owner = if starts_blank {
                match &previous_owner {
                    Some(o) => o.clone(),
                    None => {
                        out.take(
                            path,
                            number,
                            &raw,
                            Line::Bad("record without an owner name".into()),
                        );
                        continue;
                    }
                }
            } else {
                let o = fields.remove(0).to_owned();
                previous_owner = Some(o.clone());
                o
            };
            // Skip TTL and class.
            while let Some(f) = fields.first() {
                if f.chars().all(|c| c.is_ascii_digit()) || f.eq_ignore_ascii_case("IN") {
                    fields.remove(0);
                } else {
                    break;
                }
            }
            let Some(rtype) = fields.first().map(|t| t.to_ascii_uppercase()) else {
                out.take(
                    path,
                    number,
                    &raw,
                    Line::Bad("record without a type".into()),
                );
                continue;
            };
            let line = match rtype.as_str() {
                "SOA" | "NS" => Line::Comment,
                "CNAME" => cname(&owner, fields.get(1).copied(), origin.as_deref()),
                _ => Line::Unsupported,
            };
            out.take(path, number, &raw, line);
        }
        out
    }

    fn cname(owner: &str, target: Option<&str>, origin: Option<&str>) -> Line {
        let Some(target) = target else {
            return Line::Bad("CNAME without a target".into());
        };
        let action = match target.to_ascii_lowercase().as_str() {
            "." | "rpz-drop." => Action::Block,
            "*." => Action::NoData,
            "rpz-passthru." => Action::Pass,
            _ => return Line::Unsupported,
        };
        let name = relative(owner, origin);
        if name.split('.').any(|l| l.starts_with("rpz-")) {
            return Line::Unsupported;
        }
        let (name, kind) = match name.strip_prefix("*.") {
            Some(rest) => (rest.to_owned(), MatchKind::Below),
            None => (name, MatchKind::Exact),
        };
        Line::Entries(vec![(name, kind, action)])
    }

    /// An owner name relative to the zone: absolute names lose the origin suffix.
    fn relative(owner: &str, origin: Option<&str>) -> String {
        let lower = owner.to_ascii_lowercase();
        let Some(abs) = lower.strip_suffix('.') else {
            return lower;
        };
        match origin {
            Some(o) if abs == o => String::new(),
            Some(o) => abs.strip_suffix(&format!(".{o}")).unwrap_or(abs).to_owned(),
            None => abs.to_owned(),
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

    #[test]
    fn domain_lists_with_comments_wildcards_crlf_and_bad_lines() {
        let text = "# header\r\nexample.com\r\n  Ads.Example.NET.  # inline\r\n*.wild.example\r\n.dot.example\r\n\r\nbad name.example\r\n10.0.0.1\r\nbücher.example\r\n";
        let parsed = p(text, Format::Domains);
        assert_eq!(
            names(&parsed),
            vec![
                ("example.com".into(), MatchKind::Subtree, Action::Block),
                ("ads.example.net".into(), MatchKind::Subtree, Action::Block),
                ("wild.example".into(), MatchKind::Below, Action::Block),
                ("dot.example".into(), MatchKind::Subtree, Action::Block),
                (
                    "xn--bcher-kva.example".into(),
                    MatchKind::Subtree,
                    Action::Block
                ),
            ]
        );
        let lines: Vec<usize> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [7, 8]);
        assert_eq!(
            parsed.errors[1].to_string(),
            "list.txt:8: IP address, not a domain name: 10.0.0.1"
        );
        assert_eq!(parsed.comments, 2);
    }

    #[test]
    fn exact_sources_keep_plain_entries_exact() {
        let parsed = parse_text(
            Path::new("h"),
            "a.example\n*.b.example\n",
            Format::Domains,
            MatchKind::Exact,
        );
        assert_eq!(names(&parsed)[0].1, MatchKind::Exact);
        assert_eq!(names(&parsed)[1].1, MatchKind::Below);
    }

    #[test]
    fn hosts_files_skip_boilerplate_and_reject_non_addresses() {
        let text = "# StevenBlack\n127.0.0.1 localhost\n::1 localhost ip6-localhost\nfe80::1%lo0 localhost\n0.0.0.0 0.0.0.0\n0.0.0.0 ads.example tracker.example # two\n  # indented comment\nads2.example\n0.0.0.0 bad_host!.example\n";
        let parsed = p(text, Format::Hosts);
        assert_eq!(
            names(&parsed).into_iter().map(|n| n.0).collect::<Vec<_>>(),
            ["ads.example", "tracker.example"]
        );
        let lines: Vec<usize> = parsed.errors.iter().map(|e| e.line).collect();
        assert_eq!(lines, [8, 9]);
    }

    #[test]
    fn adblock_rules() {
        let text = "[Adblock Plus 2.0]\n! comment\n||ads.example^\n||track.example^$important\n@@||ok.ads.example^\n||cdn.example/path/ad.js\nexample.org##.banner\n||x.example^$script\n||bad host.example^\n";
        let parsed = p(text, Format::Adblock);
        assert_eq!(
            names(&parsed),
            vec![
                ("ads.example".into(), MatchKind::Subtree, Action::Block),
                ("track.example".into(), MatchKind::Subtree, Action::Block),
                ("ok.ads.example".into(), MatchKind::Subtree, Action::Pass),
            ]
        );
        assert_eq!(parsed.unsupported, 3);
        assert_eq!(parsed.errors.len(), 1);
        assert_eq!(parsed.errors[0].line, 9);
    }

    #[test]
    fn rpz_zones() {
        let text = "$TTL 300\n$ORIGIN rpz.school.invalid.\n@ IN SOA ns.school.invalid. hostmaster.school.invalid. (\n  1 ; serial\n  3600 600 86400 60 )\n  IN NS ns.school.invalid.\nbad.example CNAME .\n*.bad.example CNAME .\nempty.example 300 IN CNAME *.\nok.bad.example CNAME rpz-passthru.\nabs.example.rpz.school.invalid. CNAME rpz-drop.\nlocal.example A 192.0.2.1\nredirect.example CNAME walled.garden.example.\n32.1.2.0.192.rpz-ip CNAME .\n";
        let parsed = p(text, Format::Rpz);
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert_eq!(
            names(&parsed),
            vec![
                ("bad.example".into(), MatchKind::Exact, Action::Block),
                ("bad.example".into(), MatchKind::Below, Action::Block),
                ("empty.example".into(), MatchKind::Exact, Action::NoData),
                ("ok.bad.example".into(), MatchKind::Exact, Action::Pass),
                ("abs.example".into(), MatchKind::Exact, Action::Block),
            ]
        );
        assert_eq!(parsed.unsupported, 3);
    }

    #[test]
    fn sniffing() {
        assert_eq!(
            sniff("0.0.0.0 a.example\n0.0.0.0 b.example\n"),
            Format::Hosts
        );
        assert_eq!(sniff("! title\n||a.example^\n"), Format::Adblock);
        assert_eq!(sniff("$TTL 60\na CNAME .\n"), Format::Rpz);
        assert_eq!(sniff("# x\na.example\nb.example\n"), Format::Domains);
        let parsed = p("0.0.0.0 a.example\n", Format::Auto);
        assert_eq!(parsed.entries[0].name, "a.example");
    }

    #[test]
    fn ut1_folders() {
        let dir = tempfile::tempdir().unwrap();
        for (cat, text) in [
            ("gambling", "casino.example\n1.2.3.4\n"),
            ("games", "play.example\n"),
        ] {
            std::fs::create_dir(dir.path().join(cat)).unwrap();
            std::fs::write(dir.path().join(cat).join("domains"), text).unwrap();
        }
        std::fs::create_dir(dir.path().join("empty")).unwrap();
        let cats = parse_ut1_dir(dir.path(), &[], MatchKind::Subtree).unwrap();
        assert_eq!(
            cats.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
            ["gambling", "games"]
        );
        assert_eq!(cats[0].1.errors[0].line, 2);
        let only = parse_ut1_dir(dir.path(), &["games".into()], MatchKind::Subtree).unwrap();
        assert_eq!(only.len(), 1);
        assert!(parse_ut1_dir(dir.path(), &["missing".into()], MatchKind::Subtree).is_err());
    }

    #[test]
    fn real_lists_parse_cleanly() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../shared/lists-real");
        let doh = root.join("dibdot-doh/doh-domains_overall.txt");
        if !doh.exists() {
            eprintln!("skipped: {} not present", doh.display());
            return;
        }
        let parsed = parse_file(&doh, Format::Auto, MatchKind::Subtree).unwrap();
        assert!(
            parsed.entries.len() > 1500,
            "{} entries",
            parsed.entries.len()
        );
        assert!(
            parsed.errors.len() < parsed.entries.len() / 50,
            "{:?}",
            &parsed.errors[..parsed.errors.len().min(5)]
        );
    }
}
