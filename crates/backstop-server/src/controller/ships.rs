//! Ships: what [`backstop_core::ship::next`] decides, done. Every rollout and recovery a ship
//! makes has an id derived from the ship and its wave, so whatever this task did before a crash
//! is found again, never done twice: a rollout already stored is the environment's ship
//! rollout; a recovery already stored is its way back, which the reconcile pass runs (under its
//! own lease) from its first step not journaled as done. A bake keeps two counters in the ship,
//! so a restarted controller goes on judging with the evidence it had.

use anyhow::Result;
use backstop_api::gate::Action;
use backstop_api::rollouts::CreateRollout;
use backstop_core::event::EventKind;
use backstop_core::model::{Phase, Recovery, RecoveryStatus};
use backstop_core::recovery::StepKind;
use backstop_core::ship::{
    self, Bake, EnvSeen, EnvState, Ship, ShipEvent, ShipStep, WaveState, recovery_id, rollout_id,
};
use serde_json::{Value, json};

use super::Controller;
use super::commands::{Reply, Request, RolloutAction, WayBack};
use super::error::ControllerError;
use super::groups::found;
use super::journal::Record;
use super::leases::rollout_key;
use super::recovery::{Planned, recovery_id_for};
use super::signals::find;
use crate::gate::ENVIRONMENT_CHECKS;
use crate::ships::{runs, target};

/// Transitions applied in one pass at most (a wave that passes starts the next in the same
/// pass; a wave of several environments takes a step per environment).
const STEPS_PER_PASS: usize = 16;

/// What to write down about a change: its kind and evidence.
type Recorded = Option<(EventKind, Value)>;

impl Controller {
    /// Moves ship `id` as far as it can go now.
    pub(super) async fn advance_ship(&mut self, id: &str) -> Result<()> {
        let ctx = self.ctx.clone();
        for _ in 0..STEPS_PER_PASS {
            let (mut ship, version) = ctx.store.ship(id).await?;
            if !ship.phase.is_active() {
                return Ok(());
            }
            let seen = match ship::focus(&ship) {
                Some(w) => self.see_wave(&ship, w).await?,
                None => Vec::new(),
            };
            let alpha = ctx.service(&ship.service)?.analysis.alpha;
            let before = ship.clone();
            let now = ctx.clock.now_ms();
            let recorded = match ship::next(&mut ship, &seen, alpha, now) {
                ShipStep::Wait => None,
                // Boxed: each of these is a deep future (the gate, a rollout's failure, a plan),
                // too large for a worker's stack inlined into the reconcile pass.
                ShipStep::StartWave(w) => Box::pin(self.start_wave(&mut ship, w)).await?,
                ShipStep::BeginBake(w) => Box::pin(self.begin_bake(&mut ship, w)).await?,
                ShipStep::Abort { wave, env } => {
                    Box::pin(self.abort_for_ship(&mut ship, wave, env)).await?
                }
                ShipStep::PutBack { wave, env, bad } => {
                    Box::pin(self.put_back(&mut ship, wave, env, bad)).await?
                }
                ShipStep::Changed(event) => Some(evidence(&ship, &event)),
            };
            if ship == before {
                return Ok(());
            }
            ctx.store.update_ship(&ship, version).await?;
            if let Some((kind, detail)) = recorded {
                self.record_ship(&ship, kind, detail).await?;
            }
        }
        Ok(())
    }

    /// What is stored of each environment of wave `w`.
    async fn see_wave(&self, ship: &Ship, w: usize) -> Result<Vec<EnvSeen>> {
        let ctx = &self.ctx;
        let unfinished = ctx.store.unfinished_recoveries().await?;
        let wave = &ship.waves[w];
        let mut seen = Vec::with_capacity(wave.envs.len());
        for e in &wave.envs {
            let rollout = found(ctx.store.rollout(&rollout_id(&ship.id, w, &e.env)).await)?;
            let own = recovery_id(&ship.id, w, &e.env);
            let recovery = found(ctx.store.recovery(&own).await)?;
            let serving = runs(ctx, &ship.service, &e.env, &ship.release_id).await?;
            let canary_recovery = rollout.as_ref().map(|r| recovery_id_for(&r.id));
            // A recovery the environment waits on that stopped on a failed step.
            let canary_failed = match (&rollout, &canary_recovery) {
                (Some(r), Some(id)) if r.phase == Phase::Recovering => {
                    found(ctx.store.recovery(id).await)?
                        .filter(|rec| rec.status == RecoveryStatus::Failed)
                        .map(|rec| rec.id)
                }
                _ => None,
            };
            let failed_recovery = recovery
                .as_ref()
                .filter(|rec| rec.status == RecoveryStatus::Failed)
                .map(|rec| rec.id.clone())
                .or(canary_failed);
            let other_recovery = unfinished
                .iter()
                .find(|r: &&Recovery| {
                    r.service == ship.service
                        && r.env == e.env
                        && r.id != own
                        && Some(&r.id) != canary_recovery.as_ref()
                })
                .map(|r| format!("recovery {}: {}", r.id, r.reason));
            // The bake reads the traffic sample taken once per analysis interval, not the
            // router every tick, and only one taken since the bake began (an earlier one's
            // lower counters would read as a reset).
            let counters = match (wave.state, wave.bake_started_at_ms) {
                (WaveState::Baking, Some(began)) => ctx
                    .latest_traffic(&ship.service, &e.env)
                    .filter(|(at, _)| *at > began)
                    .and_then(|(_, stats)| find(&stats, &ship.version))
                    .map(|s| (s.requests, s.errors)),
                _ => None,
            };
            seen.push(EnvSeen {
                rollout: rollout.map(|r| r.phase),
                recovery: recovery.map(|r| r.status),
                serving,
                other_recovery,
                counters,
                failed_recovery,
            });
        }
        Ok(seen)
    }

    /// Gates wave `w`'s environments that are still to start, then starts their rollouts with
    /// their derived ids. A check waiting cures (a freeze, an open breaker) holds the ship; any
    /// other refusal stops it. An environment that runs the release already is left as it is.
    async fn start_wave(&mut self, ship: &mut Ship, w: usize) -> Result<Recorded> {
        let ctx = self.ctx.clone();
        let now = ctx.clock.now_ms();
        let mut to_start = Vec::new();
        for i in 0..ship.waves[w].envs.len() {
            let env = &ship.waves[w].envs[i];
            if env.state != EnvState::Waiting || env.rollout_id.is_some() {
                continue;
            }
            if runs(&ctx, &ship.service, &env.env, &ship.release_id).await? {
                let env = &mut ship.waves[w].envs[i];
                env.state = EnvState::AlreadyRunning;
                env.note = Some(format!("{} ran {} already", env.env, ship.release_id));
            } else {
                to_start.push(i);
            }
        }
        let mut holding = Vec::new();
        let mut refusing = Vec::new();
        for &i in &to_start {
            let env = ship.waves[w].envs[i].env.clone();
            let intent = crate::gate::Intent {
                action: Action::Start,
                actor: ship.actor.clone(),
                reason: ship.reason.clone(),
                ..crate::gate::Intent::default()
            };
            let report =
                crate::gate::evaluate(&ctx, &ship.service, &env, &ship.release_id, &intent).await;
            for check in report.checks.iter().filter(|c| !c.ok) {
                let line = format!("{env}: {}: {}", check.name, check.reason);
                if ENVIRONMENT_CHECKS.contains(&check.name.as_str()) {
                    holding.push(line);
                } else {
                    refusing.push(line);
                }
            }
        }
        // Started in part (before a crash, or before a hold): the wave is under way, and what
        // runs of it is judged while the rest waits.
        let started = ship.waves[w]
            .envs
            .iter()
            .position(|e| e.rollout_id.is_some());
        if started.is_some() && ship.waves[w].state == WaveState::Waiting {
            ship.waves[w].state = WaveState::RollingOut;
            ship.waves[w].started_at_ms.get_or_insert(now);
        }
        if !refusing.is_empty() {
            refusing.extend(holding);
            let why = refusing.join("; ");
            if let (Some(&first), Some(_)) = (to_start.first(), started) {
                // Part of the wave runs: it is failed and put back, not merely refused.
                let why = format!("the gate refused the rest of the wave: {why}");
                ship::fail(ship, w, first, &why, now);
                return Ok(Some((
                    EventKind::ShipWaveFailed,
                    json!({"wave": w + 1, "failure": ship.failure}),
                )));
            }
            ship::refuse(ship, w, &why, now);
            return Ok(Some((
                EventKind::ShipStopped,
                json!({"wave": w + 1, "refused": why}),
            )));
        }
        if !holding.is_empty() {
            let why = format!("wave {} waits: {}", w + 1, holding.join("; "));
            let new = ship::hold(ship, why.clone(), now);
            return Ok(new.then(|| (EventKind::ShipHeld, json!({"wave": w + 1, "held": why}))));
        }
        for &i in &to_start {
            let env = ship.waves[w].envs[i].env.clone();
            let id = rollout_id(&ship.id, w, &env);
            let req = CreateRollout {
                service: ship.service.clone(),
                env: env.clone(),
                version: ship.version.clone(),
                critical: false,
                override_freeze: false,
                reason: Some(format!("ship {} wave {}", ship.id, w + 1)),
            };
            match crate::rollouts::create_with_id(&ctx, req, &ship.actor, id.clone()).await {
                Ok(_) => {
                    let e = &mut ship.waves[w].envs[i];
                    e.rollout_id = Some(id);
                    e.state = EnvState::RollingOut;
                }
                Err(e) if e.status.is_server_error() => {
                    anyhow::bail!("starting {} in {env}: {}", ship.release_id, e.message)
                }
                Err(e) => {
                    // Refused between the gate and the start (a race with a person).
                    let why = format!("its rollout in {env} was refused: {}", e.message);
                    ship::fail(ship, w, i, &why, now);
                    return Ok(Some((
                        EventKind::ShipWaveFailed,
                        json!({"wave": w + 1, "failure": ship.failure}),
                    )));
                }
            }
        }
        let wave = &mut ship.waves[w];
        wave.state = WaveState::RollingOut;
        wave.started_at_ms = Some(now);
        ship.held = None;
        ship.updated_at_ms = now;
        let envs: Vec<&str> = wave.envs.iter().map(|e| e.env.as_str()).collect();
        Ok(Some((
            EventKind::ShipWaveStarted,
            json!({"wave": w + 1, "envs": envs}),
        )))
    }

    /// Every environment of wave `w` is promoted: each one's bake starts from its rollout's
    /// pre-deploy baseline and the new version's counters now (read from the router: the start
    /// point must be now, not the last sample).
    async fn begin_bake(&mut self, ship: &mut Ship, w: usize) -> Result<Recorded> {
        let ctx = self.ctx.clone();
        let now = ctx.clock.now_ms();
        let analysis = &ctx.service(&ship.service)?.analysis;
        let (alpha, shadow) = (
            analysis.alpha,
            analysis.mode == backstop_judge::AnalysisMode::Shadow,
        );
        // An environment that ran the release before the ship has no new deployment to judge.
        for e in ship.waves[w]
            .envs
            .iter_mut()
            .filter(|e| e.state == EnvState::Promoted)
        {
            let baseline = match &e.rollout_id {
                Some(id) => ctx
                    .store
                    .rollout_safeguards(id)
                    .await?
                    .and_then(|s| s.baseline)
                    .map_or((0, 0), |b| (b.requests, b.errors)),
                None => (0, 0),
            };
            let now_counters = ctx
                .traffic_stats(&ship.service, &e.env)
                .await
                .ok()
                .and_then(|stats| find(&stats, &ship.version))
                .map_or((0, 0), |s| (s.requests, s.errors));
            e.bake = Some(Bake::begin(baseline, now_counters, alpha, shadow));
        }
        let wave = &mut ship.waves[w];
        let bake_ms = wave.bake_ms.unwrap_or_default();
        wave.state = WaveState::Baking;
        wave.bake_started_at_ms = Some(now);
        wave.bake_until_ms = Some(now + bake_ms);
        ship.updated_at_ms = now;
        let references: Vec<Value> = wave
            .envs
            .iter()
            .map(|e| json!({"env": e.env, "reference_ratio": e.bake.as_ref().map(|b| b.reference_ratio)}))
            .collect();
        Ok(Some((
            EventKind::ShipWaveBaking,
            json!({"wave": w + 1, "bake_ms": bake_ms, "until_ms": now + bake_ms, "envs": references}),
        )))
    }

    /// Aborts environment `env`'s rollout in the failed wave `w` under that rollout's lease;
    /// its own recovery puts its traffic back. Another replica holding the lease: next pass.
    async fn abort_for_ship(&mut self, ship: &mut Ship, w: usize, env: usize) -> Result<Recorded> {
        let id = rollout_id(&ship.id, w, &ship.waves[w].envs[env].env);
        let reason = ship.failure.clone().unwrap_or_default();
        let aborted = self
            .with_lease(&rollout_key(&id), async |me| {
                match me.manual_abort(&id, "controller", &reason).await {
                    Ok(_) => Ok(true),
                    // It finished meanwhile: the next pass sees how.
                    Err(ControllerError::Conflict(_)) => Ok(false),
                    Err(e) => Err(e.into()),
                }
            })
            .await?;
        let note = match aborted {
            Some(false) => return Ok(None),
            Some(true) => "aborted: its wave failed",
            None => {
                // Another replica drives it: the abort goes to it through the store, as a
                // person's would (its answer is not waited for; the next passes see the phase).
                let (reply, _) = tokio::sync::oneshot::channel();
                tokio::spawn(super::routed::pass_on(
                    self.ctx.clone(),
                    rollout_key(&id),
                    Request::Rollout {
                        action: RolloutAction::Abort,
                        rollout_id: id.clone(),
                        actor: "controller".into(),
                        reason,
                    },
                    Reply::Rollout(reply),
                ));
                "abort passed on to the replica driving it: its wave failed"
            }
        };
        let e = &mut ship.waves[w].envs[env];
        e.state = EnvState::Failed;
        e.note = Some(note.into());
        ship.updated_at_ms = self.ctx.clock.now_ms();
        Ok(None)
    }

    /// Plans the ship's way back for environment `env` of wave `w`: to its previous last known
    /// good, keeping the release's bad mark only when `bad` (its own bake failed). Stored, not
    /// run: the reconcile pass runs it like any recovery. A refused way back halts the ship.
    async fn put_back(
        &mut self,
        ship: &mut Ship,
        w: usize,
        env: usize,
        bad: bool,
    ) -> Result<Recorded> {
        let ctx = self.ctx.clone();
        let name = ship.waves[w].envs[env].env.clone();
        let rec_id = recovery_id(&ship.id, w, &name);
        let now = ctx.clock.now_ms();
        let reason = format!(
            "ship {} of {} stopped: {}",
            ship.id,
            ship.release_id,
            ship.failure.clone().unwrap_or_default()
        );
        // Looked at again just before planning (another replica may have served a person's
        // rollback since the ship read the environment): never a second way back.
        let busy = ctx
            .store
            .unfinished_recoveries()
            .await?
            .into_iter()
            .any(|r| r.service == ship.service && r.env == name && r.id != rec_id);
        if busy || !runs(&ctx, &ship.service, &name, &ship.release_id).await? {
            return Ok(None);
        }
        let plan = match self.way_back(&ship.service, &name, &reason, &rec_id).await {
            Ok(WayBack::Plan(steps)) => steps
                .into_iter()
                .filter(|s| bad || !matches!(s, StepKind::MarkReleaseBad { .. }))
                .collect::<Vec<_>>(),
            Ok(WayBack::Refused {
                release: to,
                why,
                options,
            }) => {
                let why = format!("going back to {to} in {name} is refused: {why}");
                ship::halt(ship, w, env, why, options, now);
                return Ok(Some(halted(ship)));
            }
            Err(ControllerError::Conflict(why)) => {
                ship::halt(ship, w, env, why, vec![], now);
                return Ok(Some(halted(ship)));
            }
            Err(e) => return Err(e.into()),
        };
        self.journal_recovery(
            Planned {
                id: &rec_id,
                service: &ship.service,
                env: &name,
                actor: "controller",
                trigger: "ship",
                reason: &reason,
            },
            &plan,
            json!({"ship": ship.id, "wave": w + 1}),
        )
        .await?;
        let e = &mut ship.waves[w].envs[env];
        e.recovery_id = Some(rec_id);
        e.state = EnvState::RollingBack;
        ship.updated_at_ms = now;
        ctx.wake.notify_one();
        Ok(None)
    }

    /// The audit record of a change of `ship`, and the service's webhooks for how it ended.
    async fn record_ship(&mut self, ship: &Ship, kind: EventKind, detail: Value) -> Result<()> {
        let ending = match kind {
            EventKind::ShipShipped => {
                Some(format!("{} shipped through every wave", ship.release_id))
            }
            EventKind::ShipStopped | EventKind::ShipHalted => Some(format!(
                "ship of {} {}: {}",
                ship.release_id,
                ship.phase,
                ship.failure.clone().unwrap_or_default()
            )),
            _ => None,
        };
        self.record(Record::audit_only(
            "controller",
            kind,
            target(&ship.id),
            "ship",
            json!({"service": ship.service, "release": ship.release_id, "detail": detail}),
        ))
        .await?;
        if let Some(summary) = ending {
            self.ctx.notify(backstop_drivers::notify::Notification {
                id: format!("{}/{kind}", ship.id),
                kind: kind.to_string(),
                service: ship.service.clone(),
                env: ship
                    .failed_wave
                    .and_then(|w| ship.waves[w].envs.first())
                    .map(|e| e.env.clone())
                    .unwrap_or_default(),
                summary,
                detail: json!({"ship": ship.id, "release": ship.release_id, "phase": ship.phase}),
                at_ms: self.ctx.clock.now_ms(),
            });
        }
        Ok(())
    }
}

/// The kind and evidence of a change [`ship::next`] made.
fn evidence(ship: &Ship, event: &ShipEvent) -> (EventKind, Value) {
    let envs = |w: usize| -> Vec<Value> {
        ship.waves[w]
            .envs
            .iter()
            .map(|e| json!({"env": e.env, "state": e.state, "bake": e.bake, "note": e.note}))
            .collect()
    };
    match *event {
        ShipEvent::WavePassed(w) => (
            EventKind::ShipWavePassed,
            json!({"wave": w + 1, "envs": envs(w)}),
        ),
        ShipEvent::WaveFailed(w) => (
            EventKind::ShipWaveFailed,
            json!({"wave": w + 1, "failure": ship.failure, "envs": envs(w)}),
        ),
        ShipEvent::WaveRolledBack(w) => (
            EventKind::ShipWaveRolledBack,
            json!({"wave": w + 1, "envs": envs(w)}),
        ),
        ShipEvent::Shipped => (EventKind::ShipShipped, json!({})),
        ShipEvent::Stopped => (
            EventKind::ShipStopped,
            json!({"failed_wave": ship.failed_wave.map(|w| w + 1), "failure": ship.failure}),
        ),
        ShipEvent::StoppedByPerson => (EventKind::ShipStopped, json!({"stopped": ship.failure})),
        ShipEvent::Halted => halted(ship),
    }
}

fn halted(ship: &Ship) -> (EventKind, Value) {
    let halt = ship.halt.as_ref();
    (
        EventKind::ShipHalted,
        json!({
            "wave": halt.map(|h| h.wave + 1),
            "env": halt.map(|h| &h.env),
            "reason": halt.map(|h| &h.reason),
            "options": halt.map(|h| &h.options),
        }),
    )
}
