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
    /// Entries per (source file or folder, category); empty for a prebuilt bundle.
    pub per_source: BTreeMap<(PathBuf, String), u64>,
    /// Names per category in the bundle.
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
                    "category {cat} shrank from {before} to {after} names (-{:.0}%)",
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
    /// Entries parsed from it.
    pub entries: u64,
}

impl CompileReport {
    /// A human summary: per-category counts and duplicates, then totals.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        for (cat, kept) in &self.stats.kept {
            let dups = self.stats.duplicates.get(cat).copied().unwrap_or(0);
            out.push_str(&format!(
                "  {cat:<24} {kept:>10} names  {dups:>8} duplicates removed\n"
            ));
        }
        out.push_str(&format!(
            "  {} distinct names, {} bytes ({:.1} bytes/name); {} bad lines, {} comments, {} unsupported rules skipped\n",
            self.stats.names,
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
            match report.per_source.last_mut() {
                Some(last) if last.path == src.path && last.category == category => {
                    last.entries += parsed.entries.len() as u64;
                }
                _ => report.per_source.push(SourceCount {
                    path: src.path.clone(),
                    category: category.to_owned(),
                    entries: parsed.entries.len() as u64,
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
