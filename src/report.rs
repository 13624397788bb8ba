//! `chaperone report`: summaries of the query log for governors (no personal data: groups,
//! categories and counts only) and, with `--detail`, blocked attempts per device for the
//! designated safeguarding lead.
//!
//! Reads the storage database directly; nothing here runs in the server. The summary is
//! built only from `GROUP BY` aggregates over groups, categories and decisions, so no client
//! address, pseudonym, device or queried name can reach it; the one list of names it shows
//! is the temporary unblocks granted (sites, with their reason and expiry, not who asked).
//!
//! The query log must be in SQLite (`[querylog] format = "sqlite"`, the default) for query
//! figures; incidents and exceptions are always in the database.
//!
//! A report covers a [`Period`] with an end (`--from`/`--to`, or a named term from
//! `[[report.term]]`), and every time, day and week in it is the school's (`[server]
//! timezone`): a governor's "week" starts on Monday at midnight in school, not in UTC.
//! Every table carries a short glossary of its labels. No free text typed by people
//! (request or unblock reasons, report comments: they can carry names) reaches the
//! summary; only counts, categories, groups and the unblocked sites.

use std::fmt::Write as _;

use crate::store::{Store, StoreError, micros};

/// One table of a report.
#[derive(Debug, Clone)]
pub struct Table {
    /// Heading.
    pub title: String,
    /// Column names.
    pub headers: Vec<String>,
    /// Rows of cells.
    pub rows: Vec<Vec<String>>,
    /// What each label means, (label, explanation), printed under the table.
    pub glossary: Vec<(String, String)>,
}

/// The span a report covers, and the zone its times are told in.
#[derive(Debug, Clone)]
pub struct Period {
    /// Start, included.
    pub from: jiff::Timestamp,
    /// End, excluded.
    pub to: jiff::Timestamp,
    /// The school's time zone.
    pub tz: jiff::tz::TimeZone,
}

impl Period {
    /// From `from` to the end of time, in UTC: what [`summary`] and [`detail`] report.
    pub fn since(from: jiff::Timestamp) -> Period {
        Period {
            from,
            to: jiff::Timestamp::MAX,
            tz: jiff::tz::TimeZone::UTC,
        }
    }

    /// "Monday 1 September 2026 00:00 to ..." in the school's zone.
    pub fn describe(&self) -> String {
        let show = |t: jiff::Timestamp| {
            t.to_zoned(self.tz.clone())
                .strftime("%a %-d %b %Y %H:%M %Z")
                .to_string()
        };
        format!("{} to {}", show(self.from), show(self.to))
    }
}

/// Longest trend table, in weeks (a school year and a half).
pub const MAX_WEEKS: usize = 80;

/// Read a `--from`/`--to` bound in the school's zone: a date (`2026-09-01`: that day's
/// midnight; with `end`, the midnight after it, so the day is included) or any form of
/// [`crate::policy::when::parse`].
pub fn parse_bound(
    s: &str,
    tz: &jiff::tz::TimeZone,
    now: jiff::Timestamp,
    end: bool,
) -> Result<jiff::Timestamp, String> {
    if let Ok(d) = s.trim().parse::<jiff::civil::Date>() {
        let d = if end {
            d.tomorrow().map_err(|e| format!("{s:?}: {e}"))?
        } else {
            d
        };
        return d
            .to_zoned(tz.clone())
            .map(|z| z.timestamp())
            .map_err(|e| format!("{s:?}: {e}"));
    }
    crate::policy::when::parse(s, tz, now).map_err(|e| e.to_string())
}

/// A named term's period: its first day's midnight to the midnight after its last day.
pub fn term_period(
    term: &crate::config::report::ReportTerm,
    tz: &jiff::tz::TimeZone,
) -> Result<Period, String> {
    let at = |d: jiff::civil::Date| {
        d.to_zoned(tz.clone())
            .map(|z| z.timestamp())
            .map_err(|e| format!("term {:?}: {e}", term.name))
    };
    let end = term
        .to
        .tomorrow()
        .map_err(|e| format!("term {:?}: {e}", term.name))?;
    Ok(Period {
        from: at(term.from)?,
        to: at(end)?,
        tz: tz.clone(),
    })
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

/// Parse "30d", "2w", "12h", "90m" or an RFC 3339 time into the start of the period.
pub fn parse_since(s: &str, now: jiff::Timestamp) -> Result<jiff::Timestamp, String> {
    if let Ok(t) = s.parse::<jiff::Timestamp>() {
        return Ok(t);
    }
    let (num, unit) = s.split_at(s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len()));
    let n: i64 = num
        .parse()
        .ok()
        .filter(|n: &i64| (0..=1_000_000).contains(n))
        .ok_or_else(|| format!("{s:?}: expected e.g. 30d, 2w, 12h, 90m or an RFC 3339 time"))?;
    let minutes = match unit {
        "w" => n * 60 * 24 * 7,
        "d" => n * 60 * 24,
        "h" => n * 60,
        "m" => n,
        _ => return Err(format!("{s:?}: unit must be w, d, h or m")),
    };
    now.checked_sub(jiff::SignedDuration::from_mins(minutes))
        .map_err(|e| format!("{s:?}: {e}"))
}

fn pct(part: i64, whole: i64) -> String {
    if whole == 0 {
        "0.0%".to_owned()
    } else {
        format!("{:.1}%", part as f64 * 100.0 / whole as f64)
    }
}

/// A stored time (µs since the epoch, as text) as "YYYY-MM-DD HH:MM:SS" in `tz`.
fn local(cell: &mut String, tz: &jiff::tz::TimeZone) {
    if let Ok(us) = cell.parse::<i64>() {
        *cell = crate::store::from_micros(us)
            .to_zoned(tz.clone())
            .strftime("%Y-%m-%d %H:%M:%S")
            .to_string();
    }
}

/// Format the given columns of every row with [`local`].
fn local_columns(rows: &mut [Vec<String>], columns: &[usize], tz: &jiff::tz::TimeZone) {
    for row in rows {
        for &c in columns {
            if let Some(cell) = row.get_mut(c) {
                local(cell, tz);
            }
        }
    }
}

/// The time zone's name for column headings ("time (Europe/London)").
fn zone_name(tz: &jiff::tz::TimeZone) -> String {
    tz.iana_name().unwrap_or("UTC").to_owned()
}

/// A glossary from (label, explanation) pairs.
fn gloss(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
    pairs
        .iter()
        .map(|(l, e)| (l.to_string(), e.to_string()))
        .collect()
}

/// The governors' summary: totals, block rate per group, per category and per group and
/// category, incidents, exceptions granted. No addresses, pseudonyms, devices or queried
/// names.
pub fn summary(db: &mut dyn Store, since: jiff::Timestamp) -> Result<Vec<Table>, StoreError> {
    summary_for(db, since, None)
}

/// [`summary_for`] from `since` onwards (UTC times).
pub fn summary_for(
    db: &mut dyn Store,
    since: jiff::Timestamp,
    school_groups: Option<&[String]>,
) -> Result<Vec<Table>, StoreError> {
    summary_period(db, &Period::since(since), school_groups)
}

/// Restrict the report's queries to one school's groups: `grp IN (...)` added to every
/// query's time condition, so the same portable SQL runs on SQLite and PostgreSQL. Group
/// names come from the checked config; quotes are doubled all the same (SQL literal
/// syntax common to both).
pub fn school_filter(groups: &[String]) -> String {
    let list: Vec<String> = groups
        .iter()
        .map(|g| format!("'{}'", g.replace('\'', "''")))
        .collect();
    format!(" AND grp IN ({})", list.join(", "))
}

/// `db.table(sql)` with `filter` added after the time condition. `filter` carries the
/// period's end (an integer the report formats itself, never input text) and the
/// school's groups.
fn scoped(
    db: &mut dyn Store,
    filter: &str,
    sql: &str,
    since_us: i64,
) -> Result<Vec<Vec<String>>, StoreError> {
    let sql = sql.replacen("ts_us >= $1", &format!("ts_us >= $1{filter}"), 1);
    db.table(&sql, since_us)
}

/// The condition that ends the period at `to` (excluded) on column `col`.
fn until(col: &str, to: jiff::Timestamp) -> String {
    format!(" AND {col} < {}", micros(to))
}

/// [`summary`] over a period, for the trust (`groups` None) or for one school's groups:
/// every figure, incident and unblock is that school's (an unblock for every group is
/// the trust's).
pub fn summary_period(
    db: &mut dyn Store,
    period: &Period,
    school_groups: Option<&[String]>,
) -> Result<Vec<Table>, StoreError> {
    let f = format!(
        "{}{}",
        until("ts_us", period.to),
        school_groups.map(school_filter).unwrap_or_default()
    );
    let f = f.as_str();
    let s = micros(period.from);
    let tz = &period.tz;
    let count = |r: &Vec<String>, i: usize| r.get(i).and_then(|c| c.parse::<i64>().ok());
    let totals = scoped(
        db,
        f,
        "SELECT decision, SUM(count) FROM queries WHERE ts_us >= $1 GROUP BY decision ORDER BY 2 DESC, 1",
        s,
    )?;
    let all: i64 = totals.iter().filter_map(|r| count(r, 1)).sum();
    let mut total_rows: Vec<Vec<String>> = totals
        .iter()
        .map(|r| {
            vec![
                r[0].clone(),
                r[1].clone(),
                pct(count(r, 1).unwrap_or(0), all),
            ]
        })
        .collect();
    total_rows.push(vec!["all".into(), all.to_string(), pct(all, all)]);

    let groups = scoped(
        db,
        f,
        "SELECT grp, SUM(count), SUM(CASE WHEN decision = 'blocked' THEN count ELSE 0 END) FROM queries WHERE ts_us >= $1 GROUP BY grp ORDER BY grp",
        s,
    )?;
    let group_size: std::collections::HashMap<String, i64> = groups
        .iter()
        .map(|r| (r[0].clone(), count(r, 1).unwrap_or(0)))
        .collect();
    let group_rows = groups
        .iter()
        .map(|r| {
            let (n, b) = (count(r, 1).unwrap_or(0), count(r, 2).unwrap_or(0));
            vec![r[0].clone(), n.to_string(), b.to_string(), pct(b, n)]
        })
        .collect();
    let categories = scoped(
        db,
        f,
        "SELECT category, SUM(count) FROM queries WHERE ts_us >= $1 AND decision = 'blocked' AND category NOT LIKE 'service:%' GROUP BY category ORDER BY 2 DESC, 1",
        s,
    )?;
    let category_rows = categories
        .iter()
        .map(|r| {
            let b = count(r, 1).unwrap_or(0);
            vec![r[0].clone(), b.to_string(), pct(b, all)]
        })
        .collect();
    let group_categories = scoped(
        db,
        f,
        "SELECT grp, category, SUM(count) FROM queries WHERE ts_us >= $1 AND decision = 'blocked' AND category NOT LIKE 'service:%' GROUP BY grp, category ORDER BY grp, 3 DESC, 2",
        s,
    )?;
    let group_category_rows = group_categories
        .iter()
        .map(|r| {
            let b = count(r, 2).unwrap_or(0);
            let n = group_size.get(&r[0]).copied().unwrap_or(0);
            vec![r[0].clone(), r[1].clone(), b.to_string(), pct(b, n)]
        })
        .collect();
    let (service_rows, group_service_rows) = services(db, f, s, all, &group_size)?;
    let mut incidents = scoped(
        db,
        f,
        "SELECT COALESCE(theme, 'illegal'), category, COUNT(*), COALESCE(SUM(hits), COUNT(*))
         FROM incidents WHERE ts_us >= $1 GROUP BY 1, 2 ORDER BY 3 DESC, 1, 2",
        s,
    )?;
    let incident_total: i64 = incidents.iter().filter_map(|r| count(r, 2)).sum();
    let attempt_total: i64 = incidents.iter().filter_map(|r| count(r, 3)).sum();
    incidents.push(vec![
        "all".into(),
        String::new(),
        incident_total.to_string(),
        attempt_total.to_string(),
    ]);
    // The unblocked site and for whom; never the reason (free text that can name a pupil).
    let mut exceptions = db.table(
        &format!(
            "SELECT domain, groups, created_us, expires_us,
                CASE WHEN revoked_us IS NULL THEN '' ELSE 'revoked' END
             FROM exceptions WHERE created_us >= $1{} ORDER BY created_us",
            until("created_us", period.to)
        ),
        s,
    )?;
    if let Some(mine) = school_groups {
        exceptions.retain(|row| {
            serde_json::from_str::<Vec<String>>(&row[1])
                .is_ok_and(|gs| !gs.is_empty() && gs.iter().all(|g| mine.contains(g)))
        });
    }
    local_columns(&mut exceptions, &[2, 3], tz);
    for row in &mut exceptions {
        // Stored as a JSON array; empty means every group.
        if let Ok(groups) = serde_json::from_str::<Vec<String>>(&row[1]) {
            row[1] = if groups.is_empty() {
                "all".to_owned()
            } else {
                groups.join(" ")
            };
        }
    }
    let weeks = weekly(db, period, school_groups)?;
    let t = |title: &str, headers: &[&str], rows, glossary: &[(&str, &str)]| Table {
        title: title.to_owned(),
        headers: headers.iter().map(|h| h.to_string()).collect(),
        rows,
        glossary: gloss(glossary),
    };
    let zone = zone_name(tz);
    let granted = format!("granted ({zone})");
    let expires = format!("expires ({zone})");
    Ok(vec![
        t(
            "Queries",
            &["decision", "queries", "share"],
            total_rows,
            GLOSS_QUERIES,
        ),
        t(
            "Trend by week",
            &["week from", "queries", "blocked", "block rate", "incidents"],
            weeks,
            GLOSS_WEEKS,
        ),
        t(
            "Block rate by group",
            &["group", "queries", "blocked", "block rate"],
            group_rows,
            GLOSS_GROUPS,
        ),
        t(
            "Block rate by category",
            &["category", "blocked", "share of all queries"],
            category_rows,
            GLOSS_CATEGORIES,
        ),
        t(
            "Block rate by group and category",
            &["group", "category", "blocked", "share of group's queries"],
            group_category_rows,
            GLOSS_GROUP_CATEGORIES,
        ),
        t(
            "Blocks by service",
            &["service", "blocked", "share of all queries"],
            service_rows,
            GLOSS_SERVICES,
        ),
        t(
            "Blocks by group and service",
            &["group", "service", "blocked", "share of group's queries"],
            group_service_rows,
            GLOSS_SERVICES,
        ),
        t(
            "Safeguarding incidents",
            &["theme", "category", "incidents", "attempts"],
            incidents,
            GLOSS_INCIDENTS,
        ),
        t(
            "Temporary unblocks granted",
            &["domain", "groups", &granted, &expires, "state"],
            exceptions,
            GLOSS_UNBLOCKS,
        ),
    ])
}

const GLOSS_QUERIES: &[(&str, &str)] = &[
    (
        "decision",
        "what the filter did: allowed (answered), blocked (not answered: the site is in a category blocked for that group), rewritten (sent to a safe version, e.g. SafeSearch), refused (a device on no school network)",
    ),
    (
        "queries",
        "look-ups: each time a device asks for a site's address; one web page usually makes several",
    ),
    (
        "share",
        "this decision's part of all look-ups in the period",
    ),
    ("all", "every look-up in the period"),
];
const GLOSS_WEEKS: &[(&str, &str)] = &[
    (
        "week from",
        "the Monday each week starts on, at midnight in school time (the first and last weeks may be part weeks, cut at the period's ends)",
    ),
    ("blocked", "look-ups the filter did not answer"),
    ("block rate", "blocked as a share of that week's look-ups"),
    (
        "incidents",
        "attempts to reach illegal content (IWF-style lists), each told to the safeguarding lead",
    ),
];
const GLOSS_GROUPS: &[(&str, &str)] = &[
    (
        "group",
        "a set of devices or users with one filtering policy, e.g. pupils, staff, guests",
    ),
    ("queries", "look-ups from that group"),
    ("block rate", "blocked as a share of the group's look-ups"),
];
const GLOSS_CATEGORIES: &[(&str, &str)] = &[
    (
        "category",
        "the kind of site, from the block lists (e.g. adult, gambling, social)",
    ),
    (
        "share of all queries",
        "blocked look-ups of this kind as a share of all look-ups",
    ),
];
const GLOSS_GROUP_CATEGORIES: &[(&str, &str)] = &[
    ("group, category", "as in the tables above"),
    (
        "share of group's queries",
        "blocked look-ups of this kind as a share of the group's look-ups",
    ),
];
const GLOSS_SERVICES: &[(&str, &str)] = &[
    (
        "service",
        "a named app or website (e.g. tiktok) the school blocks as a whole",
    ),
    ("blocked", "look-ups for that service not answered"),
];
const GLOSS_INCIDENTS: &[(&str, &str)] = &[
    (
        "theme",
        "the safeguarding concern (illegal content, self-harm, extremism, ...) the school alerts on",
    ),
    (
        "category",
        "the kind of site that was blocked; illegal content is always blocked for everyone",
    ),
    (
        "incidents",
        "cases opened for the safeguarding lead: repeated attempts by one device at one site within a few minutes are one case",
    ),
    ("attempts", "every blocked attempt counted in those cases"),
];
const GLOSS_UNBLOCKS: &[(&str, &str)] = &[
    (
        "domain",
        "the site unblocked for a while (with its sub-sites)",
    ),
    ("groups", "who it was unblocked for (all: every group)"),
    (
        "granted, expires",
        "when the unblock started and ends, school time",
    ),
    ("state", "revoked: ended early by staff"),
];

/// Queries, blocks and incidents per school week (Monday 00:00 in school) of the period,
/// at most [`MAX_WEEKS`] (the latest).
fn weekly(
    db: &mut dyn Store,
    period: &Period,
    school_groups: Option<&[String]>,
) -> Result<Rows, StoreError> {
    let groups = school_groups.map(school_filter).unwrap_or_default();
    let mut rows = Vec::new();
    for (start, end) in week_bounds(period) {
        let f = format!("{}{groups}", until("ts_us", end));
        let q = scoped(
            db,
            &f,
            "SELECT COALESCE(SUM(count), 0), SUM(CASE WHEN decision = 'blocked' THEN count ELSE 0 END) FROM queries WHERE ts_us >= $1",
            micros(start),
        )?;
        let i = scoped(
            db,
            &f,
            "SELECT COUNT(*) FROM incidents WHERE ts_us >= $1",
            micros(start),
        )?;
        let n = |r: &Rows, c: usize| {
            r.first()
                .and_then(|r| r.get(c))
                .and_then(|v| v.parse::<i64>().ok())
                .unwrap_or(0)
        };
        let (queries, blocked) = (n(&q, 0), n(&q, 1));
        rows.push(vec![
            start
                .to_zoned(period.tz.clone())
                .strftime("%Y-%m-%d")
                .to_string(),
            queries.to_string(),
            blocked.to_string(),
            pct(blocked, queries),
            n(&i, 0).to_string(),
        ]);
    }
    Ok(rows)
}

/// The school weeks of a period, each cut to the period: (start, end). Empty for an
/// open-ended period (no end to count weeks to).
fn week_bounds(period: &Period) -> Vec<(jiff::Timestamp, jiff::Timestamp)> {
    if period.to == jiff::Timestamp::MAX || period.to <= period.from {
        return Vec::new();
    }
    let tz = &period.tz;
    let first = period.from.to_zoned(tz.clone()).date();
    let monday = first
        .checked_sub(jiff::Span::new().days(i64::from(first.weekday().to_monday_zero_offset())))
        .unwrap_or(first);
    let mut out = Vec::new();
    let mut day = monday;
    while let Ok(start) = day.to_zoned(tz.clone()).map(|z| z.timestamp()) {
        if start >= period.to {
            break;
        }
        let Ok(next) = day.checked_add(jiff::Span::new().days(7)) else {
            break;
        };
        let end = next
            .to_zoned(tz.clone())
            .map_or(period.to, |z| z.timestamp())
            .min(period.to);
        out.push((start.max(period.from), end));
        day = next;
    }
    let skip = out.len().saturating_sub(MAX_WEEKS);
    out.split_off(skip)
}

/// Table rows, as rendered.
type Rows = Vec<Vec<String>>;

/// Blocks by catalogue service (categories named `service:NAME`, shown by service name in
/// their own tables rather than among the list categories): overall and per group.
fn services(
    db: &mut dyn Store,
    f: &str,
    s: i64,
    all: i64,
    group_size: &std::collections::HashMap<String, i64>,
) -> Result<(Rows, Rows), StoreError> {
    let count =
        |r: &Vec<String>, i: usize| r.get(i).and_then(|c| c.parse::<i64>().ok()).unwrap_or(0);
    let name = |c: &str| {
        c.strip_prefix(crate::services::SERVICE_PREFIX)
            .unwrap_or(c)
            .to_owned()
    };
    let overall = scoped(db, f, "SELECT category, SUM(count) FROM queries WHERE ts_us >= $1 AND decision = 'blocked' AND category LIKE 'service:%' GROUP BY category ORDER BY 2 DESC, 1",
        s,
    )?
    .iter()
    .map(|r| vec![name(&r[0]), count(r, 1).to_string(), pct(count(r, 1), all)])
    .collect();
    let per_group = scoped(db, f, "SELECT grp, category, SUM(count) FROM queries WHERE ts_us >= $1 AND decision = 'blocked' AND category LIKE 'service:%' GROUP BY grp, category ORDER BY grp, 3 DESC, 2",
        s,
    )?
    .iter()
    .map(|r| {
        let n = group_size.get(&r[0]).copied().unwrap_or(0);
        vec![r[0].clone(), name(&r[1]), count(r, 2).to_string(), pct(count(r, 2), n)]
    })
    .collect();
    Ok((overall, per_group))
}

/// For the safeguarding lead: blocked attempts per device (address or pseudonym,
/// nominated device name, MAC, the device name from its enrolment or DHCP lease, and the
/// user from RADIUS or ChromeOS), with what was asked and when.
pub fn detail(db: &mut dyn Store, since: jiff::Timestamp) -> Result<Vec<Table>, StoreError> {
    detail_for(db, since, None)
}

/// [`detail`] for the trust or one school's groups.
pub fn detail_for(
    db: &mut dyn Store,
    since: jiff::Timestamp,
    groups: Option<&[String]>,
) -> Result<Vec<Table>, StoreError> {
    detail_period(db, &Period::since(since), groups)
}

/// [`detail`] over a period, times in its zone.
pub fn detail_period(
    db: &mut dyn Store,
    period: &Period,
    groups: Option<&[String]>,
) -> Result<Vec<Table>, StoreError> {
    let f = format!(
        "{}{}",
        until("ts_us", period.to),
        groups.map(school_filter).unwrap_or_default()
    );
    let f = f.as_str();
    let s = micros(period.from);
    let tz = &period.tz;
    let zone = zone_name(tz);
    let first = format!("first ({zone})");
    let last = format!("last ({zone})");
    let time = format!("time ({zone})");
    let mut rows = scoped(
        db,
        f,
        r#"SELECT client, COALESCE(device, ''), COALESCE(mac, ''), COALESCE(hostname, ''), COALESCE("user", ''), grp, name, category, SUM(count),
                MIN(ts_us), MAX(ts_us)
         FROM queries WHERE ts_us >= $1 AND decision = 'blocked'
         GROUP BY client, device, mac, hostname, "user", grp, name, category ORDER BY client, 9 DESC"#,
        s,
    )?;
    local_columns(&mut rows, &[9, 10], tz);
    let mut incidents = scoped(
        db,
        f,
        r#"SELECT ts_us, client, COALESCE(device, ''), COALESCE(hostname, ''), COALESCE("user", ''), COALESCE(mac, ''), grp, name, category, alert_status
         FROM incidents WHERE ts_us >= $1 ORDER BY ts_us"#,
        s,
    )?;
    local_columns(&mut incidents, &[0], tz);
    Ok(vec![
        Table {
            title: "Blocked attempts per device".into(),
            headers: [
                "client",
                "device",
                "mac",
                "device name",
                "user",
                "group",
                "name",
                "category",
                "attempts",
                &first,
                &last,
            ]
            .map(String::from)
            .to_vec(),
            rows,
            glossary: gloss(&[
                (
                    "client",
                    "the device's address, or a pseudonym (anon-…) for groups the school pseudonymises",
                ),
                ("device", "a nominated device's name from the config"),
                (
                    "device name",
                    "the name from the device's enrolment or DHCP lease",
                ),
                (
                    "user",
                    "the signed-in user from RADIUS or ChromeOS, where known",
                ),
                ("name", "the site asked for"),
                (
                    "attempts",
                    "blocked look-ups of that site from that device in the period",
                ),
            ]),
        },
        Table {
            title: "Incidents".into(),
            headers: [
                &time,
                "client",
                "device",
                "device name",
                "user",
                "mac",
                "group",
                "name",
                "category",
                "alert",
            ]
            .map(String::from)
            .to_vec(),
            rows: incidents,
            glossary: gloss(&[
                (
                    "alert",
                    "whether the alert (webhook or email) reached the safeguarding lead",
                ),
                ("category", "the illegal-content list the site is on"),
            ]),
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
        for (label, meaning) in &t.glossary {
            let _ = writeln!(out, "    * {label}: {meaning}");
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
        } else {
            let _ = writeln!(out, "| {} |", t.headers.join(" | "));
            let _ = writeln!(out, "|{}", "---|".repeat(t.headers.len()));
            for r in &t.rows {
                let cells: Vec<String> = r.iter().map(|c| c.replace('|', "\\|")).collect();
                let _ = writeln!(out, "| {} |", cells.join(" | "));
            }
            out.push('\n');
        }
        for (label, meaning) in &t.glossary {
            let _ = writeln!(out, "- *{label}*: {meaning}");
        }
        if !t.glossary.is_empty() {
            out.push('\n');
        }
    }
    out
}

/// One CSV cell. Device names come from DHCP, so a pupil's device chooses them: a cell
/// that a spreadsheet would read as a formula (`=`, `+`, `-`, `@`, tab, CR first) gets a
/// leading `'`, so opening the report never runs what a device wrote (OWASP CSV injection).
fn csv_cell(c: &str) -> String {
    let c = if c.starts_with(['=', '+', '-', '@', '\t', '\r']) {
        std::borrow::Cow::Owned(format!("'{c}"))
    } else {
        std::borrow::Cow::Borrowed(c)
    };
    if c.contains([',', '"', '\n']) {
        format!("\"{}\"", c.replace('"', "\"\""))
    } else {
        c.into_owned()
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
        assert_eq!(
            parse_since("90m", now).unwrap().to_string(),
            "2026-11-29T22:30:00Z"
        );
        assert_eq!(
            parse_since("2w", now).unwrap().to_string(),
            "2026-11-16T00:00:00Z"
        );
        assert!(parse_since("soon", now).is_err());
        assert!(parse_since("30y", now).is_err());
        assert!(parse_since("99999999999d", now).is_err());
    }

    #[test]
    fn weeks_start_on_monday_in_school_time() {
        let tz = jiff::tz::TimeZone::get("Europe/London").unwrap();
        let at = |s: &str| parse_bound(s, &tz, jiff::Timestamp::UNIX_EPOCH, false).unwrap();
        // Wednesday 21 October to Sunday 1 November 2026 (included); BST ends on 25 October.
        let p = Period {
            from: at("2026-10-21"),
            to: parse_bound("2026-11-01", &tz, jiff::Timestamp::UNIX_EPOCH, true).unwrap(),
            tz: tz.clone(),
        };
        let weeks: Vec<String> = week_bounds(&p)
            .iter()
            .map(|(s, e)| format!("{s}..{e}"))
            .collect();
        assert_eq!(
            weeks,
            [
                // A part week from Wednesday midnight BST (23:00 UTC the day before) to
                // Monday midnight, which is GMT again (the clocks went back on Sunday).
                "2026-10-20T23:00:00Z..2026-10-26T00:00:00Z",
                // Monday 26 October midnight GMT.
                "2026-10-26T00:00:00Z..2026-11-02T00:00:00Z",
            ]
        );
        assert!(week_bounds(&Period::since(at("2026-10-21"))).is_empty());
    }

    #[test]
    fn csv_quotes_what_needs_it() {
        let t = Table {
            title: "T".into(),
            headers: vec!["a".into()],
            rows: vec![vec!["x, \"y\"".into()]],
            glossary: gloss(&[("a", "not in CSV: it is data")]),
        };
        assert_eq!(render_csv(&[t]), "section,a\nT,\"x, \"\"y\"\"\"\n");
    }

    #[test]
    fn csv_cells_a_device_named_as_a_formula_stay_text() {
        assert_eq!(
            csv_cell("=HYPERLINK(\"http://x\")"),
            "\"'=HYPERLINK(\"\"http://x\"\")\""
        );
        assert_eq!(csv_cell("@SUM(A1)"), "'@SUM(A1)");
        assert_eq!(csv_cell("ks2-laptop-14"), "ks2-laptop-14");
    }
}
