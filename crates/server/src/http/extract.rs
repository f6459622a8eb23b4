//! Extractors whose every rejection is an OpenAI-shaped error. The JSON body: 413 past the
//! body limit, 400 for malformed JSON or a missing or mistyped field (the Content-Type is not
//! checked: curl's `-d` sends form encoding). Path parameters: 400 for a segment that is not
//! valid percent-encoded UTF-8 (axum's own rejection is plain text; found by fuzzing).
use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, FromRequestParts, Path, Request};
use axum::http::request::Parts;
use serde::de::DeserializeOwned;

pub struct PathParam<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned + Send> FromRequestParts<S> for PathParam<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        Path::<T>::from_request_parts(parts, state)
            .await
            .map(|Path(v)| PathParam(v))
            .map_err(|r| ApiError::bad_request(r.body_text()))
    }
}

pub struct JsonBody<T>(pub T);

impl<S: Send + Sync, T: DeserializeOwned> FromRequest<S> for JsonBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, ApiError> {
        let bytes = Bytes::from_request(req, state).await?;
        serde_json::from_slice(&bytes).map(JsonBody).map_err(|e| {
            use serde_json::error::Category;
            match e.classify() {
                Category::Syntax | Category::Eof | Category::Io => {
                    ApiError::bad_request(format!("the body is not valid JSON: {e}"))
                }
                Category::Data => ApiError::bad_request(format!("invalid request: {e}")),
            }
        })
    }
}
