//! The side of the daemon that touches the world: supervised instances and the built-in
//! proxies. Every action here is check-then-act against the real process or proxy, so the
//! controller may repeat any of them after a crash without doing anything twice.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::{Context, Result, anyhow};
use backstop_config::{
    CommandScripts, CommandVars, Deployer, Environment, Probe, PrometheusSignals, Service, Traffic,
    render_command,
};
use backstop_core::model::{Artifact, InstanceRecord, InstanceState, Phase, Release};
use backstop_drivers::process::{self, Instance, InstanceSpec};
use backstop_drivers::prometheus::{PrometheusConfig, PrometheusSource};
use backstop_drivers::proxy::{Routes, Upstream, VersionStats};
use backstop_drivers::router::TrafficRouter;
use backstop_drivers::router::command::{Cmd, CommandRouter, CommandRouterConfig};
use backstop_drivers::router::haproxy::{HaproxyAddress, HaproxyConfig, HaproxyRouter};
use backstop_drivers::router::nginx::{NginxConfig, NginxRouter};
use backstop_judge::ArmCounts;
use backstop_store::{BlobError, BlobStore, StoreError};
use std::sync::Arc;

use crate::Ctx;
use crate::data_plane::{DataPlane, ProxyHandle};
use crate::hosts::Host;

/// Where the analysis reads per-version counts when the router does not (or cannot) count.
#[derive(Debug, Clone)]
pub enum SignalSource {
    Prometheus(Box<PrometheusSource>),
    /// A command or an HTTP endpoint answering success and failure counts per version.
    Counts(backstop_drivers::counts::CountsSource),
}

impl SignalSource {
    /// Cumulative per-version counters now.
    pub async fn stats(&self) -> Result<Vec<VersionStats>> {
        Ok(match self {
            SignalSource::Prometheus(p) => p.stats().await?,
            SignalSource::Counts(c) => c.stats().await?,
        })
    }

    /// What it asks, for the rollout's record (`analysis.source`).
    pub fn describe(&self) -> serde_json::Value {
        match self {
            SignalSource::Prometheus(p) => {
                serde_json::json!({"source": "prometheus", "queries": p.queries()})
            }
            SignalSource::Counts(c) => {
                serde_json::json!({"source": "counts", "asks": c.describe()})
            }
        }
    }
}

/// The signal source of `svc` in `env`, if its config names one.
pub fn build_signal_source(svc: &Service, env: &Environment) -> Result<Option<SignalSource>> {
    let render = |q: &str| PrometheusSignals::render(q, &svc.name, &env.name);
    if let Some(p) = &svc.signals.prometheus {
        let source = PrometheusSource::new(PrometheusConfig {
            url: p.url.clone(),
            requests: render(&p.requests),
            errors: render(&p.errors),
            latency: p.latency.as_deref().map(render),
            version_label: p.version_label.clone(),
            timeout: p.timeout,
        })?;
        return Ok(Some(SignalSource::Prometheus(Box::new(source))));
    }
    if let Some(c) = &svc.signals.command {
        return Ok(Some(SignalSource::Counts(
            backstop_drivers::counts::CountsSource::Command {
                run: render(&c.run),
                vars: BTreeMap::from([
                    ("BACKSTOP_SERVICE".to_owned(), svc.name.clone()),
                    ("BACKSTOP_ENV".to_owned(), env.name.clone()),
                ]),
                timeout: c.timeout,
            },
        )));
    }
    if let Some(h) = &svc.signals.http {
        return Ok(Some(SignalSource::Counts(
            backstop_drivers::counts::CountsSource::Http {
                url: render(&h.url),
                timeout: h.timeout,
            },
        )));
    }
    Ok(None)
}

/// Cumulative counts of flag `flag`'s on and off cohorts from Prometheus: the service's signal
/// selectors summed by the flag's cohort label (`on`/`off`) instead of the version label.
pub async fn prometheus_cohorts(
    p: &PrometheusSignals,
    service: &str,
    env: &str,
    flag: &backstop_config::validation::Flag,
) -> Result<(ArmCounts, ArmCounts)> {
    let render = |q: &str| PrometheusSignals::render(q, service, env);
    let stats = PrometheusSource::new(PrometheusConfig {
        url: p.url.clone(),
        requests: render(&p.requests),
        errors: render(&p.errors),
        latency: p.latency.as_deref().map(render),
        version_label: flag.cohort_label(),
        timeout: p.timeout,
    })?
    .stats()
    .await?;
    let side = |v: &str| crate::controller::delta(None, stats.iter().find(|s| s.version == v));
    Ok((side("on"), side("off")))
}

/// How long a stopping instance gets between SIGTERM and SIGKILL.
pub const STOP_GRACE: Duration = Duration::from_secs(5);

impl Ctx {
    /// Sends `n` to its service's webhooks (none configured: nothing is sent).
    pub fn notify(&self, n: backstop_drivers::notify::Notification) {
        if let Some(notifier) = self.drivers.notifiers.get(&n.service) {
            notifier.notify(n);
        }
    }

    pub fn service(&self, name: &str) -> Result<&Service> {
        self.config
            .service(name)
            .ok_or_else(|| anyhow!("service {name:?} is not in the config"))
    }

    pub fn router(&self, service: &str, env: &str) -> Result<&Arc<dyn TrafficRouter>> {
        self.drivers
            .routers
            .get(&(service.to_string(), env.to_string()))
            .ok_or_else(|| anyhow!("no traffic router for {service}/{env}"))
    }

    /// Per-version counters from the service's signal source (`signals.prometheus`, `.command`,
    /// `.http`) when it has one, else from the router when it can observe traffic (built-in proxy,
    /// HAProxy); empty otherwise.
    pub async fn traffic_stats(&self, service: &str, env: &str) -> Result<Vec<VersionStats>> {
        if let Some(source) = self
            .drivers
            .signal_sources
            .get(&(service.to_string(), env.to_string()))
        {
            return source.stats().await;
        }
        Ok(self
            .router(service, env)?
            .stats()
            .await?
            .unwrap_or_default())
    }

    /// Cumulative counts of feature flag `flag`'s on and off cohorts in `service`/`env`: from
    /// the service's Prometheus (series labelled with the flag's cohort label `on`/`off`) when
    /// it has one, else from the router when it sees the applications' `x-backstop-flags`
    /// header (the built-in proxy).
    pub async fn flag_cohorts(
        &self,
        service: &Service,
        env: &str,
        flag: &backstop_config::validation::Flag,
    ) -> Result<(ArmCounts, ArmCounts)> {
        if let Some(p) = &service.signals.prometheus {
            return prometheus_cohorts(p, &service.name, env, flag).await;
        }
        let router = self.router(&service.name, env)?;
        let Some(stats) = router.cohort_stats().await? else {
            return Err(anyhow!(
                "the {} router of {}/{env} cannot tell flag cohorts apart: route through the built-in proxy (applications set `x-backstop-flags: {}=on|off`) or give the service `signals.prometheus` with series labelled `{}`",
                router.kind(),
                service.name,
                flag.key,
                flag.cohort_label()
            ));
        };
        let side = |v: &str| {
            let name = format!("{}={v}", flag.key);
            crate::controller::delta(None, stats.iter().find(|s| s.version == name))
        };
        Ok((side("on"), side("off")))
    }

    /// Where the instances of `service` in `env` run: its agent's host, or this one.
    pub fn host(&self, service: &str, env: &str) -> Result<Host<'_>> {
        let placed = self
            .config
            .service(service)
            .and_then(|s| s.environment(env))
            .and_then(|e| e.agent.as_deref());
        match placed {
            None => Ok(self
                .drivers
                .local_agent
                .as_ref()
                .map_or(Host::Local, Host::Agent)),
            Some(name) => self
                .drivers
                .agents
                .get(name)
                .map(Host::Agent)
                .ok_or_else(|| anyhow!("agent {name:?} of {service}/{env} is not in the config")),
        }
    }

    /// Where instance `instance_id`'s output goes on this host.
    pub fn log_path(&self, instance_id: &str) -> PathBuf {
        self.state_dir
            .join("logs")
            .join(format!("{instance_id}.log"))
    }

    /// Makes sure every instance of `release` whose first instance is `id` runs (one, or
    /// `run.instances` of them: `id`, `id-r2`, …); returns the first's record.
    pub async fn ensure_instance(
        &self,
        id: &str,
        release: &Release,
        env: &str,
    ) -> Result<InstanceRecord> {
        // Together: a version of ten instances starts in the time of one.
        let ids = self.replica_ids(&release.service, id)?;
        let started = futures_util::future::try_join_all(
            ids.iter().map(|r| self.ensure_one(r, release, env)),
        )
        .await?;
        started
            .into_iter()
            .next()
            .ok_or_else(|| anyhow!("instance {id}: nothing started"))
    }

    /// The ids of the instances of the version whose first instance is `id`, as the service's
    /// `run.instances` has them now.
    pub fn replica_ids(&self, service: &str, id: &str) -> Result<Vec<String>> {
        let run = &self.service(service)?.run;
        let n = match run.deployer {
            Deployer::Process { .. } => run.instances,
            Deployer::Command(_) => 1,
        };
        Ok(backstop_core::partial::replica_ids(id, n))
    }

    /// Makes sure instance `id` of `release` runs: adopts it when it already does (also when a
    /// previous controller started it but crashed before recording its pid), starts it otherwise.
    pub async fn ensure_one(
        &self,
        id: &str,
        release: &Release,
        env: &str,
    ) -> Result<InstanceRecord> {
        // A replica that lost its lease starts and stops nothing (see `check_fence`).
        self.store.check_fence().await?;
        let known = match self.store.instance(id).await {
            Ok(rec) => Some(rec),
            Err(StoreError::NotFound(_)) => None,
            Err(e) => return Err(e.into()),
        };
        let service = self.service(&release.service)?;
        let host = self.host(&release.service, env)?;
        let template = match &service.run.deployer {
            Deployer::Process { command } => command,
            Deployer::Command(scripts) => {
                return self
                    .ensure_scripted_instance(id, service, scripts, release, env, known)
                    .await;
            }
        };
        if let Some(rec) = &known {
            // Running already: started before a controller restart, maybe by a controller that
            // died before journaling the pid.
            let pid = if rec.pid != 0 && host.is_running(&to_instance(rec)).await? {
                Some(rec.pid)
            } else {
                host.find_group(id).await?
            };
            if let Some(pid) = pid {
                let adopted = InstanceRecord {
                    pid,
                    state: InstanceState::Running,
                    ..rec.clone()
                };
                // Health before traffic: a process found running may still be starting (or be
                // hung); it counts as running only once it answers its health check.
                let health = &service.run.health;
                match host
                    .await_healthy(
                        &to_instance(&adopted),
                        &health.http,
                        health.timeout,
                        health.interval,
                        health.start_timeout,
                    )
                    .await
                {
                    Ok(()) => {
                        tracing::info!(
                            instance = id,
                            pid,
                            "Instance already running and healthy; adopted."
                        );
                        self.store.put_instance(&adopted).await?;
                        return Ok(adopted);
                    }
                    Err(e) => {
                        tracing::warn!(
                            instance = id,
                            pid,
                            error = format!("{e:#}"),
                            "A running instance never became healthy; stopping it to start it anew."
                        );
                        host.stop(&to_instance(&adopted), STOP_GRACE).await?;
                    }
                }
            }
        }
        let port = host.free_port().await?;
        // Intent first: the port and id are on disk before the process exists.
        let mut rec = self.starting_record(id, release, env, port);
        self.store.put_instance(&rec).await?;
        let mut runnable = self.runnable(release).await?;
        if let Artifact::File(path) = &runnable.artifact {
            runnable.artifact = Artifact::File(host.artifact_path(&release.sha256, path).await?);
        }
        let command = render_release_command(template, &runnable, env, port);
        let mut vars: BTreeMap<String, String> = service.run.env.clone();
        vars.extend(self.param_env(&release.service, env)?);
        vars.extend(release.env.clone());
        vars.extend(release_secrets(release)?);
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
        let started = host.start(&spec).await?;
        rec.pid = started.pid;
        rec.state = InstanceState::Running;
        self.store.put_instance(&rec).await?;
        tracing::info!(instance = id, release = %release.id, pid = rec.pid, port, "Instance started and healthy.");
        Ok(rec)
    }

    /// The record of instance `id` of `release` about to start on `port` (written before the
    /// process exists).
    fn starting_record(&self, id: &str, release: &Release, env: &str, port: u16) -> InstanceRecord {
        InstanceRecord {
            id: id.to_string(),
            service: release.service.clone(),
            env: env.to_string(),
            release_id: release.id.clone(),
            pid: 0,
            port,
            started_at_ms: self.clock.now_ms(),
            state: InstanceState::Starting,
        }
    }

    /// The release as it must run: its artifact replaced by the verified backup in the blob
    /// store (a file's stored copy, made executable; a command's stored text), so a rollback
    /// works after the build folder was cleaned, and a corrupt backup is refused, never run.
    /// A release registered before backups existed is backed up now if its original file still
    /// has the registered digest.
    pub async fn runnable(&self, release: &Release) -> Result<Release> {
        let blobs = self.blobs.clone();
        let r = release.clone();
        let artifact = tokio::task::spawn_blocking(move || runnable_artifact(blobs.as_ref(), &r))
            .await
            .context("verifying the artifact backup")??;
        Ok(Release {
            artifact,
            ..release.clone()
        })
    }

    /// Stops the instances of the version whose first instance is `id` (its further ones too,
    /// however many `run.instances` said when they started).
    pub async fn stop_instance(&self, id: &str) -> Result<()> {
        let first = match self.store.instance(id).await {
            Ok(rec) => rec,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        // The further instances `run.instances` names now (one may be starting), and any
        // running one left from a larger setting.
        let mut further = self.replica_ids(&first.service, id)?.split_off(1);
        for inst in self.store.running_instances().await? {
            if backstop_core::partial::is_replica_of(&inst.id, id) && !further.contains(&inst.id) {
                further.push(inst.id);
            }
        }
        self.stop_one(id).await?;
        for replica in &further {
            self.stop_one(replica).await?;
        }
        Ok(())
    }

    /// Stops an instance's process group (no-op when it is gone) and records it stopped.
    pub async fn stop_one(&self, id: &str) -> Result<()> {
        self.store.check_fence().await?;
        let mut rec = match self.store.instance(id).await {
            Ok(rec) => rec,
            Err(StoreError::NotFound(_)) => return Ok(()),
            Err(e) => return Err(e.into()),
        };
        let release = self.store.release(&rec.release_id).await?;
        let service = self.service(&release.service)?;
        if let Some(scripts) = service.run.command_scripts() {
            let params = self.param_env(&release.service, &rec.env)?;
            let vars = script_vars(service, &params, &release, &rec.env, id, rec.port, "stop")?;
            deployer(scripts)
                .stop(&vars)
                .await
                .with_context(|| format!("stop script for instance {id}"))?;
            rec.state = InstanceState::Stopped;
            self.store.put_instance(&rec).await?;
            return Ok(());
        }
        let host = self.host(&release.service, &rec.env)?;
        if rec.pid == 0
            && let Some(pid) = host.find_group(id).await?
        {
            rec.pid = pid;
        }
        if rec.pid != 0 {
            host.stop(&to_instance(&rec), STOP_GRACE).await?;
        }
        rec.state = InstanceState::Stopped;
        self.store.put_instance(&rec).await?;
        tracing::info!(instance = id, "Instance stopped.");
        Ok(())
    }

    /// The command deployer's version of [`Ctx::ensure_instance`]: the user's deploy script
    /// puts the release up on the port Backstop chose; health is the health script or the HTTP
    /// check. An instance that already answers healthy is adopted, not deployed again.
    async fn ensure_scripted_instance(
        &self,
        id: &str,
        service: &Service,
        scripts: &CommandScripts,
        release: &Release,
        env: &str,
        known: Option<InstanceRecord>,
    ) -> Result<InstanceRecord> {
        let port = match &known {
            Some(rec) if rec.port != 0 => rec.port,
            _ => process::free_port().context("choosing a port")?,
        };
        let mut rec = self.starting_record(id, release, env, port);
        if known.is_some()
            && self
                .scripted_health(service, scripts, release, env, id, port)
                .await
                .is_ok()
        {
            rec.state = InstanceState::Running;
            self.store.put_instance(&rec).await?;
            return Ok(rec);
        }
        self.store.put_instance(&rec).await?;
        let params = self.param_env(&release.service, env)?;
        let vars = script_vars(
            service,
            &params,
            &self.runnable(release).await?,
            env,
            id,
            port,
            "deploy",
        )?;
        deployer(scripts)
            .deploy(&vars)
            .await
            .with_context(|| format!("deploy script for instance {id}"))?;
        let deadline = tokio::time::Instant::now() + service.run.health.start_timeout;
        loop {
            match self
                .scripted_health(service, scripts, release, env, id, port)
                .await
            {
                Ok(()) => break,
                Err(e) if tokio::time::Instant::now() >= deadline => {
                    return Err(e.context(format!(
                        "instance {id} not healthy within {:?}",
                        service.run.health.start_timeout
                    )));
                }
                Err(_) => tokio::time::sleep(service.run.health.interval).await,
            }
        }
        rec.state = InstanceState::Running;
        self.store.put_instance(&rec).await?;
        tracing::info!(instance = id, release = %release.id, port, "Instance deployed by script and healthy.");
        Ok(rec)
    }

    /// One health check of an instance, the way its deployer defines health.
    pub async fn instance_health(
        &self,
        service: &Service,
        release: &Release,
        inst: &InstanceRecord,
    ) -> Result<()> {
        if let Some(scripts) = service.run.command_scripts() {
            return self
                .scripted_health(service, scripts, release, &inst.env, &inst.id, inst.port)
                .await;
        }
        let host = self.host(&service.name, &inst.env)?;
        let timeout = service.run.health.timeout;
        host.check_health(inst.port, &service.run.health.http, timeout)
            .await?;
        // TCP and exec probes run on this daemon's host (its own agent's instances run here
        // too); another host's agent answers the HTTP checks of its instances.
        let here = match host {
            Host::Local => true,
            Host::Agent(a) => a.is_local(),
        };
        for probe in &service.run.probes {
            match probe {
                Probe::Http { path } => host.check_health(inst.port, path, timeout).await?,
                Probe::Tcp | Probe::Exec { .. } if !here => {}
                Probe::Tcp => process::check_tcp(inst.port, timeout).await?,
                Probe::Exec { command } => {
                    let vars = BTreeMap::from([
                        ("BACKSTOP_INSTANCE".to_owned(), inst.id.clone()),
                        ("BACKSTOP_PORT".to_owned(), inst.port.to_string()),
                        ("BACKSTOP_SERVICE".to_owned(), service.name.clone()),
                        ("BACKSTOP_ENV".to_owned(), inst.env.clone()),
                        ("BACKSTOP_VERSION".to_owned(), release.version.clone()),
                    ]);
                    exec_probe(command, timeout)
                        .health(&vars)
                        .await
                        .with_context(|| format!("exec probe `{command}`"))?;
                }
            }
        }
        Ok(())
    }

    async fn scripted_health(
        &self,
        service: &Service,
        scripts: &CommandScripts,
        release: &Release,
        env: &str,
        id: &str,
        port: u16,
    ) -> Result<()> {
        if scripts.health.is_some() {
            let params = self.param_env(&release.service, env)?;
            let vars = script_vars(service, &params, release, env, id, port, "health")?;
            let mut once = deployer(scripts);
            once.retries = 0;
            once.health(&vars).await?;
            return Ok(());
        }
        process::check_health(port, &service.run.health.http, service.run.health.timeout).await?;
        Ok(())
    }

    /// Points the proxy of `service/env` at what the store says should serve: the stable
    /// instance, plus the canary of a rollout that is taking traffic.
    pub async fn apply_routes(&self, service: &str, env: &str) -> Result<Routes> {
        let routes = self.stored_routes(service, env).await?;
        self.apply(service, env, &routes).await?;
        Ok(routes)
    }

    /// Applies `routes` to the router of `service/env` and remembers them as applied.
    async fn apply(&self, service: &str, env: &str, routes: &Routes) -> Result<()> {
        // In a lease's name when applied for one: the proxy refuses a stale epoch's routes.
        let fence = crate::hosts::current_fence();
        self.router(service, env)?
            .apply_fenced(routes, fence.as_ref())
            .await?;
        self.caches
            .applied_routes
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert((service.to_string(), env.to_string()), routes.clone());
        Ok(())
    }

    /// The routes [`Ctx::apply_routes`] would apply, from the store.
    async fn stored_routes(&self, service: &str, env: &str) -> Result<Routes> {
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
        Ok(routes)
    }

    /// Sends all of `service/env`'s traffic to its stable instance, whatever the store says of
    /// a canary (the store may be refusing writes). True when a canary was taking traffic.
    pub async fn apply_stable_only(&self, service: &str, env: &str) -> Result<bool> {
        let mut routes = match self.stored_routes(service, env).await {
            Ok(routes) => routes,
            // The store cannot be read either (a database server that is down): what was
            // applied last is what users are on.
            Err(e) => {
                let applied = self
                    .caches
                    .applied_routes
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(&(service.to_string(), env.to_string()))
                    .cloned();
                applied.ok_or(e)?
            }
        };
        let had_canary = routes.canary.is_some() && routes.canary_weight > 0.0;
        routes.canary = None;
        routes.canary_weight = 0.0;
        self.apply(service, env, &routes).await?;
        Ok(had_canary)
    }

    /// Where the proxy sends a version's traffic: those of its instances that run (one being
    /// restarted or replaced is left out until it is back), or its first when none does.
    async fn upstream(&self, instance_id: &str) -> Result<Upstream> {
        let rec = self.store.instance(instance_id).await?;
        let release = self.store.release(&rec.release_id).await?;
        let addr = |port: u16| SocketAddr::from(([127, 0, 0, 1], port));
        let mut running = Vec::new();
        for id in self.replica_ids(&release.service, instance_id)? {
            match self.store.instance(&id).await {
                Ok(r) if r.state == InstanceState::Running => running.push(addr(r.port)),
                Ok(_) | Err(StoreError::NotFound(_)) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let (first, replicas) = match running.split_first() {
            Some((first, rest)) => (*first, rest.to_vec()),
            None => (addr(rec.port), Vec::new()),
        };
        Ok(Upstream {
            version: release.version,
            addr: first,
            replicas,
        })
    }

    /// Takes one of a version's several instances out of its traffic before it is restarted or
    /// replaced (recorded as starting, routes applied again), so users meet its siblings
    /// meanwhile rather than a dead port. A version's only instance stays routed: nothing else
    /// could answer.
    pub async fn eject(&self, inst: &InstanceRecord) -> Result<()> {
        let first = backstop_core::partial::primary_of(&inst.id);
        if self.replica_ids(&inst.service, first)?.len() < 2 {
            return Ok(());
        }
        let mut out = self.store.instance(&inst.id).await?;
        if out.state == InstanceState::Running {
            out.state = InstanceState::Starting;
            self.store.put_instance(&out).await?;
            self.apply_routes(&inst.service, &inst.env).await?;
        }
        Ok(())
    }
}

/// An exec probe as a one-shot health script: no retries (a failing probe is the news), the
/// health timeout, a short grace before SIGKILL.
fn exec_probe(command: &str, timeout: Duration) -> backstop_drivers::command::CommandDeployer {
    backstop_drivers::command::CommandDeployer {
        health: Some(command.to_owned()),
        timeout,
        retries: 0,
        output_cap: 4 * 1024,
        grace: Duration::from_secs(1),
        ..backstop_drivers::command::CommandDeployer::new("", "")
    }
}

/// The local path of `release`'s verified backup. A release registered before backups existed
/// is backed up now if its original still has the registered digest; otherwise the error says
/// which digest cannot be trusted and why.
pub fn verified_backup(blobs: &dyn BlobStore, release: &Release) -> Result<PathBuf, String> {
    let digest = release.sha256.as_str();
    let untrusted =
        |e: &dyn std::fmt::Display| format!("its backup sha256:{digest} cannot be trusted: {e}");
    match blobs.local_path(digest) {
        Err(BlobError::Missing(_)) => {
            let backed_up = match &release.artifact {
                Artifact::File(path) => blobs.put_file(std::path::Path::new(path)),
                Artifact::Command(cmd) => blobs.put_bytes(cmd.as_bytes()),
            }
            .map_err(|e| {
                untrusted(&format!(
                    "no stored copy, and the original is unreadable: {e}"
                ))
            })?;
            if backed_up != digest {
                return Err(untrusted(&format!(
                    "no stored copy, and the original {} now hashes to sha256:{backed_up}",
                    release.artifact.as_str()
                )));
            }
            tracing::warn!(release = %release.id, sha256 = digest, "Artifact had no backup; stored it from the unchanged original.");
            blobs.local_path(digest).map_err(|e| untrusted(&e))
        }
        other => other.map_err(|e| untrusted(&e)),
    }
}

fn runnable_artifact(blobs: &dyn BlobStore, release: &Release) -> Result<Artifact> {
    let digest = release.sha256.as_str();
    let refuse = |e: &dyn std::fmt::Display| anyhow!("refusing to run {}: {e}", release.id);
    let stored = verified_backup(blobs, release).map_err(|e| refuse(&e))?;
    Ok(match &release.artifact {
        Artifact::File(_) => {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&stored)
                .with_context(|| format!("{}", stored.display()))?
                .permissions()
                .mode();
            if mode & 0o111 != 0o111 {
                // Objects are immutable: read and execute for everyone, write for no one.
                std::fs::set_permissions(&stored, std::fs::Permissions::from_mode(0o555))
                    .with_context(|| format!("making {} executable", stored.display()))?;
            }
            Artifact::File(stored.display().to_string())
        }
        Artifact::Command(_) => {
            let text = String::from_utf8(blobs.get(digest).map_err(|e| refuse(&e))?)
                .map_err(|_| refuse(&"the stored command is not UTF-8"))?;
            Artifact::Command(text)
        }
    })
}

/// The process deployer's command `template` for one release: `{artifact}` is the release's
/// file (quoted) or its command line (verbatim: it is meant to be a command).
pub fn render_release_command(template: &str, release: &Release, env: &str, port: u16) -> String {
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
                template,
                &CommandVars {
                    artifact: path.clone(),
                    ..vars
                },
            );
        }
        Artifact::Command(cmd) => template.replace("{artifact}", cmd),
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

/// Builds the traffic router an environment's config asks for. The built-in proxy starts
/// listening here (and is also registered in `proxies`).
pub async fn build_router(
    svc: &Service,
    env: &Environment,
    plane: &DataPlane,
    state_dir: &std::path::Path,
    agents: &BTreeMap<String, backstop_drivers::agent::AgentClient>,
    local: Option<&backstop_drivers::agent::AgentClient>,
    proxies: &mut BTreeMap<(String, String), ProxyHandle>,
) -> Result<Arc<dyn TrafficRouter>> {
    Ok(match &svc.traffic {
        Traffic::Builtin => {
            let listen = env
                .listen
                .ok_or_else(|| anyhow!("the built-in router needs `listen` on the environment"))?;
            let name = format!("{}/{}", svc.name, env.name);
            let (router, proxy) = match &env.agent {
                Some(agent) => {
                    let agent = agents
                        .get(agent)
                        .ok_or_else(|| anyhow!("agent {agent:?} is not in the config"))?;
                    let (router, proxy) = crate::data_plane::on_agent(agent, &name, listen, true);
                    // Listening there from now on when the agent answers; it may be down.
                    if let ProxyHandle::Process { client, .. } = &proxy
                        && let Err(e) = client.hello().await
                    {
                        tracing::warn!(proxy = %name, error = %e, "The proxy's agent does not answer yet.");
                    }
                    (router, proxy)
                }
                None => {
                    let (router, proxy) =
                        crate::data_plane::start_builtin(plane, state_dir, local, &name, listen)
                            .await?;
                    // Listening from the start (users get a clear 503 before any release).
                    if let ProxyHandle::Process { client, .. } = &proxy {
                        client.hello().await?;
                    }
                    (router, proxy)
                }
            };
            tracing::info!(service = %svc.name, env = %env.name, listen = %proxy.listen_addr(), "Built-in proxy listening.");
            proxies.insert((svc.name.clone(), env.name.clone()), proxy);
            router
        }
        Traffic::Haproxy(h) => {
            let address = match &h.socket {
                backstop_config::HaproxySocket::Unix(p) => HaproxyAddress::Unix(p.clone()),
                backstop_config::HaproxySocket::Tcp(a) => HaproxyAddress::Tcp(a.clone()),
            };
            let mut cfg = HaproxyConfig::new(address, h.backend.clone());
            cfg.stable_server.clone_from(&h.stable_server);
            cfg.canary_server.clone_from(&h.canary_server);
            Arc::new(HaproxyRouter::new(cfg))
        }
        Traffic::Nginx(n) => {
            let cfg = NginxConfig {
                upstream: n.upstream.clone(),
                include_path: n.upstream_file.clone(),
                test_command: Cmd::Shell(n.test_command.clone()),
                reload_command: Cmd::Shell(n.reload_command.clone()),
                pid_file: None,
                command_timeout: Duration::from_secs(30),
                reload_timeout: Duration::from_secs(10),
                extra_directives: Vec::new(),
            };
            Arc::new(NginxRouter::new(cfg)?)
        }
        Traffic::Command(c) => {
            let mut cfg = CommandRouterConfig::new(c.apply.clone());
            cfg.timeout = c.timeout;
            Arc::new(CommandRouter::new(cfg))
        }
    })
}

/// One notifier per service with webhooks. A `secret_env` that is not set is an error at start
/// (a webhook that silently goes unsigned would be worse); the secret itself is never logged.
pub fn build_notifiers(
    config: &backstop_config::Config,
) -> Result<BTreeMap<String, backstop_drivers::notify::Notifier>> {
    use backstop_drivers::notify::{Notifier, WebhookFormat, WebhookTarget};
    let mut out = BTreeMap::new();
    for svc in &config.services {
        if svc.notify.is_empty() {
            continue;
        }
        let mut targets = Vec::new();
        for t in &svc.notify {
            let secret = match &t.secret_env {
                Some(name) => Some(std::env::var(name).with_context(|| {
                    format!(
                        "service {}: webhook secret variable {name} is not set",
                        svc.name
                    )
                })?),
                None => None,
            };
            let routing_key = match &t.routing_key_env {
                Some(name) => Some(std::env::var(name).with_context(|| {
                    format!(
                        "service {}: PagerDuty routing key variable {name} is not set",
                        svc.name
                    )
                })?),
                None => None,
            };
            let format = match t.format {
                backstop_config::WebhookFormat::Json => WebhookFormat::Json,
                backstop_config::WebhookFormat::Slack => WebhookFormat::Slack,
                backstop_config::WebhookFormat::PagerDuty => WebhookFormat::PagerDuty,
                backstop_config::WebhookFormat::PagerDutyChange => WebhookFormat::PagerDutyChange,
            };
            let target = WebhookTarget {
                url: t.webhook.clone(),
                format,
                secret,
                routing_key,
            };
            target
                .validate()
                .with_context(|| format!("service {}: webhook", svc.name))?;
            targets.push(target);
        }
        out.insert(svc.name.clone(), Notifier::start(targets));
    }
    Ok(out)
}

fn deployer(scripts: &CommandScripts) -> backstop_drivers::command::CommandDeployer {
    let mut d = backstop_drivers::command::CommandDeployer::new(&scripts.deploy, &scripts.stop);
    d.health.clone_from(&scripts.health);
    d.timeout = scripts.timeout;
    d.retries = scripts.retries;
    d
}

/// What a deploy/stop/health script is told. The idempotency key is stable per instance and
/// action, so a script re-run after a crash can recognise work it already did.
fn script_vars(
    service: &Service,
    params: &BTreeMap<String, String>,
    release: &Release,
    env: &str,
    instance_id: &str,
    port: u16,
    action: &str,
) -> Result<BTreeMap<String, String>> {
    let mut vars: BTreeMap<String, String> = service.run.env.clone();
    vars.extend(params.clone());
    vars.extend(release.env.clone());
    vars.extend(release_secrets(release)?);
    vars.insert(
        backstop_drivers::command::VERSION_VAR.into(),
        release.version.clone(),
    );
    vars.insert(
        backstop_drivers::command::ARTIFACT_VAR.into(),
        release.artifact.as_str().to_string(),
    );
    vars.insert(
        backstop_drivers::command::IDEMPOTENCY_KEY_VAR.into(),
        format!("{instance_id}/{action}"),
    );
    vars.insert("BACKSTOP_INSTANCE_ID".into(), instance_id.to_string());
    vars.insert("BACKSTOP_PORT".into(), port.to_string());
    vars.insert("BACKSTOP_SERVICE".into(), release.service.clone());
    vars.insert("BACKSTOP_ENV".into(), env.to_string());
    Ok(vars)
}

/// The values of a release's secrets, read now from their references (the error names the
/// reference, never a value).
fn release_secrets(release: &Release) -> Result<BTreeMap<String, String>> {
    release
        .secrets
        .iter()
        .map(|(name, source)| {
            let value = crate::snapshots::release_secret(source)
                .with_context(|| format!("release {} secret {name} ({source})", release.id))?;
            Ok((name.clone(), value))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use backstop_core::model::ReleaseStatus;
    use backstop_store::FolderBlobs;

    /// Flag cohorts from a real Prometheus: the service's selectors summed by the flag's
    /// cohort label, series of every instance adding up per side.
    #[tokio::test]
    async fn flag_cohorts_are_read_from_prometheus_by_their_label() {
        use axum::Router;
        use axum::routing::get;
        let app = Router::new().route(
            "/metrics",
            get(|| async {
                "# TYPE http_requests_total counter\n\
                 http_requests_total{app=\"shop\",instance=\"a\",flag_new_checkout=\"on\"} 40\n\
                 http_requests_total{app=\"shop\",instance=\"b\",flag_new_checkout=\"on\"} 60\n\
                 http_requests_total{app=\"shop\",instance=\"a\",flag_new_checkout=\"off\"} 900\n\
                 # TYPE http_errors_total counter\n\
                 http_errors_total{app=\"shop\",instance=\"a\",flag_new_checkout=\"on\"} 7\n\
                 http_errors_total{app=\"shop\",instance=\"a\",flag_new_checkout=\"off\"} 9\n"
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let target = listener.local_addr().unwrap().to_string();
        tokio::spawn(async move { axum::serve(listener, app).await });
        let port = backstop_testkit::free_port();
        let prom = tokio::task::spawn_blocking(move || {
            backstop_testkit::servers::Prometheus::start(port, &[target])
        })
        .await
        .unwrap();
        let signals = PrometheusSignals {
            url: prom.url.clone(),
            requests: "http_requests_total{app=\"{service}\"}".into(),
            errors: "http_errors_total{app=\"{service}\"}".into(),
            latency: None,
            version_label: "version".into(),
            timeout: Duration::from_secs(5),
        };
        let flag: backstop_config::validation::Flag =
            serde_json::from_value(serde_json::json!({"key": "new-checkout"})).unwrap();
        let mut last = None;
        for _ in 0..100 {
            match prometheus_cohorts(&signals, "shop", "prod", &flag).await {
                Ok((on, off)) if on.requests > 0 && off.requests > 0 => {
                    assert_eq!((on.requests, on.errors), (100, 7));
                    assert_eq!((off.requests, off.errors), (900, 9));
                    return;
                }
                other => last = Some(format!("{other:?}")),
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        panic!("prometheus never gave the cohorts: {last:?}");
    }

    fn release(artifact: Artifact, sha256: String) -> Release {
        Release {
            id: "shop@v1".into(),
            service: "shop".into(),
            version: "v1".into(),
            artifact,
            sha256,
            env: BTreeMap::new(),
            secrets: BTreeMap::new(),
            status: ReleaseStatus::Ok,
            bad_reason: None,
            created_at_ms: 0,
            schema: None,
        }
    }

    #[test]
    fn backups_are_verified_backfilled_only_from_an_unchanged_original_and_corruption_named() {
        let dir = tempfile::tempdir().unwrap();
        let blobs = FolderBlobs::new(dir.path().join("blobs"));
        let original = dir.path().join("app");
        std::fs::write(&original, b"#!/bin/sh\necho v1\n").unwrap();
        let digest = blobs.put_file(&original).unwrap();
        let r = release(
            Artifact::File(original.display().to_string()),
            digest.clone(),
        );

        // Stored: the verified copy, made executable.
        let Artifact::File(path) = runnable_artifact(&blobs, &r).unwrap() else {
            panic!("a file release runs a file")
        };
        assert_eq!(PathBuf::from(&path), verified_backup(&blobs, &r).unwrap());
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = std::fs::metadata(&path).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o555);
        }

        // Missing, original unchanged: backed up again.
        std::fs::remove_file(&path).unwrap();
        verified_backup(&blobs, &r).unwrap();

        // Missing, original changed: refused, naming both digests.
        std::fs::remove_file(&path).unwrap();
        std::fs::write(&original, b"something else").unwrap();
        let e = verified_backup(&blobs, &r).unwrap_err();
        assert!(
            e.contains(&format!("sha256:{digest}")) && e.contains("now hashes to sha256:"),
            "{e}"
        );

        // Corrupt: refused, naming the digest; never run.
        std::fs::write(&original, b"#!/bin/sh\necho v1\n").unwrap();
        verified_backup(&blobs, &r).unwrap();
        std::fs::set_permissions(&path, std::os::unix::fs::PermissionsExt::from_mode(0o644))
            .unwrap();
        std::fs::write(&path, b"tampered").unwrap();
        let e = runnable_artifact(&blobs, &r).unwrap_err().to_string();
        assert!(
            e.starts_with("refusing to run shop@v1")
                && e.contains("corrupt")
                && e.contains(&digest),
            "{e}"
        );

        // A command release runs its stored text.
        let cmd = release(
            Artifact::Command("sleep 5".into()),
            blobs.put_bytes(b"sleep 5").unwrap(),
        );
        assert_eq!(
            runnable_artifact(&blobs, &cmd).unwrap(),
            Artifact::Command("sleep 5".into())
        );
    }
}
