//! Throwaway databases the proof runs migrations on: a temporary SQLite file, or a fresh
//! PostgreSQL database (in a server given by `--database-url`, or in a temporary cluster this
//! crate starts and removes itself).

pub(crate) mod lex;
pub mod postgres;
pub mod sqlite;

use std::future::Future;

use crate::fingerprint::Fingerprint;
use crate::model::{Engine, Script};
use crate::proof::ProofError;

pub use postgres::{PgScratch, TempCluster};
pub use sqlite::SqliteScratch;

/// How a script runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExecMode {
    /// In one transaction, committed (a script with its own `BEGIN`/`COMMIT` runs as written).
    Transaction,
    /// Statement by statement outside any transaction (`Migration::no_transaction`).
    NoTransaction,
    /// In one transaction that is rolled back afterwards (sqitch verify scripts).
    RollBack,
}

/// A script the database refused: what it said, and where in the file when it says so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScriptFailure {
    /// The database's own message, e.g. `column "city" of relation "users" contains null values
    /// (SQLSTATE 23502)`.
    pub message: String,
    /// 1-based line in the script's file, when the database reports a position.
    pub line: Option<u32>,
}

/// Running a script either fails because of the script, or because of the infrastructure.
#[derive(Debug)]
pub enum ExecError {
    Script(ScriptFailure),
    Infra(ProofError),
}

/// A scratch database: run scripts, read the catalog fingerprint, start over empty.
/// Implemented by [`SqliteScratch`] and [`PgScratch`]; [`crate::proof::prove_on`] takes any.
pub trait ScratchDb: Send {
    fn engine(&self) -> Engine;

    /// Runs a whole script (several statements) in the given mode.
    fn execute(
        &mut self,
        script: &Script,
        mode: ExecMode,
    ) -> impl Future<Output = Result<(), ExecError>> + Send;

    /// The catalog fingerprint of the current schema.
    fn fingerprint(&mut self) -> impl Future<Output = Result<Fingerprint, ProofError>> + Send;

    /// What the proof runs on, for the report: `PostgreSQL 16.4`, `SQLite 3.46.1`.
    fn server_version(&mut self) -> impl Future<Output = Result<String, ProofError>> + Send;

    /// Throws the database away and starts over with an empty one.
    fn reset(&mut self) -> impl Future<Output = Result<(), ProofError>> + Send;

    /// Releases the database (drops the scratch database, stops a temporary cluster). Dropping
    /// without calling this still cleans up, but synchronously.
    fn close(self) -> impl Future<Output = ()> + Send;
}

/// Runs a whole `script` on `conn` in `mode`, statement by statement (so a failure names its
/// line): wrapped in our own `BEGIN` unless the script controls its transactions or `mode` is
/// [`ExecMode::NoTransaction`]; committed in [`ExecMode::Transaction`], else rolled back. The one
/// body both scratch engines run.
pub(crate) async fn execute_script<C>(
    conn: &mut C,
    script: &Script,
    mode: ExecMode,
    dialect: lex::Dialect,
) -> Result<(), ExecError>
where
    C: sqlx::Connection,
    for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
{
    async fn run<C>(conn: &mut C, sql: &str) -> Result<(), sqlx::Error>
    where
        C: sqlx::Connection,
        for<'c> &'c mut C: sqlx::Executor<'c, Database = C::Database>,
    {
        sqlx::raw_sql(sqlx::AssertSqlSafe(sql.to_string()))
            .execute(&mut *conn)
            .await
            .map(|_| ())
    }
    let wrap = match mode {
        ExecMode::Transaction => !lex::has_transaction_control(&script.sql, dialect),
        ExecMode::NoTransaction => false,
        ExecMode::RollBack => true,
    };
    if wrap {
        run(conn, "BEGIN")
            .await
            .map_err(|e| classify(e, script, 0, ""))?;
    }
    let mut result = Ok(());
    for (offset, stmt) in lex::split_statements(&script.sql, dialect) {
        if let Err(e) = run(conn, &stmt).await {
            result = Err(classify(e, script, offset, &stmt));
            break;
        }
    }
    match (&result, mode, wrap) {
        (Ok(()), ExecMode::Transaction, true) => {
            run(conn, "COMMIT")
                .await
                .map_err(|e| classify(e, script, 0, ""))?;
        }
        (Ok(()), _, false) => {}
        // Failed, or verify-only: undo. Without our own BEGIN there may be none open (ignored).
        _ => {
            let _ = run(conn, "ROLLBACK").await;
        }
    }
    result
}

/// Maps a database error while running a user script: the database refused the SQL (a
/// script failure) or the connection broke (infrastructure).
pub(crate) fn classify(
    err: sqlx::Error,
    script: &Script,
    sql_offset: usize,
    sql: &str,
) -> ExecError {
    match err {
        sqlx::Error::Database(db) => {
            let mut message = db.message().to_string();
            // The failing statement's first line; PostgreSQL may point inside it.
            let mut line = (!sql.is_empty()).then(|| line_at(script, sql_offset));
            if let Some(pg) = db.try_downcast_ref::<sqlx::postgres::PgDatabaseError>() {
                if let Some(d) = pg.detail() {
                    message.push_str(&format!(" ({d})"));
                }
                if let Some(h) = pg.hint() {
                    message.push_str(&format!(" (hint: {h})"));
                }
                if let Some(sqlx::postgres::PgErrorPosition::Original(chars)) = pg.position() {
                    let upto: String = sql.chars().take(chars.saturating_sub(1)).collect();
                    line = Some(line_at(script, sql_offset + upto.len()));
                }
                message.push_str(&format!(" (SQLSTATE {})", pg.code()));
            }
            ExecError::Script(ScriptFailure { message, line })
        }
        other => ExecError::Infra(ProofError::Scratch {
            action: format!("running {}", script.file.display()),
            message: other.to_string(),
        }),
    }
}

/// The file line of byte `offset` into `script.sql`.
pub(crate) fn line_at(script: &Script, offset: usize) -> u32 {
    let upto = script
        .sql
        .get(..offset.min(script.sql.len()))
        .unwrap_or_default();
    let newlines = u32::try_from(upto.matches('\n').count()).unwrap_or(u32::MAX);
    script.line.saturating_add(newlines)
}

/// A name no other scratch database in this process or another one uses.
pub(crate) fn unique_name(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or_default();
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    )
}
