//! Backstop's durable state behind one trait per aggregate ([`aggregates`]), all of them
//! together being [`Store`]. SQLite is the embedded default; a PostgreSQL backend implements the
//! same traits (and runs the same conformance tests) for scale-out. Callers import
//! [`prelude`] to get every method on an `Arc<dyn Store>`.
//!
//! Handlers and controllers only see [`StoreError`]: `NotFound` becomes HTTP 404 and
//! `Conflict` 409 without anyone looking at database error codes.

pub mod aggregates;
pub mod blobs;
pub mod sqlite;

pub use aggregates::{
    AuditStore, BreakerStore, DrillStore, EnvironmentStore, FreezeStore, RecoveryStore,
    ReleaseStore, RolloutStore, SnapshotStore,
};
pub use blobs::{BlobError, BlobStore, FolderBlobs};
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
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

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
    + 'static
{
}

/// `use backstop_store::prelude::*;` brings every store method into scope.
pub mod prelude {
    pub use crate::Store;
    pub use crate::aggregates::{
        AuditStore, BreakerStore, DrillStore, EnvironmentStore, FreezeStore, RecoveryStore,
        ReleaseStore, RolloutStore, SnapshotStore,
    };
}

/// Verifies the whole chain plus its stored head.
pub async fn verify_audit(
    store: &(impl AuditStore + ?Sized),
) -> Result<std::result::Result<usize, backstop_core::audit::ChainBreak>> {
    let records = store.audit(0, i64::MAX).await?;
    let verified = match backstop_core::audit::verify_chain(&records) {
        Ok(n) => n,
        Err(b) => return Ok(Err(b)),
    };
    let head = store.audit_head().await?;
    let last = records.last().map(|r| (r.seq, r.hash.clone()));
    if head != last {
        let seq = head.as_ref().map_or(0, |h| h.0);
        return Ok(Err(backstop_core::audit::ChainBreak {
            seq,
            reason: format!(
                "the chain head records {} records but {} are stored (records were removed from the end)",
                seq,
                records.len()
            ),
        }));
    }
    Ok(Ok(verified))
}
