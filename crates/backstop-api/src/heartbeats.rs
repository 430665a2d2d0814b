//! `/api/v1/heartbeats`.

use backstop_core::Millis;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A declared heartbeat and where it stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct HeartbeatView {
    pub name: String,
    pub service: String,
    /// The environment whose recoveries it gates (none: every environment of the service).
    pub env: Option<String>,
    pub every_ms: Millis,
    /// `ok`, `late` or `never`.
    pub status: String,
    pub last_at_ms: Option<Millis>,
    pub last_by: Option<String>,
    pub count: i64,
}
