//! The app API (docs/APP_API.md) under /api: thin handlers over the service layer's [`App`],
//! for the web UI served at `/`. Errors are `{"error": {code, message, details}}` with a status
//! from the code. Every /api request must come from the server's own origin: a request with an
//! `Origin` of another site (or `Sec-Fetch-Site: cross-site`) is refused before any handler
//! runs, so no other page, not even another local app, can read conversations or start work.
use super::AppState;
use axum::extract::{Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::Next;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use cortex_service::chat::{ChatPatch, NewChat, ReplyStream, SendMessage};
use cortex_service::convert::ConvertRequest;
use cortex_service::downloads::DownloadRequest;
use cortex_service::hub::{PageParams, SearchParams};
use cortex_service::library::{ImportRequest, ModelUpdate};
use cortex_service::settings::SettingsUpdate;
use cortex_service::{ErrorBody, ServiceError};
use serde::Deserialize;
use serde_json::{json, Value};
use std::convert::Infallible;
use std::time::Duration;

/// An /api failure: the service's `{code, message, details}` and an HTTP status.
#[derive(Debug)]
pub struct AppApiError {
    status: StatusCode,
    body: ErrorBody,
}

impl AppApiError {
    fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        AppApiError {
            status,
            body: ErrorBody {
                code,
                message: message.into(),
                details: Value::Null,
            },
        }
    }
}

pub fn status_of(code: &str) -> StatusCode {
    match code {
        "not_found" => StatusCode::NOT_FOUND,
        "invalid_input" => StatusCode::BAD_REQUEST,
        "conflict" | "cancelled" => StatusCode::CONFLICT,
        "unauthorized" | "forbidden_origin" | "forbidden" => StatusCode::FORBIDDEN,
        "rate_limited" => StatusCode::TOO_MANY_REQUESTS,
        "hub_unreachable" => StatusCode::BAD_GATEWAY,
        "disk_full" => StatusCode::INSUFFICIENT_STORAGE,
        "too_large" => StatusCode::PAYLOAD_TOO_LARGE,
        "busy" => StatusCode::SERVICE_UNAVAILABLE,
        "model_load_failed" => StatusCode::UNPROCESSABLE_ENTITY,
        _ => StatusCode::INTERNAL_SERVER_ERROR,
    }
}

impl From<ServiceError> for AppApiError {
    fn from(e: ServiceError) -> Self {
        let body = e.body();
        AppApiError {
            status: status_of(body.code),
            body,
        }
    }
}

impl IntoResponse for AppApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(status = %self.status, "{}", self.body.message);
        }
        (self.status, Json(json!({ "error": self.body }))).into_response()
    }
}

type ApiResult<T> = Result<Json<T>, AppApiError>;

/// A JSON body whose rejections are app API errors.
pub struct Body<T>(pub T);

/// Path parameters: a segment that is not valid percent-encoded UTF-8 is a 400 in the app
/// API's error shape (axum's own rejection is plain text).
struct Params<T>(T);

impl<S: Send + Sync, T: serde::de::DeserializeOwned + Send> axum::extract::FromRequestParts<S>
    for Params<T>
{
    type Rejection = AppApiError;

    async fn from_request_parts(
        parts: &mut axum::http::request::Parts,
        state: &S,
    ) -> Result<Self, AppApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| Params(v))
            .map_err(|r| AppApiError::new(StatusCode::BAD_REQUEST, "invalid_input", r.body_text()))
    }
}

impl<S: Send + Sync, T: serde::de::DeserializeOwned> axum::extract::FromRequest<S> for Body<T> {
    type Rejection = AppApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, AppApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|r| AppApiError::new(r.status(), "invalid_input", r.body_text()))?;
        let bytes = if bytes.is_empty() { "{}".into() } else { bytes };
        serde_json::from_slice(&bytes).map(Body).map_err(|e| {
            AppApiError::new(
                StatusCode::BAD_REQUEST,
                "invalid_input",
                format!("invalid request body: {e}"),
            )
        })
    }
}

/// The app API. `library_only` (a server others can reach, [`super::ServerConfig::library_only`])
/// refuses what would download, read a file by path or write new model files on a caller's
/// behalf: see [`refused_in_library_mode`].
pub fn routes(library_only: bool) -> Router<AppState> {
    let router = all_routes();
    if library_only {
        router.route_layer(axum::middleware::from_fn(library_guard))
    } else {
        router
    }
}

/// True for the requests a library-only server refuses: starting or resuming a download,
/// importing a file or folder by path, converting (new model files), changing settings (the
/// models folder, the Hugging Face endpoint and token).
pub fn refused_in_library_mode(method: &axum::http::Method, path: &str) -> bool {
    use axum::http::Method;
    let parts: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    matches!(
        (method, parts.as_slice()),
        (&Method::PUT | &Method::PATCH, ["", "api", "settings"])
            | (&Method::POST, ["", "api", "models", "import"])
            | (&Method::POST, ["", "api", "downloads"])
            | (&Method::POST, ["", "api", "downloads", _, "resume"])
            | (&Method::POST, ["", "api", "convert"])
    )
}

async fn library_guard(
    req: axum::extract::Request,
    next: axum::middleware::Next,
) -> axum::response::Response {
    if refused_in_library_mode(req.method(), req.uri().path()) {
        return AppApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "this server serves its library only: downloads, imports, conversions and settings \
             changes are turned off (start it with --allow-pulls to allow them)",
        )
        .into_response();
    }
    next.run(req).await
}

fn all_routes() -> Router<AppState> {
    Router::new()
        .route("/api/system", get(system))
        .route("/api/settings", get(settings).put(update_settings))
        .route("/api/models", get(models))
        .route("/api/models/import", post(import_model))
        .route(
            "/api/models/{id}",
            get(model).patch(update_model).delete(delete_model),
        )
        .route("/api/models/{id}/load", post(load_model))
        .route("/api/models/{id}/unload", post(unload_model))
        .route("/api/hub/search", get(hub_search))
        .route("/api/hub/model", get(hub_model))
        .route("/api/downloads", get(downloads).post(start_download))
        .route("/api/downloads/{id}", get(download).delete(forget_download))
        .route("/api/downloads/{id}/{action}", post(download_action))
        .route("/api/convert/estimate", post(estimate_conversion))
        .route("/api/convert", post(start_conversion))
        .route("/api/conversions", get(conversions))
        .route("/api/conversions/{id}/cancel", post(cancel_conversion))
        .route(
            "/api/conversations",
            get(conversations).post(create_conversation),
        )
        .route(
            "/api/conversations/{id}",
            get(conversation)
                .patch(update_conversation)
                .delete(delete_conversation),
        )
        .route("/api/conversations/{id}/messages", post(send_message))
        .route("/api/conversations/{id}/regenerate", post(regenerate))
        .route("/api/conversations/{id}/stop", post(stop_reply))
        .route("/api/events", get(events))
        .route("/api", axum::routing::any(unknown))
        .route("/api/{*rest}", axum::routing::any(unknown))
}

async fn unknown(method: axum::http::Method, uri: axum::http::Uri) -> AppApiError {
    AppApiError::new(
        StatusCode::NOT_FOUND,
        "not_found",
        format!("unknown app API route {method} {}", uri.path()),
    )
}

/// Refuses /api requests from any origin but the server's own.
pub async fn same_origin_only(req: Request, next: Next) -> Response {
    if req.uri().path().starts_with("/api/") || req.uri().path() == "/api" {
        if let Some(reason) = cross_origin(req.headers()) {
            return AppApiError::new(StatusCode::FORBIDDEN, "forbidden_origin", reason)
                .into_response();
        }
    }
    next.run(req).await
}

fn cross_origin(h: &HeaderMap) -> Option<String> {
    if h.get("sec-fetch-site").and_then(|v| v.to_str().ok()) == Some("cross-site") {
        return Some("cross-site requests to the app API are refused".into());
    }
    let origin = h.get(header::ORIGIN)?.to_str().unwrap_or("");
    let host = h
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let same = origin
        .strip_prefix("http://")
        .or_else(|| origin.strip_prefix("https://"))
        .is_some_and(|o| !host.is_empty() && o.eq_ignore_ascii_case(host));
    (!same).then(|| {
        format!("origin {origin:?} may not use the app API (only the page this server serves)")
    })
}

async fn system(State(s): State<AppState>) -> ApiResult<Value> {
    let info = s.app.system().await?;
    let mut v = serde_json::to_value(info).unwrap_or_default();
    // the UI turns off what this server refuses (downloads, imports, conversions, settings)
    v["library_only"] = json!(hides_paths(&s));
    Ok(Json(v))
}

async fn settings(State(s): State<AppState>) -> ApiResult<cortex_service::settings::Settings> {
    Ok(Json(s.app.settings().await?))
}

async fn update_settings(
    State(s): State<AppState>,
    Body(u): Body<SettingsUpdate>,
) -> ApiResult<cortex_service::settings::Settings> {
    Ok(Json(s.app.update_settings(u).await?))
}

async fn models(State(s): State<AppState>) -> ApiResult<cortex_service::library::Library> {
    Ok(Json(s.app.list_models().await?))
}

async fn model(
    State(s): State<AppState>,
    Params(id): Params<String>,
) -> ApiResult<cortex_service::library::ModelView> {
    Ok(Json(s.app.get_model(&id).await?))
}

async fn update_model(
    State(s): State<AppState>,
    Params(id): Params<String>,
    Body(u): Body<ModelUpdate>,
) -> ApiResult<cortex_service::library::ModelView> {
    Ok(Json(s.app.update_model(&id, u).await?))
}

async fn delete_model(
    State(s): State<AppState>,
    Params(id): Params<String>,
) -> ApiResult<cortex_service::library::Deleted> {
    Ok(Json(s.app.delete_model(&id).await?))
}

async fn load_model(
    State(s): State<AppState>,
    Params(id): Params<String>,
) -> ApiResult<cortex_service::library::ModelView> {
    Ok(Json(s.app.load_model(&id).await?))
}

async fn unload_model(
    State(s): State<AppState>,
    Params(id): Params<String>,
) -> ApiResult<cortex_service::library::ModelView> {
    Ok(Json(s.app.unload_model(&id).await?))
}

async fn import_model(
    State(s): State<AppState>,
    Body(r): Body<ImportRequest>,
) -> ApiResult<cortex_service::library::ModelView> {
    Ok(Json(s.app.import_model(r).await?))
}

async fn hub_search(State(s): State<AppState>, Query(p): Query<SearchParams>) -> ApiResult<Value> {
    let app = &s.app;
    let results = cortex_service::hub::search(app.hub_config(), p).await?;
    Ok(Json(json!({ "results": results })))
}

async fn hub_model(
    State(s): State<AppState>,
    Query(p): Query<PageParams>,
) -> ApiResult<cortex_service::hub::ModelPage> {
    let app = &s.app;
    Ok(Json(
        cortex_service::hub::model_page(app.hub_config(), p).await?,
    ))
}

async fn downloads(State(s): State<AppState>) -> ApiResult<Value> {
    let list = s.app.list_downloads().await?;
    Ok(Json(json!({ "downloads": list })))
}

async fn download(
    State(s): State<AppState>,
    Params(id): Params<String>,
) -> ApiResult<cortex_service::downloads::Download> {
    Ok(Json(s.app.get_download(&id).await?))
}

async fn start_download(
    State(s): State<AppState>,
    Body(r): Body<DownloadRequest>,
) -> ApiResult<cortex_service::downloads::Download> {
    Ok(Json(s.app.start_download(r).await?))
}

async fn download_action(
    State(s): State<AppState>,
    Params((id, action)): Params<(String, String)>,
) -> ApiResult<cortex_service::downloads::Download> {
    let app = &s.app;
    let d = match action.as_str() {
        "pause" => app.pause_download(&id).await?,
        "resume" | "retry" => app.resume_download(&id).await?,
        "cancel" => app.cancel_download(&id).await?,
        other => {
            return Err(AppApiError::new(
                StatusCode::NOT_FOUND,
                "not_found",
                format!("unknown download action {other:?} (pause, resume, retry, cancel)"),
            ))
        }
    };
    Ok(Json(d))
}

async fn forget_download(
    State(s): State<AppState>,
    Params(id): Params<String>,
) -> ApiResult<Value> {
    s.app.forget_download(&id).await?;
    Ok(Json(json!({})))
}

async fn estimate_conversion(
    State(s): State<AppState>,
    Body(r): Body<ConvertRequest>,
) -> ApiResult<cortex_service::convert::Estimate> {
    Ok(Json(s.app.estimate_conversion(r).await?))
}

async fn start_conversion(
    State(s): State<AppState>,
    Body(r): Body<ConvertRequest>,
) -> ApiResult<cortex_service::convert::Conversion> {
    Ok(Json(s.app.start_conversion(r).await?))
}

async fn conversions(State(s): State<AppState>) -> ApiResult<Value> {
    let list = s.app.list_conversions().await?;
    Ok(Json(json!({ "conversions": list })))
}

async fn cancel_conversion(
    State(s): State<AppState>,
    Params(id): Params<String>,
) -> ApiResult<cortex_service::convert::Conversion> {
    Ok(Json(s.app.cancel_conversion(&id).await?))
}

#[derive(Deserialize)]
struct ListQuery {
    #[serde(default)]
    q: Option<String>,
}

async fn conversations(State(s): State<AppState>, Query(q): Query<ListQuery>) -> ApiResult<Value> {
    let list = s.app.list_conversations(q.q.as_deref()).await?;
    Ok(Json(json!({ "conversations": list })))
}

async fn create_conversation(
    State(s): State<AppState>,
    Body(c): Body<NewChat>,
) -> ApiResult<cortex_catalog::Conversation> {
    Ok(Json(s.app.create_conversation(c).await?))
}

async fn conversation(
    State(s): State<AppState>,
    Params(id): Params<String>,
) -> ApiResult<cortex_service::chat::ConversationTree> {
    Ok(Json(s.app.get_conversation(&id).await?))
}

async fn update_conversation(
    State(s): State<AppState>,
    Params(id): Params<String>,
    Body(p): Body<ChatPatch>,
) -> ApiResult<cortex_catalog::Conversation> {
    Ok(Json(s.app.update_conversation(&id, p).await?))
}

async fn delete_conversation(
    State(s): State<AppState>,
    Params(id): Params<String>,
) -> ApiResult<Value> {
    s.app.delete_conversation(&id).await?;
    Ok(Json(json!({})))
}

async fn send_message(
    State(s): State<AppState>,
    Params(id): Params<String>,
    Body(m): Body<SendMessage>,
) -> Result<Response, AppApiError> {
    let stream = s.app.send_message(&id, m).await?;
    Ok(reply_sse(stream, hides_paths(&s)))
}

#[derive(Deserialize)]
struct RegenerateBody {
    message_id: String,
}

async fn regenerate(
    State(s): State<AppState>,
    Params(id): Params<String>,
    Body(b): Body<RegenerateBody>,
) -> Result<Response, AppApiError> {
    let stream = s.app.regenerate(&id, &b.message_id).await?;
    Ok(reply_sse(stream, hides_paths(&s)))
}

async fn stop_reply(State(s): State<AppState>, Params(id): Params<String>) -> ApiResult<Value> {
    let stopped = s.app.stop_reply(&id);
    Ok(Json(json!({ "stopped": stopped })))
}

/// One SSE event; `hide_paths`: without the host's paths (a library-only server, see
/// [`super::redact`]).
fn json_event<T: serde::Serialize>(v: &T, hide_paths: bool) -> SseEvent {
    let value = serde_json::to_value(v).map(|mut value| {
        if hide_paths {
            super::redact::hide_paths(&mut value);
        }
        value
    });
    SseEvent::default().data(match value {
        Ok(value) => value.to_string(),
        Err(e) => json!({"type": "error", "error": {"code": "internal", "message": e.to_string()}})
            .to_string(),
    })
}

fn hides_paths(s: &AppState) -> bool {
    s.sources == cortex_service::registry::ModelSources::Library
}

/// The reply's events as SSE. The [`ReplyStream`] lives in the body: a client that goes away
/// drops it, which stops the reply (what was written so far is saved).
fn reply_sse(stream: ReplyStream, hide_paths: bool) -> Response {
    let events = futures_util::stream::unfold((stream, false), move |(mut s, ended)| async move {
        if ended {
            return None;
        }
        let ev = s.recv().await?;
        let last = ev.is_last();
        Some((Ok::<_, Infallible>(json_event(&ev, hide_paths)), (s, last)))
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(5)));
    ([("cache-control", "no-cache")], sse).into_response()
}

/// Downloads, conversions and library changes as SSE, for as long as the client listens.
async fn events(State(s): State<AppState>) -> Result<Response, AppApiError> {
    let sub = s.app.subscribe();
    let hide_paths = hides_paths(&s);
    let events = futures_util::stream::unfold(sub, move |mut sub| async move {
        let ev = sub.recv().await?;
        Some((Ok::<_, Infallible>(json_event(&ev, hide_paths)), sub))
    });
    let sse = Sse::new(events).keep_alive(KeepAlive::new().interval(Duration::from_secs(15)));
    Ok(([("cache-control", "no-cache")], sse).into_response())
}
