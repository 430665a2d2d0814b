//! The CLI's nouns and verbs over the daemon's API (and, for audit, over a state folder).

mod alerts;
mod approvals;
mod audit;
mod breakers;
mod calibrate;
mod cluster;
mod dora;
mod flags;
mod groups;
mod heartbeats;
mod incidents;
mod recoveries;
mod releases;
mod rollouts;
mod ships;
mod tokens;

pub use alerts::{AlertsCmd, alerts};
pub use approvals::{APPROVE_HELP, ApprovalsArgs, ApproveArgs, approvals, approve};
pub use audit::{AuditCmd, audit};
pub use breakers::{BreakerCmd, breaker};
pub use calibrate::{CalibrateArgs, calibrate};
pub use cluster::{ClusterCmd, cluster};
pub use dora::{DoraArgs, GapsArgs, ScorecardArgs, dora, gaps, scorecard};
pub use flags::{FLAG_HELP, FlagCmd, flag};
pub use heartbeats::{HeartbeatArgs, HeartbeatsArgs, heartbeat, heartbeats};
pub use incidents::{IncidentCmd, incident};
pub use recoveries::{RecoveryCmd, RollbackArgs, recovery, rollback};
pub use releases::{ReleaseCmd, release};
pub use rollouts::{RolloutCmd, rollout};
pub use tokens::{TokenCmd, token};
