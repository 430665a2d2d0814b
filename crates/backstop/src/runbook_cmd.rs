//! `backstop runbook check FILE`: a runbook as Backstop reads it (its steps, inputs, role and
//! digest), or every problem in it at FILE:LINE:COL.

use std::fmt::Write as _;
use std::path::PathBuf;

use anyhow::Result;
use backstop_config::runbook::{Runbook, StepKind, load_runbook};
use serde_json::json;

use crate::config_file::{Printed, errors_printed};
use crate::output::OutputArgs;

const CHECK_HELP: &str = "\
Checks a runbook file and shows it as Backstop reads it.

A runbook is a YAML file of steps for a procedure that is not (yet) automated:

  name: restore-orders-db          # lowercase letters, digits, - and _
  version: 3                       # yours to bump; a run is pinned by the file's sha256
  role: incident-commander         # the least role that may run it
  inputs:
    - {name: snapshot, description: snapshot id}        # required
    - {name: host, default: db1}                        # optional
  steps:
    - {id: announce, kind: manual, title: 'Tell #orders that writes stop'}
    - {id: restore, kind: command, title: Restore, run: 'restore-db {snapshot} --host {host}', timeout: 10m}
    - {id: rows, kind: verify, title: Orders are back, run: 'count-orders {host}'}
    - {id: page, kind: verify, title: The shop page lists orders}

Kinds: `manual` (a person does it and says so), `command` (Backstop runs `run`; exit 0 is
done), `verify` (a check: `run` exits 0 when it holds, or a person confirms it). `{input}`
placeholders are replaced by the run's values, shell-quoted; `timeout` defaults to 5m.

Examples:
  backstop runbook check runbooks/restore-orders-db.yaml
  backstop runbook check runbooks/restore-orders-db.yaml --output json

Exit codes: 0 valid; 1 invalid (every error listed).";

#[derive(Debug, clap::Subcommand)]
pub enum RunbookCmd {
    /// Check a runbook file: its steps, inputs, role and sha256, or every error in it.
    #[command(long_about = CHECK_HELP)]
    Check {
        /// The runbook (YAML).
        file: PathBuf,
        #[command(flatten)]
        out_args: OutputArgs,
    },
}

pub fn run(cmd: RunbookCmd) -> Result<i32> {
    match cmd {
        RunbookCmd::Check { file, out_args } => {
            let (code, printed) = checked(&file);
            out_args.output.print(&printed);
            Ok(code)
        }
    }
}

/// The exit code and what to print for `runbook check FILE`.
fn checked(file: &std::path::Path) -> (i32, Printed) {
    match load_runbook(file) {
        Ok(runbook) => {
            let json =
                json!({"valid": true, "file": file.display().to_string(), "runbook": runbook});
            (
                0,
                Printed::new(
                    json.to_string(),
                    described(&runbook, &file.display().to_string()),
                ),
            )
        }
        Err(errors) => (1, errors_printed(&errors, None)),
    }
}

/// The runbook for people: a header, its inputs, then one line per step.
fn described(rb: &Runbook, file: &str) -> String {
    let mut out = format!(
        "{file}: valid\n{} v{} (role {} or above), sha256 {}\n",
        rb.name,
        rb.version,
        rb.role.as_str(),
        rb.digest
    );
    if !rb.description.is_empty() {
        let _ = writeln!(out, "{}", rb.description);
    }
    let inputs: Vec<String> = rb
        .inputs
        .iter()
        .map(|i| match &i.default {
            Some(d) => format!("{} (default {d})", i.name),
            None => format!("{} (required)", i.name),
        })
        .collect();
    let _ = writeln!(
        out,
        "inputs: {}",
        if inputs.is_empty() {
            "none".to_owned()
        } else {
            inputs.join(", ")
        }
    );
    let id_width = rb.steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
    for (n, step) in rb.steps.iter().enumerate() {
        let kind = match step.kind {
            StepKind::Manual => "manual",
            StepKind::Command => "command",
            StepKind::Verify => "verify",
        };
        let how = match &step.run {
            Some(run) => format!(
                "  $ {run}  (timeout {})",
                backstop_config::format_duration(step.timeout)
            ),
            None => "  (a person confirms)".to_owned(),
        };
        let _ = writeln!(
            out,
            "{:>3}. {:id_width$}  {kind:<7}  {}{how}",
            n + 1,
            step.id,
            step.title
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::output::Output;

    fn written(printed: &Printed, output: Output) -> String {
        let mut out = Vec::new();
        output.write(printed, &mut out).expect("write");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn check_shows_a_runbook_or_every_error() {
        let dir = tempfile::tempdir().expect("tempdir");
        let good = dir.path().join("restore.yaml");
        std::fs::write(
            &good,
            "name: restore\nversion: 2\nrole: releaser\ninputs:\n  - {name: host, default: db1}\nsteps:\n  - {id: stop, kind: manual, title: Stop writes}\n  - {id: restore, kind: command, title: Restore, run: \"restore {host}\", timeout: 1m}\n",
        )
        .expect("write");
        let (code, printed) = checked(&good);
        assert_eq!(code, 0);
        let text = written(&printed, Output::Text);
        assert!(
            text.contains("restore v2 (role releaser or above), sha256 "),
            "{text}"
        );
        assert!(text.contains("inputs: host (default db1)"), "{text}");
        assert!(
            text.contains("2. restore  command  Restore  $ restore {host}  (timeout 1m)"),
            "{text}"
        );
        let json: serde_json::Value =
            serde_json::from_str(&written(&printed, Output::Json)).expect("json");
        assert_eq!(json["valid"], true);
        assert_eq!(json["runbook"]["steps"][1]["timeout"], "1m");
        assert_eq!(json["runbook"]["digest"].as_str().map(str::len), Some(64));

        let bad = dir.path().join("bad.yaml");
        std::fs::write(&bad, "name: restore\nversion: 2\nrole: boss\nsteps: []\n").expect("write");
        let (code, printed) = checked(&bad);
        assert_eq!(code, 1);
        let text = written(&printed, Output::Text);
        assert!(text.contains("bad.yaml:3:7: /role: "), "{text}");

        let (code, printed) = checked(&dir.path().join("missing.yaml"));
        assert_eq!(code, 1);
        assert!(written(&printed, Output::Text).contains("cannot read the runbook"));
    }
}
