//! Policy in words: each group's networks, categories, schedules and SafeSearch as
//! sentences a teacher can read, built from the live snapshot (so it is what the server
//! enforces now), and `explain` as a form giving the same answer as `GET /explain`.
//!
//! It only describes: every decision stays in [`crate::policy`], and the explanation comes
//! from [`crate::admin::explain_value`], the admin API's own.

// Handlers return ready-made error responses (the axum idiom).
#![allow(clippy::result_large_err)]

use axum::Router;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::get;
use maud::{Markup, html};
use serde::Deserialize;

use super::{ConsoleUser, layout};
use crate::admin::Admin;
use crate::admin::{ExplainQuery, explain_value};
use crate::config::{Config, GroupConfig, Role, ScheduleConfig, YoutubeMode};

const DAYS: [&str; 7] = ["Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"];

/// Weekday bits (bit 0 = Monday) in words: "every day", "Mon–Fri", "Sat–Sun", or a list.
pub fn days_words(bits: u8) -> String {
    match bits & 0x7f {
        0x7f => "every day".into(),
        0x1f => "Mon–Fri".into(),
        0x60 => "Sat–Sun".into(),
        b => DAYS
            .iter()
            .enumerate()
            .filter(|(i, _)| b & (1 << i) != 0)
            .map(|(_, d)| *d)
            .collect::<Vec<_>>()
            .join(", "),
    }
}

fn hhmm(min: u16) -> String {
    format!("{:02}:{:02}", min / 60, min % 60)
}

fn list(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [rest @ .., last] => format!("{} and {last}", rest.join(", ")),
    }
}

/// One schedule as a sentence: "games allowed Mon–Fri 12:00–13:00 (lunchtime gaming)".
pub fn schedule_words(s: &ScheduleConfig) -> String {
    let when = format!(
        "{} {}–{}",
        days_words(s.days),
        hhmm(s.from_min),
        hhmm(s.to_min)
    );
    let mut parts = Vec::new();
    if !s.allow.is_empty() {
        parts.push(format!("{} allowed {when}", list(&s.allow)));
    }
    if !s.block.is_empty() {
        parts.push(format!("{} blocked {when}", list(&s.block)));
    }
    format!("{} ({})", parts.join("; "), s.name)
}

/// The group's SafeSearch in words, or None when off.
fn safesearch_words(g: &GroupConfig) -> Option<String> {
    let s = &g.safe_search;
    let engines: Vec<String> = [
        (s.google, "Google"),
        (s.bing, "Bing"),
        (s.duckduckgo, "DuckDuckGo"),
        (s.pixabay, "Pixabay"),
        (s.brave, "Brave Search"),
    ]
    .into_iter()
    .filter(|(on, _)| *on)
    .map(|(_, n)| n.to_owned())
    .collect();
    let youtube = match s.youtube {
        YoutubeMode::Off => None,
        YoutubeMode::Moderate => Some("YouTube Restricted Mode (moderate)"),
        YoutubeMode::Strict => Some("YouTube Restricted Mode (strict)"),
    };
    let mut parts = Vec::new();
    if !engines.is_empty() {
        parts.push(format!("SafeSearch enforced on {}", list(&engines)));
    }
    parts.extend(youtube.map(str::to_owned));
    (!parts.is_empty()).then(|| parts.join("; "))
}

/// Every sentence describing one group.
pub fn group_sentences(
    cfg: &Config,
    name: &str,
    g: &GroupConfig,
    illegal: &[String],
) -> Vec<String> {
    let mut out = Vec::new();
    let nets: Vec<String> = cfg
        .networks
        .iter()
        .filter(|n| n.group == name)
        .map(|n| {
            let cidrs: Vec<String> = n.cidrs.iter().map(ToString::to_string).collect();
            format!("{} ({})", n.name, cidrs.join(", "))
        })
        .collect();
    out.push(match nets.is_empty() {
        true => "Networks: none (reached by enrolled devices or users only)".into(),
        false => format!("Networks: {}", list(&nets)),
    });
    if g.allow_only {
        out.push(format!(
            "Only approved sites open: {}; everything else is blocked",
            list(&g.approved)
        ));
    } else if g.block.is_empty() {
        out.push("No categories blocked at all times".into());
    } else {
        out.push(format!("{} always blocked", list(&g.block)));
    }
    if !illegal.is_empty() {
        out.push(format!(
            "{} (illegal content) always blocked and reported to the safeguarding lead",
            list(illegal)
        ));
    }
    if !g.allow.is_empty() {
        out.push(format!("Always allowed: {}", list(&g.allow)));
    }
    out.extend(g.schedules.iter().map(schedule_words));
    if let Some(s) = safesearch_words(g) {
        out.push(s);
    }
    out.push(match g.bypass_prevention {
        true => "Bypass prevention on: browsers' own encrypted DNS and iCloud Private Relay are turned off".into(),
        false => "Bypass prevention off".into(),
    });
    out
}

#[derive(Deserialize)]
struct ExplainForm {
    client: Option<String>,
    name: Option<String>,
}

async fn policy(
    State(a): State<Admin>,
    user: ConsoleUser,
    Query(form): Query<ExplainForm>,
) -> Result<Response, Response> {
    user.require(Role::Viewer)?;
    let snap = a.pipeline.state().load();
    let cfg = &snap.config;
    let illegal: Vec<String> = cfg
        .categories
        .iter()
        .filter(|(_, c)| c.verdict == crate::config::Verdict::Illegal)
        .map(|(n, _)| n.clone())
        .collect();
    let explained = match (form.client.as_deref(), form.name.as_deref()) {
        (Some(c), Some(n)) if !c.trim().is_empty() && !n.trim().is_empty() => {
            Some(explain(&a, c.trim(), n.trim()).await)
        }
        _ => None,
    };
    let body = html! {
        p { "What the filter does for each group now, in words (time zone " (cfg.server.timezone.iana_name().unwrap_or("configured")) ")." }
        @for (name, g) in &cfg.groups {
            section aria-labelledby={ "g-" (name) } {
                h2 id={ "g-" (name) } { (name) }
                ul { @for s in group_sentences(cfg, name, g, &illegal) { li { (s) } } }
            }
        }
        section aria-labelledby="categories" {
            h2 id="categories" { "Categories" }
            ul { @for (name, c) in &cfg.categories { li { strong { (name) } ": " (c.description) } } }
        }
        (explain_form(&form))
        @if let Some(e) = explained { (e) }
    };
    Ok(layout::render(
        StatusCode::OK,
        layout::page("Policy", Some(&user), body),
    ))
}

fn explain_form(f: &ExplainForm) -> Markup {
    html! {
        section aria-labelledby="explain" {
            h2 id="explain" { "Why is a site blocked or allowed?" }
            form method="get" action="/console/policy#result" {
                label for="client" { "Device address (e.g. 10.20.1.15)" }
                input id="client" name="client" type="text" required value=(f.client.as_deref().unwrap_or(""));
                label for="name" { "Site name (e.g. www.example.com)" }
                input id="name" name="name" type="text" required value=(f.name.as_deref().unwrap_or(""));
                p { button type="submit" { "Explain" } }
            }
        }
    }
}

/// The same explanation as `GET /explain`, as a list.
async fn explain(a: &Admin, client: &str, name: &str) -> Markup {
    let Ok(ip) = client.parse() else {
        return html! { p.error #result role="alert" { "Device address: " (client) " is not an IP address." } };
    };
    let q = ExplainQuery {
        client: Some(ip),
        name: name.to_owned(),
        ..Default::default()
    };
    match explain_value(a, &q).await {
        Ok(v) => {
            let s = |k: &str| v[k].as_str().unwrap_or("").to_owned();
            let trace: Vec<String> = v["trace"]
                .as_array()
                .map(|t| {
                    t.iter()
                        .filter_map(|l| l.as_str().map(str::to_owned))
                        .collect()
                })
                .unwrap_or_default();
            html! {
                section #result aria-live="polite" {
                    h3 { (s("name")) " from " (client) ": " strong { (s("decision")) } }
                    @if !s("category").is_empty() { p { "Category: " (s("category")) } }
                    @if !s("rule").is_empty() { p { "Rule: " (s("rule")) } }
                    ol { @for l in trace { li { (l) } } }
                }
            }
        }
        Err(_) => {
            html! { p.error #result role="alert" { "Cannot explain " (name) ": check the site name." } }
        }
    }
}

/// The policy routes.
pub fn routes() -> Router<Admin> {
    Router::new().route("/console/policy", get(policy))
}
