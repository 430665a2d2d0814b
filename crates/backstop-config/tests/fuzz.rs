//! The parser never panics, whatever the input, and every error it returns has a position.

use proptest::prelude::*;

const STARTER_LIKE: &str = backstop_config::STARTER;

fn check(text: &str) {
    if let Err(errors) = backstop_config::parse(text, "fuzz.yaml") {
        assert!(!errors.is_empty());
        for e in &errors {
            assert!(e.line >= 1 && e.col >= 1, "{e}");
        }
    }
}

/// A runbook's bytes: refused with every error located, or accepted.
fn check_runbook(bytes: &[u8]) {
    if let Err(errors) = backstop_config::runbook::parse_runbook(bytes, "fuzz.yaml") {
        assert!(!errors.is_empty());
        for e in &errors {
            assert!(e.line >= 1 && e.col >= 1, "{e}");
        }
    }
}

const RUNBOOK: &str = "name: restore\nversion: 1\nrole: releaser\ninputs:\n  - {name: host, default: db1}\nsteps:\n  - {id: a, kind: manual, title: Stop writes}\n  - {id: b, kind: command, title: Restore, run: \"restore {host}\", timeout: 1m}\n  - {id: c, kind: verify, title: Check}\n";

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn arbitrary_runbook_bytes_never_panic(bytes in prop::collection::vec(any::<u8>(), 0..300)) {
        check_runbook(&bytes);
    }

    #[test]
    fn mutated_runbook_never_panics(cut in 0usize..300, insert in "[ a-z0-9:{}\\[\\],&*!|>#'\"\\-\n]{0,12}") {
        let mut text: String = RUNBOOK.chars().take(cut).collect();
        text.push_str(&insert);
        text.extend(RUNBOOK.chars().skip(cut + insert.len() / 2));
        check_runbook(text.as_bytes());
    }

    #[test]
    fn arbitrary_strings_never_panic(text in any::<String>()) {
        check(&text);
    }

    #[test]
    fn yaml_ish_strings_never_panic(text in "[ a-z0-9:{}\\[\\],&*!|>#'\"\\-\n]{0,200}") {
        check(&text);
    }

    #[test]
    fn mutated_starter_never_panics(cut in 0usize..2000, insert in "[ a-z0-9:{}\\[\\],&*!|>#'\"\\-\n]{0,12}") {
        let mut text: String = STARTER_LIKE.chars().take(cut).collect();
        text.push_str(&insert);
        text.extend(STARTER_LIKE.chars().skip(cut + insert.len() / 2));
        check(&text);
    }
}

#[test]
fn the_runbook_sample_is_valid() {
    let rb = backstop_config::runbook::parse_runbook(RUNBOOK.as_bytes(), "rb.yaml").unwrap();
    assert_eq!(rb.steps.len(), 3);
}

#[test]
fn alias_bomb_is_rejected_not_expanded() {
    let mut text = String::from("a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n");
    for i in 1..12 {
        let p = i - 1;
        text.push_str(&format!(
            "a{i}: &a{i} [*a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}, *a{p}]\n"
        ));
    }
    let errors = backstop_config::parse(&text, "bomb.yaml").expect_err("rejected");
    assert!(errors.to_string().contains("too many nodes"), "{errors}");
}

#[test]
fn deep_nesting_is_rejected() {
    let text = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
    let errors = backstop_config::parse(&text, "deep.yaml").expect_err("rejected");
    assert!(!errors.is_empty());
}

/// One generated service: knobs drawn mostly from valid values, sometimes from invalid ones.
#[derive(Debug, Clone)]
struct GenService {
    bad_name: bool,
    tier: i64,
    mttr: Option<&'static str>,
    sla: Option<&'static str>,
    steps: Option<Vec<(i64, Option<&'static str>)>>,
    all_at_once: bool,
    shared_port: bool,
    command: &'static str,
    /// 0 builtin, 1 haproxy, 2 nginx, 3 command router, 4 haproxy without its block.
    router: u8,
    blue_green: bool,
    command_deployer: bool,
    regulated: bool,
    severity: Option<(&'static str, &'static str)>,
}

fn duration() -> impl Strategy<Value = &'static str> {
    prop_oneof![
        20 => prop::sample::select(vec!["30s", "5m", "15m", "1h", "4h", "1day"]),
        1 => prop::sample::select(vec!["0s", "soon", "5 parsecs"]),
    ]
}

fn valid_steps() -> impl Strategy<Value = Vec<(i64, Option<&'static str>)>> {
    prop::collection::btree_set(1i64..100, 0..4).prop_map(|weights| {
        let mut steps: Vec<(i64, Option<&'static str>)> =
            weights.into_iter().map(|w| (w, Some("30s"))).collect();
        steps.push((100, None));
        steps
    })
}

fn gen_service() -> impl Strategy<Value = GenService> {
    (
        prop::bool::weighted(0.03),
        prop_oneof![20 => 0i64..4, 1 => -1i64..9],
        prop::option::weighted(0.3, duration()),
        prop::option::weighted(0.3, duration()),
        prop_oneof![
            10 => Just(None),
            8 => valid_steps().prop_map(Some),
            1 => prop::collection::vec((-10i64..130, prop::option::of(duration())), 0..5).prop_map(Some),
        ],
        prop::bool::weighted(0.1),
        prop::bool::weighted(0.03),
        prop_oneof![
            20 => prop::sample::select(vec!["./app --port {port}", "{artifact} --port={port} --env {env}"]),
            1 => prop::sample::select(vec!["./app", "./app {port} {nope}"]),
        ],
        (
            prop_oneof![12 => Just(0u8), 2 => Just(1u8), 2 => Just(2u8), 2 => Just(3u8), 1 => Just(4u8)],
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.15),
            prop::bool::weighted(0.1),
            prop::option::weighted(
                0.3,
                (
                    prop::sample::select(vec!["critical", "major", "minor"]),
                    prop::sample::select(vec![
                        "rollback",
                        "notify",
                        "{rollback_unless_acknowledged: 1m}",
                        "{rollback_unless_acknowledged: 2h}",
                    ]),
                ),
            ),
        ),
    )
        .prop_map(
            |(
                bad_name,
                tier,
                mttr,
                sla,
                steps,
                all_at_once,
                shared_port,
                command,
                (router, blue_green, command_deployer, regulated, severity),
            )| GenService {
                bad_name,
                tier,
                mttr,
                sla,
                steps,
                all_at_once,
                shared_port,
                command,
                router,
                blue_green,
                command_deployer,
                regulated,
                severity,
            },
        )
}

fn render(services: &[GenService]) -> String {
    let mut out = String::from("services:\n");
    for (i, s) in services.iter().enumerate() {
        let name = if s.bad_name {
            "Bad_Name".to_owned()
        } else {
            format!("svc-{i}")
        };
        out.push_str(&format!(
            "  - name: {name}\n    owner: team\n    tier: {}\n",
            s.tier
        ));
        if s.mttr.is_some() || s.sla.is_some() {
            out.push_str("    objectives:\n");
            if let Some(m) = s.mttr {
                out.push_str(&format!("      mttr: {m}\n"));
            }
            if let Some(r) = s.sla {
                out.push_str(&format!("      rollback_sla: {r}\n"));
            }
        }
        if s.command_deployer {
            out.push_str("    run: {kind: command, deploy: ./d.sh, stop: ./s.sh}\n");
        } else {
            out.push_str(&format!("    run:\n      command: \"{}\"\n", s.command));
        }
        match s.router {
            1 => out.push_str("    traffic:\n      router: haproxy\n      haproxy: {socket: /run/h.sock, backend: b}\n"),
            2 => out.push_str("    traffic:\n      router: nginx\n      nginx: {upstream_file: /tmp/u.conf, upstream: u}\n"),
            3 => out.push_str("    traffic:\n      router: command\n      command: {apply: ./r.sh}\n"),
            4 => out.push_str("    traffic:\n      router: haproxy\n"),
            _ => {}
        }
        if let Some((severity, action)) = s.severity {
            out.push_str(&format!("    severity:\n      {severity}: {action}\n"));
        }
        if s.all_at_once || s.blue_green || s.steps.is_some() {
            out.push_str("    rollout:\n");
            if s.blue_green {
                out.push_str("      strategy: blue-green\n");
            } else if s.all_at_once {
                out.push_str("      strategy: all-at-once\n");
            }
            if let Some(steps) = &s.steps {
                out.push_str("      steps:\n");
                if steps.is_empty() {
                    out.push_str("        []\n");
                }
                for (w, hold) in steps {
                    match hold {
                        Some(h) => out.push_str(&format!("        - {{weight: {w}, for: {h}}}\n")),
                        None => out.push_str(&format!("        - {{weight: {w}}}\n")),
                    }
                }
            }
        }
        out.push_str(&format!(
            "    environments:\n      - name: prod\n        listen: 127.0.0.1:{}\n",
            if s.shared_port { 7000 } else { 7001 + i }
        ));
        if s.regulated {
            out.push_str("        regulated: true\n");
        }
    }
    out
}

/// Whatever mix of valid and invalid knobs: either every error is located, or the result
/// satisfies every rule the validator promises (and a fair share of cases are valid).
#[test]
fn generated_configs_are_rejected_with_positions_or_satisfy_the_rules() {
    use proptest::test_runner::{Config as RunnerConfig, TestCaseError, TestRunner};
    use std::cell::Cell;

    let valid = Cell::new(0usize);
    let invalid = Cell::new(0usize);
    let mut runner = TestRunner::new(RunnerConfig {
        cases: 400,
        failure_persistence: None,
        ..RunnerConfig::default()
    });
    let result = runner.run(&prop::collection::vec(gen_service(), 1..4), |services| {
        let text = render(&services);
        match backstop_config::parse(&text, "gen.yaml") {
            Err(errors) => {
                invalid.set(invalid.get() + 1);
                prop_assert!(!errors.is_empty());
                for e in &errors {
                    prop_assert!(
                        e.line >= 1 && e.line <= text.lines().count() + 1,
                        "{e}\n{text}"
                    );
                    prop_assert!(!e.message.is_empty());
                }
            }
            Ok(config) => {
                valid.set(valid.get() + 1);
                let mut names = std::collections::HashSet::new();
                for svc in &config.services {
                    prop_assert!(
                        names.insert(svc.name.clone()),
                        "duplicate name accepted\n{text}"
                    );
                    prop_assert!(svc.tier <= 3);
                    let (mttr, sla) = (svc.objectives.mttr, svc.objectives.rollback_sla);
                    prop_assert!(mttr.is_some() && sla.is_some());
                    prop_assert!(sla <= mttr, "rollback_sla > mttr accepted\n{text}");
                    let steps = &svc.rollout.steps;
                    prop_assert!(!steps.is_empty());
                    prop_assert_eq!(steps.last().map(|s| s.weight), Some(100.0));
                    for pair in steps.windows(2) {
                        prop_assert!(
                            pair[0].weight < pair[1].weight,
                            "weights not increasing accepted\n{text}"
                        );
                        prop_assert!(
                            pair[0].hold.is_some(),
                            "step without `for` accepted\n{text}"
                        );
                    }
                    prop_assert!(steps.iter().all(|s| s.weight > 0.0));
                    match &svc.run.deployer {
                        backstop_config::Deployer::Process { command } => {
                            prop_assert!(backstop_config::placeholders(command).contains(&"port"))
                        }
                        backstop_config::Deployer::Command(_) => {
                            prop_assert!(svc.run.command_scripts().is_some())
                        }
                    }
                    // The typed traffic setting holds its router's block by construction.
                    let block = match svc.traffic.router() {
                        backstop_config::Router::Builtin => true,
                        backstop_config::Router::Haproxy => {
                            matches!(svc.traffic, backstop_config::Traffic::Haproxy(_))
                        }
                        backstop_config::Router::Nginx => {
                            matches!(svc.traffic, backstop_config::Traffic::Nginx(_))
                        }
                        backstop_config::Router::Command => {
                            matches!(svc.traffic, backstop_config::Traffic::Command(_))
                        }
                    };
                    prop_assert!(block, "router without its block accepted\n{text}");
                    prop_assert_eq!(
                        svc.rollout.rollback_window.is_some(),
                        svc.rollout.strategy == backstop_config::Strategy::BlueGreen
                    );
                    for severity in backstop_config::Severity::ALL {
                        prop_assert!(svc.severity.get(severity).is_some());
                        let action = svc.severity_action(severity);
                        if svc.is_regulated() {
                            prop_assert_eq!(action, backstop_config::SeverityAction::Rollback);
                        }
                        if let backstop_config::SeverityAction::RollbackUnlessAcknowledged(ack) =
                            action
                        {
                            for env in &svc.environments {
                                prop_assert!(
                                    ack < svc.rollback_sla_for(&env.name),
                                    "ack window over the SLA accepted\n{text}"
                                );
                            }
                        }
                    }
                }
                let yaml = config.to_yaml_effective();
                let again = backstop_config::parse(&yaml, "effective.yaml");
                if !again.as_ref().is_ok_and(|c| *c == config) {
                    return Err(TestCaseError::fail(format!(
                        "effective config does not round-trip:\n{yaml}\n{again:?}"
                    )));
                }
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("{e}");
    }
    eprintln!(
        "generated: {} valid, {} invalid",
        valid.get(),
        invalid.get()
    );
    assert!(
        valid.get() >= 10,
        "too few valid cases to exercise the rules: {} valid, {} invalid",
        valid.get(),
        invalid.get()
    );
    assert!(
        invalid.get() >= 10,
        "too few invalid cases: {} valid, {} invalid",
        valid.get(),
        invalid.get()
    );
}
