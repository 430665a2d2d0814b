//! `/api/v1/ships`: one release taken through its service's environment waves.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/ships`: ship a registered release through the service's `waves`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartShip {
    pub service: String,
    pub version: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /api/v1/ships`: the ships still moving, or every one with `all`; of one service when
/// given.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShipQuery {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub all: bool,
}
