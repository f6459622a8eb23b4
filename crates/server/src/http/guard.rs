//! What stands between the network and the handlers:
//! - the DNS-rebinding guard: bound to a loopback address, the server answers only requests
//!   whose Host is localhost, 127.0.0.1 or [::1] (a web page that rebinds its own name to
//!   127.0.0.1 still sends its own name as Host). It fails closed: a request without a Host
//!   (HTTP/1.0, a hand-written request) is refused, and an absolute request target
//!   (`GET http://name/...`) must name a loopback host too;
//! - the origin check: a browser request from an origin not on the allow list is refused (403)
//!   before it reaches a handler, so a foreign page cannot even start a generation with a
//!   "simple" cross-origin POST; allowed origins get CORS headers (preflight included);
//! - the API key: with one configured, every route but /health needs `Authorization: Bearer`;
//! - a request id (`x-request-id`, the client's or ours) and one log line per request.
use super::error::ApiError;
use axum::extract::{Request, State};
use axum::http::{header, HeaderValue, Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::sync::Arc;
use std::time::Instant;
use tower_http::cors::{AllowHeaders, AllowOrigin, CorsLayer};
use tracing::Instrument;

/// Origins allowed when none are configured: local web UIs and the desktop app.
pub const DEFAULT_ORIGINS: [&str; 4] = [
    "http://localhost:*",
    "http://127.0.0.1:*",
    "http://[::1]:*",
    "tauri://localhost",
];

#[derive(Debug)]
pub struct Security {
    /// Only loopback Host headers (the server is bound to a loopback address).
    pub loopback_hosts_only: bool,
    pub origins: OriginPolicy,
    pub api_key: Option<String>,
}

/// Allowed origins: exact (`https://app.example`), any port (`http://localhost:*`) or `*`.
#[derive(Debug, Clone)]
pub struct OriginPolicy {
    patterns: Vec<String>,
}

impl OriginPolicy {
    pub fn new(patterns: &[String]) -> Self {
        let patterns = if patterns.is_empty() {
            DEFAULT_ORIGINS.iter().map(|s| s.to_string()).collect()
        } else {
            patterns.to_vec()
        };
        OriginPolicy {
            patterns: patterns
                .iter()
                .map(|p| p.trim_end_matches('/').to_ascii_lowercase())
                .collect(),
        }
    }

    pub fn allows(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        self.patterns.iter().any(|p| {
            if p == "*" || *p == origin {
                return true;
            }
            let Some(base) = p.strip_suffix(":*") else {
                return false;
            };
            match origin.strip_prefix(base) {
                Some("") => true,
                Some(rest) => rest.strip_prefix(':').is_some_and(|port| {
                    !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit())
                }),
                None => false,
            }
        })
    }
}

/// True for `localhost`, `127.0.0.1` and `[::1]`, with or without a port.
pub fn is_loopback_host(host: &str) -> bool {
    let (loopback, port) = match host.strip_prefix('[') {
        Some(rest) => match rest.split_once(']') {
            Some((addr, port)) => (addr == "::1", port),
            None => return false,
        },
        None => {
            let (name, port) = host.split_at(host.find(':').unwrap_or(host.len()));
            (
                name.eq_ignore_ascii_case("localhost") || name == "127.0.0.1",
                port,
            )
        }
    };
    let port_ok = port.is_empty()
        || port
            .strip_prefix(':')
            .is_some_and(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    loopback && port_ok
}

fn forbidden(message: String) -> Response {
    ApiError::new(StatusCode::FORBIDDEN, "permission_error", message).into_response()
}

pub async fn host_and_origin(
    State(sec): State<Arc<Security>>,
    req: Request,
    next: Next,
) -> Response {
    let headers = req.headers();
    if sec.loopback_hosts_only {
        let Some(host) = headers.get(header::HOST) else {
            return ApiError::bad_request(
                "the Host header is missing: this server only answers requests for localhost \
                 (send Host: localhost)",
            )
            .with_code("missing_host")
            .into_response();
        };
        // an absolute-form target wins over the Host header (RFC 9112 3.2.2): check both
        let target = req.uri().authority().map(|a| a.as_str());
        for host in [host.to_str().unwrap_or(""), target.unwrap_or("localhost")] {
            if !is_loopback_host(host) {
                return forbidden(format!(
                    "host {host:?} is not allowed: this server only answers requests for localhost"
                ));
            }
        }
    }
    if let Some(origin) = headers.get(header::ORIGIN) {
        let origin = origin.to_str().unwrap_or("");
        if !sec.origins.allows(origin) {
            return forbidden(format!(
                "origin {origin:?} is not allowed (start the server with --allow-origin to allow it)"
            ));
        }
    }
    next.run(req).await
}

pub async fn api_key(State(sec): State<Arc<Security>>, req: Request, next: Next) -> Response {
    let Some(key) = &sec.api_key else {
        return next.run(req).await;
    };
    // the UI's own files are public; its /api calls carry the key like any client's
    let path = req.uri().path();
    let guarded = path.starts_with("/v1") || path.starts_with("/api");
    if !guarded || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match given {
        Some(g) if constant_time_eq(g.as_bytes(), key.as_bytes()) => next.run(req).await,
        Some(_) => unauthorized("invalid API key"),
        None => unauthorized("missing API key: send the header Authorization: Bearer <key>"),
    }
}

fn unauthorized(message: &str) -> Response {
    let mut r = ApiError::new(StatusCode::UNAUTHORIZED, "authentication_error", message)
        .with_code("invalid_api_key")
        .into_response();
    r.headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    r
}

/// Compares without an early exit, so response timing does not reveal a key's prefix.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// CORS headers for allowed origins (others were refused by [`host_and_origin`]).
pub fn cors(origins: OriginPolicy) -> CorsLayer {
    CorsLayer::new()
        .allow_origin(AllowOrigin::predicate(move |origin, _| {
            origin.to_str().is_ok_and(|o| origins.allows(o))
        }))
        .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
        .allow_headers(AllowHeaders::mirror_request())
        .expose_headers([header::HeaderName::from_static("x-request-id")])
        .max_age(std::time::Duration::from_secs(600))
}

/// Gives every request an id (the client's `x-request-id` when it sent a sane one), echoes it
/// in the response and logs the outcome.
pub async fn request_log(req: Request, next: Next) -> Response {
    let id = req
        .headers()
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.bytes().all(|b| b.is_ascii_graphic()))
        .map(str::to_string)
        .unwrap_or_else(|| super::random_id("req-"));
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let start = Instant::now();
    let span = tracing::info_span!("http", id = %id, %method, %path);
    let mut resp = next.run(req).instrument(span).await;
    tracing::info!(
        id = %id, %method, %path,
        status = resp.status().as_u16(),
        ms = start.elapsed().as_millis() as u64,
        "request"
    );
    if let Ok(v) = HeaderValue::from_str(&id) {
        resp.headers_mut().insert("x-request-id", v);
    }
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_hosts() {
        for ok in [
            "localhost",
            "localhost:8080",
            "LOCALHOST:1",
            "127.0.0.1",
            "127.0.0.1:80",
            "[::1]",
            "[::1]:8080",
        ] {
            assert!(is_loopback_host(ok), "{ok}");
        }
        for bad in [
            "evil.com",
            "localhost.evil.com",
            "127.0.0.1.nip.io",
            "127.0.0.2",
            "[::2]:80",
            "localhost:",
            "localhost:x",
            "[::1]x",
            "",
            "0.0.0.0:8080",
        ] {
            assert!(!is_loopback_host(bad), "{bad}");
        }
    }

    #[test]
    fn origin_patterns() {
        let p = OriginPolicy::new(&[]);
        for ok in [
            "http://localhost:5173",
            "http://localhost",
            "http://127.0.0.1:1",
            "tauri://localhost",
            "http://[::1]:3000",
        ] {
            assert!(p.allows(ok), "{ok}");
        }
        for bad in [
            "http://evil.com",
            "https://localhost:5173",
            "http://localhost.evil.com",
            "http://localhost:80x",
            "null",
            "tauri://localhost:1",
        ] {
            assert!(!p.allows(bad), "{bad}");
        }
        let p = OriginPolicy::new(&["https://app.example/".to_string()]);
        assert!(p.allows("https://app.example"));
        assert!(!p.allows("http://localhost:5173"));
        assert!(OriginPolicy::new(&["*".to_string()]).allows("http://anything"));
    }

    #[test]
    fn keys_compare_whole() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
