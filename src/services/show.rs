//! `chaperone services`: the catalogue as a table, one service in full, or JSON.

use std::fmt::Write as _;

use super::{Catalogue, GROUPS, Service};

/// What to show.
#[derive(Debug, Clone, Default)]
pub struct Query {
    /// One service by name (else every service).
    pub name: Option<String>,
    /// Only services in this group.
    pub group: Option<String>,
    /// JSON instead of text.
    pub json: bool,
}

/// Render the answer, or say what is wrong with the query.
pub fn render(c: &Catalogue, q: &Query) -> Result<String, String> {
    if let Some(name) = &q.name {
        let name = name.strip_prefix(super::SERVICE_PREFIX).unwrap_or(name);
        let s = c.get(name).ok_or_else(|| c.unknown_service(name))?;
        return Ok(if q.json { json(&s) } else { one(s) });
    }
    if let Some(g) = &q.group
        && !GROUPS.iter().any(|(known, _)| known == g)
    {
        return Err(format!(
            "unknown service group {g:?}{} (groups: {})",
            super::suggest(g, GROUPS.iter().map(|(n, _)| *n)),
            GROUPS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    let chosen: Vec<&Service> = match &q.group {
        Some(g) => c.members(g).collect(),
        None => c.services().collect(),
    };
    Ok(if q.json {
        json(&chosen)
    } else {
        table(c, &chosen)
    })
}

fn json<T: serde::Serialize + ?Sized>(v: &T) -> String {
    serde_json::to_string_pretty(v).unwrap_or_default() + "\n"
}

fn table(c: &Catalogue, services: &[&Service]) -> String {
    let mut out = format!(
        "{:<20} {:<28} {:>7}  DESCRIPTION\n",
        "SERVICE", "GROUPS", "DOMAINS"
    );
    for s in services {
        let _ = writeln!(
            out,
            "{:<20} {:<28} {:>7}  {}",
            s.name,
            s.groups.join(","),
            s.domains.len(),
            first_sentence(&s.description)
        );
    }
    let _ = writeln!(
        out,
        "{} services from {}; use one in a config as \"service:NAME\", or a group as \"service-group:GROUP\"",
        services.len(),
        c.dir.display()
    );
    out
}

fn one(s: &Service) -> String {
    let mut out = format!("service:{} ({})\n", s.name, s.title);
    let _ = writeln!(out, "description: {}", s.description);
    let _ = writeln!(out, "groups: {}", s.groups.join(", "));
    let _ = writeln!(out, "source: {}", s.source);
    let _ = writeln!(out, "file: {}", s.file.display());
    let _ = writeln!(
        out,
        "domains ({}, each with its subdomains):",
        s.domains.len()
    );
    for d in &s.domains {
        let _ = writeln!(out, "  {d}");
    }
    out
}

fn first_sentence(text: &str) -> &str {
    let end = text.find(". ").map_or(text.len(), |i| i + 1);
    &text[..end]
}
