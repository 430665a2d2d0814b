//! The embedded backend: one SQLite file in WAL mode with `synchronous=FULL`, so a committed
//! transition survives `kill -9` and power loss alike.
//!
//! One file per aggregate implements its trait; this one opens the database (pool, pragmas,
//! migrations) and holds the query helpers they share. Rows are read by [`crate::rows`], shared
//! with the PostgreSQL backend.

#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/alerts.rs"]
mod alerts;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/approvals.rs"]
mod approvals;
mod audit;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/breaker.rs"]
mod breaker;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/cluster.rs"]
mod cluster;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/drills.rs"]
mod drills;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/environments.rs"]
mod environments;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/flags.rs"]
mod flags;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/freezes.rs"]
mod freezes;
#[path = "../sql/groups.rs"]
mod groups;
#[path = "../sql/heartbeats.rs"]
mod heartbeats;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/incidents.rs"]
mod incidents;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/labels.rs"]
mod labels;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/metrics.rs"]
mod metrics;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/recoveries.rs"]
mod recoveries;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/releases.rs"]
mod releases;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/rollouts.rs"]
mod rollouts;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/runbook_runs.rs"]
mod runbook_runs;
#[path = "../sql/ships.rs"]
mod ships;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/snapshots.rs"]
mod snapshots;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/tokens.rs"]
mod tokens;

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::migrate::Migrator;
use sqlx::sqlite::SqliteArguments;
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{Sqlite, SqlitePool};

use crate::{Result, Store, StoreError};

/// File name of the database inside the state folder.
pub const DB_FILE: &str = "backstop.db";

/// Every transaction starts with `BEGIN IMMEDIATE`: a deferred transaction that reads and then
/// writes cannot wait for another writer in WAL mode (SQLite answers SQLITE_BUSY at once instead
/// of waiting out the busy timeout), so transactions take the write lock up front.
pub struct SqliteStore {
    pub(crate) pool: SqlitePool,
    /// Serializes audit appends: reading the head and writing the next record must not interleave.
    audit_lock: tokio::sync::Mutex<()>,
    /// Signs the audit chain's head ([`crate::audit_chain`]).
    audit_key: crate::audit_chain::KeySlot,
}

/// Every aggregate's trait is implemented once for both backends in `../sql/` (compiled here
/// with the names below), except the audit chain, whose locking differs: that is in this folder.
impl Store for SqliteStore {}

/// What the aggregate files shared with PostgreSQL (`../sql/`) compile against here.
type Backend = SqliteStore;
type Db = Sqlite;
type Row = SqliteRow;

/// The backend's side of the shared aggregate files: how a write transaction starts and how
/// writers that read before they write take turns.
impl SqliteStore {
    /// The rollout failures the breaker counts since `$1` (judge failures `$2`, and failures
    /// `$3` triggered by a deploy or the breaker): the one query whose JSON access differs.
    const FAILURES_SINCE: &'static str = "SELECT e.at_ms AS at_ms, r.env AS env FROM events e \
         JOIN rollouts r ON r.id = e.rollout_id WHERE e.at_ms >= $1 AND (e.kind = $2 OR (e.kind = $3 \
         AND json_extract(e.detail, '$.trigger') IN ('deploy', 'breaker'))) ORDER BY e.at_ms";

    /// A write transaction that holds SQLite's write lock from its start (see the type's docs).
    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Sqlite>> {
        let mut tx = self.pool.begin_with("BEGIN IMMEDIATE").await?;
        if let Some(fence) = crate::fence::current() {
            // Read inside the write: a takeover cannot slip in before this write commits
            // (PostgreSQL locks the row; SQLite's write transaction excludes other writers).
            let stored: Option<i64> = sqlx::query_scalar("SELECT epoch FROM leases WHERE key = $1")
                .bind(&fence.key)
                .fetch_optional(&mut *tx)
                .await?;
            crate::fence::admit(&fence, stored)?;
        }
        Ok(tx)
    }

    /// Nothing to do: one daemon per embedded store, which wakes its controller in memory.
    #[allow(clippy::unused_async, reason = "the same shape as PostgreSQL's")]
    async fn notify_replicas(&self) -> Result<()> {
        Ok(())
    }

    /// Runs one write statement in its own write transaction (fenced, see [`crate::fence`]).
    async fn write(&self, query: Query<'_>) -> Result<sqlx::sqlite::SqliteQueryResult> {
        let mut tx = self.begin_write().await?;
        let done = query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Nothing more to take: a write transaction already excludes every other writer.
    async fn lock_rollout(
        _tx: &mut sqlx::Transaction<'_, Sqlite>,
        _rollout_id: &str,
    ) -> Result<()> {
        Ok(())
    }

    /// As [`SqliteStore::lock_rollout`].
    async fn lock_snapshot_versions(_tx: &mut sqlx::Transaction<'_, Sqlite>) -> Result<()> {
        Ok(())
    }
}

fn migrator() -> Migrator {
    crate::migrator(&[
        (
            1,
            "init",
            include_str!("../../migrations/sqlite/0001_init.sql"),
        ),
        (
            2,
            "severity_breaker",
            include_str!("../../migrations/sqlite/0002_severity_breaker.sql"),
        ),
        (
            3,
            "artifacts_freezes",
            include_str!("../../migrations/sqlite/0003_artifacts_freezes.sql"),
        ),
        (
            4,
            "snapshots_baselines",
            include_str!("../../migrations/sqlite/0004_snapshots_baselines.sql"),
        ),
        (
            5,
            "drills",
            include_str!("../../migrations/sqlite/0005_drills.sql"),
        ),
        (
            6,
            "release_schema",
            include_str!("../../migrations/sqlite/0006_release_schema.sql"),
        ),
        (
            7,
            "replicas",
            include_str!("../../migrations/sqlite/0007_replicas.sql"),
        ),
        (
            8,
            "leases",
            include_str!("../../migrations/sqlite/0008_leases.sql"),
        ),
        (
            9,
            "tokens",
            include_str!("../../migrations/sqlite/0009_tokens.sql"),
        ),
        (
            10,
            "audit_signature",
            include_str!("../../migrations/sqlite/0010_audit_signature.sql"),
        ),
        (
            11,
            "release_secrets",
            include_str!("../../migrations/sqlite/0011_release_secrets.sql"),
        ),
        (
            12,
            "approvals",
            include_str!("../../migrations/sqlite/0012_approvals.sql"),
        ),
        (
            13,
            "incidents",
            include_str!("../../migrations/sqlite/0013_incidents.sql"),
        ),
        (
            14,
            "runbook_runs",
            include_str!("../../migrations/sqlite/0014_runbook_runs.sql"),
        ),
        (
            15,
            "recovery_validation",
            include_str!("../../migrations/sqlite/0015_recovery_validation.sql"),
        ),
        (
            16,
            "heartbeats",
            include_str!("../../migrations/sqlite/0016_heartbeats.sql"),
        ),
        (
            17,
            "verdict_labels",
            include_str!("../../migrations/sqlite/0017_verdict_labels.sql"),
        ),
        (
            18,
            "recovery_postmortem",
            include_str!("../../migrations/sqlite/0018_recovery_postmortem.sql"),
        ),
        (
            19,
            "flags",
            include_str!("../../migrations/sqlite/0019_flags.sql"),
        ),
        (
            20,
            "events_by_kind",
            include_str!("../../migrations/sqlite/0020_events_by_kind.sql"),
        ),
        (
            21,
            "groups_alerts",
            include_str!("../../migrations/sqlite/0021_groups_alerts.sql"),
        ),
        (
            22,
            "ships",
            include_str!("../../migrations/sqlite/0022_ships.sql"),
        ),
    ])
}

/// Creates `path` empty (SQLite takes an empty file for a new database) or narrows an existing
/// one to mode 0600: the database holds every release's environment.
fn owner_only(path: &Path) -> Result<()> {
    use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
    let io = |e| StoreError::Database(sqlx::Error::Io(e));
    match std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(io)
        }
        Err(e) => Err(io(e)),
    }
}

type Query<'q> = sqlx::query::Query<'q, Sqlite, SqliteArguments>;

/// Reads one row into a record (the `*_from` functions of this folder).
type ReadRow<T> = fn(&SqliteRow) -> Result<T>;

impl SqliteStore {
    /// Every row `query` answers, each read into a record by `read`.
    async fn fetch_all_as<T>(&self, query: Query<'_>, read: ReadRow<T>) -> Result<Vec<T>> {
        let rows = query.fetch_all(&self.pool).await?;
        rows.iter().map(read).collect()
    }

    /// The row `query` answers, if any, read into a record by `read`.
    async fn fetch_optional_as<T>(&self, query: Query<'_>, read: ReadRow<T>) -> Result<Option<T>> {
        let row = query.fetch_optional(&self.pool).await?;
        row.as_ref().map(read).transpose()
    }

    /// The row of `table` (one of this folder's own table names, never input) whose `id` is
    /// `id`; `NotFound` naming it as `what`.
    async fn row_by_id(&self, table: &'static str, what: &str, id: &str) -> Result<SqliteRow> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM {table} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("{what} {id}")))
    }

    /// Opens (creating if missing) `DIR/backstop.db` and applies migrations.
    pub async fn open_dir(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir).map_err(|e| StoreError::Database(sqlx::Error::Io(e)))?;
        let path = dir.join(DB_FILE);
        owner_only(&path)?;
        let store = Self::open(&path, true).await?;
        // SQLite gives the WAL and its index the database file's mode; those of an older
        // version's folder are made private too.
        for suffix in ["-wal", "-shm"] {
            let mut side = path.clone().into_os_string();
            side.push(suffix);
            let side = std::path::PathBuf::from(side);
            if side.exists() {
                owner_only(&side)?;
            }
        }
        Ok(store)
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

    /// Opens a state folder's database for reading only: no migration, no write, no file
    /// created or changed (verifying an audit log must not alter what it checks, and must work
    /// on a read-only copy). A database on read-only media whose WAL index cannot be opened is
    /// read as immutable.
    pub async fn open_read_only_dir(dir: &Path) -> Result<Self> {
        let path = dir.join(DB_FILE);
        if !path.exists() {
            return Err(StoreError::NotFound(format!(
                "state database {}",
                path.display()
            )));
        }
        let open = |immutable: bool| {
            let path = path.clone();
            async move {
                let opts = SqliteConnectOptions::from_str("sqlite://")?
                    .filename(&path)
                    .read_only(true)
                    .immutable(immutable)
                    .busy_timeout(Duration::from_secs(10));
                let pool = SqlitePoolOptions::new()
                    .max_connections(2)
                    .connect_with(opts)
                    .await?;
                sqlx::query("SELECT count(*) FROM sqlite_master")
                    .fetch_one(&pool)
                    .await?;
                Ok::<_, StoreError>(pool)
            }
        };
        let pool = match open(false).await {
            Ok(pool) => pool,
            Err(_) => open(true).await?,
        };
        Ok(Self {
            pool,
            audit_lock: tokio::sync::Mutex::new(()),
            audit_key: crate::audit_chain::KeySlot::default(),
        })
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
            // A COMMIT that fails (disk full, I/O error) may leave a connection inside a
            // transaction that can no longer be rolled back: it would hold SQLite's write lock
            // (every other connection then waits and fails "locked") and refuse every later
            // write even once the disk has room. It is closed as soon as it is returned, which
            // releases the lock, instead of being reused.
            .after_release(|conn, _| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
            })
            .before_acquire(|conn, _| {
                Box::pin(async move { Ok(!sqlx::Connection::is_in_transaction(conn)) })
            })
            .connect_with(opts)
            .await?;
        migrator()
            .run(&pool)
            .await
            .map_err(|e| StoreError::Database(sqlx::Error::Migrate(Box::new(e))))?;
        Ok(Self {
            pool,
            audit_lock: tokio::sync::Mutex::new(()),
            audit_key: crate::audit_chain::KeySlot::default(),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// SQL reading the text of field `field` of the JSON text column `column`.
fn json_text(column: &str, field: &str) -> String {
    format!("json_extract({column}, '$.{field}')")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::prelude::*;

    #[tokio::test]
    async fn a_stored_value_that_does_not_parse_is_corrupt_naming_its_column() {
        let dir = tempfile::tempdir().expect("tmp");
        let store = SqliteStore::open_dir(dir.path()).await.expect("open");
        sqlx::query(
            "INSERT INTO breaker_trips (id, scope, tripped_at_ms, failures) \
             VALUES ('t1', 'prod', 1, '[]')",
        )
        .execute(&store.pool)
        .await
        .expect("insert");
        let err = store.open_trips().await.expect_err("corrupt");
        assert!(matches!(err, StoreError::Corrupt(_)), "{err}");
        assert_eq!(
            err.to_string(),
            r#"stored data is corrupt: breaker_trips.scope: "prod" is not one of all, env:<name>"#
        );
    }
}
