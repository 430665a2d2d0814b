//! Config snapshots and rollout baselines: what was kept before a deployment so that a recovery
//! can put it back and compare against it.
//!
//! A snapshot's [`Manifest`] lists every file of an environment's `params` by sha256 (contents
//! live in the blob store), the env values, and each secret by reference with a keyed HMAC of
//! its value (never the value). The manifest itself is stored as a blob; its digest is the
//! snapshot's content address, and `(service, env, version)` its human name.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::Millis;

/// One stored snapshot version of an environment's parameters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ConfigSnapshot {
    pub service: String,
    pub env: String,
    /// 1, 2, 3… per (service, environment); a capture equal to the latest reuses its version.
    pub version: i64,
    /// sha256 of the manifest blob: the snapshot's content address.
    pub manifest: String,
    pub created_at_ms: Millis,
    pub actor: String,
    /// Why it was taken (`rollout <id>`, `on demand: …`).
    pub reason: String,
    /// The rollout it was first taken for, if any.
    pub rollout_id: Option<String>,
}

/// What one snapshot holds.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Manifest {
    /// Every file, by the path written in the config (a folder's files as `folder/relative`).
    pub files: BTreeMap<String, FileEntry>,
    /// The folders listed in `params.folders` (their files are in `files`).
    pub folders: Vec<String>,
    /// Listed files or folders that did not exist when the snapshot was taken.
    pub missing: Vec<String>,
    /// Plain env values.
    pub env: BTreeMap<String, String>,
    /// Secrets: reference and keyed HMAC, never the value.
    pub secrets: BTreeMap<String, SecretEntry>,
}

/// A file of a snapshot.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FileEntry {
    /// sha256 of the bytes (the blob holding them).
    pub sha256: String,
    pub size: u64,
    /// Valid UTF-8 without NUL bytes: diffed line by line.
    pub text: bool,
    /// Unix permission bits.
    pub mode: u32,
}

/// A secret of a snapshot: where it comes from and a keyed HMAC-SHA256 of its value.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SecretEntry {
    /// `env:VAR` or `file:PATH`.
    pub reference: String,
    /// `None` when the value could not be read at capture time.
    pub hmac: Option<String>,
}

impl Manifest {
    /// Whether the files part (what a restore writes) equals `other`'s.
    pub fn same_files(&self, other: &Manifest) -> bool {
        self.files == other.files && self.missing == other.missing && self.folders == other.folders
    }
}

/// One difference between two manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Change {
    /// `file`, `env` or `secret`.
    pub kind: String,
    pub name: String,
    /// `added`, `removed` or `changed`.
    pub status: String,
    /// Unified diff of a text file (absent for binaries, env values and secrets).
    pub diff: Option<String>,
}

/// The differences from `a` to `b`, files first, then env values, then secrets (each sorted by
/// name). A secret differs when its reference or its HMAC does. Diffs are filled in by callers
/// that hold the contents ([`unified_diff`]).
pub fn changes(a: &Manifest, b: &Manifest) -> Vec<Change> {
    let mut out = Vec::new();
    let mut push = |kind: &str, name: &str, status: &str| {
        out.push(Change {
            kind: kind.into(),
            name: name.into(),
            status: status.into(),
            diff: None,
        });
    };
    compare(&a.files, &b.files, |n, s| push("file", n, s));
    compare(&a.env, &b.env, |n, s| push("env", n, s));
    compare(&a.secrets, &b.secrets, |n, s| push("secret", n, s));
    let rank = |k: &str| ["file", "env", "secret"].iter().position(|x| *x == k);
    out.sort_by(|x, y| (rank(&x.kind), &x.name).cmp(&(rank(&y.kind), &y.name)));
    out
}

fn compare<V: PartialEq>(
    a: &BTreeMap<String, V>,
    b: &BTreeMap<String, V>,
    mut push: impl FnMut(&str, &str),
) {
    for (name, va) in a {
        match b.get(name) {
            None => push(name, "removed"),
            Some(vb) if vb != va => push(name, "changed"),
            Some(_) => {}
        }
    }
    for name in b.keys().filter(|n| !a.contains_key(*n)) {
        push(name, "added");
    }
}

/// Lines of context around each change in [`unified_diff`].
const CONTEXT: usize = 3;
/// Above this many line pairs the texts are not diffed line by line (only "changed").
const MAX_DIFF_CELLS: usize = 4_000_000;

/// A unified diff (`--- a`, `+++ b`, `@@` hunks with 3 lines of context) from `a` to `b`;
/// `None` when they are equal or too large to diff line by line.
pub fn unified_diff(a: &str, b: &str, a_label: &str, b_label: &str) -> Option<String> {
    if a == b {
        return None;
    }
    let x: Vec<&str> = a.lines().collect();
    let y: Vec<&str> = b.lines().collect();
    if (x.len() + 1).saturating_mul(y.len() + 1) > MAX_DIFF_CELLS {
        return None;
    }
    // Longest common subsequence table, from the ends.
    let (n, m) = (x.len(), y.len());
    let mut lcs = vec![0u32; (n + 1) * (m + 1)];
    let at = |i: usize, j: usize| i * (m + 1) + j;
    for i in (0..n).rev() {
        for j in (0..m).rev() {
            lcs[at(i, j)] = if x[i] == y[j] {
                lcs[at(i + 1, j + 1)] + 1
            } else {
                lcs[at(i + 1, j)].max(lcs[at(i, j + 1)])
            };
        }
    }
    // Edit script: (tag, line index in a, line index in b).
    let mut ops: Vec<(char, usize, usize)> = Vec::new();
    let (mut i, mut j) = (0, 0);
    while i < n || j < m {
        if i < n && j < m && x[i] == y[j] {
            ops.push((' ', i, j));
            i += 1;
            j += 1;
        } else if i < n && (j == m || lcs[at(i + 1, j)] >= lcs[at(i, j + 1)]) {
            // Removals before additions, as diff(1) prints them.
            ops.push(('-', i, j));
            i += 1;
        } else {
            ops.push(('+', i, j));
            j += 1;
        }
    }
    let mut out = format!("--- {a_label}\n+++ {b_label}\n");
    let changed: Vec<usize> = (0..ops.len()).filter(|&k| ops[k].0 != ' ').collect();
    let mut k = 0;
    while k < changed.len() {
        let start = changed[k].saturating_sub(CONTEXT);
        let mut end = changed[k];
        while k < changed.len() && changed[k] <= end + 2 * CONTEXT + 1 {
            end = changed[k];
            k += 1;
        }
        let end = (end + CONTEXT + 1).min(ops.len());
        let hunk = &ops[start..end];
        let a_len = hunk.iter().filter(|o| o.0 != '+').count();
        let b_len = hunk.iter().filter(|o| o.0 != '-').count();
        let a_start = hunk[0].1 + usize::from(a_len > 0);
        let b_start = hunk[0].2 + usize::from(b_len > 0);
        out.push_str(&format!("@@ -{a_start},{a_len} +{b_start},{b_len} @@\n"));
        for (tag, ai, bj) in hunk {
            let line = if *tag == '+' { y[*bj] } else { x[*ai] };
            out.push(*tag);
            out.push_str(line);
            out.push('\n');
        }
    }
    Some(out)
}

/// The stable version's traffic over a window before a rollout started: what the analysis
/// signals looked like (requests, errors, latency), kept for post-recovery comparison.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct Baseline {
    /// The version that served (`None`: nothing served yet, e.g. a first deployment).
    pub version: Option<String>,
    /// The window asked for: `analysis.interval` × [`BASELINE_INTERVALS`].
    pub requested_window_ms: Millis,
    /// The window actually covered (shorter when the daemon started recently).
    pub window_ms: Millis,
    pub requests: u64,
    pub errors: u64,
    pub requests_per_s: Option<f64>,
    pub error_ratio: Option<f64>,
    pub latency_p50_ms: Option<f64>,
    pub latency_p99_ms: Option<f64>,
    /// Cumulative latency histogram `(upper bound ms, count)`; `null` bound = +Inf. Empty when
    /// the router gives no latency (HAProxy, nginx, command).
    pub latency_le_ms: Vec<(Option<f64>, u64)>,
}

/// How many analysis intervals a baseline window spans.
pub const BASELINE_INTERVALS: u32 = 5;

/// Fewest requests of the stable version in one interval before its degradation is judged.
pub const DEGRADED_MIN_REQUESTS: u64 = 20;
/// Fewest errors of the stable version in one interval for its error ratio to count as
/// degraded: one or two errors among a few dozen requests are noise, not an incident.
pub const DEGRADED_MIN_ERRORS: u64 = 5;
/// Fewest requests for the stable version's p99 to count (below, "p99" is nearly the maximum).
pub const DEGRADED_MIN_REQUESTS_FOR_P99: u64 = 100;

/// Whether the stable version itself is doing much worse during a rollout than before it (a
/// shared spike, a dependency down): in this interval at least [`DEGRADED_MIN_ERRORS`] errors
/// and an error ratio above `max(3 × before, before + 2 points)`, or (with at least
/// [`DEGRADED_MIN_REQUESTS_FOR_P99`] requests) a p99 above `3 × before` and 50 ms more. Then
/// the environment, not the new version, is what changed; the rollout holds instead of
/// advancing. `None` when it is not degraded or there is too little to tell; else the reason.
pub fn environment_degraded(
    before: &Baseline,
    requests: u64,
    errors: u64,
    p99_ms: Option<f64>,
) -> Option<String> {
    if requests < DEGRADED_MIN_REQUESTS {
        return None;
    }
    let ratio = errors.min(requests) as f64 / requests as f64;
    if let Some(pre) = before.error_ratio
        && errors >= DEGRADED_MIN_ERRORS
        && ratio > (3.0 * pre).max(pre + 0.02)
    {
        return Some(format!(
            "the stable version's error ratio is {:.1} % (before the rollout: {:.1} %)",
            100.0 * ratio,
            100.0 * pre
        ));
    }
    if let (Some(pre), Some(now)) = (before.latency_p99_ms, p99_ms)
        && requests >= DEGRADED_MIN_REQUESTS_FOR_P99
        && now > 3.0 * pre
        && now > pre + 50.0
    {
        return Some(format!(
            "the stable version's p99 latency is {now:.0} ms (before the rollout: {pre:.0} ms)"
        ));
    }
    None
}

/// The environment of a rollout turned degraded (why) or healthy again (after how long).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvironmentChange {
    Degraded(String),
    Recovered { held_ms: Millis },
}

/// What this interval changes about the environment, degraded since `degraded_since` (`None`:
/// healthy) and now `degraded` for a reason (see [`environment_degraded`]) or not. It is
/// healthy again only with enough of the stable version's traffic to tell.
pub fn environment_change(
    degraded: Option<String>,
    degraded_since: Option<Millis>,
    baseline_requests: u64,
    now: Millis,
) -> Option<EnvironmentChange> {
    match (degraded, degraded_since) {
        (Some(why), None) => Some(EnvironmentChange::Degraded(why)),
        (None, Some(since)) if baseline_requests >= DEGRADED_MIN_REQUESTS => {
            Some(EnvironmentChange::Recovered {
                held_ms: now - since,
            })
        }
        _ => None,
    }
}

/// What was captured before a rollout started.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct RolloutSafeguards {
    pub rollout_id: String,
    /// Version of the environment's config snapshot taken for the rollout (`None`: the
    /// environment declares no `params`).
    pub config_snapshot: Option<i64>,
    pub baseline: Option<Baseline>,
    pub captured_at_ms: Millis,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_turns_degraded_then_healthy_with_enough_traffic_to_tell() {
        let why = || Some("errors".to_string());
        assert_eq!(
            environment_change(why(), None, 50, 1_000),
            Some(EnvironmentChange::Degraded("errors".into()))
        );
        // Still degraded, or quiet: no change.
        assert_eq!(environment_change(why(), Some(1_000), 50, 2_000), None);
        assert_eq!(
            environment_change(None, Some(1_000), DEGRADED_MIN_REQUESTS - 1, 2_000),
            None
        );
        assert_eq!(
            environment_change(None, Some(1_000), DEGRADED_MIN_REQUESTS, 4_000),
            Some(EnvironmentChange::Recovered { held_ms: 3_000 })
        );
        assert_eq!(environment_change(None, None, 50, 4_000), None);
    }

    fn before(error_ratio: f64, p99: f64) -> Baseline {
        Baseline {
            version: Some("v1".into()),
            requested_window_ms: 5000,
            window_ms: 5000,
            requests: 500,
            errors: (500.0 * error_ratio) as u64,
            requests_per_s: Some(100.0),
            error_ratio: Some(error_ratio),
            latency_p50_ms: Some(p99 / 4.0),
            latency_p99_ms: Some(p99),
            latency_le_ms: Vec::new(),
        }
    }

    #[test]
    fn the_environment_is_degraded_when_the_stable_version_is_far_worse_than_before() {
        let b = before(0.005, 100.0);
        assert_eq!(environment_degraded(&b, 100, 1, Some(100.0)), None);
        // 2 points more is within the noise of a low error ratio; 3 points is not.
        assert_eq!(environment_degraded(&b, 200, 4, Some(100.0)), None);
        let why = environment_degraded(&b, 200, 6, Some(100.0)).unwrap();
        assert!(why.contains("3.0 %") && why.contains("0.5 %"), "{why}");
        // A single error among 20 requests is 5 %, and noise.
        assert_eq!(environment_degraded(&b, 20, 1, Some(100.0)), None);
        // Too few requests to tell.
        assert_eq!(environment_degraded(&b, 10, 10, Some(100.0)), None);
        let why = environment_degraded(&b, 100, 0, Some(400.0)).unwrap();
        assert!(why.contains("400 ms") && why.contains("100 ms"), "{why}");
        // One slow request among 30 is the "p99" of 30: not enough to tell.
        assert_eq!(environment_degraded(&b, 30, 0, Some(400.0)), None);
        // A fast service: 3× of 5 ms is not worth holding a rollout for.
        assert_eq!(
            environment_degraded(&before(0.0, 5.0), 100, 0, Some(20.0)),
            None
        );
        // Nothing known from before: nothing to compare with.
        let unknown = Baseline {
            error_ratio: None,
            latency_p99_ms: None,
            ..before(0.0, 1.0)
        };
        assert_eq!(environment_degraded(&unknown, 100, 100, Some(9e9)), None);
    }

    fn file(sha: &str) -> FileEntry {
        FileEntry {
            sha256: sha.into(),
            size: 1,
            text: true,
            mode: 0o644,
        }
    }

    #[test]
    fn changes_name_added_removed_and_changed_entries() {
        let mut a = Manifest::default();
        a.files.insert("a.toml".into(), file("1"));
        a.files.insert("gone.toml".into(), file("2"));
        a.env.insert("LOG_LEVEL".into(), "info".into());
        a.secrets.insert(
            "DB".into(),
            SecretEntry {
                reference: "env:X".into(),
                hmac: Some("h1".into()),
            },
        );
        let mut b = a.clone();
        b.files.remove("gone.toml");
        b.files.insert("a.toml".into(), file("3"));
        b.files.insert("new.toml".into(), file("4"));
        b.secrets.get_mut("DB").expect("db").hmac = Some("h2".into());
        let got: Vec<_> = changes(&a, &b)
            .into_iter()
            .map(|c| format!("{} {} {}", c.kind, c.name, c.status))
            .collect();
        assert_eq!(
            got,
            [
                "file a.toml changed",
                "file gone.toml removed",
                "file new.toml added",
                "secret DB changed"
            ]
        );
        assert!(changes(&a, &a).is_empty());
        assert!(!a.same_files(&b));
    }

    #[test]
    fn unified_diff_has_hunks_with_context() {
        let a = "1\n2\n3\n4\n5\n6\n7\n8\n9\n10\n11\n12\n";
        let b = "1\n2\n3\n4\nfive\n6\n7\n8\n9\n10\n11\n12\nthirteen\n";
        let d = unified_diff(a, b, "snapshot 1", "live").expect("differs");
        assert_eq!(
            d,
            "--- snapshot 1\n+++ live\n@@ -2,7 +2,7 @@\n 2\n 3\n 4\n-5\n+five\n 6\n 7\n 8\n@@ -10,3 +10,4 @@\n 10\n 11\n 12\n+thirteen\n"
        );
        assert_eq!(unified_diff(a, a, "x", "y"), None);
        let d = unified_diff("", "x\n", "a", "b").expect("differs");
        assert_eq!(d, "--- a\n+++ b\n@@ -0,0 +1,1 @@\n+x\n");
    }
}
