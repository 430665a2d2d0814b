//! Sqitch: `sqitch.plan` lists the changes in deploy order; each has `deploy/<change>.sql`,
//! usually `revert/<change>.sql` and `verify/<change>.sql`. A change reworked after a tag keeps
//! its earlier scripts as `<change>@<tag>.sql`.
//!
//! Plan grammar (App::Sqitch::Plan): `%pragma=value`, blank lines and `# comments`; tags
//! `@name …`; changes `[+|-]name [deps…] timestamp planner <email> [# note]`.

use std::path::{Path, PathBuf};

use super::{migration, read_text};
use crate::model::{InputError, Migration, Script};

struct PlanChange {
    name: String,
    line: u32,
    /// The first tag after this change in the plan (for reworked changes' script names).
    next_tag: Option<String>,
}

pub(super) fn read(dir: &Path) -> Result<Vec<Migration>, InputError> {
    let plan_file = PathBuf::from("sqitch.plan");
    let text = read_text(dir, &plan_file)?;
    let mut changes: Vec<PlanChange> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = u32::try_from(i + 1).unwrap_or(u32::MAX);
        let t = raw.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('%') {
            continue;
        }
        if let Some(tag) = t.strip_prefix('@') {
            let tag = tag.split_whitespace().next().unwrap_or("").to_string();
            for c in changes.iter_mut().rev() {
                if c.next_tag.is_some() {
                    break;
                }
                c.next_tag = Some(tag.clone());
            }
            continue;
        }
        let first = t.split_whitespace().next().unwrap_or("");
        let name = first.trim_start_matches(['+', '-']);
        let valid = !name.is_empty()
            && name
                .chars()
                .all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.' | '/' | ':'))
            && !name.contains("..");
        if !valid {
            return Err(InputError {
                file: plan_file,
                line: Some(line),
                message: format!("not a sqitch plan line: change name {first:?} is not valid"),
            });
        }
        changes.push(PlanChange {
            name: name.to_string(),
            line,
            next_tag: None,
        });
    }
    if changes.is_empty() {
        return Err(InputError {
            file: plan_file,
            line: None,
            message: "the plan lists no changes".into(),
        });
    }
    let mut out = Vec::new();
    for (index, c) in changes.iter().enumerate() {
        let reworked_later = changes[index + 1..].iter().any(|o| o.name == c.name);
        let stem = if reworked_later {
            match &c.next_tag {
                Some(tag) => format!("{}@{tag}", c.name),
                None => {
                    return Err(InputError {
                        file: plan_file,
                        line: Some(c.line),
                        message: format!(
                            "change {} appears twice without a tag between: a change can only be \
                             reworked after a tag",
                            c.name
                        ),
                    });
                }
            }
        } else {
            c.name.clone()
        };
        let rel = |folder: &str| Path::new(folder).join(format!("{stem}.sql"));
        let deploy = rel("deploy");
        if !dir.join(&deploy).is_file() {
            return Err(InputError {
                file: plan_file,
                line: Some(c.line),
                message: format!(
                    "change {} has no deploy script {}",
                    c.name,
                    deploy.display()
                ),
            });
        }
        let load = |p: PathBuf| -> Result<Script, InputError> {
            let sql = read_text(dir, &p)?;
            Ok(Script {
                file: p,
                line: 1,
                sql,
            })
        };
        let mut m = migration((index + 1).to_string(), c.name.clone(), load(deploy)?);
        let revert = rel("revert");
        if dir.join(&revert).is_file() {
            m.down = Some(load(revert)?);
        }
        let verify = rel("verify");
        if dir.join(&verify).is_file() {
            m.verify = Some(load(verify)?);
        }
        out.push(m);
    }
    // A revert script without a plan entry is a down without an up.
    if let Ok(entries) = std::fs::read_dir(dir.join("revert")) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let Some(stem) = name.strip_suffix(".sql") else {
                continue;
            };
            let base = stem.split('@').next().unwrap_or(stem);
            if !changes.iter().any(|c| c.name == base) {
                return Err(InputError {
                    file: Path::new("revert").join(&name),
                    line: None,
                    message: format!("a down without an up: change {base} is not in sqitch.plan"),
                });
            }
        }
    }
    Ok(out)
}
