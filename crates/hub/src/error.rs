//! The converter's error type: each variant carries what a front end needs to explain it.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum ConvertError {
    #[error("source model {path} not found (a folder with config.json and *.safetensors)")]
    SourceMissing { path: PathBuf },
    #[error("unsupported model_type {model_type:?}; supported: {}", supported.join(", "))]
    UnsupportedModelType {
        model_type: String,
        supported: Vec<String>,
    },
    #[error("invalid quantization (bits {bits}, group size {group_size}): {detail}")]
    InvalidQuantization {
        bits: i32,
        group_size: i32,
        detail: String,
    },
    #[error("unsupported dtype {dtype:?}; use float16, bfloat16 or float32")]
    UnsupportedDtype { dtype: String },
    #[error("{path} is already quantized; convert from the full-precision checkpoint")]
    AlreadyQuantized { path: PathBuf },
    #[error("destination {path} already exists; remove it or choose another")]
    DestinationExists { path: PathBuf },
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("conversion cancelled")]
    Cancelled,
    #[error(transparent)]
    Engine(#[from] cortex_engine::EngineError),
    #[error(transparent)]
    Mlx(#[from] cortex_mlx::Error),
}

impl ConvertError {
    pub(crate) fn io(path: impl Into<PathBuf>) -> impl FnOnce(std::io::Error) -> ConvertError {
        let path = path.into();
        move |source| ConvertError::Io { path, source }
    }
}

pub type Result<T> = std::result::Result<T, ConvertError>;
