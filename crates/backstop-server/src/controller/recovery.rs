//! Recoveries: a failed rollout's plan is journaled in full, then run step by step, intent
//! before and outcome after each, so a restarted controller resumes where it stopped.

use std::time::Duration;

use anyhow::{Result, anyhow};
use backstop_config::Service;
use backstop_core::Millis;
use backstop_core::event::EventKind;
use backstop_core::model::{Phase, Recovery, RecoveryStatus, Rollout, StepStatus};
use backstop_core::recovery::{PlanInput, Restore, StepKind};
use backstop_core::schema::AppliedMigration;
use backstop_core::schema::SchemaDecision;
use backstop_core::timeline::{Timeline, first_at};
use backstop_store::StoreError;
use serde_json::json;

use super::Controller;
use super::journal::Record;

/// Attempts per recovery step before the recovery stops for a human.
const STEP_ATTEMPTS: u32 = 3;

impl Controller {
    /// Fails rollout `r` for `reason` and starts its recovery. `trigger` says who decided:
    /// `judge`, `deploy`, `breaker`, `escalation`, or the person who asked.
    pub(super) async fn fail(
        &mut self,
        mut r: Rollout,
        reason: String,
        trigger: &str,
        evidence: serde_json::Value,
    ) -> Result<()> {
        let now = self.ctx.clock.now_ms();
        r.phase = Phase::Failed;
        r.reason = Some(reason.clone());
        r.verdict = Some(evidence.clone());
        r.updated_at_ms = now;
        self.ctx.store.update_rollout(&r).await?;
        self.watches.remove(&r.id);
        // At `now`: the breaker below counts failures up to `now`, this one included.
        self.record(
            Record::of(&r)
                .event(
                    EventKind::RolloutFailed,
                    json!({"reason": reason, "trigger": trigger}),
                )
                .at(now),
        )
        .await?;
        if matches!(trigger, "deploy" | "breaker") {
            self.record_failure_for_breaker(&r, now).await?;
        }
        let actor = if matches!(trigger, "judge" | "deploy" | "breaker" | "escalation") {
            "controller"
        } else {
            trigger
        };
        tracing::warn!(rollout = %r.id, reason = %reason, "Rollout failed; rolling back to the last known good.");
        self.record(
            Record::of(&r)
                .audit(
                    actor,
                    EventKind::RolloutFailed,
                    trigger,
                    json!({"reason": reason, "evidence": evidence}),
                )
                .notify(
                    EventKind::RolloutFailed,
                    format!(
                        "{} failed in {}; rolling back: {reason}",
                        r.to_release_id, r.env
                    ),
                    json!({"trigger": trigger, "severity": r.severity}),
                ),
        )
        .await?;
        // A major or critical failure is an incident: opened before the recovery runs, so
        // its timeline holds every step.
        crate::incidents::open_for_rollout(&self.ctx, &r, &reason).await;
        self.begin_recovery(r).await
    }

    /// Journals the whole recovery plan, then runs it.
    pub(super) async fn begin_recovery(&mut self, mut r: Rollout) -> Result<()> {
        let ctx = self.ctx.clone();
        let env = ctx.store.environment(&r.service, &r.env).await?;
        let reason = r.reason.clone().unwrap_or_else(|| "rollout failed".into());
        let lkg = env.as_ref().and_then(|e| e.lkg_release_id.clone());
        let stable = env.as_ref().and_then(|e| e.stable_instance_id.clone());
        // The canary's slice goes back to the stable version whatever the schema says (the
        // stable version already serves everyone else on it); proven downs run once the canary
        // is gone when the database is past what the LKG runs on, and a refused schema step is
        // reported for a person instead of blocking the traffic shift.
        let downs = match &lkg {
            Some(lkg) => match ctx.schema_decision(&r.service, &r.env, lkg).await? {
                Some(SchemaDecision::RunDowns { downs, .. }) => downs,
                Some(SchemaDecision::Refuse {
                    reason, options, ..
                }) => {
                    self.record(
                        Record::of(&r)
                            .event(
                                EventKind::SchemaRefused,
                                json!({"reason": reason, "options": options}),
                            )
                            .audit(
                                "controller",
                                EventKind::SchemaRefused,
                                &reason,
                                json!({"options": options}),
                            ),
                    )
                    .await?;
                    vec![]
                }
                _ => vec![],
            },
            None => vec![],
        };
        let config_restore = match &lkg {
            Some(lkg) => self.lkg_config(&r.service, &r.env, lkg).await,
            None => None,
        };
        let svc = ctx.service(&r.service)?;
        let restore = match (&stable, &lkg) {
            (Some(stable), Some(lkg)) => Restore::Canary {
                stable_instance_id: stable,
                lkg_release_id: lkg,
                canary_instance_id: r.canary_instance_id.as_deref(),
                bad_release_id: &r.to_release_id,
            },
            _ => Restore::DiscardCanary {
                canary_instance_id: r.canary_instance_id.as_deref(),
                bad_release_id: &r.to_release_id,
            },
        };
        let plan = service_plan(svc, restore, &reason, &downs, config_restore.as_ref());
        let rec = Recovery {
            id: recovery_id_for(&r.id),
            rollout_id: Some(r.id.clone()),
            service: r.service.clone(),
            env: r.env.clone(),
            actor: "controller".into(),
            trigger: EventKind::RolloutFailed.as_str().into(),
            reason,
            status: RecoveryStatus::Running,
            created_at_ms: ctx.clock.now_ms(),
            finished_at_ms: None,
            steps: vec![],
            validation: None,
            postmortem: None,
        };
        match ctx.store.create_recovery(&rec, &plan).await {
            Ok(()) => {
                self.record(
                    Record::of(&r)
                        .event(
                            EventKind::RecoveryStarted,
                            json!({"recovery": rec.id, "plan": plan}),
                        )
                        .audit_on(
                            "controller",
                            EventKind::RecoveryStarted,
                            format!("recovery/{}", rec.id),
                            EventKind::RolloutFailed.as_str(),
                            json!({"rollout": r.id, "plan": plan}),
                        ),
                )
                .await?;
            }
            // Already journaled by an earlier attempt that crashed before the phase change.
            Err(StoreError::Conflict(_)) if ctx.store.recovery(&rec.id).await.is_ok() => {}
            Err(e) => return Err(e.into()),
        }
        r.phase = Phase::Recovering;
        r.updated_at_ms = ctx.clock.now_ms();
        ctx.store.update_rollout(&r).await?;
        let rec = ctx.store.recovery(&rec.id).await?;
        self.run_recovery(rec).await
    }

    /// Journals a recovery without a rollout (a person's rollback, a release group's member)
    /// with its whole plan, before any step runs, and audits its start (`evidence` adds to the
    /// reason and the plan). The reconcile pass, or the caller, runs it.
    pub(super) async fn journal_recovery(
        &mut self,
        p: Planned<'_>,
        plan: &[StepKind],
        mut evidence: serde_json::Value,
    ) -> Result<()> {
        let rec = Recovery {
            id: p.id.to_string(),
            rollout_id: None,
            service: p.service.to_string(),
            env: p.env.to_string(),
            actor: p.actor.to_string(),
            trigger: p.trigger.to_string(),
            reason: p.reason.to_string(),
            status: RecoveryStatus::Running,
            created_at_ms: self.ctx.clock.now_ms(),
            finished_at_ms: None,
            steps: vec![],
            validation: None,
            postmortem: None,
        };
        self.ctx.store.create_recovery(&rec, plan).await?;
        evidence["reason"] = json!(p.reason);
        evidence["plan"] = json!(plan);
        self.record(Record::audit_only(
            p.actor,
            EventKind::RecoveryStarted,
            format!("recovery/{}", p.id),
            p.trigger,
            evidence,
        ))
        .await
    }

    /// Runs every step not yet done, journaling intent before and outcome after each.
    pub(super) async fn run_recovery(&mut self, rec: Recovery) -> Result<()> {
        let ctx = self.ctx.clone();
        for step in rec.steps.iter().filter(|s| s.status != StepStatus::Done) {
            let mut outcome = Err(anyhow!("not attempted"));
            for attempt in 1..=STEP_ATTEMPTS {
                ctx.store
                    .step_started(&rec.id, step.index, ctx.clock.now_ms())
                    .await?;
                outcome = self.execute(&rec, &step.step).await;
                if let Err(e) = &outcome
                    && super::fail_safe::write_failure(e).is_some()
                {
                    // Not the step's failure: the store refuses writes. Retrying, or recording
                    // the recovery as failed if a small write happens to get through, would
                    // leave users on the canary for good; the step stays unfinished, the
                    // fail-safe takes over, and the step runs again (it is idempotent) once
                    // writes work.
                    return outcome.map(|_| ());
                }
                match &outcome {
                    Ok(_) => break,
                    Err(e) if attempt < STEP_ATTEMPTS => {
                        tracing::warn!(recovery = %rec.id, step = step.index, attempt, error = format!("{e:#}"), "Recovery step failed; retrying.");
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    }
                    Err(_) => {}
                }
            }
            let now = ctx.clock.now_ms();
            let target = format!("recovery/{}", rec.id);
            match outcome {
                Ok(detail) => {
                    ctx.store
                        .step_finished(&rec.id, step.index, now, true, &detail)
                        .await?;
                    let evidence = json!({
                        "step": step.step, "idempotency_key": step.idempotency_key, "outcome": detail,
                    });
                    self.record(Record::audit_only(
                        "controller",
                        EventKind::RecoveryStepDone,
                        target,
                        "plan",
                        evidence,
                    ))
                    .await?;
                    if let (StepKind::ShiftTraffic { .. }, Some(rollout_id)) =
                        (&step.step, &rec.rollout_id)
                    {
                        self.traffic_restored(rollout_id, now).await?;
                    }
                }
                Err(e) => {
                    let error = format!("{e:#}");
                    ctx.store
                        .step_finished(&rec.id, step.index, now, false, &json!({"error": error}))
                        .await?;
                    ctx.store
                        .finish_recovery(&rec.id, RecoveryStatus::Failed, now)
                        .await?;
                    let evidence = json!({
                        "step": step.step, "idempotency_key": step.idempotency_key, "error": error,
                    });
                    self.record(Record::audit_only(
                        "controller",
                        EventKind::RecoveryFailed,
                        target,
                        "plan",
                        evidence,
                    ))
                    .await?;
                    tracing::error!(recovery = %rec.id, step = step.index, error, "Recovery step failed for good; a person must take over.");
                    if let Some(rollout_id) = &rec.rollout_id {
                        let r = ctx.store.rollout(rollout_id).await?;
                        let summary = format!(
                            "recovery {} of {} stopped at step {}: `backstop recovery resume {}` after fixing it",
                            rec.id,
                            r.to_release_id,
                            step.index + 1,
                            rec.id
                        );
                        self.record(Record::of(&r).notify(
                            EventKind::RecoveryFailed,
                            summary,
                            json!({"error": error}),
                        ))
                        .await?;
                    }
                    return Ok(());
                }
            }
        }
        let now = ctx.clock.now_ms();
        ctx.store
            .finish_recovery(&rec.id, RecoveryStatus::Done, now)
            .await?;
        // Restored; resolved once the post-recovery suite passes (at once without one).
        let validation = crate::validation::begin(ctx.config.service(&rec.service), now);
        ctx.store
            .set_recovery_validation(&rec.id, &validation)
            .await?;
        self.record(Record::audit_only(
            "controller",
            EventKind::RecoveryDone,
            format!("recovery/{}", rec.id),
            "plan",
            json!({"rollout": rec.rollout_id}),
        ))
        .await?;
        if let Some(rollout_id) = &rec.rollout_id {
            // Mitigated before the rollout says recovered: its freeze is lifted by then.
            crate::incidents::mitigated(&ctx, rollout_id).await;
            self.rollout_recovered(rollout_id, &rec.id, now).await?;
        }
        if validation.resolved_at_ms().is_some() {
            crate::postmortem::write_draft(&ctx, &rec.id).await;
        }
        Ok(())
    }

    /// The recovery of a failed rollout finished at `now`: the rollout is recovered, and its
    /// time to recover (from when users first met the bad version) is measured against the
    /// service's MTTR target.
    async fn rollout_recovered(
        &self,
        rollout_id: &str,
        recovery_id: &str,
        now: Millis,
    ) -> Result<()> {
        let ctx = &self.ctx;
        let mut r = ctx.store.rollout(rollout_id).await?;
        r.phase = Phase::Recovered;
        r.updated_at_ms = now;
        ctx.store.update_rollout(&r).await?;
        let events = ctx.store.events(&r.id).await?;
        let took = now - Timeline::exposed_at_ms(&events, &r);
        let mttr = ctx.service(&r.service)?.mttr().as_millis() as Millis;
        let breached = took > mttr;
        let summary = format!(
            "{} rolled back in {}; traffic is on the last known good",
            r.to_release_id, r.env
        );
        let recovered = Record::of(&r)
            .event(
                EventKind::RolloutRecovered,
                json!({"recovery": recovery_id, "time_to_recover_ms": took, "mttr_target_ms": mttr, "mttr_breached": breached}),
            )
            .notify(
                EventKind::RecoveryDone,
                summary,
                json!({"time_to_recover_ms": took, "mttr_breached": breached}),
            );
        self.record(recovered).await?;
        if breached {
            self.record(Record::of(&r).audit(
                "controller",
                EventKind::MttrBreached,
                "measurement",
                json!({"took_ms": took, "target_ms": mttr}),
            ))
            .await?;
        }
        tracing::info!(rollout = %r.id, "Rolled back: traffic is on the last known good and the release is marked bad.");
        Ok(())
    }

    /// Records when users stopped seeing the bad version, and whether that met the rollback SLA
    /// (measured from the verdict to traffic restored).
    async fn traffic_restored(&self, rollout_id: &str, at: Millis) -> Result<()> {
        let ctx = &self.ctx;
        let r = ctx.store.rollout(rollout_id).await?;
        let events = ctx.store.events(rollout_id).await?;
        let detected = first_at(&events, EventKind::RolloutFailed);
        let sla = ctx
            .service(&r.service)?
            .rollback_sla_for(&r.env)
            .as_millis() as Millis;
        let took = detected.map(|d| at - d);
        let breached = took.is_some_and(|t| t > sla);
        let restored = Record::of(&r)
            .event(EventKind::TrafficRestored, json!({"detection_to_restore_ms": took, "rollback_sla_ms": sla, "sla_breached": breached}))
            .at(at);
        self.record(if breached {
            restored.audit(
                "controller",
                EventKind::RollbackSlaBreached,
                "measurement",
                json!({"took_ms": took, "sla_ms": sla}),
            )
        } else {
            restored
        })
        .await
    }

    /// The config snapshot to restore with a plan back to `lkg` (version, manifest digest): the
    /// one taken with the rollout that made `lkg` good, when the environment's config files now
    /// differ from it. Never blocks a recovery: a snapshot that cannot be read is logged and the
    /// plan goes on without.
    pub(super) async fn lkg_config(
        &self,
        service: &str,
        env: &str,
        lkg: &str,
    ) -> Option<(i64, String)> {
        self.lkg_config_restore(service, env, lkg)
            .await
            .unwrap_or_else(|e| {
                tracing::warn!(
                    service,
                    env,
                    lkg,
                    error = format!("{e:#}"),
                    "Cannot compare the config with the last known good's snapshot; recovering without a config restore."
                );
                None
            })
    }

    async fn lkg_config_restore(
        &self,
        service: &str,
        env: &str,
        lkg: &str,
    ) -> Result<Option<(i64, String)>> {
        let ctx = &self.ctx;
        let promoted = ctx
            .store
            .rollouts(Some(service), 1000)
            .await?
            .into_iter()
            .find(|r| r.env == env && r.to_release_id == lkg && r.phase == Phase::Promoted);
        let Some(r) = promoted else { return Ok(None) };
        Ok(ctx
            .rollout_snapshot_vs_live(service, env, &r.id)
            .await?
            .filter(|s| !s.snapshot.same_files(&s.live))
            .map(|s| (s.version, s.digest)))
    }
}

/// Recoveries of failed rollouts have ids derived from the rollout, so journaling one twice
/// (after a crash between the journal write and the phase change) is caught as a conflict.
pub fn recovery_id_for(rollout_id: &str) -> String {
    format!("rec-{rollout_id}")
}

/// Who and what a recovery without a rollout is, for [`Controller::journal_recovery`].
pub(super) struct Planned<'a> {
    pub id: &'a str,
    pub service: &'a str,
    pub env: &'a str,
    pub actor: &'a str,
    /// `manual`, `group`, …
    pub trigger: &'a str,
    pub reason: &'a str,
}

/// The recovery plan for `restore` with what the service declares around it: the restored
/// version's traffic watched for one analysis interval, and the rollback hooks.
pub(super) fn service_plan(
    svc: &Service,
    restore: Restore<'_>,
    reason: &str,
    schema_downs: &[AppliedMigration],
    config_restore: Option<&(i64, String)>,
) -> Vec<StepKind> {
    let sweeps: Vec<StepKind> = svc
        .hooks
        .sweeps
        .iter()
        .map(|sw| match (&sw.purge, &sw.pattern) {
            (Some(url), _) => StepKind::PurgeHttp {
                name: sw.name.clone(),
                url: url.clone(),
            },
            (None, pattern) => StepKind::SweepRedis {
                name: sw.name.clone(),
                address: sw.redis.clone(),
                address_env: sw.redis_env.clone(),
                pattern: pattern.clone().unwrap_or_default(),
                batch: sw.batch,
            },
        })
        .collect();
    backstop_core::recovery::plan(&PlanInput {
        restore,
        reason,
        schema_downs,
        config_restore: config_restore.map(|(version, manifest)| (*version, manifest.as_str())),
        verify_seconds: svc.analysis.interval.as_secs().max(1),
        before_hook: svc.hooks.before_rollback.as_deref(),
        after_hook: svc.hooks.after_rollback.as_deref(),
        sweeps: &sweeps,
    })
}
