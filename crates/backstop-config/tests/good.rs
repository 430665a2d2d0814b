//! Valid configs: defaults filled in, analysis merged, effective output parses back the same.

use std::path::Path;
use std::time::Duration;

use backstop_config::{
    BreakerScope, CommandRouter, Config, Deployer, DeployerKind, HaproxyRouter, HaproxySocket,
    NginxRouter, Router, Run, Service, Severity, SeverityAction, Strategy, Traffic, WebhookFormat,
};
use backstop_judge::JudgeKind;

/// What a critical, a major and a minor regression of `svc` lead to, in that order.
fn severity_actions(svc: &Service) -> [SeverityAction; 3] {
    [Severity::Critical, Severity::Major, Severity::Minor].map(|s| svc.severity_action(s))
}

/// The `haproxy` block of a service's traffic, if its router is HAProxy.
fn haproxy_block(traffic: &Traffic) -> Option<&HaproxyRouter> {
    match traffic {
        Traffic::Haproxy(h) => Some(h),
        _ => None,
    }
}

/// The `nginx` block of a service's traffic, if its router is nginx.
fn nginx_block(traffic: &Traffic) -> Option<&NginxRouter> {
    match traffic {
        Traffic::Nginx(n) => Some(n),
        _ => None,
    }
}

/// The `command` block of a service's traffic, if its router is a command.
fn command_block(traffic: &Traffic) -> Option<&CommandRouter> {
    match traffic {
        Traffic::Command(c) => Some(c),
        _ => None,
    }
}

/// The process deployer's command template; empty for a command deployer.
fn process_command(run: &Run) -> &str {
    match &run.deployer {
        Deployer::Process { command } => command,
        Deployer::Command(_) => "",
    }
}

fn good(name: &str) -> Config {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/good")
        .join(name);
    backstop_config::load(&path).unwrap_or_else(|e| panic!("{name} should be valid:\n{e}"))
}

fn mins(m: u64) -> Duration {
    Duration::from_secs(m * 60)
}

#[test]
fn starter_parses_cleanly() {
    let config = backstop_config::parse(backstop_config::STARTER, "starter.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    let svc = config.service("my-service").expect("starter service");
    assert_eq!(svc.tier, 1);
    assert_eq!(config.breaker().trips_after, 3);
    assert_eq!(
        svc.severity_action(Severity::Minor),
        SeverityAction::Rollback
    );
    assert_eq!(svc.environments.len(), 2);
    assert_eq!(svc.rollback_sla_for("prod"), mins(5));
    assert_eq!(svc.rollback_sla_for("staging"), mins(10));
    assert!(svc.environment("prod").is_some_and(|e| e.regulated));
}

#[test]
fn minimal_config_gets_every_default() {
    let config = good("minimal.yaml");
    let svc = config.service("web").expect("web");
    assert!(config.service("nope").is_none());
    // Tier 2 defaults.
    assert_eq!(svc.objectives.mttr, Some(mins(240)));
    assert_eq!(svc.objectives.rollback_sla, Some(mins(30)));
    assert_eq!(svc.rollback_sla_for("prod"), mins(30));
    assert_eq!(svc.mttr(), mins(240));
    assert_eq!(svc.traffic.router(), Router::Builtin);
    assert_eq!(svc.rollout.strategy, Strategy::Canary);
    let weights: Vec<f64> = svc.rollout.steps.iter().map(|s| s.weight).collect();
    assert_eq!(weights, vec![10.0, 50.0, 100.0]);
    assert_eq!(svc.rollout.steps[0].hold, Some(Duration::from_secs(30)));
    assert_eq!(svc.rollout.steps[2].hold, None);
    assert_eq!(svc.run.health.http, "/healthz");
    assert_eq!(svc.run.health.timeout, Duration::from_secs(2));
    assert_eq!(svc.run.health.interval, Duration::from_secs(1));
    assert_eq!(svc.run.health.start_timeout, Duration::from_secs(30));
    assert_eq!(svc.run.scale_down_delay, Duration::from_secs(5));
    assert!(svc.run.env.is_empty());
    assert_eq!(svc.analysis, backstop_judge::JudgeSettings::default());
    let env = svc.environment("prod").expect("prod");
    assert_eq!(
        env.listen.map(|a| a.to_string()).as_deref(),
        Some("127.0.0.1:7000")
    );
    assert!(!env.regulated);
    // Issue 4 defaults.
    assert_eq!(config.breaker().scope, BreakerScope::Environment);
    assert_eq!(config.breaker().trips_after, 3);
    assert_eq!(config.breaker().within, mins(30));
    assert_eq!(svc.run.kind(), DeployerKind::Process);
    assert!(svc.run.command_scripts().is_none());
    assert!(haproxy_block(&svc.traffic).is_none() && nginx_block(&svc.traffic).is_none());
    assert_eq!(svc.rollout.rollback_window, None);
    assert_eq!(svc.breaker.failed_checks, 3);
    assert!(svc.notify.is_empty());
    // Tier 2 severities.
    assert_eq!(
        severity_actions(svc),
        [
            SeverityAction::Rollback,
            SeverityAction::RollbackUnlessAcknowledged(mins(5)),
            SeverityAction::Notify,
        ]
    );
}

#[test]
fn analysis_is_deep_merged_over_defaults() {
    let config = good("analysis_override.yaml");
    let checkout = config.service("checkout").expect("checkout");
    assert_eq!(checkout.analysis.judge, JudgeKind::Threshold);
    assert!((checkout.analysis.alpha - 0.05).abs() < 1e-12);
    assert_eq!(
        checkout.analysis.interval,
        Duration::from_secs(2),
        "service value wins"
    );
    let search = config.service("search").expect("search");
    assert_eq!(
        search.analysis.interval,
        Duration::from_secs(10),
        "default applies"
    );
    // Objectives: mttr given, rollback_sla from tier 0; environment override.
    assert_eq!(checkout.objectives.mttr, Some(mins(10)));
    assert_eq!(checkout.objectives.rollback_sla, Some(mins(5)));
    assert_eq!(checkout.rollback_sla_for("prod"), mins(2));
    assert_eq!(checkout.rollback_sla_for("unknown-env"), mins(5));
    assert_eq!(checkout.rollout.strategy, Strategy::AllAtOnce);
    assert_eq!(checkout.rollout.steps.len(), 1);
    assert_eq!(checkout.rollout.steps[0].weight, 100.0);
    assert_eq!(
        checkout.run.env.get("WORKERS").map(String::as_str),
        Some("8")
    );
    assert_eq!(search.objectives.mttr, Some(mins(24 * 60)));
}

#[test]
fn effective_yaml_parses_back_to_the_same_config() {
    for name in [
        "minimal.yaml",
        "analysis_override.yaml",
        "recovery.yaml",
        "params.yaml",
    ] {
        let mut config = good(name);
        // Where the file was read from is not part of the text.
        config.base_dir = std::path::PathBuf::new();
        let yaml = config.to_yaml_effective();
        let again = backstop_config::parse(&yaml, "effective.yaml")
            .unwrap_or_else(|e| panic!("{name}: {e}\n{yaml}"));
        assert_eq!(config, again, "{name}:\n{yaml}");
        let json: serde_json::Value =
            serde_json::from_str(&config.to_json_effective()).expect("json");
        assert!(json["services"][0]["objectives"]["mttr"].is_string());
    }
}

#[test]
fn schema_describes_the_file() {
    let schema = backstop_config::schema();
    assert_eq!(schema["title"], "backstop.yaml");
    assert_eq!(schema["additionalProperties"], false);
    assert_eq!(schema["required"], serde_json::json!(["services"]));
    let service = &schema["$defs"]["Service"];
    assert_eq!(service["additionalProperties"], false);
    assert_eq!(service["properties"]["tier"]["maximum"], 3);
    assert!(
        service["properties"]["owner"]["description"]
            .as_str()
            .is_some_and(|d| !d.is_empty())
    );
    assert_eq!(
        schema["$defs"]["Run"]["properties"]["scale_down_delay"]["format"],
        "duration"
    );
    // Issue 4 blocks, with their allowed values and descriptions.
    let routers: Vec<&str> = schema["$defs"]["Router"]["oneOf"]
        .as_array()
        .expect("router variants")
        .iter()
        .filter_map(|v| v["const"].as_str())
        .collect();
    assert_eq!(routers, ["builtin", "haproxy", "nginx", "command"]);
    for (def, prop) in [
        ("Defaults", "breaker"),
        ("Service", "severity"),
        ("Service", "notify"),
        ("Run", "kind"),
        ("Run", "deploy"),
        ("RolloutSpec", "rollback_window"),
        ("HaproxyRouter", "socket"),
        ("NginxRouter", "upstream_file"),
    ] {
        assert!(
            schema["$defs"][def]["properties"][prop]["description"]
                .as_str()
                .is_some_and(|d| !d.is_empty()),
            "{def}.{prop} has no description"
        );
    }
    // The judge's settings are embedded, not copied.
    assert!(schema["$defs"]["JudgeSettings"]["properties"]["judge"].is_object());
}

#[test]
fn recovery_settings_are_typed_with_defaults() {
    let config = good("recovery.yaml");
    let breaker = config.breaker();
    assert_eq!(
        (breaker.scope, breaker.trips_after, breaker.within),
        (BreakerScope::All, 2, mins(60))
    );

    let checkout = config.service("checkout").expect("checkout");
    assert_eq!(checkout.traffic.router(), Router::Haproxy);
    let haproxy = haproxy_block(&checkout.traffic).expect("haproxy block");
    assert_eq!(
        haproxy.socket,
        HaproxySocket::Unix("/run/haproxy/admin.sock".into())
    );
    assert_eq!(
        (
            haproxy.backend.as_str(),
            haproxy.stable_server.as_str(),
            haproxy.canary_server.as_str()
        ),
        ("checkout", "stable", "canary")
    );
    assert_eq!(checkout.environment("prod").and_then(|e| e.listen), None);
    assert_eq!(checkout.breaker.failed_checks, 5);
    // Tier 0 and regulated: every severity rolls back.
    assert!(checkout.is_regulated());
    for severity in Severity::ALL {
        assert_eq!(
            checkout.severity_action(severity),
            SeverityAction::Rollback,
            "{severity}"
        );
    }
    assert_eq!(checkout.notify.len(), 2);
    assert_eq!(checkout.notify[0].format, WebhookFormat::Slack);
    assert_eq!(checkout.notify[0].secret_env.as_deref(), Some("SLACK_HMAC"));
    assert_eq!(checkout.notify[1].format, WebhookFormat::Json);
    assert_eq!(checkout.notify[1].secret_env, None);

    let search = config.service("search").expect("search");
    assert_eq!(search.run.kind(), DeployerKind::Command);
    assert!(process_command(&search.run).is_empty());
    let scripts = search.run.command_scripts().expect("command deployer");
    assert_eq!(scripts.deploy, "./deploy.sh");
    assert_eq!(scripts.stop, "./stop.sh");
    assert_eq!(scripts.health.as_deref(), Some("./check.sh"));
    assert_eq!(scripts.timeout, Duration::from_secs(60));
    assert_eq!(scripts.retries, 2);
    assert_eq!(
        search.run.env.get("REGION").map(String::as_str),
        Some("eu-west-1")
    );
    let nginx = nginx_block(&search.traffic).expect("nginx block");
    assert_eq!(
        nginx.upstream_file,
        Path::new("/etc/nginx/conf.d/search-upstream.conf")
    );
    assert_eq!(nginx.upstream, "search");
    assert_eq!(nginx.test_command, "nginx -t");
    assert_eq!(nginx.reload_command, "nginx -s reload");
    assert_eq!(search.rollout.strategy, Strategy::BlueGreen);
    assert_eq!(search.rollout.rollback_window, Some(mins(5)));
    assert_eq!(search.rollout.steps.len(), 1);
    assert_eq!(search.rollout.steps[0].weight, 100.0);
    // Tier 2 defaults, minor overridden.
    assert_eq!(
        severity_actions(search),
        [
            SeverityAction::Rollback,
            SeverityAction::RollbackUnlessAcknowledged(mins(5)),
            SeverityAction::RollbackUnlessAcknowledged(mins(2)),
        ]
    );

    let geo = config.service("geo").expect("geo");
    let scripts = geo.run.command_scripts().expect("command deployer");
    assert_eq!(
        (scripts.timeout, scripts.retries, scripts.health.as_deref()),
        (mins(2), 0, None)
    );
    assert_eq!(geo.traffic.router(), Router::Command);
    let command = command_block(&geo.traffic).expect("command router");
    assert_eq!(command.apply, "./route.sh");
    assert_eq!(command.timeout, Duration::from_secs(30));
    assert_eq!(geo.rollout.rollback_window, Some(mins(15)));
    assert_eq!(
        geo.environment("prod")
            .and_then(|e| e.listen)
            .map(|a| a.port()),
        Some(7300)
    );
    // Tier 3: critical would wait 5m for an acknowledgement, which does not fit the 3m SLA of
    // `eu`: the default becomes an immediate rollback. Major is written; minor is the default.
    assert_eq!(
        severity_actions(geo),
        [
            SeverityAction::Rollback,
            SeverityAction::Rollback,
            SeverityAction::Notify,
        ]
    );

    let admin = config.service("admin").expect("admin");
    assert_eq!(
        haproxy_block(&admin.traffic).map(|h| h.socket.clone()),
        Some(HaproxySocket::Tcp("lb.internal:9999".to_owned()))
    );
    // Tier 3 defaults.
    assert_eq!(
        severity_actions(admin)[..2],
        [
            SeverityAction::RollbackUnlessAcknowledged(mins(5)),
            SeverityAction::Notify,
        ]
    );
}

#[test]
fn haproxy_socket_forms() {
    assert_eq!(
        HaproxySocket::parse("/run/haproxy.sock"),
        Ok(HaproxySocket::Unix("/run/haproxy.sock".into()))
    );
    assert_eq!(
        HaproxySocket::parse("[::1]:9999"),
        Ok(HaproxySocket::Tcp("[::1]:9999".to_owned()))
    );
    assert!(HaproxySocket::parse("haproxy.sock").is_err_and(|e| e.contains("relative")));
    assert!(HaproxySocket::parse("./admin.sock").is_err_and(|e| e.contains("relative")));
    assert!(HaproxySocket::parse("host:0").is_err_and(|e| e.contains("port")));
    assert_eq!(
        HaproxySocket::parse("127.0.0.1:9999").map(|s| s.to_string()),
        Ok("127.0.0.1:9999".to_owned())
    );
}

#[test]
fn regulated_service_defaults_to_rollback_everywhere() {
    let text = "services:\n  - name: a\n    owner: o\n    tier: 3\n    run: {command: \"x {port}\"}\n    environments:\n      - {name: staging, listen: \"127.0.0.1:1\"}\n      - {name: prod, listen: \"127.0.0.1:2\", regulated: true}\n";
    let config = backstop_config::parse(text, "r.yaml").unwrap_or_else(|e| panic!("{e}"));
    let svc = config.service("a").expect("a");
    for severity in Severity::ALL {
        assert_eq!(svc.severity_action(severity), SeverityAction::Rollback);
        assert_eq!(svc.severity.get(severity), Some(SeverityAction::Rollback));
    }
}

#[test]
fn freeze_windows_on_services_and_environments() {
    let config = good("freezes.yaml");
    let svc = config.service("checkout").expect("service");
    assert_eq!(svc.freeze.len(), 1);
    assert_eq!(
        svc.freeze[0].describe(),
        "every Fri 16:00 UTC for 2days 16h"
    );
    let prod = svc.environment("prod").expect("env");
    let holidays = prod.freeze[0].schedule().expect("valid window");
    // 2026-12-24T12:00:00Z is inside the holidays.
    assert!(holidays.occurrence_at(1_798_113_600_000).is_some());
    let again = backstop_config::parse(&config.to_yaml_effective(), "effective.yaml")
        .unwrap_or_else(|e| panic!("{e}"));
    // `parse` has no file, so no folder to resolve params from.
    let mut config = config;
    config.base_dir = std::path::PathBuf::new();
    assert_eq!(again, config);
}

#[test]
fn params_are_read_with_secrets_by_reference_and_paths_relative_to_the_file() {
    let config = good("params.yaml");
    assert!(config.base_dir.ends_with("tests/good"));
    let env = config.services[0].environment("prod").expect("prod");
    assert_eq!(env.params.files, ["config/prod.toml"]);
    assert_eq!(env.params.folders, ["config/prod.d"]);
    assert_eq!(
        env.params.env.get("LOG_LEVEL").map(String::as_str),
        Some("info")
    );
    assert_eq!(
        env.params.secrets.get("DB_PASSWORD"),
        Some(&backstop_config::SecretRef::Env("PROD_DB_PASSWORD".into()))
    );
    assert_eq!(
        env.params.secrets.get("API_KEY"),
        Some(&backstop_config::SecretRef::File("secrets/api_key".into()))
    );
    let staging = config.services[0].environment("staging").expect("staging");
    assert!(staging.params.is_empty());
}
