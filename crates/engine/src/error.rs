//! The engine's error type: every variant names what went wrong and where.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("missing file: {path}")]
    MissingFile { path: PathBuf },
    #[error("{path} is not a model folder, .gguf file or known model name")]
    NotAModel { path: PathBuf },
    #[error("invalid config {path}: {detail}")]
    Config { path: PathBuf, detail: String },
    #[error("unsupported model_type {model_type:?}; supported: {}", supported.join(", "))]
    UnsupportedModelType {
        model_type: String,
        supported: Vec<String>,
    },
    #[error("tensor {name} missing from the checkpoint")]
    MissingTensor { name: String },
    #[error("tensor {name} has shape {actual:?}, expected {expected:?}")]
    ShapeMismatch {
        name: String,
        expected: Vec<i32>,
        actual: Vec<i32>,
    },
    #[error("safetensors file {path} is truncated or corrupt: {detail}")]
    CorruptSafetensors { path: PathBuf, detail: String },
    #[error("GGUF tensor {tensor} uses quantization type {type_name} ({ggml_type}); supported: F32, F16, Q4_0, Q4_1, Q8_0")]
    UnsupportedGgufType {
        tensor: String,
        ggml_type: u32,
        type_name: String,
    },
    #[error("GGUF: {0}")]
    Gguf(String),
    #[error("tokenizer: {0}")]
    Tokenizer(#[from] cortex_tokenizer::TokenizerError),
    #[error("{0}")]
    Mlx(#[from] cortex_mlx::Error),
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    #[error("the prompt has {prompt_tokens} tokens but this model's context holds {max_context} tokens (prompt plus completion)")]
    ContextLength {
        prompt_tokens: usize,
        max_context: usize,
    },
    #[error("the engine has stopped")]
    EngineStopped,
}

pub type Result<T> = std::result::Result<T, EngineError>;

impl EngineError {
    pub fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> EngineError {
        let path = path.into();
        move |source| {
            if source.kind() == std::io::ErrorKind::NotFound {
                EngineError::MissingFile { path }
            } else {
                EngineError::Io { path, source }
            }
        }
    }
}
