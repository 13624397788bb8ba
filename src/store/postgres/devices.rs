//! PostgreSQL: enrolled devices, with the bounds and ID rules of
//! [`crate::store::devices`].

use postgres::{Client, Row};

use super::pg;
use crate::identity::{EnrolledDevice, MAX_DEVICES, StoredEnrolment};
use crate::store::devices::{DeviceRow, NewDevice, new_id};
use crate::store::{StoreError, from_micros, micros};

/// Tries at drawing an unused ID (as SQLite's).
const ID_TRIES: usize = 8;
/// Serialises enrolments across instances, so the row bounds hold ("chaperone devices").
const ENROL_LOCK: i64 = 0x6368_6170_5f64_6576;

const COLUMNS: &str = "id, name, owner, grp, directory_id, created_us, created_by, expires_us, revoked_us, revoked_by, revoked_reason";

fn device_row(r: &Row, now: i64) -> DeviceRow {
    let expires_us: Option<i64> = r.get(7);
    let revoked_us: Option<i64> = r.get(8);
    let state = crate::store::row_state(revoked_us, expires_us, now);
    DeviceRow {
        id: r.get(0),
        state: state.to_owned(),
        name: r.get(1),
        owner: r.get(2),
        group: r.get(3),
        directory_id: r.get(4),
        created: from_micros(r.get(5)).to_string(),
        created_by: r.get(6),
        expires: expires_us.map(|u| from_micros(u).to_string()),
        revoked: revoked_us.map(|u| from_micros(u).to_string()),
        revoked_by: r.get(9),
        revoked_reason: r.get(10),
    }
}

pub(super) fn enrol(
    c: &mut Client,
    d: &NewDevice<'_>,
    taken: &dyn Fn(&str) -> bool,
) -> Result<String, StoreError> {
    let mut tx = c.transaction().map_err(pg)?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&ENROL_LOCK])
        .map_err(pg)?;
    let row = tx
        .query_one(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE revoked_us IS NULL) FROM enrolled_devices",
            &[],
        )
        .map_err(pg)?;
    let (rows, live): (i64, i64) = (row.get(0), row.get(1));
    crate::store::devices::check_room(rows, live)?;
    for _ in 0..ID_TRIES {
        let id = new_id();
        if taken(&id) {
            continue;
        }
        let inserted = tx
            .execute(
                "INSERT INTO enrolled_devices (id, name, owner, grp, directory_id, created_us, created_by, expires_us) VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO NOTHING",
                &[&id, &d.name, &d.owner, &d.group, &d.directory_id, &micros(d.created), &d.created_by, &d.expires.map(micros)],
            )
            .map_err(pg)?;
        if inserted == 1 {
            tx.commit().map_err(pg)?;
            return Ok(id);
        }
    }
    Err(StoreError::Invalid(
        "no unused device ID could be drawn".into(),
    ))
}

pub(super) fn list(c: &mut Client, now: jiff::Timestamp) -> Result<Vec<DeviceRow>, StoreError> {
    let now_us = micros(now);
    let rows = c
        .query(
            &format!("SELECT {COLUMNS} FROM enrolled_devices ORDER BY created_us DESC, id"),
            &[],
        )
        .map_err(pg)?;
    Ok(rows.iter().map(|r| device_row(r, now_us)).collect())
}

pub(super) fn get(
    c: &mut Client,
    id: &str,
    now: jiff::Timestamp,
) -> Result<Option<DeviceRow>, StoreError> {
    let row = c
        .query_opt(
            &format!("SELECT {COLUMNS} FROM enrolled_devices WHERE id = $1"),
            &[&id],
        )
        .map_err(pg)?;
    Ok(row.map(|r| device_row(&r, micros(now))))
}

pub(super) fn revoke(
    c: &mut Client,
    id: &str,
    by: &str,
    reason: &str,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    let n = c
        .execute(
            "UPDATE enrolled_devices SET revoked_us = $1, revoked_by = $2, revoked_reason = $3 WHERE id = $4 AND revoked_us IS NULL",
            &[&micros(now), &by, &reason, &id],
        )
        .map_err(pg)?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "device {id} is not enrolled or was already revoked"
        )));
    }
    Ok(())
}

pub(super) fn live(c: &mut Client) -> Result<Vec<StoredEnrolment>, StoreError> {
    let rows = c
        .query(
            "SELECT id, name, owner, grp, expires_us, directory_id FROM enrolled_devices WHERE revoked_us IS NULL LIMIT $1",
            &[&(MAX_DEVICES as i64)],
        )
        .map_err(pg)?;
    Ok(rows
        .iter()
        .map(|r| {
            let expires: Option<i64> = r.get(4);
            StoredEnrolment {
                device: EnrolledDevice {
                    id: r.get::<_, String>(0).into(),
                    name: r.get::<_, String>(1).into(),
                    owner: r.get::<_, String>(2).into(),
                    group: r.get::<_, String>(3).into(),
                    expires: expires.map(|us| us.div_euclid(1_000_000)),
                },
                directory_id: r.get::<_, Option<String>>(5).map(Into::into),
            }
        })
        .collect())
}
