//! Picks the compute dtype by device. On x86 CPUs MLX emulates float16 in software (a 4-bit
//! model with float16 scales decodes ~40x slower than with float32), so the CPU runs float32;
//! GPUs (Metal, CUDA) run the half-precision type the checkpoint was trained in.
use cortex_mlx::Dtype;

pub fn compute_dtype(checkpoint_dtype: Option<Dtype>) -> Dtype {
    if let Ok(forced) = std::env::var("CORTEX_DTYPE") {
        if let Some(d) = Dtype::parse(&forced) {
            return d;
        }
    }
    if cortex_mlx::default_device_is_gpu() {
        match checkpoint_dtype {
            Some(Dtype::Float16) => Dtype::Float16,
            Some(Dtype::Float32) => Dtype::Float32,
            _ => Dtype::Bfloat16,
        }
    } else {
        Dtype::Float32
    }
}

/// Total physical memory of this machine.
#[cfg(target_os = "linux")]
pub fn system_memory() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/meminfo").ok()?;
    parse_meminfo(&text)
}

#[cfg(target_os = "macos")]
pub fn system_memory() -> Option<u64> {
    let mut value: u64 = 0;
    let mut len = std::mem::size_of::<u64>();
    let name = c"hw.memsize";
    // SAFETY: name is NUL-terminated; value and len describe a u64 buffer sysctl writes into.
    let rc = unsafe {
        libc::sysctlbyname(
            name.as_ptr(),
            (&mut value as *mut u64).cast(),
            &mut len,
            std::ptr::null_mut(),
            0,
        )
    };
    (rc == 0 && len == std::mem::size_of::<u64>()).then_some(value)
}

#[cfg(not(any(target_os = "linux", target_os = "macos")))]
pub fn system_memory() -> Option<u64> {
    None
}

/// `MemTotal:  131072000 kB` -> bytes.
#[cfg_attr(not(target_os = "linux"), allow(dead_code))]
fn parse_meminfo(text: &str) -> Option<u64> {
    let line = text.lines().find(|l| l.starts_with("MemTotal:"))?;
    let mut parts = line["MemTotal:".len()..].split_whitespace();
    let n: u64 = parts.next()?.parse().ok()?;
    match parts.next() {
        Some("kB") | Some("KB") => Some(n * 1024),
        None => Some(n),
        Some(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn meminfo() {
        let t = "MemTotal:       16384 kB\nMemFree:  1 kB\n";
        assert_eq!(parse_meminfo(t), Some(16384 * 1024));
        assert_eq!(parse_meminfo("MemFree: 1 kB"), None);
    }
}
