//! The web dashboard's files: `web/dist` (built by Vite from `web/`) is
//! compiled into the binary, so one binary carries the dashboard. Every
//! answer carries a strict Content-Security-Policy (scripts, styles and
//! connections only from this origin, no inline code, no framing);
//! hashed assets are cached for good, `index.html` never.

use axum::extract::Path;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use include_dir::{Dir, include_dir};

static DIST: Dir<'static> = include_dir!("$CARGO_MANIFEST_DIR/../web/dist");

/// The policy every dashboard answer carries.
pub(super) const CONTENT_SECURITY_POLICY: &str = "default-src 'self'; script-src 'self'; \
     style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; \
     object-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

/// The media type of a dashboard file, by its extension.
pub(super) fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js" | "mjs") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("ico") => "image/x-icon",
        Some("woff2") => "font/woff2",
        Some("json" | "map") => "application/json",
        Some("txt") => "text/plain; charset=utf-8",
        _ => "application/octet-stream",
    }
}

fn file(path: &str, cache: &'static str) -> Response {
    let Some(found) = DIST.get_file(path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            format!("no dashboard file {path}\n"),
        )
            .into_response();
    };
    let mut response = found.contents().into_response();
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static(content_type(path)),
    );
    headers.insert(header::CACHE_CONTROL, HeaderValue::from_static(cache));
    response
}

/// `GET /`: the dashboard's page.
pub(super) async fn index() -> Response {
    file("index.html", "no-cache")
}

/// `GET /assets/{file}`: a content-hashed script, style or image.
pub(super) async fn asset(Path(name): Path<String>) -> Response {
    if name.contains("..") || name.starts_with('/') {
        return StatusCode::NOT_FOUND.into_response();
    }
    file(
        &format!("assets/{name}"),
        "public, max-age=31536000, immutable",
    )
}

/// Security headers for every answer of the listener: the dashboard's
/// policy, no MIME sniffing, no referrer, no framing.
pub(super) async fn security_headers(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Response {
    let mut response = next.run(request).await;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CONTENT_SECURITY_POLICY),
    );
    headers.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    headers.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    headers.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_built_dashboard_is_embedded() {
        let index = DIST
            .get_file("index.html")
            .expect("web/dist/index.html is embedded");
        let text = index.contents_utf8().unwrap();
        assert!(text.contains("<html"), "{text}");
        // The policy forbids inline code: the page must not need it.
        assert!(!text.contains("<script>"), "inline script in index.html");
        assert!(!text.contains("<style"), "inline style in index.html");
        assert!(!text.contains(" style="), "style attribute in index.html");
    }

    #[test]
    fn files_get_their_media_types() {
        assert_eq!(content_type("index.html"), "text/html; charset=utf-8");
        assert_eq!(
            content_type("assets/index-abc.js"),
            "text/javascript; charset=utf-8"
        );
        assert_eq!(content_type("assets/x.css"), "text/css; charset=utf-8");
        assert_eq!(content_type("favicon.svg"), "image/svg+xml");
        assert_eq!(content_type("noextension"), "application/octet-stream");
    }

    #[test]
    fn the_policy_allows_nothing_inline_or_foreign() {
        for directive in [
            "default-src 'self'",
            "script-src 'self'",
            "style-src 'self'",
            "frame-ancestors 'none'",
            "object-src 'none'",
        ] {
            assert!(CONTENT_SECURITY_POLICY.contains(directive), "{directive}");
        }
        assert!(!CONTENT_SECURITY_POLICY.contains("unsafe"));
    }
}
