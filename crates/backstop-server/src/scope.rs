//! The failure scope of a failed rollout: every release rolled out in the same environment
//! within [`WINDOW_MS`] before its decision, ranked likeliest culprit first by when and how far
//! each one's canary diverged from its own baseline (`backstop_judge::scope`), from their stored
//! intervals. Part of the rollout's explanation.

use backstop_core::event::EventKind;
use backstop_core::model::{Phase, Rollout};
use backstop_judge::JudgeSettings;
use backstop_judge::scope::{Candidate, Suspect, rank};

use crate::Ctx;
use crate::error::ApiResult;

/// How far back other changes count as candidates.
pub const WINDOW_MS: i64 = 30 * 60 * 1000;

/// How many recent rollouts are looked through for candidates.
const LOOK_BACK: i64 = 200;

/// The ranking for rollout `r`, each release judged with `settings` (`r`'s service's analysis):
/// empty unless it failed and another release changed the same environment within the window.
pub async fn failure_scope(
    ctx: &Ctx,
    r: &Rollout,
    settings: &JudgeSettings,
) -> ApiResult<Vec<Suspect>> {
    if !matches!(
        r.phase,
        Phase::Failed | Phase::Recovering | Phase::Recovered
    ) {
        return Ok(Vec::new());
    }
    Ok(ranked(ctx, &r.env, r.updated_at_ms, settings)
        .await?
        .into_iter()
        .map(|(suspect, _)| suspect)
        .collect())
}

/// Every release rolled out in environment `env` within the window before `until` (first
/// deployments aside: they have no baseline), ranked likeliest culprit first, each with its
/// rollout; empty unless there are two or more.
pub async fn ranked(
    ctx: &Ctx,
    env: &str,
    until: i64,
    settings: &JudgeSettings,
) -> ApiResult<Vec<(Suspect, Rollout)>> {
    let nearby: Vec<Rollout> = ctx
        .store
        .rollouts(None, LOOK_BACK)
        .await?
        .into_iter()
        .filter(|o| {
            o.env == env && o.created_at_ms <= until && o.created_at_ms >= until - WINDOW_MS
        })
        .filter(|o| o.from_release_id.is_some())
        .collect();
    if nearby.len() < 2 {
        return Ok(Vec::new());
    }
    let opened = nearby
        .iter()
        .map(|o| o.created_at_ms)
        .min()
        .unwrap_or(until);
    let mut candidates = Vec::with_capacity(nearby.len());
    for o in &nearby {
        // The intervals count from the canary's start: the `canary.started` event, else the
        // rollout's creation.
        let started = ctx
            .store
            .events(&o.id)
            .await?
            .into_iter()
            .find(|e| e.kind == EventKind::CanaryStarted)
            .map_or(o.created_at_ms, |e| e.at_ms);
        candidates.push(Candidate {
            // The rollout's id: two rollouts may carry the same release.
            name: o.id.clone(),
            started_s: (started - opened) as f64 / 1000.0,
            intervals: ctx.store.intervals(&o.id).await?,
        });
    }
    let at_s = (until - opened) as f64 / 1000.0;
    Ok(rank(&candidates, settings, Some(at_s))
        .into_iter()
        .filter_map(|mut suspect| {
            let rollout = nearby.iter().find(|o| o.id == suspect.name)?.clone();
            suspect.name.clone_from(&rollout.to_release_id);
            Some((suspect, rollout))
        })
        .collect())
}
