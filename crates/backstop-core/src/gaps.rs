//! What recoveries teach (practices 7.3 and 7.4):
//!
//! - a **coverage gap**: a recovery a person had to start, or one detected later than the
//!   objectives leave time for (the MTTR objective minus the rollback SLA). It names the signal
//!   that would have caught it, from the data: the first interval where the canary's error
//!   ratio or its p99 latency diverged from the baseline's;
//! - an **automation gap**: a manual runbook step people kept doing, or a deviation from a
//!   runbook, counted per service, each an action item.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::runbook_run::{RunbookRun, StepStatus};

/// The canary's error ratio must be this many times the baseline's to count as diverged…
const ERROR_FACTOR: f64 = 2.0;
/// … and its p99 latency this many times.
const LATENCY_FACTOR: f64 = 1.5;

/// A recovery that detection did not cover well enough.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct CoverageGap {
    pub recovery_id: String,
    pub rollout_id: Option<String>,
    /// Why it is a gap: started by a person, or detected late.
    pub why: String,
    /// The signal that diverged first in the recorded traffic, and when (seconds after the
    /// canary started); `None` when none did.
    pub first_signal: Option<String>,
    pub first_signal_at_s: Option<f64>,
    /// What to do.
    pub action: String,
}

/// A thing people did by hand, or differently from the runbook, more than once perhaps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AutomationGap {
    pub runbook: String,
    pub step: String,
    /// `manual` (a manual step done by hand) or `deviation` (skipped, altered, ad-hoc).
    pub kind: String,
    pub action: String,
    /// Runs in which it happened.
    pub count: u64,
}

/// The first signal that diverged between the arms, with its time (`t` of the interval).
#[must_use]
pub fn first_divergence(intervals: &[backstop_judge::Interval]) -> Option<(String, f64)> {
    for iv in intervals {
        let (b, c) = (&iv.baseline, &iv.canary);
        if c.requests > 0 && b.requests > 0 && c.errors > 0 {
            let (br, cr) = (
                b.errors as f64 / b.requests as f64,
                c.errors as f64 / c.requests as f64,
            );
            if cr > ERROR_FACTOR * br.max(0.001) {
                return Some((
                    format!(
                        "errors: canary {:.1} % vs baseline {:.1} %",
                        cr * 100.0,
                        br * 100.0
                    ),
                    iv.t,
                ));
            }
        }
        if let (Some(bh), Some(ch)) = (&b.latency_le_ms, &c.latency_le_ms) {
            let (bq, cq) = (
                backstop_judge::hist::quantile(0.99, bh),
                backstop_judge::hist::quantile(0.99, ch),
            );
            if let (Some(bq), Some(cq)) = (bq, cq)
                && bq.is_finite()
                && cq.is_finite()
                && cq > LATENCY_FACTOR * bq
            {
                return Some((
                    format!("latency: canary p99 {cq:.0} ms vs baseline {bq:.0} ms"),
                    iv.t,
                ));
            }
        }
    }
    None
}

/// The coverage gap of a recovery, if it is one.
#[must_use]
pub fn coverage_gap(
    recovery_id: &str,
    rollout_id: Option<&str>,
    automatic: bool,
    time_to_detect_ms: Option<Millis>,
    detect_budget_ms: Millis,
    intervals: &[backstop_judge::Interval],
) -> Option<CoverageGap> {
    let late = time_to_detect_ms.filter(|t| *t > detect_budget_ms);
    let why = if !automatic {
        "started by a person: no signal caught it".to_owned()
    } else if let Some(t) = late {
        format!(
            "detected after {} (the objectives leave {} for detection)",
            crate::postmortem::human(t),
            crate::postmortem::human(detect_budget_ms)
        )
    } else {
        return None;
    };
    let first = first_divergence(intervals);
    let action = match &first {
        Some((signal, t)) => format!(
            "the {} diverged {t:.0} s into the canary: judge it (signals, alpha) so it fails the rollout then",
            signal.split(':').next().unwrap_or("signal")
        ),
        None if intervals.is_empty() => {
            "no per-version traffic was recorded: give the environment a signal source".to_owned()
        }
        None => {
            "no judged signal diverged: add one that sees this failure (a KPI, a journey, a probe)"
                .to_owned()
        }
    };
    Some(CoverageGap {
        recovery_id: recovery_id.into(),
        rollout_id: rollout_id.map(str::to_owned),
        why,
        first_signal_at_s: first.as_ref().map(|(_, t)| *t),
        first_signal: first.map(|(s, _)| s),
        action,
    })
}

/// The automation gaps of `runs`: each manual step done and each deviation, counted over the
/// runs, most frequent first.
#[must_use]
pub fn automation_gaps(runs: &[RunbookRun]) -> Vec<AutomationGap> {
    let mut by: BTreeMap<(String, String, String), (String, u64)> = BTreeMap::new();
    for run in runs {
        let mut seen = std::collections::BTreeSet::new();
        for s in run
            .steps
            .iter()
            .filter(|s| s.command.is_none() && s.status == StepStatus::Done)
        {
            let key = (run.runbook.clone(), s.id.clone(), "manual".to_owned());
            if seen.insert(key.clone()) {
                by.entry(key)
                    .or_insert_with(|| (format!("automate: {}", s.title), 0))
                    .1 += 1;
            }
        }
        for d in &run.deviations {
            let key = (run.runbook.clone(), d.step.clone(), "deviation".to_owned());
            if seen.insert(key.clone()) {
                by.entry(key)
                    .or_insert_with(|| {
                        (
                            format!(
                                "update the runbook: {} step {} ({})",
                                d.kind, d.step, d.reason
                            ),
                            0,
                        )
                    })
                    .1 += 1;
            }
        }
    }
    let mut out: Vec<AutomationGap> = by
        .into_iter()
        .map(|((runbook, step, kind), (action, count))| AutomationGap {
            runbook,
            step,
            kind,
            action,
            count,
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(a.runbook.cmp(&b.runbook)));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_judge::{ArmCounts, Interval};

    fn iv(t: f64, b_err: u64, c_err: u64) -> Interval {
        Interval {
            t,
            baseline: ArmCounts {
                requests: 1000,
                errors: b_err,
                latency_le_ms: None,
            },
            canary: ArmCounts {
                requests: 100,
                errors: c_err,
                latency_le_ms: None,
            },
            log_lines: None,
        }
    }

    #[test]
    fn a_person_started_or_late_recovery_is_a_gap_naming_the_first_signal() {
        let ivs = vec![iv(5.0, 10, 1), iv(10.0, 10, 5)];
        assert_eq!(first_divergence(&ivs).map(|(_, t)| t), Some(10.0));
        let gap = coverage_gap("rec-1", Some("r1"), false, Some(5_000), 60_000, &ivs).unwrap();
        assert!(gap.why.contains("person"));
        assert!(
            gap.first_signal
                .as_deref()
                .unwrap()
                .starts_with("errors: canary 5.0 %")
        );
        assert!(
            gap.action.contains("errors diverged 10 s"),
            "{}",
            gap.action
        );
        assert!(coverage_gap("rec-2", None, true, Some(5_000), 60_000, &ivs).is_none());
        let late = coverage_gap("rec-3", None, true, Some(90_000), 60_000, &[]).unwrap();
        assert!(
            late.why.contains("detected after 1 min 30 s"),
            "{}",
            late.why
        );
        assert!(
            late.action.contains("no per-version traffic"),
            "{}",
            late.action
        );
    }

    #[test]
    fn manual_steps_and_deviations_become_counted_action_items() {
        use crate::runbook_run::RunStep;
        let run = |id: &str| {
            let mut r = RunbookRun::start(
                id.into(),
                ("restore", 1, "abcdef"),
                "releaser",
                "prod",
                None,
                None,
                BTreeMap::new(),
                vec![
                    RunStep::pending(id, "announce", "manual", "Tell support", None, 1_000),
                    RunStep::pending(
                        id,
                        "check",
                        "verify",
                        "Rows are back",
                        Some("true".into()),
                        1_000,
                    ),
                ],
                "token:alice",
                1,
            );
            r.advance(2);
            r.confirm("announce", "token:alice", "", 3).unwrap();
            r
        };
        let mut second = run("r2");
        second
            .skip("check", "token:bob", "counted by hand", 4)
            .unwrap();
        let gaps = automation_gaps(&[run("r1"), second]);
        assert_eq!(gaps[0].action, "automate: Tell support");
        assert_eq!(gaps[0].count, 2);
        assert_eq!(gaps[1].kind, "deviation");
        assert!(
            gaps[1]
                .action
                .contains("skipped step check (counted by hand)"),
            "{gaps:?}"
        );
    }
}
