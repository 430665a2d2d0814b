//! Alerts from monitoring as triggers. A real Prometheus scrapes the daemon's proxy counters
//! and evaluates an error-ratio rule on the sample service; a real Alertmanager sends what
//! fires to `/api/v1/alerts/alertmanager` with a releaser's token. A bad release promoted
//! without traffic (all at once) is rolled back by the alert, once, and the resolved alert is
//! recorded. The severity workflow on posted payloads: a major alert is held and acknowledged,
//! a minor one notifies, resends change nothing, an alert about no new release is ignored. With
//! `alerts.blame: ranked`, an alert is blamed on the likeliest culprit, not the alerting service.

use backstop_testkit::servers::{Alertmanager, Prometheus};
use backstop_testkit::{
    DEMO_APP_RUN, Daemon, Traffic, audit_actions, free_port, http_get, shop_config_all_at_once,
};
use serde_json::{Value, json};

fn token(d: &Daemon, name: &str, role: &str) -> String {
    let made = d.cli_json(&["token", "create", "--name", name, "--role", role], 0);
    made["token"].as_str().unwrap().to_string()
}

fn alerts(d: &Daemon) -> Value {
    d.cli_json_patient(&["alerts", "list"])
}

#[test]
fn a_firing_alert_from_alertmanager_rolls_back_the_release_it_is_about_once() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let d = Daemon::start(
        &dir.path().join("state"),
        &shop_config_all_at_once(proxy),
        proxy,
    );
    d.register("v1", 0.0);
    d.register("v2", 0.5);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    // No traffic yet: the all-at-once rollout of the bad v2 sees nothing wrong.
    let v2 = d.rollout_wait("v2", 0);
    assert_eq!(v2["rollout"]["phase"], "promoted", "{v2:#}");

    let am_port = free_port();
    let releaser = token(&d, "alertmanager", "releaser");
    let _am = Alertmanager::start(
        am_port,
        &format!("{}/api/v1/alerts/alertmanager", d.api),
        &releaser,
    );
    let rules = "groups:\n  - name: shop\n    interval: 1s\n    rules:\n      - alert: ShopErrors\n        \
        expr: sum by (service, env) (rate(backstop_proxy_errors_total{service=\"shop\"}[5s])) / sum by (service, env) (rate(backstop_proxy_requests_total{service=\"shop\"}[5s])) > 0.2\n        \
        labels: {severity: critical}\n        annotations: {summary: shop answers errors}\n";
    let api_target = d.api.trim_start_matches("http://").to_string();
    let _prometheus =
        Prometheus::start_alerting(free_port(), &[api_target], Some((rules, am_port)));
    let traffic = Traffic::start(proxy, 50.0);

    let rolled_back = backstop_testkit::assert_eventually!(
        alerts(&d),
        |a: &Value| a
            .as_array()
            .unwrap()
            .iter()
            .any(|x| x["action"] == "rolled_back"),
        "the alert rolls v2 back\ndaemon log:\n{}",
        d.log()
    );
    let alert = rolled_back
        .as_array()
        .unwrap()
        .iter()
        .find(|x| x["action"] == "rolled_back")
        .unwrap()
        .clone();
    assert_eq!(alert["name"], "ShopErrors", "{alert:#}");
    assert_eq!(alert["release_id"], "shop@v2", "{alert:#}");
    assert_eq!(alert["rollout_id"], v2["rollout"]["id"], "{alert:#}");
    assert_eq!(alert["severity"], "critical", "{alert:#}");
    d.wait_until("v1 serves again", || {
        http_get(proxy, "/version").is_some_and(|b| b.contains("v1"))
    });
    let recovery = d.cli_json(
        &["recovery", "show", alert["recovery_id"].as_str().unwrap()],
        0,
    );
    assert_eq!(recovery["status"], "done", "{recovery:#}");
    assert_eq!(recovery["actor"], "alert:ShopErrors", "{recovery:#}");

    // With v1 back the errors stop; Alertmanager sends the alert resolved.
    let resolved = backstop_testkit::assert_eventually!(
        d.cli_json_patient(&["alerts", "show", alert["id"].as_str().unwrap()]),
        |a: &Value| a["status"] == "resolved",
        "the alert resolves\ndaemon log:\n{}",
        d.log()
    );
    assert_eq!(resolved["action"], "rolled_back");
    drop(traffic);

    // One firing, one rollback: the releases went v2 → v1 and no further.
    let recoveries = d.cli_json(&["recovery", "list"], 0);
    assert_eq!(recoveries.as_array().unwrap().len(), 1, "{recoveries:#}");
    let actions = audit_actions(&d.cli_json(&["audit", "list", "--limit", "500"], 0))
        .into_iter()
        .map(str::to_owned)
        .collect::<Vec<_>>();
    assert!(actions.iter().any(|a| a == "alert.firing"), "{actions:?}");
    assert!(actions.iter().any(|a| a == "alert.resolved"), "{actions:?}");
    d.assert_audit_verifies();
    let metrics = http_get(d.api_port(), "/metrics").unwrap();
    assert!(
        metrics.contains("backstop_alerts_total{action=\"rolled_back\"} 1"),
        "{metrics}"
    );
}

fn payload(labels: &Value, starts_at: &str, status: &str) -> Value {
    json!({
        "version": "4",
        "status": status,
        "receiver": "backstop",
        "groupLabels": {},
        "commonLabels": labels,
        "alerts": [{
            "status": status,
            "labels": labels,
            "annotations": {"summary": "test"},
            "startsAt": starts_at,
            "endsAt": "0001-01-01T00:00:00Z",
            "generatorURL": "http://prometheus/graph",
            "fingerprint": format!("fp-{starts_at}")
        }]
    })
}

#[test]
fn the_severity_policy_decides_hold_notify_or_nothing_and_a_resend_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let config = shop_config_all_at_once(proxy).replace(
        "    rollout:",
        "    severity:\n      critical: rollback\n      major: {rollback_unless_acknowledged: 5m}\n      minor: notify\n    rollout:",
    );
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    assert_eq!(d.rollout_wait("v2", 0)["rollout"]["phase"], "promoted");
    let releaser = token(&d, "am", "releaser");
    let post = |body: &Value| {
        let (status, answer) = d.api_call(
            "POST",
            "/api/v1/alerts/alertmanager",
            Some(&releaser),
            Some(body),
        );
        assert_eq!(status, 200, "{answer}");
        answer["alerts"][0].clone()
    };
    let shop = |severity: &str| json!({"alertname": "Latency", "service": "shop", "env": "prod", "severity": severity});

    let major = post(&payload(&shop("major"), "2026-12-05T01:00:00Z", "firing"));
    assert_eq!(major["action"], "held", "{major:#}");
    assert_eq!(major["release_id"], "shop@v2", "{major:#}");
    assert!(major["deadline_ms"].is_number(), "{major:#}");
    let again = post(&payload(&shop("major"), "2026-12-05T01:00:00Z", "firing"));
    assert_eq!(again, major, "a resend is the same firing");
    let id = major["id"].as_str().unwrap();
    let acked = d.cli_json(
        &[
            "alerts",
            "acknowledge",
            id,
            "--reason",
            "known, fixing forward",
        ],
        0,
    );
    assert_eq!(acked["action"], "acknowledged", "{acked:#}");
    assert!(acked["acknowledged_by"].as_str().unwrap().contains("admin"));
    let twice = d.cli(&["alerts", "acknowledge", id, "--reason", "again"]);
    assert!(!twice.status.success());
    let said = String::from_utf8_lossy(&twice.stderr);
    assert!(said.contains("only a held alert"), "{said}");

    let minor = post(&payload(&shop("minor"), "2026-12-05T01:01:00Z", "firing"));
    assert_eq!(minor["action"], "notified", "{minor:#}");

    let unlabelled = post(&payload(
        &json!({"alertname": "DiskFull"}),
        "2026-12-05T01:02:00Z",
        "firing",
    ));
    assert_eq!(unlabelled["action"], "ignored", "{unlabelled:#}");
    let unknown = post(&payload(
        &json!({"alertname": "X", "service": "billing", "env": "prod"}),
        "2026-12-05T01:03:00Z",
        "firing",
    ));
    assert_eq!(unknown["action"], "ignored", "{unknown:#}");
    assert!(
        unknown["detail"].as_str().unwrap().contains("billing"),
        "{unknown:#}"
    );

    // Nothing was rolled back, and v2 still serves.
    assert!(
        d.cli_json(&["recovery", "list"], 0)
            .as_array()
            .unwrap()
            .is_empty()
    );

    // A viewer cannot send alerts; a bad status is named at its place.
    let viewer = token(&d, "viewer", "viewer");
    let (status, _) = d.api_call(
        "POST",
        "/api/v1/alerts/alertmanager",
        Some(&viewer),
        Some(&payload(
            &shop("critical"),
            "2026-12-05T01:04:00Z",
            "firing",
        )),
    );
    assert_eq!(status, 403);
    let (status, answer) = d.api_call(
        "POST",
        "/api/v1/alerts/alertmanager",
        Some(&releaser),
        Some(&payload(
            &shop("critical"),
            "2026-12-05T01:05:00Z",
            "burning",
        )),
    );
    assert_eq!(status, 400, "{answer}");
    assert_eq!(answer["error"]["pointer"], "/alerts/0/status", "{answer}");
    // A token limited to prod acts on prod's alerts only.
    let prod_only = d.cli_json(
        &[
            "token", "create", "--name", "am-prod", "--role", "releaser", "--env", "prod",
        ],
        0,
    )["token"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, answer) = d.api_call(
        "POST",
        "/api/v1/alerts/alertmanager",
        Some(&prod_only),
        Some(&payload(
            &json!({"alertname": "X", "service": "shop", "env": "staging", "severity": "critical"}),
            "2026-12-05T01:06:00Z",
            "firing",
        )),
    );
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["alerts"][0]["action"], "ignored", "{answer}");
    assert!(
        answer["alerts"][0]["detail"]
            .as_str()
            .unwrap()
            .contains("may not act"),
        "{answer}"
    );
    let listed = alerts(&d);
    assert_eq!(listed.as_array().unwrap().len(), 5, "{listed:#}");
    let admin = std::fs::read_to_string(d.state_dir.join("admin.token")).unwrap();
    let (status, page) = d.dashboard_page(admin.trim(), "/alerts");
    assert_eq!(status, 200, "{page}");
    assert!(
        page.contains("acknowledged") && page.contains("notified"),
        "{page}"
    );
}

/// `alerts.blame: ranked`: api's bad release makes web, which calls it, alert the loudest. The
/// alert on web is blamed on the likeliest culprit, the release whose own canary diverged from
/// its baseline (api's, held by api's notify-only policy), which is rolled back; web's good
/// release, rolling out at the same time, is left to finish.
#[test]
fn an_alert_is_blamed_on_the_likeliest_culprit_when_blame_is_ranked() {
    let dir = tempfile::tempdir().unwrap();
    let (api_port, web_port) = (free_port(), free_port());
    let service = |name: &str, port: u16, extra: &str| {
        format!(
            "  - name: {name}\n    owner: team-test\n    tier: 3\n{DEMO_APP_RUN}{extra}    rollout:\n      strategy: canary\n      steps: [{{weight: 50, for: 5m}}, {{weight: 100}}]\n    analysis:\n      interval: 1s\n    environments:\n      - name: prod\n        listen: 127.0.0.1:{port}\n"
        )
    };
    let config = format!(
        "services:\n{}{}",
        service(
            "api",
            api_port,
            "    severity: {critical: notify, major: notify, minor: notify}\n"
        ),
        service(
            "web",
            web_port,
            "    severity: {critical: rollback}\n    alerts: {blame: ranked}\n"
        ),
    );
    let d = Daemon::start(&dir.path().join("state"), &config, api_port);
    for (name, version, errors) in [
        ("api", "v1", 0.0),
        ("api", "v2", 0.5),
        ("web", "v1", 0.0),
        ("web", "v2", 0.0),
    ] {
        d.register_service(
            name,
            version,
            &["--env", &format!("DEMO_ERROR_RATIO={errors}")],
        );
    }
    for name in ["api", "web"] {
        let first = d.rollout_service_wait(name, "v1", 0);
        assert_eq!(first["rollout"]["phase"], "promoted", "{first:#}");
    }
    let _traffic = [
        Traffic::start(api_port, 60.0),
        Traffic::start(web_port, 60.0),
    ];
    let start = |name: &str| {
        d.cli_json(
            &["rollout", "start", name, "--env", "prod", "--version", "v2"],
            0,
        )["id"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    let (api, web) = (start("api"), start("web"));
    d.wait_phase(
        &api,
        "paused",
        "api's failing canary is held by its notify-only policy",
    );

    let releaser = token(&d, "am", "releaser");
    let (status, answer) = d.api_call(
        "POST",
        "/api/v1/alerts/alertmanager",
        Some(&releaser),
        Some(&payload(
            &json!({"alertname": "CheckoutErrors", "service": "web", "env": "prod", "severity": "critical"}),
            "2026-12-05T02:00:00Z",
            "firing",
        )),
    );
    assert_eq!(status, 200, "{answer}");
    let alert = &answer["alerts"][0];
    assert_eq!(alert["release_id"], "api@v2", "{alert:#}");
    let detail = alert["detail"].as_str().unwrap();
    assert!(detail.contains("likeliest culprit"), "{detail}");
    assert!(
        detail.contains("web, which alerted, is not blamed"),
        "{detail}"
    );

    d.wait_phase(&api, "recovered", "the culprit is rolled back");
    let web_now = d.rollout(&web);
    assert!(
        ["progressing", "promoted"].contains(&web_now["rollout"]["phase"].as_str().unwrap()),
        "web's good release goes on: {web_now:#}"
    );
    let settled = alerts(&d);
    assert_eq!(settled[0]["action"], "rolled_back", "{settled:#}");
}

/// An incident triggered in PagerDuty (its v3 webhook) on the PagerDuty service mapped to
/// shop's prod is taken like an alert: linked to the release just promoted, rolled back by the
/// P1's critical severity, its resolution recorded; other events and unmapped services change
/// nothing.
#[test]
fn a_pagerduty_incident_on_a_new_release_rolls_it_back_and_its_resolution_is_recorded() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let config = shop_config_all_at_once(proxy).replace(
        "    rollout:",
        "    alerts: {pagerduty: {PSHOP01: prod}}\n    rollout:",
    );
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    d.register("v1", 0.0);
    d.register("v2", 0.0);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    assert_eq!(d.rollout_wait("v2", 0)["rollout"]["phase"], "promoted");
    let releaser = token(&d, "pagerduty", "releaser");
    let post = |event_type: &str, service: &str, incident: &str| {
        let body = json!({"event": {
            "id": format!("ev-{event_type}"), "event_type": event_type,
            "resource_type": "incident", "occurred_at": "2026-12-05T03:00:00Z",
            "agent": {"id": "PUSER", "type": "user_reference"},
            "data": {
                "id": incident, "type": "incident", "title": "Checkout error rate high",
                "urgency": "high", "status": "triggered", "html_url": format!("https://acme.pagerduty.com/incidents/{incident}"),
                "service": {"id": service, "summary": "checkout prod", "type": "service_reference"},
                "priority": {"id": "PP1", "summary": "P1", "type": "priority_reference"},
            },
        }});
        let (status, answer) = d.api_call(
            "POST",
            "/api/v1/alerts/pagerduty",
            Some(&releaser),
            Some(&body),
        );
        assert_eq!(status, 200, "{answer}");
        answer["alerts"].clone()
    };

    let triggered = post("incident.triggered", "PSHOP01", "Q1INC7");
    let alert = &triggered[0];
    assert_eq!(alert["release_id"], "shop@v2", "{alert:#}");
    assert_eq!(alert["severity"], "critical", "{alert:#}");
    let id = alert["id"].as_str().unwrap().to_owned();
    d.wait_until("the release the incident is about is rolled back", || {
        d.api_get("/api/v1/services")[0]["environments"][0]["state"]["lkg_release_id"] == "shop@v1"
    });
    assert_eq!(
        post("incident.acknowledged", "PSHOP01", "Q1INC7"),
        json!([])
    );
    let resolved = post("incident.resolved", "PSHOP01", "Q1INC7");
    assert_eq!(resolved[0]["id"], id.as_str(), "one firing: {resolved:#}");
    assert_eq!(resolved[0]["status"], "resolved", "{resolved:#}");
    let other = post("incident.triggered", "POTHER9", "Q2OTHER");
    assert_eq!(other[0]["action"], "ignored", "{other:#}");
}
