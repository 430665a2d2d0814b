//! The analysis reads its counters from a real Prometheus server (`signals.prometheus`):
//! Prometheus scrapes the daemon's `/metrics` every second, the controller queries it every
//! interval, a good release is promoted and a bad one is caught and rolled back on those
//! numbers. With Prometheus gone, a rollout holds (no step advances without data) and says why.

use std::time::Duration;

use backstop_testkit::{Daemon, Traffic, free_port, item_with, servers::Prometheus, shop_config};

fn events_of(detail: &serde_json::Value, kind: &str) -> Vec<serde_json::Value> {
    detail["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == kind)
        .cloned()
        .collect()
}

#[test]
fn rollouts_are_judged_on_prometheus_counters_and_hold_when_prometheus_is_gone() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let prom_port = free_port();
    let signals = format!(
        "    signals:\n      prometheus:\n        url: http://127.0.0.1:{prom_port}\n        \
         requests: 'backstop_proxy_requests_total{{service=\"{{service}}\",env=\"{{env}}\"}}'\n        \
         errors: 'backstop_proxy_errors_total{{service=\"{{service}}\",env=\"{{env}}\"}}'\n        \
         latency: 'backstop_proxy_request_duration_seconds_bucket{{service=\"{{service}}\",env=\"{{env}}\"}}'\n        \
         timeout: 2s\n    environments:"
    );
    let config = shop_config(
        proxy,
        "[{weight: 10, for: 4s}, {weight: 50, for: 2s}, {weight: 100}]",
    )
    .replace("    environments:", &signals);
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    let api_target = d.api.trim_start_matches("http://").to_string();
    let prometheus = Prometheus::start(prom_port, &[api_target]);

    d.register("v1", 0.0);
    d.register("v2", 0.0);
    d.register("v3", 0.3);
    d.register("v4", 0.0);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let traffic = Traffic::start(proxy, 80.0);

    let v2 = d.rollout_wait("v2", 0);
    assert_eq!(v2["rollout"]["phase"], "promoted", "{v2:#}");
    let source = events_of(&v2, "analysis.source");
    assert_eq!(source.len(), 1, "{v2:#}");
    assert_eq!(source[0]["detail"]["source"], "prometheus");
    assert_eq!(
        source[0]["detail"]["queries"][0],
        "sum by (version) (backstop_proxy_requests_total{service=\"shop\",env=\"prod\"})"
    );

    let v3 = d.rollout_wait("v3", 1);
    assert_eq!(v3["rollout"]["phase"], "recovered", "{v3:#}");
    let verdict = &v3["rollout"]["verdict"];
    assert_eq!(verdict["verdict"], "fail", "{v3:#}");
    let errors = item_with(&verdict["signals"], "signal", "error_ratio");
    assert_eq!(errors["verdict"], "fail", "{verdict:#}");
    let canary = &errors["evidence"]["canary"];
    assert!(
        canary["requests"].as_u64().unwrap() > 0 && canary["errors"].as_u64().unwrap() > 0,
        "the judge saw the canary through Prometheus: {verdict:#}"
    );
    assert!(
        !events_of(&v3, "canary.first_request").is_empty(),
        "the first canary requests are dated by the interval they showed in: {v3:#}"
    );

    // Prometheus gone: the next rollout holds at its first step and says why.
    drop(prometheus);
    let id = d.rollout_start("v4");
    let held = d.wait_rollout(&id, "an analysis.source_error event", |r| {
        !events_of(r, "analysis.source_error").is_empty()
    });
    let error = events_of(&held, "analysis.source_error")[0]["detail"]["error"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        error.contains(&format!("127.0.0.1:{prom_port}")),
        "names the server: {error}"
    );
    // Well past the 4 s of the first step: still there, never promoted on no data.
    d.assert_stays_on_first_step(&id, Duration::from_secs(8));
    let (sent, _) = traffic.stop();
    assert!(sent > 100, "traffic flowed: {sent}");
}
