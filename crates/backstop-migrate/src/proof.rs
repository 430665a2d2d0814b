//! The reversibility proof: on a scratch database, for every migration N in order, starting
//! from the state after N−1 (fingerprint F0): up → F1; down → F2, which must equal F0; up again
//! → F3, which must equal F1. Each prefix is built once; when a step fails or diverges the state
//! after N is rebuilt from the ups on a fresh database so later migrations are still proven.

use std::time::Instant;

use serde::Serialize;

use crate::fingerprint::{Difference, Drift, Stage};
use crate::model::{Engine, Finding, Migration, MigrationSet, Script, Severity, finding};
use crate::scratch::{ExecError, ExecMode, PgScratch, ScratchDb, ScriptFailure, SqliteScratch};

/// At most this many differences are listed per comparison; the rest are counted.
const MAX_LISTED_DIFFERENCES: usize = 20;

/// The proof's verdict on one migration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ProofResult {
    pub version: String,
    /// The migration has a down script.
    pub reversible: bool,
    /// Up, down and the second up ran, and the schema came back exactly both times.
    pub proven: bool,
    /// Rule ids: `up-failed`, `down-failed`, `verify-failed`, `proof-schema-differs`,
    /// `proof-reapply-differs`, `reapply-failed`, `not-proven`, `proof-rebuilt`, `proof-timing`.
    pub findings: Vec<Finding>,
    pub up_ms: u64,
    pub down_ms: u64,
    /// The up changed the schema (its fingerprint after differs from before). An up that
    /// changes nothing (`SELECT 1`, a read-only assertion, a data backfill) needs no schema down.
    pub schema_changed: bool,
}

/// The whole proof: one result per migration, and what it ran on.
#[derive(Debug, Clone)]
pub struct Proved {
    pub results: Vec<ProofResult>,
    /// `PostgreSQL 16.4`, `SQLite 3.46.1`.
    pub server: String,
}

/// The proof could not run at all (infrastructure, not the migrations).
#[derive(Debug, thiserror::Error)]
pub enum ProofError {
    #[error(
        "no PostgreSQL server found (looked at `pg_config --bindir`, /usr/lib/postgresql/*/bin and initdb on PATH): \
         install the postgresql package, or pass --database-url to use a running server"
    )]
    PostgresNotInstalled,
    #[error(
        "--database-url is only used with --engine postgres; SQLite proofs run on a temporary file"
    )]
    DatabaseUrlWithSqlite,
    #[error("--database-url is not a valid PostgreSQL URL: {message}")]
    BadDatabaseUrl { message: String },
    #[error("cannot connect to PostgreSQL: {message}")]
    Unreachable { message: String },
    #[error("cannot start a temporary PostgreSQL cluster: {step}: {detail}")]
    ClusterStart { step: String, detail: String },
    #[error("{action}: {message}")]
    Scratch { action: String, message: String },
    #[error("{action}: {message}")]
    Io { action: String, message: String },
}

impl ProofError {
    /// The CLI exit code for this error: 2 for bad input or a missing PostgreSQL installation,
    /// 3 when a database cannot be reached or started.
    pub fn exit_code(&self) -> u8 {
        match self {
            ProofError::PostgresNotInstalled
            | ProofError::DatabaseUrlWithSqlite
            | ProofError::BadDatabaseUrl { .. } => 2,
            ProofError::Unreachable { .. }
            | ProofError::ClusterStart { .. }
            | ProofError::Scratch { .. }
            | ProofError::Io { .. } => 3,
        }
    }
}

/// Proves every migration of `set` on a scratch database of `engine`: a temporary SQLite file;
/// for PostgreSQL a fresh database in the server at `database_url`, or, without one, in a
/// temporary cluster started for this call. Returns one result per migration, in order.
pub async fn prove(
    set: &MigrationSet,
    engine: Engine,
    database_url: Option<&str>,
) -> Result<Vec<ProofResult>, ProofError> {
    Ok(prove_reporting(set, engine, database_url, &|_, _| {})
        .await?
        .results)
}

/// Told before each migration is proven: its index (from 0) and version.
pub type OnMigration<'a> = &'a (dyn Fn(usize, &str) + Send + Sync);

/// [`prove`], telling `on_migration` as it goes (a long history takes a while), and saying
/// which server the proof ran on.
pub async fn prove_reporting(
    set: &MigrationSet,
    engine: Engine,
    database_url: Option<&str>,
    on_migration: OnMigration<'_>,
) -> Result<Proved, ProofError> {
    async fn on<D: ScratchDb>(
        mut db: D,
        set: &MigrationSet,
        on_migration: OnMigration<'_>,
    ) -> Result<Proved, ProofError> {
        let server = db.server_version().await;
        let results = match &server {
            Ok(server) => prove_on_reporting(&mut db, set, server, on_migration).await,
            Err(_) => Ok(Vec::new()),
        };
        db.close().await;
        Ok(Proved {
            results: results?,
            server: server?,
        })
    }
    match engine {
        Engine::Sqlite => {
            if database_url.is_some() {
                return Err(ProofError::DatabaseUrlWithSqlite);
            }
            on(SqliteScratch::start().await?, set, on_migration).await
        }
        Engine::Postgres => on(PgScratch::start(database_url).await?, set, on_migration).await,
    }
}

/// The proof on a scratch database the caller provides (it should be empty).
pub async fn prove_on<D: ScratchDb>(
    db: &mut D,
    set: &MigrationSet,
) -> Result<Vec<ProofResult>, ProofError> {
    let server = db.server_version().await?;
    prove_on_reporting(db, set, &server, &|_, _| {}).await
}

async fn prove_on_reporting<D: ScratchDb>(
    db: &mut D,
    set: &MigrationSet,
    server: &str,
    on_migration: OnMigration<'_>,
) -> Result<Vec<ProofResult>, ProofError> {
    let mut results = Vec::with_capacity(set.migrations.len());
    let mut current = db.fingerprint().await?;
    let mut blocked: Option<String> = None;
    for (idx, m) in set.migrations.iter().enumerate() {
        on_migration(idx, &m.version);
        let mut r = ProofResult {
            version: m.version.clone(),
            reversible: m.down.is_some(),
            proven: false,
            findings: Vec::new(),
            up_ms: 0,
            down_ms: 0,
            schema_changed: false,
        };
        if let Some(why) = &blocked {
            r.findings.push(finding(
                Severity::Warning,
                "not-proven",
                why.clone(),
                &m.up,
                None,
            ));
            results.push(r);
            continue;
        }
        let mode = mode_of(m);
        let f0 = current.clone();

        let started = Instant::now();
        let up = exec(db, &m.up, mode).await?;
        r.up_ms = millis(started);
        if let Err(fail) = up {
            r.findings.push(up_failed(&m.up, &fail, server));
            blocked = Some(format!(
                "not proven: the up of {} failed, so the schema this migration starts from cannot be built",
                m.version
            ));
            results.push(r);
            continue;
        }
        let f1 = db.fingerprint().await?;
        r.schema_changed = f1.sha256 != f0.sha256;
        if let Some(verify) = &m.verify
            && let Err(fail) = exec(db, verify, ExecMode::RollBack).await?
        {
            r.findings.push(script_failed(
                "verify-failed",
                "verify failed after the up",
                verify,
                &fail,
            ));
        }

        let Some(down) = &m.down else {
            let (severity, why) = match &m.irreversible {
                Some(reason) if reason == crate::model::UP_ONLY => (
                    Severity::Info,
                    "it has no down (a sqlx up-only migration)".to_string(),
                ),
                Some(reason) if reason.is_empty() => {
                    (Severity::Info, "declared irreversible".to_string())
                }
                Some(reason) => (Severity::Info, format!("declared irreversible: {reason}")),
                None => (Severity::Warning, "no down script".to_string()),
            };
            r.findings.push(finding(
                severity,
                "not-proven",
                format!("not proven: {why}; the up was applied and the proof continues from there"),
                &m.up,
                None,
            ));
            current = f1;
            results.push(r);
            continue;
        };

        let mut clean = true;
        let mut off_track = false;
        let started = Instant::now();
        let down_result = exec(db, down, mode).await?;
        r.down_ms = millis(started);
        let mut reapply_ms = None;
        match down_result {
            Err(fail) => {
                clean = false;
                off_track = true;
                r.findings
                    .push(script_failed("down-failed", "down failed", down, &fail));
            }
            Ok(()) => {
                let f2 = db.fingerprint().await?;
                let diffs = f0.diff(&f2);
                if diffs.iter().any(|d| d.drift != Drift::Layout) {
                    clean = false;
                }
                if !diffs.is_empty() {
                    push_differences(
                        &mut r.findings,
                        "proof-schema-differs",
                        &diffs,
                        Stage::AfterDown,
                        down,
                    );
                }
                let started = Instant::now();
                let again = exec(db, &m.up, mode).await?;
                reapply_ms = Some(millis(started));
                match again {
                    Err(fail) => {
                        clean = false;
                        off_track = true;
                        r.findings.push(script_failed(
                            "reapply-failed",
                            "the second up (after the down) failed",
                            &m.up,
                            &fail,
                        ));
                    }
                    Ok(()) => {
                        let f3 = db.fingerprint().await?;
                        let diffs = f1.diff(&f3);
                        if diffs.iter().any(|d| d.drift != Drift::Layout) {
                            clean = false;
                            off_track = true;
                        }
                        if !diffs.is_empty() {
                            push_differences(
                                &mut r.findings,
                                "proof-reapply-differs",
                                &diffs,
                                Stage::AfterReapply,
                                &m.up,
                            );
                        }
                    }
                }
            }
        }

        current = f1;
        if off_track {
            // A failed step inside a transaction was rolled back: maybe we are still at N.
            let now = db.fingerprint().await?;
            if now.sha256 != current.sha256 {
                match rebuild(db, set, idx).await? {
                    Ok(()) => {
                        current = db.fingerprint().await?;
                        r.findings.push(finding(
                            Severity::Info,
                            "proof-rebuilt",
                            format!(
                                "the schema after {} was rebuilt on a fresh database by applying the ups up to it, \
                                 so later migrations are still proven",
                                m.version
                            ),
                            &m.up,
                            None,
                        ));
                    }
                    Err(why) => blocked = Some(format!("not proven: {why}")),
                }
            }
        }
        r.proven = clean;
        r.findings.push(finding(
            Severity::Info,
            "proof-timing",
            match reapply_ms {
                Some(again) => format!(
                    "up {} ms, down {} ms, second up {again} ms",
                    r.up_ms, r.down_ms
                ),
                None => format!("up {} ms, down {} ms", r.up_ms, r.down_ms),
            },
            &m.up,
            None,
        ));
        results.push(r);
    }
    Ok(results)
}

/// An error finding `rule`: `script` failed while the proof ran it (`what`, then why, at the
/// failing line).
fn script_failed(rule: &str, what: &str, script: &Script, fail: &ScriptFailure) -> Finding {
    finding(
        Severity::Error,
        rule,
        format!("{what}: {}", fail.message),
        script,
        fail.line,
    )
}

/// SQLSTATEs a statement the parser accepted gets from a server too old for it: a syntax error
/// (the grammar grew), a feature not supported. An unknown object or function is most often the
/// migration's own fault (a missing extension, a typo), so it gets no such hint.
const TOO_OLD_STATES: &[&str] = &["42601", "0A000"];

/// The up failed: `missing-extension` (the environment, not the migration: exit 3) when the
/// server lacks an extension it creates; otherwise `up-failed`, saying the server may be too old
/// when its error is one a newer server would not give.
fn up_failed(up: &Script, fail: &ScriptFailure, server: &str) -> Finding {
    let m = &fail.message;
    if m.contains("could not open extension control file")
        || (m.starts_with("extension \"") && m.contains("is not available"))
    {
        return finding(
            Severity::Error,
            "missing-extension",
            format!(
                "the scratch server ({server}) lacks an extension this up creates: {m}; install \
                 it there, or prove on a server that has it with --database-url"
            ),
            up,
            fail.line,
        );
    }
    let mut f = script_failed("up-failed", "up failed", up, fail);
    if server.starts_with("PostgreSQL")
        && TOO_OLD_STATES
            .iter()
            .any(|s| m.ends_with(&format!("(SQLSTATE {s})")))
    {
        f.message.push_str(&format!(
            "; the proof ran on {server}, and the parser accepted this statement: if it needs a \
             newer server, prove on your production version with --database-url"
        ));
    }
    f
}

fn mode_of(m: &Migration) -> ExecMode {
    if m.no_transaction {
        ExecMode::NoTransaction
    } else {
        ExecMode::Transaction
    }
}

/// Runs a script: `Ok(Err(_))` when the database refused it, `Err(_)` for infrastructure trouble.
async fn exec<D: ScratchDb>(
    db: &mut D,
    script: &Script,
    mode: ExecMode,
) -> Result<Result<(), ScriptFailure>, ProofError> {
    match db.execute(script, mode).await {
        Ok(()) => Ok(Ok(())),
        Err(ExecError::Script(f)) => Ok(Err(f)),
        Err(ExecError::Infra(e)) => Err(e),
    }
}

/// Starts over on an empty database and applies the ups of migrations `0..=upto`.
async fn rebuild<D: ScratchDb>(
    db: &mut D,
    set: &MigrationSet,
    upto: usize,
) -> Result<Result<(), String>, ProofError> {
    db.reset().await?;
    for m in &set.migrations[..=upto] {
        if let Err(fail) = exec(db, &m.up, mode_of(m)).await? {
            return Ok(Err(format!(
                "rebuilding the schema after {} failed: the up of {} failed on a fresh database: {}",
                set.migrations[upto].version, m.version, fail.message
            )));
        }
    }
    Ok(Ok(()))
}

fn push_differences(
    findings: &mut Vec<Finding>,
    rule: &str,
    diffs: &[Difference],
    stage: Stage,
    script: &Script,
) {
    for d in diffs.iter().take(MAX_LISTED_DIFFERENCES) {
        // Column order alone: the schema is back, but `SELECT *`, positional INSERT and COPY
        // see the columns in another order.
        let (severity, rule) = if d.drift == Drift::Layout {
            (Severity::Warning, "column-order")
        } else {
            (Severity::Error, rule)
        };
        findings.push(finding(severity, rule, d.describe(stage), script, None));
    }
    if diffs.len() > MAX_LISTED_DIFFERENCES {
        findings.push(finding(
            Severity::Error,
            rule,
            format!(
                "{} more differences not listed",
                diffs.len() - MAX_LISTED_DIFFERENCES
            ),
            script,
            None,
        ));
    }
}

fn millis(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up() -> Script {
        Script {
            file: "0007_x.up.sql".into(),
            line: 1,
            sql: String::new(),
        }
    }

    fn fail(message: &str) -> ScriptFailure {
        ScriptFailure {
            message: message.into(),
            line: Some(3),
        }
    }

    #[test]
    fn a_missing_extension_is_the_environment_and_an_old_server_is_suspected() {
        let f = up_failed(
            &up(),
            &fail("extension \"vector\" is not available (SQLSTATE 0A000)"),
            "PostgreSQL 15.18",
        );
        assert_eq!(f.rule, "missing-extension");
        assert!(f.message.contains("PostgreSQL 15.18"), "{}", f.message);

        let f = up_failed(
            &up(),
            &fail("subquery in FROM must have an alias (SQLSTATE 42601)"),
            "PostgreSQL 15.18",
        );
        assert_eq!(f.rule, "up-failed");
        assert!(
            f.message.contains("the proof ran on PostgreSQL 15.18")
                && f.message.contains("--database-url"),
            "{}",
            f.message
        );

        // A table that is not there is the migration's fault, whatever the server.
        let f = up_failed(
            &up(),
            &fail("relation \"users\" does not exist (SQLSTATE 42P01)"),
            "PostgreSQL 15.18",
        );
        assert!(!f.message.contains("newer server"), "{}", f.message);
    }
}
