//! Coverage and automation gaps of a service from its recoveries and runbook runs of the last
//! 90 days (see [`backstop_core::gaps`]).

use backstop_api::dora::Gaps;
use backstop_config::Service;
use backstop_core::gaps::{automation_gaps, coverage_gap};
use backstop_core::model::RecoveryStatus;
use backstop_core::scorecard::LOOKBACK_MS;

use crate::Ctx;
use crate::error::ApiResult;

/// The gaps of `svc` now.
pub async fn of(ctx: &Ctx, svc: &Service) -> ApiResult<Gaps> {
    let since = ctx.clock.now_ms() - LOOKBACK_MS;
    let mttr = backstop_core::duration::millis(svc.mttr());
    let mut coverage = Vec::new();
    for rec in ctx.store.recoveries(10_000).await? {
        if rec.service != svc.name
            || rec.created_at_ms < since
            || rec.status != RecoveryStatus::Done
        {
            continue;
        }
        let (rollout, events, intervals) = match &rec.rollout_id {
            Some(rid) => (
                Some(ctx.store.rollout(rid).await?),
                ctx.store.events(rid).await?,
                ctx.store.intervals(rid).await?,
            ),
            None => (None, vec![], vec![]),
        };
        let (_, automatic) = backstop_core::postmortem::decided_by(&rec, &events);
        let phases = backstop_core::postmortem::phases(&rec, rollout.as_ref(), &events);
        let budget = mttr - backstop_core::duration::millis(svc.rollback_sla_for(&rec.env));
        if let Some(gap) = coverage_gap(
            &rec.id,
            rec.rollout_id.as_deref(),
            automatic,
            phases.time_to_detect_ms,
            budget.max(0),
            &intervals,
        ) {
            coverage.push(gap);
        }
    }
    let incidents: Vec<String> = ctx
        .store
        .incidents(true)
        .await?
        .into_iter()
        .filter(|(i, _)| i.service == svc.name)
        .map(|(i, _)| i.id)
        .collect();
    let runs: Vec<_> = ctx
        .store
        .runbook_runs(true)
        .await?
        .into_iter()
        .map(|(r, _)| r)
        .filter(|r| r.started_at_ms >= since)
        .filter(|r| {
            r.service.as_deref() == Some(svc.name.as_str())
                || r.incident_id
                    .as_ref()
                    .is_some_and(|i| incidents.contains(i))
        })
        .collect();
    Ok(Gaps {
        service: svc.name.clone(),
        coverage,
        automation: automation_gaps(&runs),
    })
}
