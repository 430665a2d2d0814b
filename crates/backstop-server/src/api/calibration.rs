//! `/rollouts/{id}/label` and `/calibrate/{service}`: people say what verdicts really were;
//! the labelled rollouts are replayed through the judge at several settings.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::calibration::{CalibrateQuery, LabelRequest};
use backstop_core::event::EventKind;
use backstop_core::label::{Label, VerdictLabel};
use backstop_core::model::Phase;
use backstop_judge::calibrate::{Case, Truth, calibrate};
use serde_json::json;

use super::{Acting, Body};
use crate::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::releases::known_service;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/rollouts/{id}/label", post(label_rollout))
        .route("/calibrate/{service}", get(calibrate_service))
}

/// Says what a rollout's verdict really was; a later label replaces an earlier one.
#[utoipa::path(post, path = "/api/v1/rollouts/{id}/label", request_body = LabelRequest,
    responses((status = 200, body = VerdictLabel), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn label_rollout(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(id): Path<String>,
    Body(req): Body<LabelRequest>,
) -> ApiResult<Json<VerdictLabel>> {
    let r = ctx.store.rollout(&id).await?;
    access.in_env(&r.env)?;
    let label: Label = req
        .label
        .parse()
        .map_err(|e: backstop_core::named::UnknownValue| {
            ApiError::bad_request(e.to_string()).at("/label")
        })?;
    label
        .fits(&r)
        .map_err(|e| ApiError::conflict(e).at("/label"))?;
    let l = VerdictLabel {
        rollout_id: r.id.clone(),
        service: r.service.clone(),
        env: r.env.clone(),
        label,
        by: caller.clone(),
        at_ms: ctx.clock.now_ms(),
        note: req.note,
    };
    ctx.store.set_label(&l).await?;
    crate::audit(
        &ctx,
        &caller,
        EventKind::VerdictLabelled,
        &format!("rollout/{}", r.id),
        "manual",
        json!({"label": l.label, "note": l.note, "release": r.to_release_id}),
    )
    .await?;
    Ok(Json(l))
}

/// Replays the labelled rollouts of a service (and its promoted ones nobody labelled, as good)
/// through its judge at several settings; recommends one, changes nothing.
#[utoipa::path(get, path = "/api/v1/calibrate/{service}", params(("env" = Option<String>, Query)),
    responses((status = 200, description = "the trials and the recommendation"), (status = 404, body = ErrorBody)))]
pub(super) async fn calibrate_service(
    State(ctx): State<Arc<Ctx>>,
    Path(service): Path<String>,
    Query(q): Query<CalibrateQuery>,
) -> ApiResult<Json<serde_json::Value>> {
    let svc = known_service(&ctx, &service, "/service")?;
    let labels = ctx.store.labels(Some(&service)).await?;
    let mut cases = Vec::new();
    for r in ctx.store.rollouts(Some(&service), 100_000).await? {
        if q.env.as_deref().is_some_and(|e| e != r.env) {
            continue;
        }
        let truth = match labels.iter().find(|l| l.rollout_id == r.id) {
            Some(l) if l.label.bad() => Truth::Bad,
            Some(_) => Truth::Good,
            None if r.phase == Phase::Promoted => Truth::Good,
            None => continue,
        };
        let intervals = ctx.store.intervals(&r.id).await?;
        if intervals.is_empty() {
            continue;
        }
        cases.push(Case {
            rollout_id: r.id,
            truth,
            intervals,
        });
    }
    let result = calibrate(&svc.analysis, &cases);
    Ok(Json(
        serde_json::to_value(&result).map_err(|e| ApiError::internal(e.to_string()))?,
    ))
}
