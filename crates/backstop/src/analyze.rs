//! `backstop analyze` (replay a scenario file through a judge) and `backstop bench canary` (the
//! seeded canary benchmark): the command-line front ends of `backstop-judge`.

use std::io::{self, BufReader, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use backstop_judge::bench::{BenchConfig, BenchReport, families, run_bench, runs_for};
use backstop_judge::scenario::{read_scenario, replay};
use backstop_judge::threshold::{Counting, ThresholdPreset};
use backstop_judge::{JudgeKind, JudgeSettings, SignalKind, build};
use clap::{Args, ValueEnum};
use serde::Serialize;
use serde_json::Value;

use crate::output::{self, Output, Render};

/// Help of the two values of `--output` on these commands.
const TEXT_HELP: &str = "Human-readable text";
const JSON_HELP: &str = "One JSON object on stdout";

/// `--judge`: a [`JudgeKind`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum JudgeArg {
    Sequential,
    Kayenta,
    Threshold,
}

impl From<JudgeArg> for JudgeKind {
    fn from(a: JudgeArg) -> Self {
        match a {
            JudgeArg::Sequential => JudgeKind::Sequential,
            JudgeArg::Kayenta => JudgeKind::Kayenta,
            JudgeArg::Threshold => JudgeKind::Threshold,
        }
    }
}

/// `--signals`: a [`SignalKind`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SignalArg {
    /// Error ratio (errors / requests): higher is worse.
    Errors,
    /// Latency distribution from histogram buckets: slower is worse.
    Latency,
}

impl From<SignalArg> for SignalKind {
    fn from(a: SignalArg) -> Self {
        match a {
            SignalArg::Errors => SignalKind::Errors,
            SignalArg::Latency => SignalKind::Latency,
        }
    }
}

/// `--preset`: a [`ThresholdPreset`] on the command line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PresetArg {
    /// Flagger's Istio tutorial: interval 1m, threshold 5 (rollback after ~5 failed minutes).
    FlaggerTutorial,
    /// Flagger's code defaults: interval 60s, threshold 1.
    FlaggerDefault,
    /// Flagger README / how-it-works: interval 1m, threshold 10.
    FlaggerReadme,
    /// Flagger NGINX/Traefik/Skipper/APISIX tutorials: interval 10s, threshold 10.
    FlaggerFast,
    /// Argo Rollouts analysis docs: interval 5m, failureLimit 3 (fails on the 4th failed measurement).
    ArgoDocs,
    /// Argo Rollouts example templates: interval 5s, failureLimit 1.
    ArgoExample,
}

impl From<PresetArg> for ThresholdPreset {
    fn from(a: PresetArg) -> Self {
        match a {
            PresetArg::FlaggerTutorial => ThresholdPreset::FlaggerTutorial,
            PresetArg::FlaggerDefault => ThresholdPreset::FlaggerDefault,
            PresetArg::FlaggerReadme => ThresholdPreset::FlaggerReadme,
            PresetArg::FlaggerFast => ThresholdPreset::FlaggerFast,
            PresetArg::ArgoDocs => ThresholdPreset::ArgoDocs,
            PresetArg::ArgoExample => ThresholdPreset::ArgoExample,
        }
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?}: {e} (expected e.g. 5s, 2m, 1h)"))
}

/// `backstop analyze`: replay a scenario file through a judge.
#[derive(Debug, Clone, Args)]
pub struct AnalyzeArgs {
    /// Which judge decides.
    #[arg(long, value_enum, default_value = "sequential")]
    pub judge: JudgeArg,
    /// False-alarm rate promised over the whole analysis (sequential judge).
    #[arg(long, default_value_t = 0.01)]
    pub alpha: f64,
    /// Signals to analyse, comma-separated.
    #[arg(long, value_enum, value_delimiter = ',', default_values = ["errors", "latency"])]
    pub signals: Vec<SignalArg>,
    /// Sequential: smallest canary/baseline odds ratio the mixture is tuned for.
    #[arg(long, help_heading = "Sequential judge")]
    pub min_odds_ratio: Option<f64>,
    /// Sequential: largest odds ratio in the mixture.
    #[arg(long, help_heading = "Sequential judge")]
    pub max_odds_ratio: Option<f64>,
    /// Kayenta: scoring checkpoint interval, e.g. 5m.
    #[arg(long, value_parser = parse_duration, help_heading = "Kayenta judge")]
    pub checkpoint: Option<Duration>,
    /// Kayenta: score only the last this-long of data (default: everything so far).
    #[arg(long, value_parser = parse_duration, help_heading = "Kayenta judge")]
    pub lookback: Option<Duration>,
    /// Kayenta: pass score threshold.
    #[arg(long, help_heading = "Kayenta judge")]
    pub pass_score: Option<f64>,
    /// Kayenta: marginal score threshold (a checkpoint at or below it fails).
    #[arg(long, help_heading = "Kayenta judge")]
    pub marginal_score: Option<f64>,
    /// Kayenta: make error_ratio a critical metric.
    #[arg(long, help_heading = "Kayenta judge")]
    pub critical_errors: bool,
    /// Threshold: documented defaults of Flagger / Argo Rollouts.
    #[arg(long, value_enum, help_heading = "Threshold judge")]
    pub preset: Option<PresetArg>,
    /// Threshold: length of one check, e.g. 1m (overrides the preset).
    #[arg(long, value_parser = parse_duration, help_heading = "Threshold judge")]
    pub check_interval: Option<Duration>,
    /// Threshold: failed checks that trigger a rollback (overrides the preset).
    #[arg(long, help_heading = "Threshold judge")]
    pub threshold: Option<u32>,
    /// Threshold: count only consecutive failed checks.
    #[arg(long, help_heading = "Threshold judge")]
    pub consecutive: bool,
    /// Threshold: a check fails above this canary error ratio.
    #[arg(long, help_heading = "Threshold judge")]
    pub max_error_ratio: Option<f64>,
    /// Threshold: a check fails above this canary p99 latency (ms).
    #[arg(long, help_heading = "Threshold judge")]
    pub max_latency_p99_ms: Option<f64>,
    /// Threshold: checks with fewer canary requests are skipped.
    #[arg(long, help_heading = "Threshold judge")]
    pub min_requests: Option<u64>,
    /// Output format.
    #[arg(long, short = 'o', value_parser = output::described(TEXT_HELP, JSON_HELP), default_value = "text")]
    pub output: Output,
    /// Scenario file (backstop-scenario/v1, JSON Lines); `-` reads stdin.
    pub file: PathBuf,
}

impl AnalyzeArgs {
    /// The judge settings these flags describe.
    pub fn settings(&self) -> Result<JudgeSettings, String> {
        if !(self.alpha > 0.0 && self.alpha < 1.0) {
            return Err(format!("--alpha must be in (0, 1), got {}", self.alpha));
        }
        if self.signals.is_empty() {
            return Err("--signals needs at least one of errors, latency".into());
        }
        let mut s = JudgeSettings {
            judge: self.judge.into(),
            alpha: self.alpha,
            signals: self.signals.iter().map(|&s| s.into()).collect(),
            ..JudgeSettings::default()
        };
        if let Some(v) = self.min_odds_ratio {
            if v.is_nan() || v <= 1.0 {
                return Err(format!("--min-odds-ratio must be > 1, got {v}"));
            }
            s.sequential.min_odds_ratio = v;
        }
        if let Some(v) = self.max_odds_ratio {
            if v.is_nan() || v <= s.sequential.min_odds_ratio {
                return Err(format!(
                    "--max-odds-ratio must be > --min-odds-ratio, got {v}"
                ));
            }
            s.sequential.max_odds_ratio = v;
        }
        if let Some(v) = self.checkpoint {
            if v.is_zero() {
                return Err("--checkpoint must be > 0".into());
            }
            s.kayenta.checkpoint = v;
        }
        s.kayenta.lookback = self.lookback.or(s.kayenta.lookback);
        if let Some(v) = self.pass_score {
            s.kayenta.pass_score = v;
        }
        if let Some(v) = self.marginal_score {
            s.kayenta.marginal_score = v;
        }
        s.kayenta.critical_errors |= self.critical_errors;
        if let Some(p) = self.preset {
            s.threshold.preset = p.into();
        }
        if let Some(v) = self.check_interval {
            if v.is_zero() {
                return Err("--check-interval must be > 0".into());
            }
            s.threshold.check_interval = Some(v);
        }
        s.threshold.threshold = self.threshold.or(s.threshold.threshold);
        if self.consecutive {
            s.threshold.counting = Counting::Consecutive;
        }
        if let Some(v) = self.max_error_ratio {
            s.threshold.max_error_ratio = v;
        }
        if let Some(v) = self.max_latency_p99_ms {
            s.threshold.max_latency_p99_ms = v;
        }
        if let Some(v) = self.min_requests {
            s.threshold.min_requests = v;
        }
        Ok(s)
    }
}

/// Numbers rounded to 4 significant digits for reading (the JSON output keeps full precision).
fn rounded(v: &Value) -> Value {
    match v {
        Value::Number(n) if n.is_f64() => {
            let x = n.as_f64().unwrap_or(0.0);
            if x == 0.0 || !x.is_finite() {
                return v.clone();
            }
            let digits = 4 - 1 - x.abs().log10().floor() as i32;
            let scale = 10f64.powi(digits.clamp(-300, 300));
            serde_json::json!((x * scale).round() / scale)
        }
        Value::Array(a) => Value::Array(a.iter().map(rounded).collect()),
        Value::Object(o) => Value::Object(o.iter().map(|(k, v)| (k.clone(), rounded(v))).collect()),
        other => other.clone(),
    }
}

fn text_report(report: &Value, name: &str, intervals: usize) -> String {
    let mut out = String::new();
    let at = |v: &Value| {
        if v.is_null() {
            String::new()
        } else {
            format!(" at t={v}s")
        }
    };
    out.push_str(&format!(
        "{}: {}{}  (judge {}, {} intervals of \"{}\")\n",
        report["verdict"].as_str().unwrap_or("?"),
        match report["verdict"].as_str() {
            Some("fail") => "roll back",
            Some("pass") => "no evidence of a regression",
            _ => "could not decide",
        },
        at(&report["decided_at_s"]),
        report["judge"].as_str().unwrap_or("?"),
        intervals,
        name,
    ));
    if let Some(reason) = report["reason"].as_str() {
        out.push_str(&format!("  reason: {reason}\n"));
    }
    for s in report["signals"].as_array().into_iter().flatten() {
        out.push_str(&format!(
            "  {:<12} {}{}\n",
            s["signal"].as_str().unwrap_or("?"),
            s["verdict"].as_str().unwrap_or("?"),
            at(&s["decided_at_s"])
        ));
        if let Some(ev) = s["evidence"].as_object() {
            for (k, v) in ev {
                if k == "tails" {
                    continue;
                }
                out.push_str(&format!("      {k}: {}\n", rounded(v)));
            }
        }
    }
    out
}

/// Runs `backstop analyze`; prints the result and returns the exit code
/// (0 = pass or inconclusive, 1 = fail, 2 = bad input or usage).
pub fn run_analyze(args: &AnalyzeArgs) -> i32 {
    let settings = match args.settings() {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {e}");
            return 2;
        }
    };
    let display = args.file.display().to_string();
    let parsed = if display == "-" {
        read_scenario(std::io::stdin().lock())
    } else {
        match std::fs::File::open(&args.file) {
            Ok(f) => read_scenario(BufReader::new(f)),
            Err(e) => {
                eprintln!("error: {display}: cannot open: {e}");
                return 2;
            }
        }
    };
    let scenario = match parsed {
        Ok(s) => s,
        Err(e) => {
            eprintln!("error: {display}: {e}");
            return 2;
        }
    };
    let mut judge = build(&settings);
    let outcome = replay(judge.as_mut(), &scenario.intervals);
    let failed = outcome.report["verdict"] == "fail";
    args.output.print(&Analysis {
        text: text_report(&outcome.report, &scenario.name, outcome.intervals_seen),
        report: outcome.report,
    });
    if failed { 1 } else { 0 }
}

/// A judge's report (the scenario spec's shape) and its text for reading.
#[derive(Serialize)]
#[serde(transparent)]
struct Analysis {
    report: Value,
    #[serde(skip)]
    text: String,
}

impl Render for Analysis {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        w.write_all(self.text.as_bytes())
    }

    /// One line, as the scenario spec shows it.
    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(&self.report)
    }
}

/// `backstop bench canary`: the canary benchmark.
#[derive(Debug, Clone, Args)]
pub struct BenchCanaryArgs {
    /// About a fifth of the default size (well under a minute in release mode).
    #[arg(long)]
    pub quick: bool,
    /// Base seed: the same seed gives the same table.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Runs per family (overrides the default and --quick sizes).
    #[arg(long)]
    pub runs: Option<usize>,
    /// Alpha of the sequential judge and of the oracle.
    #[arg(long, default_value_t = 0.01)]
    pub alpha: f64,
    /// Worker threads (0 = all cores).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Interval length every judge and the oracle see, e.g. `5s` (the default
    /// `analysis.interval`) or `1s`; the threshold presets still pool into their own checks.
    #[arg(long, default_value = "5s", value_parser = parse_bench_interval)]
    pub interval: std::time::Duration,
    /// When the regression starts in the families whose regression comes with the canary (all
    /// but the delayed-onset and during-spike families): `0s` (the default) = from the canary's
    /// first request, as a bad release is bad from its first request; e.g. `60s` to see what a
    /// minute of good behaviour first costs every judge.
    #[arg(long, default_value = "0s", value_parser = parse_bench_onset)]
    pub onset: std::time::Duration,
    /// Output format on stdout.
    #[arg(long, short = 'o', value_parser = output::described(TEXT_HELP, JSON_HELP), default_value = "text")]
    pub output: Output,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub json_out: Option<PathBuf>,
}

fn parse_bench_interval(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?}: {e} (expected e.g. 5s, 1s, 500ms)"))?;
    if d < std::time::Duration::from_millis(100) || d > std::time::Duration::from_secs(60) {
        return Err(format!("{text:?} is outside 100ms..=60s"));
    }
    Ok(d)
}

fn parse_bench_onset(text: &str) -> Result<std::time::Duration, String> {
    let d = humantime::parse_duration(text)
        .map_err(|e| format!("invalid duration {text:?}: {e} (expected e.g. 0s, 60s, 5m)"))?;
    if d > std::time::Duration::from_secs(900) {
        return Err(format!(
            "{text:?} is over 15m (the shortest family runs 30 minutes)"
        ));
    }
    Ok(d)
}

/// Runs `backstop bench canary`; prints the tables (or JSON) and returns the exit code
/// (0 = done, 2 = bad usage or the JSON file could not be written).
pub fn run_bench_canary(args: &BenchCanaryArgs) -> i32 {
    if !(args.alpha > 0.0 && args.alpha < 1.0) {
        eprintln!("error: --alpha must be in (0, 1), got {}", args.alpha);
        return 2;
    }
    if args.runs == Some(0) {
        eprintln!("error: --runs must be at least 1");
        return 2;
    }
    let cfg = BenchConfig {
        quick: args.quick,
        seed: args.seed,
        runs: args.runs,
        alpha: args.alpha,
        threads: args.threads,
        interval_s: args.interval.as_secs_f64(),
        onset_s: args.onset.as_secs_f64(),
    };
    let fams = families();
    let total: usize = fams.iter().map(|f| runs_for(f, &cfg)).sum();
    let bar = if std::io::stderr().is_terminal() {
        let bar = indicatif::ProgressBar::new(total as u64);
        if let Ok(style) = indicatif::ProgressStyle::with_template(
            "{bar:40} {pos}/{len} runs  {elapsed} (eta {eta})",
        ) {
            bar.set_style(style);
        }
        Some(bar)
    } else {
        None
    };
    let report = run_bench(&cfg, &fams, &|| {
        if let Some(b) = &bar {
            b.inc(1);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    if let Some(path) = &args.json_out {
        let text = match serde_json::to_string_pretty(&report.to_json()) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("error: cannot encode the report: {e}");
                return 2;
            }
        };
        if let Err(e) = std::fs::write(path, text + "\n") {
            eprintln!("error: {}: cannot write: {e}", path.display());
            return 2;
        }
    }
    if args
        .output
        .write(&Bench(report), &mut io::stdout().lock())
        .is_err()
    {
        return 2;
    }
    0
}

/// The benchmark's tables, or its JSON report on one line.
struct Bench(BenchReport);

impl Serialize for Bench {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        self.0.to_json().serialize(s)
    }
}

impl Render for Bench {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        write!(w, "{}", self.0.render_text())
    }

    fn json(&self) -> serde_json::Result<String> {
        serde_json::to_string(&self.0.to_json())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Analyze {
        #[command(flatten)]
        args: AnalyzeArgs,
    }

    #[derive(Parser)]
    struct Bench {
        #[command(flatten)]
        args: BenchCanaryArgs,
    }

    fn write_tmp(name: &str, text: &str) -> PathBuf {
        let path =
            std::env::temp_dir().join(format!("backstop-judge-{}-{name}", std::process::id()));
        std::fs::write(&path, text).expect("temp file");
        path
    }

    fn scenario(bad_canary: bool) -> String {
        let mut text =
            String::from("{\"format\":\"backstop-scenario/v1\",\"name\":\"t\",\"interval_s\":5}\n");
        for i in 1..=60 {
            let errors = if bad_canary { 30 } else { 1 };
            text.push_str(&format!(
                "{{\"t\":{},\"baseline\":{{\"requests\":900,\"errors\":9}},\"canary\":{{\"requests\":100,\"errors\":{errors}}}}}\n",
                5 * i
            ));
        }
        text
    }

    #[test]
    fn analyze_flags_build_settings_and_exit_codes_follow_the_spec() {
        let a = Analyze::try_parse_from([
            "x",
            "--judge",
            "threshold",
            "--preset",
            "argo-docs",
            "--threshold",
            "2",
            "--consecutive",
            "f.jsonl",
        ])
        .expect("flags parse");
        let s = a.args.settings().expect("valid");
        assert_eq!(s.judge, JudgeKind::Threshold);
        assert_eq!(s.threshold.preset, ThresholdPreset::ArgoDocs);
        assert_eq!(s.threshold.effective_threshold(), 2);
        assert_eq!(s.threshold.counting, Counting::Consecutive);
        let bad_alpha = Analyze::try_parse_from(["x", "--alpha", "1.5", "f"]).expect("parses");
        assert_eq!(run_analyze(&bad_alpha.args), 2);

        let fail = write_tmp("fail.jsonl", &scenario(true));
        let a = Analyze::try_parse_from(["x", "--output", "json", fail.to_str().unwrap_or("-")])
            .expect("parses");
        assert_eq!(run_analyze(&a.args), 1);
        let pass = write_tmp("pass.jsonl", &scenario(false));
        let a = Analyze::try_parse_from(["x", pass.to_str().unwrap_or("-")]).expect("parses");
        assert_eq!(run_analyze(&a.args), 0);
        let broken = write_tmp(
            "broken.jsonl",
            "{\"format\":\"backstop-scenario/v1\",\"interval_s\":5}\n{\"t\":5}\n",
        );
        let a = Analyze::try_parse_from(["x", broken.to_str().unwrap_or("-")]).expect("parses");
        assert_eq!(run_analyze(&a.args), 2);
        let a = Analyze::try_parse_from(["x", "/nonexistent/backstop.jsonl"]).expect("parses");
        assert_eq!(run_analyze(&a.args), 2);
        for p in [fail, pass, broken] {
            let _ = std::fs::remove_file(p);
        }
    }

    #[test]
    fn analyze_reader_reports_in_the_spec_shape() {
        let scenario = read_scenario(scenario(true).as_bytes()).expect("valid scenario");
        let mut judge = build(&JudgeSettings::default());
        let report = replay(judge.as_mut(), &scenario.intervals).report;
        assert_eq!(report["judge"], "sequential");
        assert_eq!(report["verdict"], "fail");
        assert_eq!(report["decided_at_s"], 5);
        assert_eq!(report["signals"][0]["signal"], "error_ratio");
        assert!(report["signals"][0]["evidence"].is_object());
        let text = text_report(&report, "t", 1);
        assert!(text.starts_with("fail: roll back at t=5s"));
    }

    #[test]
    fn bench_args_parse_and_write_json() {
        let out =
            std::env::temp_dir().join(format!("backstop-judge-bench-{}.json", std::process::id()));
        let b = Bench::try_parse_from([
            "x",
            "--runs",
            "1",
            "--seed",
            "3",
            "--output",
            "json",
            "--json-out",
            out.to_str().unwrap_or("x"),
        ])
        .expect("flags parse");
        assert_eq!(run_bench_canary(&b.args), 0);
        let written: Value =
            serde_json::from_str(&std::fs::read_to_string(&out).unwrap_or_default())
                .unwrap_or(Value::Null);
        assert_eq!(written["seed"], 3);
        // Five judges, the oracle not told the onset, and the oracle.
        assert!(written["overall"].as_array().is_some_and(|o| o.len() == 7));
        assert_eq!(written["interval_s"], 5.0);
        let _ = std::fs::remove_file(out);
        let b = Bench::try_parse_from(["x", "--interval", "1s"]).expect("parses");
        assert_eq!(b.args.interval, std::time::Duration::from_secs(1));
        for bad in ["0s", "2m", "soon"] {
            assert!(
                Bench::try_parse_from(["x", "--interval", bad]).is_err(),
                "--interval {bad}"
            );
        }
        let b = Bench::try_parse_from(["x", "--runs", "0"]).expect("parses");
        assert_eq!(run_bench_canary(&b.args), 2);
    }
}

/// `backstop bench scope`.
#[derive(clap::Args)]
pub struct BenchScopeArgs {
    /// Trials (each: five services changed together, one of them the culprit).
    #[arg(long, default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..=100_000))]
    pub trials: u64,
    /// Base seed: the same seed gives the same table.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output format on stdout.
    #[arg(long, short = 'o', value_parser = output::described(TEXT_HELP, JSON_HELP), default_value = "text")]
    pub output: Output,
}

/// Runs `trials` trials of a seeded benchmark with a progress bar on a terminal: what `run`
/// reported (told after each trial), and the seconds it took.
fn with_trial_bar<T>(trials: u64, run: impl FnOnce(usize, &mut dyn FnMut()) -> T) -> (T, f64) {
    let bar = std::io::stderr().is_terminal().then(|| {
        let bar = indicatif::ProgressBar::new(trials);
        if let Ok(style) =
            indicatif::ProgressStyle::with_template("{bar:40} {pos}/{len} trials  {elapsed}")
        {
            bar.set_style(style);
        }
        bar
    });
    let started = std::time::Instant::now();
    let report = run(usize::try_from(trials).unwrap_or(usize::MAX), &mut || {
        if let Some(b) = &bar {
            b.inc(1);
        }
    });
    if let Some(b) = &bar {
        b.finish_and_clear();
    }
    (report, started.elapsed().as_secs_f64())
}

/// Runs `backstop bench scope`: 0 done, 2 when the output could not be written.
pub fn run_bench_scope(args: &BenchScopeArgs) -> i32 {
    let (report, elapsed_s) = with_trial_bar(args.trials, |n, progress| {
        backstop_judge::bench::scope::run(n, args.seed, progress)
    });
    let out = ScopeBench { report, elapsed_s };
    if args.output.write(&out, &mut io::stdout().lock()).is_err() {
        return 2;
    }
    0
}

/// `backstop bench bake` options.
#[derive(clap::Args)]
pub struct BenchBakeArgs {
    /// Trials (half good releases, half turning worse during the bake).
    #[arg(long, default_value_t = 2000, value_parser = clap::value_parser!(u64).range(2..=1_000_000))]
    pub trials: u64,
    /// Base seed: the same seed gives the same table.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// Output format on stdout.
    #[arg(long, short = 'o', value_parser = output::described(TEXT_HELP, JSON_HELP), default_value = "text")]
    pub output: Output,
}

/// Runs `backstop bench bake`: 0 done, 2 when the output could not be written.
pub fn run_bench_bake(args: &BenchBakeArgs) -> i32 {
    let (report, elapsed_s) = with_trial_bar(args.trials, |n, progress| {
        backstop_judge::bench::bake::run(n, args.seed, progress)
    });
    let out = BakeBench { report, elapsed_s };
    if args.output.write(&out, &mut io::stdout().lock()).is_err() {
        return 2;
    }
    0
}

#[derive(Serialize)]
struct BakeBench {
    #[serde(flatten)]
    report: backstop_judge::bench::bake::BakeReport,
    elapsed_s: f64,
}

impl Render for BakeBench {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let r = &self.report;
        writeln!(
            w,
            "{} trials (seed {}): half as good as before, half turning worse during a 30 min bake; quiet = under {} req/s\n",
            r.trials,
            r.seed,
            backstop_judge::bench::bake::BUSY_RPS
        )?;
        let share = |n: usize, of: usize| format!("{:.1} %", 100.0 * n as f64 / of.max(1) as f64);
        let mut rows = Vec::new();
        for s in &r.scores {
            for m in [&s.backstop, &s.flagger] {
                rows.push(vec![
                    s.traffic.clone(),
                    m.method.clone(),
                    share(m.false_alarms, s.good),
                    share(m.caught, s.bad),
                    m.median_s_to_catch
                        .map_or_else(|| "-".into(), |x| format!("{:.1} min", x / 60.0)),
                ]);
            }
        }
        crate::output::table(
            w,
            &[
                "TRAFFIC",
                "METHOD",
                ">FALSE ALARMS",
                ">CAUGHT",
                ">MEDIAN TIME TO CATCH",
            ],
            &rows,
        )?;
        if let Some(all) = r.scores.first() {
            let (b, f) = (&all.backstop, &all.flagger);
            let speed = match (f.median_s_to_catch, b.median_s_to_catch) {
                (Some(f), Some(b)) if b > 0.0 => format!("{:.1}×", f / b),
                _ => "-".into(),
            };
            writeln!(
                w,
                "\nfalse alarms: preset {} vs Backstop {} of {} good releases; median time to catch: Backstop {speed} as fast ({:.1} s of compute)",
                f.false_alarms, b.false_alarms, all.good, self.elapsed_s
            )?;
        }
        Ok(())
    }
}

#[derive(Serialize)]
struct ScopeBench {
    #[serde(flatten)]
    report: backstop_judge::bench::scope::ScopeReport,
    elapsed_s: f64,
}

impl Render for ScopeBench {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        let r = &self.report;
        writeln!(
            w,
            "{} trials, {} services changed together, one culprit (seed {}); named first = the first service the method points at\n",
            r.trials, r.services, r.seed
        )?;
        let rows: Vec<Vec<String>> = [&r.ranking, &r.first_alert]
            .iter()
            .map(|m| {
                vec![
                    m.method.clone(),
                    format!(
                        "{:.1} %",
                        100.0 * m.culprit_first as f64 / r.trials.max(1) as f64
                    ),
                    m.wrong_first.to_string(),
                    m.silent.to_string(),
                    m.median_s_to_name
                        .map_or_else(|| "-".into(), |s| format!("{s:.0} s")),
                ]
            })
            .collect();
        crate::output::table(
            w,
            &[
                "METHOD",
                ">CULPRIT FIRST",
                ">WRONG FIRST",
                ">SILENT",
                ">MEDIAN TIME TO NAME IT",
            ],
            &rows,
        )?;
        let ratio = r.ranking.culprit_first as f64 / r.first_alert.culprit_first.max(1) as f64;
        writeln!(
            w,
            "\nthe ranking names the culprit first {ratio:.1}× as often as the first alert ({:.1} s of compute)",
            self.elapsed_s
        )
    }
}
