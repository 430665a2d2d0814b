//! `/api/v1/breakers`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerReset {
    /// `env:<name>` or `all`.
    pub scope: String,
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
}
