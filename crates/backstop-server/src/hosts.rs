//! Where an environment's instances run: on this daemon's host (processes it starts itself, in
//! their own process groups), or on another host's agent (`backstop agent`, named by the
//! environment's `agent`). The controller asks a [`Host`] and does not care which: the same
//! check-then-act steps, the same health checks. On an agent, every start and stop carries the
//! fencing epoch of the lease it is made under (the agent refuses a stale one).

use std::collections::BTreeMap;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use backstop_config::Config;
use backstop_drivers::agent::AgentClient;
use backstop_drivers::process::{self, Instance, InstanceSpec};
use backstop_drivers::router::RouteFence;

/// The agents of the config, with their tokens read from the replica's environment. A token
/// variable that is not set stops the start, naming it; the token itself is never logged.
pub fn build_agents(config: &Config) -> Result<BTreeMap<String, AgentClient>> {
    let mut out = BTreeMap::new();
    for agent in &config.agents {
        let token = std::env::var(&agent.token_env).map_err(|_| {
            anyhow!(
                "agent {}: the variable {} that holds its token is not set (make one with `backstop agent token` on that host)",
                agent.name,
                agent.token_env
            )
        })?;
        out.insert(
            agent.name.clone(),
            AgentClient::new(&agent.name, &agent.address, &token, &agent.token_env),
        );
    }
    Ok(out)
}

/// The fence of the lease the current task works under, as agents and proxies receive it.
pub fn current_fence() -> Option<RouteFence> {
    backstop_store::fence::current().map(|f| RouteFence {
        lease: f.key,
        epoch: f.epoch,
    })
}

/// The host of one environment's instances.
#[derive(Clone, Copy)]
pub enum Host<'a> {
    /// This daemon's host.
    Local,
    /// Another host, through its agent.
    Agent(&'a AgentClient),
}

impl Host<'_> {
    pub async fn free_port(self) -> Result<u16> {
        match self {
            Host::Local => process::free_port().context("choosing a port"),
            Host::Agent(a) => Ok(a.free_port().await?),
        }
    }

    /// The artifact file `local` (sha256 `sha256`) where this host runs it.
    pub async fn artifact_path(self, sha256: &str, local: &str) -> Result<String> {
        match self {
            Host::Local => Ok(local.to_string()),
            Host::Agent(a) => Ok(a
                .ensure_artifact(sha256, std::path::Path::new(local))
                .await?),
        }
    }

    /// Starts an instance and waits until it is healthy.
    pub async fn start(self, spec: &InstanceSpec) -> Result<Instance> {
        match self {
            Host::Local => Ok(process::start(spec).await?),
            Host::Agent(a) => Ok(a.start(spec, current_fence().as_ref()).await?),
        }
    }

    pub async fn stop(self, inst: &Instance, grace: Duration) -> Result<()> {
        match self {
            Host::Local => Ok(process::stop(inst, grace).await?),
            Host::Agent(a) => Ok(a.stop(inst, grace, current_fence().as_ref()).await?),
        }
    }

    /// Whether the instance's process runs; an error when the host cannot be asked (an agent
    /// cut off), which is not the same as "it exited".
    pub async fn is_running(self, inst: &Instance) -> Result<bool> {
        match self {
            Host::Local => Ok(process::is_running(inst)),
            Host::Agent(a) => Ok(a.is_running(inst).await?),
        }
    }

    pub async fn find_group(self, instance_id: &str) -> Result<Option<u32>> {
        match self {
            Host::Local => Ok(process::find_group(instance_id)),
            Host::Agent(a) => Ok(a.find_group(instance_id).await?),
        }
    }

    /// One health check on the instance's port, made from the host it runs on.
    pub async fn check_health(self, port: u16, path: &str, timeout: Duration) -> Result<()> {
        match self {
            Host::Local => Ok(process::check_health(port, path, timeout).await?),
            Host::Agent(a) => Ok(a.check_health(port, path, timeout).await?),
        }
    }

    pub async fn await_healthy(
        self,
        inst: &Instance,
        path: &str,
        timeout: Duration,
        interval: Duration,
        within: Duration,
    ) -> Result<()> {
        match self {
            Host::Local => Ok(process::await_healthy(inst, path, timeout, interval, within).await?),
            Host::Agent(a) => Ok(a
                .await_healthy(inst, path, timeout, interval, within)
                .await?),
        }
    }
}

impl crate::Ctx {
    /// This host's agent stopped answering (it died): started again on its address with its
    /// token, so the proxies and instances it drives are reached as before. Its proxies serve
    /// their kept routes at once; the instances never stopped (their own process groups).
    pub async fn revive_local_agent(&self) {
        let crate::data_plane::DataPlane::Process { exe } = &self.drivers.data_plane else {
            return;
        };
        match crate::data_plane::local_agent(exe, &self.state_dir).await {
            Ok(_) => tracing::info!("This host's agent answers again."),
            Err(e) => tracing::warn!(
                error = format!("{e:#}"),
                "Cannot start this host's agent again."
            ),
        }
    }
}
