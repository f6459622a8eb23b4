//! Devices and MLX's memory accounting.
use crate::error::{mlx_err, Result};
use crate::ffi::bridge;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Device {
    Cpu,
    Gpu,
}

pub fn gpu_available() -> bool {
    bridge::gpu_available()
}

pub fn default_device_is_gpu() -> bool {
    bridge::default_device_is_gpu()
}

pub fn set_default_device(d: Device) -> Result<()> {
    bridge::set_default_device(d == Device::Gpu).map_err(mlx_err("set_default_device"))
}

/// Bytes held by live arrays.
pub fn active_memory() -> usize {
    bridge::active_memory()
}

pub fn peak_memory() -> usize {
    bridge::peak_memory()
}

/// Bytes MLX keeps in its buffer cache for reuse.
pub fn cache_memory() -> usize {
    bridge::cache_memory()
}

pub fn reset_peak_memory() {
    bridge::reset_peak_memory()
}

/// Returns the previous limit.
pub fn set_memory_limit(bytes: usize) -> usize {
    bridge::set_memory_limit(bytes)
}

pub fn set_cache_limit(bytes: usize) -> usize {
    bridge::set_cache_limit(bytes)
}

pub fn clear_cache() {
    bridge::clear_cache()
}

pub fn mlx_version() -> String {
    bridge::mlx_version()
}

/// Waits for all queued work on every stream.
pub fn synchronize() -> Result<()> {
    bridge::synchronize().map_err(mlx_err("synchronize"))
}
