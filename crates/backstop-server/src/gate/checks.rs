//! The gate's checks on the release, its backups, the breaker, running rollouts and recoveries,
//! and the schema's way back. Each is one `async fn(&Subject<'_>) -> anyhow::Result<Check>`.

use backstop_api::gate::Check;

use backstop_core::format_ms;
use backstop_core::model::{Phase, Release, ReleaseStatus};
use serde_json::{Value, json};

use super::{Blockage, Subject};
use crate::Ctx;

/// Service, environment and release exist; the release is not marked bad.
pub(super) async fn release_ok(s: &Subject<'_>) -> anyhow::Result<Check> {
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
pub(super) async fn migrations_proven(s: &Subject<'_>) -> anyhow::Result<Check> {
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
pub(super) async fn schema_way_back(s: &Subject<'_>) -> anyhow::Result<Check> {
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
pub(crate) async fn verify_backup(
    ctx: &Ctx,
    release: &Release,
) -> anyhow::Result<Result<(), String>> {
    let blobs = ctx.blobs.clone();
    let r = release.clone();
    Ok(tokio::task::spawn_blocking(move || {
        crate::runtime::verified_backup(blobs.as_ref(), &r).map(|_| ())
    })
    .await?)
}

/// The way back exists: the environment's last known good artifact is stored and re-verifies.
pub(super) async fn lkg_backup(s: &Subject<'_>) -> anyhow::Result<Check> {
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
pub(super) async fn candidate_backup(s: &Subject<'_>) -> anyhow::Result<Check> {
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

/// No open circuit-breaker trip covers the environment.
pub(super) async fn breaker_closed(s: &Subject<'_>) -> anyhow::Result<Check> {
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

/// The stable version serves: a rollout compared with a crashed or failing stable version
/// would judge the canary against errors that are not the release's, and could leave users on
/// nothing if it had to go back. Supervision restarts the stable instance; the gate waits.
pub(super) async fn stable_healthy(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "stable_healthy";
    Ok(match s.ctx.unhealthy_stable(s.service, s.env) {
        Some((id, sup)) => Check::block(
            NAME,
            format!(
                "the stable instance {id} of {} in {}/{} is unhealthy ({}){}; supervision is \
                 restarting it: wait until it serves again",
                sup.release_id,
                s.service,
                s.env,
                sup.watch.last_problem.as_deref().unwrap_or("failing its checks"),
                if sup.watch.crash_loop { ", in a crash loop" } else { "" },
            ),
        )
        .with(json!({"instance": id, "restarts": sup.watch.restarts_total, "crash_loop": sup.watch.crash_loop})),
        None => Check::pass(NAME, "the stable version passes its health checks"),
    })
}

/// No other rollout is still running in the environment.
pub(super) async fn no_active_rollout(s: &Subject<'_>) -> anyhow::Result<Check> {
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

/// Automatic freeze: no recovery running in the environment (any service), and none restored
/// but not yet resolved (its post-recovery suite has not passed), unless the change is
/// critical (a fix-forward) and says why.
pub(super) async fn no_recovery(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "recovery";
    let mut busy: Vec<Value> = Vec::new();
    for rec in s.ctx.store.unfinished_recoveries().await? {
        if rec.env == s.env {
            busy.push(json!({"recovery": rec.id, "service": rec.service, "status": rec.status}));
        }
    }
    for rec in s.ctx.store.recoveries_validating().await? {
        if rec.env == s.env {
            busy.push(json!({"recovery": rec.id, "service": rec.service, "status": "restored, validating"}));
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
    Ok(s.blocks_unless_overridden(Blockage {
        name: NAME,
        what: format!(
            "a recovery is active in {} ({list}): non-critical rollouts there are frozen until it ends",
            s.env
        ),
        asked: s.intent.critical,
        how: "`--critical --reason R` for a fix-forward",
        passed_as: "passed as a critical change",
        details: json!({"recoveries": busy}),
    }))
}

/// The incident freeze (practice 5.4): no major incident (SEV1, SEV2) still investigated or
/// identified in the environment, unless the change is critical (a fix-forward) and says why.
/// Mitigating it (monitoring) lifts the freeze.
pub(super) async fn no_major_incident(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "incident";
    let freezing: Vec<backstop_core::incident::Incident> = s
        .ctx
        .store
        .incidents(false)
        .await?
        .into_iter()
        .map(|(i, _)| i)
        .filter(|i| i.env == s.env && i.freezes())
        .collect();
    if freezing.is_empty() {
        return Ok(Check::pass(
            NAME,
            format!("no major incident being investigated in {}", s.env),
        ));
    }
    let list = freezing
        .iter()
        .map(|i| format!("{} {} ({}, {})", i.severity, i.id, i.title, i.status))
        .collect::<Vec<_>>()
        .join(", ");
    Ok(s.blocks_unless_overridden(Blockage {
        name: NAME,
        what: format!(
            "a major incident is open in {} ({list}): non-critical deployments there are frozen until it is mitigated",
            s.env
        ),
        asked: s.intent.critical,
        how: "`--critical --reason R` for a fix-forward; `backstop incident status ID monitoring` once mitigated",
        passed_as: "passed as a critical change",
        details: json!({"incidents": freezing.iter().map(|i| &i.id).collect::<Vec<_>>()}),
    }))
}

/// The environment's readiness requirement (practice 7.6): the service's scorecard reaches the
/// level the environment names, unless the change is critical and says why.
pub(super) async fn readiness(s: &Subject<'_>) -> anyhow::Result<Check> {
    const NAME: &str = "readiness";
    let svc = s.ctx.service(s.service)?;
    let Some(needed) = svc.environment(s.env).and_then(|e| e.readiness) else {
        return Ok(Check::pass(
            NAME,
            format!("{} requires no readiness level", s.env),
        ));
    };
    let card = crate::scorecard::of(s.ctx, svc)
        .await
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    let name = |l: Option<backstop_core::scorecard::Readiness>| {
        l.map_or_else(
            || "below bronze".to_owned(),
            |l| format!("{l:?}").to_lowercase(),
        )
    };
    if card.level >= Some(needed) {
        return Ok(Check::pass(
            NAME,
            format!(
                "{} is {}; {} requires {}",
                s.service,
                name(card.level),
                s.env,
                name(Some(needed))
            ),
        ));
    }
    let missing: Vec<String> = card
        .checks
        .iter()
        .filter(|c| !c.passed && c.level <= needed)
        .map(|c| format!("{}: {}", c.name, c.detail))
        .collect();
    Ok(s.blocks_unless_overridden(Blockage {
        name: NAME,
        what: format!(
            "{} is {}, {} requires {} ({})",
            s.service,
            name(card.level),
            s.env,
            name(Some(needed)),
            missing.join("; ")
        ),
        asked: s.intent.critical,
        how: "`--critical --reason R` for a fix-forward; `backstop scorecard` shows what is missing",
        passed_as: "passed as a critical change",
        details: json!({"level": card.level, "required": needed}),
    }))
}
