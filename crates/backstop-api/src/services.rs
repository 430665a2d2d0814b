//! `GET /api/v1/services`.

use backstop_core::model::EnvironmentState;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct ServiceView {
    pub name: String,
    pub owner: String,
    pub tier: u8,
    pub environments: Vec<EnvironmentView>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct EnvironmentView {
    pub name: String,
    /// Where the built-in proxy listens for this environment's traffic.
    pub listen: String,
    pub state: Option<EnvironmentState>,
    pub active_rollout: Option<String>,
    /// What supervision last found of the stable instance.
    #[serde(default)]
    pub health: StableHealth,
}

/// What supervision last found of an environment's stable instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct StableHealth {
    /// `healthy`; `partial` (some of its `run.instances` unhealthy, being replaced);
    /// `unhealthy` (being restarted); `crash_loop` (restarted again and again: the environment
    /// is degraded); `unknown` (not checked yet, or no stable instance).
    pub status: String,
    /// Restarts since this daemon started.
    pub restarts: u64,
    /// Why it was last restarted or failed.
    pub last_problem: Option<String>,
    /// Each stable instance (`run.instances` of them), as supervision last found it.
    #[serde(default)]
    pub instances: Vec<InstanceHealth>,
}

/// One supervised instance of an environment's serving version.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct InstanceHealth {
    /// The instance's id (`…-r2`, `…-r3` for a version's further instances).
    pub id: String,
    pub healthy: bool,
    /// Restarts since this daemon started.
    pub restarts: u64,
    pub crash_loop: bool,
    /// Why it was last restarted or failed.
    pub last_problem: Option<String>,
}
