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
    /// The message never quotes the file's bytes (a header length read from it, say): the file
    /// may not be what it claims to be.
    #[error("safetensors file {path} is truncated or corrupt: {problem}")]
    CorruptSafetensors {
        path: PathBuf,
        problem: SafetensorsProblem,
    },
    /// A weight file a model folder names (model.safetensors.index.json's weight_map, or a
    /// *.safetensors entry) that is not a regular file inside the folder.
    #[error("{listed_in} names weight file {name:?}, which {reason}")]
    UnsafeWeightFile {
        listed_in: PathBuf,
        name: String,
        reason: &'static str,
    },
    #[error(
        "GGUF tensor {tensor} uses quantization type {type_name} ({ggml_type}); supported: {}",
        crate::gguf_tensors::supported_type_names()
    )]
    UnsupportedGgufType {
        tensor: String,
        ggml_type: u32,
        type_name: String,
    },
    #[error("GGUF: {0}")]
    Gguf(String),
    #[error("GGUF file {path}: {source}")]
    BadGguf {
        path: PathBuf,
        #[source]
        source: cortex_tokenizer::GgufError,
    },
    #[error("GGUF metadata {key} must be {requirement}")]
    GgufHyperparameter {
        key: String,
        requirement: &'static str,
    },
    #[error("no free folder name in {models} for importing {src} (tried {tried})")]
    NoFolderName {
        src: PathBuf,
        models: PathBuf,
        tried: String,
    },
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

/// What is wrong with a safetensors file. Tensor names are quoted; numbers and bytes read from
/// the file never are.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SafetensorsProblem {
    #[error("shorter than its 8-byte header length")]
    NoHeaderLength,
    #[error("its header length exceeds the file or the 100 MB limit")]
    HeaderLength,
    #[error("its header is not a JSON object")]
    HeaderNotJson,
    #[error("its header names tensor {0:?} twice")]
    DuplicateTensor(String),
    #[error("its __metadata__ is not an object of strings")]
    Metadata,
    #[error("tensor {tensor:?} {fault}")]
    Tensor { tensor: String, fault: TensorFault },
}

/// What is wrong with one tensor entry of a safetensors header.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TensorFault {
    #[error("is not an object with a dtype, a shape and data_offsets")]
    Entry,
    #[error(
        "has a dtype MLX cannot load (known: {})",
        crate::safetensors::dtype_names()
    )]
    Dtype,
    #[error("has a dimension that is not an integer from 0 to 2147483647")]
    Dim,
    #[error("has data_offsets that are not two integers [begin, end] with begin <= end")]
    Offsets,
    #[error("has a size that overflows")]
    SizeOverflow,
    #[error("has a byte range whose length does not match its dtype and shape")]
    SizeMismatch,
    #[error("has data past the end of the file")]
    PastEnd,
    #[error("has data overlapping tensor {0:?}")]
    Overlap(String),
}

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
