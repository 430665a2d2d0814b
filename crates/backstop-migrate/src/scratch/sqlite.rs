//! SQLite scratch database: a file in a temporary folder, one connection, foreign keys on (as
//! sqlx opens SQLite), fsync off.

use std::path::PathBuf;

use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, SqliteConnection};

use super::lex::Dialect;
use super::{ExecError, ExecMode, ScratchDb, execute_script};
use crate::fingerprint::{self, Fingerprint};
use crate::model::{Engine, Script};
use crate::proof::ProofError;

pub struct SqliteScratch {
    dir: tempfile::TempDir,
    generation: u32,
    conn: Option<SqliteConnection>,
}

impl SqliteScratch {
    /// Creates an empty database file in a new temporary folder.
    pub async fn start() -> Result<Self, ProofError> {
        let dir = tempfile::Builder::new()
            .prefix("backstop-sqlite-")
            .tempdir()
            .map_err(|e| ProofError::Io {
                action: "creating a temporary folder for the SQLite scratch database".to_string(),
                message: e.to_string(),
            })?;
        let mut s = SqliteScratch {
            dir,
            generation: 0,
            conn: None,
        };
        s.open().await?;
        Ok(s)
    }

    /// The current database file.
    pub fn path(&self) -> PathBuf {
        self.dir
            .path()
            .join(format!("scratch-{}.db", self.generation))
    }

    async fn open(&mut self) -> Result<(), ProofError> {
        let opts = SqliteConnectOptions::new()
            .filename(self.path())
            .create_if_missing(true)
            .foreign_keys(true)
            .journal_mode(SqliteJournalMode::Memory)
            .synchronous(SqliteSynchronous::Off)
            .disable_statement_logging();
        let conn =
            SqliteConnection::connect_with(&opts)
                .await
                .map_err(|e| ProofError::Scratch {
                    action: format!(
                        "opening the SQLite scratch database {}",
                        self.path().display()
                    ),
                    message: e.to_string(),
                })?;
        self.conn = Some(conn);
        Ok(())
    }

    fn conn(&mut self) -> Result<&mut SqliteConnection, ProofError> {
        self.conn.as_mut().ok_or_else(|| ProofError::Scratch {
            action: "using the SQLite scratch database".to_string(),
            message: "the connection is closed".to_string(),
        })
    }
}

impl ScratchDb for SqliteScratch {
    fn engine(&self) -> Engine {
        Engine::Sqlite
    }

    async fn execute(&mut self, script: &Script, mode: ExecMode) -> Result<(), ExecError> {
        let conn = self.conn().map_err(ExecError::Infra)?;
        execute_script(conn, script, mode, Dialect::Sqlite).await
    }

    async fn fingerprint(&mut self) -> Result<Fingerprint, ProofError> {
        let conn = self.conn()?;
        fingerprint::sqlite::fingerprint(conn)
            .await
            .map_err(|e| ProofError::Scratch {
                action: "reading the SQLite catalog".to_string(),
                message: e.to_string(),
            })
    }

    async fn server_version(&mut self) -> Result<String, ProofError> {
        let conn = self.conn()?;
        let v: String = sqlx::query_scalar("SELECT sqlite_version()")
            .fetch_one(conn)
            .await
            .map_err(|e| ProofError::Scratch {
                action: "reading the SQLite version".to_string(),
                message: e.to_string(),
            })?;
        Ok(format!("SQLite {v}"))
    }

    async fn reset(&mut self) -> Result<(), ProofError> {
        if let Some(c) = self.conn.take() {
            let _ = c.close().await;
        }
        let _ = std::fs::remove_file(self.path());
        self.generation += 1;
        self.open().await
    }

    async fn close(mut self) {
        if let Some(c) = self.conn.take() {
            let _ = c.close().await;
        }
    }
}
