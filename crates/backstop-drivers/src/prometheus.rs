//! A signal source: per-version traffic from a Prometheus server.
//!
//! Routers that do not see traffic (nginx, command) and HAProxy (no latency) leave the judge
//! without data; services that already export request counters and duration histograms to
//! Prometheus can have the analysis read them instead. Every analysis interval Backstop makes
//! three instant queries, `sum by (version) (<requests>)`, `sum by (version) (<errors>)` and
//! `sum by (version, le) (<latency buckets>)`, and hands the cumulative sums to the controller,
//! which takes differences between intervals exactly as it does with the built-in proxy's
//! counters (a sum that went down, e.g. an instance restarted, counts from zero).

use std::collections::BTreeMap;
use std::time::Duration;

use serde::Deserialize;

use crate::proxy::VersionStats;

/// What the source asks Prometheus (selectors already rendered for one service/environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PrometheusConfig {
    /// Base URL of the HTTP API, such as `http://prometheus:9090`.
    pub url: String,
    /// Counter selector of all requests.
    pub requests: String,
    /// Counter selector of failed requests.
    pub errors: String,
    /// Histogram bucket selector (`le` in seconds), if the latency signal is wanted.
    pub latency: Option<String>,
    /// The label whose values are the versions.
    pub version_label: String,
    /// Timeout of one query.
    pub timeout: Duration,
}

/// A query that did not give a vector of samples.
#[derive(Debug, thiserror::Error)]
#[error("{url}: query `{query}`: {reason}")]
pub struct SourceError {
    pub url: String,
    pub query: String,
    pub reason: String,
}

/// One sample of an instant vector.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    pub labels: BTreeMap<String, String>,
    pub value: f64,
}

/// Reads per-version counters from Prometheus.
#[derive(Debug, Clone)]
pub struct PrometheusSource {
    cfg: PrometheusConfig,
    api: QueryApi,
}

/// The instant-query endpoint of one Prometheus (`/api/v1/query`), or of an API that answers
/// in its format (Loki's `/loki/api/v1/query`), with its HTTP client.
#[derive(Debug, Clone)]
pub(crate) struct QueryApi {
    url: String,
    client: reqwest::Client,
    pub(crate) endpoint: reqwest::Url,
    /// Loki's tenant (`X-Scope-OrgID`), when it runs multi-tenant.
    tenant: Option<String>,
}

impl QueryApi {
    /// Prometheus's endpoint under `url`; fails on a URL that is not http(s).
    fn new(url: &str, timeout: std::time::Duration) -> Result<Self, SourceError> {
        Self::at(url, "/api/v1/query", None, timeout)
    }

    /// The endpoint `path` under `url` (which may carry a path prefix), asked as `tenant`.
    pub(crate) fn at(
        url: &str,
        path: &str,
        tenant: Option<String>,
        timeout: std::time::Duration,
    ) -> Result<Self, SourceError> {
        let fail = |reason: String| SourceError {
            url: url.to_string(),
            query: String::new(),
            reason,
        };
        let base = reqwest::Url::parse(url).map_err(|e| fail(format!("bad URL: {e}")))?;
        if !matches!(base.scheme(), "http" | "https") {
            return Err(fail("the URL must be http:// or https://".into()));
        }
        let endpoint = base
            .join(&format!("{}{path}", base.path().trim_end_matches('/')))
            .map_err(|e| fail(format!("bad URL: {e}")))?;
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| fail(format!("HTTP client: {e}")))?;
        Ok(Self {
            url: url.to_string(),
            client,
            endpoint,
            tenant,
        })
    }

    /// The instant vector of `query` at `at_ms` (now with `None`).
    pub(crate) async fn query(
        &self,
        query: &str,
        at_ms: Option<i64>,
    ) -> Result<Vec<Sample>, SourceError> {
        let fail = |reason: String| SourceError {
            url: self.url.clone(),
            query: query.to_string(),
            reason,
        };
        let mut url = self.endpoint.clone();
        url.query_pairs_mut().append_pair("query", query);
        if let Some(at) = at_ms {
            url.query_pairs_mut()
                .append_pair("time", &format!("{:.3}", at as f64 / 1000.0));
        }
        let mut request = self.client.get(url);
        if let Some(tenant) = &self.tenant {
            request = request.header("X-Scope-OrgID", tenant);
        }
        let response = request
            .send()
            .await
            .map_err(|e| fail(format!("request failed: {e}")))?;
        let status = response.status();
        let body = response
            .bytes()
            .await
            .map_err(|e| fail(format!("reading the answer: {e}")))?;
        parse_vector(&body).map_err(|reason| fail(format!("HTTP {status}: {reason}")))
    }
}

impl PrometheusSource {
    /// A source for `cfg`; fails on a URL that is not http(s).
    pub fn new(cfg: PrometheusConfig) -> Result<Self, SourceError> {
        let api = QueryApi::new(&cfg.url, cfg.timeout)?;
        Ok(Self { cfg, api })
    }

    /// The queries this source makes, in order (for logs and errors).
    pub fn queries(&self) -> Vec<String> {
        let by = &self.cfg.version_label;
        let mut q = vec![
            format!("sum by ({by}) ({})", self.cfg.requests),
            format!("sum by ({by}) ({})", self.cfg.errors),
        ];
        if let Some(latency) = &self.cfg.latency {
            q.push(format!("sum by ({by}, le) ({latency})"));
        }
        q
    }

    /// Cumulative per-version counters now, as the built-in proxy would report them.
    pub async fn stats(&self) -> Result<Vec<VersionStats>, SourceError> {
        let queries = self.queries();
        let requests = self.query(&queries[0]).await?;
        let errors = self.query(&queries[1]).await?;
        let latency = match queries.get(2) {
            Some(q) => self.query(q).await?,
            None => Vec::new(),
        };
        Ok(version_stats(
            &self.cfg.version_label,
            &requests,
            &errors,
            &latency,
        ))
    }

    async fn query(&self, query: &str) -> Result<Vec<Sample>, SourceError> {
        self.api.query(query, None).await
    }
}

/// The value of `query` at `at_ms` (now with `None`) from the Prometheus at `url`: the sum of
/// the instant vector's finite samples, `None` when it has none (no data then).
///
/// # Errors
/// A bad URL, no answer, or an answer that is not an instant vector.
pub async fn value_at(
    url: &str,
    query: &str,
    at_ms: Option<i64>,
    timeout: std::time::Duration,
) -> Result<Option<f64>, SourceError> {
    let samples = QueryApi::new(url, timeout)?.query(query, at_ms).await?;
    let finite: Vec<f64> = samples
        .iter()
        .map(|s| s.value)
        .filter(|v| v.is_finite())
        .collect();
    Ok((!finite.is_empty()).then(|| finite.iter().sum()))
}

#[derive(Deserialize)]
struct Answer {
    status: String,
    #[serde(default)]
    data: Option<Data>,
    #[serde(default, rename = "errorType")]
    error_type: Option<String>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct Data {
    #[serde(rename = "resultType")]
    result_type: String,
    result: Vec<RawSample>,
}

#[derive(Deserialize)]
struct RawSample {
    #[serde(default)]
    metric: BTreeMap<String, String>,
    value: (serde_json::Value, String),
}

/// Parses a `/api/v1/query` answer that must be an instant vector. Values Prometheus writes as
/// `NaN` or `±Inf` are kept as such (the caller decides); a malformed answer is an error in
/// words, never a panic.
pub fn parse_vector(body: &[u8]) -> Result<Vec<Sample>, String> {
    let answer: Answer = serde_json::from_slice(body).map_err(|e| {
        let head = String::from_utf8_lossy(&body[..body.len().min(200)]).into_owned();
        format!("not a Prometheus API answer ({e}): {head}")
    })?;
    if answer.status != "success" {
        return Err(format!(
            "{}: {}",
            answer.error_type.as_deref().unwrap_or("error"),
            answer.error.as_deref().unwrap_or("no message")
        ));
    }
    let data = answer
        .data
        .ok_or_else(|| "a success answer without data".to_string())?;
    if data.result_type != "vector" {
        return Err(format!(
            "expected an instant vector, got a {}",
            data.result_type
        ));
    }
    data.result
        .into_iter()
        .map(|s| {
            let value = match s.value.1.as_str() {
                "NaN" => f64::NAN,
                "+Inf" | "Inf" => f64::INFINITY,
                "-Inf" => f64::NEG_INFINITY,
                v => v
                    .parse::<f64>()
                    .map_err(|_| format!("sample value {v:?} is not a number"))?,
            };
            Ok(Sample {
                labels: s.metric,
                value,
            })
        })
        .collect()
}

/// A counter sum as a count: rounded, and 0 for NaN or a negative value.
fn count(value: f64) -> u64 {
    if value.is_finite() && value > 0.0 {
        value.round() as u64
    } else {
        0
    }
}

/// Per-version stats from the three vectors. Versions are those with a request count; samples
/// without the version label are ignored. A version's buckets are sorted by `le` (seconds →
/// ms); versions without buckets (or without a `+Inf` bucket) get no latency histogram.
pub fn version_stats(
    version_label: &str,
    requests: &[Sample],
    errors: &[Sample],
    latency: &[Sample],
) -> Vec<VersionStats> {
    let version = |s: &Sample| s.labels.get(version_label).cloned();
    let mut out: BTreeMap<String, VersionStats> = BTreeMap::new();
    for s in requests {
        if let Some(v) = version(s) {
            out.entry(v.clone())
                .or_insert_with(|| VersionStats {
                    version: v,
                    ..VersionStats::default()
                })
                .requests += count(s.value);
        }
    }
    for s in errors {
        if let Some(stats) = version(s).and_then(|v| out.get_mut(&v)) {
            stats.errors += count(s.value);
        }
    }
    for stats in out.values_mut() {
        stats.errors = stats.errors.min(stats.requests);
    }
    let mut buckets: BTreeMap<String, Vec<(f64, u64)>> = BTreeMap::new();
    for s in latency {
        let (Some(v), Some(le)) = (version(s), s.labels.get("le")) else {
            continue;
        };
        let le_s = match le.as_str() {
            "+Inf" | "Inf" => f64::INFINITY,
            le => match le.parse::<f64>() {
                Ok(x) if x.is_finite() && x >= 0.0 => x,
                _ => continue,
            },
        };
        buckets
            .entry(v)
            .or_default()
            .push((le_s * 1000.0, count(s.value)));
    }
    for (v, mut b) in buckets {
        let Some(stats) = out.get_mut(&v) else {
            continue;
        };
        b.sort_by(|x, y| x.0.total_cmp(&y.0));
        b.dedup_by(|x, y| x.0 == y.0);
        if b.last().is_none_or(|l| l.0.is_finite()) {
            continue;
        }
        // Cumulative counts never go down as `le` grows; sums over instances scraped at
        // slightly different moments can, by a request or two: keep them monotone.
        let mut running = 0;
        for bucket in &mut b {
            running = running.max(bucket.1);
            bucket.1 = running;
        }
        stats.latency_buckets_ms = b;
    }
    out.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const REQUESTS: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"version":"v1"},"value":[1764150000.123,"1200"]},
        {"metric":{"version":"v2"},"value":[1764150000.123,"130"]},
        {"metric":{},"value":[1764150000.123,"7"]}]}}"#;
    const ERRORS: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"version":"v2"},"value":[1764150000.123,"26.0000001"]}]}}"#;
    const BUCKETS: &str = r#"{"status":"success","data":{"resultType":"vector","result":[
        {"metric":{"version":"v2","le":"+Inf"},"value":[1764150000.1,"130"]},
        {"metric":{"version":"v2","le":"0.05"},"value":[1764150000.1,"100"]},
        {"metric":{"version":"v2","le":"0.1"},"value":[1764150000.1,"99"]},
        {"metric":{"version":"v1","le":"0.1"},"value":[1764150000.1,"1100"]}]}}"#;

    #[test]
    fn vectors_become_per_version_counters_and_histograms() {
        let r = parse_vector(REQUESTS.as_bytes()).unwrap();
        let e = parse_vector(ERRORS.as_bytes()).unwrap();
        let l = parse_vector(BUCKETS.as_bytes()).unwrap();
        let stats = version_stats("version", &r, &e, &l);
        assert_eq!(stats.len(), 2, "the sample without a version is ignored");
        assert_eq!((stats[0].version.as_str(), stats[0].requests), ("v1", 1200));
        assert_eq!(stats[0].errors, 0);
        assert!(
            stats[0].latency_buckets_ms.is_empty(),
            "no +Inf bucket: no histogram"
        );
        assert_eq!((stats[1].requests, stats[1].errors), (130, 26));
        assert_eq!(
            stats[1].latency_buckets_ms,
            vec![(50.0, 100), (100.0, 100), (f64::INFINITY, 130)],
            "sorted by le in ms, kept monotone"
        );
    }

    #[test]
    fn error_answers_and_other_result_types_say_what_they_are() {
        let err = parse_vector(
            br#"{"status":"error","errorType":"bad_data","error":"1:5: parse error: unexpected"}"#,
        )
        .unwrap_err();
        assert_eq!(err, "bad_data: 1:5: parse error: unexpected");
        let err =
            parse_vector(br#"{"status":"success","data":{"resultType":"matrix","result":[]}}"#)
                .unwrap_err();
        assert!(err.contains("matrix"), "{err}");
        let err = parse_vector(b"<html>502 Bad Gateway</html>").unwrap_err();
        assert!(err.contains("502 Bad Gateway"), "{err}");
        let err = parse_vector(
            br#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"value":[1,"abc"]}]}}"#,
        )
        .unwrap_err();
        assert!(err.contains("abc"), "{err}");
    }

    #[test]
    fn nan_and_negative_sums_count_as_zero() {
        let v = parse_vector(
            br#"{"status":"success","data":{"resultType":"vector","result":[
            {"metric":{"version":"a"},"value":[1,"NaN"]},{"metric":{"version":"b"},"value":[1,"-3"]}]}}"#,
        )
        .unwrap();
        let stats = version_stats("version", &v, &[], &[]);
        assert_eq!(stats.iter().map(|s| s.requests).collect::<Vec<_>>(), [0, 0]);
    }

    #[test]
    fn the_endpoint_keeps_a_path_prefix_and_refuses_other_schemes() {
        let cfg = |url: &str| PrometheusConfig {
            url: url.into(),
            requests: "r".into(),
            errors: "e".into(),
            latency: None,
            version_label: "version".into(),
            timeout: Duration::from_secs(1),
        };
        let s = PrometheusSource::new(cfg("http://mon:9090/prom/")).unwrap();
        assert_eq!(s.api.endpoint.as_str(), "http://mon:9090/prom/api/v1/query");
        let s = PrometheusSource::new(cfg("http://mon:9090")).unwrap();
        assert_eq!(s.api.endpoint.as_str(), "http://mon:9090/api/v1/query");
        assert_eq!(
            s.queries(),
            ["sum by (version) (r)", "sum by (version) (e)"]
        );
        assert!(PrometheusSource::new(cfg("ftp://mon")).is_err());
        assert!(PrometheusSource::new(cfg("not a url")).is_err());
    }

    proptest::proptest! {
        #[test]
        fn any_answer_parses_or_fails_in_words(body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..400)) {
            let _ = parse_vector(&body);
        }

        #[test]
        fn any_sample_values_and_labels_give_sane_stats(
            samples in proptest::collection::vec(("[a-c]", "(\\+Inf|0\\.[0-9]|[0-9]|x)", -5.0f64..1e6), 0..30)
        ) {
            let mk = |with_le: bool| samples.iter().map(|(v, le, x)| {
                let mut labels = BTreeMap::from([("version".to_string(), v.clone())]);
                if with_le {
                    labels.insert("le".into(), le.clone());
                }
                Sample { labels, value: *x }
            }).collect::<Vec<_>>();
            let stats = version_stats("version", &mk(false), &mk(false), &mk(true));
            for s in stats {
                proptest::prop_assert!(s.errors <= s.requests);
                proptest::prop_assert!(s.latency_buckets_ms.windows(2).all(|w| w[0].0 < w[1].0 && w[0].1 <= w[1].1));
            }
        }
    }
}
