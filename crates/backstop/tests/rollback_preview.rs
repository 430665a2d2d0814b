//! What a rollback undoes, shown before anyone confirms it: `backstop rollback … --preview` and
//! `GET /api/v1/rollback/preview` list the release taken away (who shipped it and why), what
//! serves again, and change nothing; the dashboard's confirmation shows the same lines. An
//! environment with nothing to go back to says so (exit 1).

use backstop_testkit::{Daemon, free_port, shop_config_all_at_once};

#[test]
fn a_rollback_preview_names_what_it_undoes_and_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let d = Daemon::start(
        &dir.path().join("state"),
        &shop_config_all_at_once(proxy),
        proxy,
    );
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    let preview = ["rollback", "shop", "--env", "prod", "--preview"];
    let nothing = d.cli_json_output(&preview, 1);
    let nothing: serde_json::Value = serde_json::from_slice(&nothing.stdout).unwrap();
    assert_eq!(nothing["refused"], true, "{nothing:#}");

    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let v2 = d.cli_json(
        &[
            "rollout",
            "start",
            "shop",
            "--env",
            "prod",
            "--version",
            "v2",
            "--reason",
            "fix for INC-7",
            "--wait",
        ],
        0,
    );
    assert_eq!(v2["rollout"]["phase"], "promoted", "{v2:#}");

    let p = d.cli_json(&preview, 0);
    assert_eq!(p["from_release"], "shop@v2", "{p:#}");
    assert_eq!(p["to_release"], "shop@v1", "{p:#}");
    assert_eq!(p["refused"], false, "{p:#}");
    let undone = &p["undone"][0];
    assert_eq!(undone["release"], "shop@v2", "{p:#}");
    assert_eq!(undone["started_reason"], "fix for INC-7", "{p:#}");
    let summary: Vec<&str> = p["summary"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l.as_str().unwrap())
        .collect();
    assert!(
        summary
            .iter()
            .any(|l| l.contains("takes away shop@v2") && l.contains("fix for INC-7")),
        "{summary:#?}"
    );
    assert!(summary.contains(&"shop@v1 serves again"), "{summary:#?}");
    let text = d.cli(&[
        "rollback",
        "shop",
        "--env",
        "prod",
        "--preview",
        "-o",
        "text",
    ]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("shop@v2 → shop@v1"),
        "{text:?}"
    );
    // Nothing changed.
    let services = d.api_get("/api/v1/services");
    assert_eq!(
        services[0]["environments"][0]["state"]["lkg_release_id"], "shop@v2",
        "{services:#}"
    );
    assert_eq!(d.api_get("/api/v1/recoveries").as_array().unwrap().len(), 0);
    // The dashboard's confirmation shows the same lines.
    let token = std::fs::read_to_string(d.state_dir.join("admin.token")).unwrap();
    let (status, page) = d.dashboard_page(token.trim(), "/environments/shop/prod/rollback");
    assert_eq!(status, 200, "{page}");
    assert!(page.contains("What it undoes"), "{page}");
    assert!(page.contains("fix for INC-7"), "{page}");
}
