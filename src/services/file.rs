//! One catalogue file as written: `lists/services/NAME.toml`, read with serde and checked
//! into a [`Service`]. Owns the file format and its limits; knows nothing of configs or
//! policy.

use serde::Deserialize;

use super::{GROUPS, Service};
use crate::lists::key::normalize_domain;

/// Largest catalogue file read, bytes: a service is a handful of domains, not a list.
pub const MAX_FILE_BYTES: u64 = 64 * 1024;
/// Most domains one service may have.
pub const MAX_DOMAINS: usize = 500;
/// Longest service name.
pub const MAX_NAME: usize = 40;
/// Longest title, description or source note.
pub const MAX_TEXT: usize = 1000;

/// The file exactly as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawService {
    name: String,
    title: String,
    description: String,
    groups: Vec<String>,
    source: String,
    domains: Vec<String>,
}

/// Parse and check one file's text; every problem is `(key, message)`.
pub fn parse(text: &str) -> Result<Service, Vec<(String, String)>> {
    let raw: RawService = toml::from_str(text).map_err(|e| {
        let msg = e.message().to_owned();
        let at = e
            .span()
            .map(|s| {
                format!(
                    "line {}",
                    text[..s.start.min(text.len())].lines().count().max(1)
                )
            })
            .unwrap_or_else(|| "file".to_owned());
        vec![(at, msg)]
    })?;
    let mut problems = Vec::new();
    let mut bad = |key: &str, msg: String| problems.push((key.to_owned(), msg));
    if let Err(m) = check_name(&raw.name) {
        bad("name", m);
    }
    for (key, value) in [
        ("title", &raw.title),
        ("description", &raw.description),
        ("source", &raw.source),
    ] {
        if value.trim().is_empty() {
            bad(key, "must not be empty".to_owned());
        } else if value.len() > MAX_TEXT {
            bad(key, format!("longer than {MAX_TEXT} bytes"));
        }
    }
    if raw.groups.is_empty() {
        bad("groups", "at least one group is required".to_owned());
    }
    for (i, g) in raw.groups.iter().enumerate() {
        if !GROUPS.iter().any(|(known, _)| known == g) {
            bad(
                &format!("groups[{i}]"),
                format!(
                    "unknown group {g:?}{}",
                    super::suggest(g, GROUPS.iter().map(|(n, _)| *n))
                ),
            );
        }
    }
    let domains = domains(&raw.domains, &mut bad);
    if !problems.is_empty() {
        return Err(problems);
    }
    Ok(Service {
        name: raw.name,
        title: raw.title,
        description: raw.description,
        groups: raw.groups,
        source: raw.source,
        domains,
        file: Default::default(),
    })
}

/// Each domain normalised (lowercase, punycode), with at least two labels (a bare
/// top-level domain would block a whole TLD), no duplicates, at most [`MAX_DOMAINS`].
fn domains(raw: &[String], bad: &mut impl FnMut(&str, String)) -> Vec<String> {
    if raw.is_empty() {
        bad("domains", "at least one domain is required".to_owned());
    }
    if raw.len() > MAX_DOMAINS {
        bad(
            "domains",
            format!("{} domains, at most {MAX_DOMAINS}", raw.len()),
        );
    }
    let mut out: Vec<String> = Vec::new();
    for (i, d) in raw.iter().enumerate().take(MAX_DOMAINS) {
        let key = format!("domains[{i}]");
        match normalize_domain(d) {
            Ok(n) if !n.contains('.') => {
                bad(&key, format!("{d:?} is a whole top-level domain"));
            }
            Ok(n) if out.contains(&n) => bad(&key, format!("{d:?} is listed twice")),
            Ok(n) => out.push(n),
            Err(e) => bad(&key, format!("{d:?} is not a domain name: {e}")),
        }
    }
    out
}

/// A service name: lowercase letters, digits and '-', starting with a letter or digit.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= MAX_NAME
        && !name.starts_with('-')
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "{name:?} is not a service name (lowercase letters, digits and '-', at most {MAX_NAME})"
        ))
    }
}
