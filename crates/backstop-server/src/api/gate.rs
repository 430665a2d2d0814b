//! `GET /gate`: every pre-deployment check for a release, without starting anything.

use std::sync::Arc;

use axum::extract::Query;
use axum::routing::get;
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::gate::{Action, GateQuery, GateReport};
use backstop_core::model::Release;

use super::{Acting, environment};
use crate::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::gate::{Intent, evaluate, require_reason};

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new().route("/gate", get(get_gate))
}

/// Every pre-deployment check for a release, without starting anything (for pipelines).
#[utoipa::path(get, path = "/api/v1/gate",
    params(("service" = String, Query), ("env" = String, Query), ("release" = String, Query, description = "version or service@version"),
           ("critical" = Option<bool>, Query), ("override_freeze" = Option<bool>, Query), ("reason" = Option<String>, Query)),
    responses((status = 200, body = GateReport), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn get_gate(
    Acting { ctx, caller, .. }: Acting,
    Query(q): Query<GateQuery>,
) -> ApiResult<Json<GateReport>> {
    require_reason(q.critical, q.override_freeze, q.reason.as_deref())?;
    let svc = ctx.config.service(&q.service).ok_or_else(|| {
        ApiError::not_found(format!("unknown service {:?}", q.service)).at("/service")
    })?;
    environment(svc, &q.env)?;
    let release_id = if q.release.contains('@') {
        q.release.clone()
    } else {
        Release::id_for(&q.service, &q.release)
    };
    ctx.store
        .release(&release_id)
        .await
        .map_err(|e| ApiError::from(e).at("/release"))?;
    let intent = Intent {
        action: Action::Check,
        actor: caller,
        rollout_id: None,
        critical: q.critical,
        override_freeze: q.override_freeze,
        reason: q.reason,
        approved_by: None,
    };
    Ok(Json(
        evaluate(&ctx, &q.service, &q.env, &release_id, &intent).await,
    ))
}
