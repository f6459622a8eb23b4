//! Which code path a model runs, as an explicit setting.
//!
//! A model's forward pass can be built two ways:
//! - the **CPU path**: our kernels (src/qgemv.cc and src/attention.cc in cortex-mlx):
//!   multi-threaded SIMD gemv for quantized and dense matmuls of few rows (q/k/v, and gate/up
//!   with SwiGLU, as one node each), dequantize + BLAS for many, and a decode step's RoPE,
//!   cache write and attention as one node, straight from the cache (one sequence's buffer or
//!   the paged KV pool);
//! - the **GPU path**: MLX's own `quantized_matmul` and a padded batched decode attention
//!   (gather the cached keys, one fused SDPA with a keep-mask), as on Metal and CUDA.
//!
//! Each defaults by device (the GPU path on a GPU), and either can be forced, so the path a Mac
//! takes is tested on any machine: the GPU path runs on MLX's CPU backend too. The compute
//! dtype defaults by device as well ([`crate::device::compute_dtype`]: float32 on the CPU, the
//! checkpoint's half type on GPUs) and can be forced the same way. `scalar_kernels` makes the
//! CPU path's kernels run their portable code (what a CPU without AVX2 runs).
//!
//! On the CPU path, decode's quantized matmuls (4- and 8-bit weights) can also quantize their
//! activations to int8 per weight group and compute each group's dot product in integers
//! (VNNI's vpdpbusd where the CPU has it; cortex-mlx's src/qdot.h). Each activation is rounded
//! twice (x, then what the first rounding left over), because one rounding, as llama.cpp does,
//! flipped 6.65% of SmolLM2's greedy tokens (bench/accuracy.sh, 2,000 tokens: top-1 agreement
//! 93.35%, perplexity +1.0%); with two the measured agreement is 100% and perplexity moves by
//! 0.002%. With the path's int8 KV cache (below) the agreement is 99.1% and perplexity moves
//! by 0.01%. It is faster (decode about 1.3x the float path's in bench/compare.py on the
//! 2-core Xeon with AVX-512 VNNI, 1.2x on a 2-core EPYC with AVX2 only; docs/ARCHITECTURE.md)
//! but **off by default**: it holds the quantized weights a second time (repacked for the
//! int8 kernels), and it changes the numbers, while the exact float path is what the parity tests hold to
//! mlx-lm. Turn it on with `int8_activations: Some(true)` ([`ComputeOptions::cpu_int8`]),
//! `CORTEX_INT8=1` or `cortex bench --activations int8`. Prefill's matmuls stay float either
//! way: nodes of more than 8 rows never quantize their activations (and above 256 rows they
//! dequantize and run BLAS). The int8 path also keeps its KV cache in int8 rows
//! ([`kv_dtype`]: blocks of 32 values and their scales, a little over a quarter of float32's
//! bytes), prefill and decode alike: every attention reads the cache as stored (the decode
//! kernel applies each block's scale as it loads the values, which gives the bits the prompt
//! path's dequantized copy holds), so a sequence's results do not depend on which other
//! sequences share its steps.
//!
//! The float path keeps its KV cache in **float16** by default ([`kv_dtype`], `half_kv`):
//! decode attention reads every cached key and value once per token, and in float32 that was
//! the bound on long contexts (SmolLM2 at 3,000 tokens of context reads 138 MB of cache per
//! token against 98 MB of weights). Half the bytes: decode at 1,024 tokens of context 89 ->
//! 106 tokens/s, at 3,000 50 -> 70, eight serving streams 240 -> 270 (the twenty-second
//! session's figures in docs/ARCHITECTURE.md). Keys and values are computed in float32 and
//! rounded once as they are stored (to nearest even, saturating at float16's largest finite
//! value), as llama.cpp's and mlx-lm's own float16 caches hold them; `bench/accuracy.sh`
//! measures what it costs against the exact path (top-1 agreement and perplexity). The
//! **exact path** (float32 activations and cache, what the parity tests hold to mlx-lm) is
//! [`ComputeOptions::cpu`], `CORTEX_KV=f32` or `cortex bench --kv-cache f32`.
//!
//! The choice is fixed when a model is loaded ([`crate::loader::load_with`]); every forward
//! pass of that model builds its graph under it (a per-thread scope, so models with different
//! settings can run side by side, as the tests do).
use cortex_mlx::Dtype;
use serde::{Deserialize, Serialize};
use std::cell::Cell;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputePath {
    Cpu,
    Gpu,
}

impl ComputePath {
    /// The GPU path on a GPU; on the CPU, the CPU path unless `CORTEX_CPU_KERNELS=0` (MLX's own
    /// kernels everywhere, for A/B benchmarks).
    pub fn for_device() -> ComputePath {
        static DEFAULT: std::sync::OnceLock<ComputePath> = std::sync::OnceLock::new();
        *DEFAULT.get_or_init(|| {
            if cortex_mlx::default_device_is_gpu()
                || std::env::var("CORTEX_CPU_KERNELS").as_deref() == Ok("0")
            {
                ComputePath::Gpu
            } else {
                ComputePath::Cpu
            }
        })
    }
}

/// The floating-point types a model can compute in.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ComputeDtype {
    Float32,
    Float16,
    Bfloat16,
}

impl From<ComputeDtype> for Dtype {
    fn from(d: ComputeDtype) -> Dtype {
        match d {
            ComputeDtype::Float32 => Dtype::Float32,
            ComputeDtype::Float16 => Dtype::Float16,
            ComputeDtype::Bfloat16 => Dtype::Bfloat16,
        }
    }
}

/// How to run a model; every field's default follows the device.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default)]
pub struct ComputeOptions {
    /// None: [`ComputePath::for_device`].
    pub path: Option<ComputePath>,
    /// None: by device and checkpoint ([`crate::device::compute_dtype`], `CORTEX_DTYPE`).
    pub dtype: Option<ComputeDtype>,
    /// The CPU path's kernels without AVX2/FMA.
    pub scalar_kernels: bool,
    /// int8 activations in decode's quantized matmuls (see the module's docs). None: off unless
    /// `CORTEX_INT8=1`.
    pub int8_activations: Option<bool>,
    /// The CPU path's float32 KV cache stored as float16 (see the module's docs). None: on
    /// unless `CORTEX_KV=f32`. The int8 path keeps int8 rows either way.
    pub half_kv: Option<bool>,
}

impl ComputeOptions {
    /// The CPU path in float32, exact: float activations and a float32 KV cache (what the
    /// parity tests compare with mlx-lm; the default differs in its float16 cache).
    pub fn cpu() -> ComputeOptions {
        ComputeOptions {
            path: Some(ComputePath::Cpu),
            dtype: Some(ComputeDtype::Float32),
            scalar_kernels: false,
            int8_activations: Some(false),
            half_kv: Some(false),
        }
    }

    /// The CPU path in float32 as it runs by default: float activations, the KV cache in
    /// float16.
    pub fn cpu_half_kv() -> ComputeOptions {
        ComputeOptions {
            half_kv: Some(true),
            ..ComputeOptions::cpu()
        }
    }

    /// The CPU path in float32 with int8 activations in decode's quantized matmuls.
    pub fn cpu_int8() -> ComputeOptions {
        ComputeOptions {
            int8_activations: Some(true),
            ..ComputeOptions::cpu()
        }
    }

    /// The device's default path with the KV cache kept as computed (on the CPU the exact
    /// path): for comparisons at float32 rounding that otherwise take the device's defaults.
    pub fn exact_cache() -> ComputeOptions {
        ComputeOptions {
            half_kv: Some(false),
            ..ComputeOptions::default()
        }
    }

    /// The GPU path (MLX's kernels, padded batched attention) in `dtype`.
    pub fn gpu(dtype: ComputeDtype) -> ComputeOptions {
        ComputeOptions {
            path: Some(ComputePath::Gpu),
            dtype: Some(dtype),
            scalar_kernels: false,
            int8_activations: None,
            half_kv: None,
        }
    }

    pub fn path(&self) -> ComputePath {
        self.path.unwrap_or_else(ComputePath::for_device)
    }

    /// Whether decode's quantized matmuls use int8 activations: only on the CPU path (the GPU
    /// path runs MLX's kernels).
    pub fn int8_activations(&self) -> bool {
        self.path() == ComputePath::Cpu
            && self
                .int8_activations
                .unwrap_or_else(|| std::env::var("CORTEX_INT8").as_deref() == Ok("1"))
    }

    /// Whether a float32 KV cache is stored as float16: on the CPU path (the GPU path computes
    /// in its device's half type, or in float32 when a test forces it, and stores that).
    pub fn half_kv(&self) -> bool {
        self.path() == ComputePath::Cpu && self.half_kv.unwrap_or_else(half_kv_from_env)
    }

    /// The dtype for a checkpoint saved in `checkpoint_dtype`.
    pub fn dtype(&self, checkpoint_dtype: Option<Dtype>) -> Dtype {
        match self.dtype {
            Some(d) => d.into(),
            None => crate::device::compute_dtype(checkpoint_dtype),
        }
    }
}

/// `CORTEX_KV`: `f32` keeps the float path's KV cache in float32 (exact), `f16` or unset in
/// float16; another value is reported once and leaves the default.
fn half_kv_from_env() -> bool {
    static HALF: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *HALF.get_or_init(|| match std::env::var("CORTEX_KV") {
        Ok(v) if v == "f32" => false,
        Ok(v) if v != "f16" => {
            tracing::warn!("CORTEX_KV={v:?} is neither f16 nor f32: the KV cache stays float16");
            true
        }
        _ => true,
    })
}

/// The resolved settings a loaded model runs under.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Compute {
    pub path: ComputePath,
    pub scalar_kernels: bool,
    pub int8_activations: bool,
    pub half_kv: bool,
}

thread_local! {
    static CURRENT: Cell<Option<Compute>> = const { Cell::new(None) };
}

/// The path graphs built on this thread take now: the innermost [`scoped`] setting, else the
/// device default.
pub fn current_path() -> ComputePath {
    CURRENT
        .with(Cell::get)
        .map_or_else(ComputePath::for_device, |c| c.path)
}

/// Whether graphs built on this thread now quantize decode's activations to int8 (the
/// innermost [`scoped`] setting; off outside any).
pub fn current_int8_activations() -> bool {
    CURRENT.with(Cell::get).is_some_and(|c| c.int8_activations)
}

/// Whether the KV cache of graphs built on this thread now stores float32 as float16.
pub fn current_half_kv() -> bool {
    CURRENT.with(Cell::get).is_some_and(|c| c.half_kv)
}

/// What the KV cache stores for keys and values computed in `dtype`, under the setting graphs
/// built on this thread take now: int8 rows on the int8 path (each head's D values in blocks
/// of 32, each scaled by its largest magnitude, the float32 scales stored after them:
/// `cortex_mlx::ops::kv_quantize_rows`), float16 for float32 under `half_kv` (the float
/// path's default; the module's docs), else `dtype` itself. The int8 path's decode
/// attention reads the cache from memory (a batch of 8 at a few hundred positions reads about
/// as many cache bytes per step as weight bytes); int8 rows of 64 values are 72 bytes against
/// float16's 128 and float32's 256, and the same budget holds that many more tokens. The exact
/// path keeps float32, which its parity with mlx-lm needs.
pub fn kv_dtype(dtype: Dtype) -> Dtype {
    if current_int8_activations() {
        Dtype::Int8
    } else if dtype == Dtype::Float32 && current_half_kv() {
        Dtype::Float16
    } else {
        dtype
    }
}

/// Runs `f` with graphs built on this thread taking `compute`'s path and kernels; the previous
/// setting comes back afterwards (also when `f` panics).
pub fn scoped<R>(compute: Compute, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<Compute>);
    impl Drop for Restore {
        fn drop(&mut self) {
            CURRENT.with(|c| c.set(self.0));
            cortex_mlx::ops::set_scalar_kernels(self.0.is_some_and(|c| c.scalar_kernels));
            cortex_mlx::ops::set_int8_activations(self.0.is_some_and(|c| c.int8_activations));
        }
    }
    let _restore = Restore(CURRENT.with(|c| c.replace(Some(compute))));
    cortex_mlx::ops::set_scalar_kernels(compute.scalar_kernels);
    cortex_mlx::ops::set_int8_activations(compute.int8_activations);
    f()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore() {
        let cpu = Compute {
            path: ComputePath::Cpu,
            scalar_kernels: false,
            int8_activations: true,
            half_kv: false,
        };
        let gpu = Compute {
            path: ComputePath::Gpu,
            scalar_kernels: true,
            int8_activations: false,
            half_kv: false,
        };
        let outside = current_path();
        scoped(cpu, || {
            assert_eq!(current_path(), ComputePath::Cpu);
            scoped(gpu, || assert_eq!(current_path(), ComputePath::Gpu));
            assert_eq!(current_path(), ComputePath::Cpu);
        });
        assert_eq!(current_path(), outside);
        let caught = std::panic::catch_unwind(|| scoped(gpu, || panic!("inside")));
        assert!(caught.is_err());
        assert_eq!(
            current_path(),
            outside,
            "a panic must not leave the scope set"
        );
    }

    /// What the cache stores under each setting: int8 rows on the int8 path whatever
    /// `half_kv` says, float16 for float32 under `half_kv`, other dtypes and the exact path as
    /// computed; outside any scope as computed.
    #[test]
    fn the_cache_dtype_follows_the_setting() {
        let (f32, f16, bf16) = (Dtype::Float32, Dtype::Float16, Dtype::Bfloat16);
        let setting = |int8_activations, half_kv| Compute {
            path: ComputePath::Cpu,
            scalar_kernels: false,
            int8_activations,
            half_kv,
        };
        let cases = [
            ((false, true), [f16, f16, bf16]),
            ((false, false), [f32, f16, bf16]),
            ((true, true), [Dtype::Int8; 3]),
            ((true, false), [Dtype::Int8; 3]),
        ];
        for ((int8, half), want) in cases {
            let got = scoped(setting(int8, half), || [f32, f16, bf16].map(kv_dtype));
            assert_eq!(got, want, "int8 {int8}, half_kv {half}");
        }
        assert_eq!([f32, bf16].map(kv_dtype), [f32, bf16]);
    }

    /// `half_kv` applies on the CPU path only, and `cpu()` is the exact path.
    #[test]
    fn half_kv_is_the_cpu_paths_and_exact_is_explicit() {
        assert!(ComputeOptions::cpu_half_kv().half_kv());
        assert!(!ComputeOptions::cpu().half_kv());
        let gpu = ComputeOptions {
            half_kv: Some(true),
            ..ComputeOptions::gpu(ComputeDtype::Float32)
        };
        assert!(!gpu.half_kv());
    }

    #[test]
    fn options_serialize_by_name() {
        let o: ComputeOptions =
            serde_json::from_str(r#"{"path": "gpu", "dtype": "bfloat16"}"#).unwrap();
        assert_eq!(o, ComputeOptions::gpu(ComputeDtype::Bfloat16));
        assert_eq!(o.dtype(None), Dtype::Bfloat16);
        assert!(serde_json::from_str::<ComputeOptions>(r#"{"path": "tpu"}"#).is_err());
        assert_eq!(
            serde_json::from_str::<ComputeOptions>("{}").unwrap(),
            ComputeOptions::default()
        );
    }
}
