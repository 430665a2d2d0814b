//! `/api/v1/dora`.

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
