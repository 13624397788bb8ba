//! The admin API's JSON answers as a person reads them: lists as aligned tables, times in
//! the school's time zone, expiry as "2 h 10 min left". Scripts use `--json` and get the
//! API's own JSON; nothing here is parsed back.

use std::fmt::Write as _;

use jiff::Timestamp;
use jiff::tz::TimeZone;
use serde_json::{Map, Value};

/// Columns shown first, in this order, when a row has them; others follow by name.
const FIRST: &[&str] = &[
    "id", "state", "status", "at", "domain", "name", "groups", "expires", "category", "client",
    "device", "reason",
];

/// Longest cell before it is cut with "…".
const MAX_CELL: usize = 48;

/// Render an API answer.
pub fn render(v: &Value, tz: &TimeZone, now: Timestamp) -> String {
    let mut out = String::new();
    match v {
        Value::Array(rows) => table(&mut out, rows, tz, now),
        Value::Object(map) => object(&mut out, map, tz, now),
        other => {
            let _ = writeln!(out, "{}", cell("", other, tz, now, None));
        }
    }
    out
}

/// Key: value lines, aligned; a list of rows inside becomes a table after them.
fn object(out: &mut String, map: &Map<String, Value>, tz: &TimeZone, now: Timestamp) {
    let width = map.keys().map(|k| k.chars().count()).max().unwrap_or(0);
    let mut tables = Vec::new();
    for (k, v) in map {
        match v {
            Value::Array(rows) if rows.iter().any(Value::is_object) => tables.push((k, rows)),
            Value::Array(lines) if k == "trace" => {
                let _ = writeln!(out, "{:width$}  ", heading(k));
                for l in lines {
                    let _ = writeln!(out, "  {}", cell(k, l, tz, now, None));
                }
            }
            _ => {
                let _ = writeln!(
                    out,
                    "{:width$}  {}",
                    heading(k),
                    cell(k, v, tz, now, Some(map))
                );
            }
        }
    }
    for (k, rows) in tables {
        let _ = writeln!(out, "\n{}:", heading(k));
        table(out, rows, tz, now);
    }
}

/// Rows of objects as a table with a header and aligned columns.
fn table(out: &mut String, rows: &[Value], tz: &TimeZone, now: Timestamp) {
    if rows.is_empty() {
        out.push_str("(none)\n");
        return;
    }
    let mut columns: Vec<&str> = Vec::new();
    for row in rows {
        if let Value::Object(m) = row {
            for k in m.keys() {
                if !columns.contains(&k.as_str()) {
                    columns.push(k);
                }
            }
        }
    }
    columns.sort_by_key(|c| (FIRST.iter().position(|f| f == c).unwrap_or(FIRST.len()), *c));
    let cells: Vec<Vec<String>> = rows
        .iter()
        .map(|row| match row {
            Value::Object(m) => columns
                .iter()
                .map(|c| cell(c, m.get(*c).unwrap_or(&Value::Null), tz, now, Some(m)))
                .collect(),
            other => vec![cell("", other, tz, now, None)],
        })
        .collect();
    let headers: Vec<String> = columns.iter().map(|c| heading(c)).collect();
    let widths: Vec<usize> = (0..headers.len())
        .map(|i| {
            cells
                .iter()
                .filter_map(|r| r.get(i))
                .chain(std::iter::once(&headers[i]))
                .map(|s| s.chars().count())
                .max()
                .unwrap_or(0)
        })
        .collect();
    line(out, &headers, &widths);
    for r in &cells {
        line(out, r, &widths);
    }
}

fn line(out: &mut String, cells: &[String], widths: &[usize]) {
    let text: Vec<String> = cells
        .iter()
        .zip(widths)
        .map(|(c, &w)| format!("{c:w$}"))
        .collect();
    let _ = writeln!(out, "{}", text.join("  ").trim_end());
}

fn heading(key: &str) -> String {
    key.replace('_', " ")
}

/// One value in words. Times are shown in school time; an expiry still to come says how
/// long is left. `row` is the object the value belongs to (for context such as `state`).
fn cell(
    key: &str,
    v: &Value,
    tz: &TimeZone,
    now: Timestamp,
    row: Option<&Map<String, Value>>,
) -> String {
    let text = match v {
        Value::Null => "-".to_owned(),
        Value::Bool(b) => if *b { "yes" } else { "no" }.to_owned(),
        Value::Number(n) => n.to_string(),
        Value::String(s) => match s.parse::<Timestamp>() {
            Ok(t) => time(key, t, tz, now, row),
            Err(_) => s.clone(),
        },
        Value::Array(items) if items.is_empty() && key == "groups" => "all groups".to_owned(),
        Value::Array(items) if items.is_empty() => "-".to_owned(),
        Value::Array(items) => items
            .iter()
            .map(|i| cell(key, i, tz, now, None))
            .collect::<Vec<_>>()
            .join(", "),
        Value::Object(_) => v.to_string(),
    };
    cut(text)
}

fn time(
    key: &str,
    t: Timestamp,
    tz: &TimeZone,
    now: Timestamp,
    row: Option<&Map<String, Value>>,
) -> String {
    let shown = t
        .to_zoned(tz.clone())
        .strftime("%a %d %b %Y %H:%M %Z")
        .to_string();
    let ended = row
        .and_then(|r| r.get("state"))
        .and_then(Value::as_str)
        .is_some_and(|s| s != "active");
    if key == "expires" && t > now && !ended {
        format!("{shown} ({} left)", left(now, t))
    } else {
        shown
    }
}

/// "2 h 10 min", "3 d 4 h", "under a minute": how long until `until`.
pub fn left(now: Timestamp, until: Timestamp) -> String {
    let secs = until.as_second() - now.as_second();
    let (d, h, m) = (secs / 86_400, secs % 86_400 / 3_600, secs % 3_600 / 60);
    match (d, h, m) {
        (0, 0, 0) => "under a minute".to_owned(),
        (0, 0, m) => format!("{m} min"),
        (0, h, 0) => format!("{h} h"),
        (0, h, m) => format!("{h} h {m} min"),
        (d, 0, _) => format!("{d} d"),
        (d, h, _) => format!("{d} d {h} h"),
    }
}

fn cut(s: String) -> String {
    let s = s.replace('\n', " ");
    if s.chars().count() <= MAX_CELL {
        return s;
    }
    let mut t: String = s.chars().take(MAX_CELL - 1).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn exceptions_read_as_an_aligned_table_in_school_time() {
        let tz = TimeZone::get("Europe/London").unwrap();
        let now: Timestamp = "2026-07-01T09:50:00Z".parse().unwrap();
        let rows = serde_json::json!([
            {"id": 12, "domain": "youtube.com", "groups": ["pupils"], "reason": "class video",
             "expires": "2026-07-01T12:00:00Z", "state": "active", "revoked": null},
            {"id": 3, "domain": "example.org", "groups": [], "reason": "x",
             "expires": "2026-06-01T12:00:00Z", "state": "expired", "revoked": null}
        ]);
        let text = render(&rows, &tz, now);
        let lines: Vec<&str> = text.lines().collect();
        assert!(
            lines[0].starts_with("id  state    domain       groups      expires"),
            "{text}"
        );
        assert!(
            lines[1].contains("Wed 01 Jul 2026 13:00 BST (2 h 10 min left)"),
            "{text}"
        );
        assert!(
            lines[2].contains("all groups") && !lines[2].contains("left"),
            "{text}"
        );
        let col = |l: &str| {
            l.find("expires")
                .or_else(|| l.find("Wed").or_else(|| l.find("Mon")))
        };
        assert_eq!(col(lines[0]), col(lines[1]), "columns aligned:\n{text}");
        assert_eq!(render(&serde_json::json!([]), &tz, now), "(none)\n");
        assert_eq!(
            left(now, now + jiff::SignedDuration::from_hours(76)),
            "3 d 4 h"
        );
    }
}
