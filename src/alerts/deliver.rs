//! Delivery of one alert on every configured channel (webhook, email), each retried with
//! exponential backoff until it succeeds or the retry budget runs out, with the outcome
//! stored on the incident. Bounded: at most `[alerts] max_in_flight` jobs at once.

use std::sync::Arc;
use std::time::Duration;

use prometheus::IntCounterVec;
use tokio::sync::Semaphore;

use super::email::Mail;
use super::{Db, FIRST_BACKOFF, MAX_BACKOFF, with_db};
use crate::config::AlertsConfig;
use crate::policy::clock::SharedClock;
use crate::state::State;
use crate::store::{self, AlertStatus, StoreError};

/// One alert to deliver.
#[derive(Debug, Clone)]
pub struct Job {
    /// Webhook body (Null: not for the webhook).
    pub json: serde_json::Value,
    /// Recipients and message, when it goes by email.
    pub mail: Option<(Vec<String>, Mail)>,
    /// The incident whose status records the delivery, if any.
    pub incident: Option<i64>,
}

/// What delivering needs, shared by the alert task and the digest.
#[derive(Clone)]
pub struct Channels {
    http: reqwest::Client,
    in_flight: Arc<Semaphore>,
    conn: Db,
    clock: SharedClock,
    /// chaperone_alert_emails_total{result="sent"|"failed"}
    emails: IntCounterVec,
}

impl Channels {
    /// The webhook client, the in-flight bound and the email metrics.
    pub fn new(state: &State, clock: SharedClock, conn: Db) -> Result<Self, StoreError> {
        let max = state
            .load()
            .config
            .alerts
            .as_ref()
            .map_or(64, |a| a.max_in_flight);
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| StoreError::Invalid(format!("cannot build the webhook client: {e}")))?;
        let emails = IntCounterVec::new(
            prometheus::Opts::new(
                "chaperone_alert_emails_total",
                "Alert, digest and request-notification emails, by result (sent, failed: one per attempt).",
            ),
            &["result"],
        )
        .map_err(|e| StoreError::Invalid(e.to_string()))?;
        if let Err(e) = state
            .metrics()
            .registry()
            .register(Box::new(emails.clone()))
        {
            tracing::warn!("email metrics not registered: {e}");
        }
        for r in ["sent", "failed"] {
            emails.with_label_values(&[r]);
        }
        Ok(Self {
            http,
            in_flight: Arc::new(Semaphore::new(max)),
            conn,
            clock,
            emails,
        })
    }

    /// Whether any channel is configured.
    pub fn any(&self, cfg: &AlertsConfig) -> bool {
        cfg.webhook.is_some() || cfg.email.is_some()
    }

    /// Start delivering `job`; false (nothing started) when `max_in_flight` jobs already
    /// are.
    pub fn spawn(&self, cfg: AlertsConfig, job: Job) -> bool {
        let Ok(permit) = self.in_flight.clone().try_acquire_owned() else {
            return false;
        };
        let me = self.clone();
        tokio::spawn(async move {
            me.deliver(&cfg, job).await;
            drop(permit);
        });
        true
    }

    /// Deliver on every channel the job is for, retrying the ones that failed.
    pub async fn deliver(&self, cfg: &AlertsConfig, job: Job) -> bool {
        let mut webhook = cfg.webhook.clone().filter(|_| !job.json.is_null());
        let mut mail = job.mail.clone().filter(|_| cfg.email.is_some());
        let started = tokio::time::Instant::now();
        let mut backoff = FIRST_BACKOFF;
        let mut attempts = 0i64;
        loop {
            if webhook.is_none() && mail.is_none() {
                return true;
            }
            attempts += 1;
            let mut errors = Vec::new();
            if let Some(url) = &webhook {
                match self.post(cfg, url, &job.json).await {
                    Ok(()) => webhook = None,
                    Err(e) => errors.push(format!("webhook: {e}")),
                }
            }
            if let Some((to, m)) = &mail {
                match self.send_mail(cfg, to, m).await {
                    Ok(()) => mail = None,
                    Err(e) => errors.push(format!("email: {e}")),
                }
            }
            let give_up = started.elapsed() + backoff > cfg.give_up_after;
            let error = (!errors.is_empty()).then(|| errors.join("; "));
            let status = match &error {
                None => "delivered",
                Some(_) if give_up => "failed",
                Some(_) => "retrying",
            };
            if let Some(id) = job.incident {
                self.store_status(id, status, attempts, error.clone()).await;
            }
            match error {
                None => return true,
                Some(e) if give_up => {
                    tracing::error!(
                        incident = job.incident,
                        attempts,
                        "alert NOT delivered, giving up: {e}"
                    );
                    return false;
                }
                Some(e) => tracing::warn!(
                    incident = job.incident,
                    attempts,
                    "alert failed, retrying in {} s: {e}",
                    backoff.as_secs_f64()
                ),
            }
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        }
    }

    /// Record a delivery attempt on an incident.
    pub async fn store_status(
        &self,
        id: i64,
        status: &'static str,
        attempts: i64,
        error: Option<String>,
    ) {
        let delivered = (status == "delivered").then(|| store::micros(self.clock.now()));
        let r = with_db(&self.conn, move |c| {
            c.set_alert_status(
                id,
                &AlertStatus {
                    status,
                    attempts,
                    error: error.as_deref(),
                    delivered_us: delivered,
                },
            )
        })
        .await;
        if let Err(e) = r {
            tracing::error!(incident = id, "cannot store alert status: {e}");
        }
    }

    /// One webhook POST.
    pub async fn post(
        &self,
        cfg: &AlertsConfig,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<(), String> {
        let mut req = self.http.post(url).json(body);
        if let Some((name, value)) = &cfg.header {
            req = req.header(name.as_str(), value.as_str());
        }
        match req.send().await {
            Ok(resp) if resp.status().is_success() => Ok(()),
            Ok(resp) => Err(format!("HTTP {}", resp.status())),
            Err(e) => Err(e.to_string()),
        }
    }

    /// One email, sent on a blocking thread (the SMTP client is synchronous), counted.
    pub async fn send_mail(
        &self,
        cfg: &AlertsConfig,
        to: &[String],
        mail: &Mail,
    ) -> Result<(), String> {
        let Some(email) = cfg.email.clone() else {
            return Err("no [alerts.email] section".to_owned());
        };
        let (to, mail) = (to.to_vec(), mail.clone());
        let r = tokio::task::spawn_blocking(move || super::email::send(&email, &to, &mail))
            .await
            .unwrap_or_else(|e| Err(format!("email task failed: {e}")));
        let result = if r.is_ok() { "sent" } else { "failed" };
        self.emails.with_label_values(&[result]).inc();
        r
    }
}
