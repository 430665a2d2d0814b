//! The shadow judge (`analysis: {mode: shadow}`): it runs live on a bad release, records that it
//! would have rolled it back (with the severity and the evidence), and the rollout is still
//! promoted: a team watches the judge before letting it act. `rollout explain` shows the shadow
//! verdict beside what was done.

use backstop_testkit::{Daemon, Traffic, audit_actions, free_port, shop_config};

#[test]
fn a_shadow_judge_records_a_fail_and_the_rollout_is_still_promoted() {
    let dir = tempfile::tempdir().unwrap();
    let proxy = free_port();
    let config = shop_config(proxy, "[{weight: 50, for: 8s}, {weight: 100}]").replace(
        "      interval: 1s\n",
        "      interval: 1s\n      mode: shadow\n",
    );
    assert!(config.contains("mode: shadow"), "{config}");
    let d = Daemon::start(&dir.path().join("state"), &config, proxy);
    d.register("v1", 0.0);
    d.register("v2", 0.3);
    assert_eq!(d.rollout_wait("v1", 0)["rollout"]["phase"], "promoted");
    let _traffic = Traffic::start(proxy, 60.0);

    let v2 = d.rollout_wait("v2", 0);
    assert_eq!(v2["rollout"]["phase"], "promoted", "{v2:#}");
    let id = v2["rollout"]["id"].as_str().unwrap();
    let shadow: Vec<&serde_json::Value> = v2["events"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["kind"] == "judge.shadow_verdict")
        .collect();
    assert_eq!(shadow.len(), 1, "recorded once: {v2:#}");
    assert_eq!(shadow[0]["detail"]["verdict"], "fail", "{v2:#}");
    assert!(
        shadow[0]["detail"]["would_have"]
            .as_str()
            .unwrap()
            .starts_with("rolled back"),
        "{v2:#}"
    );
    assert!(shadow[0]["detail"]["severity"].is_string(), "{v2:#}");
    assert_eq!(
        d.cli_json(&["release", "show", "shop@v2"], 0)["status"],
        "ok"
    );
    assert!(audit_actions(&d.cli_json(&["audit", "list"], 0)).contains(&"judge.shadow_verdict"));

    let explained = d.cli_json(&["rollout", "explain", id], 0);
    let verdicts = explained["shadow_verdicts"].as_array().unwrap();
    assert_eq!(verdicts.len(), 1, "{explained:#}");
    assert!(
        verdicts[0]
            .as_str()
            .unwrap()
            .contains("nothing was acted on"),
        "{explained:#}"
    );
    let text = d.cli(&["rollout", "explain", id, "-o", "text"]);
    assert!(
        String::from_utf8_lossy(&text.stdout).contains("shadow judge"),
        "{text:?}"
    );
}
