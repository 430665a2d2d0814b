//! `/api/v1/releases`.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRelease {
    pub service: String,
    pub version: String,
    /// Path of an executable file (hashed by content) …
    #[serde(default)]
    pub file: Option<String>,
    /// … or a command line (hashed as text). Exactly one of `file` and `command`.
    #[serde(default)]
    pub command: Option<String>,
    /// Environment added to the service's `run.env` for this release (stored and shown as
    /// given: put secrets in `secrets`).
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// Secret variables by reference, resolved by the daemon when an instance starts; the
    /// values are never stored or returned.
    #[serde(default)]
    pub secrets: BTreeMap<String, backstop_core::model::SecretSource>,
    /// The migration versions the release runs on: `MIN..MAX` or one version.
    #[serde(default)]
    pub schema: Option<String>,
}

/// `POST /api/v1/releases/{id}/readmit`: clear a release's bad mark after a false alarm.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadmitRelease {
    /// Why the rollback was a false alarm (kept in the audit and the verdict's label).
    pub reason: String,
}
