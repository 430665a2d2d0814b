//! Applying migrations to a real database, keeping in that database what a rollback needs.
//!
//! Each applied migration gets a row in `backstop_schema_history`, written in the same
//! transaction as its up: the version, the up's sha256, and the down script itself with its
//! sha256 and whether it was proven reversible. A recovery then runs exactly the down that was
//! reviewed and proven, even from a build that never saw the migration files, and running a
//! down removes its row in the same transaction, so doing it twice (after a crash) is a no-op.

use std::str::FromStr;

use backstop_core::schema::AppliedMigration;
use sqlx::Connection;

use crate::model::{Engine, Migration, MigrationSet, Phase};

pub const HISTORY_TABLE: &str = "backstop_schema_history";

const CREATE_HISTORY: &str = "CREATE TABLE IF NOT EXISTS backstop_schema_history (
    version        TEXT PRIMARY KEY,
    seq            BIGINT NOT NULL,
    name           TEXT NOT NULL,
    up_sha256      TEXT NOT NULL,
    down_sql       TEXT,
    down_sha256    TEXT,
    proven         INTEGER NOT NULL,
    phase          TEXT,
    irreversible   TEXT,
    applied_at_ms  BIGINT NOT NULL
)";

#[derive(Debug, thiserror::Error)]
pub enum ApplyError {
    #[error("cannot connect to the {engine:?} database: {source}")]
    Connect {
        engine: Engine,
        #[source]
        source: sqlx::Error,
    },
    #[error("migration {version} ({name}): {source}")]
    Script {
        version: String,
        name: String,
        #[source]
        source: sqlx::Error,
    },
    #[error(
        "the down of migration {version} in the database's history hashes to sha256:{actual}, the plan expected sha256:{expected}: refusing to run it"
    )]
    DownChanged {
        version: String,
        expected: String,
        actual: String,
    },
    #[error("migration {version} has no down script in the database's history")]
    NoDown { version: String },
    #[error("the database's history: {0}")]
    History(#[source] sqlx::Error),
}

enum Conn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

async fn connect(engine: Engine, url: &str) -> Result<Conn, ApplyError> {
    let err = |source| ApplyError::Connect { engine, source };
    Ok(match engine {
        Engine::Sqlite => {
            let opts = sqlx::sqlite::SqliteConnectOptions::from_str(url)
                .map_err(err)?
                .create_if_missing(true);
            Conn::Sqlite(
                sqlx::SqliteConnection::connect_with(&opts)
                    .await
                    .map_err(err)?,
            )
        }
        Engine::Postgres => Conn::Postgres(sqlx::PgConnection::connect(url).await.map_err(err)?),
    })
}

/// What the database's history says was applied, in apply order (empty when Backstop never
/// applied anything there).
pub async fn history(engine: Engine, url: &str) -> Result<Vec<AppliedMigration>, ApplyError> {
    let mut conn = connect(engine, url).await?;
    if !table_exists(&mut conn).await? {
        return Ok(vec![]);
    }
    // `proven` is read as BIGINT so both engines decode the same row type.
    let sql = "SELECT version, name, down_sql, down_sha256, CAST(proven AS BIGINT), phase, irreversible \
               FROM backstop_schema_history ORDER BY seq";
    type Row = (
        String,
        String,
        Option<String>,
        Option<String>,
        i64,
        Option<String>,
        Option<String>,
    );
    let rows: Vec<Row> = match &mut conn {
        Conn::Sqlite(c) => sqlx::query_as(sql).fetch_all(c).await,
        Conn::Postgres(c) => sqlx::query_as(sql).fetch_all(c).await,
    }
    .map_err(ApplyError::History)?;
    Ok(rows
        .into_iter()
        .map(
            |(version, name, down, down_sha256, proven, phase, irreversible)| AppliedMigration {
                version,
                name,
                has_down: down.is_some(),
                down_sha256,
                proven: proven != 0,
                phase,
                irreversible,
            },
        )
        .collect())
}

async fn table_exists(conn: &mut Conn) -> Result<bool, ApplyError> {
    let n: i64 = match conn {
        Conn::Sqlite(c) => sqlx::query_scalar(
            "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'backstop_schema_history'",
        )
        .fetch_one(c)
        .await,
        Conn::Postgres(c) => sqlx::query_scalar(
            "SELECT count(*) FROM pg_catalog.pg_tables WHERE tablename = 'backstop_schema_history' AND schemaname = current_schema()",
        )
        .fetch_one(c)
        .await,
    }
    .map_err(ApplyError::History)?;
    Ok(n > 0)
}

fn sha256(text: &str) -> String {
    crate::checksum::sha256_hex(text.as_bytes())
}

fn phase_name(p: Phase) -> &'static str {
    match p {
        Phase::Expand => "expand",
        Phase::Backfill => "backfill",
        Phase::Contract => "contract",
        Phase::Irreversible => "irreversible",
    }
}

/// Applies every migration of `set` not yet in the database's history, in order, up to and
/// including `to` (all when `None`). `proven(version)` says whether the up→down→up proof passed
/// for it (recorded, and what rollback plans rely on). Returns the versions applied.
pub async fn apply_up(
    engine: Engine,
    url: &str,
    set: &MigrationSet,
    to: Option<&str>,
    proven: &dyn Fn(&str) -> bool,
    now_ms: i64,
) -> Result<Vec<String>, ApplyError> {
    let applied: Vec<String> = history(engine, url)
        .await?
        .into_iter()
        .map(|m| m.version)
        .collect();
    let mut conn = connect(engine, url).await?;
    exec(&mut conn, CREATE_HISTORY)
        .await
        .map_err(ApplyError::History)?;
    let mut seq = applied.len() as i64;
    let mut done = Vec::new();
    for m in &set.migrations {
        if applied.contains(&m.version) {
            continue;
        }
        if let Some(limit) = to
            && backstop_core::schema::version_cmp(&m.version, limit).is_gt()
        {
            break;
        }
        seq += 1;
        apply_one(&mut conn, m, seq, proven(&m.version), now_ms).await?;
        done.push(m.version.clone());
    }
    Ok(done)
}

async fn apply_one(
    conn: &mut Conn,
    m: &Migration,
    seq: i64,
    proven: bool,
    now_ms: i64,
) -> Result<(), ApplyError> {
    let script_err = |source| ApplyError::Script {
        version: m.version.clone(),
        name: m.name.clone(),
        source,
    };
    let down_sql = m.down.as_ref().map(|d| d.sql.clone());
    let down_sha = down_sql.as_deref().map(sha256);
    let insert = "INSERT INTO backstop_schema_history \
        (version, seq, name, up_sha256, down_sql, down_sha256, proven, phase, irreversible, applied_at_ms) \
        VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
    let phase = m.phase.map(phase_name);
    macro_rules! run {
        ($c:expr) => {{
            let c = $c;
            if m.no_transaction {
                sqlx::raw_sql(sqlx::AssertSqlSafe(m.up.sql.as_str()))
                    .execute(&mut *c)
                    .await
                    .map_err(script_err)?;
            }
            let mut tx = c.begin().await.map_err(ApplyError::History)?;
            if !m.no_transaction {
                sqlx::raw_sql(sqlx::AssertSqlSafe(m.up.sql.as_str()))
                    .execute(&mut *tx)
                    .await
                    .map_err(script_err)?;
            }
            sqlx::query(insert)
                .bind(&m.version)
                .bind(seq)
                .bind(&m.name)
                .bind(sha256(&m.up.sql))
                .bind(&down_sql)
                .bind(&down_sha)
                .bind(i32::from(proven))
                .bind(phase)
                .bind(&m.irreversible)
                .bind(now_ms)
                .execute(&mut *tx)
                .await
                .map_err(ApplyError::History)?;
            tx.commit().await.map_err(ApplyError::History)?;
        }};
    }
    match conn {
        Conn::Sqlite(c) => run!(c),
        Conn::Postgres(c) => run!(c),
    }
    Ok(())
}

async fn exec(conn: &mut Conn, sql: &str) -> Result<(), sqlx::Error> {
    match conn {
        Conn::Sqlite(c) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(c)
            .await
            .map(|_| ()),
        Conn::Postgres(c) => sqlx::raw_sql(sqlx::AssertSqlSafe(sql))
            .execute(c)
            .await
            .map(|_| ()),
    }
}

/// What running a down found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DownOutcome {
    /// The down ran and its history row is gone (one transaction).
    Ran,
    /// The history has no such migration: it was undone before (a retried step) or never applied.
    AlreadyUndone,
}

/// Runs the down of `version` as kept in the database's history, after checking that it is the
/// script the plan was made with (`expected_sha256`). Idempotent: see [`DownOutcome`].
pub async fn run_down(
    engine: Engine,
    url: &str,
    version: &str,
    expected_sha256: &str,
) -> Result<DownOutcome, ApplyError> {
    let mut conn = connect(engine, url).await?;
    if !table_exists(&mut conn).await? {
        return Ok(DownOutcome::AlreadyUndone);
    }
    let select = "SELECT down_sql FROM backstop_schema_history WHERE version = $1";
    let delete = "DELETE FROM backstop_schema_history WHERE version = $1";
    macro_rules! run {
        ($c:expr) => {{
            let mut tx = $c.begin().await.map_err(ApplyError::History)?;
            let row: Option<(Option<String>,)> = sqlx::query_as(select)
                .bind(version)
                .fetch_optional(&mut *tx)
                .await
                .map_err(ApplyError::History)?;
            let Some((down,)) = row else {
                return Ok(DownOutcome::AlreadyUndone);
            };
            let down = down.ok_or_else(|| ApplyError::NoDown {
                version: version.to_string(),
            })?;
            let actual = sha256(&down);
            if actual != expected_sha256 {
                return Err(ApplyError::DownChanged {
                    version: version.to_string(),
                    expected: expected_sha256.to_string(),
                    actual,
                });
            }
            sqlx::raw_sql(sqlx::AssertSqlSafe(down.as_str()))
                .execute(&mut *tx)
                .await
                .map_err(|source| ApplyError::Script {
                    version: version.to_string(),
                    name: "down".into(),
                    source,
                })?;
            sqlx::query(delete)
                .bind(version)
                .execute(&mut *tx)
                .await
                .map_err(ApplyError::History)?;
            tx.commit().await.map_err(ApplyError::History)?;
            Ok(DownOutcome::Ran)
        }};
    }
    match &mut conn {
        Conn::Sqlite(c) => run!(c),
        Conn::Postgres(c) => run!(c),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use super::*;
    use crate::fixtures::{self, paired};

    /// Migrations `1`, `2`, … (named `m1`, …) in `dir`, one per (up, down) pair.
    fn reversible_set(dir: &Path, scripts: &[(&str, &str)]) -> MigrationSet {
        let migrations = (1..)
            .zip(scripts)
            .map(|(version, (up, down))| {
                paired(&version.to_string(), &format!("m{version}"), up, Some(down))
            })
            .collect();
        fixtures::set(dir, migrations)
    }

    /// A SQLite database in `dir`.
    fn sqlite_url(dir: &Path) -> String {
        format!("sqlite://{}", dir.join("app.db").display())
    }

    #[tokio::test]
    async fn apply_then_down_twice_is_idempotent_on_sqlite() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(dir.path());
        let set = reversible_set(
            dir.path(),
            &[
                (
                    "CREATE TABLE users (id INTEGER PRIMARY KEY, name TEXT);",
                    "DROP TABLE users;",
                ),
                (
                    "ALTER TABLE users ADD COLUMN email TEXT;",
                    "ALTER TABLE users DROP COLUMN email;",
                ),
            ],
        );
        let done = apply_up(Engine::Sqlite, &url, &set, None, &|_| true, 1)
            .await
            .unwrap();
        assert_eq!(done, ["1", "2"]);
        // Nothing pending: a second apply is a no-op.
        assert!(
            apply_up(Engine::Sqlite, &url, &set, None, &|_| true, 2)
                .await
                .unwrap()
                .is_empty()
        );
        let hist = history(Engine::Sqlite, &url).await.unwrap();
        assert_eq!(hist.len(), 2);
        assert!(hist[1].proven && hist[1].has_down);
        let sha = hist[1].down_sha256.clone().unwrap();
        let err = run_down(Engine::Sqlite, &url, "2", &"00".repeat(32))
            .await
            .unwrap_err();
        assert!(err.to_string().contains("refusing"), "{err}");
        assert_eq!(
            run_down(Engine::Sqlite, &url, "2", &sha).await.unwrap(),
            DownOutcome::Ran
        );
        assert_eq!(
            run_down(Engine::Sqlite, &url, "2", &sha).await.unwrap(),
            DownOutcome::AlreadyUndone
        );
        let hist = history(Engine::Sqlite, &url).await.unwrap();
        assert_eq!(hist.len(), 1);
        // The column is really gone: re-applying 2 works again.
        assert_eq!(
            apply_up(Engine::Sqlite, &url, &set, None, &|_| false, 3)
                .await
                .unwrap(),
            ["2"]
        );
    }

    #[tokio::test]
    async fn a_failing_up_leaves_no_history_row() {
        let dir = tempfile::tempdir().unwrap();
        let url = sqlite_url(dir.path());
        let set = reversible_set(
            dir.path(),
            &[
                (
                    "CREATE TABLE t (id INTEGER); INSERT INTO t VALUES (1);",
                    "DROP TABLE t;",
                ),
                (
                    "ALTER TABLE t ADD COLUMN n INTEGER NOT NULL;",
                    "ALTER TABLE t DROP COLUMN n;",
                ),
            ],
        );
        let err = apply_up(Engine::Sqlite, &url, &set, None, &|_| true, 1)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("migration 2"), "{err}");
        let hist = history(Engine::Sqlite, &url).await.unwrap();
        assert_eq!(
            hist.iter().map(|m| m.version.as_str()).collect::<Vec<_>>(),
            ["1"]
        );
    }

    /// The same protocol on a real PostgreSQL (a temporary cluster, reached by its socket).
    #[tokio::test]
    async fn apply_and_idempotent_down_on_postgres() {
        let cluster = tokio::task::spawn_blocking(crate::scratch::postgres::TempCluster::start)
            .await
            .unwrap()
            .expect("a temporary PostgreSQL cluster (install the postgresql package)");
        let sock = cluster.dir().unwrap().join("sock");
        let url = format!(
            "postgres://postgres@localhost:5432/postgres?host={}",
            sock.display()
        );
        let dir = tempfile::tempdir().unwrap();
        let set = reversible_set(
            dir.path(),
            &[
                (
                    "CREATE TABLE users (id bigint PRIMARY KEY, name text NOT NULL);",
                    "DROP TABLE users;",
                ),
                (
                    "ALTER TABLE users ADD COLUMN email text; CREATE INDEX users_email ON users (email);",
                    "DROP INDEX users_email; ALTER TABLE users DROP COLUMN email;",
                ),
            ],
        );
        let done = apply_up(Engine::Postgres, &url, &set, None, &|v| v == "2", 1)
            .await
            .unwrap();
        assert_eq!(done, ["1", "2"]);
        let hist = history(Engine::Postgres, &url).await.unwrap();
        assert_eq!(
            hist.iter()
                .map(|m| (m.version.as_str(), m.proven))
                .collect::<Vec<_>>(),
            [("1", false), ("2", true)]
        );
        let sha = hist[1].down_sha256.clone().unwrap();
        assert_eq!(
            run_down(Engine::Postgres, &url, "2", &sha).await.unwrap(),
            DownOutcome::Ran
        );
        assert_eq!(
            run_down(Engine::Postgres, &url, "2", &sha).await.unwrap(),
            DownOutcome::AlreadyUndone
        );
        use sqlx::Connection;
        let mut c = sqlx::PgConnection::connect(&url).await.unwrap();
        let cols: Vec<(String,)> = sqlx::query_as(
            "SELECT column_name::text FROM information_schema.columns WHERE table_name = 'users' ORDER BY ordinal_position",
        )
        .fetch_all(&mut c)
        .await
        .unwrap();
        assert_eq!(cols, [("id".to_string(),), ("name".to_string(),)]);
        drop(cluster);
    }
}
