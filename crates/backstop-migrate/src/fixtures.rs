//! Migration sets the unit tests write inline (the layout readers have their own tests).

use std::path::PathBuf;

use crate::layout::migration;
use crate::model::{Layout, Migration, MigrationSet, Script};

/// `sql` as the whole of `file`, from its first line.
pub(crate) fn script(file: &str, sql: &str) -> Script {
    Script {
        file: file.into(),
        line: 1,
        sql: sql.into(),
    }
}

/// A paired-layout migration `{version}_{name}.up.sql` / `.down.sql`.
pub(crate) fn paired(version: &str, name: &str, up: &str, down: Option<&str>) -> Migration {
    Migration {
        down: down.map(|d| script(&format!("{version}_{name}.down.sql"), d)),
        ..migration(
            version.into(),
            name.into(),
            script(&format!("{version}_{name}.up.sql"), up),
        )
    }
}

/// A paired-layout set in `dir`.
pub(crate) fn set(dir: impl Into<PathBuf>, migrations: Vec<Migration>) -> MigrationSet {
    MigrationSet {
        dir: dir.into(),
        layout: Layout::Paired,
        migrations,
        notes: Vec::new(),
    }
}
