//! The rollout controller and the recovery executor: one task, the only writer of rollout
//! transitions. It is level-triggered: every tick it reads the stored state and moves each
//! unfinished rollout one step; nothing it needs lives only in memory (judges are rebuilt by
//! replaying the stored intervals), so a controller restarted after `kill -9` simply carries on.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, anyhow};
use backstop_config::{BreakerScope, SeverityAction, Strategy};
use backstop_core::Millis;
use backstop_core::breaker::TripScope;
use backstop_core::event::EventKind;
use backstop_core::model::{
    EnvironmentState, Event, Phase, Recovery, RecoveryStatus, Rollout, StepStatus,
};
use backstop_core::recovery::{
    StepKind, plan_canary_rollback, plan_redeploy_previous, with_config_restore, with_hooks,
    with_schema_downs, with_verification,
};
use backstop_core::rollout::{Next, Step, decide};
use backstop_core::schema::SchemaDecision;
use backstop_core::snapshot::DEGRADED_MIN_REQUESTS;
use backstop_drivers::proxy::VersionStats;
use backstop_judge::{ArmCounts, Decision, Interval, Judge};
use backstop_store::StoreError;
use serde_json::json;
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use crate::error::ApiError;
use crate::{Ctx, now_ms};
use backstop_core::{breaker, severity};

/// Reason prefix of rollouts paused by the global breaker (they resume when it is reset).
const BREAKER_PAUSE: &str = "circuit breaker open";

/// How often the controller looks at its rollouts when nothing wakes it.
const TICK: Duration = Duration::from_millis(200);
/// Attempts per recovery step before the recovery stops for a human.
const STEP_ATTEMPTS: u32 = 3;

/// Requests from the API that must be serialized with the controller's own transitions.
/// What a person can do to a running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RolloutAction {
    Promote,
    Abort,
    Acknowledge,
}

pub enum Command {
    /// A person acts on one rollout, with a reason for the audit log.
    Rollout {
        action: RolloutAction,
        rollout_id: String,
        actor: String,
        reason: String,
        reply: oneshot::Sender<Result<Rollout, ApiError>>,
    },
    Resume {
        recovery_id: String,
        actor: String,
        reply: oneshot::Sender<Result<Recovery, ApiError>>,
    },
    Rollback {
        service: String,
        env: String,
        actor: String,
        reason: String,
        reply: oneshot::Sender<Result<Recovery, ApiError>>,
    },
}

/// What the controller keeps between ticks for a progressing rollout. Rebuildable from the store.
struct Watch {
    /// Behind a mutex only so the controller's futures are `Sync`; never contended.
    judge: std::sync::Mutex<Box<dyn Judge>>,
    /// Proxy counters at the end of the last interval: (baseline, canary).
    last: (Option<VersionStats>, Option<VersionStats>),
    next_sample_at: Millis,
    canary_started_at: Millis,
    first_request_seen: bool,
    /// Consecutive failed health checks of the canary (the per-rollout breaker).
    failed_health_checks: u32,
    /// The stable version's traffic before the rollout (what "degraded" is measured against).
    before: Option<backstop_core::snapshot::Baseline>,
    /// Since when the environment is degraded (the stable version far worse than before).
    degraded_since: Option<Millis>,
}

/// The environment of a rollout turned degraded (why) or healthy again (after how long).
enum EnvironmentChange {
    Degraded(String),
    Recovered { held_ms: Millis },
}

pub struct Controller {
    ctx: Arc<Ctx>,
    commands: mpsc::Receiver<Command>,
    watches: HashMap<String, Watch>,
}

impl Controller {
    pub fn new(ctx: Arc<Ctx>, commands: mpsc::Receiver<Command>) -> Self {
        Self {
            ctx,
            commands,
            watches: HashMap::new(),
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        if let Err(e) = self.startup().await {
            tracing::error!(
                error = format!("{e:#}"),
                "Controller start-up reconciliation failed; retrying each tick."
            );
        }
        loop {
            tokio::select! {
                () = cancel.cancelled() => break,
                cmd = self.commands.recv() => match cmd {
                    Some(cmd) => self.handle(cmd).await,
                    None => break,
                },
                () = self.ctx.wake.notified() => {}
                () = tokio::time::sleep(TICK) => {}
            }
            if let Err(e) = self.reconcile().await {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "Reconcile pass failed; will retry."
                );
            }
        }
    }

    /// After a (re)start: bring back what the store says runs, route traffic to it, finish
    /// interrupted recoveries, and stop leftovers nobody references.
    async fn startup(&mut self) -> Result<()> {
        let ctx = self.ctx.clone();
        for env in ctx.store.environments().await? {
            if let Some(stable) = &env.stable_instance_id {
                let rec = ctx.store.instance(stable).await?;
                let release = ctx.store.release(&rec.release_id).await?;
                ctx.ensure_instance(stable, &release, &env.env).await?;
            }
        }
        for r in ctx.store.active_rollouts().await? {
            if matches!(r.phase, Phase::Progressing | Phase::Paused)
                && let Some(id) = &r.canary_instance_id
            {
                let release = ctx.store.release(&r.to_release_id).await?;
                ctx.ensure_instance(id, &release, &r.env).await?;
            }
        }
        for (service, env) in ctx.routers.keys() {
            ctx.apply_routes(service, env).await?;
        }
        self.collect_garbage().await?;
        self.audit(
            "controller",
            EventKind::ControllerStarted,
            "controller",
            "start",
            json!({}),
        )
        .await?;
        Ok(())
    }

    /// Stops running instances that no environment, rollout or recovery references.
    async fn collect_garbage(&self) -> Result<()> {
        let ctx = &self.ctx;
        let mut keep: Vec<String> = ctx
            .store
            .environments()
            .await?
            .into_iter()
            .filter_map(|e| e.stable_instance_id)
            .collect();
        for r in ctx.store.active_rollouts().await? {
            keep.extend(r.canary_instance_id);
        }
        for rec in ctx.store.unfinished_recoveries().await? {
            for s in rec.steps {
                if let StepKind::StartInstance { instance_id, .. }
                | StepKind::ShiftTraffic { instance_id, .. } = s.step
                {
                    keep.push(instance_id);
                }
            }
        }
        for inst in ctx.store.running_instances().await? {
            if !keep.contains(&inst.id) {
                tracing::info!(instance = %inst.id, "Stopping an instance nothing references any more.");
                ctx.stop_instance(&inst.id).await?;
            }
        }
        Ok(())
    }

    async fn reconcile(&mut self) -> Result<()> {
        let ctx = self.ctx.clone();
        ctx.sample_traffic().await;
        let trips = ctx.store.open_trips().await?;
        for r in ctx.store.active_rollouts().await? {
            let id = r.id.clone();
            let trip = trips.iter().find(|t| t.scope.covers(&r.env));
            let result = match (trip, r.phase) {
                // An open breaker holds progressive rollouts where they are (no rollback).
                (Some(_), Phase::Pending) => Ok(()),
                (Some(t), Phase::Progressing) => self.pause_for_breaker(r, t).await,
                (None, Phase::Paused)
                    if r.reason
                        .as_deref()
                        .is_some_and(|x| x.starts_with(BREAKER_PAUSE)) =>
                {
                    self.resume_after_breaker(r).await
                }
                _ => self.reconcile_rollout(r).await,
            };
            if let Err(e) = result {
                tracing::warn!(rollout = %id, error = format!("{e:#}"), "Rollout step failed; will retry.");
            }
        }
        for rec in ctx.store.unfinished_recoveries().await? {
            if rec.rollout_id.is_none() {
                self.run_recovery(rec).await?;
            }
        }
        Ok(())
    }

    async fn reconcile_rollout(&mut self, r: Rollout) -> Result<()> {
        match r.phase {
            Phase::Pending => self.start_canary(r).await,
            Phase::Progressing => self.sample(r).await,
            Phase::Failed => self.begin_recovery(r).await,
            Phase::Recovering => {
                let rec = self.ctx.store.recovery(&recovery_id_for(&r.id)).await?;
                self.run_recovery(rec).await
            }
            Phase::Paused => self.check_escalation(r).await,
            Phase::Promoted | Phase::Recovered => Ok(()),
        }
    }

    /// The effective steps: blue-green and all-at-once have one step of 100 % (the new colour
    /// is started and health-checked, then takes all traffic at once).
    fn steps_for(&self, service: &str) -> Result<Vec<Step>> {
        Ok(self.ctx.service(service)?.rollout.steps.clone())
    }

    async fn start_canary(&mut self, mut r: Rollout) -> Result<()> {
        let ctx = self.ctx.clone();
        let release = ctx.store.release(&r.to_release_id).await?;
        if r.canary_instance_id.is_none() {
            // Journal the instance id before the process exists, so a restart adopts it.
            r.canary_instance_id = Some(format!(
                "{}-{}-{}-{}",
                r.service,
                r.env,
                release.version,
                &r.id[r.id.len() - 6..]
            ));
            r.updated_at_ms = now_ms();
            ctx.store.update_rollout(&r).await?;
        }
        let canary_id = r.canary_instance_id.clone().unwrap_or_default();
        if let Err(e) = ctx.ensure_instance(&canary_id, &release, &r.env).await {
            let reason = format!("the new version did not start: {e:#}");
            return self
                .fail(r, reason, "deploy", json!({"error": format!("{e:#}")}))
                .await;
        }
        self.event(
            &r.id,
            EventKind::CanaryHealthy,
            json!({"instance": canary_id}),
        )
        .await?;
        let env = ctx.store.environment(&r.service, &r.env).await?;
        if env
            .as_ref()
            .and_then(|e| e.lkg_release_id.as_ref())
            .is_none()
        {
            // First deployment: nothing to compare with, so it simply becomes the baseline.
            return self
                .promote(
                    r,
                    "controller",
                    "first deployment of this environment: it becomes the baseline",
                )
                .await;
        }
        let steps = self.steps_for(&r.service)?;
        let now = now_ms();
        r.phase = Phase::Progressing;
        r.step_index = 0;
        r.step_started_at_ms = Some(now);
        r.canary_weight = steps.first().map_or(100.0, |s| s.weight);
        r.updated_at_ms = now;
        ctx.store.update_rollout(&r).await?;
        ctx.apply_routes(&r.service, &r.env).await?;
        self.event(
            &r.id,
            EventKind::CanaryStarted,
            json!({"weight": r.canary_weight}),
        )
        .await?;
        self.audit(
            "controller",
            EventKind::RolloutProgressing,
            &target(&r),
            "controller",
            json!({"weight": r.canary_weight, "step": 0}),
        )
        .await?;
        let watch = self.new_watch(&r, now).await?;
        self.watches.insert(r.id.clone(), watch);
        Ok(())
    }

    /// Builds the judge and replays the intervals stored so far (after a restart).
    async fn new_watch(&self, r: &Rollout, now: Millis) -> Result<Watch> {
        let ctx = &self.ctx;
        let settings = &ctx.service(&r.service)?.analysis;
        let mut judge = backstop_judge::build(settings);
        for interval in ctx.store.intervals(&r.id).await? {
            judge.observe(&interval);
        }
        let events = ctx.store.events(&r.id).await?;
        let canary_started_at = events
            .iter()
            .find(|e| e.kind == EventKind::CanaryStarted)
            .map_or(now, |e| e.at_ms);
        let first_request_seen = events
            .iter()
            .any(|e| e.kind == EventKind::CanaryFirstRequest);
        let (baseline, canary) = self.arm_versions(r).await?;
        if let Some(source) = ctx.signal_sources.get(&(r.service.clone(), r.env.clone()))
            && !events.iter().any(|e| e.kind == EventKind::AnalysisSource)
        {
            // Where the judged numbers come from, for whoever reads the rollout later.
            self.event(
                &r.id,
                EventKind::AnalysisSource,
                json!({"source": "prometheus", "queries": source.queries()}),
            )
            .await?;
        }
        let stats = self.stats_or_event(r).await?;
        let before = ctx
            .store
            .rollout_safeguards(&r.id)
            .await?
            .and_then(|s| s.baseline);
        // A degradation still open when the daemon stopped is still open.
        let degraded_since = events
            .iter()
            .rev()
            .find(|e| {
                e.kind == EventKind::EnvironmentDegraded
                    || e.kind == EventKind::EnvironmentRecovered
            })
            .filter(|e| e.kind == EventKind::EnvironmentDegraded)
            .map(|e| e.at_ms);
        Ok(Watch {
            judge: std::sync::Mutex::new(judge),
            last: (find(&stats, &baseline), find(&stats, &canary)),
            next_sample_at: now + settings.interval.as_millis() as Millis,
            canary_started_at,
            first_request_seen,
            failed_health_checks: 0,
            before,
            degraded_since,
        })
    }

    /// The traffic counters of `r`'s environment. When they cannot be read (a signal source
    /// down or a bad query), the rollout holds where it is (no step advances without data) and
    /// the reason becomes an `analysis.source_error` event, once per distinct reason.
    async fn stats_or_event(&self, r: &Rollout) -> Result<Vec<VersionStats>> {
        match self.ctx.traffic_stats(&r.service, &r.env).await {
            Ok(stats) => Ok(stats),
            Err(e) => {
                let reason = format!("{e:#}");
                let events = self.ctx.store.events(&r.id).await?;
                let last = events
                    .iter()
                    .rev()
                    .find(|ev| ev.kind == EventKind::AnalysisSourceError);
                if last.is_none_or(|ev| ev.detail["error"] != reason.as_str()) {
                    self.event(
                        &r.id,
                        EventKind::AnalysisSourceError,
                        json!({"error": reason}),
                    )
                    .await?;
                }
                Err(e)
            }
        }
    }

    async fn arm_versions(&self, r: &Rollout) -> Result<(String, String)> {
        let store = &self.ctx.store;
        let canary = store.release(&r.to_release_id).await?.version;
        let baseline = match &r.from_release_id {
            Some(id) => store.release(id).await?.version,
            None => String::new(),
        };
        Ok((baseline, canary))
    }

    /// Takes one interval of counts when due, asks the judge, and acts on the answer.
    async fn sample(&mut self, mut r: Rollout) -> Result<()> {
        let ctx = self.ctx.clone();
        let now = now_ms();
        if !self.watches.contains_key(&r.id) {
            let watch = self.new_watch(&r, now).await?;
            self.watches.insert(r.id.clone(), watch);
            return Ok(());
        }
        // Ticks come every 200 ms; the counters (a router socket, Prometheus queries) are read
        // only when an interval is due.
        if self
            .watches
            .get(&r.id)
            .is_some_and(|w| now < w.next_sample_at)
        {
            return Ok(());
        }
        let interval_ms = ctx.service(&r.service)?.analysis.interval.as_millis() as Millis;
        let (baseline_v, canary_v) = self.arm_versions(&r).await?;
        let stats = self.stats_or_event(&r).await?;
        let watch = self
            .watches
            .get_mut(&r.id)
            .ok_or_else(|| anyhow!("watch vanished"))?;
        let cur = (find(&stats, &baseline_v), find(&stats, &canary_v));
        let interval = Interval {
            t: (now - watch.canary_started_at) as f64 / 1000.0,
            baseline: delta(watch.last.0.as_ref(), cur.0.as_ref()),
            canary: delta(watch.last.1.as_ref(), cur.1.as_ref()),
        };
        ctx.store.append_interval(&r.id, &interval).await?;
        let (decision, report) = {
            let mut judge = watch
                .judge
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let decision = judge.observe(&interval);
            (decision, judge.report())
        };
        watch.last = cur.clone();
        watch.next_sample_at = now + interval_ms;
        // The proxy knows when the canary's first request came; a source that only has counters
        // (Prometheus) tells the interval in which requests first showed.
        let first_request = if watch.first_request_seen {
            None
        } else {
            cur.1
                .as_ref()
                .and_then(|c| c.first_request_at)
                .map(system_ms)
                .or_else(|| (interval.canary.requests > 0).then_some(now))
        };
        if first_request.is_some() {
            watch.first_request_seen = true;
        }
        // A shared degradation (the stable version far worse than before the rollout) is the
        // environment's, not the new version's: the judge compares the arms and does not fail
        // for it, but the rollout must not advance through it either. It holds, and people are
        // told; the judge keeps watching (a canary worse than the stable version still fails).
        let p99 = interval
            .baseline
            .latency_le_ms
            .as_deref()
            .and_then(|b| backstop_judge::hist::quantile(0.99, b));
        let environment = watch.before.as_ref().and_then(|before| {
            backstop_core::snapshot::environment_degraded(
                before,
                interval.baseline.requests,
                interval.baseline.errors,
                p99,
            )
        });
        let transition = match (environment, watch.degraded_since) {
            (Some(why), None) => {
                watch.degraded_since = Some(now);
                Some(EnvironmentChange::Degraded(why))
            }
            (None, Some(since)) if interval.baseline.requests >= DEGRADED_MIN_REQUESTS => {
                watch.degraded_since = None;
                Some(EnvironmentChange::Recovered {
                    held_ms: now - since,
                })
            }
            _ => None,
        };
        let degraded = watch.degraded_since.is_some();
        if let Some(at) = first_request {
            self.event_at(
                &r.id,
                at,
                EventKind::CanaryFirstRequest,
                json!({"version": canary_v}),
            )
            .await?;
        }
        match transition {
            Some(EnvironmentChange::Degraded(why)) => {
                let detail =
                    json!({"reason": why, "stable_version": baseline_v, "step": r.step_index});
                self.event(&r.id, EventKind::EnvironmentDegraded, detail.clone())
                    .await?;
                self.audit(
                    "controller",
                    EventKind::RolloutHeld,
                    &target(&r),
                    "environment",
                    detail.clone(),
                )
                .await?;
                self.notify(
                    &r,
                    EventKind::EnvironmentDegraded,
                    format!(
                        "{} in {} holds: {why}; the new version is not to blame so far, a person should look",
                        r.to_release_id, r.env
                    ),
                    detail,
                );
            }
            Some(EnvironmentChange::Recovered { held_ms }) => {
                let detail = json!({"held_ms": held_ms, "step": r.step_index});
                self.event(&r.id, EventKind::EnvironmentRecovered, detail.clone())
                    .await?;
                self.notify(
                    &r,
                    EventKind::EnvironmentRecovered,
                    format!(
                        "{} in {} goes on: the stable version is back to its usual figures",
                        r.to_release_id, r.env
                    ),
                    detail,
                );
            }
            None => {}
        }
        // Per-rollout breaker: the new version must keep answering its health check; after
        // `breaker.failed_checks` consecutive failures the rollout halts and rolls back, whatever
        // the traffic statistics say (a partial failure the counts may not show yet).
        if let Some(reason) = self.canary_health_breach(&r).await? {
            return self.fail(r, reason, "breaker", report).await;
        }
        if degraded && decision != Decision::Fail {
            // Held: the step's time starts again once the environment is healthy.
            r.step_started_at_ms = Some(now);
            r.updated_at_ms = now;
            ctx.store.update_rollout(&r).await?;
            return Ok(());
        }
        let steps = self.steps_for(&r.service)?;
        let step_index = usize::try_from(r.step_index).unwrap_or(0);
        match decide(
            &steps,
            step_index,
            r.step_started_at_ms.unwrap_or(now),
            now,
            decision,
        ) {
            Next::Wait => Ok(()),
            Next::Advance { index, weight } => {
                r.step_index = index as i64;
                r.step_started_at_ms = Some(now);
                r.canary_weight = weight;
                r.updated_at_ms = now;
                ctx.store.update_rollout(&r).await?;
                ctx.apply_routes(&r.service, &r.env).await?;
                self.event(
                    &r.id,
                    EventKind::StepAdvanced,
                    json!({"step": index, "weight": weight}),
                )
                .await?;
                self.audit(
                    "controller",
                    EventKind::RolloutStep,
                    &target(&r),
                    "schedule",
                    json!({"step": index, "weight": weight, "judge": report}),
                )
                .await?;
                Ok(())
            }
            Next::Promote => {
                r.verdict = Some(report);
                self.promote(r, "controller", "every step held without a failing verdict")
                    .await
            }
            Next::Fail { reason } => {
                debug_assert_eq!(decision, Decision::Fail);
                self.judged_bad(r, reason, report).await
            }
            Next::Pause { reason } => {
                r.phase = Phase::Paused;
                r.reason = Some(reason.clone());
                r.verdict = Some(report.clone());
                r.updated_at_ms = now;
                ctx.store.update_rollout(&r).await?;
                self.event(
                    &r.id,
                    EventKind::JudgeInconclusive,
                    json!({"reason": reason}),
                )
                .await?;
                self.audit(
                    "controller",
                    EventKind::RolloutPaused,
                    &target(&r),
                    "judge",
                    report,
                )
                .await?;
                Ok(())
            }
        }
    }

    async fn promote(&mut self, mut r: Rollout, actor: &str, why: &str) -> Result<()> {
        let ctx = self.ctx.clone();
        let now = now_ms();
        let old = ctx.store.environment(&r.service, &r.env).await?;
        let env = EnvironmentState {
            service: r.service.clone(),
            env: r.env.clone(),
            lkg_release_id: Some(r.to_release_id.clone()),
            stable_instance_id: r.canary_instance_id.clone(),
            previous_lkg_release_id: old.as_ref().and_then(|o| o.lkg_release_id.clone()),
        };
        r.phase = Phase::Promoted;
        r.canary_weight = 100.0;
        r.reason = Some(why.to_string());
        r.updated_at_ms = now;
        ctx.store.commit_promotion(&r, &env).await?;
        ctx.apply_routes(&r.service, &r.env).await?;
        self.watches.remove(&r.id);
        self.event(
            &r.id,
            EventKind::RolloutPromoted,
            json!({"release": r.to_release_id}),
        )
        .await?;
        self.audit(
            actor,
            EventKind::RolloutPromoted,
            &target(&r),
            if actor == "controller" {
                "controller"
            } else {
                "manual"
            },
            json!({
                "release": r.to_release_id, "reason": why, "judge": r.verdict,
            }),
        )
        .await?;
        tracing::info!(rollout = %r.id, release = %r.to_release_id, "Rollout promoted; the new version is now the last known good.");
        self.notify(
            &r,
            EventKind::RolloutPromoted,
            format!("{} promoted in {}: {why}", r.to_release_id, r.env),
            json!({"release": r.to_release_id}),
        );
        if let Some(previous) = old
            .and_then(|o| o.stable_instance_id)
            .filter(|p| Some(p) != r.canary_instance_id.as_ref())
        {
            let svc = ctx.service(&r.service)?;
            let delay = match svc.rollout.strategy {
                Strategy::BlueGreen => svc
                    .rollout
                    .rollback_window
                    .unwrap_or(backstop_config::DEFAULT_ROLLBACK_WINDOW),
                _ => svc.run.scale_down_delay,
            };
            let ctx = ctx.clone();
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                // Still unreferenced? (A rollback may have brought it back meanwhile.)
                let referenced = ctx.store.environments().await.map(|envs| {
                    envs.iter()
                        .any(|e| e.stable_instance_id.as_deref() == Some(previous.as_str()))
                });
                if let Ok(false) = referenced
                    && let Err(e) = ctx.stop_instance(&previous).await
                {
                    tracing::warn!(instance = %previous, error = format!("{e:#}"), "Scale-down of the previous version failed.");
                }
            });
        }
        Ok(())
    }

    async fn canary_health_breach(&mut self, r: &Rollout) -> Result<Option<String>> {
        let ctx = self.ctx.clone();
        let svc = ctx.service(&r.service)?;
        let Some(id) = &r.canary_instance_id else {
            return Ok(None);
        };
        let inst = ctx.store.instance(id).await?;
        let healthy = if svc.run.command_scripts().is_some() {
            true // script deployers report health through their own health script at start
        } else {
            backstop_drivers::process::check_health(
                inst.port,
                &svc.run.health.http,
                svc.run.health.timeout,
            )
            .await
            .is_ok()
        };
        let Some(watch) = self.watches.get_mut(&r.id) else {
            return Ok(None);
        };
        watch.failed_health_checks = if healthy {
            0
        } else {
            watch.failed_health_checks + 1
        };
        let limit = svc.breaker.failed_checks.max(1);
        Ok((watch.failed_health_checks >= limit).then(|| {
            format!("the new version failed {limit} health checks in a row (per-rollout breaker)")
        }))
    }

    /// The judge failed the rollout: classify how bad it is for users and run the configured
    /// workflow (roll back now, hold until acknowledged or a deadline, or only notify).
    async fn judged_bad(
        &mut self,
        mut r: Rollout,
        reason: String,
        report: serde_json::Value,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        let svc = ctx.service(&r.service)?;
        let impact = impact_of(&ctx.store.intervals(&r.id).await?);
        let severity = severity::classify(&impact, svc.tier);
        r.severity = Some(severity);
        let now = now_ms();
        self.event(
            &r.id,
            EventKind::JudgeFail,
            json!({"severity": severity, "impact": impact}),
        )
        .await?;
        self.record_failure_for_breaker(&r, now).await?;
        let action = svc.severity_action(severity);
        let hold = match action {
            SeverityAction::Rollback => {
                return self
                    .fail(
                        r,
                        format!("{reason} (severity {})", severity.as_str()),
                        "judge",
                        report,
                    )
                    .await;
            }
            SeverityAction::RollbackUnlessAcknowledged(within) => {
                r.escalation_deadline_ms = Some(now + within.as_millis() as Millis);
                format!(
                    "severity {}: rolls back at {} unless acknowledged (`backstop rollout acknowledge {}`)",
                    severity.as_str(),
                    backstop_core::format_ms(now + within.as_millis() as Millis),
                    r.id
                )
            }
            SeverityAction::Notify => {
                format!(
                    "severity {}: held for a person to promote or abort (policy: notify)",
                    severity.as_str()
                )
            }
        };
        r.phase = Phase::Paused;
        r.reason = Some(hold.clone());
        r.verdict = Some(report.clone());
        r.updated_at_ms = now;
        ctx.store.update_rollout(&r).await?;
        self.watches.remove(&r.id);
        self.event(
            &r.id,
            EventKind::RolloutHeld,
            json!({"reason": hold, "severity": severity}),
        )
        .await?;
        self.audit(
            "controller",
            EventKind::RolloutHeld,
            &target(&r),
            "judge",
            json!({"reason": hold, "severity": severity, "judge": report}),
        )
        .await?;
        self.notify(
            &r,
            EventKind::RolloutHeld,
            format!("{} held in {}: {hold}", r.to_release_id, r.env),
            json!({"severity": severity}),
        );
        Ok(())
    }

    /// A held rollout whose acknowledgement deadline passed is rolled back.
    async fn check_escalation(&mut self, r: Rollout) -> Result<()> {
        let (Some(deadline), None) = (r.escalation_deadline_ms, &r.acknowledged_by) else {
            return Ok(());
        };
        if now_ms() < deadline {
            return Ok(());
        }
        let evidence = r.verdict.clone().unwrap_or(json!({}));
        let reason = format!(
            "not acknowledged by {}: rolled back per the severity policy ({})",
            backstop_core::format_ms(deadline),
            r.severity.map_or("unknown", |s| s.as_str())
        );
        self.fail(r, reason, "escalation", evidence).await
    }

    /// Counts a judged failure towards the global breaker and trips it when the policy says so.
    async fn record_failure_for_breaker(&self, r: &Rollout, now: Millis) -> Result<()> {
        let ctx = &self.ctx;
        let policy = ctx.config.breaker();
        let within = policy.within.as_millis() as Millis;
        // The event for this failure is written by the caller just before.
        let failures = ctx.store.failures_since(now - within).await?;
        let key = TripScope::of_failure_in(policy.scope == BreakerScope::All, &r.env);
        if !breaker::should_trip(&key, &failures, now, policy.trips_after, within) {
            return Ok(());
        }
        if ctx.store.open_trips().await?.iter().any(|t| t.scope == key) {
            return Ok(());
        }
        let trip = backstop_core::model::BreakerTrip {
            id: uuid::Uuid::now_v7().to_string(),
            scope: key.clone(),
            tripped_at_ms: now,
            failures: json!(failures),
            reset_at_ms: None,
            reset_by: None,
            reset_reason: None,
        };
        ctx.store.create_trip(&trip).await?;
        tracing::warn!(scope = %key, failures = failures.len(), "Circuit breaker tripped; progressive rollouts in scope are paused.");
        self.audit(
            "controller",
            EventKind::BreakerTripped,
            &format!("breaker/{key}"),
            "policy",
            json!({
                "failures": failures, "trips_after": policy.trips_after, "within_ms": within,
            }),
        )
        .await
    }

    async fn pause_for_breaker(
        &mut self,
        mut r: Rollout,
        trip: &backstop_core::model::BreakerTrip,
    ) -> Result<()> {
        let reason = format!(
            "{BREAKER_PAUSE} for {} since {}; `backstop breaker reset --scope {}` resumes it",
            trip.scope,
            backstop_core::format_ms(trip.tripped_at_ms),
            trip.scope
        );
        r.phase = Phase::Paused;
        r.reason = Some(reason.clone());
        r.updated_at_ms = now_ms();
        self.ctx.store.update_rollout(&r).await?;
        self.watches.remove(&r.id);
        self.event(&r.id, EventKind::RolloutPaused, json!({"reason": reason}))
            .await?;
        self.audit(
            "controller",
            EventKind::RolloutPaused,
            &target(&r),
            "breaker",
            json!({"trip": trip.id, "scope": trip.scope}),
        )
        .await
    }

    async fn resume_after_breaker(&mut self, mut r: Rollout) -> Result<()> {
        let now = now_ms();
        r.phase = Phase::Progressing;
        r.reason = None;
        r.step_started_at_ms = Some(now);
        r.updated_at_ms = now;
        self.ctx.store.update_rollout(&r).await?;
        self.event(&r.id, EventKind::RolloutResumed, json!({}))
            .await?;
        self.audit(
            "controller",
            EventKind::RolloutResumed,
            &target(&r),
            EventKind::BreakerReset.as_str(),
            json!({}),
        )
        .await
    }

    async fn fail(
        &mut self,
        mut r: Rollout,
        reason: String,
        trigger: &str,
        evidence: serde_json::Value,
    ) -> Result<()> {
        let now = now_ms();
        r.phase = Phase::Failed;
        r.reason = Some(reason.clone());
        r.verdict = Some(evidence.clone());
        r.updated_at_ms = now;
        self.ctx.store.update_rollout(&r).await?;
        self.watches.remove(&r.id);
        // At `now`: the breaker below counts failures up to `now`, this one included.
        self.event_at(
            &r.id,
            now,
            EventKind::RolloutFailed,
            json!({"reason": reason, "trigger": trigger}),
        )
        .await?;
        if matches!(trigger, "deploy" | "breaker") {
            self.record_failure_for_breaker(&r, now).await?;
        }
        self.audit(
            if matches!(trigger, "judge" | "deploy" | "breaker" | "escalation") {
                "controller"
            } else {
                trigger
            },
            EventKind::RolloutFailed,
            &target(&r),
            trigger,
            json!({"reason": reason, "evidence": evidence}),
        )
        .await?;
        tracing::warn!(rollout = %r.id, reason = %reason, "Rollout failed; rolling back to the last known good.");
        self.notify(
            &r,
            EventKind::RolloutFailed,
            format!(
                "{} failed in {}; rolling back: {reason}",
                r.to_release_id, r.env
            ),
            json!({"trigger": trigger, "severity": r.severity}),
        );
        self.begin_recovery(r).await
    }

    /// Journals the whole recovery plan, then runs it.
    async fn begin_recovery(&mut self, mut r: Rollout) -> Result<()> {
        let ctx = self.ctx.clone();
        let env = ctx.store.environment(&r.service, &r.env).await?;
        let reason = r.reason.clone().unwrap_or_else(|| "rollout failed".into());
        let plan = match env
            .as_ref()
            .and_then(|e| Some((e.stable_instance_id.clone()?, e.lkg_release_id.clone()?)))
        {
            Some((stable, lkg)) => plan_canary_rollback(
                &stable,
                &lkg,
                r.canary_instance_id.as_deref(),
                &r.to_release_id,
                &reason,
            ),
            None => {
                let mut plan: Vec<StepKind> = r
                    .canary_instance_id
                    .iter()
                    .map(|id| StepKind::StopInstance {
                        instance_id: id.clone(),
                    })
                    .collect();
                plan.push(StepKind::MarkReleaseBad {
                    release_id: r.to_release_id.clone(),
                    reason: reason.clone(),
                });
                plan
            }
        };
        // The canary's slice goes back to the stable version whatever the schema says (the
        // stable version already serves everyone else on it); proven downs run once the canary
        // is gone when the database is past what the LKG runs on, and a refused schema step is
        // reported for a person instead of blocking the traffic shift.
        let lkg = env.as_ref().and_then(|e| e.lkg_release_id.clone());
        let plan = match lkg {
            Some(lkg) => match ctx.schema_decision(&r.service, &r.env, &lkg).await? {
                Some(SchemaDecision::RunDowns { downs, .. }) => with_schema_downs(plan, &downs),
                Some(SchemaDecision::Refuse {
                    reason, options, ..
                }) => {
                    self.event(
                        &r.id,
                        EventKind::SchemaRefused,
                        json!({"reason": reason, "options": options}),
                    )
                    .await?;
                    self.audit(
                        "controller",
                        EventKind::SchemaRefused,
                        &target(&r),
                        &reason,
                        json!({"options": options}),
                    )
                    .await?;
                    plan
                }
                _ => plan,
            },
            None => plan,
        };
        let plan = match env.as_ref().and_then(|e| e.lkg_release_id.as_deref()) {
            Some(lkg) => self.with_lkg_config(plan, &r.service, &r.env, lkg).await,
            None => plan,
        };
        let verify_s = ctx.service(&r.service)?.analysis.interval.as_secs().max(1);
        let plan = match env
            .as_ref()
            .and_then(|e| Some((e.stable_instance_id.clone()?, e.lkg_release_id.clone()?)))
        {
            Some((stable, lkg)) => with_verification(plan, &stable, &lkg, verify_s),
            None => plan,
        };
        let hooks = &ctx.service(&r.service)?.hooks;
        let plan = with_hooks(
            plan,
            hooks.before_rollback.as_deref(),
            hooks.after_rollback.as_deref(),
        );
        let rec = Recovery {
            id: recovery_id_for(&r.id),
            rollout_id: Some(r.id.clone()),
            service: r.service.clone(),
            env: r.env.clone(),
            actor: "controller".into(),
            trigger: EventKind::RolloutFailed.as_str().into(),
            reason,
            status: RecoveryStatus::Running,
            created_at_ms: now_ms(),
            finished_at_ms: None,
            steps: vec![],
        };
        match ctx.store.create_recovery(&rec, &plan).await {
            Ok(()) => {
                self.event(
                    &r.id,
                    EventKind::RecoveryStarted,
                    json!({"recovery": rec.id, "plan": plan}),
                )
                .await?;
                self.audit(
                    "controller",
                    EventKind::RecoveryStarted,
                    &format!("recovery/{}", rec.id),
                    EventKind::RolloutFailed.as_str(),
                    json!({"rollout": r.id, "plan": plan}),
                )
                .await?;
            }
            // Already journaled by an earlier attempt that crashed before the phase change.
            Err(StoreError::Conflict(_)) if ctx.store.recovery(&rec.id).await.is_ok() => {}
            Err(e) => return Err(e.into()),
        }
        r.phase = Phase::Recovering;
        r.updated_at_ms = now_ms();
        ctx.store.update_rollout(&r).await?;
        let rec = ctx.store.recovery(&rec.id).await?;
        self.run_recovery(rec).await
    }

    /// Runs every step not yet done, journaling intent before and outcome after each.
    async fn run_recovery(&mut self, rec: Recovery) -> Result<()> {
        let ctx = self.ctx.clone();
        for step in rec.steps.iter().filter(|s| s.status != StepStatus::Done) {
            let mut outcome = Err(anyhow!("not attempted"));
            for attempt in 1..=STEP_ATTEMPTS {
                ctx.store
                    .step_started(&rec.id, step.index, now_ms())
                    .await?;
                outcome = self.execute(&rec, &step.step).await;
                match &outcome {
                    Ok(_) => break,
                    Err(e) if attempt < STEP_ATTEMPTS => {
                        tracing::warn!(recovery = %rec.id, step = step.index, attempt, error = format!("{e:#}"), "Recovery step failed; retrying.");
                        tokio::time::sleep(Duration::from_millis(500 * u64::from(attempt))).await;
                    }
                    Err(_) => {}
                }
            }
            let now = now_ms();
            match outcome {
                Ok(detail) => {
                    ctx.store
                        .step_finished(&rec.id, step.index, now, true, &detail)
                        .await?;
                    self.audit("controller", EventKind::RecoveryStepDone, &format!("recovery/{}", rec.id), "plan", json!({
                        "step": step.step, "idempotency_key": step.idempotency_key, "outcome": detail,
                    }))
                    .await?;
                    if let (StepKind::ShiftTraffic { .. }, Some(rollout_id)) =
                        (&step.step, &rec.rollout_id)
                    {
                        self.traffic_restored(rollout_id, now).await?;
                    }
                }
                Err(e) => {
                    let detail = json!({"error": format!("{e:#}")});
                    ctx.store
                        .step_finished(&rec.id, step.index, now, false, &detail)
                        .await?;
                    ctx.store
                        .finish_recovery(&rec.id, RecoveryStatus::Failed, now)
                        .await?;
                    self.audit("controller", EventKind::RecoveryFailed, &format!("recovery/{}", rec.id), "plan", json!({
                        "step": step.step, "idempotency_key": step.idempotency_key, "error": format!("{e:#}"),
                    }))
                    .await?;
                    tracing::error!(recovery = %rec.id, step = step.index, error = format!("{e:#}"), "Recovery step failed for good; a person must take over.");
                    if let Some(rollout_id) = &rec.rollout_id {
                        let r = ctx.store.rollout(rollout_id).await?;
                        self.notify(&r, EventKind::RecoveryFailed, format!("recovery {} of {} stopped at step {}: `backstop recovery resume {}` after fixing it", rec.id, r.to_release_id, step.index + 1, rec.id), json!({"error": format!("{e:#}")}));
                    }
                    return Ok(());
                }
            }
        }
        let now = now_ms();
        ctx.store
            .finish_recovery(&rec.id, RecoveryStatus::Done, now)
            .await?;
        self.audit(
            "controller",
            EventKind::RecoveryDone,
            &format!("recovery/{}", rec.id),
            "plan",
            json!({"rollout": rec.rollout_id}),
        )
        .await?;
        if let Some(rollout_id) = &rec.rollout_id {
            let mut r = ctx.store.rollout(rollout_id).await?;
            r.phase = Phase::Recovered;
            r.updated_at_ms = now;
            ctx.store.update_rollout(&r).await?;
            // Time to restore, measured from when users first met the bad version, against the
            // service's MTTR target.
            let events = ctx.store.events(&r.id).await?;
            let started = events
                .iter()
                .find(|e| e.kind == EventKind::CanaryFirstRequest)
                .or_else(|| events.iter().find(|e| e.kind == EventKind::CanaryStarted))
                .map_or(r.created_at_ms, |e| e.at_ms);
            let mttr = ctx.service(&r.service)?.mttr().as_millis() as Millis;
            let took = now - started;
            self.event(&r.id, EventKind::RolloutRecovered, json!({"recovery": rec.id, "time_to_recover_ms": took, "mttr_target_ms": mttr, "mttr_breached": took > mttr}))
                .await?;
            self.notify(
                &r,
                EventKind::RecoveryDone,
                format!(
                    "{} rolled back in {}; traffic is on the last known good",
                    r.to_release_id, r.env
                ),
                json!({"time_to_recover_ms": took, "mttr_breached": took > mttr}),
            );
            if took > mttr {
                self.audit(
                    "controller",
                    EventKind::MttrBreached,
                    &target(&r),
                    "measurement",
                    json!({"took_ms": took, "target_ms": mttr}),
                )
                .await?;
            }
            tracing::info!(rollout = %r.id, "Rolled back: traffic is on the last known good and the release is marked bad.");
        }
        Ok(())
    }

    /// Records when users stopped seeing the bad version, and whether that met the rollback SLA
    /// (measured from the verdict to traffic restored).
    async fn traffic_restored(&self, rollout_id: &str, at: Millis) -> Result<()> {
        let ctx = &self.ctx;
        let r = ctx.store.rollout(rollout_id).await?;
        let events = ctx.store.events(rollout_id).await?;
        let detected = events
            .iter()
            .find(|e| e.kind == EventKind::RolloutFailed)
            .map(|e| e.at_ms);
        let sla = ctx
            .service(&r.service)?
            .rollback_sla_for(&r.env)
            .as_millis() as Millis;
        let took = detected.map(|d| at - d);
        let breached = took.is_some_and(|t| t > sla);
        self.event_at(rollout_id, at, EventKind::TrafficRestored, json!({"detection_to_restore_ms": took, "rollback_sla_ms": sla, "sla_breached": breached}))
            .await?;
        if breached {
            self.audit(
                "controller",
                EventKind::RollbackSlaBreached,
                &target(&r),
                "measurement",
                json!({"took_ms": took, "sla_ms": sla}),
            )
            .await?;
        }
        Ok(())
    }

    /// One recovery step against the real world. Each arm checks the target before acting.
    async fn execute(&self, rec: &Recovery, step: &StepKind) -> Result<serde_json::Value> {
        let ctx = &self.ctx;
        match step {
            StepKind::StartInstance {
                instance_id,
                release_id,
            } => {
                let release = ctx.store.release(release_id).await?;
                let inst = ctx.ensure_instance(instance_id, &release, &rec.env).await?;
                Ok(json!({"instance": inst.id, "pid": inst.pid, "port": inst.port}))
            }
            StepKind::ShiftTraffic {
                instance_id,
                release_id,
            } => {
                let release = ctx.store.release(release_id).await?;
                ctx.ensure_instance(instance_id, &release, &rec.env).await?;
                let mut env = ctx
                    .store
                    .environment(&rec.service, &rec.env)
                    .await?
                    .unwrap_or(EnvironmentState {
                        service: rec.service.clone(),
                        env: rec.env.clone(),
                        lkg_release_id: None,
                        stable_instance_id: None,
                        previous_lkg_release_id: None,
                    });
                env.stable_instance_id = Some(instance_id.clone());
                ctx.store.put_environment(&env).await?;
                if let Some(mut r) = ctx.store.active_rollout(&rec.service, &rec.env).await? {
                    r.canary_weight = 0.0;
                    r.updated_at_ms = now_ms();
                    ctx.store.update_rollout(&r).await?;
                }
                let routes = ctx.apply_routes(&rec.service, &rec.env).await?;
                Ok(
                    json!({"stable": routes.stable.map(|u| u.version), "canary": routes.canary.map(|u| u.version), "canary_weight": routes.canary_weight}),
                )
            }
            StepKind::WaitHealthy { instance_id } => {
                let inst = ctx.store.instance(instance_id).await?;
                let release = ctx.store.release(&inst.release_id).await?;
                let svc = ctx.service(&release.service)?;
                let deadline = tokio::time::Instant::now() + svc.run.health.start_timeout;
                loop {
                    match ctx.instance_health(svc, &release, &inst).await {
                        Ok(()) => break,
                        Err(e) if tokio::time::Instant::now() >= deadline => {
                            return Err(e.context(format!("instance {instance_id} not healthy")));
                        }
                        Err(_) => tokio::time::sleep(svc.run.health.interval).await,
                    }
                }
                Ok(json!({"instance": instance_id, "healthy": true}))
            }
            StepKind::VerifySignals {
                release_id,
                seconds,
            } => {
                let version = ctx.store.release(release_id).await?.version;
                let find_v =
                    |stats: Vec<VersionStats>| stats.into_iter().find(|s| s.version == version);
                let before = find_v(ctx.traffic_stats(&rec.service, &rec.env).await?);
                tokio::time::sleep(Duration::from_secs(*seconds)).await;
                let after = find_v(ctx.traffic_stats(&rec.service, &rec.env).await?);
                let counts = delta(before.as_ref(), after.as_ref());
                let ratio = if counts.requests == 0 {
                    None
                } else {
                    Some(counts.errors as f64 / counts.requests as f64)
                };
                // The baseline captured before the rollout, for comparison with what users get now.
                let baseline = match &rec.rollout_id {
                    Some(id) => ctx
                        .store
                        .rollout_safeguards(id)
                        .await?
                        .and_then(|g| g.baseline),
                    None => None,
                };
                Ok(
                    json!({"release": release_id, "window_s": seconds, "requests": counts.requests, "errors": counts.errors,
                          "error_ratio": ratio, "observed": after.is_some(),
                          "baseline": baseline.map(|b| json!({"version": b.version, "window_ms": b.window_ms, "requests": b.requests, "errors": b.errors, "error_ratio": b.error_ratio, "latency_p99_ms": b.latency_p99_ms}))}),
                )
            }
            StepKind::RunHook { name, command } => {
                let svc = ctx.service(&rec.service)?;
                let key = rec
                    .steps
                    .iter()
                    .find(|s| &s.step == step)
                    .map_or_else(String::new, |s| s.idempotency_key.clone());
                let mut runner =
                    backstop_drivers::command::CommandDeployer::new(command.clone(), "true");
                runner.timeout = svc.hooks.timeout;
                runner.retries = 0;
                let mut vars = svc.run.env.clone();
                vars.insert(
                    backstop_drivers::command::IDEMPOTENCY_KEY_VAR.into(),
                    key.clone(),
                );
                vars.insert("BACKSTOP_SERVICE".into(), rec.service.clone());
                vars.insert("BACKSTOP_ENV".into(), rec.env.clone());
                vars.insert("BACKSTOP_RECOVERY_ID".into(), rec.id.clone());
                let out = runner
                    .deploy(&vars)
                    .await
                    .with_context(|| format!("hook {name}"))?;
                Ok(
                    json!({"hook": name, "idempotency_key": key, "exit_code": out.exit_code, "stdout": out.stdout, "stderr": out.stderr}),
                )
            }
            StepKind::RunMigrationDown {
                version,
                name,
                down_sha256,
            } => {
                let outcome = ctx
                    .run_migration_down(&rec.service, &rec.env, version, down_sha256)
                    .await?;
                Ok(json!({"migration": version, "name": name,
                          "outcome": if outcome == backstop_migrate::apply::DownOutcome::Ran { "ran" } else { "already_undone" }}))
            }
            StepKind::RestoreConfig { snapshot, manifest } => {
                let out = ctx
                    .restore_manifest(&rec.service, &rec.env, *snapshot, manifest, true)
                    .await?;
                Ok(json!(out))
            }
            StepKind::StopInstance { instance_id } => {
                ctx.stop_instance(instance_id).await?;
                Ok(json!({"stopped": instance_id}))
            }
            StepKind::MarkReleaseBad { release_id, reason } => {
                ctx.store.mark_release_bad(release_id, reason).await?;
                Ok(json!({"release": release_id, "status": "bad"}))
            }
            StepKind::SetLkg {
                release_id,
                instance_id,
            } => {
                let mut env = ctx
                    .store
                    .environment(&rec.service, &rec.env)
                    .await?
                    .ok_or_else(|| {
                        anyhow!("environment {}/{} has no state", rec.service, rec.env)
                    })?;
                env.lkg_release_id = Some(release_id.clone());
                env.stable_instance_id = Some(instance_id.clone());
                env.previous_lkg_release_id = None;
                ctx.store.put_environment(&env).await?;
                Ok(json!({"lkg": release_id}))
            }
        }
    }

    async fn handle(&mut self, cmd: Command) {
        match cmd {
            Command::Rollout {
                action,
                rollout_id,
                actor,
                reason,
                reply,
            } => {
                let result = match action {
                    RolloutAction::Promote => {
                        self.manual_promote(&rollout_id, &actor, &reason).await
                    }
                    RolloutAction::Abort => self.manual_abort(&rollout_id, &actor, &reason).await,
                    RolloutAction::Acknowledge => {
                        self.acknowledge(&rollout_id, &actor, &reason).await
                    }
                };
                let _ = reply.send(result);
            }
            Command::Resume {
                recovery_id,
                actor,
                reply,
            } => {
                let result = self.resume(&recovery_id, &actor).await;
                let _ = reply.send(result);
            }
            Command::Rollback {
                service,
                env,
                actor,
                reason,
                reply,
            } => {
                let result = self.manual_rollback(&service, &env, &actor, &reason).await;
                let _ = reply.send(result);
            }
        }
    }

    async fn manual_promote(
        &mut self,
        id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Rollout, ApiError> {
        let r = self.ctx.store.rollout(id).await?;
        if !matches!(r.phase, Phase::Progressing | Phase::Paused) {
            return Err(ApiError::conflict(format!(
                "rollout {id} is {}; only a progressing or paused rollout can be promoted",
                r.phase
            )));
        }
        self.promote(r, actor, &format!("promoted by {actor}: {reason}"))
            .await?;
        Ok(self.ctx.store.rollout(id).await?)
    }

    /// A person takes a held rollout over: the escalation deadline no longer applies; it waits
    /// for their promote or abort.
    async fn acknowledge(
        &mut self,
        id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Rollout, ApiError> {
        let mut r = self.ctx.store.rollout(id).await?;
        if r.phase != Phase::Paused {
            return Err(ApiError::conflict(format!(
                "rollout {id} is {}; only a held rollout can be acknowledged",
                r.phase
            )));
        }
        if let Some(by) = &r.acknowledged_by {
            return Err(ApiError::conflict(format!(
                "rollout {id} was already acknowledged by {by}"
            )));
        }
        r.acknowledged_by = Some(actor.to_string());
        r.updated_at_ms = now_ms();
        self.ctx.store.update_rollout(&r).await?;
        self.event(
            &r.id,
            EventKind::RolloutAcknowledged,
            json!({"actor": actor, "reason": reason}),
        )
        .await?;
        self.audit(
            actor,
            EventKind::RolloutAcknowledged,
            &target(&r),
            "manual",
            json!({"reason": reason, "severity": r.severity}),
        )
        .await?;
        Ok(r)
    }

    /// Re-runs a recovery that stopped on a failed step, from that step on.
    async fn resume(&mut self, id: &str, actor: &str) -> Result<Recovery, ApiError> {
        let ctx = self.ctx.clone();
        let rec = ctx.store.recovery(id).await?;
        if rec.status != RecoveryStatus::Failed {
            return Err(ApiError::conflict(format!(
                "recovery {id} is {}; only a failed recovery can be resumed",
                rec.status
            )));
        }
        ctx.store.reopen_recovery(id).await?;
        self.audit(
            actor,
            EventKind::RecoveryResumed,
            &format!("recovery/{id}"),
            "manual",
            json!({}),
        )
        .await?;
        let rec = ctx.store.recovery(id).await?;
        self.run_recovery(rec).await?;
        Ok(ctx.store.recovery(id).await?)
    }

    async fn manual_abort(
        &mut self,
        id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Rollout, ApiError> {
        let r = self.ctx.store.rollout(id).await?;
        if !matches!(r.phase, Phase::Pending | Phase::Progressing | Phase::Paused) {
            return Err(ApiError::conflict(format!(
                "rollout {id} is {}; nothing to abort",
                r.phase
            )));
        }
        self.fail(
            r,
            format!("aborted by {actor}: {reason}"),
            actor,
            json!({"reason": reason}),
        )
        .await?;
        Ok(self.ctx.store.rollout(id).await?)
    }

    async fn manual_rollback(
        &mut self,
        service: &str,
        env: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Recovery, ApiError> {
        let ctx = self.ctx.clone();
        if let Some(r) = ctx.store.active_rollout(service, env).await? {
            if matches!(r.phase, Phase::Failed | Phase::Recovering) {
                return Err(ApiError::conflict(format!(
                    "{service}/{env} is already rolling back (rollout {})",
                    r.id
                )));
            }
            let id = r.id.clone();
            self.fail(
                r,
                format!("rollback requested by {actor}: {reason}"),
                actor,
                json!({"reason": reason}),
            )
            .await?;
            return Ok(ctx.store.recovery(&recovery_id_for(&id)).await?);
        }
        let state = ctx.store.environment(service, env).await?.ok_or_else(|| {
            ApiError::conflict(format!("{service}/{env} has never been deployed"))
        })?;
        let (Some(previous), Some(current)) = (
            state.previous_lkg_release_id.clone(),
            state.lkg_release_id.clone(),
        ) else {
            return Err(ApiError::conflict(format!(
                "{service}/{env} has no earlier known-good release to go back to"
            )));
        };
        let version = ctx.store.release(&previous).await?.version;
        let rec_id = format!("rec-{}", uuid::Uuid::now_v7());
        // An instance of the previous release that still runs (blue-green rollback window, or a
        // scale-down not yet done) is adopted by the start step: the switch back is one step.
        let warm = ctx
            .store
            .running_instances()
            .await?
            .into_iter()
            .find(|i| i.release_id == previous && i.env == env);
        let new_instance = match warm {
            Some(i) => i.id,
            None => format!("{service}-{env}-{version}-{}", &rec_id[rec_id.len() - 6..]),
        };
        let plan = plan_redeploy_previous(
            &new_instance,
            &previous,
            state.stable_instance_id.as_deref(),
            &current,
            reason,
        );
        // Decided before anything is touched: a refusal changes nothing.
        let plan = match ctx
            .schema_decision(service, env, &previous)
            .await
            .map_err(|e| ApiError::internal(format!("{e:#}")))?
        {
            Some(SchemaDecision::RunDowns { downs, .. }) => with_schema_downs(plan, &downs),
            Some(SchemaDecision::Refuse {
                reason: why,
                options,
                ..
            }) => {
                self.audit(
                    actor,
                    EventKind::RollbackRefused,
                    &format!("environment/{service}/{env}"),
                    &why,
                    json!({"release": previous, "options": options}),
                )
                .await?;
                return Err(ApiError::conflict(format!(
                    "rollback of {service}/{env} to {previous} refused: {why}. Options: {}",
                    options.join("; ")
                )));
            }
            _ => plan,
        };
        let plan = self.with_lkg_config(plan, service, env, &previous).await;
        let svc = ctx
            .service(service)
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        let plan = with_verification(
            plan,
            &new_instance,
            &previous,
            svc.analysis.interval.as_secs().max(1),
        );
        let hooks = &svc.hooks;
        let plan = with_hooks(
            plan,
            hooks.before_rollback.as_deref(),
            hooks.after_rollback.as_deref(),
        );
        let rec = Recovery {
            id: rec_id.clone(),
            rollout_id: None,
            service: service.into(),
            env: env.into(),
            actor: actor.into(),
            trigger: "manual".into(),
            reason: reason.into(),
            status: RecoveryStatus::Running,
            created_at_ms: now_ms(),
            finished_at_ms: None,
            steps: vec![],
        };
        ctx.store.create_recovery(&rec, &plan).await?;
        self.audit(
            actor,
            EventKind::RecoveryStarted,
            &format!("recovery/{rec_id}"),
            "manual",
            json!({"reason": reason, "plan": plan}),
        )
        .await?;
        let rec = ctx.store.recovery(&rec_id).await?;
        self.run_recovery(rec).await?;
        Ok(ctx.store.recovery(&rec_id).await?)
    }

    /// Adds a [`StepKind::RestoreConfig`] to a plan back to `lkg` when the environment's config
    /// files now differ from the snapshot taken with the rollout that made `lkg` good. Never
    /// blocks a recovery: a snapshot that cannot be read is logged and the plan goes on without.
    async fn with_lkg_config(
        &self,
        plan: Vec<StepKind>,
        service: &str,
        env: &str,
        lkg: &str,
    ) -> Vec<StepKind> {
        match self.lkg_config_restore(service, env, lkg).await {
            Ok(Some((version, manifest))) => with_config_restore(plan, version, &manifest),
            Ok(None) => plan,
            Err(e) => {
                tracing::warn!(
                    service,
                    env,
                    lkg,
                    error = format!("{e:#}"),
                    "Cannot compare the config with the last known good's snapshot; recovering without a config restore."
                );
                plan
            }
        }
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
        let Some(version) = ctx
            .store
            .rollout_safeguards(&r.id)
            .await?
            .and_then(|g| g.config_snapshot)
        else {
            return Ok(None);
        };
        let snap = ctx.store.config_snapshot(service, env, version).await?;
        let target = ctx.snapshot_manifest(&snap.manifest)?;
        let live = ctx
            .live_params(service, env)
            .await?
            .map(|l| l.manifest)
            .unwrap_or_default();
        Ok((!target.same_files(&live)).then_some((version, snap.manifest)))
    }

    /// Sends a webhook notification for a rollout (queued; never blocks or fails the caller).
    fn notify(&self, r: &Rollout, kind: EventKind, summary: String, detail: serde_json::Value) {
        if let Some(n) = self.ctx.notifiers.get(&r.service) {
            n.notify(backstop_drivers::notify::Notification {
                id: format!("{}/{kind}", r.id),
                kind: kind.to_string(),
                service: r.service.clone(),
                env: r.env.clone(),
                summary,
                detail,
                at_ms: now_ms(),
            });
        }
    }

    async fn event(
        &self,
        rollout_id: &str,
        kind: EventKind,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.event_at(rollout_id, now_ms(), kind, detail).await
    }

    async fn event_at(
        &self,
        rollout_id: &str,
        at_ms: Millis,
        kind: EventKind,
        detail: serde_json::Value,
    ) -> Result<()> {
        self.ctx
            .store
            .add_event(&Event {
                at_ms,
                rollout_id: rollout_id.to_string(),
                kind,
                detail,
            })
            .await
            .context("recording a timeline event")
    }

    async fn audit(
        &self,
        actor: &str,
        action: EventKind,
        target: &str,
        trigger: &str,
        evidence: serde_json::Value,
    ) -> Result<()> {
        crate::audit(&self.ctx, actor, action, target, trigger, evidence).await
    }
}

fn target(r: &Rollout) -> String {
    format!("rollout/{}", r.id)
}

/// Recoveries of failed rollouts have ids derived from the rollout, so journaling one twice
/// (after a crash between the journal write and the phase change) is caught as a conflict.
pub fn recovery_id_for(rollout_id: &str) -> String {
    format!("rec-{rollout_id}")
}

fn find(stats: &[VersionStats], version: &str) -> Option<VersionStats> {
    stats.iter().find(|s| s.version == version).cloned()
}

fn system_ms(t: SystemTime) -> Millis {
    t.duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as Millis)
}

/// Counts during one interval from two cumulative snapshots. A counter that went down (the
/// proxy restarted with the daemon) counts from zero.
pub fn delta(before: Option<&VersionStats>, after: Option<&VersionStats>) -> ArmCounts {
    let Some(after) = after else {
        return ArmCounts::default();
    };
    let increments =
        match before.filter(|b| b.requests <= after.requests && b.errors <= after.errors) {
            Some(b) => after.since(b),
            None => after.clone(),
        };
    // Routers without latency data (HAProxy, nginx) have no buckets: no latency signal then.
    let latency =
        (!increments.latency_buckets_ms.is_empty()).then_some(increments.latency_buckets_ms);
    ArmCounts {
        requests: increments.requests,
        errors: increments.errors,
        latency_le_ms: latency,
    }
}

/// What the canary did versus the baseline over all stored intervals.
pub fn impact_of(intervals: &[Interval]) -> severity::Impact {
    let mut impact = severity::Impact::default();
    let mut hist: [Vec<(f64, u64)>; 2] = [Vec::new(), Vec::new()];
    for i in intervals {
        impact.canary_requests += i.canary.requests;
        impact.canary_errors += i.canary.errors;
        impact.baseline_requests += i.baseline.requests;
        impact.baseline_errors += i.baseline.errors;
        for (arm, h) in [&i.baseline, &i.canary].into_iter().zip(hist.iter_mut()) {
            if let Some(buckets) = &arm.latency_le_ms {
                if h.is_empty() {
                    *h = buckets.iter().map(|(le, _)| (*le, 0)).collect();
                }
                for ((_, total), (_, n)) in h.iter_mut().zip(buckets) {
                    *total += n;
                }
            }
        }
    }
    impact.baseline_p99_ms = backstop_judge::hist::quantile(0.99, &hist[0]);
    impact.canary_p99_ms = backstop_judge::hist::quantile(0.99, &hist[1]);
    impact
}

#[cfg(test)]
mod tests {
    use super::*;

    fn stats(requests: u64, errors: u64) -> VersionStats {
        VersionStats {
            version: "v".into(),
            requests,
            errors,
            latency_buckets_ms: vec![(5.0, requests / 2), (f64::INFINITY, requests)],
            latency_sum_ms: 0.0,
            first_request_at: None,
            last_error_at: None,
        }
    }

    #[test]
    fn interval_counts_are_increments() {
        let d = delta(Some(&stats(10, 1)), Some(&stats(30, 4)));
        assert_eq!((d.requests, d.errors), (20, 3));
        assert_eq!(d.latency_le_ms, Some(vec![(5.0, 10), (f64::INFINITY, 20)]));
    }

    #[test]
    fn a_reset_counter_counts_from_zero_and_a_missing_arm_is_empty() {
        let d = delta(Some(&stats(100, 9)), Some(&stats(7, 1)));
        assert_eq!((d.requests, d.errors), (7, 1));
        assert_eq!(delta(Some(&stats(1, 0)), None), ArmCounts::default());
    }
}
