//! What a rollback would undo, before anyone confirms it: the releases it takes away (with who
//! shipped them and why, and the incidents opened since), the params it writes back to the
//! target's snapshot, and the schema step (downs to run, or a refusal with the options). The
//! CLI (`backstop rollback … --preview`), the API and the dashboard's confirmation show it.

use backstop_api::rollouts::{RollbackPreview, UndoneRelease};
use backstop_core::event::EventKind;
use backstop_core::format_ms;
use backstop_core::model::{Phase, Rollout};
use backstop_core::schema::SchemaDecision;

use crate::Ctx;
use crate::error::{ApiError, ApiResult};

impl Ctx {
    /// The preview of rolling `service/env` back now. Changes nothing.
    pub async fn rollback_preview(&self, service: &str, env: &str) -> ApiResult<RollbackPreview> {
        let svc = crate::releases::known_service(self, service, "/service")?;
        if svc.environment(env).is_none() {
            return Err(ApiError::not_found(format!(
                "service {service} has no environment {env:?}"
            ))
            .at("/env"));
        }
        let mut p = RollbackPreview {
            service: service.to_owned(),
            env: env.to_owned(),
            ..RollbackPreview::default()
        };
        let state = self.store.environment(service, env).await?;
        let lkg = state.as_ref().and_then(|s| s.lkg_release_id.clone());
        if let Some(r) = self.store.active_rollout(service, env).await? {
            // A rollout under way: its canary leaves traffic; nothing else changes.
            p.from_release = Some(r.to_release_id.clone());
            p.to_release = lkg;
            p.undone.push(self.undone(&r).await?);
            p.summary.push(format!(
                "the rollout of {} under way ({}) stops: its canary leaves traffic and {} is marked bad; {} keeps serving",
                r.to_release_id,
                r.phase,
                r.to_release_id,
                p.to_release.as_deref().unwrap_or("nothing")
            ));
        } else {
            let previous = state
                .as_ref()
                .and_then(|s| s.previous_lkg_release_id.clone());
            let (Some(current), Some(previous)) = (lkg, previous) else {
                p.refused = true;
                p.summary.push(format!(
                    "{service}/{env} has no earlier known-good release to go back to"
                ));
                return Ok(p);
            };
            p.from_release = Some(current.clone());
            p.to_release = Some(previous.clone());
            let promoted = |release: &str, rollouts: &[Rollout]| {
                rollouts
                    .iter()
                    .find(|r| {
                        r.env == env && r.to_release_id == release && r.phase == Phase::Promoted
                    })
                    .cloned()
            };
            let rollouts = self.store.rollouts(Some(service), 1_000).await?;
            if let Some(r) = promoted(&current, &rollouts) {
                let undone = self.undone(&r).await?;
                let mut line = format!(
                    "this takes away {}, serving since {}",
                    undone.release,
                    undone
                        .promoted_at_ms
                        .map_or_else(|| "?".to_owned(), format_ms)
                );
                match &undone.started_reason {
                    Some(why) => {
                        line.push_str(&format!(", shipped by {} ({why})", undone.started_by))
                    }
                    None => line.push_str(&format!(", shipped by {}", undone.started_by)),
                }
                if !undone.incidents.is_empty() {
                    line.push_str(&format!(
                        "; incidents opened since: {}",
                        undone.incidents.join(", ")
                    ));
                }
                p.summary.push(line);
                p.undone.push(undone);
            }
            p.summary.push(format!("{previous} serves again"));
            if let Some(target) = promoted(&previous, &rollouts) {
                p.config = self.config_back_to(service, env, &target).await?;
            }
            if !p.config.is_empty() {
                let names: Vec<String> = p
                    .config
                    .iter()
                    .map(|c| format!("{} {} {}", c.kind, c.name, c.status))
                    .collect();
                p.summary.push(format!(
                    "params written back to {previous}'s snapshot: {}",
                    names.join(", ")
                ));
            }
            p.schema = self
                .schema_decision(service, env, &previous)
                .await
                .map_err(|e| ApiError::internal(format!("{e:#}")))?;
            match &p.schema {
                Some(SchemaDecision::RunDowns { downs, .. }) => {
                    let names: Vec<&str> = downs.iter().map(|d| d.version.as_str()).collect();
                    p.summary.push(format!(
                        "migrations run down first, newest first: {}",
                        names.join(", ")
                    ));
                }
                Some(SchemaDecision::Refuse {
                    reason, options, ..
                }) => {
                    p.refused = true;
                    p.summary.push(format!(
                        "refused: {reason}; options: {}",
                        options.join("; ")
                    ));
                }
                Some(SchemaDecision::Compatible { .. }) | None => {}
            }
        }
        Ok(p)
    }

    /// What rollout `r` shipped, for the preview.
    async fn undone(&self, r: &Rollout) -> ApiResult<UndoneRelease> {
        let events = self.store.events(&r.id).await?;
        let started = events.iter().find(|e| e.kind == EventKind::RolloutStarted);
        let promoted_at_ms = events
            .iter()
            .find(|e| e.kind == EventKind::RolloutPromoted)
            .map(|e| e.at_ms);
        let incidents = self
            .store
            .incidents(true)
            .await?
            .into_iter()
            .map(|(i, _)| i)
            .filter(|i| {
                i.service == r.service && i.env == r.env && i.opened_at_ms >= r.created_at_ms
            })
            .map(|i| format!("{} ({})", i.id, i.title))
            .collect();
        Ok(UndoneRelease {
            release: r.to_release_id.clone(),
            rollout_id: r.id.clone(),
            phase: r.phase.as_str().to_owned(),
            started_at_ms: r.created_at_ms,
            promoted_at_ms,
            started_by: r.actor.clone(),
            started_reason: started
                .and_then(|e| e.detail["reason"].as_str())
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
            incidents,
        })
    }

    /// The params changes that going back to `target`'s snapshot writes (live → snapshot).
    async fn config_back_to(
        &self,
        service: &str,
        env: &str,
        target: &Rollout,
    ) -> ApiResult<Vec<backstop_core::snapshot::Change>> {
        let compared = self
            .rollout_snapshot_vs_live(service, env, &target.id)
            .await
            .map_err(|e| ApiError::internal(format!("{e:#}")))?;
        let Some(s) = compared else {
            return Ok(Vec::new());
        };
        Ok(backstop_core::snapshot::changes(&s.live, &s.snapshot))
    }
}
