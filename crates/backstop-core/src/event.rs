//! The names of everything Backstop records: a rollout's events (`/rollouts/{id}/events`), audit
//! actions and webhook notifications share one vocabulary. Each name is written once, here; the
//! dotted strings are what the store, the API and the webhooks have always carried, so data
//! written by earlier versions reads back unchanged.

use crate::named::string_enum;

string_enum! {
    /// One kind of recorded happening. Serialised as its dotted name.
    pub enum EventKind {
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
        /// A journey was sent straight to the canary before it took traffic (or skipped).
        CanarySmoke = "canary.smoke",
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
        /// `analysis.mode: shadow`: what the judge said and would have done; nothing acted on.
        JudgeShadowVerdict = "judge.shadow_verdict",
        /// The stable version is far worse than before the rollout: the environment, not the release.
        EnvironmentDegraded = "environment.degraded",
        /// The stable version is back to its figures.
        EnvironmentRecovered = "environment.recovered",
        /// Users are back on the last known good.
        TrafficRestored = "traffic.restored",
        /// A rollback needed schema changes it may not make.
        SchemaRefused = "schema.refused",

        // Release groups.
        /// A release group was declared (its members, in order).
        GroupCreated = "group.created",
        /// A group run started in an environment.
        GroupStarted = "group.started",
        /// A member of a group run was promoted; the next one starts.
        GroupMemberPromoted = "group.member_promoted",
        /// A member failed: the group recovery starts, last member first.
        GroupFailed = "group.failed",
        /// A member is back on its last known good and compensated.
        GroupMemberRolledBack = "group.member_rolled_back",
        /// Every member was promoted.
        GroupPromoted = "group.promoted",
        /// Every member that took part is back.
        GroupRolledBack = "group.rolled_back",
        /// A member could not be put back; the group waits for a person.
        GroupHalted = "group.halted",

        // Ships: one release through a service's environment waves.
        /// `backstop release ship` started (the waves, in order).
        ShipStarted = "ship.started",
        /// A wave's rollouts started.
        ShipWaveStarted = "ship.wave_started",
        /// The next wave waits: the gate holds it (a freeze, an open breaker, an incident).
        ShipHeld = "ship.held",
        /// Every environment of a wave was promoted; its bake began.
        ShipWaveBaking = "ship.wave_baking",
        /// A wave passed (promoted, and baked when it bakes); the next one may start.
        ShipWavePassed = "ship.wave_passed",
        /// A wave failed (a canary, or the bake): it is rolled back and the ship stops.
        ShipWaveFailed = "ship.wave_failed",
        /// A wave is back on its previous last known good.
        ShipWaveRolledBack = "ship.wave_rolled_back",
        /// The release passed every wave.
        ShipShipped = "ship.shipped",
        /// The ship stopped: a wave failed (and was rolled back) or the gate refused one.
        ShipStopped = "ship.stopped",
        /// An environment could not be put back; the ship waits for a person.
        ShipHalted = "ship.halted",

        // Alerts from monitoring.
        /// A firing alert was received (the evidence says what was done about it).
        AlertFiring = "alert.firing",
        /// A person took over a held alert before its deadline.
        AlertAcknowledged = "alert.acknowledged",
        /// The alert stopped firing.
        AlertResolved = "alert.resolved",

        // Recoveries.
        RecoveryStarted = "recovery.started",
        RecoveryStepDone = "recovery.step.done",
        RecoveryFailed = "recovery.failed",
        RecoveryResumed = "recovery.resumed",
        RecoveryDone = "recovery.done",
        /// The post-recovery suite passed after a recovery: resolved, not only restored.
        RecoveryResolved = "recovery.resolved",
        /// The post-recovery suite kept failing for its whole window: restored, not resolved.
        RecoveryUnresolved = "recovery.unresolved",
        /// A person said what a verdict really was (confirmed, false alarm, missed).
        VerdictLabelled = "verdict.labelled",
        /// A recovery's post-mortem was not marked done by its due time.
        PostmortemOverdue = "postmortem.overdue",
        /// Someone marked a recovery's post-mortem done.
        PostmortemDone = "postmortem.done",
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
        /// A release rolled back and marked bad was readmitted by a person (a false alarm).
        ReleaseReadmitted = "release.readmitted",
        ConfigSnapshotTaken = "config.snapshot.taken",
        ConfigRestored = "config.restored",
        DrillStarted = "drill.started",
        DrillFinished = "drill.finished",
        ControllerStarted = "controller.started",
        /// An API token was made for a person (never the token itself, only its name and role).
        TokenCreated = "token.created",
        TokenRevoked = "token.revoked",
        /// An override in a regulated environment waits for a second person.
        ApprovalRequested = "approval.requested",
        /// A second person approved it; it ran (or failed: see the evidence).
        ApprovalGranted = "approval.granted",
        /// A rollback by someone without the role (break-glass): runs, then is reviewed.
        BreakGlassUsed = "break_glass.used",
        BreakGlassReviewed = "break_glass.reviewed",
        /// An incident was opened (by a recovery of a major or critical failure, or by hand).
        IncidentOpened = "incident.opened",
        /// Its status, roles, notes or status updates changed (the evidence says which).
        IncidentUpdated = "incident.updated",
        /// A status update was due and not given.
        IncidentUpdateDue = "incident.update_due",
        /// A runbook run started (its sha256 and inputs are in the evidence).
        RunbookStarted = "runbook.started",
        /// A runbook step started, ended, was confirmed or retried.
        RunbookStep = "runbook.step",
        /// A runbook step was skipped or altered, or an ad-hoc action taken, with a reason.
        RunbookDeviation = "runbook.deviation",
        /// A runbook run succeeded or was aborted.
        RunbookEnded = "runbook.ended",
        /// The daemon signed a chain kept before audit keys existed (`audit::KEYED_ACTION`).
        AuditKeyed = "audit.keyed",
        /// The daemon found the audit chain broken (`audit::BROKEN_ACTION`).
        AuditChainBroken = "audit.chain_broken",

        // Supervision.
        /// An instance that crashed or kept failing its health check was restarted.
        InstanceRestarted = "instance.restarted",
        /// An instance keeps crashing: restarts in a row within the crash-loop window.
        InstanceCrashLoop = "instance.crash_loop",
        /// Some, not all, of a version's instances are unhealthy (`partial_failures`).
        PartialFailure = "instance.partial_failure",
        /// One instance's errors stand out from its version's other instances'.
        InstanceOutlier = "instance.outlier",
        /// The store refused writes for a while; what the daemon did meanwhile (audit, written
        /// once writes work again).
        StoreWriteFailed = "store.write_failed",
        /// A person set a feature flag's percentage.
        FlagSet = "flag.set",
        /// A staged re-enable of a flag started.
        FlagReenableStarted = "flag.reenable.started",
        /// A stage of a re-enable held: the flag went on to the next percentage.
        FlagStageHeld = "flag.stage_held",
        /// Every stage held: the flag is on for everyone.
        FlagPromoted = "flag.promoted",
        /// The on cohort did worse than the off cohort: the flag went back to 0 %.
        FlagRolledBack = "flag.rolled_back",
        /// The judge could not tell the cohorts apart: the re-enable waits for a person.
        FlagHalted = "flag.halted",
        /// A person stopped a re-enable.
        FlagReenableAborted = "flag.reenable.aborted",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_audit_chain_actions_are_the_chain_s_own() {
        assert_eq!(EventKind::AuditKeyed.as_str(), crate::audit::KEYED_ACTION);
        assert_eq!(
            EventKind::AuditChainBroken.as_str(),
            crate::audit::BROKEN_ACTION
        );
    }

    #[test]
    fn names_are_unique_and_round_trip() {
        let mut seen = std::collections::BTreeSet::new();
        for name in EventKind::ALL {
            assert!(seen.insert(*name), "{name} twice");
            let kind: EventKind = name.parse().unwrap();
            assert_eq!(kind.as_str(), *name);
            let json = serde_json::to_string(&kind).unwrap();
            assert_eq!(json, format!("\"{name}\""));
            assert_eq!(serde_json::from_str::<EventKind>(&json).unwrap(), kind);
        }
        assert!("rollout.exploded".parse::<EventKind>().is_err());
    }
}
