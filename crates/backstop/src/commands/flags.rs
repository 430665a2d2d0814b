//! `backstop flag list|show|set|reenable|abort|eval`: feature flags with sticky percentages and
//! staged re-enables.

use std::io::{self, Write};
use std::time::Duration;

use anyhow::Result;
use backstop_api::flags::{AbortReenable, FlagView, OfrepSuccess, SetFlag, StartReenable};
use backstop_core::format_ms;
use backstop_core::postmortem::human;
use serde_json::json;

use crate::client::{ApiArgs, encode};
use crate::output::Render;

pub const FLAG_HELP: &str = "\
Feature flags: on for a sticky percentage of units (users, sessions). Declare them under their
service in backstop.yaml; each environment keeps its own percentage, 0 until someone sets it:

  flags:
    - key: new-checkout
      stages: [1, 5, 25, 100]   # a staged re-enable's percentages (the default)
      hold: 2m                  # each stage held this long...
      min_requests: 200         # ...and until the on cohort served this many requests

Applications ask `POST /ofrep/v1/evaluate/flags/KEY` with {\"context\": {\"targetingKey\": USER}}
(OpenFeature's remote evaluation protocol: any OpenFeature SDK with an OFREP provider), and
tell which side a request was on with the response header `x-backstop-flags: KEY=on|off`.
A unit's bucket is murmur3(\"GROUP:UNIT\") % 100 + 1, as Unleash computes it: raising the
percentage only adds units.

A staged re-enable (after an incident switched a feature off) goes through the stages, judging
the on cohort against the off cohort with the service's canary judge, and puts the flag back
to 0 % the moment the on cohort does worse. It holds while the environment is frozen, its
breaker is open, a recovery is not resolved or a major incident is open.

Examples:
  backstop flag list
  backstop flag set new-checkout --env production --percent 0 --reason \"INC-12: checkout errors\"
  backstop flag reenable new-checkout --env production --wait
  backstop flag eval new-checkout --env production --unit user-42";

#[derive(clap::Subcommand)]
pub enum FlagCmd {
    /// Every declared flag in every environment: percentage and re-enable.
    List {
        /// Only this environment.
        #[arg(long)]
        env: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One flag in one environment: its re-enable's stages and its history.
    Show {
        /// The flag's key (`backstop flag list` shows them).
        key: String,
        /// The environment, as named in the service's config.
        #[arg(long)]
        env: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Set a flag's percentage by hand (ends a re-enable under way).
    Set {
        /// The flag's key (`backstop flag list` shows them).
        key: String,
        /// The environment, as named in the service's config.
        #[arg(long)]
        env: String,
        /// 0 to 100.
        #[arg(long, value_parser = clap::value_parser!(u8).range(0..=100))]
        percent: u8,
        /// Why (audited).
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Bring a flag back in stages, each judged like a canary; back to 0 % on failure.
    Reenable {
        /// The flag's key (`backstop flag list` shows them).
        key: String,
        /// The environment, as named in the service's config.
        #[arg(long)]
        env: String,
        /// Percentages, rising to 100 (default: the flag's `stages`), e.g. `1,5,25,100`.
        #[arg(long, value_delimiter = ',')]
        stages: Option<Vec<u8>>,
        /// How long each stage is held (default: the flag's `hold`), e.g. `2m`.
        #[arg(long, value_parser = humantime::parse_duration)]
        hold: Option<Duration>,
        /// Requests of the on cohort a stage needs (default: the flag's `min_requests`).
        #[arg(long)]
        min_requests: Option<u64>,
        /// Follow it to the end: exit 0 when every stage held, 1 when it was rolled back,
        /// halted or aborted.
        #[arg(long)]
        wait: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop a re-enable where it stands.
    Abort {
        /// The flag's key (`backstop flag list` shows them).
        key: String,
        /// The environment, as named in the service's config.
        #[arg(long)]
        env: String,
        /// Why, in words: kept in the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Evaluate a flag for a unit as an application would (OFREP).
    Eval {
        /// The flag's key (`backstop flag list` shows them).
        key: String,
        /// The unit (user or session id): OpenFeature's targeting key.
        #[arg(long)]
        unit: Option<String>,
        /// Default: the token's environment, else the service's only one.
        #[arg(long)]
        env: Option<String>,
        #[command(flatten)]
        api: ApiArgs,
    },
}

pub async fn flag(cmd: FlagCmd) -> Result<i32> {
    match cmd {
        FlagCmd::List { env, api } => {
            let path = match env {
                Some(e) => format!("/api/v1/flags?env={}", encode(&e)),
                None => "/api/v1/flags".into(),
            };
            api.get_and_print::<Vec<FlagView>>(&path).await?;
        }
        FlagCmd::Show { key, env, api } => {
            let f = one(&api, &key, &env).await?;
            api.print(&Shown(f));
        }
        FlagCmd::Set {
            key,
            env,
            percent,
            reason,
            api,
        } => {
            let body = SetFlag {
                env,
                percentage: percent,
                reason,
            };
            let path = format!("/api/v1/flags/{}/set", encode(&key));
            api.post_and_print::<FlagView>(&path, &body).await?;
        }
        FlagCmd::Reenable {
            key,
            env,
            stages,
            hold,
            min_requests,
            wait,
            api,
        } => {
            let body = StartReenable {
                env: env.clone(),
                stages,
                hold_ms: hold.map(backstop_core::duration::millis),
                min_requests,
            };
            let path = format!("/api/v1/flags/{}/reenable", encode(&key));
            let started: FlagView = api.client()?.post(&path, &body).await?;
            if !wait {
                api.print(&Shown(started));
                return Ok(0);
            }
            return follow(&api, &key, &env, started).await;
        }
        FlagCmd::Abort {
            key,
            env,
            reason,
            api,
        } => {
            let path = format!("/api/v1/flags/{}/abort", encode(&key));
            api.post_and_print::<FlagView>(&path, &AbortReenable { env, reason })
                .await?;
        }
        FlagCmd::Eval {
            key,
            unit,
            env,
            api,
        } => {
            let mut context = serde_json::Map::new();
            if let Some(u) = unit {
                context.insert("targetingKey".into(), json!(u));
            }
            if let Some(e) = env {
                context.insert("env".into(), json!(e));
            }
            let path = format!("/ofrep/v1/evaluate/flags/{}", encode(&key));
            api.post_and_print::<OfrepSuccess>(&path, &json!({"context": context}))
                .await?;
        }
    }
    Ok(0)
}

async fn one(api: &ApiArgs, key: &str, env: &str) -> Result<FlagView> {
    let all: Vec<FlagView> = api
        .client()?
        .get(&format!("/api/v1/flags?env={}", encode(env)))
        .await?;
    all.into_iter().find(|f| f.key == key).ok_or_else(|| {
        anyhow::anyhow!("no flag {key} in environment {env} (see `backstop flag list`)")
    })
}

/// Prints each change of the re-enable until it is over; its exit code.
async fn follow(api: &ApiArgs, key: &str, env: &str, started: FlagView) -> Result<i32> {
    let mut last = (started.percentage, String::new());
    let mut err = io::stderr();
    let _ = writeln!(err, "{}", line(&started));
    loop {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let f = one(api, key, env).await?;
        let status = f
            .reenable
            .as_ref()
            .map_or("none", |r| r.status.as_str())
            .to_owned();
        let blocked = f
            .reenable
            .as_ref()
            .and_then(|r| r.blocked.clone())
            .unwrap_or_default();
        if (f.percentage, blocked.clone()) != last {
            let _ = writeln!(err, "{}", line(&f));
            last = (f.percentage, blocked);
        }
        if status != "running" {
            let code = i32::from(status != "promoted");
            api.print(&Shown(f));
            return Ok(code);
        }
    }
}

/// One line: where a flag stands.
fn line(f: &FlagView) -> String {
    let plan = match &f.reenable {
        Some(r) if r.status == "running" => {
            let mut s = format!(
                "re-enabling {} (stage {}%, {}/{} requests on",
                stage_bar(&r.stages, r.current, &r.status),
                r.current,
                r.stage_requests,
                r.min_requests
            );
            s.push(')');
            if let Some(b) = &r.blocked {
                s.push_str(&format!("; held: {b}"));
            }
            s
        }
        Some(r) => format!(
            "re-enable {} {}",
            r.status,
            stage_bar(&r.stages, r.current, &r.status)
        ),
        None => String::new(),
    };
    format!("{:<24} {:<12} {:>3}%  {plan}", f.key, f.env, f.percentage)
}

/// `[1 ✓]─[5 ●]─[25]─[100]`: the stages, those held ticked, the current one marked.
fn stage_bar(stages: &[u8], current: u8, status: &str) -> String {
    stages
        .iter()
        .map(|s| {
            let mark = match (*s).cmp(&current) {
                std::cmp::Ordering::Less => " ✓",
                std::cmp::Ordering::Equal => match status {
                    "running" => " ●",
                    "promoted" => " ✓",
                    "rolled_back" => " ✗",
                    _ => " ‖",
                },
                std::cmp::Ordering::Greater => "",
            };
            format!("[{s}%{mark}]")
        })
        .collect::<Vec<_>>()
        .join("─")
}

impl Render for Vec<FlagView> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(
                w,
                "no flags are declared (add `flags:` under a service in backstop.yaml)"
            );
        }
        for f in self {
            writeln!(w, "{}", line(f))?;
        }
        Ok(())
    }
}

impl Render for FlagView {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "{}", line(self))
    }
}

/// A flag shown whole: the re-enable's stages and the history.
struct Shown(FlagView);

impl serde::Serialize for Shown {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(s)
    }
}

impl Render for Shown {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let f = &self.0;
        writeln!(
            w,
            "flag {} of {} in {}: {}%",
            f.key, f.service, f.env, f.percentage
        )?;
        if let Some(d) = &f.description {
            writeln!(w, "  {d}")?;
        }
        if let Some(r) = &f.reenable {
            writeln!(
                w,
                "re-enable {} by {} at {}: {}",
                r.status,
                r.started_by,
                format_ms(r.started_at_ms),
                stage_bar(&r.stages, r.current, &r.status)
            )?;
            writeln!(
                w,
                "  each stage held {} and until {} requests were on; {} intervals judged",
                human(r.hold_ms),
                r.min_requests,
                r.intervals
            )?;
            for s in &r.stages_done {
                writeln!(
                    w,
                    "  {:>3}%  {:<12} on {} errors / {} requests, off {} / {}  ({})",
                    s.percentage,
                    s.outcome,
                    s.on_errors,
                    s.on_requests,
                    s.off_errors,
                    s.off_requests,
                    human(s.ended_at_ms - s.started_at_ms)
                )?;
            }
            if let Some(b) = &r.blocked {
                writeln!(w, "  held: {b}")?;
            }
            if let Some(reason) = &r.reason {
                writeln!(w, "  {reason}")?;
            }
        }
        if !f.history.is_empty() {
            writeln!(w, "history:")?;
            for c in &f.history {
                writeln!(
                    w,
                    "  {}  {:>3}% → {:>3}%  {}: {}",
                    format_ms(c.at_ms),
                    c.from,
                    c.to,
                    c.by,
                    c.reason
                )?;
            }
        }
        Ok(())
    }
}

impl Render for OfrepSuccess {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "{} = {} (variant {}, reason {}{})",
            self.key,
            self.value,
            self.variant,
            self.reason,
            self.metadata
                .get("bucket")
                .and_then(serde_json::Value::as_u64)
                .map(|b| format!(
                    ", bucket {b} of 100, on up to {}",
                    self.metadata["percentage"]
                ))
                .unwrap_or_default()
        )
    }
}
