//! Fencing: the writes of a replica that lost a lease are refused.
//!
//! Work is split between replicas by leases (`ClusterStore::acquire_lease`): whoever holds a
//! rollout's lease drives it. A lease that was not renewed in time (its holder crashed, was
//! paused, or lost its network) is taken by another replica with the next **epoch**. The former
//! holder may wake up still believing it owns the rollout; every write it makes in the
//! rollout's name runs inside [`fenced`], and each write transaction of the store first reads
//! the lease's epoch (locking its row, so a takeover waits for a write in flight) and refuses
//! the write with [`crate::StoreError::Fenced`] when the epoch moved on. A stale owner can
//! therefore change nothing; the new owner resumes from what the journal says was done.
//!
//! The fence travels with the task (a task-local), not through every store method: the
//! controller wraps all it does for one rollout or recovery in [`fenced`], and each
//! backend's `begin_write` checks [`current`]. Writes outside any scope (the API recording a
//! release, a heartbeat) are not fenced.

use std::future::Future;

/// A lease as its holder knows it: the key and the epoch it holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fence {
    pub key: String,
    pub epoch: i64,
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} at epoch {}", self.key, self.epoch)
    }
}

tokio::task_local! {
    static FENCE: Fence;
}

/// Runs `work` with every store write in it fenced by `fence`.
pub async fn fenced<F: Future>(fence: Fence, work: F) -> F::Output {
    FENCE.scope(fence, work).await
}

/// The fence of the running task, if it runs inside [`fenced`].
pub fn current() -> Option<Fence> {
    FENCE.try_with(Clone::clone).ok()
}

/// `Ok` when the lease `fence` names is still at its epoch (`stored`, `None`: no such lease),
/// else the refusal: every fenced check (a write's, or one before an action) decides here.
pub(crate) fn admit(fence: &Fence, stored: Option<i64>) -> crate::Result<()> {
    if stored == Some(fence.epoch) {
        return Ok(());
    }
    Err(crate::StoreError::Fenced(match stored {
        Some(epoch) => format!(
            "lease {} is at epoch {epoch}, this replica holds epoch {}: another replica took it over, so this one changes nothing",
            fence.key, fence.epoch
        ),
        None => format!(
            "lease {} does not exist, so this replica changes nothing",
            fence.key
        ),
    }))
}
