//! Enrolled devices: the devices a technician enrolled through the admin API, each with a
//! random ID it sends over DoT (first SNI label) or DoH (path), kept in the storage
//! database so they outlive restarts.
//!
//! This module owns the `enrolled_devices` table, the IDs and the bounds. It must not
//! touch the live index or the audit log: the admin API writes the audit record and
//! swaps the index ([`crate::identity::Identities::set_stored`]) after each change.
//!
//! Rows are never deleted: a revoked enrolment stays, with who revoked it, when and why,
//! and its ID (the table's primary key) can therefore never be handed out again.

use serde::Serialize;

use crate::identity::MAX_DEVICES;

/// Most rows the table may hold, revoked ones included (a school re-enrols and revokes
/// devices for years; this still bounds the table).
pub const MAX_ROWS: usize = 2 * MAX_DEVICES;

/// Random bytes in a device ID: 120 bits, which base32 encodes in exactly 24 characters
/// (no padding), well inside one 63-byte DNS label.
const ID_BYTES: usize = 15;

/// Tries at drawing an ID not used before (a clash of 120 random bits is not expected at
/// all; the loop only makes the "never reused" rule independent of luck).
pub(crate) const ID_TRIES: usize = 8;

/// Refuse an enrolment when `live` enrolments (not revoked) or `rows` in all already
/// reach the bounds; every backend counts both in the enrolment's transaction.
pub(crate) fn check_room(rows: i64, live: i64) -> Result<(), crate::store::StoreError> {
    if usize::try_from(live).unwrap_or(usize::MAX) >= MAX_DEVICES {
        return Err(crate::store::StoreError::Invalid(format!(
            "{live} devices are enrolled, the most allowed: revoke some first"
        )));
    }
    if usize::try_from(rows).unwrap_or(usize::MAX) >= MAX_ROWS {
        return Err(crate::store::StoreError::Invalid(format!(
            "the enrolment table holds {rows} rows (revoked ones included), the most allowed"
        )));
    }
    Ok(())
}

/// A new device ID: [`ID_BYTES`] random bytes as lower-case base32 (RFC 4648 alphabet,
/// `a-z2-7`, no padding), so it is a valid DNS label and safe in a URL path as it is.
pub fn new_id() -> String {
    let bytes: [u8; ID_BYTES] = rand::random();
    let mut id = data_encoding::BASE32_NOPAD.encode(&bytes);
    id.make_ascii_lowercase();
    id
}

/// Whether `id` has the shape of an ID [`new_id`] makes (checked before a lookup, so a
/// path segment never reaches SQL unchecked).
pub fn is_id(id: &str) -> bool {
    id.len() == ID_BYTES * 8 / 5
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || (b'2'..=b'7').contains(&b))
}

/// One enrolment as the admin API shows it.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct DeviceRow {
    /// The ID the device sends.
    pub id: String,
    /// "active", "expired" or "revoked" at the time of reading.
    pub state: String,
    /// Device name.
    pub name: String,
    /// Who it belongs to.
    pub owner: String,
    /// Policy group.
    pub group: String,
    /// Google Admin directory ID (Chromebooks), if given.
    pub directory_id: Option<String>,
    /// When enrolled (RFC 3339).
    pub created: String,
    /// The token name that enrolled it.
    pub created_by: String,
    /// When the enrolment ends (RFC 3339), if it does.
    pub expires: Option<String>,
    /// When it was revoked, if it was.
    pub revoked: Option<String>,
    /// Who revoked it.
    pub revoked_by: Option<String>,
    /// Why.
    pub revoked_reason: Option<String>,
}

/// Fields of a new enrolment (already checked by the caller).
#[derive(Debug, Clone)]
pub struct NewDevice<'a> {
    /// Device name.
    pub name: &'a str,
    /// Owner.
    pub owner: &'a str,
    /// A configured group.
    pub group: &'a str,
    /// Directory ID, if any.
    pub directory_id: Option<&'a str>,
    /// Token name of the technician.
    pub created_by: &'a str,
    /// Now.
    pub created: jiff::Timestamp,
    /// End, if any.
    pub expires: Option<jiff::Timestamp>,
}
