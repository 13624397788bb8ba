//! Query log search for the DSL: filters by device, user, name, category, outcome, group
//! and time range; newest first, keyset paged; CSV export of the same filters (bounded).
//!
//! It shows what the log stores: pseudonyms of pseudonymised groups stay pseudonyms. It
//! must not look anything up that would turn a pseudonym back into a person or device.

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::extract::{Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;

use super::auth::error_page;
use super::{ConsoleUser, layout};
use crate::admin::Admin;
use crate::config::Role;
use crate::store::records::{
    CSV_CHUNK, CSV_HEADER, CSV_MAX_ROWS, DEFAULT_PAGE, MAX_PAGE, NameMatch, QueryRow, SearchFilter,
};

/// The outcomes the query log stores.
const DECISIONS: &[&str] = &["allowed", "blocked", "rewritten", "refused", "servfail"];

/// The search form as submitted (every field optional; blank means no filter).
#[derive(Debug, Default, Deserialize)]
pub struct SearchForm {
    #[serde(default)]
    device: String,
    #[serde(default)]
    user: String,
    #[serde(default)]
    name: String,
    #[serde(default, rename = "match")]
    name_match: NameMatch,
    #[serde(default)]
    category: String,
    #[serde(default)]
    decision: String,
    #[serde(default)]
    group: String,
    /// From, school local time (YYYY-MM-DDTHH:MM, or a date).
    #[serde(default)]
    from: String,
    /// To (exclusive), school local time.
    #[serde(default)]
    to: String,
    /// Keyset: ids below this.
    before: Option<i64>,
    /// Rows per page.
    limit: Option<usize>,
}

fn some(s: &str) -> Option<String> {
    let t = s.trim();
    (!t.is_empty()).then(|| t.chars().take(253).collect())
}

/// A school-local time (`2026-11-23T10:00`, `2026-11-23 10:00` or `2026-11-23`) in µs.
fn local_time(s: &str, tz: &jiff::tz::TimeZone, field: &str) -> Result<Option<i64>, String> {
    let s = s.trim();
    if s.is_empty() {
        return Ok(None);
    }
    let dt: Result<jiff::civil::DateTime, _> = s.replace(' ', "T").parse();
    let dt = match dt {
        Ok(dt) => dt,
        Err(_) => s
            .parse::<jiff::civil::Date>()
            .map(|d| d.to_datetime(jiff::civil::Time::midnight()))
            .map_err(|_| format!("{field}: expected a date and time such as 2026-11-23T10:00"))?,
    };
    dt.to_zoned(tz.clone())
        .map(|z| Some(z.timestamp().as_microsecond()))
        .map_err(|e| format!("{field}: {e}"))
}

impl SearchForm {
    fn filter(&self, tz: &jiff::tz::TimeZone) -> Result<SearchFilter, String> {
        Ok(SearchFilter {
            device: some(&self.device),
            user: some(&self.user),
            name: some(&self.name),
            name_match: self.name_match,
            category: some(&self.category),
            decision: some(&self.decision),
            group: some(&self.group),
            from_us: local_time(&self.from, tz, "from")?,
            to_us: local_time(&self.to, tz, "to")?,
        })
    }

    /// The filters as a query string (no paging), for links.
    fn query_string(&self) -> String {
        let mut q = form_urlencoded::Serializer::new(String::new());
        let m = match self.name_match {
            NameMatch::Contains => "contains",
            NameMatch::Suffix => "suffix",
        };
        for (k, v) in [
            ("device", self.device.as_str()),
            ("user", &self.user),
            ("name", &self.name),
            ("match", m),
            ("category", &self.category),
            ("decision", &self.decision),
            ("group", &self.group),
            ("from", &self.from),
            ("to", &self.to),
        ] {
            if !v.trim().is_empty() {
                q.append_pair(k, v.trim());
            }
        }
        q.finish()
    }
}

/// The search page.
async fn search(
    State(a): State<Admin>,
    user: ConsoleUser,
    Query(form): Query<SearchForm>,
) -> Result<Response, Response> {
    user.require(Role::Dsl)?;
    let snap = a.pipeline.state().load();
    let tz = snap.config.server.timezone.clone();
    let groups: Vec<String> = snap.config.groups.keys().cloned().collect();
    let categories: Vec<String> = snap.policy.bundle().categories().to_vec();
    let filter = match form.filter(&tz) {
        Ok(f) => f,
        Err(e) => return Err(error_page(Some(&user), StatusCode::BAD_REQUEST, &e)),
    };
    let limit = form.limit.unwrap_or(DEFAULT_PAGE).clamp(1, MAX_PAGE);
    let before = form.before;
    let rows = a
        .with_db(move |db| db.search_queries(&filter, before, limit))
        .await
        .map_err(|e| error_page(Some(&user), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    let qs = form.query_string();
    let body = html! {
        (search_form(&form, &groups, &categories))
        p { a href={ "/console/search.csv?" (qs) } download { "Download these results as CSV" }
            " (at most " (CSV_MAX_ROWS) " rows, newest first)" }
        @if rows.is_empty() {
            p role="status" { "No queries match." }
        } @else {
            (results(&rows, &tz))
            @if rows.len() == limit {
                @if let Some(last) = rows.last() {
                    p { a rel="next" href={ "/console/search?" (qs) "&before=" (last.id) } { "Older queries" } }
                }
            }
        }
    };
    Ok(layout::render(
        StatusCode::OK,
        layout::page("Query log search", Some(&user), body),
    ))
}

fn search_form(f: &SearchForm, groups: &[String], categories: &[String]) -> Markup {
    html! {
        form method="get" action="/console/search" role="search" aria-label="Query log" {
            p { "Staff and guest devices appear as pseudonyms (anon-…) where the log is pseudonymised; search by the pseudonym." }
            label for="device" { "Device (address, MAC, device ID or name)" }
            input id="device" name="device" type="text" value=(f.device);
            label for="user" { "User" }
            input id="user" name="user" type="text" value=(f.user);
            label for="name" { "Site name" }
            input id="name" name="name" type="text" value=(f.name);
            label for="match" { "Name matches" }
            select id="match" name="match" {
                option value="contains" selected[f.name_match == NameMatch::Contains] { "containing the text" }
                option value="suffix" selected[f.name_match == NameMatch::Suffix] { "this site and its subdomains" }
            }
            label for="category" { "Category" }
            select id="category" name="category" {
                option value="" { "any" }
                @for c in categories { option value=(c) selected[&f.category == c] { (c) } }
            }
            label for="decision" { "Outcome" }
            select id="decision" name="decision" {
                option value="" { "any" }
                @for d in DECISIONS { option value=(d) selected[f.decision == *d] { (d) } }
            }
            label for="group" { "Group" }
            select id="group" name="group" {
                option value="" { "any" }
                @for g in groups { option value=(g) selected[&f.group == g] { (g) } }
            }
            label for="from" { "From (school time)" }
            input id="from" name="from" type="datetime-local" value=(f.from);
            label for="to" { "To (school time)" }
            input id="to" name="to" type="datetime-local" value=(f.to);
            p { button type="submit" { "Search" } }
        }
    }
}

fn results(rows: &[QueryRow], tz: &jiff::tz::TimeZone) -> Markup {
    html! {
        table {
            caption { "Queries, newest first" }
            thead { tr {
                th scope="col" { "Time" } th scope="col" { "Device" } th scope="col" { "User" }
                th scope="col" { "Group" } th scope="col" { "Name" } th scope="col" { "Outcome" }
                th scope="col" { "Category" }
            } }
            tbody { @for r in rows { tr {
                td { (crate::store::from_micros(r.ts_us).to_zoned(tz.clone()).strftime("%a %d %b %Y %H:%M:%S")) }
                td { (device_words(r)) }
                td { (r.user.as_deref().unwrap_or("")) }
                td { (r.group) }
                td { (r.name) }
                td { (r.decision) @if r.count > 1 { " ×" (r.count) } }
                td { (r.category.as_deref().unwrap_or("")) }
            } } }
        }
    }
}

/// The device as the log has it: its name, then the address (or pseudonym).
fn device_words(r: &QueryRow) -> String {
    let name = r.device.as_deref().or(r.hostname.as_deref());
    match name {
        Some(n) => format!("{n} ({})", r.client),
        None => r.client.clone(),
    }
}

/// The CSV export: the same filters, newest first, fetched [`CSV_CHUNK`] rows per store
/// call and cut at [`CSV_MAX_ROWS`] (the last line says so). The export is audited: it
/// takes personal data out of the console.
async fn csv(
    State(a): State<Admin>,
    user: ConsoleUser,
    Query(form): Query<SearchForm>,
) -> Result<Response, Response> {
    user.require(Role::Dsl)?;
    let tz = a.pipeline.state().load().config.server.timezone.clone();
    let filter = form
        .filter(&tz)
        .map_err(|e| error_page(Some(&user), StatusCode::BAD_REQUEST, &e))?;
    let mut out = String::from(CSV_HEADER);
    let mut before = None;
    let mut rows = 0usize;
    let mut capped = false;
    loop {
        let f = filter.clone();
        let chunk = a
            .with_db(move |db| db.search_queries(&f, before, CSV_CHUNK))
            .await
            .map_err(|e| {
                error_page(Some(&user), StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
            })?;
        for r in &chunk {
            if rows == CSV_MAX_ROWS {
                capped = true;
                break;
            }
            out.push_str(&r.csv_line());
            rows += 1;
        }
        before = chunk.last().map(|r| r.id);
        if capped || chunk.len() < CSV_CHUNK {
            break;
        }
    }
    if capped {
        out.push_str(&format!(
            "# stopped at {CSV_MAX_ROWS} rows: older matching queries are not in this file; narrow the time range\n"
        ));
    }
    let detail =
        serde_json::json!({ "filters": form.query_string(), "rows": rows, "capped": capped });
    a.audit(
        &user.name,
        user.role,
        "querylog.export",
        "query log",
        detail,
    )
    .await
    .map_err(|e| error_page(Some(&user), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    Ok((
        [
            (header::CONTENT_TYPE, "text/csv; charset=utf-8"),
            (
                header::CONTENT_DISPOSITION,
                "attachment; filename=\"chaperone-queries.csv\"",
            ),
            (header::CACHE_CONTROL, "no-store"),
        ],
        out,
    )
        .into_response())
}

/// The search routes.
pub fn routes() -> Router<Admin> {
    Router::new()
        .route("/console/search", get(search))
        .route("/console/search.csv", get(csv))
}
