//! The dashboard's files at `/ui/`: `ui/dist` (built by `npm run build` in
//! `ui/` and committed), embedded in the binary by `rust-embed`, so the
//! hub needs no Node and no files beside it. The pages hold no data and
//! need no credential; everything they show comes from `/admin/api`.

use axum::extract::Path;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;
use axum::Router;
use rust_embed::RustEmbed;

use crate::Hub;

#[derive(RustEmbed)]
#[folder = "../../ui/dist/"]
struct Dist;

/// Same-origin only: no inline script, no CDN, not framed by other sites.
const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
                   connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'";

pub(crate) fn routes() -> Router<Hub> {
    Router::new()
        .route("/ui", get(|| async { Redirect::permanent("/ui/") }))
        .route("/ui/", get(|| async { file("index.html") }))
        .route(
            "/ui/{*path}",
            get(|Path(path): Path<String>| async move { file(&path) }),
        )
}

fn content_type(path: &str) -> &'static str {
    match path.rsplit_once('.').map(|(_, ext)| ext) {
        Some("html") => "text/html; charset=utf-8",
        Some("js") => "text/javascript; charset=utf-8",
        Some("css") => "text/css; charset=utf-8",
        Some("svg") => "image/svg+xml",
        Some("png") => "image/png",
        Some("json") => "application/json",
        Some("map") => "application/json",
        _ => "application/octet-stream",
    }
}

fn file(path: &str) -> Response {
    let Some(asset) = Dist::get(path) else {
        return (
            StatusCode::NOT_FOUND,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "no such dashboard file",
        )
            .into_response();
    };
    let mut response = (
        [
            (header::CONTENT_TYPE, content_type(path)),
            // Small files, and a new hub version may ship new ones.
            (header::CACHE_CONTROL, "no-cache"),
            (header::X_CONTENT_TYPE_OPTIONS, "nosniff"),
            (header::REFERRER_POLICY, "no-referrer"),
        ],
        match asset.data {
            std::borrow::Cow::Borrowed(b) => axum::body::Body::from(b),
            std::borrow::Cow::Owned(v) => axum::body::Body::from(v),
        },
    )
        .into_response();
    if path.ends_with(".html") {
        response.headers_mut().insert(
            header::CONTENT_SECURITY_POLICY,
            HeaderValue::from_static(CSP),
        );
    }
    response
}
