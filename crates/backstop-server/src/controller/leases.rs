//! Which work this replica drives. Every replica runs the same controller over the same store;
//! a piece of work is driven by the replica holding its lease: `rollout/ID` (the rollout, its
//! recovery and the commands on it), `recovery/ID` (a recovery without a rollout) and
//! `env/SERVICE/ENV` (supervision of the environment's instances, commands on an environment
//! with nothing running). Whatever the controller does for a piece of work runs inside
//! [`fenced`] with the lease's epoch, so once another replica took the lease over (this one was
//! paused, partitioned or slow past [`LEASE_TTL`]) its writes are refused by the store and its
//! route changes by the proxies: a former owner that wakes up changes nothing.
//!
//! A held lease is renewed every [`RENEW_EVERY`]; one this replica could not renew is dropped
//! from memory at once. An embedded store (behind its state folder's exclusive lock) has one
//! daemon, which takes every lease at start instead of waiting for its predecessor's to expire.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use backstop_core::model::ReplicaRecord;
use tokio_util::sync::CancellationToken;

use crate::Ctx;

use anyhow::Result;
use backstop_store::fence::{Fence, fenced};

use super::Controller;

/// How long a lease lasts without renewal: the time another replica waits before it resumes
/// the work of one that crashed (Argo Rollouts' and Flagger's controllers use 15 s).
pub const LEASE_TTL: Duration = Duration::from_secs(6);

/// How often a held lease is renewed: a third of its life, so two renewals may fail in a row
/// (a slow store, a pause) before it lapses.
pub const RENEW_EVERY: Duration = Duration::from_secs(2);

/// The lease of a rollout: its steps, its recovery and the commands on it.
pub fn rollout_key(id: &str) -> String {
    format!("rollout/{id}")
}

/// The lease of a recovery without a rollout (a manual rollback of an idle environment).
pub fn recovery_key(id: &str) -> String {
    format!("recovery/{id}")
}

/// The lease of a release group's run: starting its members' rollouts, planning its recovery.
pub fn group_key(id: &str) -> String {
    format!("group/{id}")
}

/// The lease of a ship: starting its waves' rollouts, baking, planning its rollbacks.
pub fn ship_key(id: &str) -> String {
    format!("ship/{id}")
}

/// The lease of an environment: supervision of its instances.
pub fn env_key(service: &str, env: &str) -> String {
    format!("env/{service}/{env}")
}

/// What this replica knows of how work is shared: it takes no new lease beyond its share
/// (renewing what it holds, and taking what a command needs, always), so the work spreads over
/// the replicas instead of going to whichever ticks first; a crashed replica's work goes to
/// those below their share. One replica alone takes everything.
#[derive(Debug)]
pub(super) struct Share {
    /// Live replicas at the last heartbeat (this one included).
    pub(super) live: usize,
    /// Pieces of work (rollouts, recoveries, environments) in the last reconcile pass.
    pub(super) work: usize,
}

impl Default for Share {
    fn default() -> Self {
        Share { live: 1, work: 0 }
    }
}

impl Share {
    /// How many leases a replica may hold before it leaves new work to the others: its even
    /// share plus one, so replicas do not hand work back and forth over one piece.
    fn most(&self) -> usize {
        self.work.div_ceil(self.live.max(1)) + 1
    }
}

/// A lease this replica holds, as it last renewed it.
#[derive(Clone, Copy)]
pub(super) struct Held {
    epoch: i64,
    renewed: tokio::time::Instant,
}

/// The leases this replica holds, by key: shared by the controller, which takes and lets go
/// of them, and [`keep`], which renews them while the controller may be busy with a long step
/// (a hook, an instance that takes its time to start), so a step longer than a lease does not
/// lose it.
#[derive(Clone, Default)]
pub(super) struct HeldLeases(Arc<Mutex<HashMap<String, Held>>>);

impl HeldLeases {
    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<String, Held>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
    fn get(&self, key: &str) -> Option<Held> {
        self.map().get(key).copied()
    }
    fn insert(&self, key: &str, held: Held) -> Option<Held> {
        self.map().insert(key.to_string(), held)
    }
    fn remove(&self, key: &str) -> Option<Held> {
        self.map().remove(key)
    }
    fn contains_key(&self, key: &str) -> bool {
        self.map().contains_key(key)
    }
    fn len(&self) -> usize {
        self.map().len()
    }
    pub(super) fn keys(&self) -> Vec<String> {
        self.map().keys().cloned().collect()
    }
}

/// Renews this replica's leases and records its heartbeat every [`RENEW_EVERY`], apart from
/// the controller's loop, until `stop`. A lease that could not be renewed (another replica
/// took it) is dropped at once: the controller's next use of it finds it gone, and its writes
/// under it are refused anyway.
pub(super) async fn keep(ctx: Arc<Ctx>, held: HeldLeases, stop: CancellationToken) {
    let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
    let mut unknown_before = std::collections::HashSet::new();
    loop {
        tokio::select! {
            () = stop.cancelled() => return,
            () = tokio::time::sleep(RENEW_EVERY) => {}
        }
        let now = ctx.clock.now_ms();
        // Alive while a long step runs; errors are the controller's to act on (fail-safe).
        let beat = ReplicaRecord {
            last_heartbeat_ms: now,
            ..ctx.replica.clone()
        };
        let _ = ctx.store.heartbeat(&beat).await;
        // One statement renews everything this replica holds, however many rollouts.
        let asked = tokio::time::Instant::now();
        let renewed = match ctx.store.renew_leases(&ctx.replica.id, now, ttl).await {
            Ok(renewed) => renewed,
            Err(e) => {
                tracing::debug!(error = %e, "Could not renew the leases; retrying.");
                continue;
            }
        };
        let forgotten: Vec<String> = {
            let at = tokio::time::Instant::now();
            let mut map = held.map();
            let mut unknown = std::collections::HashSet::new();
            for lease in &renewed {
                match map.get_mut(&lease.key) {
                    Some(h) if h.epoch == lease.epoch => h.renewed = at,
                    _ => {
                        unknown.insert(lease.key.clone());
                    }
                }
            }
            // Held in the store but not driven here for two renewals in a row (a release that
            // failed): let it go. One renewal is not enough: the controller records a lease it
            // just took right after taking it.
            let forgotten: Vec<String> = unknown.intersection(&unknown_before).cloned().collect();
            unknown_before = unknown;
            // Not renewed: taken over, unless taken (or renewed by the controller) after the
            // statement ran.
            let lost: Vec<String> = map
                .iter()
                .filter(|(k, h)| h.renewed < asked && !renewed.iter().any(|l| &l.key == *k))
                .map(|(k, _)| k.clone())
                .collect();
            for key in &lost {
                // Taken over meanwhile: the work in flight holds a stale epoch; the controller
                // takes the lease anew if it is free again.
                map.remove(key);
                tracing::warn!(lease = %key, "This replica's lease was taken over; it stops driving it.");
            }
            forgotten
        };
        for key in forgotten {
            let _ = ctx.store.release_lease(&key, &ctx.replica.id).await;
        }
    }
}

impl Controller {
    /// The fence of `key` when this replica holds its lease (taking it if it is free or has
    /// expired, renewing it when due); `None` while another replica holds it.
    pub(super) async fn lease(&mut self, key: &str) -> Result<Option<Fence>> {
        // Renewed by [`keep`]; taken again here only if that has not happened for a while.
        if let Some(held) = self.held.get(key)
            && held.renewed.elapsed() < 2 * RENEW_EVERY
        {
            return Ok(Some(Fence {
                key: key.to_string(),
                epoch: held.epoch,
            }));
        }
        let ctx = &self.ctx;
        let ttl = i64::try_from(LEASE_TTL.as_millis()).unwrap_or(i64::MAX);
        let got = ctx
            .store
            .acquire_lease(key, &ctx.replica.id, ctx.clock.now_ms(), ttl)
            .await?;
        match got {
            Some(epoch) => {
                let before = self.held.insert(
                    key,
                    Held {
                        epoch,
                        renewed: tokio::time::Instant::now(),
                    },
                );
                if before.is_none_or(|b| b.epoch != epoch) {
                    tracing::info!(lease = %key, epoch, "Took a lease: this replica drives it now.");
                }
                Ok(Some(Fence {
                    key: key.to_string(),
                    epoch,
                }))
            }
            None => {
                if self.held.remove(key).is_some() {
                    tracing::warn!(lease = %key, "Another replica holds this lease now; this one stops driving it.");
                }
                Ok(None)
            }
        }
    }

    /// As [`Controller::lease`], but a lease this replica does not hold yet is only taken
    /// while it holds less than its share ([`Share`]).
    pub(super) async fn lease_in_share(&mut self, key: &str) -> Result<Option<Fence>> {
        if self.share.live > 1
            && !self.held.contains_key(key)
            && self.held.len() >= self.share.most()
        {
            return Ok(None);
        }
        self.lease(key).await
    }

    /// Lets go of environment leases beyond this replica's share, one pass at a time, so work
    /// taken while it was alone (or while others were down) spreads again. Rollouts and
    /// recoveries under way keep their holder.
    pub(super) async fn shed_surplus(&mut self) {
        if self.share.live <= 1 {
            return;
        }
        let surplus = self.held.len().saturating_sub(self.share.most());
        let mut environments: Vec<String> = self
            .held
            .keys()
            .into_iter()
            .filter(|k| k.starts_with("env/"))
            .collect();
        environments.sort();
        for key in environments.into_iter().take(surplus) {
            self.held.remove(&key);
            tracing::info!(lease = %key, "Leaving an environment to another replica (more than this one's share).");
            if let Err(e) = self
                .ctx
                .store
                .release_lease(&key, &self.ctx.replica.id)
                .await
            {
                tracing::debug!(lease = %key, error = %e, "Could not release a lease; it expires by itself.");
            }
        }
    }

    /// Counts the live replicas (from their heartbeats, at `now`), for [`Share`].
    pub(super) async fn count_live_replicas(&mut self, now: backstop_core::Millis) {
        let live_within = i64::try_from(super::LIVE_WITHIN.as_millis()).unwrap_or(i64::MAX);
        if let Ok(replicas) = self.ctx.store.replicas().await {
            self.share.live = replicas
                .iter()
                .filter(|r| now - r.last_heartbeat_ms <= live_within)
                .count()
                .max(1);
        }
    }

    /// Forgets `key` after a write under it was fenced: another replica holds it.
    pub(super) fn lost(&mut self, key: &str, why: &str) {
        self.held.remove(key);
        tracing::warn!(lease = %key, reason = %why, "A write was refused: another replica took this lease over; this one stops driving it.");
    }

    /// Lets go of the leases whose work is over (those not in `current`), so they do not look
    /// held in `backstop cluster status`.
    pub(super) async fn release_done(&mut self, current: &[String]) {
        let done: Vec<String> = self
            .held
            .keys()
            .into_iter()
            .filter(|k| !current.contains(k))
            .collect();
        for key in done {
            self.held.remove(&key);
            if let Err(e) = self
                .ctx
                .store
                .release_lease(&key, &self.ctx.replica.id)
                .await
            {
                tracing::debug!(lease = %key, error = %e, "Could not release a finished lease; it expires by itself.");
            }
        }
    }

    /// Runs `work` for `key` when this replica holds its lease, fenced by it; `Ok(None)` when
    /// another replica holds it. A fenced write ends the work and drops the lease.
    pub(super) async fn with_lease<T>(
        &mut self,
        key: &str,
        work: impl AsyncFnOnce(&mut Self) -> Result<T>,
    ) -> Result<Option<T>> {
        let Some(fence) = self.lease(key).await? else {
            return Ok(None);
        };
        self.fenced(key, fence, work).await
    }

    /// [`Controller::with_lease`] for work this replica takes only within its share.
    pub(super) async fn with_lease_in_share<T>(
        &mut self,
        key: &str,
        work: impl AsyncFnOnce(&mut Self) -> Result<T>,
    ) -> Result<Option<T>> {
        let Some(fence) = self.lease_in_share(key).await? else {
            return Ok(None);
        };
        self.fenced(key, fence, work).await
    }

    async fn fenced<T>(
        &mut self,
        key: &str,
        fence: Fence,
        work: impl AsyncFnOnce(&mut Self) -> Result<T>,
    ) -> Result<Option<T>> {
        match fenced(fence, work(self)).await {
            Ok(done) => Ok(Some(done)),
            Err(e) => {
                if let Some(why) = fenced_write(&e) {
                    self.lost(key, &why);
                    return Ok(None);
                }
                Err(e)
            }
        }
    }
}

/// Why a write in `e`'s chain was fenced, if one was.
pub(super) fn fenced_write(e: &anyhow::Error) -> Option<String> {
    e.chain().find_map(|cause| match cause.downcast_ref() {
        Some(backstop_store::StoreError::Fenced(why)) => Some(why.clone()),
        _ => None,
    })
}
