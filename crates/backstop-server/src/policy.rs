//! Policies read from the config: what each severity does, and the global circuit breaker.

use backstop_config::{BreakerScope, Config, Service, SeverityAction};
use backstop_core::severity::Severity;

/// The configured workflow for `severity` (regulated environments always roll back).
pub fn action_for(svc: &Service, env: &str, severity: Severity) -> SeverityAction {
    if svc.environment(env).is_some_and(|e| e.regulated) {
        return SeverityAction::Rollback;
    }
    svc.severity_action(match severity {
        Severity::Critical => backstop_config::Severity::Critical,
        Severity::Major => backstop_config::Severity::Major,
        Severity::Minor => backstop_config::Severity::Minor,
    })
}

/// The global breaker: `trips_after` failed rollouts `within` a window in one scope.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BreakerPolicy {
    pub scope_all: bool,
    pub trips_after: u32,
    pub within: std::time::Duration,
}

pub fn breaker(config: &Config) -> BreakerPolicy {
    let b = config.breaker();
    BreakerPolicy {
        scope_all: b.scope == BreakerScope::All,
        trips_after: b.trips_after,
        within: b.within,
    }
}
