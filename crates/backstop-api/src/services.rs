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
}
