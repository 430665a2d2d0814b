//! `/audit`: the hash-chained audit log, its verification (signature and checkpoints included)
//! and signed checkpoints of its head.

use std::sync::Arc;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use backstop_api::audit::{AuditQuery, AuditVerification, VerifyRequest};
use backstop_core::audit::{AuditRecord, Checkpoint};

use super::{Body, limit};
use crate::Ctx;
use crate::error::ApiResult;

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/audit", get(list_audit))
        .route(
            "/audit/verify",
            get(verify_audit).post(verify_audit_against),
        )
        .route("/audit/checkpoint", get(checkpoint))
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

/// The whole chain: every hash, the head's signature with the daemon's audit key.
#[utoipa::path(get, path = "/api/v1/audit/verify", responses((status = 200, body = AuditVerification)))]
pub(super) async fn verify_audit(
    State(ctx): State<Arc<Ctx>>,
) -> ApiResult<Json<AuditVerification>> {
    Ok(Json(verify(&ctx, None).await?))
}

/// [`verify_audit`], and against a checkpoint kept elsewhere: the record it names must still be
/// there, unchanged, and the checkpoint signed by this key.
#[utoipa::path(post, path = "/api/v1/audit/verify", request_body = VerifyRequest, responses((status = 200, body = AuditVerification)))]
pub(super) async fn verify_audit_against(
    State(ctx): State<Arc<Ctx>>,
    Body(req): Body<VerifyRequest>,
) -> ApiResult<Json<AuditVerification>> {
    Ok(Json(verify(&ctx, req.checkpoint.as_ref()).await?))
}

async fn verify(ctx: &Ctx, checkpoint: Option<&Checkpoint>) -> ApiResult<AuditVerification> {
    let expect = backstop_store::Expect {
        key: Some(&ctx.audit_key),
        // This daemon recorded its start: an empty chain was emptied.
        used: true,
        // The daemon signed the chain at its start.
        may_be_unsigned: false,
        checkpoint,
    };
    Ok(crate::verification(ctx.store.as_ref(), &expect).await?)
}

/// The chain's head now, signed with the audit key: keep it elsewhere (a file, a webhook), and
/// `audit verify --checkpoint` later proves nothing up to it was removed or rewritten.
#[utoipa::path(get, path = "/api/v1/audit/checkpoint", responses((status = 200, body = Checkpoint)))]
pub(super) async fn checkpoint(State(ctx): State<Arc<Ctx>>) -> ApiResult<Json<Checkpoint>> {
    let head = ctx.store.audit_head().await?;
    Ok(Json(crate::audit_guard::checkpoint(
        head.as_ref(),
        &ctx.audit_key,
        ctx.clock.now_ms(),
    )))
}
