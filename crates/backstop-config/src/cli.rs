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
