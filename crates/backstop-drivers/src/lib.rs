//! backstop-drivers: the parts of Backstop that touch the world.
//!
//! - [`proxy`]: built-in HTTP reverse proxy splitting traffic between stable and canary and
//!   recording per-version requests, errors and latency histograms;
//! - [`proxy_control`]: that proxy as its own process (`backstop proxy`), configured over a Unix
//!   socket with versioned route sets, so the data plane outlives the daemon;
//! - [`cache`]: cache sweeps as recovery steps (Redis SCAN + UNLINK, HTTP PURGE);
//! - [`agent`]: `backstop agent`, one host's data plane (its proxies and instances), driven by
//!   replicas over an authenticated, fenced TCP channel;
//! - [`process`]: process deployer (supervised children in their own process groups);
//! - [`command`]: command deployer (user scripts for deploy, stop and health, with timeouts,
//!   process-group kills, capped output and retries);
//! - [`notify`]: webhook notifications (JSON or Slack, HMAC-signed, retried, never blocking);
//! - [`load`]: paced load generator used by quickstart, tests and benchmarks;
//! - [`prometheus`]: a signal source reading per-version counters from a Prometheus server;
//! - [`config_files`]: the file-system side of config snapshots (capture, atomic restore);
//! - [`step`]: a journaled command step whose end is recorded on disk, so a controller killed
//!   mid-step collects it instead of running it twice.

pub mod agent;
pub mod cache;
pub mod command;
pub mod config_files;
pub mod counts;
pub mod load;
pub mod logs;
pub mod loki;
pub mod notify;
pub mod process;
pub mod prometheus;
pub mod proxy;
pub mod proxy_control;
pub mod router;
pub mod step;

/// Variables of the daemon's own environment that carry secrets (the database URL may hold a
/// password): every process a driver starts (instances, user scripts, router commands, the
/// built-in proxies) is started without them, whatever else it inherits.
pub const DAEMON_SECRET_VARS: &[&str] = &["BACKSTOP_DATABASE_URL", "BACKSTOP_AUDIT_KEY"];

/// Removes [`DAEMON_SECRET_VARS`] from a command's environment.
pub fn without_daemon_secrets(cmd: &mut tokio::process::Command) -> &mut tokio::process::Command {
    for var in DAEMON_SECRET_VARS {
        cmd.env_remove(var);
    }
    cmd
}
