//! Sources → bundle: read every configured list, report bad lines as `file:line`, and
//! build the bundle bytes. Used by `chaperone compile`, `check`, and by `serve` when the
//! config names sources.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::bundle::{BuildStats, BundleBuilder, BundleError};
use super::parse::{self, Format, LineError, Parsed};
use crate::config::SourceConfig;

/// How many entries each list file and each category held when a snapshot was built.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListCounts {
    /// Entries (names and IPs) per (source file or folder, category); empty for a
    /// prebuilt bundle.
    pub per_source: BTreeMap<(PathBuf, String), u64>,
    /// Names and IP entries per category in the bundle.
    pub per_category: BTreeMap<String, u64>,
}

impl ListCounts {
    /// Lines describing every file or category that shrank by more than `max_shrink`
    /// (a fraction) from `old` to `self`. Files or categories no longer configured are a
    /// deliberate change and are not compared.
    pub fn shrunk_from(&self, old: &ListCounts, max_shrink: f64) -> Vec<String> {
        let mut out = Vec::new();
        let too_small = |before: u64, after: u64| {
            before > 0 && after < before && (before - after) as f64 / before as f64 > max_shrink
        };
        let pct = |before: u64, after: u64| 100.0 * (before - after) as f64 / before as f64;
        for ((path, cat), &before) in &old.per_source {
            if let Some(&after) = self.per_source.get(&(path.clone(), cat.clone()))
                && too_small(before, after)
            {
                out.push(format!(
                    "list file {} (category {cat}) shrank from {before} to {after} entries (-{:.0}%)",
                    path.display(),
                    pct(before, after)
                ));
            }
        }
        for (cat, &before) in &old.per_category {
            if let Some(&after) = self.per_category.get(cat)
                && too_small(before, after)
            {
                out.push(format!(
                    "category {cat} shrank from {before} to {after} entries (-{:.0}%)",
                    pct(before, after)
                ));
            }
        }
        out
    }
}

/// Why compiling failed outright (bad lines are not failures; see [`CompileReport`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CompileError {
    /// A source could not be read.
    #[error("cannot read list {}: {source}", path.display())]
    Read {
        /// The source.
        path: PathBuf,
        /// Cause.
        source: std::io::Error,
    },
    /// The bundle could not be built.
    #[error(transparent)]
    Bundle(#[from] BundleError),
}

/// What a compile found.
#[derive(Debug, Default)]
pub struct CompileReport {
    /// Counts per category.
    pub stats: BuildStats,
    /// Every rejected line.
    pub errors: Vec<LineError>,
    /// Comment lines skipped.
    pub comments: usize,
    /// Well-formed lines with no DNS meaning (cosmetic adblock rules, RPZ local data).
    pub unsupported: usize,
    /// Entries read per source file (per category for a ut1 folder), in source order, so
    /// a reload can tell which file shrank.
    pub per_source: Vec<SourceCount>,
}

/// Entries one source contributed to one category.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SourceCount {
    /// The source file or folder.
    pub path: std::path::PathBuf,
    /// The category.
    pub category: String,
    /// Entries (names and IPs) parsed from it.
    pub entries: u64,
}

impl ListCounts {
    /// Counts of a compile: per source as parsed, per category as kept in the bundle
    /// (names plus IP entries).
    pub fn from_report(report: &CompileReport) -> ListCounts {
        ListCounts {
            per_source: report
                .per_source
                .iter()
                .map(|s| ((s.path.clone(), s.category.clone()), s.entries))
                .collect(),
            per_category: report
                .per_source
                .iter()
                .map(|s| (s.category.clone(), report.stats.entries_of(&s.category)))
                .collect(),
        }
    }

    /// Counts of a prebuilt bundle: names plus IP entries per category, an emptied
    /// category counting as 0.
    pub fn from_bundle(bundle: &super::Bundle) -> ListCounts {
        let header = bundle.header();
        let of = |m: &BTreeMap<String, u64>, c: &String| m.get(c).copied().unwrap_or(0);
        ListCounts {
            per_source: BTreeMap::new(),
            per_category: bundle
                .categories()
                .iter()
                .map(|c| (c.clone(), of(&header.counts, c) + of(&header.ip_counts, c)))
                .collect(),
        }
    }
}

impl BuildStats {
    /// Names plus IP entries kept for `category`.
    pub fn entries_of(&self, category: &str) -> u64 {
        self.kept.get(category).copied().unwrap_or(0) + self.ips.get(category).copied().unwrap_or(0)
    }
}

impl CompileReport {
    /// A human summary: per-category counts and duplicates, then totals.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let of = |m: &BTreeMap<String, u64>, c: &String| m.get(c).copied().unwrap_or(0);
        let mut cats: Vec<&String> = self
            .stats
            .kept
            .keys()
            .chain(self.stats.ips.keys())
            .collect();
        cats.sort();
        cats.dedup();
        for cat in cats {
            let kept = of(&self.stats.kept, cat);
            let ips = of(&self.stats.ips, cat);
            let dups = of(&self.stats.duplicates, cat) + of(&self.stats.ips_offered, cat) - ips;
            out.push_str(&format!(
                "  {cat:<24} {kept:>10} names  {ips:>8} IPs  {dups:>8} duplicates removed\n"
            ));
        }
        let ips: u64 = self.stats.ips.values().sum();
        out.push_str(&format!(
            "  {} distinct names, {ips} IP entries ({} intervals), {} bytes ({:.1} bytes/name); {} bad lines, {} comments, {} unsupported rules skipped\n",
            self.stats.names,
            self.stats.ip_intervals,
            self.stats.bytes,
            self.stats.bytes as f64 / self.stats.names.max(1) as f64,
            self.errors.len(),
            self.comments,
            self.unsupported
        ));
        out
    }
}

/// Parse the source `src` as read from `path` (its own path, or a staged download),
/// handing `each(category, piece)` the entries a piece at a time (see
/// [`parse::parse_text_chunked`]), so a list of millions of names is never held parsed all
/// at once.
pub fn for_each_piece(
    src: &SourceConfig,
    path: &Path,
    mut each: impl FnMut(&str, Parsed),
) -> std::io::Result<()> {
    if src.format == Format::Ut1 {
        return parse::for_each_ut1_piece(path, &src.only, src.default_kind, each);
    }
    let text = parse::to_text(path, std::fs::read(path)?)?;
    let category = src.category.clone().unwrap_or_default();
    parse::parse_text_chunked(path, &text, src.format, src.default_kind, |p| {
        each(&category, p)
    });
    Ok(())
}

/// Compile sources into bundle bytes.
pub fn compile_sources(sources: &[SourceConfig]) -> Result<(Vec<u8>, CompileReport), CompileError> {
    compile_with_services(sources, &[])
}

/// Compile sources and the catalogue services a config names (`crate::services`): each
/// `(category, file, domains)` becomes a category of its own, its domains matched with their
/// subdomains. Services come first so that a name both in a list and in a service is
/// reported (metrics, query log, report) as the service, the more specific of the two.
pub fn compile_with_services(
    sources: &[SourceConfig],
    services: &[(String, PathBuf, Vec<String>)],
) -> Result<(Vec<u8>, CompileReport), CompileError> {
    let mut builder = BundleBuilder::new();
    let mut report = CompileReport::default();
    for (category, file, domains) in services {
        let id = builder.category(category)?;
        for d in domains {
            builder.add(id, d, parse::MatchKind::Subtree, parse::Action::Block);
        }
        report.per_source.push(SourceCount {
            path: file.clone(),
            category: category.clone(),
            entries: domains.len() as u64,
        });
    }
    for src in sources {
        let mut failed: Option<BundleError> = None;
        for_each_piece(src, &src.path, |category, parsed| {
            let id = match builder.category(category) {
                Ok(id) => id,
                Err(e) => {
                    failed.get_or_insert(e);
                    return;
                }
            };
            for e in &parsed.entries {
                builder.add(id, &e.name, e.kind, e.action);
            }
            for ip in &parsed.ips {
                if let Err(e) = builder.add_ip(id, ip.net, ip.action) {
                    failed.get_or_insert(e);
                    return;
                }
            }
            let n = (parsed.entries.len() + parsed.ips.len()) as u64;
            match report.per_source.last_mut() {
                Some(last) if last.path == src.path && last.category == category => {
                    last.entries += n;
                }
                _ => report.per_source.push(SourceCount {
                    path: src.path.clone(),
                    category: category.to_owned(),
                    entries: n,
                }),
            }
            report.errors.extend(parsed.errors);
            report.comments += parsed.comments;
            report.unsupported += parsed.unsupported;
        })
        .map_err(|source| CompileError::Read {
            path: src.path.clone(),
            source,
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
    }
    let (bytes, stats) = builder.finish()?;
    report.stats = stats;
    Ok((bytes, report))
}

/// Compile list files given on the command line: each `CATEGORY=PATH` (format sniffed,
/// or `CATEGORY=FORMAT:PATH`), or a UT1 folder as `ut1:PATH`.
pub fn sources_from_args(args: &[String]) -> Result<Vec<SourceConfig>, String> {
    args.iter().map(|a| source_from_arg(a)).collect()
}

fn source_from_arg(arg: &str) -> Result<SourceConfig, String> {
    use crate::lists::parse::MatchKind;
    if let Some(dir) = arg.strip_prefix("ut1:") {
        return Ok(SourceConfig {
            category: None,
            path: Path::new(dir).to_owned(),
            format: Format::Ut1,
            default_kind: MatchKind::Subtree,
            only: Vec::new(),
            url: None,
        });
    }
    let (category, rest) = arg.split_once('=').ok_or_else(|| {
        format!("{arg:?}: expected CATEGORY=PATH, CATEGORY=FORMAT:PATH or ut1:FOLDER")
    })?;
    let (format, path) = match rest.split_once(':') {
        Some((f, p)) => (
            parse_format(f).ok_or_else(|| {
                format!("{arg:?}: unknown format {f:?} (auto, domains, hosts, adblock, rpz)")
            })?,
            p,
        ),
        None => (Format::Auto, rest),
    };
    Ok(SourceConfig {
        category: Some(category.to_owned()),
        path: Path::new(path).to_owned(),
        format,
        default_kind: MatchKind::Subtree,
        only: Vec::new(),
        url: None,
    })
}

fn parse_format(s: &str) -> Option<Format> {
    Some(match s {
        "auto" => Format::Auto,
        "domains" => Format::Domains,
        "hosts" => Format::Hosts,
        "adblock" => Format::Adblock,
        "rpz" => Format::Rpz,
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ip_entries_are_compiled_counted_and_guarded_against_shrinking() {
        let dir = tempfile::tempdir().unwrap();
        let ips: String = (0..100).map(|i| format!("192.0.2.{i}\n")).collect();
        std::fs::write(dir.path().join("doh.txt"), &ips).unwrap();
        std::fs::write(dir.path().join("names.txt"), "a.example\n").unwrap();
        let args = |doh: &Path| {
            sources_from_args(&[
                format!("doh={}", doh.display()),
                format!("doh={}", dir.path().join("names.txt").display()),
            ])
            .unwrap()
        };
        let (bytes, report) = compile_sources(&args(&dir.path().join("doh.txt"))).unwrap();
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        assert_eq!(report.stats.ips["doh"], 100);
        assert!(report.summary().contains("doh    "), "{}", report.summary());
        assert!(
            report.summary().contains("1 names       100 IPs"),
            "{}",
            report.summary()
        );
        let before = ListCounts::from_report(&report);
        assert_eq!(before.per_category["doh"], 101);
        assert_eq!(before.per_source.values().sum::<u64>(), 101);
        let bundle = super::super::Bundle::from_vec(bytes).unwrap();
        assert_eq!(
            ListCounts::from_bundle(&bundle),
            ListCounts {
                per_source: BTreeMap::new(),
                per_category: before.per_category.clone(),
            }
        );
        // The address file truncated to a tenth: the reload guard sees it.
        let short = dir.path().join("short.txt");
        std::fs::write(&short, &ips[..ips.len() / 10]).unwrap();
        let (_, report) = compile_sources(&args(&short)).unwrap();
        let mut after = ListCounts::from_report(&report);
        // Same file name as before, as a reload would see it.
        after.per_source = after
            .per_source
            .into_iter()
            .map(|((p, c), n)| {
                let p = if p == short {
                    dir.path().join("doh.txt")
                } else {
                    p
                };
                ((p, c), n)
            })
            .collect();
        let shrunk = after.shrunk_from(&before, 0.5);
        assert_eq!(shrunk.len(), 2, "{shrunk:?}");
        assert!(
            shrunk[1].contains("category doh shrank from 101 to 11 entries"),
            "{shrunk:?}"
        );
    }
}
