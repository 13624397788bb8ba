//! Incidents and alerts: a blocked query whose category is in an alert theme (see
//! [`themes`]) becomes an incident record and, by the theme's delivery, an instant alert
//! (webhook JSON POST and/or email to the designated safeguarding lead, retried with
//! exponential backoff) or a line in the daily digest ([`digest`]). New unblock requests
//! and site reports can notify the technician/DSL too ([`Notice`]).
//!
//! One incident per (client, name, category) per `[alerts] incident_window_mins`: a device
//! retrying a blocked name counts hits on one incident, and only a new incident alerts.
//!
//! Nothing here is on the DNS path: the record stage hands hits over a bounded channel and
//! moves on. At most `[alerts] max_in_flight` alerts are being delivered or retried at
//! once; an incident beyond that is still recorded, its alert is not sent (status
//! `dropped`) and `chaperone_incident_alerts_dropped_total` counts it, so a flood cannot
//! grow tasks without bound. Incident records live in their own table, which query-log
//! retention never touches. An alert names one incident and one device: never another
//! pupil's data.

pub mod deliver;
pub mod digest;
pub mod email;
pub mod themes;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::mpsc;

use crate::config::{AlertsConfig, Config};
use crate::policy::clock::SharedClock;
use crate::state::State;
use crate::store::querylog::LogEvent;
use crate::store::{self, AlertStatus, Store, StoreError};
use deliver::{Channels, Job};
use themes::Delivery;

/// Hits and notices waiting for the alert task.
const QUEUE: usize = 4096;

/// The store, shared by the alert task's blocking calls.
pub(crate) type Db = Arc<Mutex<Box<dyn Store>>>;

/// What the record stage and the admin API hand to the alert task.
// Hits are nearly every message and notices rare: boxing the hit would allocate once more
// per hit to save space only in a bounded channel.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub enum AlertEvent {
    /// A blocked query in a theme whose delivery is not off.
    Hit {
        /// The query.
        event: LogEvent,
        /// Theme name.
        theme: String,
        /// The theme's delivery.
        delivery: Delivery,
    },
    /// A new unblock request or site report.
    Notice(Notice),
}

/// A new unblock request or site report, for the technician/DSL. Carries no free text
/// (reasons and comments can name pupils): the console shows those.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Notice {
    /// "unblock-request" or "site-report".
    pub kind: &'static str,
    /// Its id.
    pub id: i64,
    /// The domain asked for or reported.
    pub domain: String,
    /// Who submitted it (name given, or the device's address when anonymous).
    pub submitted_by: String,
    /// The category that blocked it, when known.
    pub category: Option<String>,
    /// When (RFC 3339).
    pub time: String,
}

/// The JSON body POSTed for an incident.
#[derive(Debug, Clone, serde::Serialize)]
pub struct IncidentAlert {
    /// Incident id (for the admin API: `GET /incidents/ID`).
    pub incident_id: i64,
    /// When the query was made (RFC 3339).
    pub time: String,
    /// The category hit.
    pub category: String,
    /// The alert theme ("self-harm", "illegal"...).
    pub theme: String,
    /// Hits counted on the incident so far (1 for a new incident).
    pub hits: i64,
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
    /// The incident in the console, when `[alerts] console_url` is set.
    pub link: Option<String>,
    /// "illegal-category-hit" for the illegal theme, else "theme-hit".
    pub kind: &'static str,
}

impl IncidentAlert {
    fn new(id: i64, e: &LogEvent, theme: &str, cfg: &AlertsConfig) -> Self {
        IncidentAlert {
            incident_id: id,
            time: store::from_micros(e.ts_us).to_string(),
            category: e.category.clone().unwrap_or_default(),
            theme: theme.to_owned(),
            hits: 1,
            name: e.name.clone(),
            rule: e.rule.clone(),
            client: e.client.clone(),
            group: e.group.clone(),
            device: e.device.clone(),
            mac: e.mac.clone(),
            hostname: e.hostname.clone(),
            user: e.user.clone(),
            link: incident_link(cfg, id),
            kind: if theme == themes::ILLEGAL {
                "illegal-category-hit"
            } else {
                "theme-hit"
            },
        }
    }
}

/// The console page of an incident.
pub fn incident_link(cfg: &AlertsConfig, id: i64) -> Option<String> {
    cfg.console_url
        .as_ref()
        .map(|u| format!("{u}incidents/{id}"))
}

/// Start the alert task (and the daily digest); returns the channel the record stage and
/// the admin API send to.
pub fn start(
    db: Box<dyn Store>,
    state: Arc<State>,
    clock: SharedClock,
) -> Result<mpsc::Sender<AlertEvent>, StoreError> {
    let conn: Db = Arc::new(Mutex::new(db));
    let (tx, mut rx) = mpsc::channel::<AlertEvent>(QUEUE);
    let channels = Channels::new(&state, clock.clone(), conn.clone())?;
    digest::spawn(conn.clone(), state.clone(), clock, channels.clone());
    tokio::spawn(async move {
        while let Some(event) = rx.recv().await {
            match event {
                AlertEvent::Hit {
                    event,
                    theme,
                    delivery,
                } => hit(&conn, &state, &channels, event, theme, delivery).await,
                AlertEvent::Notice(n) => notice(&state, &channels, n),
            }
        }
    });
    Ok(tx)
}

/// Run a store call on a blocking thread.
pub(crate) async fn with_db<T: Send + 'static>(
    conn: &Db,
    f: impl FnOnce(&mut dyn Store) -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    let c = conn.clone();
    tokio::task::spawn_blocking(move || f(c.lock().unwrap_or_else(|p| p.into_inner()).as_mut()))
        .await
        .map_err(|e| StoreError::Invalid(format!("incident task failed: {e}")))?
}

/// Record a hit; alert when it opened a new incident of an instant theme.
async fn hit(
    conn: &Db,
    state: &Arc<State>,
    channels: &Channels,
    event: LogEvent,
    theme: String,
    delivery: Delivery,
) {
    let window = state.load().config.themes.window;
    let window_us = i64::try_from(window.as_micros()).unwrap_or(i64::MAX);
    let (e, t) = (event.clone(), theme.clone());
    let recorded = match with_db(conn, move |c| c.record_incident(&e, &t, window_us)).await {
        Ok(r) => r,
        Err(err) => {
            tracing::error!(
                "cannot record incident ({}): {err}",
                event.category.as_deref().unwrap_or("?")
            );
            return;
        }
    };
    if !recorded.new {
        tracing::debug!(incident = recorded.id, hits = recorded.hits, "hit counted");
        return;
    }
    let id = recorded.id;
    tracing::warn!(
        incident = id,
        theme = theme.as_str(),
        category = event.category.as_deref().unwrap_or("?"),
        "safeguarding incident recorded"
    );
    let Some(cfg) = state.load().config.alerts.clone() else {
        return;
    };
    if !channels.any(&cfg) {
        return;
    }
    if delivery == Delivery::Digest {
        set_status(conn, id, "digest", 0, None).await;
        return;
    }
    let alert = IncidentAlert::new(id, &event, &theme, &cfg);
    let config = state.load().config.clone();
    let mail = cfg
        .email
        .as_ref()
        .map(|e| (e.to.clone(), email::incident(&config, &cfg, &alert)));
    let job = Job {
        json: serde_json::to_value(&alert).unwrap_or_default(),
        mail,
        incident: Some(id),
    };
    if !channels.spawn(cfg, job) {
        state.metrics().alerts_dropped.inc();
        tracing::error!(
            incident = id,
            "incident alert NOT sent: [alerts] max_in_flight alerts are already being delivered"
        );
        set_status(conn, id, "dropped", 0, None).await;
    }
}

/// Send a request notification on the configured channels.
fn notice(state: &Arc<State>, channels: &Channels, n: Notice) {
    let Some(cfg) = state.load().config.alerts.clone() else {
        return;
    };
    let config = state.load().config.clone();
    let mail = match (&cfg.email, cfg.notify_requests_email) {
        (Some(e), true) => Some((e.requests_to.clone(), email::notice(&config, &cfg, &n))),
        _ => None,
    };
    let job = Job {
        json: if cfg.notify_requests_webhook {
            serde_json::to_value(&n).unwrap_or_default()
        } else {
            serde_json::Value::Null
        },
        mail,
        incident: None,
    };
    if !channels.spawn(cfg, job) {
        tracing::error!(
            id = n.id,
            "request notification NOT sent: [alerts] max_in_flight alerts are already being delivered"
        );
    }
}

/// Store an incident's delivery status (errors logged: the incident itself is stored).
pub(crate) async fn set_status(
    conn: &Db,
    id: i64,
    status: &'static str,
    attempts: i64,
    delivered_us: Option<i64>,
) {
    let r = with_db(conn, move |c| {
        c.set_alert_status(
            id,
            &AlertStatus {
                status,
                attempts,
                error: None,
                delivered_us,
            },
        )
    })
    .await;
    if let Err(e) = r {
        tracing::error!(incident = id, "cannot store alert status: {e}");
    }
}

/// Whether a submitted unblock request or site report notifies someone (the technician
/// or the DSL, `[alerts] notify_requests`), so the request page may promise it.
pub fn notifies_requests(cfg: &Config) -> bool {
    cfg.alerts
        .as_ref()
        .is_some_and(|a| a.notify_requests_email || a.notify_requests_webhook)
}

/// First retry delay; doubles each attempt up to [`MAX_BACKOFF`].
pub(crate) const FIRST_BACKOFF: Duration = Duration::from_millis(250);
pub(crate) const MAX_BACKOFF: Duration = Duration::from_secs(300);
