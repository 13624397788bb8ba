//! `chaperone admin devices ...`: enrol, list, show and revoke devices, and print their
//! profiles, over the admin API's `/devices` routes.

use clap::Subcommand;
use serde_json::{Value, json};

/// Device enrolment commands.
#[derive(Debug, Subcommand)]
pub enum DevicesCommand {
    /// Enrol a device: prints its ID, DoH URL, DoT name and where its profiles are.
    Enrol {
        /// Device name, e.g. ks2-ipad-14.
        #[arg(long)]
        name: String,
        /// Who it belongs to.
        #[arg(long, default_value = "school")]
        owner: String,
        /// The policy group its queries are decided in.
        #[arg(long)]
        group: String,
        /// Days the enrolment lasts (default: until revoked).
        #[arg(long)]
        days: Option<u32>,
        /// Google Admin directory ID of a Chromebook (for ${DEVICE_DIRECTORY_ID}).
        #[arg(long)]
        directory_id: Option<String>,
    },
    /// List enrolled devices (active, expired and revoked).
    List,
    /// Show one device with its DoH URL and DoT name.
    Show {
        /// Device ID.
        id: String,
    },
    /// Revoke a device: its ID is refused from the next query on.
    Revoke {
        /// Device ID.
        id: String,
        /// Why (required: it is audited).
        #[arg(long)]
        reason: String,
    },
    /// Print a device's profile as it is, for redirecting to a file
    /// (e.g. `--kind apple > ipad.mobileconfig`).
    Profile {
        /// Device ID.
        id: String,
        /// apple, chromeos, android or windows.
        #[arg(long)]
        kind: String,
    },
}

/// A request: method, path, body, and whether the answer is printed raw (a profile).
pub type Request = (&'static str, String, Option<Value>, bool);

/// The request for a command. IDs are lower-case base32 and kinds are words, so both go
/// into the path as they are; anything else is refused by the server.
pub fn request(cmd: DevicesCommand) -> Request {
    let seg = |s: &str| s.replace(|c: char| !c.is_ascii_alphanumeric() && c != '-', "");
    match cmd {
        DevicesCommand::Enrol {
            name,
            owner,
            group,
            days,
            directory_id,
        } => (
            "POST",
            "/devices".into(),
            Some(
                json!({ "name": name, "owner": owner, "group": group, "days": days, "directory_id": directory_id }),
            ),
            false,
        ),
        DevicesCommand::List => ("GET", "/devices".into(), None, false),
        DevicesCommand::Show { id } => ("GET", format!("/devices/{}", seg(&id)), None, false),
        DevicesCommand::Revoke { id, reason } => (
            "POST",
            format!("/devices/{}/revoke", seg(&id)),
            Some(json!({ "reason": reason })),
            false,
        ),
        DevicesCommand::Profile { id, kind } => (
            "GET",
            format!("/devices/{}/profile?kind={}", seg(&id), seg(&kind)),
            None,
            true,
        ),
    }
}
