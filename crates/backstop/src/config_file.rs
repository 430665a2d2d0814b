//! `backstop validate` and `backstop config schema|show|init`: the config file itself.
//!
//! Exit codes: 0 valid / printed, 1 invalid config (every error listed), 2 bad input (an
//! unreadable state database). Usage errors (exit 2) are clap's.

use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use backstop_config::{ConfigErrors, MeasuredRecovery};
use backstop_core::drill::DrillStatus;
use backstop_core::format_ms;
use backstop_store::SqliteStore;
use backstop_store::prelude::*;
use serde::Serialize;
use serde_json::value::RawValue;
use serde_json::{Value, json};

use crate::output::{self, Output, Render};

/// Help of the two values of `--output` on these commands.
const TEXT_HELP: &str = "Human-readable lines";
const JSON_HELP: &str = "One JSON document";

/// `backstop validate FILE`
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// The config file (backstop.yaml).
    pub file: PathBuf,
    /// Output format.
    #[arg(long, short = 'o', value_parser = output::described(TEXT_HELP, JSON_HELP), default_value = "text")]
    pub output: Output,
}

/// `backstop config show FILE`
#[derive(Debug, Clone, clap::Args)]
pub struct ShowArgs {
    /// The config file (backstop.yaml).
    pub file: PathBuf,
    /// Show every default filled in (objectives from the tier, steps, merged analysis).
    #[arg(long)]
    pub effective: bool,
    /// Output format: text prints YAML.
    #[arg(long, short = 'o', value_parser = output::described(TEXT_HELP, JSON_HELP), default_value = "text")]
    pub output: Output,
}

/// `backstop validate FILE [--state-dir DIR]`
#[derive(clap::Args)]
#[command(long_about = "\
Check a backstop.yaml and report every error at once with file:line:col, including objectives the \
infrastructure cannot meet: a stateful component whose `rpo` is shorter than its `snapshot_every`, \
and an MTTR target (`objectives.mttr`, or the tier default) shorter than the recovery the service's \
last drill measured (read from the state folder's database; without one, no drills are known and \
the text output says so).

Examples:
  backstop validate backstop.yaml
  backstop validate backstop.yaml --state-dir /var/lib/backstop --output json

Exit codes: 0 valid; 1 invalid (every error listed); 2 bad input (unreadable state database).")]
pub struct ValidateCmd {
    #[command(flatten)]
    args: ValidateArgs,
    /// State folder whose recorded drills MTTR targets are compared with (as for `serve`).
    #[arg(long, env = "BACKSTOP_STATE_DIR", default_value = ".backstop")]
    state_dir: PathBuf,
}

/// The last finished drill of each service in the config, from the state folder.
async fn drill_evidence(
    config: &backstop_config::Config,
    state_dir: &Path,
) -> Result<DrillEvidence> {
    if !state_dir.join(backstop_store::sqlite::DB_FILE).exists() {
        return Ok(DrillEvidence::NoState {
            state_dir: state_dir.to_path_buf(),
        });
    }
    let store = SqliteStore::open_existing_dir(state_dir)
        .await
        .with_context(|| {
            format!(
                "reading drills from {} (see --state-dir)",
                state_dir.display()
            )
        })?;
    let mut last = Vec::new();
    for svc in &config.services {
        let drills = store.drills(Some(&svc.name), 50).await?;
        let Some(d) = drills
            .into_iter()
            .find(|d| d.status != DrillStatus::Running)
        else {
            continue;
        };
        let recovered = d
            .result
            .as_ref()
            .filter(|r| r.restored)
            .and_then(|r| r.time_to_recover_ms)
            .map(|ms| Duration::from_millis(u64::try_from(ms).unwrap_or(0)));
        last.push(MeasuredRecovery {
            service: d.service,
            env: d.env,
            drill_id: d.id,
            date: format_ms(d.started_at_ms),
            recovered,
        });
    }
    store.close().await;
    Ok(DrillEvidence::Known {
        state_dir: state_dir.to_path_buf(),
        last,
    })
}

pub async fn validate(cmd: ValidateCmd) -> Result<i32> {
    let evidence = match backstop_config::load(&cmd.args.file) {
        Ok(config) => drill_evidence(&config, &cmd.state_dir).await?,
        // Invalid config: its errors are the answer; drills are not looked at.
        Err(_) => DrillEvidence::NoState {
            state_dir: cmd.state_dir.clone(),
        },
    };
    let (code, printed) = validation(&cmd.args.file, &evidence);
    cmd.args.output.print(&printed);
    Ok(code)
}

/// `backstop config show FILE [--effective] [--output text|json]`: the config as written
/// (validated), or with every default filled in. 1 with every error listed when invalid.
pub fn show(args: &ShowArgs) -> i32 {
    let (code, printed) = shown(args);
    args.output.print(&printed);
    code
}

fn shown(args: &ShowArgs) -> (i32, Printed) {
    match backstop_config::load_with_input(&args.file) {
        Ok((config, input)) => {
            // The text and JSON forms are each written by the config library.
            let (text, json) = if args.effective {
                (config.to_yaml_effective(), config.to_json_effective())
            } else {
                (
                    backstop_config::emit::to_yaml(&input),
                    serde_json::to_string_pretty(&input).unwrap_or_default(),
                )
            };
            (0, Printed::new(json, text))
        }
        Err(errors) => (1, errors_printed(&errors, None)),
    }
}

/// `backstop config schema`: the JSON Schema of `backstop.yaml`.
pub fn schema() -> i32 {
    let schema = serde_json::to_string_pretty(&backstop_config::schema()).unwrap_or_default();
    let _ = write_lines(&mut io::stdout().lock(), &schema);
    0
}

/// `backstop config init`: a commented starter `backstop.yaml`.
pub fn init() -> i32 {
    let _ = write_lines(&mut io::stdout().lock(), backstop_config::STARTER);
    0
}

/// What the state store knows about drills, for [`validation`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DrillEvidence {
    /// No database in the state folder: no drills known, MTTR targets not compared.
    NoState {
        /// The state folder looked at.
        state_dir: PathBuf,
    },
    /// The last finished drill of each drilled service.
    Known {
        /// The state folder read.
        state_dir: PathBuf,
        /// At most one per service: its latest finished drill.
        last: Vec<MeasuredRecovery>,
    },
}

/// A document the config library wrote in both forms: its JSON is printed exactly as written
/// (pretty or on one line), its text as lines.
#[derive(Serialize)]
#[serde(transparent)]
pub(crate) struct Printed {
    json: Box<RawValue>,
    #[serde(skip)]
    text: String,
}

impl Printed {
    pub(crate) fn new(json: String, text: String) -> Self {
        let json = RawValue::from_string(json).unwrap_or_else(|e| {
            let error = json!({"error": format!("cannot print the document: {e}")});
            RawValue::from_string(error.to_string()).expect("serde_json writes valid JSON")
        });
        Printed { json, text }
    }
}

impl Render for Printed {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        write_lines(w, &self.text)
    }
}

/// Writes `text`, ending it with a newline when it has none.
fn write_lines(w: &mut dyn Write, text: &str) -> io::Result<()> {
    w.write_all(text.as_bytes())?;
    if !text.ends_with('\n') {
        w.write_all(b"\n")?;
    }
    Ok(())
}

/// Every error of an invalid config, with their count.
pub(crate) fn errors_printed(errors: &ConfigErrors, drills: Option<(Value, &str)>) -> Printed {
    let noun = if errors.len() == 1 { "error" } else { "errors" };
    let mut json = errors.to_json();
    let mut text = format!("{errors}\n{} {noun}", errors.len());
    if let Some((drills_json, note)) = drills {
        json["drills"] = drills_json;
        text = format!("{text}\n{note}");
    }
    Printed::new(
        serde_json::to_string_pretty(&json).unwrap_or_default(),
        text,
    )
}

/// `backstop validate FILE [--state-dir DIR]`: the config's errors, then each service's MTTR
/// target against its last drill ([`backstop_config::check_measured`]); a target shorter than
/// the measured recovery is an error at the objective. The text output says which drills were
/// compared (or that none are known); JSON adds `"drills": {"state_dir", "known", "compared"}`.
/// Returns the exit code and what to print.
fn validation(file: &Path, drills: &DrillEvidence) -> (i32, Printed) {
    let (state_dir, last) = match drills {
        DrillEvidence::NoState { state_dir } => (state_dir, None),
        DrillEvidence::Known { state_dir, last } => (state_dir, Some(last.as_slice())),
    };
    let name = file.display().to_string();
    let text = std::fs::read_to_string(file);
    let parsed = backstop_config::load(file);
    let mut errors = match (&parsed, &text) {
        (Ok(config), Ok(text)) => {
            backstop_config::check_measured(text, &name, config, last.unwrap_or(&[]))
        }
        _ => Vec::new(),
    };
    // The runbooks the config names must read too: the daemon reads them at every run.
    if let Ok(Some(path)) = parsed
        .as_ref()
        .map(|c| c.runbooks.as_ref().map(|p| c.base_dir.join(p)))
        && let Err(problems) = backstop_config::runbook::load_runbooks(&path)
    {
        errors.extend(problems.0);
    }
    let compared: Vec<&MeasuredRecovery> = match &parsed {
        Ok(config) => last
            .unwrap_or(&[])
            .iter()
            .filter(|m| config.service(&m.service).is_some())
            .collect(),
        Err(_) => Vec::new(),
    };
    let drills_json = json!({
        "state_dir": state_dir.display().to_string(),
        "known": last.is_some(),
        "compared": compared.iter().map(|m| {
            let mttr = parsed.as_ref().ok().and_then(|c| c.service(&m.service)).map(|s| s.mttr());
            json!({
                "service": m.service, "env": m.env, "drill": m.drill_id, "date": m.date,
                "recovered_ms": m.recovered.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                "mttr_ms": mttr.map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
                "met": m.recovered.zip(mttr).is_some_and(|(took, target)| took <= target),
            })
        }).collect::<Vec<_>>(),
    });
    let note = match last {
        None => format!(
            "drills: no state database in {}: no drills known, MTTR targets not compared (run `backstop drill`, or see --state-dir)",
            state_dir.display()
        ),
        Some(_) if compared.is_empty() => format!(
            "drills: none recorded in {}: MTTR targets not compared (run `backstop drill SERVICE --env ENV`)",
            state_dir.display()
        ),
        Some(_) => {
            let lines: Vec<String> = compared
                .iter()
                .map(|m| {
                    let took = m.recovered.map_or_else(
                        || "did not restore service".to_owned(),
                        |d| format!("recovered in {:.3}s", d.as_secs_f64()),
                    );
                    format!(
                        "  {}: drill {} on {} in `{}` {took}",
                        m.service, m.drill_id, m.date, m.env
                    )
                })
                .collect();
            format!("drills compared with MTTR targets:\n{}", lines.join("\n"))
        }
    };
    match parsed {
        Ok(config) if errors.is_empty() => {
            let n = config.services.len();
            let text = format!(
                "{name}: valid ({n} service{})\n{note}",
                if n == 1 { "" } else { "s" }
            );
            let json = json!({"valid": true, "file": name, "services": n, "drills": drills_json});
            (0, Printed::new(json.to_string(), text))
        }
        Ok(_) => {
            errors.sort_by_key(|e| (e.line, e.col));
            (
                1,
                errors_printed(&ConfigErrors(errors), Some((drills_json, &note))),
            )
        }
        Err(errors) => (1, errors_printed(&errors, None)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The config library's test files.
    fn fixtures() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../backstop-config/tests")
    }

    const STATEFUL: &str = include_str!("../../backstop-config/tests/good/stateful.yaml");

    fn no_state() -> DrillEvidence {
        DrillEvidence::NoState {
            state_dir: PathBuf::from(".backstop"),
        }
    }

    fn written(printed: &Printed, output: Output) -> String {
        let mut out = Vec::new();
        output.write(printed, &mut out).expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    fn measured(service: &str, secs: Option<u64>) -> MeasuredRecovery {
        MeasuredRecovery {
            service: service.into(),
            env: "staging".into(),
            drill_id: format!("drill-{service}"),
            date: "2026-11-26T08:00:00.000Z".into(),
            recovered: secs.map(Duration::from_secs),
        }
    }

    #[test]
    fn cli_validate_and_show() {
        let dir = fixtures();
        let run = |file: &str, output| {
            let (code, printed) = validation(&dir.join(file), &no_state());
            (code, written(&printed, output))
        };

        let (code, out) = run("good/minimal.yaml", Output::Text);
        assert_eq!(code, 0);
        assert!(out.contains("valid (1 service)"), "{out}");

        let (code, out) = run("broken/several_errors.yaml", Output::Text);
        assert_eq!(code, 1);
        assert!(
            out.contains("several_errors.yaml:8:11: /services/0/tier: must be at most 3"),
            "{out}"
        );
        assert!(out.trim_end().ends_with("12 errors"), "{out}");

        let (code, out) = run("broken/several_errors.yaml", Output::Json);
        assert_eq!(code, 1);
        let json: serde_json::Value = serde_json::from_str(&out).expect("json output");
        assert_eq!(json["valid"], false);
        assert_eq!(json["errors"].as_array().map(Vec::len), Some(12));
        let first = &json["errors"][0];
        for key in ["file", "line", "col", "path", "message"] {
            assert!(!first[key].is_null(), "{key} missing in {first}");
        }

        let (code, out) = run("good/missing.yaml", Output::Json);
        assert_eq!(code, 1);
        assert!(out.contains("missing.yaml"), "{out}");

        let show = |effective, output| {
            let args = ShowArgs {
                file: dir.join("good/minimal.yaml"),
                effective,
                output,
            };
            let (code, printed) = shown(&args);
            (code, written(&printed, output))
        };

        let (code, text) = show(true, Output::Text);
        assert_eq!(code, 0);
        assert!(text.contains("mttr: 4h"), "{text}");
        assert!(text.contains("rollback_sla: 30m"), "{text}");

        let (code, out) = show(false, Output::Json);
        assert_eq!(code, 0);
        let json: serde_json::Value = serde_json::from_str(&out).expect("json");
        assert!(
            json["services"][0].get("objectives").is_none(),
            "as written: {json}"
        );
    }

    #[test]
    fn validate_with_drills_reports_what_it_compared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let file = dir.path().join("backstop.yaml");
        std::fs::write(&file, STATEFUL).expect("write");
        let run = |evidence: &DrillEvidence, output| {
            let (code, printed) = validation(&file, evidence);
            (code, written(&printed, output))
        };
        let state = Path::new("/var/lib/backstop").to_path_buf();

        let (code, text) = run(
            &DrillEvidence::NoState {
                state_dir: state.clone(),
            },
            Output::Text,
        );
        assert_eq!(code, 0, "{text}");
        assert!(text.contains("valid (2 services)"), "{text}");
        assert!(text.contains("no drills known"), "{text}");

        let known = |last| DrillEvidence::Known {
            state_dir: state.clone(),
            last,
        };
        let (code, text) = run(&known(vec![]), Output::Text);
        assert_eq!(code, 0);
        assert!(text.contains("drills: none recorded"), "{text}");

        let (code, text) = run(&known(vec![measured("orders", Some(60))]), Output::Json);
        assert_eq!(code, 0, "{text}");
        let json: serde_json::Value = serde_json::from_str(&text).expect("json");
        assert_eq!(json["drills"]["compared"][0]["met"], true);
        assert_eq!(json["drills"]["compared"][0]["recovered_ms"], 60_000);
        assert_eq!(json["drills"]["compared"][0]["mttr_ms"], 720_000);

        let (code, text) = run(&known(vec![measured("orders", Some(800))]), Output::Text);
        assert_eq!(code, 1, "{text}");
        assert!(
            text.contains(":5:24: /services/0/objectives/mttr: the MTTR target cannot be met"),
            "{text}"
        );
        assert!(text.contains("1 error"), "{text}");
        assert!(text.contains("orders: drill drill-orders"), "{text}");
    }
}
