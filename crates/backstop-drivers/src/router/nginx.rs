//! nginx router: renders the upstream block of a service into an include file, checks it with
//! the configured test command (`nginx -t`), puts it in place atomically and reloads nginx.
//!
//! The main nginx config includes the file inside `http { … }` and proxies to the upstream:
//!
//! ```text
//! http {
//!     include /etc/nginx/backstop/checkout.conf;   # written by Backstop
//!     server { listen 80; location / { proxy_pass http://checkout; } }
//! }
//! ```
//!
//! Rendered file (weights sum to [`WEIGHT_SCALE`]; a server with weight 0 is marked `down`; the
//! comment lines carry the version labels, nginx ignores them):
//!
//! ```text
//! # Written by backstop; rewritten on every traffic change.
//! # backstop stable v1 127.0.0.1:8001
//! # backstop canary v2 127.0.0.1:8002
//! upstream checkout {
//!     server 127.0.0.1:8001 weight=90;
//!     server 127.0.0.1:8002 weight=10;
//! }
//! ```
//!
//! Steps of `apply`, each safe to repeat after a crash:
//! 1. render; if the live file already holds exactly this and no reload is pending, stop;
//! 2. write the new text to a temp file in the include's directory (fsync), keep the old text
//!    in a second temp file, write a "reload pending" marker next to the include, rename the new
//!    file over the include and run the test command. `nginx -t` can only test the include at
//!    its real path, so the live path holds the candidate for the duration of the test; nginx
//!    itself does not read it then. If the test fails the old text is renamed back (atomic), so
//!    the file is byte-for-byte what it was, and the error carries nginx's message;
//! 3. run the reload command; with a pid file configured, wait until the master has started new
//!    workers (proof that it accepted the config: `nginx -s reload` exits 0 even when the master
//!    rejects the new config) and the old workers have begun their graceful shutdown (stopped
//!    accepting), so new connections get the new split when `apply` returns; then remove the
//!    marker.
//!
//! A reload is graceful: old workers finish the requests they have and new connections go to
//! the new workers. One nginx property to know: old workers close their *idle* client
//! keep-alive connections at once, so a client that sends a request on such a connection at
//! that very instant sees it reset (clients that retry idempotent requests on a reused
//! connection, as browsers do, never notice; `keepalive_timeout 0` avoids it entirely). The
//! tests run the load with client keep-alive off and see zero failed requests. `current` parses the live
//! file (what nginx runs once any pending reload is done).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_trait::async_trait;

use super::command::{Cmd, DEFAULT_OUTPUT_CAP, run};
use super::{
    RouterError, TargetState, TrafficRouter, WEIGHT_SCALE, describe, normalize, split_percent,
    unknown_version,
};
use crate::proxy::{Routes, Upstream, VersionStats};

const ROUTER: &str = "nginx";

/// Settings of an [`NginxRouter`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NginxConfig {
    /// Name of the `upstream` block.
    pub upstream: String,
    /// The include file Backstop owns (written whole on every change).
    pub include_path: PathBuf,
    /// The config test, e.g. `nginx -t -q -c /etc/nginx/nginx.conf` (argv, or `sh -c`).
    pub test_command: Cmd,
    /// The reload, e.g. `nginx -s reload -c /etc/nginx/nginx.conf` (argv, or `sh -c`).
    pub reload_command: Cmd,
    /// nginx's pid file (Debian: `/run/nginx.pid`); when set, a reload is confirmed by the
    /// master starting new workers and the old ones stopping to accept. Without it `apply`
    /// returns as soon as the reload command has exited.
    pub pid_file: Option<PathBuf>,
    /// Per command.
    pub command_timeout: Duration,
    /// How long the master may take to start new workers after the reload command.
    pub reload_timeout: Duration,
    /// Extra directives placed in the upstream block, e.g. `keepalive 32`.
    pub extra_directives: Vec<String>,
}

impl NginxConfig {
    /// Test and reload commands built from the nginx binary, its main config and optional
    /// prefix (`-p`).
    pub fn new(
        nginx: &Path,
        main_config: &Path,
        prefix: Option<&Path>,
        upstream: impl Into<String>,
        include_path: impl Into<PathBuf>,
    ) -> NginxConfig {
        let mut base = vec![nginx.display().to_string()];
        if let Some(p) = prefix {
            base.push("-p".into());
            base.push(p.display().to_string());
        }
        base.push("-c".into());
        base.push(main_config.display().to_string());
        let mut test_command = base.clone();
        test_command.extend(["-t".to_owned(), "-q".to_owned()]);
        let mut reload_command = base;
        reload_command.extend(["-s".to_owned(), "reload".to_owned()]);
        NginxConfig {
            upstream: upstream.into(),
            include_path: include_path.into(),
            test_command: Cmd::Argv(test_command),
            reload_command: Cmd::Argv(reload_command),
            pid_file: None,
            command_timeout: Duration::from_secs(30),
            reload_timeout: Duration::from_secs(10),
            extra_directives: Vec::new(),
        }
    }

    /// Test and reload given as shell commands (config file form: `nginx -t`,
    /// `nginx -s reload`), run with `sh -c`.
    pub fn with_shell_commands(
        upstream: impl Into<String>,
        include_path: impl Into<PathBuf>,
        test_command: &str,
        reload_command: &str,
    ) -> NginxConfig {
        NginxConfig {
            test_command: Cmd::Shell(test_command.to_owned()),
            reload_command: Cmd::Shell(reload_command.to_owned()),
            ..NginxConfig::new(
                Path::new("nginx"),
                Path::new("nginx.conf"),
                None,
                upstream,
                include_path,
            )
        }
    }
}

/// Router over an nginx include file. See the module docs.
#[derive(Debug)]
pub struct NginxRouter {
    cfg: NginxConfig,
    seq: AtomicU64,
    /// One apply at a time per router (they share temp and marker files).
    lock: tokio::sync::Mutex<()>,
}

impl NginxRouter {
    pub fn new(cfg: NginxConfig) -> Result<NginxRouter, RouterError> {
        let ok_name = !cfg.upstream.is_empty()
            && cfg
                .upstream
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-.".contains(c));
        if !ok_name {
            return Err(RouterError::Config {
                router: ROUTER,
                message: format!(
                    "upstream name `{}` must be letters, digits, `_`, `-` or `.`",
                    cfg.upstream
                ),
            });
        }
        if cfg.include_path.file_name().is_none() {
            return Err(RouterError::Config {
                router: ROUTER,
                message: format!("include path {} names no file", cfg.include_path.display()),
            });
        }
        for d in &cfg.extra_directives {
            if d.contains(['{', '}', ';', '\n']) {
                return Err(RouterError::Config {
                    router: ROUTER,
                    message: format!(
                        "extra directive `{d}` must be one directive without `;`, braces or newlines"
                    ),
                });
            }
        }
        Ok(NginxRouter {
            cfg,
            seq: AtomicU64::new(0),
            lock: tokio::sync::Mutex::new(()),
        })
    }

    pub fn config(&self) -> &NginxConfig {
        &self.cfg
    }

    fn sibling(&self, suffix: &str) -> PathBuf {
        let name = self
            .cfg
            .include_path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        self.cfg
            .include_path
            .with_file_name(format!(".{name}.backstop-{suffix}"))
    }

    fn marker(&self) -> PathBuf {
        self.sibling("reload-pending")
    }

    fn io(&self, path: &Path, source: std::io::Error) -> RouterError {
        RouterError::Io {
            router: ROUTER,
            path: path.to_owned(),
            source,
        }
    }

    async fn write_synced(&self, path: &Path, bytes: &[u8]) -> Result<(), RouterError> {
        use tokio::io::AsyncWriteExt;
        let mut f = tokio::fs::File::create(path)
            .await
            .map_err(|e| self.io(path, e))?;
        f.write_all(bytes).await.map_err(|e| self.io(path, e))?;
        f.sync_all().await.map_err(|e| self.io(path, e))
    }

    async fn sync_dir(&self) {
        if let Some(dir) = self.cfg.include_path.parent()
            && let Ok(d) = tokio::fs::File::open(dir).await
        {
            let _ = d.sync_all().await;
        }
    }

    /// Runs the test command; `Err(message)` when it fails.
    async fn test(&self) -> Result<(), RouterError> {
        let cmd = &self.cfg.test_command;
        let out = run(
            ROUTER,
            cmd,
            &BTreeMap::new(),
            self.cfg.command_timeout,
            DEFAULT_OUTPUT_CAP,
        )
        .await?;
        if out.success {
            Ok(())
        } else {
            Err(RouterError::ConfigTest {
                command: cmd.display(),
                path: self.cfg.include_path.clone(),
                message: out.combined(),
            })
        }
    }

    fn master_pid(&self) -> Option<u32> {
        let p = self.cfg.pid_file.as_ref()?;
        std::fs::read_to_string(p).ok()?.trim().parse().ok()
    }

    async fn reload(&self) -> Result<(), RouterError> {
        let master = self.master_pid();
        let before = master.map(children_of).unwrap_or_default();
        let cmd = &self.cfg.reload_command;
        let out = run(
            ROUTER,
            cmd,
            &BTreeMap::new(),
            self.cfg.command_timeout,
            DEFAULT_OUTPUT_CAP,
        )
        .await?;
        if !out.success {
            return Err(RouterError::CommandFailed {
                router: ROUTER,
                command: cmd.display(),
                status: out.status.clone(),
                output: out.combined(),
            });
        }
        let Some(master) = master else {
            if self.cfg.pid_file.is_some() {
                tracing::warn!(pid_file = ?self.cfg.pid_file, "nginx pid file unreadable; cannot confirm the reload.");
            }
            return Ok(());
        };
        let deadline = tokio::time::Instant::now() + self.cfg.reload_timeout;
        loop {
            let now = children_of(master);
            // New workers exist, and the old ones have stopped accepting (nginx retitles a
            // worker "… is shutting down" as it closes its listening sockets).
            if now.iter().any(|c| !before.contains(c))
                && before
                    .iter()
                    .filter(|c| now.contains(c))
                    .all(|c| !is_accepting_worker(*c))
            {
                return Ok(());
            }
            if tokio::time::Instant::now() >= deadline {
                return Err(RouterError::CommandFailed {
                    router: ROUTER,
                    command: cmd.display(),
                    status: "no new workers".into(),
                    output: format!(
                        "master {master} started no new worker within {}ms: it probably rejected the config (see nginx's error log)",
                        self.cfg.reload_timeout.as_millis()
                    ),
                });
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn read_live(&self) -> Result<Option<String>, RouterError> {
        match tokio::fs::read_to_string(&self.cfg.include_path).await {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(self.io(&self.cfg.include_path, e)),
        }
    }

    async fn apply_locked(&self, want: &Routes) -> Result<(), RouterError> {
        let text = render(&self.cfg, want)?;
        let live = self.read_live().await?;
        let marker = self.marker();
        let pending = tokio::fs::try_exists(&marker).await.unwrap_or(true);
        if live.as_deref() == Some(text.as_str()) && !pending {
            tracing::debug!(include = %self.cfg.include_path.display(), "nginx already has this config; nothing to do.");
            return Ok(());
        }
        if live.as_deref() != Some(text.as_str()) {
            let n = self.seq.fetch_add(1, Ordering::Relaxed);
            let pid = std::process::id();
            let candidate = self.sibling(&format!("{pid}-{n}.new"));
            let backup = self.sibling(&format!("{pid}-{n}.old"));
            self.write_synced(&candidate, text.as_bytes()).await?;
            if let Some(old) = &live {
                self.write_synced(&backup, old.as_bytes()).await?;
            }
            self.write_synced(&marker, b"").await?;
            if let Err(e) = tokio::fs::rename(&candidate, &self.cfg.include_path).await {
                let _ = tokio::fs::remove_file(&candidate).await;
                let _ = tokio::fs::remove_file(&backup).await;
                return Err(self.io(&self.cfg.include_path, e));
            }
            self.sync_dir().await;
            if let Err(e) = self.test().await {
                // Put the old bytes back (or remove a file that did not exist).
                let restored = match &live {
                    Some(_) => tokio::fs::rename(&backup, &self.cfg.include_path).await,
                    None => tokio::fs::remove_file(&self.cfg.include_path).await,
                };
                if !pending {
                    let _ = tokio::fs::remove_file(&marker).await;
                }
                self.sync_dir().await;
                return match restored {
                    Ok(()) => Err(e),
                    Err(io) => Err(RouterError::Apply {
                        router: ROUTER,
                        cause: Box::new(e),
                        state: TargetState::Unknown,
                    })
                    .inspect_err(|_| tracing::error!(include = %self.cfg.include_path.display(), error = %io, "Cannot restore the previous include after a failed config test.")),
                };
            }
            let _ = tokio::fs::remove_file(&backup).await;
        } else {
            // The file is right but a reload after it was written did not finish: test it again
            // (it may be a candidate left by a crash during the test) and reload.
            self.test().await?;
        }
        if let Err(e) = self.reload().await {
            return Err(RouterError::Apply {
                router: ROUTER,
                cause: Box::new(e),
                state: TargetState::Unknown,
            });
        }
        let _ = tokio::fs::remove_file(&marker).await;
        self.sync_dir().await;
        tracing::info!(include = %self.cfg.include_path.display(), routes = %describe(want), "nginx routes updated and reloaded.");
        Ok(())
    }
}

/// True for an nginx worker that has not begun its graceful shutdown.
fn is_accepting_worker(pid: u32) -> bool {
    std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
        let title = String::from_utf8_lossy(&c);
        title.contains("worker process") && !title.contains("shutting down")
    })
}

/// Pids whose parent is `pid` (from /proc).
fn children_of(pid: u32) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|p| {
            std::fs::read_to_string(format!("/proc/{p}/stat"))
                .ok()
                .and_then(|s| {
                    // Fields after the command (which may contain spaces) close with `)`.
                    let rest = &s[s.rfind(')')? + 1..];
                    rest.split_whitespace().nth(1)?.parse::<u32>().ok()
                })
                == Some(pid)
        })
        .collect()
}

/// The include file for `routes` (normalized). Fails when there is no upstream at all (nginx
/// needs at least one server in an upstream block).
pub fn render(cfg: &NginxConfig, routes: &Routes) -> Result<String, RouterError> {
    let r = normalize(routes);
    let p = split_percent(r.canary_weight);
    let servers: Vec<(&str, &Upstream, u32)> = match (&r.stable, &r.canary) {
        (None, None) => {
            return Err(RouterError::InvalidRoutes {
                router: ROUTER,
                message: format!(
                    "upstream {} needs a stable or a canary upstream",
                    cfg.upstream
                ),
            });
        }
        (Some(s), None) => vec![("stable", s, WEIGHT_SCALE)],
        (None, Some(c)) => vec![("canary", c, WEIGHT_SCALE)],
        (Some(s), Some(c)) => vec![("stable", s, WEIGHT_SCALE - p), ("canary", c, p)],
    };
    let mut out = String::from("# Written by backstop; rewritten on every traffic change.\n");
    for (role, u, _) in &servers {
        let label: String = u
            .version
            .chars()
            .map(|c| {
                if c.is_whitespace() || c.is_control() {
                    '_'
                } else {
                    c
                }
            })
            .collect();
        out.push_str(&format!("# backstop {role} {label} {}\n", u.addr));
    }
    out.push_str(&format!("upstream {} {{\n", cfg.upstream));
    for (_, u, w) in &servers {
        if *w == 0 {
            out.push_str(&format!("    server {} down;\n", u.addr));
        } else {
            out.push_str(&format!("    server {} weight={w};\n", u.addr));
        }
    }
    for d in &cfg.extra_directives {
        out.push_str(&format!("    {d};\n"));
    }
    out.push_str("}\n");
    Ok(out)
}

/// Reads the routes back from an include file: servers of the `upstream` block (first is
/// stable, second canary, unless the `# backstop` comments say otherwise), weights (`down` or
/// `backup` = 0, default 1), versions from the comments when their address matches.
pub fn parse(text: &str, upstream: &str) -> Result<Routes, String> {
    let mut labels: Vec<(String, String, SocketAddr)> = Vec::new();
    for line in text.lines() {
        let Some(rest) = line.trim().strip_prefix("# backstop ") else {
            continue;
        };
        let f: Vec<&str> = rest.split_whitespace().collect();
        if let [role, version, addr] = f[..]
            && let Ok(addr) = addr.parse()
        {
            labels.push((role.to_owned(), version.to_owned(), addr));
        }
    }
    // Strip comments, then walk the tokens.
    let code: String = text
        .lines()
        .map(|l| l.split_once('#').map_or(l, |(a, _)| a))
        .collect::<Vec<_>>()
        .join("\n");
    let open = format!("upstream {upstream}");
    let start = code
        .match_indices(&open)
        .map(|(i, _)| i)
        .find(|&i| {
            let before_ok = code[..i]
                .chars()
                .next_back()
                .is_none_or(|c| c.is_whitespace() || c == ';' || c == '}');
            let after_ok = code[i + open.len()..]
                .chars()
                .next()
                .is_some_and(|c| c.is_whitespace() || c == '{');
            before_ok && after_ok
        })
        .ok_or_else(|| format!("no `upstream {upstream}` block"))?;
    let body_start = code[start..]
        .find('{')
        .map(|i| start + i + 1)
        .ok_or("upstream block has no `{`")?;
    let body_end = code[body_start..]
        .find('}')
        .map(|i| body_start + i)
        .ok_or("upstream block has no `}`")?;
    let mut servers: Vec<(SocketAddr, u32)> = Vec::new();
    for stmt in code[body_start..body_end].split(';') {
        let words: Vec<&str> = stmt.split_whitespace().collect();
        let Some((&"server", args)) = words.split_first() else {
            continue;
        };
        let addr_text = args.first().ok_or("`server` without an address")?;
        let addr: SocketAddr = addr_text
            .parse()
            .map_err(|e| format!("server `{addr_text}` is not ip:port: {e}"))?;
        let mut weight = 1;
        for a in &args[1..] {
            if let Some(w) = a.strip_prefix("weight=") {
                weight = w
                    .parse()
                    .map_err(|e| format!("server {addr}: weight `{w}`: {e}"))?;
            } else if *a == "down" || *a == "backup" {
                weight = 0;
                break;
            }
        }
        servers.push((addr, weight));
    }
    let label_of = |role: &str, addr: SocketAddr| {
        labels
            .iter()
            .find(|(r, _, a)| r == role && *a == addr)
            .map_or_else(|| unknown_version(addr), |(_, v, _)| v.clone())
    };
    let role_of = |i: usize, addr: SocketAddr| -> &str {
        if labels.iter().any(|(r, _, a)| r == "canary" && *a == addr)
            && !labels.iter().any(|(r, _, a)| r == "stable" && *a == addr)
        {
            "canary"
        } else if i == 0 {
            "stable"
        } else {
            "canary"
        }
    };
    let mut stable = None;
    let mut canary = None;
    for (i, (addr, w)) in servers.iter().enumerate() {
        let role = role_of(i, *addr);
        let slot = if role == "stable" {
            &mut stable
        } else {
            &mut canary
        };
        if slot.is_some() {
            return Err(format!("more than one {role} server (server {addr})"));
        }
        *slot = Some((
            Upstream {
                version: label_of(role, *addr),
                addr: *addr,
                replicas: Vec::new(),
            },
            *w,
        ));
    }
    let (ws, wc) = (
        stable.as_ref().map_or(0, |s| u64::from(s.1)),
        canary.as_ref().map_or(0, |c| u64::from(c.1)),
    );
    let canary_weight = if ws + wc == 0 {
        0.0
    } else {
        (wc * 100) as f64 / (ws + wc) as f64
    };
    Ok(normalize(&Routes {
        stable: stable.map(|s| s.0),
        canary: canary.map(|c| c.0),
        canary_weight,
    }))
}

#[async_trait]
impl TrafficRouter for NginxRouter {
    fn kind(&self) -> &'static str {
        ROUTER
    }

    async fn apply(&self, routes: &Routes) -> Result<(), RouterError> {
        let want = normalize(routes);
        let _guard = self.lock.lock().await;
        self.apply_locked(&want).await
    }

    async fn current(&self) -> Result<Routes, RouterError> {
        let text = self.read_live().await?.ok_or_else(|| RouterError::Io {
            router: ROUTER,
            path: self.cfg.include_path.clone(),
            source: std::io::Error::new(std::io::ErrorKind::NotFound, "no include file yet"),
        })?;
        parse(&text, &self.cfg.upstream).map_err(|message| RouterError::Parse {
            router: ROUTER,
            target: self.cfg.include_path.display().to_string(),
            what: format!("upstream {}", self.cfg.upstream),
            message,
        })
    }

    async fn stats(&self) -> Result<Option<Vec<VersionStats>>, RouterError> {
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg() -> NginxConfig {
        NginxConfig::new(
            Path::new("nginx"),
            Path::new("/etc/nginx/nginx.conf"),
            None,
            "app",
            "/tmp/app.conf",
        )
    }

    fn up(v: &str, port: u16) -> Option<Upstream> {
        Some(Upstream {
            version: v.into(),
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            replicas: Vec::new(),
        })
    }

    #[test]
    fn render_and_parse_round_trip() {
        for w in [0.0, 10.0, 50.0, 99.0, 100.0] {
            let r = Routes {
                stable: up("v1", 8001),
                canary: up("v 2", 8002),
                canary_weight: w,
            };
            let text = render(&cfg(), &r).unwrap();
            let back = parse(&text, "app").unwrap();
            assert_eq!(back.canary_weight, w, "{text}");
            assert_eq!(back.stable, up("v1", 8001));
            assert_eq!(back.canary, up("v_2", 8002));
        }
        let text = render(
            &cfg(),
            &Routes {
                stable: up("v1", 8001),
                canary: up("v2", 8002),
                canary_weight: 0.0,
            },
        )
        .unwrap();
        assert!(text.contains("server 127.0.0.1:8002 down;"), "{text}");
        assert!(text.contains("server 127.0.0.1:8001 weight=100;"), "{text}");
        let only_canary = Routes {
            stable: None,
            canary: up("v2", 8002),
            canary_weight: 5.0,
        };
        let back = parse(&render(&cfg(), &only_canary).unwrap(), "app").unwrap();
        assert_eq!((back.stable, back.canary_weight), (None, 100.0));
        assert!(render(&cfg(), &Routes::default()).is_err());
    }

    #[test]
    fn parse_hand_written_blocks() {
        let r = parse(
            "upstream other { server 10.0.0.1:1; }\nupstream app {\n  server 10.0.0.2:80 weight=3 max_fails=2;\n  server 10.0.0.3:80; # new\n}\n",
            "app",
        )
        .unwrap();
        assert_eq!(r.stable.unwrap().version, "10.0.0.2:80");
        assert_eq!(r.canary_weight, 25.0);
        assert!(
            parse("upstream app { server nope; }", "app")
                .unwrap_err()
                .contains("nope")
        );
        assert!(parse("", "app").unwrap_err().contains("no `upstream app`"));
        let r = parse(
            "upstream application { server 10.0.0.9:1; }\nupstream app{server 10.0.0.2:80;}",
            "app",
        )
        .unwrap();
        assert_eq!(r.stable.unwrap().addr.to_string(), "10.0.0.2:80");
    }

    #[test]
    fn bad_names_are_refused() {
        let mut c = cfg();
        c.upstream = "a b".into();
        assert!(NginxRouter::new(c).is_err());
        let mut c = cfg();
        c.extra_directives = vec!["keepalive 8; }".into()];
        assert!(NginxRouter::new(c).is_err());
    }
}
