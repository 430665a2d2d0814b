//! `environments`: where a service runs, and the parameters it has there.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use backstop_core::duration::{DurationString, serde_option_duration as option_duration};
use backstop_core::env_var::ENV_VAR_NAME_PATTERN;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::{EnvVarName, NAME_PATTERN, NonEmptyString, SocketAddrString};

/// One environment the service runs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Name, unique within the service (e.g. `staging`, `prod`).
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    /// Address the built-in proxy listens on for this environment, `IP:PORT`
    /// (e.g. `127.0.0.1:8080`); unique across the file. Required with `router: builtin`,
    /// optional with the other routers (the load balancer is the entry point).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "SocketAddrString")]
    pub listen: Option<SocketAddr>,
    /// The agent (`agents[].name`) of the host this environment runs on: its built-in proxy
    /// and its instances run there, driven by whichever replica holds the work. Without it they
    /// run on the daemon's own host. Needs `router: builtin` and `run.kind: process`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(NAME_PATTERN))]
    pub agent: Option<String>,
    /// The least readiness level (`backstop scorecard`: bronze, silver, gold) a service must
    /// reach before a rollout into this environment; a critical change (`--critical --reason`)
    /// passes below it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub readiness: Option<backstop_core::scorecard::Readiness>,
    /// Regulated environments: overrides need a second approver; automatic rollback is
    /// mandatory.
    #[serde(default)]
    pub regulated: bool,
    /// Overrides the service's `objectives.rollback_sla` in this environment.
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub rollback_sla: Option<Duration>,
    /// Overrides the service's `migrations.database_url_env` in this environment.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(pattern(r"^[A-Za-z_][A-Za-z0-9_]*$"))]
    pub database_url_env: Option<String>,
    /// Scheduled freeze windows of this environment, for every service (UTC), e.g.
    /// `[{from: 2026-12-20T00:00:00Z, until: 2027-01-03T00:00:00Z, reason: holidays}]`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub freeze: Vec<crate::freeze::FreezeWindow>,
    /// The environment-specific parameters of the service here (config files and folders, env
    /// values, secrets by reference). Backstop snapshots them before every rollout
    /// (`backstop config history|diff|restore`); `env` values and secrets reach the instances.
    #[serde(default, skip_serializing_if = "Params::is_empty")]
    pub params: Params,
    /// What the environment is: `production` (default), `staging`, `development` or `test`.
    /// `backstop drill` runs only in non-production, non-regulated environments.
    #[serde(default)]
    pub kind: crate::stateful::EnvKind,
}

/// Environment-specific parameters of a service. Paths are relative to the config file's
/// folder (or absolute).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Params {
    /// Config files of this environment (e.g. `config/prod.toml`), snapshotted by content.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<NonEmptyString>")]
    pub files: Vec<String>,
    /// Folders of config files (e.g. `config/prod.d`), snapshotted file by file, recursively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(with = "Vec<NonEmptyString>")]
    pub folders: Vec<String>,
    /// Environment values given to every instance in this environment (names like `LOG_LEVEL`;
    /// values are strings). They override `run.env`; a release's own env overrides them.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": ENV_VAR_NAME_PATTERN}))]
    pub env: BTreeMap<String, String>,
    /// Secrets given to instances as environment variables, by reference only: `{env: VAR}`
    /// (read from the daemon's environment) or `{file: PATH}` (one trailing newline dropped).
    /// The value is never stored, printed or logged; snapshots keep a keyed HMAC of it so a
    /// diff can say "changed".
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    #[schemars(extend("propertyNames" = {"pattern": ENV_VAR_NAME_PATTERN}))]
    #[schemars(with = "BTreeMap<String, SecretRefSchema>")]
    pub secrets: BTreeMap<String, SecretRef>,
}

impl Params {
    /// No files, folders, env values or secrets.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.files.is_empty()
            && self.folders.is_empty()
            && self.env.is_empty()
            && self.secrets.is_empty()
    }
}

/// Where a secret's value comes from (never the value itself).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub enum SecretRef {
    /// An environment variable of the daemon, e.g. `{env: PROD_DB_PASSWORD}`.
    Env(#[schemars(with = "EnvVarName")] String),
    /// A file holding the value, relative to the config file's folder, e.g.
    /// `{file: secrets/db_password}`.
    File(#[schemars(with = "NonEmptyString")] String),
}

/// Where a secret's value comes from: exactly one of `env` and `file`.
#[derive(JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("minProperties" = 1, "maxProperties" = 1))]
#[allow(dead_code)] // schema only
pub(crate) struct SecretRefSchema {
    /// An environment variable of the daemon holding the value, e.g. `PROD_DB_PASSWORD`.
    #[serde(default)]
    #[schemars(with = "EnvVarName")]
    env: Option<String>,
    /// A file holding the value, relative to the config file's folder, e.g.
    /// `secrets/db_password`.
    #[serde(default)]
    #[schemars(with = "NonEmptyString")]
    file: Option<String>,
}

impl std::fmt::Display for SecretRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Env(name) => write!(f, "env:{name}"),
            Self::File(path) => write!(f, "file:{path}"),
        }
    }
}
