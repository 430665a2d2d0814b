//! Release groups: several services' releases shipped as one unit, in order (e.g. schema → api →
//! web), and taken back together, saga style.
//!
//! A group run moves one member at a time: each member goes through its own canary; the group is
//! promoted only when every member is. When a member fails, members after it never start, and
//! the group recovers in reverse order: each member that took part is put back to its last known
//! good and its compensating step (the service's `hooks.compensate`) undoes what it did across
//! services. Every piece of that is a journaled recovery with an id derived from the run, so a
//! controller killed at any moment finds the same recovery again instead of planning another.
//! A member that cannot be put back (a rollback refused by the schema) halts the group in an
//! explained state, with the options a person has.
//!
//! Pure: the controller observes the members' rollouts and recoveries and applies what [`next`]
//! says.

use serde::{Deserialize, Serialize};

use crate::Millis;
use crate::model::{Phase, RecoveryStatus};
use crate::named::string_enum;

/// A named set of releases, in the order they ship.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ReleaseGroup {
    pub name: String,
    /// In shipping order; recovery goes the other way.
    pub members: Vec<GroupMember>,
    pub created_by: String,
    pub created_at_ms: Millis,
}

/// One service's release in a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupMember {
    pub service: String,
    /// `service@version`.
    pub release_id: String,
}

string_enum! {
    /// Where a group run is.
    pub enum GroupPhase {
        /// Members roll out one after the other.
        Progressing = "progressing",
        /// A member failed: the members that took part are being put back, last first.
        Recovering = "recovering",
        /// Every member was promoted.
        Promoted = "promoted",
        /// Every member that took part is back on its last known good.
        RolledBack = "rolled_back",
        /// A member could not be put back; the group waits for a person (see `halt`).
        Halted = "halted",
    }
}

impl GroupPhase {
    pub fn is_active(self) -> bool {
        matches!(self, GroupPhase::Progressing | GroupPhase::Recovering)
    }
}

string_enum! {
    /// Where one member of a group run is.
    pub enum MemberState {
        /// Its turn has not come.
        Waiting = "waiting",
        /// Its rollout runs.
        RollingOut = "rolling_out",
        Promoted = "promoted",
        /// Its rollout failed (its own recovery puts its traffic back).
        Failed = "failed",
        /// Its group recovery (rollback and compensation) runs.
        RollingBack = "rolling_back",
        /// Back on its last known good, compensated.
        RolledBack = "rolled_back",
        /// Never started: a member before it failed.
        Skipped = "skipped",
        /// Its rollback was refused; the group halted here.
        Halted = "halted",
    }
}

/// One member's part in a group run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct MemberRun {
    pub service: String,
    pub release_id: String,
    pub state: MemberState,
    /// Its rollout ([`member_rollout_id`]) once started.
    pub rollout_id: Option<String>,
    /// Its group recovery ([`member_recovery_id`]) once planned.
    pub recovery_id: Option<String>,
    /// What happened to it, in a sentence (a refusal, a failure).
    pub note: Option<String>,
}

/// Why a group recovery stopped, and what a person can do.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Halt {
    /// Index of the member that could not be put back.
    pub member: usize,
    pub reason: String,
    pub options: Vec<String>,
}

/// One run of a group in an environment.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct GroupRun {
    pub id: String,
    pub group: String,
    pub env: String,
    pub actor: String,
    pub reason: Option<String>,
    pub phase: GroupPhase,
    pub members: Vec<MemberRun>,
    /// The member whose failure started the group recovery.
    pub failed_member: Option<usize>,
    /// Why the group failed (the member's failure, in a sentence).
    pub failure: Option<String>,
    pub halt: Option<Halt>,
    pub created_at_ms: Millis,
    pub updated_at_ms: Millis,
    pub finished_at_ms: Option<Millis>,
}

/// The rollout id of member `index` of run `run_id`: derived, so starting it again after a
/// crash finds the rollout already stored instead of starting a second one.
pub fn member_rollout_id(run_id: &str, index: usize) -> String {
    format!("{run_id}-{}", index + 1)
}

/// The id of member `index`'s group recovery (rollback and compensation), derived likewise;
/// apart from its rollout's own recovery (`rec-` and the rollout's id).
pub fn member_recovery_id(run_id: &str, index: usize) -> String {
    format!("rec-{run_id}-undo-{}", index + 1)
}

impl GroupRun {
    /// A new run of `group` in `env`, its first member about to start.
    pub fn new(
        id: String,
        group: &ReleaseGroup,
        env: &str,
        actor: &str,
        reason: Option<String>,
        now: Millis,
    ) -> Self {
        Self {
            id,
            group: group.name.clone(),
            env: env.to_string(),
            actor: actor.to_string(),
            reason,
            phase: GroupPhase::Progressing,
            members: group
                .members
                .iter()
                .map(|m| MemberRun {
                    service: m.service.clone(),
                    release_id: m.release_id.clone(),
                    state: MemberState::Waiting,
                    rollout_id: None,
                    recovery_id: None,
                    note: None,
                })
                .collect(),
            failed_member: None,
            failure: None,
            halt: None,
            created_at_ms: now,
            updated_at_ms: now,
            finished_at_ms: None,
        }
    }
}

/// What the controller saw of the member [`next`] looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Seen {
    /// Its rollout's phase (while progressing), when it exists.
    Rollout(Option<Phase>),
    /// Its group recovery's status (while recovering), when it exists.
    Recovery(Option<RecoveryStatus>),
}

/// What a group run needs next.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupStep {
    /// Nothing until the member's rollout or recovery moves.
    Wait,
    /// Start member `index`'s rollout (id [`member_rollout_id`]); a refusal fails the member.
    StartMember(usize),
    /// Plan member `index`'s group recovery (id [`member_recovery_id`]): its rollback when it
    /// was promoted, then its compensation. `rollback` is false for the member that failed
    /// (its own recovery already put its traffic back).
    RecoverMember { index: usize, rollback: bool },
    /// The phase or a member's state changed (apply, store, record).
    Changed(GroupEvent),
}

/// A change [`next`] made to the run, to record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupEvent {
    MemberPromoted(usize),
    Promoted,
    /// Member `index` failed: the group recovery starts.
    MemberFailed(usize),
    MemberRolledBack(usize),
    RolledBack,
    /// Member `index` could not be put back: the group halted ([`halt`]).
    Halted(usize),
}

/// The member [`next`] looks at, and what for: `None` when the run is over.
pub fn focus(run: &GroupRun) -> Option<usize> {
    match run.phase {
        GroupPhase::Progressing => run
            .members
            .iter()
            .position(|m| m.state != MemberState::Promoted),
        GroupPhase::Recovering => run.members.iter().rposition(|m| {
            matches!(
                m.state,
                MemberState::Promoted | MemberState::Failed | MemberState::RollingBack
            )
        }),
        _ => None,
    }
}

/// Moves `run` on from what was `seen` of its [`focus`] member, at `now`: the change is applied
/// to `run` and returned to be stored and recorded, or the work to do is returned.
pub fn next(run: &mut GroupRun, seen: &Seen, now: Millis) -> GroupStep {
    let Some(index) = focus(run) else {
        return finish(run, now);
    };
    let run_id = run.id.clone();
    let member = &mut run.members[index];
    // What was stored under the derived ids belongs to the member, also when the controller
    // died before it wrote them down in the run.
    match seen {
        Seen::Rollout(Some(_)) if member.rollout_id.is_none() => {
            member.rollout_id = Some(member_rollout_id(&run_id, index));
        }
        Seen::Recovery(Some(_)) if member.recovery_id.is_none() => {
            member.recovery_id = Some(member_recovery_id(&run_id, index));
        }
        _ => {}
    }
    match (run.phase, seen) {
        (GroupPhase::Progressing, Seen::Rollout(None)) => GroupStep::StartMember(index),
        (GroupPhase::Progressing, Seen::Rollout(Some(phase))) => match phase {
            Phase::Promoted => {
                member.state = MemberState::Promoted;
                run.updated_at_ms = now;
                GroupStep::Changed(GroupEvent::MemberPromoted(index))
            }
            // Its own recovery runs; the group recovery starts once its traffic is back.
            Phase::Failed | Phase::Recovering => {
                if member.state != MemberState::Failed {
                    member.state = MemberState::Failed;
                }
                GroupStep::Wait
            }
            Phase::Recovered => {
                member.state = MemberState::Failed;
                let why = member
                    .note
                    .clone()
                    .unwrap_or_else(|| "its rollout failed".into());
                fail(run, index, why, now);
                GroupStep::Changed(GroupEvent::MemberFailed(index))
            }
            Phase::Pending | Phase::Progressing | Phase::Paused => {
                if member.state == MemberState::Waiting {
                    member.state = MemberState::RollingOut;
                }
                GroupStep::Wait
            }
        },
        (GroupPhase::Recovering, Seen::Recovery(None))
            if member.state == MemberState::Failed && member.rollout_id.is_none() =>
        {
            // Refused before it started: nothing of it ran, so nothing to undo. The change is
            // stored and the next member looked at.
            member.state = MemberState::Skipped;
            run.updated_at_ms = now;
            GroupStep::Wait
        }
        (GroupPhase::Recovering, Seen::Recovery(None)) => GroupStep::RecoverMember {
            index,
            rollback: member.state != MemberState::Failed,
        },
        (GroupPhase::Recovering, Seen::Recovery(Some(RecoveryStatus::Done))) => {
            member.state = MemberState::RolledBack;
            run.updated_at_ms = now;
            GroupStep::Changed(GroupEvent::MemberRolledBack(index))
        }
        // Running, or failed on a step a person may resume: the group waits for it.
        (GroupPhase::Recovering, Seen::Recovery(Some(_))) => {
            member.state = MemberState::RollingBack;
            GroupStep::Wait
        }
        _ => GroupStep::Wait,
    }
}

/// Member `index` failed with `why`: members after it never start; the group recovery starts.
pub fn fail(run: &mut GroupRun, index: usize, why: String, now: Millis) {
    run.members[index].state = MemberState::Failed;
    for later in &mut run.members[index + 1..] {
        if later.state == MemberState::Waiting {
            later.state = MemberState::Skipped;
        }
    }
    run.phase = GroupPhase::Recovering;
    run.failed_member = Some(index);
    run.failure = Some(format!("{} failed: {why}", run.members[index].release_id));
    run.members[index].note = Some(why);
    run.updated_at_ms = now;
}

/// Member `index` cannot be put back: the group halts there, safe (every member after it is
/// already back or never started) and explained.
pub fn halt(run: &mut GroupRun, index: usize, reason: String, options: Vec<String>, now: Millis) {
    run.members[index].state = MemberState::Halted;
    run.members[index].note = Some(reason.clone());
    run.phase = GroupPhase::Halted;
    run.halt = Some(Halt {
        member: index,
        reason,
        options,
    });
    run.updated_at_ms = now;
    run.finished_at_ms = Some(now);
}

/// No member left to look at: the run ends promoted or rolled back.
fn finish(run: &mut GroupRun, now: Millis) -> GroupStep {
    let event = match run.phase {
        GroupPhase::Progressing => {
            run.phase = GroupPhase::Promoted;
            GroupEvent::Promoted
        }
        GroupPhase::Recovering => {
            run.phase = GroupPhase::RolledBack;
            GroupEvent::RolledBack
        }
        _ => return GroupStep::Wait,
    };
    run.updated_at_ms = now;
    run.finished_at_ms = Some(now);
    GroupStep::Changed(event)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run_of(n: usize) -> GroupRun {
        let group = ReleaseGroup {
            name: "checkout".into(),
            members: (0..n)
                .map(|i| GroupMember {
                    service: format!("s{i}"),
                    release_id: format!("s{i}@v2"),
                })
                .collect(),
            created_by: "ana".into(),
            created_at_ms: 0,
        };
        GroupRun::new("grp-1".into(), &group, "prod", "ana", None, 0)
    }

    #[test]
    fn members_start_in_order_and_the_group_is_promoted_when_all_are() {
        let mut run = run_of(2);
        assert_eq!(
            next(&mut run, &Seen::Rollout(None), 1),
            GroupStep::StartMember(0)
        );
        assert_eq!(
            next(&mut run, &Seen::Rollout(Some(Phase::Progressing)), 2),
            GroupStep::Wait
        );
        assert_eq!(run.members[0].state, MemberState::RollingOut);
        assert_eq!(
            next(&mut run, &Seen::Rollout(Some(Phase::Promoted)), 3),
            GroupStep::Changed(GroupEvent::MemberPromoted(0))
        );
        assert_eq!(
            next(&mut run, &Seen::Rollout(None), 4),
            GroupStep::StartMember(1)
        );
        next(&mut run, &Seen::Rollout(Some(Phase::Promoted)), 5);
        assert_eq!(
            next(&mut run, &Seen::Rollout(None), 6),
            GroupStep::Changed(GroupEvent::Promoted)
        );
        assert_eq!(run.phase, GroupPhase::Promoted);
        assert_eq!(run.finished_at_ms, Some(6));
        assert_eq!(next(&mut run, &Seen::Rollout(None), 7), GroupStep::Wait);
    }

    #[test]
    fn a_failed_member_rolls_the_earlier_ones_back_last_first_and_the_later_never_start() {
        let mut run = run_of(3);
        next(&mut run, &Seen::Rollout(Some(Phase::Promoted)), 1);
        run.members[1].rollout_id = Some(member_rollout_id("grp-1", 1));
        // The second member's own recovery runs first; the group waits for it.
        assert_eq!(
            next(&mut run, &Seen::Rollout(Some(Phase::Recovering)), 2),
            GroupStep::Wait
        );
        assert_eq!(run.phase, GroupPhase::Progressing);
        assert_eq!(
            next(&mut run, &Seen::Rollout(Some(Phase::Recovered)), 3),
            GroupStep::Changed(GroupEvent::MemberFailed(1))
        );
        assert_eq!(run.phase, GroupPhase::Recovering);
        assert_eq!(run.members[2].state, MemberState::Skipped);
        // The failed member first (compensation only), then the promoted one (rollback too).
        assert_eq!(
            next(&mut run, &Seen::Recovery(None), 4),
            GroupStep::RecoverMember {
                index: 1,
                rollback: false
            }
        );
        next(&mut run, &Seen::Recovery(Some(RecoveryStatus::Running)), 5);
        assert_eq!(run.members[1].state, MemberState::RollingBack);
        assert_eq!(
            next(&mut run, &Seen::Recovery(Some(RecoveryStatus::Done)), 6),
            GroupStep::Changed(GroupEvent::MemberRolledBack(1))
        );
        assert_eq!(
            next(&mut run, &Seen::Recovery(None), 7),
            GroupStep::RecoverMember {
                index: 0,
                rollback: true
            }
        );
        // A failed step waits for a person to resume it.
        assert_eq!(
            next(&mut run, &Seen::Recovery(Some(RecoveryStatus::Failed)), 8),
            GroupStep::Wait
        );
        next(&mut run, &Seen::Recovery(Some(RecoveryStatus::Done)), 9);
        assert_eq!(
            next(&mut run, &Seen::Recovery(None), 10),
            GroupStep::Changed(GroupEvent::RolledBack)
        );
        assert_eq!(run.phase, GroupPhase::RolledBack);
        assert_eq!(run.members[2].rollout_id, None);
    }

    #[test]
    fn a_member_refused_before_it_started_has_nothing_to_undo() {
        let mut run = run_of(2);
        next(&mut run, &Seen::Rollout(Some(Phase::Promoted)), 1);
        fail(&mut run, 1, "its rollout was refused: frozen".into(), 2);
        assert_eq!(next(&mut run, &Seen::Recovery(None), 3), GroupStep::Wait);
        assert_eq!(run.members[1].state, MemberState::Skipped);
        assert_eq!(
            next(&mut run, &Seen::Recovery(None), 4),
            GroupStep::RecoverMember {
                index: 0,
                rollback: true
            }
        );
    }

    #[test]
    fn a_rollout_or_recovery_stored_before_a_crash_is_the_members_own() {
        let mut run = run_of(2);
        // The rollout was stored, the run not yet told: it is the member's.
        next(&mut run, &Seen::Rollout(Some(Phase::Progressing)), 1);
        assert_eq!(run.members[0].rollout_id.as_deref(), Some("grp-1-1"));
        next(&mut run, &Seen::Rollout(Some(Phase::Recovered)), 2);
        // It started, so it is compensated, not skipped.
        assert_eq!(
            next(&mut run, &Seen::Recovery(None), 3),
            GroupStep::RecoverMember {
                index: 0,
                rollback: false
            }
        );
        next(&mut run, &Seen::Recovery(Some(RecoveryStatus::Running)), 4);
        assert_eq!(
            run.members[0].recovery_id.as_deref(),
            Some("rec-grp-1-undo-1")
        );
    }

    #[test]
    fn a_halted_group_looks_at_nothing_more() {
        let mut run = run_of(2);
        next(&mut run, &Seen::Rollout(Some(Phase::Promoted)), 1);
        fail(&mut run, 1, "refused by the gate".into(), 2);
        halt(
            &mut run,
            0,
            "contract migration".into(),
            vec!["fix forward".into()],
            3,
        );
        assert_eq!(focus(&run), None);
        assert_eq!(next(&mut run, &Seen::Recovery(None), 4), GroupStep::Wait);
        assert_eq!(run.phase, GroupPhase::Halted);
        assert_eq!(run.halt.as_ref().unwrap().member, 0);
    }
}
