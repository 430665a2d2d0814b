//! What people ask of the controller (promote, abort, acknowledge, resume, roll back),
//! serialized with its own transitions.

use backstop_core::event::EventKind;
use backstop_core::model::{Phase, Recovery, RecoveryStatus, Rollout};
use backstop_core::recovery::Restore;
use backstop_core::schema::SchemaDecision;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::oneshot;

use super::Controller;
use super::error::ControllerError;
use super::journal::Record;
use super::recovery::{Planned, recovery_id_for, service_plan};
use super::{env_key, recovery_key, rollout_key};
use backstop_store::fence::fenced;

/// What a person can do to a running rollout.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RolloutAction {
    Promote,
    Abort,
    Acknowledge,
}

/// Requests from the API that must be serialized with the controller's own transitions.
pub enum Command {
    /// A person acts on one rollout, with a reason for the audit log.
    Rollout {
        action: RolloutAction,
        rollout_id: String,
        actor: String,
        reason: String,
        reply: oneshot::Sender<Result<Rollout, ControllerError>>,
    },
    Resume {
        recovery_id: String,
        actor: String,
        reply: oneshot::Sender<Result<Recovery, ControllerError>>,
    },
    Rollback {
        service: String,
        env: String,
        actor: String,
        reason: String,
        reply: oneshot::Sender<Result<Recovery, ControllerError>>,
    },
}

/// What a person asks, without the way back: what a replica passes on, through the store, to
/// the replica holding the work's lease.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "command", rename_all = "snake_case")]
pub(super) enum Request {
    Rollout {
        action: RolloutAction,
        rollout_id: String,
        actor: String,
        reason: String,
    },
    Resume {
        recovery_id: String,
        actor: String,
    },
    Rollback {
        service: String,
        env: String,
        actor: String,
        reason: String,
    },
}

/// What a command answers when it succeeds.
#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(super) enum Answer {
    Rollout(Rollout),
    Recovery(Recovery),
}

/// Where a command's answer goes.
pub(super) enum Reply {
    Rollout(oneshot::Sender<Result<Rollout, ControllerError>>),
    Recovery(oneshot::Sender<Result<Recovery, ControllerError>>),
}

impl Reply {
    pub(super) fn send(self, answer: Result<Answer, ControllerError>) {
        let mismatch = || {
            ControllerError::Internal("the command answered with the wrong kind of record".into())
        };
        match self {
            Reply::Rollout(tx) => {
                let _ = tx.send(answer.and_then(|a| match a {
                    Answer::Rollout(r) => Ok(r),
                    Answer::Recovery(_) => Err(mismatch()),
                }));
            }
            Reply::Recovery(tx) => {
                let _ = tx.send(answer.and_then(|a| match a {
                    Answer::Recovery(r) => Ok(r),
                    Answer::Rollout(_) => Err(mismatch()),
                }));
            }
        }
    }
}

impl Command {
    fn split(self) -> (Request, Reply) {
        match self {
            Command::Rollout {
                action,
                rollout_id,
                actor,
                reason,
                reply,
            } => (
                Request::Rollout {
                    action,
                    rollout_id,
                    actor,
                    reason,
                },
                Reply::Rollout(reply),
            ),
            Command::Resume {
                recovery_id,
                actor,
                reply,
            } => (
                Request::Resume { recovery_id, actor },
                Reply::Recovery(reply),
            ),
            Command::Rollback {
                service,
                env,
                actor,
                reason,
                reply,
            } => (
                Request::Rollback {
                    service,
                    env,
                    actor,
                    reason,
                },
                Reply::Recovery(reply),
            ),
        }
    }
}

impl Controller {
    /// Serves a person's command here when this replica holds the work's lease, else passes
    /// it on to the holder through the store ([`super::routed`]) without waiting for it.
    pub(super) async fn handle(&mut self, cmd: Command) {
        let (request, reply) = cmd.split();
        let key = match self.lease_key(&request).await {
            Ok(key) => key,
            Err(e) => return reply.send(Err(e)),
        };
        match self.lease(&key).await {
            Ok(Some(fence)) => {
                let answer = fenced(fence, self.answer(request)).await;
                self.after(&key, &answer).await;
                reply.send(answer);
            }
            Ok(None) => {
                tokio::spawn(super::routed::pass_on(
                    self.ctx.clone(),
                    key,
                    request,
                    reply,
                ));
            }
            Err(e) => {
                // The store may refuse the lease's write too: the fail-safe, as for any write.
                let answer = Err(e.into());
                self.after(&key, &answer).await;
                reply.send(answer);
            }
        }
    }

    /// What an answer leads to: a refused write, the fail-safe; a fenced one, the lease let go.
    pub(super) async fn after(&mut self, key: &str, answer: &Result<Answer, ControllerError>) {
        match answer {
            Err(ControllerError::StoreUnwritable(reason)) if !self.in_fail_safe() => {
                self.enter_fail_safe(reason.clone()).await;
            }
            Err(ControllerError::TakenOver(why)) => self.lost(key, why),
            _ => {}
        }
    }

    /// The lease that covers `request`: the rollout it acts on (a rollback of an environment
    /// where a rollout runs fails that rollout), the recovery without a rollout, else the
    /// environment.
    async fn lease_key(&self, request: &Request) -> Result<String, ControllerError> {
        let store = &self.ctx.store;
        Ok(match request {
            Request::Rollout { rollout_id, .. } => rollout_key(rollout_id),
            Request::Resume { recovery_id, .. } => {
                match store.recovery(recovery_id).await?.rollout_id {
                    Some(rollout) => rollout_key(&rollout),
                    None => recovery_key(recovery_id),
                }
            }
            Request::Rollback { service, env, .. } => {
                match store.active_rollout(service, env).await? {
                    Some(r) => rollout_key(&r.id),
                    None => env_key(service, env),
                }
            }
        })
    }

    /// Serves `request` (this replica holds its lease).
    pub(super) async fn answer(&mut self, request: Request) -> Result<Answer, ControllerError> {
        match request {
            Request::Rollout {
                action,
                rollout_id,
                actor,
                reason,
            } => match action {
                RolloutAction::Promote => self.manual_promote(&rollout_id, &actor, &reason).await,
                RolloutAction::Abort => self.manual_abort(&rollout_id, &actor, &reason).await,
                RolloutAction::Acknowledge => self.acknowledge(&rollout_id, &actor, &reason).await,
            }
            .map(Answer::Rollout),
            Request::Resume { recovery_id, actor } => self
                .resume(&recovery_id, &actor)
                .await
                .map(Answer::Recovery),
            Request::Rollback {
                service,
                env,
                actor,
                reason,
            } => self
                .manual_rollback(&service, &env, &actor, &reason)
                .await
                .map(Answer::Recovery),
        }
    }

    async fn manual_promote(
        &mut self,
        id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Rollout, ControllerError> {
        let r = self
            .rollout_in(
                id,
                &[Phase::Progressing, Phase::Paused],
                "only a progressing or paused rollout can be promoted",
            )
            .await?;
        self.promote(r, actor, &format!("promoted by {actor}: {reason}"))
            .await?;
        Ok(self.ctx.store.rollout(id).await?)
    }

    /// A person takes a held rollout over: the escalation deadline no longer applies; it waits
    /// for their promote or abort.
    async fn acknowledge(
        &mut self,
        id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Rollout, ControllerError> {
        let mut r = self
            .rollout_in(
                id,
                &[Phase::Paused],
                "only a held rollout can be acknowledged",
            )
            .await?;
        if let Some(by) = &r.acknowledged_by {
            return Err(ControllerError::Conflict(format!(
                "rollout {id} was already acknowledged by {by}"
            )));
        }
        r.acknowledged_by = Some(actor.to_string());
        r.updated_at_ms = self.ctx.clock.now_ms();
        self.ctx.store.update_rollout(&r).await?;
        self.record(
            Record::of(&r)
                .event(
                    EventKind::RolloutAcknowledged,
                    json!({"actor": actor, "reason": reason}),
                )
                .audit(
                    actor,
                    EventKind::RolloutAcknowledged,
                    "manual",
                    json!({"reason": reason, "severity": r.severity}),
                ),
        )
        .await?;
        Ok(r)
    }

    /// Re-runs a recovery that stopped on a failed step, from that step on.
    async fn resume(&mut self, id: &str, actor: &str) -> Result<Recovery, ControllerError> {
        let ctx = self.ctx.clone();
        let rec = ctx.store.recovery(id).await?;
        if rec.status != RecoveryStatus::Failed {
            return Err(ControllerError::Conflict(format!(
                "recovery {id} is {}; only a failed recovery can be resumed",
                rec.status
            )));
        }
        ctx.store.reopen_recovery(id).await?;
        self.record(Record::audit_only(
            actor,
            EventKind::RecoveryResumed,
            format!("recovery/{id}"),
            "manual",
            json!({}),
        ))
        .await?;
        let rec = ctx.store.recovery(id).await?;
        self.run_recovery(rec).await?;
        Ok(ctx.store.recovery(id).await?)
    }

    pub(super) async fn manual_abort(
        &mut self,
        id: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Rollout, ControllerError> {
        let r = self
            .rollout_in(
                id,
                &[Phase::Pending, Phase::Progressing, Phase::Paused],
                "nothing to abort",
            )
            .await?;
        self.fail(
            r,
            format!("aborted by {actor}: {reason}"),
            actor,
            json!({"reason": reason}),
        )
        .await?;
        Ok(self.ctx.store.rollout(id).await?)
    }

    /// Stored rollout `id` when its phase is one of `allowed`; otherwise a conflict that says
    /// its phase and `otherwise`.
    async fn rollout_in(
        &self,
        id: &str,
        allowed: &[Phase],
        otherwise: &str,
    ) -> Result<Rollout, ControllerError> {
        let r = self.ctx.store.rollout(id).await?;
        if !allowed.contains(&r.phase) {
            return Err(ControllerError::Conflict(format!(
                "rollout {id} is {}; {otherwise}",
                r.phase
            )));
        }
        Ok(r)
    }

    /// Rolls an environment back: a rollout under way fails (and its recovery runs); otherwise
    /// the previous last known good is deployed again.
    async fn manual_rollback(
        &mut self,
        service: &str,
        env: &str,
        actor: &str,
        reason: &str,
    ) -> Result<Recovery, ControllerError> {
        let ctx = self.ctx.clone();
        if let Some(r) = ctx.store.active_rollout(service, env).await? {
            if matches!(r.phase, Phase::Failed | Phase::Recovering) {
                return Err(ControllerError::Conflict(format!(
                    "{service}/{env} is already rolling back (rollout {})",
                    r.id
                )));
            }
            let id = r.id.clone();
            self.fail(
                r,
                format!("rollback requested by {actor}: {reason}"),
                actor,
                json!({"reason": reason}),
            )
            .await?;
            return Ok(ctx.store.recovery(&recovery_id_for(&id)).await?);
        }
        let rec_id = format!("rec-{}", uuid::Uuid::now_v7());
        let plan = match self.way_back(service, env, reason, &rec_id).await? {
            WayBack::Plan(plan) => plan,
            WayBack::Refused {
                release,
                why,
                options,
            } => {
                self.record(Record::audit_only(
                    actor,
                    EventKind::RollbackRefused,
                    format!("environment/{service}/{env}"),
                    &why,
                    json!({"release": release, "options": options}),
                ))
                .await?;
                return Err(ControllerError::Conflict(format!(
                    "rollback of {service}/{env} to {release} refused: {why}. Options: {}",
                    options.join("; ")
                )));
            }
        };
        self.journal_recovery(
            Planned {
                id: &rec_id,
                service,
                env,
                actor,
                trigger: "manual",
                reason,
            },
            &plan,
            json!({}),
        )
        .await?;
        let rec = ctx.store.recovery(&rec_id).await?;
        self.run_recovery(rec).await?;
        Ok(ctx.store.recovery(&rec_id).await?)
    }

    /// The plan that puts `service/env` back on its previous last known good (recovery
    /// `rec_id`), or why it may not (the schema refuses): decided before anything is touched,
    /// for a person's rollback and a release group's alike.
    pub(super) async fn way_back(
        &mut self,
        service: &str,
        env: &str,
        reason: &str,
        rec_id: &str,
    ) -> Result<WayBack, ControllerError> {
        let ctx = self.ctx.clone();
        let state = ctx.store.environment(service, env).await?.ok_or_else(|| {
            ControllerError::Conflict(format!("{service}/{env} has never been deployed"))
        })?;
        let (Some(previous), Some(current)) = (
            state.previous_lkg_release_id.clone(),
            state.lkg_release_id.clone(),
        ) else {
            return Err(ControllerError::Conflict(format!(
                "{service}/{env} has no earlier known-good release to go back to"
            )));
        };
        let version = ctx.store.release(&previous).await?.version;
        // An instance of the previous release that still runs (blue-green rollback window, or a
        // scale-down not yet done) is adopted by the start step: the switch back is one step.
        let warm = ctx
            .store
            .running_instances()
            .await?
            .into_iter()
            // A version's first instance: its further ones come with it.
            .find(|i| {
                i.release_id == previous
                    && i.env == env
                    && backstop_core::partial::primary_of(&i.id) == i.id
            });
        let new_instance = match warm {
            Some(i) => i.id,
            None => format!("{service}-{env}-{version}-{}", &rec_id[rec_id.len() - 6..]),
        };
        let downs = match ctx
            .schema_decision(service, env, &previous)
            .await
            .map_err(|e| ControllerError::Internal(format!("{e:#}")))?
        {
            Some(SchemaDecision::RunDowns { downs, .. }) => downs,
            Some(SchemaDecision::Refuse {
                reason: why,
                options,
                ..
            }) => {
                return Ok(WayBack::Refused {
                    release: previous,
                    why,
                    options,
                });
            }
            _ => vec![],
        };
        let config_restore = self.lkg_config(service, env, &previous).await;
        let svc = ctx
            .service(service)
            .map_err(|e| ControllerError::Internal(format!("{e:#}")))?;
        Ok(WayBack::Plan(service_plan(
            svc,
            Restore::Previous {
                new_instance_id: &new_instance,
                previous_release_id: &previous,
                current_instance_id: state.stable_instance_id.as_deref(),
                current_release_id: &current,
            },
            reason,
            &downs,
            config_restore.as_ref(),
        )))
    }
}

/// What [`Controller::way_back`] found.
pub(super) enum WayBack {
    Plan(Vec<backstop_core::recovery::StepKind>),
    /// Going back to `release` would need schema changes it may not make.
    Refused {
        release: String,
        why: String,
        options: Vec<String>,
    },
}
