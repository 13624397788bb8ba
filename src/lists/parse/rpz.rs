//! RPZ zone files: RFC 1035 master-file syntax carrying the QNAME-trigger actions of the
//! RPZ draft (draft-vixie-dnsop-dns-rpz). QNAME triggers and response-IP (`rpz-ip`)
//! triggers with the standard actions are read; everything else is counted, not guessed at.

use super::*;

/// Suffixes (last label of the owner, relative to the zone) of the triggers that are
/// neither QNAME nor response-IP (`rpz-ip`, read as IP entries).
const OTHER_TRIGGERS: &[&str] = &["rpz-nsip", "rpz-nsdname", "rpz-client-ip"];

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
    if let Some(trigger) = name.strip_suffix(".rpz-ip") {
        let labels: Vec<&str> = trigger.split('.').collect();
        return match super::ip::rpz_ip(&labels) {
            Ok(net) => out.ips.push(IpEntry { net, action }),
            Err(reason) => out.bad(at, reason),
        };
    }
    if name
        .rsplit('.')
        .next()
        .is_some_and(|last| OTHER_TRIGGERS.contains(&last) || last == "rpz-ip")
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    #[allow(unused_imports)]
    use MatchKind::{Below, Exact, Subtree};

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
        // A, TXT, redirect, rpz-nsdname.
        assert_eq!(parsed.unsupported, 4);
        assert_eq!(ips(&parsed), [("192.0.2.1/32".to_owned(), Action::Block)]);
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
    fn rpz_ip_triggers() {
        let text = "$ORIGIN rpz.school.invalid.\n\
                    32.66.113.0.203.rpz-ip CNAME .\n\
                    24.0.100.51.198.rpz-ip.rpz.school.invalid. CNAME rpz-drop.\n\
                    32.67.113.0.203.rpz-ip CNAME rpz-passthru.\n\
                    128.1.zz.db8.2001.rpz-ip CNAME *.\n\
                    48.zz.db8.2001.rpz-ip CNAME .\n\
                    24.1.100.51.198.rpz-ip CNAME .\n\
                    32.1.2.3.rpz-ip CNAME .\n\
                    32.1.2.3.4.rpz-ip A 192.0.2.1\n\
                    32.1.2.3.4.rpz-client-ip CNAME .\n";
        let parsed = p(text, Format::Rpz);
        assert!(parsed.entries.is_empty());
        assert_eq!(
            ips(&parsed),
            [
                ("203.0.113.66/32".to_owned(), Action::Block),
                ("198.51.100.0/24".to_owned(), Action::Block),
                ("203.0.113.67/32".to_owned(), Action::Pass),
                ("2001:db8::1/128".to_owned(), Action::NoData),
                ("2001:db8::/48".to_owned(), Action::Block),
            ]
        );
        assert_eq!(error_lines(&parsed), [7, 8]);
        assert!(parsed.errors[0].reason.contains("host bits"));
        // Local data at an rpz-ip owner, and a client-IP trigger.
        assert_eq!(parsed.unsupported, 2);
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
}
