//! OpenBLAS kernel selection and thread waiting on Linux.
//!
//! OpenBLAS (which runs MLX's float32 matmuls on Linux, see build.rs) picks its kernels from
//! the CPU model when the library loads. On CPUs it does not recognise, such as virtual CPUs
//! that report "Intel(R) Xeon(R) Processor", it falls back to its oldest x86-64 kernels
//! (Prescott, SSE3): a 512x1536x576 sgemm ran at 28 GFLOPS there instead of 244 with the
//! AVX-512 (SkylakeX) kernels on the same machine. It reads `OPENBLAS_CORETYPE` (and
//! `OPENBLAS_THREAD_TIMEOUT`, how long its idle threads spin) only at load time, before `main`,
//! so a binary fixes both by re-executing itself once with the variables set.

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

/// OpenBLAS's worker threads, once a call is done, wait for the next one by calling
/// `sched_yield` in a loop for 2^`OPENBLAS_THREAD_TIMEOUT` cycles (2^28 by default, about 80 ms
/// at 3 GHz) before they sleep. A prompt runs a few hundred sgemm calls with attention and
/// the kernel pool's work between them, so on two cores those yielding threads kept taking
/// turns from the threads with work (sched_yield and the scheduler were about 14% of a
/// 2,048-token prefill's samples). 2^4 cycles, OpenBLAS's minimum, puts them to sleep at once;
/// waking one costs a few microseconds per sgemm of milliseconds.
pub const BLAS_THREAD_TIMEOUT: &str = "4";

/// The variables [`reexec_with_blas_env`] sets, given the environment (`var`) and this CPU's
/// core type: each one the environment does not already set (the user's choice, or an earlier
/// re-exec's, wins). Empty: nothing to do, so a re-executed program never re-executes again.
pub fn blas_env_to_set(
    var: impl Fn(&str) -> Option<std::ffi::OsString>,
    coretype: Option<&'static str>,
) -> Vec<(&'static str, &'static str)> {
    let mut set = Vec::new();
    if let (None, Some(core)) = (var("OPENBLAS_CORETYPE"), coretype) {
        set.push(("OPENBLAS_CORETYPE", core));
    }
    if var("OPENBLAS_THREAD_TIMEOUT").is_none() {
        set.push(("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT));
    }
    set
}

/// Re-executes the current program once with OpenBLAS's load-time settings: `OPENBLAS_CORETYPE`
/// from the CPU's features and `OPENBLAS_THREAD_TIMEOUT` (see [`BLAS_THREAD_TIMEOUT`]), each
/// unless already set. Call it first thing in `main`, before any thread starts. Returns
/// (having done nothing) off Linux, when both are set, or when the re-exec fails.
pub fn reexec_with_blas_env() {
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::process::CommandExt;
        let set = blas_env_to_set(|k| std::env::var_os(k), blas_coretype());
        if set.is_empty() {
            return;
        }
        let Ok(exe) = std::env::current_exe() else {
            return;
        };
        let mut args = std::env::args_os();
        let argv0 = args.next();
        let mut cmd = std::process::Command::new(exe);
        if let Some(a) = argv0 {
            cmd.arg0(a);
        }
        // exec only returns on failure; then run on with OpenBLAS's own choices
        let _ = cmd.args(args).envs(set).exec();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::ffi::OsString;

    fn env(vars: &[(&str, &str)]) -> impl Fn(&str) -> Option<OsString> {
        let vars: Vec<(String, OsString)> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
        move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())
    }

    #[test]
    fn sets_what_the_environment_leaves_unset() {
        assert_eq!(
            blas_env_to_set(env(&[]), Some("Haswell")),
            [
                ("OPENBLAS_CORETYPE", "Haswell"),
                ("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT)
            ]
        );
        // a CPU without a core type worth naming still gets the timeout
        assert_eq!(
            blas_env_to_set(env(&[]), None),
            [("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT)]
        );
        // the user's choices stand
        assert_eq!(
            blas_env_to_set(env(&[("OPENBLAS_CORETYPE", "Zen")]), Some("Haswell")),
            [("OPENBLAS_THREAD_TIMEOUT", BLAS_THREAD_TIMEOUT)]
        );
        assert_eq!(
            blas_env_to_set(env(&[("OPENBLAS_THREAD_TIMEOUT", "20")]), Some("SkylakeX")),
            [("OPENBLAS_CORETYPE", "SkylakeX")]
        );
    }

    #[test]
    fn a_reexecuted_program_sets_nothing_more() {
        let first = blas_env_to_set(env(&[]), Some("Haswell"));
        assert!(blas_env_to_set(env(&first), Some("Haswell")).is_empty());
    }
}
