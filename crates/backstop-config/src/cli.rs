//! CLI pieces the binary wires as `backstop validate FILE` and `backstop config schema|show|init`.
//!
//! Exit codes: 0 valid / printed, 1 invalid config (every error listed). Usage errors (exit 2)
//! are clap's.

use std::io::Write;
use std::path::PathBuf;

/// Output format of a reporting command.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, clap::ValueEnum)]
pub enum OutputFormat {
    /// Human-readable lines.
    #[default]
    Text,
    /// One JSON document.
    Json,
}

/// `backstop validate FILE`
#[derive(Debug, Clone, clap::Args)]
pub struct ValidateArgs {
    /// The config file (backstop.yaml).
    pub file: PathBuf,
    /// Output format.
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
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
    #[arg(long, value_enum, default_value_t = OutputFormat::Text)]
    pub output: OutputFormat,
}

fn print(out: &mut dyn Write, text: &str) {
    // A closed pipe (`| head`) is not an error worth a panic.
    let _ = out.write_all(text.as_bytes());
    if !text.ends_with('\n') {
        let _ = out.write_all(b"\n");
    }
}

fn print_errors(out: &mut dyn Write, errors: &crate::ConfigErrors, output: OutputFormat) {
    match output {
        OutputFormat::Text => {
            let noun = if errors.len() == 1 { "error" } else { "errors" };
            print(out, &format!("{errors}\n{} {noun}", errors.len()));
        }
        OutputFormat::Json => print(
            out,
            &serde_json::to_string_pretty(&errors.to_json()).unwrap_or_default(),
        ),
    }
}

/// `backstop validate FILE [--output text|json]`: 0 when valid, 1 with every error listed.
/// JSON: `{"valid": true, "file": F, "services": N}` or
/// `{"valid": false, "errors": [{file, line, col, path, message}]}`.
#[must_use]
pub fn run_validate(args: &ValidateArgs) -> i32 {
    validate_to(args, &mut std::io::stdout().lock())
}

/// [`run_validate`] writing to `out`.
pub fn validate_to(args: &ValidateArgs, out: &mut dyn Write) -> i32 {
    match crate::load(&args.file) {
        Ok(config) => {
            let n = config.services.len();
            match args.output {
                OutputFormat::Text => {
                    print(out, &format!("{}: valid ({n} service{})", args.file.display(), if n == 1 { "" } else { "s" }));
                }
                OutputFormat::Json => print(
                    out,
                    &serde_json::json!({"valid": true, "file": args.file.display().to_string(), "services": n})
                        .to_string(),
                ),
            }
            0
        }
        Err(errors) => {
            print_errors(out, &errors, args.output);
            1
        }
    }
}

/// What the state store knows about drills, for [`validate_with_drills`].
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
        last: Vec<crate::MeasuredRecovery>,
    },
}

/// `backstop validate FILE --state-dir DIR`: [`validate_to`], then each service's MTTR target
/// against its last drill ([`crate::check_measured`]); a target shorter than the measured
/// recovery is an error at the objective. The text output says which drills were compared (or
/// that none are known); JSON adds `"drills": {"state_dir", "known", "compared": [...]}`.
pub fn validate_with_drills(
    args: &ValidateArgs,
    drills: &DrillEvidence,
    out: &mut dyn Write,
) -> i32 {
    let (state_dir, last) = match drills {
        DrillEvidence::NoState { state_dir } => (state_dir, None),
        DrillEvidence::Known { state_dir, last } => (state_dir, Some(last.as_slice())),
    };
    let file = args.file.display().to_string();
    let text = std::fs::read_to_string(&args.file);
    let parsed = crate::load(&args.file);
    let mut errors = match (&parsed, &text) {
        (Ok(config), Ok(text)) => crate::check_measured(text, &file, config, last.unwrap_or(&[])),
        _ => Vec::new(),
    };
    let compared: Vec<&crate::MeasuredRecovery> = match &parsed {
        Ok(config) => last
            .unwrap_or(&[])
            .iter()
            .filter(|m| config.service(&m.service).is_some())
            .collect(),
        Err(_) => Vec::new(),
    };
    let drills_json = serde_json::json!({
        "state_dir": state_dir.display().to_string(),
        "known": last.is_some(),
        "compared": compared.iter().map(|m| {
            let mttr = parsed.as_ref().ok().and_then(|c| c.service(&m.service)).map(|s| s.mttr());
            serde_json::json!({
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
            match args.output {
                OutputFormat::Text => print(
                    out,
                    &format!(
                        "{file}: valid ({n} service{})\n{note}",
                        if n == 1 { "" } else { "s" }
                    ),
                ),
                OutputFormat::Json => print(
                    out,
                    &serde_json::json!({"valid": true, "file": file, "services": n, "drills": drills_json})
                        .to_string(),
                ),
            }
            0
        }
        Ok(_) => {
            errors.sort_by_key(|e| (e.line, e.col));
            let errors = crate::ConfigErrors(errors);
            match args.output {
                OutputFormat::Text => {
                    print_errors(out, &errors, args.output);
                    print(out, &note);
                }
                OutputFormat::Json => {
                    let mut json = errors.to_json();
                    json["drills"] = drills_json;
                    print(
                        out,
                        &serde_json::to_string_pretty(&json).unwrap_or_default(),
                    );
                }
            }
            1
        }
        Err(errors) => {
            print_errors(out, &errors, args.output);
            1
        }
    }
}

/// `backstop config schema`: prints the JSON Schema of `backstop.yaml`.
#[must_use]
pub fn run_schema() -> i32 {
    print(
        &mut std::io::stdout().lock(),
        &serde_json::to_string_pretty(&crate::schema()).unwrap_or_default(),
    );
    0
}

/// `backstop config show FILE [--effective] [--output text|json]`: the config as written
/// (validated), or with every default filled in. 1 with every error listed when invalid.
#[must_use]
pub fn run_show(args: &ShowArgs) -> i32 {
    show_to(args, &mut std::io::stdout().lock())
}

/// [`run_show`] writing to `out`.
pub fn show_to(args: &ShowArgs, out: &mut dyn Write) -> i32 {
    match crate::load_with_input(&args.file) {
        Ok((config, input)) => {
            let text = match (args.effective, args.output) {
                (true, OutputFormat::Text) => config.to_yaml_effective(),
                (true, OutputFormat::Json) => config.to_json_effective(),
                (false, OutputFormat::Text) => crate::emit::to_yaml(&input),
                (false, OutputFormat::Json) => {
                    serde_json::to_string_pretty(&input).unwrap_or_default()
                }
            };
            print(out, &text);
            0
        }
        Err(errors) => {
            print_errors(out, &errors, args.output);
            1
        }
    }
}

/// `backstop config init`: prints a commented starter `backstop.yaml`.
#[must_use]
pub fn run_init() -> i32 {
    print(&mut std::io::stdout().lock(), crate::STARTER);
    0
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Debug, Parser)]
    enum Cmd {
        Validate(ValidateArgs),
        Show(ShowArgs),
    }

    #[test]
    fn args_parse_as_subcommands() {
        let Ok(Cmd::Validate(v)) =
            Cmd::try_parse_from(["backstop", "validate", "b.yaml", "--output", "json"])
        else {
            panic!("validate did not parse");
        };
        assert_eq!(v.file, PathBuf::from("b.yaml"));
        assert_eq!(v.output, OutputFormat::Json);
        let Ok(Cmd::Show(s)) = Cmd::try_parse_from(["backstop", "show", "b.yaml", "--effective"])
        else {
            panic!("show did not parse");
        };
        assert!(s.effective);
        assert_eq!(s.output, OutputFormat::Text);
        assert!(
            Cmd::try_parse_from(["backstop", "validate", "b.yaml", "--output", "xml"]).is_err()
        );
        assert!(Cmd::try_parse_from(["backstop", "validate"]).is_err());
    }
}
