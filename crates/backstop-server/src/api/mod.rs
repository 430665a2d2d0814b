//! REST/JSON API under `/api/v1`, its OpenAPI document, `/metrics` and `/healthz`.
//!
//! Handlers validate and delegate: business steps live in the server's service modules
//! ([`crate::releases`], [`crate::rollouts`], [`crate::drills`], [`crate::gate`]); transitions of
//! running rollouts go through the controller's command queue so they never race its own
//! decisions. The wire types are `backstop-api`'s, shared with the CLI.

mod alerts;
mod approvals;
mod audit;
mod breakers;
mod calibration;
mod cluster;
mod config;
mod dora;
mod drills;
mod flags;
mod freezes;
mod gate;
mod groups;
mod heartbeats;
mod incidents;
mod recoveries;
mod releases;
mod rollouts;
mod runbooks;
mod services;
mod ships;
mod tokens;

use std::sync::Arc;

use axum::extract::{FromRequest, FromRequestParts, MatchedPath, Request, State};
use axum::http::request::Parts;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use backstop_api::{ErrorBody, ListQuery};
use backstop_core::access::{Grant, Role};
use backstop_core::audit::AuditRecord;
use backstop_core::model::{Artifact, Event, Phase, Recovery, Release, ReleaseStatus, Rollout};
use serde::de::DeserializeOwned;
use serde_json::json;
use utoipa::OpenApi;

use crate::Ctx;
use crate::auth::{Caller, needed_role, require_token};
use crate::error::{ApiError, ApiResult};

/// What a handler that acts on someone's behalf needs: the server's context, the caller
/// [`require_token`] authenticated (recorded as the actor of whatever the call changes), and
/// what the caller may do.
pub struct Acting {
    pub ctx: Arc<Ctx>,
    pub caller: String,
    pub access: Access,
}

/// The caller's grant and the role the route needs ([`crate::auth::POLICY`]): the middleware
/// checked it for actions tied to no environment; a handler acting in one checks it there.
pub struct Access {
    grant: Grant,
    needed: Role,
}

impl Access {
    /// `Ok` when the caller holds the route's role in `env`; else a 403 naming the role.
    pub fn in_env(&self, env: &str) -> ApiResult<()> {
        self.grant
            .allows(self.needed, Some(env))
            .map_err(ApiError::forbidden)
    }

    /// The one environment the caller's token is limited to, if it is.
    #[must_use]
    pub fn env_scope(&self) -> Option<&str> {
        self.grant.env.as_deref()
    }

    /// `Ok` when the caller holds `role` in `env` (a role an action needs that the route's
    /// policy cannot say: approving a request needs the role of what it runs).
    pub fn holds(&self, role: Role, env: &str) -> ApiResult<()> {
        self.grant
            .allows(role, Some(env))
            .map_err(ApiError::forbidden)
    }

    /// Like [`Access::in_env`] for an action scoped to `env`, or, with `None`, to every
    /// environment at once: that needs the role everywhere, not in one environment.
    pub fn in_scope(&self, env: Option<&str>) -> ApiResult<()> {
        match env {
            Some(env) => self.in_env(env),
            None if self.grant.env.is_some() => Err(ApiError::forbidden(format!(
                "this acts in every environment and needs the role {} everywhere; the caller holds {} in environment {} only",
                self.needed,
                self.grant.role,
                self.grant.env.as_deref().unwrap_or_default()
            ))),
            None => Ok(()),
        }
    }
}

impl FromRequestParts<Arc<Ctx>> for Acting {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        ctx: &Arc<Ctx>,
    ) -> Result<Self, Self::Rejection> {
        let Caller { actor, grant } =
            parts.extensions.get::<Caller>().cloned().ok_or_else(|| {
                ApiError::internal("no authenticated caller: the route is outside require_token")
            })?;
        let route = parts
            .extensions
            .get::<MatchedPath>()
            .map_or("", MatchedPath::as_str);
        Ok(Acting {
            ctx: ctx.clone(),
            caller: actor,
            access: Access {
                grant,
                needed: needed_role(parts.method.as_str(), route),
            },
        })
    }
}

/// The answer of a call that created something: 201 and its JSON.
type Created<T> = (StatusCode, Json<T>);

fn created<T>(value: T) -> ApiResult<Created<T>> {
    Ok((StatusCode::CREATED, Json(value)))
}

/// A person's action must say why (it goes to the audit log): `what` names the action.
fn reason_given(reason: &str, what: &str) -> ApiResult<()> {
    if reason.trim().is_empty() {
        return Err(ApiError::bad_request(format!("{what} needs a reason")).at("/reason"));
    }
    Ok(())
}

/// The environment `env` of `service`, or a 404 that points at `/env`.
fn environment<'a>(
    service: &'a backstop_config::Service,
    env: &str,
) -> ApiResult<&'a backstop_config::Environment> {
    service.environment(env).ok_or_else(|| {
        ApiError::not_found(format!(
            "service {} has no environment {env:?}",
            service.name
        ))
        .at("/env")
    })
}

/// A JSON body whose errors name the JSON pointer of the offending field.
pub struct Body<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes::Bytes::from_request(req, state).await.map_err(|e| {
            // Too large is a 413, not a malformed body.
            ApiError::with_status(e.status(), format!("cannot read the request body: {e}"))
        })?;
        let mut de = serde_json::Deserializer::from_slice(&bytes);
        match serde_path_to_error::deserialize(&mut de) {
            Ok(v) => Ok(Body(v)),
            Err(e) => {
                let pointer = backstop_config::json_pointer(e.path());
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

/// Declares the bearer token every `/api/v1` and `/ofrep/v1` call needs.
struct BearerSecurity;

impl utoipa::Modify for BearerSecurity {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{
            HttpAuthScheme, HttpBuilder, SecurityRequirement, SecurityScheme,
        };
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "A token from `backstop token create` (or STATE_DIR/admin.token)",
                    ))
                    .build(),
            ),
        );
        doc.security = Some(vec![SecurityRequirement::new(
            "bearer",
            Vec::<String>::new(),
        )]);
    }
}

/// Every answer a route documents, and the ones every route can give, with a description
/// (OpenAPI requires one): the status's reason phrase where the route says nothing more.
struct EveryAnswerDescribed;

impl utoipa::Modify for EveryAnswerDescribed {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{RefOr, ResponseBuilder, content::ContentBuilder};
        let error_body = || {
            ResponseBuilder::new().content(
                "application/json",
                ContentBuilder::new()
                    .schema(Some(RefOr::Ref(utoipa::openapi::Ref::from_schema_name(
                        "ErrorBody",
                    ))))
                    .build(),
            )
        };
        for (path, item) in &mut doc.paths.paths {
            let needs_token = path.starts_with("/api/v1/") || path.starts_with("/ofrep/");
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                // Any call can be refused for its token; one with a body or a query, for it.
                let refusals: &[(&str, &str)] = if needs_token {
                    &[
                        ("401", "No usable bearer token"),
                        ("403", "The token's role is not enough here"),
                        ("400", "The request is malformed (the error names where)"),
                    ]
                } else {
                    &[]
                };
                // A request that names something (in its path, query or body) can name
                // something that does not exist; one with a body can send too much.
                let names_something = op.parameters.as_ref().is_some_and(|p| !p.is_empty())
                    || op.request_body.is_some();
                let mut refusals = refusals.to_vec();
                if needs_token && names_something {
                    refusals.push(("404", "Something the request names does not exist"));
                }
                if needs_token && op.request_body.is_some() {
                    refusals.push(("413", "The body is over the size limit"));
                }
                let answers = &mut op.responses.responses;
                for (code, why) in refusals {
                    answers
                        .entry(code.into())
                        .or_insert_with(|| RefOr::T(error_body().description(why).build()));
                }
                for (code, answer) in answers.iter_mut() {
                    if let RefOr::T(r) = answer
                        && r.description.is_empty()
                    {
                        r.description = code
                            .parse::<u16>()
                            .ok()
                            .and_then(|c| StatusCode::from_u16(c).ok())
                            .and_then(|c| c.canonical_reason())
                            .unwrap_or("Answer")
                            .to_owned();
                    }
                }
            }
        }
    }
}

/// Rules the server enforces that the types alone do not say: a release names exactly one of
/// `file` and `command` (a string, the other absent or null).
struct ServerRules;

impl utoipa::Modify for ServerRules {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::schema::{AllOfBuilder, ObjectBuilder, OneOfBuilder, Type};
        let Some(components) = doc.components.as_mut() else {
            return;
        };
        let Some(release) = components.schemas.remove("CreateRelease") else {
            return;
        };
        let branch = |given: &str, other: &str| {
            ObjectBuilder::new()
                .required(given)
                .property(given, ObjectBuilder::new().schema_type(Type::String))
                .property(other, ObjectBuilder::new().schema_type(Type::Null))
                .build()
        };
        let exactly_one = OneOfBuilder::new()
            .item(branch("file", "command"))
            .item(branch("command", "file"))
            .description(Some("Exactly one of `file` and `command`."));
        components.schemas.insert(
            "CreateRelease".into(),
            AllOfBuilder::new().item(release).item(exactly_one).into(),
        );
    }
}

#[derive(OpenApi)]
#[openapi(
    modifiers(&BearerSecurity, &EveryAnswerDescribed, &ServerRules),
    info(
        title = "Backstop API",
        description = "Release-recovery control plane. Every /api/v1 call needs `Authorization: Bearer <token>`."
    ),
    paths(
        services::list_services,
        cluster::cluster_status,
        releases::create_release,
        releases::list_releases,
        releases::get_release,
        releases::readmit_release,
        rollouts::create_rollout,
        rollouts::list_rollouts,
        rollouts::get_rollout,
        rollouts::promote_rollout,
        rollouts::abort_rollout,
        rollouts::acknowledge_rollout,
        rollouts::export_rollout,
        rollouts::explain_rollout,
        recoveries::rollback,
        recoveries::rollback_preview,
        recoveries::list_recoveries,
        recoveries::get_recovery,
        recoveries::resume_recovery,
        recoveries::get_postmortem,
        recoveries::postmortem_done,
        breakers::list_breakers,
        breakers::reset_breaker,
        audit::list_audit,
        audit::verify_audit,
        audit::verify_audit_against,
        audit::checkpoint,
        gate::get_gate,
        freezes::create_freeze,
        freezes::list_freezes,
        freezes::end_freeze,
        groups::create_group,
        groups::list_groups,
        groups::get_group,
        groups::start_group_run,
        groups::get_group_run,
        ships::start_ship,
        ships::list_ships,
        ships::get_ship,
        ships::stop_ship,
        alerts::alertmanager,
        alerts::pagerduty,
        alerts::list_alerts,
        alerts::get_alert,
        alerts::acknowledge_alert,
        config::list_snapshots,
        config::take_snapshot,
        config::diff,
        config::restore,
        drills::start_drill,
        drills::finish_drill,
        drills::list_drills,
        drills::get_drill,
        tokens::create_token,
        tokens::list_tokens,
        tokens::revoke_token,
        approvals::list_approvals,
        approvals::approve,
        approvals::break_glass_rollback,
        incidents::open_incident,
        incidents::list_incidents,
        incidents::get_incident,
        incidents::set_status,
        incidents::assign_role,
        incidents::add_note,
        incidents::add_update,
        runbooks::list_runbooks,
        runbooks::start_run,
        runbooks::list_runs,
        runbooks::get_run,
        runbooks::confirm_step,
        runbooks::retry_step,
        runbooks::skip_step,
        runbooks::alter_step,
        runbooks::ad_hoc_step,
        runbooks::abort_run,
        dora::dora,
        dora::scorecards,
        dora::gaps,
        heartbeats::list_heartbeats,
        heartbeats::ping,
        calibration::label_rollout,
        calibration::calibrate_service,
        flags::list_flags,
        flags::set_flag,
        flags::start_reenable,
        flags::abort_reenable,
        flags::ofrep_evaluate,
        flags::ofrep_bulk
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
        backstop_api::gate::GateReport,
        backstop_api::gate::Check,
        backstop_api::freezes::FreezeList,
        backstop_core::model::Freeze,
        backstop_api::releases::ReadmitRelease,
        backstop_api::rollouts::RollbackPreview,
        backstop_api::rollouts::UndoneRelease,
        backstop_api::groups::CreateGroup,
        backstop_api::groups::GroupMemberRequest,
        backstop_api::groups::StartGroupRun,
        backstop_api::groups::GroupView,
        backstop_api::ships::StartShip,
        backstop_core::ship::Ship,
        backstop_core::ship::WaveRun,
        backstop_core::ship::WaveEnv,
        backstop_core::ship::Bake,
        backstop_core::ship::ShipHalt,
        backstop_core::ship::StopRequest,
        backstop_core::ship::ShipPhase,
        backstop_core::ship::WaveState,
        backstop_core::ship::EnvState,
        backstop_core::group::ReleaseGroup,
        backstop_core::group::GroupMember,
        backstop_core::group::GroupRun,
        backstop_core::group::MemberRun,
        backstop_core::group::Halt,
        backstop_core::group::GroupPhase,
        backstop_core::group::MemberState,
        backstop_api::alerts::AlertmanagerPayload,
        backstop_api::alerts::AlertmanagerAlert,
        backstop_api::alerts::PagerDutyWebhook,
        backstop_api::alerts::PagerDutyEvent,
        backstop_api::alerts::PagerDutyIncident,
        backstop_api::alerts::PagerDutyRef,
        backstop_api::alerts::AlertsReceived,
        backstop_api::alerts::AcknowledgeAlert,
        backstop_core::alert::AlertRecord,
        backstop_core::alert::AlertStatus,
        backstop_core::alert::AlertAction,
        backstop_core::drill::Drill,
        backstop_core::access::Role,
        backstop_core::audit::Checkpoint,
        backstop_api::audit::AuditVerification,
        backstop_api::audit::VerifyRequest,
        backstop_core::access::TokenRecord,
        backstop_api::tokens::CreateToken,
        backstop_api::tokens::CreatedToken,
        backstop_core::approval::Approval,
        backstop_api::rollouts::Approve,
        backstop_core::incident::Incident,
        backstop_core::incident::Entry,
        backstop_api::incidents::OpenIncident,
        backstop_api::incidents::SetStatus,
        backstop_api::incidents::AssignRole,
        backstop_api::incidents::IncidentText,
        backstop_api::incidents::IncidentDetail,
        backstop_api::incidents::TimelineItem,
        backstop_api::heartbeats::HeartbeatView,
        backstop_api::calibration::LabelRequest,
        backstop_core::label::VerdictLabel,
        backstop_api::dora::Gaps,
        backstop_core::gaps::CoverageGap,
        backstop_core::gaps::AutomationGap,
        backstop_core::scorecard::Scorecard,
        backstop_core::scorecard::ScoreCheck,
        backstop_core::scorecard::Readiness,
        backstop_core::dora::Figures,
        backstop_core::dora::Figure,
        backstop_core::dora::Level,
        backstop_core::postmortem::Draft,
        backstop_core::postmortem::PostmortemRecord,
        backstop_api::dora::PostmortemDone,
        backstop_core::postmortem::Phases,
        backstop_core::postmortem::Impact,
        backstop_core::postmortem::ActionItem,
        backstop_core::validation::RecoveryValidation,
        backstop_core::validation::CheckResult,
        backstop_core::runbook_run::RunbookRun,
        backstop_core::runbook_run::RunStep,
        backstop_core::runbook_run::Deviation,
        backstop_core::runbook_run::RunEntry,
        backstop_api::runbooks::RunbookInfo,
        backstop_api::runbooks::RunbookInput,
        backstop_api::runbooks::RunbookStepInfo,
        backstop_api::runbooks::StartRun,
        backstop_api::runbooks::ConfirmStep,
        backstop_api::runbooks::Reason,
        backstop_api::runbooks::AlterStep,
        backstop_api::runbooks::AdHocStep,
        backstop_api::flags::FlagView,
        backstop_api::flags::ReenableView,
        backstop_api::flags::SetFlag,
        backstop_api::flags::StartReenable,
        backstop_api::flags::AbortReenable,
        backstop_api::flags::OfrepRequest,
        backstop_api::flags::OfrepSuccess,
        backstop_api::flags::OfrepFailure,
        backstop_api::flags::OfrepBulkFailure,
        backstop_core::flag::FlagChange,
        backstop_core::flag::StageResult,
        backstop_core::explain::Explanation,
        backstop_core::explain::SignalExplanation
    ))
)]
pub struct ApiDoc;

pub fn router(ctx: Arc<Ctx>) -> Router {
    let api = Router::new()
        .merge(services::routes())
        .merge(cluster::routes())
        .merge(releases::routes())
        .merge(rollouts::routes())
        .merge(breakers::routes())
        .merge(recoveries::routes())
        .merge(audit::routes())
        .merge(gate::routes())
        .merge(freezes::routes())
        .merge(groups::routes())
        .merge(ships::routes())
        .merge(alerts::routes())
        .merge(config::routes())
        .merge(drills::routes())
        .merge(tokens::routes())
        .merge(approvals::routes())
        .merge(incidents::routes())
        .merge(runbooks::routes())
        .merge(dora::routes())
        .merge(heartbeats::routes())
        .merge(calibration::routes())
        .merge(flags::routes())
        .fallback(|| async { ApiError::not_found("no such API route") })
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            require_token,
        ))
        .layer(access_log(&ctx));
    let ofrep = flags::ofrep_routes()
        .layer(axum::middleware::from_fn_with_state(
            ctx.clone(),
            require_token,
        ))
        .layer(access_log(&ctx));
    // The API and OFREP routers log inside their own layers (they see the caller); these
    // three routes get theirs here. One layer per route: a call is logged and counted once.
    let plain = Router::new()
        .route(
            "/api/openapi.json",
            get(|| async { Json(ApiDoc::openapi()) }),
        )
        .route("/healthz", get(healthz))
        .route("/metrics", get(metrics))
        .route_layer(access_log(&ctx));
    let machine = Router::new()
        .nest("/api/v1", api)
        .nest("/ofrep/v1", ofrep)
        .merge(plain);
    let dashboard_log = access_log(&ctx);
    let machine: Router = machine.with_state(ctx);
    // The dashboard calls the API in-process, through the same layers a client goes through.
    let dashboard = crate::dashboard::routes(
        machine
            .clone()
            .layer(axum::middleware::map_response(crate::error::json_errors)),
    )
    .route_layer(dashboard_log);
    machine
        .merge(dashboard)
        .fallback(|| async { ApiError::not_found("no such route") })
        .layer(axum::middleware::map_response(crate::error::json_errors))
}

type AccessLogFn = fn(
    State<Arc<Ctx>>,
    Request,
    axum::middleware::Next,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>>;

/// The access-log layer of one router (so the route it matched is known).
fn access_log(
    ctx: &Arc<Ctx>,
) -> axum::middleware::FromFnLayer<AccessLogFn, Arc<Ctx>, (State<Arc<Ctx>>, Request)> {
    fn run(
        state: State<Arc<Ctx>>,
        req: Request,
        next: axum::middleware::Next,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Response> + Send>> {
        Box::pin(crate::access_log::access_log(state, req, next))
    }
    axum::middleware::from_fn_with_state(ctx.clone(), run as AccessLogFn)
}

/// `ok`, or 503 with the reason while the store refuses writes (the daemon is then in its
/// fail-safe: canaries out of traffic, no step starting).
async fn healthz(State(ctx): State<Arc<Ctx>>) -> Response {
    let outage = ctx
        .caches
        .store_health
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .clone();
    match outage {
        None => Json(json!({"status": "ok"})).into_response(),
        Some(o) => (
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            Json(json!({
                "status": "unhealthy",
                "reason": format!("the store refuses writes: {}", o.reason),
                "since_ms": o.since_ms,
                "canaries_withdrawn": o.withdrawn,
            })),
        )
            .into_response(),
    }
}

async fn metrics(State(ctx): State<Arc<Ctx>>) -> Response {
    match crate::metrics::render(&ctx).await {
        Ok(text) => ([(header::CONTENT_TYPE, crate::metrics::CONTENT_TYPE)], text).into_response(),
        Err(e) => ApiError::internal(format!("{e:#}")).into_response(),
    }
}

/// The `limit` of a list query: `default` when absent, clamped to `1..=max`.
fn limit(requested: Option<i64>, default: i64, max: i64) -> i64 {
    requested.unwrap_or(default).clamp(1, max)
}

/// The `limit` of the lists of rollouts, recoveries and drills: 50 unless asked, at most 1000.
fn list_limit(q: &ListQuery) -> i64 {
    limit(q.limit, 50, 1000)
}
