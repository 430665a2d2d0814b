//! The typed model of `backstop.yaml`, in its *effective* form: after [`crate::parse`] every
//! default is filled in (objectives from the tier, rollout steps, analysis merged from
//! `defaults.analysis`).
//!
//! Doc comments on these types become the descriptions of the JSON Schema.

use std::borrow::Cow;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use backstop_judge::JudgeSettings;
use schemars::{JsonSchema, Schema, SchemaGenerator, json_schema};
use serde::{Deserialize, Serialize};

/// Pattern of a service or environment name.
pub const NAME_PATTERN: &str = "^[a-z][a-z0-9-]{0,62}$";
/// Pattern of an environment variable name in `run.env`.
pub const ENV_KEY_PATTERN: &str = "^[A-Z_][A-Z0-9_]*$";
/// Pattern (for editors) of a duration string; the exact check is humantime's parser.
pub const DURATION_PATTERN: &str = r"^\s*[0-9]+\s*[a-zA-Zµμ]+(\s*[0-9]+\s*[a-zA-Zµμ]+)*\s*$";

/// A `backstop.yaml` file: the services Backstop protects and how their releases roll out and
/// recover.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(title = "backstop.yaml")]
pub struct Config {
    /// Settings every service inherits unless it overrides them.
    #[serde(default)]
    pub defaults: Defaults,
    /// The services Backstop manages (at least one).
    #[schemars(length(min = 1))]
    pub services: Vec<Service>,
}

/// Settings every service inherits unless it overrides them.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Defaults {
    /// Analysis settings merged (deeply) under every service's own `analysis` block.
    /// Same keys as a service's `analysis`; every key is optional.
    #[serde(default = "empty_object")]
    #[schemars(with = "JudgeSettings")]
    pub analysis: serde_json::Value,
}

impl Default for Defaults {
    fn default() -> Self {
        Self {
            analysis: empty_object(),
        }
    }
}

fn empty_object() -> serde_json::Value {
    serde_json::Value::Object(serde_json::Map::new())
}

/// One service: who owns it, how critical it is, how a release runs, rolls out and recovers.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Service {
    /// Unique name: lowercase letters, digits and `-`, starting with a letter, at most 63
    /// characters (e.g. `checkout`).
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    /// Who is responsible for the service (a team or a person).
    #[schemars(length(min = 1))]
    pub owner: String,
    /// Criticality from 0 (most critical) to 3; recovery objectives default from it.
    #[schemars(range(max = 3))]
    pub tier: u8,
    /// Recovery objectives; each defaults from the tier.
    #[serde(default)]
    pub objectives: Objectives,
    /// How a release of this service runs (process deployer).
    pub run: Run,
    /// How traffic reaches the versions of this service.
    #[serde(default)]
    pub traffic: Traffic,
    /// How a new release takes over traffic.
    #[serde(default)]
    pub rollout: RolloutSpec,
    /// How a canary is judged. Merged over `defaults.analysis`; every key is optional.
    #[serde(default)]
    pub analysis: JudgeSettings,
    /// Where the service runs (at least one environment, unique names).
    #[schemars(length(min = 1))]
    pub environments: Vec<Environment>,
}

/// Recovery objectives. Defaults by tier: `mttr` 15m / 1h / 4h / 24h and `rollback_sla`
/// 5m / 10m / 30m / 1h for tiers 0 / 1 / 2 / 3.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Objectives {
    /// Target mean time to restore service after a bad release (e.g. `15m`).
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub mttr: Option<Duration>,
    /// Longest allowed time from detection to traffic restored (e.g. `5m`); at most `mttr`.
    #[serde(
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub rollback_sla: Option<Duration>,
}

impl Objectives {
    /// The default objectives of a tier (0..=3); tiers above 3 get the tier-3 values.
    #[must_use]
    pub fn for_tier(tier: u8) -> Self {
        let (mttr, sla) = match tier {
            0 => (15 * 60, 5 * 60),
            1 => (60 * 60, 10 * 60),
            2 => (4 * 60 * 60, 30 * 60),
            _ => (24 * 60 * 60, 60 * 60),
        };
        Self {
            mttr: Some(Duration::from_secs(mttr)),
            rollback_sla: Some(Duration::from_secs(sla)),
        }
    }
}

/// How a release runs: a shell command started once per version on a free port.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Run {
    /// Shell command template. Placeholders: `{artifact}` (shell-quoted), `{port}` (required),
    /// `{version}`, `{service}`, `{env}`. Write `{{` and `}}` for literal braces; `${VAR}` is
    /// left to the shell.
    #[schemars(length(min = 1))]
    pub command: String,
    /// Extra environment variables for the process (names like `LOG_LEVEL`; values are strings,
    /// quote numbers and booleans).
    #[serde(default)]
    #[schemars(extend("propertyNames" = {"pattern": ENV_KEY_PATTERN}))]
    pub env: BTreeMap<String, String>,
    /// Health check of a starting and running version.
    #[serde(default)]
    pub health: Health,
    /// How long the old version keeps running after a promotion (default `5s`).
    #[serde(default = "default_scale_down_delay", with = "duration")]
    #[schemars(with = "DurationString")]
    pub scale_down_delay: Duration,
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

/// How traffic reaches the versions of the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// The router that splits traffic between stable and canary (default `builtin`).
    #[serde(default)]
    pub router: Router,
}

/// Traffic routers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Router {
    /// Backstop's built-in HTTP reverse proxy, listening on each environment's `listen`.
    #[default]
    Builtin,
}

/// How a new release takes over traffic.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct RolloutSpec {
    /// `canary` (default): traffic moves by steps while the judge watches; `all-at-once`: the new
    /// version takes 100 % at once.
    #[serde(default)]
    pub strategy: Strategy,
    /// Canary steps, weights strictly increasing, the last one 100; every step but the last
    /// holds for `for`. Default: 10 % for 30s, 50 % for 30s, 100 %.
    #[serde(default)]
    #[schemars(extend("default" = [{"weight": 10, "for": "30s"}, {"weight": 50, "for": "30s"}, {"weight": 100}]))]
    pub steps: Vec<Step>,
}

impl Default for RolloutSpec {
    fn default() -> Self {
        Self {
            strategy: Strategy::Canary,
            steps: Step::default_canary(),
        }
    }
}

/// Rollout strategies.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// Traffic moves to the new version by steps while the judge watches.
    #[default]
    Canary,
    /// The new version takes all traffic at once.
    AllAtOnce,
}

/// One canary step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Step {
    /// Percentage of traffic sent to the new version, above 0 and at most 100.
    #[schemars(range(max = 100.0), extend("exclusiveMinimum" = 0))]
    pub weight: f64,
    /// Minimum time at this weight before the next step (required on every step but the last).
    #[serde(
        rename = "for",
        default,
        with = "option_duration",
        skip_serializing_if = "Option::is_none"
    )]
    #[schemars(with = "Option<DurationString>")]
    pub hold: Option<Duration>,
}

impl Step {
    /// The default canary steps: 10 % for 30s, 50 % for 30s, 100 %.
    #[must_use]
    pub fn default_canary() -> Vec<Step> {
        vec![
            Step {
                weight: 10.0,
                hold: Some(Duration::from_secs(30)),
            },
            Step {
                weight: 50.0,
                hold: Some(Duration::from_secs(30)),
            },
            Step {
                weight: 100.0,
                hold: None,
            },
        ]
    }
}

/// One environment the service runs in.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct Environment {
    /// Name, unique within the service (e.g. `staging`, `prod`).
    #[schemars(pattern(NAME_PATTERN))]
    pub name: String,
    /// Address the built-in proxy listens on for this environment, `IP:PORT`
    /// (e.g. `127.0.0.1:8080`); unique across the file.
    #[schemars(with = "SocketAddrString")]
    pub listen: SocketAddr,
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
}

impl Config {
    /// The service named `name`.
    #[must_use]
    pub fn service(&self, name: &str) -> Option<&Service> {
        self.services.iter().find(|s| s.name == name)
    }

    /// The effective configuration (every default filled in) as YAML that parses back to the
    /// same configuration.
    #[must_use]
    pub fn to_yaml_effective(&self) -> String {
        match serde_json::to_value(self) {
            Ok(value) => crate::emit::to_yaml(&value),
            // Serializing plain data into a `Value` cannot fail; keep a readable fallback anyway.
            Err(e) => format!("# cannot render the effective config: {e}\n"),
        }
    }

    /// The effective configuration as pretty JSON.
    #[must_use]
    pub fn to_json_effective(&self) -> String {
        serde_json::to_string_pretty(self).unwrap_or_else(|e| {
            format!("{{\"error\": \"cannot render the effective config: {e}\"}}")
        })
    }
}

impl Service {
    /// The environment named `name`.
    #[must_use]
    pub fn environment(&self, name: &str) -> Option<&Environment> {
        self.environments.iter().find(|e| e.name == name)
    }

    /// The rollback SLA in environment `env`: the environment's override, else the service's
    /// objective, else the tier default.
    #[must_use]
    pub fn rollback_sla_for(&self, env: &str) -> Duration {
        self.environment(env)
            .and_then(|e| e.rollback_sla)
            .or(self.objectives.rollback_sla)
            .or(Objectives::for_tier(self.tier).rollback_sla)
            .unwrap_or(Duration::from_secs(60 * 60))
    }

    /// The MTTR objective (the tier default if not set).
    #[must_use]
    pub fn mttr(&self) -> Duration {
        self.objectives
            .mttr
            .or(Objectives::for_tier(self.tier).mttr)
            .unwrap_or(Duration::from_secs(24 * 60 * 60))
    }
}

/// Parses a humantime duration (`30s`, `5m`, `1h 30m`), with an error that says what was expected.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|e| format!("invalid duration {text:?}: {e} (expected e.g. 30s, 5m, 1h 30m)"))
}

/// Formats a duration the way the config writes it (`30s`, `1h 30m`).
#[must_use]
pub fn format_duration(d: Duration) -> String {
    humantime::format_duration(d).to_string()
}

pub(crate) mod duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    pub(crate) fn serialize<S: Serializer>(d: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&super::format_duration(*d))
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

pub(crate) mod option_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    // serde's `with` hands the field by reference.
    #[allow(clippy::ref_option)]
    pub(crate) fn serialize<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
        match d {
            Some(d) => s.serialize_str(&super::format_duration(*d)),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<Duration>, D::Error> {
        match Option::<String>::deserialize(d)? {
            Some(text) => super::parse_duration(&text)
                .map(Some)
                .map_err(serde::de::Error::custom),
            None => Ok(None),
        }
    }
}

/// Schema of a duration string (`30s`, `5m`, `1h 30m`).
pub(crate) struct DurationString;

impl JsonSchema for DurationString {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "Duration".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "duration",
            "pattern": DURATION_PATTERN,
            "examples": ["30s", "5m", "1h 30m"],
        })
    }
}

/// Schema of a socket address string (`127.0.0.1:8080`, `[::1]:8080`).
pub(crate) struct SocketAddrString;

impl JsonSchema for SocketAddrString {
    fn inline_schema() -> bool {
        true
    }

    fn schema_name() -> Cow<'static, str> {
        "SocketAddr".into()
    }

    fn json_schema(_: &mut SchemaGenerator) -> Schema {
        json_schema!({
            "type": "string",
            "format": "socket-address",
            "examples": ["127.0.0.1:8080", "[::1]:8080"],
        })
    }
}
