//! The promotion gate: every check that must pass before a rollout starts or is promoted,
//! all evaluated (never first-fail), each a named entry with its reason, so a refusal lists
//! everything that is in the way at once.
//!
//! Adding a check is one small `async fn(&Subject<'_>) -> anyhow::Result<Check>` plus one line
//! in [`evaluate`]. An error inside a check blocks (the gate fails closed) and says why.

pub(crate) mod checks;
mod freezes;
mod overrides;

use std::future::Future;

use backstop_api::gate::{Action, Check, GateReport};
use backstop_core::Millis;
use backstop_core::model::{EnvironmentState, Release};
use backstop_store::StoreError;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

pub use overrides::{audit_overrides, refuse, require_reason};

use crate::Ctx;

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
    /// The second person who approved the override (`backstop approve`): in a regulated
    /// environment an override counts only with one, never the actor.
    #[serde(default)]
    pub approved_by: Option<String>,
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

    fn regulated(&self) -> bool {
        self.ctx
            .config
            .service(self.service)
            .and_then(|svc| svc.environment(self.env))
            .is_some_and(|e| e.regulated)
    }

    /// The check `name` that `what` blocks, unless the person asked for the override it allows
    /// (`asked`, e.g. `override_freeze`) and it counts here ([`Subject::override_counts`]):
    /// then it passes, marked overridden (`passed_as` says how); an override waiting for a
    /// second person blocks with `approval_required` in its details; without one asked, the
    /// refusal ends with `how` to ask.
    fn blocks_unless_overridden(&self, b: Blockage<'_>) -> Check {
        let Blockage {
            name,
            what,
            asked,
            how,
            passed_as,
            mut details,
        } = b;
        if !asked {
            return Check::block(name, format!("{what} ({how})")).with(details);
        }
        match self.override_counts() {
            Ok(approved) => {
                let mut c = Check::pass(
                    name,
                    format!(
                        "{what}; {passed_as} by {}{approved}: {}",
                        self.intent.actor,
                        self.reason()
                    ),
                )
                .with(details);
                c.overridden = true;
                c
            }
            Err(needs) => {
                details["approval_required"] = serde_json::json!(true);
                Check::block(name, format!("{what}; the override waits: {needs}")).with(details)
            }
        }
    }

    /// An override by the actor, as it stands in this environment: `Ok` with the words to
    /// add when it counts (who approved it, in a regulated environment), `Err` with the
    /// refusal when it needs a second person's approval first (the check then carries
    /// `approval_required` in its details, and the caller makes the request).
    fn override_counts(&self) -> Result<String, String> {
        if !self.regulated() {
            return Ok(String::new());
        }
        match self.intent.approved_by.as_deref() {
            Some(approver) if approver != self.intent.actor => {
                Ok(format!(", approved by {approver}"))
            }
            _ => Err(format!(
                "{} is regulated: an override needs a second person's approval (`backstop approve REQUEST`, never the requester's own token)",
                self.env
            )),
        }
    }
}

/// What blocks a check that a person may override (see [`Subject::blocks_unless_overridden`]).
struct Blockage<'a> {
    name: &'a str,
    what: String,
    asked: bool,
    how: &'a str,
    passed_as: &'a str,
    details: serde_json::Value,
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
        now: ctx.clock.now_ms(),
    };
    let checks = vec![
        run("release", checks::release_ok(&s)).await,
        run("lkg_backup", checks::lkg_backup(&s)).await,
        run("candidate_backup", checks::candidate_backup(&s)).await,
        run("freeze", freezes::freeze(&s)).await,
        run("breaker", checks::breaker_closed(&s)).await,
        run("stable_healthy", checks::stable_healthy(&s)).await,
        run("active_rollout", checks::no_active_rollout(&s)).await,
        run("recovery", checks::no_recovery(&s)).await,
        run("incident", checks::no_major_incident(&s)).await,
        run("migrations", checks::migrations_proven(&s)).await,
        run("schema_way_back", checks::schema_way_back(&s)).await,
        run("readiness", checks::readiness(&s)).await,
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

/// The gate's checks about the environment rather than a release: what waiting cures. They
/// hold a feature flag's next stage ([`environment_blockers`]) and a ship's next wave, where
/// any other check refuses.
pub const ENVIRONMENT_CHECKS: &[&str] = &[
    "freeze",
    "breaker",
    "active_rollout",
    "recovery",
    "incident",
];

/// What holds a change that is not a release (a feature flag's next stage) in `service`/`env`
/// now: the [`ENVIRONMENT_CHECKS`] (freezes, an open breaker, a rollout under way, a recovery
/// not resolved, a major incident), only those that block.
pub async fn environment_blockers(ctx: &Ctx, service: &str, env: &str) -> Vec<Check> {
    let intent = Intent::default();
    let s = Subject {
        ctx,
        service,
        env,
        release_id: "",
        intent: &intent,
        now: ctx.clock.now_ms(),
    };
    let checks = vec![
        run("freeze", freezes::freeze(&s)).await,
        run("breaker", checks::breaker_closed(&s)).await,
        // A rollout under way: its judge and the flag's would each see the other's change.
        run("active_rollout", checks::no_active_rollout(&s)).await,
        run("recovery", checks::no_recovery(&s)).await,
        run("incident", checks::no_major_incident(&s)).await,
    ];
    debug_assert!(
        checks
            .iter()
            .all(|c| ENVIRONMENT_CHECKS.contains(&c.name.as_str()))
    );
    checks.into_iter().filter(|c| !c.ok).collect()
}

/// A check that could not be evaluated blocks, with the error as its reason.
async fn run(name: &str, check: impl Future<Output = anyhow::Result<Check>>) -> Check {
    match check.await {
        Ok(c) => c,
        Err(e) => Check::block(name, format!("could not be evaluated: {e:#}")),
    }
}
