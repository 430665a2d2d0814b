//! `/runbooks` and `/runbook-runs`: list the runbooks, start a run, read runs, and steer one
//! (confirm a manual step, retry a failed one, skip or alter a step, record an ad-hoc action,
//! abort). Who may do each is the runbook's role in the run's environment, checked here: the
//! route table lets every token in, as no route knows which runbook it acts on.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::runbooks::{
    AdHocStep, AlterStep, ConfirmStep, Reason, RunQuery, RunbookInfo, StartRun,
};
use backstop_core::access::Role;
use backstop_core::runbook_run::RunbookRun;

use super::{Access, Acting, Body, Created, created, environment, reason_given};
use crate::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::releases::known_service;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/runbooks", get(list_runbooks))
        .route("/runbooks/{name}/runs", post(start_run))
        .route("/runbook-runs", get(list_runs))
        .route("/runbook-runs/{id}", get(get_run))
        .route(
            "/runbook-runs/{id}/steps/{step}/confirm",
            post(confirm_step),
        )
        .route("/runbook-runs/{id}/steps/{step}/retry", post(retry_step))
        .route("/runbook-runs/{id}/steps/{step}/skip", post(skip_step))
        .route("/runbook-runs/{id}/steps/{step}/alter", post(alter_step))
        .route("/runbook-runs/{id}/ad-hoc", post(ad_hoc_step))
        .route("/runbook-runs/{id}/abort", post(abort_run))
}

#[utoipa::path(get, path = "/api/v1/runbooks", responses((status = 200, body = Vec<RunbookInfo>), (status = 500, body = ErrorBody)))]
pub(super) async fn list_runbooks(
    State(ctx): State<Arc<Ctx>>,
) -> ApiResult<Json<Vec<RunbookInfo>>> {
    Ok(Json(
        crate::runbooks::catalog(&ctx)?
            .iter()
            .map(crate::runbooks::info)
            .collect(),
    ))
}

/// Starts a run of runbook `name`: the caller needs the runbook's role in the environment.
#[utoipa::path(post, path = "/api/v1/runbooks/{name}/runs", request_body = StartRun,
    responses((status = 201, body = RunbookRun), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn start_run(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(name): Path<String>,
    Body(req): Body<StartRun>,
) -> ApiResult<Created<RunbookRun>> {
    let rb = crate::runbooks::find(&ctx, &name)?;
    let mut env = req.env.clone();
    let mut service = req.service.clone();
    if let Some(id) = &req.incident {
        let (incident, _) = ctx
            .store
            .incident(id)
            .await
            .map_err(|e| ApiError::from(e).at("/incident"))?;
        for (given, theirs, pointer) in [
            (&env, &incident.env, "/env"),
            (&service, &incident.service, "/service"),
        ] {
            if let Some(given) = given
                && given != theirs
            {
                return Err(ApiError::bad_request(format!(
                    "incident {id} is in {theirs}, not {given}; leave {} out to use the incident's",
                    &pointer[1..]
                ))
                .at(pointer));
            }
        }
        env = Some(incident.env);
        service = Some(incident.service);
    }
    let Some(env) = env else {
        return Err(ApiError::bad_request(
            "say which environment the run acts on (env), or the incident it is part of",
        )
        .at("/env"));
    };
    match &service {
        Some(s) => {
            environment(known_service(&ctx, s, "/service")?, &env)?;
        }
        None => {
            if !ctx
                .config
                .services
                .iter()
                .any(|s| s.environment(&env).is_some())
            {
                return Err(
                    ApiError::not_found(format!("no service has an environment {env:?}"))
                        .at("/env"),
                );
            }
        }
    }
    access.holds(rb.role, &env)?;
    let given: Vec<(String, String)> = req.inputs.into_iter().collect();
    let inputs = rb
        .resolve_inputs(&given)
        .map_err(|e| ApiError::bad_request(e).at("/inputs"))?;
    let run = crate::runbooks::new_run(
        &rb,
        &inputs,
        &env,
        service,
        req.incident,
        &caller,
        ctx.clock.now_ms(),
    );
    crate::runbooks::started(&ctx, &run).await?;
    created(run)
}

#[utoipa::path(get, path = "/api/v1/runbook-runs", params(("all" = Option<bool>, Query)), responses((status = 200, body = Vec<RunbookRun>)))]
pub(super) async fn list_runs(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<RunQuery>,
) -> ApiResult<Json<Vec<RunbookRun>>> {
    Ok(Json(
        ctx.store
            .runbook_runs(q.all)
            .await?
            .into_iter()
            .map(|(r, _)| r)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/runbook-runs/{id}", responses((status = 200, body = RunbookRun), (status = 404, body = ErrorBody)))]
pub(super) async fn get_run(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<RunbookRun>> {
    Ok(Json(ctx.store.runbook_run(&id).await?.0))
}

/// Applies a person's `edit` to run `id` once the caller is found to hold the run's role in
/// its environment, then wakes the run.
async fn steer(
    ctx: &Arc<Ctx>,
    access: &Access,
    id: &str,
    caller: &str,
    mut edit: impl FnMut(&mut RunbookRun) -> Result<(), String>,
) -> ApiResult<Json<RunbookRun>> {
    let (run, _) = ctx.store.runbook_run(id).await?;
    let role: Role = run
        .role
        .parse()
        .map_err(|e: String| ApiError::internal(e))?;
    access.holds(role, &run.env)?;
    let run =
        crate::runbooks::change(ctx, id, caller, |r| edit(r).map_err(ApiError::conflict)).await?;
    crate::runbooks::kick(ctx, id);
    Ok(Json(run))
}

#[utoipa::path(post, path = "/api/v1/runbook-runs/{id}/steps/{step}/confirm", request_body = ConfirmStep,
    responses((status = 200, body = RunbookRun), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn confirm_step(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path((id, step)): Path<(String, String)>,
    Body(req): Body<ConfirmStep>,
) -> ApiResult<Json<RunbookRun>> {
    let now = ctx.clock.now_ms();
    steer(&ctx, &access, &id, &caller, |r| {
        r.confirm(&step, &caller, &req.note, now)
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/runbook-runs/{id}/steps/{step}/retry",
    responses((status = 200, body = RunbookRun), (status = 403, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn retry_step(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path((id, step)): Path<(String, String)>,
) -> ApiResult<Json<RunbookRun>> {
    let now = ctx.clock.now_ms();
    steer(&ctx, &access, &id, &caller, |r| {
        r.retry(&step, &caller, now)
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/runbook-runs/{id}/steps/{step}/skip", request_body = Reason,
    responses((status = 200, body = RunbookRun), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn skip_step(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path((id, step)): Path<(String, String)>,
    Body(req): Body<Reason>,
) -> ApiResult<Json<RunbookRun>> {
    reason_given(&req.reason, "skipping a step")?;
    let now = ctx.clock.now_ms();
    steer(&ctx, &access, &id, &caller, |r| {
        r.skip(&step, &caller, &req.reason, now)
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/runbook-runs/{id}/steps/{step}/alter", request_body = AlterStep,
    responses((status = 200, body = RunbookRun), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn alter_step(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path((id, step)): Path<(String, String)>,
    Body(req): Body<AlterStep>,
) -> ApiResult<Json<RunbookRun>> {
    reason_given(&req.reason, "altering a step")?;
    if req.command.trim().is_empty() {
        return Err(ApiError::bad_request("say the command to run instead").at("/command"));
    }
    let now = ctx.clock.now_ms();
    steer(&ctx, &access, &id, &caller, |r| {
        r.alter(&step, &req.command, &caller, &req.reason, now)
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/runbook-runs/{id}/ad-hoc", request_body = AdHocStep,
    responses((status = 200, body = RunbookRun), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn ad_hoc_step(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<AdHocStep>,
) -> ApiResult<Json<RunbookRun>> {
    reason_given(&req.reason, "an ad-hoc action")?;
    if req.title.trim().is_empty() {
        return Err(ApiError::bad_request("say what the action is").at("/title"));
    }
    let now = ctx.clock.now_ms();
    let timeout = backstop_core::duration::millis(backstop_config::runbook::DEFAULT_STEP_TIMEOUT);
    steer(&ctx, &access, &id, &caller, |r| {
        r.ad_hoc(
            &req.title,
            req.command.as_deref(),
            timeout,
            &caller,
            &req.reason,
            now,
        )
        .map(|_| ())
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/runbook-runs/{id}/abort", request_body = Reason,
    responses((status = 200, body = RunbookRun), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn abort_run(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<Reason>,
) -> ApiResult<Json<RunbookRun>> {
    reason_given(&req.reason, "aborting a run")?;
    let now = ctx.clock.now_ms();
    steer(&ctx, &access, &id, &caller, |r| {
        r.abort(&caller, &req.reason, now)
    })
    .await
}
