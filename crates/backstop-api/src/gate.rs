//! `GET /api/v1/gate`: the promotion gate's report.

use backstop_core::Millis;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

/// What the gate is asked about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A dry run (`backstop gate`): would a rollout start now?
    #[default]
    Check,
    /// `POST /rollouts`.
    Start,
    /// A person promotes a running rollout.
    Promote,
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// Stable name, e.g. `lkg_backup`, `freeze`.
    pub name: String,
    pub ok: bool,
    /// Why it passed or what blocks it, in words.
    pub reason: String,
    /// Passed only because of `critical` or `override_freeze` (audited when acted on).
    #[serde(default)]
    pub overridden: bool,
    #[schema(value_type = Value)]
    pub details: Value,
}

impl Check {
    pub fn pass(name: &str, reason: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            reason: reason.into(),
            overridden: false,
            details: Value::Null,
        }
    }

    pub fn block(name: &str, reason: impl Into<String>) -> Check {
        Check {
            ok: false,
            ..Check::pass(name, reason)
        }
    }

    #[must_use]
    pub fn with(mut self, details: Value) -> Check {
        self.details = details;
        self
    }
}

/// The gate's answer: `go` only when every check passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GateReport {
    pub go: bool,
    pub service: String,
    pub env: String,
    pub release_id: String,
    pub action: Action,
    pub evaluated_at_ms: Millis,
    pub checks: Vec<Check>,
}

impl GateReport {
    /// The reasons of every failed check, `name: reason`.
    #[must_use]
    pub fn blocking(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.reason))
            .collect()
    }

    /// The checks that passed only by an override or a critical change.
    #[must_use]
    pub fn overridden(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.overridden).collect()
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct GateQuery {
    pub service: String,
    pub env: String,
    /// A version of the service, or a release id `service@version`.
    pub release: String,
    #[serde(default)]
    pub critical: bool,
    #[serde(default)]
    pub override_freeze: bool,
    pub reason: Option<String>,
}
