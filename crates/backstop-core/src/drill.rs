//! Drills: a known-bad variant of an environment's last known good release deployed under
//! generated load in a non-production environment, and what Backstop's own records say about
//! how fast it was detected and undone, against the service's objectives.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::event::EventKind;
use crate::model::{Event, Phase, Rollout};
use crate::timeline::{Timeline, first_at};

/// Where a drill stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DrillStatus {
    /// The known-bad variant is rolling out; results come when the drill is finished.
    Running,
    /// Detected and restored within the objectives.
    Passed,
    /// Not detected, not restored, or slower than an objective.
    Failed,
}

impl DrillStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Running => "running",
            Self::Passed => "passed",
            Self::Failed => "failed",
        }
    }
}

impl std::fmt::Display for DrillStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The generated load the drill ran under (reported by whoever drove it).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillLoad {
    /// Requests per second asked for.
    pub rate_per_s: f64,
    pub sent: u64,
    pub failed: u64,
    /// Requests the known-bad variant answered (successfully or not).
    pub served_by_variant: u64,
    pub failed_on_variant: u64,
}

/// What the daemon's records say about a finished drill.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct DrillResult {
    /// The drill rollout's phase when the drill finished (`recovered` when it was undone).
    pub phase: Phase,
    /// A failing verdict was reached.
    pub detected: bool,
    /// Traffic went back to the last known good and the recovery finished.
    pub restored: bool,
    pub first_canary_request_at_ms: Option<Millis>,
    pub verdict_at_ms: Option<Millis>,
    pub traffic_restored_at_ms: Option<Millis>,
    pub recovered_at_ms: Option<Millis>,
    /// First canary request → failing verdict.
    pub time_to_detect_ms: Option<Millis>,
    /// First canary request → traffic back on the last known good.
    pub time_to_restore_ms: Option<Millis>,
    /// Failing verdict → traffic restored (what the rollback SLA bounds).
    pub detection_to_restore_ms: Option<Millis>,
    /// First canary request → recovery done (what the MTTR target bounds; `validate` compares
    /// the service's `mttr` with it).
    pub time_to_recover_ms: Option<Millis>,
    pub mttr_target_ms: Millis,
    pub rollback_sla_ms: Millis,
    /// Every reason the drill failed, in words (empty when it passed).
    pub failures: Vec<String>,
    pub load: Option<DrillLoad>,
}

/// One drill, as stored and served by `/api/v1/drills`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Drill {
    pub id: String,
    pub service: String,
    pub env: String,
    /// The rollout of the known-bad variant.
    pub rollout_id: String,
    /// The known-bad variant (`service@LKGVERSION+drill.N`).
    pub release_id: String,
    /// The last known good release it was made from (and goes back to).
    pub lkg_release_id: String,
    /// The extra environment that makes the variant misbehave (from the service's `drill.env`).
    pub variant_env: BTreeMap<String, String>,
    /// Where load should be sent (the environment's `listen` address), when known.
    pub target: Option<String>,
    pub actor: String,
    pub status: DrillStatus,
    pub started_at_ms: Millis,
    pub finished_at_ms: Option<Millis>,
    pub result: Option<DrillResult>,
}

/// The objectives a drill is held to, in milliseconds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DrillObjectives {
    pub mttr_ms: Millis,
    pub rollback_sla_ms: Millis,
}

/// Seconds with milliseconds, for messages.
fn secs(ms: Millis) -> String {
    format!("{:.3}s", ms as f64 / 1000.0)
}

/// Measures a drill from its rollout's record: detection, restore and recovery times from the
/// events the controller wrote (`canary.first_request`, `rollout.failed`, `traffic.restored`,
/// `rollout.recovered`), `recovery_done_at_ms` (the recovery's finish time) when the
/// `rollout.recovered` event is not written yet, compared with the objectives.
pub fn measure(
    rollout: &Rollout,
    events: &[Event],
    recovery_done_at_ms: Option<Millis>,
    objectives: DrillObjectives,
    load: Option<DrillLoad>,
) -> DrillResult {
    let timeline = Timeline::from_events(rollout, events);
    let first = Some(Timeline::exposed_at_ms(events, rollout));
    let verdict = timeline.verdict_at_ms;
    let restored_at = timeline.traffic_restored_at_ms;
    let recovered_at = if rollout.phase == Phase::Recovered {
        first_at(events, EventKind::RolloutRecovered).or(recovery_done_at_ms)
    } else {
        None
    };
    let since = |a: Option<Millis>, b: Option<Millis>| a.zip(b).map(|(a, b)| (b - a).max(0));
    let detected = verdict.is_some();
    let restored = rollout.phase == Phase::Recovered && restored_at.is_some();
    let time_to_recover = since(first, recovered_at);
    let detection_to_restore = since(verdict, restored_at);
    let mut failures = Vec::new();
    if !detected {
        failures.push(if rollout.phase.is_active() {
            format!(
                "the known-bad variant was not detected before the drill ended (the rollout was still {})",
                rollout.phase
            )
        } else {
            format!(
                "the known-bad variant was not detected (the rollout ended {})",
                rollout.phase
            )
        });
    }
    if detected && !restored {
        failures.push(format!(
            "service was not restored: the rollout is {}{}",
            rollout.phase,
            rollout
                .reason
                .as_deref()
                .map(|r| format!(" ({r})"))
                .unwrap_or_default()
        ));
    }
    if let Some(took) = time_to_recover
        && took > objectives.mttr_ms
    {
        failures.push(format!(
            "recovery took {} (first bad request → recovery done), longer than the MTTR target {}",
            secs(took),
            secs(objectives.mttr_ms)
        ));
    }
    if let Some(took) = detection_to_restore
        && took > objectives.rollback_sla_ms
    {
        failures.push(format!(
            "restoring traffic took {} after detection, longer than the rollback SLA {}",
            secs(took),
            secs(objectives.rollback_sla_ms)
        ));
    }
    DrillResult {
        phase: rollout.phase,
        detected,
        restored,
        first_canary_request_at_ms: timeline.first_canary_request_at_ms,
        verdict_at_ms: verdict,
        traffic_restored_at_ms: restored_at,
        recovered_at_ms: recovered_at,
        time_to_detect_ms: since(first, verdict),
        time_to_restore_ms: since(first, restored_at),
        detection_to_restore_ms: detection_to_restore,
        time_to_recover_ms: time_to_recover,
        mttr_target_ms: objectives.mttr_ms,
        rollback_sla_ms: objectives.rollback_sla_ms,
        failures,
        load,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::event;

    fn rollout(phase: Phase) -> Rollout {
        Rollout {
            created_at_ms: 1_000,
            ..crate::fixtures::rollout(phase)
        }
    }

    const OBJ: DrillObjectives = DrillObjectives {
        mttr_ms: 60_000,
        rollback_sla_ms: 10_000,
    };

    #[test]
    fn detected_and_restored_within_objectives_passes() {
        let events = [
            event(1_000, EventKind::RolloutStarted),
            event(2_000, EventKind::CanaryFirstRequest),
            event(7_000, EventKind::RolloutFailed),
            event(7_500, EventKind::TrafficRestored),
            event(9_000, EventKind::RolloutRecovered),
        ];
        let r = measure(&rollout(Phase::Recovered), &events, None, OBJ, None);
        assert!(r.detected && r.restored, "{r:?}");
        assert_eq!(r.time_to_detect_ms, Some(5_000));
        assert_eq!(r.time_to_restore_ms, Some(5_500));
        assert_eq!(r.detection_to_restore_ms, Some(500));
        assert_eq!(r.time_to_recover_ms, Some(7_000));
        assert!(r.failures.is_empty(), "{:?}", r.failures);
    }

    #[test]
    fn slow_recovery_and_rollback_fail_with_reasons() {
        let events = [
            event(2_000, EventKind::CanaryFirstRequest),
            event(7_000, EventKind::RolloutFailed),
            event(20_000, EventKind::TrafficRestored),
        ];
        let r = measure(&rollout(Phase::Recovered), &events, Some(70_000), OBJ, None);
        assert_eq!(r.time_to_recover_ms, Some(68_000));
        assert_eq!(r.failures.len(), 2, "{:?}", r.failures);
        assert!(
            r.failures[0].contains("MTTR target 60.000s"),
            "{:?}",
            r.failures
        );
        assert!(
            r.failures[1].contains("rollback SLA 10.000s"),
            "{:?}",
            r.failures
        );
    }

    #[test]
    fn promoted_variant_is_not_detected() {
        let events = [
            event(2_000, EventKind::CanaryFirstRequest),
            event(30_000, EventKind::RolloutPromoted),
        ];
        let r = measure(&rollout(Phase::Promoted), &events, None, OBJ, None);
        assert!(!r.detected && !r.restored);
        assert_eq!(r.time_to_recover_ms, None);
        assert_eq!(r.failures.len(), 1);
        assert!(r.failures[0].contains("not detected"), "{:?}", r.failures);
    }

    #[test]
    fn detected_but_still_recovering_is_not_restored() {
        let events = [
            event(2_000, EventKind::CanaryFirstRequest),
            event(5_000, EventKind::RolloutFailed),
        ];
        let r = measure(&rollout(Phase::Recovering), &events, None, OBJ, None);
        assert!(r.detected && !r.restored);
        assert!(r.failures[0].contains("not restored"), "{:?}", r.failures);
    }
}
