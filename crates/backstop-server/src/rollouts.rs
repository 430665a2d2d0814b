//! Starting a rollout: the request is checked, the promotion gate runs every check, the
//! environment's safeguards (config snapshot, baseline) are captured, then the rollout is stored,
//! journaled and audited and the controller is woken to move it. Used by `POST /rollouts` and
//! by drills. A person's action on a running rollout goes to the controller's queue.

use backstop_api::gate::Action;
use backstop_api::rollouts::{CreateRollout, PromoteRequest};
use backstop_core::approval::ApprovalKind;
use backstop_core::event::EventKind;
use backstop_core::model::{Event, Phase, Release, Rollout};
use backstop_core::snapshot::{Baseline, ConfigSnapshot, RolloutSafeguards};
use serde_json::json;
use tokio::sync::oneshot;

use crate::Ctx;
use crate::controller::{Command, ControllerError, RolloutAction};
use crate::error::{ApiError, ApiResult};
use crate::releases::known_service;

/// Starts the rollout `req` asks for on behalf of `actor`, after the promotion gate.
pub async fn create(ctx: &Ctx, req: CreateRollout, actor: &str) -> ApiResult<Rollout> {
    create_approved(ctx, req, actor, None).await
}

/// [`create`], with the second person who approved its override (`crate::approvals`). An
/// override that needs one and has none becomes a request for one.
pub async fn create_approved(
    ctx: &Ctx,
    req: CreateRollout,
    actor: &str,
    approved_by: Option<&str>,
) -> ApiResult<Rollout> {
    create_with(ctx, req, actor, approved_by, None).await
}

/// A rollout with the id a release group run or a ship derived for it
/// (`backstop_core::group::member_rollout_id`, `backstop_core::ship::rollout_id`): the gate runs
/// as for any rollout, and a refusal is an error (neither waits for approvals; the group fails
/// the member, the ship fails the wave).
pub async fn create_with_id(
    ctx: &Ctx,
    req: CreateRollout,
    actor: &str,
    id: String,
) -> ApiResult<Rollout> {
    create_with(ctx, req, actor, None, Some(id)).await
}

async fn create_with(
    ctx: &Ctx,
    req: CreateRollout,
    actor: &str,
    approved_by: Option<&str>,
    group_id: Option<String>,
) -> ApiResult<Rollout> {
    let (release, from) = target(ctx, &req).await?;
    // The promotion gate: every check, all reasons at once (the bad-release one among them).
    let intent = crate::gate::Intent {
        action: Action::Start,
        actor: actor.to_owned(),
        rollout_id: None,
        critical: req.critical,
        override_freeze: req.override_freeze,
        reason: req.reason.clone(),
        approved_by: approved_by.map(str::to_owned),
    };
    let report = crate::gate::evaluate(ctx, &req.service, &req.env, &release.id, &intent).await;
    if !report.go {
        if approved_by.is_none()
            && group_id.is_none()
            && crate::approvals::waits_for_approval(&report)
        {
            let (service, env) = (req.service.clone(), req.env.clone());
            let reason = req.reason.clone().unwrap_or_default();
            let body = serde_json::to_value(&req).unwrap_or_default();
            let asked = crate::approvals::Asked {
                kind: ApprovalKind::RolloutStart,
                service: &service,
                env: &env,
                request: body,
                requester: actor,
                reason: &reason,
            };
            return Err(crate::approvals::request(ctx, asked, &report).await);
        }
        let target = format!("service/{}/{}", req.service, req.env);
        return Err(crate::gate::refuse(ctx, &report, &intent, &target).await);
    }
    let id = group_id.unwrap_or_else(|| uuid::Uuid::now_v7().to_string());
    let (snapshot, baseline) = safeguards(ctx, &req, actor, &id, from.as_deref()).await?;
    let now = ctx.clock.now_ms();
    let rollout = Rollout {
        id,
        service: req.service,
        env: req.env,
        from_release_id: from,
        to_release_id: release.id,
        phase: Phase::Pending,
        step_index: 0,
        step_started_at_ms: None,
        canary_weight: 0.0,
        canary_instance_id: None,
        created_at_ms: now,
        updated_at_ms: now,
        actor: actor.to_owned(),
        reason: None,
        verdict: None,
        severity: None,
        escalation_deadline_ms: None,
        acknowledged_by: None,
    };
    ctx.store.create_rollout(&rollout).await?;
    let safeguards = RolloutSafeguards {
        rollout_id: rollout.id.clone(),
        config_snapshot: snapshot.as_ref().map(|(s, _)| s.version),
        baseline,
        captured_at_ms: now,
    };
    ctx.store.put_rollout_safeguards(&safeguards).await?;
    ctx.store
        .add_event(&Event {
            at_ms: now,
            rollout_id: rollout.id.clone(),
            kind: EventKind::RolloutStarted,
            detail: json!({"actor": actor, "reason": req.reason, "critical": req.critical}),
        })
        .await?;
    crate::audit(ctx, actor, EventKind::RolloutCreated, &format!("rollout/{}", rollout.id), "api", json!({
        "service": rollout.service, "env": rollout.env, "from": rollout.from_release_id, "to": rollout.to_release_id,
        "critical": req.critical, "override_freeze": req.override_freeze, "reason": req.reason,
        "config_snapshot": snapshot.as_ref().map(|(s, new)| json!({"version": s.version, "manifest": s.manifest, "new_version": new})),
        "baseline": safeguards.baseline,
    }))
    .await?;
    crate::gate::audit_overrides(ctx, &report, &intent, &format!("rollout/{}", rollout.id)).await?;
    // A change starts: webhooks and incident tools' change timelines hear of it.
    ctx.notify(backstop_drivers::notify::Notification {
        id: format!("rollout/{}/{}", rollout.id, EventKind::RolloutStarted),
        kind: EventKind::RolloutStarted.to_string(),
        service: rollout.service.clone(),
        env: rollout.env.clone(),
        summary: format!(
            "{} rolling out in {} (from {}), started by {actor}{}",
            rollout.to_release_id,
            rollout.env,
            rollout.from_release_id.as_deref().unwrap_or("nothing"),
            req.reason
                .as_deref()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ),
        detail: json!({
            "rollout": rollout.id, "release": rollout.to_release_id,
            "from": rollout.from_release_id, "reason": req.reason,
        }),
        at_ms: now,
    });
    ctx.wake_controllers().await;
    Ok(rollout)
}

/// The release `req` names and the environment's last known good it would replace; 404/409
/// at the offending field when the service, environment or release is unknown, a needed
/// reason is missing, or the environment already runs that release.
async fn target(ctx: &Ctx, req: &CreateRollout) -> ApiResult<(Release, Option<String>)> {
    let svc = known_service(ctx, &req.service, "/service")?;
    if svc.environment(&req.env).is_none() {
        let known: Vec<_> = svc.environments.iter().map(|e| e.name.as_str()).collect();
        return Err(ApiError::not_found(format!(
            "service {} has no environment {:?} (configured: {})",
            svc.name,
            req.env,
            known.join(", ")
        ))
        .at("/env"));
    }
    let release = ctx
        .store
        .release(&Release::id_for(&req.service, &req.version))
        .await
        .map_err(|e| ApiError::from(e).at("/version"))?;
    crate::gate::require_reason(req.critical, req.override_freeze, req.reason.as_deref())?;
    let state = ctx.store.environment(&req.service, &req.env).await?;
    let from = state.and_then(|s| s.lkg_release_id);
    if from.as_deref() == Some(release.id.as_str()) {
        return Err(ApiError::conflict(format!(
            "{} already runs {} in {}",
            req.service, req.version, req.env
        ))
        .at("/version"));
    }
    Ok((release, from))
}

/// Safeguards taken before anything starts: the environment's config snapshot (a rollout whose
/// config cannot be read does not start) and the stable version's baseline (best effort).
async fn safeguards(
    ctx: &Ctx,
    req: &CreateRollout,
    actor: &str,
    rollout_id: &str,
    lkg: Option<&str>,
) -> ApiResult<(Option<(ConfigSnapshot, bool)>, Option<Baseline>)> {
    let snapshot = ctx
        .take_snapshot(
            &req.service,
            &req.env,
            actor,
            &format!("before rollout {rollout_id}"),
            Some(rollout_id),
        )
        .await
        .map_err(|e| {
            ApiError::conflict(format!(
                "cannot snapshot the config of {}/{} before the rollout: {e:#}",
                req.service, req.env
            ))
        })?;
    let stable_version = match lkg {
        Some(lkg) => Some(ctx.store.release(lkg).await?.version),
        None => None,
    };
    let baseline = ctx
        .capture_baseline(&req.service, &req.env, stable_version.as_deref())
        .await
        .inspect_err(|e| tracing::warn!(service = %req.service, env = %req.env, error = format!("{e:#}"), "No baseline for the rollout."))
        .ok();
    Ok((snapshot, baseline))
}

/// Hands a command to the controller (serialized with its own decisions) and waits for its
/// answer.
pub async fn send_command<T>(
    ctx: &Ctx,
    make: impl FnOnce(oneshot::Sender<Result<T, ControllerError>>) -> Command,
) -> ApiResult<T> {
    let (tx, rx) = oneshot::channel();
    ctx.commands
        .send(make(tx))
        .await
        .map_err(|_| ApiError::internal("the controller is shutting down"))?;
    Ok(rx
        .await
        .map_err(|_| ApiError::internal("the controller dropped the request"))??)
}

/// Hands a person's action on a rollout to the controller.
pub async fn act(
    ctx: &Ctx,
    action: RolloutAction,
    rollout_id: String,
    actor: String,
    reason: String,
) -> ApiResult<Rollout> {
    send_command(ctx, |reply| Command::Rollout {
        action,
        rollout_id,
        actor,
        reason,
        reply,
    })
    .await
}

/// Promotes now, after the promotion gate (the same checks as a start).
pub async fn promote(
    ctx: &Ctx,
    id: String,
    req: PromoteRequest,
    actor: String,
) -> ApiResult<Rollout> {
    promote_approved(ctx, id, req, actor, None).await
}

/// [`promote`], with the second person who approved its override.
pub async fn promote_approved(
    ctx: &Ctx,
    id: String,
    req: PromoteRequest,
    actor: String,
    approved_by: Option<&str>,
) -> ApiResult<Rollout> {
    let r = ctx.store.rollout(&id).await?;
    crate::gate::require_reason(req.critical, req.override_freeze, Some(&req.reason))?;
    let intent = crate::gate::Intent {
        action: Action::Promote,
        actor: actor.clone(),
        rollout_id: Some(r.id.clone()),
        critical: req.critical,
        override_freeze: req.override_freeze,
        reason: Some(req.reason.clone()),
        approved_by: approved_by.map(str::to_owned),
    };
    // Only a promotable rollout goes through the gate; the controller refuses the others.
    if matches!(r.phase, Phase::Progressing | Phase::Paused) {
        let report =
            crate::gate::evaluate(ctx, &r.service, &r.env, &r.to_release_id, &intent).await;
        if !report.go && approved_by.is_none() && crate::approvals::waits_for_approval(&report) {
            let body = serde_json::json!({"rollout_id": r.id, "promote": req});
            let asked = crate::approvals::Asked {
                kind: ApprovalKind::RolloutPromote,
                service: &r.service,
                env: &r.env,
                request: body,
                requester: &actor,
                reason: &req.reason,
            };
            return Err(crate::approvals::request(ctx, asked, &report).await);
        }
        if !report.go {
            return Err(crate::gate::refuse(ctx, &report, &intent, &format!("rollout/{id}")).await);
        }
        crate::gate::audit_overrides(ctx, &report, &intent, &format!("rollout/{id}")).await?;
    }
    act(ctx, RolloutAction::Promote, id, actor, req.reason).await
}
