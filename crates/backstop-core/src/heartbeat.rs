//! Heartbeats of batch jobs (practice 6.3): a job pings after each run; one that has not
//! pinged within its expected interval is late. After a recovery, a late heartbeat keeps the
//! recovery from being resolved: the job the bad release broke has not come back.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::named::string_enum;

/// The pings of one heartbeat, as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Beat {
    pub name: String,
    pub last_at_ms: Millis,
    /// Who pinged last (the token's name).
    pub last_by: String,
    pub count: i64,
}

string_enum! {
    pub enum BeatStatus {
        /// Pinged within its interval.
        Ok = "ok",
        /// Its last ping is older than its interval.
        Late = "late",
        /// Never pinged.
        Never = "never",
    }
}

/// Where a heartbeat stands at `now`, expected every `every_ms`.
#[must_use]
pub fn status(beat: Option<&Beat>, every_ms: Millis, now: Millis) -> BeatStatus {
    match beat {
        None => BeatStatus::Never,
        Some(b) if now - b.last_at_ms <= every_ms => BeatStatus::Ok,
        Some(_) => BeatStatus::Late,
    }
}

/// A heartbeat's name: what the URL and the config use.
///
/// # Errors
/// What is wrong with it.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!(
            "heartbeat name {name:?}: use 1 to 64 lowercase letters, digits, - and _"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_heartbeat_is_late_once_its_interval_passed_without_a_ping() {
        let beat = Beat {
            name: "export".into(),
            last_at_ms: 1_000,
            last_by: "token:cron".into(),
            count: 3,
        };
        assert_eq!(status(None, 60_000, 5_000), BeatStatus::Never);
        assert_eq!(status(Some(&beat), 60_000, 61_000), BeatStatus::Ok);
        assert_eq!(status(Some(&beat), 60_000, 61_001), BeatStatus::Late);
        assert!(check_name("nightly-export").is_ok());
        assert!(check_name("Nightly").is_err());
        assert!(check_name("").is_err());
    }
}
