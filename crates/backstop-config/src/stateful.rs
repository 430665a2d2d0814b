//! Stateful components (databases, queues) with their recovery point objective, the kind of an
//! environment (only non-production ones may be drilled), the known-bad variant a drill deploys,
//! and the check of MTTR targets against the recoveries drills measured.

use std::collections::BTreeMap;
use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use backstop_core::duration::{DurationString, format_duration, parse_duration, serde_duration};
use backstop_core::env_var::ENV_VAR_NAME_PATTERN;

use crate::model::NAME_PATTERN;
use crate::validate::Problem;
use crate::yaml::Document;
use crate::{Config, ConfigError};

/// Placeholders of a stateful component's `restore` command.
pub const RESTORE_PLACEHOLDERS: [&str; 4] = ["snapshot", "name", "service", "env"];
/// Placeholders of a stateful component's `snapshot` command.
pub const SNAPSHOT_PLACEHOLDERS: [&str; 3] = ["name", "service", "env"];

/// A stateful component of the service (a database, a queue, a volume): how often it is
/// snapshotted, how much data may be lost (RPO), and how a snapshot is restored. Schema-aware
/// rollback plans offer "restore a snapshot within RPO" with `restore`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Stateful {
    /// Name of the component, unique within the service (e.g. `orders-db`).
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    /// Recovery point objective: the most data (as time) that restoring may lose (e.g. `5m`);
    /// at least `snapshot_every`.
    #[serde(with = "serde_duration")]
    #[schemars(with = "DurationString")]
    pub rpo: Duration,
    /// How often a snapshot is taken (e.g. `5m`): the worst-case data loss of a restore.
    #[serde(with = "serde_duration")]
    #[schemars(with = "DurationString")]
    pub snapshot_every: Duration,
    /// Shell command that restores a snapshot; must contain `{snapshot}` (the snapshot to
    /// restore). Other placeholders: `{name}`, `{service}`, `{env}`.
    #[schemars(length(min = 1))]
    pub restore: String,
    /// Shell command that takes a snapshot (optional). Placeholders: `{name}`, `{service}`,
    /// `{env}`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "crate::model::NonEmptyString")]
    pub snapshot: Option<String>,
}

impl Stateful {
    /// The restore command for `snapshot` in environment `env` of `service` (values
    /// shell-quoted when needed).
    #[must_use]
    pub fn restore_command(&self, snapshot: &str, service: &str, env: &str) -> String {
        crate::command::render_with(&self.restore, |name| match name {
            "snapshot" => Some(snapshot.to_owned()),
            "name" => Some(self.name.clone()),
            "service" => Some(service.to_owned()),
            "env" => Some(env.to_owned()),
            _ => None,
        })
    }

    /// The snapshot command in environment `env` of `service`, when one is declared.
    #[must_use]
    pub fn snapshot_command(&self, service: &str, env: &str) -> Option<String> {
        self.snapshot.as_deref().map(|t| {
            crate::command::render_with(t, |name| match name {
                "name" => Some(self.name.clone()),
                "service" => Some(service.to_owned()),
                "env" => Some(env.to_owned()),
                _ => None,
            })
        })
    }
}

/// What an environment is. Only non-production environments (`staging`, `development`,
/// `test`) may be drilled; the default is `production`, so an environment must be marked
/// explicitly before `backstop drill` deploys a known-bad release there.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum EnvKind {
    /// Serves real users (default). Never drilled.
    #[default]
    Production,
    /// Pre-production copy of production; drills run here.
    Staging,
    /// A developers' environment.
    Development,
    /// An environment for automated tests.
    Test,
}

impl EnvKind {
    /// The name used in the config.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Production => "production",
            Self::Staging => "staging",
            Self::Development => "development",
            Self::Test => "test",
        }
    }
}

/// How `backstop drill` makes a known-bad variant of the environment's last known good
/// release: the same artifact with this extra environment (e.g. `{DEMO_ERROR_RATIO: "0.2"}`, a
/// fault-injection flag of your service).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DrillSpec {
    /// Environment variables added to the last known good release's own (at least one) that
    /// make it misbehave. Values are strings: quote numbers and booleans.
    #[schemars(length(min = 1))]
    #[schemars(extend("propertyNames" = {"pattern": ENV_VAR_NAME_PATTERN}, "minProperties" = 1))]
    pub env: BTreeMap<String, String>,
}

/// `stateful`: unique names, positive durations, RPO at least the snapshot interval, the
/// placeholders of each command.
pub(crate) fn check_stateful(
    doc: &Document,
    svc: &Value,
    sp: &str,
    push: &mut impl FnMut(String, String),
    direct: &mut Vec<Problem>,
) {
    let Some(items) = svc.get("stateful").and_then(Value::as_array) else {
        return;
    };
    let mut names: BTreeMap<&str, usize> = BTreeMap::new();
    for (k, item) in items.iter().enumerate() {
        let ip = format!("{sp}/stateful/{k}");
        if let Some(name) = item.get("name").and_then(Value::as_str) {
            if let Some(first) = names.get(name) {
                let at = doc.value_pos(&format!("{sp}/stateful/{first}/name"));
                push(
                    format!("{ip}/name"),
                    format!(
                        "duplicate stateful component `{name}` (first defined at line {})",
                        at.line
                    ),
                );
            } else {
                names.insert(name, k);
            }
        }
        let positive = |key: &str, push: &mut dyn FnMut(String, String)| {
            let d = parse_duration(item.get(key)?.as_str()?).ok()?;
            if d.is_zero() {
                push(format!("{ip}/{key}"), "must be greater than 0".to_owned());
                return None;
            }
            Some(d)
        };
        let rpo = positive("rpo", push);
        let every = positive("snapshot_every", push);
        if let (Some(rpo), Some(every)) = (rpo, every)
            && rpo < every
        {
            push(
                format!("{ip}/rpo"),
                format!(
                    "the RPO cannot be met: rpo ({}) is shorter than snapshot_every ({}), so a restore can lose up to {} of data (snapshot at least every {} or raise rpo)",
                    format_duration(rpo),
                    format_duration(every),
                    format_duration(every),
                    format_duration(rpo)
                ),
            );
        }
        for (key, allowed, required) in [
            ("restore", &RESTORE_PLACEHOLDERS[..], Some("snapshot")),
            ("snapshot", &SNAPSHOT_PLACEHOLDERS[..], None),
        ] {
            let Some(template) = item.get(key).and_then(Value::as_str) else {
                continue;
            };
            let ptr = format!("{ip}/{key}");
            let at = doc.value_pos(&ptr);
            let used = crate::command::placeholders(template);
            for name in &used {
                if !allowed.contains(name) {
                    let hint = match crate::suggest::closest(name, allowed.iter().copied()) {
                        Some(s) => format!("did you mean `{{{s}}}`? "),
                        None => String::new(),
                    };
                    direct.push(Problem {
                        pos: doc.find_after(at, &format!("{{{name}}}")),
                        path: ptr.clone(),
                        message: format!(
                            "unknown placeholder `{{{name}}}` ({hint}allowed: {})",
                            allowed
                                .iter()
                                .map(|p| format!("{{{p}}}"))
                                .collect::<Vec<_>>()
                                .join(", ")
                        ),
                    });
                }
            }
            if let Some(req) = required
                && !template.trim().is_empty()
                && !used.contains(&req)
            {
                push(
                    ptr,
                    format!(
                        "the restore command must contain `{{{req}}}`: which snapshot to restore (e.g. `./restore-db {{{req}}}`)"
                    ),
                );
            }
        }
    }
}

/// A recovery measured by a drill (read from the state store by the binary), compared with the
/// service's MTTR target by [`check_measured`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct MeasuredRecovery {
    /// The drilled service.
    pub service: String,
    /// The environment the drill ran in.
    pub env: String,
    /// The drill's id.
    pub drill_id: String,
    /// When the drill ran (RFC 3339 UTC).
    pub date: String,
    /// First request on the bad release → recovery done; `None` when the drill did not restore
    /// service.
    #[serde(rename = "recovered_ms", serialize_with = "as_ms")]
    pub recovered: Option<Duration>,
}

fn as_ms<S: serde::Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_u64(u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        None => s.serialize_none(),
    }
}

/// Formats a measured duration to the millisecond (`12.345s`, `3m 2.1s`).
fn measured(d: Duration) -> String {
    let ms = Duration::from_millis(u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    format_duration(ms)
}

/// Compares each service's MTTR target (`objectives.mttr`, or the tier default) with the last
/// drill's measured recovery: an error, located at the objective (or at `tier` when the target
/// is the tier default), when the target is shorter or the drill did not restore service.
/// `text` and `file_name` are the config as read (for positions); `last` holds at most one
/// measurement per service (the latest).
#[must_use]
pub fn check_measured(
    text: &str,
    file_name: &str,
    config: &Config,
    last: &[MeasuredRecovery],
) -> Vec<ConfigError> {
    let doc = crate::yaml::read(text);
    let Some(root) = &doc.value else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for m in last {
        let Some(svc) = config.service(&m.service) else {
            continue;
        };
        let Some(i) = config.services.iter().position(|s| s.name == m.service) else {
            continue;
        };
        let target = svc.mttr();
        let written = root
            .pointer(&format!("/services/{i}/objectives/mttr"))
            .is_some();
        let (path, what) = if written {
            (format!("/services/{i}/objectives/mttr"), String::new())
        } else {
            (
                format!("/services/{i}/tier"),
                format!(" (the tier-{} default)", svc.tier),
            )
        };
        let message = match m.recovered {
            Some(took) if took > target => format!(
                "the MTTR target cannot be met: mttr ({}){what} is shorter than the recovery measured by drill {} on {} in `{}` ({}); make recovery faster or raise mttr, then drill again",
                format_duration(target),
                m.drill_id,
                m.date,
                m.env,
                measured(took)
            ),
            Some(_) => continue,
            None => format!(
                "the MTTR target ({}){what} is not demonstrated: the last drill, {} on {} in `{}`, did not restore service; fix recovery and drill again",
                format_duration(target),
                m.drill_id,
                m.date,
                m.env
            ),
        };
        let pos = doc.value_pos(&path);
        out.push(ConfigError {
            file: file_name.to_owned(),
            line: pos.line,
            col: pos.col,
            path,
            message,
        });
    }
    out
}
