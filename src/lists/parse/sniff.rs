//! Format sniffing: which syntax an `auto` source is written in.

use super::{Format, parse_host_address, strip_comment};

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
        } else if parse_host_address(first).is_some()
            && strip_comment(line).split_whitespace().nth(1).is_some()
        {
            // An address and names; an address alone (`1.1.1.1  # dns`) is an IP entry
            // of a plain list.
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    use super::*;
    #[allow(unused_imports)]
    use MatchKind::{Below, Exact, Subtree};

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
}
