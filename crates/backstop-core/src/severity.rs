//! Classifying a failed analysis as critical, major or minor from what users experienced and
//! the service's tier. The thresholds are absolute effects (not p-values): the judge already
//! decided *that* the canary is worse; severity says *how much* worse it is for users.

use serde::{Deserialize, Serialize};

use crate::Millis;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Severity {
    Critical,
    Major,
    Minor,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Critical => "critical",
            Severity::Major => "major",
            Severity::Minor => "minor",
        }
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

/// What a service's policy does with a failing verdict of some severity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workflow {
    /// Roll back at once.
    RollBack,
    /// Hold for a person; roll back after `within_ms` unless they acknowledge it.
    RollBackUnlessAcknowledged { within_ms: Millis },
    /// Hold for a person to promote or abort.
    Notify,
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

/// Runs `workflow` for rollout `rollout_id`, failed by the judge for `reason` at `now`.
pub fn respond(
    workflow: Workflow,
    severity: Severity,
    reason: &str,
    rollout_id: &str,
    now: Millis,
) -> Response {
    match workflow {
        Workflow::RollBack => Response::RollBack {
            reason: format!("{reason} (severity {})", severity.as_str()),
        },
        Workflow::RollBackUnlessAcknowledged { within_ms } => {
            let deadline = now + within_ms;
            Response::Hold {
                reason: format!(
                    "severity {}: rolls back at {} unless acknowledged (`backstop rollout acknowledge {rollout_id}`)",
                    severity.as_str(),
                    crate::format_ms(deadline),
                ),
                deadline: Some(deadline),
            }
        }
        Workflow::Notify => Response::Hold {
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

/// p99 in ms from a cumulative histogram (upper bound of the bucket holding the 99th percentile).
pub fn p99_from_buckets(buckets: &[(f64, u64)]) -> Option<f64> {
    let total = buckets.last()?.1;
    if total == 0 {
        return None;
    }
    let target = (total as f64 * 0.99).ceil() as u64;
    buckets
        .iter()
        .find(|(_, n)| *n >= target)
        .map(|(le, _)| *le)
}

#[cfg(test)]
mod tests {
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
            respond(Workflow::RollBack, Severity::Critical, "worse", "r1", 0),
            Response::RollBack {
                reason: "worse (severity critical)".into()
            }
        );
        let Response::Hold { reason, deadline } = respond(
            Workflow::RollBackUnlessAcknowledged { within_ms: 60_000 },
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
            respond(Workflow::Notify, Severity::Minor, "worse", "r1", 0),
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

    #[test]
    fn p99_is_read_from_cumulative_buckets() {
        let b = [(5.0, 10), (10.0, 90), (25.0, 99), (f64::INFINITY, 100)];
        assert_eq!(p99_from_buckets(&b), Some(25.0));
        assert_eq!(p99_from_buckets(&[(5.0, 0), (f64::INFINITY, 0)]), None);
    }
}
