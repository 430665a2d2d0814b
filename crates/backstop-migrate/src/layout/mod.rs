//! Reading a migration set from disk: detect the layout from the files, read every migration with
//! its up, down (and sqitch verify), apply the `-- backstop:` annotations, and sort by version.
//!
//! Anything that cannot be read is an [`InputError`] naming the file (and line, when there is one):
//! version collisions, an up without a migration name, a down without an up, files of two layouts
//! in one folder, a section marker missing.

mod files;
mod sections;
mod sqitch;

use std::cmp::Ordering;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use crate::model::{
    Allow, Finding, InputError, Layout, Migration, MigrationSet, Phase, Script, Severity, UP_ONLY,
};

/// Read the migration set in `dir`, whatever its layout (see the table in the spec).
pub fn load(dir: &Path) -> Result<MigrationSet, InputError> {
    let mut listing = Listing::read(dir)?;
    let layout = detect(dir, &listing)?;
    let mut notes = Vec::new();
    if layout == Layout::Diesel {
        // diesel reads only its folders; a loose script beside them is not a migration to it.
        for name in std::mem::take(&mut listing.sql_files) {
            notes.push(Finding {
                severity: Severity::Info,
                rule: "ignored-file".into(),
                message: "not a diesel migration folder: diesel ignores loose files in its \
                          migrations folder, and so does this check"
                    .into(),
                file: Some(PathBuf::from(name)),
                line: None,
            });
        }
    }
    let mut migrations = match layout {
        Layout::Paired | Layout::SqlxSingle => files::paired_or_sqlx(dir, &listing, layout)?,
        Layout::Diesel => files::diesel(dir, &listing)?,
        Layout::Flyway => files::flyway(dir, &listing)?,
        Layout::Sqitch => sqitch::read(dir)?,
        Layout::Goose | Layout::Dbmate => sections::goose_or_dbmate(dir, &listing, layout)?,
        Layout::Liquibase => sections::liquibase(dir, &listing)?,
    };
    for m in &mut migrations {
        apply_annotations(m)?;
    }
    // Sqitch and Liquibase apply in plan / changelog order; every other layout by version.
    // diesel compares versions with their dashes removed, so `2017-08-31-230457` sorts among
    // plain `20140924113530` timestamps, not before them.
    if layout == Layout::Diesel {
        migrations.sort_by_cached_key(|m| diesel_order(&m.version));
    } else if !matches!(layout, Layout::Sqitch | Layout::Liquibase) {
        migrations.sort_by(|a, b| compare_versions(&a.version, &b.version));
    }
    check_collisions(&migrations, layout)?;
    Ok(MigrationSet {
        dir: dir.to_path_buf(),
        layout,
        migrations,
        notes,
    })
}

/// diesel's order key: the version with its dashes removed, compared as text (diesel's own
/// rule; its versions are fixed-width timestamps or zero-padded numbers).
pub(crate) fn diesel_order(version: &str) -> String {
    version.replace('-', "")
}

/// The entries of a migration folder that matter: `.sql` files and sub-folders (hidden entries,
/// `backstop.sum` and other non-SQL files are ignored).
pub(crate) struct Listing {
    pub sql_files: Vec<String>,
    pub dirs: Vec<String>,
}

impl Listing {
    fn read(dir: &Path) -> Result<Listing, InputError> {
        let entries = std::fs::read_dir(dir).map_err(|e| InputError {
            file: dir.to_path_buf(),
            line: None,
            message: format!("cannot read the migration folder: {e}"),
        })?;
        let mut sql_files = Vec::new();
        let mut dirs = Vec::new();
        for entry in entries {
            let entry = entry.map_err(|e| InputError {
                file: dir.to_path_buf(),
                line: None,
                message: format!("cannot list the migration folder: {e}"),
            })?;
            let Ok(name) = entry.file_name().into_string() else {
                return Err(InputError {
                    file: entry.path(),
                    line: None,
                    message: "file name is not valid UTF-8".into(),
                });
            };
            if name.starts_with('.') {
                continue;
            }
            let path = entry.path();
            if path.is_dir() {
                dirs.push(name);
            } else if name.to_ascii_lowercase().ends_with(".sql") {
                sql_files.push(name);
            }
        }
        sql_files.sort();
        dirs.sort();
        Ok(Listing { sql_files, dirs })
    }
}

/// Read a file of the set as UTF-8 text, naming it on failure.
pub(crate) fn read_text(dir: &Path, rel: &Path) -> Result<String, InputError> {
    let bytes = std::fs::read(dir.join(rel)).map_err(|e| InputError {
        file: rel.to_path_buf(),
        line: None,
        message: format!("cannot read: {e}"),
    })?;
    String::from_utf8(bytes).map_err(|e| {
        let line = 1 + e.as_bytes()[..e.utf8_error().valid_up_to()]
            .iter()
            .filter(|b| **b == b'\n')
            .count();
        InputError {
            file: rel.to_path_buf(),
            line: u32::try_from(line).ok(),
            message: "not valid UTF-8 text".into(),
        }
    })
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Paired => "paired .up.sql/.down.sql",
        Layout::Diesel => "diesel folder",
        Layout::SqlxSingle => "sqlx single-file",
        Layout::Flyway => "Flyway V/U",
        Layout::Sqitch => "sqitch",
        Layout::Goose => "goose",
        Layout::Dbmate => "dbmate",
        Layout::Liquibase => "Liquibase formatted SQL",
    }
}

/// Which layout a `.sql` file name (and, for single files, its first lines) belongs to.
/// `None` for a `.down.sql`, which fits both the paired and the sqlx layouts.
fn classify_file(dir: &Path, name: &str) -> Result<Option<Layout>, InputError> {
    let lower = name.to_ascii_lowercase();
    if files::flyway_name(name).is_some() {
        return Ok(Some(Layout::Flyway));
    }
    if lower.ends_with(".up.sql") {
        return Ok(Some(Layout::Paired));
    }
    if lower.ends_with(".down.sql") {
        return Ok(None);
    }
    let text = read_text(dir, Path::new(name))?;
    Ok(Some(sniff(&text)))
}

/// The layout a single `.sql` file's markers say it is written in.
pub(crate) fn sniff(text: &str) -> Layout {
    for line in text.lines() {
        let t = line.trim();
        if sections::goose_marker(t).is_some() {
            return Layout::Goose;
        }
        if sections::dbmate_marker(t).is_some() {
            return Layout::Dbmate;
        }
        if sections::is_liquibase_header(t) || sections::changeset_header(t).is_some() {
            return Layout::Liquibase;
        }
    }
    Layout::SqlxSingle
}

fn detect(dir: &Path, listing: &Listing) -> Result<Layout, InputError> {
    if dir.join("sqitch.plan").is_file() {
        return Ok(Layout::Sqitch);
    }
    // Loose files beside diesel folders are set aside by `load` (diesel ignores them), unless
    // they are named like migrations: then the folder mixes layouts.
    let diesel_dir = listing
        .dirs
        .iter()
        .find(|d| dir.join(d).join("up.sql").is_file() || dir.join(d).join("down.sql").is_file());
    if let Some(d) = diesel_dir {
        let migration_like = listing.sql_files.iter().find(|f| {
            files::flyway_name(f).is_some()
                || split_version_name(f.trim_end_matches(".sql").trim_end_matches(".SQL")).is_some()
        });
        if let Some(f) = migration_like {
            return Err(InputError {
                file: PathBuf::from(f),
                line: None,
                message: format!(
                    "mixed layouts: this file is named like a migration, but {d} is a diesel \
                     migration folder; keep one layout per folder (diesel ignores loose files, \
                     so this one would never run)"
                ),
            });
        }
        return Ok(Layout::Diesel);
    }
    // (layout, first file seen of it), in listing order.
    let mut seen: Vec<(Layout, String)> = Vec::new();
    let mut note = |layout: Layout, name: &str| {
        if !seen.iter().any(|(l, _)| *l == layout) {
            seen.push((layout, name.to_string()));
        }
    };
    for name in &listing.sql_files {
        if let Some(layout) = classify_file(dir, name)? {
            note(layout, name);
        }
    }
    match seen.as_slice() {
        [] => {
            if let Some(down) = listing.sql_files.first() {
                return Err(InputError {
                    file: PathBuf::from(down),
                    line: None,
                    message: "a down without an up: no migration in this folder has an up script"
                        .into(),
                });
            }
            Err(InputError {
                file: dir.to_path_buf(),
                line: None,
                message: "no migrations found: expected {version}_{name}.up.sql/.down.sql, \
                          diesel folders, {version}_{name}.sql, Flyway V/U files, sqitch.plan, \
                          goose/dbmate sections or Liquibase changesets"
                    .into(),
            })
        }
        [(layout, _)] => Ok(*layout),
        [(first, first_file), rest @ ..] => {
            let (other, other_file) = &rest[0];
            Err(InputError {
                file: PathBuf::from(other_file),
                line: None,
                message: format!(
                    "mixed layouts: this is a {} migration, but {first_file} is a {} migration; \
                     keep one layout per folder",
                    layout_name(*other),
                    layout_name(*first)
                ),
            })
        }
    }
}

/// Compare two versions: part by part (split on `.`, `_` and `-`), numerically when both parts
/// are digits (`2` < `10`, `0002` == `2`), as text otherwise.
pub fn compare_versions(a: &str, b: &str) -> Ordering {
    backstop_core::schema::version_cmp(a, b)
}

fn check_collisions(migrations: &[Migration], layout: Layout) -> Result<(), InputError> {
    let mut seen: BTreeMap<String, &Migration> = BTreeMap::new();
    for m in migrations {
        let key = if layout == Layout::Diesel {
            diesel_order(&m.version)
        } else {
            version_key(&m.version)
        };
        if let Some(prev) = seen.get(&key) {
            return Err(InputError {
                file: m.up.file.clone(),
                line: None,
                message: format!(
                    "version {} collides with {} (version {}): every migration needs its own version",
                    m.version,
                    prev.up.file.display(),
                    prev.version
                ),
            });
        }
        seen.insert(key, m);
    }
    Ok(())
}

/// A version with leading zeros dropped from numeric parts, so `0002` and `2` collide.
fn version_key(v: &str) -> String {
    v.split(['.', '_', '-'])
        .map(|p| {
            if !p.is_empty() && p.bytes().all(|c| c.is_ascii_digit()) {
                let t = p.trim_start_matches('0');
                if t.is_empty() { "0" } else { t }
            } else {
                p
            }
        })
        .collect::<Vec<_>>()
        .join(".")
}

/// One `-- backstop:` annotation (or `-- no-transaction`) found in a script.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Annotation {
    Irreversible(String),
    ForwardOnly,
    Phase(Phase),
    NoTransaction,
    Allow(Allow),
}

/// Every rule id a `backstop:allow` may name: Backstop's rules and the proof's (squawk's are
/// `squawk:<its rule>`, checked against squawk's list).
pub const RULES: &[&str] = &[
    "missing-down",
    "noop-down",
    "destructive-drop-table",
    "destructive-drop-column",
    "destructive-truncate",
    "destructive-delete",
    "destructive-update",
    "down-destroys-existing-data",
    "down-discards-new-data",
    "down-incomplete",
    "breaking-rename-table",
    "breaking-rename-column",
    "breaking-not-null-without-default",
    "breaking-new-constraint",
    "breaking-type-change",
    "type-change",
    "irreversible",
    "non-transactional",
    "column-order",
    "up-failed",
    "down-failed",
    "verify-failed",
    "reapply-failed",
    "proof-schema-differs",
    "proof-reapply-differs",
    "not-proven",
];

fn known_rule(rule: &str) -> bool {
    match rule.strip_prefix("squawk:") {
        Some(r) => r.parse::<squawk_linter::Rule>().is_ok(),
        None => RULES.contains(&rule),
    }
}

/// The annotations in `script`, with their file lines; an unknown `backstop:` word or phase is an
/// error (a typo must not silently turn a check off).
pub(crate) fn annotations(script: &Script) -> Result<Vec<Annotation>, InputError> {
    let mut out = Vec::new();
    // The open `-- safety-assured:start`, by file line.
    let mut assured_from: Option<u32> = None;
    let mut last_line = script.line;
    for (i, line) in script.sql.lines().enumerate() {
        let file_line = script
            .line
            .saturating_add(u32::try_from(i).unwrap_or(u32::MAX));
        last_line = file_line;
        let Some(comment) = line.trim().strip_prefix("--") else {
            continue;
        };
        let comment = comment.trim();
        if comment.eq_ignore_ascii_case("no-transaction") {
            out.push(Annotation::NoTransaction);
            continue;
        }
        if comment.eq_ignore_ascii_case("safety-assured:start") {
            assured_from.get_or_insert(file_line);
            continue;
        }
        if comment.eq_ignore_ascii_case("safety-assured:end") {
            let Some(from) = assured_from.take() else {
                return Err(InputError {
                    file: script.file.clone(),
                    line: Some(file_line),
                    message: "safety-assured:end without a safety-assured:start above it".into(),
                });
            };
            out.push(Annotation::Allow(Allow {
                file: script.file.clone(),
                rules: Vec::new(),
                lines: Some((from, file_line)),
                reason: "safety-assured block".into(),
            }));
            continue;
        }
        let Some(rest) = comment.strip_prefix("backstop:") else {
            continue;
        };
        let (word, arg) = match rest.split_once(char::is_whitespace) {
            Some((w, a)) => (w, a.trim()),
            None => (rest, ""),
        };
        let err = |message: String| InputError {
            file: script.file.clone(),
            line: Some(file_line),
            message,
        };
        match word {
            "irreversible" => {
                let reason = arg
                    .strip_prefix("reason=")
                    .unwrap_or(arg)
                    .trim_matches('"')
                    .to_string();
                out.push(Annotation::Irreversible(reason));
            }
            "forward-only" => out.push(Annotation::ForwardOnly),
            "allow" => {
                let (rules, reason) = match arg.split_once(char::is_whitespace) {
                    Some((r, why)) => (r, why.trim()),
                    None => (arg, ""),
                };
                let rules: Vec<String> = rules
                    .split(',')
                    .map(|r| r.trim().to_string())
                    .filter(|r| !r.is_empty())
                    .collect();
                if rules.is_empty() || reason.is_empty() {
                    return Err(err(
                        "backstop:allow needs the rules it accepts and why: \
                         `-- backstop:allow destructive-drop-column the column was unused since 2.3`"
                            .into(),
                    ));
                }
                if let Some(bad) = rules.iter().find(|r| !known_rule(r)) {
                    return Err(err(format!(
                        "backstop:allow names an unknown rule {bad:?}: use a rule id from the \
                         report (e.g. destructive-drop-column, squawk:prefer-robust-stmts)"
                    )));
                }
                out.push(Annotation::Allow(Allow {
                    file: script.file.clone(),
                    rules,
                    lines: None,
                    reason: reason.trim_matches('"').to_string(),
                }));
            }
            "no-transaction" => out.push(Annotation::NoTransaction),
            "phase" => {
                let phase = match arg.to_ascii_lowercase().as_str() {
                    "expand" => Phase::Expand,
                    "backfill" => Phase::Backfill,
                    "contract" => Phase::Contract,
                    "irreversible" => Phase::Irreversible,
                    other => {
                        return Err(err(format!(
                            "unknown phase {other:?}: expected expand, backfill, contract or irreversible"
                        )));
                    }
                };
                out.push(Annotation::Phase(phase));
            }
            other => {
                return Err(err(format!(
                    "unknown annotation backstop:{other}: expected backstop:irreversible [reason], \
                     backstop:forward-only, backstop:phase <phase>, backstop:no-transaction or \
                     backstop:allow <rules> <reason>"
                )));
            }
        }
    }
    if let Some(from) = assured_from {
        // An open block runs to the end of the script, as in the linters that use it.
        out.push(Annotation::Allow(Allow {
            file: script.file.clone(),
            rules: Vec::new(),
            lines: Some((from, last_line)),
            reason: "safety-assured block".into(),
        }));
    }
    Ok(out)
}

fn apply_annotations(m: &mut Migration) -> Result<(), InputError> {
    let mut found = annotations(&m.up)?;
    if let Some(down) = &m.down {
        found.extend(annotations(down)?);
    }
    for a in found {
        match a {
            Annotation::Irreversible(reason) => {
                // The author's own reason beats the layout's "up-only".
                if m.irreversible.is_none() || m.irreversible.as_deref() == Some(UP_ONLY) {
                    m.irreversible = Some(reason);
                }
            }
            Annotation::ForwardOnly => m.forward_only = true,
            Annotation::Phase(p) => {
                if p == Phase::Irreversible
                    && (m.irreversible.is_none() || m.irreversible.as_deref() == Some(UP_ONLY))
                {
                    m.irreversible = Some(String::new());
                }
                m.phase = Some(p);
            }
            Annotation::NoTransaction => m.no_transaction = true,
            Annotation::Allow(a) => m.allows.push(a),
        }
    }
    Ok(())
}

/// A migration with an up and nothing declared yet (readers fill in the rest).
pub(crate) fn migration(version: String, name: String, up: Script) -> Migration {
    Migration {
        version,
        name,
        up,
        down: None,
        verify: None,
        irreversible: None,
        forward_only: false,
        phase: None,
        no_transaction: false,
        allows: Vec::new(),
    }
}

/// `{version}_{name}` split: digits (with `-` for diesel timestamps) before the first `_`.
pub(crate) fn split_version_name(stem: &str) -> Option<(&str, &str)> {
    let (v, n) = match stem.split_once('_') {
        Some((v, n)) => (v, n),
        None => (stem, ""),
    };
    if v.is_empty() || !v.bytes().all(|c| c.is_ascii_digit() || c == b'-') {
        return None;
    }
    if !v.bytes().any(|c| c.is_ascii_digit()) {
        return None;
    }
    Some((v, n))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_compare_numerically_per_part() {
        assert_eq!(compare_versions("2", "10"), Ordering::Less);
        assert_eq!(compare_versions("0002", "2"), Ordering::Equal);
        assert_eq!(compare_versions("1.10", "1.9"), Ordering::Greater);
        assert_eq!(compare_versions("1", "1.1"), Ordering::Less);
        assert_eq!(version_key("0002"), version_key("2"));
        assert_ne!(version_key("1.1"), version_key("11"));
    }

    #[test]
    fn annotations_are_read_with_their_lines() {
        let s = Script {
            file: "a.sql".into(),
            line: 10,
            sql: "-- backstop:irreversible reason=\"enum values stay\"\n-- backstop:phase contract\nSELECT 1;\n-- backstop:forward-only\n".into(),
        };
        let a = annotations(&s).unwrap();
        assert_eq!(
            a,
            vec![
                Annotation::Irreversible("enum values stay".into()),
                Annotation::Phase(Phase::Contract),
                Annotation::ForwardOnly
            ]
        );
        let bad = Script {
            file: "a.sql".into(),
            line: 3,
            sql: "\n-- backstop:irreversable\n".into(),
        };
        let e = annotations(&bad).unwrap_err();
        assert_eq!(e.line, Some(4));
        assert!(e.message.contains("backstop:irreversable"), "{e}");
    }
}
