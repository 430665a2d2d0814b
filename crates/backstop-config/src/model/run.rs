//! `run`: how a release runs — the deployer and what it needs.

use std::collections::BTreeMap;
use std::time::Duration;

use backstop_core::duration::{
    DurationString, serde_duration as duration, serde_option_duration as option_duration,
};
use backstop_core::env_var::ENV_VAR_NAME_PATTERN;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use super::NonEmptyString;

/// How a release runs: the deployer and what every version gets (environment, health timing,
/// scale-down delay). Read from the flat `run` block of the file ([`RunFile`]), whose
/// combinations the validation has already checked, so each deployer holds exactly its keys.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(try_from = "RunFile")]
pub struct Run {
    /// Who starts and stops the versions.
    pub deployer: Deployer,
    /// Extra environment variables for the process or the scripts.
    pub env: BTreeMap<String, String>,
    /// Health check of a starting and running version; its timing (`start_timeout`,
    /// `interval`) also bounds how long a scripted deploy may take to become healthy.
    pub health: Health,
    /// How long the old version keeps running after a promotion.
    pub scale_down_delay: Duration,
    /// How many instances of each version run (kind `process`; 1 unless set).
    pub instances: u32,
    /// Checks of every instance besides `health` (kind `process`).
    pub probes: Vec<Probe>,
}

pub use backstop_core::partial::MAX_INSTANCES;

/// One more check of every instance of a version, besides the HTTP `health` check: a failing
/// probe makes the instance unhealthy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum Probe {
    /// An HTTP GET of `path` on the instance's port answers 2xx.
    Http {
        /// The path requested, such as `/ready`.
        #[schemars(pattern("^/"))]
        path: String,
    },
    /// A TCP connection to the instance's port is accepted.
    Tcp,
    /// A shell command exits 0 (run with `BACKSTOP_INSTANCE`, `BACKSTOP_PORT`,
    /// `BACKSTOP_SERVICE`, `BACKSTOP_ENV` and `BACKSTOP_VERSION` set; limited by
    /// `health.timeout`).
    Exec {
        /// The shell command to run, such as `test -S /run/app/$BACKSTOP_PORT.sock`.
        #[schemars(length(min = 1))]
        command: String,
    },
}

/// Who starts and stops the versions of a service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Deployer {
    /// Backstop starts each version as a process from `command` on a free port.
    Process {
        /// Shell command template (placeholders `{artifact}`, `{port}`, `{version}`,
        /// `{service}`, `{env}`).
        command: String,
    },
    /// Your scripts deploy, stop and check versions.
    Command(CommandScripts),
}

/// How a release runs. `kind: process` (default): a shell command started once per version on
/// a free port (`command`, `env`, `health`); `kind: command`: user scripts deploy, stop and check
/// a version (`deploy`, `stop`, `health_command`, `timeout`, `retries`).
#[derive(Debug, Clone, PartialEq, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Run")]
pub(crate) struct RunFile {
    /// The deployer: `process` (default; Backstop starts and supervises the process) or
    /// `command` (your scripts deploy and stop versions).
    #[serde(default)]
    kind: DeployerKind,
    /// Shell command template (required for kind `process`, not allowed for kind `command`).
    /// Placeholders: `{artifact}` (shell-quoted), `{port}` (required), `{version}`, `{service}`,
    /// `{env}`. Write `{{` and `}}` for literal braces; `${VAR}` is left to the shell.
    /// Empty for kind `command`.
    #[serde(default)]
    #[schemars(length(min = 1))]
    command: String,
    /// Extra environment variables for the process or the scripts (names like `LOG_LEVEL`;
    /// values are strings, quote numbers and booleans).
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": ENV_VAR_NAME_PATTERN}))]
    env: BTreeMap<String, String>,
    /// Health check of a starting and running version (kind `process`; kind `command` uses
    /// `health_command`).
    #[serde(default)]
    health: Health,
    /// How long the old version keeps running after a promotion (default `5s`).
    #[serde(default = "default_scale_down_delay", with = "duration")]
    #[schemars(with = "DurationString")]
    scale_down_delay: Duration,
    /// How many instances of each version run (kind `process`, default 1, at most 32), each on
    /// its own port behind the built-in proxy, which spreads a version's share of traffic
    /// over them and counts requests and errors per instance.
    #[serde(default = "default_instances")]
    #[schemars(range(min = 1, max = 32))]
    instances: u32,
    /// Checks of every instance besides `health` (kind `process`): `{kind: http, path}`,
    /// `{kind: tcp}`, `{kind: exec, command}`. An instance failing any is unhealthy.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    probes: Vec<Probe>,
    /// Kind `command`: shell command that deploys a version (required). Backstop passes the
    /// release in environment variables (`BACKSTOP_VERSION`, `BACKSTOP_ARTIFACT`, and
    /// `BACKSTOP_IDEMPOTENCY_KEY` so that the script can be made idempotent).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "NonEmptyString")]
    deploy: Option<String>,
    /// Kind `command`: shell command that stops a version (required).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "NonEmptyString")]
    stop: Option<String>,
    /// Kind `command`: shell command that exits 0 when the deployed version is healthy
    /// (optional).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "NonEmptyString")]
    health_command: Option<String>,
    /// Kind `command`: time limit of one script run (default `60s`); on expiry the script's
    /// process group gets SIGTERM, then SIGKILL.
    #[serde(default = "default_script_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    timeout: Duration,
    /// Kind `command`: how many times a failed or timed-out script run is retried (default 2,
    /// at most 10).
    #[serde(default = "default_retries")]
    #[schemars(range(max = 10))]
    retries: u32,
}

/// Deployers: who starts and stops the versions of a service.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum DeployerKind {
    /// Backstop starts each version as a process from `command` on a free port.
    #[default]
    Process,
    /// Your scripts (`deploy`, `stop`, `health_command`) deploy and stop versions.
    Command,
}

/// The scripts of a `kind: command` deployer, with their limits.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommandScripts {
    /// Deploys a version.
    pub deploy: String,
    /// Stops a version.
    pub stop: String,
    /// Exits 0 when the version is healthy (else the HTTP check is used).
    pub health: Option<String>,
    /// Time limit of one run.
    pub timeout: Duration,
    /// Retries after a failed or timed-out run.
    pub retries: u32,
}

impl TryFrom<RunFile> for Run {
    type Error = String;

    /// Validation has reported a missing `deploy`/`stop` with its position already; this
    /// guards a value that bypassed it.
    fn try_from(file: RunFile) -> Result<Self, String> {
        let deployer = match (file.kind, file.deploy, file.stop) {
            (DeployerKind::Process, _, _) => Deployer::Process {
                command: file.command,
            },
            (DeployerKind::Command, Some(deploy), Some(stop)) => {
                Deployer::Command(CommandScripts {
                    deploy,
                    stop,
                    health: file.health_command,
                    timeout: file.timeout,
                    retries: file.retries,
                })
            }
            (DeployerKind::Command, _, _) => {
                return Err("`kind: command` needs `deploy` and `stop`".to_owned());
            }
        };
        Ok(Self {
            deployer,
            env: file.env,
            health: file.health,
            scale_down_delay: file.scale_down_delay,
            instances: file.instances.clamp(1, MAX_INSTANCES),
            probes: file.probes,
        })
    }
}

/// The schema is the file's flat `run` block.
impl JsonSchema for Run {
    fn schema_name() -> std::borrow::Cow<'static, str> {
        RunFile::schema_name()
    }

    fn schema_id() -> std::borrow::Cow<'static, str> {
        RunFile::schema_id()
    }

    fn json_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
        RunFile::json_schema(generator)
    }
}

impl Run {
    /// The deployer's kind, as `run.kind` names it.
    #[must_use]
    pub fn kind(&self) -> DeployerKind {
        match self.deployer {
            Deployer::Process { .. } => DeployerKind::Process,
            Deployer::Command(_) => DeployerKind::Command,
        }
    }

    /// The scripts of a `kind: command` deployer; `None` for kind `process`.
    #[must_use]
    pub fn command_scripts(&self) -> Option<&CommandScripts> {
        match &self.deployer {
            Deployer::Process { .. } => None,
            Deployer::Command(scripts) => Some(scripts),
        }
    }
}

/// The effective form writes only the keys of its kind (so that it validates again).
impl Serialize for Run {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        #[derive(Serialize)]
        struct Out<'a> {
            kind: DeployerKind,
            #[serde(skip_serializing_if = "Option::is_none")]
            command: Option<&'a str>,
            env: &'a BTreeMap<String, String>,
            #[serde(skip_serializing_if = "Option::is_none")]
            health: Option<&'a Health>,
            #[serde(with = "duration")]
            scale_down_delay: Duration,
            #[serde(skip_serializing_if = "Option::is_none")]
            instances: Option<u32>,
            #[serde(skip_serializing_if = "<[Probe]>::is_empty")]
            probes: &'a [Probe],
            #[serde(skip_serializing_if = "Option::is_none")]
            deploy: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            stop: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none")]
            health_command: Option<&'a str>,
            #[serde(skip_serializing_if = "Option::is_none", with = "option_duration")]
            timeout: Option<Duration>,
            #[serde(skip_serializing_if = "Option::is_none")]
            retries: Option<u32>,
        }
        let (command, scripts) = match &self.deployer {
            Deployer::Process { command } => (Some(command.as_str()), None),
            Deployer::Command(scripts) => (None, Some(scripts)),
        };
        Out {
            kind: self.kind(),
            command,
            env: &self.env,
            health: command.map(|_| &self.health),
            scale_down_delay: self.scale_down_delay,
            instances: command.map(|_| self.instances),
            probes: &self.probes,
            deploy: scripts.map(|c| c.deploy.as_str()),
            stop: scripts.map(|c| c.stop.as_str()),
            health_command: scripts.and_then(|c| c.health.as_deref()),
            timeout: scripts.map(|c| c.timeout),
            retries: scripts.map(|c| c.retries),
        }
        .serialize(s)
    }
}

fn default_script_timeout() -> Duration {
    Duration::from_secs(60)
}

fn default_retries() -> u32 {
    2
}

fn default_instances() -> u32 {
    1
}

fn default_scale_down_delay() -> Duration {
    Duration::from_secs(5)
}

/// HTTP health check.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields, default)]
pub struct Health {
    /// Path requested on the version's port; a 2xx answer means healthy (default `/healthz`).
    #[schemars(pattern("^/"))]
    pub http: String,
    /// Timeout of one health request (default `2s`).
    #[serde(with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
    /// Time between health requests (default `1s`).
    #[serde(with = "duration")]
    #[schemars(with = "DurationString")]
    pub interval: Duration,
    /// How long a new version may take to become healthy before the release fails (default
    /// `30s`).
    #[serde(with = "duration")]
    #[schemars(with = "DurationString")]
    pub start_timeout: Duration,
}

impl Default for Health {
    fn default() -> Self {
        Self {
            http: "/healthz".to_owned(),
            timeout: Duration::from_secs(2),
            interval: Duration::from_secs(1),
            start_timeout: Duration::from_secs(30),
        }
    }
}
