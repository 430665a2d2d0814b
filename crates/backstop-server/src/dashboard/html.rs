//! Building HTML by hand: every text that came from data goes through [`esc`], and pages share
//! one frame ([`page`]) with the navigation, the stylesheet and the security headers.

use std::fmt::Write as _;

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

/// `s` with the five characters HTML gives meaning to escaped: safe in text and in quoted
/// attribute values.
#[must_use]
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// A path segment from data (an id, a service name) made safe inside a URL.
#[must_use]
pub fn seg(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~@".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    out
}

/// What the frame around a page needs to know.
pub struct Frame<'a> {
    pub title: &'a str,
    /// The signed-in session's CSRF token (for the sign-out form); `None` on the sign-in page.
    pub csrf: Option<&'a str>,
    /// Reload the page every this many seconds (a rollout or recovery still running).
    pub refresh_s: Option<u32>,
    /// A line shown above the page: what the last action did.
    pub notice: Option<&'a str>,
}

/// A whole page: the frame around `body`.
#[must_use]
pub fn page(frame: &Frame<'_>, body: &str) -> Response {
    let mut out = String::with_capacity(body.len() + 2048);
    out.push_str("<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\">");
    out.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">");
    let _ = write!(out, "<title>{} · Backstop</title>", esc(frame.title));
    out.push_str("<link rel=\"stylesheet\" href=\"/ui/style.css\">");
    if let Some(s) = frame.refresh_s {
        let _ = write!(out, "<meta http-equiv=\"refresh\" content=\"{s}\">");
    }
    out.push_str("</head><body><header><nav>");
    out.push_str("<a class=\"brand\" href=\"/\">Backstop</a>");
    if let Some(csrf) = frame.csrf {
        for (href, label) in [
            ("/", "Overview"),
            ("/rollouts", "Rollouts"),
            ("/groups", "Groups"),
            ("/ships", "Ships"),
            ("/alerts", "Alerts"),
            ("/incidents", "Incidents"),
            ("/runbooks", "Runbooks"),
            ("/scorecards", "Scorecards"),
            ("/audit", "Audit"),
        ] {
            let _ = write!(out, "<a href=\"{href}\">{label}</a>");
        }
        let _ = write!(
            out,
            "<form class=\"signout\" method=\"post\" action=\"/logout\">{}<button>Sign out</button></form>",
            csrf_field(csrf)
        );
    }
    out.push_str("</nav></header><main>");
    if let Some(n) = frame.notice {
        let _ = write!(out, "<p class=\"notice\" role=\"status\">{}</p>", esc(n));
    }
    let _ = write!(out, "<h1>{}</h1>", esc(frame.title));
    out.push_str(body);
    out.push_str("</main></body></html>");
    html(StatusCode::OK, out)
}

/// An HTML answer with the headers every page carries: no script may run (there is none), no
/// other site may frame it or receive its forms, nothing is cached (pages hold live state).
#[must_use]
pub fn html(status: StatusCode, body: String) -> Response {
    let mut resp = (status, body).into_response();
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(
            "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
        ),
    );
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    resp
}

/// The hidden field every form carries (checked against the session's token on submit).
#[must_use]
pub fn csrf_field(csrf: &str) -> String {
    format!(
        "<input type=\"hidden\" name=\"csrf\" value=\"{}\">",
        esc(csrf)
    )
}

/// A status word as a coloured badge (`class` is the word itself, so CSS colours each).
#[must_use]
pub fn badge(word: &str) -> String {
    format!("<span class=\"badge b-{}\">{}</span>", seg(word), esc(word))
}

/// A time as `YYYY-MM-DD HH:MM:SS` UTC.
#[must_use]
pub fn time(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    match time::OffsetDateTime::from_unix_timestamp(secs) {
        Ok(t) => format!(
            "{:04}-{:02}-{:02} {:02}:{:02}:{:02}",
            t.year(),
            u8::from(t.month()),
            t.day(),
            t.hour(),
            t.minute(),
            t.second()
        ),
        Err(_) => ms.to_string(),
    }
}

/// `opt` or a dash.
#[must_use]
pub fn or_dash(opt: Option<&str>) -> String {
    opt.map_or_else(|| "–".to_owned(), esc)
}

/// A duration in milliseconds for people: `850 ms`, `12.3 s`, `4 min 05 s`.
#[must_use]
pub fn dur(ms: i64) -> String {
    if ms < 1000 {
        format!("{ms} ms")
    } else if ms < 60_000 {
        format!("{:.1} s", ms as f64 / 1000.0)
    } else {
        format!("{} min {:02} s", ms / 60_000, (ms % 60_000) / 1000)
    }
}

/// A table: a header row and rows of cells already in HTML; a sentence when there are none.
#[must_use]
pub fn table(class: &str, head: &[&str], rows: &[Vec<String>], empty: &str) -> String {
    if rows.is_empty() {
        return format!("<p class=\"empty\">{}</p>", esc(empty));
    }
    let mut out = format!("<div class=\"scroll\"><table class=\"{class}\"><thead><tr>");
    for h in head {
        let _ = write!(out, "<th>{}</th>", esc(h));
    }
    out.push_str("</tr></thead><tbody>");
    for row in rows {
        out.push_str("<tr>");
        for cell in row {
            let _ = write!(out, "<td>{cell}</td>");
        }
        out.push_str("</tr>");
    }
    out.push_str("</tbody></table></div>");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escaping_covers_markup_and_quotes() {
        assert_eq!(
            esc("<a href=\"x\">'&'</a>"),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        assert_eq!(seg("shop@v3/../x y"), "shop@v3%2F..%2Fx%20y");
    }

    #[test]
    fn durations_read_as_people_say_them() {
        assert_eq!(dur(850), "850 ms");
        assert_eq!(dur(12_345), "12.3 s");
        assert_eq!(dur(245_000), "4 min 05 s");
        assert_eq!(time(0), "1970-01-01 00:00:00");
    }
}
