//! `notify`: webhook URLs are http(s); a PagerDuty target names its routing key.

use serde_json::Value;

/// `notify`: webhook URLs are http(s); `format: pagerduty` needs `routing_key_env`.
pub(super) fn check_notify(svc: &Value, sp: &str, push: &mut impl FnMut(String, String)) {
    let Some(targets) = svc.get("notify").and_then(Value::as_array) else {
        return;
    };
    for (k, target) in targets.iter().enumerate() {
        if let Some(url) = target.get("webhook").and_then(Value::as_str)
            && !url.is_empty()
            && !is_http_url(url)
        {
            push(
                format!("{sp}/notify/{k}/webhook"),
                format!(
                    "invalid webhook URL {url:?} (expected http:// or https:// then a host, e.g. https://chat.example/hooks/T000)"
                ),
            );
        }
        let format = target.get("format").and_then(Value::as_str);
        if matches!(format, Some("pagerduty" | "pagerduty_change"))
            && target.get("routing_key_env").is_none()
        {
            let endpoint = if format == Some("pagerduty") {
                "enqueue"
            } else {
                "change/enqueue"
            };
            push(
                format!("{sp}/notify/{k}/format"),
                format!(
                    "a {} target needs `routing_key_env`: the variable holding its Events API v2 integration key (e.g. https://events.pagerduty.com/v2/{endpoint} as the webhook)",
                    format.unwrap_or_default()
                ),
            );
        }
    }
}

/// `http://HOST...` or `https://HOST...`, without whitespace.
fn is_http_url(url: &str) -> bool {
    let lower = url.to_ascii_lowercase();
    let Some(rest) = lower
        .strip_prefix("https://")
        .or_else(|| lower.strip_prefix("http://"))
    else {
        return false;
    };
    let host = rest.split(['/', '?', '#']).next().unwrap_or("");
    let host = host.rsplit_once('@').map_or(host, |(_, h)| h);
    !host.is_empty() && !host.starts_with(':') && !url.chars().any(char::is_whitespace)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pagerduty_target_names_its_routing_key() {
        let svc = serde_json::json!({"notify": [
            {"webhook": "https://events.pagerduty.com/v2/enqueue", "format": "pagerduty"},
            {"webhook": "https://events.pagerduty.com/v2/enqueue", "format": "pagerduty", "routing_key_env": "PD_KEY"},
        ]});
        let mut found = Vec::new();
        check_notify(&svc, "/services/0", &mut |at, why| found.push((at, why)));
        assert_eq!(found.len(), 1, "{found:?}");
        assert_eq!(found[0].0, "/services/0/notify/0/format");
        assert!(found[0].1.contains("routing_key_env"));
    }

    #[test]
    fn webhook_urls() {
        assert!(is_http_url("https://chat.example/hooks/T000"));
        assert!(is_http_url("http://127.0.0.1:9000"));
        assert!(is_http_url("HTTPS://user@host?x=1"));
        assert!(!is_http_url("ftp://host/x"));
        assert!(!is_http_url("https://"));
        assert!(!is_http_url("https://:80/x"));
        assert!(!is_http_url("https://host/a b"));
        assert!(!is_http_url("chat.example/hooks"));
    }
}
