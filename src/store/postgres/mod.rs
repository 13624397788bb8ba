//! The PostgreSQL backend (issue 15): being written against this contract.

use super::audit::{self, AuditRecord, Head};
use super::devices::{DeviceRow, NewDevice};
use super::querylog::LogEvent;
use super::safeguarding::{
    ExceptionRow, IncidentRow, NewException, NewReport, NewRequest, ReportDecision, ReportRow,
    RequestDecision, RequestRow,
};
use super::{AlertStatus, Change, Store, StoreError};
use crate::config::storage::PostgresConfig;
use crate::identity::StoredEnrolment;

/// The PostgreSQL store.
pub struct Postgres {
    _cfg: PostgresConfig,
}

impl Postgres {
    /// Connect (and migrate the schema).
    pub fn connect(cfg: &PostgresConfig) -> Result<Self, StoreError> {
        Err(StoreError::Invalid(format!(
            "PostgreSQL storage ({}) is not available in this build yet",
            cfg.url
        )))
    }
}

#[allow(unused_variables)]
impl Store for Postgres {
    fn backend(&self) -> &'static str {
        "postgres"
    }
    fn secret(&mut self, name: &str) -> Result<Vec<u8>, StoreError> {
        todo!()
    }
    fn insert_queries(&mut self, batch: &[LogEvent]) -> Result<(), StoreError> {
        todo!()
    }
    fn trim_queries(&mut self, max_rows: u64) -> Result<u64, StoreError> {
        todo!()
    }
    fn expire_queries(&mut self, cutoff_us: i64) -> Result<u64, StoreError> {
        todo!()
    }
    fn insert_refused(&mut self, ts_us: i64, count: u64) -> Result<(), StoreError> {
        todo!()
    }
    fn insert_incident(&mut self, e: &LogEvent) -> Result<i64, StoreError> {
        todo!()
    }
    fn set_alert_status(&mut self, id: i64, s: &AlertStatus<'_>) -> Result<(), StoreError> {
        todo!()
    }
    fn list_incidents(
        &mut self,
        since: jiff::Timestamp,
        before: Option<i64>,
        limit: usize,
    ) -> Result<Vec<IncidentRow>, StoreError> {
        todo!()
    }
    fn create_exception(&mut self, e: &NewException<'_>) -> Result<i64, StoreError> {
        todo!()
    }
    fn list_exceptions(
        &mut self,
        now: jiff::Timestamp,
        active_only: bool,
    ) -> Result<Vec<ExceptionRow>, StoreError> {
        todo!()
    }
    fn get_exception(
        &mut self,
        id: i64,
        now: jiff::Timestamp,
    ) -> Result<Option<ExceptionRow>, StoreError> {
        todo!()
    }
    fn revoke_exception(
        &mut self,
        id: i64,
        by: &str,
        now: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        todo!()
    }
    fn create_request(&mut self, r: &NewRequest<'_>) -> Result<i64, StoreError> {
        todo!()
    }
    fn list_requests(&mut self, status: Option<&str>) -> Result<Vec<RequestRow>, StoreError> {
        todo!()
    }
    fn get_request(&mut self, id: i64) -> Result<Option<RequestRow>, StoreError> {
        todo!()
    }
    fn decide_request(&mut self, id: i64, d: &RequestDecision<'_>) -> Result<(), StoreError> {
        todo!()
    }
    fn approve_request(
        &mut self,
        id: i64,
        e: &NewException<'_>,
        d: &RequestDecision<'_>,
    ) -> Result<i64, StoreError> {
        todo!()
    }
    fn create_report(&mut self, r: &NewReport<'_>) -> Result<i64, StoreError> {
        todo!()
    }
    fn list_reports(&mut self, status: Option<&str>) -> Result<Vec<ReportRow>, StoreError> {
        todo!()
    }
    fn get_report(&mut self, id: i64) -> Result<Option<ReportRow>, StoreError> {
        todo!()
    }
    fn decide_report(&mut self, id: i64, d: &ReportDecision<'_>) -> Result<(), StoreError> {
        todo!()
    }
    fn enrol_device(
        &mut self,
        d: &NewDevice<'_>,
        taken: &dyn Fn(&str) -> bool,
    ) -> Result<String, StoreError> {
        todo!()
    }
    fn list_devices(&mut self, now: jiff::Timestamp) -> Result<Vec<DeviceRow>, StoreError> {
        todo!()
    }
    fn get_device(
        &mut self,
        id: &str,
        now: jiff::Timestamp,
    ) -> Result<Option<DeviceRow>, StoreError> {
        todo!()
    }
    fn revoke_device(
        &mut self,
        id: &str,
        by: &str,
        reason: &str,
        now: jiff::Timestamp,
    ) -> Result<(), StoreError> {
        todo!()
    }
    fn live_devices(&mut self) -> Result<Vec<StoredEnrolment>, StoreError> {
        todo!()
    }
    fn audit_append(
        &mut self,
        seal: &mut dyn FnMut(&Head) -> audit::Sealed,
    ) -> Result<audit::Appended, StoreError> {
        todo!()
    }
    fn audit_head(&mut self) -> Result<Head, StoreError> {
        todo!()
    }
    fn audit_list(
        &mut self,
        since: Option<jiff::Timestamp>,
        limit: usize,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        todo!()
    }
    fn audit_walk(
        &mut self,
        visit: &mut dyn FnMut(audit::Stored) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError> {
        todo!()
    }
    fn table(&mut self, sql: &str, since_us: i64) -> Result<Vec<Vec<String>>, StoreError> {
        todo!()
    }
    fn announce(&mut self, change: Change) -> Result<(), StoreError> {
        todo!()
    }
}
