//! Hosts files: `IP name [name...]`, the names blocked and the address dropped.

use std::net::IpAddr;

use super::{Action, At, MatchKind, Parsed, parse_host_address, strip_comment};

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
pub(super) fn hosts_line(out: &mut Parsed, at: At<'_>, default_kind: MatchKind) {
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

#[cfg(test)]
mod tests {
    use super::super::testing::*;
    #[allow(unused_imports)]
    use MatchKind::{Below, Exact, Subtree};

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
}
