//! `/api/v1/runbooks` and `/api/v1/runbook-runs`.

use std::collections::BTreeMap;

use backstop_core::Millis;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// One runbook the daemon can run, as it reads it now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunbookInfo {
    pub name: String,
    pub version: u32,
    pub description: String,
    /// The least role that may run it (in the run's environment).
    pub role: String,
    /// sha256 of the file's bytes.
    pub digest: String,
    pub inputs: Vec<RunbookInput>,
    pub steps: Vec<RunbookStepInfo>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunbookInput {
    pub name: String,
    pub description: String,
    pub default: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RunbookStepInfo {
    pub id: String,
    /// `manual`, `command` or `verify`.
    pub kind: String,
    pub title: String,
    /// The command template (`{input}` placeholders); none for a step a person does.
    pub run: Option<String>,
    pub timeout_ms: Millis,
}

/// `POST /api/v1/runbooks/{name}/runs`
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartRun {
    /// Input values by name; inputs left out take their defaults.
    #[serde(default)]
    pub inputs: BTreeMap<String, String>,
    /// The environment it acts on (the incident's when one is given).
    #[serde(default)]
    pub env: Option<String>,
    #[serde(default)]
    pub service: Option<String>,
    /// The incident the run is part of: its steps and deviations join the incident's timeline.
    #[serde(default)]
    pub incident: Option<String>,
}

/// `GET /api/v1/runbook-runs?all=`
#[derive(Debug, Default, Serialize, Deserialize)]
pub struct RunQuery {
    /// Include runs that are over (succeeded or aborted).
    #[serde(default)]
    pub all: bool,
}

/// `POST /api/v1/runbook-runs/{id}/steps/{step}/confirm`
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ConfirmStep {
    #[serde(default)]
    pub note: String,
}

/// `POST /api/v1/runbook-runs/{id}/steps/{step}/skip` and `/api/v1/runbook-runs/{id}/abort`.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    #[serde(default)]
    #[schema(min_length = 1, pattern = r"\S")]
    pub reason: String,
}

/// `POST /api/v1/runbook-runs/{id}/steps/{step}/alter`
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AlterStep {
    /// The command to run instead of the written one.
    #[serde(default)]
    pub command: String,
    #[serde(default)]
    pub reason: String,
}

/// `POST /api/v1/runbook-runs/{id}/ad-hoc`
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AdHocStep {
    #[serde(default)]
    pub title: String,
    /// A command the daemon runs next; without one, the action was done by hand.
    #[serde(default)]
    pub command: Option<String>,
    #[serde(default)]
    pub reason: String,
}
