//! A signal source for work that is not HTTP requests (queue consumers, batch workers): per
//! version success and failure counts, printed by a command or served as JSON over HTTP.
//!
//! Both answer with one JSON object, cumulative counters per version since some start (like
//! Prometheus counters; a counter that goes down, a worker restarted, counts from zero):
//!
//! ```json
//! {"v41": {"succeeded": 10233, "failed": 12}, "v42": {"succeeded": 480, "failed": 31}}
//! ```
//!
//! (`requests` and `errors` are taken instead of `succeeded` and `failed` where a source speaks
//! of requests). The judge compares the versions' failure ratios exactly as it compares the
//! proxy's error ratios.

use std::collections::BTreeMap;
use std::time::Duration;

use serde_json::Value;

use crate::command::CommandDeployer;
use crate::proxy::VersionStats;

/// Where the counts come from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CountsSource {
    /// A shell command whose standard output is the JSON object (run with `BACKSTOP_SERVICE`
    /// and `BACKSTOP_ENV` set, within `timeout`).
    Command {
        run: String,
        vars: BTreeMap<String, String>,
        timeout: Duration,
    },
    /// An HTTP GET whose answer is the JSON object.
    Http { url: String, timeout: Duration },
}

/// Counts that could not be read.
#[derive(Debug, thiserror::Error)]
#[error("{source_name}: {reason}")]
pub struct CountsError {
    pub source_name: String,
    pub reason: String,
}

impl CountsSource {
    /// What it runs or asks, for the rollout's record.
    #[must_use]
    pub fn describe(&self) -> String {
        match self {
            CountsSource::Command { run, .. } => format!("command `{run}`"),
            CountsSource::Http { url, .. } => format!("GET {url}"),
        }
    }

    /// Cumulative per-version counters now, in the built-in proxy's shape (no latency).
    pub async fn stats(&self) -> Result<Vec<VersionStats>, CountsError> {
        let fail = |reason: String| CountsError {
            source_name: self.describe(),
            reason,
        };
        let body = match self {
            CountsSource::Command { run, vars, timeout } => {
                let once = CommandDeployer {
                    health: Some(run.clone()),
                    timeout: *timeout,
                    retries: 0,
                    output_cap: 1024 * 1024,
                    grace: Duration::from_secs(1),
                    ..CommandDeployer::new("", "")
                };
                let outcome = once.health(vars).await.map_err(|e| fail(e.to_string()))?;
                outcome.stdout.into_bytes()
            }
            CountsSource::Http { url, timeout } => {
                let client = reqwest::Client::builder()
                    .timeout(*timeout)
                    .redirect(reqwest::redirect::Policy::none())
                    .build()
                    .map_err(|e| fail(format!("HTTP client: {e}")))?;
                let response = client
                    .get(url)
                    .send()
                    .await
                    .map_err(|e| fail(format!("request failed: {e}")))?;
                let status = response.status();
                if !status.is_success() {
                    return Err(fail(format!("HTTP {status}")));
                }
                response
                    .bytes()
                    .await
                    .map_err(|e| fail(format!("reading the answer: {e}")))?
                    .to_vec()
            }
        };
        parse_counts(&body).map_err(fail)
    }
}

/// Parses the counts object. Errors name the version and the field at fault.
///
/// # Errors
/// Not JSON, not an object of objects, or a count that is not a whole number ≥ 0.
pub fn parse_counts(body: &[u8]) -> Result<Vec<VersionStats>, String> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        format!(
            "not JSON ({e}); expected {{\"<version>\": {{\"succeeded\": N, \"failed\": N}}, …}}"
        )
    })?;
    let Value::Object(versions) = value else {
        return Err("expected an object of versions, such as {\"v42\": {\"succeeded\": 480, \"failed\": 31}}".to_owned());
    };
    let mut out = Vec::with_capacity(versions.len());
    for (version, counts) in versions {
        let count = |key: &str| -> Result<Option<u64>, String> {
            match counts.get(key) {
                None => Ok(None),
                Some(v) => v.as_u64().map(Some).ok_or_else(|| {
                    format!("/{version}/{key}: expected a whole number ≥ 0, found {v}")
                }),
            }
        };
        if !counts.is_object() {
            return Err(format!(
                "/{version}: expected {{\"succeeded\": N, \"failed\": N}}, found {counts}"
            ));
        }
        let (requests, errors) = match (count("requests")?, count("errors")?) {
            (Some(requests), errors) => {
                let errors = errors.unwrap_or(0);
                if errors > requests {
                    return Err(format!(
                        "/{version}: {errors} errors of {requests} requests"
                    ));
                }
                (requests, errors)
            }
            (None, Some(_)) => return Err(format!("/{version}: `errors` without `requests`")),
            (None, None) => {
                let succeeded = count("succeeded")?
                    .ok_or_else(|| format!("/{version}: missing `succeeded` (and `failed`)"))?;
                let failed = count("failed")?.unwrap_or(0);
                (succeeded.saturating_add(failed), failed)
            }
        };
        out.push(VersionStats {
            version,
            requests,
            errors,
            ..VersionStats::default()
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn succeeded_and_failed_or_requests_and_errors_become_counters() {
        let stats = parse_counts(
            br#"{"v1": {"succeeded": 97, "failed": 3}, "v2": {"requests": 50, "errors": 5}}"#,
        )
        .unwrap();
        let got: Vec<(&str, u64, u64)> = stats
            .iter()
            .map(|s| (s.version.as_str(), s.requests, s.errors))
            .collect();
        assert_eq!(got, [("v1", 100, 3), ("v2", 50, 5)]);
    }

    #[test]
    fn bad_answers_say_where() {
        for (body, says) in [
            (&b"nope"[..], "not JSON"),
            (b"[1]", "an object of versions"),
            (b"{\"v1\": 3}", "/v1: expected"),
            (b"{\"v1\": {\"succeeded\": -1}}", "/v1/succeeded"),
            (b"{\"v1\": {\"failed\": 2}}", "missing `succeeded`"),
            (
                b"{\"v1\": {\"requests\": 2, \"errors\": 3}}",
                "3 errors of 2",
            ),
            (b"{\"v1\": {\"errors\": 3}}", "without `requests`"),
        ] {
            let e = parse_counts(body).unwrap_err();
            assert!(e.contains(says), "{e}");
        }
    }

    #[tokio::test]
    async fn a_command_prints_the_counts() {
        let source = CountsSource::Command {
            run: r#"printf '{"%s": {"succeeded": 9, "failed": 1}}' "$BACKSTOP_SERVICE""#.into(),
            vars: BTreeMap::from([("BACKSTOP_SERVICE".to_owned(), "worker".to_owned())]),
            timeout: Duration::from_secs(5),
        };
        let stats = source.stats().await.unwrap();
        assert_eq!(
            (
                stats[0].version.as_str(),
                stats[0].requests,
                stats[0].errors
            ),
            ("worker", 10, 1)
        );
        let failing = CountsSource::Command {
            run: "exit 3".into(),
            vars: BTreeMap::new(),
            timeout: Duration::from_secs(5),
        };
        assert!(
            failing
                .stats()
                .await
                .unwrap_err()
                .to_string()
                .contains("exit 3")
        );
    }

    proptest::proptest! {
        #[test]
        fn any_answer_parses_or_fails_in_words(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..300)) {
            if let Ok(stats) = parse_counts(&body) {
                for s in stats {
                    proptest::prop_assert!(s.errors <= s.requests);
                }
            }
        }
    }
}
