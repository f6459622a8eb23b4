//! A JSON body extractor whose every rejection is an OpenAI-shaped error: 413 past the body
//! limit, 400 for malformed JSON or a missing or mistyped field. The Content-Type is not
//! checked (curl's `-d` sends form encoding).
use super::error::ApiError;
use axum::body::Bytes;
use axum::extract::{FromRequest, Request};
use serde::de::DeserializeOwned;

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
