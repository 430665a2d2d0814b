//! `/api/v1/freezes`.

use backstop_core::Millis;
use backstop_core::model::Freeze;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFreeze {
    /// Only this service (default: every service).
    #[serde(default)]
    pub service: Option<String>,
    /// Only this environment (default: every environment). Give `service`, `env` or both.
    #[serde(default)]
    pub env: Option<String>,
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
    /// Ends by itself after this long (`2h`); default: until ended.
    #[serde(default, rename = "for")]
    pub length: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndFreeze {
    #[serde(default)]
    pub reason: Option<String>,
}

/// A scheduled window from the config, with its current or next occurrence.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduledFreeze {
    pub service: String,
    /// `None`: the service's own window, in every environment.
    pub env: Option<String>,
    pub reason: String,
    pub window: String,
    pub in_effect: bool,
    /// Start of the occurrence in effect, else of the next one (`None`: a past one-off window).
    pub from_ms: Option<Millis>,
    /// End of the occurrence in effect.
    pub until_ms: Option<Millis>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FreezeList {
    pub manual: Vec<Freeze>,
    pub scheduled: Vec<ScheduledFreeze>,
}

#[derive(Debug, Default, Serialize, Deserialize)]
pub struct FreezeQuery {
    /// Include ended and expired manual freezes.
    #[serde(default)]
    pub all: bool,
}
