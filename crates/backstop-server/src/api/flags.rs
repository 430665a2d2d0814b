//! `/flags`: the declared feature flags per environment, setting a percentage, staged
//! re-enables; and `/ofrep/v1/evaluate/flags`: OpenFeature's remote evaluation protocol, so an
//! application's OpenFeature SDK (with an OFREP provider) asks Backstop directly.

use std::sync::Arc;

use axum::extract::{Path, Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use backstop_api::ErrorBody;
use backstop_api::flags::{
    AbortReenable, FlagView, OfrepFailure, OfrepRequest, OfrepSuccess, SetFlag, StartReenable,
};
use backstop_core::duration::millis;
use backstop_core::event::EventKind;
use backstop_core::flag::evaluate;
use serde::Deserialize;
use serde_json::{Value, json};

use super::{Acting, Body, environment, reason_given};
use crate::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::flags::{change, declared, flush, read, view};

pub(super) fn routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/flags", get(list_flags))
        .route("/flags/{name}/set", post(set_flag))
        .route("/flags/{name}/reenable", post(start_reenable))
        .route("/flags/{name}/abort", post(abort_reenable))
}

/// The OpenFeature remote evaluation routes, served under `/ofrep/v1`.
pub(super) fn ofrep_routes() -> Router<Arc<Ctx>> {
    Router::new()
        .route("/evaluate/flags/{key}", post(ofrep_evaluate))
        .route("/evaluate/flags", post(ofrep_bulk))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
pub(super) struct FlagQuery {
    /// Only this environment.
    env: Option<String>,
}

/// Flag `key` and its service, in `env` of that service, where the caller holds the route's
/// role.
fn acting_on<'a>(
    ctx: &'a Ctx,
    access: &super::Access,
    key: &str,
    env: &str,
) -> ApiResult<(
    &'a backstop_config::Service,
    &'a backstop_config::validation::Flag,
)> {
    let (svc, flag) = declared(ctx, key)?;
    environment(svc, env)?;
    access.in_env(env)?;
    Ok((svc, flag))
}

/// Every declared flag in every environment of its service.
#[utoipa::path(get, path = "/api/v1/flags", params(FlagQuery), responses((status = 200, body = Vec<FlagView>)))]
pub(super) async fn list_flags(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<FlagQuery>,
) -> ApiResult<Json<Vec<FlagView>>> {
    let mut out = Vec::new();
    for svc in &ctx.config.services {
        for flag in &svc.flags {
            for env in &svc.environments {
                if q.env.as_deref().is_some_and(|e| e != env.name) {
                    continue;
                }
                let (f, _) = read(&ctx, svc, &flag.key, &env.name).await?;
                out.push(view(svc, flag, &f));
            }
        }
    }
    Ok(Json(out))
}

/// Sets a flag's percentage in one environment (audited). A staged re-enable under way ends:
/// the person has taken over.
#[utoipa::path(post, path = "/api/v1/flags/{name}/set", request_body = SetFlag,
    responses((status = 200, body = FlagView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub(super) async fn set_flag(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(key): Path<String>,
    Body(req): Body<SetFlag>,
) -> ApiResult<Json<FlagView>> {
    let (svc, flag) = acting_on(&ctx, &access, &key, &req.env)?;
    reason_given(&req.reason, "setting a flag")?;
    if req.percentage > 100 {
        return Err(ApiError::bad_request("a percentage is 0 to 100").at("/percentage"));
    }
    let summary = format!(
        "flag {key} in {} set to {}% by {caller}: {}",
        req.env, req.percentage, req.reason
    );
    let f = change(&ctx, svc, &key, &req.env, |f, now| {
        if f.running_plan().is_some() {
            f.abort_reenable(&caller, &format!("set to {}% by hand", req.percentage), now)?;
        }
        f.set(req.percentage, &caller, &req.reason, now);
        f.announce_later(&caller, EventKind::FlagSet, summary.clone(), now);
        Ok(())
    })
    .await?;
    flush(&ctx, &key, &req.env, 0).await?;
    Ok(Json(view(svc, flag, &f)))
}

/// Starts a staged re-enable: the first stage's percentage now, each next one once the stage
/// has held (the judge saw the on cohort do as well as the off cohort, for `hold`, with at
/// least `min_requests`); back to 0 % the moment the on cohort does worse.
#[utoipa::path(post, path = "/api/v1/flags/{name}/reenable", request_body = StartReenable,
    responses((status = 200, body = FlagView), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn start_reenable(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(key): Path<String>,
    Body(req): Body<StartReenable>,
) -> ApiResult<Json<FlagView>> {
    let (svc, flag) = acting_on(&ctx, &access, &key, &req.env)?;
    let stages = req.stages.clone().unwrap_or_else(|| flag.stages.clone());
    backstop_core::flag::check_stages(&stages)
        .map_err(|e| ApiError::bad_request(e).at("/stages"))?;
    let hold_ms = req.hold_ms.unwrap_or_else(|| millis(flag.hold));
    if hold_ms < 0 {
        return Err(ApiError::bad_request("hold_ms cannot be negative").at("/hold_ms"));
    }
    let min_requests = req.min_requests.unwrap_or(flag.min_requests);
    let f = change(&ctx, svc, &key, &req.env, |f, now| {
        f.start_reenable(stages.clone(), hold_ms, min_requests, &caller, now)?;
        let plan = f.plan.as_ref().map(|p| p.stages.clone()).unwrap_or_default();
        let summary = format!(
            "staged re-enable of flag {key} in {} started by {caller}: {} (each held {}s, at least {min_requests} requests on)",
            req.env,
            plan.iter()
                .map(|s| format!("{s}%"))
                .collect::<Vec<_>>()
                .join(" → "),
            hold_ms / 1000
        );
        f.announce_later(&caller, EventKind::FlagReenableStarted, summary, now);
        Ok(())
    })
    .await?;
    flush(&ctx, &key, &req.env, 0).await?;
    Ok(Json(view(svc, flag, &f)))
}

/// Stops a staged re-enable where it stands (the percentage stays; set it if it should not).
#[utoipa::path(post, path = "/api/v1/flags/{name}/abort", request_body = AbortReenable,
    responses((status = 200, body = FlagView), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(super) async fn abort_reenable(
    Acting {
        ctx,
        caller,
        access,
    }: Acting,
    Path(key): Path<String>,
    Body(req): Body<AbortReenable>,
) -> ApiResult<Json<FlagView>> {
    let (svc, flag) = acting_on(&ctx, &access, &key, &req.env)?;
    reason_given(&req.reason, "aborting a re-enable")?;
    let f = change(&ctx, svc, &key, &req.env, |f, now| {
        f.abort_reenable(&caller, &req.reason, now)?;
        let summary = format!(
            "staged re-enable of flag {key} in {} aborted by {caller} at {}%: {}",
            f.env, f.percentage, req.reason
        );
        f.announce_later(&caller, EventKind::FlagReenableAborted, summary, now);
        Ok(())
    })
    .await?;
    flush(&ctx, &key, &req.env, 0).await?;
    Ok(Json(view(svc, flag, &f)))
}

/// An OFREP failure answer.
fn failure(status: StatusCode, key: &str, code: &str, details: String) -> Response {
    (
        status,
        Json(OfrepFailure {
            key: key.to_owned(),
            error_code: code.to_owned(),
            error_details: details,
        }),
    )
        .into_response()
}

/// Evaluates `key` for `context` as OFREP answers it: success, or failure with its status.
async fn evaluate_one(
    ctx: &Ctx,
    access: &super::Access,
    key: &str,
    context: &serde_json::Map<String, Value>,
) -> Result<OfrepSuccess, Response> {
    let (svc, flag) = declared(ctx, key)
        .map_err(|e| failure(StatusCode::NOT_FOUND, key, "FLAG_NOT_FOUND", e.message))?;
    let invalid =
        |details: String| failure(StatusCode::BAD_REQUEST, key, "INVALID_CONTEXT", details);
    let asked = match context.get("env").or_else(|| context.get("environment")) {
        None => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("`env` in the context must be a string".into())),
    };
    let env = match (asked, access.env_scope()) {
        (Some(e), _) => e.to_owned(),
        (None, Some(scope)) => scope.to_owned(),
        (None, None) if svc.environments.len() == 1 => svc.environments[0].name.clone(),
        (None, None) => {
            return Err(invalid(format!(
                "flag {key} has a percentage per environment ({}): put `env` in the context, or use a token limited to one environment",
                svc.environments
                    .iter()
                    .map(|e| e.name.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            )));
        }
    };
    if svc.environment(&env).is_none() {
        return Err(invalid(format!(
            "service {} has no environment {env:?}",
            svc.name
        )));
    }
    access.in_env(&env).map_err(IntoResponse::into_response)?;
    let unit = match context.get("targetingKey") {
        None | Some(Value::Null) => None,
        Some(Value::String(s)) => Some(s.as_str()),
        Some(_) => return Err(invalid("`targetingKey` must be a string".into())),
    };
    // Only the percentage: evaluation is the hot path, the re-enable's evidence is not needed.
    let percentage = ctx
        .store
        .flag_percentage(key, &env)
        .await
        .map_err(|e| crate::error::ApiError::from(e).into_response())?
        .unwrap_or(0);
    let e = evaluate(percentage, flag.group(), unit)
        .map_err(|e| failure(StatusCode::BAD_REQUEST, key, e.code(), e.to_string()))?;
    Ok(OfrepSuccess {
        key: key.to_owned(),
        value: e.value,
        reason: e.reason.into(),
        variant: e.variant.into(),
        metadata: {
            // OFREP metadata values are booleans, strings or numbers: no nulls.
            let mut m = json!({"service": svc.name, "env": env, "percentage": percentage});
            if let Some(b) = e.bucket {
                m["bucket"] = json!(b);
            }
            m
        },
    })
}

/// OFREP single-flag evaluation: `{"context": {"targetingKey": "user-42", "env": "production"}}`
/// → `{"key", "value", "reason", "variant", "metadata"}`. The environment is the context's
/// `env`, else the token's, else the service's only one.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags/{key}", request_body = OfrepRequest,
    responses((status = 200, body = OfrepSuccess), (status = 400, body = OfrepFailure), (status = 404, body = OfrepFailure)))]
pub(super) async fn ofrep_evaluate(
    Acting { ctx, access, .. }: Acting,
    Path(key): Path<String>,
    body: axum::body::Bytes,
) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(details) => return failure(StatusCode::BAD_REQUEST, &key, "PARSE_ERROR", details),
    };
    match evaluate_one(&ctx, &access, &key, &req.context).await {
        Ok(ok) => Json(ok).into_response(),
        Err(resp) => resp,
    }
}

/// OFREP bulk evaluation: every declared flag for the context, each a success or a failure.
#[utoipa::path(post, path = "/ofrep/v1/evaluate/flags", request_body = OfrepRequest,
    responses((status = 200, body = Object), (status = 400, body = backstop_api::flags::OfrepBulkFailure)))]
pub(super) async fn ofrep_bulk(
    Acting { ctx, access, .. }: Acting,
    body: axum::body::Bytes,
) -> Response {
    let req = match parse_request(&body) {
        Ok(r) => r,
        Err(details) => {
            return (
                StatusCode::BAD_REQUEST,
                Json(backstop_api::flags::OfrepBulkFailure {
                    error_code: "PARSE_ERROR".into(),
                    error_details: details,
                }),
            )
                .into_response();
        }
    };
    let mut flags = Vec::new();
    let keys: Vec<String> = ctx
        .config
        .services
        .iter()
        .flat_map(|s| s.flags.iter().map(|f| f.key.clone()))
        .collect();
    for key in keys {
        match evaluate_one(&ctx, &access, &key, &req.context).await {
            Ok(ok) => flags.push(json!(ok)),
            Err(resp) => {
                // A flag the caller may not read, or cannot evaluate, is reported, not fatal.
                let bytes = axum::body::to_bytes(resp.into_body(), 64 * 1024)
                    .await
                    .unwrap_or_default();
                let failure: Value = serde_json::from_slice(&bytes).unwrap_or_else(|_| {
                    json!({"key": key, "errorCode": "GENERAL", "errorDetails": "not evaluated"})
                });
                let failure = if failure.get("errorCode").is_some() {
                    failure
                } else {
                    json!({"key": key, "errorCode": "GENERAL",
                           "errorDetails": failure.get("message").cloned().unwrap_or(Value::Null)})
                };
                flags.push(failure);
            }
        }
    }
    Json(json!({"flags": flags})).into_response()
}

/// The request body: empty means an empty context.
fn parse_request(body: &[u8]) -> Result<OfrepRequest, String> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(OfrepRequest::default());
    }
    let mut de = serde_json::Deserializer::from_slice(body);
    serde_path_to_error::deserialize(&mut de).map_err(|e| {
        let pointer = backstop_config::json_pointer(e.path());
        format!(
            "invalid request body at {}: {}",
            if pointer.is_empty() { "/" } else { &pointer },
            e.inner()
        )
    })
}
