//! `run`: the keys each deployer kind needs and the keys it does not take.

use serde_json::Value;

use super::Problem;
use super::semantic::key_problem;
use crate::yaml::Document;

/// `run.kind`: the keys each deployer needs and the keys it does not take.
pub(super) fn check_run_kind(
    doc: &Document,
    svc: &Value,
    sp: &str,
    kind: &str,
    push: &mut impl FnMut(String, String),
    direct: &mut Vec<Problem>,
) {
    let Some(run) = svc.get("run").and_then(Value::as_object) else {
        return;
    };
    let rp = format!("{sp}/run");
    match kind {
        "process" => {
            if !run.contains_key("command") {
                push(
                    rp.clone(),
                    "missing required key `command` (the shell command that starts a version, e.g. `./app --port {port}`; or set `kind: command` to use deploy/stop scripts)".to_owned(),
                );
            }
            for key in ["deploy", "stop", "health_command", "timeout", "retries"] {
                if run.contains_key(key) {
                    direct.push(key_problem(
                        doc,
                        format!("{rp}/{key}"),
                        format!(
                            "`{key}` is only for `kind: command` (user scripts); this run is `kind: process`, which starts `command`"
                        ),
                    ));
                }
            }
        }
        "command" => {
            if run.contains_key("command") {
                direct.push(key_problem(
                    doc,
                    format!("{rp}/command"),
                    "`command` is not allowed with `kind: command` (the `deploy` and `stop` scripts run the versions)".to_owned(),
                ));
            }
            if run.contains_key("health") {
                direct.push(key_problem(
                    doc,
                    format!("{rp}/health"),
                    "`health` is for `kind: process`; with `kind: command` use `health_command`"
                        .to_owned(),
                ));
            }
            let missing: Vec<&str> = ["deploy", "stop"]
                .into_iter()
                .filter(|k| !run.contains_key(*k))
                .collect();
            if !missing.is_empty() {
                let (noun, list) = match missing.as_slice() {
                    [one] => ("key", format!("`{one}`")),
                    _ => ("keys", "`deploy`, `stop`".to_owned()),
                };
                push(
                    rp,
                    format!(
                        "missing required {noun} {list} (required for `kind: command`: the scripts that deploy and stop a version)"
                    ),
                );
            }
        }
        _ => {}
    }
}
