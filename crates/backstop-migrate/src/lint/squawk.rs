//! PostgreSQL: squawk's default rules (locks, zero-downtime, old clients) on every up and down,
//! reported as warnings with squawk's rule name, e.g. `squawk:require-concurrent-index-creation`.
//!
//! Rules Backstop reports itself with knowledge squawk lacks (was the table created in the same
//! up? is this a down?) are left out so nothing is reported twice: dropping and renaming tables
//! and columns, adding a required field. On downs only the operational rules run: a down drops
//! what its up created by design, so squawk's `ban-drop-*` rules would flag every good down.

use squawk_linter::{Linter, Rule};
use squawk_syntax::SourceFile;

use super::parse::file_line;
use crate::model::{Finding, Migration, Script, Severity};

/// Reported by Backstop's own rules (see the module docs).
const REPLACED: &[Rule] = &[
    Rule::BanDropColumn,
    Rule::BanDropTable,
    Rule::RenamingColumn,
    Rule::RenamingTable,
    Rule::AddingRequiredField,
];

/// Locking and transaction rules: these matter just as much while a rollback runs.
const OPERATIONAL: &[Rule] = &[
    Rule::RequireConcurrentIndexCreation,
    Rule::RequireConcurrentIndexDeletion,
    Rule::ConstraintMissingNotValid,
    Rule::AddingFieldWithDefault,
    Rule::AddingForeignKeyConstraint,
    Rule::ChangingColumnType,
    Rule::AddingNotNullableField,
    Rule::AddingSerialPrimaryKeyField,
    Rule::DisallowedUniqueConstraint,
    Rule::BanConcurrentIndexCreationInTransaction,
    Rule::TransactionNesting,
    Rule::BanUncommittedTransaction,
    Rule::RequireConcurrentPartitionDetach,
    Rule::RequireConcurrentReindex,
    Rule::BanTruncateCascade,
    Rule::BanDropDatabase,
];

/// Style rules: a matter of taste for a schema that already exists, reported as info.
const STYLE: &[Rule] = &[
    Rule::PreferBigintOverInt,
    Rule::PreferBigintOverSmallint,
    Rule::PreferIdentity,
    Rule::PreferTextField,
    Rule::PreferTimestampTz,
];

fn run(linter: &mut Linter, script: &Script, in_transaction: bool) -> Vec<Finding> {
    linter.settings.assume_in_transaction = in_transaction;
    let parse = SourceFile::parse(&script.sql);
    linter
        .lint(&parse, &script.sql)
        .into_iter()
        .map(|v| {
            let mut message = v.message.clone();
            if let Some(help) = &v.help {
                message.push_str(" (");
                message.push_str(help);
                message.push(')');
            }
            Finding {
                severity: if STYLE.contains(&v.code) {
                    Severity::Info
                } else {
                    Severity::Warning
                },
                rule: format!("squawk:{}", v.code),
                message,
                file: Some(script.file.clone()),
                line: Some(file_line(script, usize::from(v.text_range.start()))),
            }
        })
        .collect()
}

/// squawk's findings for one migration's up and down.
pub(crate) fn lint(m: &Migration) -> Vec<Finding> {
    let in_tx = !m.no_transaction;
    let mut up_linter = Linter::with_rules(&[], REPLACED);
    let mut out = run(&mut up_linter, &m.up, in_tx);
    if let Some(down) = &m.down {
        let mut down_linter = Linter::from(OPERATIONAL.iter().copied());
        out.extend(run(&mut down_linter, down, in_tx));
    }
    out
}
