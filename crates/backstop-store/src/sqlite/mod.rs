//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`, so a committed
//! transition survives `kill -9` and power loss alike.

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use async_trait::async_trait;
use backstop_core::Millis;
use backstop_core::audit::{AuditEntry, AuditRecord, GENESIS};
use backstop_core::drill::Drill;
use backstop_core::event::EventKind;
use backstop_core::model::{
    BreakerTrip, EnvironmentState, Event, Freeze, InstanceRecord, Phase, Recovery, RecoveryStep,
    Release, ReleaseStatus, Rollout, StepStatus,
};
use backstop_core::recovery::{StepKind, idempotency_key};
use backstop_core::snapshot::{ConfigSnapshot, RolloutSafeguards};
use backstop_judge::{ArmCounts, Interval};
use sqlx::migrate::{Migration, MigrationType, Migrator};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Row, SqlSafeStr, SqlitePool};

use crate::{Result, Store, StoreError};

/// File name of the database inside the state folder.
pub const DB_FILE: &str = "backstop.db";

/// Every transaction starts with `BEGIN IMMEDIATE`: a deferred transaction that reads and then
/// writes cannot wait for another writer in WAL mode (SQLite answers SQLITE_BUSY at once instead
/// of waiting out the busy timeout), so transactions take the write lock up front.
pub struct SqliteStore {
    pool: SqlitePool,
    /// Serializes audit appends: reading the head and writing the next record must not interleave.
    audit_lock: tokio::sync::Mutex<()>,
}

fn migrator() -> Migrator {
    let migration = |version, name: &'static str, sql: &'static str| {
        Migration::new(
            version,
            name.into(),
            MigrationType::Simple,
            sql.into_sql_str(),
            false,
        )
    };
    Migrator::with_migrations(vec![
        migration(
            1,
            "init",
            include_str!("../../migrations/sqlite/0001_init.sql"),
        ),
        migration(
            2,
            "severity_breaker",
            include_str!("../../migrations/sqlite/0002_severity_breaker.sql"),
        ),
        migration(
            3,
            "artifacts_freezes",
            include_str!("../../migrations/sqlite/0003_artifacts_freezes.sql"),
        ),
        migration(
            4,
            "snapshots_baselines",
            include_str!("../../migrations/sqlite/0004_snapshots_baselines.sql"),
        ),
        migration(
            5,
            "drills",
            include_str!("../../migrations/sqlite/0005_drills.sql"),
        ),
        migration(
            6,
            "release_schema",
            include_str!("../../migrations/sqlite/0006_release_schema.sql"),
        ),
    ])
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match &e {
            sqlx::Error::RowNotFound => StoreError::NotFound("record".into()),
            sqlx::Error::Database(db) if db.is_unique_violation() => {
                StoreError::Conflict(db.message().to_string())
            }
            _ => StoreError::Database(e),
        }
    }
}

/// Stored form of an interval: JSON has no infinity, so the `+Inf` bucket bound is `null`.
#[derive(serde::Serialize, serde::Deserialize)]
struct StoredArm {
    requests: u64,
    errors: u64,
    latency_le_ms: Option<Vec<(Option<f64>, u64)>>,
}

#[derive(serde::Serialize, serde::Deserialize)]
struct StoredInterval {
    t: f64,
    baseline: StoredArm,
    canary: StoredArm,
}

impl From<&ArmCounts> for StoredArm {
    fn from(a: &ArmCounts) -> Self {
        StoredArm {
            requests: a.requests,
            errors: a.errors,
            latency_le_ms: a.latency_le_ms.as_ref().map(|h| {
                h.iter()
                    .map(|(le, n)| (le.is_finite().then_some(*le), *n))
                    .collect()
            }),
        }
    }
}

impl From<StoredArm> for ArmCounts {
    fn from(a: StoredArm) -> Self {
        ArmCounts {
            requests: a.requests,
            errors: a.errors,
            latency_le_ms: a.latency_le_ms.map(|h| {
                h.into_iter()
                    .map(|(le, n)| (le.unwrap_or(f64::INFINITY), n))
                    .collect()
            }),
        }
    }
}

fn interval_json(i: &Interval) -> String {
    json(&StoredInterval {
        t: i.t,
        baseline: (&i.baseline).into(),
        canary: (&i.canary).into(),
    })
}

fn interval_from(text: &str) -> Result<Interval> {
    let s: StoredInterval = parse(text, "rollout interval")?;
    Ok(Interval {
        t: s.t,
        baseline: s.baseline.into(),
        canary: s.canary.into(),
    })
}

fn json<T: serde::Serialize>(v: &T) -> String {
    serde_json::to_string(v).expect("domain types always serialize")
}

fn parse<T: serde::de::DeserializeOwned>(s: &str, what: &str) -> Result<T> {
    serde_json::from_str(s).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

impl SqliteStore {
    /// Opens (creating if missing) `DIR/backstop.db` and applies migrations.
    pub async fn open_dir(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        Self::open(&dir.join(DB_FILE), true).await
    }

    /// Opens an existing state folder's database without creating anything (read-only commands).
    pub async fn open_existing_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::NotFound(format!(
                "state database {}",
                path.display()
            )));
        }
        Self::open(&path, false).await
    }

    async fn open(path: &Path, create: bool) -> Result<Self> {
        let opts = SqliteConnectOptions::from_str("sqlite://")?
            .filename(path)
            .create_if_missing(create)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .busy_timeout(Duration::from_secs(10))
            .foreign_keys(true);
        let pool = SqlitePoolOptions::new()
            .max_connections(4)
            .connect_with(opts)
            .await?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(sqlx::Error::Migrate(Box::new(e))))?;
        Ok(Self {
            pool,
            audit_lock: tokio::sync::Mutex::new(()),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

fn release_from(row: &SqliteRow) -> Result<Release> {
    Ok(Release {
        id: row.try_get("id")?,
        service: row.try_get("service")?,
        version: row.try_get("version")?,
        artifact: parse(&row.try_get::<String, _>("artifact")?, "release.artifact")?,
        sha256: row.try_get("sha256")?,
        env: parse(&row.try_get::<String, _>("env")?, "release.env")?,
        status: match row.try_get::<String, _>("status")?.as_str() {
            "bad" => ReleaseStatus::Bad,
            _ => ReleaseStatus::Ok,
        },
        bad_reason: row.try_get("bad_reason")?,
        created_at_ms: row.try_get("created_at_ms")?,
        schema: row
            .try_get::<Option<String>, _>("schema_range")?
            .map(|s| parse(&s, "release.schema_range"))
            .transpose()?,
    })
}

fn rollout_from(row: &SqliteRow) -> Result<Rollout> {
    let phase: String = row.try_get("phase")?;
    let verdict: Option<String> = row.try_get("verdict")?;
    Ok(Rollout {
        id: row.try_get("id")?,
        service: row.try_get("service")?,
        env: row.try_get("env")?,
        from_release_id: row.try_get("from_release_id")?,
        to_release_id: row.try_get("to_release_id")?,
        phase: Phase::parse(&phase)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown phase {phase:?}")))?,
        step_index: row.try_get("step_index")?,
        step_started_at_ms: row.try_get("step_started_at_ms")?,
        canary_weight: row.try_get("canary_weight")?,
        canary_instance_id: row.try_get("canary_instance_id")?,
        created_at_ms: row.try_get("created_at_ms")?,
        updated_at_ms: row.try_get("updated_at_ms")?,
        actor: row.try_get("actor")?,
        reason: row.try_get("reason")?,
        verdict: verdict.map(|v| parse(&v, "rollout.verdict")).transpose()?,
        severity: row
            .try_get::<Option<String>, _>("severity")?
            .map(|s| parse(&format!("\"{s}\""), "rollout.severity"))
            .transpose()?,
        escalation_deadline_ms: row.try_get("escalation_deadline_ms")?,
        acknowledged_by: row.try_get("acknowledged_by")?,
    })
}

fn snapshot_from(row: &SqliteRow) -> Result<ConfigSnapshot> {
    Ok(ConfigSnapshot {
        service: row.try_get("service")?,
        env: row.try_get("env")?,
        version: row.try_get("version")?,
        manifest: row.try_get("manifest")?,
        created_at_ms: row.try_get("created_at_ms")?,
        actor: row.try_get("actor")?,
        reason: row.try_get("reason")?,
        rollout_id: row.try_get("rollout_id")?,
    })
}

async fn latest_version_after(
    tx: &mut sqlx::Transaction<'_, sqlx::Sqlite>,
    service: &str,
    env: &str,
) -> Result<i64> {
    let next: i64 = sqlx::query_scalar(
        "SELECT COALESCE(MAX(version), 0) + 1 FROM config_snapshots WHERE service = $1 AND env = $2",
    )
    .bind(service)
    .bind(env)
    .fetch_one(&mut **tx)
    .await?;
    Ok(next)
}

fn trip_from(row: &SqliteRow) -> Result<BreakerTrip> {
    Ok(BreakerTrip {
        id: row.try_get("id")?,
        scope: row.try_get("scope")?,
        tripped_at_ms: row.try_get("tripped_at_ms")?,
        failures: parse(&row.try_get::<String, _>("failures")?, "breaker failures")?,
        reset_at_ms: row.try_get("reset_at_ms")?,
        reset_by: row.try_get("reset_by")?,
        reset_reason: row.try_get("reset_reason")?,
    })
}

fn freeze_from(row: &SqliteRow) -> Result<Freeze> {
    Ok(Freeze {
        id: row.try_get("id")?,
        service: row.try_get("service")?,
        env: row.try_get("env")?,
        reason: row.try_get("reason")?,
        actor: row.try_get("actor")?,
        started_at_ms: row.try_get("started_at_ms")?,
        until_ms: row.try_get("until_ms")?,
        ended_at_ms: row.try_get("ended_at_ms")?,
        ended_by: row.try_get("ended_by")?,
        end_reason: row.try_get("end_reason")?,
    })
}

fn instance_from(row: &SqliteRow) -> Result<InstanceRecord> {
    Ok(InstanceRecord {
        id: row.try_get("id")?,
        service: row.try_get("service")?,
        env: row.try_get("env")?,
        release_id: row.try_get("release_id")?,
        pid: u32::try_from(row.try_get::<i64, _>("pid")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        port: u16::try_from(row.try_get::<i64, _>("port")?)
            .map_err(|e| StoreError::Corrupt(e.to_string()))?,
        started_at_ms: row.try_get("started_at_ms")?,
        state: row.try_get("state")?,
    })
}

fn env_from(row: &SqliteRow) -> Result<EnvironmentState> {
    Ok(EnvironmentState {
        service: row.try_get("service")?,
        env: row.try_get("env")?,
        lkg_release_id: row.try_get("lkg_release_id")?,
        stable_instance_id: row.try_get("stable_instance_id")?,
        previous_lkg_release_id: row.try_get("previous_lkg_release_id")?,
    })
}

fn audit_from(row: &SqliteRow) -> Result<AuditRecord> {
    Ok(AuditRecord {
        seq: row.try_get("seq")?,
        at_ms: row.try_get("at_ms")?,
        actor: row.try_get("actor")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        trigger: row.try_get("trigger")?,
        evidence: parse(&row.try_get::<String, _>("evidence")?, "audit.evidence")?,
        prev_hash: row.try_get("prev_hash")?,
        hash: row.try_get("hash")?,
    })
}

const UPDATE_ROLLOUT: &str = "UPDATE rollouts SET phase = $2, step_index = $3, step_started_at_ms = $4, \
     canary_weight = $5, canary_instance_id = $6, updated_at_ms = $7, reason = $8, verdict = $9, severity = $10, \
     escalation_deadline_ms = $11, acknowledged_by = $12 WHERE id = $1";

/// Replaces a rollout's mutable fields (by id); `NotFound` when there is no such rollout.
async fn write_rollout<'e>(db: impl sqlx::SqliteExecutor<'e>, r: &Rollout) -> Result<()> {
    let done = sqlx::query(UPDATE_ROLLOUT)
        .bind(&r.id)
        .bind(r.phase.as_str())
        .bind(r.step_index)
        .bind(r.step_started_at_ms)
        .bind(r.canary_weight)
        .bind(&r.canary_instance_id)
        .bind(r.updated_at_ms)
        .bind(&r.reason)
        .bind(r.verdict.as_ref().map(json))
        .bind(r.severity.map(|s| s.as_str()))
        .bind(r.escalation_deadline_ms)
        .bind(&r.acknowledged_by)
        .execute(db)
        .await?;
    if done.rows_affected() == 0 {
        return Err(StoreError::NotFound(format!("rollout {}", r.id)));
    }
    Ok(())
}

/// Inserts or replaces an environment's state.
async fn write_environment<'e>(
    db: impl sqlx::SqliteExecutor<'e>,
    s: &EnvironmentState,
) -> Result<()> {
    sqlx::query(
        "INSERT INTO environments (service, env, lkg_release_id, stable_instance_id, previous_lkg_release_id) \
         VALUES ($1, $2, $3, $4, $5) ON CONFLICT (service, env) DO UPDATE SET \
         lkg_release_id = excluded.lkg_release_id, stable_instance_id = excluded.stable_instance_id, \
         previous_lkg_release_id = excluded.previous_lkg_release_id",
    )
    .bind(&s.service)
    .bind(&s.env)
    .bind(&s.lkg_release_id)
    .bind(&s.stable_instance_id)
    .bind(&s.previous_lkg_release_id)
    .execute(db)
    .await?;
    Ok(())
}

impl SqliteStore {
    async fn recovery_steps(&self, id: &str) -> Result<Vec<RecoveryStep>> {
        let rows = sqlx::query(
            "SELECT idx, idempotency_key, step, status, attempts, started_at_ms, finished_at_ms, outcome \
             FROM recovery_steps WHERE recovery_id = $1 ORDER BY idx",
        )
        .bind(id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| {
                let status: String = row.try_get("status")?;
                let outcome: Option<String> = row.try_get("outcome")?;
                Ok(RecoveryStep {
                    index: row.try_get("idx")?,
                    idempotency_key: row.try_get("idempotency_key")?,
                    step: parse(&row.try_get::<String, _>("step")?, "recovery step")?,
                    status: StepStatus::parse(&status).ok_or_else(|| {
                        StoreError::Corrupt(format!("unknown step status {status:?}"))
                    })?,
                    attempts: row.try_get("attempts")?,
                    started_at_ms: row.try_get("started_at_ms")?,
                    finished_at_ms: row.try_get("finished_at_ms")?,
                    outcome: outcome.map(|o| parse(&o, "step outcome")).transpose()?,
                })
            })
            .collect()
    }

    async fn recovery_from(&self, row: &SqliteRow) -> Result<Recovery> {
        let id: String = row.try_get("id")?;
        let steps = self.recovery_steps(&id).await?;
        Ok(Recovery {
            id,
            rollout_id: row.try_get("rollout_id")?,
            service: row.try_get("service")?,
            env: row.try_get("env")?,
            actor: row.try_get("actor")?,
            trigger: row.try_get("trigger")?,
            reason: row.try_get("reason")?,
            status: row.try_get("status")?,
            created_at_ms: row.try_get("created_at_ms")?,
            finished_at_ms: row.try_get("finished_at_ms")?,
            steps,
        })
    }

    async fn recoveries_where(&self, sql: &'static str, limit: i64) -> Result<Vec<Recovery>> {
        let rows = sqlx::query(sql).bind(limit).fetch_all(&self.pool).await?;
        let mut out = Vec::with_capacity(rows.len());
        for row in &rows {
            out.push(self.recovery_from(row).await?);
        }
        Ok(out)
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_release(&self, r: &Release) -> Result<()> {
        sqlx::query(
            "INSERT INTO releases (id, service, version, artifact, sha256, env, status, bad_reason, created_at_ms, schema_range) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&r.id)
        .bind(&r.service)
        .bind(&r.version)
        .bind(json(&r.artifact))
        .bind(&r.sha256)
        .bind(json(&r.env))
        .bind(match r.status {
            ReleaseStatus::Ok => "ok",
            ReleaseStatus::Bad => "bad",
        })
        .bind(&r.bad_reason)
        .bind(r.created_at_ms)
        .bind(r.schema.as_ref().map(json))
        .execute(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!("release {} already exists", r.id)),
            other => other,
        })?;
        Ok(())
    }

    async fn release(&self, id: &str) -> Result<Release> {
        let row = sqlx::query("SELECT * FROM releases WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("release {id}")))?;
        release_from(&row)
    }

    async fn releases(&self, service: Option<&str>) -> Result<Vec<Release>> {
        let rows = sqlx::query(
            "SELECT * FROM releases WHERE ($1 IS NULL OR service = $1) ORDER BY created_at_ms, id",
        )
        .bind(service)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(release_from).collect()
    }

    async fn mark_release_bad(&self, id: &str, reason: &str) -> Result<()> {
        let done = sqlx::query("UPDATE releases SET status = 'bad', bad_reason = $2 WHERE id = $1")
            .bind(id)
            .bind(reason)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("release {id}")));
        }
        Ok(())
    }

    async fn environment(&self, service: &str, env: &str) -> Result<Option<EnvironmentState>> {
        let row = sqlx::query("SELECT * FROM environments WHERE service = $1 AND env = $2")
            .bind(service)
            .bind(env)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(env_from).transpose()
    }

    async fn put_environment(&self, s: &EnvironmentState) -> Result<()> {
        write_environment(&self.pool, s).await
    }

    async fn environments(&self) -> Result<Vec<EnvironmentState>> {
        let rows = sqlx::query("SELECT * FROM environments ORDER BY service, env")
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(env_from).collect()
    }

    async fn put_instance(&self, i: &InstanceRecord) -> Result<()> {
        sqlx::query(
            "INSERT INTO instances (id, service, env, release_id, pid, port, started_at_ms, state) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) ON CONFLICT (id) DO UPDATE SET \
             pid = excluded.pid, port = excluded.port, started_at_ms = excluded.started_at_ms, state = excluded.state",
        )
        .bind(&i.id)
        .bind(&i.service)
        .bind(&i.env)
        .bind(&i.release_id)
        .bind(i64::from(i.pid))
        .bind(i64::from(i.port))
        .bind(i.started_at_ms)
        .bind(&i.state)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn instance(&self, id: &str) -> Result<InstanceRecord> {
        let row = sqlx::query("SELECT * FROM instances WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("instance {id}")))?;
        instance_from(&row)
    }

    async fn running_instances(&self) -> Result<Vec<InstanceRecord>> {
        let rows =
            sqlx::query("SELECT * FROM instances WHERE state = 'running' ORDER BY started_at_ms")
                .fetch_all(&self.pool)
                .await?;
        rows.iter().map(instance_from).collect()
    }

    async fn create_rollout(&self, r: &Rollout) -> Result<()> {
        sqlx::query(
            "INSERT INTO rollouts (id, service, env, from_release_id, to_release_id, phase, step_index, \
             step_started_at_ms, canary_weight, canary_instance_id, created_at_ms, updated_at_ms, actor, reason, verdict) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15)",
        )
        .bind(&r.id)
        .bind(&r.service)
        .bind(&r.env)
        .bind(&r.from_release_id)
        .bind(&r.to_release_id)
        .bind(r.phase.as_str())
        .bind(r.step_index)
        .bind(r.step_started_at_ms)
        .bind(r.canary_weight)
        .bind(&r.canary_instance_id)
        .bind(r.created_at_ms)
        .bind(r.updated_at_ms)
        .bind(&r.actor)
        .bind(&r.reason)
        .bind(r.verdict.as_ref().map(json))
        .execute(&self.pool)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => StoreError::Conflict(format!(
                "{}/{} already has a rollout in progress; wait for it, or abort it first",
                r.service, r.env
            )),
            other => other,
        })?;
        Ok(())
    }

    async fn rollout(&self, id: &str) -> Result<Rollout> {
        let row = sqlx::query("SELECT * FROM rollouts WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("rollout {id}")))?;
        rollout_from(&row)
    }

    async fn rollouts(&self, service: Option<&str>, limit: i64) -> Result<Vec<Rollout>> {
        let rows = sqlx::query(
            "SELECT * FROM rollouts WHERE ($1 IS NULL OR service = $1) ORDER BY created_at_ms DESC, id DESC LIMIT $2",
        )
        .bind(service)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rollout_from).collect()
    }

    async fn active_rollouts(&self) -> Result<Vec<Rollout>> {
        let rows = sqlx::query(
            "SELECT * FROM rollouts WHERE phase NOT IN ('promoted', 'recovered') ORDER BY created_at_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(rollout_from).collect()
    }

    async fn active_rollout(&self, service: &str, env: &str) -> Result<Option<Rollout>> {
        let row = sqlx::query(
            "SELECT * FROM rollouts WHERE service = $1 AND env = $2 AND phase NOT IN ('promoted', 'recovered')",
        )
        .bind(service)
        .bind(env)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(rollout_from).transpose()
    }

    async fn update_rollout(&self, r: &Rollout) -> Result<()> {
        write_rollout(&self.pool, r).await
    }

    async fn commit_promotion(&self, r: &Rollout, env: &EnvironmentState) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        write_rollout(&mut *tx, r).await?;
        write_environment(&mut *tx, env).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn append_interval(&self, rollout_id: &str, interval: &Interval) -> Result<i64> {
        let row = sqlx::query(
            "INSERT INTO rollout_intervals (rollout_id, seq, interval) \
             VALUES ($1, (SELECT COALESCE(MAX(seq), 0) + 1 FROM rollout_intervals WHERE rollout_id = $1), $2) \
             RETURNING seq",
        )
        .bind(rollout_id)
        .bind(interval_json(interval))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("seq")?)
    }

    async fn intervals(&self, rollout_id: &str) -> Result<Vec<Interval>> {
        let rows = sqlx::query(
            "SELECT interval FROM rollout_intervals WHERE rollout_id = $1 ORDER BY seq",
        )
        .bind(rollout_id)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|row| interval_from(&row.try_get::<String, _>("interval")?))
            .collect()
    }

    async fn add_event(&self, e: &Event) -> Result<()> {
        sqlx::query("INSERT INTO events (rollout_id, at_ms, kind, detail) VALUES ($1, $2, $3, $4)")
            .bind(&e.rollout_id)
            .bind(e.at_ms)
            .bind(e.kind.as_str())
            .bind(json(&e.detail))
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn events(&self, rollout_id: &str) -> Result<Vec<Event>> {
        let rows = sqlx::query("SELECT * FROM events WHERE rollout_id = $1 ORDER BY at_ms, id")
            .bind(rollout_id)
            .fetch_all(&self.pool)
            .await?;
        rows.iter()
            .map(|row| {
                Ok(Event {
                    at_ms: row.try_get("at_ms")?,
                    rollout_id: row.try_get("rollout_id")?,
                    kind: row
                        .try_get::<String, _>("kind")?
                        .parse()
                        .map_err(|e| StoreError::Corrupt(format!("events.kind: {e}")))?,
                    detail: parse(&row.try_get::<String, _>("detail")?, "event detail")?,
                })
            })
            .collect()
    }

    async fn create_recovery(&self, r: &Recovery, plan: &[StepKind]) -> Result<()> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        sqlx::query(
            "INSERT INTO recoveries (id, rollout_id, service, env, actor, trigger, reason, status, created_at_ms) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&r.id)
        .bind(&r.rollout_id)
        .bind(&r.service)
        .bind(&r.env)
        .bind(&r.actor)
        .bind(&r.trigger)
        .bind(&r.reason)
        .bind(&r.status)
        .bind(r.created_at_ms)
        .execute(&mut *tx)
        .await
        .map_err(|e| match StoreError::from(e) {
            StoreError::Conflict(_) => {
                StoreError::Conflict(format!("{}/{} already has a recovery running", r.service, r.env))
            }
            other => other,
        })?;
        for (i, step) in plan.iter().enumerate() {
            sqlx::query(
                "INSERT INTO recovery_steps (recovery_id, idx, idempotency_key, step, status) \
                 VALUES ($1, $2, $3, $4, 'pending')",
            )
            .bind(&r.id)
            .bind(i as i64)
            .bind(idempotency_key(&r.id, i, step))
            .bind(json(step))
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn recovery(&self, id: &str) -> Result<Recovery> {
        let row = sqlx::query("SELECT * FROM recoveries WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("recovery {id}")))?;
        self.recovery_from(&row).await
    }

    async fn recoveries(&self, limit: i64) -> Result<Vec<Recovery>> {
        self.recoveries_where(
            "SELECT * FROM recoveries ORDER BY created_at_ms DESC, id DESC LIMIT $1",
            limit,
        )
        .await
    }

    async fn unfinished_recoveries(&self) -> Result<Vec<Recovery>> {
        self.recoveries_where(
            "SELECT * FROM recoveries WHERE status = 'running' ORDER BY created_at_ms LIMIT $1",
            i64::MAX,
        )
        .await
    }

    async fn step_started(&self, recovery_id: &str, index: i64, at: Millis) -> Result<()> {
        sqlx::query(
            "UPDATE recovery_steps SET status = 'started', attempts = attempts + 1, \
             started_at_ms = COALESCE(started_at_ms, $3) WHERE recovery_id = $1 AND idx = $2",
        )
        .bind(recovery_id)
        .bind(index)
        .bind(at)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn step_finished(
        &self,
        recovery_id: &str,
        index: i64,
        at: Millis,
        ok: bool,
        outcome: &serde_json::Value,
    ) -> Result<()> {
        sqlx::query(
            "UPDATE recovery_steps SET status = $3, finished_at_ms = $4, outcome = $5 \
             WHERE recovery_id = $1 AND idx = $2",
        )
        .bind(recovery_id)
        .bind(index)
        .bind(if ok { "done" } else { "failed" })
        .bind(at)
        .bind(json(outcome))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn finish_recovery(&self, id: &str, status: &str, at: Millis) -> Result<()> {
        sqlx::query("UPDATE recoveries SET status = $2, finished_at_ms = $3 WHERE id = $1")
            .bind(id)
            .bind(status)
            .bind(at)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn failures_since(&self, since: Millis) -> Result<Vec<(Millis, String)>> {
        let rows = sqlx::query(
            "SELECT e.at_ms AS at_ms, r.env AS env FROM events e JOIN rollouts r ON r.id = e.rollout_id \
             WHERE e.at_ms >= $1 AND (e.kind = $2 \
             OR (e.kind = $3 AND json_extract(e.detail, '$.trigger') IN ('deploy', 'breaker'))) ORDER BY e.at_ms",
        )
        .bind(since)
        .bind(EventKind::JudgeFail.as_str())
        .bind(EventKind::RolloutFailed.as_str())
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| Ok((r.try_get("at_ms")?, r.try_get("env")?)))
            .collect()
    }

    async fn create_trip(&self, t: &BreakerTrip) -> Result<()> {
        sqlx::query(
            "INSERT INTO breaker_trips (id, scope, tripped_at_ms, failures, reset_at_ms, reset_by, reset_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
        )
        .bind(&t.id)
        .bind(&t.scope)
        .bind(t.tripped_at_ms)
        .bind(json(&t.failures))
        .bind(t.reset_at_ms)
        .bind(&t.reset_by)
        .bind(&t.reset_reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn open_trips(&self) -> Result<Vec<BreakerTrip>> {
        let rows = sqlx::query(
            "SELECT * FROM breaker_trips WHERE reset_at_ms IS NULL ORDER BY tripped_at_ms",
        )
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(trip_from).collect()
    }

    async fn reset_trip(
        &self,
        scope: &str,
        by: &str,
        reason: &str,
        at: Millis,
    ) -> Result<BreakerTrip> {
        let row = sqlx::query(
            "UPDATE breaker_trips SET reset_at_ms = $2, reset_by = $3, reset_reason = $4 \
             WHERE scope = $1 AND reset_at_ms IS NULL RETURNING *",
        )
        .bind(scope)
        .bind(at)
        .bind(by)
        .bind(reason)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("open circuit-breaker trip for scope {scope}"))
        })?;
        trip_from(&row)
    }

    async fn create_freeze(&self, f: &Freeze) -> Result<()> {
        sqlx::query(
            "INSERT INTO freezes (id, service, env, reason, actor, started_at_ms, until_ms, ended_at_ms, ended_by, end_reason) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
        )
        .bind(&f.id)
        .bind(&f.service)
        .bind(&f.env)
        .bind(&f.reason)
        .bind(&f.actor)
        .bind(f.started_at_ms)
        .bind(f.until_ms)
        .bind(f.ended_at_ms)
        .bind(&f.ended_by)
        .bind(&f.end_reason)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn freezes(&self, include_ended: bool) -> Result<Vec<Freeze>> {
        let rows = sqlx::query(
            "SELECT * FROM freezes WHERE $1 OR ended_at_ms IS NULL ORDER BY started_at_ms, id",
        )
        .bind(include_ended)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(freeze_from).collect()
    }

    async fn end_freeze(&self, id: &str, by: &str, reason: &str, at: Millis) -> Result<Freeze> {
        let row = sqlx::query(
            "UPDATE freezes SET ended_at_ms = $2, ended_by = $3, end_reason = $4 \
             WHERE id = $1 AND ended_at_ms IS NULL RETURNING *",
        )
        .bind(id)
        .bind(at)
        .bind(by)
        .bind(reason)
        .fetch_optional(&self.pool)
        .await?;
        match row {
            Some(row) => freeze_from(&row),
            None => {
                let exists = sqlx::query("SELECT 1 FROM freezes WHERE id = $1")
                    .bind(id)
                    .fetch_optional(&self.pool)
                    .await?
                    .is_some();
                Err(if exists {
                    StoreError::Conflict(format!("freeze {id} has already ended"))
                } else {
                    StoreError::NotFound(format!("freeze {id}"))
                })
            }
        }
    }

    async fn create_drill(&self, d: &Drill) -> Result<()> {
        sqlx::query(
            "INSERT INTO drills (id, service, env, rollout_id, status, started_at_ms, finished_at_ms, record) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&d.id)
        .bind(&d.service)
        .bind(&d.env)
        .bind(&d.rollout_id)
        .bind(d.status.as_str())
        .bind(d.started_at_ms)
        .bind(d.finished_at_ms)
        .bind(json(d))
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn update_drill(&self, d: &Drill) -> Result<()> {
        let done = sqlx::query(
            "UPDATE drills SET status = $2, finished_at_ms = $3, record = $4 WHERE id = $1",
        )
        .bind(&d.id)
        .bind(d.status.as_str())
        .bind(d.finished_at_ms)
        .bind(json(d))
        .execute(&self.pool)
        .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::NotFound(format!("drill {}", d.id)));
        }
        Ok(())
    }

    async fn drill(&self, id: &str) -> Result<Drill> {
        let row = sqlx::query("SELECT record FROM drills WHERE id = $1")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .ok_or_else(|| StoreError::NotFound(format!("drill {id}")))?;
        parse(&row.try_get::<String, _>("record")?, "drill")
    }

    async fn drills(&self, service: Option<&str>, limit: i64) -> Result<Vec<Drill>> {
        let rows = sqlx::query(
            "SELECT record FROM drills WHERE ($1 IS NULL OR service = $1) \
             ORDER BY started_at_ms DESC, id DESC LIMIT $2",
        )
        .bind(service)
        .bind(limit)
        .fetch_all(&self.pool)
        .await?;
        rows.iter()
            .map(|r| parse(&r.try_get::<String, _>("record")?, "drill"))
            .collect()
    }

    async fn reopen_recovery(&self, id: &str) -> Result<()> {
        let done = sqlx::query("UPDATE recoveries SET status = 'running', finished_at_ms = NULL WHERE id = $1 AND status = 'failed'")
            .bind(id)
            .execute(&self.pool)
            .await?;
        if done.rows_affected() == 0 {
            return Err(StoreError::Conflict(format!("recovery {id} is not failed")));
        }
        Ok(())
    }

    async fn record_config_snapshot(&self, s: &ConfigSnapshot) -> Result<(ConfigSnapshot, bool)> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let latest = sqlx::query(
            "SELECT * FROM config_snapshots WHERE service = $1 AND env = $2 ORDER BY version DESC LIMIT 1",
        )
        .bind(&s.service)
        .bind(&s.env)
        .fetch_optional(&mut *tx)
        .await?
        .map(|row| snapshot_from(&row))
        .transpose()?;
        if let Some(latest) = latest.filter(|l| l.manifest == s.manifest) {
            tx.commit().await?;
            return Ok((latest, false));
        }
        let mut new = s.clone();
        new.version = latest_version_after(&mut tx, &s.service, &s.env).await?;
        sqlx::query(
            "INSERT INTO config_snapshots (service, env, version, manifest, created_at_ms, actor, reason, rollout_id) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
        )
        .bind(&new.service)
        .bind(&new.env)
        .bind(new.version)
        .bind(&new.manifest)
        .bind(new.created_at_ms)
        .bind(&new.actor)
        .bind(&new.reason)
        .bind(&new.rollout_id)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok((new, true))
    }

    async fn config_snapshots(&self, service: &str, env: &str) -> Result<Vec<ConfigSnapshot>> {
        let rows = sqlx::query(
            "SELECT * FROM config_snapshots WHERE service = $1 AND env = $2 ORDER BY version DESC",
        )
        .bind(service)
        .bind(env)
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(snapshot_from).collect()
    }

    async fn config_snapshot(
        &self,
        service: &str,
        env: &str,
        version: i64,
    ) -> Result<ConfigSnapshot> {
        let row = sqlx::query(
            "SELECT * FROM config_snapshots WHERE service = $1 AND env = $2 AND version = $3",
        )
        .bind(service)
        .bind(env)
        .bind(version)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| {
            StoreError::NotFound(format!("config snapshot {version} of {service}/{env}"))
        })?;
        snapshot_from(&row)
    }

    async fn put_rollout_safeguards(&self, s: &RolloutSafeguards) -> Result<()> {
        sqlx::query(
            "INSERT INTO rollout_safeguards (rollout_id, config_snapshot, baseline, captured_at_ms) \
             VALUES ($1, $2, $3, $4)",
        )
        .bind(&s.rollout_id)
        .bind(s.config_snapshot)
        .bind(s.baseline.as_ref().map(json))
        .bind(s.captured_at_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn rollout_safeguards(&self, rollout_id: &str) -> Result<Option<RolloutSafeguards>> {
        let Some(row) = sqlx::query("SELECT * FROM rollout_safeguards WHERE rollout_id = $1")
            .bind(rollout_id)
            .fetch_optional(&self.pool)
            .await?
        else {
            return Ok(None);
        };
        Ok(Some(RolloutSafeguards {
            rollout_id: row.try_get("rollout_id")?,
            config_snapshot: row.try_get("config_snapshot")?,
            baseline: row
                .try_get::<Option<String>, _>("baseline")?
                .map(|b| parse(&b, "rollout baseline"))
                .transpose()?,
            captured_at_ms: row.try_get("captured_at_ms")?,
        }))
    }

    async fn append_audit(&self, at: Millis, entry: &AuditEntry) -> Result<AuditRecord> {
        let _guard = self.audit_lock.lock().await;
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        let head = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&mut *tx)
            .await?;
        let (prev_seq, prev_hash) = match head {
            Some(row) => (
                row.try_get::<i64, _>("seq")?,
                row.try_get::<String, _>("hash")?,
            ),
            None => (0, GENESIS.to_string()),
        };
        let record = AuditRecord::seal(&prev_hash, prev_seq + 1, at, entry.clone());
        sqlx::query(
            "INSERT INTO audit (seq, at_ms, actor, action, target, trigger, evidence, prev_hash, hash) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(record.seq)
        .bind(record.at_ms)
        .bind(&record.actor)
        .bind(&record.action)
        .bind(&record.target)
        .bind(&record.trigger)
        .bind(backstop_core::audit::canonical_json(&record.evidence))
        .bind(&record.prev_hash)
        .bind(&record.hash)
        .execute(&mut *tx)
        .await?;
        sqlx::query(
            "INSERT INTO audit_head (id, seq, hash) VALUES (1, $1, $2) \
             ON CONFLICT (id) DO UPDATE SET seq = excluded.seq, hash = excluded.hash",
        )
        .bind(record.seq)
        .bind(&record.hash)
        .execute(&mut *tx)
        .await?;
        tx.commit().await?;
        Ok(record)
    }

    async fn audit(&self, after: i64, limit: i64) -> Result<Vec<AuditRecord>> {
        let rows = sqlx::query("SELECT * FROM audit WHERE seq > $1 ORDER BY seq LIMIT $2")
            .bind(after)
            .bind(limit)
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(audit_from).collect()
    }

    async fn audit_head(&self) -> Result<Option<(i64, String)>> {
        let row = sqlx::query("SELECT seq, hash FROM audit_head WHERE id = 1")
            .fetch_optional(&self.pool)
            .await?;
        row.map(|r| Ok((r.try_get("seq")?, r.try_get("hash")?)))
            .transpose()
    }
}
