//! `/api/v1/flags` and the OpenFeature remote evaluation endpoints (`/ofrep/v1/...`).

use backstop_core::Millis;
use backstop_core::flag::{FlagChange, StageResult};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// A declared flag in one environment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FlagView {
    pub key: String,
    pub service: String,
    pub env: String,
    pub description: Option<String>,
    /// Units of one group share their bucket across flags.
    pub group: String,
    /// Share of units the flag is on for, `0..=100`.
    pub percentage: u8,
    /// Zero when never changed.
    pub updated_at_ms: Millis,
    pub updated_by: String,
    /// The latest staged re-enable (running or over).
    pub reenable: Option<ReenableView>,
    /// Changes of the percentage, oldest first.
    pub history: Vec<FlagChange>,
}

/// Where a staged re-enable stands.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ReenableView {
    /// `running`, `promoted`, `rolled_back`, `halted` or `aborted`.
    pub status: String,
    pub stages: Vec<u8>,
    /// The percentage of the current stage.
    pub current: u8,
    pub stage_started_at_ms: Millis,
    pub hold_ms: Millis,
    /// Requests of the on cohort seen in this stage, and how many the stage needs.
    pub stage_requests: u64,
    pub min_requests: u64,
    pub started_at_ms: Millis,
    pub started_by: String,
    pub ended_at_ms: Option<Millis>,
    /// Why it ended or halted.
    pub reason: Option<String>,
    /// What holds it at its stage now (a freeze, an incident, a recovery not resolved, no
    /// cohort counts).
    pub blocked: Option<String>,
    /// Intervals the judge has seen.
    pub intervals: usize,
    pub stages_done: Vec<StageResult>,
}

/// `POST /api/v1/flags/{key}/set`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetFlag {
    pub env: String,
    /// `0..=100`.
    pub percentage: u8,
    /// Why (audited).
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
}

/// `POST /api/v1/flags/{key}/reenable`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartReenable {
    pub env: String,
    /// Default: the flag's `stages` in the config.
    #[serde(default)]
    pub stages: Option<Vec<u8>>,
    /// Default: the flag's `hold`.
    #[serde(default)]
    pub hold_ms: Option<Millis>,
    /// Default: the flag's `min_requests`.
    #[serde(default)]
    pub min_requests: Option<u64>,
}

/// `POST /api/v1/flags/{key}/abort`.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AbortReenable {
    pub env: String,
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
}

/// An OpenFeature remote evaluation request: the evaluation context (`targetingKey` picks the
/// unit's bucket; `env` the environment when the token does not).
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct OfrepRequest {
    #[serde(default)]
    #[schema(value_type = Object)]
    pub context: serde_json::Map<String, serde_json::Value>,
}

/// A successful evaluation (OFREP `evaluationSuccess`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct OfrepSuccess {
    pub key: String,
    pub value: bool,
    /// `DISABLED` (0 %), `STATIC` (100 %) or `SPLIT`.
    pub reason: String,
    /// `on` or `off`.
    pub variant: String,
    #[schema(value_type = Value)]
    pub metadata: serde_json::Value,
}

/// A failed evaluation (OFREP `evaluationFailure`).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfrepFailure {
    pub key: String,
    /// `FLAG_NOT_FOUND`, `TARGETING_KEY_MISSING`, `INVALID_CONTEXT` or `PARSE_ERROR`.
    pub error_code: String,
    pub error_details: String,
}

/// A bulk evaluation that failed as a whole (OFREP `bulkEvaluationFailure`): no key.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct OfrepBulkFailure {
    /// `PARSE_ERROR` or `INVALID_CONTEXT`.
    pub error_code: String,
    pub error_details: String,
}
