//! A state folder written before the store was split by aggregate (and before statuses, states
//! and scopes became enums) opens, reads, verifies and takes new writes. The fixture is the
//! database `backstop quickstart --state-dir` left at commit 0bc492e (WAL checkpointed): three
//! releases, two promoted rollouts and one recovered by a five-step recovery, 21 audit records.

use std::path::Path;

use backstop_core::audit::AuditEntry;
use backstop_core::breaker::TripScope;
use backstop_core::model::{
    BreakerTrip, InstanceState, Phase, RecoveryStatus, ReleaseStatus, StepStatus,
};
use backstop_store::prelude::*;
use backstop_store::{SqliteStore, verify_audit};

const RECOVERED: &str = "01a23b4f-0d43-7667-be6b-79191f118e73";

async fn open_copy() -> (tempfile::TempDir, SqliteStore) {
    let fixture = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/state-before-issue-10")
        .join(backstop_store::sqlite::DB_FILE);
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(&fixture, dir.path().join(backstop_store::sqlite::DB_FILE)).unwrap();
    let store = SqliteStore::open_existing_dir(dir.path()).await.unwrap();
    (dir, store)
}

#[tokio::test]
async fn a_state_folder_from_before_the_split_reads_verifies_and_takes_writes() {
    let (_dir, s) = open_copy().await;

    let releases = s.releases(Some("shop")).await.unwrap();
    let statuses: Vec<_> = releases.iter().map(|r| (r.id.as_str(), r.status)).collect();
    assert_eq!(
        statuses,
        [
            ("shop@v1", ReleaseStatus::Ok),
            ("shop@v2", ReleaseStatus::Ok),
            ("shop@v3", ReleaseStatus::Bad)
        ]
    );

    let phases: Vec<_> = s
        .rollouts(None, 10)
        .await
        .unwrap()
        .iter()
        .map(|r| r.phase)
        .collect();
    assert_eq!(phases, [Phase::Recovered, Phase::Promoted, Phase::Promoted]);
    assert!(s.active_rollouts().await.unwrap().is_empty());
    assert_eq!(s.intervals(RECOVERED).await.unwrap().len(), 6);
    let kinds: Vec<_> = s
        .events(RECOVERED)
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.kind)
        .collect();
    assert_eq!(kinds.len(), 9);
    assert!(
        kinds.iter().any(|k| k.as_str() == "judge.fail"),
        "{kinds:?}"
    );
    assert!(s.rollout_safeguards(RECOVERED).await.unwrap().is_some());

    let recoveries = s.recoveries(10).await.unwrap();
    assert_eq!(recoveries.len(), 1);
    assert_eq!(recoveries[0].status, RecoveryStatus::Done);
    assert_eq!(recoveries[0].steps.len(), 5);
    assert!(
        recoveries[0]
            .steps
            .iter()
            .all(|st| st.status == StepStatus::Done)
    );
    assert!(s.unfinished_recoveries().await.unwrap().is_empty());

    let env = s.environment("shop", "prod").await.unwrap().unwrap();
    assert_eq!(env.lkg_release_id.as_deref(), Some("shop@v2"));
    let running = s.running_instances().await.unwrap();
    assert_eq!(running.len(), 1);
    assert_eq!(running[0].state, InstanceState::Running);
    assert_eq!(env.stable_instance_id.as_ref(), Some(&running[0].id));
    let v1 = s.instance("shop-prod-v1-7085cc").await.unwrap();
    assert_eq!(v1.state, InstanceState::Stopped);

    assert_eq!(verify_audit(&s).await.unwrap(), Ok(21));

    // New writes land next to the old rows.
    let entry = AuditEntry {
        actor: "test".into(),
        action: "fixture.opened".into(),
        target: "state".into(),
        trigger: "test".into(),
        evidence: serde_json::json!({}),
    };
    assert_eq!(s.append_audit(1, &entry).await.unwrap().seq, 22);
    assert_eq!(verify_audit(&s).await.unwrap(), Ok(22));
    let trip = BreakerTrip {
        id: "t1".into(),
        scope: TripScope::Env("prod".into()),
        tripped_at_ms: 1,
        failures: serde_json::json!([]),
        reset_at_ms: None,
        reset_by: None,
        reset_reason: None,
    };
    s.create_trip(&trip).await.unwrap();
    assert_eq!(s.open_trips().await.unwrap(), [trip]);
}
