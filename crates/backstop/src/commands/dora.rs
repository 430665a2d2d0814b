//! `backstop dora`: DORA's five delivery figures per service and environment, graded; and
//! `backstop scorecard`: each service's readiness level and the checks behind it.

use std::io::{self, Write};

use anyhow::Result;
use backstop_core::dora::{Figure, Figures};
use backstop_core::postmortem::human;

use crate::client::{ApiArgs, Query};
use crate::output::Render;

const DORA_HELP: &str = "\
DORA's delivery figures per service and environment, from what Backstop recorded of each
rollout in the window, each graded against the published clusters (elite, high, medium, low):

  deployment frequency         rollouts that reached users (promoted or rolled back) per day
  lead time                    release registered → promoted (Backstop does not see commits)
  change fail rate             rolled back ÷ deployed
  failed deployment recovery   first exposure → traffic back on the last known good (median)
  time to resolve              first exposure → post-recovery suite passed (median; not graded)
  rework rate                  deployed while an incident was open there ÷ deployed (not graded)

Examples:
  backstop dora                                   # every service, the last 30 days
  backstop dora --service checkout --env prod --window 12w
  backstop dora --output json";

#[derive(clap::Args)]
#[command(long_about = DORA_HELP)]
pub struct DoraArgs {
    /// The service, as named in the config.
    #[arg(long)]
    service: Option<String>,
    /// The environment, as named in the service's config.
    #[arg(long)]
    env: Option<String>,
    /// How far back: 30d (default), 12w, 24h…
    #[arg(long, default_value = "30d")]
    window: String,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn dora(args: DoraArgs) -> Result<i32> {
    let q = Query::new("/api/v1/dora")
        .param_if("service", args.service.as_deref())
        .param_if("env", args.env.as_deref())
        .param("window", &args.window);
    args.api.get_and_print::<Vec<Figures>>(q.as_str()).await?;
    Ok(0)
}

fn graded(f: &Figure, value: String) -> String {
    match (&f.value, f.level) {
        (Some(_), Some(level)) => format!("{value} ({})", serde_plain(level)),
        (Some(_), None) => value,
        (None, _) => "n/a".to_owned(),
    }
}

fn serde_plain(level: backstop_core::dora::Level) -> String {
    serde_json::to_value(level)
        .ok()
        .and_then(|v| v.as_str().map(str::to_owned))
        .unwrap_or_default()
}

impl Render for Vec<Figures> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(w, "no rollout reached users in the window");
        }
        for f in self {
            writeln!(
                w,
                "{}/{}: {} deployments in {:.0} days, {} rolled back",
                f.service, f.env, f.deployments, f.window_days, f.failed
            )?;
            let per_day = f.deployment_frequency.value.unwrap_or(0.0);
            let ms = |v: Option<f64>| v.map_or_else(|| "n/a".to_owned(), |v| human(v as i64));
            let pct = |v: Option<f64>| {
                v.map_or_else(|| "n/a".to_owned(), |v| format!("{:.1} %", v * 100.0))
            };
            writeln!(
                w,
                "  deployment frequency        {}",
                graded(&f.deployment_frequency, format!("{per_day:.2}/day"))
            )?;
            writeln!(
                w,
                "  lead time (release→prod)    {}",
                graded(&f.lead_time_ms, ms(f.lead_time_ms.value))
            )?;
            writeln!(
                w,
                "  change fail rate            {}",
                graded(&f.change_fail_rate, pct(f.change_fail_rate.value))
            )?;
            writeln!(
                w,
                "  failed deployment recovery  {}",
                graded(
                    &f.failed_deployment_recovery_ms,
                    ms(f.failed_deployment_recovery_ms.value)
                )
            )?;
            writeln!(
                w,
                "  time to resolve             {}",
                ms(f.time_to_resolve_ms)
            )?;
            writeln!(w, "  rework rate                 {}", pct(f.rework_rate))?;
        }
        Ok(())
    }
}

/// `backstop scorecard [SERVICE]`.
#[derive(clap::Args)]
pub struct ScorecardArgs {
    /// One service (default: every service).
    service: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn scorecard(args: ScorecardArgs) -> Result<i32> {
    let q = Query::new("/api/v1/scorecards").param_if("service", args.service.as_deref());
    args.api
        .get_and_print::<Vec<backstop_core::scorecard::Scorecard>>(q.as_str())
        .await?;
    Ok(0)
}

impl Render for Vec<backstop_core::scorecard::Scorecard> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        for card in self {
            let level = card
                .level
                .map_or_else(|| "below bronze".to_owned(), |l| l.as_str().to_owned());
            writeln!(w, "{}: {level}", card.service)?;
            for c in &card.checks {
                writeln!(
                    w,
                    "  {} {:<7} {:<12} {}",
                    if c.passed { "ok  " } else { "MISS" },
                    c.level.as_str(),
                    c.name,
                    c.detail
                )?;
            }
        }
        Ok(())
    }
}

/// `backstop gaps [SERVICE]`.
#[derive(clap::Args)]
#[command(
    long_about = "Coverage gaps: recoveries a person had to start, or detected later than the \
objectives leave time for (MTTR minus the rollback SLA), each naming the signal that diverged \
first in the recorded traffic. Automation gaps: manual runbook steps people kept doing and \
deviations from runbooks, counted over runs, each an action item. Over the last 90 days."
)]
pub struct GapsArgs {
    /// One service (default: every service).
    service: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn gaps(args: GapsArgs) -> Result<i32> {
    let q = Query::new("/api/v1/gaps").param_if("service", args.service.as_deref());
    args.api
        .get_and_print::<Vec<backstop_api::dora::Gaps>>(q.as_str())
        .await?;
    Ok(0)
}

impl Render for Vec<backstop_api::dora::Gaps> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        for g in self {
            writeln!(
                w,
                "{}: {} coverage gap(s), {} automation gap(s)",
                g.service,
                g.coverage.len(),
                g.automation.len()
            )?;
            for c in &g.coverage {
                writeln!(w, "  coverage   {}: {}", c.recovery_id, c.why)?;
                writeln!(w, "             → {}", c.action)?;
            }
            for a in &g.automation {
                writeln!(
                    w,
                    "  automation {} ×{} ({} {}): {}",
                    a.runbook, a.count, a.kind, a.step, a.action
                )?;
            }
        }
        Ok(())
    }
}
