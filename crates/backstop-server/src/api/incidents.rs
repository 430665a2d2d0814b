//! `/incidents`: the war room. Open one by hand, move its status, hand roles over, take notes,
//! give status updates; read one with its timeline.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::incidents::{
    AssignRole, IncidentDetail, IncidentQuery, IncidentText, OpenIncident, SetStatus,
};
use backstop_core::incident::{Incident, IncidentRole, IncidentStatus, Sev};

use super::{Acting, Body, Created, created, environment};
use crate::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::releases::known_service;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/incidents", post(open_incident).get(list_incidents))
        .route("/incidents/{id}", get(get_incident))
        .route("/incidents/{id}/status", post(set_status))
        .route("/incidents/{id}/roles", post(assign_role))
        .route("/incidents/{id}/notes", post(add_note))
        .route("/incidents/{id}/updates", post(add_update))
}

fn text_given(text: &str, pointer: &str) -> ApiResult<()> {
    if text.trim().is_empty() {
        return Err(ApiError::bad_request("the text is empty").at(pointer));
    }
    Ok(())
}

#[utoipa::path(post, path = "/api/v1/incidents", request_body = OpenIncident,
    responses((status = 201, body = Incident), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn open_incident(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Body(req): Body<OpenIncident>,
) -> ApiResult<Created<Incident>> {
    access.in_env(&req.env)?;
    let svc = known_service(&ctx, &req.service, "/service")?;
    environment(svc, &req.env)?;
    let severity: Sev = req
        .severity
        .parse()
        .map_err(|e: backstop_core::named::UnknownValue| {
            ApiError::bad_request(e.to_string()).at("/severity")
        })?;
    text_given(&req.title, "/title")?;
    let incident = Incident::open(
        format!("inc-{}", uuid::Uuid::now_v7()),
        req.title,
        severity,
        &req.service,
        &req.env,
        &caller,
        ctx.clock.now_ms(),
    );
    created(crate::incidents::opened(&ctx, &incident).await?)
}

#[utoipa::path(get, path = "/api/v1/incidents", params(("all" = Option<bool>, Query)), responses((status = 200, body = Vec<Incident>)))]
pub(super) async fn list_incidents(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<IncidentQuery>,
) -> ApiResult<Json<Vec<Incident>>> {
    Ok(Json(
        ctx.store
            .incidents(q.all)
            .await?
            .into_iter()
            .map(|(i, _)| i)
            .collect(),
    ))
}

#[utoipa::path(get, path = "/api/v1/incidents/{id}", responses((status = 200, body = IncidentDetail), (status = 404, body = ErrorBody)))]
pub(super) async fn get_incident(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<IncidentDetail>> {
    Ok(Json(crate::incidents::detail(&ctx, &id).await?))
}

/// Applies `edit` to incident `id` as `caller`, once the caller's grant is checked in the
/// incident's environment.
async fn edit(
    ctx: &Ctx,
    access: &super::Access,
    id: &str,
    caller: &str,
    edit: impl FnMut(&mut Incident) -> ApiResult<()>,
) -> ApiResult<Json<Incident>> {
    let (incident, _) = ctx.store.incident(id).await?;
    access.in_env(&incident.env)?;
    Ok(Json(crate::incidents::change(ctx, id, caller, edit).await?))
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/status", request_body = SetStatus,
    responses((status = 200, body = Incident), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn set_status(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<SetStatus>,
) -> ApiResult<Json<Incident>> {
    let status: IncidentStatus =
        req.status
            .parse()
            .map_err(|e: backstop_core::named::UnknownValue| {
                ApiError::bad_request(e.to_string()).at("/status")
            })?;
    let now = ctx.clock.now_ms();
    edit(&ctx, &access, &id, &caller, |i| {
        i.set_status(status, &caller, &req.note, now)
            .map_err(ApiError::conflict)
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/roles", request_body = AssignRole,
    responses((status = 200, body = Incident), (status = 400, body = ErrorBody)))]
pub(super) async fn assign_role(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<AssignRole>,
) -> ApiResult<Json<Incident>> {
    let role: IncidentRole =
        req.role
            .parse()
            .map_err(|e: backstop_core::named::UnknownValue| {
                ApiError::bad_request(e.to_string()).at("/role")
            })?;
    text_given(&req.person, "/person")?;
    let now = ctx.clock.now_ms();
    edit(&ctx, &access, &id, &caller, |i| {
        i.assign(role, &req.person, &caller, now);
        Ok(())
    })
    .await
}

#[utoipa::path(post, path = "/api/v1/incidents/{id}/notes", request_body = IncidentText,
    responses((status = 200, body = Incident), (status = 400, body = ErrorBody)))]
pub(super) async fn add_note(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<IncidentText>,
) -> ApiResult<Json<Incident>> {
    text_given(&req.text, "/text")?;
    let now = ctx.clock.now_ms();
    edit(&ctx, &access, &id, &caller, |i| {
        i.note(&req.text, &caller, now);
        Ok(())
    })
    .await
}

/// A status update to the people following the incident; the next is due one cadence later
/// (SEV1 15 min, SEV2 30 min, SEV3 1 h, SEV4 4 h).
#[utoipa::path(post, path = "/api/v1/incidents/{id}/updates", request_body = IncidentText,
    responses((status = 200, body = Incident), (status = 400, body = ErrorBody)))]
pub(super) async fn add_update(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<IncidentText>,
) -> ApiResult<Json<Incident>> {
    text_given(&req.text, "/text")?;
    let now = ctx.clock.now_ms();
    edit(&ctx, &access, &id, &caller, |i| {
        i.update(&req.text, &caller, now);
        Ok(())
    })
    .await
}
