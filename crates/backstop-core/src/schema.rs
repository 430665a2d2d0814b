//! Schema-aware rollback: before a recovery touches anything, decide whether the release it goes
//! back to runs on the database schema as it is now, which proven downs must run first, or why
//! there is no safe way back by schema (and what the options are).
//!
//! The inputs are what the target database's own history says was applied (Backstop's
//! `backstop_schema_history` table keeps each migration's down script, its digest and whether it
//! was proven reversible when it was applied) and the schema range the last-known-good release
//! declared it runs on.

use std::cmp::Ordering;

use serde::{Deserialize, Serialize};

/// The migration versions a release runs on, inclusive: `0003..0005`, or one version `0004`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SchemaRange {
    pub min: String,
    pub max: String,
}

impl SchemaRange {
    /// Parses `MIN..MAX` or a single `VERSION`. The error says what is wrong with the text.
    pub fn parse(text: &str) -> Result<SchemaRange, String> {
        let text = text.trim();
        let (min, max) = match text.split_once("..") {
            Some((a, b)) => (a.trim(), b.trim()),
            None => (text, text),
        };
        if min.is_empty() || max.is_empty() {
            return Err(format!(
                "{text:?} is not a schema range: write MIN..MAX (e.g. 0003..0005) or one version"
            ));
        }
        if let Some(bad) = [min, max].into_iter().find(|v| {
            !v.chars()
                .all(|c| c.is_ascii_alphanumeric() || "._-".contains(c))
        }) {
            return Err(format!(
                "{bad:?} is not a migration version (letters, digits, '.', '_' and '-' only)"
            ));
        }
        if version_cmp(min, max) == Ordering::Greater {
            return Err(format!("schema range {min}..{max} ends before it starts"));
        }
        Ok(SchemaRange {
            min: min.to_string(),
            max: max.to_string(),
        })
    }

    pub fn contains(&self, version: Option<&str>) -> bool {
        let v = version.unwrap_or("");
        version_cmp(v, &self.min) != Ordering::Less
            && version_cmp(v, &self.max) != Ordering::Greater
    }
}

impl std::fmt::Display for SchemaRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.min == self.max {
            write!(f, "{}", self.min)
        } else {
            write!(f, "{}..{}", self.min, self.max)
        }
    }
}

/// Orders migration versions the way migration tools do: numerically segment by segment
/// (`2` < `10`, `1.1` < `1.10`, `0003` = `3`), text segments by text. The empty version (no
/// migration applied) comes first.
pub fn version_cmp(a: &str, b: &str) -> Ordering {
    let seg = |s: &str| -> Vec<String> {
        s.split(['.', '_', '-'])
            .filter(|p| !p.is_empty())
            .map(str::to_string)
            .collect()
    };
    let (sa, sb) = (seg(a), seg(b));
    let numeric = |s: &str| s.bytes().all(|c| c.is_ascii_digit());
    for (x, y) in sa.iter().zip(&sb) {
        // Digits compare by value at any length: leading zeros dropped, then shorter is smaller.
        let ord = if numeric(x) && numeric(y) {
            let (x, y) = (x.trim_start_matches('0'), y.trim_start_matches('0'));
            x.len().cmp(&y.len()).then_with(|| x.cmp(y))
        } else {
            x.cmp(y)
        };
        if ord != Ordering::Equal {
            return ord;
        }
    }
    sa.len().cmp(&sb.len())
}

/// One applied migration as the target database's history records it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct AppliedMigration {
    pub version: String,
    pub name: String,
    /// A down script was kept at apply time.
    pub has_down: bool,
    /// sha256 of that down script: the recovery runs exactly what was reviewed and proven.
    pub down_sha256: Option<String>,
    /// The up→down→up proof passed when it was applied.
    pub proven: bool,
    /// `expand`, `backfill`, `contract` or `irreversible`, when the migration said.
    pub phase: Option<String>,
    /// Declared irreversible (`-- backstop:irreversible reason`).
    pub irreversible: Option<String>,
}

impl AppliedMigration {
    /// Why running this migration's down during a recovery is not safe, if it is not.
    fn down_blocker(&self) -> Option<String> {
        let who = format!("migration {} ({})", self.version, self.name);
        if let Some(reason) = &self.irreversible {
            return Some(format!("{who} is declared irreversible: {reason}"));
        }
        match self.phase.as_deref() {
            Some("contract") => {
                return Some(format!(
                    "{who} is a contract step: what it removed cannot come back with its down"
                ));
            }
            Some("irreversible") => return Some(format!("{who} is marked irreversible")),
            _ => {}
        }
        if !self.has_down {
            return Some(format!("{who} has no down script"));
        }
        if !self.proven {
            return Some(format!(
                "{who} was not proven reversible (up→down→up) when it was applied"
            ));
        }
        None
    }
}

/// A stateful component whose snapshot can be restored (a way back when the schema has none).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RestoreOption {
    pub name: String,
    /// Recovery point objective as written in the config (`5m`): the data loss a restore can
    /// cost at most.
    pub rpo: String,
    pub restore_command: String,
}

/// What a recovery must do about the schema, decided before it touches anything.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case", tag = "decision")]
pub enum SchemaDecision {
    /// The release runs on the schema as it is: no database step.
    Compatible {
        current: Option<String>,
        note: String,
    },
    /// Run these downs, newest first, before the release takes traffic.
    RunDowns {
        current: Option<String>,
        target: Option<String>,
        downs: Vec<AppliedMigration>,
    },
    /// No safe way back by schema; nothing was touched.
    Refuse {
        current: Option<String>,
        reason: String,
        options: Vec<String>,
    },
}

/// Decides the schema part of a rollback to a release that runs on `target`.
///
/// `applied` is the target database's history in apply order. Expand migrations the old release
/// tolerates are left in place (running their downs would only throw away data written since);
/// downs run only when the schema is past what the release declared it supports.
pub fn plan_schema_rollback(
    applied: &[AppliedMigration],
    target: Option<&SchemaRange>,
    restore_options: &[RestoreOption],
) -> SchemaDecision {
    let current = applied.last().map(|m| m.version.clone());
    let Some(range) = target else {
        return SchemaDecision::Compatible {
            current,
            note: "the release declares no schema range; no database step planned".into(),
        };
    };
    if range.contains(current.as_deref()) {
        return SchemaDecision::Compatible {
            note: format!(
                "schema {} is within {range}, which the release runs on",
                current.as_deref().unwrap_or("(empty)")
            ),
            current,
        };
    }
    let mut options = Vec::new();
    if version_cmp(current.as_deref().unwrap_or(""), &range.min) == Ordering::Less {
        options.push(format!(
            "roll forward: apply migrations up to {} (`backstop migrations apply`) and retry",
            range.min
        ));
        return SchemaDecision::Refuse {
            reason: format!(
                "schema {} is older than {range}, which the release needs",
                current.as_deref().unwrap_or("(empty)")
            ),
            current,
            options,
        };
    }
    // Past the range: every migration after `range.max` must be undone, newest first.
    let downs: Vec<AppliedMigration> = applied
        .iter()
        .rev()
        .take_while(|m| version_cmp(&m.version, &range.max) == Ordering::Greater)
        .cloned()
        .collect();
    let blockers: Vec<String> = downs.iter().filter_map(|m| m.down_blocker()).collect();
    if blockers.is_empty() {
        let target_version = applied
            .iter()
            .rev()
            .find(|m| version_cmp(&m.version, &range.max) != Ordering::Greater)
            .map(|m| m.version.clone());
        return SchemaDecision::RunDowns {
            current,
            target: target_version,
            downs,
        };
    }
    options.push("roll forward: release a fix that runs on the current schema".to_string());
    for o in restore_options {
        options.push(format!(
            "restore {} from a snapshot (loses at most {} of data): {}",
            o.name, o.rpo, o.restore_command
        ));
    }
    SchemaDecision::Refuse {
        reason: format!(
            "the release runs on schema {range} but the database is at {}, and the way back is not safe: {}",
            current.as_deref().unwrap_or("(empty)"),
            blockers.join("; ")
        ),
        current,
        options,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(version: &str, phase: Option<&str>, proven: bool, has_down: bool) -> AppliedMigration {
        AppliedMigration {
            version: version.into(),
            name: format!("m{version}"),
            has_down,
            down_sha256: has_down.then(|| "ab".repeat(32)),
            proven,
            phase: phase.map(str::to_string),
            irreversible: None,
        }
    }

    #[test]
    fn versions_order_like_migration_tools() {
        assert_eq!(version_cmp("2", "10"), Ordering::Less);
        assert_eq!(version_cmp("0003", "3"), Ordering::Equal);
        assert_eq!(version_cmp("1.1", "1.10"), Ordering::Less);
        assert_eq!(version_cmp("", "0001"), Ordering::Less);
        assert_eq!(
            version_cmp("20240101120000", "20231231000000"),
            Ordering::Greater
        );
    }

    #[test]
    fn ranges_parse_and_refuse_nonsense() {
        assert_eq!(
            SchemaRange::parse("0003..0005").unwrap(),
            SchemaRange {
                min: "0003".into(),
                max: "0005".into()
            }
        );
        assert_eq!(SchemaRange::parse("7").unwrap().to_string(), "7");
        assert!(
            SchemaRange::parse("5..3")
                .unwrap_err()
                .contains("ends before")
        );
        assert!(SchemaRange::parse("..3").is_err());
        assert!(SchemaRange::parse("1; drop").is_err());
    }

    #[test]
    fn expand_within_range_needs_no_database_step() {
        let applied = [m("1", None, true, true), m("2", Some("expand"), true, true)];
        let d = plan_schema_rollback(&applied, Some(&SchemaRange::parse("1..2").unwrap()), &[]);
        assert!(matches!(d, SchemaDecision::Compatible { .. }), "{d:?}");
    }

    #[test]
    fn past_the_range_runs_proven_downs_newest_first() {
        let applied = [
            m("1", None, true, true),
            m("2", None, true, true),
            m("3", None, true, true),
        ];
        let d = plan_schema_rollback(&applied, Some(&SchemaRange::parse("1").unwrap()), &[]);
        let SchemaDecision::RunDowns { downs, target, .. } = d else {
            panic!("{d:?}")
        };
        let order: Vec<_> = downs.iter().map(|m| m.version.as_str()).collect();
        assert_eq!(order, ["3", "2"]);
        assert_eq!(target.as_deref(), Some("1"));
    }

    #[test]
    fn contract_unproven_or_missing_down_refuses_with_options() {
        let opts = [RestoreOption {
            name: "orders-db".into(),
            rpo: "5m".into(),
            restore_command: "./restore {snapshot}".into(),
        }];
        for bad in [
            m("2", Some("contract"), true, true),
            m("2", None, false, true),
            m("2", None, true, false),
        ] {
            let applied = [m("1", None, true, true), bad];
            let d = plan_schema_rollback(&applied, Some(&SchemaRange::parse("1").unwrap()), &opts);
            let SchemaDecision::Refuse {
                reason, options, ..
            } = d
            else {
                panic!("{d:?}")
            };
            assert!(reason.contains("migration 2"), "{reason}");
            assert!(options.iter().any(|o| o.contains("roll forward")));
            assert!(
                options
                    .iter()
                    .any(|o| o.contains("orders-db") && o.contains("5m"))
            );
        }
    }

    #[test]
    fn schema_older_than_needed_refuses() {
        let applied = [m("1", None, true, true)];
        let d = plan_schema_rollback(&applied, Some(&SchemaRange::parse("2..3").unwrap()), &[]);
        assert!(matches!(d, SchemaDecision::Refuse { .. }), "{d:?}");
        let d = plan_schema_rollback(&applied, None, &[]);
        assert!(matches!(d, SchemaDecision::Compatible { .. }));
    }
}
