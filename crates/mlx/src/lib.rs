//! Safe Rust binding of MLX's C++ API, linked against the SDK that MLX's PyPI wheels ship.
//!
//! This crate owns the FFI boundary and nothing else: arrays, the ops LLM inference, conversion
//! and sampling need, safetensors/GGUF I/O, device and memory control. It knows no models.
//! Every MLX exception comes back as [`Error::Mlx`]; nothing here may abort the process.
//! MLX is lazy: ops build a graph, [`eval`] / [`async_eval`] compute it.

mod alloc;
mod array;
mod blas;
mod device;
mod error;
pub mod fast;
mod ffi;
mod io;
pub mod ops;
pub mod random;

pub use array::{Array, Dtype, Element};
pub use blas::{blas_coretype, blas_env_to_set, reexec_with_blas_env, BLAS_THREAD_TIMEOUT};
pub use device::{
    active_memory, cache_memory, clear_cache, default_device_is_gpu, gpu_available, mlx_version,
    peak_memory, reset_peak_memory, set_cache_limit, set_default_device, set_memory_limit,
    synchronize, Device,
};
pub use error::{Error, Result};
pub use io::{load_gguf, load_safetensors, save_safetensors, SafetensorsFile};
pub use ops::{async_eval, eval};
