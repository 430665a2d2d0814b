//! Who may call what, against a real daemon: every route of the OpenAPI document called with a
//! token of every role (the expected answer read from one table), without a token and with a
//! bad one; tokens made, used, limited to one environment, expired and revoked through the CLI,
//! and the audit naming the token that acted.

use std::collections::BTreeSet;

use backstop_testkit::{DEMO_APP_RUN, Daemon, free_port};
use serde_json::{Value, json};

/// The least role each route needs, as the README promises it; every role at or above it is
/// let through, every role below gets a 403 naming it. The test fails when the OpenAPI document
/// and this table disagree on the routes there are.
const EXPECTED: &[(&str, &str, &str)] = &[
    ("GET", "/api/v1/services", "viewer"),
    ("GET", "/api/v1/cluster", "viewer"),
    ("GET", "/api/v1/releases", "viewer"),
    ("POST", "/api/v1/releases", "deployer"),
    ("GET", "/api/v1/releases/{id}", "viewer"),
    ("POST", "/api/v1/releases/{id}/readmit", "releaser"),
    ("GET", "/api/v1/rollouts", "viewer"),
    ("POST", "/api/v1/rollouts", "deployer"),
    ("GET", "/api/v1/rollouts/{id}", "viewer"),
    ("POST", "/api/v1/rollouts/{id}/promote", "releaser"),
    ("POST", "/api/v1/rollouts/{id}/abort", "releaser"),
    ("POST", "/api/v1/rollouts/{id}/acknowledge", "releaser"),
    ("GET", "/api/v1/rollouts/{id}/export", "viewer"),
    ("GET", "/api/v1/rollouts/{id}/explain", "viewer"),
    ("POST", "/api/v1/rollback", "releaser"),
    ("GET", "/api/v1/rollback/preview", "viewer"),
    ("POST", "/api/v1/rollback/break-glass", "viewer"),
    ("GET", "/api/v1/approvals", "viewer"),
    ("POST", "/api/v1/approvals/{id}/approve", "deployer"),
    ("GET", "/api/v1/recoveries", "viewer"),
    ("GET", "/api/v1/recoveries/{id}", "viewer"),
    ("POST", "/api/v1/recoveries/{id}/resume", "releaser"),
    ("GET", "/api/v1/recoveries/{id}/postmortem", "viewer"),
    ("POST", "/api/v1/recoveries/{id}/postmortem", "releaser"),
    ("GET", "/api/v1/breakers", "viewer"),
    ("POST", "/api/v1/breakers/reset", "incident-commander"),
    ("GET", "/api/v1/audit", "viewer"),
    ("GET", "/api/v1/audit/verify", "viewer"),
    ("POST", "/api/v1/audit/verify", "viewer"),
    ("GET", "/api/v1/audit/checkpoint", "viewer"),
    ("GET", "/api/v1/gate", "viewer"),
    ("GET", "/api/v1/freezes", "viewer"),
    ("POST", "/api/v1/freezes", "incident-commander"),
    ("POST", "/api/v1/freezes/{id}/end", "incident-commander"),
    ("GET", "/api/v1/groups", "viewer"),
    ("POST", "/api/v1/groups", "deployer"),
    ("GET", "/api/v1/groups/{name}", "viewer"),
    ("POST", "/api/v1/groups/{name}/runs", "deployer"),
    ("GET", "/api/v1/group-runs/{id}", "viewer"),
    ("GET", "/api/v1/ships", "viewer"),
    ("POST", "/api/v1/ships", "deployer"),
    ("GET", "/api/v1/ships/{id}", "viewer"),
    ("POST", "/api/v1/ships/{id}/stop", "deployer"),
    ("GET", "/api/v1/alerts", "viewer"),
    ("POST", "/api/v1/alerts/alertmanager", "releaser"),
    ("POST", "/api/v1/alerts/pagerduty", "releaser"),
    ("GET", "/api/v1/alerts/{id}", "viewer"),
    ("POST", "/api/v1/alerts/{id}/acknowledge", "releaser"),
    ("GET", "/api/v1/config/{service}/{env}/snapshots", "viewer"),
    (
        "POST",
        "/api/v1/config/{service}/{env}/snapshots",
        "deployer",
    ),
    ("GET", "/api/v1/config/{service}/{env}/diff", "viewer"),
    ("POST", "/api/v1/config/{service}/{env}/restore", "releaser"),
    ("GET", "/api/v1/drills", "viewer"),
    ("POST", "/api/v1/drills", "releaser"),
    ("GET", "/api/v1/drills/{id}", "viewer"),
    ("POST", "/api/v1/drills/{id}/finish", "releaser"),
    ("GET", "/api/v1/incidents", "viewer"),
    ("GET", "/api/v1/incidents/{id}", "viewer"),
    ("POST", "/api/v1/incidents", "releaser"),
    (
        "POST",
        "/api/v1/incidents/{id}/status",
        "incident-commander",
    ),
    ("POST", "/api/v1/incidents/{id}/roles", "incident-commander"),
    (
        "POST",
        "/api/v1/incidents/{id}/updates",
        "incident-commander",
    ),
    ("POST", "/api/v1/incidents/{id}/notes", "deployer"),
    // The runbook's own role is checked by the handler (tests/runbooks.rs).
    ("GET", "/api/v1/dora", "viewer"),
    ("GET", "/api/v1/scorecards", "viewer"),
    ("GET", "/api/v1/gaps", "viewer"),
    ("POST", "/api/v1/rollouts/{id}/label", "releaser"),
    ("GET", "/api/v1/calibrate/{service}", "viewer"),
    ("GET", "/api/v1/flags", "viewer"),
    ("POST", "/api/v1/flags/{name}/set", "deployer"),
    ("POST", "/api/v1/flags/{name}/reenable", "deployer"),
    ("POST", "/api/v1/flags/{name}/abort", "deployer"),
    ("POST", "/ofrep/v1/evaluate/flags/{key}", "viewer"),
    ("POST", "/ofrep/v1/evaluate/flags", "viewer"),
    ("GET", "/api/v1/heartbeats", "viewer"),
    ("POST", "/api/v1/heartbeats/{name}", "deployer"),
    ("GET", "/api/v1/runbooks", "viewer"),
    ("POST", "/api/v1/runbooks/{name}/runs", "viewer"),
    ("GET", "/api/v1/runbook-runs", "viewer"),
    ("GET", "/api/v1/runbook-runs/{id}", "viewer"),
    (
        "POST",
        "/api/v1/runbook-runs/{id}/steps/{step}/confirm",
        "viewer",
    ),
    (
        "POST",
        "/api/v1/runbook-runs/{id}/steps/{step}/retry",
        "viewer",
    ),
    (
        "POST",
        "/api/v1/runbook-runs/{id}/steps/{step}/skip",
        "viewer",
    ),
    (
        "POST",
        "/api/v1/runbook-runs/{id}/steps/{step}/alter",
        "viewer",
    ),
    ("POST", "/api/v1/runbook-runs/{id}/ad-hoc", "viewer"),
    ("POST", "/api/v1/runbook-runs/{id}/abort", "viewer"),
    ("GET", "/api/v1/tokens", "admin"),
    ("POST", "/api/v1/tokens", "admin"),
    ("POST", "/api/v1/tokens/{name}/revoke", "admin"),
];

const ROLES: [&str; 5] = [
    "viewer",
    "deployer",
    "releaser",
    "incident-commander",
    "admin",
];

fn rank(role: &str) -> usize {
    ROLES.iter().position(|r| *r == role).unwrap()
}

/// Service `shop` in two environments, `prod` (with params, so config snapshots answer) and
/// `staging`.
fn two_env_config() -> String {
    format!(
        r#"services:
  - name: shop
    owner: team-test
    tier: 1
{DEMO_APP_RUN}    rollout:
      strategy: all-at-once
    analysis:
      interval: 1s
    environments:
      - name: prod
        listen: 127.0.0.1:{}
        params:
          env: {{LOG_LEVEL: info}}
      - name: staging
        listen: 127.0.0.1:{}
"#,
        free_port(),
        free_port()
    )
}

fn start(dir: &std::path::Path) -> Daemon {
    let config = two_env_config();
    let port: u16 = config
        .split("listen: 127.0.0.1:")
        .nth(1)
        .and_then(|rest| rest.lines().next())
        .and_then(|p| p.parse().ok())
        .unwrap();
    Daemon::start(&dir.join("state"), &config, port)
}

/// `backstop token create …` with the admin token: the token.
fn make_token(d: &Daemon, name: &str, role: &str, extra: &[&str]) -> String {
    let mut args = vec!["token", "create", "--name", name, "--role", role];
    args.extend_from_slice(extra);
    let made = d.cli_json(&args, 0);
    made["token"].as_str().unwrap().to_string()
}

/// A path of the document with its parameters filled in from what the daemon holds.
fn concrete(path: &str, rollout: &str) -> String {
    path.replace("{service}", "shop")
        .replace("{env}", "prod")
        .replace(
            "{name}",
            if path.starts_with("/api/v1/groups") {
                "no-such-id"
            } else {
                "nobody"
            },
        )
        .replace("{key}", "nobody")
        .replace("{step}", "no-step")
        .replace(
            "{id}",
            if path.starts_with("/api/v1/rollouts") {
                rollout
            } else if path.starts_with("/api/v1/releases") {
                "shop@v1"
            } else {
                "no-such-id"
            },
        )
}

/// What each call sends: enough for a GET to answer 200 (the gate's query); POSTs send an
/// empty object (a role that is let through then meets the handler's own checks).
fn query(method: &str, path: &str) -> String {
    match (method, path) {
        ("GET", "/api/v1/gate") => "?service=shop&env=prod&release=v1".into(),
        ("GET", "/api/v1/rollback/preview") => "?service=shop&env=prod".into(),
        _ => String::new(),
    }
}

#[test]
fn every_route_of_the_openapi_document_answers_each_role_as_the_table_says() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    d.register("v1", 0.0);
    let rollout = d.rollout_start("v1");
    d.wait_phase(&rollout, "promoted", "v1 promoted");

    // The table and the document name the same routes.
    let (status, doc) = d.api_call("GET", "/api/openapi.json", None, None);
    assert_eq!(status, 200);
    let mut documented = BTreeSet::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for method in item.as_object().unwrap().keys() {
            documented.insert((method.to_uppercase(), path.clone()));
        }
    }
    let tabled: BTreeSet<(String, String)> = EXPECTED
        .iter()
        .map(|(m, p, _)| ((*m).to_string(), (*p).to_string()))
        .collect();
    assert_eq!(
        documented, tabled,
        "the OpenAPI document and the test's table name different routes"
    );

    let mut tokens: Vec<(&str, String)> = ROLES[..4]
        .iter()
        .map(|role| (*role, make_token(&d, role, role, &[])))
        .collect();
    tokens.push(("admin", make_token(&d, "second-admin", "admin", &[])));

    for (method, path, least) in EXPECTED {
        let url = format!("{}{}", concrete(path, &rollout), query(method, path));
        let body = (*method == "POST").then(|| json!({}));
        let (status, answer) = d.api_call(method, &url, None, body.as_ref());
        assert_eq!(status, 401, "{method} {url} without a token: {answer}");
        let (status, answer) = d.api_call(method, &url, Some("bst_not_a_token"), body.as_ref());
        assert_eq!(status, 401, "{method} {url} with a bad token: {answer}");
        for (role, token) in &tokens {
            let (status, answer) = d.api_call(method, &url, Some(token), body.as_ref());
            if rank(role) >= rank(least) {
                assert!(
                    status != 401 && status != 403,
                    "{method} {url} as {role} should be let through: {status} {answer}"
                );
                if *method == "GET" && !url.contains("no-such-id") {
                    assert!(
                        (200..300).contains(&status),
                        "{method} {url} as {role}: {status} {answer}"
                    );
                }
            } else {
                assert_eq!(status, 403, "{method} {url} as {role}: {answer}");
                let message = answer["error"]["message"].as_str().unwrap_or_default();
                assert!(
                    message.contains(&format!("role {least}")),
                    "{method} {url} as {role}: the 403 names the role: {message}"
                );
            }
        }
    }
}

#[test]
fn tokens_are_shown_once_scoped_to_an_environment_expire_and_revoke_and_the_audit_names_them() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(dir.path());
    d.register("v1", 0.0);

    // The contract's shape; the token is not in the list, nor stored in clear.
    let made = d.cli_json(
        &[
            "token",
            "create",
            "--name",
            "alice",
            "--role",
            "releaser",
            "--env",
            "prod",
            "--expires",
            "30d",
        ],
        0,
    );
    assert_eq!(made["name"], "alice");
    assert_eq!(made["role"], "releaser");
    assert_eq!(made["env"], "prod");
    let alice = made["token"].as_str().unwrap().to_string();
    assert!(alice.starts_with("bst_") && alice.len() > 60, "{alice}");
    assert!(
        made["expires_at"].as_str().unwrap().ends_with('Z'),
        "{made}"
    );
    let listed = d.cli_json(&["token", "list"], 0);
    assert_eq!(listed[0]["name"], "alice");
    assert!(!listed.to_string().contains(&alice[4..]), "{listed}");
    let db = std::fs::read(d.state_dir.join("backstop.db")).unwrap();
    assert!(
        !db.windows(alice.len()).any(|w| w == alice.as_bytes()),
        "the token is stored in clear"
    );

    // In prod alice may roll out and roll back; in staging she only reads, and the CLI says
    // which role is missing (exit 2: nothing changed).
    let as_alice = |args: &[&str]| {
        let mut all = args.to_vec();
        all.extend_from_slice(&["--token", &alice]);
        d.cli(&all)
    };
    let out = as_alice(&[
        "rollout",
        "start",
        "shop",
        "--env",
        "prod",
        "--version",
        "v1",
        "--wait",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(0), "{out:?}\n{}", d.log());
    let out = as_alice(&[
        "rollout",
        "start",
        "shop",
        "--env",
        "staging",
        "--version",
        "v1",
        "-o",
        "json",
    ]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("403") && err.contains("deployer in environment staging"),
        "{err}"
    );
    let out = as_alice(&["rollout", "list", "-o", "json"]);
    assert_eq!(out.status.code(), Some(0), "{out:?}");
    let out = as_alice(&["token", "list"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("role admin"));
    let out = as_alice(&["freeze", "start", "--env", "prod", "--reason", "mine"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("role incident-commander"));

    // The audit names who acted: the rollout alice started is hers.
    let audit = d.cli_json(&["audit", "list"], 0);
    let by_alice: Vec<&Value> = audit
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["actor"] == "token:alice")
        .collect();
    assert!(
        by_alice.iter().any(|r| r["action"] == "rollout.created"),
        "{audit:#}"
    );
    let made_by_admin = audit
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["action"] == "token.created")
        .unwrap();
    assert_eq!(made_by_admin["actor"], "token:admin");
    assert!(!made_by_admin.to_string().contains(&alice[4..]));

    // Revoked: refused at once, with a message saying so; the name stays taken.
    d.cli_json(&["token", "revoke", "alice"], 0);
    let out = as_alice(&["rollout", "list"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("token alice is revoked"));
    let out = d.cli(&["token", "create", "--name", "alice", "--role", "viewer"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    d.cli_json_output(&["token", "revoke", "alice"], 2);

    // Expired: refused after its time.
    let bob = make_token(&d, "bob", "viewer", &["--expires", "1s"]);
    let (status, _) = d.api_call("GET", "/api/v1/services", Some(&bob), None);
    assert_eq!(status, 200);
    std::thread::sleep(std::time::Duration::from_millis(1500));
    let (status, answer) = d.api_call("GET", "/api/v1/services", Some(&bob), None);
    assert_eq!(status, 401, "{answer}");
    assert!(
        answer["error"]["message"]
            .as_str()
            .unwrap()
            .contains("expired")
    );

    // Bad input names the place and makes nothing.
    let out = d.cli(&["token", "create", "--name", "x", "--role", "root"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role"));
    let out = d.cli(&[
        "token", "create", "--name", "x", "--role", "admin", "--env", "prod",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/env"));
    let out = d.cli(&[
        "token",
        "create",
        "--name",
        "x",
        "--role",
        "viewer",
        "--expires",
        "soon",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("/expires"));
    let out = d.cli(&[
        "token", "create", "--name", "x", "--role", "viewer", "--env", "mars",
    ]);
    assert_eq!(out.status.code(), Some(2));
    let names: Vec<String> = d
        .cli_json(&["token", "list"], 0)
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["name"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(names, ["alice", "bob"]);
    d.assert_audit_verifies();
}
