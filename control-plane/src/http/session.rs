//! Browser sessions for the dashboard: `POST /api/v1/session` logs a user
//! in (or takes an API token, such as the first admin's) and puts the
//! token in an `HttpOnly; SameSite=Strict` cookie (`Secure` behind a TLS
//! proxy), `GET` says who the cookie is, `DELETE` logs out. A user's token
//! is the same login session `argosy login --user` gets, so the rules,
//! roles, scope and audit are the gRPC handlers'.
//!
//! A request that carries the cookie and no `Authorization` header goes
//! through [`cookie_session`]: a state-changing method must come from the
//! dashboard's own origin and carry `X-CSRF-Token`, a value derived from
//! the session token that only a page which asked `GET /api/v1/session`
//! knows (the cookie itself is unreadable to scripts). The cookie then
//! becomes the bearer token the handlers read.

use super::users::{LoginBody, body};
use super::{ApiError, grpc_request as request};
use crate::dto::{ScopeJson, role_name};
use crate::grpc::tokens::ApiTokenApi;
use crate::grpc::users::SessionApi;
use crate::secrets::{hash_secret, secret_matches};
use crate::state::ControlPlane;
use argosy_proto::v1::{
    self as pb, api_token_service_server::ApiTokenService, session_service_server::SessionService,
};
use axum::Json;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use std::sync::Arc;

/// The cookie that carries the session token.
pub(super) const SESSION_COOKIE: &str = "argosy_session";
/// The header a state-changing cookie request carries.
pub(super) const CSRF_HEADER: &str = "x-csrf-token";
/// The path of the session resource.
pub(super) const SESSION_PATH: &str = "/api/v1/session";

/// The CSRF token of a session: a hash of its secret token, so it needs
/// no storage and cannot be guessed without the (HttpOnly) cookie.
pub(super) fn csrf_token(session_token: &str) -> String {
    hash_secret(&csrf_input(session_token))
}

fn csrf_input(session_token: &str) -> String {
    format!("argosy-csrf-v1:{session_token}")
}

/// The value of cookie `name` in the request's `Cookie` headers.
pub(super) fn cookie_value<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get_all(header::COOKIE)
        .iter()
        .filter_map(|value| value.to_str().ok())
        .flat_map(|value| value.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(key, value)| *key == name && !value.is_empty())
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that starts a session for `max_age_seconds`.
pub(super) fn session_cookie(token: &str, max_age_seconds: i64, secure: bool) -> String {
    format!(
        "{SESSION_COOKIE}={token}; Path=/; HttpOnly; SameSite=Strict; Max-Age={}{}",
        max_age_seconds.max(0),
        if secure { "; Secure" } else { "" }
    )
}

/// The `Set-Cookie` value that ends it in the browser.
pub(super) fn cleared_cookie(secure: bool) -> String {
    session_cookie("", 0, secure)
}

/// Whether the request reached a TLS proxy in front of the listener (the
/// listener itself speaks plain HTTP on loopback).
fn behind_tls(headers: &HeaderMap) -> bool {
    headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.eq_ignore_ascii_case("https"))
}

/// Methods that change nothing and so need no CSRF token.
fn is_safe(method: &Method) -> bool {
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// Why a cookie request is refused before any handler sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum CookieRefusal {
    /// `Origin` names another site.
    CrossOrigin,
    /// No `X-CSRF-Token`, or not this session's.
    Csrf,
}

impl CookieRefusal {
    fn message(self) -> &'static str {
        match self {
            Self::CrossOrigin => {
                "the request comes from another origin than the dashboard; open the dashboard at this address"
            }
            Self::Csrf => {
                "the request lacks this session's X-CSRF-Token; reload the dashboard (GET /api/v1/session gives the token)"
            }
        }
    }
}

/// Whether `Origin`, when the browser sent one, is this listener's own
/// (`Host`). Browsers send it on every cross-origin and every
/// state-changing request.
fn same_origin(headers: &HeaderMap) -> bool {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return true;
    };
    let Some(host) = headers.get(header::HOST).and_then(|v| v.to_str().ok()) else {
        return false;
    };
    let origin_host = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .unwrap_or("");
    origin_host.eq_ignore_ascii_case(host)
}

/// The decision for a request that authenticates with the cookie holding
/// `token`: safe methods pass; others need the same origin and the
/// session's CSRF token.
pub(super) fn check_cookie_request(
    method: &Method,
    headers: &HeaderMap,
    token: &str,
) -> Result<(), CookieRefusal> {
    if is_safe(method) {
        return Ok(());
    }
    if !same_origin(headers) {
        return Err(CookieRefusal::CrossOrigin);
    }
    let sent = headers
        .get(CSRF_HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    if sent.is_empty() || !secret_matches(&csrf_input(token), sent) {
        return Err(CookieRefusal::Csrf);
    }
    Ok(())
}

fn refused(message: &str) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, message).into_response()
}

/// Turns the session cookie into the bearer token the handlers read,
/// after the CSRF and origin checks. A request with its own
/// `Authorization` header (the CLI, scripts) is left as it is.
pub(super) async fn cookie_session(
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let headers = request.headers();
    if headers.contains_key(header::AUTHORIZATION) {
        return next.run(request).await;
    }
    // Logging in uses no session; a stale cookie must not stand in its
    // way, but another site must not log a browser in either.
    if request.uri().path() == SESSION_PATH && request.method() == Method::POST {
        if !same_origin(headers) {
            return refused(CookieRefusal::CrossOrigin.message());
        }
        return next.run(request).await;
    }
    let Some(token) = cookie_value(headers, SESSION_COOKIE).map(str::to_owned) else {
        return next.run(request).await;
    };
    if let Err(refusal) = check_cookie_request(request.method(), headers, &token) {
        return refused(refusal.message());
    }
    match HeaderValue::from_str(&format!("Bearer {token}")) {
        Ok(value) => {
            request.headers_mut().insert(header::AUTHORIZATION, value);
            next.run(request).await
        }
        Err(_) => ApiError::new(
            StatusCode::UNAUTHORIZED,
            "the session cookie is malformed; log in again",
        )
        .into_response(),
    }
}

/// How long a browser keeps a session opened with an API token (the
/// token's own expiry and revocation still apply on every request).
const TOKEN_SESSION_SECONDS: i64 = 12 * 3600;

/// What `POST /api/v1/session` accepts: a user's password, or an API
/// token (the first admin's, printed at the first start, for one).
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub(super) enum SessionLogin {
    Password(LoginBody),
    Token(TokenLogin),
}

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct TokenLogin {
    token: String,
}

/// `POST /api/v1/session` with `{"username", "password", "ttl_seconds"?}`
/// or `{"token"}`: sets the cookie and answers the CSRF token, the name,
/// role and scope.
pub(super) async fn create(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
    json: Bytes,
) -> Result<Response, ApiError> {
    let login: SessionLogin = body(
        &json,
        r#"{"username": string, "password": string, "ttl_seconds": number (optional)} or {"token": string}"#,
    )?;
    let now = cp.now_ms();
    let (token, mut answer) = match login {
        SessionLogin::Password(login) => {
            let session = SessionApi { cp }
                .login(request(&headers, login.into_request()))
                .await?
                .into_inner();
            let answer = json!({
                "username": session.username,
                "role": role_name(session.role),
                "scope": ScopeJson::from(session.scope),
                "expires_at_ms": session.expires_at_ms,
            });
            (session.token, answer)
        }
        SessionLogin::Token(TokenLogin { token }) => {
            let mut with_token = headers.clone();
            let bearer =
                HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                    ApiError::new(
                        StatusCode::UNAUTHORIZED,
                        "the token is malformed; paste it whole",
                    )
                })?;
            with_token.insert(header::AUTHORIZATION, bearer);
            let who = ApiTokenApi { cp }
                .who_am_i(request(&with_token, pb::WhoAmIRequest {}))
                .await?
                .into_inner();
            let answer = json!({
                "username": who.name,
                "role": role_name(who.role),
                "scope": ScopeJson::from(who.scope),
                "expires_at_ms": now + TOKEN_SESSION_SECONDS * 1000,
            });
            (token.trim().to_owned(), answer)
        }
    };
    let max_age = (answer["expires_at_ms"].as_i64().unwrap_or(now) - now) / 1000;
    let cookie = session_cookie(&token, max_age, behind_tls(&headers));
    answer["csrf_token"] = json!(csrf_token(&token));
    Ok(([(header::SET_COOKIE, cookie)], Json(answer)).into_response())
}

/// `GET /api/v1/session`: who the cookie (or bearer token) is, and the
/// CSRF token a page sends with every change.
pub(super) async fn show(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, ApiError> {
    let who = ApiTokenApi { cp }
        .who_am_i(request(&headers, pb::WhoAmIRequest {}))
        .await?
        .into_inner();
    let csrf = cookie_value(&headers, SESSION_COOKIE).map(csrf_token);
    let kind = match pb::PrincipalKind::try_from(who.kind) {
        Ok(pb::PrincipalKind::User) => "user",
        _ => "token",
    };
    Ok(Json(json!({
        "csrf_token": csrf,
        "name": who.name,
        "kind": kind,
        "role": role_name(who.role),
        "scope": ScopeJson::from(who.scope),
        "token_id": who.token_id,
    })))
}

/// `DELETE /api/v1/session`: ends a user's session and clears the
/// cookie. A browser holding an API token only forgets it (revoking a
/// token is `DELETE /api/v1/tokens/{id}`, an admin's decision).
pub(super) async fn remove(
    State(cp): State<Arc<ControlPlane>>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let who = ApiTokenApi { cp: cp.clone() }
        .who_am_i(request(&headers, pb::WhoAmIRequest {}))
        .await?
        .into_inner();
    let token_id = if who.kind == pb::PrincipalKind::User as i32 {
        SessionApi { cp }
            .logout(request(&headers, pb::LogoutRequest {}))
            .await?
            .into_inner()
            .token_id
    } else {
        who.token_id
    };
    Ok((
        [(header::SET_COOKIE, cleared_cookie(behind_tls(&headers)))],
        Json(json!({ "token_id": token_id })),
    )
        .into_response())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut map = HeaderMap::new();
        for (name, value) in pairs {
            map.append(
                axum::http::HeaderName::from_bytes(name.as_bytes()).unwrap(),
                HeaderValue::from_str(value).unwrap(),
            );
        }
        map
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let h = headers(&[
            ("cookie", "theme=dark; argosy_session=argosy_a_b"),
            ("cookie", "other=1"),
        ]);
        assert_eq!(cookie_value(&h, SESSION_COOKIE), Some("argosy_a_b"));
        assert_eq!(cookie_value(&h, "other"), Some("1"));
        assert_eq!(cookie_value(&h, "missing"), None);
        let empty = headers(&[("cookie", "argosy_session=")]);
        assert_eq!(cookie_value(&empty, SESSION_COOKIE), None);
    }

    #[test]
    fn the_cookie_is_httponly_strict_and_secure_behind_tls() {
        assert_eq!(
            session_cookie("t", 3600, false),
            "argosy_session=t; Path=/; HttpOnly; SameSite=Strict; Max-Age=3600"
        );
        assert!(session_cookie("t", 3600, true).ends_with("; Secure"));
        assert!(cleared_cookie(false).contains("Max-Age=0"));
        assert!(session_cookie("t", -5, false).contains("Max-Age=0"));
        assert!(behind_tls(&headers(&[("x-forwarded-proto", "HTTPS")])));
        assert!(!behind_tls(&headers(&[])));
    }

    #[test]
    fn the_csrf_token_belongs_to_one_session() {
        let a = csrf_token("argosy_a_secret");
        assert_eq!(a.len(), 64);
        assert_eq!(a, csrf_token("argosy_a_secret"));
        assert_ne!(a, csrf_token("argosy_b_secret"));
        assert!(!a.contains("secret"));
    }

    #[test]
    fn state_changes_need_the_token_and_the_same_origin() {
        let token = "argosy_x_y";
        let csrf = csrf_token(token);
        let host = ("host", "127.0.0.1:8080");
        // Reading needs nothing more than the cookie.
        assert_eq!(
            check_cookie_request(&Method::GET, &headers(&[]), token),
            Ok(())
        );
        // Changing needs the session's token…
        for method in [Method::POST, Method::PUT, Method::PATCH, Method::DELETE] {
            assert_eq!(
                check_cookie_request(&method, &headers(&[host]), token),
                Err(CookieRefusal::Csrf)
            );
            assert_eq!(
                check_cookie_request(
                    &method,
                    &headers(&[host, (CSRF_HEADER, &csrf_token("argosy_other"))]),
                    token
                ),
                Err(CookieRefusal::Csrf)
            );
            assert_eq!(
                check_cookie_request(&method, &headers(&[host, (CSRF_HEADER, &csrf)]), token),
                Ok(())
            );
        }
        // …from the same origin when the browser names one.
        assert_eq!(
            check_cookie_request(
                &Method::POST,
                &headers(&[
                    host,
                    ("origin", "http://127.0.0.1:8080"),
                    (CSRF_HEADER, &csrf)
                ]),
                token
            ),
            Ok(())
        );
        assert_eq!(
            check_cookie_request(
                &Method::POST,
                &headers(&[
                    host,
                    ("origin", "https://evil.example"),
                    (CSRF_HEADER, &csrf)
                ]),
                token
            ),
            Err(CookieRefusal::CrossOrigin)
        );
        assert_eq!(
            check_cookie_request(
                &Method::POST,
                &headers(&[("origin", "http://127.0.0.1:8080"), (CSRF_HEADER, &csrf)]),
                token
            ),
            Err(CookieRefusal::CrossOrigin),
            "an Origin with no Host to compare is refused"
        );
    }
}
