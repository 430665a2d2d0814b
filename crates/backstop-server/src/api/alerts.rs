//! `/alerts`: Alertmanager's webhook, the alerts received, and acknowledging a held one.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::alerts::{AcknowledgeAlert, AlertmanagerPayload, AlertsReceived};
use backstop_core::alert::AlertRecord;
use serde::Deserialize;

use super::{Acting, Body, reason_given};
use crate::Ctx;
use crate::error::ApiResult;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/alerts", get(list_alerts))
        .route("/alerts/alertmanager", post(alertmanager))
        .route("/alerts/pagerduty", post(pagerduty))
        .route("/alerts/{id}", get(get_alert))
        .route("/alerts/{id}/acknowledge", post(acknowledge_alert))
}

/// Alertmanager's webhook (`webhook_configs`, payload version 4, with a bearer token of role
/// releaser): each firing alert whose `service` and `env` labels name a release that is new
/// (a rollout under way, or promoted within the service's `alerts.watch`) runs the service's
/// severity policy: roll back, hold for an acknowledgement, or notify. A resend of the same
/// firing changes nothing; resolved alerts are recorded.
#[utoipa::path(post, path = "/api/v1/alerts/alertmanager", request_body = AlertmanagerPayload,
    responses((status = 200, body = AlertsReceived), (status = 400, body = ErrorBody)))]
pub(super) async fn alertmanager(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Body(payload): Body<AlertmanagerPayload>,
) -> ApiResult<Json<AlertsReceived>> {
    // A token limited to one environment acts on alerts about that environment only.
    let scope = access.env_scope().map(str::to_owned);
    Ok(Json(
        crate::alerts::receive(&ctx, payload, &caller, scope.as_deref()).await?,
    ))
}

/// PagerDuty's v3 webhook (an `incident.*` subscription, with a bearer token of role
/// releaser): a triggered incident on a PagerDuty service that `alerts.pagerduty` maps to a
/// service's environment is taken like an alert (linked to the release new there, the
/// severity policy run on it); its resolution is recorded. Other events are answered with no
/// alert.
#[utoipa::path(post, path = "/api/v1/alerts/pagerduty", request_body = backstop_api::alerts::PagerDutyWebhook,
    responses((status = 200, body = AlertsReceived), (status = 400, body = ErrorBody)))]
pub(super) async fn pagerduty(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Body(hook): Body<backstop_api::alerts::PagerDutyWebhook>,
) -> ApiResult<Json<AlertsReceived>> {
    let scope = access.env_scope().map(str::to_owned);
    let Some(alert) = crate::alerts::from_pagerduty(&ctx, &hook) else {
        return Ok(Json(AlertsReceived { alerts: Vec::new() }));
    };
    let payload = backstop_api::alerts::AlertmanagerPayload {
        version: None,
        receiver: Some("pagerduty".to_owned()),
        status: None,
        alerts: vec![alert],
    };
    Ok(Json(
        crate::alerts::receive(&ctx, payload, &caller, scope.as_deref()).await?,
    ))
}

#[derive(Debug, Deserialize)]
pub(super) struct AlertQuery {
    limit: Option<i64>,
}

/// The latest alerts received (default 50), newest first, with what was done about each.
#[utoipa::path(get, path = "/api/v1/alerts", params(("limit" = Option<i64>, Query)),
    responses((status = 200, body = Vec<AlertRecord>)))]
pub(super) async fn list_alerts(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<AlertQuery>,
) -> ApiResult<Json<Vec<AlertRecord>>> {
    Ok(Json(
        ctx.store.alerts(super::limit(q.limit, 50, 1000)).await?,
    ))
}

/// One alert.
#[utoipa::path(get, path = "/api/v1/alerts/{id}",
    responses((status = 200, body = AlertRecord), (status = 404, body = ErrorBody)))]
pub(super) async fn get_alert(
    State(ctx): State<Arc<Ctx>>,
    Path(id): Path<String>,
) -> ApiResult<Json<AlertRecord>> {
    Ok(Json(ctx.store.alert(&id).await?))
}

/// Takes a held alert over before its deadline: its release is not rolled back (audited).
#[utoipa::path(post, path = "/api/v1/alerts/{id}/acknowledge", request_body = AcknowledgeAlert,
    responses((status = 200, body = AlertRecord), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn acknowledge_alert(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<AcknowledgeAlert>,
) -> ApiResult<Json<AlertRecord>> {
    reason_given(&req.reason, "acknowledging an alert")?;
    access.in_scope(ctx.store.alert(&id).await?.env.as_deref())?;
    Ok(Json(
        crate::alerts::acknowledge(&ctx, &id, &caller, &req.reason).await?,
    ))
}
