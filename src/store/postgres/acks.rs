//! PostgreSQL: incident acknowledgements, in their own table (migration
//! [`MIGRATION`]) so the incidents table stays as the recorder writes it.

use postgres::Client;

use super::pg;
use crate::store::safeguarding::IncidentAck;
use crate::store::{StoreError, from_micros, micros};

/// The migration that creates the table.
pub const MIGRATION: &str = "
CREATE TABLE incident_acks (
    incident_id BIGINT PRIMARY KEY REFERENCES incidents (id),
    by_name TEXT NOT NULL,
    note TEXT NOT NULL,
    at_us BIGINT NOT NULL
);
";

/// Acknowledge incident `id`; `Invalid` if there is no such incident or it already was.
pub(super) fn ack_incident(
    c: &mut Client,
    id: i64,
    by: &str,
    note: &str,
    at: jiff::Timestamp,
) -> Result<(), StoreError> {
    let exists = c
        .query_opt("SELECT 1 FROM incidents WHERE id = $1", &[&id])
        .map_err(pg)?
        .is_some();
    if !exists {
        return Err(StoreError::Invalid(format!("no incident {id}")));
    }
    let n = c
        .execute(
            "INSERT INTO incident_acks (incident_id, by_name, note, at_us) VALUES ($1, $2, $3, $4) ON CONFLICT (incident_id) DO NOTHING",
            &[&id, &by, &note, &micros(at)],
        )
        .map_err(pg)?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "incident {id} was already acknowledged"
        )));
    }
    Ok(())
}

/// The acknowledgements of the incidents in `ids`.
pub(super) fn incident_acks(c: &mut Client, ids: &[i64]) -> Result<Vec<IncidentAck>, StoreError> {
    let rows = c
        .query(
            "SELECT incident_id, by_name, note, at_us FROM incident_acks WHERE incident_id = ANY($1) ORDER BY incident_id DESC",
            &[&ids],
        )
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| IncidentAck {
            incident_id: r.get(0),
            by: r.get(1),
            note: r.get(2),
            at: from_micros(r.get(3)).to_string(),
        })
        .collect())
}
