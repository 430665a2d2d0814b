//! Feature flags in the daemon (practice 6.6): the flags the config declares, their state per
//! environment in the store, every change audited (and noted on an incident open there), and
//! the staged re-enables driven in the background: one replica at a time per flag and
//! environment (a lease), one tick per analysis interval of the service, each tick's evidence
//! stored before it acts so a restart picks up exactly where it was.

use std::sync::Arc;
use std::time::Duration;

use backstop_api::flags::{FlagView, ReenableView};
use backstop_config::Service;
use backstop_config::validation::Flag;
use backstop_core::Millis;
use backstop_core::event::EventKind;
use backstop_core::flag::{Announcement, FlagState, Step};
use backstop_store::StoreError;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use crate::Ctx;
use crate::error::{ApiError, ApiResult};

/// How often the daemon looks for re-enables to drive.
const LOOK_EVERY: Duration = Duration::from_secs(1);

/// The service declaring flag `key`, and the flag; a 404 listing the declared ones otherwise.
pub fn declared<'a>(ctx: &'a Ctx, key: &str) -> ApiResult<(&'a Service, &'a Flag)> {
    let mut all = ctx
        .config
        .services
        .iter()
        .flat_map(|s| s.flags.iter().map(move |f| (s, f)));
    if let Some(found) = all.find(|(_, f)| f.key == key) {
        return Ok(found);
    }
    let known: Vec<&str> = ctx
        .config
        .services
        .iter()
        .flat_map(|s| s.flags.iter().map(|f| f.key.as_str()))
        .collect();
    Err(ApiError::not_found(format!(
        "no flag {key} is declared (known: {}); declare it under a service's `flags`",
        if known.is_empty() {
            "none".to_owned()
        } else {
            known.join(", ")
        }
    )))
}

/// Flag `key` in `env` as stored (off when never changed), with the version read.
pub async fn read(
    ctx: &Ctx,
    service: &Service,
    key: &str,
    env: &str,
) -> ApiResult<(FlagState, Option<i64>)> {
    Ok(match ctx.store.flag(key, env).await? {
        Some((f, v)) => (f, Some(v)),
        None => (FlagState::new(key, env, &service.name), None),
    })
}

/// Reads flag `key` in `env`, applies `change`, and writes it back by compare-and-set (read
/// again and retried when another writer came first). `change` says why it refuses.
pub async fn change(
    ctx: &Ctx,
    service: &Service,
    key: &str,
    env: &str,
    change: impl Fn(&mut FlagState, i64) -> Result<(), String>,
) -> ApiResult<FlagState> {
    for _ in 0..5 {
        let (mut f, version) = read(ctx, service, key, env).await?;
        change(&mut f, ctx.clock.now_ms()).map_err(ApiError::conflict)?;
        match ctx.store.put_flag(&f, version).await {
            Ok(_) => return Ok(f),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Err(ApiError::conflict(format!(
        "flag {key} in {env} kept changing while this was written; try again"
    )))
}

/// What the API shows of a flag.
#[must_use]
pub fn view(service: &Service, flag: &Flag, f: &FlagState) -> FlagView {
    FlagView {
        key: flag.key.clone(),
        service: service.name.clone(),
        env: f.env.clone(),
        description: flag.description.clone(),
        group: flag.group().to_owned(),
        percentage: f.percentage,
        updated_at_ms: f.updated_at_ms,
        updated_by: f.updated_by.clone(),
        reenable: f.plan.as_ref().map(|p| ReenableView {
            status: p.status.as_str().into(),
            stages: p.stages.clone(),
            current: p.current(),
            stage_started_at_ms: p.stage_started_at_ms,
            hold_ms: p.hold_ms,
            stage_requests: p.stage_requests,
            min_requests: p.min_requests,
            started_at_ms: p.started_at_ms,
            started_by: p.started_by.clone(),
            ended_at_ms: p.ended_at_ms,
            reason: p.reason.clone(),
            blocked: p.blocked.clone(),
            intervals: p.intervals.len(),
            stages_done: p.stage_results.clone(),
        }),
        history: f.history.clone(),
    }
}

/// Audits and announces the changes of flag `key` in `env` queued at least `min_age_ms` ago,
/// then takes them off the queue. A change is queued in the same write that makes it, so one a
/// crash interrupted is announced later (by the loop, [`ANNOUNCE_LATE_AFTER_MS`]).
pub async fn flush(ctx: &Ctx, key: &str, env: &str, min_age_ms: Millis) -> ApiResult<()> {
    let Some((f, _)) = ctx.store.flag(key, env).await? else {
        return Ok(());
    };
    let now = ctx.clock.now_ms();
    let due: Vec<Announcement> = f
        .unannounced
        .iter()
        .filter(|a| now - a.at_ms >= min_age_ms)
        .cloned()
        .collect();
    if due.is_empty() {
        return Ok(());
    }
    for a in &due {
        announce(ctx, &f, a).await?;
    }
    for _ in 0..5 {
        let Some((mut f, version)) = ctx.store.flag(key, env).await? else {
            return Ok(());
        };
        f.unannounced.retain(|a| !due.contains(a));
        match ctx.store.put_flag(&f, Some(version)).await {
            Ok(_) => return Ok(()),
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// How old a queued announcement must be before the loop (rather than the writer) makes it.
const ANNOUNCE_LATE_AFTER_MS: Millis = 5_000;

/// Audits one change of flag `f`, notes it on any incident open there, and tells the
/// service's webhooks.
async fn announce(ctx: &Ctx, f: &FlagState, a: &Announcement) -> ApiResult<()> {
    crate::audit(
        ctx,
        &a.actor,
        a.kind,
        &format!("flag/{}/{}", f.key, f.env),
        &a.summary,
        json!({"percentage": a.percentage, "at_ms": a.at_ms}),
    )
    .await?;
    tracing::info!(flag = %f.key, env = %f.env, "{}", a.summary);
    // Flag changes belong on the timeline of an incident open there.
    crate::incidents::note_open(ctx, &f.service, &f.env, &a.summary).await;
    if let Some(n) = ctx.drivers.notifiers.get(&f.service) {
        n.notify(backstop_drivers::notify::Notification {
            id: format!("flag/{}/{}/{}", f.key, f.env, a.at_ms),
            kind: a.kind.as_str().into(),
            service: f.service.clone(),
            env: f.env.clone(),
            summary: a.summary.clone(),
            detail: json!({"flag": f.key, "percentage": a.percentage}),
            at_ms: a.at_ms,
        });
    }
    Ok(())
}

/// Kicks, every [`LOOK_EVERY`], the driver of each running re-enable.
pub async fn keep_reenabling(ctx: Arc<Ctx>, stop: CancellationToken) {
    loop {
        if let Ok(flags) = ctx.store.flags().await {
            for (f, _) in flags {
                if f.running_plan().is_some() {
                    kick(&ctx, &f.key, &f.env);
                }
                if !f.unannounced.is_empty()
                    && let Err(e) = flush(&ctx, &f.key, &f.env, ANNOUNCE_LATE_AFTER_MS).await
                {
                    tracing::warn!(flag = %f.key, env = %f.env, error = %e, "Could not announce a flag change; trying again.");
                }
            }
        }
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(LOOK_EVERY) => {}
        }
    }
}

fn kick(ctx: &Arc<Ctx>, key: &str, env: &str) {
    let id = format!("{key}/{env}");
    crate::leased::spawn(
        ctx,
        |c| &c.caches.flag_reenables,
        &id,
        format!("flag-reenable/{id}"),
        |ctx, id, lost| async move {
            let (key, env) = id.split_once('/').unwrap_or((id.as_str(), ""));
            drive(&ctx, key, env, &lost).await
        },
    );
}

/// Ticks the re-enable of `key` in `env` every analysis interval until it is over.
async fn drive(ctx: &Ctx, key: &str, env: &str, lost: &CancellationToken) -> ApiResult<()> {
    let (service, flag) = declared(ctx, key)?;
    let settings = &service.analysis;
    while !lost.is_cancelled() {
        tokio::select! {
            () = lost.cancelled() => return Ok(()),
            () = tokio::time::sleep(settings.interval) => {}
        }
        let cohorts = ctx.flag_cohorts(service, env, flag).await;
        let blockers = crate::gate::environment_blockers(ctx, &service.name, env).await;
        let (mut f, version) = read(ctx, service, key, env).await?;
        let Some(plan) = f.running_plan() else {
            return Ok(());
        };
        let (on, off) = match cohorts {
            Ok(c) => c,
            Err(e) => {
                // No counts, no evidence: the stage holds, and says why.
                let why = format!("cannot read the cohorts: {e:#}");
                if plan.blocked.as_deref() != Some(why.as_str()) {
                    if let Some(p) = f.plan.as_mut() {
                        p.blocked = Some(why);
                    }
                    ctx.store.check_fence().await?;
                    ctx.store.put_flag(&f, version).await?;
                }
                continue;
            }
        };
        let blocked = (!blockers.is_empty()).then(|| {
            blockers
                .iter()
                .map(|c| format!("{}: {}", c.name, c.reason))
                .collect::<Vec<_>>()
                .join("; ")
        });
        let now = ctx.clock.now_ms();
        let step = f.tick(on, off, blocked, settings, now);
        let said = match &step {
            Step::Idle | Step::Hold => None,
            Step::Advance { to } => Some((
                EventKind::FlagStageHeld,
                format!(
                    "flag {key} in {env}: the stage held, on for {to}% now ({})",
                    stage_summary(&f)
                ),
            )),
            Step::Promote => Some((
                EventKind::FlagPromoted,
                format!("flag {key} in {env}: every stage held, on for everyone"),
            )),
            Step::RollBack { reason } => Some((
                EventKind::FlagRolledBack,
                format!("flag {key} in {env} rolled back to 0%: {reason}"),
            )),
            Step::Halt { reason } => Some((
                EventKind::FlagHalted,
                format!("flag {key} in {env} halted: {reason}"),
            )),
        };
        if let Some((kind, summary)) = said {
            f.announce_later("controller", kind, summary, now);
        }
        ctx.store.check_fence().await?;
        match ctx.store.put_flag(&f, version).await {
            Ok(_) => {}
            // A person changed the flag meanwhile: read it again next tick.
            Err(StoreError::Conflict(_)) => continue,
            Err(e) => return Err(e.into()),
        }
        if !f.unannounced.is_empty() {
            flush(ctx, key, env, 0).await?;
        }
    }
    Ok(())
}

/// The last finished stage in words.
fn stage_summary(f: &FlagState) -> String {
    f.plan
        .as_ref()
        .and_then(|p| p.stage_results.last())
        .map(|r| {
            format!(
                "{}%: on {} errors in {} requests, off {} in {}",
                r.percentage, r.on_errors, r.on_requests, r.off_errors, r.off_requests
            )
        })
        .unwrap_or_default()
}
