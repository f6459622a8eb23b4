//! The crate's one error type.
use crate::Dtype;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// MLX threw: bad shapes, unsupported dtype combinations, unreadable files...
    #[error("MLX {op}: {message}")]
    Mlx { op: &'static str, message: String },
    #[error("dtype mismatch in {op}: array is {actual}, expected {expected}")]
    DtypeMismatch {
        op: &'static str,
        actual: Dtype,
        expected: Dtype,
    },
    #[error("invalid argument to {op}: {message}")]
    InvalidArgument { op: &'static str, message: String },
}

pub type Result<T> = std::result::Result<T, Error>;

pub(crate) fn mlx_err(op: &'static str) -> impl FnOnce(cxx::Exception) -> Error {
    move |e| Error::Mlx {
        op,
        message: e.what().to_string(),
    }
}
