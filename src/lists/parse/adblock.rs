//! Adblock-style rules: only `||name^` rules (and their `@@` exceptions) mean anything to a
//! DNS filter; everything else is counted as unsupported, not guessed at.

use super::{Action, At, MatchKind, Parsed};

/// Adblock options that leave a `||domain^` rule meaning "block the whole domain", so a
/// DNS filter can honour them. Everything else narrows the rule to some requests (e.g.
/// `$third-party`, `$script`, `$popup`, `$domain=`), which DNS cannot see: applying them
/// to the whole domain would over-block, so such rules are counted as unsupported.
const ADBLOCK_DNS_OPTIONS: &[&str] = &["important", "all", "document", "doc"];

/// Adblock-style rules: `||d^` (block d and below), `@@||d^` (exception).
pub(super) fn adblock_line(out: &mut Parsed, at: At<'_>) {
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
    // `||203.0.113.66^`, `||198.51.100.0/24^`, `||[2001:db8::1]^`: answers' addresses.
    match super::ip::ip_net(name) {
        Ok(Some(net)) => return out.ips.push(super::IpEntry { net, action }),
        Err(reason) => return out.bad(at, reason),
        Ok(None) => {}
    }
    // Paths, wildcards and mid-rule separators: the rule is about URLs on that host.
    if name.is_empty() || name.contains(['/', '*', '^', '|', ':', '?', '=']) {
        out.unsupported += 1;
        return;
    }
    out.entry(at, name, MatchKind::Subtree, action);
}

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    #[allow(unused_imports)]
    use MatchKind::{Below, Exact, Subtree};

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
                    plain.example\n\
                    ||203.0.113.66^\n\
                    @@||203.0.113.67^\n\
                    ||198.51.100.0/24^\n\
                    ||[2001:db8::1]^\n\
                    ||010.1.1.1^\n";
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
        assert_eq!(error_lines(&parsed), [9, 22, 28]);
        assert_eq!(
            ips(&parsed),
            [
                ("203.0.113.66/32".to_owned(), Action::Block),
                ("203.0.113.67/32".to_owned(), Action::Pass),
                ("198.51.100.0/24".to_owned(), Action::Block),
                ("2001:db8::1/128".to_owned(), Action::Block),
            ]
        );
        assert_eq!(parsed.comments, 3);
    }
}
