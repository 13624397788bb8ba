//! The DSL's records: query-log search (filters, keyset paging, CSV), the checks log
//! (DfE: "keep a log of checks": when, who, what was tested, result, action) and the
//! annual review (what is blocked or allowed and why, next review due).
//!
//! This module owns the row types and the backend-neutral SQL: one `WHERE` clause built
//! from a [`SearchFilter`] with `$N` placeholders, which both SQLite and PostgreSQL bind
//! by position, so the two backends cannot filter differently. It must not
//! de-pseudonymise: the log holds what the writer stored (pseudonyms for the groups in
//! `querylog.pseudonymise`) and a search matches and shows exactly that.
//!
//! Checks and reviews are append-only (triggers on both backends); a correction is a new
//! entry, and the console writes an audit record for each.

use serde::Serialize;

use super::from_micros;

/// Most rows one search page returns, whatever is asked.
pub const MAX_PAGE: usize = 500;
/// Rows in a page when none is asked for.
pub const DEFAULT_PAGE: usize = 100;
/// Most rows one CSV export holds; the file says when it stopped there.
pub const CSV_MAX_ROWS: usize = 100_000;
/// Rows fetched per store call while exporting (bounds each blocking call).
pub const CSV_CHUNK: usize = 5_000;
/// Longest free text kept in a check or review field (characters).
pub const MAX_TEXT: usize = 4_000;
/// Most check or review entries one list returns.
pub const MAX_LIST: usize = 1_000;

/// How a name filter matches.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NameMatch {
    /// The text anywhere in the name.
    #[default]
    Contains,
    /// The name itself or any name below it (`example.com` matches `www.example.com`).
    Suffix,
}

/// What a query-log search asks for; every field optional (None or empty: no filter).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SearchFilter {
    /// Device: the client address (or its pseudonym), MAC, enrolled device ID exactly, or
    /// part of the nominated device's or the DHCP host name.
    pub device: Option<String>,
    /// The individual (RADIUS or ChromeOS user, or its pseudonym), exactly.
    pub user: Option<String>,
    /// Query name (lower case), matched as `name_match` says.
    pub name: Option<String>,
    /// How `name` matches.
    pub name_match: NameMatch,
    /// Blocking category, exactly.
    pub category: Option<String>,
    /// Outcome as the log stores it: allowed, blocked, rewritten, refused, servfail.
    pub decision: Option<String>,
    /// Policy group, exactly.
    pub group: Option<String>,
    /// From this time (µs, inclusive).
    pub from_us: Option<i64>,
    /// Before this time (µs, exclusive).
    pub to_us: Option<i64>,
}

/// A value bound to a `$N` placeholder.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Param {
    /// An integer.
    Int(i64),
    /// Text.
    Text(String),
}

/// `LIKE` pattern text with `\`, `%` and `_` escaped (used with `ESCAPE '\'`).
fn like_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | '%' | '_') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Builds `WHERE` clauses and their parameters.
struct Where {
    clauses: Vec<String>,
    params: Vec<Param>,
}

impl Where {
    /// Add a parameter; returns its placeholder.
    fn bind(&mut self, p: Param) -> String {
        self.params.push(p);
        format!("${}", self.params.len())
    }
}

/// The trimmed text of an optional filter; None when absent or blank.
fn text(o: &Option<String>) -> Option<&str> {
    o.as_deref().map(str::trim).filter(|s| !s.is_empty())
}

/// The `WHERE` clause (with a leading space, or empty) and parameters for `f`, keyset
/// paged below `before`.
pub fn search_where(f: &SearchFilter, before: Option<i64>) -> (String, Vec<Param>) {
    let mut w = Where {
        clauses: Vec::new(),
        params: Vec::new(),
    };
    if let Some(d) = text(&f.device) {
        let exact = w.bind(Param::Text(d.to_owned()));
        let part = w.bind(Param::Text(format!("%{}%", like_escape(d))));
        w.clauses.push(format!(
            "(client = {exact} OR mac = {exact} OR device_id = {exact} OR device LIKE {part} ESCAPE '\\' OR hostname LIKE {part} ESCAPE '\\')"
        ));
    }
    if let Some(u) = text(&f.user) {
        let p = w.bind(Param::Text(u.to_owned()));
        w.clauses.push(format!("\"user\" = {p}"));
    }
    if let Some(n) = text(&f.name) {
        let n = n.trim_end_matches('.').to_ascii_lowercase();
        match f.name_match {
            NameMatch::Contains => {
                let p = w.bind(Param::Text(format!("%{}%", like_escape(&n))));
                w.clauses.push(format!("name LIKE {p} ESCAPE '\\'"));
            }
            NameMatch::Suffix => {
                let exact = w.bind(Param::Text(n.clone()));
                let below = w.bind(Param::Text(format!("%.{}", like_escape(&n))));
                w.clauses
                    .push(format!("(name = {exact} OR name LIKE {below} ESCAPE '\\')"));
            }
        }
    }
    for (value, column) in [
        (&f.category, "category"),
        (&f.decision, "decision"),
        (&f.group, "grp"),
    ] {
        if let Some(v) = text(value) {
            let p = w.bind(Param::Text(v.to_owned()));
            w.clauses.push(format!("{column} = {p}"));
        }
    }
    for (value, op) in [(f.from_us, ">="), (f.to_us, "<")] {
        if let Some(v) = value {
            let p = w.bind(Param::Int(v));
            w.clauses.push(format!("ts_us {op} {p}"));
        }
    }
    if let Some(b) = before {
        let p = w.bind(Param::Int(b));
        w.clauses.push(format!("id < {p}"));
    }
    let clause = match w.clauses.is_empty() {
        true => String::new(),
        false => format!(" WHERE {}", w.clauses.join(" AND ")),
    };
    (clause, w.params)
}

/// The search's whole statement: newest first (by id), at most `limit` rows.
pub fn search_sql(f: &SearchFilter, before: Option<i64>, limit: usize) -> (String, Vec<Param>) {
    let (clause, params) = search_where(f, before);
    let limit = limit.clamp(1, MAX_PAGE.max(CSV_CHUNK));
    (
        format!("SELECT {QUERY_COLUMNS} FROM queries{clause} ORDER BY id DESC LIMIT {limit}"),
        params,
    )
}

/// The columns [`QueryRow`] is read from, in order.
pub const QUERY_COLUMNS: &str = r#"id, ts_us, client, grp, device, mac, hostname, "user", device_id, name, qtype, decision, category, rule, rcode, count"#;

/// One query-log record as stored (pseudonyms stay pseudonyms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct QueryRow {
    /// Row id (the paging key).
    pub id: i64,
    /// Unix time, microseconds.
    pub ts_us: i64,
    /// Client address or pseudonym.
    pub client: String,
    /// Policy group.
    pub group: String,
    /// Nominated device.
    pub device: Option<String>,
    /// MAC (or pseudonym).
    pub mac: Option<String>,
    /// Device name (or pseudonym).
    pub hostname: Option<String>,
    /// The individual (or pseudonym).
    pub user: Option<String>,
    /// Enrolled device ID (or pseudonym).
    pub device_id: Option<String>,
    /// Query name.
    pub name: String,
    /// Query type.
    pub qtype: String,
    /// allowed, blocked, rewritten, refused, servfail.
    pub decision: String,
    /// Blocking category.
    pub category: Option<String>,
    /// The deciding rule.
    pub rule: Option<String>,
    /// Response code.
    pub rcode: String,
    /// How many identical queries (same client, name, type and outcome, same second) this
    /// row stands for: the writer folds repeats into one row.
    pub count: i64,
}

/// The CSV header line of an export.
pub const CSV_HEADER: &str = "id,time_utc,client,group,device,mac,hostname,user,device_id,name,qtype,decision,category,rule,rcode,count\n";

impl QueryRow {
    /// One CSV line (RFC 4180 quoting; a leading `=`, `+`, `-` or `@` is prefixed with `'`
    /// so a spreadsheet never runs a query name as a formula).
    pub fn csv_line(&self) -> String {
        let opt = |o: &Option<String>| o.clone().unwrap_or_default();
        let fields = [
            self.id.to_string(),
            from_micros(self.ts_us).to_string(),
            self.client.clone(),
            self.group.clone(),
            opt(&self.device),
            opt(&self.mac),
            opt(&self.hostname),
            opt(&self.user),
            opt(&self.device_id),
            self.name.clone(),
            self.qtype.clone(),
            self.decision.clone(),
            opt(&self.category),
            opt(&self.rule),
            self.rcode.clone(),
            self.count.to_string(),
        ];
        let mut line = fields
            .iter()
            .map(|f| csv_field(f))
            .collect::<Vec<_>>()
            .join(",");
        line.push('\n');
        line
    }
}

/// One CSV field, quoted when needed and defused against formula injection.
pub fn csv_field(f: &str) -> String {
    let f = match f.starts_with(['=', '+', '-', '@']) {
        true => format!("'{f}"),
        false => f.to_owned(),
    };
    if f.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", f.replace('"', "\"\""))
    } else {
        f
    }
}

/// Where a check result came from.
pub const CHECK_SOURCES: &[&str] = &["manual", "selftest"];

/// A filtering check to record.
#[derive(Debug, Clone)]
pub struct NewCheck<'a> {
    /// When it was done.
    pub at: jiff::Timestamp,
    /// Who did it (console account, or "selftest").
    pub who: &'a str,
    /// What was tested ("adult category blocked", "selftest: 42 queries").
    pub what: &'a str,
    /// The device or group it was tested on.
    pub target: &'a str,
    /// "manual" or "selftest".
    pub source: &'a str,
    /// Passed.
    pub passed: bool,
    /// What was seen.
    pub detail: &'a str,
    /// What was done about it.
    pub action: &'a str,
}

impl NewCheck<'_> {
    /// Refuse an entry with an unknown source or over-long text, naming the field.
    pub fn validate(&self) -> Result<(), super::StoreError> {
        if !CHECK_SOURCES.contains(&self.source) {
            return Err(super::StoreError::Invalid(format!(
                "source: expected one of {CHECK_SOURCES:?}"
            )));
        }
        for (field, v) in [
            ("who", self.who),
            ("what", self.what),
            ("target", self.target),
            ("detail", self.detail),
            ("action", self.action),
        ] {
            check_text(field, v)?;
        }
        if self.who.trim().is_empty() || self.what.trim().is_empty() {
            return Err(super::StoreError::Invalid(
                "who and what are required".into(),
            ));
        }
        Ok(())
    }
}

fn check_text(field: &str, v: &str) -> Result<(), super::StoreError> {
    if v.chars().count() > MAX_TEXT {
        return Err(super::StoreError::Invalid(format!(
            "{field}: longer than {MAX_TEXT} characters"
        )));
    }
    Ok(())
}

/// A recorded check.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct CheckRow {
    /// Id.
    pub id: i64,
    /// When (µs).
    pub ts_us: i64,
    /// Who.
    pub who: String,
    /// What was tested.
    pub what: String,
    /// Device or group.
    pub target: String,
    /// manual or selftest.
    pub source: String,
    /// Passed.
    pub passed: bool,
    /// What was seen.
    pub detail: String,
    /// Action taken.
    pub action: String,
}

/// An annual review to record.
#[derive(Debug, Clone)]
pub struct NewReview<'a> {
    /// When it was recorded.
    pub at: jiff::Timestamp,
    /// The day of the review meeting.
    pub date: jiff::civil::Date,
    /// The reviewers (names and roles).
    pub reviewers: &'a str,
    /// Decisions: what is blocked or allowed and why.
    pub decisions: &'a str,
    /// When the next review is due.
    pub next_due: jiff::civil::Date,
    /// The console account that recorded it.
    pub recorded_by: &'a str,
}

impl NewReview<'_> {
    /// Refuse an empty or over-long entry, or a next review not after this one.
    pub fn validate(&self) -> Result<(), super::StoreError> {
        for (field, v) in [
            ("reviewers", self.reviewers),
            ("decisions", self.decisions),
            ("recorded_by", self.recorded_by),
        ] {
            check_text(field, v)?;
            if v.trim().is_empty() {
                return Err(super::StoreError::Invalid(format!("{field}: required")));
            }
        }
        if self.next_due <= self.date {
            return Err(super::StoreError::Invalid(
                "next_due: must be after the review date".into(),
            ));
        }
        Ok(())
    }
}

/// A recorded annual review.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReviewRow {
    /// Id.
    pub id: i64,
    /// When it was recorded (µs).
    pub ts_us: i64,
    /// Review date (YYYY-MM-DD).
    pub date: String,
    /// Reviewers.
    pub reviewers: String,
    /// Decisions and reasons.
    pub decisions: String,
    /// Next review due (YYYY-MM-DD).
    pub next_due: String,
    /// Who recorded it.
    pub recorded_by: String,
}

/// The period a list covers: from (inclusive) and to (exclusive), µs; None = open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Period {
    /// From (µs).
    pub from_us: Option<i64>,
    /// To (µs).
    pub to_us: Option<i64>,
}

impl Period {
    /// (from, to) with open ends as the widest range, for binding.
    pub fn bounds(self) -> (i64, i64) {
        (
            self.from_us.unwrap_or(i64::MIN),
            self.to_us.unwrap_or(i64::MAX),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_number_their_placeholders_in_order() {
        let f = SearchFilter {
            device: Some("ipad".into()),
            name: Some("Example.COM.".into()),
            name_match: NameMatch::Suffix,
            decision: Some("blocked".into()),
            ..Default::default()
        };
        let (sql, params) = search_where(&f, Some(10));
        assert!(sql.contains("name = $3 OR name LIKE $4"), "{sql}");
        assert!(sql.contains("decision = $5"), "{sql}");
        assert!(sql.contains("id < $6"), "{sql}");
        assert_eq!(params[2], Param::Text("example.com".into()));
        assert_eq!(params[3], Param::Text("%.example.com".into()));
        assert_eq!(params.len(), 6);
    }

    #[test]
    fn like_wildcards_in_input_match_literally() {
        assert_eq!(like_escape("a_b%c\\"), "a\\_b\\%c\\\\");
    }

    #[test]
    fn csv_quotes_and_defuses_formulas() {
        assert_eq!(csv_field("a,b"), "\"a,b\"");
        assert_eq!(csv_field("=cmd()"), "'=cmd()");
        assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    }
}
