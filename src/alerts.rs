//! Incidents: every hit on an illegal category becomes an incident record at once and,
//! when `[alerts] webhook` is set, a JSON POST to the designated safeguarding lead's
//! endpoint, retried with exponential backoff until delivered or the retry budget runs out.
//!
//! Nothing here is on the DNS path: the record stage hands incidents over a bounded
//! channel and moves on. At most `[alerts] max_in_flight` alerts are being delivered or
//! retried at once; an incident beyond that is still recorded, its alert is not sent
//! (status `dropped`) and `chaperone_incident_alerts_dropped_total` counts it, so a flood
//! of illegal-category hits cannot grow tasks without bound. Incident records live in their own table, which query-log
//! retention never touches.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::AlertsConfig;
use crate::policy::clock::SharedClock;
use crate::record::LogEvent;
use crate::state::State;
use crate::store::{self, AlertStatus, Store, StoreError};

/// First retry delay; doubles each attempt up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(250);
const MAX_BACKOFF: Duration = Duration::from_secs(300);
/// Incidents waiting to be recorded.
const QUEUE: usize = 4096;

/// The JSON body POSTed for an incident.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IncidentAlert {
    /// Incident id (for the admin API: `GET /incidents/ID`).
    pub incident_id: i64,
    /// When the query was made (RFC 3339).
    pub time: String,
    /// The illegal category hit.
    pub category: String,
    /// The name queried.
    pub name: String,
    /// The listed name that matched.
    pub rule: Option<String>,
    /// Client address (never pseudonymised: the DSL must be able to act).
    pub client: String,
    /// Policy group.
    pub group: String,
    /// Nominated device or MAC, when known.
    pub device: Option<String>,
    /// MAC address from a trusted relay or the device's DHCP lease, when known.
    pub mac: Option<String>,
    /// Device name (its enrolment's, or its DHCP lease's host name), when known.
    pub hostname: Option<String>,
    /// The individual (RADIUS user, ChromeOS user), when known. The device ID is not
    /// sent: it is the device's credential.
    pub user: Option<String>,
    /// Always "illegal-category-hit".
    pub kind: &'static str,
}

/// Start the incident task; returns the channel the record stage sends incidents to.
pub fn start(
    db: Box<dyn Store>,
    state: Arc<State>,
    clock: SharedClock,
) -> Result<mpsc::Sender<LogEvent>, StoreError> {
    let conn = Arc::new(Mutex::new(db));
    let (tx, mut rx) = mpsc::channel::<LogEvent>(QUEUE);
    let in_flight = Arc::new(tokio::sync::Semaphore::new(
        state
            .load()
            .config
            .alerts
            .as_ref()
            .map_or(64, |a| a.max_in_flight),
    ));
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| StoreError::Invalid(format!("cannot build the webhook client: {e}")))?;
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            let c = conn.clone();
            let e = event.clone();
            let id = match tokio::task::spawn_blocking(move || {
                c.lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert_incident(&e)
            })
            .await
            {
                Ok(Ok(id)) => id,
                Ok(Err(err)) => {
                    tracing::error!(
                        "cannot record incident ({}): {err}",
                        event.category.as_deref().unwrap_or("?")
                    );
                    continue;
                }
                Err(err) => {
                    tracing::error!("incident task failed: {err}");
                    continue;
                }
            };
            tracing::warn!(
                incident = id,
                category = event.category.as_deref().unwrap_or("?"),
                "illegal-category incident recorded"
            );
            if let Some(cfg) = state.load().config.alerts.clone() {
                let alert = IncidentAlert {
                    incident_id: id,
                    time: store::from_micros(event.ts_us).to_string(),
                    category: event.category.clone().unwrap_or_default(),
                    name: event.name.clone(),
                    rule: event.rule.clone(),
                    client: event.client.clone(),
                    group: event.group.clone(),
                    device: event.device.clone(),
                    mac: event.mac.clone(),
                    hostname: event.hostname.clone(),
                    user: event.user.clone(),
                    kind: "illegal-category-hit",
                };
                let Ok(permit) = in_flight.clone().try_acquire_owned() else {
                    state.metrics().alerts_dropped.inc();
                    tracing::error!(
                        incident = id,
                        "incident alert NOT sent: [alerts] max_in_flight alerts are already being delivered"
                    );
                    let c = conn.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        let dropped = AlertStatus {
                            status: "dropped",
                            attempts: 0,
                            error: None,
                            delivered_us: None,
                        };
                        c.lock()
                            .unwrap_or_else(|p| p.into_inner())
                            .set_alert_status(id, &dropped)
                    })
                    .await;
                    continue;
                };
                let (http, conn, clock) = (http.clone(), conn.clone(), clock.clone());
                tokio::spawn(async move {
                    deliver(http, cfg, alert, conn, clock).await;
                    drop(permit);
                });
            }
        }
    });
    Ok(tx)
}

/// POST the alert until it is accepted (2xx) or the retry budget is spent, recording each
/// attempt on the incident.
async fn deliver(
    http: reqwest::Client,
    cfg: AlertsConfig,
    alert: IncidentAlert,
    conn: Arc<Mutex<Box<dyn Store>>>,
    clock: SharedClock,
) {
    let started = tokio::time::Instant::now();
    let mut backoff = FIRST_BACKOFF;
    let mut attempts = 0i64;
    loop {
        attempts += 1;
        let mut req = http.post(&cfg.webhook).json(&alert);
        if let Some((name, value)) = &cfg.header {
            req = req.header(name.as_str(), value.as_str());
        }
        let result = match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("HTTP {}", resp.status())),
            Err(e) => Err(e.to_string()),
        };
        let give_up = started.elapsed() + backoff > cfg.give_up_after;
        let (status, error) = match &result {
            Ok(()) => ("delivered", None),
            Err(e) if give_up => ("failed", Some(e.clone())),
            Err(e) => ("retrying", Some(e.clone())),
        };
        let delivered = result.is_ok().then(|| store::micros(clock.now()));
        let c = conn.clone();
        let id = alert.incident_id;
        let _ = tokio::task::spawn_blocking(move || {
            let s = AlertStatus {
                status,
                attempts,
                error: error.as_deref(),
                delivered_us: delivered,
            };
            c.lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_alert_status(id, &s)
        })
        .await;
        match result {
            Ok(()) => return,
            Err(e) if give_up => {
                tracing::error!(
                    incident = id,
                    attempts,
                    "incident alert NOT delivered, giving up: {e}"
                );
                return;
            }
            Err(e) => tracing::warn!(
                incident = id,
                attempts,
                "incident alert failed, retrying in {} s: {e}",
                backoff.as_secs_f64()
            ),
        }
        tokio::time::sleep(backoff).await;
        backoff = (backoff * 2).min(MAX_BACKOFF);
    }
}

/// Whether a submitted unblock request notifies someone (the technician or the DSL), so the
/// request page may say so. No request notification channel exists yet, so nothing may
/// promise one.
pub fn notifies_requests(_cfg: &crate::config::Config) -> bool {
    false
}
