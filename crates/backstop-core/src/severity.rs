//! Classifying a failed analysis as critical, major or minor from what users experienced and
//! the service's tier. The thresholds are absolute effects (not p-values): the judge already
//! decided *that* the canary is worse; severity says *how much* worse it is for users.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::tier::SeverityAction;

// Severity of a failed analysis, most severe first: critical (users are clearly hurt), major
// (a significant regression), minor (a small regression). Plain comments, not doc comments:
// the API's OpenAPI document describes the type as it always has.
#[derive(
    Debug,
    Clone,
    Copy,
    PartialEq,
    Eq,
    Serialize,
    Deserialize,
    utoipa::ToSchema,
    schemars::JsonSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Major,
    Minor,
}

impl Severity {
    /// Every severity, most severe first.
    pub const ALL: [Severity; 3] = [Severity::Critical, Severity::Major, Severity::Minor];

    /// The name used in the config and the API (`critical`, `major`, `minor`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
        }
    }
}

impl std::fmt::Display for Severity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What the canary did compared with the baseline over the analysis so far.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Impact {
    pub canary_requests: u64,
    pub canary_errors: u64,
    pub baseline_requests: u64,
    pub baseline_errors: u64,
    pub canary_p99_ms: Option<f64>,
    pub baseline_p99_ms: Option<f64>,
}

impl Impact {
    fn ratio(errors: u64, requests: u64) -> f64 {
        if requests == 0 {
            0.0
        } else {
            errors as f64 / requests as f64
        }
    }
    /// Extra errors per request the canary caused (percentage points / 100).
    pub fn excess_error_ratio(&self) -> f64 {
        Self::ratio(self.canary_errors, self.canary_requests)
            - Self::ratio(self.baseline_errors, self.baseline_requests)
    }
    pub fn p99_ratio(&self) -> Option<f64> {
        match (self.canary_p99_ms, self.baseline_p99_ms) {
            (Some(c), Some(b)) if b > 0.0 => Some(c / b),
            _ => None,
        }
    }
}

/// Critical: ≥ 5 points of extra errors or p99 ≥ 3× (for tier 0: ≥ 1 point or p99 ≥ 2×).
/// Major: ≥ 1 point or p99 ≥ 1.5× (tier 0: anything the judge failed).
/// Minor: a real but small regression.
pub fn classify(impact: &Impact, tier: u8) -> Severity {
    let excess = impact.excess_error_ratio();
    let p99 = impact.p99_ratio().unwrap_or(1.0);
    let (crit_err, crit_p99) = if tier == 0 { (0.01, 2.0) } else { (0.05, 3.0) };
    if excess >= crit_err || p99 >= crit_p99 {
        return Severity::Critical;
    }
    if tier == 0 || excess >= 0.01 || p99 >= 1.5 {
        return Severity::Major;
    }
    Severity::Minor
}

/// What follows a failing verdict.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Response {
    /// Fail the rollout now (`reason` carries the severity).
    RollBack { reason: String },
    /// Pause the rollout for a person; it rolls back at `deadline` unless acknowledged.
    Hold {
        reason: String,
        deadline: Option<Millis>,
    },
}

/// Runs the policy's `action` for rollout `rollout_id`, failed by the judge for `reason` at `now`.
pub fn respond(
    action: SeverityAction,
    severity: Severity,
    reason: &str,
    rollout_id: &str,
    now: Millis,
) -> Response {
    match action {
        SeverityAction::Rollback => Response::RollBack {
            reason: format!("{reason} (severity {})", severity.as_str()),
        },
        SeverityAction::RollbackUnlessAcknowledged(within) => {
            let deadline = now + within.as_millis() as Millis;
            Response::Hold {
                reason: format!(
                    "severity {}: rolls back at {} unless acknowledged (`backstop rollout acknowledge {rollout_id}`)",
                    severity.as_str(),
                    crate::format_ms(deadline),
                ),
                deadline: Some(deadline),
            }
        }
        SeverityAction::Notify => Response::Hold {
            reason: format!(
                "severity {}: held for a person to promote or abort (policy: notify)",
                severity.as_str()
            ),
            deadline: None,
        },
    }
}

/// Why a held rollout whose acknowledgement deadline passed is rolled back, once it is due:
/// `None` before the deadline, when there is none, or when a person acknowledged it.
pub fn escalation_due(
    deadline: Option<Millis>,
    acknowledged: bool,
    severity: Option<Severity>,
    now: Millis,
) -> Option<String> {
    let deadline = deadline.filter(|d| !acknowledged && now >= *d)?;
    Some(format!(
        "not acknowledged by {}: rolled back per the severity policy ({})",
        crate::format_ms(deadline),
        severity.map_or("unknown", |s| s.as_str())
    ))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    fn impact(ce: u64, cr: u64, be: u64, br: u64) -> Impact {
        Impact {
            canary_requests: cr,
            canary_errors: ce,
            baseline_requests: br,
            baseline_errors: be,
            ..Default::default()
        }
    }

    #[test]
    fn error_excess_sets_the_severity() {
        assert_eq!(classify(&impact(10, 100, 1, 1000), 1), Severity::Critical); // +9.9 points
        assert_eq!(classify(&impact(3, 100, 1, 1000), 1), Severity::Major); // +2.9 points
        assert_eq!(classify(&impact(5, 1000, 1, 1000), 1), Severity::Minor); // +0.4 points
    }

    #[test]
    fn tier_zero_is_stricter() {
        assert_eq!(classify(&impact(3, 100, 1, 1000), 0), Severity::Critical);
        assert_eq!(classify(&impact(5, 1000, 1, 1000), 0), Severity::Major);
    }

    #[test]
    fn latency_counts_too() {
        let mut i = impact(0, 100, 0, 100);
        i.canary_p99_ms = Some(400.0);
        i.baseline_p99_ms = Some(100.0);
        assert_eq!(classify(&i, 2), Severity::Critical);
        i.canary_p99_ms = Some(160.0);
        assert_eq!(classify(&i, 2), Severity::Major);
    }

    #[test]
    fn the_workflow_rolls_back_or_holds() {
        assert_eq!(
            respond(
                SeverityAction::Rollback,
                Severity::Critical,
                "worse",
                "r1",
                0
            ),
            Response::RollBack {
                reason: "worse (severity critical)".into()
            }
        );
        let Response::Hold { reason, deadline } = respond(
            SeverityAction::RollbackUnlessAcknowledged(Duration::from_secs(60)),
            Severity::Major,
            "worse",
            "r1",
            1_000,
        ) else {
            panic!("held")
        };
        assert_eq!(deadline, Some(61_000));
        assert!(reason.contains("1970-01-01T00:01:01.000Z") && reason.contains("acknowledge r1"));
        assert!(matches!(
            respond(SeverityAction::Notify, Severity::Minor, "worse", "r1", 0),
            Response::Hold { deadline: None, .. }
        ));
    }

    #[test]
    fn an_acknowledgement_deadline_rolls_back_when_due_and_not_acknowledged() {
        let sev = Some(Severity::Major);
        assert_eq!(escalation_due(Some(5_000), false, sev, 4_999), None);
        let due = escalation_due(Some(5_000), false, sev, 5_000).expect("due");
        assert!(due.contains("1970-01-01T00:00:05.000Z") && due.ends_with("(major)"));
        assert_eq!(escalation_due(Some(5_000), true, sev, 9_000), None);
        assert_eq!(escalation_due(None, false, sev, 9_000), None);
    }
}
