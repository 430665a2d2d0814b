//! The bench report as text tables and as JSON.

use serde_json::{Value, json};

use super::runner::{BenchReport, FamilyResult};
use super::summary::{Bounded, Summary, summarize};
use super::{FamilyKind, ORACLE_UNKNOWN_ONSET};
use crate::report::num;

impl BenchReport {
    /// Per-judge summary over all families.
    pub fn overall(&self) -> Vec<Summary> {
        let all: Vec<&FamilyResult> = self.families.iter().collect();
        let n = all.first().map_or(0, |f| f.judges.len());
        (0..n).map(|j| summarize(&all, j)).collect()
    }

    /// The tables as text.
    pub fn render_text(&self) -> String {
        let mut out = String::new();
        let fmt_opt =
            |v: Option<f64>, suffix: &str| v.map_or("-".to_string(), |x| format!("{x:.1}{suffix}"));
        let fmt_b =
            |v: Option<Bounded>, suffix: &str| v.map_or("-".to_string(), |x| x.text(suffix));
        let pct = |a: usize, b: usize| {
            if b == 0 {
                "-".to_string()
            } else {
                format!("{:.1}%", 100.0 * a as f64 / b as f64)
            }
        };
        for f in &self.families {
            let runs = f.judges.first().map_or(0, |j| j.runs);
            match f.kind {
                FamilyKind::AA => {
                    out.push_str(&format!("\n{} (A/A, {runs} runs)\n", f.family));
                    out.push_str(&format!("  {:<20} {:>12}\n", "judge", "false fails"));
                    for j in &f.judges {
                        out.push_str(&format!(
                            "  {:<20} {:>5} {:>6}\n",
                            j.judge,
                            j.false_fails,
                            pct(j.false_fails, j.runs)
                        ));
                    }
                }
                FamilyKind::Regression => {
                    out.push_str(&format!(
                        "\n{} (regression at {}s, {runs} runs, {}s left after it)\n",
                        f.family, f.onset_s, f.horizon_s
                    ));
                    out.push_str(&format!(
                        "  {:<20} {:>9} {:>7} {:>12} {:>10} {:>15}\n",
                        "judge", "detected", "early", "median delay", "vs oracle", "vs flagger-t"
                    ));
                    let fam = [f];
                    for (idx, j) in f.judges.iter().enumerate() {
                        let s = summarize(&fam, idx);
                        out.push_str(&format!(
                            "  {:<20} {:>9} {:>7} {:>12} {:>10} {:>15}\n",
                            j.judge,
                            pct(j.detections, j.runs),
                            j.false_fails,
                            fmt_b(s.family_median_s, "s"),
                            fmt_b(s.vs_oracle, "x"),
                            fmt_b(s.speedup_vs_flagger, "x faster"),
                        ));
                    }
                }
            }
        }
        let overall = self.overall();
        let fams = overall.first().map_or(0, |s| s.families_in_ratios);
        out.push_str("\noverall\n");
        out.push_str(&format!(
            "  {:<20} {:>16} {:>10} {:>7} {:>12} {:>10} {:>15} {:>17}\n",
            "judge",
            "A/A false fails",
            "detected",
            "early",
            "median delay",
            "vs oracle",
            "vs flagger-t",
            "vs onset-unknown"
        ));
        for s in &overall {
            out.push_str(&format!(
                "  {:<20} {:>5}/{:<5} {:>5} {:>10} {:>7} {:>12} {:>10} {:>15} {:>17}\n",
                s.judge,
                s.aa_fails,
                s.aa_runs,
                pct(s.aa_fails, s.aa_runs),
                pct(s.detections, s.reg_runs),
                s.early_fails,
                fmt_opt(s.median_delay_s, "s"),
                fmt_b(s.vs_oracle, "x"),
                fmt_b(s.speedup_vs_flagger, "x faster"),
                fmt_b(s.vs_oracle_unknown_onset, "x"),
            ));
        }
        out.push_str(&format!(
            "\nalpha {} · seed {} · {} s intervals for every judge and the oracle (threshold presets pool them into their own checks, flagger-tutorial: 1 min)\n\
             onset: regressions start {} (delayed-onset and during-spike families: at their own onset)\n\
             median delay (per family): seconds from the onset to the judge's fail, median over the runs; a run the judge never failed counts as\n\
             \x20 censored at the time left after the onset (≥: the median is a lower bound); fails before the onset are false alarms ('early'), not delays\n\
             vs oracle: judge's median delay / oracle's · vs flagger-t: flagger-tutorial's median delay / judge's (≥: a lower bound, flagger missed)\n\
             overall: those ratios' geometric mean over the {fams} regression families (each family weighs the same); median delay: over detected runs, pooled\n\
             oracle: Wald SPRT told the true rates, distributions and onset · {ORACLE_UNKNOWN_ONSET}: told the same but not the onset (start-time mixture, same prior as sequential)\n\
             vs onset-unknown: judge's median delay / {ORACLE_UNKNOWN_ONSET}'s (what is left once the price of not knowing the onset is paid)\n",
            self.config.alpha,
            self.config.seed,
            self.config.interval_s,
            if self.config.onset_s > 0.0 {
                format!("{} s after the canary's start", self.config.onset_s)
            } else {
                "with the canary's first interval".to_string()
            }
        ));
        out
    }

    /// The report as JSON.
    pub fn to_json(&self) -> Value {
        let bounded = |b: Option<Bounded>| b.map_or(Value::Null, |b| b.json());
        let summary_json = |s: &Summary| {
            json!({
                "judge": s.judge,
                "aa_runs": s.aa_runs,
                "aa_false_fails": s.aa_fails,
                "aa_false_fail_rate": if s.aa_runs > 0 { num(s.aa_fails as f64 / s.aa_runs as f64) } else { Value::Null },
                "regression_runs": s.reg_runs,
                "early_fails": s.early_fails,
                "detection_rate": if s.reg_runs > 0 { num(s.detections as f64 / s.reg_runs as f64) } else { Value::Null },
                "median_delay_detected_s": s.median_delay_s.map_or(Value::Null, num),
                "median_delay_censored_s": bounded(s.family_median_s),
                "median_delay_vs_oracle": bounded(s.vs_oracle),
                "speedup_vs_flagger_tutorial": bounded(s.speedup_vs_flagger),
                "median_delay_vs_oracle_onset_unknown": bounded(s.vs_oracle_unknown_onset),
                "families_in_ratios": s.families_in_ratios,
            })
        };
        let families: Vec<Value> = self
            .families
            .iter()
            .map(|f| {
                let fam = [f];
                json!({
                    "family": f.family,
                    "kind": match f.kind { FamilyKind::AA => "aa", FamilyKind::Regression => "regression" },
                    "onset_s": num(f.onset_s),
                    "horizon_after_onset_s": num(f.horizon_s),
                    "judges": (0..f.judges.len()).map(|j| summary_json(&summarize(&fam, j))).collect::<Vec<_>>(),
                })
            })
            .collect();
        json!({
            "bench": "canary",
            "alpha": num(self.config.alpha),
            "seed": self.config.seed,
            "quick": self.config.quick,
            "interval_s": num(self.config.interval_s),
            "onset_s": num(self.config.onset_s),
            "definitions": {
                "median_delay_censored_s": "per family: median over runs of (fail time - onset); a run never failed counts as censored at (duration - onset), so the median is then a lower bound; fails before the onset are excluded (early_fails)",
                "median_delay_vs_oracle": "per family: judge's censored median / oracle's; overall: geometric mean over regression families",
                "speedup_vs_flagger_tutorial": "per family: flagger-tutorial's censored median / judge's; overall: geometric mean over regression families",
                "median_delay_detected_s": "median delay over the detected runs of the families, pooled",
                "median_delay_vs_oracle_onset_unknown": "like median_delay_vs_oracle against the oracle that is told the rates and distributions but not the onset",
            },
            "families": families,
            "overall": self.overall().iter().map(summary_json).collect::<Vec<_>>(),
        })
    }
}
