//! Drills are stored whole, replaced on finish, listed newest first and per service, and
//! survive reopening the store; on both backends.

use std::collections::BTreeMap;

use backstop_core::drill::{Drill, DrillObjectives, DrillStatus, measure};
use backstop_core::model::{Phase, Rollout};
use backstop_store::StoreError;
use common::Backend;

#[macro_use]
mod common;

fn drill(id: &str, service: &str, started_at_ms: i64) -> Drill {
    Drill {
        id: id.into(),
        service: service.into(),
        env: "staging".into(),
        rollout_id: format!("rollout-{id}"),
        release_id: format!("{service}@v1+drill.{started_at_ms}"),
        lkg_release_id: format!("{service}@v1"),
        variant_env: BTreeMap::from([("DEMO_ERROR_RATIO".to_owned(), "0.2".to_owned())]),
        target: Some("127.0.0.1:8080".into()),
        actor: "admin".into(),
        status: DrillStatus::Running,
        started_at_ms,
        finished_at_ms: None,
        result: None,
    }
}

async fn drills_round_trip_update_and_list(backend: Backend) {
    let store = backend.open().await;
    store.create_drill(&drill("d1", "shop", 100)).await.unwrap();
    store.create_drill(&drill("d2", "cart", 200)).await.unwrap();
    store.create_drill(&drill("d3", "shop", 300)).await.unwrap();
    assert!(matches!(
        store.create_drill(&drill("d1", "shop", 100)).await,
        Err(StoreError::Conflict(_))
    ));

    let mut d1 = store.drill("d1").await.unwrap();
    assert_eq!(d1, drill("d1", "shop", 100));
    let rollout: Rollout = serde_json::from_value(serde_json::json!({
        "id": "rollout-d1", "service": "shop", "env": "staging", "from_release_id": "shop@v1",
        "to_release_id": "shop@v1+drill.100", "phase": "recovered", "step_index": 0,
        "step_started_at_ms": null, "canary_weight": 0.0, "canary_instance_id": null,
        "created_at_ms": 100, "updated_at_ms": 100, "actor": "admin", "reason": null,
        "verdict": null, "severity": null, "escalation_deadline_ms": null, "acknowledged_by": null
    }))
    .unwrap();
    assert_eq!(rollout.phase, Phase::Recovered);
    d1.result = Some(measure(
        &rollout,
        &[],
        Some(900),
        DrillObjectives {
            mttr_ms: 60_000,
            rollback_sla_ms: 10_000,
        },
        None,
    ));
    d1.status = DrillStatus::Failed;
    d1.finished_at_ms = Some(1_000);
    store.update_drill(&d1).await.unwrap();

    let ids = |v: Vec<Drill>| v.into_iter().map(|d| d.id).collect::<Vec<_>>();
    assert_eq!(
        ids(store.drills(None, 10).await.unwrap()),
        ["d3", "d2", "d1"]
    );
    assert_eq!(
        ids(store.drills(Some("shop"), 10).await.unwrap()),
        ["d3", "d1"]
    );
    assert_eq!(ids(store.drills(Some("shop"), 1).await.unwrap()), ["d3"]);
    assert!(store.drills(Some("none"), 10).await.unwrap().is_empty());

    let missing = drill("nope", "shop", 1);
    assert!(matches!(
        store.update_drill(&missing).await,
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        store.drill("nope").await,
        Err(StoreError::NotFound(_))
    ));
    store.close().await;

    let again = backend.reopen().await;
    let stored = again.drill("d1").await.unwrap();
    assert_eq!(stored, d1);
    assert_eq!(stored.status, DrillStatus::Failed);
    assert_eq!(
        stored.result.as_ref().and_then(|r| r.time_to_recover_ms),
        Some(800)
    );
}

on_both_backends!(drills_round_trip_update_and_list);
