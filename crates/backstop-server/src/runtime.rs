//! The side of the daemon that touches the world: supervised instances and the built-in
//! proxies. Every action here is check-then-act against the real process or proxy, so the
//! controller may repeat any of them after a crash without doing anything twice.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use backstop_config::{CommandVars, Service, render_command};
use backstop_core::model::{Artifact, InstanceRecord, Phase, Release};
use backstop_drivers::process::{self, Instance, InstanceSpec};
use backstop_drivers::proxy::{Proxy, Routes, Upstream};
use backstop_store::StoreError;

use crate::{Ctx, now_ms};

/// How long a stopping instance gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

impl Ctx {
    pub fn service(&self, name: &str) -> Result<&Service> {
        self.config
            .service(name)
            .ok_or_else(|| anyhow!("service {name:?} is not in the config"))
    }

    pub fn proxy(&self, service: &str, env: &str) -> Result<&Proxy> {
        self.proxies
            .get(&(service.to_string(), env.to_string()))
            .ok_or_else(|| anyhow!("no proxy for {service}/{env}"))
    }

    fn log_path(&self, instance_id: &str) -> PathBuf {
        self.state_dir
            .join("logs")
            .join(format!("{instance_id}.log"))
    }

    /// Makes sure instance `id` of `release` runs: adopts it when it already does (also when a
    /// previous controller started it but crashed before recording its pid), starts it otherwise.
    pub async fn ensure_instance(
        &self,
        id: &str,
        release: &Release,
        env: &str,
    ) -> Result<InstanceRecord> {
        let known = match self.store.instance(id).await {
            Ok(rec) => Some(rec),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        if let Some(rec) = &known {
            if rec.pid != 0 && process::is_running(&to_instance(rec)) {
                tracing::debug!(
                    instance = id,
                    pid = rec.pid,
                    "Instance already running; adopted."
                );
                let mut adopted = rec.clone();
                adopted.state = "running".into();
                self.store.put_instance(&adopted).await?;
                return Ok(adopted);
            }
            if let Some(pid) = process::find_group(id) {
                // Started by a controller that died before journaling the pid.
                let adopted = InstanceRecord {
                    pid,
                    state: "running".into(),
                    ..rec.clone()
                };
                tracing::info!(
                    instance = id,
                    pid,
                    "Found an unrecorded instance process; adopted."
                );
                self.store.put_instance(&adopted).await?;
                return Ok(adopted);
            }
        }
        let service = self.service(&release.service)?;
        let port = process::free_port().context("choosing a port")?;
        // Intent first: the port and id are on disk before the process exists.
        let mut rec = InstanceRecord {
            id: id.to_string(),
            service: release.service.clone(),
            env: env.to_string(),
            release_id: release.id.clone(),
            pid: 0,
            port,
            started_at_ms: now_ms(),
            state: "starting".into(),
        };
        self.store.put_instance(&rec).await?;
        let command = render_release_command(service, release, env, port);
        let mut vars: BTreeMap<String, String> = service.run.env.clone();
        vars.extend(release.env.clone());
        let spec = InstanceSpec {
            instance_id: id.to_string(),
            command,
            port,
            env: vars,
            health_path: service.run.health.http.clone(),
            health_timeout: service.run.health.timeout,
            health_interval: service.run.health.interval,
            start_timeout: service.run.health.start_timeout,
            log_path: self.log_path(id),
        };
        let started = process::start(&spec).await?;
        rec.pid = started.pid;
        rec.state = "running".into();
        self.store.put_instance(&rec).await?;
        tracing::info!(instance = id, release = %release.id, pid = rec.pid, port, "Instance started and healthy.");
        Ok(rec)
    }

    /// Stops an instance's process group (no-op when it is gone) and records it stopped.
    pub async fn stop_instance(&self, id: &str) -> Result<()> {
        let mut rec = match self.store.instance(id).await {
            Ok(rec) => rec,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        if rec.pid == 0
            && let Some(pid) = process::find_group(id)
        {
            rec.pid = pid;
        }
        if rec.pid != 0 {
            process::stop(&to_instance(&rec), STOP_GRACE).await?;
        }
        rec.state = "stopped".into();
        self.store.put_instance(&rec).await?;
        tracing::info!(instance = id, "Instance stopped.");
        Ok(())
    }

    /// Points the proxy of `service/env` at what the store says should serve: the stable
    /// instance, plus the canary of a rollout that is taking traffic.
    pub async fn apply_routes(&self, service: &str, env: &str) -> Result<Routes> {
        let proxy = self.proxy(service, env)?;
        let state = self.store.environment(service, env).await?;
        let mut routes = Routes::default();
        if let Some(stable_id) = state.as_ref().and_then(|s| s.stable_instance_id.clone()) {
            routes.stable = Some(self.upstream(&stable_id).await?);
        }
        if let Some(r) = self.store.active_rollout(service, env).await? {
            let takes_traffic = matches!(
                r.phase,
                Phase::Progressing | Phase::Paused | Phase::Failed | Phase::Recovering
            ) && r.canary_weight > 0.0;
            if let (true, Some(canary_id)) = (takes_traffic, r.canary_instance_id.as_deref()) {
                routes.canary = Some(self.upstream(canary_id).await?);
                routes.canary_weight = r.canary_weight;
            }
        }
        proxy.set_routes(routes.clone());
        Ok(routes)
    }

    async fn upstream(&self, instance_id: &str) -> Result<Upstream> {
        let rec = self.store.instance(instance_id).await?;
        let release = self.store.release(&rec.release_id).await?;
        Ok(Upstream {
            version: release.version,
            addr: SocketAddr::from(([127, 0, 0, 1], rec.port)),
        })
    }
}

/// The service's run command for one release: `{artifact}` is the release's file (quoted) or
/// its command line (verbatim: it is meant to be a command).
pub fn render_release_command(
    service: &Service,
    release: &Release,
    env: &str,
    port: u16,
) -> String {
    let vars = CommandVars {
        artifact: String::new(),
        port,
        version: release.version.clone(),
        service: release.service.clone(),
        env: env.to_string(),
    };
    let template = match &release.artifact {
        Artifact::File(path) => {
            return render_command(
                &service.run.command,
                &CommandVars {
                    artifact: path.clone(),
                    ..vars
                },
            );
        }
        Artifact::Command(cmd) => service.run.command.replace("{artifact}", cmd),
    };
    render_command(&template, &vars)
}

fn to_instance(rec: &InstanceRecord) -> Instance {
    Instance {
        instance_id: rec.id.clone(),
        pid: rec.pid,
        port: rec.port,
    }
}
