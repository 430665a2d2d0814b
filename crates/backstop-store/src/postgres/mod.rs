//! The scale-out backend: one PostgreSQL database. The same traits, the same conformance tests
//! and the same stored shapes as [`crate::sqlite`] (rows are read by [`crate::rows`]); the SQL
//! differs where the dialects do, and so does how writes are serialized:
//!
//! - SQLite takes the database's write lock up front (`BEGIN IMMEDIATE`); PostgreSQL runs
//!   transactions side by side, so the few that read before they write take a lock first: the
//!   audit chain a transaction-scoped advisory lock (serialized across connections and
//!   processes, also before the first record exists), a new config snapshot version the table.
//! - The database may be shared by several processes: the schema is checked before anything is
//!   written, and a schema newer than this binary knows is refused.
//!
//! One file per aggregate implements its trait; this one connects (pool, schema check,
//! migrations) and maps connection failures to errors that say what to fix, never the password.

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
pub mod blobs;
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
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
#[path = "../sql/groups.rs"]
mod groups;
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
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
#[allow(
    clippy::duplicate_mod,
    reason = "compiled once per backend, on purpose"
)]
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

use std::str::FromStr;
use std::time::Duration;

use sqlx::Postgres;
use sqlx::migrate::Migrator;
use sqlx::postgres::{PgArguments, PgConnectOptions, PgPool, PgPoolOptions, PgRow};

pub use blobs::DatabaseBlobs;

use crate::{Result, Store, StoreError};

pub struct PostgresStore {
    pub(crate) pool: PgPool,
    /// Signs the audit chain's head ([`crate::audit_chain`]).
    audit_key: crate::audit_chain::KeySlot,
}

/// Every aggregate's trait is implemented once for both backends in `../sql/` (compiled here
/// with the names below), except the audit chain, whose locking differs: that is in this folder.
impl Store for PostgresStore {}

/// What the aggregate files shared with SQLite (`../sql/`) compile against here.
type Backend = PostgresStore;
type Db = Postgres;
type Row = PgRow;

/// The backend's side of the shared aggregate files: how a write transaction starts and how
/// writers that read before they write take turns (readers never wait).
impl PostgresStore {
    /// The rollout failures the breaker counts since `$1` (judge failures `$2`, and failures
    /// `$3` triggered by a deploy or the breaker): the one query whose JSON access differs.
    const FAILURES_SINCE: &'static str = "SELECT e.at_ms AS at_ms, r.env AS env FROM events e \
         JOIN rollouts r ON r.id = e.rollout_id WHERE e.at_ms >= $1 AND (e.kind = $2 OR (e.kind = $3 \
         AND (e.detail::jsonb ->> 'trigger') IN ('deploy', 'breaker'))) ORDER BY e.at_ms";

    async fn begin_write(&self) -> Result<sqlx::Transaction<'static, Postgres>> {
        let mut tx = self.pool.begin().await?;
        if let Some(fence) = crate::fence::current() {
            // Read inside the write: a takeover cannot slip in before this write commits
            // (PostgreSQL locks the row; SQLite's write transaction excludes other writers).
            let stored: Option<i64> =
                sqlx::query_scalar("SELECT epoch FROM leases WHERE key = $1 FOR SHARE")
                    .bind(&fence.key)
                    .fetch_optional(&mut *tx)
                    .await?;
            crate::fence::admit(&fence, stored)?;
        }
        Ok(tx)
    }

    /// `NOTIFY` on the replicas' wake channel.
    async fn notify_replicas(&self) -> Result<()> {
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(crate::aggregates::WAKE_CHANNEL)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    /// Wakes `wake` each time a replica notifies the wake channel, until `stop`. Reconnects by
    /// itself after a lost connection (and wakes then too: a notification may have been missed).
    pub async fn listen_for_wakes(
        &self,
        wake: impl Fn() + Send,
        stop: impl std::future::Future<Output = ()>,
    ) -> Result<()> {
        let mut listener = sqlx::postgres::PgListener::connect_with(&self.pool).await?;
        listener.listen(crate::aggregates::WAKE_CHANNEL).await?;
        tokio::pin!(stop);
        loop {
            tokio::select! {
                () = &mut stop => return Ok(()),
                received = listener.try_recv() => match received {
                    Ok(_) => wake(),
                    Err(_) => {
                        tokio::time::sleep(Duration::from_secs(1)).await;
                        wake();
                    }
                },
            }
        }
    }

    /// Runs one write statement in its own write transaction (fenced, see [`crate::fence`]).
    async fn write(&self, query: Query<'_>) -> Result<sqlx::postgres::PgQueryResult> {
        let mut tx = self.begin_write().await?;
        let done = query.execute(&mut *tx).await?;
        tx.commit().await?;
        Ok(done)
    }

    /// Locks the rollout's row: appends to one rollout take turns instead of computing the
    /// same next `seq`.
    async fn lock_rollout(
        tx: &mut sqlx::Transaction<'_, Postgres>,
        rollout_id: &str,
    ) -> Result<()> {
        sqlx::query("SELECT 1 FROM rollouts WHERE id = $1 FOR UPDATE")
            .bind(rollout_id)
            .execute(&mut **tx)
            .await?;
        Ok(())
    }

    /// Snapshot versions are numbered by reading the latest: recordings take turns.
    async fn lock_snapshot_versions(tx: &mut sqlx::Transaction<'_, Postgres>) -> Result<()> {
        sqlx::query("LOCK TABLE config_snapshots IN EXCLUSIVE MODE")
            .execute(&mut **tx)
            .await?;
        Ok(())
    }
}

/// The advisory lock key ("bk" + a number) that serializes the audit chain's appends (per
/// transaction).
const AUDIT_LOCK: i64 = 0x626b_0001;

fn migrator() -> Migrator {
    crate::migrator(&[
        (
            1,
            "init",
            include_str!("../../migrations/postgres/0001_init.sql"),
        ),
        (
            2,
            "replicas",
            include_str!("../../migrations/postgres/0002_replicas.sql"),
        ),
        (
            3,
            "leases",
            include_str!("../../migrations/postgres/0003_leases.sql"),
        ),
        (
            4,
            "blobs",
            include_str!("../../migrations/postgres/0004_blobs.sql"),
        ),
        (
            5,
            "tokens",
            include_str!("../../migrations/postgres/0005_tokens.sql"),
        ),
        (
            6,
            "audit_signature",
            include_str!("../../migrations/postgres/0006_audit_signature.sql"),
        ),
        (
            7,
            "release_secrets",
            include_str!("../../migrations/postgres/0007_release_secrets.sql"),
        ),
        (
            8,
            "approvals",
            include_str!("../../migrations/postgres/0008_approvals.sql"),
        ),
        (
            9,
            "incidents",
            include_str!("../../migrations/postgres/0009_incidents.sql"),
        ),
        (
            10,
            "runbook_runs",
            include_str!("../../migrations/postgres/0010_runbook_runs.sql"),
        ),
        (
            11,
            "recovery_validation",
            include_str!("../../migrations/postgres/0011_recovery_validation.sql"),
        ),
        (
            12,
            "heartbeats",
            include_str!("../../migrations/postgres/0012_heartbeats.sql"),
        ),
        (
            13,
            "verdict_labels",
            include_str!("../../migrations/postgres/0013_verdict_labels.sql"),
        ),
        (
            14,
            "recovery_postmortem",
            include_str!("../../migrations/postgres/0014_recovery_postmortem.sql"),
        ),
        (
            15,
            "flags",
            include_str!("../../migrations/postgres/0015_flags.sql"),
        ),
        (
            16,
            "events_by_kind",
            include_str!("../../migrations/postgres/0016_events_by_kind.sql"),
        ),
        (
            17,
            "groups_alerts",
            include_str!("../../migrations/postgres/0017_groups_alerts.sql"),
        ),
        (
            18,
            "ships",
            include_str!("../../migrations/postgres/0018_ships.sql"),
        ),
    ])
}

/// True for PostgreSQL SQLSTATEs that mean the server cannot write now, whatever was asked:
/// class 53 (insufficient resources: disk full, out of memory, too many connections), class 08
/// (connection exception), 58030 (I/O error), 25006 (read-only transaction: a standby, or
/// `default_transaction_read_only`), 57P01–57P03 (the server shutting down, crashed, or not yet
/// accepting connections).
pub(crate) fn sqlstate_is_write_failure(code: &str) -> bool {
    code.starts_with("53")
        || code.starts_with("08")
        || matches!(code, "58030" | "25006" | "57P01" | "57P02" | "57P03")
}

/// `url` with its password (in the user info or a `password=` parameter) replaced by `***`: the
/// form of a database URL that may appear in errors and logs. Works on malformed URLs too (it
/// never parses more than it must), so a typo never leaks a password.
pub fn redact(url: &str) -> String {
    let (scheme, rest) = match url.find("://") {
        Some(i) => (&url[..i + 3], &url[i + 3..]),
        None => ("", url),
    };
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let authority = match authority.rfind('@') {
        Some(at) => {
            let (userinfo, host) = authority.split_at(at);
            match userinfo.find(':') {
                Some(colon) => format!("{}:***{host}", &userinfo[..colon]),
                None => authority.to_string(),
            }
        }
        None => authority.to_string(),
    };
    let tail = match tail.find('?') {
        Some(q) => {
            let (path, query) = tail.split_at(q + 1);
            let (query, fragment) = match query.find('#') {
                Some(h) => query.split_at(h),
                None => (query, ""),
            };
            let query: Vec<String> = query
                .split('&')
                .map(|pair| match pair.split_once('=') {
                    Some((key, _)) if key.eq_ignore_ascii_case("password") => {
                        format!("{key}=***")
                    }
                    _ => pair.to_string(),
                })
                .collect();
            format!("{path}{}{fragment}", query.join("&"))
        }
        None => tail.to_string(),
    };
    format!("{scheme}{authority}{tail}")
}

/// What a failed connection means for the person who gave the URL.
fn connect_error(url: &str, options: &PgConnectOptions, e: &sqlx::Error) -> StoreError {
    let shown = redact(url);
    let user = options.get_username();
    let database = options.get_database().unwrap_or(user);
    let fix = match e {
        sqlx::Error::Database(db) => match db.code().as_deref() {
            Some("28P01" | "28000") => format!(
                "PostgreSQL at {shown} refused user {user:?} ({}): check the user name and \
                 password in --database-url (or BACKSTOP_DATABASE_URL)",
                db.message()
            ),
            Some("3D000") => format!(
                "PostgreSQL at {shown} has no database {database:?}: create it (CREATE DATABASE \
                 {database}) or name an existing one in --database-url"
            ),
            _ => format!(
                "PostgreSQL at {shown} refused the connection: {}",
                db.message()
            ),
        },
        sqlx::Error::Io(io) => format!(
            "cannot reach PostgreSQL at {shown} ({io}): check the host and port in \
             --database-url and that the server is running"
        ),
        sqlx::Error::PoolTimedOut => format!(
            "cannot reach PostgreSQL at {shown} (no answer in time): check the host and port \
             in --database-url and that the server is running"
        ),
        sqlx::Error::Tls(tls) => {
            format!(
                "TLS with PostgreSQL at {shown} failed ({tls}): check sslmode in --database-url"
            )
        }
        other => format!("cannot connect to PostgreSQL at {shown}: {other}"),
    };
    StoreError::Open(fix)
}

impl PostgresStore {
    /// Connects to the database at `url` (`postgres://user:password@host:port/database`),
    /// refuses a schema newer than this binary knows (changing nothing), and applies this
    /// binary's migrations.
    pub async fn connect(url: &str) -> Result<Self> {
        let options = PgConnectOptions::from_str(url).map_err(|e| {
            StoreError::Open(format!(
                "the database URL {} is not a PostgreSQL URL ({e}); expected \
                 postgres://user:password@host:port/database",
                redact(url)
            ))
        })?;
        // A replica paused or cut off in the middle of a transaction must not hold its locks
        // (a lease's row, the audit chain) over the others: the server ends such a
        // transaction after a few seconds, well within a lease's life.
        let session = options
            .clone()
            .options([("idle_in_transaction_session_timeout", "3s")]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(session)
            .await
            .map_err(|e| connect_error(url, &options, &e))?;
        let store = PostgresStore {
            pool,
            audit_key: crate::audit_chain::KeySlot::default(),
        };
        store.refuse_newer_schema(url).await?;
        migrator().run(&store.pool).await.map_err(|e| {
            StoreError::Open(format!(
                "applying Backstop's schema to PostgreSQL at {} failed: {e}",
                redact(url)
            ))
        })?;
        Ok(store)
    }

    /// `Open` naming the versions when the database has migrations this binary does not know
    /// (it was written by a newer Backstop); nothing is written before this check.
    async fn refuse_newer_schema(&self, url: &str) -> Result<()> {
        let has_table: bool =
            sqlx::query_scalar("SELECT to_regclass('_sqlx_migrations') IS NOT NULL")
                .fetch_one(&self.pool)
                .await?;
        if !has_table {
            return Ok(());
        }
        let applied: Vec<i64> =
            sqlx::query_scalar("SELECT version FROM _sqlx_migrations ORDER BY version")
                .fetch_all(&self.pool)
                .await?;
        let migrator = migrator();
        let known: Vec<i64> = migrator.iter().map(|m| m.version).collect();
        let unknown: Vec<String> = applied
            .iter()
            .filter(|v| !known.contains(v))
            .map(i64::to_string)
            .collect();
        if unknown.is_empty() {
            return Ok(());
        }
        Err(StoreError::Open(format!(
            "the database at {} has schema version(s) {} that this Backstop does not know (it \
             knows up to {}): it was written by a newer Backstop; run that version or a newer \
             one against it. Nothing was changed.",
            redact(url),
            unknown.join(", "),
            known.last().copied().unwrap_or(0)
        )))
    }

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
    async fn row_by_id(&self, table: &'static str, what: &str, id: &str) -> Result<PgRow> {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "SELECT * FROM {table} WHERE id = $1"
        )))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("{what} {id}")))
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

type Query<'q> = sqlx::query::Query<'q, Postgres, PgArguments>;

/// Reads one row into a record (the shared `*_from` readers).
type ReadRow<T> = fn(&PgRow) -> Result<T>;

/// SQL reading the text of field `field` of the JSON text column `column`.
fn json_text(column: &str, field: &str) -> String {
    format!("(CAST({column} AS jsonb) ->> '{field}')")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redact_hides_the_password_and_keeps_the_rest() {
        for (url, shown) in [
            (
                "postgres://backstop:s3cret@db.example:5432/backstop",
                "postgres://backstop:***@db.example:5432/backstop",
            ),
            (
                "postgres://backstop:p%40ss:w@rd@db/backstop?sslmode=require",
                "postgres://backstop:***@db/backstop?sslmode=require",
            ),
            (
                "postgresql://u@db/x?sslmode=disable&password=hunter2&application_name=b",
                "postgresql://u@db/x?sslmode=disable&password=***&application_name=b",
            ),
            ("postgres://db/x", "postgres://db/x"),
            ("postgres://u@db/x", "postgres://u@db/x"),
            ("u:pw@db", "u:***@db"),
            (
                "postgres://u:pw@/x?host=/tmp/sock",
                "postgres://u:***@/x?host=/tmp/sock",
            ),
        ] {
            assert_eq!(redact(url), shown, "{url}");
            assert!(!redact(url).contains("s3cret") && !redact(url).contains("hunter2"));
        }
    }

    #[test]
    fn write_failures_are_told_by_their_sqlstate() {
        for code in [
            "53100", "53200", "53300", "53400", "58030", "25006", "08006", "57P01", "57P03",
        ] {
            assert!(sqlstate_is_write_failure(code), "{code}");
        }
        for code in ["23505", "40001", "40P01", "42P01", "58000", "25P02"] {
            assert!(!sqlstate_is_write_failure(code), "{code}");
        }
    }

    #[tokio::test]
    async fn a_bad_url_is_refused_without_its_password() {
        let err = PostgresStore::connect("mysql://u:s3cret@db/x")
            .await
            .err()
            .expect("refused");
        let text = err.to_string();
        assert!(!text.contains("s3cret"), "{text}");
        assert!(text.contains("u:***@db"), "{text}");
    }

    #[tokio::test]
    async fn an_unreachable_server_is_named_without_the_password() {
        let dir = tempfile::tempdir().unwrap();
        let url = format!(
            "postgres://backstop:s3cret@localhost/backstop?host={}",
            dir.path().display()
        );
        let err = PostgresStore::connect(&url).await.err().expect("refused");
        let text = err.to_string();
        assert!(matches!(err, StoreError::Open(_)), "{text}");
        assert!(!text.contains("s3cret"), "{text}");
        assert!(
            text.contains("cannot reach PostgreSQL at postgres://backstop:***@localhost"),
            "{text}"
        );
        assert!(text.contains("check the host and port"), "{text}");
    }
}
