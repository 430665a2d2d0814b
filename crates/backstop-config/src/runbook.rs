//! Runbooks as code: a YAML file of manual, command and verification steps, the inputs they take
//! and the role allowed to run them (practice 5.2).
//!
//! A run is pinned to the exact text it followed: [`Runbook::digest`] is the sha256 of the file's
//! bytes, so a runbook edited after a run can be told apart from the one that was run.
//!
//! ```yaml
//! name: restore-orders-db
//! version: 3
//! role: incident-commander
//! inputs:
//!   - {name: snapshot, description: "snapshot id from `backstop snapshot list`"}
//!   - {name: host, default: db1}
//! steps:
//!   - {id: announce, kind: manual, title: "Tell #orders that writes stop"}
//!   - {id: restore, kind: command, title: Restore, run: "restore-db {snapshot} --host {host}", timeout: 10m}
//!   - {id: rows, kind: verify, title: Orders are back, run: "count-orders {host}"}
//! ```
//!
//! Errors are reported like the config's: every problem at once, each as
//! `FILE:LINE:COL: /json/pointer: message`.

use std::collections::HashSet;
use std::path::Path;
use std::time::Duration;

use backstop_core::access::Role;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::{ConfigError, ConfigErrors, yaml};

/// How long a command or verify step may run when the runbook says nothing.
pub const DEFAULT_STEP_TIMEOUT: Duration = Duration::from_secs(300);

/// A parsed, checked runbook.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Runbook {
    pub name: String,
    /// The author's version number; the digest is what pins a run.
    pub version: u32,
    pub description: String,
    /// The least role that may run it.
    pub role: Role,
    pub inputs: Vec<Input>,
    pub steps: Vec<RunbookStep>,
    /// sha256 of the file's bytes, hex.
    pub digest: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Input {
    pub name: String,
    #[serde(default)]
    pub description: String,
    /// Used when the run gives no value; an input without one must be given.
    #[serde(default)]
    pub default: Option<String>,
}

/// What a step is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StepKind {
    /// A person does it and says so.
    Manual,
    /// Backstop runs `run`; exit 0 is done.
    Command,
    /// A check: `run` exits 0 when it holds, or, without `run`, a person confirms it.
    Verify,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunbookStep {
    pub id: String,
    pub kind: StepKind,
    pub title: String,
    /// A shell command with `{input}` placeholders (command steps, automated verify steps).
    pub run: Option<String>,
    #[serde(with = "duration_text")]
    pub timeout: Duration,
}

mod duration_text {
    use std::time::Duration;

    pub fn serialize<S: serde::Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&crate::format_duration(*d))
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRunbook {
    name: String,
    version: u32,
    #[serde(default)]
    description: String,
    role: Role,
    #[serde(default)]
    inputs: Vec<Input>,
    steps: Vec<RawStep>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawStep {
    id: String,
    kind: StepKind,
    title: String,
    #[serde(default)]
    run: Option<String>,
    #[serde(default)]
    timeout: Option<String>,
}

impl Runbook {
    /// The values of a run's inputs: each given one, else its default; every given name must be
    /// an input, and every input without a default must be given.
    ///
    /// # Errors
    /// Each unknown or missing input, in one message.
    pub fn resolve_inputs(
        &self,
        given: &[(String, String)],
    ) -> Result<Vec<(String, String)>, String> {
        let mut problems = Vec::new();
        for (name, _) in given {
            if !self.inputs.iter().any(|i| &i.name == name) {
                problems.push(format!("unknown input `{name}`"));
            }
        }
        let mut out = Vec::new();
        for input in &self.inputs {
            let value = given
                .iter()
                .rev()
                .find(|(n, _)| n == &input.name)
                .map(|(_, v)| v.clone())
                .or_else(|| input.default.clone());
            match value {
                Some(v) => out.push((input.name.clone(), v)),
                None => problems.push(format!("input `{}` is required", input.name)),
            }
        }
        if problems.is_empty() {
            Ok(out)
        } else {
            let names: Vec<&str> = self.inputs.iter().map(|i| i.name.as_str()).collect();
            Err(format!(
                "{} (inputs of runbook {}: {})",
                problems.join("; "),
                self.name,
                if names.is_empty() {
                    "none".to_owned()
                } else {
                    names.join(", ")
                }
            ))
        }
    }
}

impl RunbookStep {
    /// The step's command with the run's input values in place (shell-quoted).
    #[must_use]
    pub fn command(&self, inputs: &[(String, String)]) -> Option<String> {
        self.run.as_ref().map(|template| {
            crate::command::render_with(template, |name| {
                inputs
                    .iter()
                    .find(|(n, _)| n == name)
                    .map(|(_, v)| v.clone())
            })
        })
    }

    /// Whether Backstop runs it (else a person reports it done).
    #[must_use]
    pub fn automated(&self) -> bool {
        self.run.is_some()
    }
}

fn is_id(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 64
        && s.bytes()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'-' || c == b'_')
}

/// Reads and checks a runbook file.
///
/// # Errors
/// Every problem found, sorted by position; an unreadable file gives one error naming it.
pub fn load_runbook(path: &Path) -> Result<Runbook, ConfigErrors> {
    let file = path.display().to_string();
    match std::fs::read(path) {
        Ok(bytes) => parse_runbook(&bytes, &file),
        Err(e) => Err(ConfigErrors(vec![ConfigError {
            file,
            line: 0,
            col: 0,
            path: String::new(),
            message: format!("cannot read the runbook: {e}"),
        }])),
    }
}

/// Reads every runbook at `path`: one file, or each `*.yaml` and `*.yml` file of a folder (not
/// its subfolders), sorted by name. Two runbooks with one name are an error.
///
/// # Errors
/// Every problem of every file, and each duplicate name (at the later file's `name`).
pub fn load_runbooks(path: &Path) -> Result<Vec<Runbook>, ConfigErrors> {
    let unreadable = |e: std::io::Error| {
        ConfigErrors(vec![ConfigError {
            file: path.display().to_string(),
            line: 0,
            col: 0,
            path: String::new(),
            message: format!("cannot read the runbooks: {e}"),
        }])
    };
    let files = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)
            .map_err(unreadable)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| {
                p.is_file()
                    && matches!(p.extension().and_then(|e| e.to_str()), Some("yaml" | "yml"))
            })
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    let mut runbooks: Vec<Runbook> = Vec::new();
    let mut errors = Vec::new();
    for file in &files {
        match load_runbook(file) {
            Ok(rb) => {
                if let Some(first) = runbooks.iter().find(|r| r.name == rb.name) {
                    errors.push(ConfigError {
                        file: file.display().to_string(),
                        line: 0,
                        col: 0,
                        path: "/name".into(),
                        message: format!(
                            "a second runbook named `{}` (the first is version {}, sha256 {}); names must be unique",
                            rb.name,
                            first.version,
                            &first.digest[..12]
                        ),
                    });
                } else {
                    runbooks.push(rb);
                }
            }
            Err(e) => errors.extend(e.0),
        }
    }
    if errors.is_empty() {
        Ok(runbooks)
    } else {
        Err(ConfigErrors(errors))
    }
}

/// Parses and checks a runbook's bytes. `file_name` is only used in error messages.
///
/// # Errors
/// Every problem found, sorted by position.
pub fn parse_runbook(bytes: &[u8], file_name: &str) -> Result<Runbook, ConfigErrors> {
    let error = |pos: yaml::Pos, path: String, message: String| ConfigError {
        file: file_name.to_owned(),
        line: pos.line,
        col: pos.col,
        path,
        message,
    };
    let text = match std::str::from_utf8(bytes) {
        Ok(text) => text,
        Err(e) => {
            // Point at the first byte that is not UTF-8.
            let before = String::from_utf8_lossy(&bytes[..e.valid_up_to()]);
            let line = before.matches('\n').count() + 1;
            let col = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
            return Err(ConfigErrors(vec![error(
                yaml::Pos { line, col },
                String::new(),
                "the runbook is not UTF-8 text".to_owned(),
            )]));
        }
    };
    let doc = yaml::read(text);
    let mut errors: Vec<ConfigError> = doc
        .problems
        .iter()
        .map(|p| error(p.pos, p.path.clone(), p.message.clone()))
        .collect();
    let (Some(value), false) = (&doc.value, doc.fatal) else {
        if errors.is_empty() {
            errors.push(error(
                yaml::Pos { line: 1, col: 1 },
                String::new(),
                "the runbook is empty (expected name, version, role and steps)".to_owned(),
            ));
        }
        return Err(ConfigErrors::normalized(errors));
    };
    if !errors.is_empty() {
        return Err(ConfigErrors::normalized(errors));
    }
    let raw: RawRunbook = match serde_path_to_error::deserialize(value.clone()) {
        Ok(raw) => raw,
        Err(e) => {
            let path = crate::json_pointer(e.path());
            return Err(ConfigErrors(vec![error(
                doc.value_pos(&path),
                path,
                crate::serde_message(&e.inner().to_string()),
            )]));
        }
    };

    let mut problem = |path: String, message: String| {
        errors.push(error(doc.value_pos(&path), path, message));
    };
    if !is_id(&raw.name) {
        problem(
            "/name".to_owned(),
            "a runbook name is 1-64 lowercase letters, digits, `-` or `_`".to_owned(),
        );
    }
    let mut input_names = HashSet::new();
    for (i, input) in raw.inputs.iter().enumerate() {
        if !is_id(&input.name) {
            problem(
                format!("/inputs/{i}/name"),
                "an input name is 1-64 lowercase letters, digits, `-` or `_`".to_owned(),
            );
        } else if !input_names.insert(input.name.as_str()) {
            problem(
                format!("/inputs/{i}/name"),
                format!("input `{}` is declared twice", input.name),
            );
        }
    }
    if raw.steps.is_empty() {
        problem(
            "/steps".to_owned(),
            "a runbook needs at least one step".to_owned(),
        );
    }
    let mut step_ids = HashSet::new();
    let mut steps = Vec::with_capacity(raw.steps.len());
    for (i, step) in raw.steps.into_iter().enumerate() {
        let at = |field: &str| format!("/steps/{i}/{field}");
        if !is_id(&step.id) {
            problem(
                at("id"),
                "a step id is 1-64 lowercase letters, digits, `-` or `_`".to_owned(),
            );
        } else if !step_ids.insert(step.id.clone()) {
            problem(at("id"), format!("step id `{}` is used twice", step.id));
        }
        if step.title.trim().is_empty() {
            problem(
                at("title"),
                "a step needs a title saying what to do".to_owned(),
            );
        }
        match (step.kind, &step.run) {
            (StepKind::Command, None) => problem(
                format!("/steps/{i}"),
                "a command step needs `run`, the command Backstop runs".to_owned(),
            ),
            (StepKind::Manual, Some(_)) => problem(
                at("run"),
                "a manual step is done by a person and has no `run` (make it a command step)"
                    .to_owned(),
            ),
            _ => {}
        }
        if let Some(run) = &step.run {
            if run.trim().is_empty() {
                problem(at("run"), "the command is empty".to_owned());
            }
            for name in crate::command::placeholders(run) {
                if !input_names.contains(name) {
                    problem(
                        at("run"),
                        format!(
                            "`{{{name}}}` is not an input of this runbook (declare it under `inputs`; write `{{{{` for a literal brace)"
                        ),
                    );
                }
            }
        }
        let timeout = match &step.timeout {
            None => DEFAULT_STEP_TIMEOUT,
            Some(text) => match crate::parse_duration(text) {
                Ok(d) if d > Duration::ZERO => d,
                Ok(_) => {
                    problem(at("timeout"), "the timeout must be above zero".to_owned());
                    DEFAULT_STEP_TIMEOUT
                }
                Err(message) => {
                    problem(at("timeout"), message);
                    DEFAULT_STEP_TIMEOUT
                }
            },
        };
        if step.timeout.is_some() && step.run.is_none() {
            problem(
                at("timeout"),
                "only a step with `run` has a timeout".to_owned(),
            );
        }
        steps.push(RunbookStep {
            id: step.id,
            kind: step.kind,
            title: step.title,
            run: step.run,
            timeout,
        });
    }
    if !errors.is_empty() {
        return Err(ConfigErrors::normalized(errors));
    }
    Ok(Runbook {
        name: raw.name,
        version: raw.version,
        description: raw.description,
        role: raw.role,
        inputs: raw.inputs,
        steps,
        digest: hex::encode(Sha256::digest(bytes)),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const GOOD: &str = "\
name: restore-orders-db
version: 3
role: incident-commander
inputs:
  - {name: snapshot}
  - {name: host, default: db1}
steps:
  - {id: announce, kind: manual, title: Tell the channel}
  - {id: restore, kind: command, title: Restore, run: \"restore {snapshot} --host {host}\", timeout: 10m}
  - {id: rows, kind: verify, title: Orders are back, run: \"count {host}\"}
  - {id: eyeball, kind: verify, title: The shop page shows orders}
";

    fn errors(text: &str) -> Vec<String> {
        parse_runbook(text.as_bytes(), "rb.yaml")
            .expect_err("should be refused")
            .0
            .iter()
            .map(ToString::to_string)
            .collect()
    }

    #[test]
    fn a_good_runbook_parses_with_its_digest() {
        let rb = parse_runbook(GOOD.as_bytes(), "rb.yaml").unwrap();
        assert_eq!(rb.name, "restore-orders-db");
        assert_eq!(rb.role, Role::IncidentCommander);
        assert_eq!(rb.steps.len(), 4);
        assert_eq!(rb.steps[1].timeout, Duration::from_secs(600));
        assert_eq!(rb.steps[2].timeout, DEFAULT_STEP_TIMEOUT);
        assert!(!rb.steps[3].automated());
        assert_eq!(rb.digest, hex::encode(Sha256::digest(GOOD.as_bytes())));
        let edited = GOOD.replace("Tell the channel", "Tell the channel now");
        assert_ne!(
            parse_runbook(edited.as_bytes(), "rb.yaml").unwrap().digest,
            rb.digest
        );
    }

    #[test]
    fn inputs_are_resolved_and_quoted_into_commands() {
        let rb = parse_runbook(GOOD.as_bytes(), "rb.yaml").unwrap();
        let inputs = rb
            .resolve_inputs(&[("snapshot".into(), "s 1; rm -rf /".into())])
            .unwrap();
        assert_eq!(
            rb.steps[1].command(&inputs).unwrap(),
            "restore 's 1; rm -rf /' --host db1"
        );
        let err = rb
            .resolve_inputs(&[("snapshto".into(), "x".into())])
            .unwrap_err();
        assert!(err.contains("unknown input `snapshto`"), "{err}");
        assert!(err.contains("input `snapshot` is required"), "{err}");
    }

    #[test]
    fn every_problem_is_reported_at_its_place() {
        let text = "\
name: Bad Name
version: 1
role: admin
steps:
  - {id: a, kind: command, title: x}
  - {id: a, kind: manual, title: y, run: echo}
  - {id: c, kind: verify, title: z, run: \"check {nope}\", timeout: soon}
";
        let errs = errors(text);
        let expect = [
            "rb.yaml:1:7: /name:",
            "rb.yaml:5:5: /steps/0: a command step needs `run`",
            "rb.yaml:6:10: /steps/1/id: step id `a` is used twice",
            "rb.yaml:6:42: /steps/1/run: a manual step",
            "rb.yaml:7:42: /steps/2/run: `{nope}` is not an input",
            "rb.yaml:7:67: /steps/2/timeout: invalid duration",
        ];
        for e in expect {
            assert!(errs.iter().any(|x| x.contains(e)), "{e} not in {errs:#?}");
        }
    }

    #[test]
    fn unknown_fields_kinds_and_roles_are_refused() {
        assert!(
            errors("name: a\nversion: 1\nrole: admin\nsteps: []\nextra: 1\n")[0]
                .contains("unknown field `extra`")
        );
        let e = errors(
            "name: a\nversion: 1\nrole: admin\nsteps:\n  - {id: a, kind: script, title: x}\n",
        );
        assert!(e[0].starts_with("rb.yaml:5:"), "{e:?}");
        assert!(e[0].contains("/steps/0/kind"), "{e:?}");
        let e = errors("name: a\nversion: 1\nrole: root\nsteps: []\n");
        assert!(e[0].contains("/role"), "{e:?}");
        let e = errors("");
        assert!(e[0].contains("no YAML document"), "{e:?}");
        assert!(parse_runbook(&[0xff, 0xfe], "rb.yaml").is_err());
    }
}
