//! The promotion gate: every check that must pass before a rollout starts or is promoted,
//! all evaluated (never first-fail), each a named entry with its reason, so a refusal lists
//! everything that is in the way at once.
//!
//! Adding a check is one small `async fn(&Subject<'_>) -> anyhow::Result<Check>` plus one line
//! in [`evaluate`]. An error inside a check blocks (the gate fails closed) and says why.

use std::future::Future;

use backstop_core::event::EventKind;
use backstop_core::model::{EnvironmentState, Phase, Release, ReleaseStatus};
use backstop_core::{Millis, format_ms};
use backstop_store::StoreError;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use utoipa::ToSchema;

use crate::error::ApiError;
use crate::{Ctx, now_ms};

/// What the gate is asked about.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// A dry run (`backstop gate`): would a rollout start now?
    #[default]
    Check,
    /// `POST /rollouts`.
    Start,
    /// A person promotes a running rollout.
    Promote,
}

/// Who asks, for what, and with which exceptions.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
pub struct Intent {
    pub action: Action,
    /// Recorded as the actor of overrides.
    pub actor: String,
    /// The rollout being promoted (its own activity does not block it).
    pub rollout_id: Option<String>,
    /// A critical change (e.g. a fix-forward) passes the automatic freeze while a recovery is
    /// active in the environment.
    pub critical: bool,
    /// Override scheduled and manual freezes (refused in a regulated environment).
    pub override_freeze: bool,
    /// Why: required with `critical` or `override_freeze`.
    pub reason: Option<String>,
}

/// One named check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Check {
    /// Stable name, e.g. `lkg_backup`, `freeze`.
    pub name: String,
    pub ok: bool,
    /// Why it passed or what blocks it, in words.
    pub reason: String,
    /// Passed only because of `critical` or `override_freeze` (audited when acted on).
    #[serde(default)]
    pub overridden: bool,
    #[schema(value_type = Object)]
    pub details: Value,
}

impl Check {
    pub fn pass(name: &str, reason: impl Into<String>) -> Check {
        Check {
            name: name.into(),
            ok: true,
            reason: reason.into(),
            overridden: false,
            details: Value::Null,
        }
    }

    pub fn block(name: &str, reason: impl Into<String>) -> Check {
        Check {
            ok: false,
            ..Check::pass(name, reason)
        }
    }

    #[must_use]
    pub fn with(mut self, details: Value) -> Check {
        self.details = details;
        self
    }
}

/// The gate's answer: `go` only when every check passed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct GateReport {
    pub go: bool,
    pub service: String,
    pub env: String,
    pub release_id: String,
    pub action: Action,
    pub evaluated_at_ms: Millis,
    pub checks: Vec<Check>,
}

impl GateReport {
    /// The reasons of every failed check, `name: reason`.
    #[must_use]
    pub fn blocking(&self) -> Vec<String> {
        self.checks
            .iter()
            .filter(|c| !c.ok)
            .map(|c| format!("{}: {}", c.name, c.reason))
            .collect()
    }

    /// The checks that passed only by an override or a critical change.
    #[must_use]
    pub fn overridden(&self) -> Vec<&Check> {
        self.checks.iter().filter(|c| c.overridden).collect()
    }

    /// 409 `gate_blocked` listing every reason, with the whole report as `details`.
    #[must_use]
    pub fn refusal(&self) -> ApiError {
        let verb = match self.action {
            Action::Promote => "promote",
            Action::Start | Action::Check => "start a rollout of",
        };
        let mut e = ApiError::conflict(format!(
            "the gate refuses to {verb} {} in {}: {}",
            self.release_id,
            self.env,
            self.blocking().join("; ")
        ));
        e.code = "gate_blocked";
        e.details = serde_json::to_value(self).ok();
        e
    }
}

/// What every check looks at.
pub struct Subject<'a> {
    pub ctx: &'a Ctx,
    pub service: &'a str,
    pub env: &'a str,
    pub release_id: &'a str,
    pub intent: &'a Intent,
    pub now: Millis,
}

impl Subject<'_> {
    async fn release(&self) -> Result<Option<Release>, StoreError> {
        match self.ctx.store.release(self.release_id).await {
            Ok(r) => Ok(Some(r)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn state(&self) -> Result<Option<EnvironmentState>, StoreError> {
        self.ctx.store.environment(self.service, self.env).await
    }

    fn reason(&self) -> &str {
        self.intent.reason.as_deref().unwrap_or("")
    }
}

/// Runs every check for a rollout of `release_id` (`service@version`) into `service`/`env`.
pub async fn evaluate(
    ctx: &Ctx,
    service: &str,
    env: &str,
    release_id: &str,
    intent: &Intent,
) -> GateReport {
    let s = Subject {
        ctx,
        service,
        env,
        release_id,
        intent,
        now: now_ms(),
    };
    let checks = vec![
        run("release", release_ok(&s)).await,
        run("lkg_backup", lkg_backup(&s)).await,
        run("candidate_backup", candidate_backup(&s)).await,
        run("freeze", freeze(&s)).await,
        run("breaker", breaker_closed(&s)).await,
        run("active_rollout", no_active_rollout(&s)).await,
        run("recovery", no_recovery(&s)).await,
        run("migrations", migrations_proven(&s)).await,
        run("schema_way_back", schema_way_back(&s)).await,
    ];
    GateReport {
        go: checks.iter().all(|c| c.ok),
        service: service.into(),
        env: env.into(),
        release_id: release_id.into(),
        action: intent.action,
        evaluated_at_ms: s.now,
        checks,
    }
}

/// A check that could not be evaluated blocks, with the error as its reason.
async fn run(name: &str, check: impl Future<Output = anyhow::Result<Check>>) -> Check {
    match check.await {
        Ok(c) => c,
        Err(e) => Check::block(name, format!("could not be evaluated: {e:#}")),
    }
}

/// Service, environment and release exist; the release is not marked bad.
async fn release_ok(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "release";
    let Some(svc) = s.ctx.config.service(s.service) else {
        return Ok(Check::block(
            NAME,
            format!("unknown service {:?}", s.service),
        ));
    };
    if svc.environment(s.env).is_none() {
        return Ok(Check::block(
            NAME,
            format!("service {} has no environment {:?}", s.service, s.env),
        ));
    }
    let Some(r) = s.release().await? else {
        return Ok(Check::block(
            NAME,
            format!(
                "release {} is not registered (`backstop release create`)",
                s.release_id
            ),
        ));
    };
    if r.service != s.service {
        return Ok(Check::block(
            NAME,
            format!("release {} belongs to service {}", r.id, r.service),
        ));
    }
    if r.status == ReleaseStatus::Bad {
        return Ok(Check::block(
            NAME,
            format!(
                "release {} was rolled back ({}); register a new version instead",
                r.id,
                r.bad_reason.unwrap_or_default()
            ),
        )
        .with(json!({"status": "bad"})));
    }
    Ok(Check::pass(
        NAME,
        format!("{} is registered and not marked bad", r.id),
    ))
}

/// The service's migration set passes `migrations check`: every down proven on a scratch
/// database, no error finding.
async fn migrations_proven(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "migrations";
    let Some(svc) = s.ctx.config.service(s.service) else {
        return Ok(Check::pass(NAME, "unknown service: checked by `release`"));
    };
    let Some(spec) = &svc.migrations else {
        return Ok(Check::pass(NAME, "the service declares no migrations"));
    };
    let (ok, reason, details) = s.ctx.check_migrations(spec).await;
    Ok(if ok {
        Check::pass(NAME, reason)
    } else {
        Check::block(NAME, reason)
    }
    .with(details))
}

/// If this rollout has to be undone, the database can go back to what the last known good
/// runs on (no step, or proven downs); a refused way back blocks before anything starts.
async fn schema_way_back(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "schema_way_back";
    let Some(lkg) = s.state().await?.and_then(|st| st.lkg_release_id) else {
        return Ok(Check::pass(
            NAME,
            "first deployment: no release to go back to",
        ));
    };
    Ok(match s.ctx.schema_decision(s.service, s.env, &lkg).await? {
        None => Check::pass(
            NAME,
            format!("{lkg} declares no schema range, or the service has no migrations"),
        ),
        Some(backstop_core::schema::SchemaDecision::Compatible { note, .. }) => {
            Check::pass(NAME, format!("back to {lkg}: {note}"))
        }
        Some(backstop_core::schema::SchemaDecision::RunDowns { downs, .. }) => Check::pass(
            NAME,
            format!(
                "back to {lkg}: {} proven down(s) would run first ({})",
                downs.len(),
                downs
                    .iter()
                    .map(|m| m.version.as_str())
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        ),
        Some(backstop_core::schema::SchemaDecision::Refuse {
            reason, options, ..
        }) => Check::block(NAME, format!("no safe way back to {lkg}: {reason}"))
            .with(json!({"options": options})),
    })
}

/// Re-hashes the stored backup of `release`'s artifact (see [`crate::runtime::verified_backup`]).
async fn verify_backup(ctx: &Ctx, release: &Release) -> anyhow::Result<Result<(), String>> {
    let blobs = ctx.blobs.clone();
    let r = release.clone();
    Ok(tokio::task::spawn_blocking(move || {
        crate::runtime::verified_backup(blobs.as_ref(), &r).map(|_| ())
    })
    .await?)
}

/// The way back exists: the environment's last known good artifact is stored and re-verifies.
async fn lkg_backup(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "lkg_backup";
    let Some(lkg) = s.state().await?.and_then(|st| st.lkg_release_id) else {
        return Ok(Check::pass(
            NAME,
            format!(
                "first deployment of {} in {}: no last known good to protect yet",
                s.service, s.env
            ),
        ));
    };
    let release = s.ctx.store.release(&lkg).await?;
    let details = json!({"release": lkg, "sha256": release.sha256});
    Ok(match verify_backup(s.ctx, &release).await? {
        Ok(()) => Check::pass(
            NAME,
            format!(
                "last known good {lkg}: backup sha256:{} re-verified",
                release.sha256
            ),
        ),
        Err(e) => Check::block(
            NAME,
            format!("last known good {lkg} could not be rolled back to: {e}"),
        ),
    }
    .with(details))
}

/// The candidate's artifact is stored and re-verifies.
async fn candidate_backup(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "candidate_backup";
    let Some(release) = s.release().await? else {
        return Ok(Check::block(
            NAME,
            format!(
                "release {} is not registered: nothing to verify",
                s.release_id
            ),
        ));
    };
    let details = json!({"release": release.id, "sha256": release.sha256});
    Ok(match verify_backup(s.ctx, &release).await? {
        Ok(()) => Check::pass(
            NAME,
            format!(
                "{}: backup sha256:{} re-verified",
                release.id, release.sha256
            ),
        ),
        Err(e) => Check::block(NAME, format!("{}: {e}", release.id)),
    }
    .with(details))
}

/// One freeze in effect, for messages and details.
#[derive(Debug, Serialize)]
struct ActiveFreeze {
    kind: &'static str,
    scope: String,
    reason: String,
    window: String,
    until_ms: Option<Millis>,
    id: Option<String>,
}

/// Scheduled windows (service and environment) and manual freezes in effect now.
async fn active_freezes(s: &Subject<'_>) -> anyhow::Result<Vec<ActiveFreeze>> {
    let mut out = Vec::new();
    if let Some(svc) = s.ctx.config.service(s.service) {
        let env_windows = svc
            .environment(s.env)
            .map(|e| e.freeze.as_slice())
            .unwrap_or_default();
        let scoped = svc
            .freeze
            .iter()
            .map(|w| (format!("service {}", svc.name), w))
            .chain(
                env_windows
                    .iter()
                    .map(|w| (format!("environment {}", s.env), w)),
            );
        for (scope, w) in scoped {
            if let Some((_, end)) = w.schedule().and_then(|sch| sch.occurrence_at(s.now)) {
                out.push(ActiveFreeze {
                    kind: "scheduled",
                    scope,
                    reason: w.reason.clone(),
                    window: w.describe(),
                    until_ms: Some(end),
                    id: None,
                });
            }
        }
    }
    for f in s.ctx.store.freezes(false).await? {
        if f.in_effect(s.now) && f.covers(s.service, s.env) {
            let scope = match (&f.service, &f.env) {
                (Some(svc), Some(env)) => format!("{svc} in {env}"),
                (Some(svc), None) => format!("service {svc}"),
                (None, Some(env)) => format!("environment {env}"),
                (None, None) => "everything".into(),
            };
            out.push(ActiveFreeze {
                kind: "manual",
                scope,
                reason: f.reason,
                window: format!("started by {} at {}", f.actor, format_ms(f.started_at_ms)),
                until_ms: f.until_ms,
                id: Some(f.id),
            });
        }
    }
    Ok(out)
}

/// No scheduled or manual freeze is in effect (or an allowed override with a reason).
async fn freeze(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "freeze";
    let active = active_freezes(s).await?;
    if active.is_empty() {
        return Ok(Check::pass(NAME, "no freeze in effect"));
    }
    let list = active
        .iter()
        .map(|f| {
            let until = f.until_ms.map_or_else(
                || "until ended".to_owned(),
                |u| format!("until {}", format_ms(u)),
            );
            let id =
                f.id.as_deref()
                    .map(|i| format!(", id {i}"))
                    .unwrap_or_default();
            format!(
                "{} ({} freeze of {}, {}, {until}{id})",
                f.reason, f.kind, f.scope, f.window
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let details = json!({"freezes": active});
    let regulated = s
        .ctx
        .config
        .service(s.service)
        .and_then(|svc| svc.environment(s.env))
        .is_some_and(|e| e.regulated);
    if s.intent.override_freeze && !regulated {
        let mut c = Check::pass(
            NAME,
            format!(
                "frozen by {list}; overridden by {}: {}",
                s.intent.actor,
                s.reason()
            ),
        )
        .with(details);
        c.overridden = true;
        return Ok(c);
    }
    let why = if s.intent.override_freeze {
        format!(
            "; override refused: {} is regulated, so an override needs a second, different approver, and Backstop cannot tell actors apart yet (one admin token): wait for the window to end or end the manual freeze",
            s.env
        )
    } else {
        " (`--override-freeze --reason R` to override)".to_owned()
    };
    Ok(Check::block(
        NAME,
        format!(
            "deployments to {}/{} are frozen: {list}{why}",
            s.service, s.env
        ),
    )
    .with(details))
}

/// No open circuit-breaker trip covers the environment.
async fn breaker_closed(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "breaker";
    let trips: Vec<_> = s
        .ctx
        .store
        .open_trips()
        .await?
        .into_iter()
        .filter(|t| t.scope.covers(s.env))
        .collect();
    let Some(t) = trips.first() else {
        return Ok(Check::pass(
            NAME,
            "no circuit breaker open for this environment",
        ));
    };
    Ok(Check::block(
        NAME,
        format!(
            "circuit breaker open for {} since {} (`backstop breaker reset --scope {} --reason R`)",
            t.scope,
            format_ms(t.tripped_at_ms),
            t.scope
        ),
    )
    .with(json!({"trip": t.id, "scope": t.scope})))
}

/// No other rollout is still running in the environment.
async fn no_active_rollout(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "active_rollout";
    match s.ctx.store.active_rollout(s.service, s.env).await? {
        Some(r) if s.intent.rollout_id.as_deref() == Some(r.id.as_str()) => Ok(Check::pass(
            NAME,
            format!("rollout {} is the one being promoted", r.id),
        )),
        Some(r) => Ok(Check::block(
            NAME,
            format!(
                "rollout {} of {} is still {} in {}/{}: wait for it to end or abort it",
                r.id, r.to_release_id, r.phase, s.service, s.env
            ),
        )
        .with(json!({"rollout": r.id, "phase": r.phase}))),
        None => Ok(Check::pass(
            NAME,
            format!("no rollout in progress in {}/{}", s.service, s.env),
        )),
    }
}

/// Automatic freeze: no recovery running in the environment (any service), unless the change
/// is critical (a fix-forward) and says why.
async fn no_recovery(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "recovery";
    let mut busy: Vec<Value> = Vec::new();
    for rec in s.ctx.store.unfinished_recoveries().await? {
        if rec.env == s.env {
            busy.push(json!({"recovery": rec.id, "service": rec.service, "status": rec.status}));
        }
    }
    for r in s.ctx.store.active_rollouts().await? {
        if r.env == s.env && matches!(r.phase, Phase::Failed | Phase::Recovering) {
            busy.push(json!({"rollout": r.id, "service": r.service, "status": r.phase}));
        }
    }
    if busy.is_empty() {
        return Ok(Check::pass(
            NAME,
            format!("no recovery in progress in {}", s.env),
        ));
    }
    let list = busy
        .iter()
        .map(|b| {
            let what = b["recovery"]
                .as_str()
                .map(|id| format!("recovery {id}"))
                .or_else(|| b["rollout"].as_str().map(|id| format!("rollout {id}")))
                .unwrap_or_default();
            format!(
                "{what} of {} ({})",
                b["service"].as_str().unwrap_or(""),
                b["status"].as_str().unwrap_or("")
            )
        })
        .collect::<Vec<_>>()
        .join(", ");
    let details = json!({"recoveries": busy});
    if s.intent.critical {
        let mut c = Check::pass(
            NAME,
            format!(
                "recovery in progress in {} ({list}); passed as a critical change by {}: {}",
                s.env,
                s.intent.actor,
                s.reason()
            ),
        )
        .with(details);
        c.overridden = true;
        return Ok(c);
    }
    Ok(Check::block(
        NAME,
        format!(
            "a recovery is active in {} ({list}): non-critical rollouts there are frozen until it ends (`--critical --reason R` for a fix-forward)",
            s.env
        ),
    )
    .with(details))
}

// ---- HTTP: `GET /gate`, `/freezes` ----

use std::sync::Arc;

use axum::Json;
use axum::extract::{Extension, Path, Query, State};
use axum::http::StatusCode;
use backstop_core::model::Freeze;

use crate::api::Body;
use crate::auth::Caller;
use crate::error::ApiResult;

#[derive(Debug, Deserialize)]
pub struct GateQuery {
    pub service: String,
    pub env: String,
    /// A version of the service, or a release id `service@version`.
    pub release: String,
    #[serde(default)]
    pub critical: bool,
    #[serde(default)]
    pub override_freeze: bool,
    pub reason: Option<String>,
}

/// `critical` and `override_freeze` need a non-empty reason.
pub fn require_reason(
    critical: bool,
    override_freeze: bool,
    reason: Option<&str>,
) -> ApiResult<()> {
    if (critical || override_freeze) && reason.is_none_or(|r| r.trim().is_empty()) {
        let flag = if override_freeze {
            "override_freeze"
        } else {
            "critical"
        };
        return Err(ApiError::bad_request(format!("`{flag}` needs a reason")).at("/reason"));
    }
    Ok(())
}

/// Every pre-deployment check for a release, without starting anything (for pipelines).
#[utoipa::path(get, path = "/api/v1/gate",
    params(("service" = String, Query), ("env" = String, Query), ("release" = String, Query, description = "version or service@version"),
           ("critical" = Option<bool>, Query), ("override_freeze" = Option<bool>, Query), ("reason" = Option<String>, Query)),
    responses((status = 200, body = GateReport), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn get_gate(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Query(q): Query<GateQuery>,
) -> ApiResult<Json<GateReport>> {
    require_reason(q.critical, q.override_freeze, q.reason.as_deref())?;
    let svc = ctx.config.service(&q.service).ok_or_else(|| {
        ApiError::not_found(format!("unknown service {:?}", q.service)).at("/service")
    })?;
    if svc.environment(&q.env).is_none() {
        return Err(ApiError::not_found(format!(
            "service {} has no environment {:?}",
            svc.name, q.env
        ))
        .at("/env"));
    }
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
        actor: caller.0,
        rollout_id: None,
        critical: q.critical,
        override_freeze: q.override_freeze,
        reason: q.reason,
    };
    Ok(Json(
        evaluate(&ctx, &q.service, &q.env, &release_id, &intent).await,
    ))
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateFreeze {
    /// Only this service (default: every service).
    #[serde(default)]
    pub service: Option<String>,
    /// Only this environment (default: every environment). Give `service`, `env` or both.
    #[serde(default)]
    pub env: Option<String>,
    pub reason: String,
    /// Ends by itself after this long (`2h`); default: until ended.
    #[serde(default, rename = "for")]
    pub length: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct EndFreeze {
    #[serde(default)]
    pub reason: Option<String>,
}

/// A scheduled window from the config, with its current or next occurrence.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ScheduledFreeze {
    pub service: String,
    /// `None`: the service's own window, in every environment.
    pub env: Option<String>,
    pub reason: String,
    pub window: String,
    pub in_effect: bool,
    /// Start of the occurrence in effect, else of the next one (`None`: a past one-off window).
    pub from_ms: Option<Millis>,
    /// End of the occurrence in effect.
    pub until_ms: Option<Millis>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct FreezeList {
    pub manual: Vec<Freeze>,
    pub scheduled: Vec<ScheduledFreeze>,
}

#[derive(Debug, Deserialize)]
pub struct FreezeQuery {
    /// Include ended and expired manual freezes.
    #[serde(default)]
    pub all: bool,
}

/// Starts a manual freeze (audited).
#[utoipa::path(post, path = "/api/v1/freezes", request_body = CreateFreeze,
    responses((status = 201, body = Freeze), (status = 400, body = crate::error::ErrorBody), (status = 404, body = crate::error::ErrorBody)))]
pub async fn create_freeze(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Body(req): Body<CreateFreeze>,
) -> ApiResult<(StatusCode, Json<Freeze>)> {
    if req.service.is_none() && req.env.is_none() {
        return Err(
            ApiError::bad_request("a freeze needs a scope: `env`, `service` or both").at("/env"),
        );
    }
    if req.reason.trim().is_empty() {
        return Err(ApiError::bad_request("a freeze needs a reason").at("/reason"));
    }
    if let Some(name) = &req.service
        && ctx.config.service(name).is_none()
    {
        return Err(ApiError::not_found(format!("unknown service {name:?}")).at("/service"));
    }
    if let Some(env) = &req.env {
        let known = ctx
            .config
            .services
            .iter()
            .filter(|s| req.service.as_deref().is_none_or(|n| n == s.name))
            .any(|s| s.environment(env).is_some());
        if !known {
            return Err(
                ApiError::not_found(format!("no configured environment {env:?}")).at("/env"),
            );
        }
    }
    let now = now_ms();
    let until_ms = match &req.length {
        None => None,
        Some(text) => {
            let d = backstop_config::parse_duration(text)
                .map_err(|e| ApiError::bad_request(e).at("/for"))?;
            if d.is_zero() {
                return Err(ApiError::bad_request("`for` must be greater than 0").at("/for"));
            }
            Some(now.saturating_add(Millis::try_from(d.as_millis()).unwrap_or(Millis::MAX)))
        }
    };
    let freeze = Freeze {
        id: format!("frz-{}", uuid::Uuid::now_v7()),
        service: req.service,
        env: req.env,
        reason: req.reason,
        actor: caller.0.clone(),
        started_at_ms: now,
        until_ms,
        ended_at_ms: None,
        ended_by: None,
        end_reason: None,
    };
    ctx.store.create_freeze(&freeze).await?;
    crate::audit(
        &ctx,
        &caller.0,
        EventKind::FreezeStarted,
        &format!("freeze/{}", freeze.id),
        "manual",
        json!({"service": freeze.service, "env": freeze.env, "reason": freeze.reason, "until_ms": freeze.until_ms}),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(freeze)))
}

/// Manual freezes in effect (all with `all=true`) and the config's scheduled windows.
#[utoipa::path(get, path = "/api/v1/freezes", params(("all" = Option<bool>, Query)),
    responses((status = 200, body = FreezeList)))]
pub async fn list_freezes(
    State(ctx): State<Arc<Ctx>>,
    Query(q): Query<FreezeQuery>,
) -> ApiResult<Json<FreezeList>> {
    let now = now_ms();
    let manual = ctx
        .store
        .freezes(q.all)
        .await?
        .into_iter()
        .filter(|f| q.all || f.in_effect(now))
        .collect();
    let mut scheduled = Vec::new();
    for svc in &ctx.config.services {
        let windows = svc.freeze.iter().map(|w| (None, w)).chain(
            svc.environments
                .iter()
                .flat_map(|e| e.freeze.iter().map(|w| (Some(e.name.clone()), w))),
        );
        for (env, w) in windows {
            let Some(sch) = w.schedule() else { continue };
            let current = sch.occurrence_at(now);
            scheduled.push(ScheduledFreeze {
                service: svc.name.clone(),
                env,
                reason: w.reason.clone(),
                window: w.describe(),
                in_effect: current.is_some(),
                from_ms: current.map(|c| c.0).or_else(|| sch.next_start_after(now)),
                until_ms: current.map(|c| c.1),
            });
        }
    }
    Ok(Json(FreezeList { manual, scheduled }))
}

/// Ends a manual freeze (audited).
#[utoipa::path(post, path = "/api/v1/freezes/{id}/end", request_body = EndFreeze,
    responses((status = 200, body = Freeze), (status = 404, body = crate::error::ErrorBody), (status = 409, body = crate::error::ErrorBody)))]
pub async fn end_freeze(
    State(ctx): State<Arc<Ctx>>,
    Extension(caller): Extension<Caller>,
    Path(id): Path<String>,
    Body(req): Body<EndFreeze>,
) -> ApiResult<Json<Freeze>> {
    let reason = req
        .reason
        .filter(|r| !r.trim().is_empty())
        .unwrap_or_else(|| format!("ended by {}", caller.0));
    let freeze = ctx
        .store
        .end_freeze(&id, &caller.0, &reason, now_ms())
        .await?;
    crate::audit(
        &ctx,
        &caller.0,
        EventKind::FreezeEnded,
        &format!("freeze/{id}"),
        "manual",
        json!({"reason": reason, "service": freeze.service, "env": freeze.env}),
    )
    .await?;
    Ok(Json(freeze))
}

/// The refusal, audited when it refused an override or a critical change (someone tried to
/// get past a freeze: `gate.override_refused`).
pub async fn refuse(ctx: &Ctx, report: &GateReport, intent: &Intent, target: &str) -> ApiError {
    if intent.override_freeze || intent.critical {
        let logged = crate::audit(
            ctx,
            &intent.actor,
            EventKind::GateOverrideRefused,
            target,
            "manual",
            json!({
                "reason": intent.reason, "critical": intent.critical, "override_freeze": intent.override_freeze,
                "release": report.release_id, "env": report.env, "blocking": report.blocking(),
            }),
        )
        .await;
        if let Err(e) = logged {
            return ApiError::internal(format!("auditing the refused override: {e:#}"));
        }
    }
    report.refusal()
}

/// Audits the checks a rollout passed only by an override or as a critical change.
pub async fn audit_overrides(
    ctx: &Ctx,
    report: &GateReport,
    intent: &Intent,
    target: &str,
) -> anyhow::Result<()> {
    let overridden = report.overridden();
    if overridden.is_empty() {
        return Ok(());
    }
    let action = if overridden.iter().any(|c| c.name == "freeze") {
        EventKind::FreezeOverridden
    } else {
        EventKind::RecoveryFreezeBypassed
    };
    crate::audit(
        ctx,
        &intent.actor,
        action,
        target,
        "manual",
        json!({
            "reason": intent.reason, "critical": intent.critical, "override_freeze": intent.override_freeze,
            "release": report.release_id, "env": report.env, "checks": overridden,
        }),
    )
    .await
}
