//! `[alerts]`: where incident alerts go (webhook, email), which categories make incidents
//! (themes) and how often (the incident window, the daily digest), and whether unblock
//! requests and site reports notify anyone.
//!
//! This module checks what can be checked from the file alone (names, times, addresses,
//! files); theme categories are checked against the compiled lists later, in
//! [`crate::alerts::themes::check`], because a bundle-only config does not name them.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use super::Problem;
use crate::alerts::themes::{Delivery, Theme, Themes};

/// `[alerts]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawAlerts {
    /// URL that receives a JSON POST for every instant incident (the DSL's endpoint).
    #[serde(default)]
    pub webhook: Option<String>,
    /// Extra header sent with each POST, e.g. "Authorization: Bearer ...". Optional.
    pub header: Option<String>,
    /// Give up retrying one alert after this many seconds. Default 3600.
    #[serde(default = "default_alert_retry")]
    pub give_up_after_secs: u64,
    /// Alerts being delivered or retried at once. Default 64.
    #[serde(default = "default_alert_max_in_flight")]
    pub max_in_flight: usize,
    /// One incident per (client, name, category) per this many minutes. Default 10.
    #[serde(default = "default_window")]
    pub incident_window_mins: u64,
    /// Local time (school time zone) of the daily digest, "HH:MM". Default "16:00".
    #[serde(default)]
    pub digest_at: Option<String>,
    /// The console's address, for links in alerts ("https://filter.school/console/").
    #[serde(default)]
    pub console_url: Option<String>,
    /// Channels told of each new unblock request and site report: "email", "webhook".
    #[serde(default)]
    pub notify_requests: Vec<String>,
    /// SMTP delivery.
    #[serde(default)]
    pub email: Option<RawEmail>,
    /// Themes by name.
    #[serde(default)]
    pub themes: BTreeMap<String, RawTheme>,
}

/// `[alerts.themes.NAME]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTheme {
    /// Categories (and `service:NAME` / `service-group:NAME`); built-in themes keep their
    /// defaults when this is left out.
    pub categories: Option<Vec<String>>,
    /// "instant", "digest" or "off"; built-in themes keep their default when left out.
    pub delivery: Option<String>,
}

/// `[alerts.email]` as written.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawEmail {
    /// SMTP server name or address.
    pub host: String,
    /// Port. Default 587 (submission with STARTTLS).
    #[serde(default = "default_smtp_port")]
    pub port: u16,
    /// "required" (default) or "none" (only to a loopback relay).
    #[serde(default = "default_starttls")]
    pub starttls: String,
    /// Sender address.
    pub from: String,
    /// Recipients of incident alerts and digests (the DSL).
    pub to: Vec<String>,
    /// Recipients of request notifications (default: `to`).
    #[serde(default)]
    pub requests_to: Option<Vec<String>>,
    /// SMTP user name (AUTH), with `password_file`.
    pub username: Option<String>,
    /// File holding the SMTP password (first line).
    pub password_file: Option<PathBuf>,
    /// PEM file of a private CA that signed the SMTP server's certificate.
    pub ca_file: Option<PathBuf>,
}

fn default_alert_max_in_flight() -> usize {
    64
}

fn default_alert_retry() -> u64 {
    3600
}

fn default_window() -> u64 {
    10
}

fn default_smtp_port() -> u16 {
    587
}

fn default_starttls() -> String {
    "required".to_owned()
}

/// `[alerts]`, resolved.
#[derive(Debug, Clone)]
pub struct AlertsConfig {
    /// Webhook URL (http or https), if any.
    pub webhook: Option<String>,
    /// Extra header (name, value).
    pub header: Option<(String, String)>,
    /// Retry budget per alert.
    pub give_up_after: Duration,
    /// Alerts delivered or retried at once.
    pub max_in_flight: usize,
    /// Minutes after local midnight of the daily digest.
    pub digest_at_min: u16,
    /// Console base URL (ends in '/'), for links.
    pub console_url: Option<String>,
    /// Request notifications by email.
    pub notify_requests_email: bool,
    /// Request notifications by webhook.
    pub notify_requests_webhook: bool,
    /// SMTP delivery.
    pub email: Option<EmailConfig>,
}

/// How the SMTP connection is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartTls {
    /// STARTTLS must succeed or nothing is sent.
    Required,
    /// Plain text: only to a relay on this machine.
    None,
}

/// `[alerts.email]`, resolved.
#[derive(Debug, Clone)]
pub struct EmailConfig {
    /// Server.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Protection.
    pub starttls: StartTls,
    /// Sender.
    pub from: String,
    /// Incident and digest recipients.
    pub to: Vec<String>,
    /// Request notification recipients.
    pub requests_to: Vec<String>,
    /// AUTH user and password (read at load).
    pub credentials: Option<(String, String)>,
    /// Extra trusted CA (PEM bytes, read at load).
    pub ca_pem: Option<Vec<u8>>,
}

/// Most recipients in one list: alerts go to the DSL and deputies, not a mailing list.
const MAX_RECIPIENTS: usize = 20;

/// Resolve `[alerts]` (if present) and the themes (always: built-in defaults apply with no
/// `[alerts]` section). `catalogue` expands `service-group:NAME`.
pub(super) fn alerts(
    raw: Option<RawAlerts>,
    base: &Path,
    categories: &BTreeMap<String, super::CategoryConfig>,
    services: &crate::services::ServicesConfig,
    problems: &mut Vec<Problem>,
) -> (Option<AlertsConfig>, Themes) {
    let Some(a) = raw else {
        return (
            None,
            themes(&BTreeMap::new(), 10, categories, services, problems),
        );
    };
    let mut add = |k: &str, m: String| problems.push(Problem::new(format!("alerts.{k}"), m));
    if let Some(w) = &a.webhook
        && !(w.starts_with("http://") || w.starts_with("https://"))
    {
        add("webhook", "must be an http:// or https:// URL".into());
    }
    let header = a.header.as_deref().and_then(|h| {
        let parsed = h
            .split_once(':')
            .map(|(n, v)| (n.trim().to_owned(), v.trim().to_owned()));
        if parsed.is_none() {
            add("header", "expected \"Name: value\"".into());
        }
        parsed
    });
    if a.incident_window_mins == 0 || a.incident_window_mins > 24 * 60 {
        add("incident_window_mins", "must be 1 to 1440 (minutes)".into());
    }
    let digest_at_min = match a.digest_at.as_deref().map(parse_hhmm) {
        None => 16 * 60,
        Some(Some(m)) => m,
        Some(None) => {
            add(
                "digest_at",
                "expected a local time \"HH:MM\", e.g. \"16:00\"".into(),
            );
            0
        }
    };
    let console_url = a.console_url.as_ref().map(|u| {
        if !(u.starts_with("http://") || u.starts_with("https://")) {
            add("console_url", "must be an http:// or https:// URL".into());
        }
        if u.ends_with('/') {
            u.clone()
        } else {
            format!("{u}/")
        }
    });
    let email = a.email.as_ref().map(|e| email(e, base, &mut add));
    let (mut by_email, mut by_webhook) = (false, false);
    for (i, n) in a.notify_requests.iter().enumerate() {
        let key = format!("notify_requests[{i}]");
        match n.as_str() {
            "email" if email.is_some() => by_email = true,
            "webhook" if a.webhook.is_some() => by_webhook = true,
            "email" => add(&key, "\"email\" needs an [alerts.email] section".into()),
            "webhook" => add(&key, "\"webhook\" needs [alerts] webhook".into()),
            other => add(
                &key,
                format!("unknown channel {other:?} (expected \"email\" or \"webhook\")"),
            ),
        }
    }
    let window = a.incident_window_mins.clamp(1, 24 * 60);
    let themes = themes(&a.themes, window, categories, services, problems);
    let cfg = AlertsConfig {
        webhook: a.webhook,
        header,
        give_up_after: Duration::from_secs(a.give_up_after_secs.max(1)),
        max_in_flight: a.max_in_flight.max(1),
        digest_at_min,
        console_url,
        notify_requests_email: by_email,
        notify_requests_webhook: by_webhook,
        email,
    };
    (Some(cfg), themes)
}

/// "HH:MM" → minutes after midnight.
fn parse_hhmm(s: &str) -> Option<u16> {
    let (h, m) = s.split_once(':')?;
    let (h, m): (u16, u16) = (h.parse().ok()?, m.parse().ok()?);
    (h < 24 && m < 60 && s.len() == 5).then_some(h * 60 + m)
}

fn email(e: &RawEmail, base: &Path, add: &mut impl FnMut(&str, String)) -> EmailConfig {
    let starttls = match e.starttls.as_str() {
        "required" => StartTls::Required,
        "none" => {
            let loopback = e.host == "localhost"
                || e.host
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback());
            if !loopback {
                add(
                    "email.starttls",
                    format!(
                        "\"none\" sends pupils' details in plain text: only allowed to a relay on this machine (localhost, 127.0.0.1, ::1), not {:?}",
                        e.host
                    ),
                );
            }
            StartTls::None
        }
        other => {
            add(
                "email.starttls",
                format!("expected \"required\" or \"none\", not {other:?}"),
            );
            StartTls::Required
        }
    };
    if e.host.trim().is_empty() {
        add("email.host", "must not be empty".into());
    }
    if e.port == 0 {
        add("email.port", "must not be 0".into());
    }
    check_address("email.from", &e.from, add);
    let mut list = |key: &str, v: &[String]| {
        if v.is_empty() || v.len() > MAX_RECIPIENTS {
            add(key, format!("needs 1 to {MAX_RECIPIENTS} addresses"));
        }
        for (i, a) in v.iter().enumerate() {
            check_address(&format!("{key}[{i}]"), a, add);
        }
    };
    list("email.to", &e.to);
    if let Some(r) = &e.requests_to {
        list("email.requests_to", r);
    }
    let credentials = match (&e.username, &e.password_file) {
        (Some(u), Some(p)) => read_secret(&base.join(p))
            .map_err(|m| add("email.password_file", m))
            .ok()
            .map(|pw| (u.clone(), pw)),
        (None, None) => None,
        (Some(_), None) => {
            add("email.password_file", "needed with email.username".into());
            None
        }
        (None, Some(_)) => {
            add("email.username", "needed with email.password_file".into());
            None
        }
    };
    let ca_pem = e.ca_file.as_ref().and_then(|p| {
        let path = base.join(p);
        match std::fs::read(&path) {
            Ok(b) if b.windows(27).any(|w| w == b"-----BEGIN CERTIFICATE-----") => Some(b),
            Ok(_) => {
                add(
                    "email.ca_file",
                    format!("{}: no PEM certificate in it", path.display()),
                );
                None
            }
            Err(err) => {
                add(
                    "email.ca_file",
                    format!("cannot read {}: {err}", path.display()),
                );
                None
            }
        }
    });
    EmailConfig {
        host: e.host.clone(),
        port: e.port,
        starttls,
        from: e.from.clone(),
        to: e.to.clone(),
        requests_to: e.requests_to.clone().unwrap_or_else(|| e.to.clone()),
        credentials,
        ca_pem,
    }
}

fn check_address(key: &str, a: &str, add: &mut impl FnMut(&str, String)) {
    if a.parse::<lettre::Address>().is_err() {
        add(key, format!("{a:?} is not an email address"));
    }
}

/// The first line of a secret file, bounded.
fn read_secret(path: &Path) -> Result<String, String> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
    let line = text.lines().next().unwrap_or("").trim().to_owned();
    if line.is_empty() || line.len() > 1024 {
        return Err(format!(
            "{}: expected the password on the first line",
            path.display()
        ));
    }
    Ok(line)
}

/// Built-in themes with configured ones laid over them.
fn themes(
    raw: &BTreeMap<String, RawTheme>,
    window_mins: u64,
    categories: &BTreeMap<String, super::CategoryConfig>,
    services: &crate::services::ServicesConfig,
    problems: &mut Vec<Problem>,
) -> Themes {
    let mut list: Vec<Theme> = crate::alerts::themes::builtin();
    for (name, t) in raw {
        let key = format!("alerts.themes.{name}");
        if !crate::alerts::themes::valid_name(name) {
            problems.push(Problem::new(
                &key,
                "theme names are 1-32 lowercase letters, digits and hyphens",
            ));
            continue;
        }
        let delivery = match t.delivery.as_deref().map(Delivery::parse) {
            None => None,
            Some(Some(d)) => Some(d),
            Some(None) => {
                problems.push(Problem::new(
                    format!("{key}.delivery"),
                    "expected \"instant\", \"digest\" or \"off\"",
                ));
                None
            }
        };
        let existing = list.iter().position(|b| b.name == *name);
        if existing.is_none() && t.categories.is_none() {
            problems.push(Problem::new(
                format!("{key}.categories"),
                "a theme of your own needs its categories",
            ));
        }
        let theme = match existing {
            Some(i) => &mut list[i],
            None => {
                list.push(Theme::new(name, Delivery::Instant));
                list.last_mut().expect("just pushed")
            }
        };
        if let Some(d) = delivery {
            theme.delivery = d;
        }
        if let Some(c) = &t.categories {
            theme.categories = c.clone();
            theme.configured = true;
        }
    }
    crate::alerts::themes::resolve(list, window_mins, categories, services, problems)
}
