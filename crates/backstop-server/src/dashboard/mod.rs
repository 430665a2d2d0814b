//! The web dashboard at `/`: pages a person reads (overview, rollouts with canary-against-
//! baseline charts, recoveries, incidents, runbooks, scorecards, the audit log) and the actions
//! they take (promote, abort, acknowledge, roll back, resume), each behind a confirmation.
//!
//! The dashboard has no data path of its own: every page and every action is a call to the
//! `/api/v1` router, made in-process with the signed-in person's token. It therefore sees and
//! may do exactly what that token may through the API (same roles, same audit actor), and a
//! revoked token signs the person out at their next click.
//!
//! Sign-in takes a token and keeps it in memory only, behind a random session cookie
//! (`HttpOnly`, `SameSite=Strict`); every form carries the session's CSRF token, checked on
//! submit, and the sign-in form a double-submit one. Pages run no script: live pages reload
//! themselves while something runs.

mod chart;
mod html;
mod pages;

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::{Form, FromRequestParts, Path, Query, State};
use axum::http::request::Parts;
use axum::http::{HeaderMap, HeaderValue, Method, Request, StatusCode, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tower::ServiceExt as _;

use html::{Frame, esc};

const SESSION_COOKIE: &str = "backstop_session";
const LOGIN_COOKIE: &str = "backstop_login";
/// A session lasts a working day; then the person signs in again.
const SESSION_TTL: Duration = Duration::from_secs(12 * 3600);
/// The most sessions kept at once: sign-ins past it push out the oldest.
const MAX_SESSIONS: usize = 10_000;

/// The dashboard's state: the API it calls and the signed-in sessions.
pub struct Ui {
    api: Router,
    sessions: Mutex<HashMap<String, Session>>,
}

struct Session {
    token: String,
    csrf: String,
    expires: Instant,
}

/// The dashboard's routes; `api` is the daemon's API router, called in-process.
pub fn routes(api: Router) -> Router {
    let ui = Arc::new(Ui {
        api,
        sessions: Mutex::new(HashMap::new()),
    });
    Router::new()
        .route("/", get(pages::overview))
        .route("/ui/style.css", get(style))
        .route("/login", get(login_form).post(login))
        .route("/logout", axum::routing::post(logout))
        .route("/rollouts", get(pages::rollouts))
        .route("/rollouts/{id}", get(pages::rollout))
        .route(
            "/rollouts/{id}/{action}",
            get(confirm_rollout).post(act_rollout),
        )
        .route("/recoveries/{id}", get(pages::recovery))
        .route("/recoveries/{id}/resume", get(confirm_resume).post(resume))
        .route(
            "/environments/{service}/{env}/rollback",
            get(confirm_rollback).post(rollback),
        )
        .route("/groups", get(pages::groups))
        .route("/ships", get(pages::ships))
        .route("/alerts", get(pages::alerts))
        .route("/incidents", get(pages::incidents))
        .route("/incidents/{id}", get(pages::incident))
        .route("/runbooks", get(pages::runbooks))
        .route("/scorecards", get(pages::scorecards))
        .route("/audit", get(pages::audit))
        .with_state(ui)
}

async fn style() -> Response {
    (
        [
            (header::CONTENT_TYPE, "text/css; charset=utf-8"),
            (header::CACHE_CONTROL, "max-age=300"),
        ],
        include_str!("style.css"),
    )
        .into_response()
}

/// A signed-in person: their token (for the API calls) and their session's CSRF token.
pub struct Signed {
    ui: Arc<Ui>,
    session_key: String,
    token: String,
    csrf: String,
}

impl FromRequestParts<Arc<Ui>> for Signed {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, ui: &Arc<Ui>) -> Result<Self, Self::Rejection> {
        let to_login = || {
            let next = parts
                .uri
                .path_and_query()
                .map_or("/", axum::http::uri::PathAndQuery::as_str);
            Redirect::to(&format!("/login?next={}", html::seg(next))).into_response()
        };
        let Some(id) = cookie(&parts.headers, SESSION_COOKIE) else {
            return Err(to_login());
        };
        let key = backstop_core::secret::hash_token(&id);
        let mut sessions = ui.sessions.lock().unwrap_or_else(|p| p.into_inner());
        match sessions.get(&key) {
            Some(s) if s.expires > Instant::now() => Ok(Signed {
                ui: ui.clone(),
                session_key: key,
                token: s.token.clone(),
                csrf: s.csrf.clone(),
            }),
            Some(_) => {
                sessions.remove(&key);
                Err(to_login())
            }
            None => Err(to_login()),
        }
    }
}

/// Why a call to the API did not give what a page needed.
pub enum Failure {
    /// The token no longer works (revoked, expired): sign in again.
    SignedOut,
    /// The API refused or failed: its status and message.
    Api(StatusCode, String),
}

impl Signed {
    fn frame<'a>(&'a self, title: &'a str) -> Frame<'a> {
        Frame {
            title,
            csrf: Some(&self.csrf),
            refresh_s: None,
            notice: None,
        }
    }

    /// Calls the API with this person's token and reads its JSON answer as `T`.
    async fn call<T: DeserializeOwned>(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<T, Failure> {
        let (status, bytes) = self.raw(method, path, body).await?;
        if !status.is_success() {
            let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
            let message = v["error"]["message"].as_str().map_or_else(
                || String::from_utf8_lossy(&bytes).into_owned(),
                str::to_owned,
            );
            return Err(Failure::Api(status, message));
        }
        serde_json::from_slice(&bytes).map_err(|e| {
            Failure::Api(
                StatusCode::INTERNAL_SERVER_ERROR,
                format!("the API's answer to {path} did not read: {e}"),
            )
        })
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, Failure> {
        self.call(Method::GET, path, None).await
    }

    /// The API's answer as bytes (for the rollout's JSONL export).
    async fn raw(
        &self,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> Result<(StatusCode, bytes::Bytes), Failure> {
        let (status, bytes) = call_api(&self.ui.api, &self.token, method, path, body).await;
        if status == StatusCode::UNAUTHORIZED {
            self.ui
                .sessions
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .remove(&self.session_key);
            return Err(Failure::SignedOut);
        }
        Ok((status, bytes))
    }

    /// The page for a failure: back to sign-in, or the API's message with its status.
    fn failed(&self, failure: Failure) -> Response {
        match failure {
            Failure::SignedOut => Redirect::to("/login").into_response(),
            Failure::Api(status, message) => {
                let mut resp = html::page(
                    &self.frame(status.canonical_reason().unwrap_or("Refused")),
                    &format!("<p class=\"error\">{}</p>", esc(&message)),
                );
                *resp.status_mut() = status;
                resp
            }
        }
    }

    /// `None` when the form's CSRF token is this session's; else the page that refuses it.
    fn csrf_refusal(&self, given: &str) -> Option<Response> {
        if same_secret(given, &self.csrf) {
            None
        } else {
            Some(html::html(
                StatusCode::FORBIDDEN,
                "<p>This form is out of date or did not come from this dashboard; reload the page and try again.</p>".into(),
            ))
        }
    }
}

/// One in-process call to the API router.
async fn call_api(
    api: &Router,
    token: &str,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> (StatusCode, bytes::Bytes) {
    let mut req = Request::builder()
        .method(method)
        .uri(path)
        .header(header::AUTHORIZATION, format!("Bearer {token}"));
    let body = match body {
        Some(v) => {
            req = req.header(header::CONTENT_TYPE, "application/json");
            Body::from(v.to_string())
        }
        None => Body::empty(),
    };
    let req = match req.body(body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                bytes::Bytes::from(json!({"error": {"message": e.to_string()}}).to_string()),
            );
        }
    };
    let Ok(resp) = api.clone().oneshot(req).await;
    let status = resp.status();
    let bytes = axum::body::to_bytes(resp.into_body(), 64 << 20)
        .await
        .unwrap_or_default();
    (status, bytes)
}

/// Whether two secrets are equal, compared in constant time (by their hashes).
fn same_secret(given: &str, expected: &str) -> bool {
    !given.is_empty()
        && backstop_core::secret::token_matches(given, &backstop_core::secret::hash_token(expected))
}

/// The value of cookie `name` in the request's `Cookie` headers.
fn cookie(headers: &HeaderMap, name: &str) -> Option<String> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(k, _)| *k == name)
        .map(|(_, v)| v.to_owned())
        .filter(|v| !v.is_empty())
}

fn set_cookie(resp: &mut Response, value: &str) {
    if let Ok(v) = HeaderValue::from_str(value) {
        resp.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A path to go back to after signing in: only this site's own paths.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        // Browsers drop tabs and newlines from URLs (`/\t/evil` becomes `//evil`) and read `\`
        // as `/`: only plain paths of this site.
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n
                    .chars()
                    .any(|c| c == '\\' || c.is_whitespace() || c.is_control()) =>
        {
            n
        }
        _ => "/",
    }
}

#[derive(Deserialize)]
struct NextQuery {
    next: Option<String>,
}

async fn login_form(Query(q): Query<NextQuery>) -> Response {
    login_page(q.next.as_deref(), None, StatusCode::OK)
}

fn login_page(next: Option<&str>, error: Option<&str>, status: StatusCode) -> Response {
    let csrf = crate::auth::new_token();
    let mut body = String::new();
    if let Some(e) = error {
        body.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)));
    }
    body.push_str(&format!(
        "<form class=\"login\" method=\"post\" action=\"/login\">\
         <label for=\"token\">Token</label>\
         <input id=\"token\" name=\"token\" type=\"password\" autocomplete=\"current-password\" required>\
         <input type=\"hidden\" name=\"next\" value=\"{}\">{}\
         <button type=\"submit\">Sign in</button></form>\
         <p class=\"hint\">Use a token from <code>backstop token create</code>, or the admin token in \
         <code>STATE_DIR/admin.token</code>. What you may see and do is what the token may do through the API.</p>",
        esc(safe_next(next)),
        html::csrf_field(&csrf)
    ));
    let mut resp = html::page(
        &Frame {
            title: "Sign in",
            csrf: None,
            refresh_s: None,
            notice: None,
        },
        &body,
    );
    *resp.status_mut() = status;
    set_cookie(
        &mut resp,
        &format!("{LOGIN_COOKIE}={csrf}; Path=/login; HttpOnly; SameSite=Strict; Max-Age=3600"),
    );
    resp
}

#[derive(Deserialize)]
struct LoginForm {
    token: String,
    csrf: String,
    next: Option<String>,
}

async fn login(
    State(ui): State<Arc<Ui>>,
    headers: HeaderMap,
    Form(f): Form<LoginForm>,
) -> Response {
    let expected = cookie(&headers, LOGIN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&f.csrf, &expected) {
        return login_page(
            f.next.as_deref(),
            Some("The sign-in form expired; please try again."),
            StatusCode::FORBIDDEN,
        );
    }
    let token = f.token.trim();
    let (status, bytes) = call_api(&ui.api, token, Method::GET, "/api/v1/services", None).await;
    if !status.is_success() {
        let v: Value = serde_json::from_slice(&bytes).unwrap_or_default();
        let why = v["error"]["message"].as_str().unwrap_or("refused");
        tracing::warn!(status = status.as_u16(), "Dashboard sign-in refused.");
        return login_page(
            f.next.as_deref(),
            Some(&format!("That token was refused: {why}")),
            StatusCode::UNAUTHORIZED,
        );
    }
    let id = crate::auth::new_token();
    {
        let mut sessions = ui.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        sessions.retain(|_, s| s.expires > now);
        if sessions.len() >= MAX_SESSIONS
            && let Some(oldest) = sessions
                .iter()
                .min_by_key(|(_, s)| s.expires)
                .map(|(k, _)| k.clone())
        {
            sessions.remove(&oldest);
        }
        sessions.insert(
            backstop_core::secret::hash_token(&id),
            Session {
                token: token.to_owned(),
                csrf: crate::auth::new_token(),
                expires: now + SESSION_TTL,
            },
        );
    }
    tracing::info!("Dashboard sign-in.");
    let mut resp = Redirect::to(safe_next(f.next.as_deref())).into_response();
    set_cookie(
        &mut resp,
        &format!(
            "{SESSION_COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}",
            SESSION_TTL.as_secs()
        ),
    );
    set_cookie(
        &mut resp,
        &format!("{LOGIN_COOKIE}=; Path=/login; Max-Age=0"),
    );
    resp
}

#[derive(Deserialize)]
struct CsrfForm {
    csrf: String,
}

async fn logout(signed: Signed, Form(f): Form<CsrfForm>) -> Response {
    if let Some(r) = signed.csrf_refusal(&f.csrf) {
        return r;
    }
    signed
        .ui
        .sessions
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .remove(&signed.session_key);
    let mut resp = Redirect::to("/login").into_response();
    set_cookie(&mut resp, &format!("{SESSION_COOKIE}=; Path=/; Max-Age=0"));
    resp
}

/// What a person does to a rollout from its page, and what it means.
const ROLLOUT_ACTIONS: &[(&str, &str, &str)] = &[
    (
        "promote",
        "Promote",
        "sends the new version all traffic and makes it the last known good.",
    ),
    (
        "abort",
        "Abort",
        "takes the canary out of traffic and restores the last known good now.",
    ),
    (
        "acknowledge",
        "Acknowledge",
        "stops the escalation clock: the rollout then waits for your promote or abort.",
    ),
];

#[derive(Deserialize)]
struct ActionForm {
    csrf: String,
    #[serde(default)]
    reason: String,
}

/// A confirmation page: what the action will do, a reason for the audit log when the API
/// keeps one, and the button; shown again with the API's refusal when it refused.
struct Confirm {
    title: String,
    what: String,
    /// Where the form posts.
    action: String,
    /// Where Cancel goes.
    back: String,
    button: String,
    asks_reason: bool,
    /// What the action would undo, a line each (the rollback preview).
    details: Vec<String>,
}

impl Confirm {
    fn rollout(id: &str, action: &str) -> Option<Confirm> {
        let (_, label, what) = rollout_action(action)?;
        let page = format!("/rollouts/{}", html::seg(id));
        Some(Confirm {
            title: format!("{label} rollout {id}?"),
            what: format!("{label} {what}"),
            action: format!("{page}/{action}"),
            back: page,
            button: format!("{label} rollout"),
            asks_reason: true,
            details: Vec::new(),
        })
    }

    fn resume(id: &str) -> Confirm {
        let page = format!("/recoveries/{}", html::seg(id));
        Confirm {
            title: format!("Resume recovery {id}?"),
            what: "Runs the recovery again from its failed step; steps already done are not \
                   repeated."
                .into(),
            action: format!("{page}/resume"),
            back: page,
            button: "Resume recovery".into(),
            asks_reason: false,
            details: Vec::new(),
        }
    }

    fn rollback(service: &str, env: &str) -> Confirm {
        Confirm {
            title: format!("Roll back {service} in {env}?"),
            what: format!(
                "Rolls {service} in {env} back to its last known good release now: any canary \
                 leaves traffic, the stable version gets it all, and the current release is \
                 marked bad."
            ),
            action: format!(
                "/environments/{}/{}/rollback",
                html::seg(service),
                html::seg(env)
            ),
            back: "/".into(),
            button: "Roll back".into(),
            asks_reason: true,
            details: Vec::new(),
        }
    }

    fn page(&self, signed: &Signed, refused: Option<(StatusCode, &str)>) -> Response {
        let mut body = String::new();
        if let Some((_, e)) = refused {
            body.push_str(&format!("<p class=\"error\" role=\"alert\">{}</p>", esc(e)));
        }
        let reason = if self.asks_reason {
            "<label for=\"reason\">Reason (kept in the audit log)</label>\
             <textarea id=\"reason\" name=\"reason\" rows=\"3\" required></textarea>"
        } else {
            ""
        };
        let details = if self.details.is_empty() {
            String::new()
        } else {
            let items: String = self
                .details
                .iter()
                .map(|d| format!("<li>{}</li>", esc(d)))
                .collect();
            format!("<p>What it undoes:</p><ul class=\"undoes\">{items}</ul>")
        };
        body.push_str(&format!(
            "<form class=\"confirm\" method=\"post\" action=\"{}\"><p>{}</p>{details}{}{reason}\
             <div class=\"buttons\"><button class=\"danger\" type=\"submit\">{}</button>\
             <a class=\"cancel\" href=\"{}\">Cancel</a></div></form>",
            esc(&self.action),
            esc(&self.what),
            html::csrf_field(&signed.csrf),
            esc(&self.button),
            esc(&self.back)
        ));
        let mut resp = html::page(&signed.frame(&self.title), &body);
        if let Some((status, _)) = refused {
            *resp.status_mut() = status;
        }
        resp
    }

    /// After the API call: on to `done` when it went through, the page again with the API's
    /// refusal when it did not.
    fn after<T>(
        &self,
        signed: &Signed,
        answer: Result<T, Failure>,
        done: impl FnOnce(T) -> String,
    ) -> Response {
        match answer {
            Ok(v) => Redirect::to(&done(v)).into_response(),
            Err(Failure::Api(status, message)) => self.page(signed, Some((status, &message))),
            Err(f) => signed.failed(f),
        }
    }
}

fn rollout_action(action: &str) -> Option<&'static (&'static str, &'static str, &'static str)> {
    ROLLOUT_ACTIONS.iter().find(|(a, _, _)| *a == action)
}

fn no_such_action(signed: &Signed, action: &str) -> Response {
    signed.failed(Failure::Api(
        StatusCode::NOT_FOUND,
        format!("no action {action:?} on a rollout"),
    ))
}

async fn confirm_rollout(signed: Signed, Path((id, action)): Path<(String, String)>) -> Response {
    match Confirm::rollout(&id, &action) {
        Some(c) => c.page(&signed, None),
        None => no_such_action(&signed, &action),
    }
}

async fn act_rollout(
    signed: Signed,
    Path((id, action)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Some(r) = signed.csrf_refusal(&f.csrf) {
        return r;
    }
    let Some(c) = Confirm::rollout(&id, &action) else {
        return no_such_action(&signed, &action);
    };
    let path = format!("/api/v1/rollouts/{}/{action}", html::seg(&id));
    let answer = signed
        .call::<Value>(Method::POST, &path, Some(json!({"reason": f.reason})))
        .await;
    c.after(&signed, answer, |_| format!("{}?done={action}", c.back))
}

async fn confirm_resume(signed: Signed, Path(id): Path<String>) -> Response {
    Confirm::resume(&id).page(&signed, None)
}

async fn resume(signed: Signed, Path(id): Path<String>, Form(f): Form<ActionForm>) -> Response {
    if let Some(r) = signed.csrf_refusal(&f.csrf) {
        return r;
    }
    let c = Confirm::resume(&id);
    let path = format!("/api/v1/recoveries/{}/resume", html::seg(&id));
    let answer = signed.call::<Value>(Method::POST, &path, None).await;
    c.after(&signed, answer, |_| format!("{}?done=resume", c.back))
}

async fn confirm_rollback(
    signed: Signed,
    Path((service, env)): Path<(String, String)>,
) -> Response {
    let mut confirm = Confirm::rollback(&service, &env);
    let path = format!(
        "/api/v1/rollback/preview?service={}&env={}",
        html::seg(&service),
        html::seg(&env)
    );
    confirm.details = match signed
        .get::<backstop_api::rollouts::RollbackPreview>(&path)
        .await
    {
        Ok(p) => p.summary,
        Err(Failure::Api(_, message)) => vec![format!("(no preview: {message})")],
        Err(_) => vec!["(no preview: the daemon did not answer)".to_owned()],
    };
    confirm.page(&signed, None)
}

async fn rollback(
    signed: Signed,
    Path((service, env)): Path<(String, String)>,
    Form(f): Form<ActionForm>,
) -> Response {
    if let Some(r) = signed.csrf_refusal(&f.csrf) {
        return r;
    }
    let body = json!({"service": service, "env": env, "reason": f.reason});
    let answer = signed
        .call::<backstop_core::model::Recovery>(Method::POST, "/api/v1/rollback", Some(body))
        .await;
    Confirm::rollback(&service, &env).after(&signed, answer, |rec| {
        format!("/recoveries/{}?done=rollback", html::seg(&rec.id))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_own_paths_are_followed_after_sign_in() {
        assert_eq!(safe_next(Some("/rollouts/r1")), "/rollouts/r1");
        assert_eq!(safe_next(Some("//evil.example")), "/");
        assert_eq!(safe_next(Some("https://evil.example")), "/");
        assert_eq!(safe_next(Some("/\\evil")), "/");
        assert_eq!(safe_next(Some("/\t/evil.example")), "/");
        assert_eq!(safe_next(Some("/\n/evil.example")), "/");
        assert_eq!(safe_next(None), "/");
    }

    #[test]
    fn cookies_are_read_by_name() {
        let mut h = HeaderMap::new();
        h.insert(
            header::COOKIE,
            HeaderValue::from_static("a=1; backstop_session=xyz; b=2"),
        );
        assert_eq!(cookie(&h, SESSION_COOKIE).as_deref(), Some("xyz"));
        assert_eq!(cookie(&h, "c"), None);
    }
}
