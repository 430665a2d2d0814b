//! The whole check of a migration set — read, parse, lint, checksums, proof — and its report in
//! the JSON shape of `spec/migrations-check.md` (with extra fields) or as text for people.

use std::collections::BTreeMap;
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
    /// Up to and including `--since`, or unproven with that allowed (`backstop:allow
    /// missing-down <reason>`): accepted history. Its proof still runs (later migrations
    /// start from the schema it builds, and whether it is proven is reported), but its findings
    /// are kept as info: applied history cannot be edited (checksum mismatches and a missing
    /// extension still count).
    pub accepted: bool,
}

impl MigrationReport {
    /// Declared irreversible (or forward-only without a down): passes without a proof.
    pub fn declared_irreversible(&self) -> bool {
        self.irreversible.is_some() || (self.forward_only && self.down.is_none())
    }

    pub fn has_errors(&self) -> bool {
        self.findings.iter().any(|f| f.severity == Severity::Error)
    }

    /// An error finding, or neither proven, declared irreversible nor accepted history.
    pub fn failed(&self) -> bool {
        self.has_errors() || (!self.proven && !self.declared_irreversible() && !self.accepted)
    }

    fn label(&self) -> String {
        format!("{} {}", self.version, self.name)
    }
}

/// How many findings of one rule, by severity.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct RuleTally {
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
}

/// Counts for the summary. Every migration is in exactly one of `proven`, `irreversible`,
/// `accepted` and `failed`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Summary {
    pub migrations: usize,
    /// Proven reversible, without an error finding.
    pub proven: usize,
    /// Declared irreversible (or without a down in an up-only layout), without an error.
    pub irreversible: usize,
    /// Up to `--since`, neither proven nor declared irreversible, without an error.
    pub accepted: usize,
    pub failed: usize,
    pub errors: usize,
    pub warnings: usize,
    pub infos: usize,
    /// Findings accepted by `backstop:allow`, `safety-assured` blocks or `--since` (now info).
    pub allowed: usize,
    /// Every rule seen, with its counts.
    pub by_rule: BTreeMap<String, RuleTally>,
    /// `version name` of every failed migration.
    pub failing: Vec<String>,
    /// `version name` of every migration the proof could not prove (a subset of `failing`
    /// unless accepted): no down, a failed step, or blocked by an earlier failure.
    pub unproven: Vec<String>,
}

/// The result of `backstop migrations check`.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub engine: Engine,
    /// What the proof ran on: `PostgreSQL 16.4`, `SQLite 3.46.1`.
    pub server: Option<String>,
    /// `--since`: the findings of migrations up to and including this version are skipped.
    pub since: Option<String>,
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
    /// The exit code of the spec: 0 ok, 1 an error finding or a failed proof, 3 when the scratch
    /// server lacks an extension (the environment, not the migrations, is at fault).
    pub fn exit_code(&self) -> i32 {
        let all = self.migrations.iter().flat_map(|m| &m.findings);
        if all.into_iter().any(|f| f.rule == "missing-extension") {
            3
        } else if self.ok {
            0
        } else {
            1
        }
    }

    /// Keeps only findings at `min` or above (the summary still counts every finding).
    pub fn retain_severity(&mut self, min: Severity) {
        for m in &mut self.migrations {
            m.findings.retain(|f| f.severity >= min);
        }
        self.findings.retain(|f| f.severity >= min);
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
    /// Skip the findings (not the proofs) of the migrations up to and including this version
    /// (`spec/cli-contracts.md`).
    pub since: Option<&'a str>,
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
        since: None,
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
    let accepted_upto = match opts.since {
        Some(v) => since_count(&set, v)?,
        None => 0,
    };
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
    let proved = proof::prove_reporting(&set, opts.engine, opts.database_url, &tell).await?;
    let mut report = assemble(
        &set,
        opts.engine,
        lint,
        sum_findings,
        global,
        &proved.results,
        sum_state,
        accepted_upto,
    );
    report.server = Some(proved.server);
    report.since = opts.since.map(str::to_string);
    Ok(report)
}

/// How many migrations `--since VERSION` accepts: those up to and including the one with that
/// version, or in a set ordered by version every one not after it. Sqitch and Liquibase need an
/// exact name.
fn since_count(set: &MigrationSet, since: &str) -> Result<usize, InputError> {
    let dashless = crate::layout::diesel_order;
    let exact = set.migrations.iter().position(|m| {
        m.version == since
            || (set.layout == Layout::Diesel && dashless(&m.version) == dashless(since))
            || crate::layout::compare_versions(&m.version, since).is_eq()
    });
    if let Some(i) = exact {
        return Ok(i + 1);
    }
    let ordered = !matches!(set.layout, Layout::Sqitch | Layout::Liquibase);
    let numeric = !since.is_empty()
        && since
            .bytes()
            .all(|c| c.is_ascii_digit() || matches!(c, b'-' | b'.' | b'_'));
    if ordered && numeric {
        let after = |v: &str| {
            if set.layout == Layout::Diesel {
                dashless(v) > dashless(since)
            } else {
                crate::layout::compare_versions(v, since).is_gt()
            }
        };
        // Past the last migration is a typo more often than a plan (an extra digit would
        // accept every migration yet to come): refused.
        if let Some(count) = set.migrations.iter().position(|m| after(&m.version)) {
            return Ok(count);
        }
        let last = set.migrations.last().map_or("", |m| m.version.as_str());
        return Err(InputError {
            file: set.dir.clone(),
            line: None,
            message: format!(
                "--since {since:?} is after the last migration ({last}): give the version of \
                 the newest migration to accept the whole history"
            ),
        });
    }
    let (first, last) = match (set.migrations.first(), set.migrations.last()) {
        (Some(f), Some(l)) => (f.version.as_str(), l.version.as_str()),
        _ => ("", ""),
    };
    Err(InputError {
        file: set.dir.clone(),
        line: None,
        message: format!(
            "--since {since:?}: no migration has this version (this set runs from {first} to \
             {last}{})",
            if ordered {
                "; give a version number"
            } else {
                "; give a change name from the plan"
            }
        ),
    })
}

/// A migration whose down is a placeholder (`noop-down`): one finding says so, instead of one
/// per object the down leaves behind plus a failed second up. When the proof passed, the up
/// changed no schema: a no-op down is right, unless the up changes data.
fn placeholder_down(
    m: &crate::model::Migration,
    engine: Engine,
    proof: &ProofResult,
    findings: &mut Vec<Finding>,
) {
    let Some(at) = findings.iter().position(|f| f.rule == "noop-down") else {
        return;
    };
    if proof.proven && !proof.schema_changed {
        let f = &mut findings[at];
        if crate::lint::rules::writes_data(&m.up, engine) {
            f.severity = Severity::Warning;
            f.message = "the up changes data (or privileges, comments) but not the schema, and \
                         the down does nothing: undo it in the down, or if it cannot be undone \
                         say so with `-- backstop:irreversible <reason>`"
                .into();
        } else {
            f.severity = Severity::Info;
            f.message = "the down does nothing, and neither did the up to the schema (the proof \
                         compared it before and after): nothing to undo"
                .into();
        }
        return;
    }
    let echoes = |f: &Finding| {
        matches!(
            f.rule.as_str(),
            "proof-schema-differs"
                | "proof-reapply-differs"
                | "reapply-failed"
                | "column-order"
                | "proof-rebuilt"
                | "down-incomplete"
        )
    };
    if !proof.schema_changed {
        // A data-only up whose second run failed: that finding says what breaks.
        return;
    }
    let left = findings
        .iter()
        .filter(|f| f.rule == "proof-schema-differs")
        .count();
    findings.retain(|f| !echoes(f));
    if let Some(f) = findings.iter_mut().find(|f| f.rule == "noop-down")
        && left > 0
    {
        let _ = write!(
            f.message,
            " (the proof confirms it: {left} change{} of the up remain{} after it)",
            if left == 1 { "" } else { "s" },
            if left == 1 { "s" } else { "" }
        );
    }
}

/// Rules that say why a migration is not proven: allowing one accepts it unproven.
const UNPROVEN_RULES: &[&str] = &[
    "missing-down",
    "noop-down",
    "not-proven",
    "up-failed",
    "down-failed",
    "reapply-failed",
    "proof-schema-differs",
    "proof-reapply-differs",
];

/// A finding its author (or `--since`) accepted: kept, as info, saying why.
fn accept(f: &mut Finding, why: &str) {
    f.severity = Severity::Info;
    let _ = write!(f.message, " (allowed: {why})");
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

#[allow(clippy::too_many_arguments)]
pub fn assemble(
    set: &MigrationSet,
    engine: Engine,
    lint: Vec<Vec<Finding>>,
    sums: Vec<Vec<Finding>>,
    mut global: Vec<Finding>,
    proofs: &[ProofResult],
    sum_state: &'static str,
    accepted_upto: usize,
) -> Report {
    global.extend(set.notes.iter().cloned());
    let up_only = set
        .migrations
        .iter()
        .filter(|m| m.irreversible.as_deref() == Some(crate::model::UP_ONLY))
        .count();
    if up_only > 0 {
        global.push(Finding {
            severity: Severity::Warning,
            rule: "irreversible".into(),
            message: format!(
                "{up_only} of {} migrations are sqlx up-only files with no down: rollback plans \
                 refuse to cross them; add a {{version}}_{{name}}.down.sql to make one reversible",
                set.migrations.len()
            ),
            file: None,
            line: None,
        });
    }
    let mut allowed = 0;
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
                placeholder_down(m, engine, p, &mut findings);
                if p.proven {
                    // The proof saw the schema come back: the rule's guess is moot.
                    for f in findings.iter_mut().filter(|f| f.rule == "down-incomplete") {
                        f.severity = Severity::Info;
                        f.message
                            .push_str(" (yet the proof shows the schema restored)");
                    }
                }
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
        let accepted = i < accepted_upto;
        for f in findings.iter_mut().filter(|f| f.severity > Severity::Info) {
            if let Some(a) = m.allows.iter().find(|a| a.covers(f)) {
                accept(f, &a.reason);
                allowed += 1;
            } else if accepted && !f.rule.starts_with("checksum") && f.rule != "missing-extension" {
                accept(f, "history up to --since");
                allowed += 1;
            }
        }
        // `backstop:allow missing-down …` (or any rule saying why it is not proven) accepts
        // the migration unproven, as --since does.
        let accepted = accepted
            || (!proven
                && m.allows
                    .iter()
                    .flat_map(|a| &a.rules)
                    .any(|r| UNPROVEN_RULES.contains(&r.as_str())));
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
            accepted,
        });
    }
    let mut summary = Summary {
        migrations: migrations.len(),
        allowed,
        ..Summary::default()
    };
    for f in migrations.iter().flat_map(|m| &m.findings).chain(&global) {
        let tally = summary.by_rule.entry(f.rule.clone()).or_default();
        match f.severity {
            Severity::Error => {
                summary.errors += 1;
                tally.errors += 1;
            }
            Severity::Warning => {
                summary.warnings += 1;
                tally.warnings += 1;
            }
            Severity::Info => {
                summary.infos += 1;
                tally.infos += 1;
            }
        }
    }
    for m in &migrations {
        if m.failed() {
            summary.failed += 1;
            summary.failing.push(m.label());
        } else if m.proven {
            summary.proven += 1;
        } else if m.declared_irreversible() {
            summary.irreversible += 1;
        } else {
            summary.accepted += 1;
        }
        if !m.proven && !m.declared_irreversible() && !m.accepted {
            summary.unproven.push(m.label());
        }
    }
    let ok = summary.errors == 0 && summary.failed == 0;
    Report {
        engine,
        server: None,
        since: None,
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

/// What the text report shows.
#[derive(Debug, Clone, Copy)]
pub struct TextOptions {
    /// Findings below this are left out (the JSON has them all).
    pub min_severity: Severity,
    /// Only failing migrations, the tally and the summary.
    pub quiet: bool,
}

impl Default for TextOptions {
    fn default() -> Self {
        TextOptions {
            min_severity: Severity::Warning,
            quiet: false,
        }
    }
}

fn write_finding(out: &mut String, indent: &str, f: &Finding) {
    // Multi-line messages (definition diffs) stay under their finding.
    let message = f.message.replace('\n', &format!("\n{indent}    "));
    let at = location(f);
    let at = if at.is_empty() { at } else { format!("{at}: ") };
    let _ = writeln!(
        out,
        "{indent}{:<7} {}  {at}{message}",
        severity_word(f.severity),
        f.rule,
    );
}

/// Versions in lines of at most ~100 characters.
fn write_list(out: &mut String, title: &str, items: &[String]) {
    if items.is_empty() {
        return;
    }
    let _ = write!(out, "{title} ({}):", items.len());
    let mut width = title.len() + 8;
    for (i, item) in items.iter().enumerate() {
        if width + item.len() > 100 {
            out.push_str("\n   ");
            width = 3;
        }
        let _ = write!(out, " {item}{}", if i + 1 < items.len() { "," } else { "" });
        width += item.len() + 2;
    }
    out.push('\n');
}

/// The report for people: a header naming the layout, engine and server; one block per
/// migration (✓ proven, ✗ failed, ! irreversible, ~ accepted history) with its findings at
/// `file:line`; a tally per rule; the failing and unproven migrations; a summary line.
pub fn render_text(r: &Report) -> String {
    render_text_with(r, TextOptions::default())
}

/// [`render_text`] with a severity floor and quiet mode.
pub fn render_text_with(r: &Report, opts: TextOptions) -> String {
    let mut out = String::new();
    let engine = if r.engine == Engine::Sqlite {
        "sqlite"
    } else {
        "postgres"
    };
    let server = r
        .server
        .as_deref()
        .map(|s| format!(", proven on {s}"))
        .unwrap_or_default();
    let since = r
        .since
        .as_deref()
        .map(|v| format!("; findings up to {v} accepted"))
        .unwrap_or_default();
    let _ = writeln!(
        out,
        "{} ({} layout, {engine}{server}{since})",
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
        let failed = m.failed();
        if opts.quiet && !failed {
            continue;
        }
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
            let how = if !m.declared_irreversible() {
                "not proven; accepted history (up to --since)"
            } else if m.irreversible.as_deref() == Some(crate::model::UP_ONLY) {
                "no down (up-only)"
            } else if m.forward_only {
                "irreversible, forward-only"
            } else {
                "irreversible"
            };
            ("!", how.to_string())
        };
        let label = m.label();
        let _ = writeln!(out, "  {mark} {label:<width$}  {state}");
        for f in m
            .findings
            .iter()
            .filter(|f| f.severity >= opts.min_severity)
        {
            write_finding(&mut out, "      ", f);
        }
    }
    for f in r
        .findings
        .iter()
        .filter(|f| f.severity >= opts.min_severity)
    {
        write_finding(&mut out, "  ", f);
    }
    let s = &r.summary;
    let shown: Vec<(&String, &RuleTally)> = s
        .by_rule
        .iter()
        .filter(|(_, t)| {
            t.errors + t.warnings > 0 || (opts.min_severity == Severity::Info && t.infos > 0)
        })
        .collect();
    if !shown.is_empty() {
        let rule_width = shown.iter().map(|(r, _)| r.len()).max().unwrap_or(4).max(4);
        let _ = writeln!(out, "\n{:<rule_width$}  errors  warnings  info", "rule");
        for (rule, t) in shown {
            let _ = writeln!(
                out,
                "{rule:<rule_width$}  {:>6}  {:>8}  {:>4}",
                t.errors, t.warnings, t.infos
            );
        }
        out.push('\n');
    }
    write_list(&mut out, "failing", &s.failing);
    write_list(&mut out, "unproven", &s.unproven);
    let sum = match r.sum {
        "checked" => "; checksums match backstop.sum",
        "written" => "; backstop.sum written",
        _ => "",
    };
    let sum = if r.sum == "checked" && s.by_rule.contains_key("checksum-mismatch") {
        "; backstop.sum does NOT match"
    } else {
        sum
    };
    let accepted = if s.accepted > 0 {
        format!(", {} accepted", s.accepted)
    } else {
        String::new()
    };
    let allowed = if s.allowed > 0 {
        format!(", {} allowed", s.allowed)
    } else {
        String::new()
    };
    let _ = writeln!(
        out,
        "{}: {} migrations: {} proven, {} irreversible{accepted}, {} failed; {} errors, {} \
         warnings{allowed}{sum}",
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
            schema_changed: true,
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
            0,
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
            0,
        );
        assert!(!r.ok);
        assert_eq!(r.exit_code(), 1);
        assert!(render_text(&r).contains("✗ 0001 x"), "{}", render_text(&r));
    }
}
