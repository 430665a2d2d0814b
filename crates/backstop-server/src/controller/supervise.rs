//! Supervision of the instances users depend on: each environment's stable instance, and the
//! previous version's instance while it is kept warm after a promotion (for a rollback in one
//! switch), is checked (process alive, health check) about once a second; what to do is
//! [`backstop_core::supervision`]'s decision. A canary is not restarted: its crash or failing
//! health is evidence against its release, which the rollout's own breaker acts on (it rolls
//! the canary back, faster than any restart would help). A restart goes through
//! [`Ctx::ensure_instance`] (adopt after a health check, or start anew), then the routes are
//! applied again (a restarted instance may have a new port). Restarts and crash loops are
//! recorded (audit, the rollout's timeline when one runs, webhook, `/metrics`), and the gate
//! reads the same state to refuse rollouts while the stable version is unhealthy.
//!
//! It runs inside the controller task, so it never races a rollout or recovery step on the same
//! instance.

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::Result;
use backstop_config::Strategy;
use backstop_core::event::EventKind;
use backstop_core::model::{EnvironmentState, InstanceRecord, InstanceState, Rollout};
use backstop_core::recovery::StepKind;
use backstop_core::supervision::{Check, Decision, InstanceWatch};
use backstop_drivers::process;
use serde::Serialize;
use serde_json::json;

use super::Controller;
use super::journal::Record;
use crate::Ctx;

/// How often each supervised instance is checked.
pub(super) const SUPERVISE_EVERY: Duration = Duration::from_secs(1);

/// True when `inst` runs the version before `env`'s current one and is not its stable
/// instance: what is kept warm after a promotion.
pub(super) fn is_previous_version(env: &EnvironmentState, inst: &InstanceRecord) -> bool {
    env.service == inst.service
        && env.env == inst.env
        && env.previous_lkg_release_id.as_ref() == Some(&inst.release_id)
        && env.stable_instance_id.as_ref() != Some(&inst.id)
}

/// The instances something relies on: environments' stable ones (of `environments`), the
/// canaries of rollouts under way, and those of unfinished recoveries.
pub(super) async fn in_use(ctx: &Ctx, environments: &[EnvironmentState]) -> Result<Vec<String>> {
    let mut used: Vec<String> = environments
        .iter()
        .filter_map(|e| e.stable_instance_id.clone())
        .collect();
    for r in ctx.store.active_rollouts().await? {
        used.extend(r.canary_instance_id);
    }
    for rec in ctx.store.unfinished_recoveries().await? {
        for s in rec.steps {
            if let StepKind::StartInstance { instance_id, .. }
            | StepKind::ShiftTraffic { instance_id, .. } = s.step
            {
                used.push(instance_id);
            }
        }
    }
    Ok(used)
}

/// One supervised instance, as `/metrics`, the gate and the API see it.
#[derive(Debug, Clone, Serialize)]
pub struct Supervised {
    pub service: String,
    pub env: String,
    pub release_id: String,
    /// `stable`, or `warm` (the previous version kept running after a promotion).
    pub role: &'static str,
    #[serde(flatten)]
    pub watch: InstanceWatch,
}

/// Supervision's view, by instance id (in memory: rebuilt by the checks after a restart).
pub type SupervisionState = std::sync::Mutex<BTreeMap<String, Supervised>>;

impl Ctx {
    /// The supervised stable instance of `service/env` that is not healthy, if any: its last
    /// The environment's stable instance as supervision last found it: its id and entry.
    fn supervised_stable(&self, service: &str, env: &str) -> Option<(String, Supervised)> {
        let state = self
            .caches
            .supervision
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        state
            .iter()
            .find(|(_, s)| s.service == service && s.env == env && s.role == "stable")
            .map(|(id, s)| (id.clone(), s.clone()))
    }

    /// The supervised stable instance of `service/env` that is not healthy, if any: its last
    /// problem (for the gate and the environment's status).
    pub fn unhealthy_stable(&self, service: &str, env: &str) -> Option<(String, Supervised)> {
        self.supervised_stable(service, env)
            .filter(|(_, s)| !s.watch.healthy)
    }

    /// The environment's stable instance as supervision last found it (for the API).
    pub fn stable_health(&self, service: &str, env: &str) -> backstop_api::services::StableHealth {
        let found = self.supervised_stable(service, env).map(|(_, s)| s);
        match found {
            None => backstop_api::services::StableHealth {
                status: "unknown".into(),
                ..Default::default()
            },
            Some(s) => backstop_api::services::StableHealth {
                status: if s.watch.crash_loop {
                    "crash_loop"
                } else if s.watch.healthy {
                    "healthy"
                } else {
                    "unhealthy"
                }
                .into(),
                restarts: s.watch.restarts_total,
                last_problem: s.watch.last_problem,
            },
        }
    }
}

impl Controller {
    /// Checks every stable instance and restarts the ones that crashed or keep failing their
    /// health check.
    pub(super) async fn supervise(&mut self) -> Result<()> {
        let ctx = self.ctx.clone();
        let mut serving: Vec<(InstanceRecord, &'static str, Option<Rollout>)> = Vec::new();
        let rollouts = ctx.store.active_rollouts().await?;
        for env in ctx.store.environments().await? {
            if let Some(id) = &env.stable_instance_id {
                let rollout = rollouts
                    .iter()
                    .find(|r| r.service == env.service && r.env == env.env)
                    .cloned();
                serving.push((ctx.store.instance(id).await?, "stable", rollout));
            }
        }
        self.scale_down_due();
        for id in self.warm.keys() {
            let Ok(inst) = ctx.store.instance(id).await else {
                continue;
            };
            let rollout = rollouts
                .iter()
                .find(|r| r.service == inst.service && r.env == inst.env)
                .cloned();
            if !serving.iter().any(|(s, _, _)| s.id == inst.id) {
                serving.push((inst, "warm", rollout));
            }
        }
        // Not what was stopped on purpose. A stable instance still recorded `Starting` is one
        // whose (re)start failed (no start is in progress: this runs in the controller's own
        // task): it is checked, and restarted with backoff, like a crashed one, so a crash
        // loop is seen as one.
        serving.retain(|(inst, _, _)| inst.state != InstanceState::Stopped);
        // Each environment is supervised by the replica holding its lease.
        let mut held = Vec::new();
        for (inst, _, _) in &serving {
            let key = super::env_key(&inst.service, &inst.env);
            if !held.contains(&key) && self.lease_in_share(&key).await?.is_some() {
                held.push(key);
            }
        }
        serving.retain(|(inst, _, _)| held.contains(&super::env_key(&inst.service, &inst.env)));
        self.adopt_warm(&held).await?;
        let mut checks = Vec::with_capacity(serving.len());
        for (inst, _, _) in &serving {
            checks.push(self.check(inst).await);
        }
        let ids: Vec<&str> = serving.iter().map(|(i, _, _)| i.id.as_str()).collect();
        {
            let mut state = ctx
                .caches
                .supervision
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            state.retain(|id, _| ids.contains(&id.as_str()));
        }
        for ((inst, role, rollout), check) in serving.into_iter().zip(checks) {
            let Some(check) = check else { continue };
            let now = ctx.clock.now_ms();
            let decision = {
                let mut state = ctx
                    .caches
                    .supervision
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                let entry = state.entry(inst.id.clone()).or_insert_with(|| Supervised {
                    service: inst.service.clone(),
                    env: inst.env.clone(),
                    release_id: inst.release_id.clone(),
                    role,
                    watch: InstanceWatch::default(),
                });
                entry.role = role;
                entry.watch.observe(&check, now)
            };
            if let Decision::Restart {
                reason,
                crash_loop_started,
            } = decision
            {
                let key = super::env_key(&inst.service, &inst.env);
                self.with_lease(&key, async |me| {
                    me.restart(&inst, role, rollout.as_ref(), &reason, crash_loop_started)
                        .await
                })
                .await?;
            }
        }
        Ok(())
    }

    /// Keeps `instance` (the version before a promotion) running and supervised for the
    /// service's blue-green rollback window or scale-down delay.
    pub(super) fn keep_warm(&mut self, service: &str, instance: String) -> Result<()> {
        let svc = self.ctx.service(service)?;
        let delay = match svc.rollout.strategy {
            Strategy::BlueGreen => svc
                .rollout
                .rollback_window
                .unwrap_or(backstop_config::DEFAULT_ROLLBACK_WINDOW),
            _ => svc.run.scale_down_delay,
        };
        self.warm
            .insert(instance, tokio::time::Instant::now() + delay);
        Ok(())
    }

    /// Takes for warm the previous version's instances of the environments this replica
    /// supervises that it does not know of yet: kept warm by another replica (the one that
    /// promoted, which may have died since) or before this one took the environment over.
    /// Their window starts again here, erring on the side of keeping a rollback in one switch.
    async fn adopt_warm(&mut self, held: &[String]) -> Result<()> {
        let ctx = self.ctx.clone();
        let environments = ctx.store.environments().await?;
        let running = ctx.store.running_instances().await?;
        let in_use = in_use(&ctx, &environments).await?;
        self.scaling_down
            .retain(|id| running.iter().any(|i| &i.id == id));
        for inst in running {
            let unknown =
                !self.warm.contains_key(&inst.id) && !self.scaling_down.contains(&inst.id);
            if unknown
                && !in_use.contains(&inst.id)
                && held.contains(&super::env_key(&inst.service, &inst.env))
                && environments.iter().any(|e| is_previous_version(e, &inst))
            {
                tracing::info!(instance = %inst.id, "Keeping the previous version's instance warm (taken over).");
                self.keep_warm(&inst.service, inst.id)?;
            }
        }
        Ok(())
    }

    /// Scales down the warm instances whose time is up, unless a rollback made one stable
    /// again. The stop runs apart (an instance may take its grace period to exit); it is out
    /// of `warm` first, so supervision no longer restarts it.
    fn scale_down_due(&mut self) {
        let now = tokio::time::Instant::now();
        let due: Vec<String> = self
            .warm
            .iter()
            .filter(|(_, at)| **at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for previous in due {
            self.warm.remove(&previous);
            self.scaling_down.insert(previous.clone());
            let ctx = self.ctx.clone();
            tokio::spawn(async move {
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
    }

    /// One liveness and health check, the way the instance's deployer defines health; `None`
    /// when the instance's host (an agent) cannot be reached.
    async fn check(&self, inst: &InstanceRecord) -> Option<Check> {
        let ctx = &self.ctx;
        let Ok(release) = ctx.store.release(&inst.release_id).await else {
            return Some(Check::Healthy);
        };
        let Ok(service) = ctx.service(&release.service) else {
            return Some(Check::Healthy);
        };
        if service.run.command_scripts().is_none() {
            let handle = process::Instance {
                instance_id: inst.id.clone(),
                pid: inst.pid,
                port: inst.port,
            };
            let host = ctx.host(&release.service, &inst.env).ok()?;
            match host.is_running(&handle).await {
                Ok(true) => {}
                Ok(false) => return Some(Check::Exited),
                // An agent cut off is not an exit: its host keeps the instance running, and
                // nothing can be restarted there from here anyway.
                Err(e) => {
                    tracing::warn!(instance = %inst.id, env = %inst.env, error = format!("{e:#}"), "Cannot reach the host of an instance; not checked this round.");
                    if matches!(host, crate::hosts::Host::Agent(a) if a.is_local()) {
                        ctx.revive_local_agent().await;
                    }
                    return None;
                }
            }
        }
        Some(match ctx.instance_health(service, &release, inst).await {
            Ok(()) => Check::Healthy,
            Err(e) => Check::Unhealthy(format!("{e:#}")),
        })
    }

    async fn restart(
        &mut self,
        inst: &InstanceRecord,
        role: &'static str,
        rollout: Option<&Rollout>,
        reason: &str,
        crash_loop_started: bool,
    ) -> Result<()> {
        let ctx = self.ctx.clone();
        tracing::warn!(instance = %inst.id, role, reason, "Restarting an instance.");
        let release = ctx.store.release(&inst.release_id).await?;
        let outcome = ctx.ensure_instance(&inst.id, &release, &inst.env).await;
        let now = ctx.clock.now_ms();
        let restarts_total = {
            let mut state = ctx
                .caches
                .supervision
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            state.get_mut(&inst.id).map_or(0, |s| {
                s.watch.restarted(now, crash_loop_started);
                s.watch.healthy = outcome.is_ok();
                s.watch.restarts_total
            })
        };
        let mut evidence = json!({
            "instance": inst.id, "role": role, "service": inst.service, "env": inst.env,
            "release": inst.release_id, "reason": reason, "old_pid": inst.pid,
            "restarts": restarts_total,
        });
        match &outcome {
            Ok(rec) => {
                evidence["pid"] = json!(rec.pid);
                evidence["port"] = json!(rec.port);
                ctx.apply_routes(&inst.service, &inst.env).await?;
            }
            Err(e) => {
                tracing::error!(instance = %inst.id, error = format!("{e:#}"), "The instance did not come back; will retry with backoff.");
                evidence["error"] = json!(format!("{e:#}"));
            }
        }
        let summary = format!(
            "{} instance {} of {} in {} restarted: {reason}",
            role, inst.id, inst.release_id, inst.env
        );
        self.report(
            rollout,
            inst,
            EventKind::InstanceRestarted,
            summary,
            evidence.clone(),
        )
        .await?;
        if crash_loop_started {
            let summary = format!(
                "{role} instance {} of {} in {} is crash-looping: {restarts_total} restarts; the environment is degraded",
                inst.id, inst.release_id, inst.env
            );
            self.report(
                rollout,
                inst,
                EventKind::InstanceCrashLoop,
                summary,
                evidence,
            )
            .await?;
        }
        Ok(())
    }

    /// Audit record, the rollout's timeline event (when one runs there) and a webhook
    /// notification of a supervision happening.
    async fn report(
        &self,
        rollout: Option<&Rollout>,
        inst: &InstanceRecord,
        kind: EventKind,
        summary: String,
        evidence: serde_json::Value,
    ) -> Result<()> {
        let target = format!("instance/{}", inst.id);
        let record = match rollout {
            Some(r) => Record::of(r)
                .event(kind, evidence.clone())
                .audit_on("supervisor", kind, target, &summary, evidence.clone())
                .notify(kind, summary, evidence),
            None => {
                if let Some(n) = self.ctx.drivers.notifiers.get(&inst.service) {
                    n.notify(backstop_drivers::notify::Notification {
                        id: format!("{target}/{kind}/{}", self.ctx.clock.now_ms()),
                        kind: kind.to_string(),
                        service: inst.service.clone(),
                        env: inst.env.clone(),
                        summary: summary.clone(),
                        detail: evidence.clone(),
                        at_ms: self.ctx.clock.now_ms(),
                    });
                }
                Record::audit_only("supervisor", kind, target, &summary, evidence)
            }
        };
        self.record(record).await
    }
}
