//! The whole check of a migration set — read, parse, lint, checksums, proof — and its report in
//! the JSON shape of `spec/migrations-check.md` (with extra fields) or as text for people.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use serde::Serialize;

use crate::checksum::{self, Checksum};
use crate::model::{Engine, Finding, InputError, Layout, MigrationSet, Phase, Severity};
use crate::proof::{self, ProofError, ProofResult};

/// One migration's verdict.
#[derive(Debug, Clone, Serialize)]
pub struct MigrationReport {
    pub version: String,
    pub name: String,
    /// The up script's file, relative to the migration folder.
    pub up: PathBuf,
    pub down: Option<PathBuf>,
    /// It has a down script.
    pub reversible: bool,
    /// Up, down and up again ran on the scratch database and the schema came back both times.
    pub proven: bool,
    /// Errors first, then warnings, then info.
    pub findings: Vec<Finding>,
    /// `-- backstop:irreversible` reason (or the layout's way of saying so).
    pub irreversible: Option<String>,
    pub forward_only: bool,
    pub phase: Option<Phase>,
    pub no_transaction: bool,
    pub checksum: Checksum,
    pub up_ms: u64,
    pub down_ms: u64,
}

impl MigrationReport {
    /// Declared irreversible (or forward-only without a down): passes without a proof.
    pub fn declared_irreversible(&self) -> bool {
        self.irreversible.is_some() || (self.forward_only && self.down.is_none())
    }

    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }
}

/// Counts for the summary line.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub migrations: usize,
    pub proven: usize,
    pub irreversible: usize,
    pub failed: usize,
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
}

/// The result of `backstop migrations check`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub engine: Engine,
    /// Every migration is proven (or declared irreversible) and no finding is an error.
    pub ok: bool,
    pub migrations: Vec<MigrationReport>,
    pub layout: Layout,
    pub dir: PathBuf,
    /// Findings about the set rather than one migration (e.g. a recorded script that is gone).
    pub findings: Vec<Finding>,
    /// `checked` (compared with backstop.sum), `written` (--write-sum) or `none`.
    pub sum: &'static str,
    pub summary: Summary,
}

impl Report {
    /// The exit code of the spec: 0 ok, 1 an error finding or a failed proof.
    pub fn exit_code(&self) -> i32 {
        if self.ok { 0 } else { 1 }
    }
}

/// Why a check could not produce a report.
#[derive(Debug, thiserror::Error)]
pub enum CheckError {
    /// Bad input (exit 2): the layout, a file, SQL that does not parse, colliding versions.
    #[error("{0}")]
    Input(#[from] InputError),
    /// The scratch database could not be used (exit 2 when PostgreSQL is missing or the URL is
    /// bad, 3 when it cannot be reached or started).
    #[error("{0}")]
    Proof(#[from] ProofError),
}

impl CheckError {
    pub fn exit_code(&self) -> i32 {
        match self {
            CheckError::Input(_) => 2,
            CheckError::Proof(e) => i32::from(e.exit_code()),
        }
    }
}

/// How to check.
#[derive(Clone, Copy)]
pub struct CheckOptions<'a> {
    pub engine: Engine,
    pub database_url: Option<&'a str>,
    /// Write (refresh) `backstop.sum` instead of comparing with it.
    pub write_sum: bool,
    /// Told before each migration is proven, with how many there are: `(index, total, version)`.
    pub progress: Option<OnProgress<'a>>,
}

/// `(index, total, version)` before each migration is proven.
pub type OnProgress<'a> = &'a (dyn Fn(usize, usize, &str) + Send + Sync);

/// Check the migration set in `dir` (the call the deployment gate makes): read, parse, lint,
/// compare with `backstop.sum` if present, prove on a scratch database. A scratch database that
/// cannot be used is reported as an [`InputError`] naming `dir`; use [`check_with`] to tell it
/// apart.
pub async fn check(
    dir: &Path,
    engine: Engine,
    database_url: Option<&str>,
) -> Result<Report, InputError> {
    let opts = CheckOptions {
        engine,
        database_url,
        write_sum: false,
        progress: None,
    };
    check_with(dir, &opts).await.map_err(|e| match e {
        CheckError::Input(i) => i,
        CheckError::Proof(p) => InputError {
            file: dir.to_path_buf(),
            line: None,
            message: format!("cannot run the reversibility proof: {p}"),
        },
    })
}

/// [`check`] with every option, keeping proof infrastructure errors apart.
pub async fn check_with(dir: &Path, opts: &CheckOptions<'_>) -> Result<Report, CheckError> {
    let set = crate::layout::load(dir)?;
    let lint = crate::lint::lint(&set, opts.engine)?;
    let (sum_findings, global, sum_state) = if opts.write_sum {
        checksum::write_sum(&set)?;
        (
            vec![Vec::new(); set.migrations.len()],
            Vec::new(),
            "written",
        )
    } else {
        match checksum::read_sum(dir)? {
            Some(recorded) => {
                let (per, global) = checksum::compare(&set, &recorded);
                (per, global, "checked")
            }
            None => (vec![Vec::new(); set.migrations.len()], Vec::new(), "none"),
        }
    };
    let total = set.migrations.len();
    let tell = |i: usize, version: &str| {
        if let Some(p) = opts.progress {
            p(i, total, version);
        }
    };
    let proofs = proof::prove_reporting(&set, opts.engine, opts.database_url, &tell).await?;
    Ok(assemble(
        &set,
        opts.engine,
        lint,
        sum_findings,
        global,
        &proofs,
        sum_state,
    ))
}

/// Put the parts together: lint, checksum and proof findings per migration, and the verdict.
/// A migration declared irreversible and accepted as forward-only (a contract step run after
/// the versions that read what it removes have retired) has said, on purpose, that its up
/// destroys or breaks what came before: those findings stay visible as warnings, and rollback
/// plans refuse to cross it.
fn accept_forward_only(m: &crate::model::Migration, findings: &mut [Finding]) {
    if m.irreversible.is_none() || !m.forward_only {
        return;
    }
    for f in findings.iter_mut().filter(|f| {
        f.severity == Severity::Error
            && f.file.as_ref() == Some(&m.up.file)
            && (f.rule.starts_with("destructive-") || f.rule.starts_with("breaking-"))
    }) {
        f.severity = Severity::Warning;
        f.message
            .push_str(" (accepted: irreversible, forward-only)");
    }
}

pub fn assemble(
    set: &MigrationSet,
    engine: Engine,
    lint: Vec<Vec<Finding>>,
    sums: Vec<Vec<Finding>>,
    global: Vec<Finding>,
    proofs: &[ProofResult],
    sum_state: &'static str,
) -> Report {
    let checksums = checksum::checksums(set);
    let mut lint = lint.into_iter();
    let mut sums = sums.into_iter();
    let mut migrations = Vec::with_capacity(set.migrations.len());
    for (i, (m, cs)) in set.migrations.iter().zip(checksums).enumerate() {
        let mut findings = lint.next().unwrap_or_default();
        findings.extend(sums.next().unwrap_or_default());
        let proof = proofs
            .get(i)
            .filter(|p| p.version == m.version)
            .or_else(|| proofs.iter().find(|p| p.version == m.version));
        let (reversible, proven, up_ms, down_ms) = match proof {
            Some(p) => {
                findings.extend(p.findings.iter().cloned());
                (p.reversible, p.proven, p.up_ms, p.down_ms)
            }
            None => {
                findings.push(Finding {
                    severity: Severity::Error,
                    rule: "not-proven".into(),
                    message: "the proof returned no result for this migration".into(),
                    file: Some(m.up.file.clone()),
                    line: None,
                });
                (m.down.is_some(), false, 0, 0)
            }
        };
        let mut down_hash = String::new();
        if let Some(d) = &cs.down {
            let _ = write!(down_hash, ", down {}", &d[..12]);
        }
        findings.push(Finding {
            severity: Severity::Info,
            rule: "checksum".into(),
            message: format!(
                "sha256 up {}{down_hash}; chain {}",
                &cs.up[..12],
                &cs.chain[..12]
            ),
            file: Some(m.up.file.clone()),
            line: None,
        });
        accept_forward_only(m, &mut findings);
        findings.sort_by_key(|f| std::cmp::Reverse(f.severity));
        migrations.push(MigrationReport {
            version: m.version.clone(),
            name: m.name.clone(),
            up: m.up.file.clone(),
            down: m.down.as_ref().map(|d| d.file.clone()),
            reversible,
            proven,
            findings,
            irreversible: m.irreversible.clone(),
            forward_only: m.forward_only,
            phase: m.phase,
            no_transaction: m.no_transaction,
            checksum: cs,
            up_ms,
            down_ms,
        });
    }
    let mut summary = Summary {
        migrations: migrations.len(),
        ..Summary::default()
    };
    for f in migrations.iter().flat_map(|m| &m.findings).chain(&global) {
        match f.severity {
            Severity::Error => summary.errors += 1,
            Severity::Warning => summary.warnings += 1,
            Severity::Info => summary.infos += 1,
        }
    }
    for m in &migrations {
        if m.proven {
            summary.proven += 1;
        } else if m.declared_irreversible() {
            summary.irreversible += 1;
        }
        if m.has_errors() || (!m.proven && !m.declared_irreversible()) {
            summary.failed += 1;
        }
    }
    let ok = summary.errors == 0 && summary.failed == 0;
    Report {
        engine,
        ok,
        migrations,
        layout: set.layout,
        dir: set.dir.clone(),
        findings: global,
        sum: sum_state,
        summary,
    }
}

fn location(f: &Finding) -> String {
    match (&f.file, f.line) {
        (Some(file), Some(line)) => format!("{}:{line}", file.display()),
        (Some(file), None) => file.display().to_string(),
        (None, _) => String::new(),
    }
}

fn severity_word(s: Severity) -> &'static str {
    match s {
        Severity::Error => "error",
        Severity::Warning => "warning",
        Severity::Info => "info",
    }
}

fn layout_word(l: Layout) -> String {
    serde_json::to_value(l)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_default()
}

/// The report for people: one block per migration (✓ proven, ✗ failed, ! irreversible), its
/// errors and warnings with `file:line`, and a summary line. Info findings (checksums, timings)
/// are in the JSON output.
pub fn render_text(r: &Report) -> String {
    let mut out = String::new();
    let engine = if r.engine == Engine::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    let _ = writeln!(
        out,
        "{} ({} layout, {engine})",
        r.dir.display(),
        layout_word(r.layout)
    );
    let width = r
        .migrations
        .iter()
        .map(|m| m.version.len() + 1 + m.name.len())
        .max()
        .unwrap_or(0);
    for m in &r.migrations {
        let failed = m.has_errors() || (!m.proven && !m.declared_irreversible());
        let (mark, state) = if failed {
            (
                "✗",
                if m.proven {
                    "proven, but with errors".to_string()
                } else {
                    "not proven".to_string()
                },
            )
        } else if m.proven {
            (
                "✓",
                format!("proven (up {} ms, down {} ms)", m.up_ms, m.down_ms),
            )
        } else {
            let how = if m.forward_only {
                "irreversible, forward-only"
            } else {
                "irreversible"
            };
            ("!", how.to_string())
        };
        let label = format!("{} {}", m.version, m.name);
        let _ = writeln!(out, "  {mark} {label:<width$}  {state}");
        for f in m.findings.iter().filter(|f| f.severity != Severity::Info) {
            let _ = writeln!(
                out,
                "      {:<7} {}  {}: {}",
                severity_word(f.severity),
                f.rule,
                location(f),
                f.message
            );
        }
    }
    for f in r.findings.iter().filter(|f| f.severity != Severity::Info) {
        let _ = writeln!(
            out,
            "  {:<7} {}  {}: {}",
            severity_word(f.severity),
            f.rule,
            location(f),
            f.message
        );
    }
    let s = &r.summary;
    let sum = match r.sum {
        "checked" => "; checksums match backstop.sum",
        "written" => "; backstop.sum written",
        _ => "",
    };
    let sum = if r.sum == "checked"
        && r.migrations
            .iter()
            .flat_map(|m| &m.findings)
            .chain(&r.findings)
            .any(|f| f.rule == "checksum-mismatch")
    {
        "; backstop.sum does NOT match"
    } else {
        sum
    };
    let _ = writeln!(
        out,
        "{}: {} migrations, {} proven, {} irreversible, {} failed; {} errors, {} warnings{sum}",
        if r.ok { "ok" } else { "FAILED" },
        s.migrations,
        s.proven,
        s.irreversible,
        s.failed,
        s.errors,
        s.warnings
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::{self, paired};
    use crate::model::Migration;

    fn set() -> MigrationSet {
        let m = |v: &str, down: bool| Migration {
            irreversible: (!down).then(String::new),
            forward_only: !down,
            ..paired(
                v,
                "x",
                "CREATE TABLE t (id INTEGER);\n",
                down.then_some("DROP TABLE t;\n"),
            )
        };
        fixtures::set("set", vec![m("0001", true), m("0002", false)])
    }

    fn proof(v: &str, proven: bool) -> ProofResult {
        ProofResult {
            version: v.into(),
            reversible: proven,
            proven,
            findings: vec![],
            up_ms: 1,
            down_ms: 2,
        }
    }

    #[test]
    fn ok_needs_proofs_or_declared_irreversibility_and_no_errors() {
        let s = set();
        let r = assemble(
            &s,
            Engine::Sqlite,
            vec![vec![], vec![]],
            vec![vec![], vec![]],
            vec![],
            &[proof("0001", true), proof("0002", false)],
            "none",
        );
        assert!(r.ok, "{}", render_text(&r));
        assert_eq!(r.summary.proven, 1);
        assert_eq!(r.summary.irreversible, 1);
        let json = serde_json::to_value(&r).unwrap();
        assert_eq!(json["engine"], "sqlite");
        assert_eq!(json["migrations"][0]["up"], "0001_x.up.sql");
        assert_eq!(json["migrations"][0]["down"], "0001_x.down.sql");
        assert_eq!(json["migrations"][1]["down"], serde_json::Value::Null);

        let r = assemble(
            &s,
            Engine::Sqlite,
            vec![vec![], vec![]],
            vec![vec![], vec![]],
            vec![],
            &[proof("0001", false), proof("0002", false)],
            "none",
        );
        assert!(!r.ok);
        assert_eq!(r.exit_code(), 1);
        assert!(render_text(&r).contains("✗ 0001 x"), "{}", render_text(&r));
    }
}
