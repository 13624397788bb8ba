//! The daily digest: once a day at `[alerts] digest_at` (school time zone), one email
//! and/or webhook POST listing the incidents of digest themes waiting since the last
//! digest (alert status `digest`), then marked delivered.
//!
//! Runs on the pipeline clock (tests move it): a tick every second reads the clock, so
//! nothing here sleeps until a wall-clock time. State that must survive a restart lives
//! on the incidents (their status), so a restart after the digest time sends only what
//! is still waiting, and nothing when nothing is.

use std::sync::Arc;
use std::time::Duration;

use super::deliver::{Channels, Job};
use super::{Db, with_db};
use crate::policy::clock::SharedClock;
use crate::state::State;
use crate::store::safeguarding::IncidentRow;

/// How often the clock is read.
const TICK: Duration = Duration::from_secs(1);
/// Most incidents listed in one digest (the rest are counted).
pub const MAX_LISTED: usize = 500;
/// How far back waiting incidents are looked for.
const LOOK_BACK: jiff::SignedDuration = jiff::SignedDuration::from_hours(24 * 8);
/// Rows read per page.
const PAGE: usize = 500;
/// Wait before retrying a failed digest.
const RETRY: Duration = Duration::from_secs(300);

/// Start the digest task (it does nothing while `[alerts]` has no channel).
pub fn spawn(conn: Db, state: Arc<State>, clock: SharedClock, channels: Channels) {
    tokio::spawn(async move {
        let mut done: Option<jiff::civil::Date> = None;
        let mut retry_at: Option<tokio::time::Instant> = None;
        loop {
            tokio::time::sleep(TICK).await;
            let snap = state.snapshot();
            let Some(cfg) = snap.config.alerts.clone() else {
                continue;
            };
            let local = clock.now().to_zoned(snap.config.server.timezone.clone());
            let minute = u16::try_from(local.hour()).unwrap_or(0) * 60
                + u16::try_from(local.minute()).unwrap_or(0);
            let due = minute >= cfg.digest_at_min && done != Some(local.date());
            if !due || !channels.any(&cfg) || retry_at.is_some_and(|t| t.elapsed().is_zero()) {
                continue;
            }
            match run(&conn, &snap.config, &cfg, &channels, &local).await {
                Ok(()) => {
                    done = Some(local.date());
                    retry_at = None;
                }
                Err(e) => {
                    tracing::error!("daily digest NOT sent, retrying in 5 minutes: {e}");
                    retry_at = Some(tokio::time::Instant::now() + RETRY);
                }
            }
        }
    });
}

/// Send one digest of the waiting incidents (none waiting: nothing sent).
async fn run(
    conn: &Db,
    config: &crate::config::Config,
    cfg: &crate::config::AlertsConfig,
    channels: &Channels,
    local: &jiff::Zoned,
) -> Result<(), String> {
    let since = local.timestamp() - LOOK_BACK;
    let waiting = waiting(conn, since).await?;
    if waiting.is_empty() {
        return Ok(());
    }
    let more = waiting.len().saturating_sub(MAX_LISTED);
    let listed = &waiting[..waiting.len().min(MAX_LISTED)];
    let day = local.strftime("%A %-d %B %Y").to_string();
    let mail = cfg.email.as_ref().map(|e| {
        (
            e.to.clone(),
            super::email::digest(config, cfg, &day, listed, more),
        )
    });
    let json = serde_json::json!({
        "kind": "daily-digest",
        "day": local.date().to_string(),
        "incidents": listed,
        "more": more,
    });
    let job = Job {
        json,
        mail,
        incident: None,
    };
    if !channels.deliver(cfg, job).await {
        return Err("delivery failed (see the log above)".to_owned());
    }
    for r in listed {
        channels.store_status(r.id, "delivered", 1, None).await;
    }
    Ok(())
}

/// Incidents waiting for the digest, oldest first.
async fn waiting(conn: &Db, since: jiff::Timestamp) -> Result<Vec<IncidentRow>, String> {
    let mut out = Vec::new();
    let mut before = None;
    loop {
        let page = with_db(conn, move |c| c.list_incidents(since, before, PAGE))
            .await
            .map_err(|e| e.to_string())?;
        let full = page.len() == PAGE;
        before = page.last().map(|r| r.id);
        out.extend(page.into_iter().filter(|r| r.alert_status == "digest"));
        if !full || out.len() > MAX_LISTED * 4 {
            break;
        }
    }
    out.reverse();
    Ok(out)
}
