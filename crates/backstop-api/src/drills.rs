//! `/api/v1/drills`.

use backstop_core::drill::DrillLoad;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/drills`
#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartDrill {
    pub service: String,
    /// A non-production (`kind: staging|development|test`), non-regulated environment.
    pub env: String,
}

/// `POST /api/v1/drills/{id}/finish`
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct FinishDrill {
    /// The load the caller drove during the drill (stored with the result).
    #[serde(default)]
    pub load: Option<DrillLoad>,
}
