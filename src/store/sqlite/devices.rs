//! SQLite: the SQL of enrolled devices, as functions on a connection.

use rusqlite::{Connection, OptionalExtension, Row, params};

use crate::identity::{EnrolledDevice, MAX_DEVICES, StoredEnrolment};
use crate::store::devices::{DeviceRow, ID_TRIES, NewDevice, new_id};
use crate::store::{StoreError, from_micros, micros};

/// `enrolled_devices`, created on open by [`super::connect`].
pub(super) const SCHEMA: &str = r#"
CREATE TABLE IF NOT EXISTS enrolled_devices (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    owner TEXT NOT NULL,
    grp TEXT NOT NULL,
    directory_id TEXT,
    created_us INTEGER NOT NULL,
    created_by TEXT NOT NULL,
    expires_us INTEGER,
    revoked_us INTEGER,
    revoked_by TEXT,
    revoked_reason TEXT
);
"#;

fn sql_err(e: rusqlite::Error) -> StoreError {
    StoreError::Sqlite {
        path: "<database>".into(),
        source: e,
    }
}

const COLUMNS: &str = "id, name, owner, grp, directory_id, created_us, created_by, expires_us, revoked_us, revoked_by, revoked_reason";

fn device_row(r: &Row<'_>, now: i64) -> rusqlite::Result<DeviceRow> {
    let expires_us: Option<i64> = r.get(7)?;
    let revoked_us: Option<i64> = r.get(8)?;
    let state = crate::store::row_state(revoked_us, expires_us, now);
    Ok(DeviceRow {
        id: r.get(0)?,
        state: state.to_owned(),
        name: r.get(1)?,
        owner: r.get(2)?,
        group: r.get(3)?,
        directory_id: r.get(4)?,
        created: from_micros(r.get(5)?).to_string(),
        created_by: r.get(6)?,
        expires: expires_us.map(|u| from_micros(u).to_string()),
        revoked: revoked_us.map(|u| from_micros(u).to_string()),
        revoked_by: r.get(9)?,
        revoked_reason: r.get(10)?,
    })
}

/// Enrol a device under a fresh ID; returns the ID. Refused when the table is full or
/// `taken` says an ID is in use elsewhere (a config `[[enrolled_device]]`).
pub fn enrol(
    conn: &mut Connection,
    d: &NewDevice<'_>,
    taken: &dyn Fn(&str) -> bool,
) -> Result<String, StoreError> {
    let tx = conn.transaction().map_err(sql_err)?;
    let (rows, live): (i64, i64) = tx
        .query_row(
            "SELECT COUNT(*), COUNT(*) FILTER (WHERE revoked_us IS NULL) FROM enrolled_devices",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .map_err(sql_err)?;
    crate::store::devices::check_room(rows, live)?;
    for _ in 0..ID_TRIES {
        let id = new_id();
        if taken(&id) {
            continue;
        }
        let inserted = tx
            .execute(
                "INSERT OR IGNORE INTO enrolled_devices (id, name, owner, grp, directory_id, created_us, created_by, expires_us) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8)",
                params![id, d.name, d.owner, d.group, d.directory_id, micros(d.created), d.created_by, d.expires.map(micros)],
            )
            .map_err(sql_err)?;
        if inserted == 1 {
            tx.commit().map_err(sql_err)?;
            return Ok(id);
        }
    }
    Err(StoreError::Invalid(
        "no unused device ID could be drawn".into(),
    ))
}

/// Every enrolment, newest first.
pub fn list(conn: &Connection, now: jiff::Timestamp) -> Result<Vec<DeviceRow>, StoreError> {
    let mut stmt = conn
        .prepare(&format!(
            "SELECT {COLUMNS} FROM enrolled_devices ORDER BY created_us DESC, id"
        ))
        .map_err(sql_err)?;
    let now_us = micros(now);
    let rows = stmt
        .query_map([], |r| device_row(r, now_us))
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}

/// One enrolment.
pub fn get(
    conn: &Connection,
    id: &str,
    now: jiff::Timestamp,
) -> Result<Option<DeviceRow>, StoreError> {
    conn.query_row(
        &format!("SELECT {COLUMNS} FROM enrolled_devices WHERE id = ?1"),
        params![id],
        |r| device_row(r, micros(now)),
    )
    .optional()
    .map_err(sql_err)
}

/// Revoke an enrolment; error if there is none or it was already revoked.
pub fn revoke(
    conn: &Connection,
    id: &str,
    by: &str,
    reason: &str,
    now: jiff::Timestamp,
) -> Result<(), StoreError> {
    let n = conn
        .execute(
            "UPDATE enrolled_devices SET revoked_us = ?1, revoked_by = ?2, revoked_reason = ?3 WHERE id = ?4 AND revoked_us IS NULL",
            params![micros(now), by, reason, id],
        )
        .map_err(sql_err)?;
    if n == 0 {
        return Err(StoreError::Invalid(format!(
            "device {id} is not enrolled or was already revoked"
        )));
    }
    Ok(())
}

/// The enrolments that are not revoked, for the live index (expired ones are included:
/// the index checks expiry at query time, so one expiring needs no rebuild).
pub fn live(conn: &Connection) -> Result<Vec<StoredEnrolment>, StoreError> {
    let mut stmt = conn
        .prepare(
            "SELECT id, name, owner, grp, expires_us, directory_id FROM enrolled_devices WHERE revoked_us IS NULL LIMIT ?1",
        )
        .map_err(sql_err)?;
    let rows = stmt
        .query_map(params![MAX_DEVICES as i64], |r| {
            let expires: Option<i64> = r.get(4)?;
            Ok(StoredEnrolment {
                device: EnrolledDevice {
                    id: r.get::<_, String>(0)?.into(),
                    name: r.get::<_, String>(1)?.into(),
                    owner: r.get::<_, String>(2)?.into(),
                    group: r.get::<_, String>(3)?.into(),
                    // The index counts in seconds; rounding down keeps the end exact
                    // to the second at worst early.
                    expires: expires.map(|us| us.div_euclid(1_000_000)),
                },
                directory_id: r.get::<_, Option<String>>(5)?.map(Into::into),
            })
        })
        .map_err(sql_err)?;
    rows.collect::<rusqlite::Result<_>>().map_err(sql_err)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::devices::is_id;

    fn t(s: &str) -> jiff::Timestamp {
        s.parse().unwrap()
    }

    fn db() -> (tempfile::TempDir, Connection) {
        let dir = tempfile::tempdir().unwrap();
        let conn = crate::store::sqlite::connect(&dir.path().join("d.db")).unwrap();
        (dir, conn)
    }

    fn new<'a>(name: &'a str, expires: Option<jiff::Timestamp>) -> NewDevice<'a> {
        NewDevice {
            name,
            owner: "school",
            group: "pupils",
            directory_id: None,
            created_by: "tech",
            created: t("2026-11-29T09:00:00Z"),
            expires,
        }
    }

    #[test]
    fn ids_are_dns_labels_of_120_random_bits_and_differ() {
        let ids: std::collections::HashSet<String> = (0..1000).map(|_| new_id()).collect();
        assert_eq!(ids.len(), 1000, "no two alike");
        for id in &ids {
            assert_eq!(id.len(), 24, "{id}");
            assert!(is_id(id), "{id}");
            let decoded = data_encoding::BASE32_NOPAD
                .decode(id.to_ascii_uppercase().as_bytes())
                .unwrap();
            assert_eq!(decoded.len() * 8, 120);
        }
        assert!(!is_id("ABCDEFGHIJKLMNOPQRSTUVWX"), "upper case");
        assert!(!is_id("abcdefghijklmnopqrstuvw1"), "1 is not base32");
        assert!(!is_id("abc"), "short");
        assert!(!is_id("../../etc/passwd/aaaaaaaa"));
    }

    #[test]
    fn enrol_list_revoke_and_live() {
        let (_d, mut c) = db();
        let a = enrol(&mut c, &new("ipad-1", None), &|_| false).unwrap();
        let b = enrol(
            &mut c,
            &new("ipad-2", Some(t("2026-11-30T09:00:00Z"))),
            &|_| false,
        )
        .unwrap();
        assert_ne!(a, b);
        let rows = list(&c, t("2026-12-01T00:00:00Z")).unwrap();
        let state = |id: &str| rows.iter().find(|r| r.id == id).unwrap().state.clone();
        assert_eq!(state(&a), "active");
        assert_eq!(state(&b), "expired");
        revoke(&c, &a, "tech", "lost", t("2026-11-29T10:00:00Z")).unwrap();
        let row = get(&c, &a, t("2026-11-29T11:00:00Z")).unwrap().unwrap();
        assert_eq!(row.state, "revoked");
        assert_eq!(row.revoked_by.as_deref(), Some("tech"));
        assert_eq!(row.revoked_reason.as_deref(), Some("lost"));
        assert!(revoke(&c, &a, "tech", "again", t("2026-11-29T12:00:00Z")).is_err());
        let live = live(&c).unwrap();
        assert_eq!(live.len(), 1);
        assert_eq!(&*live[0].device.id, b.as_str());
        assert_eq!(
            live[0].device.expires,
            Some(t("2026-11-30T09:00:00Z").as_second())
        );
    }

    #[test]
    fn an_id_in_use_elsewhere_is_never_handed_out() {
        let (_d, mut c) = db();
        // Every ID "taken": the store gives up rather than reuse one.
        assert!(enrol(&mut c, &new("x", None), &|_| true).is_err());
        assert!(list(&c, t("2026-11-29T09:00:00Z")).unwrap().is_empty());
    }
}
