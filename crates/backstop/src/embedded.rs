//! A real daemon running inside this process (quickstart, benchmarks): the same `serve` as
//! `backstop serve`, on a free loopback port, with a generated config in a state folder.

use std::path::Path;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use backstop_api::releases::CreateRelease;
use backstop_api::rollouts::{CreateRollout, RolloutDetail};
use backstop_core::model::{Phase, Release, Rollout};

use crate::client::{Client, read_token};

pub struct Embedded {
    pub api: String,
    pub client: Client,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<()>>,
}

impl Embedded {
    /// Writes `config_yaml` to `state_dir/backstop.yaml`, validates it and starts the daemon.
    pub async fn start(state_dir: &Path, config_yaml: &str) -> Result<Embedded> {
        std::fs::create_dir_all(state_dir)
            .with_context(|| format!("creating {}", state_dir.display()))?;
        let config_path = state_dir.join("backstop.yaml");
        std::fs::write(&config_path, config_yaml)?;
        let config = backstop_config::load(&config_path)
            .map_err(|e| anyhow!("generated config is invalid:\n{e}"))?;
        let mut opts = backstop_server::ServeOptions::new(config, state_dir.to_path_buf())?;
        opts.data_plane = crate::data_plane()?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let api = format!("http://{}", listener.local_addr()?);
        let (stop, stop_rx) = tokio::sync::oneshot::channel::<()>();
        let task = tokio::spawn(backstop_server::serve(listener, opts, async move {
            let _ = stop_rx.await;
        }));
        let token = wait_for_token(state_dir).await?;
        wait_healthy(&api).await?;
        Ok(Embedded {
            client: Client::with(api.clone(), token),
            api,
            stop: Some(stop),
            task,
        })
    }

    /// Registers `version` of `service` as this very binary running the sample service, which
    /// fails `error_ratio` of its requests.
    pub async fn register(&self, service: &str, version: &str, error_ratio: f64) -> Result<()> {
        let exe = std::env::current_exe()
            .context("locating the backstop binary (it runs the sample service)")?;
        let release = CreateRelease {
            service: service.to_owned(),
            version: version.to_owned(),
            file: Some(exe.display().to_string()),
            command: None,
            env: [("DEMO_ERROR_RATIO".to_owned(), error_ratio.to_string())].into(),
            secrets: std::collections::BTreeMap::new(),
            schema: None,
        };
        let _: Release = self.client.post("/api/v1/releases", &release).await?;
        Ok(())
    }

    /// Starts a rollout and polls it until it ends, calling `on_change` with each new state.
    pub async fn rollout_to_end(
        &self,
        service: &str,
        env: &str,
        version: &str,
        limit: Duration,
        mut on_change: impl FnMut(&RolloutDetail),
    ) -> Result<RolloutDetail> {
        let r: Rollout = self
            .client
            .post(
                "/api/v1/rollouts",
                &CreateRollout {
                    service: service.to_owned(),
                    env: env.to_owned(),
                    version: version.to_owned(),
                    critical: false,
                    override_freeze: false,
                    reason: None,
                },
            )
            .await?;
        let deadline = tokio::time::Instant::now() + limit;
        let mut last = (Phase::Pending, -1.0);
        loop {
            let d: RolloutDetail = self
                .client
                .get(&format!("/api/v1/rollouts/{}", r.id))
                .await?;
            if (d.rollout.phase, d.rollout.canary_weight) != last {
                last = (d.rollout.phase, d.rollout.canary_weight);
                on_change(&d);
            }
            if !d.rollout.phase.is_active() {
                return Ok(d);
            }
            if d.rollout.phase == Phase::Paused {
                bail!(
                    "rollout {} paused: {}",
                    r.id,
                    d.rollout.reason.unwrap_or_default()
                );
            }
            if tokio::time::Instant::now() > deadline {
                bail!(
                    "rollout {} did not finish within {} s",
                    r.id,
                    limit.as_secs()
                );
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
    }

    pub async fn stop(mut self) -> Result<()> {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        (&mut self.task).await.context("daemon task")?
    }
}

async fn wait_for_token(state_dir: &Path) -> Result<String> {
    for _ in 0..200 {
        if let Ok(t) = read_token(state_dir) {
            return Ok(t);
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    read_token(state_dir)
}

async fn wait_healthy(api: &str) -> Result<()> {
    let http = reqwest::Client::new();
    for _ in 0..200 {
        if http
            .get(format!("{api}/healthz"))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
        {
            return Ok(());
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    bail!("the daemon did not become healthy at {api}")
}
