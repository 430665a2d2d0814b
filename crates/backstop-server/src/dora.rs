//! DORA figures from the store: each rollout of the window with its release, its timeline, its
//! recovery's validation and the incidents open when it started (see
//! [`backstop_core::dora`]).

use backstop_core::Millis;
use backstop_core::dora::{Deployment, Figures, figures};
use backstop_core::incident::IncidentStatus;
use backstop_core::model::Phase;
use backstop_core::timeline::Timeline;

use crate::Ctx;
use crate::error::ApiResult;

/// At most this many rollouts are read (most recent first).
const MAX_ROLLOUTS: i64 = 100_000;

/// The figures of every (service, environment) with rollouts started in the last `window_ms`,
/// optionally of one service or environment.
pub async fn of(
    ctx: &Ctx,
    service: Option<&str>,
    env: Option<&str>,
    window_ms: Millis,
) -> ApiResult<Vec<Figures>> {
    let now = ctx.clock.now_ms();
    let since = now - window_ms;
    let incidents: Vec<_> = ctx
        .store
        .incidents(true)
        .await?
        .into_iter()
        .map(|(i, _)| i)
        .collect();
    let mut deployments = Vec::new();
    for r in ctx.store.rollouts(service, MAX_ROLLOUTS).await? {
        if r.created_at_ms < since {
            break;
        }
        if env.is_some_and(|e| e != r.env) {
            continue;
        }
        let failed = matches!(
            r.phase,
            Phase::Recovered | Phase::Failed | Phase::Recovering
        );
        let promoted = r.phase == Phase::Promoted;
        if !failed && !promoted {
            continue;
        }
        let events = ctx.store.events(&r.id).await?;
        let timeline = Timeline::from_events(&r, &events);
        let exposed = Timeline::exposed_at_ms(&events, &r);
        let release_at_ms = ctx
            .store
            .release(&r.to_release_id)
            .await
            .ok()
            .map(|rel| rel.created_at_ms);
        let (restore_ms, resolve_ms) = if failed {
            let resolved = ctx
                .store
                .recovery(&crate::controller::recovery_id_for(&r.id))
                .await
                .ok()
                .and_then(|rec| rec.validation.and_then(|v| v.resolved_at_ms()));
            (
                timeline.traffic_restored_at_ms.map(|t| t - exposed),
                resolved.map(|t| t - exposed),
            )
        } else {
            (None, None)
        };
        let during_incident = incidents.iter().any(|i| {
            let closed = i
                .status_at_ms
                .get(IncidentStatus::Resolved.as_str())
                .copied()
                .unwrap_or(Millis::MAX);
            i.env == r.env && i.opened_at_ms <= r.created_at_ms && r.created_at_ms < closed
        });
        deployments.push(Deployment {
            service: r.service.clone(),
            env: r.env.clone(),
            started_at_ms: r.created_at_ms,
            release_at_ms,
            promoted_at_ms: timeline
                .promoted_at_ms
                .or(promoted.then_some(r.updated_at_ms)),
            failed,
            restore_ms,
            resolve_ms,
            during_incident,
        });
    }
    Ok(figures(&deployments, now, window_ms))
}
