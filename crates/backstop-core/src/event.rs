//! The names of everything Backstop records: a rollout's events (`/rollouts/{id}/events`), audit
//! actions and webhook notifications share one vocabulary. Each name is written once, here; the
//! dotted strings are what the store, the API and the webhooks have always carried, so data
//! written by earlier versions reads back unchanged.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Deserializer, Serialize, Serializer};

macro_rules! event_kinds {
    ($($(#[$doc:meta])* $variant:ident = $name:literal,)*) => {
        /// One kind of recorded happening. Serialised as its dotted name.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum EventKind {
            $($(#[$doc])* $variant,)*
        }

        impl EventKind {
            /// Every kind, in declaration order.
            pub const ALL: &'static [EventKind] = &[$(EventKind::$variant,)*];

            /// The dotted name stored and exchanged, e.g. `rollout.failed`.
            pub const fn as_str(self) -> &'static str {
                match self {
                    $(EventKind::$variant => $name,)*
                }
            }
        }
    };
}

event_kinds! {
    // A rollout's life.
    /// A person or pipeline asked for a rollout (event).
    RolloutStarted = "rollout.started",
    /// The rollout was stored (audit).
    RolloutCreated = "rollout.created",
    /// The canary took its first weight (audit).
    RolloutProgressing = "rollout.progressing",
    /// The canary moved to the next step (audit).
    RolloutStep = "rollout.step",
    /// Paused by an inconclusive judge or an open breaker.
    RolloutPaused = "rollout.paused",
    /// Resumed after the breaker was reset.
    RolloutResumed = "rollout.resumed",
    /// Held: a failing verdict waiting on its severity policy, or a degraded environment.
    RolloutHeld = "rollout.held",
    /// A person took over a held rollout.
    RolloutAcknowledged = "rollout.acknowledged",
    /// The new version became the last known good.
    RolloutPromoted = "rollout.promoted",
    /// The verdict (or a deployment, or a person) failed the rollout; a recovery follows.
    RolloutFailed = "rollout.failed",
    /// Its recovery finished: traffic is back on the last known good.
    RolloutRecovered = "rollout.recovered",
    /// The new version's instance passed its start-up health check.
    CanaryHealthy = "canary.healthy",
    /// The canary was given its first traffic weight.
    CanaryStarted = "canary.started",
    /// Users first reached the new version.
    CanaryFirstRequest = "canary.first_request",
    /// The canary moved to the next step (event).
    StepAdvanced = "step.advanced",
    /// Where the judged numbers come from (a signal source other than the router).
    AnalysisSource = "analysis.source",
    /// The signal source could not answer; the rollout holds.
    AnalysisSourceError = "analysis.source_error",
    /// The judge failed the canary.
    JudgeFail = "judge.fail",
    /// The judge could not decide; the rollout pauses.
    JudgeInconclusive = "judge.inconclusive",
    /// The stable version is far worse than before the rollout: the environment, not the release.
    EnvironmentDegraded = "environment.degraded",
    /// The stable version is back to its figures.
    EnvironmentRecovered = "environment.recovered",
    /// Users are back on the last known good.
    TrafficRestored = "traffic.restored",
    /// A rollback needed schema changes it may not make.
    SchemaRefused = "schema.refused",

    // Recoveries.
    RecoveryStarted = "recovery.started",
    RecoveryStepDone = "recovery.step.done",
    RecoveryFailed = "recovery.failed",
    RecoveryResumed = "recovery.resumed",
    RecoveryDone = "recovery.done",
    /// A person asked to go back to the last known good.
    RollbackRequested = "rollback.requested",
    /// A rollback that could not be planned safely.
    RollbackRefused = "rollback.refused",
    /// Verdict to traffic restored took longer than the environment's rollback SLA.
    RollbackSlaBreached = "rollback_sla.breached",
    /// The recovery took longer than the service's MTTR target.
    MttrBreached = "mttr.breached",

    // Guards and governance.
    BreakerTripped = "breaker.tripped",
    BreakerReset = "breaker.reset",
    FreezeStarted = "freeze.started",
    FreezeEnded = "freeze.ended",
    FreezeOverridden = "freeze.overridden",
    RecoveryFreezeBypassed = "recovery_freeze.bypassed",
    GateOverrideRefused = "gate.override_refused",
    ReleaseCreated = "release.created",
    ConfigSnapshotTaken = "config.snapshot.taken",
    ConfigRestored = "config.restored",
    DrillStarted = "drill.started",
    DrillFinished = "drill.finished",
    ControllerStarted = "controller.started",
}

impl fmt::Display for EventKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A name that is not one of [`EventKind`]'s.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown event kind {0:?}")]
pub struct UnknownEventKind(pub String);

impl FromStr for EventKind {
    type Err = UnknownEventKind;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        EventKind::ALL
            .iter()
            .copied()
            .find(|k| k.as_str() == s)
            .ok_or_else(|| UnknownEventKind(s.to_string()))
    }
}

impl Serialize for EventKind {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for EventKind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let name = String::deserialize(d)?;
        name.parse().map_err(serde::de::Error::custom)
    }
}

impl utoipa::PartialSchema for EventKind {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(EventKind::ALL.iter().map(|k| k.as_str())))
            .description(Some("What happened, as a dotted name."))
            .into()
    }
}

impl utoipa::ToSchema for EventKind {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for kind in EventKind::ALL {
            assert!(seen.insert(kind.as_str()), "{kind} twice");
            assert_eq!(kind.as_str().parse::<EventKind>(), Ok(*kind));
            let json = serde_json::to_string(kind).unwrap();
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), *kind);
        }
        assert!("rollout.exploded".parse::<EventKind>().is_err());
    }
}
