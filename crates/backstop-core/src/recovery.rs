//! Recovery plans: ordered, typed, idempotent steps. A plan is written to the journal in full
//! before its first step runs; each step's intent and outcome are journaled around it, so a
//! controller that crashes resumes at the first step not marked done and re-runs it safely.

use serde::{Deserialize, Serialize};

/// One step of a recovery. Every kind is idempotent against the real target: executing it again
/// after a crash checks the target's state first and does nothing more when it already holds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum StepKind {
    /// Start (or adopt, when already running) an instance of a release.
    StartInstance {
        instance_id: String,
        release_id: String,
    },
    /// Send all traffic to one instance; the canary route is removed.
    ShiftTraffic {
        instance_id: String,
        release_id: String,
    },
    /// Stop an instance's whole process group.
    StopInstance { instance_id: String },
    /// Mark a release bad so it is not promoted again.
    MarkReleaseBad { release_id: String, reason: String },
    /// Make a release the environment's last known good.
    SetLkg {
        release_id: String,
        instance_id: String,
    },
    /// Wait until an instance answers its health check (bounded by the service's start timeout),
    /// starting it again when its process is gone. Every `ShiftTraffic` comes after one.
    WaitHealthy { instance_id: String },
    /// Watch the restored version's traffic for `seconds` and record what users now get
    /// (requests, errors): evidence that the recovery worked, kept with the journal.
    VerifySignals { release_id: String, seconds: u64 },
    /// Run a user command (`sh -c`); it gets the step's idempotency key in
    /// `BACKSTOP_IDEMPOTENCY_KEY` so it can be idempotent too.
    RunHook { name: String, command: String },
    /// Run the down of one applied migration on the environment's database, exactly as kept in
    /// the database's own history at apply time (its sha256 is checked before it runs). The
    /// down and the removal of its history row commit in one transaction, so running the step
    /// again after a crash finds the migration already undone and does nothing.
    RunMigrationDown {
        version: String,
        name: String,
        down_sha256: String,
    },
    /// Put the environment's config files and folders back as config snapshot `snapshot`
    /// (manifest digest `manifest`): files that already match are left alone, so running it
    /// again is a no-op.
    RestoreConfig { snapshot: i64, manifest: String },
    /// Remove every key matching `pattern` from a Redis server (`SCAN` + `UNLINK`, `batch` at a
    /// time): the bad version's cache entries. The address is given, or read from the daemon's
    /// variable `address_env` (a URL with a password never enters the journal). Removing what
    /// matches again is harmless.
    SweepRedis {
        name: String,
        address: Option<String>,
        address_env: Option<String>,
        pattern: String,
        batch: u32,
    },
    /// `PURGE url` (a CDN or HTTP cache); purging again is harmless.
    PurgeHttp { name: String, url: String },
}

impl StepKind {
    pub fn name(&self) -> &'static str {
        match self {
            StepKind::StartInstance { .. } => "start_instance",
            StepKind::ShiftTraffic { .. } => "shift_traffic",
            StepKind::StopInstance { .. } => "stop_instance",
            StepKind::MarkReleaseBad { .. } => "mark_release_bad",
            StepKind::SetLkg { .. } => "set_lkg",
            StepKind::RunHook { .. } => "run_hook",
            StepKind::WaitHealthy { .. } => "wait_healthy",
            StepKind::VerifySignals { .. } => "verify_signals",
            StepKind::RunMigrationDown { .. } => "run_migration_down",
            StepKind::RestoreConfig { .. } => "restore_config",
            StepKind::SweepRedis { .. } => "sweep_redis",
            StepKind::PurgeHttp { .. } => "purge_http",
        }
    }
}

/// Plan for a rollout whose canary failed while the LKG instance still serves: traffic first
/// (users stop seeing the bad version), then the canary stops, then bookkeeping. Health before
/// traffic: all traffic goes to the stable instance only once it answers its health check
/// (restarted if it died meanwhile), never to a dead or still-starting one.
pub fn plan_canary_rollback(
    stable_instance_id: &str,
    lkg_release_id: &str,
    canary_instance_id: Option<&str>,
    bad_release_id: &str,
    reason: &str,
) -> Vec<StepKind> {
    let mut plan = vec![
        StepKind::WaitHealthy {
            instance_id: stable_instance_id.to_string(),
        },
        StepKind::ShiftTraffic {
            instance_id: stable_instance_id.to_string(),
            release_id: lkg_release_id.to_string(),
        },
    ];
    if let Some(canary) = canary_instance_id {
        plan.push(StepKind::StopInstance {
            instance_id: canary.to_string(),
        });
    }
    plan.push(StepKind::MarkReleaseBad {
        release_id: bad_release_id.to_string(),
        reason: reason.to_string(),
    });
    plan
}

/// Plan for rolling back a release that was already promoted: the previous LKG is started
/// again, passes its health check, and takes the traffic before the bad version stops.
pub fn plan_redeploy_previous(
    new_instance_id: &str,
    previous_release_id: &str,
    current_instance_id: Option<&str>,
    current_release_id: &str,
    reason: &str,
) -> Vec<StepKind> {
    let mut plan = vec![
        StepKind::StartInstance {
            instance_id: new_instance_id.to_string(),
            release_id: previous_release_id.to_string(),
        },
        StepKind::WaitHealthy {
            instance_id: new_instance_id.to_string(),
        },
        StepKind::ShiftTraffic {
            instance_id: new_instance_id.to_string(),
            release_id: previous_release_id.to_string(),
        },
    ];
    if let Some(current) = current_instance_id {
        plan.push(StepKind::StopInstance {
            instance_id: current.to_string(),
        });
    }
    plan.push(StepKind::MarkReleaseBad {
        release_id: current_release_id.to_string(),
        reason: reason.to_string(),
    });
    plan.push(StepKind::SetLkg {
        release_id: previous_release_id.to_string(),
        instance_id: new_instance_id.to_string(),
    });
    plan
}

/// Ends a plan with its checks: the instance now serving answers its health check, then the
/// restored version's live traffic is watched for `seconds`.
pub fn with_verification(
    mut plan: Vec<StepKind>,
    serving_instance: &str,
    restored_release: &str,
    seconds: u64,
) -> Vec<StepKind> {
    plan.push(StepKind::WaitHealthy {
        instance_id: serving_instance.to_string(),
    });
    plan.push(StepKind::VerifySignals {
        release_id: restored_release.to_string(),
        seconds,
    });
    plan
}

/// Adds the service's hooks to a plan: `before_rollback` first, `after_rollback` right after the
/// last step that stops an instance (or at the end).
pub fn with_hooks(
    mut plan: Vec<StepKind>,
    before: Option<&str>,
    after: Option<&str>,
) -> Vec<StepKind> {
    if let Some(cmd) = after {
        let at = plan
            .iter()
            .rposition(|s| matches!(s, StepKind::StopInstance { .. }))
            .map_or(plan.len(), |i| i + 1);
        plan.insert(
            at,
            StepKind::RunHook {
                name: "after_rollback".into(),
                command: cmd.to_string(),
            },
        );
    }
    if let Some(cmd) = before {
        plan.insert(
            0,
            StepKind::RunHook {
                name: "before_rollback".into(),
                command: cmd.to_string(),
            },
        );
    }
    plan
}

/// Adds the downs a schema-aware plan decided on (newest first). They run where the release
/// being restored needs them: before it starts when it is started anew; otherwise (it already
/// serves, as in a canary rollback) once the bad version no longer runs, because the bad
/// version needs the newer schema until then.
pub fn with_schema_downs(
    mut plan: Vec<StepKind>,
    downs: &[crate::schema::AppliedMigration],
) -> Vec<StepKind> {
    let steps = downs.iter().map(|m| StepKind::RunMigrationDown {
        version: m.version.clone(),
        name: m.name.clone(),
        down_sha256: m.down_sha256.clone().unwrap_or_default(),
    });
    let at = plan
        .iter()
        .position(|s| matches!(s, StepKind::StartInstance { .. }))
        .or_else(|| {
            plan.iter()
                .rposition(|s| matches!(s, StepKind::StopInstance { .. }))
                .map(|i| i + 1)
        })
        .unwrap_or(0);
    plan.splice(at..at, steps);
    plan
}

/// Adds a config restore to a plan back to the LKG: before the LKG instance starts (it reads its
/// config then), or, when the LKG still runs, right after traffic is back on it (users first).
pub fn with_config_restore(
    mut plan: Vec<StepKind>,
    snapshot: i64,
    manifest: &str,
) -> Vec<StepKind> {
    let at = plan
        .iter()
        .position(|s| matches!(s, StepKind::StartInstance { .. }))
        .or_else(|| {
            plan.iter()
                .position(|s| matches!(s, StepKind::ShiftTraffic { .. }))
                .map(|i| i + 1)
        })
        .unwrap_or(0);
    plan.insert(
        at,
        StepKind::RestoreConfig {
            snapshot,
            manifest: manifest.to_string(),
        },
    );
    plan
}

/// What a recovery puts back, and what it takes away.
#[derive(Debug, Clone, Copy)]
pub enum Restore<'a> {
    /// A canary failed while the last known good still serves: traffic goes back to it.
    Canary {
        stable_instance_id: &'a str,
        lkg_release_id: &'a str,
        canary_instance_id: Option<&'a str>,
        bad_release_id: &'a str,
    },
    /// A canary failed with no last known good instance to go back to: it is only stopped.
    DiscardCanary {
        canary_instance_id: Option<&'a str>,
        bad_release_id: &'a str,
    },
    /// A promoted release goes back to the previous last known good, started anew (or adopted
    /// when it still runs).
    Previous {
        new_instance_id: &'a str,
        previous_release_id: &'a str,
        current_instance_id: Option<&'a str>,
        current_release_id: &'a str,
    },
}

/// Everything a recovery plan is built from, on the automatic and the manual path alike.
#[derive(Debug, Clone, Copy)]
pub struct PlanInput<'a> {
    pub restore: Restore<'a>,
    /// Why, recorded with the release marked bad.
    pub reason: &'a str,
    /// The proven downs the schema decision asks for (newest first).
    pub schema_downs: &'a [crate::schema::AppliedMigration],
    /// The config snapshot to put back (version, manifest digest), when the files differ.
    pub config_restore: Option<(i64, &'a str)>,
    /// How long the restored version's traffic is watched at the end.
    pub verify_seconds: u64,
    pub before_hook: Option<&'a str>,
    pub after_hook: Option<&'a str>,
    /// Cache sweeps ([`StepKind::SweepRedis`], [`StepKind::PurgeHttp`]): run once the bad
    /// version no longer serves, after the `after_rollback` hook.
    pub sweeps: &'a [StepKind],
}

/// The one recovery plan builder: the base plan for what is restored, then the schema downs,
/// the config restore, the verification of what serves afterwards, and the hooks.
pub fn plan(input: &PlanInput<'_>) -> Vec<StepKind> {
    let (base, serving) = match input.restore {
        Restore::Canary {
            stable_instance_id,
            lkg_release_id,
            canary_instance_id,
            bad_release_id,
        } => (
            plan_canary_rollback(
                stable_instance_id,
                lkg_release_id,
                canary_instance_id,
                bad_release_id,
                input.reason,
            ),
            Some((stable_instance_id, lkg_release_id)),
        ),
        Restore::DiscardCanary {
            canary_instance_id,
            bad_release_id,
        } => {
            let mut plan: Vec<StepKind> = canary_instance_id
                .map(|id| StepKind::StopInstance {
                    instance_id: id.to_string(),
                })
                .into_iter()
                .collect();
            plan.push(StepKind::MarkReleaseBad {
                release_id: bad_release_id.to_string(),
                reason: input.reason.to_string(),
            });
            (plan, None)
        }
        Restore::Previous {
            new_instance_id,
            previous_release_id,
            current_instance_id,
            current_release_id,
        } => (
            plan_redeploy_previous(
                new_instance_id,
                previous_release_id,
                current_instance_id,
                current_release_id,
                input.reason,
            ),
            Some((new_instance_id, previous_release_id)),
        ),
    };
    let mut plan = with_schema_downs(base, input.schema_downs);
    if let Some((snapshot, manifest)) = input.config_restore {
        plan = with_config_restore(plan, snapshot, manifest);
    }
    if let Some((instance, release)) = serving {
        plan = with_verification(plan, instance, release, input.verify_seconds);
    }
    let mut plan = with_hooks(plan, input.before_hook, input.after_hook);
    if !input.sweeps.is_empty() {
        // After the last step that stops the bad version (and its after_rollback hook), so
        // nothing repopulates the cache with its answers.
        let at = plan
            .iter()
            .rposition(|s| {
                matches!(s, StepKind::StopInstance { .. })
                    || matches!(s, StepKind::RunHook { name, .. } if name == "after_rollback")
            })
            .map_or(plan.len(), |i| i + 1);
        plan.splice(at..at, input.sweeps.iter().cloned());
    }
    plan
}

/// The idempotency key of step `index` of recovery `recovery_id`: stable across restarts, handed
/// to hooks so user scripts can be idempotent too.
pub fn idempotency_key(recovery_id: &str, index: usize, step: &StepKind) -> String {
    format!("{recovery_id}/{index}/{}", step.name())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn canary_rollback_restores_traffic_before_anything_else() {
        let plan = plan_canary_rollback("i-stable", "svc@v1", Some("i-canary"), "svc@v2", "judge");
        assert!(
            matches!(&plan[0], StepKind::WaitHealthy { instance_id } if instance_id == "i-stable")
        );
        assert!(matches!(plan[1], StepKind::ShiftTraffic { .. }));
        assert!(matches!(plan[2], StepKind::StopInstance { .. }));
        assert!(matches!(plan[3], StepKind::MarkReleaseBad { .. }));
    }

    #[test]
    fn schema_downs_run_before_a_fresh_start_or_after_the_bad_version_stops() {
        let down = |v: &str| crate::schema::AppliedMigration {
            version: v.into(),
            name: format!("m{v}"),
            has_down: true,
            down_sha256: Some("cd".repeat(32)),
            proven: true,
            phase: None,
            irreversible: None,
        };
        let downs = [down("3"), down("2")];
        let names = |p: &[StepKind]| p.iter().map(StepKind::name).collect::<Vec<_>>();
        let redeploy = with_schema_downs(
            plan_redeploy_previous("new", "v1", Some("cur"), "v2", "r"),
            &downs,
        );
        assert_eq!(
            names(&redeploy)[..3],
            ["run_migration_down", "run_migration_down", "start_instance"]
        );
        assert!(
            matches!(&redeploy[0], StepKind::RunMigrationDown { version, .. } if version == "3")
        );
        let canary = with_schema_downs(
            plan_canary_rollback("s", "v1", Some("c"), "v2", "j"),
            &downs,
        );
        assert_eq!(
            names(&canary),
            [
                "wait_healthy",
                "shift_traffic",
                "stop_instance",
                "run_migration_down",
                "run_migration_down",
                "mark_release_bad"
            ]
        );
    }

    #[test]
    fn verification_comes_last() {
        let plan = with_verification(
            plan_canary_rollback("s", "v1", Some("c"), "v2", "j"),
            "s",
            "v1",
            5,
        );
        let names: Vec<_> = plan.iter().map(StepKind::name).collect();
        assert_eq!(
            names,
            [
                "wait_healthy",
                "shift_traffic",
                "stop_instance",
                "mark_release_bad",
                "wait_healthy",
                "verify_signals"
            ]
        );
    }

    #[test]
    fn hooks_go_first_and_after_the_stop() {
        let plan = plan_canary_rollback("s", "v1", Some("c"), "v2", "judge");
        let plan = with_hooks(plan, Some("drain"), Some("purge"));
        let names: Vec<_> = plan.iter().map(StepKind::name).collect();
        assert_eq!(
            names,
            [
                "run_hook",
                "wait_healthy",
                "shift_traffic",
                "stop_instance",
                "run_hook",
                "mark_release_bad"
            ]
        );
        let same = with_hooks(plan_canary_rollback("s", "v1", None, "v2", "j"), None, None);
        assert_eq!(same.len(), 3);
    }

    #[test]
    fn config_restore_goes_before_the_lkg_starts_or_right_after_traffic() {
        let plan = plan_redeploy_previous("i-new", "svc@v1", Some("i-cur"), "svc@v2", "manual");
        let plan = with_config_restore(plan, 3, "abc");
        assert_eq!(
            plan[0],
            StepKind::RestoreConfig {
                snapshot: 3,
                manifest: "abc".into()
            }
        );
        assert_eq!(plan[1].name(), "start_instance");
        let plan = with_config_restore(
            plan_canary_rollback("s", "v1", Some("c"), "v2", "j"),
            1,
            "d",
        );
        let names: Vec<_> = plan.iter().map(StepKind::name).collect();
        assert_eq!(
            names,
            [
                "wait_healthy",
                "shift_traffic",
                "restore_config",
                "stop_instance",
                "mark_release_bad"
            ]
        );
    }

    fn input(restore: Restore<'_>) -> PlanInput<'_> {
        PlanInput {
            restore,
            reason: "judge",
            schema_downs: &[],
            config_restore: None,
            verify_seconds: 5,
            before_hook: None,
            after_hook: None,
            sweeps: &[],
        }
    }

    fn names(plan: &[StepKind]) -> Vec<&'static str> {
        plan.iter().map(StepKind::name).collect()
    }

    #[test]
    fn cache_sweeps_run_once_the_bad_version_is_stopped_after_its_hook() {
        let sweeps = [
            StepKind::SweepRedis {
                name: "products".into(),
                address: Some("cache:6379".into()),
                address_env: None,
                pattern: "product:*".into(),
                batch: 500,
            },
            StepKind::PurgeHttp {
                name: "cdn".into(),
                url: "http://cdn/all".into(),
            },
        ];
        let plan = plan(&PlanInput {
            after_hook: Some("notify"),
            sweeps: &sweeps,
            ..input(Restore::Canary {
                stable_instance_id: "i-stable",
                lkg_release_id: "svc@v1",
                canary_instance_id: Some("i-canary"),
                bad_release_id: "svc@v2",
            })
        });
        let names = names(&plan);
        let stop = names.iter().position(|n| *n == "stop_instance").unwrap();
        assert_eq!(
            &names[stop + 1..stop + 4],
            ["run_hook", "sweep_redis", "purge_http"],
            "{names:?}"
        );
    }

    #[test]
    fn a_failed_canary_goes_back_to_the_serving_lkg_then_is_verified() {
        let downs = [crate::schema::AppliedMigration {
            version: "3".into(),
            name: "m3".into(),
            has_down: true,
            down_sha256: Some("cd".repeat(32)),
            proven: true,
            phase: None,
            irreversible: None,
        }];
        let plan = plan(&PlanInput {
            schema_downs: &downs,
            config_restore: Some((2, "abc")),
            before_hook: Some("drain"),
            after_hook: Some("purge"),
            ..input(Restore::Canary {
                stable_instance_id: "i-stable",
                lkg_release_id: "svc@v1",
                canary_instance_id: Some("i-canary"),
                bad_release_id: "svc@v2",
            })
        });
        assert_eq!(
            names(&plan),
            [
                "run_hook",
                "wait_healthy",
                "shift_traffic",
                "restore_config",
                "stop_instance",
                "run_hook",
                "run_migration_down",
                "mark_release_bad",
                "wait_healthy",
                "verify_signals"
            ]
        );
        assert_eq!(
            plan[9],
            StepKind::VerifySignals {
                release_id: "svc@v1".into(),
                seconds: 5
            }
        );
    }

    #[test]
    fn a_canary_with_nothing_to_go_back_to_is_stopped_and_marked_bad() {
        let plan = plan(&input(Restore::DiscardCanary {
            canary_instance_id: Some("i-canary"),
            bad_release_id: "svc@v2",
        }));
        assert_eq!(names(&plan), ["stop_instance", "mark_release_bad"]);
    }

    #[test]
    fn a_manual_rollback_redeploys_the_previous_release_then_verifies_it() {
        let plan = plan(&input(Restore::Previous {
            new_instance_id: "i-new",
            previous_release_id: "svc@v1",
            current_instance_id: Some("i-cur"),
            current_release_id: "svc@v2",
        }));
        assert_eq!(
            names(&plan),
            [
                "start_instance",
                "wait_healthy",
                "shift_traffic",
                "stop_instance",
                "mark_release_bad",
                "set_lkg",
                "wait_healthy",
                "verify_signals"
            ]
        );
        assert_eq!(
            plan[6],
            StepKind::WaitHealthy {
                instance_id: "i-new".into()
            }
        );
    }

    /// Health before traffic: in every plan, each `shift_traffic` comes right after a
    /// `wait_healthy` of the instance it sends traffic to.
    #[test]
    fn every_traffic_shift_follows_a_health_check_of_its_instance() {
        let down = crate::schema::AppliedMigration {
            version: "2".into(),
            name: "m2".into(),
            has_down: true,
            down_sha256: Some("cd".repeat(32)),
            proven: true,
            phase: None,
            irreversible: None,
        };
        let restores = [
            Restore::Canary {
                stable_instance_id: "s",
                lkg_release_id: "v1",
                canary_instance_id: Some("c"),
                bad_release_id: "v2",
            },
            Restore::Previous {
                new_instance_id: "n",
                previous_release_id: "v1",
                current_instance_id: Some("c"),
                current_release_id: "v2",
            },
        ];
        for restore in restores {
            let plan = plan(&PlanInput {
                restore,
                reason: "r",
                schema_downs: std::slice::from_ref(&down),
                config_restore: Some((3, "abc")),
                verify_seconds: 5,
                before_hook: Some("drain"),
                after_hook: Some("purge"),
                sweeps: &[],
            });
            for (i, step) in plan.iter().enumerate() {
                if let StepKind::ShiftTraffic { instance_id, .. } = step {
                    assert!(
                        i > 0
                            && matches!(&plan[i - 1], StepKind::WaitHealthy { instance_id: checked } if checked == instance_id),
                        "{plan:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn redeploy_starts_the_old_version_before_switching() {
        let plan = plan_redeploy_previous("i-new", "svc@v1", Some("i-cur"), "svc@v2", "manual");
        let names: Vec<_> = plan.iter().map(StepKind::name).collect();
        assert_eq!(
            names,
            [
                "start_instance",
                "wait_healthy",
                "shift_traffic",
                "stop_instance",
                "mark_release_bad",
                "set_lkg"
            ]
        );
    }
}
