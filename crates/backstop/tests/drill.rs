//! Drills against a real daemon and the sample service: production is refused; in staging a
//! known-bad variant of the LKG is detected and rolled back under generated load, the result is
//! stored, listed and audited, and `validate` then compares MTTR targets with it.

use std::process::Command;

use backstop_testkit::{DEMO_APP_RUN, Daemon, backstop_bin, free_port};

fn config(staging: u16, prod: u16, objectives: &str) -> String {
    format!(
        r#"services:
  - name: shop
    owner: team-test
    tier: 1
    objectives: {objectives}
{DEMO_APP_RUN}    rollout:
      strategy: canary
      steps: [{{weight: 30, for: 40s}}, {{weight: 100}}]
    analysis:
      interval: 1s
    stateful:
      - {{name: shop-db, rpo: 5m, snapshot_every: 5m, restore: "./restore-shop-db {{snapshot}}"}}
    drill:
      env: {{DEMO_ERROR_RATIO: "0.3"}}
    environments:
      - name: staging
        kind: staging
        listen: 127.0.0.1:{staging}
      - name: prod
        listen: 127.0.0.1:{prod}
"#
    )
}

fn validate(config: &std::path::Path, state: &std::path::Path) -> (i32, serde_json::Value) {
    let out = Command::new(backstop_bin())
        .arg("validate")
        .arg(config)
        .arg("--state-dir")
        .arg(state)
        .args(["--output", "json"])
        .output()
        .expect("run backstop validate");
    let json = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
        panic!(
            "validate output is not JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    (out.status.code().unwrap_or(-1), json)
}

#[test]
fn drill_refuses_production_then_detects_restores_stores_and_feeds_validate() {
    let dir = tempfile::tempdir().unwrap();
    let state = dir.path().join("state");
    let (staging, prod) = (free_port(), free_port());
    let d = Daemon::start(&state, &config(staging, prod, "{mttr: 10m}"), staging);

    // Production (the default kind) is refused before anything is deployed.
    let out = d.cli(&["drill", "shop", "--env", "prod", "--timeout", "30s"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("refusing to drill shop/prod"), "{stderr}");
    assert!(stderr.contains("production"), "{stderr}");
    // Without a last known good there is nothing to drill against.
    let out = d.cli(&["drill", "shop", "--env", "staging"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("no last known good"), "{stderr}");
    let none = d.cli_json(&["drill", "list"], 0);
    assert_eq!(none, serde_json::json!([]));

    d.register("v1", 0.0);
    let v1 = d.cli_json(
        &[
            "rollout",
            "start",
            "shop",
            "--env",
            "staging",
            "--version",
            "v1",
            "--wait",
        ],
        0,
    );
    assert_eq!(v1["rollout"]["phase"], "promoted");

    let out = d.cli_json(
        &[
            "drill",
            "shop",
            "--env",
            "staging",
            "--rps",
            "60",
            "--timeout",
            "3m",
        ],
        0,
    );
    let drill = &out["drill"];
    assert_eq!(drill["status"], "passed", "{out:#}\n{}", d.log());
    assert_eq!(out["ended"], "ended");
    let id = drill["id"].as_str().unwrap().to_owned();
    let result = &drill["result"];
    assert_eq!(result["detected"], true);
    assert_eq!(result["restored"], true);
    assert_eq!(result["phase"], "recovered");
    assert!(result["failures"].as_array().unwrap().is_empty(), "{out:#}");
    let detect = result["time_to_detect_ms"].as_i64().unwrap();
    let recover = result["time_to_recover_ms"].as_i64().unwrap();
    assert!(detect > 0 && recover >= detect, "{result:#}");
    assert_eq!(result["mttr_target_ms"], 600_000);
    assert!(
        result["load"]["served_by_variant"].as_u64().unwrap() > 0,
        "{result:#}\n{}",
        d.log()
    );
    assert!(
        drill["release_id"]
            .as_str()
            .unwrap()
            .starts_with("shop@v1+drill.")
    );
    assert_eq!(drill["variant_env"]["DEMO_ERROR_RATIO"], "0.3");

    // The variant was rolled back: staging runs v1 again and the variant is marked bad.
    let rollout = d.rollout(drill["rollout_id"].as_str().unwrap());
    assert_eq!(rollout["rollout"]["phase"], "recovered");
    let variant = d.cli_json(
        &["release", "show", drill["release_id"].as_str().unwrap()],
        0,
    );
    assert_eq!(variant["status"], "bad");

    // Stored and listed; finishing twice is refused.
    let list = d.cli_json(&["drill", "list", "shop"], 0);
    assert_eq!(list.as_array().unwrap().len(), 1);
    assert_eq!(list[0]["id"], id.as_str());
    assert_eq!(list[0]["status"], "passed");
    assert_eq!(list[0]["result"]["time_to_recover_ms"], recover);
    let audit = d.cli_json(&["audit", "list"], 0);
    let actions: Vec<&str> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["target"] == format!("drill/{id}").as_str())
        .map(|r| r["action"].as_str().unwrap())
        .collect();
    assert_eq!(actions, ["drill.started", "drill.finished"]);

    // validate compares the MTTR target with this drill: 10m is met...
    let (code, json) = validate(&d.config, &state);
    assert_eq!(code, 0, "{json:#}");
    assert_eq!(json["drills"]["known"], true);
    assert_eq!(json["drills"]["compared"][0]["drill"], id.as_str());
    assert_eq!(json["drills"]["compared"][0]["recovered_ms"], recover);
    assert_eq!(json["drills"]["compared"][0]["met"], true);

    // ...a target shorter than the measured recovery is an error at the objective.
    let strict = dir.path().join("strict.yaml");
    std::fs::write(
        &strict,
        config(staging, prod, "{mttr: 1s, rollback_sla: 1s}"),
    )
    .unwrap();
    let (code, json) = validate(&strict, &state);
    assert_eq!(code, 1, "{json:#}");
    let errors = json["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 1, "{json:#}");
    let e = &errors[0];
    assert_eq!(e["path"], "/services/0/objectives/mttr");
    assert_eq!((e["line"].as_i64(), e["col"].as_i64()), (Some(5), Some(24)));
    let message = e["message"].as_str().unwrap();
    assert!(message.contains(&id), "{message}");
    assert!(
        message.contains("the MTTR target cannot be met"),
        "{message}"
    );
    assert_eq!(json["drills"]["compared"][0]["met"], false);

    // A drill that ends before Backstop acts (here: a 1s timeout) fails, its variant is aborted
    // back to v1, and as the last drill it leaves the MTTR target undemonstrated.
    let out = d.cli_json(&["drill", "shop", "--env", "staging", "--timeout", "1s"], 1);
    assert_eq!(out["ended"], "timeout", "{out:#}");
    assert_eq!(out["drill"]["status"], "failed");
    let failures = out["drill"]["result"]["failures"].to_string();
    assert!(
        failures.contains("not detected before the drill ended"),
        "{failures}"
    );
    assert!(
        failures.contains("cleanup: the drill rollout was still"),
        "{failures}"
    );
    let aborted = d.wait_rollout(
        out["drill"]["rollout_id"].as_str().unwrap(),
        "the abort of the timed-out variant",
        |r| r["rollout"]["phase"] == "recovered",
    );
    assert!(
        aborted["rollout"]["reason"].to_string().contains("drill"),
        "{aborted:#}"
    );
    let (code, json) = validate(&d.config, &state);
    assert_eq!(code, 1, "{json:#}");
    assert_eq!(json["errors"][0]["path"], "/services/0/objectives/mttr");
    let message = json["errors"][0]["message"].as_str().unwrap();
    assert!(message.contains("did not restore service"), "{message}");

    // A drill whose CLI died is finished by hand: measured, stored, its variant aborted; a
    // second finish is refused.
    let started = post(
        &d,
        "/api/v1/drills",
        r#"{"service":"shop","env":"staging"}"#,
    );
    let id = started["id"].as_str().expect("drill id").to_owned();
    assert_eq!(started["status"], "running");
    let out = d.cli_json(&["drill", "finish", &id], 1);
    assert_eq!(out["drill"]["status"], "failed", "{out:#}");
    assert!(
        out["drill"]["result"]["failures"]
            .to_string()
            .contains("aborted"),
        "{out:#}"
    );
    let again = d.cli(&["drill", "finish", &id]);
    assert_eq!(again.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&again.stderr).contains("already finished"));
    d.wait_rollout(
        started["rollout_id"].as_str().unwrap(),
        "the abort of the unfinished drill's variant",
        |r| r["rollout"]["phase"] == "recovered",
    );
    assert_eq!(
        d.cli_json(&["drill", "list", "shop"], 0)
            .as_array()
            .unwrap()
            .len(),
        3
    );
}

/// A raw authorized POST to the daemon (starting a drill without the CLI that drives its load).
fn post(d: &Daemon, path: &str, body: &str) -> serde_json::Value {
    use std::io::{Read, Write};
    let token = std::fs::read_to_string(d.state_dir.join("admin.token")).unwrap();
    let host = d.api.trim_start_matches("http://");
    let mut conn = std::net::TcpStream::connect(host).unwrap();
    write!(
        conn,
        "POST {path} HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {}\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        token.trim(),
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    conn.read_to_string(&mut answer).unwrap();
    let (head, json) = answer.split_once("\r\n\r\n").unwrap();
    assert!(head.starts_with("HTTP/1.1 201"), "{answer}");
    serde_json::from_str(json).unwrap_or_else(|e| panic!("{e}: {answer}"))
}
