//! The block page: what a browser shows when DNS pointed a blocked name at the block-page
//! address. Plain, accessible HTML with no external assets (it must render on a network
//! that blocks everything else): the site, why it is blocked, the group's policy and the
//! time, a form to ask for access (an unblock request for a technician or the DSL to
//! decide) and a form to report a site that should be blocked.
//!
//! The blocked name is the request's `Host`; the reason is worked out again by the same
//! policy code the DNS server runs, for the browser's own address. HTTPS sites cannot show
//! it without a certificate the device trusts; browsers then show their own error page.

use std::net::SocketAddr;

use axum::Router;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;

use super::Admin;
use super::routes::{NewReportBody, NewRequestBody, new_report, new_request};
use crate::lists::key::{ReversedName, normalize_domain};
use crate::policy::{Client, Decision};

/// The block page routes.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/request", axum::routing::post(submit_request))
        .route("/report", get(report_form).post(submit_report))
        .fallback(get(page))
        .with_state(admin)
}

/// Escape text for HTML.
fn esc(s: &str) -> String {
    s.chars()
        .map(|c| match c {
            '&' => "&amp;".to_owned(),
            '<' => "&lt;".to_owned(),
            '>' => "&gt;".to_owned(),
            '"' => "&quot;".to_owned(),
            '\'' => "&#39;".to_owned(),
            c => c.to_string(),
        })
        .collect()
}

fn layout(title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 40rem; margin: 2rem auto; padding: 0 1rem; line-height: 1.5; color: #1a1a1a; }}
h1 {{ font-size: 1.6rem; }}
h2 {{ font-size: 1.25rem; margin-top: 2rem; }}
dl {{ display: grid; grid-template-columns: max-content 1fr; gap: .25rem 1rem; }}
dt {{ font-weight: bold; }}
dd {{ margin: 0; overflow-wrap: anywhere; }}
@media (max-width: 30rem) {{ dl {{ grid-template-columns: 1fr; }} dd {{ margin-bottom: .5rem; }} }}
label {{ display: block; margin-top: .75rem; font-weight: bold; }}
input, textarea, select, button {{ font: inherit; }}
input, textarea, select {{ width: 100%; padding: .4rem; box-sizing: border-box; border: 1px solid #6b6b6b; border-radius: 3px; }}
input[type=number] {{ max-width: 8rem; }}
.hint {{ margin: .1rem 0 .25rem; color: #4a4a4a; font-size: .95rem; }}
button {{ display: block; margin-top: 1rem; padding: .6rem 1.2rem; font-weight: bold; color: #fff; background: #2b5fb3; border: 0; border-radius: 3px; cursor: pointer; }}
button:hover {{ background: #1f4a8f; }}
a {{ color: #1f4a8f; }}
:focus-visible {{ outline: 3px solid #f5a623; outline-offset: 2px; }}
.note {{ background: #eef3fb; border-left: 4px solid #2b5fb3; padding: .5rem 1rem; }}
</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>"#,
        title = esc(title)
    ))
}

/// The host name a browser asked for.
fn host(headers: &HeaderMap) -> Option<String> {
    let h = headers.get(header::HOST)?.to_str().ok()?;
    let h = h
        .rsplit_once(':')
        .filter(|(_, p)| p.chars().all(|c| c.is_ascii_digit()))
        .map_or(h, |(h, _)| h);
    normalize_domain(h).ok()
}

/// What the policy says about `domain` for this browser, in words: (blocked, group,
/// category, rule).
fn why(a: &Admin, client: SocketAddr, domain: &str) -> (bool, String, String, String) {
    let snap = a.pipeline.state().load();
    let Some(key) = ReversedName::from_labels(domain.split('.').map(str::as_bytes)) else {
        return (false, String::new(), String::new(), String::new());
    };
    let outcome = snap.policy.decide(
        &Client {
            ip: Some(client.ip().to_canonical()),
            mac: None,
        },
        key.as_bytes(),
        a.now(),
        None,
    );
    let group = outcome
        .group
        .and_then(|g| snap.policy.groups().get(g as usize))
        .map_or_else(|| "none".to_owned(), |g| g.name.clone());
    let (decision, category, rule, _) =
        crate::record::describe(&snap.policy, outcome.decision, key.as_bytes());
    let blocked = matches!(outcome.decision, Decision::Block { .. }) && decision == "blocked";
    let description = category
        .as_deref()
        .and_then(|c| snap.config.categories.get(c))
        .map(|c| c.description.clone())
        .filter(|d| !d.is_empty());
    let category = match (category, description) {
        (Some(c), Some(d)) => format!("{c} ({d})"),
        (Some(c), None) => c,
        _ => String::new(),
    };
    (blocked, group, category, rule.unwrap_or_default())
}

async fn page(
    State(a): State<Admin>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let Some(domain) = host(&headers) else {
        return layout(
            "Chaperone",
            "<h1>School web filter</h1><p>This is the school's web filter.</p>",
        )
        .into_response();
    };
    let (blocked, group, category, rule) = why(&a, client, &domain);
    let now = a
        .now()
        .to_zoned(a.pipeline.state().load().config.server.timezone.clone());
    let time = now.strftime("%A %-d %B %Y, %H:%M %Z").to_string();
    let heading = if blocked {
        "This site is blocked"
    } else {
        "School web filter"
    };
    let reason = if blocked {
        format!(
            "<p>The school's web filter has blocked <strong>{d}</strong> for your network.</p>\
             <dl><dt>Site</dt><dd>{d}</dd><dt>Category</dt><dd>{c}</dd><dt>Matched rule</dt><dd>{r}</dd>\
             <dt>Policy group</dt><dd>{g}</dd><dt>Time</dt><dd>{t}</dd></dl>",
            d = esc(&domain),
            c = esc(&category),
            r = esc(&rule),
            g = esc(&group),
            t = esc(&time)
        )
    } else {
        format!(
            "<p><strong>{}</strong> is not blocked for your network at the moment. Try reloading the page.</p>",
            esc(&domain)
        )
    };
    let body = format!(
        r#"<h1>{heading}</h1>
{reason}
<h2 id="request-heading">Ask for access</h2>
<p>If you need this site for your work or studies, ask for it to be unblocked for a while. A member of staff will review your request.</p>
<form method="post" action="/request" aria-labelledby="request-heading">
<input type="hidden" name="domain" value="{d}">
<input type="hidden" name="category" value="{c}">
<label for="requester">Your name</label>
<input id="requester" name="requester" required autocomplete="name">
<label for="reason">Why do you need it?</label>
<textarea id="reason" name="reason" rows="3" required></textarea>
<label for="days">For how long (days)</label>
<p id="days-hint" class="hint">From 1 to 30 days.</p>
<input id="days" name="days" type="number" inputmode="numeric" min="1" max="30" value="1" required aria-describedby="days-hint">
<button type="submit">Request access</button>
</form>
<h2>Something wrong?</h2>
<p><a href="/report">Report a mistake, or a site that should be blocked</a></p>"#,
        d = esc(&domain),
        c = esc(category.split(' ').next().unwrap_or_default()),
    );
    let status = if blocked {
        StatusCode::FORBIDDEN
    } else {
        StatusCode::OK
    };
    (status, layout(heading, &body)).into_response()
}

#[derive(Deserialize)]
struct RequestForm {
    domain: String,
    requester: String,
    reason: String,
    days: u32,
    #[serde(default)]
    category: String,
}

async fn submit_request(
    State(a): State<Admin>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Form(f): Form<RequestForm>,
) -> Response {
    let (_, group, _, _) = why(&a, client, &f.domain);
    let groups = if group == "none" {
        Vec::new()
    } else {
        vec![group]
    };
    let body = NewRequestBody {
        domain: f.domain.clone(),
        reason: f.reason,
        requester: f.requester,
        days: f.days,
        groups,
        category: (!f.category.is_empty()).then_some(f.category),
    };
    let actor = format!("block page ({})", client.ip().to_canonical());
    match new_request(&a, &body, &actor, "none") {
        Ok(id) => layout(
            "Request sent",
            &format!(
                "<h1>Request sent</h1><p class=\"note\" role=\"status\">Your request <strong>#{id}</strong> to use <strong>{}</strong> has been sent to the school's technician and safeguarding lead. You will be able to use the site if it is approved.</p>",
                esc(&f.domain)
            ),
        )
        .into_response(),
        Err(r) => {
            let status = r.status();
            (status, layout("Request not sent", "<h1>Request not sent</h1><p>Please fill in your name and the reason, and try again. Sites in some categories can never be unblocked.</p>")).into_response()
        }
    }
}

async fn report_form(headers: HeaderMap) -> Html<String> {
    // Reached from a block page, the site is the one that was blocked: fill it in.
    let site = host(&headers)
        .filter(|d| d.parse::<std::net::IpAddr>().is_err())
        .map(|d| esc(&d))
        .unwrap_or_default();
    layout(
        "Report a site",
        &format!(
            r#"<h1 id="report-heading">Report a site</h1>
<p>Tell the school about a site that should be blocked, or about a block that is a mistake.</p>
<form method="post" action="/report" aria-labelledby="report-heading">
<label for="url">Address of the site</label>
<p id="url-hint" class="hint">For example www.example.com or the whole address from the address bar.</p>
<input id="url" name="url" value="{site}" required aria-describedby="url-hint">
<label for="reporter">Your name</label>
<input id="reporter" name="reporter" required autocomplete="name">
<label for="comment">What did you see?</label>
<textarea id="comment" name="comment" rows="4"></textarea>
<button type="submit">Send report</button>
</form>"#
        ),
    )
}

async fn submit_report(
    State(a): State<Admin>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    Form(f): Form<NewReportBody>,
) -> Response {
    let actor = format!("block page ({})", client.ip().to_canonical());
    match new_report(&a, &f, &actor, "none") {
        Ok(id) => layout("Report sent", &format!("<h1>Report sent</h1><p class=\"note\" role=\"status\">Thank you. Report <strong>#{id}</strong> has been sent to the school.</p>")).into_response(),
        Err(r) => (r.status(), layout("Report not sent", "<h1>Report not sent</h1><p>Please give the site's address and your name.</p>")).into_response(),
    }
}
