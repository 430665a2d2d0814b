//! Layouts that keep several scripts in one file, split by comment markers: goose
//! (`-- +goose Up` / `-- +goose Down`), dbmate (`-- migrate:up` / `-- migrate:down`) and Liquibase
//! formatted SQL (`--changeset author:id` blocks with `--rollback` lines).
//!
//! Every section's [`Script::line`] is the file line its SQL starts on, and the SQL keeps the
//! file's line structure, so a parse error inside a section still names the right line.

use std::path::{Path, PathBuf};

use super::{Listing, migration, read_text, split_version_name};
use crate::model::{InputError, Layout, Migration, Script};

/// A goose marker line (`-- +goose up`, case-insensitive), as the lowercased word after `+goose`.
pub(super) fn goose_marker(line: &str) -> Option<String> {
    let rest = line.strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix("+goose")?;
    Some(rest.trim().to_ascii_lowercase())
}

/// A dbmate marker: `-- migrate:up [transaction:false]` → `("up", options)`.
pub(super) fn dbmate_marker(line: &str) -> Option<(String, String)> {
    let rest = line.strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix("migrate:")?;
    let (word, opts) = match rest.split_once(char::is_whitespace) {
        Some((w, o)) => (w, o.trim()),
        None => (rest.trim(), ""),
    };
    Some((word.to_ascii_lowercase(), opts.to_string()))
}

pub(super) fn is_liquibase_header(line: &str) -> bool {
    line.strip_prefix("--")
        .map(|r| r.trim().eq_ignore_ascii_case("liquibase formatted sql"))
        .unwrap_or(false)
}

/// `--changeset author:id attr:value…` → the text after `changeset`.
pub(super) fn changeset_header(line: &str) -> Option<&str> {
    let rest = line.strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix("changeset")?;
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(rest.trim())
}

fn line_no(index: usize) -> u32 {
    u32::try_from(index + 1).unwrap_or(u32::MAX)
}

/// The file's lines `from..to` (0-based, exclusive end) as one script starting at `from`.
fn section(file: &Path, lines: &[&str], from: usize, to: usize) -> Script {
    let sql = if from < to {
        let mut s = lines[from..to].join("\n");
        s.push('\n');
        s
    } else {
        String::new()
    };
    Script {
        file: file.to_path_buf(),
        line: line_no(from),
        sql,
    }
}

fn is_blank_or_comment(line: &str) -> bool {
    let t = line.trim();
    t.is_empty() || t.starts_with("--")
}

/// goose and dbmate: one `{version}_{name}.sql` file per migration with an up section and
/// (usually) a down section.
pub(super) fn goose_or_dbmate(
    dir: &Path,
    listing: &Listing,
    layout: Layout,
) -> Result<Vec<Migration>, InputError> {
    let tool = if layout == Layout::Goose {
        "-- +goose Up"
    } else {
        "-- migrate:up"
    };
    let mut out = Vec::new();
    for name in &listing.sql_files {
        let file = PathBuf::from(name);
        let bad = |line: Option<u32>, message: String| InputError {
            file: file.clone(),
            line,
            message,
        };
        let stem = &name[..name.len() - 4];
        let Some((version, mig_name)) = split_version_name(stem) else {
            return Err(bad(
                None,
                "not a migration file name: expected {version}_{name}.sql".into(),
            ));
        };
        if mig_name.is_empty() || version.contains('-') {
            return Err(bad(
                None,
                format!("an up without a migration name: expected {version}_<name>.sql"),
            ));
        }
        let text = read_text(dir, &file)?;
        let lines: Vec<&str> = text.lines().collect();
        let mut up: Option<usize> = None;
        let mut down: Option<usize> = None;
        let mut no_tx = false;
        for (i, raw) in lines.iter().enumerate() {
            let t = raw.trim();
            let word = if layout == Layout::Goose {
                match goose_marker(t) {
                    Some(w) if w == "no transaction" => {
                        no_tx = true;
                        continue;
                    }
                    Some(w) if w == "statementbegin" || w == "statementend" => continue,
                    Some(w) if w == "up" || w == "down" => w,
                    Some(w) if w.starts_with("envsub") => continue,
                    Some(other) => {
                        return Err(bad(
                            Some(line_no(i)),
                            format!("unknown goose annotation `+goose {other}`"),
                        ));
                    }
                    None => continue,
                }
            } else {
                match dbmate_marker(t) {
                    Some((w, opts)) if w == "up" || w == "down" => {
                        if opts.split_whitespace().any(|o| o == "transaction:false") {
                            no_tx = true;
                        }
                        w
                    }
                    Some((other, _)) => {
                        return Err(bad(
                            Some(line_no(i)),
                            format!("unknown dbmate marker `migrate:{other}`"),
                        ));
                    }
                    None => continue,
                }
            };
            let slot = if word == "up" { &mut up } else { &mut down };
            if slot.is_some() {
                return Err(bad(
                    Some(line_no(i)),
                    format!("a second {word} section in one file"),
                ));
            }
            *slot = Some(i);
        }
        let Some(up_at) = up else {
            return Err(bad(
                None,
                format!("no up section: expected a `{tool}` line"),
            ));
        };
        if let Some(i) = lines[..up_at.min(down.unwrap_or(usize::MAX))]
            .iter()
            .position(|l| !is_blank_or_comment(l))
        {
            return Err(bad(
                Some(line_no(i)),
                format!("SQL before the first section marker (`{tool}`)"),
            ));
        }
        let (up_script, down_script) = match down {
            Some(d) if d > up_at => (
                section(&file, &lines, up_at + 1, d),
                Some(section(&file, &lines, d + 1, lines.len())),
            ),
            Some(d) => (
                section(&file, &lines, up_at + 1, lines.len()),
                Some(section(&file, &lines, d + 1, up_at)),
            ),
            None => (section(&file, &lines, up_at + 1, lines.len()), None),
        };
        let mut m = migration(version.to_string(), mig_name.to_string(), up_script);
        m.down = down_script;
        m.no_transaction = no_tx;
        out.push(m);
    }
    Ok(out)
}

/// A `--rollback` line's SQL (the text after the marker).
fn rollback_line(line: &str) -> Option<&str> {
    let rest = line.trim_start().strip_prefix("--")?.trim_start();
    let rest = rest.strip_prefix("rollback")?;
    if let Some(after) = rest.strip_prefix(':') {
        return Some(after.trim_start());
    }
    if !rest.is_empty() && !rest.starts_with(char::is_whitespace) {
        return None;
    }
    Some(rest.trim_start())
}

struct Changeset {
    header_line: usize,
    author: String,
    id: String,
    no_tx: bool,
    body_from: usize,
    body_to: usize,
}

/// Liquibase formatted SQL: each `--changeset author:id` block is one migration (applied in
/// changelog order, files by name); its `--rollback` lines (or a `/* liquibase rollback … */`
/// block) are the down; `--rollback not required` / `--rollback empty` declare it irreversible.
pub(super) fn liquibase(dir: &Path, listing: &Listing) -> Result<Vec<Migration>, InputError> {
    let mut out: Vec<Migration> = Vec::new();
    let mut seen: Vec<(String, String, PathBuf)> = Vec::new();
    for name in &listing.sql_files {
        let file = PathBuf::from(name);
        let text = read_text(dir, &file)?;
        let lines: Vec<&str> = text.lines().collect();
        let bad = |line: usize, message: String| InputError {
            file: file.clone(),
            line: Some(line_no(line)),
            message,
        };
        if !lines
            .iter()
            .find(|l| !l.trim().is_empty())
            .is_some_and(|l| is_liquibase_header(l.trim()))
        {
            return Err(InputError {
                file: file.clone(),
                line: Some(1),
                message:
                    "a Liquibase formatted SQL file must start with `--liquibase formatted sql`"
                        .into(),
            });
        }
        let mut sets: Vec<Changeset> = Vec::new();
        for (i, l) in lines.iter().enumerate() {
            let Some(h) = changeset_header(l.trim()) else {
                continue;
            };
            let mut words = h.split_whitespace();
            let ident = words.next().unwrap_or("");
            let Some((author, id)) = ident.split_once(':') else {
                return Err(bad(
                    i,
                    "a changeset needs `author:id` (e.g. `--changeset alice:1`)".into(),
                ));
            };
            if author.is_empty() || id.is_empty() {
                return Err(bad(
                    i,
                    "an up without a migration name: the changeset needs `author:id`".into(),
                ));
            }
            let no_tx = words.any(|w| w.eq_ignore_ascii_case("runInTransaction:false"));
            if let Some(last) = sets.last_mut() {
                last.body_to = i;
            }
            sets.push(Changeset {
                header_line: i,
                author: author.to_string(),
                id: id.to_string(),
                no_tx,
                body_from: i + 1,
                body_to: lines.len(),
            });
        }
        if sets.is_empty() {
            return Err(InputError {
                file: file.clone(),
                line: None,
                message: "no `--changeset author:id` block in this file".into(),
            });
        }
        if let Some(i) = lines[..sets[0].header_line]
            .iter()
            .position(|l| !is_blank_or_comment(l))
        {
            return Err(bad(i, "SQL before the first `--changeset`".into()));
        }
        for cs in sets {
            if let Some((_, _, prev)) = seen
                .iter()
                .find(|(a, id, _)| *a == cs.author && *id == cs.id)
            {
                return Err(bad(
                    cs.header_line,
                    format!(
                        "changeset {}:{} collides with the one in {}",
                        cs.author,
                        cs.id,
                        prev.display()
                    ),
                ));
            }
            seen.push((cs.author.clone(), cs.id.clone(), file.clone()));
            out.push(changeset(&file, &lines, &cs)?);
        }
    }
    Ok(out)
}

fn changeset(file: &Path, lines: &[&str], cs: &Changeset) -> Result<Migration, InputError> {
    // Up: the body with rollback lines blanked; down: the rollback lines, in place.
    let mut up_lines: Vec<String> = Vec::new();
    let mut down_lines: Vec<(usize, String)> = Vec::new();
    let mut in_block = false;
    for (i, l) in lines.iter().enumerate().take(cs.body_to).skip(cs.body_from) {
        let t = l.trim();
        if in_block {
            if let Some(before) = t.strip_suffix("*/") {
                down_lines.push((i, before.to_string()));
                in_block = false;
            } else {
                down_lines.push((i, (*l).to_string()));
            }
            up_lines.push(String::new());
            continue;
        }
        if let Some(rest) = t.strip_prefix("/*") {
            let rest = rest.trim_start();
            if let Some(body) = rest.strip_prefix("liquibase rollback") {
                let body = body.trim();
                match body.strip_suffix("*/") {
                    Some(b) => down_lines.push((i, b.to_string())),
                    None => {
                        down_lines.push((i, body.to_string()));
                        in_block = true;
                    }
                }
                up_lines.push(String::new());
                continue;
            }
        }
        if let Some(sql) = rollback_line(l) {
            down_lines.push((i, sql.to_string()));
            up_lines.push(String::new());
            continue;
        }
        up_lines.push((*l).to_string());
    }
    if in_block {
        return Err(InputError {
            file: file.to_path_buf(),
            line: Some(line_no(cs.body_from)),
            message: "a `/* liquibase rollback` block is not closed with `*/`".into(),
        });
    }
    let mut up_sql = up_lines.join("\n");
    up_sql.push('\n');
    let up = Script {
        file: file.to_path_buf(),
        line: line_no(cs.body_from),
        sql: up_sql,
    };
    let mut m = migration(cs.id.clone(), cs.author.clone(), up);
    m.no_transaction = cs.no_tx;
    let declared: Vec<&str> = down_lines
        .iter()
        .map(|(_, s)| s.trim())
        .filter(|s| !s.is_empty())
        .collect();
    if let [only] = declared.as_slice() {
        let lower = only.trim_end_matches(';').to_ascii_lowercase();
        if lower == "not required" || lower == "empty" {
            m.irreversible = Some(format!("liquibase `--rollback {lower}`"));
            return Ok(m);
        }
        if lower.starts_with("changesetid:") {
            return Err(InputError {
                file: file.to_path_buf(),
                line: Some(line_no(down_lines[0].0)),
                message: "a rollback that points at another changeset is not supported; \
                          write the rollback SQL here"
                    .into(),
            });
        }
    }
    if let (Some((first, _)), Some((last, _))) = (down_lines.first(), down_lines.last()) {
        let mut text: Vec<String> = vec![String::new(); last - first + 1];
        for (i, s) in &down_lines {
            text[i - first] = s.clone();
        }
        let mut sql = text.join("\n");
        sql.push('\n');
        m.down = Some(Script {
            file: file.to_path_buf(),
            line: line_no(*first),
            sql,
        });
    }
    Ok(m)
}
