//! Everything worth knowing about a hub model before pulling it: files and sizes, parameters,
//! gating, license, the card, whether this engine runs it, and the memory it would take.
use super::memory::{
    estimate_memory, float_bytes_here, kv_bytes_per_token, system_memory, weights_in_memory,
    MemoryEstimate,
};
use super::{client, Gated, Result};
use crate::api::{encode_segment, HubClient};
use crate::download::{DownloadError, HubConfig};
use crate::model_id::HubModel;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::io::Read;
use std::sync::atomic::AtomicBool;

#[derive(Debug, Clone)]
pub struct DetailsOptions {
    /// Tokens of context for the memory estimate.
    pub context: u64,
    /// At most this many bytes of README.md are read.
    pub card_bytes: usize,
    /// The memory the fit verdict is judged against; `None`: this machine's
    /// ([`system_memory`]). Tests pin it so the verdict does not depend on the machine.
    pub system_bytes: Option<u64>,
}

impl Default for DetailsOptions {
    fn default() -> Self {
        DetailsOptions {
            context: 4096,
            card_bytes: 16 * 1024,
            system_bytes: None,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ModelFile {
    pub path: String,
    pub size: u64,
    /// Stored in LFS (weights): sha256-verified on download.
    pub lfs: bool,
}

/// The weights the memory estimate counts.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum WeightFormat {
    /// Every `*.safetensors` file (Hugging Face or MLX format).
    Safetensors,
    /// GGUF repos hold one file per quantization; the smallest is counted.
    Gguf { file: String },
}

#[derive(Debug, Clone, Serialize)]
pub struct ModelDetails {
    pub id: String,
    pub commit: String,
    pub author: Option<String>,
    pub downloads: u64,
    pub likes: u64,
    pub last_modified: Option<String>,
    pub library_name: Option<String>,
    pub pipeline_tag: Option<String>,
    pub tags: Vec<String>,
    pub gated: Gated,
    pub license: Option<String>,
    /// `safetensors.total` from the model info.
    pub parameters: Option<u64>,
    pub files: Vec<ModelFile>,
    pub total_bytes: u64,
    pub model_type: Option<String>,
    /// config.json's model_type is one this engine implements.
    pub supported: bool,
    /// Why it is (not) supported, or how to use it (GGUF).
    pub support_note: String,
    pub weight_format: Option<WeightFormat>,
    /// The start of README.md; None when the repo has none or it cannot be read (gated).
    pub card: Option<String>,
    pub card_truncated: bool,
    pub memory: MemoryEstimate,
}

#[derive(Deserialize)]
struct Info {
    sha: Option<String>,
    #[serde(default)]
    author: Option<String>,
    #[serde(default)]
    downloads: u64,
    #[serde(default)]
    likes: u64,
    #[serde(default, rename = "lastModified")]
    last_modified: Option<String>,
    #[serde(default)]
    library_name: Option<String>,
    #[serde(default)]
    pipeline_tag: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    gated: Gated,
    #[serde(default, rename = "cardData")]
    card_data: Option<Value>,
    #[serde(default)]
    safetensors: Option<SafetensorsInfo>,
    /// The hub's excerpt of config.json (model_type, architectures).
    #[serde(default)]
    config: Option<Value>,
}

#[derive(Deserialize)]
struct SafetensorsInfo {
    total: Option<u64>,
}

/// Describes `model` at its revision. An unknown repo is [`super::SearchError::RepoNotFound`].
pub fn details(
    config: &HubConfig,
    model: &HubModel,
    opts: &DetailsOptions,
) -> Result<ModelDetails> {
    let client = client(config)?;
    let cancel = AtomicBool::new(false);
    let info_url = format!(
        "{}/api/models/{}/revision/{}",
        config.endpoint,
        model.repo_id(),
        encode_segment(model.revision_or_main())
    );
    let info: Info = client
        .get_json(Some(model), &info_url, &cancel)?
        .json()
        .map_err(crate::api::bad(&info_url))?;
    let commit = info
        .sha
        .clone()
        .unwrap_or_else(|| model.revision_or_main().to_string());
    let files: Vec<ModelFile> = client
        .list_files(model, &commit, &cancel)?
        .into_iter()
        .map(|e| ModelFile {
            size: e.file_size(),
            lfs: e.lfs.is_some(),
            path: e.path,
        })
        .collect();
    let has = |p: &str| files.iter().any(|f| f.path == p);

    let reader = Reader {
        client: &client,
        model,
        commit: &commit,
        cancel: &cancel,
    };
    let config_json = if has("config.json") {
        reader
            .read("config.json", 1 << 20)?
            .and_then(|(b, _)| serde_json::from_slice(&b).ok())
    } else {
        None
    };
    let (card, card_truncated) = match has("README.md") {
        true => match reader.read("README.md", opts.card_bytes)? {
            Some((b, cut)) => (Some(String::from_utf8_lossy(&b).into_owned()), cut),
            None => (None, false),
        },
        false => (None, false),
    };
    // Full config.json when readable, else the hub's excerpt (gated repos).
    let cfg = config_json.or_else(|| info.config.clone());
    let model_type = cfg
        .as_ref()
        .and_then(|c| c.get("model_type"))
        .and_then(Value::as_str)
        .map(str::to_string);
    let weight_format = weight_format(&files);
    let (supported, support_note) = support(model_type.as_deref(), weight_format.as_ref());
    let weights_bytes = match (&cfg, &weight_format) {
        (Some(c), Some(WeightFormat::Safetensors)) => {
            weights_in_memory(weights_bytes(&files, weight_format.as_ref()), c)
        }
        // GGUF: the file size (its import keeps the quantized blocks)
        _ => weights_bytes(&files, weight_format.as_ref()),
    };
    let kv = cfg.as_ref().and_then(|c| {
        let here = float_bytes_here(cortex_engine::config::checkpoint_dtype(c));
        kv_bytes_per_token(c, here)
    });
    let memory = estimate_memory(
        weights_bytes,
        kv,
        opts.context,
        opts.system_bytes.or_else(system_memory),
    );

    Ok(ModelDetails {
        id: model.repo_id(),
        commit,
        author: info.author.or_else(|| Some(model.org.clone())),
        downloads: info.downloads,
        likes: info.likes,
        last_modified: info.last_modified,
        library_name: info.library_name,
        pipeline_tag: info.pipeline_tag,
        license: license(info.card_data.as_ref(), &info.tags),
        tags: info.tags,
        gated: info.gated,
        parameters: info.safetensors.and_then(|s| s.total),
        total_bytes: files.iter().map(|f| f.size).sum(),
        files,
        model_type,
        supported,
        support_note,
        weight_format,
        card,
        card_truncated,
        memory,
    })
}

/// cardData.license, else a `license:x` tag.
fn license(card_data: Option<&Value>, tags: &[String]) -> Option<String> {
    card_data
        .and_then(|c| c.get("license"))
        .and_then(Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            tags.iter()
                .find_map(|t| t.strip_prefix("license:").map(str::to_string))
        })
}

fn weight_format(files: &[ModelFile]) -> Option<WeightFormat> {
    if files.iter().any(|f| f.path.ends_with(".safetensors")) {
        return Some(WeightFormat::Safetensors);
    }
    files
        .iter()
        .filter(|f| f.path.to_ascii_lowercase().ends_with(".gguf"))
        .min_by_key(|f| f.size)
        .map(|f| WeightFormat::Gguf {
            file: f.path.clone(),
        })
}

fn weights_bytes(files: &[ModelFile], format: Option<&WeightFormat>) -> u64 {
    match format {
        Some(WeightFormat::Safetensors) => files
            .iter()
            .filter(|f| f.path.ends_with(".safetensors"))
            .map(|f| f.size)
            .sum(),
        Some(WeightFormat::Gguf { file }) => {
            files.iter().find(|f| &f.path == file).map_or(0, |f| f.size)
        }
        None => 0,
    }
}

fn support(model_type: Option<&str>, format: Option<&WeightFormat>) -> (bool, String) {
    let types = cortex_engine::models::supported_model_types();
    match (format, model_type) {
        (Some(WeightFormat::Gguf { .. }), _) => (
            false,
            format!(
                "GGUF only: `cortex import FILE.gguf` converts llama-architecture GGUF files \
                 ({}) to MLX format",
                cortex_engine::gguf_tensors::supported_type_names()
            ),
        ),
        (None, _) => (false, "no safetensors or GGUF weights in this repo".into()),
        (_, None) => (false, "config.json has no model_type".into()),
        (_, Some(t)) if types.iter().any(|s| s == t) => (true, format!("{t} runs here")),
        (_, Some(t)) => (
            false,
            format!(
                "model_type {t} is not implemented here (supported: {})",
                types.join(", ")
            ),
        ),
    }
}

/// Reads the start of small repo files through resolve URLs.
struct Reader<'a> {
    client: &'a HubClient,
    model: &'a HubModel,
    commit: &'a str,
    cancel: &'a AtomicBool,
}

impl Reader<'_> {
    /// Up to `limit` bytes of `path` and whether there was more; None when access is refused
    /// (gated: metadata is public, files are not).
    fn read(&self, path: &str, limit: usize) -> Result<Option<(Vec<u8>, bool)>> {
        let url = self.client.resolve_url(self.model, self.commit, path);
        let resp = match self.client.get_json(Some(self.model), &url, self.cancel) {
            Ok(r) => r,
            Err(DownloadError::Unauthorized { .. }) => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        let mut buf = Vec::new();
        resp.take(limit as u64 + 1)
            .read_to_end(&mut buf)
            .map_err(|e| DownloadError::BadResponse {
                url: url.clone(),
                detail: e.to_string(),
            })?;
        let truncated = buf.len() > limit;
        buf.truncate(limit);
        Ok(Some((buf, truncated)))
    }
}
