//! `backstop runbook …`: check a runbook file (its steps, inputs, role and digest, or every
//! problem at FILE:LINE:COL); list the daemon's runbooks; run one and follow it, answering its
//! manual steps at the terminal; steer a run (confirm, retry, skip, alter, ad-hoc, abort).

use std::fmt::Write as _;
use std::io::{self, BufRead, IsTerminal, Write};
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Result, bail};
use backstop_api::runbooks::{AdHocStep, AlterStep, ConfirmStep, Reason, RunbookInfo, StartRun};
use backstop_config::runbook::{Runbook, StepKind, load_runbook};
use backstop_core::format_ms;
use backstop_core::runbook_run::{RunStatus, RunbookRun, StepStatus};
use serde_json::json;

use crate::client::{ApiArgs, Client, Query, encode};
use crate::config_file::{Printed, errors_printed};
use crate::output::{Output, OutputArgs, Render};

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

const RUN_HELP: &str = "\
Runs a runbook from the daemon's `runbooks` folder (backstop.yaml: `runbooks: runbooks/`).

The daemon runs the command and verify steps, one after another, each journaled: a daemon
killed mid-step collects the step's end when it starts again instead of running it twice.
At a manual step (or a step that failed) the run waits for a person. At a terminal this
command asks; otherwise it stops and prints the commands that continue the run. The run
records the runbook's sha256, who did each step, the inputs, every command's output and
timings. Skipping or altering a step, or an ad-hoc action, is a deviation: it needs a reason
and goes to the audit log and the incident's timeline.

You need the runbook's role (see `backstop runbook list`) in the run's environment.

Examples:
  backstop runbook run restore-orders-db --incident inc-0193… --input snapshot=s-42
  backstop runbook run flush-cache --env prod --detach
  backstop runbook confirm rb-0193… announce --note 'posted in #orders'
  backstop runbook skip rb-0193… rows --reason 'the DBA checked by hand'
  backstop runbook alter rb-0193… restore --command 'restore-db s-41' --reason 's-42 is corrupt'
  backstop runbook ad-hoc rb-0193… --title 'Paused the export job' --reason 'it held locks'

Exit codes: 0 the run succeeded (or, with --detach, started); 1 it was aborted; 4 it waits for
a person (not at a terminal); 2 bad input (nothing started); 3 the daemon cannot be reached.";

/// Exit code of a run left waiting for a person.
const WAITING: i32 = 4;

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
    /// The runbooks the daemon can run, as their files read now.
    List {
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Run a runbook and follow it, answering manual steps at the terminal.
    #[command(long_about = RUN_HELP)]
    Run {
        /// The runbook's name.
        name: String,
        /// The environment it acts on (default: the incident's).
        #[arg(long)]
        env: Option<String>,
        /// The service, as named in the config.
        #[arg(long)]
        service: Option<String>,
        /// The incident the run is part of (its timeline shows the run).
        #[arg(long)]
        incident: Option<String>,
        /// An input value, NAME=VALUE (repeat for each).
        #[arg(long = "input", value_name = "NAME=VALUE", value_parser = parse_input)]
        inputs: Vec<(String, String)>,
        /// Start it and return; follow it later with `runbook follow`.
        #[arg(long)]
        detach: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Follow a run until it ends or waits for a person (answering at a terminal).
    Follow {
        /// The runbook run's id (`backstop runbook runs` shows them).
        run: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Runs not over yet (with --all, every run).
    Runs {
        /// Also finished runs.
        #[arg(long)]
        all: bool,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// One run: its steps, who did them, outputs and deviations.
    Show {
        /// The runbook run's id (`backstop runbook runs` shows them).
        run: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Say a manual step waiting for you is done.
    Confirm {
        /// The runbook run's id (`backstop runbook runs` shows them).
        run: String,
        /// The step's id, as the runbook names it.
        step: String,
        /// What you saw, in words (kept in the run's log).
        #[arg(long, default_value = "")]
        note: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Run a failed step again, as written.
    Retry {
        /// The runbook run's id (`backstop runbook runs` shows them).
        run: String,
        /// The step's id, as the runbook names it.
        step: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Skip a step (a deviation: needs a reason).
    Skip {
        /// The runbook run's id (`backstop runbook runs` shows them).
        run: String,
        /// The step's id, as the runbook names it.
        step: String,
        /// Why, in words: kept in the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Run another command for a step (a deviation: needs a reason).
    Alter {
        /// The runbook run's id (`backstop runbook runs` shows them).
        run: String,
        /// The step's id, as the runbook names it.
        step: String,
        /// The command to run instead of the step's own.
        #[arg(long)]
        command: String,
        /// Why, in words: kept in the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Record an action the runbook does not have, done by hand or (with --command) run by the
    /// daemon next (a deviation: needs a reason).
    #[command(name = "ad-hoc")]
    AdHoc {
        /// The runbook run's id (`backstop runbook runs` shows them).
        run: String,
        /// What the step does, in a line.
        #[arg(long)]
        title: String,
        /// The command to run (omit for a step a person does by hand).
        #[arg(long)]
        command: Option<String>,
        /// Why, in words: kept in the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
    /// Stop a run for good.
    Abort {
        /// The runbook run's id (`backstop runbook runs` shows them).
        run: String,
        /// Why, in words: kept in the audit log.
        #[arg(long)]
        reason: String,
        #[command(flatten)]
        api: ApiArgs,
    },
}

fn parse_input(s: &str) -> Result<(String, String), String> {
    match s.split_once('=') {
        Some((name, value)) if !name.is_empty() => Ok((name.to_owned(), value.to_owned())),
        _ => Err(format!("{s:?} is not NAME=VALUE")),
    }
}

pub async fn run(cmd: RunbookCmd) -> Result<i32> {
    let steer = |id: &str, what: &str| format!("/api/v1/runbook-runs/{}/{what}", encode(id));
    let step = |id: &str, step: &str, what: &str| {
        format!(
            "/api/v1/runbook-runs/{}/steps/{}/{what}",
            encode(id),
            encode(step)
        )
    };
    match cmd {
        RunbookCmd::Check { file, out_args } => {
            let (code, printed) = checked(&file);
            out_args.output.print(&printed);
            return Ok(code);
        }
        RunbookCmd::List { api } => {
            api.get_and_print::<Vec<RunbookInfo>>("/api/v1/runbooks")
                .await?;
        }
        RunbookCmd::Run {
            name,
            env,
            service,
            incident,
            inputs,
            detach,
            api,
        } => {
            let body = StartRun {
                inputs: inputs.into_iter().collect(),
                env,
                service,
                incident,
            };
            let client = api.client()?;
            let run: RunbookRun = client
                .post(&format!("/api/v1/runbooks/{}/runs", encode(&name)), &body)
                .await?;
            if detach {
                api.print(&run);
                return Ok(0);
            }
            return follow(&client, &api, &run.id).await;
        }
        RunbookCmd::Follow { run, api } => return follow(&api.client()?, &api, &run).await,
        RunbookCmd::Runs { all, api } => {
            let q = Query::new("/api/v1/runbook-runs").param("all", all);
            api.get_and_print::<Vec<RunbookRun>>(q.as_str()).await?;
        }
        RunbookCmd::Show { run, api } => {
            let r: RunbookRun = api
                .get_and_print(&format!("/api/v1/runbook-runs/{}", encode(&run)))
                .await?;
            return Ok(exit_code(&r));
        }
        RunbookCmd::Confirm {
            run,
            step: s,
            note,
            api,
        } => {
            api.post_and_print::<RunbookRun>(&step(&run, &s, "confirm"), &ConfirmStep { note })
                .await?;
        }
        RunbookCmd::Retry { run, step: s, api } => {
            api.post_and_print::<RunbookRun>(&step(&run, &s, "retry"), &json!({}))
                .await?;
        }
        RunbookCmd::Skip {
            run,
            step: s,
            reason,
            api,
        } => {
            api.post_and_print::<RunbookRun>(&step(&run, &s, "skip"), &Reason { reason })
                .await?;
        }
        RunbookCmd::Alter {
            run,
            step: s,
            command,
            reason,
            api,
        } => {
            api.post_and_print::<RunbookRun>(
                &step(&run, &s, "alter"),
                &AlterStep { command, reason },
            )
            .await?;
        }
        RunbookCmd::AdHoc {
            run,
            title,
            command,
            reason,
            api,
        } => {
            api.post_and_print::<RunbookRun>(
                &steer(&run, "ad-hoc"),
                &AdHocStep {
                    title,
                    command,
                    reason,
                },
            )
            .await?;
        }
        RunbookCmd::Abort { run, reason, api } => {
            api.post_and_print::<RunbookRun>(&steer(&run, "abort"), &Reason { reason })
                .await?;
        }
    }
    Ok(0)
}

fn exit_code(run: &RunbookRun) -> i32 {
    match run.status {
        RunStatus::Succeeded => 0,
        RunStatus::Aborted => 1,
        RunStatus::Running | RunStatus::Waiting => WAITING,
    }
}

/// How often `follow` reads the run.
const POLL_EVERY: Duration = Duration::from_millis(300);

/// Prints the run's history as it grows until the run is over or waits for a person; at a
/// terminal (text output), asks the person what to do and goes on.
async fn follow(client: &Client, api: &ApiArgs, id: &str) -> Result<i32> {
    let path = format!("/api/v1/runbook-runs/{}", encode(id));
    let text = api.out.output == Output::Text;
    let interactive = text && io::stdin().is_terminal();
    let mut shown = 0;
    loop {
        let run: RunbookRun = client.get(&path).await?;
        if text {
            if shown == 0 {
                println!(
                    "{} {} v{} (sha256 {}) in {}",
                    run.id,
                    run.runbook,
                    run.runbook_version,
                    &run.digest[..12.min(run.digest.len())],
                    run.env
                );
            }
            for e in &run.history[shown..] {
                println!(
                    "  {}  {:<13} {}{}",
                    format_ms(e.at_ms),
                    e.kind,
                    e.text,
                    by(&e.actor)
                );
            }
            shown = run.history.len();
        }
        match run.status {
            RunStatus::Running => tokio::time::sleep(POLL_EVERY).await,
            RunStatus::Succeeded | RunStatus::Aborted => {
                if text {
                    println!("run {}: {}", run.id, run.status);
                } else {
                    api.print(&run);
                }
                return Ok(exit_code(&run));
            }
            RunStatus::Waiting => {
                let Some(step) = run
                    .steps
                    .iter()
                    .find(|s| matches!(s.status, StepStatus::Waiting | StepStatus::Failed))
                else {
                    tokio::time::sleep(POLL_EVERY).await;
                    continue;
                };
                if !interactive {
                    if text {
                        print_waiting(&run, step);
                    } else {
                        api.print(&run);
                    }
                    return Ok(WAITING);
                }
                answer(client, &run, step).await?;
            }
        }
    }
}

fn by(actor: &str) -> String {
    if actor == "controller" {
        String::new()
    } else {
        format!("  ({actor})")
    }
}

fn print_waiting(run: &RunbookRun, step: &backstop_core::runbook_run::RunStep) {
    let id = &run.id;
    let s = &step.id;
    if step.status == StepStatus::Failed {
        if !step.stderr.trim().is_empty() {
            println!("stderr of {s}:\n{}", step.stderr.trim_end());
        }
        println!("run {id} waits: step {s} failed. Go on with one of:");
        println!("  backstop runbook retry {id} {s}");
    } else {
        println!(
            "run {id} waits for a person: step {s}: {}. Go on with one of:",
            step.title
        );
        println!("  backstop runbook confirm {id} {s} --note '…'");
    }
    println!("  backstop runbook skip {id} {s} --reason '…'");
    println!("  backstop runbook alter {id} {s} --command '…' --reason '…'");
    println!("  backstop runbook abort {id} --reason '…'");
    println!("then `backstop runbook follow {id}`.");
}

fn ask(prompt: &str) -> Result<String> {
    print!("{prompt}");
    io::stdout().flush()?;
    let mut line = String::new();
    if io::stdin().lock().read_line(&mut line)? == 0 {
        bail!("stdin closed; the run waits (continue with `backstop runbook follow`)");
    }
    Ok(line.trim().to_owned())
}

/// Asks the person at the terminal what to do with `step` and tells the daemon.
async fn answer(
    client: &Client,
    run: &RunbookRun,
    step: &backstop_core::runbook_run::RunStep,
) -> Result<()> {
    let id = encode(&run.id);
    let at = |what: &str| {
        format!(
            "/api/v1/runbook-runs/{id}/steps/{}/{what}",
            encode(&step.id)
        )
    };
    let failed = step.status == StepStatus::Failed;
    if failed {
        if !step.stderr.trim().is_empty() {
            println!("stderr:\n{}", step.stderr.trim_end());
        }
        println!("step {} failed: {}", step.id, step.title);
    } else {
        println!("step {}: {}", step.id, step.title);
    }
    let choices = if failed {
        "[r]etry, [s]kip, [a]lter, a[b]ort? "
    } else {
        "[d]one, [s]kip, [a]lter, a[b]ort? "
    };
    loop {
        let choice = ask(choices)?;
        let _: RunbookRun = match choice.as_str() {
            "d" | "done" if !failed => {
                let note = ask("note (optional): ")?;
                client.post(&at("confirm"), &ConfirmStep { note }).await?
            }
            "r" | "retry" if failed => client.post(&at("retry"), &json!({})).await?,
            "s" | "skip" => {
                let reason = ask("why skip it (recorded as a deviation): ")?;
                client.post(&at("skip"), &Reason { reason }).await?
            }
            "a" | "alter" => {
                let command = ask("command to run instead: ")?;
                let reason = ask("why (recorded as a deviation): ")?;
                client
                    .post(&at("alter"), &AlterStep { command, reason })
                    .await?
            }
            "b" | "abort" => {
                let reason = ask("why abort: ")?;
                client
                    .post(
                        &format!("/api/v1/runbook-runs/{id}/abort"),
                        &Reason { reason },
                    )
                    .await?
            }
            _ => continue,
        };
        return Ok(());
    }
}

impl Render for Vec<RunbookInfo> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(w, "no runbooks (the config names none: `runbooks: FOLDER`)");
        }
        for rb in self {
            writeln!(
                w,
                "{}  v{}  role {}  {} steps  sha256 {}",
                rb.name,
                rb.version,
                rb.role,
                rb.steps.len(),
                &rb.digest[..12.min(rb.digest.len())]
            )?;
            if !rb.description.is_empty() {
                writeln!(w, "    {}", rb.description)?;
            }
        }
        Ok(())
    }
}

impl Render for RunbookRun {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        writeln!(
            w,
            "{}  {} v{}  {}  in {}{}  started {} by {}",
            self.id,
            self.runbook,
            self.runbook_version,
            self.status,
            self.env,
            self.incident_id
                .as_ref()
                .map_or(String::new(), |i| format!(" (incident {i})")),
            format_ms(self.started_at_ms),
            self.started_by
        )?;
        writeln!(w, "  runbook sha256 {}", self.digest)?;
        let width = self.steps.iter().map(|s| s.id.len()).max().unwrap_or(0);
        for s in &self.steps {
            let took = match (s.started_at_ms, s.finished_at_ms) {
                (Some(a), Some(b)) => format!("  {:.1}s", (b - a) as f64 / 1000.0),
                _ => String::new(),
            };
            let exit = s.exit_code.map_or(String::new(), |c| format!(" exit {c}"));
            writeln!(
                w,
                "  {:<8} {:width$}  {:<7} {}{took}{exit}{}",
                s.status.as_str(),
                s.id,
                s.kind,
                s.title,
                s.actor.as_deref().map_or(String::new(), by)
            )?;
        }
        for d in &self.deviations {
            writeln!(
                w,
                "  deviation: {} {} by {} at {}: {} ({})",
                d.kind,
                d.step,
                d.actor,
                format_ms(d.at_ms),
                d.reason,
                d.detail
            )?;
        }
        Ok(())
    }
}

impl Render for Vec<RunbookRun> {
    fn text(&self, w: &mut dyn Write) -> io::Result<()> {
        if self.is_empty() {
            return writeln!(w, "no runbook run");
        }
        for r in self {
            let done = r
                .steps
                .iter()
                .filter(|s| matches!(s.status, StepStatus::Done | StepStatus::Skipped))
                .count();
            writeln!(
                w,
                "{}  {:<9} {} v{}  {}/{} steps  {} deviation(s)  started {} by {}",
                r.id,
                r.status.as_str(),
                r.runbook,
                r.runbook_version,
                done,
                r.steps.len(),
                r.deviations.len(),
                format_ms(r.started_at_ms),
                r.started_by
            )?;
        }
        Ok(())
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
