//! Backstop's durable state behind one trait per aggregate ([`aggregates`]), all of them
//! together being [`Store`]. SQLite is the embedded default; a PostgreSQL backend implements the
//! same traits (and runs the same conformance tests) for scale-out. Callers import
//! [`prelude`] to get every method on an `Arc<dyn Store>`.
//!
//! Handlers and controllers only see [`StoreError`]: `NotFound` becomes HTTP 404 and
//! `Conflict` 409 without anyone looking at database error codes.

/// A record read from a row whose columns are named like its fields: each field before the `;`
/// is `row.col("field")?`; the fields after it are stored some other way (JSON, parsed text,
/// another column name) and are written as in a struct expression. Works on either backend's
/// rows ([`rows::Columns`]).
macro_rules! from_row {
    ($row:expr => $record:ident {
        $($column:ident),* $(,)? $(; $($field:ident $(: $value:expr)?),* $(,)?)?
    }) => {
        $record {
            $($column: $crate::rows::Columns::col($row, stringify!($column))?,)*
            $($($field $(: $value)?,)*)?
        }
    };
}

pub mod aggregates;
pub mod audit_chain;
pub mod blobs;
pub mod copy;
pub mod fence;
pub mod postgres;
mod rows;
pub mod sqlite;

pub use aggregates::{
    AlertStore, ApprovalStore, AuditStore, BreakerStore, ClusterStore, DrillStore,
    EnvironmentStore, FlagStore, FreezeStore, GroupStore, HeartbeatStore, IncidentStore,
    LabelStore, MetricsStore, RecoveryStore, ReleaseStore, RolloutStore, RunbookRunStore,
    ShipStore, SnapshotStore, TokenStore,
};
pub use aggregates::{DecisionCounts, DurationCounts, TIME_BUCKETS_S};
pub use audit_chain::{Expect, Signature, Verified, verify_audit, verify_audit_with};
pub use blobs::{BlobError, BlobStore, FolderBlobs};
pub use postgres::PostgresStore;
pub use sqlite::SqliteStore;

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("{0} not found")]
    NotFound(String),
    #[error("conflict: {0}")]
    Conflict(String),
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    #[error("database error: {0}")]
    Database(#[source] sqlx::Error),
    /// The store cannot be opened as asked (unreachable server, refused credentials, a schema
    /// newer than this binary knows); the message names what to fix and never a password.
    #[error("{0}")]
    Open(String),
    /// A write made in the name of a lease this replica no longer holds ([`fence`]).
    #[error("fenced: {0}")]
    Fenced(String),
}

impl StoreError {
    /// True when the storage itself refuses writes (disk full, I/O error, read-only file
    /// system or database) or cannot be reached (a database server down or restarting), as
    /// opposed to a refused or bad request: the daemon then does what is safe without writing,
    /// until writes work again.
    pub fn is_write_failure(&self) -> bool {
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            // No connection could be had: the server is gone, or every connection hangs.
            sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::WorkerCrashed => {
                true
            }
            sqlx::Error::Io(io) => {
                use std::io::ErrorKind::{
                    BrokenPipe, ConnectionAborted, ConnectionRefused, ConnectionReset,
                    NotConnected, NotFound, QuotaExceeded, ReadOnlyFilesystem, StorageFull,
                    UnexpectedEof,
                };
                // EIO (5) has no kind of its own. A server's socket that is gone (NotFound) or
                // refuses, resets or ends a connection is a server that is down.
                matches!(
                    io.kind(),
                    StorageFull
                        | ReadOnlyFilesystem
                        | QuotaExceeded
                        | ConnectionRefused
                        | ConnectionReset
                        | ConnectionAborted
                        | BrokenPipe
                        | NotConnected
                        | NotFound
                        | UnexpectedEof
                ) || io.raw_os_error() == Some(5)
            }
            sqlx::Error::Database(db) => {
                let Some(code) = db.code() else {
                    return false;
                };
                if db
                    .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
                    .is_some()
                {
                    return postgres::sqlstate_is_write_failure(&code);
                }
                // SQLite primary result codes (the low byte of an extended code): IOERR 10,
                // FULL 13, READONLY 8.
                code.parse::<i64>()
                    .is_ok_and(|code| matches!(code & 0xff, 8 | 10 | 13))
            }
            _ => false,
        }
    }
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A migrator over a backend's embedded migrations, `(version, name, sql)` in order.
fn migrator(migrations: &[(i64, &'static str, &'static str)]) -> sqlx::migrate::Migrator {
    use sqlx::SqlSafeStr;
    use sqlx::migrate::{Migration, MigrationType, Migrator};
    Migrator::with_migrations(
        migrations
            .iter()
            .map(|&(version, name, sql)| {
                Migration::new(
                    version,
                    name.into(),
                    MigrationType::Simple,
                    sql.into_sql_str(),
                    false,
                )
            })
            .collect(),
    )
}

/// The state a controller needs to carry on after a restart, and everything the API serves:
/// every aggregate. A backend implements each aggregate's trait, then this one (empty).
pub trait Store:
    ReleaseStore
    + EnvironmentStore
    + RolloutStore
    + RecoveryStore
    + BreakerStore
    + FreezeStore
    + SnapshotStore
    + DrillStore
    + AuditStore
    + ClusterStore
    + TokenStore
    + ApprovalStore
    + IncidentStore
    + RunbookRunStore
    + HeartbeatStore
    + GroupStore
    + ShipStore
    + AlertStore
    + FlagStore
    + LabelStore
    + MetricsStore
    + 'static
{
}

/// `use backstop_store::prelude::*;` brings every store method into scope.
pub mod prelude {
    pub use crate::Store;
    pub use crate::aggregates::{
        AlertStore, ApprovalStore, AuditStore, BreakerStore, ClusterStore, DrillStore,
        EnvironmentStore, FlagStore, FreezeStore, GroupStore, HeartbeatStore, IncidentStore,
        LabelStore, MetricsStore, RecoveryStore, ReleaseStore, RolloutStore, RunbookRunStore,
        ShipStore, SnapshotStore, TokenStore,
    };
}
