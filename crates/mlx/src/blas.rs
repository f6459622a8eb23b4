//! OpenBLAS kernel selection on Linux.
//!
//! OpenBLAS (which runs MLX's float32 matmuls on Linux, see build.rs) picks its kernels from
//! the CPU model when the library loads. On CPUs it does not recognise, such as virtual CPUs
//! that report "Intel(R) Xeon(R) Processor", it falls back to its oldest x86-64 kernels
//! (Prescott, SSE3): a 512x1536x576 sgemm ran at 28 GFLOPS there instead of 244 with the
//! AVX-512 (SkylakeX) kernels on the same machine. It reads `OPENBLAS_CORETYPE` only at load
//! time, before `main`, so a binary fixes this by re-executing itself once with the variable
//! set from the CPU's features.

/// The OpenBLAS core type matching this CPU's vector extensions, if it has any worth naming.
pub fn blas_coretype() -> Option<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::is_x86_feature_detected as has;
        if has!("avx512f") && has!("avx512vl") && has!("avx512bw") && has!("avx512dq") {
            return Some("SkylakeX");
        }
        if has!("avx2") && has!("fma") {
            return Some("Haswell");
        }
    }
    None
}

/// Re-executes the current program with `OPENBLAS_CORETYPE` set from the CPU's features,
/// unless it is already set (by the user or by an earlier re-exec). Returns (having done
/// nothing) off Linux, when the CPU has no AVX2, or when the re-exec fails.
pub fn reexec_with_blas_coretype() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        if std::env::var_os("OPENBLAS_CORETYPE").is_some() {
            return;
        }
        let Some(core) = blas_coretype() else {
            return;
        };
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let argv0 = args.next();
        let mut cmd = std::process::Command::new(exe);
        if let Some(a) = argv0 {
            cmd.arg0(a);
        }
        // exec only returns on failure; then run on with OpenBLAS's own choice
        let _ = cmd.args(args).env("OPENBLAS_CORETYPE", core).exec();
    }
}
