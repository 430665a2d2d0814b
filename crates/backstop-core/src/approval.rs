//! The two-person rule: what one person asked and another must approve before it runs (an
//! override in a regulated environment), or review after it ran (a break-glass rollback).

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::access::Role;
use crate::named::string_enum;

string_enum! {
    /// What is asked.
    pub enum ApprovalKind {
        /// A rollout start that passes the gate only by an override (`override_freeze`, or
        /// `critical` during a recovery) in a regulated environment.
        RolloutStart = "rollout.start",
        /// A promote that passes the gate only by such an override.
        RolloutPromote = "rollout.promote",
        /// A rollback started by someone without the role, to be reviewed afterwards.
        BreakGlassRollback = "break_glass.rollback",
    }
}

string_enum! {
    /// Where a request is.
    pub enum ApprovalStatus {
        /// Waiting for a second person.
        Pending = "pending",
        /// Approved and run (`result` says what it made).
        Approved = "approved",
        /// Approved, but running it failed (`result` says why); ask again.
        Failed = "failed",
        /// Nobody approved it in time.
        Expired = "expired",
        /// Ran already (break-glass); waiting for a second person's review.
        ToReview = "to_review",
        Reviewed = "reviewed",
    }
}

impl ApprovalKind {
    /// The role the approver (or reviewer) needs in the request's environment.
    #[must_use]
    pub fn approver_role(self) -> Role {
        match self {
            ApprovalKind::RolloutStart => Role::Deployer,
            ApprovalKind::RolloutPromote | ApprovalKind::BreakGlassRollback => Role::Releaser,
        }
    }
}

/// How long an approval request waits for a second person.
pub const APPROVAL_TTL_MS: Millis = 60 * 60 * 1000;

/// A request for a second person.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Approval {
    pub id: String,
    #[schema(value_type = String)]
    pub kind: ApprovalKind,
    pub service: String,
    pub env: String,
    /// What runs once approved (the API request, as it was made).
    #[schema(value_type = Value)]
    pub request: serde_json::Value,
    /// Who asked (`token:NAME`); never the one who approves.
    pub requester: String,
    pub reason: String,
    pub created_at_ms: Millis,
    /// A pending request expires then.
    pub expires_at_ms: Option<Millis>,
    #[schema(value_type = String)]
    pub status: ApprovalStatus,
    pub decided_by: Option<String>,
    pub decided_at_ms: Option<Millis>,
    pub note: Option<String>,
    /// What running it made (e.g. the rollout), or why it failed.
    #[schema(value_type = Value)]
    pub result: Option<serde_json::Value>,
}

impl Approval {
    /// The status as of `now`: a pending request past its time has expired.
    #[must_use]
    pub fn status_at(&self, now: Millis) -> ApprovalStatus {
        match (self.status, self.expires_at_ms) {
            (ApprovalStatus::Pending, Some(t)) if t <= now => ApprovalStatus::Expired,
            (s, _) => s,
        }
    }
}
