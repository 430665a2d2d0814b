//! `backstop rollout start|status|list|promote|abort|acknowledge|label|explain|export`.

use std::io::{self, IsTerminal, Write};
use std::time::Duration;

use anyhow::Result;
use backstop_api::rollouts::{CreateRollout, PromoteRequest, Reason, RolloutDetail};
use backstop_core::explain::Explanation;
use backstop_core::format_ms;
use backstop_core::model::{Phase, Rollout};
use serde::Serialize;

use crate::client::{ApiArgs, Client, Query, ServerArgs};
use crate::output::{Output, Render};

#[derive(clap::Subcommand)]
pub enum RolloutCmd {
    /// Start moving an environment to a release, after the promotion gate (exit 1 with every
    /// reason when it refuses; see `backstop gate`); `--wait` follows it to the end.
    #[command(
        after_help = "A release group (`backstop release group create`) ships as one unit: \
`backstop rollout start --group checkout-2026-12 --env prod --wait` rolls its members out one after \
the other, each through its own canary; when one fails, the members already out are rolled back, \
last first, each compensated by its service's `hooks.compensate`, and later members never start."
    )]
    Start {
        /// The service, as named in the config.
        #[arg(required_unless_present = "group", conflicts_with = "group")]
        service: Option<String>,
        /// The environment, as named in the service's config.
        #[arg(long)]
        env: String,
        /// The release's version (registered with `backstop release create`).
        #[arg(long, required_unless_present = "group", conflicts_with = "group")]
        version: Option<String>,
        /// Ship a release group instead of one release: its members in order, rolled back
        /// together (see below).
        #[arg(long, conflicts_with_all = ["critical", "override_freeze"])]
        group: Option<String>,
        /// Follow the rollout until it is promoted (exit 0) or rolled back (exit 1); for a
        /// group, until every member is promoted (exit 0) or the group is rolled back or halted
        /// (exit 1).
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        follow: FollowArgs,
        #[command(flatten)]
        gate: crate::gate::GateFlags,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Show a rollout: phase, weight, verdict, timeline.
    Status {
        /// The rollout's id (`backstop rollout list` shows them).
        id: String,
        /// Keep following it until it ends.
        #[arg(long)]
        watch: bool,
        #[command(flatten)]
        follow: FollowArgs,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// List recent rollouts.
    List {
        /// The service, as named in the config.
        #[arg(long)]
        service: Option<String>,
        /// How many to show, most recent first.
        #[arg(long, default_value_t = 20)]
        limit: i64,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Promote now, skipping the remaining steps (after the promotion gate: exit 1 with every
    /// reason when it refuses).
    Promote {
        /// The rollout's id (`backstop rollout list` shows them).
        id: String,
        /// Why, in words: kept in the audit log.
        #[arg(long)]
        reason: String,
        /// Promote during a scheduled or manual freeze (audited; refused in a regulated environment).
        #[arg(long)]
        override_freeze: bool,
        /// A critical change: passes the automatic freeze while a recovery is active (audited).
        #[arg(long)]
        critical: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Abort: traffic goes back to the last known good and the release is marked bad.
    Abort {
        /// The rollout's id (`backstop rollout list` shows them).
        id: String,
        /// Why, in words: kept in the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Take over a held rollout: its escalation deadline no longer applies; promote or abort it.
    Acknowledge {
        /// The rollout's id (`backstop rollout list` shows them).
        id: String,
        /// Why, in words: kept in the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Say what the verdict really was: `confirmed` or `false-alarm` (a rollback), `missed` (a
    /// promoted release that was bad). `backstop calibrate` learns from these.
    Label {
        /// The rollout's id (`backstop rollout list` shows them).
        id: String,
        /// confirmed, false-alarm or missed.
        label: String,
        /// Why, in words (kept with the label).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Why the rollout ended where it did: the decision, each signal's canary and baseline
    /// numbers and the judge's evidence against its threshold, what happened next, and what
    /// would have changed the decision (`-o json`: the same as data).
    Explain {
        /// The rollout's id (`backstop rollout list` shows them).
        id: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Print the rollout's per-interval counts as JSON Lines: a backstop-scenario/v1 file for
    /// `backstop analyze`. Always JSONL (one header line, then one line per interval), so it
    /// takes no `--output`.
    Export {
        /// The rollout's id (`backstop rollout list` shows them).
        id: String,
        #[command(flatten)]
        server: ServerArgs,
    },
}

pub async fn rollout(cmd: RolloutCmd) -> Result<i32> {
    match cmd {
        RolloutCmd::Start {
            service,
            env,
            version,
            group,
            wait,
            follow: how,
            gate,
            api,
        } => {
            if let Some(group) = group {
                return crate::commands::groups::start(&api, &group, env, gate.reason, wait, how)
                    .await;
            }
            let body = CreateRollout {
                service: service.unwrap_or_default(),
                env,
                version: version.unwrap_or_default(),
                critical: gate.critical,
                override_freeze: gate.override_freeze,
                reason: gate.reason,
            };
            let client = api.client()?;
            let r: Rollout = client.post("/api/v1/rollouts", &body).await?;
            if !wait {
                api.print(&Started(r));
                return Ok(0);
            }
            follow(&client, &r.id, api.out.output, how.retry_for).await
        }
        RolloutCmd::Status {
            id,
            watch,
            follow: how,
            api,
        } => {
            if watch {
                return follow(&api.client()?, &id, api.out.output, how.retry_for).await;
            }
            api.get_and_print::<RolloutDetail>(&format!("/api/v1/rollouts/{id}"))
                .await?;
            Ok(0)
        }
        RolloutCmd::List {
            service,
            limit,
            api,
        } => {
            let path = Query::new("/api/v1/rollouts")
                .param("limit", limit)
                .param_if("service", service);
            api.get_and_print::<Vec<Rollout>>(path.as_str()).await?;
            Ok(0)
        }
        RolloutCmd::Promote {
            id,
            reason,
            override_freeze,
            critical,
            api,
        } => {
            let body = PromoteRequest {
                reason,
                critical,
                override_freeze,
            };
            act(&api, &id, "promote", &body).await
        }
        RolloutCmd::Abort { id, reason, api } => act(&api, &id, "abort", &Reason { reason }).await,
        RolloutCmd::Acknowledge { id, reason, api } => {
            act(&api, &id, "acknowledge", &Reason { reason }).await
        }
        RolloutCmd::Label {
            id,
            label,
            note,
            api,
        } => {
            let body = backstop_api::calibration::LabelRequest { label, note };
            api.post_and_print::<backstop_core::label::VerdictLabel>(
                &format!("/api/v1/rollouts/{}/label", crate::client::encode(&id)),
                &body,
            )
            .await?;
            Ok(0)
        }
        RolloutCmd::Explain { id, api } => {
            api.get_and_print::<Explanation>(&format!(
                "/api/v1/rollouts/{}/explain",
                crate::client::encode(&id)
            ))
            .await?;
            Ok(0)
        }
        RolloutCmd::Export { id, server } => {
            let text = Client::new(&server)?
                .get_text(&format!("/api/v1/rollouts/{id}/export"))
                .await?;
            let _ = io::stdout().lock().write_all(text.as_bytes());
            Ok(0)
        }
    }
}

/// A person's action on a rollout (`promote`, `abort`, `acknowledge`): prints the rollout after it.
async fn act(api: &ApiArgs, id: &str, verb: &str, body: &impl Serialize) -> Result<i32> {
    let path = format!("/api/v1/rollouts/{id}/{verb}");
    api.post_and_print::<Rollout>(&path, body).await?;
    Ok(0)
}

/// A rollout just started.
#[derive(Serialize)]
#[serde(transparent)]
struct Started(Rollout);

impl Render for Started {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let r = &self.0;
        writeln!(
            w,
            "rollout {} started: {} → {}",
            r.id,
            r.from_release_id.as_deref().unwrap_or("(nothing)"),
            r.to_release_id
        )
    }
}

/// A rollout a person acted on.
impl Render for Rollout {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "rollout {}: {}", self.id, self.phase)
    }
}

impl Render for Vec<Rollout> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let rows: Vec<Vec<String>> = self
            .iter()
            .map(|r| {
                vec![
                    r.id.clone(),
                    format!("{}/{}", r.service, r.env),
                    r.to_release_id.clone(),
                    r.phase.as_str().to_owned(),
                    format!("{}%", r.canary_weight),
                    format_ms(r.created_at_ms),
                ]
            })
            .collect();
        crate::output::table(
            w,
            &["ROLLOUT", "ENV", "RELEASE", "PHASE", ">WEIGHT", "CREATED"],
            &rows,
        )
    }
}

/// Follows the object at `path` (a group run, a ship) until `ended` says so, a `line` per
/// change in text output; then prints it and returns `exit`'s code for it. Rides out daemon
/// restarts.
pub async fn follow_to_end<T: serde::de::DeserializeOwned + Render>(
    api: &ApiArgs,
    path: &str,
    retry_for: Duration,
    line: impl Fn(&T) -> String,
    ended: impl Fn(&T) -> bool,
    exit: impl Fn(&T) -> i32,
) -> Result<i32> {
    let client = api.client()?;
    let text = api.out.output == Output::Text;
    let mut last = String::new();
    let say = |note: &str| eprintln!("{note}");
    loop {
        let now: T = get_riding_restarts(&client, path, retry_for, &say).await?;
        let next = line(&now);
        if text && next != last {
            crate::output::say_line(&next);
            last = next;
        }
        if ended(&now) {
            api.print(&now);
            return Ok(exit(&now));
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// How `--wait` and `--watch` follow a rollout.
#[derive(clap::Args)]
pub struct FollowArgs {
    /// While following, ride out a daemon restart: when the daemon cannot be reached, retry
    /// with backoff for up to this long (e.g. `60s`, `5m`) before giving up (exit 3). The
    /// rollout goes on without the client, so a CI job should not fail on a daemon restart.
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub retry_for: Duration,
}

/// `GET path`, asked again with backoff while the daemon cannot be reached (a restart, a
/// crash), for up to `retry_for`; `say` tells the person once that it is waiting.
pub async fn get_riding_restarts<T: serde::de::DeserializeOwned>(
    client: &Client,
    path: &str,
    retry_for: Duration,
    say: &dyn Fn(&str),
) -> Result<T> {
    let mut unreachable_since: Option<std::time::Instant> = None;
    let mut backoff = Duration::from_millis(250);
    loop {
        match client.get(path).await {
            Ok(v) => return Ok(v),
            Err(e) if daemon_unavailable(&e) => {
                let since = *unreachable_since.get_or_insert_with(|| {
                    say(&format!(
                        "the daemon cannot be reached ({e:#}); retrying for up to {}",
                        humantime::format_duration(retry_for)
                    ));
                    std::time::Instant::now()
                });
                if since.elapsed() >= retry_for {
                    return Err(e);
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e),
        }
    }
}

/// Follows a rollout until it ends, printing each change (a live line on a terminal). When
/// the daemon goes away (restart, crash), retries with backoff for up to `retry_for`.
pub async fn follow(client: &Client, id: &str, output: Output, retry_for: Duration) -> Result<i32> {
    let live = output == Output::Text && std::io::stdout().is_terminal();
    let bar = live.then(|| {
        let b = indicatif::ProgressBar::new_spinner();
        b.enable_steady_tick(Duration::from_millis(120));
        b
    });
    let mut last = String::new();
    loop {
        let say = |note: &str| match &bar {
            Some(b) => b.println(note),
            None => eprintln!("{note}"),
        };
        let d: RolloutDetail =
            get_riding_restarts(client, &format!("/api/v1/rollouts/{id}"), retry_for, &say).await?;
        let line = format!(
            "{} · {} · canary {}%",
            d.rollout.to_release_id, d.rollout.phase, d.rollout.canary_weight
        );
        if line != last && output == Output::Text {
            match &bar {
                Some(b) => b.println(&line),
                None => crate::output::say_line(&line),
            }
            last = line;
        }
        if let Some(b) = &bar {
            b.set_message(format!(
                "{} {}",
                d.rollout.phase,
                d.rollout.reason.clone().unwrap_or_default()
            ));
        }
        if !d.rollout.phase.is_active() || d.rollout.phase == Phase::Paused {
            if let Some(b) = bar {
                b.finish_and_clear();
            }
            output.print(&d);
            return Ok(if d.rollout.phase == Phase::Promoted {
                0
            } else {
                1
            });
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

impl Render for RolloutDetail {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let d = self;
        let r = &d.rollout;
        writeln!(w, "rollout {}  {}/{}", r.id, r.service, r.env)?;
        writeln!(
            w,
            "  {} → {}",
            r.from_release_id.as_deref().unwrap_or("(nothing)"),
            r.to_release_id
        )?;
        writeln!(
            w,
            "  phase: {}   canary weight: {}%",
            r.phase, r.canary_weight
        )?;
        if let Some(reason) = &r.reason {
            writeln!(w, "  reason: {reason}")?;
        }
        if let Some(g) = &d.safeguards {
            if let Some(v) = g.config_snapshot {
                writeln!(
                    w,
                    "  config snapshot: {v} (`backstop config diff {} --env {} {v}`)",
                    r.service, r.env
                )?;
            }
            if let Some(b) = &g.baseline {
                let pct = |x: Option<f64>| x.map_or("-".into(), |v| format!("{:.2}%", v * 100.0));
                let ms = |x: Option<f64>| x.map_or("-".into(), |v| format!("{v}ms"));
                writeln!(
                    w,
                    "  baseline ({} over {:.1}s of {:.1}s): {} requests, {} errors ({}), p50 {}, p99 {}",
                    b.version.as_deref().unwrap_or("no stable version"),
                    b.window_ms as f64 / 1000.0,
                    b.requested_window_ms as f64 / 1000.0,
                    b.requests,
                    b.errors,
                    pct(b.error_ratio),
                    ms(b.latency_p50_ms),
                    ms(b.latency_p99_ms)
                )?;
            }
        }
        writeln!(w, "  timeline:")?;
        for e in &d.events {
            writeln!(
                w,
                "    {}  +{:>7.3}s  {}",
                format_ms(e.at_ms),
                (e.at_ms - r.created_at_ms) as f64 / 1000.0,
                e.kind
            )?;
        }
        let t = &d.timeline;
        if let Some(ms) = t.time_to_detect_ms {
            writeln!(
                w,
                "  time to detect (first canary request → verdict): {:.3}s",
                ms as f64 / 1000.0
            )?;
        }
        if let Some(ms) = t.time_to_restore_ms {
            writeln!(
                w,
                "  time to restore (first canary request → traffic restored): {:.3}s",
                ms as f64 / 1000.0
            )?;
        }
        Ok(())
    }
}

/// True when the daemon could not answer (not reachable, or a 5xx while it starts or stops):
/// worth retrying while following; a 4xx is an answer and is not retried.
fn daemon_unavailable(e: &anyhow::Error) -> bool {
    e.downcast_ref::<crate::client::CallError>()
        .is_some_and(|c| c.exit_code == 3)
}

impl Render for backstop_core::label::VerdictLabel {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "rollout {} of {}/{} labelled {} by {}{}",
            self.rollout_id,
            self.service,
            self.env,
            self.label,
            self.by,
            if self.note.is_empty() {
                String::new()
            } else {
                format!(": {}", self.note)
            }
        )
    }
}

impl Render for Explanation {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "rollout {} of {} in {}/{}: {}",
            self.rollout_id, self.release, self.service, self.env, self.phase
        )?;
        writeln!(w, "decision: {}", self.decision)?;
        if let Some(by) = &self.decided_by {
            let after = self
                .decided_after_s
                .map(|s| format!(", {s:.1} s after the canary's first request"))
                .unwrap_or_default();
            let at = self.decided_at_ms.map(format_ms).unwrap_or_default();
            writeln!(w, "decided by: {by} at {at}{after}")?;
        }
        writeln!(
            w,
            "judge: {} (alpha {}, an interval every {} ms, {} intervals judged)",
            self.judge, self.alpha, self.interval_ms, self.intervals
        )?;
        for s in &self.signals {
            let at = s
                .decided_at_s
                .map(|t| format!(" at {t} s"))
                .unwrap_or_default();
            writeln!(w, "\n  {}: {}{at}", s.signal, s.verdict.to_uppercase())?;
            if !s.comparison.is_empty() {
                writeln!(w, "    {}", s.comparison)?;
            }
            if !s.evidence.is_empty() {
                writeln!(w, "    {}", s.evidence)?;
            }
        }
        if !self.shadow_verdicts.is_empty() {
            writeln!(w, "\nshadow judge (analysis.mode: shadow, never acts):")?;
            for v in &self.shadow_verdicts {
                writeln!(w, "  - {v}")?;
            }
        }
        if !self.would_change.is_empty() {
            writeln!(w, "\nwhat would have changed it:")?;
            for c in &self.would_change {
                writeln!(w, "  - {c}")?;
            }
        }
        if !self.failure_scope.is_empty() {
            writeln!(
                w,
                "\nfailure scope: {} releases changed {} within 30 minutes, likeliest culprit first (when and how far each canary diverged from its own baseline):",
                self.failure_scope.len(),
                self.env
            )?;
            for s in &self.failure_scope {
                let when = s.diverged_at_s.map_or_else(
                    || "never diverged".to_string(),
                    |t| format!("diverged at {t:.0} s"),
                );
                writeln!(
                    w,
                    "  {}. {}: {when}, canary errors ×{:.1} its baseline's ({}/{} vs {}/{})",
                    s.rank,
                    s.name,
                    s.error_ratio_lift,
                    s.canary.errors,
                    s.canary.requests,
                    s.baseline.errors,
                    s.baseline.requests
                )?;
            }
        }
        writeln!(w, "\nwhat happened:")?;
        for step in &self.steps {
            writeln!(w, "  {step}")?;
        }
        Ok(())
    }
}
