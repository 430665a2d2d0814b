//! HAProxy router: changes a running HAProxy over its runtime API, without reloading it.
//!
//! Expected HAProxy config: a stats socket with `level admin` (Unix socket or TCP) and an HTTP
//! backend with a dynamic balance algorithm (e.g. `roundrobin`, the default) holding two servers,
//! by default named `stable` and `canary`, each configured as `ip:port` (placeholders are fine:
//! `apply` sets the addresses), for example:
//!
//! ```text
//! global
//!     stats socket /run/haproxy/admin.sock level admin
//! backend app
//!     balance roundrobin
//!     server stable 127.0.0.1:8001 weight 100
//!     server canary 127.0.0.1:8002 weight 0 disabled
//! ```
//!
//! `apply` maps the split to weights summing to [`WEIGHT_SCALE`] (stable `100 - p`, canary `p`,
//! `p` from [`split_percent`]); a server with an upstream and a positive weight is `ready`, one
//! with an upstream and weight 0 is `drain` (keeps finishing what it has, gets nothing new), one
//! without an upstream is `maint`. Servers that gain traffic are changed first (address, weight,
//! state) and waited for until HAProxy reports them up (with health checks: their last check
//! passed; a server leaving maintenance counts as up before its first check); only then
//! do the others lose traffic. HAProxy finishes requests in flight on a server whose weight,
//! state or address changes, so a switch drops nothing. After the commands the router reads the
//! servers back and fails if they differ from what was asked.
//!
//! Versions: HAProxy cannot store a label on a server at runtime, so the router remembers the
//! version of each address it applied and derives labels from the servers' addresses when
//! reading; an address it never applied is labelled with the address itself.
//!
//! Stats come from `show stat` (CSV) per server: `requests` = `hrsp_1xx` + … + `hrsp_other` +
//! `eresp` + `econ` (answers from the server, plus responses that failed and connections that
//! could not be made); `errors` = `hrsp_5xx` + `eresp` + `econ`. A connection error that HAProxy
//! retried on another server is counted there too. HAProxy keeps no latency histogram, so
//! `latency_buckets_ms` is empty and `latency_sum_ms` is 0. Counters belong to a server, not a
//! version: when a server's address changes, what it counted so far stays with the old version.
//! `first_request_at` / `last_error_at` are the times this router first saw a request / last saw
//! the error count grow (at the resolution of calls to `stats`).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Mutex, PoisonError};
use std::time::Duration;

use async_trait::async_trait;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::{
    RouterError, TargetState, TrafficRouter, WEIGHT_SCALE, describe, normalize, split_percent,
};
use crate::proxy::{Routes, Upstream, VersionStats};

mod counters;
mod servers;

use counters::Memory;
pub use servers::{Admin, ServerCounters, ServerState, parse_servers_state, parse_stat_csv};

const ROUTER: &str = "haproxy";

/// Where the runtime API listens: `unix@/path`, `/path` (Unix socket) or `host:port`,
/// `tcp@host:port` (TCP).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HaproxyAddress {
    Unix(PathBuf),
    Tcp(String),
}

impl FromStr for HaproxyAddress {
    type Err = RouterError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        if let Some(p) = s.strip_prefix("unix@").or_else(|| s.strip_prefix("unix:")) {
            return Ok(HaproxyAddress::Unix(PathBuf::from(p)));
        }
        if s.starts_with('/') || s.starts_with('.') {
            return Ok(HaproxyAddress::Unix(PathBuf::from(s)));
        }
        let t = s
            .strip_prefix("tcp@")
            .or_else(|| s.strip_prefix("tcp:"))
            .or_else(|| s.strip_prefix("ipv4@"))
            .unwrap_or(s);
        match t.rsplit_once(':') {
            Some((host, port)) if !host.is_empty() && port.parse::<u16>().is_ok() => {
                Ok(HaproxyAddress::Tcp(t.to_owned()))
            }
            _ => Err(RouterError::Config {
                router: ROUTER,
                message: format!(
                    "runtime API address `{s}` is neither a Unix socket path nor host:port"
                ),
            }),
        }
    }
}

impl fmt::Display for HaproxyAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            HaproxyAddress::Unix(p) => write!(f, "runtime API socket {}", p.display()),
            HaproxyAddress::Tcp(a) => write!(f, "runtime API at tcp {a}"),
        }
    }
}

/// Settings of a [`HaproxyRouter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxyConfig {
    pub address: HaproxyAddress,
    pub backend: String,
    pub stable_server: String,
    pub canary_server: String,
    /// Per runtime API command (connect, send, read to EOF).
    pub command_timeout: Duration,
    /// How long to wait for a server that gains traffic to be reported up before taking
    /// traffic from the other.
    pub ready_timeout: Duration,
}

impl HaproxyConfig {
    /// Servers `stable` and `canary`, 5 s per command, 10 s for a server to come up.
    pub fn new(address: HaproxyAddress, backend: impl Into<String>) -> HaproxyConfig {
        HaproxyConfig {
            address,
            backend: backend.into(),
            stable_server: "stable".into(),
            canary_server: "canary".into(),
            command_timeout: Duration::from_secs(5),
            ready_timeout: Duration::from_secs(10),
        }
    }
}

/// Router over a running HAProxy. See the module docs.
#[derive(Debug)]
pub struct HaproxyRouter {
    cfg: HaproxyConfig,
    memory: Mutex<Memory>,
}

/// What one server should look like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Want {
    addr: Option<SocketAddr>,
    weight: u32,
    admin: Admin,
}

impl Want {
    fn matches(&self, s: &ServerState) -> bool {
        self.addr.is_none_or(|a| s.addr == Some(a))
            && s.weight == self.weight
            && s.admin() == self.admin
    }
}

impl HaproxyRouter {
    pub fn new(cfg: HaproxyConfig) -> HaproxyRouter {
        HaproxyRouter {
            cfg,
            memory: Mutex::new(Memory::default()),
        }
    }

    pub fn config(&self) -> &HaproxyConfig {
        &self.cfg
    }

    /// Tells the router which version runs at `addr` (e.g. after a restart of Backstop, before
    /// reading `current`).
    pub fn remember_version(&self, addr: SocketAddr, version: impl Into<String>) {
        self.mem().versions.insert(addr, version.into());
    }

    fn mem(&self) -> std::sync::MutexGuard<'_, Memory> {
        self.memory.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Sends one runtime API command and returns the answer (read to EOF).
    pub async fn command(&self, cmd: &str) -> Result<String, RouterError> {
        let target = self.cfg.address.to_string();
        let fut = async {
            match &self.cfg.address {
                HaproxyAddress::Unix(p) => {
                    let s = tokio::net::UnixStream::connect(p).await?;
                    exchange(s, cmd).await
                }
                HaproxyAddress::Tcp(a) => {
                    let s = tokio::net::TcpStream::connect(a.as_str()).await?;
                    exchange(s, cmd).await
                }
            }
        };
        match tokio::time::timeout(self.cfg.command_timeout, fut).await {
            Ok(Ok(text)) => Ok(text),
            Ok(Err(source)) => Err(RouterError::Unreachable {
                router: ROUTER,
                target,
                source,
            }),
            Err(_) => Err(RouterError::NoAnswer {
                router: ROUTER,
                target,
                command: cmd.to_owned(),
                timeout: self.cfg.command_timeout,
            }),
        }
    }

    /// A `set …` command: HAProxy answers nothing (a blank line) on success and a message on
    /// failure; `set server … addr` answers a description of the change (checked by reading the
    /// servers back afterwards).
    async fn set(&self, cmd: &str) -> Result<(), RouterError> {
        let out = self.command(cmd).await?;
        let text = out.trim();
        let addr_ok = cmd.contains(" addr ")
            && (text.starts_with("IP changed")
                || text.starts_with("no need to change")
                || text.starts_with("port changed"));
        if text.is_empty() || addr_ok {
            tracing::debug!(command = cmd, answer = text, "HAProxy command done.");
            Ok(())
        } else {
            Err(RouterError::Rejected {
                router: ROUTER,
                target: self.cfg.address.to_string(),
                command: cmd.to_owned(),
                message: text.to_owned(),
            })
        }
    }

    /// Names go into runtime API commands, where `;` separates commands and a newline ends one.
    fn check_names(&self) -> Result<(), RouterError> {
        for (what, name) in [
            ("backend", &self.cfg.backend),
            ("stable server", &self.cfg.stable_server),
            ("canary server", &self.cfg.canary_server),
        ] {
            let ok = !name.is_empty()
                && name
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-.:".contains(c));
            if !ok {
                return Err(RouterError::Config {
                    router: ROUTER,
                    message: format!(
                        "{what} name `{name}` must be letters, digits, `_`, `-`, `.` or `:`"
                    ),
                });
            }
        }
        Ok(())
    }

    /// The stable and canary servers as HAProxy reports them now.
    pub async fn servers(&self) -> Result<(ServerState, ServerState), RouterError> {
        self.check_names()?;
        let cmd = format!("show servers state {}", self.cfg.backend);
        let out = self.command(&cmd).await?;
        let rows = parse_servers_state(&out, &self.cfg.backend).map_err(|message| {
            if out.trim_start().starts_with('#') || out.trim_start().starts_with('1') {
                RouterError::Parse {
                    router: ROUTER,
                    target: self.cfg.address.to_string(),
                    what: format!("`{cmd}`"),
                    message,
                }
            } else {
                RouterError::Rejected {
                    router: ROUTER,
                    target: self.cfg.address.to_string(),
                    command: cmd.clone(),
                    message: out.trim().to_owned(),
                }
            }
        })?;
        let find = |name: &str| {
            rows.iter()
                .find(|s| s.name == name)
                .cloned()
                .ok_or_else(|| RouterError::Config {
                    router: ROUTER,
                    message: format!(
                        "backend {} has no server named {name} (it has: {})",
                        self.cfg.backend,
                        rows.iter()
                            .map(|s| s.name.as_str())
                            .collect::<Vec<_>>()
                            .join(", ")
                    ),
                })
        };
        Ok((
            find(&self.cfg.stable_server)?,
            find(&self.cfg.canary_server)?,
        ))
    }

    /// Raw `show stat` counters of the stable and canary servers.
    pub async fn server_counters(&self) -> Result<(ServerCounters, ServerCounters), RouterError> {
        let cmd = format!("show stat {} 4 -1", self.cfg.backend);
        let out = self.command(&cmd).await?;
        let parse_err = |message: String| RouterError::Parse {
            router: ROUTER,
            target: self.cfg.address.to_string(),
            what: format!("`{cmd}`"),
            message,
        };
        let rows = parse_stat_csv(&out).map_err(parse_err)?;
        let get = |name: &str| {
            rows.iter()
                .find(|(px, sv, _)| px == &self.cfg.backend && sv == name)
                .map(|r| r.2)
                .ok_or_else(|| parse_err(format!("no row for server {}/{name}", self.cfg.backend)))
        };
        Ok((get(&self.cfg.stable_server)?, get(&self.cfg.canary_server)?))
    }

    fn routes_of(&self, stable: &ServerState, canary: &ServerState) -> Routes {
        let mem = self.mem();
        let up = |s: &ServerState| {
            if s.admin() == Admin::Maint {
                return None;
            }
            s.addr.map(|addr| Upstream {
                version: mem.label(addr),
                addr,
                replicas: Vec::new(),
            })
        };
        let (st, ca) = (up(stable), up(canary));
        let (ws, wc) = (
            u64::from(stable.effective_weight()),
            u64::from(canary.effective_weight()),
        );
        let canary_weight = match (&st, &ca) {
            (Some(_), Some(_)) if ws + wc > 0 => (wc * 100) as f64 / (ws + wc) as f64,
            _ => 0.0,
        };
        normalize(&Routes {
            stable: st,
            canary: ca,
            canary_weight,
        })
    }

    /// Current state for an error: re-read, or unknown.
    async fn state_after_failure(&self, changed: bool) -> TargetState {
        if !changed {
            return TargetState::Unchanged;
        }
        match self.servers().await {
            Ok((s, c)) => TargetState::Now(Box::new(self.routes_of(&s, &c))),
            Err(_) => TargetState::Unknown,
        }
    }

    async fn wait_running(&self, server: &str) -> Result<(), RouterError> {
        let deadline = tokio::time::Instant::now() + self.cfg.ready_timeout;
        loop {
            let (s, c) = self.servers().await?;
            let st = if server == self.cfg.stable_server {
                s
            } else {
                c
            };
            if st.running() {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RouterError::Rejected {
                    router: ROUTER,
                    target: self.cfg.address.to_string(),
                    command: format!("set server {}/{server} state ready", self.cfg.backend),
                    message: format!(
                        "server is not up after {}ms (operational state {}); the other server keeps its traffic",
                        self.cfg.ready_timeout.as_millis(),
                        st.op_state
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }

    /// Moves counters to the version an address change brings (see the module docs).
    async fn hand_over_counters(&self, server: &str, old_version: &str, new_version: &str) {
        if let Ok((s, c)) = self.server_counters().await {
            let raw = if server == self.cfg.stable_server {
                s
            } else {
                c
            };
            let mut mem = self.mem();
            mem.observe(server, old_version, raw);
            mem.observe(server, new_version, raw);
        }
    }

    async fn apply_inner(
        &self,
        want_routes: &Routes,
        changed: &mut bool,
    ) -> Result<(), RouterError> {
        let (stable, canary) = self.servers().await?;
        let p = split_percent(want_routes.canary_weight);
        let want = |u: &Option<Upstream>, weight: u32| match u {
            None => Want {
                addr: None,
                weight: 0,
                admin: Admin::Maint,
            },
            Some(u) if weight == 0 => Want {
                addr: Some(u.addr),
                weight: 0,
                admin: Admin::Drain,
            },
            Some(u) => Want {
                addr: Some(u.addr),
                weight,
                admin: Admin::Ready,
            },
        };
        let (ws, wc) = match (&want_routes.stable, &want_routes.canary) {
            (Some(_), Some(_)) => (WEIGHT_SCALE - p, p),
            (Some(_), None) => (WEIGHT_SCALE, 0),
            (None, Some(_)) => (0, WEIGHT_SCALE),
            (None, None) => (0, 0),
        };
        let mut plan = [
            (
                stable,
                want(&want_routes.stable, ws),
                want_routes.stable.as_ref(),
            ),
            (
                canary,
                want(&want_routes.canary, wc),
                want_routes.canary.as_ref(),
            ),
        ];
        if plan.iter().all(|(s, w, _)| w.matches(s)) {
            tracing::debug!(backend = %self.cfg.backend, routes = %describe(want_routes), "HAProxy already routes so; nothing to do.");
            return Ok(());
        }
        // Servers that gain traffic first, then those that lose it.
        plan.sort_by_key(|(s, w, _)| (w.admin != Admin::Ready, w.weight <= s.effective_weight()));
        let be = &self.cfg.backend;
        for (cur, w, up) in &plan {
            let name = &cur.name;
            if w.admin == Admin::Ready {
                let moved = w.addr.is_some_and(|a| cur.addr != Some(a));
                if let Some(a) = w.addr
                    && cur.addr != Some(a)
                {
                    self.change_addr(cur, a, up.map(|u| u.version.as_str()), changed)
                        .await?;
                }
                if cur.weight != w.weight {
                    *changed = true;
                    self.set(&format!("set weight {be}/{name} {}", w.weight))
                        .await?;
                }
                if cur.admin() != Admin::Ready {
                    *changed = true;
                    self.set(&format!("set server {be}/{name} state ready"))
                        .await?;
                }
                if moved || !cur.running() || cur.admin() != Admin::Ready {
                    self.wait_running(name).await?;
                }
            } else {
                if cur.weight != w.weight {
                    *changed = true;
                    self.set(&format!("set weight {be}/{name} {}", w.weight))
                        .await?;
                }
                if cur.admin() != w.admin {
                    *changed = true;
                    self.set(&format!("set server {be}/{name} state {}", w.admin.word()))
                        .await?;
                }
                if let Some(a) = w.addr
                    && cur.addr != Some(a)
                {
                    self.change_addr(cur, a, up.map(|u| u.version.as_str()), changed)
                        .await?;
                }
            }
        }
        let (s, c) = self.servers().await?;
        let ok = plan.iter().all(|(cur, w, _)| {
            let now = if cur.name == self.cfg.stable_server {
                &s
            } else {
                &c
            };
            w.matches(now)
        });
        if ok {
            tracing::info!(backend = %be, routes = %describe(want_routes), stable_weight = ws, canary_weight = wc, "HAProxy routes updated.");
            Ok(())
        } else {
            Err(RouterError::Rejected {
                router: ROUTER,
                target: self.cfg.address.to_string(),
                command: "show servers state".into(),
                message: format!(
                    "HAProxy accepted the commands but reports stable {:?}, canary {:?}",
                    s, c
                ),
            })
        }
    }

    async fn change_addr(
        &self,
        cur: &ServerState,
        addr: SocketAddr,
        version: Option<&str>,
        changed: &mut bool,
    ) -> Result<(), RouterError> {
        let old = cur.addr.map(|a| self.mem().label(a));
        if let (Some(old), Some(new)) = (old.as_deref(), version) {
            self.hand_over_counters(&cur.name, old, new).await;
        }
        *changed = true;
        let ip = match addr.ip() {
            IpAddr::V4(ip) => ip.to_string(),
            IpAddr::V6(ip) => ip.to_string(),
        };
        self.set(&format!(
            "set server {}/{} addr {ip} port {}",
            self.cfg.backend,
            cur.name,
            addr.port()
        ))
        .await
    }
}

async fn exchange<S: AsyncRead + AsyncWrite + Unpin>(
    mut s: S,
    cmd: &str,
) -> std::io::Result<String> {
    s.write_all(cmd.as_bytes()).await?;
    s.write_all(b"\n").await?;
    s.flush().await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    Ok(String::from_utf8_lossy(&out).into_owned())
}

#[async_trait]
impl TrafficRouter for HaproxyRouter {
    fn kind(&self) -> &'static str {
        ROUTER
    }

    async fn apply(&self, routes: &Routes) -> Result<(), RouterError> {
        let want = normalize(routes);
        {
            let mut mem = self.mem();
            for u in [&want.stable, &want.canary].into_iter().flatten() {
                mem.versions.insert(u.addr, u.version.clone());
            }
        }
        let mut changed = false;
        match self.apply_inner(&want, &mut changed).await {
            Ok(()) => Ok(()),
            Err(cause) => {
                let state = self.state_after_failure(changed).await;
                tracing::warn!(backend = %self.cfg.backend, error = %cause, state = %state, "HAProxy switch failed.");
                if changed {
                    Err(RouterError::Apply {
                        router: ROUTER,
                        cause: Box::new(cause),
                        state,
                    })
                } else {
                    Err(cause)
                }
            }
        }
    }

    async fn current(&self) -> Result<Routes, RouterError> {
        let (s, c) = self.servers().await?;
        Ok(self.routes_of(&s, &c))
    }

    async fn stats(&self) -> Result<Option<Vec<VersionStats>>, RouterError> {
        let (s, c) = self.servers().await?;
        let (cs, cc) = self.server_counters().await?;
        let mut mem = self.mem();
        for (srv, raw) in [(&s, cs), (&c, cc)] {
            if let Some(addr) = srv.addr {
                let v = mem.label(addr);
                mem.observe(&srv.name, &v, raw);
            }
        }
        Ok(Some(mem.snapshot()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STATE: &str = "1\n# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight srv_iweight srv_time_since_last_change srv_check_status srv_check_result srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port\n3 app 1 stable 127.0.0.1 2 0 100 100 4 1 0 2 0 0 0 0 - 1 - 0 0 - - 0\n3 app 2 canary 127.0.0.1 2 12 10 0 0 1 0 0 8 0 0 0 - 9002 - 0 0 - - 0\n4 other 1 x 127.0.0.1 2 0 1 1 0 1 0 0 8 0 0 0 - 9 - 0 0 - - 0\n\n";

    #[test]
    fn servers_state_rows_of_the_backend() {
        let rows = parse_servers_state(STATE, "app").unwrap();
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[1].name, "canary");
        assert_eq!(rows[1].addr, Some("127.0.0.1:9002".parse().unwrap()));
        assert_eq!(rows[1].admin(), Admin::Drain);
        assert_eq!(rows[1].weight, 10);
        assert_eq!(rows[0].admin(), Admin::Ready);
        assert!(rows[0].running());
        assert!(parse_servers_state("Can't find backend.\n", "app").is_err());
    }

    #[test]
    fn stat_csv_counts_answers_and_failures() {
        let text = "# pxname,svname,econ,eresp,hrsp_1xx,hrsp_2xx,hrsp_3xx,hrsp_4xx,hrsp_5xx,hrsp_other,\napp,stable,1,2,0,90,1,3,4,0,\napp,BACKEND,,,,,,,,,\n";
        let rows = parse_stat_csv(text).unwrap();
        assert_eq!(
            rows[0].2,
            ServerCounters {
                requests: 101,
                errors: 7
            }
        );
        assert_eq!(rows[1].2, ServerCounters::default());
        assert!(
            parse_stat_csv("# pxname,svname\n")
                .unwrap_err()
                .contains("hrsp_1xx")
        );
    }

    #[test]
    fn counters_follow_the_version_on_a_server() {
        let mut m = Memory::default();
        let c = |requests, errors| ServerCounters { requests, errors };
        m.observe("stable", "v1", c(10, 1));
        m.observe("stable", "v1", c(30, 2));
        // Address changed to v2's: what came before stays with v1.
        m.observe("stable", "v2", c(30, 2));
        m.observe("stable", "v2", c(45, 5));
        // HAProxy restarted: counters start over, nothing is lost.
        m.observe("stable", "v2", c(4, 0));
        let s = m.snapshot();
        let get = |v: &str| s.iter().find(|x| x.version == v).unwrap();
        assert_eq!((get("v1").requests, get("v1").errors), (30, 2));
        assert_eq!((get("v2").requests, get("v2").errors), (19, 3));
        assert!(get("v2").last_error_at.is_some());
        assert!(get("v2").latency_buckets_ms.is_empty());
    }

    #[tokio::test]
    async fn names_cannot_smuggle_commands() {
        let mut cfg = HaproxyConfig::new(HaproxyAddress::Unix("/nonexistent".into()), "app");
        cfg.canary_server = "c; shutdown frontend fe".into();
        let err = HaproxyRouter::new(cfg).current().await.unwrap_err();
        assert!(matches!(err, RouterError::Config { .. }), "{err}");
        assert!(err.to_string().contains("canary server name"), "{err}");
    }

    #[test]
    fn addresses_parse() {
        assert_eq!(
            "/run/haproxy/admin.sock".parse::<HaproxyAddress>().unwrap(),
            HaproxyAddress::Unix("/run/haproxy/admin.sock".into())
        );
        assert_eq!(
            "unix@/x".parse::<HaproxyAddress>().unwrap(),
            HaproxyAddress::Unix("/x".into())
        );
        assert_eq!(
            "127.0.0.1:9999".parse::<HaproxyAddress>().unwrap(),
            HaproxyAddress::Tcp("127.0.0.1:9999".into())
        );
        assert!("nonsense".parse::<HaproxyAddress>().is_err());
    }
}
