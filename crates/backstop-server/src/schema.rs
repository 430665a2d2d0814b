//! Schema coordination for recoveries: what the environment's database has applied, what the
//! release being restored runs on, and the downs a recovery runs.

use anyhow::{Context, Result, anyhow};
use backstop_config::{MigrationEngine, Service};
use backstop_core::schema::{RestoreOption, SchemaDecision, plan_schema_rollback};
use backstop_migrate::Engine;
use backstop_migrate::apply::{self, DownOutcome};

use crate::Ctx;

/// A finished `migrations check`: passed, the reason, the counts.
pub type CheckOutcome = (bool, String, serde_json::Value);

/// Outcomes of `migrations check` by [`check_key`]. Only outcomes of a check that ran to the
/// end are kept; "cannot be checked" is retried every time.
#[derive(Debug, Default)]
pub struct CheckCache(std::sync::Mutex<std::collections::HashMap<String, CheckOutcome>>);

impl CheckCache {
    fn get(&self, key: &str) -> Option<CheckOutcome> {
        self.0.lock().ok()?.get(key).cloned()
    }

    fn put(&self, key: String, outcome: CheckOutcome) {
        if let Ok(mut map) = self.0.lock() {
            map.insert(key, outcome);
        }
    }
}

/// What a check's outcome depends on: the engine, every script's hash in apply order (the text
/// `backstop.sum` would hold, so an edited, added, removed or reordered script changes it) and
/// the recorded `backstop.sum`. `None` when the set cannot be read (the check says why).
fn check_key(spec: &backstop_config::MigrationsSpec) -> Option<String> {
    use sha2::{Digest, Sha256};
    let set = backstop_migrate::load(&spec.dir).ok()?;
    let recorded = match std::fs::read(spec.dir.join(backstop_migrate::checksum::SUM_FILE)) {
        Ok(bytes) => bytes,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(_) => return None,
    };
    let mut h = Sha256::new();
    h.update(format!("{:?}\n", engine(spec.engine)));
    h.update(backstop_migrate::checksum::render_sum(&set));
    h.update(b"\nrecorded\n");
    h.update(&recorded);
    Some(format!(
        "{}:{}",
        spec.dir.display(),
        hex::encode(h.finalize())
    ))
}

fn engine(e: MigrationEngine) -> Engine {
    match e {
        MigrationEngine::Sqlite => Engine::Sqlite,
        MigrationEngine::Postgres => Engine::Postgres,
    }
}

/// The engine and URL of `env`'s database, or why they are not known. The URL comes from the
/// environment variable the config names, so it never sits in the config or the journal.
fn database(svc: &Service, env: &str) -> Result<(Engine, String)> {
    let spec = svc
        .migrations
        .as_ref()
        .ok_or_else(|| anyhow!("service {} declares no migrations", svc.name))?;
    let var = svc.database_url_env_for(env).ok_or_else(|| {
        anyhow!(
            "no database URL for {}/{env}: set migrations.database_url_env (or the environment's database_url_env)",
            svc.name
        )
    })?;
    let url = std::env::var(var).map_err(|_| {
        anyhow!(
            "environment variable {var} (the database URL of {}/{env}) is not set for the daemon",
            svc.name
        )
    })?;
    Ok((engine(spec.engine), url))
}

impl Ctx {
    /// Decides, before a recovery touches anything, what going back to `release_id` in `env`
    /// means for the database. `None` when the service has no migrations or the release
    /// declared no schema range (nothing to coordinate).
    pub async fn schema_decision(
        &self,
        service: &str,
        env: &str,
        release_id: &str,
    ) -> Result<Option<SchemaDecision>> {
        let svc = self.service(service)?;
        if svc.migrations.is_none() {
            return Ok(None);
        }
        let release = self.store.release(release_id).await?;
        let Some(range) = release.schema.as_ref() else {
            return Ok(None);
        };
        let refuse = |reason: String| SchemaDecision::Refuse {
            current: None,
            reason,
            options: vec![
                "configure the environment's database URL and retry the rollback".into(),
                "roll forward: release a fix that runs on the current schema".into(),
            ],
        };
        let (engine, url) = match database(svc, env) {
            Ok(db) => db,
            Err(e) => return Ok(Some(refuse(format!("cannot read the schema: {e:#}")))),
        };
        let applied = match apply::history(engine, &url).await {
            Ok(h) => h,
            Err(e) => {
                return Ok(Some(refuse(format!(
                    "cannot read the database's migration history: {e}"
                ))));
            }
        };
        // Where the schema has no way back, restoring a stateful component's snapshot may.
        let restore: Vec<RestoreOption> = svc
            .stateful
            .iter()
            .map(|st| RestoreOption {
                name: st.name.clone(),
                rpo: backstop_config::format_duration(st.rpo),
                restore_command: st.restore.clone(),
            })
            .collect();
        Ok(Some(plan_schema_rollback(&applied, Some(range), &restore)))
    }

    /// Runs `migrations check` on the service's migration set (lint + proof on a scratch
    /// database): whether it passes, why, and the counts. Remembered per version of the set
    /// ([`check_key`]), so a rollout start pays for the proof only when a script changed.
    pub async fn check_migrations(&self, spec: &backstop_config::MigrationsSpec) -> CheckOutcome {
        let key = check_key(spec);
        if let Some(done) = key
            .as_deref()
            .and_then(|k| self.caches.migration_checks.get(k))
        {
            return done;
        }
        let outcome = Self::run_migrations_check(spec).await;
        // A set that could not be checked (no scratch database, unreadable files) is not
        // remembered: the next rollout start tries again.
        if let Some(key) = key
            && !outcome.2.is_null()
        {
            self.caches.migration_checks.put(key, outcome.clone());
        }
        outcome
    }

    async fn run_migrations_check(spec: &backstop_config::MigrationsSpec) -> CheckOutcome {
        let dir = spec.dir.display().to_string();
        match backstop_migrate::check(&spec.dir, engine(spec.engine), None).await {
            Ok(report) if report.ok => (
                true,
                format!(
                    "{dir}: {} migration(s), every down proven reversible",
                    report.summary.migrations
                ),
                serde_json::json!({"summary": report.summary}),
            ),
            Ok(report) => {
                let first: Vec<String> = report
                    .migrations
                    .iter()
                    .flat_map(|m| {
                        m.findings
                            .iter()
                            .filter(|f| f.severity == backstop_migrate::Severity::Error)
                            .map(move |f| format!("{} {}: {}", m.version, f.rule, f.message))
                    })
                    .take(3)
                    .collect();
                (
                    false,
                    format!(
                        "{dir}: {} error(s), {} migration(s) not proven: {} (`backstop migrations check {dir}`)",
                        report.summary.errors,
                        report.summary.migrations
                            - report.summary.proven
                            - report.summary.irreversible,
                        first.join("; ")
                    ),
                    serde_json::json!({"summary": report.summary}),
                )
            }
            Err(e) => (
                false,
                format!("{dir}: cannot be checked: {e}"),
                serde_json::Value::Null,
            ),
        }
    }

    /// Runs one migration's down on `env`'s database (a recovery step).
    pub async fn run_migration_down(
        &self,
        service: &str,
        env: &str,
        version: &str,
        down_sha256: &str,
    ) -> Result<DownOutcome> {
        let svc = self.service(service)?;
        let (engine, url) = database(svc, env)?;
        apply::run_down(engine, &url, version, down_sha256)
            .await
            .with_context(|| format!("down of migration {version} on {service}/{env}"))
    }
}
