//! The `freeze` check: scheduled windows (service and environment) and manual freezes.

use backstop_api::gate::Check;
use backstop_core::{Millis, format_ms};
use serde::Serialize;
use serde_json::json;

use super::{Blockage, Subject};

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
pub(super) async fn freeze(s: &Subject<'_>) -> anyhow::Result<Check> {
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
    Ok(s.blocks_unless_overridden(Blockage {
        name: NAME,
        what: format!("deployments to {}/{} are frozen: {list}", s.service, s.env),
        asked: s.intent.override_freeze,
        how: "`--override-freeze --reason R` to override",
        passed_as: "overridden",
        details: json!({"freezes": active}),
    }))
}
