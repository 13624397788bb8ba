//! `chaperone report`: summaries of the query log for governors (no personal data: groups,
//! categories and counts only) and, with `--detail`, blocked attempts per device for the
//! designated safeguarding lead.
//!
//! Reads the storage database directly; nothing here runs in the server.

use std::fmt::Write as _;

use rusqlite::{Connection, params};

use crate::store::micros;

/// One table of a report.
#[derive(Debug, Clone)]
pub struct Table {
    /// Heading.
    pub title: String,
    /// Column names.
    pub headers: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned plain text.
    Text,
    /// Markdown tables.
    Markdown,
    /// CSV: section,column...,value rows.
    Csv,
}

/// Parse "30d", "12h", "90m" or an RFC 3339 time into the start of the period.
pub fn parse_since(s: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .map_err(|_| format!("{s:?}: expected e.g. 30d, 12h or an RFC 3339 time"))?;
    let hours = match unit {
        "d" => n * 24,
        "h" => n,
        "w" => n * 24 * 7,
        _ => return Err(format!("{s:?}: unit must be d, h or w")),
    };
    Ok(now - jiff::SignedDuration::from_hours(hours))
}

fn pct(part: i64, whole: i64) -> String {
    if whole == 0 {
        "0.0%".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

fn query(conn: &Connection, sql: &str, since: i64) -> rusqlite::Result<Vec<Vec<String>>> {
    let mut stmt = conn.prepare(sql)?;
    let cols = stmt.column_count();
    let rows = stmt.query_map(params![since], |r| {
        (0..cols)
            .map(|i| {
                let v: rusqlite::types::Value = r.get(i)?;
                Ok(match v {
                    rusqlite::types::Value::Null => String::new(),
                    rusqlite::types::Value::Integer(i) => i.to_string(),
                    rusqlite::types::Value::Real(f) => f.to_string(),
                    rusqlite::types::Value::Text(t) => t,
                    rusqlite::types::Value::Blob(_) => "<blob>".to_owned(),
                })
            })
            .collect()
    })?;
    rows.collect()
}

/// The governors' summary: totals, block rate per group, blocks per category and per
/// group and category, incidents, exceptions granted. No addresses, names or devices.
pub fn summary(conn: &Connection, since: jiff::Timestamp) -> rusqlite::Result<Vec<Table>> {
    let s = micros(since);
    let totals = query(
        conn,
        "SELECT decision, COUNT(*) FROM queries WHERE ts_us >= ?1 GROUP BY decision ORDER BY 2 DESC",
        s,
    )?;
    let all: i64 = totals.iter().filter_map(|r| r[1].parse::<i64>().ok()).sum();
    let mut total_rows: Vec<Vec<String>> = totals
        .iter()
        .map(|r| {
            vec![
                r[0].clone(),
                r[1].clone(),
                pct(r[1].parse().unwrap_or(0), all),
            ]
        })
        .collect();
    total_rows.push(vec!["all".into(), all.to_string(), "100.0%".into()]);

    let groups = query(
        conn,
        "SELECT grp, COUNT(*), SUM(decision = 'blocked') FROM queries WHERE ts_us >= ?1 GROUP BY grp ORDER BY grp",
        s,
    )?;
    let group_rows = groups
        .iter()
        .map(|r| {
            let (n, b) = (r[1].parse().unwrap_or(0), r[2].parse().unwrap_or(0));
            vec![r[0].clone(), r[1].clone(), r[2].clone(), pct(b, n)]
        })
        .collect();
    let categories = query(
        conn,
        "SELECT category, COUNT(*) FROM queries WHERE ts_us >= ?1 AND decision = 'blocked' GROUP BY category ORDER BY 2 DESC",
        s,
    )?;
    let group_categories = query(
        conn,
        "SELECT grp, category, COUNT(*) FROM queries WHERE ts_us >= ?1 AND decision = 'blocked' GROUP BY grp, category ORDER BY grp, 3 DESC",
        s,
    )?;
    let incidents = query(
        conn,
        "SELECT category, COUNT(*) FROM incidents WHERE ts_us >= ?1 GROUP BY category ORDER BY 2 DESC",
        s,
    )?;
    let exceptions = query(
        conn,
        "SELECT domain, groups, reason, datetime(expires_us / 1000000, 'unixepoch'), CASE WHEN revoked_us IS NULL THEN '' ELSE 'revoked' END
         FROM exceptions WHERE created_us >= ?1 ORDER BY created_us",
        s,
    )?;
    let t = |title: &str, headers: &[&str], rows| Table {
        title: title.to_owned(),
        headers: headers.iter().map(|h| h.to_string()).collect(),
        rows,
    };
    Ok(vec![
        t("Queries", &["decision", "queries", "share"], total_rows),
        t(
            "Block rate by group",
            &["group", "queries", "blocked", "block rate"],
            group_rows,
        ),
        t("Blocked by category", &["category", "blocked"], categories),
        t(
            "Blocked by group and category",
            &["group", "category", "blocked"],
            group_categories,
        ),
        t(
            "Illegal-category incidents",
            &["category", "incidents"],
            incidents,
        ),
        t(
            "Temporary unblocks granted",
            &["domain", "groups", "reason", "expires (UTC)", "state"],
            exceptions,
        ),
    ])
}

/// For the safeguarding lead: blocked attempts per device (address or pseudonym, and
/// nominated device name), with what was asked and when.
pub fn detail(conn: &Connection, since: jiff::Timestamp) -> rusqlite::Result<Vec<Table>> {
    let s = micros(since);
    let rows = query(
        conn,
        "SELECT client, COALESCE(device, ''), COALESCE(mac, ''), grp, name, category, COUNT(*),
                datetime(MIN(ts_us) / 1000000, 'unixepoch'), datetime(MAX(ts_us) / 1000000, 'unixepoch')
         FROM queries WHERE ts_us >= ?1 AND decision = 'blocked'
         GROUP BY client, device, mac, grp, name, category ORDER BY client, 7 DESC",
        s,
    )?;
    let incidents = query(
        conn,
        "SELECT datetime(ts_us / 1000000, 'unixepoch'), client, COALESCE(device, ''), grp, name, category, alert_status
         FROM incidents WHERE ts_us >= ?1 ORDER BY ts_us",
        s,
    )?;
    Ok(vec![
        Table {
            title: "Blocked attempts per device".into(),
            headers: [
                "client",
                "device",
                "mac",
                "group",
                "name",
                "category",
                "attempts",
                "first (UTC)",
                "last (UTC)",
            ]
            .map(String::from)
            .to_vec(),
            rows,
        },
        Table {
            title: "Incidents".into(),
            headers: [
                "time (UTC)",
                "client",
                "device",
                "group",
                "name",
                "category",
                "alert",
            ]
            .map(String::from)
            .to_vec(),
            rows: incidents,
        },
    ])
}

/// Render tables in a format.
pub fn render(tables: &[Table], format: Format, heading: &str) -> String {
    match format {
        Format::Text => render_text(tables, heading),
        Format::Markdown => render_markdown(tables, heading),
        Format::Csv => render_csv(tables),
    }
}

fn render_text(tables: &[Table], heading: &str) -> String {
    let mut out = format!("{heading}\n\n");
    for t in tables {
        let _ = writeln!(out, "{}", t.title);
        let widths: Vec<usize> = (0..t.headers.len())
            .map(|i| {
                t.rows
                    .iter()
                    .map(|r| r.get(i).map_or(0, |c| c.chars().count()))
                    .chain([t.headers[i].len()])
                    .max()
                    .unwrap_or(0)
            })
            .collect();
        let line = |cells: &[String]| {
            cells
                .iter()
                .enumerate()
                .map(|(i, c)| format!("{c:<w$}", w = widths[i]))
                .collect::<Vec<_>>()
                .join("  ")
                .trim_end()
                .to_owned()
        };
        let _ = writeln!(out, "  {}", line(&t.headers));
        if t.rows.is_empty() {
            let _ = writeln!(out, "  (none)");
        }
        for r in &t.rows {
            let _ = writeln!(out, "  {}", line(r));
        }
        out.push('\n');
    }
    out
}

fn render_markdown(tables: &[Table], heading: &str) -> String {
    let mut out = format!("# {heading}\n\n");
    for t in tables {
        let _ = writeln!(out, "## {}\n", t.title);
        if t.rows.is_empty() {
            out.push_str("None.\n\n");
            continue;
        }
        let _ = writeln!(out, "| {} |", t.headers.join(" | "));
        let _ = writeln!(out, "|{}", "---|".repeat(t.headers.len()));
        for r in &t.rows {
            let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
            let _ = writeln!(out, "| {} |", cells.join(" | "));
        }
        out.push('\n');
    }
    out
}

fn csv_cell(c: &str) -> String {
    if c.contains([',', '"', '\n']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.to_owned()
    }
}

fn render_csv(tables: &[Table]) -> String {
    let mut out = String::new();
    for t in tables {
        let mut header = vec!["section".to_owned()];
        header.extend(t.headers.iter().cloned());
        let _ = writeln!(
            out,
            "{}",
            header
                .iter()
                .map(|c| csv_cell(c))
                .collect::<Vec<_>>()
                .join(",")
        );
        for r in &t.rows {
            let mut row = vec![t.title.clone()];
            row.extend(r.iter().cloned());
            let _ = writeln!(
                out,
                "{}",
                row.iter()
                    .map(|c| csv_cell(c))
                    .collect::<Vec<_>>()
                    .join(",")
            );
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn since_forms() {
        let now: jiff::Timestamp = "2026-11-30T00:00:00Z".parse().unwrap();
        assert_eq!(
            parse_since("30d", now).unwrap().to_string(),
            "2026-10-31T00:00:00Z"
        );
        assert_eq!(
            parse_since("12h", now).unwrap().to_string(),
            "2026-11-29T12:00:00Z"
        );
        assert_eq!(
            parse_since("2026-11-01T00:00:00Z", now)
                .unwrap()
                .to_string(),
            "2026-11-01T00:00:00Z"
        );
        assert!(parse_since("soon", now).is_err());
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let t = Table {
            title: "T".into(),
            headers: vec!["a".into()],
            rows: vec![vec!["x, \"y\"".into()]],
        };
        assert_eq!(render_csv(&[t]), "section,a\nT,\"x, \"\"y\"\"\"\n");
    }
}
