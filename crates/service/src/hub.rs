//! Discover: hub search and one model's page, in the shapes front ends show (docs/APP_API.md).
//! Blocking hub calls run on tokio's blocking pool.
use crate::{Result, ServiceError};
use cortex_hub::download::HubConfig;
use cortex_hub::search::{self, DetailsOptions, Fit, Gated, ModelDetails, SearchQuery, SortKey};
use cortex_hub::HubModel;
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(default)]
pub struct SearchParams {
    pub q: String,
    pub author: Option<String>,
    pub mlx_only: bool,
    pub sort: Option<SortKey>,
    pub limit: Option<usize>,
    /// Parameter range; a model whose count the hub does not know is dropped when a bound is set.
    pub min_params: Option<u64>,
    pub max_params: Option<u64>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct SearchResult {
    pub id: String,
    pub author: Option<String>,
    pub downloads: u64,
    pub likes: u64,
    pub last_modified: Option<String>,
    pub parameters: Option<u64>,
    pub tags: Vec<String>,
    pub pipeline_tag: Option<String>,
    pub mlx: bool,
    pub gated: Value,
}

/// The most results one search returns.
pub const MAX_RESULTS: usize = 200;

pub async fn search(config: HubConfig, p: SearchParams) -> Result<Vec<SearchResult>> {
    let limit = p.limit.unwrap_or(30);
    if limit == 0 || limit > MAX_RESULTS {
        return Err(ServiceError::invalid(
            "limit",
            format!("must be between 1 and {MAX_RESULTS}"),
        ));
    }
    let bounded = p.min_params.is_some() || p.max_params.is_some();
    let query = SearchQuery {
        query: p.q.trim().to_string(),
        author: p.author.filter(|a| !a.is_empty()),
        mlx_only: p.mlx_only,
        sort: p.sort.unwrap_or_default(),
        // a parameter range filters after the hub answers: ask for more
        limit: if bounded { MAX_RESULTS } else { limit },
    };
    let found = tokio::task::spawn_blocking(move || search::search(&config, &query)).await??;
    let in_range = |n: Option<u64>| match n {
        None => !bounded,
        Some(n) => p.min_params.is_none_or(|lo| n >= lo) && p.max_params.is_none_or(|hi| n <= hi),
    };
    Ok(found
        .into_iter()
        .filter(|m| in_range(m.parameters))
        .take(limit)
        .map(|m| SearchResult {
            mlx: m.library_name.as_deref() == Some("mlx") || m.tags.iter().any(|t| t == "mlx"),
            gated: gated_value(m.gated),
            id: m.id,
            author: m.author,
            downloads: m.downloads,
            likes: m.likes,
            last_modified: m.last_modified,
            parameters: m.parameters,
            tags: m.tags,
            pipeline_tag: m.pipeline_tag,
        })
        .collect())
}

fn gated_value(g: Gated) -> Value {
    match g {
        Gated::No => Value::Bool(false),
        Gated::Auto => "auto".into(),
        Gated::Manual => "manual".into(),
    }
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct FileView {
    pub path: String,
    pub size: u64,
}

/// One way to download a repo: all its safetensors, or one of its .gguf files.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Variant {
    pub name: String,
    pub include: Vec<String>,
    pub size: u64,
    pub quantization: Option<String>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct MemoryView {
    pub weights_bytes: u64,
    pub kv_bytes: u64,
    pub total_bytes: u64,
    pub machine_bytes: Option<u64>,
    pub context: u64,
    pub verdict: Option<Fit>,
}

#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ModelPage {
    pub id: String,
    pub revision: String,
    pub sha: String,
    pub gated: Value,
    pub license: Option<String>,
    pub card: String,
    pub card_truncated: bool,
    pub architecture: Option<String>,
    pub supported: bool,
    pub support_note: String,
    pub parameters: Option<u64>,
    pub downloads: u64,
    pub likes: u64,
    pub files: Vec<FileView>,
    pub total_size: u64,
    pub variants: Vec<Variant>,
    pub memory: MemoryView,
}

#[derive(Clone, Debug, Deserialize)]
pub struct PageParams {
    pub id: String,
    #[serde(default)]
    pub revision: Option<String>,
    #[serde(default)]
    pub context: Option<u64>,
}

/// The largest context a memory estimate may be asked for.
const MAX_CONTEXT: u64 = 1 << 21;

pub async fn model_page(config: HubConfig, p: PageParams) -> Result<ModelPage> {
    let mut model: HubModel = match cortex_hub::parse_model_ref(&p.id) {
        Ok(cortex_hub::ModelRef::Hub(m)) => m,
        _ => {
            return Err(ServiceError::invalid(
                "id",
                format!("{:?} is not a Hugging Face model id (org/name)", p.id),
            ))
        }
    };
    if let Some(rev) = p.revision.filter(|r| !r.is_empty()) {
        model.revision = Some(rev);
    }
    let context = p.context.unwrap_or(4096);
    if context == 0 || context > MAX_CONTEXT {
        return Err(ServiceError::invalid(
            "context",
            format!("must be between 1 and {MAX_CONTEXT}"),
        ));
    }
    let opts = DetailsOptions {
        context,
        card_bytes: 64 * 1024,
        system_bytes: None,
    };
    let revision = model.revision_or_main().to_string();
    let d = tokio::task::spawn_blocking(move || search::details(&config, &model, &opts)).await??;
    Ok(page_of(d, revision))
}

fn page_of(d: ModelDetails, revision: String) -> ModelPage {
    let variants = variants(&d);
    ModelPage {
        revision,
        sha: d.commit,
        gated: gated_value(d.gated),
        license: d.license,
        card: d.card.unwrap_or_default(),
        card_truncated: d.card_truncated,
        architecture: d.model_type,
        supported: d.supported,
        support_note: d.support_note,
        parameters: d.parameters,
        downloads: d.downloads,
        likes: d.likes,
        total_size: d.total_bytes,
        files: d
            .files
            .into_iter()
            .map(|f| FileView {
                path: f.path,
                size: f.size,
            })
            .collect(),
        variants,
        memory: MemoryView {
            weights_bytes: d.memory.weights_bytes,
            kv_bytes: d.memory.kv_bytes,
            total_bytes: d.memory.total_bytes,
            machine_bytes: d.memory.system_bytes,
            context: d.memory.context,
            verdict: d.memory.fit,
        },
        id: d.id,
    }
}

/// Every .gguf file is a variant of its own (the quantization from its name); the safetensors
/// (with the small files a model needs) are one more.
fn variants(d: &ModelDetails) -> Vec<Variant> {
    let mut out = Vec::new();
    let st: Vec<_> = d
        .files
        .iter()
        .filter(|f| f.path.ends_with(".safetensors"))
        .collect();
    if !st.is_empty() {
        out.push(Variant {
            name: "safetensors".into(),
            include: Vec::new(),
            size: st.iter().map(|f| f.size).sum(),
            quantization: None,
        });
    }
    for f in d.files.iter().filter(|f| f.path.ends_with(".gguf")) {
        out.push(Variant {
            name: f.path.clone(),
            include: vec![f.path.clone()],
            size: f.size,
            quantization: gguf_quant_from_name(&f.path),
        });
    }
    out
}

/// `model.Q4_K_M.gguf` -> `Q4_K_M` (the convention GGUF repos follow).
fn gguf_quant_from_name(path: &str) -> Option<String> {
    let stem = path.rsplit('/').next()?.strip_suffix(".gguf")?;
    stem.split(['.', '-', '_'])
        .collect::<Vec<_>>()
        .windows(3)
        .find_map(|w| {
            let joined = w.join("_").to_ascii_uppercase();
            let known = [
                "Q4_K_M", "Q4_K_S", "Q5_K_M", "Q5_K_S", "Q3_K_M", "Q3_K_L", "Q3_K_S",
            ];
            known.contains(&joined.as_str()).then_some(joined)
        })
        .or_else(|| {
            stem.split(['.', '-'])
                .map(|s| s.to_ascii_uppercase())
                .find(|s| {
                    matches!(
                        s.as_str(),
                        "Q4_0"
                            | "Q4_1"
                            | "Q5_0"
                            | "Q5_1"
                            | "Q8_0"
                            | "Q6_K"
                            | "Q2_K"
                            | "F16"
                            | "F32"
                            | "BF16"
                    )
                })
        })
}

#[cfg(test)]
mod tests {
    use super::gguf_quant_from_name;

    #[test]
    fn gguf_quantization_from_file_names() {
        assert_eq!(
            gguf_quant_from_name("SmolLM2-135M-Instruct.Q4_1.gguf").as_deref(),
            Some("Q4_1")
        );
        assert_eq!(
            gguf_quant_from_name("qwen2.5-0.5b-instruct-q4_k_m.gguf").as_deref(),
            Some("Q4_K_M")
        );
        assert_eq!(
            gguf_quant_from_name("sub/model-Q8_0.gguf").as_deref(),
            Some("Q8_0")
        );
        assert_eq!(
            gguf_quant_from_name("model-f16.gguf").as_deref(),
            Some("F16")
        );
        assert_eq!(gguf_quant_from_name("model.gguf"), None);
        assert_eq!(gguf_quant_from_name("README.md"), None);
    }
}
