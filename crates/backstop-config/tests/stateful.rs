//! Stateful components, environment kinds and drill variants as typed config; MTTR targets
//! against drill measurements (`check_measured`).

use std::time::Duration;

use backstop_config::{ConfigError, EnvKind, MeasuredRecovery, check_measured};

const CONFIG: &str = include_str!("good/stateful.yaml");

fn measured(service: &str, secs: Option<u64>) -> MeasuredRecovery {
    MeasuredRecovery {
        service: service.into(),
        env: "staging".into(),
        drill_id: format!("drill-{service}"),
        date: "2026-11-26T08:00:00.000Z".into(),
        recovered: secs.map(Duration::from_secs),
    }
}

/// Asserts `e` stands at (line, column, JSON pointer) `at` and its message says each of `says`.
fn assert_error(e: &ConfigError, at: (usize, usize, &str), says: &[&str]) {
    assert_eq!((e.line, e.col, e.path.as_str()), at);
    for part in says {
        assert!(e.message.contains(part), "{}", e.message);
    }
}

#[test]
fn stateful_components_kind_and_drill_are_typed_and_round_trip() {
    let config = backstop_config::parse(CONFIG, "b.yaml").expect("valid");
    let orders = config.service("orders").expect("orders");
    let db = &orders.stateful[0];
    assert_eq!(db.name, "orders-db");
    assert_eq!(db.rpo, Duration::from_secs(300));
    assert_eq!(db.snapshot_every, Duration::from_secs(300));
    assert_eq!(
        db.restore_command("snap 2026/11/26", "orders", "staging"),
        "./scripts/restore-orders-db 'snap 2026/11/26' --env staging"
    );
    assert_eq!(
        db.snapshot_command("orders", "prod").as_deref(),
        Some("./scripts/snap orders-db")
    );
    assert_eq!(
        orders.environment("staging").map(|e| e.kind),
        Some(EnvKind::Staging)
    );
    assert_eq!(
        orders.environment("prod").map(|e| e.kind),
        Some(EnvKind::Production)
    );
    assert_eq!(
        orders.drill.as_ref().map(|d| d.env["FAULT"].as_str()),
        Some("on")
    );
    let search = config.service("search").expect("search");
    assert!(search.stateful.is_empty() && search.drill.is_none());

    let again = backstop_config::parse(&config.to_yaml_effective(), "effective.yaml")
        .expect("effective config parses back");
    assert_eq!(again, config);
    let schema = backstop_config::schema();
    let service = &schema["$defs"]["Service"]["properties"];
    assert!(
        service["stateful"]["description"].is_string(),
        "{service:#}"
    );
    assert!(
        schema["$defs"]["Stateful"]["properties"]["rpo"]["description"]
            .as_str()
            .is_some_and(|d| d.contains("Recovery point objective"))
    );
}

#[test]
fn mttr_shorter_than_the_last_drill_is_an_error_at_the_objective() {
    let config = backstop_config::parse(CONFIG, "b.yaml").expect("valid");
    // 90s fits 12m; nothing to say.
    assert!(check_measured(CONFIG, "b.yaml", &config, &[measured("orders", Some(90))]).is_empty());

    let errors = check_measured(
        CONFIG,
        "b.yaml",
        &config,
        &[
            measured("orders", Some(785)),
            measured("search", Some(20 * 60)),
        ],
    );
    assert_eq!(errors.len(), 2, "{errors:?}");
    assert_error(
        &errors[0],
        (5, 24, "/services/0/objectives/mttr"),
        &[
            "the MTTR target cannot be met",
            "mttr (12m)",
            "drill-orders on 2026-11-26T08:00:00.000Z",
            "(13m 5s)",
        ],
    );
    // The tier default: located at `tier`.
    assert_error(
        &errors[1],
        (24, 11, "/services/1/tier"),
        &["mttr (15m) (the tier-0 default)"],
    );

    let errors = check_measured(CONFIG, "b.yaml", &config, &[measured("orders", None)]);
    assert_eq!(errors.len(), 1);
    assert!(
        errors[0].message.contains("did not restore service"),
        "{}",
        errors[0].message
    );
    // A drill of a service no longer in the file is ignored.
    assert!(check_measured(CONFIG, "b.yaml", &config, &[measured("gone", Some(1))]).is_empty());
}
