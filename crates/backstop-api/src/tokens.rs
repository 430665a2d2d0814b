//! `/api/v1/tokens`: people's API tokens.

use backstop_core::Millis;
use backstop_core::access::Role;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/tokens`
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateToken {
    /// Who will hold it (`alice`); the audit records actions as `token:NAME`.
    pub name: String,
    pub role: Role,
    /// Holds the role only in this environment (reads elsewhere); default: everywhere.
    #[serde(default)]
    pub env: Option<String>,
    /// Stops working after this long (`30d`, `12h`); default: until revoked.
    #[serde(default)]
    pub expires: Option<String>,
}

/// The answer to `POST /api/v1/tokens`: the only time the token itself is shown.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreatedToken {
    pub name: String,
    pub role: Role,
    pub env: Option<String>,
    /// Shown once; only its sha256 is kept.
    pub token: String,
    /// RFC 3339 (UTC), or `null` for a token that does not expire.
    pub expires_at: Option<String>,
    pub expires_at_ms: Option<Millis>,
}
