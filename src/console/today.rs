//! Today: what needs the safeguarding lead now (open incidents, pending requests, new
//! reports) and whether filtering is working (up, list age, last reload, the last hour's
//! queries and blocks). Read-only; it counts what the other pages list.

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};

use super::{ConsoleUser, layout, local_time, store_error};
use crate::admin::Admin;
use crate::config::Role;
use crate::store::{Store, StoreError, micros};

/// Incidents looked at to count the open ones (the newest this many).
const INCIDENT_WINDOW: usize = 1_000;

/// What the page counts, read in one database turn.
struct Counts {
    open_incidents: usize,
    newest_incident: Option<(i64, String, String)>,
    pending_requests: usize,
    new_reports: usize,
    queries_hour: i64,
    blocks_hour: i64,
}

fn count(
    c: &mut dyn Store,
    now: jiff::Timestamp,
    scope: &crate::admin::school::Scope,
    dsl: bool,
) -> Result<Counts, StoreError> {
    let (open_incidents, newest_incident) = if dsl {
        let rows: Vec<_> = c
            .list_incidents(jiff::Timestamp::UNIX_EPOCH, None, INCIDENT_WINDOW)?
            .into_iter()
            .filter(|r| scope.owns_group(&r.group))
            .collect();
        let ids: Vec<i64> = rows.iter().map(|r| r.id).collect();
        let acked = c.incident_acks(&ids)?;
        let open: Vec<_> = rows
            .iter()
            .filter(|r| !acked.iter().any(|a| a.incident_id == r.id))
            .collect();
        let newest = open
            .first()
            .map(|r| (r.id, r.time.clone(), r.category.clone()));
        (open.len(), newest)
    } else {
        (0, None)
    };
    let pending_requests = c
        .list_requests(Some("pending"))?
        .into_iter()
        .filter(|r| scope.owns_groups(&r.groups))
        .count();
    let new_reports = if scope.is_trust() {
        c.list_reports(Some("pending"))?.len()
    } else {
        0
    };
    let hour_ago = micros(now) - 3_600_000_000;
    let per_group = c.table(
        "SELECT grp, SUM(count), SUM(CASE WHEN decision = 'blocked' THEN count ELSE 0 END) FROM queries WHERE ts_us >= $1 GROUP BY grp",
        hour_ago,
    )?;
    let (mut queries_hour, mut blocks_hour) = (0, 0);
    for row in per_group.iter().filter(|r| scope.owns_group(&r[0])) {
        queries_hour += row[1].parse::<i64>().unwrap_or(0);
        blocks_hour += row[2].parse::<i64>().unwrap_or(0);
    }
    Ok(Counts {
        open_incidents,
        newest_incident,
        pending_requests,
        new_reports,
        queries_hour,
        blocks_hour,
    })
}

async fn today(State(a): State<Admin>, user: ConsoleUser) -> Result<Response, Response> {
    user.require(Role::Viewer)?;
    let scope = user.scope(&a);
    let dsl = user.role >= Role::Dsl;
    let now = a.now();
    let s = scope.clone();
    let counts = a
        .with_db(move |c| count(c, now, &s, dsl))
        .await
        .map_err(|e| store_error(&user, e))?;
    let body = html! {
        section aria-labelledby="needs" {
            h2 id="needs" { "Needs attention" }
            ul.cards {
                @if dsl {
                    li { a href="/console/incidents" { strong { (counts.open_incidents) } " open incidents" } }
                }
                li { a href="/console/requests" { strong { (counts.pending_requests) } " unblock requests waiting" } }
                @if scope.is_trust() {
                    li { a href="/console/requests#reports" { strong { (counts.new_reports) } " new site reports" } }
                }
            }
            @if let Some((id, time, category)) = &counts.newest_incident {
                p { "Newest open incident: "
                    a href={ "/console/incidents/" (id) } { "#" (id) }
                    " (" (category) ", " (local_time(&a, time)) ")" }
            }
        }
        (health(&a, now, &counts))
    };
    Ok(layout::render(
        StatusCode::OK,
        layout::page("Today", Some(&user), body),
    ))
}

/// Is filtering working: the server answers (this page is proof), the lists' age, the
/// last reload and the last hour's traffic.
fn health(a: &Admin, now: jiff::Timestamp, counts: &Counts) -> Markup {
    let snap = a.pipeline.state().load();
    let metrics = a.pipeline.state().metrics();
    let built = snap.policy.bundle().header().built_at.clone();
    let age = built
        .parse::<jiff::Timestamp>()
        .ok()
        .map(|t| hours_text(now.duration_since(t).as_hours()));
    let reload_ok = metrics.last_reload_ok.get() == 1;
    let last_reload = metrics.last_reload.with_label_values(&["success"]).get();
    let last_reload = jiff::Timestamp::from_second(last_reload)
        .ok()
        .filter(|_| last_reload > 0)
        .map(|t| local_time(a, &t.to_string()));
    html! {
        section aria-labelledby="health" {
            h2 id="health" { "Is filtering working?" }
            table {
                caption { "Filter health" }
                tbody {
                    tr { th scope="row" { "Filtering" } td.ok { "Up: answering (configuration generation " (snap.generation) ")" } }
                    tr { th scope="row" { "Block lists built" }
                         td { @if let Some(age) = &age { (age) " ago (" (local_time(a, &built)) ")" } @else { (built) } } }
                    tr { th scope="row" { "Last reload" }
                         td { @if reload_ok { span.ok { "Succeeded" } } @else { span.error { "The latest reload failed: the previous configuration is still in force" } }
                              @if let Some(t) = &last_reload { ", last success " (t) } } }
                    tr { th scope="row" { "Queries in the last hour" } td { (counts.queries_hour) } }
                    tr { th scope="row" { "Blocked in the last hour" } td { (counts.blocks_hour) } }
                    tr { th scope="row" { "Temporary unblocks in force" } td { a href="/console/exceptions" { (snap.policy.exceptions().len()) } } }
                }
            }
        }
    }
}

/// "3 hours", "2 days".
fn hours_text(h: i64) -> String {
    match h {
        i64::MIN..=0 => "less than an hour".to_owned(),
        1 => "1 hour".to_owned(),
        2..=47 => format!("{h} hours"),
        _ => format!("{} days", h / 24),
    }
}

/// The Today route.
pub fn routes() -> Router<Admin> {
    Router::new().route("/console/", get(today))
}
