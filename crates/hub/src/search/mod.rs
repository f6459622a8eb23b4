//! Finding models on the hub and describing one before it is downloaded.
//!
//! Owns: `/api/models` search (filters, sort, Link-header pages until the limit), model details
//! (files and sizes from the tree API, parameters, gating, license, the model card, whether this
//! engine runs the architecture) and the memory estimate against this machine. Never: writes to
//! the cache or downloads weights; the only file bodies read are config.json and the start of
//! README.md. HTTP, auth and retries are the downloader's (`crate::api`).
mod details;
mod memory;

pub use details::{details, DetailsOptions, ModelDetails, ModelFile, WeightFormat};
pub use memory::{estimate_memory, kv_bytes_per_token, system_memory, Fit, MemoryEstimate};

use crate::api::HubClient;
use crate::download::{DownloadError, HubConfig};
use serde::{Deserialize, Deserializer, Serialize};
use std::sync::atomic::AtomicBool;
use std::time::Duration;

#[derive(Debug, thiserror::Error)]
pub enum SearchError {
    #[error("{repo} was not found on {endpoint} (a private repo needs HF_TOKEN)")]
    RepoNotFound { repo: String, endpoint: String },
    #[error("the search limit must be at least 1")]
    ZeroLimit,
    /// Network, HTTP status, authorization or malformed responses, as the downloader reports them.
    #[error(transparent)]
    Hub(DownloadError),
}

impl From<DownloadError> for SearchError {
    fn from(e: DownloadError) -> Self {
        match e {
            DownloadError::RepoNotFound { repo, endpoint, .. } => {
                SearchError::RepoNotFound { repo, endpoint }
            }
            other => SearchError::Hub(other),
        }
    }
}

pub type Result<T> = std::result::Result<T, SearchError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SortKey {
    #[default]
    Downloads,
    Likes,
    Trending,
    Updated,
}

impl SortKey {
    /// The hub's name for the sort field.
    fn api_name(self) -> &'static str {
        match self {
            SortKey::Downloads => "downloads",
            SortKey::Likes => "likes",
            SortKey::Trending => "trendingScore",
            SortKey::Updated => "lastModified",
        }
    }
}

#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// Substring of the repo id; empty lists everything.
    pub query: String,
    pub author: Option<String>,
    /// Only repos tagged `mlx` (library or tag).
    pub mlx_only: bool,
    /// Always descending.
    pub sort: SortKey,
    pub limit: usize,
}

impl Default for SearchQuery {
    fn default() -> Self {
        SearchQuery {
            query: String::new(),
            author: None,
            mlx_only: false,
            sort: SortKey::Downloads,
            limit: 20,
        }
    }
}

/// Gating as the hub reports it: `false`, `"auto"` (approved on request) or `"manual"`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Gated {
    #[default]
    No,
    Auto,
    Manual,
}

impl<'de> Deserialize<'de> for Gated {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        Ok(match serde_json::Value::deserialize(d)? {
            serde_json::Value::Bool(true) => Gated::Manual,
            serde_json::Value::String(s) if s == "auto" => Gated::Auto,
            serde_json::Value::String(s) if s != "false" => Gated::Manual,
            _ => Gated::No,
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ModelSummary {
    pub id: String,
    #[serde(default)]
    pub author: Option<String>,
    #[serde(default)]
    pub downloads: u64,
    #[serde(default)]
    pub likes: u64,
    #[serde(default, rename(deserialize = "trendingScore"))]
    pub trending_score: f64,
    #[serde(default, rename(deserialize = "lastModified"))]
    pub last_modified: Option<String>,
    #[serde(default)]
    pub library_name: Option<String>,
    #[serde(default)]
    pub pipeline_tag: Option<String>,
    #[serde(default)]
    pub tags: Vec<String>,
    #[serde(default)]
    pub gated: Gated,
    /// Parameter count from the hub's safetensors metadata (`safetensors.total`), when known.
    #[serde(
        default,
        rename(deserialize = "safetensors"),
        deserialize_with = "safetensors_total"
    )]
    pub parameters: Option<u64>,
}

fn safetensors_total<'de, D: Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<u64>, D::Error> {
    let v = Option::<serde_json::Value>::deserialize(d)?;
    Ok(v.and_then(|v| v.get("total").and_then(serde_json::Value::as_u64)))
}

/// The properties asked of `/api/models`; the hub's default answer lacks some of them.
const EXPAND: &[&str] = &[
    "author",
    "downloads",
    "likes",
    "trendingScore",
    "lastModified",
    "library_name",
    "pipeline_tag",
    "tags",
    "gated",
    "safetensors",
];

/// The hub's largest page.
const MAX_PAGE: usize = 1000;

/// Searches the hub, following `Link: rel="next"` pages until `query.limit` models are found
/// or the results end.
pub fn search(config: &HubConfig, query: &SearchQuery) -> Result<Vec<ModelSummary>> {
    if query.limit == 0 {
        return Err(SearchError::ZeroLimit);
    }
    let client = client(config)?;
    let url = search_url(config, query)?;
    let mut out: Vec<ModelSummary> = Vec::new();
    client.get_pages(
        None,
        url,
        &AtomicBool::new(false),
        |page: Vec<ModelSummary>| {
            out.extend(page);
            out.len() < query.limit
        },
    )?;
    out.truncate(query.limit);
    for m in &mut out {
        if m.author.is_none() {
            m.author = m.id.split_once('/').map(|(a, _)| a.to_string());
        }
    }
    Ok(out)
}

fn search_url(config: &HubConfig, query: &SearchQuery) -> Result<String> {
    let mut params: Vec<(&str, String)> = vec![
        ("sort", query.sort.api_name().to_string()),
        ("direction", "-1".to_string()),
        ("limit", query.limit.min(MAX_PAGE).to_string()),
    ];
    if !query.query.is_empty() {
        params.push(("search", query.query.clone()));
    }
    if let Some(a) = &query.author {
        params.push(("author", a.clone()));
    }
    if query.mlx_only {
        params.push(("filter", "mlx".to_string()));
    }
    params.extend(EXPAND.iter().map(|e| ("expand", e.to_string())));
    let base = format!("{}/api/models", config.endpoint);
    reqwest::Url::parse_with_params(&base, &params)
        .map(String::from)
        .map_err(|e| {
            SearchError::Hub(DownloadError::BadResponse {
                url: base,
                detail: format!("invalid endpoint: {e}"),
            })
        })
}

/// API calls are small: a short stall timeout and a few retries.
fn client(config: &HubConfig) -> Result<HubClient> {
    Ok(HubClient::new(
        config.clone(),
        Duration::from_secs(20),
        3,
        Duration::from_millis(300),
    )?)
}
