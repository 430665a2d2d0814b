//! Checksums: a sha256 of every up, down and verify script, chained over the set in apply order
//! (like `atlas.sum`), so an edited, removed or reordered migration shows, downs included (sqlx
//! and Flyway only hash ups: an edited down goes unnoticed there).
//!
//! # `backstop.sum` (format version 1)
//!
//! A text file in the migration folder, written by `backstop migrations check DIR --write-sum`:
//!
//! ```text
//! backstop-sum v1
//! chain 5d41402abc4b2a76b9719d911017c592…
//! 0001 up 2c26b46b68ffc68ff99b453c1d30413413422d706483bfa0f98a5e886266e7ae 0001_init.up.sql
//! 0001 down fcde2b2edba56bf408601fb721fe9b5c338d10ee429ea04fae5511b68fbf8fb9 0001_init.down.sql
//! ```
//!
//! - line 1: the header `backstop-sum v1`;
//! - line 2: `chain <hex>`: the sha256 chain over every entry line below (see [`chain_step`]);
//! - then one line per script in apply order: `<version> <up|down|verify> <sha256 of the
//!   script's SQL, hex> <file relative to the folder>` (for files holding several sections,
//!   the hash covers that section's text only). File names may contain spaces (they are last).
//!
//! The chain is a running sha256: `chain_0 = sha256("")` and for each entry line `l`,
//! `chain_i = sha256(chain_{i-1} || l || "\n")` (hex of the previous value, then the line).
//! A migration's `chain` value is the chain after its last script, so it depends on every
//! migration before it.

use std::path::{Path, PathBuf};

use serde::Serialize;
use sha2::{Digest, Sha256};

use crate::layout::compare_versions;
use crate::model::{Finding, InputError, MigrationSet, Script, Severity};

/// The file `--write-sum` writes and every check compares with, in the migration folder.
pub const SUM_FILE: &str = "backstop.sum";
const HEADER: &str = "backstop-sum v1";

/// The hashes of one migration's scripts and the chain up to and including it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Checksum {
    pub up: String,
    pub down: Option<String>,
    pub verify: Option<String>,
    pub chain: String,
}

/// One entry line of a sum file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SumEntry {
    pub version: String,
    pub kind: String,
    pub sha256: String,
    pub file: PathBuf,
    /// Line in `backstop.sum`.
    pub line: u32,
}

impl SumEntry {
    fn render(&self) -> String {
        format!(
            "{} {} {} {}",
            self.version,
            self.kind,
            self.sha256,
            self.file.display()
        )
    }
}

pub(crate) fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// One step of the chain: `sha256(previous_hex || line || "\n")`.
pub fn chain_step(previous: &str, line: &str) -> String {
    let mut h = Sha256::new();
    h.update(previous.as_bytes());
    h.update(line.as_bytes());
    h.update(b"\n");
    hex::encode(h.finalize())
}

fn entries(set: &MigrationSet) -> Vec<(usize, SumEntry)> {
    let mut out = Vec::new();
    for (i, m) in set.migrations.iter().enumerate() {
        let mut push = |kind: &str, s: &Script| {
            out.push((
                i,
                SumEntry {
                    version: m.version.clone(),
                    kind: kind.to_string(),
                    sha256: sha256_hex(s.sql.as_bytes()),
                    file: s.file.clone(),
                    line: 0,
                },
            ));
        };
        push("up", &m.up);
        if let Some(d) = &m.down {
            push("down", d);
        }
        if let Some(v) = &m.verify {
            push("verify", v);
        }
    }
    out
}

/// The checksums of every migration of `set`, in order.
pub fn checksums(set: &MigrationSet) -> Vec<Checksum> {
    let mut out: Vec<Checksum> = set
        .migrations
        .iter()
        .map(|_| Checksum {
            up: String::new(),
            down: None,
            verify: None,
            chain: String::new(),
        })
        .collect();
    let mut chain = sha256_hex(b"");
    for (i, e) in entries(set) {
        chain = chain_step(&chain, &e.render());
        let c = &mut out[i];
        match e.kind.as_str() {
            "up" => c.up = e.sha256,
            "down" => c.down = Some(e.sha256),
            _ => c.verify = Some(e.sha256),
        }
        c.chain = chain.clone();
    }
    out
}

/// The text of `backstop.sum` for `set`.
pub fn render_sum(set: &MigrationSet) -> String {
    let lines: Vec<String> = entries(set).into_iter().map(|(_, e)| e.render()).collect();
    let chain = lines.iter().fold(sha256_hex(b""), |c, l| chain_step(&c, l));
    let mut out = format!("{HEADER}\nchain {chain}\n");
    for l in lines {
        out.push_str(&l);
        out.push('\n');
    }
    out
}

/// Write (or refresh) `DIR/backstop.sum`; returns its path.
pub fn write_sum(set: &MigrationSet) -> Result<PathBuf, InputError> {
    let path = set.dir.join(SUM_FILE);
    std::fs::write(&path, render_sum(set)).map_err(|e| InputError {
        file: path.clone(),
        line: None,
        message: format!("cannot write: {e}"),
    })?;
    Ok(path)
}

/// Read `DIR/backstop.sum` if there is one; a malformed file is an input error at its line.
pub fn read_sum(dir: &Path) -> Result<Option<Vec<SumEntry>>, InputError> {
    let path = dir.join(SUM_FILE);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => {
            return Err(InputError {
                file: PathBuf::from(SUM_FILE),
                line: None,
                message: format!("cannot read: {e}"),
            });
        }
    };
    let bad = |line: usize, message: &str| InputError {
        file: PathBuf::from(SUM_FILE),
        line: u32::try_from(line).ok(),
        message: message.to_string(),
    };
    let mut lines = text.lines();
    if lines.next().map(str::trim) != Some(HEADER) {
        return Err(bad(
            1,
            "not a backstop.sum file: the first line must be `backstop-sum v1`",
        ));
    }
    let recorded_chain = lines
        .next()
        .and_then(|l| l.trim().strip_prefix("chain "))
        .map(str::trim)
        .ok_or_else(|| bad(2, "the second line must be `chain <sha256>`"))?
        .to_string();
    let mut out = Vec::new();
    let mut chain = sha256_hex(b"");
    for (i, raw) in lines.enumerate() {
        let n = i + 3;
        if raw.trim().is_empty() {
            continue;
        }
        let mut parts = raw.splitn(4, ' ');
        let (Some(version), Some(kind), Some(sha), Some(file)) =
            (parts.next(), parts.next(), parts.next(), parts.next())
        else {
            return Err(bad(
                n,
                "expected `<version> <up|down|verify> <sha256> <file>`",
            ));
        };
        if !matches!(kind, "up" | "down" | "verify") {
            return Err(bad(n, "the second field must be up, down or verify"));
        }
        if sha.len() != 64 || !sha.bytes().all(|c| c.is_ascii_hexdigit()) {
            return Err(bad(
                n,
                "the third field must be a sha256 in hex (64 characters)",
            ));
        }
        let entry = SumEntry {
            version: version.to_string(),
            kind: kind.to_string(),
            sha256: sha.to_ascii_lowercase(),
            file: PathBuf::from(file),
            line: u32::try_from(n).unwrap_or(u32::MAX),
        };
        chain = chain_step(&chain, &entry.render());
        out.push(entry);
    }
    if chain != recorded_chain {
        return Err(bad(
            2,
            "the chain does not match the entries below it (was backstop.sum edited by hand?); \
             rewrite it with --write-sum",
        ));
    }
    Ok(Some(out))
}

fn same_version(a: &str, b: &str) -> bool {
    compare_versions(a, b) == std::cmp::Ordering::Equal
}

/// Compare the set with a recorded sum: `checksum-mismatch` errors for every edited, removed or
/// inserted-before-recorded script. Returns (findings per migration, findings for the set).
pub fn compare(set: &MigrationSet, recorded: &[SumEntry]) -> (Vec<Vec<Finding>>, Vec<Finding>) {
    let mut per: Vec<Vec<Finding>> = set.migrations.iter().map(|_| Vec::new()).collect();
    let mut global = Vec::new();
    let current = entries(set);
    let sum = PathBuf::from(SUM_FILE);
    for r in recorded {
        let found = current
            .iter()
            .find(|(_, e)| e.kind == r.kind && same_version(&e.version, &r.version));
        match found {
            Some((i, e)) if e.sha256 != r.sha256 => per[*i].push(Finding {
                severity: Severity::Error,
                rule: "checksum-mismatch".into(),
                message: format!(
                    "{} ({} of {}) was edited after it was recorded in backstop.sum (recorded \
                     sha256 {}…, now {}…): databases that already applied it keep the old \
                     version; put the change in a new migration",
                    e.file.display(),
                    r.kind,
                    r.version,
                    &r.sha256[..12],
                    &e.sha256[..12]
                ),
                file: Some(e.file.clone()),
                line: None,
            }),
            Some(_) => {}
            None => {
                let target = set
                    .migrations
                    .iter()
                    .position(|m| same_version(&m.version, &r.version));
                let f = Finding {
                    severity: Severity::Error,
                    rule: "checksum-mismatch".into(),
                    message: format!(
                        "the {} script of migration {} ({}) is recorded in backstop.sum but is \
                         gone",
                        r.kind,
                        r.version,
                        r.file.display()
                    ),
                    file: Some(sum.clone()),
                    line: Some(r.line),
                };
                match target {
                    Some(i) => per[i].push(f),
                    None => global.push(f),
                }
            }
        }
    }
    // A migration not recorded yet must come after every recorded one.
    if let Some(last) = recorded.last() {
        for (i, m) in set.migrations.iter().enumerate() {
            let is_recorded = recorded
                .iter()
                .any(|r| same_version(&r.version, &m.version));
            if !is_recorded
                && compare_versions(&m.version, &last.version) == std::cmp::Ordering::Less
                && !matches!(
                    set.layout,
                    crate::model::Layout::Sqitch | crate::model::Layout::Liquibase
                )
            {
                per[i].push(Finding {
                    severity: Severity::Error,
                    rule: "checksum-mismatch".into(),
                    message: format!(
                        "migration {} is new but sorts before {} recorded in backstop.sum: \
                         databases already past it would never apply it; give it a later version",
                        m.version, last.version
                    ),
                    file: Some(m.up.file.clone()),
                    line: None,
                });
            }
        }
    }
    (per, global)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, paired};

    fn set(down_sql: &str) -> MigrationSet {
        fixtures::set(
            "/nowhere",
            vec![paired(
                "0001",
                "init",
                "CREATE TABLE t (id INTEGER);\n",
                Some(down_sql),
            )],
        )
    }

    #[test]
    fn an_edited_down_is_named() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = set("DROP TABLE t;\n");
        s.dir = dir.path().to_path_buf();
        write_sum(&s).unwrap();
        let recorded = read_sum(dir.path()).unwrap().unwrap();
        assert_eq!(recorded.len(), 2);
        let (per, global) = compare(&s, &recorded);
        assert!(per[0].is_empty() && global.is_empty());
        let edited = set("-- nothing\n");
        let (per, _) = compare(&edited, &recorded);
        assert_eq!(per[0].len(), 1);
        assert_eq!(per[0][0].rule, "checksum-mismatch");
        assert_eq!(
            per[0][0].file.as_deref(),
            Some(Path::new("0001_init.down.sql"))
        );
        assert_ne!(checksums(&s)[0].chain, checksums(&edited)[0].chain);
    }

    #[test]
    fn a_hand_edited_sum_is_an_input_error() {
        let dir = tempfile::tempdir().unwrap();
        let mut s = set("DROP TABLE t;\n");
        s.dir = dir.path().to_path_buf();
        let path = write_sum(&s).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let up = checksums(&s)[0].up.clone();
        std::fs::write(&path, text.replace(&up, &"0".repeat(64))).unwrap();
        let e = read_sum(dir.path()).unwrap_err();
        assert_eq!(e.line, Some(2), "{e}");
    }
}
