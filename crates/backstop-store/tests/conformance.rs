//! Store conformance: the behaviour every backend must show. Every check runs on SQLite and on
//! PostgreSQL (`sqlite::<check>`, `postgres::<check>`; see `common`).

#[macro_use]
mod common;

use std::collections::BTreeMap;

use backstop_core::audit::AuditEntry;
use backstop_core::breaker::TripScope;
use backstop_core::model::{
    Artifact, Phase, Recovery, RecoveryStatus, Release, ReleaseStatus, Rollout, StepStatus,
};
use backstop_core::recovery::plan_canary_rollback;
use backstop_store::{StoreError, verify_audit};
use common::Backend;

fn release(version: &str) -> Release {
    Release {
        id: Release::id_for("web", version),
        service: "web".into(),
        version: version.into(),
        artifact: Artifact::Command(format!("run {version}")),
        sha256: "ab".repeat(32),
        env: BTreeMap::new(),
        // Stored as the reference it is (the value is never known to the store).
        secrets: BTreeMap::from([(
            "DB_PASSWORD".to_string(),
            backstop_core::model::SecretSource::Env("PROD_DB_PASSWORD".into()),
        )]),
        status: ReleaseStatus::Ok,
        bad_reason: None,
        created_at_ms: 1,
        schema: None,
    }
}

fn rollout(id: &str, to: &str) -> Rollout {
    Rollout {
        id: id.into(),
        service: "web".into(),
        env: "prod".into(),
        from_release_id: None,
        to_release_id: Release::id_for("web", to),
        phase: Phase::Pending,
        step_index: 0,
        step_started_at_ms: None,
        canary_weight: 0.0,
        canary_instance_id: None,
        created_at_ms: 10,
        updated_at_ms: 10,
        actor: "test".into(),
        reason: None,
        verdict: None,
        severity: None,
        escalation_deadline_ms: None,
        acknowledged_by: None,
    }
}

/// An analysis interval at `t` seconds with nothing else in it.
fn interval(t: f64) -> backstop_judge::Interval {
    backstop_judge::Interval {
        t,
        ..Default::default()
    }
}

async fn releases_are_unique_per_service_and_version(backend: Backend) {
    let s = backend.open().await;
    s.create_release(&release("v1")).await.unwrap();
    assert!(matches!(
        s.create_release(&release("v1")).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.release("web@v9").await,
        Err(StoreError::NotFound(_))
    ));
    s.mark_release_bad("web@v1", "judge").await.unwrap();
    assert_eq!(
        s.release("web@v1").await.unwrap().status,
        ReleaseStatus::Bad
    );
}

async fn only_one_active_rollout_per_environment(backend: Backend) {
    let s = backend.open().await;
    s.create_release(&release("v1")).await.unwrap();
    s.create_release(&release("v2")).await.unwrap();
    s.create_rollout(&rollout("r1", "v1")).await.unwrap();
    let err = s.create_rollout(&rollout("r2", "v2")).await.unwrap_err();
    assert!(
        matches!(err, StoreError::Conflict(ref m) if m.contains("already has a rollout")),
        "{err}"
    );
    let mut r1 = s.rollout("r1").await.unwrap();
    r1.phase = Phase::Promoted;
    s.update_rollout(&r1).await.unwrap();
    s.create_rollout(&rollout("r2", "v2")).await.unwrap();
    assert_eq!(s.active_rollouts().await.unwrap().len(), 1);
}

async fn state_survives_reopening(backend: Backend) {
    let s = backend.open().await;
    s.create_release(&release("v1")).await.unwrap();
    let mut r = rollout("r1", "v1");
    r.verdict = Some(serde_json::json!({"verdict": "fail"}));
    s.create_rollout(&r).await.unwrap();
    s.append_interval("r1", &interval(5.0)).await.unwrap();
    assert_eq!(s.append_interval("r1", &interval(10.0)).await.unwrap(), 2);
    s.close().await;
    drop(s);
    let s = backend.reopen().await;
    assert_eq!(s.rollout("r1").await.unwrap(), r);
    let ts: Vec<f64> = s
        .intervals("r1")
        .await
        .unwrap()
        .iter()
        .map(|i| i.t)
        .collect();
    assert_eq!(ts, [5.0, 10.0]);
}

async fn recovery_journal_records_intent_attempts_and_outcome(backend: Backend) {
    let s = backend.open().await;
    let plan = plan_canary_rollback("i1", "web@v1", Some("i2"), "web@v2", "judge");
    let rec = Recovery {
        id: "rec1".into(),
        rollout_id: Some("r1".into()),
        service: "web".into(),
        env: "prod".into(),
        actor: "controller".into(),
        trigger: "judge".into(),
        reason: "errors".into(),
        status: RecoveryStatus::Running,
        created_at_ms: 1,
        finished_at_ms: None,
        steps: vec![],
        validation: None,
        postmortem: None,
    };
    s.create_recovery(&rec, &plan).await.unwrap();
    let mut second = rec.clone();
    second.id = "rec2".into();
    assert!(matches!(
        s.create_recovery(&second, &plan).await,
        Err(StoreError::Conflict(_))
    ));
    s.step_started("rec1", 0, 5).await.unwrap();
    s.step_started("rec1", 0, 6).await.unwrap();
    s.step_finished("rec1", 0, 7, true, &serde_json::json!({"ok": true}))
        .await
        .unwrap();
    let got = s.recovery("rec1").await.unwrap();
    assert_eq!(got.steps.len(), 4);
    assert_eq!(got.steps[0].status, StepStatus::Done);
    assert_eq!(got.steps[0].attempts, 2);
    assert_eq!(got.steps[0].started_at_ms, Some(5));
    assert_eq!(got.steps[1].status, StepStatus::Pending);
    assert_eq!(got.steps[0].idempotency_key, "rec1/0/wait_healthy");
    assert_eq!(s.unfinished_recoveries().await.unwrap().len(), 1);
    s.finish_recovery("rec1", RecoveryStatus::Done, 9)
        .await
        .unwrap();
    assert!(s.unfinished_recoveries().await.unwrap().is_empty());
}

async fn audit_chain_appends_and_verifies(backend: Backend) {
    let s = backend.open().await;
    for i in 0..5 {
        s.append_audit(
            100 + i,
            &AuditEntry {
                actor: "controller".into(),
                action: "test".into(),
                target: format!("t{i}"),
                trigger: "unit".into(),
                evidence: serde_json::json!({"i": i, "nested": {"z": 1, "a": 2}}),
            },
        )
        .await
        .unwrap();
    }
    assert_eq!(verify_audit(&*s).await.unwrap(), Ok(5));
    s.close().await;

    backend
        .tamper("UPDATE audit SET target = 'forged' WHERE seq = 3")
        .await;
    let s = backend.reopen().await;
    let broken = verify_audit(&*s).await.unwrap().unwrap_err();
    assert_eq!(broken.seq, 3);
}

async fn truncating_the_audit_tail_is_detected(backend: Backend) {
    let s = backend.open().await;
    for i in 0..3 {
        let entry = AuditEntry {
            actor: "a".into(),
            action: "b".into(),
            target: "c".into(),
            trigger: "d".into(),
            evidence: serde_json::json!(i),
        };
        s.append_audit(i, &entry).await.unwrap();
    }
    s.close().await;
    backend.tamper("DELETE FROM audit WHERE seq = 3").await;
    let s = backend.reopen().await;
    assert!(verify_audit(&*s).await.unwrap().is_err());
}

async fn breaker_trips_open_once_per_scope_and_reset(backend: Backend) {
    use backstop_core::model::BreakerTrip;
    let s = backend.open().await;
    let prod = TripScope::Env("prod".into());
    let trip = |id: &str| BreakerTrip {
        id: id.into(),
        scope: prod.clone(),
        tripped_at_ms: 5,
        failures: serde_json::json!(["r1", "r2"]),
        reset_at_ms: None,
        reset_by: None,
        reset_reason: None,
    };
    s.create_trip(&trip("t1")).await.unwrap();
    assert!(matches!(
        s.create_trip(&trip("t2")).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.open_trips().await.unwrap(), vec![trip("t1")]);
    let closed = s
        .reset_trip(&prod, "user:alice", "fixed the database", 9)
        .await
        .unwrap();
    assert_eq!(closed.reset_by.as_deref(), Some("user:alice"));
    assert!(s.open_trips().await.unwrap().is_empty());
    assert!(matches!(
        s.reset_trip(&prod, "x", "y", 10).await,
        Err(StoreError::NotFound(_))
    ));
    s.create_trip(&trip("t3")).await.unwrap();
}

async fn failures_count_verdicts_and_deploys_but_not_manual_aborts(backend: Backend) {
    use backstop_core::model::Event;
    let s = backend.open().await;
    s.create_release(&release("v1")).await.unwrap();
    let mut r = rollout("r1", "v1");
    r.severity = Some(backstop_core::severity::Severity::Major);
    r.escalation_deadline_ms = Some(99);
    s.create_rollout(&r).await.unwrap();
    s.update_rollout(&r).await.unwrap();
    assert_eq!(
        s.rollout("r1").await.unwrap(),
        r,
        "severity and deadline round-trip"
    );
    for (at, kind, trigger) in [
        (10, "judge.fail", "judge"),
        (20, "rollout.failed", "deploy"),
        (30, "rollout.failed", "user:bob"),
    ] {
        let detail = serde_json::json!({"trigger": trigger});
        s.add_event(&Event {
            at_ms: at,
            rollout_id: "r1".into(),
            kind: kind.parse().unwrap(),
            detail,
        })
        .await
        .unwrap();
    }
    assert_eq!(
        s.failures_since(0).await.unwrap(),
        vec![(10, "prod".to_string()), (20, "prod".to_string())]
    );
    assert_eq!(s.failures_since(15).await.unwrap().len(), 1);
}

async fn concurrent_writers_never_see_database_busy_and_the_chain_stays_whole(backend: Backend) {
    use backstop_core::model::Event;
    let s = backend.open().await;
    let s = std::sync::Arc::new(s);
    let mut tasks = Vec::new();
    for t in 0..8 {
        let s = s.clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..25 {
                if t % 2 == 0 {
                    let entry = AuditEntry {
                        actor: format!("t{t}"),
                        action: "stress".into(),
                        target: format!("{i}"),
                        trigger: "test".into(),
                        evidence: serde_json::json!({"i": i}),
                    };
                    s.append_audit(i, &entry).await.unwrap();
                } else {
                    let e = Event {
                        at_ms: i,
                        rollout_id: format!("r{t}"),
                        kind: backstop_core::event::EventKind::StepAdvanced,
                        detail: serde_json::json!({}),
                    };
                    s.add_event(&e).await.unwrap();
                }
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(verify_audit(&**s).await.unwrap(), Ok(100));
}

async fn a_release_keeps_its_declared_schema_range(backend: Backend) {
    let s = backend.open().await;
    let mut r = release("v7");
    r.schema = Some(backstop_core::schema::SchemaRange::parse("0003..0005").unwrap());
    s.create_release(&r).await.unwrap();
    assert_eq!(s.release(&r.id).await.unwrap(), r);
    s.create_release(&release("v8")).await.unwrap();
    assert_eq!(s.release("web@v8").await.unwrap().schema, None);
}

async fn manual_freezes_list_and_end_once(backend: Backend) {
    use backstop_core::model::Freeze;
    let s = backend.open().await;
    let freeze = |id: &str, at: i64| Freeze {
        id: id.into(),
        service: None,
        env: Some("prod".into()),
        reason: "incident review".into(),
        actor: "user:alice".into(),
        started_at_ms: at,
        until_ms: Some(at + 100),
        ended_at_ms: None,
        ended_by: None,
        end_reason: None,
    };
    s.create_freeze(&freeze("f2", 20)).await.unwrap();
    s.create_freeze(&freeze("f1", 10)).await.unwrap();
    assert!(matches!(
        s.create_freeze(&freeze("f1", 10)).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.freezes(false).await.unwrap(),
        vec![freeze("f1", 10), freeze("f2", 20)]
    );
    let ended = s
        .end_freeze("f1", "user:bob", "review done", 50)
        .await
        .unwrap();
    assert_eq!(ended.ended_at_ms, Some(50));
    assert_eq!(ended.ended_by.as_deref(), Some("user:bob"));
    assert!(!ended.in_effect(60));
    assert_eq!(s.freezes(false).await.unwrap(), vec![freeze("f2", 20)]);
    assert_eq!(s.freezes(true).await.unwrap().len(), 2);
    assert!(matches!(
        s.end_freeze("f1", "x", "y", 60).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.end_freeze("nope", "x", "y", 60).await,
        Err(StoreError::NotFound(_))
    ));
    let f2 = freeze("f2", 20);
    assert!(f2.in_effect(20) && f2.in_effect(119) && !f2.in_effect(120) && !f2.in_effect(19));
    assert!(f2.covers("checkout", "prod") && !f2.covers("checkout", "staging"));
}

async fn config_snapshots_are_versioned_and_an_unchanged_capture_reuses_the_latest(
    backend: Backend,
) {
    use backstop_core::snapshot::{ConfigSnapshot, RolloutSafeguards};
    let s = backend.open().await;
    let snap = |manifest: &str| ConfigSnapshot {
        service: "svc".into(),
        env: "prod".into(),
        version: 0,
        manifest: manifest.into(),
        created_at_ms: 1,
        actor: "test".into(),
        reason: "on demand".into(),
        rollout_id: None,
    };
    let (a, new) = s.record_config_snapshot(&snap("aaa")).await.unwrap();
    assert_eq!((a.version, new), (1, true));
    let (same, new) = s.record_config_snapshot(&snap("aaa")).await.unwrap();
    assert_eq!((same.version, new), (1, false));
    let (b, _) = s.record_config_snapshot(&snap("bbb")).await.unwrap();
    assert_eq!(b.version, 2);
    // Back to the first content: a new version (history stays linear), not version 1 again.
    let (c, new) = s.record_config_snapshot(&snap("aaa")).await.unwrap();
    assert_eq!((c.version, new), (3, true));
    let list = s.config_snapshots("svc", "prod").await.unwrap();
    assert_eq!(
        list.iter().map(|x| x.version).collect::<Vec<_>>(),
        [3, 2, 1]
    );
    assert_eq!(
        s.config_snapshot("svc", "prod", 2).await.unwrap().manifest,
        "bbb"
    );
    assert!(matches!(
        s.config_snapshot("svc", "prod", 9).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(
        s.config_snapshots("svc", "staging")
            .await
            .unwrap()
            .is_empty()
    );

    s.create_release(&release("v1")).await.unwrap();
    s.create_rollout(&rollout("r-1", "v1")).await.unwrap();
    assert_eq!(s.rollout_safeguards("r-1").await.unwrap(), None);
    let g = RolloutSafeguards {
        rollout_id: "r-1".into(),
        config_snapshot: Some(2),
        baseline: None,
        captured_at_ms: 5,
    };
    s.put_rollout_safeguards(&g).await.unwrap();
    assert!(matches!(
        s.put_rollout_safeguards(&g).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.rollout_safeguards("r-1").await.unwrap(), Some(g));
}

/// Two stores on one database are two daemons' processes (two pools, two sets of connections):
/// their appends still make one chain, each record linked to the one before it.
async fn two_stores_appending_at_once_keep_one_verifiable_chain(backend: Backend) {
    let stores = [
        std::sync::Arc::new(backend.open().await),
        std::sync::Arc::new(backend.open().await),
    ];
    let mut tasks = Vec::new();
    for t in 0..6 {
        let s = stores[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..20 {
                let entry = AuditEntry {
                    actor: format!("store{}-task{t}", t % 2),
                    action: "stress".into(),
                    target: format!("{i}"),
                    trigger: "test".into(),
                    evidence: serde_json::json!({"i": i, "t": t}),
                };
                s.append_audit(i, &entry).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(verify_audit(&**stores[0]).await.unwrap(), Ok(120));
    assert_eq!(verify_audit(&**stores[1]).await.unwrap(), Ok(120));
    let records = stores[1].audit(0, i64::MAX).await.unwrap();
    assert_eq!(
        records.iter().map(|r| r.seq).collect::<Vec<_>>(),
        (1..=120).collect::<Vec<_>>()
    );
}

/// `audit verify` runs while the daemon keeps appending: a record landing between reading the
/// records and reading the head is growth, never "records were removed from the end".
async fn verifying_while_another_store_appends_never_reports_a_break(backend: Backend) {
    let reader = backend.open().await;
    let writer = std::sync::Arc::new(backend.open().await);
    let appending = {
        let writer = writer.clone();
        tokio::spawn(async move {
            for i in 0..150 {
                let entry = AuditEntry {
                    actor: "daemon".into(),
                    action: "append".into(),
                    target: format!("{i}"),
                    trigger: "test".into(),
                    evidence: serde_json::json!({"i": i}),
                };
                writer.append_audit(i, &entry).await.unwrap();
            }
        })
    };
    let mut checks = 0;
    while !appending.is_finished() {
        let verified = verify_audit(&*reader).await.unwrap();
        assert!(verified.is_ok(), "verify during appends: {verified:?}");
        checks += 1;
    }
    appending.await.unwrap();
    assert!(checks > 0);
    assert_eq!(verify_audit(&*reader).await.unwrap(), Ok(150));
}

/// Tokens are found by their hash, listed oldest first, revoked once, and a name is never
/// handed out twice (not even after revocation: the audit names tokens by name).
async fn tokens_are_found_by_hash_revoked_once_and_names_never_reused(backend: Backend) {
    use backstop_core::access::{Role, TokenRecord};
    let s = backend.open().await;
    let token = |name: &str, at: i64| TokenRecord {
        name: name.into(),
        role: Role::Releaser,
        env: Some("prod".into()),
        hash: format!("hash-of-{name}"),
        created_at_ms: at,
        created_by: "token:admin".into(),
        expires_at_ms: Some(at + 1000),
        revoked_at_ms: None,
        revoked_by: None,
    };
    s.create_token(&token("alice", 1)).await.unwrap();
    s.create_token(&token("bob", 2)).await.unwrap();
    assert_eq!(
        s.token_by_hash("hash-of-alice").await.unwrap(),
        Some(token("alice", 1))
    );
    assert_eq!(s.token_by_hash("nope").await.unwrap(), None);
    let revoked = s.revoke_token("alice", "token:admin", 5).await.unwrap();
    assert_eq!(revoked.revoked_at_ms, Some(5));
    assert_eq!(revoked.revoked_by.as_deref(), Some("token:admin"));
    assert!(matches!(
        s.revoke_token("alice", "token:admin", 6).await,
        Err(StoreError::Conflict(_))
    ));
    assert!(matches!(
        s.revoke_token("carol", "token:admin", 6).await,
        Err(StoreError::NotFound(_))
    ));
    let again = TokenRecord {
        hash: "another".into(),
        ..token("alice", 9)
    };
    let again = s.create_token(&again).await;
    assert!(matches!(again, Err(StoreError::Conflict(m)) if m.contains("alice")));
    let names: Vec<String> = s
        .tokens()
        .await
        .unwrap()
        .into_iter()
        .map(|t| t.name)
        .collect();
    assert_eq!(names, ["alice", "bob"]);
}

/// With a key, every head is signed: the chain verifies with that key only. A chain kept
/// without a key verifies as not yet signed until the daemon's `audit.keyed` record; a break
/// written into the chain stays in every later head.
async fn heads_are_signed_with_the_key_and_a_recorded_break_stays(backend: Backend) {
    use backstop_core::audit::{AuditKey, BROKEN_ACTION, KEYED_ACTION};
    use backstop_store::{Expect, Signature, verify_audit_with};
    let s = backend.open().await;
    let key = AuditKey::from_bytes(&[3; 32]).unwrap();
    let other = AuditKey::from_bytes(&[4; 32]).unwrap();
    let entry = |action: &str| AuditEntry {
        actor: "controller".into(),
        action: action.into(),
        target: "t".into(),
        trigger: "test".into(),
        evidence: serde_json::json!({"reason": "test break"}),
    };
    let with = |key| Expect {
        key,
        used: true,
        may_be_unsigned: true,
        checkpoint: None,
    };
    s.append_audit(1, &entry("a")).await.unwrap();
    s.append_audit(2, &entry("b")).await.unwrap();
    let v = verify_audit_with(&*s, &with(Some(&key)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(v.signature, Signature::NotYetSigned);
    s.set_audit_key(key.clone());
    s.append_audit(3, &entry(KEYED_ACTION)).await.unwrap();
    s.append_audit(4, &entry("c")).await.unwrap();
    let v = verify_audit_with(&*s, &with(Some(&key)))
        .await
        .unwrap()
        .unwrap();
    assert_eq!((v.records, v.signature), (4, Signature::Valid));
    let wrong = verify_audit_with(&*s, &with(Some(&other))).await.unwrap();
    assert!(
        wrong
            .unwrap_err()
            .reason
            .contains("signature does not match")
    );
    let head = s.audit_head().await.unwrap().unwrap();
    assert_eq!(head.signed_by(&key), Some(true));

    s.append_audit(5, &entry(BROKEN_ACTION)).await.unwrap();
    s.append_audit(6, &entry("d")).await.unwrap();
    let err = verify_audit_with(&*s, &with(Some(&key)))
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.reason.contains("test break"), "{err:?}");
    assert!(s.audit_head().await.unwrap().unwrap().broken.is_some());
}

/// One decision wins: a request moves from the status it is in, once; the list shows what
/// waits unless asked for all.
async fn an_approval_is_decided_once_and_open_ones_are_listed(backend: Backend) {
    use backstop_core::approval::{Approval, ApprovalKind, ApprovalStatus};
    let s = backend.open().await;
    let request = |id: &str, status| Approval {
        id: id.into(),
        kind: ApprovalKind::RolloutStart,
        service: "web".into(),
        env: "prod".into(),
        request: serde_json::json!({"service": "web"}),
        requester: "token:alice".into(),
        reason: "urgent".into(),
        created_at_ms: 1,
        expires_at_ms: Some(100),
        status,
        decided_by: None,
        decided_at_ms: None,
        note: None,
        result: None,
    };
    s.create_approval(&request("a1", ApprovalStatus::Pending))
        .await
        .unwrap();
    s.create_approval(&request("a2", ApprovalStatus::ToReview))
        .await
        .unwrap();
    assert_eq!(s.approvals(false).await.unwrap().len(), 2);
    let won = s
        .decide_approval(
            "a1",
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            "token:bob",
            5,
            Some("ok"),
            None,
        )
        .await
        .unwrap();
    assert_eq!(
        (won.status, won.decided_by.as_deref()),
        (ApprovalStatus::Approved, Some("token:bob"))
    );
    let lost = s
        .decide_approval(
            "a1",
            ApprovalStatus::Pending,
            ApprovalStatus::Approved,
            "token:carol",
            6,
            None,
            None,
        )
        .await;
    assert!(matches!(lost, Err(StoreError::Conflict(m)) if m.contains("approved")));
    let result = serde_json::json!({"rollout": "r-1"});
    let done = s
        .decide_approval(
            "a1",
            ApprovalStatus::Approved,
            ApprovalStatus::Approved,
            "token:bob",
            7,
            None,
            Some(&result),
        )
        .await
        .unwrap();
    assert_eq!(
        (done.note.as_deref(), done.result),
        (Some("ok"), Some(result))
    );
    assert_eq!(s.approvals(false).await.unwrap().len(), 1);
    assert_eq!(s.approvals(true).await.unwrap().len(), 2);
    assert!(matches!(
        s.approval("nope").await,
        Err(StoreError::NotFound(_))
    ));
    assert_eq!(
        request("x", ApprovalStatus::Pending).status_at(100),
        ApprovalStatus::Expired
    );
}

/// Numbered appends (intervals, snapshot versions) from two stores at once take turns: no
/// number is handed out twice, none is skipped, and neither writer sees a conflict.
async fn two_stores_numbering_at_once_never_collide(backend: Backend) {
    use backstop_core::snapshot::ConfigSnapshot;
    let setup = backend.open().await;
    setup.create_release(&release("v1")).await.unwrap();
    setup.create_rollout(&rollout("r1", "v1")).await.unwrap();
    let stores = [
        std::sync::Arc::new(backend.open().await),
        std::sync::Arc::new(backend.open().await),
    ];
    let mut tasks = Vec::new();
    for t in 0..4 {
        let s = stores[t % 2].clone();
        tasks.push(tokio::spawn(async move {
            for i in 0..10 {
                s.append_interval("r1", &interval(f64::from(i)))
                    .await
                    .unwrap();
                let snap = ConfigSnapshot {
                    service: "web".into(),
                    env: "prod".into(),
                    version: 0,
                    manifest: format!("m{t}-{i}"),
                    created_at_ms: 1,
                    actor: "test".into(),
                    reason: "concurrent".into(),
                    rollout_id: None,
                };
                s.record_config_snapshot(&snap).await.unwrap();
            }
        }));
    }
    for t in tasks {
        t.await.unwrap();
    }
    assert_eq!(setup.intervals("r1").await.unwrap().len(), 40);
    let versions: Vec<i64> = setup
        .config_snapshots("web", "prod")
        .await
        .unwrap()
        .iter()
        .map(|s| s.version)
        .collect();
    assert_eq!(versions, (1..=40).rev().collect::<Vec<_>>());
}

async fn replicas_beat_and_are_listed_most_recent_first(backend: Backend) {
    use backstop_core::model::ReplicaRecord;
    let store = backend.open().await;
    let replica = |id: &str, at: i64| ReplicaRecord {
        id: id.into(),
        address: format!("http://127.0.0.1:7300/{id}"),
        host: "h".into(),
        pid: 42,
        started_at_ms: 1,
        last_heartbeat_ms: at,
    };
    store.heartbeat(&replica("a", 10)).await.unwrap();
    store.heartbeat(&replica("b", 20)).await.unwrap();
    store.heartbeat(&replica("a", 30)).await.unwrap();
    let listed = store.replicas().await.unwrap();
    assert_eq!(listed, vec![replica("a", 30), replica("b", 20)]);
}

/// A runbook run changes by compare-and-set: a writer holding an old version is refused and
/// changes nothing; runs over are listed only when asked, and by incident.
async fn a_runbook_run_changes_only_from_the_version_read(backend: Backend) {
    use backstop_core::runbook_run::{RunStatus, RunbookRun};
    let s = backend.open().await;
    let new = |id: &str, incident: Option<&str>| {
        RunbookRun::start(
            id.into(),
            ("restore", 1, "0123456789abcdef"),
            "releaser",
            "prod",
            None,
            incident.map(str::to_owned),
            std::collections::BTreeMap::new(),
            vec![],
            "token:alice",
            1,
        )
    };
    s.create_runbook_run(&new("rr1", Some("inc-1")))
        .await
        .unwrap();
    s.create_runbook_run(&new("rr2", None)).await.unwrap();
    let (mut run, v1) = s.runbook_run("rr1").await.unwrap();
    run.advance(2);
    assert_eq!(run.status, RunStatus::Succeeded);
    let v2 = s.update_runbook_run(&run, v1).await.unwrap();
    assert_eq!(v2, v1 + 1);
    let mut stale = run.clone();
    stale.abort("token:bob", "late", 3).unwrap_err();
    stale.status = RunStatus::Aborted;
    assert!(matches!(
        s.update_runbook_run(&stale, v1).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.runbook_run("rr1").await.unwrap().0.status,
        RunStatus::Succeeded
    );
    let open: Vec<String> = s
        .runbook_runs(false)
        .await
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.id)
        .collect();
    assert_eq!(open, ["rr2"]);
    assert_eq!(s.runbook_runs(true).await.unwrap().len(), 2);
    let of_incident = s.incident_runbook_runs("inc-1").await.unwrap();
    assert_eq!(of_incident.len(), 1);
    assert!(matches!(
        s.runbook_run("nope").await,
        Err(StoreError::NotFound(_))
    ));
}

/// A release group's name is taken once; a run changes only from the version read and leaves
/// the list of moving runs when it ends.
async fn a_group_run_changes_only_from_the_version_read(backend: Backend) {
    use backstop_core::group::{self, GroupMember, GroupPhase, GroupRun, ReleaseGroup};
    let s = backend.open().await;
    let g = ReleaseGroup {
        name: "checkout".into(),
        members: ["api", "web"]
            .iter()
            .map(|svc| GroupMember {
                service: (*svc).into(),
                release_id: format!("{svc}@v2"),
            })
            .collect(),
        created_by: "token:ana".into(),
        created_at_ms: 1,
    };
    s.create_release_group(&g).await.unwrap();
    assert!(matches!(
        s.create_release_group(&g).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.release_group("checkout").await.unwrap(), g);
    assert_eq!(s.release_groups().await.unwrap().len(), 1);
    assert!(matches!(
        s.release_group("nope").await,
        Err(StoreError::NotFound(_))
    ));
    let run = GroupRun::new("grp-1".into(), &g, "prod", "token:ana", None, 2);
    s.create_group_run(&run).await.unwrap();
    s.create_group_run(&GroupRun::new(
        "grp-2".into(),
        &g,
        "staging",
        "token:ana",
        None,
        3,
    ))
    .await
    .unwrap();
    let (mut read, v1) = s.group_run("grp-1").await.unwrap();
    assert_eq!(read, run);
    group::fail(&mut read, 0, "its canary failed".into(), 4);
    let v2 = s.update_group_run(&read, v1).await.unwrap();
    assert_eq!(v2, v1 + 1);
    assert!(matches!(
        s.update_group_run(&run, v1).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(
        s.group_run("grp-1").await.unwrap().0.phase,
        GroupPhase::Recovering
    );
    group::halt(&mut read, 0, "refused".into(), vec![], 5);
    s.update_group_run(&read, v2).await.unwrap();
    let moving: Vec<String> = s
        .group_runs(false, None)
        .await
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.id)
        .collect();
    assert_eq!(moving, ["grp-2"]);
    assert_eq!(s.group_runs(true, Some("checkout")).await.unwrap().len(), 2);
    assert!(s.group_runs(true, Some("other")).await.unwrap().is_empty());
}

/// A ship is changed only from the version read, and listed while it moves.
async fn a_ship_changes_only_from_the_version_read(backend: Backend) {
    use backstop_core::ship::{self, ShipPhase, WavePlan};
    let s = backend.open().await;
    let waves = [WavePlan {
        envs: vec!["staging".into()],
        bake_ms: Some(60_000),
        roll_back_with_later: false,
    }];
    let new = |id: &str, service: &str| {
        ship::Ship::new(
            id.into(),
            service,
            &format!("{service}@v2"),
            "v2",
            &waves,
            "token:ana",
            None,
            1,
        )
    };
    let first = new("shp-1", "shop");
    s.create_ship(&first).await.unwrap();
    s.create_ship(&new("shp-2", "billing")).await.unwrap();
    // One moving ship per service.
    assert!(matches!(
        s.create_ship(&new("shp-3", "shop")).await,
        Err(StoreError::Conflict(_))
    ));
    let (mut read, v1) = s.ship("shp-1").await.unwrap();
    assert_eq!(read, first);
    ship::refuse(&mut read, 0, "release: marked bad", 2);
    let v2 = s.update_ship(&read, v1).await.unwrap();
    assert_eq!(v2, v1 + 1);
    assert!(matches!(
        s.update_ship(&first, v1).await,
        Err(StoreError::Conflict(_))
    ));
    assert_eq!(s.ship("shp-1").await.unwrap().0.phase, ShipPhase::Stopped);
    let moving: Vec<String> = s
        .ships(false, None)
        .await
        .unwrap()
        .into_iter()
        .map(|(r, _)| r.id)
        .collect();
    assert_eq!(moving, ["shp-2"]);
    assert_eq!(s.ships(true, Some("shop")).await.unwrap().len(), 1);
    // Once it ended, the service may ship again.
    s.create_ship(&new("shp-4", "shop")).await.unwrap();
    assert!(matches!(s.ship("nope").await, Err(StoreError::NotFound(_))));
}

/// A heartbeat keeps its last ping and counts them.
async fn a_heartbeat_keeps_its_last_ping_and_counts(backend: Backend) {
    let s = backend.open().await;
    let first = s.beat("export", "token:cron", 10).await.unwrap();
    assert_eq!((first.count, first.last_at_ms), (1, 10));
    let second = s.beat("export", "token:cron2", 20).await.unwrap();
    assert_eq!(
        (second.count, second.last_at_ms, second.last_by.as_str()),
        (2, 20, "token:cron2")
    );
    s.beat("backup", "token:cron", 5).await.unwrap();
    let all: Vec<String> = s
        .heartbeats()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.name)
        .collect();
    assert_eq!(all, ["backup", "export"]);
}

/// A flag is created once per environment and changes only from the version read.
async fn a_flag_changes_only_from_the_version_read(backend: Backend) {
    use backstop_core::flag::FlagState;
    let s = backend.open().await;
    assert!(s.flag("new-checkout", "prod").await.unwrap().is_none());
    let mut f = FlagState::new("new-checkout", "prod", "shop");
    f.set(5, "ana", "try it", 10);
    assert_eq!(s.put_flag(&f, None).await.unwrap(), 1);
    // A second create of the same flag and environment is a conflict, not an overwrite.
    assert!(matches!(
        s.put_flag(&f, None).await,
        Err(StoreError::Conflict(_))
    ));
    s.put_flag(&FlagState::new("new-checkout", "staging", "shop"), None)
        .await
        .unwrap();
    let (mut read, v) = s.flag("new-checkout", "prod").await.unwrap().unwrap();
    assert_eq!((read.percentage, v), (5, 1));
    read.set(25, "ana", "stage 2", 20);
    assert_eq!(s.put_flag(&read, Some(1)).await.unwrap(), 2);
    assert_eq!(
        s.flag_percentage("new-checkout", "prod").await.unwrap(),
        Some(25)
    );
    assert_eq!(s.flag_percentage("nope", "prod").await.unwrap(), None);
    assert!(matches!(
        s.put_flag(&read, Some(1)).await,
        Err(StoreError::Conflict(_))
    ));
    let all: Vec<(String, String, u8)> = s
        .flags()
        .await
        .unwrap()
        .into_iter()
        .map(|(f, _)| (f.key, f.env, f.percentage))
        .collect();
    assert_eq!(
        all,
        [
            ("new-checkout".into(), "prod".into(), 25),
            ("new-checkout".into(), "staging".into(), 0)
        ]
    );
}

/// A rollout keeps one label, the latest; labels are listed by service.
async fn a_verdict_keeps_its_latest_label(backend: Backend) {
    use backstop_core::label::{Label, VerdictLabel};
    let s = backend.open().await;
    let label = |id: &str, service: &str, label: Label, at: i64| VerdictLabel {
        rollout_id: id.into(),
        service: service.into(),
        env: "prod".into(),
        label,
        by: "token:alice".into(),
        at_ms: at,
        note: String::new(),
    };
    s.set_label(&label("r1", "shop", Label::Confirmed, 1))
        .await
        .unwrap();
    s.set_label(&label("r1", "shop", Label::FalseAlarm, 2))
        .await
        .unwrap();
    s.set_label(&label("r2", "cart", Label::Missed, 3))
        .await
        .unwrap();
    let shop = s.labels(Some("shop")).await.unwrap();
    assert_eq!(shop.len(), 1);
    assert_eq!((shop[0].label, shop[0].at_ms), (Label::FalseAlarm, 2));
    assert_eq!(s.labels(None).await.unwrap().len(), 2);
}

async fn decisions_are_counted_by_the_database(backend: Backend) {
    use backstop_core::model::Event;
    let s = backend.open().await;
    let empty = s.decision_counts().await.unwrap();
    assert!(empty.rollouts_by_phase.is_empty() && empty.verdicts.is_empty());
    assert_eq!(empty.time_to_detect.count, 0);
    s.create_release(&release("v1")).await.unwrap();
    let mut r = rollout("r1", "v1");
    s.create_rollout(&r).await.unwrap();
    r.phase = Phase::Recovered;
    r.verdict = Some(serde_json::json!({"judge": "sequential", "verdict": "fail"}));
    s.update_rollout(&r).await.unwrap();
    // First request at 1 s, verdict at 4.5 s, restored at 5 s; a second first request and a
    // later verdict do not count (the first of each).
    for (at, kind) in [
        (1_000, "canary.first_request"),
        (2_000, "canary.first_request"),
        (4_500, "rollout.failed"),
        (5_000, "traffic.restored"),
        (9_000, "rollout.failed"),
        (6_000, "rollback_sla.breached"),
    ] {
        s.add_event(&Event {
            at_ms: at,
            rollout_id: "r1".into(),
            kind: kind.parse().unwrap(),
            detail: serde_json::json!({}),
        })
        .await
        .unwrap();
    }
    let c = s.decision_counts().await.unwrap();
    assert_eq!(c.rollouts_by_phase, vec![("recovered".to_string(), 1)]);
    assert_eq!(
        c.verdicts,
        vec![("sequential".to_string(), "fail".to_string(), 1)]
    );
    assert_eq!(c.sla_breaches, 1);
    assert_eq!(c.time_to_detect.count, 1);
    assert!((c.time_to_detect.sum_s - 3.5).abs() < 1e-9);
    // Bounds 1, 2, 5, …: 3.5 s is within 5 s and above 2 s.
    assert_eq!(&c.time_to_detect.at_most[..3], &[0, 0, 1]);
    assert!((c.time_to_restore.sum_s - 4.0).abs() < 1e-9);
}

on_both_backends!(
    decisions_are_counted_by_the_database,
    a_flag_changes_only_from_the_version_read,
    a_verdict_keeps_its_latest_label,
    a_heartbeat_keeps_its_last_ping_and_counts,
    a_group_run_changes_only_from_the_version_read,
    a_ship_changes_only_from_the_version_read,
    a_runbook_run_changes_only_from_the_version_read,
    replicas_beat_and_are_listed_most_recent_first,
    releases_are_unique_per_service_and_version,
    only_one_active_rollout_per_environment,
    state_survives_reopening,
    recovery_journal_records_intent_attempts_and_outcome,
    audit_chain_appends_and_verifies,
    truncating_the_audit_tail_is_detected,
    breaker_trips_open_once_per_scope_and_reset,
    failures_count_verdicts_and_deploys_but_not_manual_aborts,
    concurrent_writers_never_see_database_busy_and_the_chain_stays_whole,
    a_release_keeps_its_declared_schema_range,
    manual_freezes_list_and_end_once,
    config_snapshots_are_versioned_and_an_unchanged_capture_reuses_the_latest,
    two_stores_appending_at_once_keep_one_verifiable_chain,
    two_stores_numbering_at_once_never_collide,
    verifying_while_another_store_appends_never_reports_a_break,
    tokens_are_found_by_hash_revoked_once_and_names_never_reused,
    heads_are_signed_with_the_key_and_a_recorded_break_stays,
    an_approval_is_decided_once_and_open_ones_are_listed,
);
