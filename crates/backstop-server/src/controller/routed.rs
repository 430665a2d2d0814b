//! Commands that reach the replica holding the work, through the store. Any replica answers
//! the API; a command on work another replica holds ([`super::leases`]) is recorded in the
//! store for the holder, which runs it under its lease at its next pass (woken at once where
//! the store notifies, within a tick otherwise) and records the answer, which the receiving
//! replica returns. A holder that crashes before answering passes the command on with its
//! lease. The holder claims a command before it runs it; one not claimed in time is withdrawn
//! by its sender: a command runs at most once, and never after its caller was told it did not.

use std::sync::Arc;
use std::time::Duration;

use backstop_core::model::RoutedCommand;
use serde_json::json;

use super::Controller;
use super::commands::{Answer, Reply, Request};
use super::error::ControllerError;
use crate::Ctx;

/// How long a replica waits for the holder's answer before withdrawing the command: longer
/// than a lease's life, so a holder that crashed meanwhile is replaced and the new one answers.
pub const ANSWER_WITHIN: Duration = Duration::from_secs(30);

/// How often the receiving replica looks for the answer.
const POLL: Duration = Duration::from_millis(50);

/// Records `request` for the holder of `key` and sends its answer on `reply`.
pub(super) async fn pass_on(ctx: Arc<Ctx>, key: String, request: Request, reply: Reply) {
    reply.send(wait_for_holder(&ctx, &key, &request).await);
}

async fn wait_for_holder(
    ctx: &Ctx,
    key: &str,
    request: &Request,
) -> Result<Answer, ControllerError> {
    let id = uuid::Uuid::now_v7().to_string();
    let body = serde_json::to_value(request)
        .map_err(|e| ControllerError::Internal(format!("encoding the command: {e}")))?;
    ctx.store
        .route_command(&RoutedCommand {
            id: id.clone(),
            lease_key: key.to_string(),
            body,
            created_at_ms: ctx.clock.now_ms(),
            claimed_by: None,
            answered_at_ms: None,
            answer: None,
        })
        .await?;
    tracing::info!(command = %id, lease = %key, "Passed a command on to the replica holding its work.");
    let deadline = tokio::time::Instant::now() + ANSWER_WITHIN;
    loop {
        tokio::time::sleep(POLL).await;
        if let Some(answer) = ctx.store.command(&id).await?.answer {
            return decode(answer);
        }
        if tokio::time::Instant::now() >= deadline {
            let withdrawn = json!({"err": ControllerError::Internal(format!(
                "no replica holding {key} answered within {} s; the command was withdrawn and did not run",
                ANSWER_WITHIN.as_secs()
            ))});
            if ctx
                .store
                .withdraw_command(&id, ctx.clock.now_ms(), &withdrawn)
                .await?
            {
                return decode(withdrawn);
            }
            // Claimed: the holder is running it; its answer (or its crash) is awaited.
            if tokio::time::Instant::now() >= deadline + ANSWER_WITHIN {
                return Err(ControllerError::Internal(format!(
                    "the replica holding {key} took the command but has not answered within {} s; look at the work's state before asking again",
                    2 * ANSWER_WITHIN.as_secs()
                )));
            }
        }
    }
}

fn encode(answer: &Result<Answer, ControllerError>) -> serde_json::Value {
    match answer {
        Ok(a) => json!({ "ok": a }),
        Err(e) => json!({ "err": e }),
    }
}

fn decode(mut answer: serde_json::Value) -> Result<Answer, ControllerError> {
    let undecodable = |e: serde_json::Error| {
        ControllerError::Internal(format!("the holder's answer cannot be read: {e}"))
    };
    if let Some(err) = answer.get_mut("err").map(serde_json::Value::take) {
        return Err(serde_json::from_value(err).map_err(undecodable)?);
    }
    serde_json::from_value(answer["ok"].take()).map_err(undecodable)
}

impl Controller {
    /// Runs the commands other replicas passed on for the work this one holds, each under its
    /// lease, and records their answers.
    pub(super) async fn serve_passed_on(&mut self) -> anyhow::Result<()> {
        let ctx = self.ctx.clone();
        for command in ctx.store.commands_for(&ctx.replica.id).await? {
            let request: Request = match serde_json::from_value(command.body.clone()) {
                Ok(r) => r,
                Err(e) => {
                    let refused: Result<Answer, _> = Err(ControllerError::Internal(format!(
                        "the command cannot be read by this replica (another version?): {e}"
                    )));
                    ctx.store
                        .answer_command(&command.id, ctx.clock.now_ms(), &encode(&refused))
                        .await?;
                    continue;
                }
            };
            let id = command.id.clone();
            let key = command.lease_key.clone();
            self.with_lease(&key, async |me| {
                if !me.ctx.store.claim_command(&id, &me.ctx.replica.id).await? {
                    return Ok(()); // withdrawn by its sender meanwhile
                }
                let answer = me.answer(request).await;
                me.after(&key, &answer).await;
                match me
                    .ctx
                    .store
                    .answer_command(&id, me.ctx.clock.now_ms(), &encode(&answer))
                    .await
                {
                    Ok(()) => Ok(()),
                    Err(e) => Err(e.into()),
                }
            })
            .await?;
        }
        Ok(())
    }
}
