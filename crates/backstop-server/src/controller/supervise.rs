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
use backstop_core::partial::{self, Assessment, Probed, primary_of};
use backstop_core::recovery::StepKind;
use backstop_core::supervision::{Check, Decision, InstanceWatch};
use backstop_drivers::process;
use backstop_drivers::proxy::InstanceStats;
use backstop_judge::outlier::{Outlier, OutlierTest};
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
        // A version's further instances go with its first.
        && primary_of(&inst.id) == inst.id
}

/// The recorded instances of the version whose first instance is `id` (`run.instances` of
/// them), first first.
pub(super) async fn instances_of(
    ctx: &Ctx,
    service: &str,
    id: &str,
) -> Result<Vec<InstanceRecord>> {
    let mut found = Vec::new();
    for rid in ctx.replica_ids(service, id)? {
        match ctx.store.instance(&rid).await {
            Ok(inst) => found.push(inst),
            Err(backstop_store::StoreError::NotFound(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(found)
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

/// The test of one version's instances' errors against each other (`partial_failures.
/// outliers`), fed the built-in proxy's per-instance counts; started afresh whenever the
/// instances change (a restart gives one a new port).
pub(super) struct OutlierWatch {
    test: OutlierTest,
    ports: Vec<u16>,
    /// The cumulative (requests, errors) last read, per instance.
    last: Vec<(u64, u64)>,
}

impl OutlierWatch {
    fn new(instances: &[InstanceRecord], alpha: f64) -> Self {
        Self {
            test: OutlierTest::new(instances.iter().map(|i| i.id.clone()).collect(), alpha),
            ports: instances.iter().map(|i| i.port).collect(),
            last: Vec::new(),
        }
    }

    fn watches(&self, instances: &[InstanceRecord]) -> bool {
        self.test
            .instances()
            .iter()
            .eq(instances.iter().map(|i| &i.id))
            && self.ports.iter().eq(instances.iter().map(|i| &i.port))
    }

    /// Feeds the counts of `version`'s instances since the last read; the outlier once found.
    fn feed(&mut self, version: &str, stats: &[InstanceStats]) -> Option<Outlier> {
        let now: Vec<(u64, u64)> = self
            .ports
            .iter()
            .map(|port| {
                stats
                    .iter()
                    .find(|s| s.addr.port() == *port && s.stats.version == version)
                    .map_or((0, 0), |s| (s.stats.requests, s.stats.errors))
            })
            .collect();
        if self.last.len() == now.len() {
            let requests: Vec<u64> = now
                .iter()
                .zip(&self.last)
                .map(|(n, l)| n.0.saturating_sub(l.0))
                .collect();
            let errors: Vec<u64> = now
                .iter()
                .zip(&self.last)
                .map(|(n, l)| n.1.saturating_sub(l.1))
                .collect();
            self.test.update(&requests, &errors);
        }
        self.last = now;
        self.test.outlier()
    }
}

/// One instance supervision checked this pass: its record, role, the rollout running in its
/// environment, and what was decided about it.
type Decided = (InstanceRecord, &'static str, Option<Rollout>, Decision);

/// The (service, environment, role) of each version among `decided`, once each, in order.
fn version_groups(decided: &[Decided]) -> Vec<(&str, &str, &'static str)> {
    let mut groups = Vec::new();
    for (inst, role, _, _) in decided {
        let key = (inst.service.as_str(), inst.env.as_str(), *role);
        if !groups.contains(&key) {
            groups.push(key);
        }
    }
    groups
}

/// Supervision's view, by instance id (in memory: rebuilt by the checks after a restart).
pub type SupervisionState = std::sync::Mutex<BTreeMap<String, Supervised>>;

impl Ctx {
    /// The environment's stable instances (one, or `run.instances`) as supervision last found
    /// them, by id.
    fn supervised_stable(&self, service: &str, env: &str) -> Vec<(String, Supervised)> {
        let state = self
            .caches
            .supervision
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        state
            .iter()
            .filter(|(_, s)| s.service == service && s.env == env && s.role == "stable")
            .map(|(id, s)| (id.clone(), s.clone()))
            .collect()
    }

    /// A supervised stable instance of `service/env` that is not healthy, if any: its last
    /// problem (for the gate and the environment's status).
    pub fn unhealthy_stable(&self, service: &str, env: &str) -> Option<(String, Supervised)> {
        self.supervised_stable(service, env)
            .into_iter()
            .find(|(_, s)| !s.watch.healthy)
    }

    /// The first of `service/env`'s stable instances when none of them is healthy: the baseline
    /// is down (some of them down is a partial failure; the others still serve).
    pub fn stable_down(&self, service: &str, env: &str) -> Option<(String, Supervised)> {
        let stable = self.supervised_stable(service, env);
        if stable.iter().all(|(_, s)| !s.watch.healthy) {
            stable.into_iter().next()
        } else {
            None
        }
    }

    /// The environment's stable instances as supervision last found them (for the API).
    pub fn stable_health(&self, service: &str, env: &str) -> backstop_api::services::StableHealth {
        let stable = self.supervised_stable(service, env);
        if stable.is_empty() {
            return backstop_api::services::StableHealth {
                status: "unknown".into(),
                ..Default::default()
            };
        }
        let unhealthy = stable.iter().filter(|(_, s)| !s.watch.healthy).count();
        let status = if stable.iter().any(|(_, s)| s.watch.crash_loop) {
            "crash_loop"
        } else if unhealthy == 0 {
            "healthy"
        } else if unhealthy < stable.len() {
            "partial"
        } else {
            "unhealthy"
        };
        backstop_api::services::StableHealth {
            status: status.into(),
            restarts: stable.iter().map(|(_, s)| s.watch.restarts_total).sum(),
            last_problem: stable
                .iter()
                .find(|(_, s)| !s.watch.healthy)
                .or(stable.first())
                .and_then(|(_, s)| s.watch.last_problem.clone()),
            instances: stable
                .iter()
                .map(|(id, s)| backstop_api::services::InstanceHealth {
                    id: id.clone(),
                    healthy: s.watch.healthy,
                    restarts: s.watch.restarts_total,
                    crash_loop: s.watch.crash_loop,
                    last_problem: s.watch.last_problem.clone(),
                })
                .collect(),
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
                for inst in instances_of(&ctx, &env.service, id).await? {
                    serving.push((inst, "stable", rollout.clone()));
                }
            }
        }
        self.scale_down_due();
        for id in self.warm.keys() {
            let Ok(first) = ctx.store.instance(id).await else {
                continue;
            };
            let rollout = rollouts
                .iter()
                .find(|r| r.service == first.service && r.env == first.env)
                .cloned();
            for inst in instances_of(&ctx, &first.service, id).await? {
                if !serving.iter().any(|(s, _, _)| s.id == inst.id) {
                    serving.push((inst, "warm", rollout.clone()));
                }
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
        let mut decided = Vec::with_capacity(serving.len());
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
            decided.push((inst, role, rollout, decision));
        }
        self.report_partial_failures(&decided).await?;
        self.replace_outliers(&decided).await?;
        for (inst, role, rollout, decision) in decided {
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

    /// Feeds `version`'s instances' latest counts (from the built-in proxy) to their test
    /// against each other; the instance whose errors stand out, once the test finds one (its
    /// test starts afresh). `None` with one instance, outliers turned off, or a router that
    /// does not count per instance.
    pub(super) async fn outlier_of(
        &mut self,
        instances: &[InstanceRecord],
        version: &str,
    ) -> Result<Option<(InstanceRecord, Outlier)>> {
        let Some(first) = instances.first() else {
            return Ok(None);
        };
        let svc = self.ctx.service(&first.service)?;
        if instances.len() < 2 || !svc.partial_failures.outliers {
            self.outliers.remove(&first.id);
            return Ok(None);
        }
        let stats = match self
            .ctx
            .router(&first.service, &first.env)?
            .instance_stats()
            .await
        {
            Ok(Some(stats)) => stats,
            Ok(None) => return Ok(None),
            Err(e) => {
                tracing::debug!(service = %first.service, env = %first.env, error = %e, "Cannot read per-instance counts.");
                return Ok(None);
            }
        };
        let alpha = svc.analysis.alpha;
        let watch = self
            .outliers
            .entry(first.id.clone())
            .or_insert_with(|| OutlierWatch::new(instances, alpha));
        if !watch.watches(instances) {
            *watch = OutlierWatch::new(instances, alpha);
        }
        let Some(outlier) = watch.feed(version, &stats) else {
            return Ok(None);
        };
        self.outliers.remove(&first.id);
        Ok(instances
            .iter()
            .find(|i| i.id == outlier.instance)
            .map(|i| (i.clone(), outlier)))
    }

    /// Replaces the stable instances whose errors stand out from their siblings': one bad
    /// instance among many, which health checks may not see. Reads the instances this pass of
    /// supervision checked (`decided`), leaving out the ones about to be restarted anyway.
    async fn replace_outliers(&mut self, decided: &[Decided]) -> Result<()> {
        let ctx = self.ctx.clone();
        for (service, env, role) in version_groups(decided) {
            if role != "stable" {
                continue;
            }
            let checked: Vec<&Decided> = decided
                .iter()
                .filter(|(i, r, _, _)| i.service == service && i.env == env && *r == role)
                .collect();
            let instances: Vec<InstanceRecord> = checked
                .iter()
                .filter(|(i, _, _, d)| {
                    i.state == InstanceState::Running && !matches!(d, Decision::Restart { .. })
                })
                .map(|(i, _, _, _)| i.clone())
                .collect();
            let Some(first) = instances.first() else {
                continue;
            };
            if instances.len() < 2 {
                // Nothing to compare: no store read or proxy call every second for it.
                self.outliers.remove(&first.id);
                continue;
            }
            let rollout = checked[0].2.clone();
            let key = super::env_key(service, env);
            let version = ctx.store.release(&first.release_id).await?.version;
            let Some((inst, outlier)) = self.outlier_of(&instances, &version).await? else {
                continue;
            };
            let reason = format!(
                "its errors stand out from its version's other instances ({} of {} requests against {} of {}, p = {:.2e})",
                outlier.errors,
                outlier.requests,
                outlier.others_errors,
                outlier.others_requests,
                outlier.p_value
            );
            let severity = ctx.service(service)?.partial_failures.severity;
            let summary = format!(
                "partial failure ({severity}) of stable {} in {}: instance {} {reason}; replacing it",
                inst.release_id, inst.env, inst.id
            );
            self.report(
                rollout.as_ref(),
                &inst,
                EventKind::InstanceOutlier,
                summary,
                json!({
                    "service": inst.service, "env": inst.env, "role": "stable",
                    "release": inst.release_id, "severity": severity, "outlier": outlier,
                    "action": "replace",
                }),
            )
            .await?;
            self.with_lease(&key, async |me| {
                me.ctx.eject(&inst).await?;
                me.ctx.stop_one(&inst.id).await?;
                me.restart(&inst, "stable", rollout.as_ref(), &reason, false)
                    .await
            })
            .await?;
        }
        Ok(())
    }

    /// Records a partial failure (practice 3.3) when some, not all, of a serving version's
    /// instances turned unhealthy: at least the service's `partial_failures.unhealthy` of them.
    /// Reported once per set of unhealthy instances, with the service's partial-failure
    /// severity; the instances themselves are replaced by the restarts that follow.
    async fn report_partial_failures(&mut self, decided: &[Decided]) -> Result<()> {
        let ctx = self.ctx.clone();
        for (service, env, role) in version_groups(decided) {
            let members: Vec<&Decided> = decided
                .iter()
                .filter(|(i, r, _, _)| i.service == service && i.env == env && *r == role)
                .collect();
            let probed: Vec<Probed> = {
                let state = ctx
                    .caches
                    .supervision
                    .lock()
                    .unwrap_or_else(|p| p.into_inner());
                members
                    .iter()
                    .filter_map(|(i, _, _, _)| {
                        state.get(&i.id).map(|s| Probed {
                            instance: i.id.clone(),
                            problem: (!s.watch.healthy)
                                .then(|| s.watch.last_problem.clone().unwrap_or_default()),
                        })
                    })
                    .collect()
            };
            let policy = &ctx.service(service)?.partial_failures;
            let key = (service.to_owned(), env.to_owned(), role.to_owned());
            let assessment = partial::assess(&probed, policy.unhealthy);
            let Assessment::Partial { unhealthy, of } = &assessment else {
                self.partial_reported.remove(&key);
                continue;
            };
            let ids: Vec<String> = unhealthy.iter().map(|p| p.instance.clone()).collect();
            if self.partial_reported.get(&key) == Some(&ids) {
                continue;
            }
            self.partial_reported.insert(key, ids);
            let Some((inst, _, rollout, _)) = members
                .iter()
                .find(|(i, _, _, _)| i.id == unhealthy[0].instance)
            else {
                continue;
            };
            let summary = format!(
                "partial failure ({}) of {role} {} in {env}: {}; replacing them",
                policy.severity,
                inst.release_id,
                assessment.summary()
            );
            let evidence = json!({
                "service": service, "env": env, "role": role, "release": inst.release_id,
                "severity": policy.severity, "unhealthy": unhealthy, "instances": of,
                "action": "replace",
            });
            self.report(
                rollout.as_ref(),
                inst,
                EventKind::PartialFailure,
                summary,
                evidence,
            )
            .await?;
        }
        Ok(())
    }

    /// Keeps `instance` (the version before a promotion) running and supervised for the
    /// service's blue-green rollback window or scale-down delay.
    pub(super) fn keep_warm(&mut self, service: &str, instance: String) -> Result<()> {
        let svc = self.ctx.service(service)?;
        let delay = match (svc.rollout.strategy, svc.rollout.rollback_window) {
            (_, Some(window)) => window,
            (Strategy::BlueGreen, None) => backstop_config::DEFAULT_ROLLBACK_WINDOW,
            (_, None) => svc.run.scale_down_delay,
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
        ctx.eject(inst).await?;
        let release = ctx.store.release(&inst.release_id).await?;
        let outcome = ctx.ensure_one(&inst.id, &release, &inst.env).await;
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
