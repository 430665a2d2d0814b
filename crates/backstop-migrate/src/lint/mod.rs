//! Linting a migration set: parse every script with the engine's real parser (bad SQL is an
//! input error at `file:line`), then run Backstop's rules (see [`rules`]) and, on PostgreSQL,
//! squawk's default rules.

mod parse;
pub mod rules;
pub(crate) mod sql;
mod squawk;

pub use parse::{parse_script, parse_set};
pub use rules::lint_set as rules_only;

use crate::model::{Engine, Finding, InputError, MigrationSet};

/// Parse the whole set, then lint it: one list of findings per migration, in order.
/// `Err` when a script is not valid SQL for `engine` (nothing else is reported then).
pub fn lint(set: &MigrationSet, engine: Engine) -> Result<Vec<Vec<Finding>>, InputError> {
    parse_set(set, engine)?;
    let mut all = rules::lint_set(set, engine);
    if engine == Engine::Postgres {
        for (m, findings) in set.migrations.iter().zip(all.iter_mut()) {
            findings.extend(squawk::lint(m));
        }
    }
    Ok(all)
}
