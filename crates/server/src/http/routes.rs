//! The small routes: health, the model list, engine stats, and JSON answers for unknown routes
//! and methods.
use super::error::ApiError;
use super::extract::PathParam;
use super::openai::{ModelList, ModelObject};
use super::AppState;
use axum::extract::State;
use axum::http::{Method, StatusCode, Uri};
use axum::Json;
use serde_json::{json, Value};

pub async fn health() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

fn object(id: String, created: u64) -> ModelObject {
    ModelObject {
        id,
        object: "model",
        created,
        owned_by: "cortexstream",
    }
}

pub async fn models(State(app): State<AppState>) -> Json<ModelList> {
    let registry = app.registry.clone();
    let data = tokio::task::spawn_blocking(move || registry.library())
        .await
        .unwrap_or_default()
        .into_iter()
        .map(|m| object(m.id, m.created))
        .collect();
    Json(ModelList {
        object: "list",
        data,
    })
}

pub async fn model(
    State(app): State<AppState>,
    PathParam(id): PathParam<String>,
) -> Result<Json<ModelObject>, ApiError> {
    let registry = app.registry.clone();
    let library = tokio::task::spawn_blocking(move || registry.library()).await?;
    library
        .into_iter()
        .find(|m| m.id == id)
        .map(|m| Json(object(m.id, m.created)))
        .ok_or_else(|| {
            ApiError::new(
                StatusCode::NOT_FOUND,
                "invalid_request_error",
                format!("the model {id:?} does not exist"),
            )
            .with_param("model")
            .with_code("model_not_found")
        })
}

/// Not OpenAI's: each loaded model's engine state (running and waiting requests, KV blocks).
pub async fn engine_stats(State(app): State<AppState>) -> Json<Value> {
    Json(json!({ "models": app.registry.loaded() }))
}

pub async fn not_found(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "invalid_request_error",
        format!("unknown URL ({method} {})", uri.path()),
    )
    .with_code("unknown_url")
}

pub async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "invalid_request_error",
        format!("method {method} is not allowed on {}", uri.path()),
    )
    .with_code("method_not_allowed")
}
