//! Release groups: declaring one (its members must be registered releases of configured
//! services), and starting a run in an environment after every member passes the promotion
//! gate, so a group that cannot ship is refused before any member moves. The controller moves
//! the run (`controller/groups.rs`).

use backstop_api::gate::Action;
use backstop_api::groups::{CreateGroup, StartGroupRun};
use backstop_core::event::EventKind;
use backstop_core::group::{GroupMember, GroupRun, ReleaseGroup};
use backstop_core::model::Release;
use serde_json::json;

use crate::Ctx;
use crate::error::{ApiError, ApiResult};
use crate::releases::known_service;

/// Stores group `req` on behalf of `actor` (audited). Every problem is named at its member.
pub async fn create(ctx: &Ctx, req: CreateGroup, actor: &str) -> ApiResult<ReleaseGroup> {
    let name_ok = req
        .name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_alphanumeric())
        && req
            .name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'));
    if !name_ok {
        return Err(ApiError::bad_request(format!(
            "group name {:?} must start with a letter or digit and hold only letters, digits, `.`, `_` and `-`",
            req.name
        ))
        .at("/name"));
    }
    if req.members.len() < 2 {
        return Err(ApiError::bad_request(
            "a release group needs at least two members (one release ships with `rollout start`)",
        )
        .at("/members"));
    }
    let mut members = Vec::with_capacity(req.members.len());
    for (i, m) in req.members.iter().enumerate() {
        let at = format!("/members/{i}");
        known_service(ctx, &m.service, &format!("{at}/service"))?;
        if req.members[..i].iter().any(|o| o.service == m.service) {
            return Err(ApiError::bad_request(format!(
                "service {} is in the group twice; a group ships one release per service",
                m.service
            ))
            .at(format!("{at}/service")));
        }
        let release = ctx
            .store
            .release(&Release::id_for(&m.service, &m.version))
            .await
            .map_err(|e| ApiError::from(e).at(format!("{at}/version")))?;
        members.push(GroupMember {
            service: m.service.clone(),
            release_id: release.id,
        });
    }
    let group = ReleaseGroup {
        name: req.name,
        members,
        created_by: actor.to_string(),
        created_at_ms: ctx.clock.now_ms(),
    };
    ctx.store
        .create_release_group(&group)
        .await
        .map_err(|e| ApiError::from(e).at("/name"))?;
    crate::audit(
        ctx,
        actor,
        EventKind::GroupCreated,
        &format!("group/{}", group.name),
        "api",
        json!({"members": group.members}),
    )
    .await?;
    Ok(group)
}

/// Starts a run of group `name` in `req.env`: refused (nothing moves) when a member's service
/// has no such environment, a run of the group or a member's rollout is already under way
/// there, a member already runs its release, or the promotion gate refuses a member.
pub async fn start(ctx: &Ctx, name: &str, req: StartGroupRun, actor: &str) -> ApiResult<GroupRun> {
    let group = ctx.store.release_group(name).await?;
    let env = req.env.as_str();
    for (i, m) in group.members.iter().enumerate() {
        let svc = known_service(ctx, &m.service, "/env")?;
        if svc.environment(env).is_none() {
            return Err(ApiError::not_found(format!(
                "member {} ({}) has no environment {env:?}",
                i + 1,
                m.service
            ))
            .at("/env"));
        }
    }
    if let Some((run, _)) = ctx
        .store
        .group_runs(false, Some(name))
        .await?
        .into_iter()
        .find(|(r, _)| r.env == env)
    {
        return Err(ApiError::conflict(format!(
            "group {name} is already running in {env} (run {}, {})",
            run.id, run.phase
        ))
        .at("/env"));
    }
    for m in &group.members {
        if let Some(r) = ctx.store.active_rollout(&m.service, env).await? {
            return Err(ApiError::conflict(format!(
                "{}/{env} has a rollout under way ({}, {}); a group starts when its members are idle",
                m.service, r.id, r.phase
            ))
            .at("/env"));
        }
        let lkg = ctx
            .store
            .environment(&m.service, env)
            .await?
            .and_then(|e| e.lkg_release_id);
        if lkg.as_deref() == Some(m.release_id.as_str()) {
            return Err(ApiError::conflict(format!(
                "{} already runs {} in {env}; take it out of the group or ship a new release",
                m.service, m.release_id
            ))
            .at("/env"));
        }
    }
    for m in &group.members {
        let intent = crate::gate::Intent {
            action: Action::Start,
            actor: actor.to_owned(),
            rollout_id: None,
            critical: false,
            override_freeze: false,
            reason: req.reason.clone(),
            approved_by: None,
        };
        let report = crate::gate::evaluate(ctx, &m.service, env, &m.release_id, &intent).await;
        if !report.go {
            let target = format!("group/{name}/{env}");
            return Err(crate::gate::refuse(ctx, &report, &intent, &target).await);
        }
    }
    let now = ctx.clock.now_ms();
    let id = format!("grp-{}", uuid::Uuid::now_v7());
    let run = GroupRun::new(id, &group, env, actor, req.reason, now);
    ctx.store.create_group_run(&run).await?;
    crate::audit(
        ctx,
        actor,
        EventKind::GroupStarted,
        &format!("group-run/{}", run.id),
        "api",
        json!({"group": name, "env": env, "members": group.members, "reason": run.reason}),
    )
    .await?;
    ctx.wake_controllers().await;
    Ok(run)
}
