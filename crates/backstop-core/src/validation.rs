//! Post-recovery validation (practice 6.1): a recovery is *restored* when its steps have put
//! traffic back on the last known good, and *resolved* only when the service's post-recovery
//! suite passes. Until then, non-critical deployments into the environment stay frozen.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::named::string_enum;

string_enum! {
    pub enum ValidationStatus {
        /// The suite runs, attempt after attempt, until it passes or its time is up.
        Pending = "pending",
        /// Every check passed: the recovery is resolved.
        Passed = "passed",
        /// The suite kept failing for its whole window: restored, not resolved.
        Failed = "failed",
        /// The service declares no suite: resolved when restored, and said so.
        NotDeclared = "not-declared",
    }
}

/// One check of one attempt.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CheckResult {
    /// `journey`, `command`, `probe`, `kpi` or `heartbeat`.
    pub kind: String,
    pub name: String,
    pub passed: bool,
    /// What was seen: each request's status and latency, or the command's exit and output; the
    /// first failed assertion when it failed.
    pub detail: String,
    pub took_ms: Millis,
}

/// The validation of one recovery.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RecoveryValidation {
    #[schema(value_type = String)]
    pub status: ValidationStatus,
    /// When the recovery was restored (the suite's first attempt may start then).
    pub restored_at_ms: Millis,
    /// The suite must pass by then.
    pub deadline_ms: Millis,
    pub attempts: u32,
    pub finished_at_ms: Option<Millis>,
    /// The checks of the last attempt.
    pub checks: Vec<CheckResult>,
}

impl RecoveryValidation {
    /// The validation of a recovery restored at `now`: pending for at most `within_ms` with a
    /// suite, or resolved at once (not declared) without.
    #[must_use]
    pub fn begin(now: Millis, within_ms: Option<Millis>) -> RecoveryValidation {
        match within_ms {
            Some(within) => RecoveryValidation {
                status: ValidationStatus::Pending,
                restored_at_ms: now,
                deadline_ms: now + within,
                attempts: 0,
                finished_at_ms: None,
                checks: vec![],
            },
            None => RecoveryValidation {
                status: ValidationStatus::NotDeclared,
                restored_at_ms: now,
                deadline_ms: now,
                attempts: 0,
                finished_at_ms: Some(now),
                checks: vec![],
            },
        }
    }

    /// Records an attempt's checks at `now`: passed when all passed, failed when not and the
    /// deadline has passed, else still pending. Returns whether the status changed.
    pub fn attempted(&mut self, checks: Vec<CheckResult>, now: Millis) -> bool {
        if self.status != ValidationStatus::Pending {
            return false;
        }
        self.attempts += 1;
        let passed = checks.iter().all(|c| c.passed);
        self.checks = checks;
        if passed {
            self.status = ValidationStatus::Passed;
        } else if now >= self.deadline_ms {
            self.status = ValidationStatus::Failed;
        } else {
            return false;
        }
        self.finished_at_ms = Some(now);
        true
    }

    /// When the recovery was resolved, if it is.
    #[must_use]
    pub fn resolved_at_ms(&self) -> Option<Millis> {
        match self.status {
            ValidationStatus::Passed | ValidationStatus::NotDeclared => self.finished_at_ms,
            ValidationStatus::Pending | ValidationStatus::Failed => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(passed: bool) -> CheckResult {
        CheckResult {
            kind: "journey".into(),
            name: "buy".into(),
            passed,
            detail: String::new(),
            took_ms: 5,
        }
    }

    #[test]
    fn a_suite_resolves_when_every_check_passes_and_fails_only_after_its_window() {
        let mut v = RecoveryValidation::begin(1_000, Some(10_000));
        assert_eq!(v.status, ValidationStatus::Pending);
        assert!(!v.attempted(vec![check(true), check(false)], 2_000));
        assert_eq!((v.status, v.attempts), (ValidationStatus::Pending, 1));
        assert!(v.attempted(vec![check(true), check(true)], 3_000));
        assert_eq!(v.resolved_at_ms(), Some(3_000));
        assert!(!v.attempted(vec![check(false)], 4_000), "final");

        let mut late = RecoveryValidation::begin(1_000, Some(10_000));
        assert!(late.attempted(vec![check(false)], 11_000));
        assert_eq!(
            (late.status, late.resolved_at_ms()),
            (ValidationStatus::Failed, None)
        );

        let none = RecoveryValidation::begin(1_000, None);
        assert_eq!(
            (none.status, none.resolved_at_ms()),
            (ValidationStatus::NotDeclared, Some(1_000))
        );
    }
}
