//! `backstop calibrate SERVICE`: labelled rollouts replayed through the judge at several
//! settings; a recommendation, never a change.

use std::io::{self, Write};

use anyhow::Result;
use backstop_judge::calibrate::Calibration;

use crate::client::{ApiArgs, Query, encode};
use crate::output::Render;

const CALIBRATE_HELP: &str = "\
Replays the stored intervals of the service's labelled rollouts through its judge at several
settings (for the sequential judge: alpha 0.001 to 0.1) and measures each: false alarms on the
good releases, detections and their median delay on the bad ones. Promoted rollouts nobody
labelled count as good. It recommends the setting that detects the most, then raises the
fewest false alarms, then detects soonest; it never changes backstop.yaml.

Label verdicts first:
  backstop rollout label ROLLOUT confirmed      # the rollback was right
  backstop rollout label ROLLOUT false-alarm    # the release was fine
  backstop rollout label ROLLOUT missed         # promoted, but it was bad

Examples:
  backstop calibrate checkout
  backstop calibrate checkout --env prod --output json";

#[derive(clap::Args)]
#[command(long_about = CALIBRATE_HELP)]
pub struct CalibrateArgs {
    /// The service, as named in the config.
    service: String,
    /// The environment, as named in the service's config.
    #[arg(long)]
    env: Option<String>,
    #[command(flatten)]
    api: ApiArgs,
}

pub async fn calibrate(args: CalibrateArgs) -> Result<i32> {
    let q = Query::new(&format!("/api/v1/calibrate/{}", encode(&args.service)))
        .param_if("env", args.env.as_deref());
    args.api.get_and_print::<Calibration>(q.as_str()).await?;
    Ok(0)
}

impl Render for Calibration {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(w, "{} labelled rollouts replayed", self.cases)?;
        writeln!(
            w,
            "  {:<14} {:>12} {:>12} {:>13}",
            "setting", "false alarms", "detected", "median delay"
        )?;
        for t in &self.trials {
            writeln!(
                w,
                "  {:<14} {:>12} {:>12} {:>13}{}",
                t.setting,
                format!("{}/{}", t.false_alarms, t.good),
                format!("{}/{}", t.detected, t.bad),
                t.median_delay_s
                    .map_or_else(|| "—".to_owned(), |d| format!("{d:.0} s")),
                if t.current { "  (current)" } else { "" }
            )?;
        }
        match &self.recommended {
            Some(r) => writeln!(w, "recommended: {r}: {}", self.because),
            None => writeln!(w, "no recommendation: {}", self.because),
        }
    }
}
