//! REST/JSON API under `/api/v1`, its OpenAPI document, `/metrics` and `/healthz`.
//!
//! Handlers validate and write desired state; transitions of running rollouts go through the
//! controller's command queue so they never race its own decisions.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::{FromRequest, Path, Query, Request, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use backstop_core::audit::AuditRecord;
use backstop_core::event::EventKind;
use backstop_core::model::{
    Artifact, BreakerTrip, EnvironmentState, Event, Phase, Recovery, Release, ReleaseStatus,
    Rollout,
};
pub use backstop_core::timeline::Timeline;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use sha2::{Digest, Sha256};
use tokio::sync::oneshot;
use utoipa::{OpenApi, ToSchema};

use crate::Ctx;
use crate::auth::{Caller, require_token};
use crate::controller::{Command, ControllerError, RolloutAction};
use crate::error::{ApiError, ApiResult, ErrorBody};

/// A JSON body whose errors name the JSON pointer of the offending field.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes::Bytes::from_request(req, state)
            .await
            .map_err(|e| ApiError::bad_request(format!("cannot read the request body: {e}")))?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut de) {
            Ok(v) => Ok(Body(v)),
            Err(e) => {
                let pointer = json_pointer(e.path());
                let place = if pointer.is_empty() {
                    "/"
                } else {
                    pointer.as_str()
                };
                Err(ApiError::bad_request(format!(
                    "invalid request body at {place}: {}",
                    e.inner()
                ))
                .at(pointer))
            }
        }
    }
}

/// RFC 6901 pointer of a serde path (`~` and `/` escaped); unknown segments end it.
fn json_pointer(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;
    let mut out = String::new();
    for seg in path.iter() {
        let part = match seg {
            Segment::Seq { index } => index.to_string(),
            Segment::Map { key } => key.replace('~', "~0").replace('/', "~1"),
            Segment::Enum { variant } => variant.clone(),
            Segment::Unknown => break,
        };
        out.push('/');
        out.push_str(&part);
    }
    out
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRelease {
    pub service: String,
    pub version: String,
    /// Path of an executable file (hashed by content) …
    #[serde(default)]
    pub file: Option<String>,
    /// … or a command line (hashed as text). Exactly one of `file` and `command`.
    #[serde(default)]
    pub command: Option<String>,
    /// Environment added to the service's `run.env` for this release.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The migration versions the release runs on: `MIN..MAX` or one version.
    #[serde(default)]
    pub schema: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateRollout {
    pub service: String,
    pub env: String,
    /// Version of a registered release of the service.
    pub version: String,
    /// A critical change (e.g. a fix-forward): passes the automatic freeze while a recovery is
    /// active in the environment. Needs `reason`; audited.
    #[serde(default)]
    pub critical: bool,
    /// Override scheduled and manual freezes. Needs `reason`; audited; refused in a regulated
    /// environment.
    #[serde(default)]
    pub override_freeze: bool,
    #[serde(default)]
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PromoteRequest {
    /// Why, in words: recorded in the audit log (and the reason of any override).
    pub reason: String,
    #[serde(default)]
    pub critical: bool,
    #[serde(default)]
    pub override_freeze: bool,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Reason {
    /// Why, in words: recorded in the audit log.
    pub reason: String,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RollbackRequest {
    pub service: String,
    pub env: String,
    pub reason: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ServiceView {
    pub name: String,
    pub owner: String,
    pub tier: u8,
    pub environments: Vec<EnvironmentView>,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct EnvironmentView {
    pub name: String,
    /// Where the built-in proxy listens for this environment's traffic.
    pub listen: String,
    pub state: Option<EnvironmentState>,
    pub active_rollout: Option<String>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct RolloutDetail {
    pub rollout: Rollout,
    pub events: Vec<Event>,
    pub recovery: Option<Recovery>,
    /// Times derived from the events (null until they happen).
    pub timeline: Timeline,
    /// The config snapshot and baseline captured before it started.
    #[serde(default)]
    pub safeguards: Option<backstop_core::snapshot::RolloutSafeguards>,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct AuditVerification {
    pub ok: bool,
    pub records: usize,
    pub broken_at: Option<i64>,
    pub reason: Option<String>,
}

#[derive(Debug, Deserialize)]
pub struct ListQuery {
    pub service: Option<String>,
    pub limit: Option<i64>,
}

#[derive(Debug, Deserialize)]
pub struct AuditQuery {
    pub after: Option<i64>,
    pub limit: Option<i64>,
}

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Backstop API",
        description = "Release-recovery control plane. Every /api/v1 call needs `Authorization: Bearer <token>`."
    ),
    paths(
        list_services,
        create_release,
        list_releases,
        get_release,
        create_rollout,
        list_rollouts,
        get_rollout,
        promote_rollout,
        abort_rollout,
        export_rollout,
        rollback,
        list_recoveries,
        get_recovery,
        list_audit,
        verify_audit,
        crate::gate::get_gate,
        crate::gate::create_freeze,
        crate::gate::list_freezes,
        crate::gate::end_freeze,
        crate::config_api::list_snapshots,
        crate::config_api::take_snapshot,
        crate::config_api::diff,
        crate::config_api::restore,
        crate::drills::start_drill,
        crate::drills::finish_drill,
        crate::drills::list_drills,
        crate::drills::get_drill
    ),
    components(schemas(
        ErrorBody,
        AuditRecord,
        Release,
        Rollout,
        Recovery,
        Event,
        Phase,
        ReleaseStatus,
        Artifact,
        crate::gate::GateReport,
        crate::gate::Check,
        crate::gate::FreezeList,
        backstop_core::model::Freeze,
        backstop_core::drill::Drill
    ))
)]
pub struct ApiDoc;

pub fn router(ctx: Arc<Ctx>) -> Router {
    let api = Router::new()
        .route("/services", get(list_services))
        .route("/releases", post(create_release).get(list_releases))
        .route("/releases/{id}", get(get_release))
        .route("/rollouts", post(create_rollout).get(list_rollouts))
        .route("/rollouts/{id}", get(get_rollout))
        .route("/rollouts/{id}/promote", post(promote_rollout))
        .route("/rollouts/{id}/abort", post(abort_rollout))
        .route("/rollouts/{id}/acknowledge", post(acknowledge_rollout))
        .route("/breakers", get(list_breakers))
        .route("/breakers/reset", post(reset_breaker))
        .route("/rollouts/{id}/export", get(export_rollout))
        .route("/rollback", post(rollback))
        .route("/recoveries", get(list_recoveries))
        .route("/recoveries/{id}", get(get_recovery))
        .route("/recoveries/{id}/resume", post(resume_recovery))
        .route("/audit", get(list_audit))
        .route("/audit/verify", get(verify_audit))
        .route("/gate", get(crate::gate::get_gate))
        .route(
            "/freezes",
            post(crate::gate::create_freeze).get(crate::gate::list_freezes),
        )
        .route("/freezes/{id}/end", post(crate::gate::end_freeze))
        .merge(crate::config_api::routes())
        .merge(crate::drills::routes())
        .fallback(|| async { ApiError::not_found("no such API route") })
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            require_token,
        ));
    Router::new()
        .nest("/api/v1", api)
        .route(
            "/api/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        )
        .route("/healthz", get(|| async { Json(json!({"status": "ok"})) }))
        .route("/metrics", get(metrics))
        .with_state(ctx)
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    match crate::metrics::render(&ctx).await {
        Ok(text) => ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response(),
        Err(e) => ApiError::internal(format!("{e:#}")).into_response(),
    }
}

#[utoipa::path(get, path = "/api/v1/services", responses((status = 200, body = Vec<ServiceView>)))]
async fn list_services(State(ctx): State<Arc<Ctx>>) -> ApiResult<Json<Vec<ServiceView>>> {
    let mut out = Vec::new();
    for svc in &ctx.config.services {
        let mut environments = Vec::new();
        for env in &svc.environments {
            environments.push(EnvironmentView {
                name: env.name.clone(),
                listen: ctx
                    .drivers
                    .proxies
                    .get(&(svc.name.clone(), env.name.clone()))
                    .ok_or(())
                    .map(|p| p.local_addr().to_string())
                    .unwrap_or_default(),
                state: ctx.store.environment(&svc.name, &env.name).await?,
                active_rollout: ctx
                    .store
                    .active_rollout(&svc.name, &env.name)
                    .await?
                    .map(|r| r.id),
            });
        }
        out.push(ServiceView {
            name: svc.name.clone(),
            owner: svc.owner.clone(),
            tier: svc.tier,
            environments,
        });
    }
    Ok(Json(out))
}

fn known_service<'a>(
    ctx: &'a Ctx,
    name: &str,
    pointer: &str,
) -> ApiResult<&'a backstop_config::Service> {
    ctx.config.service(name).ok_or_else(|| {
        let known: Vec<_> = ctx
            .config
            .services
            .iter()
            .map(|s| s.name.as_str())
            .collect();
        ApiError::not_found(format!(
            "unknown service {name:?} (configured: {})",
            known.join(", ")
        ))
        .at(pointer)
    })
}

#[utoipa::path(post, path = "/api/v1/releases", request_body = CreateRelease,
    responses((status = 201, body = Release), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create_release(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Body(req): Body<CreateRelease>,
) -> ApiResult<(StatusCode, Json<Release>)> {
    known_service(&ctx, &req.service, "/service")?;
    if req.version.is_empty()
        || req.version.len() > 128
        || !req
            .version
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "._-+".contains(c))
    {
        return Err(ApiError::bad_request(
            "version must be 1-128 characters of letters, digits and . _ - +",
        )
        .at("/version"));
    }
    for key in req.env.keys() {
        if key.is_empty()
            || !key
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        {
            return Err(ApiError::bad_request(format!(
                "environment variable name {key:?} must match [A-Z0-9_]+"
            ))
            .at(format!("/env/{key}")));
        }
    }
    // The artifact is backed up (content-addressed) as it is hashed: instances always run the
    // verified stored copy, so a rollback does not depend on the build folder.
    let (artifact, sha256) = match (req.file, req.command) {
        (Some(path), None) => {
            let blobs = ctx.blobs.clone();
            let p = path.clone();
            let sha = tokio::task::spawn_blocking(move || blobs.put_file(std::path::Path::new(&p)))
                .await
                .map_err(|e| ApiError::internal(format!("backing up the artifact: {e}")))?
                .map_err(|e| match e {
                    backstop_store::BlobError::Io {
                        path: ref at,
                        ref source,
                    } if at.as_os_str() == path.as_str() => {
                        ApiError::bad_request(format!("cannot read artifact file {path}: {source}"))
                            .at("/file")
                    }
                    other => {
                        ApiError::internal(format!("backing up artifact file {path}: {other}"))
                    }
                })?;
            (Artifact::File(path), sha)
        }
        (None, Some(cmd)) if !cmd.trim().is_empty() => {
            let sha = ctx
                .blobs
                .put_bytes(cmd.as_bytes())
                .map_err(|e| ApiError::internal(format!("backing up the command: {e}")))?;
            debug_assert_eq!(sha, hex::encode(Sha256::digest(cmd.as_bytes())));
            (Artifact::Command(cmd), sha)
        }
        _ => {
            return Err(
                ApiError::bad_request("give exactly one of `file` and `command`").at("/file"),
            );
        }
    };
    let schema = match req.schema.as_deref() {
        Some(text) => Some(
            backstop_core::schema::SchemaRange::parse(text)
                .map_err(|e| ApiError::bad_request(e).at("/schema"))?,
        ),
        None => None,
    };
    let release = Release {
        id: Release::id_for(&req.service, &req.version),
        service: req.service,
        version: req.version,
        artifact,
        sha256,
        env: req.env,
        status: ReleaseStatus::Ok,
        bad_reason: None,
        created_at_ms: ctx.clock.now_ms(),
        schema,
    };
    ctx.store.create_release(&release).await?;
    crate::audit(
        &ctx,
        &caller.0,
        EventKind::ReleaseCreated,
        &format!("release/{}", release.id),
        "api",
        json!({
            "sha256": release.sha256, "artifact": release.artifact, "schema": release.schema,
        }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(release)))
}

#[utoipa::path(get, path = "/api/v1/releases", params(("service" = Option<String>, Query)), responses((status = 200, body = Vec<Release>)))]
async fn list_releases(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Release>>> {
    Ok(Json(ctx.store.releases(q.service.as_deref()).await?))
}

#[utoipa::path(get, path = "/api/v1/releases/{id}", responses((status = 200, body = Release), (status = 404, body = ErrorBody)))]
async fn get_release(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Release>> {
    Ok(Json(ctx.store.release(&id).await?))
}

#[utoipa::path(post, path = "/api/v1/rollouts", request_body = CreateRollout,
    responses((status = 201, body = Rollout), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn create_rollout(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Body(req): Body<CreateRollout>,
) -> ApiResult<(StatusCode, Json<Rollout>)> {
    let svc = known_service(&ctx, &req.service, "/service")?;
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
    // The promotion gate: every check, all reasons at once (the bad-release one among them).
    let intent = crate::gate::Intent {
        action: crate::gate::Action::Start,
        actor: caller.0.clone(),
        rollout_id: None,
        critical: req.critical,
        override_freeze: req.override_freeze,
        reason: req.reason.clone(),
    };
    let report = crate::gate::evaluate(&ctx, &req.service, &req.env, &release.id, &intent).await;
    if !report.go {
        let target = format!("service/{}/{}", req.service, req.env);
        return Err(crate::gate::refuse(&ctx, &report, &intent, &target).await);
    }
    // Safeguards before anything starts: the environment's config snapshot (a rollout whose
    // config cannot be read does not start) and the stable version's baseline (best effort).
    let id = uuid::Uuid::now_v7().to_string();
    let snapshot = ctx
        .take_snapshot(
            &req.service,
            &req.env,
            &caller.0,
            &format!("before rollout {id}"),
            Some(&id),
        )
        .await
        .map_err(|e| {
            ApiError::conflict(format!(
                "cannot snapshot the config of {}/{} before the rollout: {e:#}",
                req.service, req.env
            ))
        })?;
    let stable_version = match &from {
        Some(lkg) => Some(ctx.store.release(lkg).await?.version),
        None => None,
    };
    let baseline = ctx
        .capture_baseline(&req.service, &req.env, stable_version.as_deref())
        .await
        .inspect_err(|e| tracing::warn!(service = %req.service, env = %req.env, error = format!("{e:#}"), "No baseline for the rollout."))
        .ok();
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
        actor: caller.0.clone(),
        reason: None,
        verdict: None,
        severity: None,
        escalation_deadline_ms: None,
        acknowledged_by: None,
    };
    ctx.store.create_rollout(&rollout).await?;
    let safeguards = backstop_core::snapshot::RolloutSafeguards {
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
            detail: json!({"actor": caller.0}),
        })
        .await?;
    crate::audit(&ctx, &caller.0, EventKind::RolloutCreated, &format!("rollout/{}", rollout.id), "api", json!({
        "service": rollout.service, "env": rollout.env, "from": rollout.from_release_id, "to": rollout.to_release_id,
        "critical": req.critical, "override_freeze": req.override_freeze, "reason": req.reason,
        "config_snapshot": snapshot.as_ref().map(|(s, new)| json!({"version": s.version, "manifest": s.manifest, "new_version": new})),
        "baseline": safeguards.baseline,
    }))
    .await?;
    crate::gate::audit_overrides(&ctx, &report, &intent, &format!("rollout/{}", rollout.id))
        .await?;
    ctx.wake.notify_one();
    Ok((StatusCode::CREATED, Json(rollout)))
}

#[utoipa::path(get, path = "/api/v1/rollouts", params(("service" = Option<String>, Query), ("limit" = Option<i64>, Query)), responses((status = 200, body = Vec<Rollout>)))]
async fn list_rollouts(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Rollout>>> {
    Ok(Json(
        ctx.store
            .rollouts(q.service.as_deref(), q.limit.unwrap_or(50).clamp(1, 1000))
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/rollouts/{id}", responses((status = 200, body = RolloutDetail), (status = 404, body = ErrorBody)))]
async fn get_rollout(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<RolloutDetail>> {
    let rollout = ctx.store.rollout(&id).await?;
    let events = ctx.store.events(&id).await?;
    let recovery = match ctx
        .store
        .recovery(&crate::controller::recovery_id_for(&id))
        .await
    {
        Ok(r) => Some(r),
        Err(backstop_store::StoreError::NotFound(_)) => None,
        Err(e) => return Err(e.into()),
    };
    let timeline = Timeline::from_events(&rollout, &events);
    let safeguards = ctx.store.rollout_safeguards(&id).await?;
    Ok(Json(RolloutDetail {
        rollout,
        events,
        recovery,
        timeline,
        safeguards,
    }))
}

async fn send_command<T>(
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

/// Hands a person's action on a rollout to the controller (serialized with its own decisions).
async fn rollout_action(
    ctx: &Ctx,
    action: RolloutAction,
    id: String,
    caller: Caller,
    req: Reason,
) -> ApiResult<Json<Rollout>> {
    let r = send_command(ctx, |reply| Command::Rollout {
        action,
        rollout_id: id,
        actor: caller.0,
        reason: req.reason,
        reply,
    })
    .await?;
    Ok(Json(r))
}

/// Promotes now, after the promotion gate (the same checks as a start; 409 `gate_blocked`
/// lists every reason).
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/promote", request_body = PromoteRequest,
    responses((status = 200, body = Rollout), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn promote_rollout(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(req): Body<PromoteRequest>,
) -> ApiResult<Json<Rollout>> {
    let r = ctx.store.rollout(&id).await?;
    crate::gate::require_reason(req.critical, req.override_freeze, Some(&req.reason))?;
    let intent = crate::gate::Intent {
        action: crate::gate::Action::Promote,
        actor: caller.0.clone(),
        rollout_id: Some(r.id.clone()),
        critical: req.critical,
        override_freeze: req.override_freeze,
        reason: Some(req.reason.clone()),
    };
    // Only a promotable rollout goes through the gate; the controller refuses the others.
    if matches!(r.phase, Phase::Progressing | Phase::Paused) {
        let report =
            crate::gate::evaluate(&ctx, &r.service, &r.env, &r.to_release_id, &intent).await;
        if !report.go {
            return Err(
                crate::gate::refuse(&ctx, &report, &intent, &format!("rollout/{id}")).await,
            );
        }
        crate::gate::audit_overrides(&ctx, &report, &intent, &format!("rollout/{id}")).await?;
    }
    let reason = Reason { reason: req.reason };
    rollout_action(&ctx, RolloutAction::Promote, id, caller, reason).await
}

#[utoipa::path(post, path = "/api/v1/rollouts/{id}/abort", request_body = Reason,
    responses((status = 200, body = Rollout), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn abort_rollout(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(req): Body<Reason>,
) -> ApiResult<Json<Rollout>> {
    rollout_action(&ctx, RolloutAction::Abort, id, caller, req).await
}

#[utoipa::path(post, path = "/api/v1/rollouts/{id}/acknowledge", request_body = Reason,
    responses((status = 200, body = Rollout), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn acknowledge_rollout(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(req): Body<Reason>,
) -> ApiResult<Json<Rollout>> {
    rollout_action(&ctx, RolloutAction::Acknowledge, id, caller, req).await
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct BreakerReset {
    /// `env:<name>` or `all`.
    pub scope: String,
    pub reason: String,
}

#[utoipa::path(get, path = "/api/v1/breakers", responses((status = 200, body = Vec<BreakerTrip>)))]
async fn list_breakers(State(ctx): State<Arc<Ctx>>) -> ApiResult<Json<Vec<BreakerTrip>>> {
    Ok(Json(ctx.store.open_trips().await?))
}

/// Closes an open breaker trip; rollouts it paused resume.
#[utoipa::path(post, path = "/api/v1/breakers/reset", request_body = BreakerReset,
    responses((status = 200, body = BreakerTrip), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
async fn reset_breaker(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Body(req): Body<BreakerReset>,
) -> ApiResult<Json<BreakerTrip>> {
    if req.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a breaker reset needs a reason").at("/reason"));
    }
    let trip = ctx
        .store
        .reset_trip(&req.scope, &caller.0, &req.reason, ctx.clock.now_ms())
        .await
        .map_err(|e| ApiError::from(e).at("/scope"))?;
    crate::audit(
        &ctx,
        &caller.0,
        EventKind::BreakerReset,
        &format!("breaker/{}", trip.scope),
        "manual",
        json!({"reason": req.reason, "trip": trip.id}),
    )
    .await?;
    ctx.wake.notify_one();
    Ok(Json(trip))
}

/// The rollout's stored intervals as a `backstop-scenario/v1` file, replayable by `backstop analyze`.
#[utoipa::path(get, path = "/api/v1/rollouts/{id}/export", responses((status = 200, content_type = "application/x-ndjson", body = String), (status = 404, body = ErrorBody)))]
async fn export_rollout(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Response> {
    let rollout = ctx.store.rollout(&id).await?;
    let settings = &ctx
        .service(&rollout.service)
        .map_err(|e| ApiError::internal(format!("{e:#}")))?
        .analysis;
    let intervals = ctx.store.intervals(&id).await?;
    let text = crate::export::scenario_text(&rollout, settings.interval.as_secs_f64(), &intervals);
    Ok(([(header::CONTENT_TYPE, "application/x-ndjson")], text).into_response())
}

#[utoipa::path(post, path = "/api/v1/rollback", request_body = RollbackRequest,
    responses((status = 200, body = Recovery), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn rollback(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Body(req): Body<RollbackRequest>,
) -> ApiResult<Json<Recovery>> {
    let svc = known_service(&ctx, &req.service, "/service")?;
    if svc.environment(&req.env).is_none() {
        return Err(ApiError::not_found(format!(
            "service {} has no environment {:?}",
            svc.name, req.env
        ))
        .at("/env"));
    }
    if req.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a rollback needs a reason").at("/reason"));
    }
    crate::audit(
        &ctx,
        &caller.0,
        EventKind::RollbackRequested,
        &format!("service/{}/{}", req.service, req.env),
        "manual",
        json!({"reason": req.reason}),
    )
    .await?;
    let rec = send_command(&ctx, |reply| Command::Rollback {
        service: req.service,
        env: req.env,
        actor: caller.0,
        reason: req.reason,
        reply,
    })
    .await?;
    Ok(Json(rec))
}

#[utoipa::path(get, path = "/api/v1/recoveries", responses((status = 200, body = Vec<Recovery>)))]
async fn list_recoveries(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<ListQuery>,
) -> ApiResult<Json<Vec<Recovery>>> {
    Ok(Json(
        ctx.store
            .recoveries(q.limit.unwrap_or(50).clamp(1, 1000))
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/recoveries/{id}", responses((status = 200, body = Recovery), (status = 404, body = ErrorBody)))]
async fn get_recovery(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<Recovery>> {
    Ok(Json(ctx.store.recovery(&id).await?))
}

/// Re-runs a failed recovery from its failed step (each step is idempotent).
#[utoipa::path(post, path = "/api/v1/recoveries/{id}/resume",
    responses((status = 200, body = Recovery), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
async fn resume_recovery(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
) -> ApiResult<Json<Recovery>> {
    let rec = send_command(&ctx, |reply| Command::Resume {
        recovery_id: id,
        actor: caller.0,
        reply,
    })
    .await?;
    Ok(Json(rec))
}

#[utoipa::path(get, path = "/api/v1/audit", params(("after" = Option<i64>, Query), ("limit" = Option<i64>, Query)), responses((status = 200, body = Vec<AuditRecord>)))]
async fn list_audit(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    Ok(Json(
        ctx.store
            .audit(
                q.after.unwrap_or(0),
                q.limit.unwrap_or(1000).clamp(1, 100_000),
            )
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/audit/verify", responses((status = 200, body = AuditVerification)))]
async fn verify_audit(State(ctx): State<Arc<Ctx>>) -> ApiResult<Json<AuditVerification>> {
    Ok(Json(crate::verification(ctx.store.as_ref()).await?))
}
