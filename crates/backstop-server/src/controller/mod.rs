//! The rollout controller and the recovery executor: one task, the only writer of rollout
//! transitions. It is level-triggered: every tick it reads the stored state and moves each
//! unfinished rollout one step; nothing it needs lives only in memory (judges are rebuilt by
//! replaying the stored intervals), so a controller restarted after `kill -9` simply carries on.
//!
//! One idea per file: [`canary`] moves a rollout through its steps, [`verdict`] runs a failing
//! verdict's severity workflow, [`breaker`] pauses and resumes for the global breaker,
//! [`recovery`] journals and runs recovery plans ([`execute`] runs one step), [`commands`]
//! serves what people ask, and [`journal`] writes what happened.

mod breaker;
mod canary;
mod commands;
mod error;
mod execute;
mod fail_safe;
mod groups;
mod journal;
mod leases;
mod recovery;
mod routed;
mod ships;
mod signals;
mod supervise;
mod verdict;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Result;
use backstop_core::event::EventKind;
use backstop_core::model::{Phase, ReplicaRecord, Rollout};
use backstop_core::reconcile::{self, Action};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Ctx;

pub use commands::{Command, RolloutAction};
pub use error::ControllerError;
pub use fail_safe::{StoreHealth, StoreOutage};
pub use leases::{LEASE_TTL, RENEW_EVERY, env_key, group_key, recovery_key, rollout_key, ship_key};
pub use recovery::recovery_id_for;
pub use signals::delta;
pub use supervise::{Supervised, SupervisionState};

use canary::Watch;
use journal::Record;

/// How often the controller looks at its rollouts when nothing wakes it.
const TICK: Duration = Duration::from_millis(200);

/// How often this daemon records that it is alive (`GET /api/v1/cluster`). The write is also
/// the fail-safe's probe of an idle store: a disk that fills while nothing else writes is
/// noticed within this time.
pub const HEARTBEAT_EVERY: Duration = Duration::from_secs(2);

/// With several replicas, an instance younger than this is not collected as garbage: another
/// replica may have just started it.
const GARBAGE_AFTER_MS: i64 = 60_000;

/// A replica whose last heartbeat is older than this is `gone`.
pub const LIVE_WITHIN: Duration = Duration::from_secs(10);

pub struct Controller {
    ctx: Arc<Ctx>,
    commands: mpsc::Receiver<Command>,
    watches: HashMap<String, Watch>,
    /// The previous version's instances kept warm after a promotion (blue-green rollback
    /// window, scale-down delay), with when they are scaled down. Supervised like the stable
    /// one until then; owned by this task so a scale-down never races a restart.
    warm: HashMap<String, tokio::time::Instant>,
    /// The leases this replica holds: the work it drives ([`leases`]).
    held: leases::HeldLeases,
    /// How work is shared: live replicas, and pieces of work seen in the last pass.
    share: leases::Share,
    /// Warm instances whose scale-down is under way (not to be taken for warm again).
    scaling_down: std::collections::HashSet<String>,
    /// The unhealthy instances of each partial failure last reported, by service,
    /// environment and role (`stable`, `warm`): reported once per set.
    partial_reported: HashMap<(String, String, String), Vec<String>>,
    /// Per serving version (its first instance's id): the test of its instances' errors
    /// against each other, and the counts it last read ([`supervise`]).
    outliers: HashMap<String, supervise::OutlierWatch>,
}

impl Controller {
    pub fn new(ctx: Arc<Ctx>, commands: mpsc::Receiver<Command>) -> Self {
        Self {
            ctx,
            commands,
            watches: HashMap::new(),
            warm: HashMap::new(),
            held: leases::HeldLeases::default(),
            share: leases::Share::default(),
            scaling_down: std::collections::HashSet::new(),
            partial_reported: HashMap::new(),
            outliers: HashMap::new(),
        }
    }

    pub async fn run(mut self, cancel: CancellationToken) {
        tokio::spawn(leases::keep(
            self.ctx.clone(),
            self.held.clone(),
            cancel.clone(),
        ));
        if let Err(e) = self.startup().await {
            tracing::error!(
                error = format!("{e:#}"),
                "Controller start-up reconciliation failed; retrying each tick."
            );
        }
        let mut last_supervised = tokio::time::Instant::now();
        let mut last_beat: Option<tokio::time::Instant> = None;
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
            if self.in_fail_safe() {
                // No step starts while nothing can be journaled; probe until writes work.
                match self.try_leave_fail_safe().await {
                    Ok(true) => {}
                    Ok(false) => continue,
                    Err(e) => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "Leaving fail-safe failed; will retry."
                        );
                        continue;
                    }
                }
            }
            if last_beat.is_none_or(|at| at.elapsed() >= HEARTBEAT_EVERY) {
                last_beat = Some(tokio::time::Instant::now());
                let beat = ReplicaRecord {
                    last_heartbeat_ms: self.ctx.clock.now_ms(),
                    ..self.ctx.replica.clone()
                };
                if let Err(e) = self.ctx.store.heartbeat(&beat).await
                    && self.failed(e.into(), "Heartbeat").await
                {
                    continue;
                }
                self.count_live_replicas(beat.last_heartbeat_ms).await;
            }
            if let Err(e) = self.serve_passed_on().await {
                self.failed(e, "Commands passed on by other replicas").await;
            }
            if let Err(e) = self.reconcile().await {
                self.failed(e, "Reconcile pass").await;
            }
            if last_supervised.elapsed() >= supervise::SUPERVISE_EVERY && !self.in_fail_safe() {
                last_supervised = tokio::time::Instant::now();
                if let Err(e) = self.supervise().await {
                    self.failed(e, "Supervision pass").await;
                }
            }
        }
    }

    /// What a failed pass (`what`) leads to: the fail-safe when the store refused a write
    /// (returns true), else a warning and a retry at the next tick.
    async fn failed(&mut self, e: anyhow::Error, what: &str) -> bool {
        match fail_safe::write_failure(&e) {
            Some(reason) => {
                self.enter_fail_safe(reason).await;
                true
            }
            None => {
                tracing::warn!(error = format!("{e:#}"), "{what} failed; will retry.");
                false
            }
        }
    }

    /// After a (re)start: bring back what the store says runs, route traffic to it, finish
    /// interrupted recoveries, and stop leftovers nobody references.
    async fn startup(&mut self) -> Result<()> {
        let ctx = self.ctx.clone();
        if ctx.exclusive_store {
            // No other daemon can run on this store: what a crashed predecessor held is ours
            // now, without waiting for its leases to expire.
            ctx.store.expire_others_leases(&ctx.replica.id).await?;
        }
        // Users first: the built-in proxies start empty, so they get what served before the
        // restart at once; bringing instances back (each passing its health check) may take
        // up to their start timeout, and the routes are applied again after it.
        for (service, env) in ctx.drivers.routers.keys() {
            if let Err(e) = ctx.apply_routes(service, env).await {
                tracing::warn!(service = %service, env = %env, error = format!("{e:#}"), "Could not restore routes before the instances were checked.");
            }
        }
        for env in ctx.store.environments().await? {
            if let Some(stable) = env.stable_instance_id.clone() {
                let key = env_key(&env.service, &env.env);
                self.with_lease(&key, async |me| {
                    let rec = me.ctx.store.instance(&stable).await?;
                    let release = me.ctx.store.release(&rec.release_id).await?;
                    me.ctx.ensure_instance(&stable, &release, &env.env).await
                })
                .await?;
            }
        }
        for r in ctx.store.active_rollouts().await? {
            if matches!(r.phase, Phase::Progressing | Phase::Paused)
                && let Some(id) = r.canary_instance_id.clone()
            {
                self.with_lease(&rollout_key(&r.id), async |me| {
                    let release = me.ctx.store.release(&r.to_release_id).await?;
                    me.ctx.ensure_instance(&id, &release, &r.env).await
                })
                .await?;
            }
        }
        for (service, env) in ctx.drivers.routers.keys() {
            ctx.apply_routes(service, env).await?;
        }
        self.collect_garbage().await?;
        self.record(Record::audit_only(
            "controller",
            EventKind::ControllerStarted,
            "controller".into(),
            "start",
            json!({}),
        ))
        .await
    }

    /// Stops running instances that no environment, rollout or recovery references. The
    /// previous version's instance is kept warm, as after a promotion: a restart must not take
    /// away a rollback in one switch (its window starts again, erring on the side of keeping it).
    async fn collect_garbage(&mut self) -> Result<()> {
        let ctx = self.ctx.clone();
        let environments = ctx.store.environments().await?;
        let mut keep = supervise::in_use(&ctx, &environments).await?;
        for inst in ctx.store.running_instances().await? {
            // Each environment's instances are collected by the holder of its lease; with other
            // replicas about, not one they may have started a moment ago and not yet recorded
            // as a rollout's canary.
            let young = ctx.clock.now_ms() - inst.started_at_ms < GARBAGE_AFTER_MS;
            if (!ctx.exclusive_store && young)
                || self
                    .lease(&env_key(&inst.service, &inst.env))
                    .await?
                    .is_none()
            {
                continue;
            }
            let previous = environments
                .iter()
                .any(|e| supervise::is_previous_version(e, &inst));
            if previous && !keep.contains(&inst.id) && !self.warm.contains_key(&inst.id) {
                tracing::info!(instance = %inst.id, "Keeping the previous version's instance warm.");
                self.keep_warm(&inst.service, inst.id.clone())?;
                keep.push(inst.id.clone());
            }
            // A version's further instances go with its first, as many as `run.instances` says
            // now (lowering it retires the extra ones at the next start).
            let first = backstop_core::partial::primary_of(&inst.id);
            let kept = (keep.iter().any(|k| k == first) || self.warm.contains_key(first))
                && ctx
                    .replica_ids(&inst.service, first)
                    .map_or(true, |ids| ids.contains(&inst.id));
            if !kept {
                tracing::info!(instance = %inst.id, "Stopping an instance nothing references any more.");
                let id = inst.id.clone();
                self.with_lease(&env_key(&inst.service, &inst.env), async |me| {
                    me.ctx.stop_instance(&id).await
                })
                .await?;
            }
        }
        Ok(())
    }

    async fn reconcile(&mut self) -> Result<()> {
        let ctx = self.ctx.clone();
        ctx.sample_traffic().await;
        let trips = ctx.store.open_trips().await?;
        let mut current = Vec::new();
        for r in ctx.store.active_rollouts().await? {
            let id = r.id.clone();
            let key = rollout_key(&id);
            current.push(key.clone());
            let trip = trips.iter().find(|t| t.scope.covers(&r.env));
            let action = reconcile::act(&r, trip, ctx.clock.now_ms());
            let step = self
                .with_lease_in_share(&key, async |me| me.execute_action(r, action).await)
                .await;
            if let Err(e) = step {
                if fail_safe::write_failure(&e).is_some() {
                    return Err(e);
                }
                tracing::warn!(rollout = %id, error = format!("{e:#}"), "Rollout step failed; will retry.");
            }
        }
        for (run, _) in ctx.store.group_runs(false, None).await? {
            let key = group_key(&run.id);
            current.push(key.clone());
            let step = self
                .with_lease_in_share(&key, async |me| me.advance_group(&run.id).await)
                .await;
            if let Err(e) = step {
                if fail_safe::write_failure(&e).is_some() {
                    return Err(e);
                }
                tracing::warn!(group_run = %run.id, error = format!("{e:#}"), "Group run step failed; will retry.");
            }
        }
        for (ship, _) in ctx.store.ships(false, None).await? {
            let key = ship_key(&ship.id);
            current.push(key.clone());
            let step = self
                .with_lease_in_share(&key, async |me| Box::pin(me.advance_ship(&ship.id)).await)
                .await;
            if let Err(e) = step {
                if fail_safe::write_failure(&e).is_some() {
                    return Err(e);
                }
                tracing::warn!(ship = %ship.id, error = format!("{e:#}"), "Ship step failed; will retry.");
            }
        }
        for rec in ctx.store.unfinished_recoveries().await? {
            if rec.rollout_id.is_none() {
                let key = recovery_key(&rec.id);
                current.push(key.clone());
                self.with_lease_in_share(&key, async |me| me.run_recovery(rec).await)
                    .await?;
            }
        }
        let environments = ctx.store.environments().await?.len();
        self.share.work = current.len() + environments;
        current.extend(
            self.held
                .keys()
                .into_iter()
                .filter(|k| k.starts_with("env/")),
        );
        self.release_done(&current).await;
        self.shed_surplus().await;
        Ok(())
    }

    /// Does what [`reconcile::act`] decided for `r`.
    async fn execute_action(&mut self, r: Rollout, action: Action) -> Result<()> {
        match action {
            Action::Wait => Ok(()),
            Action::StartCanary => self.start_canary(r).await,
            Action::Analyse => self.sample(r).await,
            Action::PauseForBreaker {
                reason,
                trip_id,
                scope,
            } => self.pause_for_breaker(r, reason, &trip_id, &scope).await,
            Action::ResumeAfterBreaker => self.resume_after_breaker(r).await,
            Action::Escalate { reason } => {
                let evidence = r.verdict.clone().unwrap_or(json!({}));
                self.fail(r, reason, "escalation", evidence).await
            }
            Action::BeginRecovery => self.begin_recovery(r).await,
            Action::ContinueRecovery => {
                let rec = self.ctx.store.recovery(&recovery_id_for(&r.id)).await?;
                self.run_recovery(rec).await
            }
        }
    }
}
