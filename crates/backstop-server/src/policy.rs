//! Policies read from the config: what each severity does, and the global circuit breaker.

use std::time::Duration;

use backstop_config::{Config, Service};
use backstop_core::severity::Severity;

/// What to do when the judge fails a rollout with a given severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Roll back now.
    Rollback,
    /// Hold the rollout and roll back at the deadline unless a person acknowledges it.
    RollbackUnlessAcknowledged(Duration),
    /// Hold the rollout and tell people; a person promotes or aborts.
    Notify,
}

/// The configured workflow for `severity` in `env`. Regulated environments always roll back.
pub fn action_for(svc: &Service, env: &str, severity: Severity) -> Action {
    if svc.environment(env).is_some_and(|e| e.regulated) {
        return Action::Rollback;
    }
    match (svc.tier, severity) {
        (0 | 1, _) | (2, Severity::Critical) => Action::Rollback,
        (2, Severity::Major) | (3, Severity::Critical) => {
            Action::RollbackUnlessAcknowledged(Duration::from_secs(300))
        }
        _ => Action::Notify,
    }
}

/// The global breaker: `trips_after` failed rollouts `within` a window in one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub scope_all: bool,
    pub trips_after: u32,
    pub within: Duration,
}

pub fn breaker(_config: &Config) -> BreakerPolicy {
    BreakerPolicy {
        scope_all: false,
        trips_after: 3,
        within: Duration::from_secs(30 * 60),
    }
}
