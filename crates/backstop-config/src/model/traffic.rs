//! `traffic`: the router that splits traffic between the stable version and the canary.

use std::borrow::Cow;
use std::path::PathBuf;
use std::time::Duration;

use backstop_core::duration::{DurationString, serde_duration as duration};
use schemars::{JsonSchema, Schema, SchemaGenerator};
use serde::{Deserialize, Serialize};

use super::{LB_NAME_PATTERN, NonEmptyString};

/// How traffic reaches the versions of the service: the router, with exactly the settings it
/// needs. Read from the `traffic` block of the file ([`TrafficFile`]), whose combinations the
/// validation has already checked.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "TrafficFile", into = "TrafficFile")]
pub enum Traffic {
    /// Backstop's built-in HTTP reverse proxy, listening on each environment's `listen`.
    #[default]
    Builtin,
    /// HAProxy, driven live through its runtime API.
    Haproxy(HaproxyRouter),
    /// nginx: the upstream file is rewritten, tested and reloaded.
    Nginx(NginxRouter),
    /// A command of yours applies the split.
    Command(CommandRouter),
}

impl Traffic {
    /// The router's kind, as `traffic.router` names it.
    #[must_use]
    pub fn router(&self) -> Router {
        match self {
            Self::Builtin => Router::Builtin,
            Self::Haproxy(_) => Router::Haproxy,
            Self::Nginx(_) => Router::Nginx,
            Self::Command(_) => Router::Command,
        }
    }
}

/// How traffic reaches the versions of the service.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(rename = "Traffic")]
pub(crate) struct TrafficFile {
    /// The router that splits traffic between stable and canary (default `builtin`):
    /// `builtin` | `haproxy` | `nginx` | `command`.
    #[serde(default)]
    router: Router,
    /// HAProxy settings (required with `router: haproxy`, not allowed otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "HaproxyRouter")]
    haproxy: Option<HaproxyRouter>,
    /// nginx settings (required with `router: nginx`, not allowed otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "NginxRouter")]
    nginx: Option<NginxRouter>,
    /// Command router settings (required with `router: command`, not allowed otherwise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "CommandRouter")]
    command: Option<CommandRouter>,
}

impl TryFrom<TrafficFile> for Traffic {
    type Error = String;

    /// Validation has reported a missing or misplaced block with its position already; this
    /// guards a value that bypassed it.
    fn try_from(file: TrafficFile) -> Result<Self, String> {
        match (file.router, file.haproxy, file.nginx, file.command) {
            (Router::Builtin, None, None, None) => Ok(Self::Builtin),
            (Router::Haproxy, Some(h), None, None) => Ok(Self::Haproxy(h)),
            (Router::Nginx, None, Some(n), None) => Ok(Self::Nginx(n)),
            (Router::Command, None, None, Some(c)) => Ok(Self::Command(c)),
            (router, ..) => Err(format!(
                "`router: {}` takes its own block under `traffic` and no other",
                router.as_str()
            )),
        }
    }
}

impl From<Traffic> for TrafficFile {
    fn from(traffic: Traffic) -> Self {
        let mut file = Self {
            router: traffic.router(),
            ..Self::default()
        };
        match traffic {
            Traffic::Builtin => {}
            Traffic::Haproxy(h) => file.haproxy = Some(h),
            Traffic::Nginx(n) => file.nginx = Some(n),
            Traffic::Command(c) => file.command = Some(c),
        }
        file
    }
}

/// The schema is the file's `traffic` block.
impl JsonSchema for Traffic {
    fn schema_name() -> Cow<'static, str> {
        TrafficFile::schema_name()
    }

    fn schema_id() -> Cow<'static, str> {
        TrafficFile::schema_id()
    }

    fn json_schema(generator: &mut SchemaGenerator) -> Schema {
        TrafficFile::json_schema(generator)
    }
}

/// Traffic routers.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Router {
    /// Backstop's built-in HTTP reverse proxy, listening on each environment's `listen`.
    #[default]
    Builtin,
    /// HAProxy, driven live through its runtime API (no reload).
    Haproxy,
    /// nginx: the upstream file is rewritten, tested and reloaded.
    Nginx,
    /// A command of yours applies the split (DNS or anything else).
    Command,
}

impl Router {
    /// The name used in the config (`builtin`, `haproxy`, `nginx`, `command`).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Builtin => "builtin",
            Self::Haproxy => "haproxy",
            Self::Nginx => "nginx",
            Self::Command => "command",
        }
    }
}

/// HAProxy through its runtime API: one backend with a stable and a canary server whose
/// addresses, weights and states Backstop sets live.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HaproxyRouter {
    /// The runtime API (`stats socket ... level admin`): an absolute unix socket path
    /// (`/run/haproxy/admin.sock`) or `host:port`. Reachability is checked at run time.
    pub socket: HaproxySocket,
    /// The backend holding the two servers, such as `checkout`.
    #[schemars(pattern(LB_NAME_PATTERN))]
    pub backend: String,
    /// The server of the backend that carries the stable version (default `stable`).
    #[serde(default = "default_stable_server")]
    #[schemars(pattern(LB_NAME_PATTERN))]
    pub stable_server: String,
    /// The server of the backend that carries the canary (default `canary`).
    #[serde(default = "default_canary_server")]
    #[schemars(pattern(LB_NAME_PATTERN))]
    pub canary_server: String,
}

fn default_stable_server() -> String {
    "stable".to_owned()
}

fn default_canary_server() -> String {
    "canary".to_owned()
}

/// Where HAProxy's runtime API listens.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum HaproxySocket {
    /// An absolute unix socket path.
    Unix(PathBuf),
    /// `host:port` (an IP or a host name, then a port).
    Tcp(String),
}

impl HaproxySocket {
    /// Reads `/abs/path.sock` or `host:port`.
    ///
    /// # Errors
    /// A relative path, or a `host:port` without a valid port, with a hint.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if text.starts_with('/') {
            return Ok(Self::Unix(PathBuf::from(text)));
        }
        if let Some((host, port)) = text.rsplit_once(':')
            && !host.is_empty()
            && !host.contains('/')
            && !host.contains(char::is_whitespace)
        {
            return match port.parse::<u16>() {
                Ok(p) if p != 0 => Ok(Self::Tcp(text.to_owned())),
                _ => Err(format!(
                    "invalid port {port:?} in HAProxy socket {text:?} (expected host:port with a port from 1 to 65535)"
                )),
            };
        }
        Err(format!(
            "HAProxy socket {text:?} is a relative path (use an absolute unix socket path like /run/haproxy/admin.sock, or host:port)"
        ))
    }
}

impl std::fmt::Display for HaproxySocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Unix(p) => write!(f, "{}", p.display()),
            Self::Tcp(a) => f.write_str(a),
        }
    }
}

impl Serialize for HaproxySocket {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for HaproxySocket {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

backstop_core::inline_string_schema!(
    HaproxySocket,
    "HaproxySocket",
    {
        "type": "string",
        "minLength": 1,
        "examples": ["/run/haproxy/admin.sock", "127.0.0.1:9999"],
    }
);

/// nginx: Backstop renders the upstream block into `upstream_file`, runs `test_command`, renames
/// the file into place atomically and runs `reload_command`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NginxRouter {
    /// Absolute path of the file holding the upstream block, included by nginx's config, such
    /// as `/etc/nginx/conf.d/checkout-upstream.conf`.
    #[schemars(with = "NonEmptyString")]
    pub upstream_file: PathBuf,
    /// Name of the upstream block, such as `checkout`.
    #[schemars(pattern(LB_NAME_PATTERN))]
    pub upstream: String,
    /// Checks the configuration before it goes live (default `nginx -t`).
    #[serde(default = "default_nginx_test")]
    #[schemars(length(min = 1))]
    pub test_command: String,
    /// Makes nginx load the new configuration (default `nginx -s reload`).
    #[serde(default = "default_nginx_reload")]
    #[schemars(length(min = 1))]
    pub reload_command: String,
}

fn default_nginx_test() -> String {
    "nginx -t".to_owned()
}

fn default_nginx_reload() -> String {
    "nginx -s reload".to_owned()
}

/// A command of yours applies the split. It receives `BACKSTOP_STABLE_ADDR`,
/// `BACKSTOP_CANARY_ADDR`, `BACKSTOP_CANARY_WEIGHT` and `BACKSTOP_IDEMPOTENCY_KEY`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct CommandRouter {
    /// Shell command that applies the split, such as `./route.sh`.
    #[schemars(length(min = 1))]
    pub apply: String,
    /// Time limit of one run (default `30s`); on expiry its process group is killed.
    #[serde(default = "default_router_timeout", with = "duration")]
    #[schemars(with = "DurationString")]
    pub timeout: Duration,
}

fn default_router_timeout() -> Duration {
    Duration::from_secs(30)
}
