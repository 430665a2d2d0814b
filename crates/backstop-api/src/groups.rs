//! `/api/v1/groups` and `/api/v1/group-runs`: release groups, shipped and taken back together.

use backstop_core::group::{GroupRun, ReleaseGroup};
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// `POST /api/v1/groups`: a group of registered releases, in shipping order.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateGroup {
    /// Letters, digits, `.`, `_`, `-`; starts with a letter or digit.
    #[schema(pattern = r"^[A-Za-z0-9][A-Za-z0-9._-]*$")]
    pub name: String,
    /// At least two, each a different service; recovery goes the other way.
    pub members: Vec<GroupMemberRequest>,
}

/// One member: a registered release of a configured service.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct GroupMemberRequest {
    pub service: String,
    pub version: String,
}

/// `POST /api/v1/groups/{name}/runs`: ship the group in one environment.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StartGroupRun {
    pub env: String,
    #[serde(default)]
    pub reason: Option<String>,
}

/// `GET /api/v1/groups/{name}`: the group and its runs, newest last.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct GroupView {
    pub group: ReleaseGroup,
    pub runs: Vec<GroupRun>,
}
