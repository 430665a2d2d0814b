//! Drills: a known-bad variant of the environment's last known good, rolled out as a canary in
//! a non-production environment; finishing one measures it from the rollout's own records,
//! compares with the objectives, stores and audits the result.
//!
//! Whoever drives the load (the `backstop drill` CLI) starts a drill, sends traffic at the
//! drill's `target`, waits for the rollout to end, then finishes it. Finish also cleans up: a
//! variant still rolling out is aborted, a promoted one is rolled back.

use backstop_api::drills::{FinishDrill, StartDrill};
use backstop_api::releases::CreateRelease;
use backstop_api::rollouts::CreateRollout;
use backstop_config::EnvKind;
use backstop_core::drill::{Drill, DrillObjectives, DrillStatus, measure};
use backstop_core::event::EventKind;
use backstop_core::model::{Artifact, Phase, RecoveryStatus, Rollout};
use serde_json::json;
use sha2::{Digest, Sha256};

use crate::Ctx;
use crate::controller::{Command, RolloutAction};
use crate::error::{ApiError, ApiResult};
use crate::rollouts::{act, send_command};

/// The version of the known-bad variant of `lkg_version` (an earlier drill suffix is replaced).
fn variant_version(lkg_version: &str, now: i64) -> String {
    let base = lkg_version
        .split_once("+drill.")
        .map_or(lkg_version, |(b, _)| b);
    format!("{base}+drill.{now}")
}

/// Starts a drill: checks the environment may be drilled, registers the known-bad variant of
/// its LKG and starts its canary rollout (through the same steps, checks and audit records as
/// `POST /releases` and `POST /rollouts`).
pub async fn start(ctx: &Ctx, req: StartDrill, actor: &str) -> ApiResult<Drill> {
    let svc = ctx.config.service(&req.service).ok_or_else(|| {
        ApiError::not_found(format!("unknown service {:?}", req.service)).at("/service")
    })?;
    let env = svc.environment(&req.env).ok_or_else(|| {
        let known: Vec<_> = svc.environments.iter().map(|e| e.name.as_str()).collect();
        ApiError::not_found(format!(
            "service {} has no environment {:?} (configured: {})",
            svc.name,
            req.env,
            known.join(", ")
        ))
        .at("/env")
    })?;
    if env.regulated {
        return Err(ApiError::conflict(format!(
            "refusing to drill {}/{}: the environment is regulated; drills deploy a known-bad release and run only in non-production, non-regulated environments",
            svc.name, env.name
        ))
        .at("/env"));
    }
    if env.kind == EnvKind::Production {
        return Err(ApiError::conflict(format!(
            "refusing to drill {}/{}: it is a production environment (`kind: production`, the default); drills deploy a known-bad release and run only where `kind` is staging, development or test",
            svc.name, env.name
        ))
        .at("/env"));
    }
    let Some(spec) = &svc.drill else {
        return Err(ApiError::conflict(format!(
            "service {} declares no drill variant: add `drill: {{env: {{FAULT_FLAG: \"on\"}}}}` to it in the config (the environment that makes its last known good misbehave)",
            svc.name
        ))
        .at("/service"));
    };
    let lkg_id = ctx
        .store
        .environment(&svc.name, &env.name)
        .await?
        .and_then(|s| s.lkg_release_id)
        .ok_or_else(|| {
            ApiError::conflict(format!(
                "{}/{} has no last known good release to drill against: deploy one first (`backstop rollout start {} --env {} --version V`)",
                svc.name, env.name, svc.name, env.name
            ))
            .at("/env")
        })?;
    let lkg = ctx.store.release(&lkg_id).await?;
    let now = ctx.clock.now_ms();
    let mut variant_env = lkg.env.clone();
    variant_env.extend(spec.env.clone());
    let (file, command) = match &lkg.artifact {
        Artifact::File(p) => {
            // The variant must run the very bytes that are the last known good.
            let bytes = tokio::fs::read(p).await.map_err(|e| {
                ApiError::conflict(format!(
                    "cannot read the last known good's artifact {p} ({e}): the drill would not run {}",
                    lkg.id
                ))
            })?;
            let sha = hex::encode(Sha256::digest(&bytes));
            if sha != lkg.sha256 {
                return Err(ApiError::conflict(format!(
                    "the artifact file {p} changed since {} was registered (sha256 {} now, {} then): the drill would not run the last known good",
                    lkg.id, sha, lkg.sha256
                )));
            }
            (Some(p.clone()), None)
        }
        Artifact::Command(c) => (None, Some(c.clone())),
    };
    let version = variant_version(&lkg.version, now);
    let release = crate::releases::register(
        ctx,
        CreateRelease {
            service: svc.name.clone(),
            version: version.clone(),
            file,
            command,
            env: variant_env,
            secrets: lkg.secrets.clone(),
            // The variant is the LKG's artifact: it runs on the same schema.
            schema: lkg.schema.as_ref().map(ToString::to_string),
        },
        actor,
    )
    .await?;
    let rollout = crate::rollouts::create(
        ctx,
        CreateRollout {
            service: svc.name.clone(),
            env: env.name.clone(),
            version,
            critical: false,
            override_freeze: false,
            reason: Some("drill".into()),
        },
        actor,
    )
    .await?;
    let drill = Drill {
        id: uuid::Uuid::now_v7().to_string(),
        service: svc.name.clone(),
        env: env.name.clone(),
        rollout_id: rollout.id,
        release_id: release.id,
        lkg_release_id: lkg.id,
        variant_env: spec.env.clone(),
        target: env.listen.map(|a| a.to_string()),
        actor: actor.to_owned(),
        status: DrillStatus::Running,
        started_at_ms: now,
        finished_at_ms: None,
        result: None,
    };
    ctx.store.create_drill(&drill).await?;
    crate::audit(
        ctx,
        actor,
        EventKind::DrillStarted,
        &format!("drill/{}", drill.id),
        "api",
        json!({
            "service": drill.service, "env": drill.env, "rollout": drill.rollout_id,
            "release": drill.release_id, "lkg": drill.lkg_release_id, "variant_env": drill.variant_env,
        }),
    )
    .await?;
    Ok(drill)
}

/// Undoes what the drill left behind; says what it did.
async fn clean_up(ctx: &Ctx, drill: &Drill, r: &Rollout, actor: &str) -> ApiResult<Option<String>> {
    match r.phase {
        Phase::Pending | Phase::Progressing | Phase::Paused => {
            act(
                ctx,
                RolloutAction::Abort,
                r.id.clone(),
                actor.to_owned(),
                format!(
                    "drill {} ended before Backstop acted on the known-bad variant",
                    drill.id
                ),
            )
            .await?;
            Ok(Some(format!(
                "the drill rollout was still {}: aborted, traffic goes back to {}",
                r.phase, drill.lkg_release_id
            )))
        }
        Phase::Promoted => {
            send_command(ctx, |reply| Command::Rollback {
                service: drill.service.clone(),
                env: drill.env.clone(),
                actor: actor.to_owned(),
                reason: format!(
                    "drill {}: the known-bad variant {} was promoted; back to {}",
                    drill.id, drill.release_id, drill.lkg_release_id
                ),
                reply,
            })
            .await?;
            Ok(Some(format!(
                "the known-bad variant was promoted: rolled back to {}",
                drill.lkg_release_id
            )))
        }
        Phase::Failed | Phase::Recovering | Phase::Recovered => Ok(None),
    }
}

static FINISHING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Finishes a running drill: measures it from the rollout's events and recovery journal,
/// compares with the service's `mttr` and the environment's rollback SLA, stores and audits the
/// result, and cleans up a variant Backstop did not undo.
pub async fn finish(ctx: &Ctx, id: &str, req: FinishDrill, actor: &str) -> ApiResult<Drill> {
    // One finish at a time: two callers must not both clean up and record the same drill.
    let _one = FINISHING.lock().await;
    let mut drill = ctx.store.drill(id).await?;
    if drill.status != DrillStatus::Running {
        return Err(ApiError::conflict(format!(
            "drill {id} already finished ({})",
            drill.status
        )));
    }
    let svc = ctx
        .service(&drill.service)
        .map_err(|e| ApiError::conflict(format!("drill {id}: {e:#}")))?;
    let objectives = DrillObjectives {
        mttr_ms: svc.mttr().as_millis() as i64,
        rollback_sla_ms: svc.rollback_sla_for(&drill.env).as_millis() as i64,
    };
    let rollout = ctx.store.rollout(&drill.rollout_id).await?;
    let events = ctx.store.events(&rollout.id).await?;
    let recovery_done = match ctx
        .store
        .recovery(&crate::controller::recovery_id_for(&rollout.id))
        .await
    {
        Ok(rec) if rec.status == RecoveryStatus::Done => rec.finished_at_ms,
        Ok(_) | Err(backstop_store::StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let mut result = measure(&rollout, &events, recovery_done, objectives, req.load);
    let cleanup = clean_up(ctx, &drill, &rollout, actor).await?;
    if let Some(what) = &cleanup {
        result.failures.push(format!("cleanup: {what}"));
    }
    drill.status = if result.failures.is_empty() {
        DrillStatus::Passed
    } else {
        DrillStatus::Failed
    };
    drill.finished_at_ms = Some(ctx.clock.now_ms());
    crate::audit(
        ctx,
        actor,
        EventKind::DrillFinished,
        &format!("drill/{}", drill.id),
        "api",
        json!({
            "status": drill.status, "rollout": drill.rollout_id, "phase": result.phase,
            "time_to_detect_ms": result.time_to_detect_ms, "time_to_recover_ms": result.time_to_recover_ms,
            "detection_to_restore_ms": result.detection_to_restore_ms,
            "mttr_target_ms": result.mttr_target_ms, "rollback_sla_ms": result.rollback_sla_ms,
            "failures": result.failures,
        }),
    )
    .await?;
    drill.result = Some(result);
    ctx.store.update_drill(&drill).await?;
    Ok(drill)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn variant_versions_replace_an_earlier_drill_suffix() {
        assert_eq!(variant_version("v1", 42), "v1+drill.42");
        assert_eq!(variant_version("v1+drill.42", 43), "v1+drill.43");
    }
}
