//! Release group runs: what [`backstop_core::group::next`] decides, done. A member's rollout and
//! a member's group recovery have ids derived from the run, so whatever this task did before a
//! crash is found again, never done twice: a rollout already stored is the member's rollout; a
//! recovery already stored is its recovery, which the reconcile pass runs (under its own lease)
//! from its first step not journaled as done.

use anyhow::Result;
use backstop_api::rollouts::CreateRollout;
use backstop_core::event::EventKind;
use backstop_core::group::{
    self, GroupEvent, GroupPhase, GroupRun, GroupStep, MemberState, Seen, member_recovery_id,
    member_rollout_id,
};
use backstop_core::recovery::StepKind;
use backstop_store::StoreError;
use serde_json::json;

use super::Controller;
use super::commands::WayBack;
use super::error::ControllerError;
use super::journal::Record;
use super::recovery::Planned;

/// Transitions applied in one pass at most (a run that promotes a member starts the next one
/// in the same pass).
const STEPS_PER_PASS: usize = 8;

/// The audit target of a run.
pub(crate) fn target(id: &str) -> String {
    format!("group-run/{id}")
}

impl Controller {
    /// Moves group run `id` as far as it can go now.
    pub(super) async fn advance_group(&mut self, id: &str) -> Result<()> {
        let ctx = self.ctx.clone();
        for _ in 0..STEPS_PER_PASS {
            let (mut run, version) = ctx.store.group_run(id).await?;
            if !run.phase.is_active() {
                return Ok(());
            }
            let seen = match (run.phase, group::focus(&run)) {
                (_, None) => Seen::Rollout(None),
                (GroupPhase::Progressing, Some(i)) => {
                    let rollout = ctx.store.rollout(&member_rollout_id(&run.id, i)).await;
                    Seen::Rollout(found(rollout)?.map(|r| r.phase))
                }
                (_, Some(i)) => {
                    let rec = ctx.store.recovery(&member_recovery_id(&run.id, i)).await;
                    Seen::Recovery(found(rec)?.map(|r| r.status))
                }
            };
            let before = run.clone();
            let now = ctx.clock.now_ms();
            let event = match group::next(&mut run, &seen, now) {
                GroupStep::Wait => None,
                GroupStep::StartMember(i) => self.start_member(&mut run, i).await?,
                GroupStep::RecoverMember { index, rollback } => {
                    self.recover_member(&mut run, index, rollback).await?
                }
                GroupStep::Changed(event) => Some(event),
            };
            if run == before {
                return Ok(());
            }
            ctx.store.update_group_run(&run, version).await?;
            if let Some(event) = event {
                self.record_group(&run, &event).await?;
            }
        }
        Ok(())
    }

    /// Starts member `i`'s rollout through the gate, with its derived id. A refusal fails the
    /// member (the group recovers); a store that cannot be written is an error (tried again).
    async fn start_member(&mut self, run: &mut GroupRun, i: usize) -> Result<Option<GroupEvent>> {
        let ctx = self.ctx.clone();
        let id = member_rollout_id(&run.id, i);
        let member = &run.members[i];
        let release = ctx.store.release(&member.release_id).await?;
        let req = CreateRollout {
            service: member.service.clone(),
            env: run.env.clone(),
            version: release.version,
            critical: false,
            override_freeze: false,
            reason: Some(format!("release group {} (run {})", run.group, run.id)),
        };
        let now = ctx.clock.now_ms();
        match crate::rollouts::create_with_id(&ctx, req, &run.actor, id.clone()).await {
            Ok(_) => {
                run.members[i].rollout_id = Some(id);
                run.members[i].state = MemberState::RollingOut;
                run.updated_at_ms = now;
                Ok(None)
            }
            Err(e) if e.status.is_server_error() => {
                anyhow::bail!("starting {}: {}", run.members[i].release_id, e.message)
            }
            Err(e) => {
                group::fail(
                    run,
                    i,
                    format!("its rollout was refused: {}", e.message),
                    now,
                );
                Ok(Some(GroupEvent::MemberFailed(i)))
            }
        }
    }

    /// Plans member `i`'s group recovery: back to its previous last known good when
    /// `rollback`, then its compensation. It is stored, not run: the reconcile pass runs it
    /// like any recovery. A way back that is refused (or gone) halts the group.
    async fn recover_member(
        &mut self,
        run: &mut GroupRun,
        i: usize,
        rollback: bool,
    ) -> Result<Option<GroupEvent>> {
        let ctx = self.ctx.clone();
        let rec_id = member_recovery_id(&run.id, i);
        let (service, release) = (
            run.members[i].service.clone(),
            run.members[i].release_id.clone(),
        );
        let now = ctx.clock.now_ms();
        let reason = format!(
            "release group {} rolled back: {}",
            run.group,
            run.failure.clone().unwrap_or_default()
        );
        let mut plan = Vec::new();
        if rollback {
            let serving = ctx
                .store
                .environment(&service, &run.env)
                .await?
                .and_then(|e| e.lkg_release_id);
            if serving.as_deref() != Some(release.as_str()) {
                let why = format!(
                    "{service}/{} no longer runs {release} (it runs {}): it was changed after the group promoted it, so going back is a person's call",
                    run.env,
                    serving.as_deref().unwrap_or("nothing")
                );
                let options = vec![format!(
                    "roll it back by hand if it should go: backstop rollout rollback {service} --env {} --reason …",
                    run.env
                )];
                group::halt(run, i, why, options, now);
                return Ok(Some(GroupEvent::Halted(i)));
            }
            match self.way_back(&service, &run.env, &reason, &rec_id).await {
                Ok(WayBack::Plan(steps)) => {
                    // The member is put back because the group failed, not because it is bad:
                    // it stays admissible for the group's next run.
                    plan.extend(
                        steps
                            .into_iter()
                            .filter(|s| !matches!(s, StepKind::MarkReleaseBad { .. })),
                    );
                }
                Ok(WayBack::Refused {
                    release: to,
                    why,
                    options,
                }) => {
                    let mut options = options;
                    options.push(format!(
                        "fix forward: register a fixed release of the failed member and run the group again (backstop rollout start --group {} --env {})",
                        run.group, run.env
                    ));
                    group::halt(
                        run,
                        i,
                        format!("going back to {to} is refused: {why}"),
                        options,
                        now,
                    );
                    return Ok(Some(GroupEvent::Halted(i)));
                }
                Err(ControllerError::Conflict(why)) => {
                    group::halt(run, i, why, vec![], now);
                    return Ok(Some(GroupEvent::Halted(i)));
                }
                Err(e) => return Err(e.into()),
            }
        }
        if let Some(cmd) = &ctx.service(&service)?.hooks.compensate {
            plan.push(StepKind::RunHook {
                name: "compensate".into(),
                command: cmd.clone(),
            });
        }
        if plan.is_empty() {
            // The failed member, already back, with nothing to compensate.
            run.members[i].state = MemberState::RolledBack;
            run.updated_at_ms = now;
            return Ok(Some(GroupEvent::MemberRolledBack(i)));
        }
        self.journal_recovery(
            Planned {
                id: &rec_id,
                service: &service,
                env: &run.env,
                actor: "controller",
                trigger: "group",
                reason: &reason,
            },
            &plan,
            json!({"group_run": run.id}),
        )
        .await?;
        run.members[i].recovery_id = Some(rec_id);
        run.members[i].state = MemberState::RollingBack;
        run.updated_at_ms = now;
        ctx.wake.notify_one();
        Ok(None)
    }

    /// The audit record (and webhook) of a change of run `run`.
    async fn record_group(&mut self, run: &GroupRun, event: &GroupEvent) -> Result<()> {
        let member = |i: &usize| run.members[*i].release_id.clone();
        let (kind, evidence) = match event {
            GroupEvent::MemberPromoted(i) => (
                EventKind::GroupMemberPromoted,
                json!({"member": member(i), "next": run.members.get(i + 1).map(|m| &m.release_id)}),
            ),
            GroupEvent::Promoted => (EventKind::GroupPromoted, json!({})),
            GroupEvent::MemberFailed(i) => (
                EventKind::GroupFailed,
                json!({"member": member(i), "failure": run.failure}),
            ),
            GroupEvent::MemberRolledBack(i) => (
                EventKind::GroupMemberRolledBack,
                json!({"member": member(i), "recovery": run.members[*i].recovery_id}),
            ),
            GroupEvent::RolledBack => (EventKind::GroupRolledBack, json!({})),
            GroupEvent::Halted(i) => (
                EventKind::GroupHalted,
                json!({"member": member(i), "halt": run.halt}),
            ),
        };
        self.record(Record::audit_only(
            "controller",
            kind,
            target(&run.id),
            "group",
            json!({"group": run.group, "env": run.env, "detail": evidence}),
        ))
        .await
    }
}

/// `Some` of what was read, `None` when it is not stored (yet).
pub(super) fn found<T>(read: backstop_store::Result<T>) -> Result<Option<T>> {
    match read {
        Ok(v) => Ok(Some(v)),
        Err(StoreError::NotFound(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}
