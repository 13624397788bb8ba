//! Plain domain lists (one name per line) and UT1 `domains` files.

use super::{Action, At, MatchKind, Parsed, parse_host_address, strip_comment};

/// Plain domain lists and UT1 `domains` files. `#` starts a comment anywhere; `!` and `;`
/// at the start of a line are accepted as comments too, because exported lists use them.
/// A line that is an address or CIDR is an IP entry (see [`super::ip::ip_net`]).
pub(super) fn domain_line(out: &mut Parsed, at: At<'_>, default_kind: MatchKind) {
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
    // Only lines that can be addresses pay for the address parser.
    if line.contains([':', '/']) || line.starts_with(|c: char| c.is_ascii_digit()) {
        return out.entry_or_ip(at, line, default_kind, Action::Block);
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    #[allow(unused_imports)]
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
        assert_eq!(error_lines(&parsed), [7]);
        assert_eq!(
            parsed.errors[0].to_string(),
            "list.txt:7: expected one name per line: bad name.example"
        );
        assert_eq!(ips(&parsed), [("10.0.0.1/32".to_owned(), Action::Block)]);
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
    fn ip_entries_in_domain_lists() {
        // Real UT1 lines (hacking/domains starts with addresses; names that begin with
        // an address are names), then CIDRs, IPv6 and the odd cases.
        let text = "157.238.207.26\n168.143.118.148\n209.8.180.34.com\n\
                    114.138.61.34.bc.googleusercontent.com\n198.51.100.0/24\n\
                    2001:db8::/32   # v6\n[2001:db8::1]\n::ffff:192.0.2.1\n\
                    010.0.0.1\n1.2.3.4-1.2.3.9\n10.0.0.1/8\n0.0.0.0/0\n300.1.1.1\n";
        let parsed = p(text, Format::Domains);
        assert_eq!(
            names(&parsed),
            [
                block("209.8.180.34.com", Subtree),
                block("114.138.61.34.bc.googleusercontent.com", Subtree)
            ]
        );
        let got: Vec<String> = ips(&parsed).into_iter().map(|(n, _)| n).collect();
        assert_eq!(
            got,
            [
                "157.238.207.26/32",
                "168.143.118.148/32",
                "198.51.100.0/24",
                "2001:db8::/32",
                "2001:db8::1/128",
                "192.0.2.1/32"
            ]
        );
        assert_eq!(error_lines(&parsed), [9, 10, 11, 12, 13]);
        assert!(parsed.errors[2].reason.contains("did you mean 10.0.0.0/8?"));
    }

    #[test]
    fn real_doh_ip_lists_parse_as_ips() {
        let (mut v4, mut v6) = (0, 0);
        for (file, count) in [
            ("dibdot-doh/doh-ipv4.txt.xz", &mut v4),
            ("dibdot-doh/doh-ipv6.txt.xz", &mut v6),
        ] {
            let bytes = crate::lists::decompress::read_file(&real(file), 1 << 26).unwrap();
            let parsed = parse_bytes(Path::new(file), bytes, Format::Auto, Subtree).unwrap();
            assert!(
                parsed.errors.is_empty(),
                "{file}: {:?}",
                &parsed.errors[..1]
            );
            assert!(parsed.entries.is_empty(), "{file}");
            *count = parsed.ips.len();
        }
        assert!(v4 > 1900 && v6 > 1300, "{v4} {v6}");
    }

    #[test]
    fn real_doh_list_parses_cleanly() {
        let doh = real("dibdot-doh/doh-domains_overall.txt");
        let parsed = parse_file(&doh, Format::Auto, Subtree).unwrap();
        assert!(parsed.entries.len() > 1800, "{}", parsed.entries.len());
        assert!(parsed.errors.is_empty(), "{:?}", parsed.errors);
        assert!(parsed.entries.iter().any(|e| e.name == "dns.google"));
    }
}
