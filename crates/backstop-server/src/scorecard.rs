//! Readiness scorecards from the store and the config (see [`backstop_core::scorecard`]).

use backstop_config::Service;
use backstop_core::drill::DrillStatus;
use backstop_core::model::RecoveryStatus;
use backstop_core::scorecard::{Facts, LOOKBACK_MS, RecoveryFacts, Scorecard, score};
use backstop_core::validation::ValidationStatus;

use crate::Ctx;
use crate::error::ApiResult;

/// The scorecard of `svc` now.
pub async fn of(ctx: &Ctx, svc: &Service) -> ApiResult<Scorecard> {
    let now = ctx.clock.now_ms();
    let since = now - LOOKBACK_MS;
    let mut lkg_backups = Vec::new();
    for env in &svc.environments {
        let lkg = ctx
            .store
            .environment(&svc.name, &env.name)
            .await?
            .and_then(|st| st.lkg_release_id);
        let verified = match lkg {
            None => None,
            Some(id) => {
                let release = ctx.store.release(&id).await?;
                Some(
                    crate::gate::checks::verify_backup(ctx, &release)
                        .await
                        .unwrap_or_else(|e| Err(format!("{e:#}")))
                        .map_err(|why| format!("last known good {id}: {why}")),
                )
            }
        };
        lkg_backups.push((env.name.clone(), verified));
    }
    let last_passed_drill_ms = ctx
        .store
        .drills(Some(&svc.name), 1000)
        .await?
        .into_iter()
        .filter(|d| d.status == DrillStatus::Passed)
        .filter_map(|d| d.finished_at_ms)
        .filter(|at| *at >= since)
        .max();
    let mut recoveries = Vec::new();
    for rec in ctx.store.recoveries(10_000).await? {
        if rec.service != svc.name
            || rec.created_at_ms < since
            || rec.status != RecoveryStatus::Done
        {
            continue;
        }
        let (rollout, events) = match &rec.rollout_id {
            Some(rid) => (
                Some(ctx.store.rollout(rid).await?),
                ctx.store.events(rid).await?,
            ),
            None => (None, vec![]),
        };
        let phases = backstop_core::postmortem::phases(&rec, rollout.as_ref(), &events);
        let status = rec.validation.as_ref().map(|v| v.status);
        recoveries.push(RecoveryFacts {
            id: rec.id.clone(),
            restore_ms: phases.time_to_restore_ms,
            resolved: phases.resolved_at_ms.is_some(),
            suite_passed: status == Some(ValidationStatus::Passed),
        });
    }
    let labels = ctx
        .store
        .labels(Some(&svc.name))
        .await?
        .into_iter()
        .filter(|l| l.at_ms >= since)
        .count();
    Ok(score(&Facts {
        service: svc.name.clone(),
        lkg_backups,
        suite_declared: svc.validation.is_some(),
        heartbeats_declared: !svc.heartbeats.is_empty(),
        last_passed_drill_ms,
        mttr_ms: backstop_core::duration::millis(svc.mttr()),
        recoveries,
        runbooks: crate::runbooks::catalog(ctx).map_or(0, |r| r.len()),
        labels,
        dora: crate::dora::of(ctx, Some(&svc.name), None, LOOKBACK_MS).await?,
        overdue_postmortems: crate::postmortem::overdue(ctx)
            .await?
            .into_iter()
            .filter(|r| r.service == svc.name)
            .map(|r| r.id)
            .collect(),
    }))
}
