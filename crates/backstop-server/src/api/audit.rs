//! `/audit`: the hash-chained audit log and its verification.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use backstop_api::audit::{AuditQuery, AuditVerification};
use backstop_core::audit::AuditRecord;

use super::limit;
use crate::Ctx;
use crate::error::ApiResult;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/audit", get(list_audit))
        .route("/audit/verify", get(verify_audit))
}

#[utoipa::path(get, path = "/api/v1/audit", params(("after" = Option<i64>, Query), ("limit" = Option<i64>, Query)), responses((status = 200, body = Vec<AuditRecord>)))]
pub(super) async fn list_audit(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<AuditQuery>,
) -> ApiResult<Json<Vec<AuditRecord>>> {
    Ok(Json(
        ctx.store
            .audit(q.after.unwrap_or(0), limit(q.limit, 1000, 100_000))
            .await?,
    ))
}

#[utoipa::path(get, path = "/api/v1/audit/verify", responses((status = 200, body = AuditVerification)))]
pub(super) async fn verify_audit(
    State(ctx): State<Arc<Ctx>>,
) -> ApiResult<Json<AuditVerification>> {
    Ok(Json(crate::verification(ctx.store.as_ref()).await?))
}
