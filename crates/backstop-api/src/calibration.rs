//! `/api/v1/rollouts/{id}/label` and `/api/v1/calibrate/{service}`.

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/rollouts/{id}/label`
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LabelRequest {
    /// `confirmed`, `false-alarm` (about a rollback) or `missed` (about a promotion).
    pub label: String,
    #[serde(default)]
    pub note: String,
}

/// `GET /api/v1/calibrate/{service}?env=`
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct CalibrateQuery {
    #[serde(default)]
    pub env: Option<String>,
}
