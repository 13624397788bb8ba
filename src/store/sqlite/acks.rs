//! SQLite: incident acknowledgements, in their own table so the incidents table (and its
//! row type) stays as the recorder writes it.

use rusqlite::{Connection, OptionalExtension, params};

use crate::store::safeguarding::IncidentAck;
use crate::store::{StoreError, from_micros, micros};

/// The table; created on open.
pub const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS incident_acks (
    incident_id INTEGER PRIMARY KEY,
    by_name TEXT NOT NULL,
    note TEXT NOT NULL,
    at_us INTEGER NOT NULL
);
";

fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: "<database>".into(),
        source: e,
    }
}

/// Acknowledge incident `id`; `Invalid` if there is no such incident or it already was.
pub fn ack_incident(
    conn: &Connection,
    id: i64,
    by: &str,
    note: &str,
    at: jiff::Timestamp,
) -> Result<(), StoreError> {
    let exists = conn
        .query_row("SELECT 1 FROM incidents WHERE id = ?1", params![id], |_| {
            Ok(())
        })
        .optional()
        .map_err(sql_err)?
        .is_some();
    if !exists {
        return Err(StoreError::Invalid(format!("no incident {id}")));
    }
    let n = conn
        .execute(
            "INSERT INTO incident_acks (incident_id, by_name, note, at_us) VALUES (?1, ?2, ?3, ?4) ON CONFLICT (incident_id) DO NOTHING",
            params![id, by, note, micros(at)],
        )
        .map_err(sql_err)?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "incident {id} was already acknowledged"
        )));
    }
    Ok(())
}

/// The acknowledgements of the incidents in `ids` (at most a page of them).
pub fn incident_acks(conn: &Connection, ids: &[i64]) -> Result<Vec<IncidentAck>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT incident_id, by_name, note, at_us FROM incident_acks WHERE incident_id = ?1",
        )
        .map_err(sql_err)?;
    let mut out = Vec::new();
    for id in ids {
        let row = stmt
            .query_row(params![id], |r| {
                Ok(IncidentAck {
                    incident_id: r.get(0)?,
                    by: r.get(1)?,
                    note: r.get(2)?,
                    at: from_micros(r.get(3)?).to_string(),
                })
            })
            .optional()
            .map_err(sql_err)?;
        out.extend(row);
    }
    Ok(out)
}
