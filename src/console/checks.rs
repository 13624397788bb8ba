//! Checks and review: the checks log (filtering checks recorded by a technician, and
//! `chaperone selftest` runs), the annual review (what is blocked or allowed and why, by
//! whom, next review due), and a printable export of both for a period.
//!
//! Entries are append-only; each is audited. This page records what people say they did;
//! it does not test anything itself (that is `chaperone selftest`).

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use maud::{DOCTYPE, Markup, PreEscaped, html};
use serde::Deserialize;

use super::auth::{Form, error_page};
use super::{ConsoleUser, layout};
use crate::admin::Admin;
use crate::config::Role;
use crate::store::records::{CheckRow, NewCheck, NewReview, Period, ReviewRow};

/// Entries shown on the page.
const SHOWN: usize = 100;

fn when(us: i64, tz: &jiff::tz::TimeZone) -> String {
    crate::store::from_micros(us)
        .to_zoned(tz.clone())
        .strftime("%a %d %b %Y %H:%M")
        .to_string()
}

fn checks_table(rows: &[CheckRow], tz: &jiff::tz::TimeZone) -> Markup {
    html! {
        table {
            caption { "Filtering checks, newest first" }
            thead { tr {
                th scope="col" { "When" } th scope="col" { "Who" } th scope="col" { "What was tested" }
                th scope="col" { "Device or group" } th scope="col" { "Source" } th scope="col" { "Result" }
                th scope="col" { "Detail" } th scope="col" { "Action taken" }
            } }
            tbody { @for c in rows { tr {
                td { (when(c.ts_us, tz)) } td { (c.who) } td { (c.what) } td { (c.target) } td { (c.source) }
                td { @if c.passed { span.ok { "pass" } } @else { span.error { "fail" } } }
                td { (c.detail) } td { (c.action) }
            } } }
        }
    }
}

fn reviews_table(rows: &[ReviewRow]) -> Markup {
    html! {
        table {
            caption { "Annual reviews, newest first" }
            thead { tr {
                th scope="col" { "Date" } th scope="col" { "Reviewers" }
                th scope="col" { "Decisions: what is blocked or allowed, and why" }
                th scope="col" { "Next review due" } th scope="col" { "Recorded by" }
            } }
            tbody { @for r in rows { tr {
                td { (r.date) } td { (r.reviewers) } td style="white-space:pre-wrap" { (r.decisions) }
                td { (r.next_due) } td { (r.recorded_by) }
            } } }
        }
    }
}

async fn load(
    a: &Admin,
    user: &ConsoleUser,
    period: Period,
    n: usize,
) -> Result<(Vec<CheckRow>, Vec<ReviewRow>), Response> {
    a.with_db(move |db| Ok((db.list_checks(period, n)?, db.list_reviews(period, n)?)))
        .await
        .map_err(|e: crate::store::StoreError| {
            error_page(Some(user), StatusCode::SERVICE_UNAVAILABLE, &e.to_string())
        })
}

async fn page(State(a): State<Admin>, user: ConsoleUser) -> Result<Response, Response> {
    user.require(Role::Viewer)?;
    let tz = a.pipeline.state().load().config.server.timezone.clone();
    let (checks, reviews) = load(&a, &user, Period::default(), SHOWN).await?;
    let today = jiff::Timestamp::now().to_zoned(tz.clone()).date();
    let body = html! {
        p { a href="/console/checks/export" { "Printable record of checks and reviews" } " (choose a period, then print or save as PDF)" }
        section aria-labelledby="checks" {
            h2 id="checks" { "Checks log" }
            p { "Record each filtering check: when, who, what was tested on which device or group, the result and what was done. "
                code { "chaperone selftest" } " adds its results here (source: selftest)." }
            @if user.role >= Role::Technician { (check_form(&user)) }
            @if checks.is_empty() { p { "No checks recorded yet." } } @else { (checks_table(&checks, &tz)) }
        }
        section aria-labelledby="reviews" {
            h2 id="reviews" { "Annual review" }
            @if user.role >= Role::Dsl { (review_form(&user, today)) }
            @if reviews.is_empty() { p { "No review recorded yet." } } @else { (reviews_table(&reviews)) }
        }
    };
    Ok(layout::render(
        StatusCode::OK,
        layout::page("Checks and review", Some(&user), body),
    ))
}

fn check_form(user: &ConsoleUser) -> Markup {
    html! {
        form method="post" action="/console/checks" aria-label="Record a check" {
            h3 { "Record a check" }
            input type="hidden" name="csrf" value=(user.csrf);
            label for="what" { "What was tested" }
            input id="what" name="what" type="text" required maxlength="4000" placeholder="e.g. adult test site from a pupil laptop";
            label for="target" { "Device or group" }
            input id="target" name="target" type="text" required maxlength="4000" placeholder="e.g. pupils, IT suite PC 12";
            fieldset {
                legend { "Result" }
                label { input type="radio" name="result" value="pass" required; " Pass: filtered as expected" }
                label { input type="radio" name="result" value="fail"; " Fail: not as expected" }
            }
            label for="detail" { "What you saw" }
            textarea id="detail" name="detail" rows="2" maxlength="4000" {}
            label for="action" { "Action taken" }
            textarea id="action" name="action" rows="2" maxlength="4000" {}
            p { button type="submit" { "Record check" } }
        }
    }
}

fn review_form(user: &ConsoleUser, today: jiff::civil::Date) -> Markup {
    let next = today.saturating_add(jiff::Span::new().years(1));
    html! {
        form method="post" action="/console/reviews" aria-label="Record the annual review" {
            h3 { "Record the annual review" }
            input type="hidden" name="csrf" value=(user.csrf);
            label for="date" { "Date of the review" }
            input id="date" name="date" type="date" required value=(today);
            label for="reviewers" { "Reviewers (names and roles)" }
            input id="reviewers" name="reviewers" type="text" required maxlength="4000";
            label for="decisions" { "Decisions: what is blocked or allowed, and why" }
            textarea id="decisions" name="decisions" rows="5" required maxlength="4000" {}
            label for="next_due" { "Next review due" }
            input id="next_due" name="next_due" type="date" required value=(next);
            p { button type="submit" { "Record review" } }
        }
    }
}

#[derive(Deserialize)]
struct CheckForm {
    what: String,
    target: String,
    result: String,
    #[serde(default)]
    detail: String,
    #[serde(default)]
    action: String,
}

async fn record_check(
    State(a): State<Admin>,
    user: ConsoleUser,
    Form(f): Form<CheckForm>,
) -> Result<Response, Response> {
    user.require(Role::Technician)?;
    let passed = match f.result.as_str() {
        "pass" => true,
        "fail" => false,
        _ => {
            return Err(error_page(
                Some(&user),
                StatusCode::UNPROCESSABLE_ENTITY,
                "Result: choose pass or fail.",
            ));
        }
    };
    let (who, now) = (user.name.clone(), a.now());
    let (target, what) = (f.target.clone(), f.what.clone());
    let id = a
        .with_db(move |db| {
            db.insert_check(&NewCheck {
                at: now,
                who: &who,
                what: &f.what,
                target: &f.target,
                source: "manual",
                passed,
                detail: &f.detail,
                action: &f.action,
            })
        })
        .await
        .map_err(|e| {
            error_page(
                Some(&user),
                StatusCode::UNPROCESSABLE_ENTITY,
                &e.to_string(),
            )
        })?;
    let detail =
        serde_json::json!({ "what": what, "target": target, "passed": passed, "source": "manual" });
    a.audit(
        &user.name,
        user.role,
        "check.record",
        &format!("check {id}"),
        detail,
    )
    .await
    .map_err(|e| error_page(Some(&user), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    Ok(Redirect::to("/console/checks#checks").into_response())
}

#[derive(Deserialize)]
struct ReviewForm {
    date: String,
    reviewers: String,
    decisions: String,
    next_due: String,
}

async fn record_review(
    State(a): State<Admin>,
    user: ConsoleUser,
    Form(f): Form<ReviewForm>,
) -> Result<Response, Response> {
    user.require(Role::Dsl)?;
    let bad = |m: &str| error_page(Some(&user), StatusCode::UNPROCESSABLE_ENTITY, m);
    let date: jiff::civil::Date = f
        .date
        .trim()
        .parse()
        .map_err(|_| bad("Date of the review: expected a date"))?;
    let next_due: jiff::civil::Date = f
        .next_due
        .trim()
        .parse()
        .map_err(|_| bad("Next review due: expected a date"))?;
    let (who, now) = (user.name.clone(), a.now());
    let reviewers = f.reviewers.clone();
    let id = a
        .with_db(move |db| {
            db.insert_review(&NewReview {
                at: now,
                date,
                reviewers: &f.reviewers,
                decisions: &f.decisions,
                next_due,
                recorded_by: &who,
            })
        })
        .await
        .map_err(|e| bad(&e.to_string()))?;
    let detail = serde_json::json!({ "date": date.to_string(), "reviewers": reviewers, "next_due": next_due.to_string() });
    a.audit(
        &user.name,
        user.role,
        "review.record",
        &format!("review {id}"),
        detail,
    )
    .await
    .map_err(|e| error_page(Some(&user), StatusCode::SERVICE_UNAVAILABLE, &e.to_string()))?;
    Ok(Redirect::to("/console/checks#reviews").into_response())
}

#[derive(Deserialize)]
struct ExportQuery {
    #[serde(default)]
    from: String,
    #[serde(default)]
    to: String,
}

/// Print stylesheet: black on white, no navigation, tables that break across pages.
const PRINT_STYLE: &str = "body{font:11pt/1.4 Georgia,serif;color:#000;margin:2cm}
table{border-collapse:collapse;width:100%;margin-bottom:1.5em}th,td{border:1px solid #000;padding:3pt 5pt;text-align:left;vertical-align:top}
tr{page-break-inside:avoid}thead{display:table-header-group}form,.noprint{display:none}
@media screen{form,.noprint{display:block;margin-bottom:1em}}
@page{size:A4;margin:1.5cm}";

/// A printable ("PDF-ready") record of checks and reviews for a period: a standalone page
/// with print CSS, to print or save as PDF for governors or an inspection.
async fn export(
    State(a): State<Admin>,
    user: ConsoleUser,
    Query(q): Query<ExportQuery>,
) -> Result<Response, Response> {
    user.require(Role::Viewer)?;
    let snap = a.pipeline.state().load();
    let tz = snap.config.server.timezone.clone();
    let day = |s: &str, field: &str| -> Result<Option<i64>, Response> {
        if s.trim().is_empty() {
            return Ok(None);
        }
        let d: jiff::civil::Date = s.trim().parse().map_err(|_| {
            error_page(
                Some(&user),
                StatusCode::BAD_REQUEST,
                &format!("{field}: expected a date"),
            )
        })?;
        let z = d
            .to_zoned(tz.clone())
            .map_err(|e| error_page(Some(&user), StatusCode::BAD_REQUEST, &e.to_string()))?;
        Ok(Some(z.timestamp().as_microsecond()))
    };
    let from_us = day(&q.from, "From")?;
    // "To" is inclusive of that day.
    let to_us = day(&q.to, "To")?.map(|us| us + 86_400_000_000);
    let period = Period { from_us, to_us };
    let (checks, reviews) = load(&a, &user, period, crate::store::records::MAX_LIST).await?;
    let org = snap.config.enrolment.organisation.clone();
    let range = match (q.from.trim(), q.to.trim()) {
        ("", "") => "all dates".to_owned(),
        (f, "") => format!("from {f}"),
        ("", t) => format!("up to {t}"),
        (f, t) => format!("{f} to {t}"),
    };
    let page = html! {
        (DOCTYPE)
        html lang="en" {
            head {
                meta charset="utf-8";
                meta name="viewport" content="width=device-width, initial-scale=1";
                title { "Filtering checks and reviews · " (range) }
                style { (PreEscaped(PRINT_STYLE)) }
            }
            body {
                main {
                    form method="get" action="/console/checks/export" class="noprint" {
                        label for="from" { "From " } input id="from" name="from" type="date" value=(q.from);
                        label for="to" { " to " } input id="to" name="to" type="date" value=(q.to);
                        button type="submit" { "Show" }
                        " · " a href="/console/checks" { "Back to the console" }
                    }
                    h1 { "Web filtering: checks and annual review" }
                    p { @if !org.is_empty() { (org) " · " } "Period: " (range) " · Produced "
                        (jiff::Timestamp::now().to_zoned(tz.clone()).strftime("%d %b %Y %H:%M %Z")) " by " (user.name) }
                    h2 { "Annual review" }
                    @if reviews.is_empty() { p { "No review recorded in this period." } } @else { (reviews_table(&reviews)) }
                    h2 { "Checks log" }
                    p { (checks.len()) " checks, " (checks.iter().filter(|c| !c.passed).count()) " failed." }
                    @if checks.is_empty() { p { "No checks recorded in this period." } } @else { (checks_table(&checks, &tz)) }
                }
            }
        }
    };
    Ok(layout::render(StatusCode::OK, page))
}

/// The checks and review routes.
pub fn routes() -> Router<Admin> {
    Router::new()
        .route("/console/checks", get(page).post(record_check))
        .route("/console/reviews", post(record_review))
        .route("/console/checks/export", get(export))
}
