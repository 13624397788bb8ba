//! The block page: what a browser shows when DNS pointed a blocked name at the block-page
//! address. Plain, accessible HTML with no external assets (it must render on a network
//! that blocks everything else): the site, why it is blocked, the group's policy and the
//! time, a form to ask for access (an unblock request for a technician or the DSL to
//! decide) and a form to report a site that should be blocked.
//!
//! The blocked name is the request's `Host`, and anyone can send any `Host`, so the page
//! must not be an oracle for the lists: details (category, rule, group) are shown only when
//! the policy blocks that name for the browser's own address, worked out again by the same
//! policy code the DNS server runs; otherwise the page is generic. A name in an illegal
//! category (IWF-style lists, whose members must not disclose list contents) gets one fixed
//! page that echoes nothing, and the view is counted
//! (`chaperone_blockpage_illegal_hits_total`) and logged with the client address only.
//! HTTPS sites cannot show the page without a certificate the device trusts; browsers then
//! show their own error page.
//!
//! The page speaks to a pupil (the words, English and Welsh by `Accept-Language`, are all
//! in [`words`]): the kind of site in plain words, who to ask (`[block_page]` or the
//! group's `[[school]]`), and, when a schedule will open the site, when ([`opens`]). A
//! group that only reaches approved sites (an allow-only, Key Stage 1 group) gets one
//! simple sentence and no form.
//!
//! Form posts must come from the block page itself: same origin (`Origin`, else
//! `Referer`, naming the `Host` posted to) and a CSRF token bound to the browser's address,
//! valid for two hours. Every response carries a Content-Security-Policy (no scripts, no
//! framing), `X-Frame-Options: DENY` and `X-Content-Type-Options: nosniff`.

use std::net::{IpAddr, SocketAddr};

use axum::Router;
use axum::extract::{ConnectInfo, Form, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;

mod opens;
pub mod words;

use words::Words;

use super::Admin;
use super::routes::{NewReportBody, NewRequestBody, Submitter, new_report, new_request};
use crate::identity::Credential;
use crate::lists::key::{ReversedName, normalize_domain};
use crate::policy::{BlockReason, Decision};

/// How long a form's CSRF token is accepted, seconds.
const CSRF_LIFETIME: i64 = 2 * 3600;

/// The Content-Security-Policy of every block page response: nothing loads but the
/// page's own inline style, forms post only to this server, and no site may frame it.
const CSP: &str = "default-src 'none'; style-src 'unsafe-inline'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// The block page routes.
pub fn router(admin: Admin) -> Router {
    Router::new()
        .route("/request", axum::routing::post(submit_request))
        .route("/report", get(report_form).post(submit_report))
        .fallback(get(page))
        .with_state(admin)
        .layer(axum::middleware::map_response(security_headers))
}

/// Headers that stop the page being framed, sniffed or made to load anything else.
async fn security_headers(mut resp: Response) -> Response {
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    // Same-origin keeps the Origin header on form posts (no-referrer would make it "null").
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("same-origin"),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    resp
}

/// The CSRF token for a form served to `client`: issue time and an HMAC of (client, time).
fn csrf_token(a: &Admin, client: IpAddr) -> String {
    let ts = a.now().as_second();
    format!("{ts}.{}", csrf_mac(a, client, ts))
}

fn csrf_mac(a: &Admin, client: IpAddr, ts: i64) -> String {
    // HMAC takes a key of any length, so this cannot fail.
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(a.csrf_key.as_slice()) else {
        return String::new();
    };
    mac.update(client.to_canonical().to_string().as_bytes());
    mac.update(b"|");
    mac.update(ts.to_string().as_bytes());
    hex::encode(&mac.finalize().into_bytes()[..16])
}

/// A token issued to this client within [`CSRF_LIFETIME`].
fn csrf_ok(a: &Admin, client: IpAddr, token: &str) -> bool {
    let Some((ts, mac)) = token.split_once('.') else {
        return false;
    };
    let Ok(ts) = ts.parse::<i64>() else {
        return false;
    };
    let age = a.now().as_second().saturating_sub(ts);
    if !(0..=CSRF_LIFETIME).contains(&age) {
        return false;
    }
    let want = csrf_mac(a, client, ts);
    want.len() == mac.len()
        && want
            .bytes()
            .zip(mac.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

/// The form was posted from a page of this server: `Origin` (or, without it, `Referer`)
/// names the host the post was sent to.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let authority = |v: &HeaderValue| -> Option<String> {
        let v = v.to_str().ok()?;
        let (_, rest) = v.split_once("://")?;
        Some(rest.split(['/', '?', '#']).next()?.to_owned())
    };
    let from = match (headers.get(header::ORIGIN), headers.get(header::REFERER)) {
        (Some(o), _) => authority(o),
        (None, Some(r)) => authority(r),
        (None, None) => None,
    };
    from.is_some_and(|f| f.eq_ignore_ascii_case(host))
}

/// Refuse a form post that is cross-origin or lacks a valid token (403, counted).
fn check_form(a: &Admin, client: IpAddr, headers: &HeaderMap, token: &str) -> Option<Response> {
    let w = words::negotiate(headers);
    let reason = if !same_origin(headers) {
        "cross_origin"
    } else if !csrf_ok(a, client, token) {
        "csrf"
    } else {
        return None;
    };
    a.pipeline
        .state()
        .metrics()
        .http_rejected
        .with_label_values(&[reason])
        .inc();
    Some(
        (
            StatusCode::FORBIDDEN,
            layout(
                w,
                w.expired_title,
                &format!("<h1>{}</h1><p>{}</p>", w.expired_title, w.expired_text),
            ),
        )
            .into_response(),
    )
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

fn layout(w: &Words, title: &str, body: &str) -> Html<String> {
    Html(format!(
        r#"<!DOCTYPE html>
<html lang="{lang}">
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
.class-list {{ font-size: 1.6rem; line-height: 1.6; }}
</style>
</head>
<body>
<main>
{body}
</main>
</body>
</html>"#,
        title = esc(title),
        lang = w.lang,
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

/// What the block page may show for a name and a browser.
enum View {
    /// Listed in an illegal category: the fixed page, nothing echoed.
    Illegal,
    /// An allow-only group and the name is not approved: the class-list sentence.
    ClassList,
    /// Blocked for this browser.
    Blocked(Blocked),
    /// Not blocked for this browser (or no name): a generic page.
    Generic,
}

/// Why a name is blocked for this browser, in the words the page uses.
struct Blocked {
    /// The group's name (for the school section, never shown as such).
    group: String,
    /// The category's config name (stored with a request, never shown).
    category: String,
    /// The kind of site in plain words.
    kind: String,
    /// When a schedule opens it, as a sentence.
    opens: Option<String>,
}

/// Whether `domain` or a parent is listed in an illegal category, for anyone.
fn illegal_listed(a: &Admin, domain: &str) -> bool {
    let snap = a.pipeline.state().load();
    let bundle = snap.policy.bundle();
    let key = crate::lists::key::reverse_key(domain);
    let m = bundle.verdicts(&bundle.lookup(&key)).masks;
    let hit = m.block | m.nodata;
    (0..bundle.categories().len() as u16).any(|c| hit & (1 << c) != 0 && snap.policy.is_illegal(c))
}

/// What the policy says about `domain` for this browser's address, in `w`'s words.
fn view(a: &Admin, client: SocketAddr, domain: Option<&str>, w: &Words) -> View {
    let Some(domain) = domain else {
        return View::Generic;
    };
    if illegal_listed(a, domain) {
        return View::Illegal;
    }
    let snap = a.pipeline.state().load();
    let Some(key) = ReversedName::from_labels(domain.split('.').map(str::as_bytes)) else {
        return View::Generic;
    };
    let who = identify(a, client);
    let now = a.now();
    let outcome = snap.policy.decide(&who.client, key.as_bytes(), now, None);
    match outcome.decision {
        Decision::Block { incident: true, .. } => return View::Illegal,
        Decision::Block {
            reason: BlockReason::NotApproved,
            ..
        } => return View::ClassList,
        Decision::Block { .. } => {}
        _ => return View::Generic,
    }
    let group = outcome
        .group
        .and_then(|g| snap.policy.groups().get(g as usize))
        .map_or_else(String::new, |g| g.name.clone());
    let (_, category, _, _) =
        crate::record::describe(&snap.policy, outcome.decision, key.as_bytes());
    let category = category.unwrap_or_default();
    let service = category
        .strip_prefix(crate::services::SERVICE_PREFIX)
        .and_then(|name| snap.policy.services().get(name))
        .map(|s| s.title.clone());
    let description = snap
        .config
        .categories
        .get(&category)
        .map(|c| c.description.as_str())
        .unwrap_or_default();
    let kind = w.kind(&category, service.as_deref(), description);
    let opens = outcome.group.and_then(|g| {
        let at = opens::next_open(&snap.policy, &who.client, key.as_bytes(), g, now)?;
        let local_now = now.to_zoned(at.time_zone().clone());
        Some(w.opens(&category, service.as_deref(), &at, &local_now))
    });
    View::Blocked(Blocked {
        group,
        category,
        kind,
        opens,
    })
}

/// The browser's address and its DHCP lease, as the DNS path identifies it (so a
/// nominated device matched by its leased MAC sees the page its queries got).
fn identify(a: &Admin, client: SocketAddr) -> crate::identify::Identified {
    let state = a.pipeline.state();
    let snap = state.load();
    let leases = state.leases().load();
    let sources = crate::identify::Sources {
        trust: &snap.config.identify,
        leases: &leases,
        identities: state.identities(),
        policy: &snap.policy,
    };
    crate::identify::client(client, None, Credential::None, &sources, a.now())
}

/// The device name the DHCP leases give the browser's own address and the user RADIUS
/// says is signed in on it: shown only to that browser (its user already knows both), and
/// put with a request it sends so staff reviewing the request know who asked.
fn own_device_name(a: &Admin, client: SocketAddr) -> Option<String> {
    let who = identify(a, client);
    match (who.device_name(), who.user.as_deref()) {
        (Some(d), Some(u)) => Some(format!("{d}, user {u}")),
        (Some(d), None) => Some(d.to_owned()),
        (None, Some(u)) => Some(format!("user {u}")),
        (None, None) => None,
    }
}

/// The fixed page for names in illegal categories: the same for every such name, with no
/// name, category or rule in it.
fn illegal_page(a: &Admin, client: SocketAddr, w: &Words) -> Response {
    a.pipeline.state().metrics().blockpage_illegal.inc();
    tracing::warn!(
        client = %client.ip().to_canonical(),
        "block page viewed for a name in an illegal category"
    );
    (
        StatusCode::FORBIDDEN,
        layout(
            w,
            w.illegal_title,
            &format!(
                "<h1>{}</h1><p>{}</p><p>{}</p>",
                w.illegal_title, w.illegal_text, w.worried
            ),
        ),
    )
        .into_response()
}

/// The page that shows nothing about any name.
fn generic_page(w: &Words) -> Response {
    layout(
        w,
        w.generic_title,
        &format!(
            "<h1>{}</h1><p>{}</p><h2>{}</h2><p><a href=\"/report\">{}</a></p>",
            w.generic_title, w.generic_text, w.something_wrong, w.report_link
        ),
    )
    .into_response()
}

/// The allow-only (Key Stage 1) page: one sentence a young child can read, no picture,
/// no form, nothing about the site.
fn class_list_page(w: &Words) -> Response {
    (
        StatusCode::FORBIDDEN,
        layout(
            w,
            w.class_list_title,
            &format!(
                "<h1>{}</h1><p class=\"class-list\">{}</p>",
                w.class_list_title, w.class_list_sentence
            ),
        ),
    )
        .into_response()
}

/// The school's name, who to ask and its own words: the group's `[[school]]` where it
/// has one, else `[block_page]`; "ask your teacher" when nobody is named. Also the zone
/// the page tells the time in.
fn school_section(
    config: &crate::config::Config,
    group: &str,
    w: &Words,
) -> (String, jiff::tz::TimeZone) {
    let page = config.block_page.as_ref();
    let fallback = |f: fn(&crate::config::BlockPageConfig) -> &String| {
        page.map(|p| f(p).clone()).unwrap_or_default()
    };
    let (name, contact, text, zone) = match config.schools.of_group(group) {
        Some(s) => (
            s.name.clone(),
            Some(s.contact.clone())
                .filter(|c| !c.is_empty())
                .unwrap_or_else(|| fallback(|p| &p.contact)),
            s.block_page_text
                .clone()
                .filter(|t| !t.is_empty())
                .unwrap_or_else(|| fallback(|p| &p.text)),
            s.timezone.clone(),
        ),
        None => (
            fallback(|p| &p.school_name),
            fallback(|p| &p.contact),
            fallback(|p| &p.text),
            config.server.timezone.clone(),
        ),
    };
    let mut html = String::new();
    if !name.is_empty() {
        html.push_str(&format!(
            "<h2>{}</h2><p class=\"school\"><strong>{}</strong></p>",
            w.your_school,
            esc(&name)
        ));
    }
    if !text.is_empty() {
        html.push_str(&format!("<p class=\"school-text\">{}</p>", esc(&text)));
    }
    let contact = match contact.is_empty() {
        true => w.ask_your_teacher.to_owned(),
        false => esc(&contact),
    };
    html.push_str(&format!(
        "<h2>{}</h2><p class=\"contact\">{contact}</p>",
        w.who_to_ask
    ));
    (html, zone)
}

async fn page(
    State(a): State<Admin>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Response {
    let w = words::negotiate(&headers);
    let domain = host(&headers);
    let b = match view(&a, client, domain.as_deref(), w) {
        View::Illegal => return illegal_page(&a, client, w),
        View::ClassList => return class_list_page(w),
        View::Generic => return generic_page(w),
        View::Blocked(b) => b,
    };
    let domain = domain.unwrap_or_default();
    let config = a.pipeline.state().load().config.clone();
    let (school, zone) = school_section(&config, &b.group, w);
    let time = w.date_time(&a.now().to_zoned(zone));
    let device = own_device_name(&a, client)
        .map(|n| format!("<dt>{}</dt><dd>{}</dd>", w.device, esc(&n)))
        .unwrap_or_default();
    let opens = b
        .opens
        .map(|s| {
            format!(
                "<h2>{}</h2><p class=\"note opens\">{}</p>",
                w.opens_heading,
                esc(&s)
            )
        })
        .unwrap_or_default();
    let reason = format!(
        "<p>{intro}</p><dl><dt>{site}</dt><dd>{d}</dd><dt>{kind_of}</dt><dd>{k}</dd>{device}<dt>{time_l}</dt><dd>{t}</dd></dl>{opens}",
        intro = w.blocked_intro.replace("{site}", &esc(&domain)),
        site = w.site,
        d = esc(&domain),
        kind_of = w.kind_of_site,
        k = esc(&b.kind),
        time_l = w.time,
        t = esc(&time)
    );
    let intro = match crate::alerts::notifies_requests(&config) {
        true => w.request_intro_notified,
        false => w.request_intro_quiet,
    };
    let body = format!(
        r#"<h1>{heading}</h1>
{reason}
{school}<h2 id="request-heading">{request_heading}</h2>
<p>{intro}</p>
<form method="post" action="/request" aria-labelledby="request-heading">
<input type="hidden" name="domain" value="{d}">
<input type="hidden" name="csrf" value="{token}">
<label for="requester">{your_name}</label>
<input id="requester" name="requester" required maxlength="100" autocomplete="name">
<label for="reason">{why}</label>
<textarea id="reason" name="reason" rows="3" required maxlength="1000"></textarea>
<label for="days">{how_long}</label>
<p id="days-hint" class="hint">{days_hint}</p>
<input id="days" name="days" type="number" inputmode="numeric" min="1" max="30" value="1" required aria-describedby="days-hint">
<button type="submit">{button}</button>
</form>
<h2>{wrong}</h2>
<p><a href="/report">{report}</a></p>"#,
        heading = w.blocked_title,
        request_heading = w.request_heading,
        your_name = w.your_name,
        why = w.why_need,
        how_long = w.how_long,
        days_hint = w.days_hint,
        button = w.request_button,
        wrong = w.something_wrong,
        report = w.report_link,
        d = esc(&domain),
        token = esc(&csrf_token(&a, client.ip())),
    );
    (StatusCode::FORBIDDEN, layout(w, w.blocked_title, &body)).into_response()
}

#[derive(Deserialize)]
struct RequestForm {
    domain: String,
    requester: String,
    reason: String,
    days: u32,
    #[serde(default)]
    csrf: String,
}

async fn submit_request(
    State(a): State<Admin>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<RequestForm>,
) -> Response {
    if let Some(refused) = check_form(&a, client.ip(), &headers, &f.csrf) {
        return refused;
    }
    let w = words::negotiate(&headers);
    // The category comes from the policy, not from the form.
    let domain = normalize_domain(&f.domain).ok();
    let category = match view(&a, client, domain.as_deref(), w) {
        View::Blocked(b) => Some(b.category).filter(|c| !c.is_empty()),
        View::ClassList => Some("not-approved".to_owned()),
        _ => None,
    };
    let body = NewRequestBody {
        domain: f.domain.clone(),
        reason: f.reason,
        requester: f.requester,
        days: f.days,
        groups: Vec::new(),
        category,
    };
    let actor = match own_device_name(&a, client) {
        Some(name) => format!("block page ({}, device {name})", client.ip().to_canonical()),
        None => format!("block page ({})", client.ip().to_canonical()),
    };
    let who = Submitter::Anonymous {
        actor,
        client: client.ip().to_canonical(),
    };
    let notified = crate::alerts::notifies_requests(&a.pipeline.state().load().config);
    match new_request(&a, &body, &who).await {
        Ok(id) => {
            let text = match notified {
                true => w.request_sent_notified,
                false => w.request_sent_quiet,
            };
            let text = text
                .replace("{id}", &id.to_string())
                .replace("{site}", &esc(domain.as_deref().unwrap_or_default()));
            layout(
                w,
                w.request_sent_title,
                &format!(
                    "<h1>{}</h1><p class=\"note\" role=\"status\">{text}</p>",
                    w.request_sent_title
                ),
            )
            .into_response()
        }
        Err(r) => {
            let status = r.status();
            let text = not_sent(w, status, w.request_not_sent_text);
            let title = w.request_not_sent_title;
            (
                status,
                layout(w, title, &format!("<h1>{title}</h1><p>{text}</p>")),
            )
                .into_response()
        }
    }
}

/// Why a form was not accepted, in words for a pupil.
fn not_sent(w: &Words, status: StatusCode, otherwise: &'static str) -> &'static str {
    match status {
        StatusCode::FORBIDDEN => w.not_school_network,
        StatusCode::TOO_MANY_REQUESTS => w.too_many,
        _ => otherwise,
    }
}

async fn report_form(
    State(a): State<Admin>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
) -> Html<String> {
    // Reached from a block page, the site is the one that was blocked: fill it in (only
    // then: the form must not echo names the page would not show).
    let w = words::negotiate(&headers);
    let domain = host(&headers);
    let site = match view(&a, client, domain.as_deref(), w) {
        View::Blocked(_) | View::ClassList => domain.map(|d| esc(&d)).unwrap_or_default(),
        _ => String::new(),
    };
    let token = esc(&csrf_token(&a, client.ip()));
    layout(
        w,
        w.report_title,
        &format!(
            r#"<h1 id="report-heading">{title}</h1>
<p>{intro}</p>
<form method="post" action="/report" aria-labelledby="report-heading">
<input type="hidden" name="csrf" value="{token}">
<label for="url">{address}</label>
<p id="url-hint" class="hint">{hint}</p>
<input id="url" name="url" value="{site}" required maxlength="2048" aria-describedby="url-hint">
<label for="reporter">{your_name}</label>
<input id="reporter" name="reporter" required maxlength="100" autocomplete="name">
<label for="comment">{what}</label>
<textarea id="comment" name="comment" rows="4" maxlength="1000"></textarea>
<button type="submit">{button}</button>
</form>"#,
            title = w.report_title,
            intro = w.report_intro,
            address = w.report_address,
            hint = w.report_address_hint,
            your_name = w.your_name,
            what = w.what_did_you_see,
            button = w.report_button,
        ),
    )
}

#[derive(Deserialize)]
struct ReportForm {
    url: String,
    reporter: String,
    #[serde(default)]
    comment: String,
    #[serde(default)]
    csrf: String,
}

async fn submit_report(
    State(a): State<Admin>,
    ConnectInfo(client): ConnectInfo<SocketAddr>,
    headers: HeaderMap,
    Form(f): Form<ReportForm>,
) -> Response {
    if let Some(refused) = check_form(&a, client.ip(), &headers, &f.csrf) {
        return refused;
    }
    let w = words::negotiate(&headers);
    let who = Submitter::Anonymous {
        actor: format!("block page ({})", client.ip().to_canonical()),
        client: client.ip().to_canonical(),
    };
    let body = NewReportBody {
        url: f.url,
        reporter: f.reporter,
        comment: f.comment,
    };
    match new_report(&a, &body, &who).await {
        Ok(id) => {
            let title = w.report_sent_title;
            let text = w.report_sent_text.replace("{id}", &id.to_string());
            layout(
                w,
                title,
                &format!("<h1>{title}</h1><p class=\"note\" role=\"status\">{text}</p>"),
            )
            .into_response()
        }
        Err(r) => {
            let status = r.status();
            let title = w.report_not_sent_title;
            let text = not_sent(w, status, w.report_not_sent_text);
            (
                status,
                layout(w, title, &format!("<h1>{title}</h1><p>{text}</p>")),
            )
                .into_response()
        }
    }
}
