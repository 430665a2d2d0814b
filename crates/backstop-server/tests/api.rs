//! Bad requests get 4xx answers with JSON bodies that say what is wrong and where (a JSON
//! pointer), and change nothing.

use backstop_testkit::in_process::ApiServer;
use backstop_testkit::{audit_actions, texts_of};
use serde_json::{Value, json};

fn assert_error(
    got: &(u16, Value),
    status: u16,
    code: &str,
    pointer: Option<&str>,
    fragment: &str,
) {
    let (s, body) = got;
    assert_eq!(*s, status, "{body:#}");
    assert_eq!(body["error"]["code"], code, "{body:#}");
    if let Some(p) = pointer {
        assert_eq!(body["error"]["pointer"], p, "{body:#}");
    }
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(fragment), "{message:?} lacks {fragment:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_requests_get_useful_4xx_bodies_and_change_nothing() {
    let api = ApiServer::start().await;

    // Authentication.
    let anon = api
        .http
        .get(format!("{}/api/v1/releases", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(anon.status().as_u16(), 401);
    let wrong = api
        .http
        .get(format!("{}/api/v1/releases", api.base))
        .bearer_auth("bst_nope")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status().as_u16(), 401);
    // A 401 names the scheme it takes (RFC 6750), and the scheme's name is case-insensitive.
    assert_eq!(
        wrong.headers()["www-authenticate"],
        "Bearer realm=\"backstop\""
    );
    for scheme in ["bearer", "BEARER"] {
        let ok = api
            .http
            .get(format!("{}/api/v1/releases", api.base))
            .header("Authorization", format!("{scheme} {}", api.token))
            .send()
            .await
            .unwrap();
        assert_eq!(ok.status().as_u16(), 200, "{scheme}");
    }

    // Every 4xx carries the error body, including the ones the router and extractors answer.
    let raw = |method: reqwest::Method, path: &str, body: Vec<u8>| {
        let req = api
            .http
            .request(method, format!("{}{path}", api.base))
            .bearer_auth(&api.token)
            .header("content-type", "application/json")
            // The server closes a connection whose body it refused unread (413): never hand
            // that connection to the next request.
            .header("connection", "close")
            .body(body);
        async move {
            let resp = req.send().await.unwrap();
            let status = resp.status().as_u16();
            let text = resp.text().await.unwrap();
            let body: Value = serde_json::from_str(&text)
                .unwrap_or_else(|e| panic!("{status} not JSON ({e}): {text:?}"));
            (status, body)
        }
    };
    for (method, path, body, status, code) in [
        (
            reqwest::Method::GET,
            "/api/v1/nope",
            vec![],
            404,
            "not_found",
        ),
        (
            reqwest::Method::DELETE,
            "/api/v1/releases",
            vec![],
            405,
            "method_not_allowed",
        ),
        (
            reqwest::Method::GET,
            "/api/v1/rollouts?limit=many",
            vec![],
            400,
            "bad_request",
        ),
        (reqwest::Method::GET, "/nope", vec![], 404, "not_found"),
        (
            reqwest::Method::POST,
            "/api/v1/freezes",
            vec![b' '; 3 * 1024 * 1024],
            413,
            "payload_too_large",
        ),
    ] {
        let (got, answer) = raw(method.clone(), path, body).await;
        assert_eq!(
            (got, answer["error"]["code"].as_str()),
            (status, Some(code)),
            "{method} {path}: {answer:#}"
        );
        assert!(
            answer["error"]["message"]
                .as_str()
                .is_some_and(|m| !m.is_empty()),
            "{answer:#}"
        );
    }

    // Malformed bodies name the place.
    assert_error(
        &api.post("/api/v1/releases", "{not json").await,
        400,
        "bad_request",
        Some(""),
        "invalid request body",
    );
    assert_error(
        &api.post("/api/v1/releases", r#"{"service":"shop"}"#).await,
        400,
        "bad_request",
        None,
        "version",
    );
    assert_error(
        &api.post(
            "/api/v1/releases",
            r#"{"service":"shop","version":"v1","command":"x","colour":"red"}"#,
        )
        .await,
        400,
        "bad_request",
        None,
        "colour",
    );
    assert_error(
        &api.post(
            "/api/v1/releases",
            r#"{"service":"shop","version":7,"command":"x"}"#,
        )
        .await,
        400,
        "bad_request",
        Some("/version"),
        "invalid type",
    );
    assert_error(
        &api.post(
            "/api/v1/releases",
            r#"{"service":"shop","version":"v1","env":{"lower":"x"},"command":"x"}"#,
        )
        .await,
        400,
        "bad_request",
        Some("/env/lower"),
        "must match",
    );
    assert_error(
        &api.post("/api/v1/releases", r#"{"service":"shop","version":"v1"}"#)
            .await,
        400,
        "bad_request",
        Some("/file"),
        "exactly one",
    );
    assert_error(
        &api.post(
            "/api/v1/releases",
            r#"{"service":"shop","version":"v1","file":"/nonexistent/artifact"}"#,
        )
        .await,
        400,
        "bad_request",
        Some("/file"),
        "cannot read artifact",
    );
    assert_error(
        &api.post(
            "/api/v1/releases",
            r#"{"service":"nope","version":"v1","command":"x"}"#,
        )
        .await,
        404,
        "not_found",
        Some("/service"),
        "configured: shop",
    );
    assert_error(
        &api.post(
            "/api/v1/releases",
            r#"{"service":"shop","version":"bad version!","command":"x"}"#,
        )
        .await,
        400,
        "bad_request",
        Some("/version"),
        "letters",
    );
    let (s, _) = api.get("/api/v1/releases").await;
    assert_eq!(s, 200);
    assert_eq!(
        api.get("/api/v1/releases").await.1,
        json!([]),
        "nothing was written by the bad requests"
    );

    // Duplicates conflict.
    let (s, _) = api
        .post(
            "/api/v1/releases",
            r#"{"service":"shop","version":"v1","command":"sleep 100"}"#,
        )
        .await;
    assert_eq!(s, 201);
    assert_error(
        &api.post(
            "/api/v1/releases",
            r#"{"service":"shop","version":"v1","command":"sleep 100"}"#,
        )
        .await,
        409,
        "conflict",
        None,
        "already exists",
    );

    // Rollouts: unknown environment, unknown version, unknown rollout.
    assert_error(
        &api.post(
            "/api/v1/rollouts",
            r#"{"service":"shop","env":"staging","version":"v1"}"#,
        )
        .await,
        404,
        "not_found",
        Some("/env"),
        "configured: prod",
    );
    assert_error(
        &api.post(
            "/api/v1/rollouts",
            r#"{"service":"shop","env":"prod","version":"v9"}"#,
        )
        .await,
        404,
        "not_found",
        Some("/version"),
        "shop@v9",
    );
    assert_error(
        &api.get("/api/v1/rollouts/does-not-exist").await,
        404,
        "not_found",
        None,
        "rollout does-not-exist",
    );
    assert_error(
        &api.post(
            "/api/v1/rollouts/does-not-exist/promote",
            r#"{"reason":"x"}"#,
        )
        .await,
        404,
        "not_found",
        None,
        "rollout",
    );
    assert_error(
        &api.post("/api/v1/rollouts/x/abort", "{}").await,
        400,
        "bad_request",
        None,
        "reason",
    );
    assert_error(
        &api.get("/api/v1/nothing-here").await,
        404,
        "not_found",
        None,
        "no such API route",
    );

    // Rollback with nothing deployed, and without a reason.
    assert_error(
        &api.post(
            "/api/v1/rollback",
            r#"{"service":"shop","env":"prod","reason":" "}"#,
        )
        .await,
        400,
        "bad_request",
        Some("/reason"),
        "reason",
    );
    assert_error(
        &api.post(
            "/api/v1/rollback",
            r#"{"service":"shop","env":"prod","reason":"test"}"#,
        )
        .await,
        409,
        "conflict",
        None,
        "never been deployed",
    );
    assert_eq!(api.get("/api/v1/rollouts").await.1, json!([]));

    // Every accepted mutation is in the audit chain, which verifies.
    let (_, v) = api.get("/api/v1/audit/verify").await;
    assert_eq!(v["ok"], true, "{v:#}");
    let (_, records) = api.get("/api/v1/audit").await;
    let actions = audit_actions(&records);
    assert!(actions.contains(&"release.created"), "{actions:?}");
    assert!(actions.contains(&"rollback.requested"), "{actions:?}");
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn openapi_metrics_and_health_are_served_without_a_token() {
    let api = ApiServer::start().await;
    let doc: Value = api
        .http
        .get(format!("{}/api/openapi.json", api.base))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    for path in [
        "/api/v1/releases",
        "/api/v1/rollouts",
        "/api/v1/rollouts/{id}/promote",
        "/api/v1/rollback",
        "/api/v1/audit/verify",
    ] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    // The bearer token every call needs is declared, for generated clients.
    assert_eq!(
        doc["components"]["securitySchemes"]["bearer"]["scheme"], "bearer",
        "{:#}",
        doc["components"]["securitySchemes"]
    );
    assert_eq!(doc["security"][0]["bearer"], serde_json::json!([]));
    let metrics = api
        .http
        .get(format!("{}/metrics", api.base))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        metrics.contains("# TYPE backstop_rollouts gauge"),
        "{metrics}"
    );
    assert!(metrics.contains("backstop_audit_records"), "{metrics}");
    let health = api
        .http
        .get(format!("{}/healthz", api.base))
        .send()
        .await
        .unwrap();
    assert_eq!(health.status().as_u16(), 200);
    api.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gate_and_freeze_requests_name_their_problems_and_a_refusal_lists_every_check() {
    let api = ApiServer::start().await;
    assert_error(
        &api.post("/api/v1/freezes", r#"{"reason":"x"}"#).await,
        400,
        "bad_request",
        Some("/env"),
        "needs a scope",
    );
    assert_error(
        &api.post("/api/v1/freezes", r#"{"env":"prod","reason":" "}"#)
            .await,
        400,
        "bad_request",
        Some("/reason"),
        "needs a reason",
    );
    assert_error(
        &api.post("/api/v1/freezes", r#"{"env":"moon","reason":"x"}"#)
            .await,
        404,
        "not_found",
        Some("/env"),
        "moon",
    );
    assert_error(
        &api.post(
            "/api/v1/freezes",
            r#"{"env":"prod","reason":"x","for":"soon"}"#,
        )
        .await,
        400,
        "bad_request",
        Some("/for"),
        "invalid duration",
    );
    assert_error(
        &api.get("/api/v1/gate?service=shop&env=prod&release=v1")
            .await,
        404,
        "not_found",
        Some("/release"),
        "shop@v1",
    );
    assert_eq!(
        api.get("/api/v1/freezes?all=true").await.1["manual"],
        json!([]),
        "nothing was written by the bad requests"
    );

    let (s, _) = api
        .post(
            "/api/v1/releases",
            r#"{"service":"shop","version":"v1","command":"sleep 100"}"#,
        )
        .await;
    assert_eq!(s, 201);
    assert_error(
        &api.get("/api/v1/gate?service=shop&env=prod&release=v1&override_freeze=true")
            .await,
        400,
        "bad_request",
        Some("/reason"),
        "needs a reason",
    );
    assert_error(
        &api.post(
            "/api/v1/rollouts",
            r#"{"service":"shop","env":"prod","version":"v1","critical":true}"#,
        )
        .await,
        400,
        "bad_request",
        Some("/reason"),
        "`critical` needs a reason",
    );
    let (s, freeze) = api
        .post("/api/v1/freezes", r#"{"env":"prod","reason":"db upgrade"}"#)
        .await;
    assert_eq!(s, 201, "{freeze:#}");
    let id = freeze["id"].as_str().unwrap();

    let (s, report) = api
        .get("/api/v1/gate?service=shop&env=prod&release=v1")
        .await;
    assert_eq!(s, 200);
    assert_eq!(report["go"], false);
    assert_eq!(
        texts_of(&report["checks"], "name"),
        [
            "release",
            "lkg_backup",
            "candidate_backup",
            "freeze",
            "breaker",
            "stable_healthy",
            "active_rollout",
            "recovery",
            "incident",
            "migrations",
            "schema_way_back",
            "readiness"
        ]
    );
    let refused = api
        .post(
            "/api/v1/rollouts",
            r#"{"service":"shop","env":"prod","version":"v1"}"#,
        )
        .await;
    assert_error(
        &refused,
        409,
        "gate_blocked",
        None,
        "freeze: deployments to shop/prod are frozen: db upgrade",
    );
    assert_eq!(
        refused.1["error"]["details"]["checks"]
            .as_array()
            .unwrap()
            .len(),
        12
    );
    assert_eq!(api.get("/api/v1/rollouts").await.1, json!([]));

    let (s, ended) = api.post(&format!("/api/v1/freezes/{id}/end"), "{}").await;
    assert_eq!(s, 200, "{ended:#}");
    assert_error(
        &api.post(&format!("/api/v1/freezes/{id}/end"), "{}").await,
        409,
        "conflict",
        None,
        "already ended",
    );
    assert_error(
        &api.post("/api/v1/freezes/frz-nope/end", "{}").await,
        404,
        "not_found",
        None,
        "frz-nope",
    );
    let (_, report) = api
        .get("/api/v1/gate?service=shop&env=prod&release=v1")
        .await;
    assert_eq!(report["go"], true, "{report:#}");

    let (_, doc) = api.get("/api/openapi.json").await;
    for path in [
        "/api/v1/gate",
        "/api/v1/freezes",
        "/api/v1/freezes/{id}/end",
    ] {
        assert!(doc["paths"].get(path).is_some(), "OpenAPI lacks {path}");
    }
    let (_, records) = api.get("/api/v1/audit").await;
    let actions = audit_actions(&records);
    assert!(
        actions.contains(&"freeze.started") && actions.contains(&"freeze.ended"),
        "{actions:?}"
    );
    api.shutdown().await;
}
