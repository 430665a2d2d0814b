//! `/tokens`: API tokens for people, each with a role (maybe in one environment) and an expiry.
//! The token is shown once, when made; the store keeps its sha256.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::routing::post;
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::tokens::{CreateToken, CreatedToken};
use backstop_core::access::{Role, TokenRecord, check_token_name};
use backstop_core::event::EventKind;
use serde_json::json;

use super::{Acting, Body, Created, created};
use crate::Ctx;
use crate::auth::{hash_token, new_token};
use crate::error::{ApiError, ApiResult};

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/tokens", post(create_token).get(list_tokens))
        .route("/tokens/{name}/revoke", post(revoke_token))
}

#[utoipa::path(post, path = "/api/v1/tokens", request_body = CreateToken,
    responses((status = 201, body = CreatedToken), (status = 400, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn create_token(
    Acting { ctx, caller, .. }: Acting,
    Body(req): Body<CreateToken>,
) -> ApiResult<Created<CreatedToken>> {
    check_token_name(&req.name).map_err(|e| ApiError::bad_request(e).at("/name"))?;
    if req.name == "admin" {
        return Err(ApiError::bad_request(
            "the name admin is the state folder's own token (admin.token): pick another name",
        )
        .at("/name"));
    }
    if let Some(env) = &req.env {
        if req.role == Role::Admin {
            return Err(ApiError::bad_request(
                "an admin token cannot be limited to one environment (an admin manages everyone's tokens): drop `env` or pick another role",
            )
            .at("/env"));
        }
        let known = ctx
            .config
            .services
            .iter()
            .any(|s| s.environment(env).is_some());
        if !known {
            return Err(
                ApiError::not_found(format!("no service has an environment {env:?}")).at("/env"),
            );
        }
    }
    let now = ctx.clock.now_ms();
    let expires_at_ms = match &req.expires {
        None => None,
        Some(text) => {
            let d = backstop_config::parse_duration(text)
                .map_err(|e| ApiError::bad_request(e).at("/expires"))?;
            if d.is_zero() {
                return Err(
                    ApiError::bad_request("`expires` must be greater than 0").at("/expires")
                );
            }
            Some(now.saturating_add(backstop_core::duration::millis(d)))
        }
    };
    let token = new_token();
    let record = TokenRecord {
        name: req.name,
        role: req.role,
        env: req.env,
        hash: hash_token(&token),
        created_at_ms: now,
        created_by: caller.clone(),
        expires_at_ms,
        revoked_at_ms: None,
        revoked_by: None,
    };
    ctx.store.create_token(&record).await?;
    crate::audit(
        &ctx,
        &caller,
        EventKind::TokenCreated,
        &format!("token/{}", record.name),
        "manual",
        json!({"role": record.role, "env": record.env, "expires_at_ms": record.expires_at_ms}),
    )
    .await?;
    created(CreatedToken {
        name: record.name,
        role: record.role,
        env: record.env,
        token,
        expires_at: expires_at_ms.map(backstop_core::format_ms),
        expires_at_ms,
    })
}

#[utoipa::path(get, path = "/api/v1/tokens", responses((status = 200, body = Vec<TokenRecord>)))]
pub(super) async fn list_tokens(State(ctx): State<Arc<Ctx>>) -> ApiResult<Json<Vec<TokenRecord>>> {
    Ok(Json(ctx.store.tokens().await?))
}

#[utoipa::path(post, path = "/api/v1/tokens/{name}/revoke",
    responses((status = 200, body = TokenRecord), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn revoke_token(
    Acting { ctx, caller, .. }: Acting,
    Path(name): Path<String>,
) -> ApiResult<Json<TokenRecord>> {
    let record = ctx
        .store
        .revoke_token(&name, &caller, ctx.clock.now_ms())
        .await?;
    crate::audit(
        &ctx,
        &caller,
        EventKind::TokenRevoked,
        &format!("token/{name}"),
        "manual",
        json!({"role": record.role, "env": record.env}),
    )
    .await?;
    Ok(Json(record))
}
