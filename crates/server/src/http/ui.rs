//! The built web UI (ui/dist) at `/`, with a strict Content-Security-Policy: scripts and
//! styles only from this server, no inline script, no plugins, no framing, connections only
//! back to this server, images only from here or data: URLs (a model card cannot make the page
//! fetch from elsewhere). Unknown paths that are not files get index.html (the UI routes on the
//! client). Without a built UI, `/` explains how to build it.
use axum::extract::Request;
use axum::http::{header, HeaderValue, StatusCode};
use axum::middleware::Next;
use axum::response::{Html, IntoResponse, Response};
use axum::Router;
use std::path::{Path, PathBuf};
use tower_http::services::{ServeDir, ServeFile};

pub const CSP: &str = "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; \
    img-src 'self' data:; font-src 'self' data:; connect-src 'self'; object-src 'none'; \
    base-uri 'none'; form-action 'self'; frame-ancestors 'none'";

/// Where the built UI is: `CORTEX_UI_DIR`, next to the binary (`../share/cortexstream/ui` or
/// `ui`), or the source tree's ui/dist.
pub fn find_ui_dir() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(d) = std::env::var_os("CORTEX_UI_DIR") {
        candidates.push(PathBuf::from(d));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
    {
        candidates.push(exe_dir.join("../share/cortexstream/ui"));
        candidates.push(exe_dir.join("ui"));
    }
    candidates.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../ui/dist"));
    candidates
        .into_iter()
        .find(|d| d.join("index.html").is_file())
}

pub fn routes<S: Clone + Send + Sync + 'static>(dir: Option<&Path>) -> Router<S> {
    match dir {
        Some(dir) => {
            let index = ServeFile::new(dir.join("index.html"));
            Router::new().fallback_service(ServeDir::new(dir).fallback(index))
        }
        None => Router::new().fallback(not_built),
    }
}

async fn not_built() -> Response {
    (
        StatusCode::NOT_FOUND,
        Html(
            "<!doctype html><meta charset=utf-8><title>CortexStream</title>\
             <p>The web UI is not built. Run <code>npm ci &amp;&amp; npm run build</code> in \
             <code>ui/</code> (or set CORTEX_UI_DIR), then reload.</p>\
             <p>The OpenAI-compatible API is at <code>/v1</code>.</p>",
        ),
    )
        .into_response()
}

/// Security headers on every response (the API's JSON too: harmless there).
pub async fn security_headers(req: Request, next: Next) -> Response {
    let mut resp = next.run(req).await;
    let h = resp.headers_mut();
    h.insert(
        header::CONTENT_SECURITY_POLICY,
        HeaderValue::from_static(CSP),
    );
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    resp
}
