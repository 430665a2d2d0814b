//! One recovery step against the real world. Each arm checks the target before acting, so a
//! step run again after a crash does nothing more when it already holds.

use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use backstop_core::model::{EnvironmentState, Recovery};
use backstop_core::recovery::StepKind;
use backstop_drivers::proxy::VersionStats;
use serde_json::json;

use super::Controller;
use super::signals::delta;

impl Controller {
    /// One recovery step against the real world. Each arm checks the target before acting.
    pub(super) async fn execute(
        &self,
        rec: &Recovery,
        step: &StepKind,
    ) -> Result<serde_json::Value> {
        let ctx = &self.ctx;
        // Still the holder? A replica that froze mid-recovery must not act on the world when it
        // wakes (its later writes would be refused, but a stopped instance stays stopped).
        ctx.store.check_fence().await?;
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
                    r.updated_at_ms = ctx.clock.now_ms();
                    ctx.store.update_rollout(&r).await?;
                }
                let routes = ctx.apply_routes(&rec.service, &rec.env).await?;
                Ok(
                    json!({"stable": routes.stable.map(|u| u.version), "canary": routes.canary.map(|u| u.version), "canary_weight": routes.canary_weight}),
                )
            }
            StepKind::WaitHealthy { instance_id } => {
                let known = ctx.store.instance(instance_id).await?;
                let release = ctx.store.release(&known.release_id).await?;
                let svc = ctx.service(&release.service)?;
                // Adopts it after a health check when it runs, starts it again when its
                // process is gone (a stable instance that crashed before the rollback).
                let inst = ctx.ensure_instance(instance_id, &release, &rec.env).await?;
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
            StepKind::SweepRedis {
                name,
                address,
                address_env,
                pattern,
                batch,
            } => {
                let svc = ctx.service(&rec.service)?;
                let text = match (address, address_env) {
                    (Some(a), _) => a.clone(),
                    (None, Some(var)) => std::env::var(var).map_err(|_| {
                        anyhow::anyhow!(
                            "sweep {name}: the daemon's variable {var} (the Redis URL) is not set"
                        )
                    })?,
                    (None, None) => anyhow::bail!("sweep {name}: no Redis address"),
                };
                let target = backstop_drivers::cache::RedisTarget::parse(&text)
                    .map_err(|e| anyhow::anyhow!("sweep {name}: {e}"))?;
                let out = backstop_drivers::cache::sweep_redis(
                    &target,
                    pattern,
                    *batch,
                    svc.hooks.timeout,
                )
                .await
                .map_err(|e| anyhow::anyhow!("sweep {name}: {e}"))?;
                Ok(
                    json!({"sweep": name, "pattern": pattern, "removed": out.removed, "scans": out.scans}),
                )
            }
            StepKind::PurgeHttp { name, url } => {
                let svc = ctx.service(&rec.service)?;
                let status = backstop_drivers::cache::purge(url, svc.hooks.timeout)
                    .await
                    .map_err(|e| anyhow::anyhow!("purge {name}: {e}"))?;
                Ok(json!({"purge": name, "url": url, "status": status}))
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
}
