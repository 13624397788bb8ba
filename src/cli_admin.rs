//! `chaperone admin ...`: the technician's command line over the admin HTTP API, so every
//! change goes through the same checks and the same audit log as any other client.

mod render;

use clap::Subcommand;
use serde_json::{Value, json};

pub use render::render;

/// How answers are printed.
#[derive(Debug, Clone)]
pub struct Output {
    /// The API's JSON as it came (for scripts), instead of tables.
    pub json: bool,
    /// The school's time zone, for times shown to people.
    pub timezone: jiff::tz::TimeZone,
}

/// Admin API commands.
#[derive(Debug, Subcommand)]
pub enum AdminCommand {
    /// Reload config and lists.
    Reload {
        /// Accept lists that shrank by more than `lists.max_shrink`.
        #[arg(long)]
        force: bool,
    },
    /// Explain how a name is decided for a client.
    Explain {
        /// Client address.
        #[arg(long)]
        client: String,
        /// As the device enrolled with this ID (asking over DoT/DoH).
        #[arg(long)]
        device: Option<String>,
        /// As this user signed in on the address (RADIUS).
        #[arg(long)]
        user: Option<String>,
        /// Name.
        name: String,
    },
    /// List temporary unblocks in force (--all: also expired and revoked).
    Exceptions {
        /// Include expired and revoked ones.
        #[arg(long)]
        all: bool,
    },
    /// Grant a temporary unblock.
    Unblock {
        /// Domain (and its subdomains).
        domain: String,
        /// Why (required: it is audited).
        #[arg(long)]
        reason: String,
        /// Who asked for it.
        #[arg(long)]
        requested_by: String,
        /// Days it lasts.
        #[arg(long)]
        days: u32,
        /// Groups it applies to (repeat; default all).
        #[arg(long = "group")]
        groups: Vec<String>,
    },
    /// End a temporary unblock early.
    Revoke {
        /// Exception id.
        id: i64,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// List unblock requests (default: pending).
    Requests {
        /// pending, approved or declined.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Approve an unblock request (creates the exception).
    Approve {
        /// Request id.
        id: i64,
        /// Why.
        #[arg(long)]
        reason: String,
        /// Days, if not as requested.
        #[arg(long)]
        days: Option<u32>,
    },
    /// Decline an unblock request.
    Decline {
        /// Request id.
        id: i64,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// List site reports (default: pending).
    Reports {
        /// pending, approved or dismissed.
        #[arg(long, default_value = "pending")]
        status: String,
    },
    /// Approve a site report: add its domain to a local category list and reload.
    Block {
        /// Report id.
        id: i64,
        /// Local category with a list file.
        #[arg(long, default_value = "local")]
        category: String,
        /// Why.
        #[arg(long, default_value = "")]
        reason: String,
    },
    /// Incidents (safeguarding lead), newest first, one page at a time.
    Incidents {
        /// Rows per page (the API allows 1 to 1000; default 100).
        #[arg(long)]
        limit: Option<usize>,
        /// Only incidents with an id below this (the next page: the last id shown).
        #[arg(long)]
        before: Option<i64>,
    },
    /// Check the audit log's hash chain.
    VerifyAudit,
}

/// Run one command; prints the answer (a table, or the JSON with `--json`). Ok(false) on
/// an HTTP error status.
pub async fn run(
    base: &str,
    token: Option<&str>,
    cmd: AdminCommand,
    output: &Output,
) -> anyhow::Result<bool> {
    let http = reqwest::Client::new();
    let base = base.trim_end_matches('/');
    let (method, path, body): (&str, String, Option<Value>) = match cmd {
        AdminCommand::Reload { force } => ("POST", format!("/reload?force={force}"), None),
        AdminCommand::Explain {
            client,
            device,
            user,
            name,
        } => {
            let mut q = form_urlencoded::Serializer::new(String::new());
            q.append_pair("client", &client).append_pair("name", &name);
            if let Some(d) = &device {
                q.append_pair("device", d);
            }
            if let Some(u) = &user {
                q.append_pair("user", u);
            }
            ("GET", format!("/explain?{}", q.finish()), None)
        }
        AdminCommand::Exceptions { all } => ("GET", format!("/exceptions?all={all}"), None),
        AdminCommand::Unblock {
            domain,
            reason,
            requested_by,
            days,
            groups,
        } => (
            "POST",
            "/exceptions".into(),
            Some(
                json!({ "domain": domain, "reason": reason, "requested_by": requested_by, "days": days, "groups": groups }),
            ),
        ),
        AdminCommand::Revoke { id, reason } => (
            "POST",
            format!("/exceptions/{id}/revoke"),
            Some(json!({ "reason": reason })),
        ),
        AdminCommand::Requests { status } => ("GET", format!("/requests?status={status}"), None),
        AdminCommand::Approve { id, reason, days } => (
            "POST",
            format!("/requests/{id}/approve"),
            Some(json!({ "reason": reason, "days": days })),
        ),
        AdminCommand::Decline { id, reason } => (
            "POST",
            format!("/requests/{id}/decline"),
            Some(json!({ "reason": reason })),
        ),
        AdminCommand::Reports { status } => ("GET", format!("/reports?status={status}"), None),
        AdminCommand::Block {
            id,
            category,
            reason,
        } => (
            "POST",
            format!("/reports/{id}/approve"),
            Some(json!({ "category": category, "reason": reason })),
        ),
        AdminCommand::Incidents { limit, before } => {
            let mut query = Vec::new();
            if let Some(l) = limit {
                query.push(format!("limit={l}"));
            }
            if let Some(b) = before {
                query.push(format!("before={b}"));
            }
            let path = if query.is_empty() {
                "/incidents".to_owned()
            } else {
                format!("/incidents?{}", query.join("&"))
            };
            ("GET", path, None)
        }
        AdminCommand::VerifyAudit => ("GET", "/audit/verify".into(), None),
    };
    let url = format!("{base}{path}");
    let mut req = match method {
        "POST" => http.post(&url),
        _ => http.get(&url),
    };
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req
        .send()
        .await
        .map_err(|e| anyhow::anyhow!("{url}: {e}"))?;
    let status = resp.status();
    let text = resp.text().await.unwrap_or_default();
    match serde_json::from_str::<Value>(&text) {
        Ok(v) if output.json => println!("{}", serde_json::to_string_pretty(&v).unwrap_or(text)),
        Ok(v) => print!("{}", render(&v, &output.timezone, jiff::Timestamp::now())),
        Err(_) => println!("{text}"),
    }
    if !status.is_success() {
        eprintln!("HTTP {status}");
    }
    Ok(status.is_success())
}
