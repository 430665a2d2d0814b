//! A signal source: error-log lines per version from a Loki-compatible log store.
//!
//! Where the instances' output is not captured by Backstop (another host, a platform that ships
//! logs away), a log store that keeps it can count the error lines instead. Every analysis
//! interval Backstop makes one LogQL metric query,
//! `sum by (version) (count_over_time(<selector> |~ <pattern> [<interval>]))`, at Loki's
//! instant-query endpoint (`/loki/api/v1/query`), whose answers are in Prometheus's format
//! (Loki's API reference: the `/loki/` endpoints "are Prometheus API-compatible and the result
//! formats can be used interchangeably"), so they go through the same parser.

use std::collections::BTreeMap;
use std::time::Duration;

use crate::prometheus::{QueryApi, SourceError};

/// What the source asks the log store (the selector already rendered for one
/// service/environment).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LokiConfig {
    /// Base URL of the HTTP API, such as `http://loki:3100`.
    pub url: String,
    /// LogQL stream selector of the service's logs, such as `{app="checkout",env="prod"}`.
    pub selector: String,
    /// The regular expression an error line matches.
    pub pattern: String,
    /// The stream label whose values are the versions.
    pub version_label: String,
    /// The tenant (`X-Scope-OrgID`) of a multi-tenant Loki.
    pub tenant: Option<String>,
    /// Timeout of one query.
    pub timeout: Duration,
}

/// Counts error-log lines per version in a Loki-compatible store.
#[derive(Debug, Clone)]
pub struct LokiSource {
    cfg: LokiConfig,
    api: QueryApi,
}

impl LokiSource {
    /// A source for `cfg`; fails on a URL that is not http(s).
    pub fn new(cfg: LokiConfig) -> Result<Self, SourceError> {
        let api = QueryApi::at(
            &cfg.url,
            "/loki/api/v1/query",
            cfg.tenant.clone(),
            cfg.timeout,
        )?;
        Ok(Self { cfg, api })
    }

    /// The LogQL query counting the error lines of the last `window` per version.
    pub fn query(&self, window: Duration) -> String {
        format!(
            "sum by ({by}) (count_over_time({selector} |~ {pattern} [{ms}ms]))",
            by = self.cfg.version_label,
            selector = self.cfg.selector,
            pattern = logql_string(&self.cfg.pattern),
            ms = window.as_millis().max(1),
        )
    }

    /// Error lines per version in the `window` before now (versions without any are absent).
    pub async fn error_lines(
        &self,
        window: Duration,
    ) -> Result<BTreeMap<String, u64>, SourceError> {
        let samples = self.api.query(&self.query(window), None).await?;
        let mut lines = BTreeMap::new();
        for s in samples {
            if let Some(version) = s.labels.get(&self.cfg.version_label)
                && s.value.is_finite()
                && s.value > 0.0
            {
                *lines.entry(version.clone()).or_insert(0) += s.value.round() as u64;
            }
        }
        Ok(lines)
    }
}

/// `text` as a LogQL string literal: a raw (backquoted) string, so a regular expression needs
/// no escaping, unless it holds a backquote; then a double-quoted one with `\` and `"`
/// escaped.
fn logql_string(text: &str) -> String {
    if text.contains('`') {
        let escaped = text.replace('\\', "\\\\").replace('"', "\\\"");
        format!("\"{escaped}\"")
    } else {
        format!("`{text}`")
    }
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};

    use super::*;

    fn cfg(url: &str, pattern: &str) -> LokiConfig {
        LokiConfig {
            url: url.into(),
            selector: r#"{app="shop",env="prod"}"#.into(),
            pattern: pattern.into(),
            version_label: "version".into(),
            tenant: Some("team-a".into()),
            timeout: Duration::from_secs(2),
        }
    }

    #[test]
    fn the_query_counts_error_lines_per_version_over_the_interval() {
        let s = LokiSource::new(cfg("http://logs:3100/", "level=(error|fatal)")).unwrap();
        assert_eq!(
            s.api.endpoint.as_str(),
            "http://logs:3100/loki/api/v1/query"
        );
        assert_eq!(
            s.query(Duration::from_secs(5)),
            r#"sum by (version) (count_over_time({app="shop",env="prod"} |~ `level=(error|fatal)` [5000ms]))"#
        );
        assert_eq!(logql_string(r#"a`b"c\d"#), r#""a`b\"c\\d""#);
        assert!(LokiSource::new(cfg("ftp://logs", "x")).is_err());
    }

    /// What is sent (path, query, tenant header) and how Loki's documented answer to a metric
    /// query is read, over a real socket.
    #[tokio::test]
    async fn asks_lokis_query_endpoint_as_the_tenant_and_reads_its_vector() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let server = std::thread::spawn(move || {
            let (mut conn, _) = listener.accept().unwrap();
            let mut request = Vec::new();
            let mut buf = [0u8; 4096];
            while !request.windows(4).any(|w| w == b"\r\n\r\n") {
                let n = conn.read(&mut buf).unwrap();
                request.extend_from_slice(&buf[..n]);
            }
            // The example answer of a metric query in Loki's HTTP API reference.
            let body = r#"{"status":"success","data":{"resultType":"vector","result":[{"metric":{"version":"v1"},"value":[1588889221,"3"]},{"metric":{"version":"v2"},"value":[1588889221,"41"]},{"metric":{},"value":[1588889221,"7"]}],"stats":{}}}"#;
            write!(
                conn,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            )
            .unwrap();
            String::from_utf8(request).unwrap()
        });
        let source = LokiSource::new(cfg(&url, "ERROR")).unwrap();
        let lines = source.error_lines(Duration::from_secs(1)).await.unwrap();
        assert_eq!(
            lines,
            BTreeMap::from([("v1".to_owned(), 3), ("v2".to_owned(), 41)])
        );
        let request = server.join().unwrap();
        let first = request.lines().next().unwrap();
        assert!(
            first.starts_with(
                "GET /loki/api/v1/query?query=sum+by+%28version%29+%28count_over_time%28"
            ),
            "{first}"
        );
        assert!(
            request
                .to_ascii_lowercase()
                .contains("x-scope-orgid: team-a"),
            "{request}"
        );
    }
}
