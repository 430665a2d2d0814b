//! `/api/v1/audit`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    pub ok: bool,
    pub records: usize,
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
    /// The head's signature: `valid` (checked with the audit key), `unchecked` (no key at
    /// hand: only the hashes were checked), `not_yet_signed` (a chain kept before keys
    /// existed; the daemon signs it at its next start), `checked` (with a break).
    pub signature: String,
    /// The sequence of the checkpoint the chain was checked against, if one was given.
    pub checkpoint: Option<i64>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct AuditQuery {
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

/// `POST /api/v1/audit/verify`
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct VerifyRequest {
    /// A checkpoint kept elsewhere (`backstop audit checkpoint`).
    #[serde(default)]
    pub checkpoint: Option<backstop_core::audit::Checkpoint>,
}
