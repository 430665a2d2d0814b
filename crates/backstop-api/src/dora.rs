//! `/api/v1/dora`, `/api/v1/scorecards` and `/api/v1/gaps`.

use serde::{Deserialize, Serialize};

/// `GET /api/v1/dora?service=&env=&window=`
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct DoraQuery {
    #[serde(default)]
    pub service: Option<String>,
    #[serde(default)]
    pub env: Option<String>,
    /// How far back, e.g. `30d` (default), `12w`, `24h`.
    #[serde(default)]
    pub window: Option<String>,
}

/// `GET /api/v1/gaps`: the coverage and automation gaps of one service.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Gaps {
    pub service: String,
    pub coverage: Vec<backstop_core::gaps::CoverageGap>,
    pub automation: Vec<backstop_core::gaps::AutomationGap>,
}

/// `POST /api/v1/recoveries/{id}/postmortem`: the post-mortem is written.
#[derive(Debug, Default, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PostmortemDone {
    /// Where the final document is.
    #[serde(default)]
    pub link: Option<String>,
}
