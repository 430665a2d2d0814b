//! Traffic routers: one trait over the places where Backstop can split traffic between a stable
//! and a canary upstream.
//!
//! - [`BuiltinRouter`]: the in-process [`Proxy`];
//! - [`haproxy::HaproxyRouter`]: a running HAProxy, changed live over its runtime API (stats
//!   socket), no reload;
//! - [`nginx::NginxRouter`]: an nginx upstream block rendered into an include file, tested with
//!   `nginx -t`, renamed into place and reloaded;
//! - [`command::CommandRouter`]: a user command (DNS or anything else), with a timeout.
//!
//! Every router follows the model of [`Routes`]: a stable upstream, an optional canary upstream
//! and the canary's share of requests in percent. Routers that split by integer weights use a
//! resolution of 1 %: a weight is rounded to the nearest percent, except that a weight strictly
//! between 0 and 1 becomes 1 and one strictly between 99 and 100 becomes 99, so that "a little
//! traffic" never silently becomes "none" or "all" (see [`split_percent`]).
//!
//! Errors: an error from `apply` that happened before the target was changed says so
//! ([`RouterError::target_state`] is [`TargetState::Unchanged`]); an error after a partial change
//! is a [`RouterError::Apply`] that carries what the target does now, re-read from the target
//! when possible.

pub mod command;
pub mod haproxy;
pub mod nginx;

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use async_trait::async_trait;

use crate::proxy::{InstanceStats, Proxy, Routes, Upstream, VersionStats};

/// A place where traffic between stable and canary is split. Object-safe: routers are chosen per
/// service in config and held as `Box<dyn TrafficRouter>` / `Arc<dyn TrafficRouter>`.
#[async_trait]
pub trait TrafficRouter: Send + Sync {
    /// `builtin`, `haproxy`, `nginx` or `command`.
    fn kind(&self) -> &'static str;

    /// Makes the target send `routes.canary_weight` % of requests to the canary and the rest to
    /// stable. Idempotent: reads the target's current state first and changes only what
    /// differs. Never drops in-flight requests. On error the error says what state the target
    /// is in ([`RouterError::target_state`]).
    async fn apply(&self, routes: &Routes) -> Result<(), RouterError>;

    /// [`TrafficRouter::apply`] in the name of a lease held at an epoch: a target that knows
    /// epochs (the built-in proxy process) refuses a lease's routes once it has seen a newer
    /// epoch of it, so a replica that lost the lease cannot move traffic. Others just apply.
    async fn apply_fenced(
        &self,
        routes: &Routes,
        fence: Option<&RouteFence>,
    ) -> Result<(), RouterError> {
        let _ = fence;
        self.apply(routes).await
    }

    /// What the target does right now, read from the target (not from memory), normalized like
    /// [`normalize`]. Version labels the target cannot store are taken from what this router
    /// applied; an upstream it never saw is labelled with its address.
    async fn current(&self) -> Result<Routes, RouterError>;

    /// Cumulative per-version counters if this router can observe traffic, else `None`.
    async fn stats(&self) -> Result<Option<Vec<VersionStats>>, RouterError>;

    /// Cumulative counters per feature-flag cohort (`KEY=on`, `KEY=off`) if this router sees
    /// the applications' `x-backstop-flags` header, else `None`.
    async fn cohort_stats(&self) -> Result<Option<Vec<VersionStats>>, RouterError> {
        Ok(None)
    }

    /// Cumulative counters per instance of the versions routed now (`run.instances`) if this
    /// router spreads a version over its instances itself (the built-in proxy), else `None`.
    async fn instance_stats(&self) -> Result<Option<Vec<InstanceStats>>, RouterError> {
        Ok(None)
    }
}

/// The lease (and its epoch) in whose name routes are applied; see
/// [`TrafficRouter::apply_fenced`].
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct RouteFence {
    pub lease: String,
    pub epoch: i64,
}

/// What a failed `apply` left behind.
#[derive(Debug, Clone, PartialEq)]
pub enum TargetState {
    /// Nothing was changed: the target does what it did before the call.
    Unchanged,
    /// The target was (partly) changed; it now routes like this (re-read from the target).
    Now(Box<Routes>),
    /// The target was possibly changed and could not be read back.
    Unknown,
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            TargetState::Unchanged => f.write_str("unchanged"),
            TargetState::Unknown => {
                f.write_str("unknown (changed in part, could not be read back)")
            }
            TargetState::Now(r) => write!(f, "routing {}", describe(r)),
        }
    }
}

/// Errors of every router. Each names the router and the place (socket, file, command).
#[derive(Debug, thiserror::Error)]
pub enum RouterError {
    #[error("{router}: {target} is unreachable: {source}")]
    Unreachable {
        router: &'static str,
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("{router}: {target} did not answer `{command}` within {}ms", timeout.as_millis())]
    NoAnswer {
        router: &'static str,
        target: String,
        command: String,
        timeout: Duration,
    },
    #[error("{router}: {target} rejected `{command}`: {message}")]
    Rejected {
        router: &'static str,
        target: String,
        command: String,
        message: String,
    },
    #[error("{router}: cannot read {what} from {target}: {message}")]
    Parse {
        router: &'static str,
        target: String,
        what: String,
        message: String,
    },
    #[error("{router}: {message}")]
    InvalidRoutes {
        router: &'static str,
        message: String,
    },
    #[error("{router}: {message}")]
    Config {
        router: &'static str,
        message: String,
    },
    #[error("nginx: the new config failed `{command}`; {} is unchanged: {message}", path.display())]
    ConfigTest {
        command: String,
        path: PathBuf,
        message: String,
    },
    #[error("{router}: `{command}` failed ({status}): {output}")]
    CommandFailed {
        router: &'static str,
        command: String,
        status: String,
        output: String,
    },
    #[error("{router}: `{command}` did not finish within {}ms; its process group was killed{}", timeout.as_millis(), if output.is_empty() { String::new() } else { format!(" (output: {output})") })]
    Timeout {
        router: &'static str,
        command: String,
        timeout: Duration,
        output: String,
    },
    #[error("{router}: {}: {source}", path.display())]
    Io {
        router: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{router}: could not finish switching traffic ({cause}); the target is {state}")]
    Apply {
        router: &'static str,
        #[source]
        cause: Box<RouterError>,
        state: TargetState,
    },
}

impl RouterError {
    /// What the target does after the failed call. Every error but [`RouterError::Apply`]
    /// happened before anything was changed.
    pub fn target_state(&self) -> TargetState {
        match self {
            RouterError::Apply { state, .. } => state.clone(),
            _ => TargetState::Unchanged,
        }
    }
}

/// Resolution of weight-based routers: the split is expressed as two integer weights summing to
/// this.
pub const WEIGHT_SCALE: u32 = 100;

/// The canonical form of a split: weight clamped to `0..=100` (NaN → 0); with only a canary the
/// weight is 100, with only stable (or nothing) it is 0.
pub fn normalize(routes: &Routes) -> Routes {
    let w = if routes.canary_weight.is_nan() {
        0.0
    } else {
        routes.canary_weight.clamp(0.0, 100.0)
    };
    let canary_weight = match (&routes.stable, &routes.canary) {
        (_, None) => 0.0,
        (None, Some(_)) => 100.0,
        (Some(_), Some(_)) => w,
    };
    Routes {
        stable: routes.stable.clone(),
        canary: routes.canary.clone(),
        canary_weight,
    }
}

/// The canary's integer percentage for a weight-based router (see the module docs): nearest
/// percent, but never 0 for a positive weight nor 100 for a weight below 100.
pub fn split_percent(canary_weight: f64) -> u32 {
    let w = if canary_weight.is_nan() {
        0.0
    } else {
        canary_weight.clamp(0.0, 100.0)
    };
    if w <= 0.0 {
        0
    } else if w >= 100.0 {
        100
    } else {
        // In 0..100 after the clamp, so the cast is exact.
        (w.round() as u32).clamp(1, 99)
    }
}

/// True when both route the same addresses with the same split (versions are not compared:
/// targets such as HAProxy cannot store them).
pub fn same_split(a: &Routes, b: &Routes) -> bool {
    let (a, b) = (normalize(a), normalize(b));
    let addr = |u: &Option<Upstream>| u.as_ref().map(|u| u.addrs().collect::<Vec<_>>());
    addr(&a.stable) == addr(&b.stable)
        && addr(&a.canary) == addr(&b.canary)
        && split_percent(a.canary_weight) == split_percent(b.canary_weight)
}

/// One line for logs and errors: `stable v1@127.0.0.1:8001, canary v2@127.0.0.1:8002 at 10%`.
pub fn describe(routes: &Routes) -> String {
    let up = |u: &Option<Upstream>| {
        u.as_ref().map_or("none".to_owned(), |u| {
            let addrs: Vec<String> = u.addrs().map(|a| a.to_string()).collect();
            format!("{}@{}", u.version, addrs.join("+"))
        })
    };
    format!(
        "stable {}, canary {} at {}%",
        up(&routes.stable),
        up(&routes.canary),
        routes.canary_weight
    )
}

/// Label for an upstream whose version the router does not know: its address.
pub(crate) fn unknown_version(addr: SocketAddr) -> String {
    addr.to_string()
}

/// Router over the built-in [`Proxy`]: `apply` is [`Proxy::set_routes`] (skipped when the
/// proxy already routes exactly so), `stats` is [`Proxy::stats`].
#[derive(Debug, Clone)]
pub struct BuiltinRouter {
    proxy: Proxy,
}

impl BuiltinRouter {
    pub fn new(proxy: Proxy) -> BuiltinRouter {
        BuiltinRouter { proxy }
    }

    pub fn proxy(&self) -> &Proxy {
        &self.proxy
    }
}

#[async_trait]
impl TrafficRouter for BuiltinRouter {
    fn kind(&self) -> &'static str {
        "builtin"
    }

    async fn apply(&self, routes: &Routes) -> Result<(), RouterError> {
        let want = normalize(routes);
        if normalize(&self.proxy.routes()) == want {
            tracing::debug!(routes = %describe(&want), "Built-in proxy already routes so; nothing to do.");
            return Ok(());
        }
        self.proxy.set_routes(want);
        Ok(())
    }

    async fn current(&self) -> Result<Routes, RouterError> {
        Ok(normalize(&self.proxy.routes()))
    }

    async fn stats(&self) -> Result<Option<Vec<VersionStats>>, RouterError> {
        Ok(Some(self.proxy.stats()))
    }

    async fn cohort_stats(&self) -> Result<Option<Vec<VersionStats>>, RouterError> {
        Ok(Some(self.proxy.cohort_stats()))
    }

    async fn instance_stats(&self) -> Result<Option<Vec<InstanceStats>>, RouterError> {
        Ok(Some(self.proxy.instance_stats()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(v: &str, port: u16) -> Option<Upstream> {
        Some(Upstream {
            version: v.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            replicas: Vec::new(),
        })
    }

    #[test]
    fn normalize_fixes_weight_to_the_upstreams_present() {
        let r = Routes {
            stable: up("v1", 1),
            canary: None,
            canary_weight: 40.0,
        };
        assert_eq!(normalize(&r).canary_weight, 0.0);
        let r = Routes {
            stable: None,
            canary: up("v2", 2),
            canary_weight: 3.0,
        };
        assert_eq!(normalize(&r).canary_weight, 100.0);
        let r = Routes {
            stable: up("v1", 1),
            canary: up("v2", 2),
            canary_weight: f64::NAN,
        };
        assert_eq!(normalize(&r).canary_weight, 0.0);
        let r = Routes {
            canary_weight: 250.0,
            ..r
        };
        assert_eq!(normalize(&r).canary_weight, 100.0);
    }

    #[test]
    fn split_percent_keeps_a_little_traffic_a_little() {
        assert_eq!(split_percent(0.0), 0);
        assert_eq!(split_percent(-3.0), 0);
        assert_eq!(split_percent(0.01), 1);
        assert_eq!(split_percent(10.4), 10);
        assert_eq!(split_percent(10.5), 11);
        assert_eq!(split_percent(99.9), 99);
        assert_eq!(split_percent(100.0), 100);
        assert_eq!(split_percent(f64::NAN), 0);
    }

    #[test]
    fn same_split_ignores_versions_and_sub_percent_noise() {
        let a = Routes {
            stable: up("v1", 1),
            canary: up("v2", 2),
            canary_weight: 10.0,
        };
        let mut b = a.clone();
        b.stable = up("127.0.0.1:1", 1);
        b.canary_weight = 10.2;
        assert!(same_split(&a, &b));
        b.canary_weight = 11.0;
        assert!(!same_split(&a, &b));
        b.canary_weight = 10.0;
        b.canary = up("v2", 3);
        assert!(!same_split(&a, &b));
    }

    #[test]
    fn apply_errors_say_what_state_they_left() {
        let e = RouterError::Config {
            router: "haproxy",
            message: "x".into(),
        };
        assert_eq!(e.target_state(), TargetState::Unchanged);
        let e = RouterError::Apply {
            router: "haproxy",
            cause: Box::new(e),
            state: TargetState::Unknown,
        };
        assert_eq!(e.target_state(), TargetState::Unknown);
        assert!(e.to_string().contains("the target is unknown"), "{e}");
    }
}
