//! Layouts with one file (or folder) per script: paired `.up.sql`/`.down.sql`, sqlx single-file,
//! diesel folders and Flyway `V`/`U` files.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::{Listing, migration, read_text, split_version_name};
use crate::model::{InputError, Layout, Migration, Script};

fn script(dir: &Path, rel: PathBuf) -> Result<Script, InputError> {
    let sql = read_text(dir, &rel)?;
    Ok(Script {
        file: rel,
        line: 1,
        sql,
    })
}

fn bad(file: &str, message: impl Into<String>) -> InputError {
    InputError {
        file: PathBuf::from(file),
        line: None,
        message: message.into(),
    }
}

/// One migration being assembled from its files: version, name, up file, down file.
#[derive(Default)]
struct Pair {
    name: String,
    up: Option<String>,
    down: Option<String>,
}

fn put(
    pairs: &mut BTreeMap<String, Pair>,
    version: &str,
    name: &str,
    file: &str,
    is_up: bool,
) -> Result<(), InputError> {
    let entry = pairs.entry(version.to_string()).or_default();
    if entry.up.is_none() && entry.down.is_none() {
        entry.name = name.to_string();
    } else if entry.name != name {
        let other = entry.up.as_deref().or(entry.down.as_deref()).unwrap_or("");
        return Err(bad(
            file,
            format!(
                "version {version} collides with {other}: the names differ ({name:?} vs {:?})",
                entry.name
            ),
        ));
    }
    let slot = if is_up {
        &mut entry.up
    } else {
        &mut entry.down
    };
    if let Some(prev) = slot {
        return Err(bad(file, format!("version {version} collides with {prev}")));
    }
    *slot = Some(file.to_string());
    Ok(())
}

fn assemble(dir: &Path, pairs: BTreeMap<String, Pair>) -> Result<Vec<Migration>, InputError> {
    let mut out = Vec::new();
    for (version, pair) in pairs {
        let Some(up) = pair.up else {
            let down = pair.down.unwrap_or_default();
            return Err(bad(
                &down,
                format!("a down without an up: no up script for version {version}"),
            ));
        };
        let mut m = migration(version, pair.name, script(dir, PathBuf::from(up))?);
        if let Some(down) = pair.down {
            m.down = Some(script(dir, PathBuf::from(down))?);
        }
        out.push(m);
    }
    Ok(out)
}

/// Paired `{version}_{name}.up.sql` + `.down.sql`, or sqlx single-file `{version}_{name}.sql`
/// (with an optional `{version}_{name}.down.sql`). A sqlx single file without a down is
/// irreversible by its layout.
pub(super) fn paired_or_sqlx(
    dir: &Path,
    listing: &Listing,
    layout: Layout,
) -> Result<Vec<Migration>, InputError> {
    let mut pairs: BTreeMap<String, Pair> = BTreeMap::new();
    for name in &listing.sql_files {
        let lower = name.to_ascii_lowercase();
        let (stem, is_up) = if let Some(s) = lower.strip_suffix(".up.sql") {
            (&name[..s.len()], true)
        } else if let Some(s) = lower.strip_suffix(".down.sql") {
            (&name[..s.len()], false)
        } else {
            (&name[..name.len() - 4], true)
        };
        let Some((version, mig_name)) = split_version_name(stem) else {
            return Err(bad(
                name,
                "not a migration file name: expected {version}_{name}.up.sql, .down.sql or .sql \
                 with a numeric version",
            ));
        };
        if version.contains('-') {
            return Err(bad(name, "the version must be digits only"));
        }
        if mig_name.is_empty() {
            let what = if is_up { "an up" } else { "a down" };
            return Err(bad(
                name,
                format!("{what} without a migration name: expected {version}_<name>.…"),
            ));
        }
        put(&mut pairs, version, mig_name, name, is_up)?;
    }
    let mut out = assemble(dir, pairs)?;
    if layout == Layout::SqlxSingle {
        for m in &mut out {
            if m.down.is_none() {
                m.irreversible = Some(crate::model::UP_ONLY.into());
            }
        }
    }
    Ok(out)
}

/// Diesel: one folder `{version}_{name}` (version digits, or a `YYYY-MM-DD-HHMMSS` timestamp)
/// holding `up.sql` and usually `down.sql`.
pub(super) fn diesel(dir: &Path, listing: &Listing) -> Result<Vec<Migration>, InputError> {
    let mut out = Vec::new();
    for d in &listing.dirs {
        let up = dir.join(d).join("up.sql");
        let down = dir.join(d).join("down.sql");
        if !up.is_file() && !down.is_file() {
            continue;
        }
        let Some((version, name)) = split_version_name(d) else {
            return Err(bad(
                d,
                "not a diesel migration folder name: expected {version}_{name}",
            ));
        };
        if name.is_empty() {
            return Err(bad(
                d,
                format!("an up without a migration name: expected {version}_<name>/"),
            ));
        }
        if !up.is_file() {
            return Err(bad(
                &format!("{d}/down.sql"),
                "a down without an up: this folder has no up.sql",
            ));
        }
        let mut m = migration(
            version.to_string(),
            name.to_string(),
            script(dir, Path::new(d).join("up.sql"))?,
        );
        if down.is_file() {
            m.down = Some(script(dir, Path::new(d).join("down.sql"))?);
        }
        let metadata = Path::new(d).join("metadata.toml");
        if dir.join(&metadata).is_file() && !diesel_runs_in_transaction(dir, &metadata)? {
            m.no_transaction = true;
        }
        out.push(m);
    }
    Ok(out)
}

/// diesel's per-migration `metadata.toml`: `run_in_transaction = false` runs the scripts outside a
/// transaction (needed for `CREATE INDEX CONCURRENTLY`). Other keys are diesel's business.
fn diesel_runs_in_transaction(dir: &Path, rel: &Path) -> Result<bool, InputError> {
    let text = read_text(dir, rel)?;
    let table: toml::Table = toml::from_str(&text).map_err(|e| {
        let line = e
            .span()
            .map(|s| 1 + text[..s.start.min(text.len())].matches('\n').count());
        InputError {
            file: rel.to_path_buf(),
            line: line.and_then(|l| u32::try_from(l).ok()),
            message: format!("not valid TOML: {}", e.message()),
        }
    })?;
    match table.get("run_in_transaction") {
        None => Ok(true),
        Some(toml::Value::Boolean(b)) => Ok(*b),
        Some(other) => Err(InputError {
            file: rel.to_path_buf(),
            line: None,
            message: format!(
                "run_in_transaction must be true or false, not {}",
                other.type_str()
            ),
        }),
    }
}

/// `V1__init.sql` → `('V', "1", "init")`; versions may use `.` or `_` between parts
/// (`V1_1__x.sql` is version 1.1).
pub(super) fn flyway_name(name: &str) -> Option<(char, String, String)> {
    let stem = name
        .strip_suffix(".sql")
        .or_else(|| name.strip_suffix(".SQL"))?;
    let kind = stem.chars().next()?;
    if !matches!(kind, 'V' | 'U') {
        return None;
    }
    let (version, desc) = stem[1..].split_once("__")?;
    if version.is_empty()
        || !version.starts_with(|c: char| c.is_ascii_digit())
        || !version
            .bytes()
            .all(|c| c.is_ascii_digit() || c == b'.' || c == b'_')
    {
        return None;
    }
    Some((kind, version.replace('_', "."), desc.to_string()))
}

/// Flyway: `V{version}__{desc}.sql` ups and `U{version}__{desc}.sql` undos.
pub(super) fn flyway(dir: &Path, listing: &Listing) -> Result<Vec<Migration>, InputError> {
    let mut pairs: BTreeMap<String, Pair> = BTreeMap::new();
    for name in &listing.sql_files {
        let Some((kind, version, desc)) = flyway_name(name) else {
            return Err(bad(
                name,
                "not a Flyway versioned or undo file name (V{version}__{desc}.sql or \
                 U{version}__{desc}.sql); repeatable (R__) and baseline (B) files are not checked",
            ));
        };
        if desc.is_empty() {
            return Err(bad(
                name,
                format!("an up without a migration name: expected {kind}{version}__<desc>.sql"),
            ));
        }
        put(&mut pairs, &version, &desc, name, kind == 'V')?;
    }
    assemble(dir, pairs)
}
