//! `backstop release group create|list|show|run` and `backstop rollout start --group`.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::Result;
use backstop_api::groups::{CreateGroup, GroupMemberRequest, GroupView, StartGroupRun};
use backstop_core::format_ms;
use backstop_core::group::{GroupPhase, GroupRun, ReleaseGroup};

use super::rollouts::{FollowArgs, follow_to_end};
use crate::client::ApiArgs;
use crate::output::Render;

#[derive(clap::Subcommand)]
pub enum GroupCmd {
    /// Declare a release group: registered releases of different services, in the order they
    /// ship (e.g. schema, then api, then web). Ship it with `backstop rollout start --group`.
    Create {
        /// The group's name, e.g. `checkout-2026-12`.
        name: String,
        /// A member, SERVICE=VERSION (repeatable, at least two, in shipping order).
        #[arg(long = "service", value_parser = parse_member, required = true)]
        members: Vec<GroupMemberRequest>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List release groups.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a group, its members and its runs.
    Show {
        /// The group's name.
        name: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show one run of a group (its id is printed by `rollout start --group`): each member's
    /// state, why it failed, and the options when it halted.
    Run {
        /// The run's id (`grp-…`).
        id: String,
        /// Keep following it until it ends (exit 0 promoted, 1 rolled back or halted).
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        follow: FollowArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn parse_member(s: &str) -> Result<GroupMemberRequest, String> {
    let (service, version) = super::releases::parse_key_value(s)?;
    if service.is_empty() || version.is_empty() {
        return Err(format!(
            "expected SERVICE=VERSION (e.g. api=v42), got {s:?}"
        ));
    }
    Ok(GroupMemberRequest { service, version })
}

pub async fn group(cmd: GroupCmd) -> Result<i32> {
    match cmd {
        GroupCmd::Create { name, members, api } => {
            let body = CreateGroup { name, members };
            let g: ReleaseGroup = api.client()?.post("/api/v1/groups", &body).await?;
            api.print(&g);
        }
        GroupCmd::List { api } => {
            api.get_and_print::<Vec<ReleaseGroup>>("/api/v1/groups")
                .await?;
        }
        GroupCmd::Show { name, api } => {
            api.get_and_print::<GroupView>(&format!("/api/v1/groups/{name}"))
                .await?;
        }
        GroupCmd::Run {
            id,
            watch,
            follow: how,
            api,
        } => {
            if watch {
                return follow(&api, &id, how.retry_for).await;
            }
            api.get_and_print::<GroupRun>(&format!("/api/v1/group-runs/{id}"))
                .await?;
        }
    }
    Ok(0)
}

/// `backstop rollout start --group NAME --env ENV [--wait]`.
pub async fn start(
    api: &ApiArgs,
    group: &str,
    env: String,
    reason: Option<String>,
    wait: bool,
    how: FollowArgs,
) -> Result<i32> {
    let body = StartGroupRun { env, reason };
    let run: GroupRun = api
        .client()?
        .post(&format!("/api/v1/groups/{group}/runs"), &body)
        .await?;
    if !wait {
        api.print(&run);
        return Ok(0);
    }
    follow(api, &run.id, how.retry_for).await
}

/// What `--wait` and `--watch` exit with once the run ended: 0 promoted, 1 rolled back or halted.
fn exit_code(run: &GroupRun) -> i32 {
    match run.phase {
        GroupPhase::RolledBack | GroupPhase::Halted => 1,
        _ => 0,
    }
}

/// Follows run `id` until it ends, a line per change; rides out daemon restarts.
async fn follow(api: &ApiArgs, id: &str, retry_for: Duration) -> Result<i32> {
    let path = format!("/api/v1/group-runs/{id}");
    follow_to_end(
        api,
        &path,
        retry_for,
        progress_line,
        |run: &GroupRun| !run.phase.is_active(),
        exit_code,
    )
    .await
}

/// `checkout · progressing · api@v42 promoted → web@v17 rolling_out → cart@v3 waiting`.
fn progress_line(run: &GroupRun) -> String {
    let members: Vec<String> = run
        .members
        .iter()
        .map(|m| format!("{} {}", m.release_id, m.state))
        .collect();
    format!("{} · {} · {}", run.group, run.phase, members.join(" → "))
}

/// `schema@v9 → api@v42 → web@v17`.
fn shipping_order(g: &ReleaseGroup) -> String {
    let order: Vec<&str> = g.members.iter().map(|m| m.release_id.as_str()).collect();
    order.join(" → ")
}

impl Render for ReleaseGroup {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "group {}: {} (declared by {}, {})",
            self.name,
            shipping_order(self),
            self.created_by,
            format_ms(self.created_at_ms)
        )
    }
}

impl Render for Vec<ReleaseGroup> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|g| {
                vec![
                    g.name.clone(),
                    shipping_order(g),
                    format_ms(g.created_at_ms),
                ]
            })
            .collect();
        crate::output::table(w, &["GROUP", "MEMBERS (IN ORDER)", "CREATED"], &rows)
    }
}

impl Render for GroupView {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        self.group.text(w)?;
        if self.runs.is_empty() {
            return writeln!(w, "no runs yet");
        }
        for run in &self.runs {
            writeln!(w)?;
            run.text(w)?;
        }
        Ok(())
    }
}

impl Render for GroupRun {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "run {} of {} in {}: {} (started by {}, {})",
            self.id,
            self.group,
            self.env,
            self.phase,
            self.actor,
            format_ms(self.created_at_ms)
        )?;
        let rows: Vec<Vec<String>> = self
            .members
            .iter()
            .enumerate()
            .map(|(i, m)| {
                vec![
                    (i + 1).to_string(),
                    m.release_id.clone(),
                    m.state.to_string(),
                    m.rollout_id.clone().unwrap_or_else(|| "-".into()),
                    m.recovery_id.clone().unwrap_or_else(|| "-".into()),
                ]
            })
            .collect();
        crate::output::table(
            w,
            &[">#", "MEMBER", "STATE", "ROLLOUT", "GROUP RECOVERY"],
            &rows,
        )?;
        if let Some(failure) = &self.failure {
            writeln!(w, "failed: {failure}")?;
        }
        if let Some(h) = &self.halt {
            writeln!(
                w,
                "halted at {}: {}",
                self.members[h.member].release_id, h.reason
            )?;
            for o in &h.options {
                writeln!(w, "  option: {o}")?;
            }
        }
        Ok(())
    }
}
