//! Background work one replica does at a time, outside the controller's reconcile loop
//! (runbook runs, post-recovery validations): each piece under its own lease, renewed while
//! the work runs and released after, every write inside its fence. A piece this daemon is
//! already doing is not started twice; one another replica holds is left to it.

use std::collections::HashSet;
use std::future::Future;
use std::sync::{Arc, Mutex, PoisonError};

use backstop_store::fence::{Fence, fenced};
use tokio_util::sync::CancellationToken;

use backstop_core::duration::millis;

use crate::Ctx;
use crate::controller::{LEASE_TTL, RENEW_EVERY};
use crate::error::ApiResult;

/// The pieces of one kind of work this daemon does now.
pub type Busy = Mutex<HashSet<String>>;

/// Starts `work` for `id` in the background, under lease `key`, unless this daemon is already
/// on it (`busy`) or another replica holds the lease. `work` gets a token cancelled when the
/// lease could not be renewed: it stops acting then (its writes would be refused anyway).
pub fn spawn<W, F>(ctx: &Arc<Ctx>, busy: fn(&Ctx) -> &Busy, id: &str, key: String, work: W)
where
    W: FnOnce(Arc<Ctx>, String, CancellationToken) -> F + Send + 'static,
    F: Future<Output = ApiResult<()>> + Send + 'static,
{
    if !busy(ctx)
        .lock()
        .unwrap_or_else(PoisonError::into_inner)
        .insert(id.to_owned())
    {
        return;
    }
    let (ctx, id) = (ctx.clone(), id.to_owned());
    tokio::spawn(async move {
        if let Err(e) = under_lease(&ctx, &key, |lost| work(ctx.clone(), id.clone(), lost)).await {
            tracing::warn!(lease = %key, error = %e, "Background work stopped; it is picked up again shortly.");
        }
        busy(&ctx)
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .remove(&id);
    });
}

/// Takes lease `key`, keeps it renewed, and runs `work` inside its fence; `Ok` without running
/// it when another replica holds the lease.
async fn under_lease<W, F>(ctx: &Arc<Ctx>, key: &str, work: W) -> ApiResult<()>
where
    W: FnOnce(CancellationToken) -> F,
    F: Future<Output = ApiResult<()>>,
{
    let ttl = millis(LEASE_TTL);
    let Some(epoch) = ctx
        .store
        .acquire_lease(key, &ctx.replica.id, ctx.clock.now_ms(), ttl)
        .await?
    else {
        return Ok(());
    };
    let lost = CancellationToken::new();
    let renew = {
        let (ctx, key, lost) = (ctx.clone(), key.to_owned(), lost.clone());
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(RENEW_EVERY).await;
                let got = ctx
                    .store
                    .acquire_lease(&key, &ctx.replica.id, ctx.clock.now_ms(), ttl)
                    .await;
                if !matches!(got, Ok(Some(e)) if e == epoch) {
                    lost.cancel();
                    return;
                }
            }
        })
    };
    let fence = Fence {
        key: key.to_owned(),
        epoch,
    };
    let done = fenced(fence, work(lost)).await;
    renew.abort();
    let _ = ctx.store.release_lease(key, &ctx.replica.id).await;
    done
}
