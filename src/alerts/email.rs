//! Email: the messages (one incident per mail; the digest lists incidents, each with its
//! own device; request notifications carry no free text) and sending them over SMTP with
//! `lettre`, STARTTLS required unless the relay is on this machine.
//!
//! Times are written in the school's time zone (the group's `[[school]]`, else `[server]
//! timezone`): the DSL reads "10:04", not UTC.

use std::time::Duration;

use lettre::message::Mailbox;
use lettre::message::header::ContentType;
use lettre::transport::smtp::authentication::Credentials;
use lettre::transport::smtp::client::{Certificate, Tls, TlsParameters};
use lettre::{Message, SmtpTransport, Transport};

use super::{IncidentAlert, Notice};
use crate::config::{AlertsConfig, Config, EmailConfig, StartTls};
use crate::store::safeguarding::IncidentRow;

/// Longest an SMTP conversation may take.
const SMTP_TIMEOUT: Duration = Duration::from_secs(20);

/// A plain-text message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Mail {
    /// Subject line.
    pub subject: String,
    /// Body.
    pub body: String,
}

/// Send `mail` to `to`. STARTTLS is required (the server must offer it and the
/// certificate must verify against the web PKI or `ca_file`) unless `starttls = "none"`,
/// which the config only allows towards a loopback relay.
pub fn send(cfg: &EmailConfig, to: &[String], mail: &Mail) -> Result<(), String> {
    let parse = |a: &str| a.parse::<Mailbox>().map_err(|e| format!("{a:?}: {e}"));
    let mut builder = Message::builder()
        .from(parse(&cfg.from)?)
        .subject(mail.subject.clone())
        .header(ContentType::TEXT_PLAIN);
    for a in to {
        builder = builder.to(parse(a)?);
    }
    let message = builder
        .body(mail.body.clone())
        .map_err(|e| format!("cannot build the message: {e}"))?;
    let tls = match cfg.starttls {
        StartTls::None => Tls::None,
        StartTls::Required => Tls::Required(tls_parameters(cfg)?),
    };
    let mut transport = SmtpTransport::builder_dangerous(cfg.host.as_str())
        .port(cfg.port)
        .tls(tls)
        .timeout(Some(SMTP_TIMEOUT));
    if let Some((user, password)) = &cfg.credentials {
        transport = transport.credentials(Credentials::new(user.clone(), password.clone()));
    }
    transport
        .build()
        .send(&message)
        .map(drop)
        .map_err(|e| format!("SMTP {}:{}: {e}", cfg.host, cfg.port))
}

fn tls_parameters(cfg: &EmailConfig) -> Result<TlsParameters, String> {
    let mut b = TlsParameters::builder(cfg.host.clone());
    if let Some(pem) = &cfg.ca_pem {
        let cert = Certificate::from_pem(pem).map_err(|e| format!("ca_file: {e}"))?;
        b = b.add_root_certificate(cert);
    }
    b.build_rustls().map_err(|e| format!("TLS: {e}"))
}

/// A time in the school's time zone, as people write it.
pub fn local_time(config: &Config, group: &str, rfc3339: &str) -> String {
    let tz = config
        .schools
        .of_group(group)
        .map_or_else(|| config.server.timezone.clone(), |s| s.timezone.clone());
    match rfc3339.parse::<jiff::Timestamp>() {
        Ok(t) => {
            let z = t.to_zoned(tz);
            format!(
                "{} ({})",
                z.strftime("%A %-d %B %Y, %H:%M:%S"),
                z.time_zone().iana_name().unwrap_or("local time")
            )
        }
        Err(_) => rfc3339.to_owned(),
    }
}

/// "hostname (device, 10.0.0.7, aa:bb:...)" from what is known of one device.
fn device_line(
    hostname: Option<&str>,
    device: Option<&str>,
    client: &str,
    mac: Option<&str>,
) -> String {
    let mut parts: Vec<&str> = [hostname, device]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect();
    if !client.is_empty() {
        parts.push(client);
    }
    if let Some(m) = mac {
        parts.push(m);
    }
    parts.dedup();
    parts.join(", ")
}

/// The email for one new incident of an instant theme.
pub fn incident(config: &Config, cfg: &AlertsConfig, a: &IncidentAlert) -> Mail {
    let mut body = format!(
        "Chaperone recorded a safeguarding incident (theme: {}).\n\n\
         Time:      {}\n\
         Device:    {}\n\
         User:      {}\n\
         Group:     {}\n\
         Category:  {}\n\
         Theme:     {}\n\
         Site:      {}\n\
         Incident:  #{}\n",
        a.theme,
        local_time(config, &a.group, &a.time),
        device_line(
            a.hostname.as_deref(),
            a.device.as_deref(),
            &a.client,
            a.mac.as_deref()
        ),
        a.user.as_deref().unwrap_or("not known"),
        a.group,
        a.category,
        a.theme,
        a.name,
        a.incident_id,
    );
    if let Some(link) = super::incident_link(cfg, a.incident_id) {
        body.push_str(&format!("Console:   {link}\n"));
    }
    body.push_str(
        "\nThe site was blocked. Repeated look-ups of the same site from this device are \
         counted on this incident rather than alerted again. Acknowledge it in the console.\n\
         This message is about this one incident and device only.\n",
    );
    Mail {
        subject: format!(
            "Chaperone safeguarding alert #{}: {} ({})",
            a.incident_id, a.theme, a.category
        ),
        body,
    }
}

/// The daily digest: the incidents of digest themes since the last one, each with its own
/// device and nothing else about anyone.
pub fn digest(
    config: &Config,
    cfg: &AlertsConfig,
    day: &str,
    rows: &[IncidentRow],
    more: usize,
) -> Mail {
    let mut body = format!(
        "Chaperone daily safeguarding digest for {day}: {} incident{} of digest themes.\n\n",
        rows.len() + more,
        if rows.len() + more == 1 { "" } else { "s" }
    );
    for r in rows {
        body.push_str(&format!(
            "#{} {}\n  Theme: {}  Category: {}  Site: {}  Hits: {}\n  Device: {}  User: {}  Group: {}\n",
            r.id,
            local_time(config, &r.group, &r.time),
            r.theme.as_deref().unwrap_or("?"),
            r.category,
            r.name,
            r.hits,
            device_line(r.hostname.as_deref(), r.device.as_deref(), &r.client, r.mac.as_deref()),
            r.user.as_deref().unwrap_or("not known"),
            r.group,
        ));
        if let Some(link) = super::incident_link(cfg, r.id) {
            body.push_str(&format!("  {link}\n"));
        }
        body.push('\n');
    }
    if more > 0 {
        body.push_str(&format!("... and {more} more: see the console.\n"));
    }
    Mail {
        subject: format!("Chaperone daily safeguarding digest, {day}"),
        body,
    }
}

/// The email for a new unblock request or site report.
pub fn notice(config: &Config, cfg: &AlertsConfig, n: &Notice) -> Mail {
    let what = if n.kind == "site-report" {
        "site report"
    } else {
        "unblock request"
    };
    let mut body = format!(
        "A new {what} is waiting for a decision.\n\n\
         Site:          {}\n\
         Submitted by:  {}\n\
         Category:      {}\n\
         Time:          {}\n",
        n.domain,
        n.submitted_by,
        n.category.as_deref().unwrap_or("-"),
        local_time(config, "", &n.time),
    );
    if let Some(u) = &cfg.console_url {
        body.push_str(&format!("Console:       {u}requests\n"));
    }
    body.push_str("\nThe reason or comment given is in the console.\n");
    Mail {
        subject: format!("Chaperone: new {what} #{} for {}", n.id, n.domain),
        body,
    }
}
