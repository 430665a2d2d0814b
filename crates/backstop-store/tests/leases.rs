//! Leases and fencing, on both backends: one holder at a time, the epoch grows when a lease
//! changes hands, and a write made under a lease that moved on changes nothing.

#[macro_use]
mod common;

use std::sync::Arc;

use backstop_core::audit::AuditEntry;
use backstop_core::model::{Recovery, RecoveryStatus, RoutedCommand};
use backstop_core::recovery::plan_canary_rollback;
use backstop_store::fence::{Fence, fenced};
use backstop_store::{StoreError, verify_audit};
use common::Backend;

const TTL: i64 = 1_000;

async fn one_holder_at_a_time_and_the_epoch_grows_when_the_lease_changes_hands(backend: Backend) {
    let s = backend.open().await;
    assert_eq!(
        s.acquire_lease("rollout:r1", "a", 0, TTL).await.unwrap(),
        Some(1)
    );
    // Held: b is refused until it expires; a renews at the same epoch.
    assert_eq!(
        s.acquire_lease("rollout:r1", "b", 500, TTL).await.unwrap(),
        None
    );
    assert_eq!(
        s.acquire_lease("rollout:r1", "a", 900, TTL).await.unwrap(),
        Some(1)
    );
    assert_eq!(
        s.acquire_lease("rollout:r1", "b", 1_800, TTL)
            .await
            .unwrap(),
        None
    );
    // a stopped renewing: b takes it with the next epoch; a cannot take it back before it expires.
    assert_eq!(
        s.acquire_lease("rollout:r1", "b", 1_900, TTL)
            .await
            .unwrap(),
        Some(2)
    );
    assert_eq!(
        s.acquire_lease("rollout:r1", "a", 2_000, TTL)
            .await
            .unwrap(),
        None
    );
    // Released: taken at once, and the epoch still grows (it never goes back).
    s.release_lease("rollout:r1", "b").await.unwrap();
    assert_eq!(
        s.acquire_lease("rollout:r1", "a", 2_100, TTL)
            .await
            .unwrap(),
        Some(3)
    );
    // Another key is another lease.
    assert_eq!(
        s.acquire_lease("rollout:r2", "b", 2_100, TTL)
            .await
            .unwrap(),
        Some(1)
    );
    let leases = s.leases().await.unwrap();
    let held: Vec<_> = leases
        .iter()
        .map(|l| (l.key.as_str(), l.holder.as_str(), l.epoch))
        .collect();
    assert_eq!(held, vec![("rollout:r1", "a", 3), ("rollout:r2", "b", 1)]);
    s.release_leases("a").await.unwrap();
    assert_eq!(
        s.acquire_lease("rollout:r1", "b", 2_200, TTL)
            .await
            .unwrap(),
        Some(4)
    );
    s.expire_others_leases("c").await.unwrap();
    assert_eq!(
        s.acquire_lease("rollout:r2", "c", 2_200, TTL)
            .await
            .unwrap(),
        Some(2)
    );
}

/// Many replicas racing for one free lease: exactly one wins.
async fn replicas_racing_for_a_lease_have_one_winner(backend: Backend) {
    let stores = [
        Arc::new(backend.open().await),
        Arc::new(backend.open().await),
    ];
    let mut tasks = Vec::new();
    for i in 0..8 {
        let s = stores[i % 2].clone();
        tasks.push(tokio::spawn(async move {
            s.acquire_lease("rollout:race", &format!("replica{i}"), 10, TTL)
                .await
                .unwrap()
        }));
    }
    let mut winners = 0;
    for t in tasks {
        if t.await.unwrap().is_some() {
            winners += 1;
        }
    }
    assert_eq!(winners, 1);
}

fn recovery() -> Recovery {
    Recovery {
        id: "rec1".into(),
        rollout_id: None,
        service: "web".into(),
        env: "prod".into(),
        actor: "controller".into(),
        trigger: "manual".into(),
        reason: "test".into(),
        status: RecoveryStatus::Running,
        created_at_ms: 1,
        finished_at_ms: None,
        steps: vec![],
        validation: None,
        postmortem: None,
    }
}

fn entry(target: &str) -> AuditEntry {
    AuditEntry {
        actor: "controller".into(),
        action: "recovery.step".into(),
        target: target.into(),
        trigger: "test".into(),
        evidence: serde_json::json!({}),
    }
}

/// A replica paused past its lease wakes up and tries to journal a step and audit it: both
/// are refused, nothing changed; the new holder's writes go through.
async fn a_stale_holder_changes_nothing(backend: Backend) {
    let s = backend.open().await;
    let plan = plan_canary_rollback("i1", "web@v1", Some("i2"), "web@v2", "judge");
    s.create_recovery(&recovery(), &plan).await.unwrap();
    let old = Fence {
        key: "recovery:rec1".into(),
        epoch: s
            .acquire_lease("recovery:rec1", "a", 0, TTL)
            .await
            .unwrap()
            .unwrap(),
    };
    fenced(old.clone(), s.step_started("rec1", 0, 5))
        .await
        .unwrap();
    // a is paused; b takes the lease over.
    let new = Fence {
        key: "recovery:rec1".into(),
        epoch: s
            .acquire_lease("recovery:rec1", "b", 2_000, TTL)
            .await
            .unwrap()
            .unwrap(),
    };
    assert_eq!(new.epoch, old.epoch + 1);
    let stale = [
        fenced(
            old.clone(),
            s.step_finished("rec1", 0, 7, true, &serde_json::json!({})),
        )
        .await,
        fenced(old.clone(), s.step_started("rec1", 1, 8)).await,
        fenced(
            old.clone(),
            s.finish_recovery("rec1", RecoveryStatus::Done, 9),
        )
        .await,
        fenced(old.clone(), async {
            s.append_audit(9, &entry("stale")).await.map(|_| ())
        })
        .await,
    ];
    for refused in stale {
        let Err(StoreError::Fenced(why)) = refused else {
            panic!("a stale write was not fenced: {refused:?}");
        };
        assert!(why.contains("recovery:rec1 is at epoch 2"), "{why}");
    }
    assert!(matches!(
        fenced(old.clone(), s.check_fence()).await,
        Err(StoreError::Fenced(_))
    ));
    fenced(new.clone(), s.check_fence()).await.unwrap();
    s.check_fence()
        .await
        .expect("nothing to check outside a fence");
    let rec = s.recovery("rec1").await.unwrap();
    assert_eq!(rec.status, RecoveryStatus::Running);
    assert_eq!(rec.steps[0].attempts, 1);
    assert!(rec.steps[0].finished_at_ms.is_none());
    assert!(rec.steps[1].started_at_ms.is_none());
    assert_eq!(s.audit(0, i64::MAX).await.unwrap().len(), 0);
    // The new holder resumes from the journal.
    fenced(new.clone(), async {
        s.step_started("rec1", 0, 10).await?;
        s.step_finished("rec1", 0, 11, true, &serde_json::json!({}))
            .await?;
        s.append_audit(11, &entry("new")).await.map(|_| ())
    })
    .await
    .unwrap();
    let rec = s.recovery("rec1").await.unwrap();
    assert_eq!(rec.steps[0].attempts, 2);
    assert!(rec.steps[0].finished_at_ms.is_some());
    assert_eq!(verify_audit(&*s).await.unwrap(), Ok(1));
    // A fence on a lease that does not exist is refused too.
    let none = Fence {
        key: "recovery:nope".into(),
        epoch: 1,
    };
    assert!(matches!(
        fenced(none, s.step_started("rec1", 1, 12)).await,
        Err(StoreError::Fenced(_))
    ));
}

/// A command for work another replica holds waits for that holder, which answers it once;
/// when the holder changes, the new one sees it.
async fn commands_reach_the_lease_holder_and_are_answered_once(backend: Backend) {
    let s = backend.open().await;
    s.acquire_lease("rollout:r1", "a", 0, TTL).await.unwrap();
    let command = RoutedCommand {
        id: "c1".into(),
        lease_key: "rollout:r1".into(),
        body: serde_json::json!({"promote": "r1"}),
        created_at_ms: 5,
        claimed_by: None,
        answered_at_ms: None,
        answer: None,
    };
    s.route_command(&command).await.unwrap();
    assert_eq!(s.commands_for("b").await.unwrap(), vec![]);
    assert_eq!(s.commands_for("a").await.unwrap(), vec![command.clone()]);
    // a crashed before answering: b took the lease, and the command with it.
    s.acquire_lease("rollout:r1", "b", 2_000, TTL)
        .await
        .unwrap();
    assert_eq!(s.commands_for("a").await.unwrap(), vec![]);
    assert_eq!(s.commands_for("b").await.unwrap(), vec![command]);
    assert!(s.claim_command("c1", "b").await.unwrap());
    assert!(!s.claim_command("c1", "c").await.unwrap(), "claimed once");
    assert_eq!(
        s.commands_for("b").await.unwrap(),
        vec![],
        "a claimed command is not run again"
    );
    let late = serde_json::json!({"err": "too late"});
    assert!(
        !s.withdraw_command("c1", 6, &late).await.unwrap(),
        "a claimed command runs to its end"
    );
    let answer = serde_json::json!({"ok": true});
    s.answer_command("c1", 7, &answer).await.unwrap();
    assert!(matches!(
        s.answer_command("c1", 8, &answer).await,
        Err(StoreError::Conflict(_))
    ));
    let answered = s.command("c1").await.unwrap();
    assert_eq!(
        (answered.answered_at_ms, answered.answer),
        (Some(7), Some(answer))
    );
}

/// One statement renews all a holder's leases, and only those it still holds and has not let go.
async fn a_holder_renews_all_its_leases_at_once(backend: Backend) {
    let s = backend.open().await;
    for key in ["rollout/r1", "rollout/r2", "env/shop/prod", "rollout/r3"] {
        assert_eq!(s.acquire_lease(key, "a", 0, TTL).await.unwrap(), Some(1));
    }
    s.release_lease("rollout/r3", "a").await.unwrap();
    // r2 lapses and b takes it over (epoch 2).
    assert_eq!(
        s.acquire_lease("rollout/r2", "b", TTL, TTL).await.unwrap(),
        Some(2)
    );
    let mut renewed = s.renew_leases("a", TTL, TTL).await.unwrap();
    renewed.sort_by(|x, y| x.key.cmp(&y.key));
    let got: Vec<(&str, i64, i64)> = renewed
        .iter()
        .map(|l| (l.key.as_str(), l.epoch, l.expires_at_ms))
        .collect();
    assert_eq!(
        got,
        [("env/shop/prod", 1, 2 * TTL), ("rollout/r1", 1, 2 * TTL)]
    );
    // Renewed, they are not free for b; the released one is.
    assert_eq!(
        s.acquire_lease("rollout/r1", "b", TTL + 500, TTL)
            .await
            .unwrap(),
        None
    );
    assert_eq!(
        s.acquire_lease("rollout/r3", "b", TTL + 500, TTL)
            .await
            .unwrap(),
        Some(2)
    );
    assert!(s.renew_leases("nobody", TTL, TTL).await.unwrap().is_empty());
}

on_both_backends!(
    a_holder_renews_all_its_leases_at_once,
    one_holder_at_a_time_and_the_epoch_grows_when_the_lease_changes_hands,
    replicas_racing_for_a_lease_have_one_winner,
    a_stale_holder_changes_nothing,
    commands_reach_the_lease_holder_and_are_answered_once,
);
