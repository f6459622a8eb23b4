//! The memory estimate (cortex_engine::memory, what `cortex info` and the fit verdict use)
//! against what the engine really holds after loading a model and after filling its KV cache,
//! measured with MLX's count of live buffer bytes.
//!
//! One test in this binary: that count is process-wide, so nothing else may run beside it.
//! MLX's buffer cache is off here: a recycled buffer counts at its old (larger) size, which
//! made a model's weights look 40% bigger after another model's long prefill had run.
mod common;
use cortex_engine::cache::{KvCache, SimpleKvCache};
use cortex_engine::memory::{estimate, MemoryNeed};
use cortex_engine::ComputeOptions;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Tokens of context filled for the KV measurement: a multiple of the cache's growth step
/// (256), so the buffers hold exactly that many positions.
const FILLED: usize = 512;

/// tiny-llama saved in bfloat16: on the CPU the engine holds it in float32, twice the file.
fn bf16_copy(dir: &Path) -> PathBuf {
    let src = common::fixtures().join("tiny-llama");
    common::copy_model("tiny-llama", dir);
    let file = cortex_mlx::load_safetensors(&src.join("model.safetensors")).unwrap();
    let halved: BTreeMap<String, cortex_mlx::Array> = file
        .tensors
        .iter()
        .map(|(k, v)| (k.clone(), v.astype(cortex_mlx::Dtype::Bfloat16).unwrap()))
        .collect();
    cortex_mlx::save_safetensors(&dir.join("model.safetensors"), &halved, &file.metadata).unwrap();
    let mut config: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(src.join("config.json")).unwrap()).unwrap();
    config["torch_dtype"] = "bfloat16".into();
    std::fs::write(dir.join("config.json"), config.to_string()).unwrap();
    dir.to_path_buf()
}

fn smollm2(dir: &Path) -> PathBuf {
    let gguf = common::root().join("tests/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
    assert!(
        gguf.exists(),
        "run scripts/fetch-test-data.sh (scripts/test.sh does)"
    );
    cortex_engine::gguf_import::import_gguf(&gguf, &dir.join("smol")).unwrap()
}

/// The model's head dimension, from its config.json.
fn head_dim(dir: &Path) -> u64 {
    let text = std::fs::read_to_string(dir.join("config.json")).unwrap();
    let c: serde_json::Value = serde_json::from_str(&text).unwrap();
    let int = |k: &str| c.get(k).and_then(serde_json::Value::as_u64);
    int("head_dim")
        .unwrap_or_else(|| int("hidden_size").unwrap() / int("num_attention_heads").unwrap())
}

/// (weights bytes, KV bytes for FILLED tokens) as measured.
fn measure(dir: &Path, options: &ComputeOptions) -> (u64, u64) {
    let base = cortex_mlx::active_memory() as u64;
    let model = cortex_engine::load_with(dir, options).unwrap();
    let layers = model.model.num_layers();
    // the first forward pass reads every weight (loading is lazy)
    {
        let mut scratch = SimpleKvCache::new(layers);
        let one = cortex_engine::generate::tokens_array(&[1]).unwrap();
        model
            .model
            .forward(&one, &mut scratch)
            .unwrap()
            .eval()
            .unwrap();
    }
    let weights = cortex_mlx::active_memory() as u64 - base;
    let mut cache = SimpleKvCache::new(layers);
    let prompt: Vec<u32> = (0..FILLED as u32).map(|i| 1 + i % 200).collect();
    let tokens = cortex_engine::generate::tokens_array(&prompt).unwrap();
    model
        .model
        .forward(&tokens, &mut cache)
        .unwrap()
        .eval()
        .unwrap();
    cortex_mlx::ops::eval(cache.arrays().iter()).unwrap();
    assert_eq!(cache.offset(), FILLED as i32);
    let kv = cortex_mlx::active_memory() as u64 - base - weights;
    drop(cache);
    drop(model);
    (weights, kv)
}

fn within(label: &str, got: u64, want: u64, share: f64) {
    let err = (got as f64 - want as f64).abs() / want as f64;
    assert!(
        err <= share,
        "{label}: measured {got} bytes, estimated {want} ({:.2}% off, allowed {:.1}%)",
        err * 100.0,
        share * 100.0
    );
}

#[test]
fn the_estimate_matches_what_the_engine_holds() {
    cortex_mlx::set_cache_limit(0);
    cortex_mlx::clear_cache();
    let scratch = common::scratch_dir("memory");
    let cases = [
        (
            "tiny-llama (float32)",
            common::fixtures().join("tiny-llama"),
        ),
        (
            "tiny-llama-q4 (4-bit)",
            common::fixtures().join("tiny-llama-q4"),
        ),
        ("tiny-llama in bfloat16", bf16_copy(&scratch.join("bf16"))),
        ("SmolLM2-135M (Q4_1 GGUF import)", smollm2(&scratch)),
    ];
    // With int8 activations, on a CPU with SIMD int8 kernels the quantized layers are held a
    // second time, repacked for them; the estimate counts that copy where it is made.
    let repacked = cortex_mlx::ops::int8_repacks();
    // Its KV cache holds int8 rows (`compute::kv_dtype`): per head, D one-byte values and a
    // 4-byte scale per 32 of them, against float32's 4 bytes a value.
    for (label, dir) in [&cases[1], &cases[3]] {
        let float = estimate(dir, &ComputeOptions::cpu()).unwrap();
        let int8 = estimate(dir, &ComputeOptions::cpu_int8()).unwrap();
        let need = int8.weights_bytes;
        let (weights, kv) = measure(dir, &ComputeOptions::cpu_int8());
        eprintln!("{label}, int8 activations: weights {weights} measured vs {need} estimated");
        within(&format!("{label} weights, int8"), weights, need, 0.03);
        assert_eq!(
            need > float.weights_bytes,
            repacked,
            "{label}: the repacked copy is counted where it is made"
        );
        let per_token = int8.kv_bytes_per_token.unwrap();
        let d = head_dim(dir);
        assert_eq!(
            4 * d * per_token,
            (d + 4 * d.div_ceil(32)) * float.kv_bytes_per_token.unwrap(),
            "{label}"
        );
        // every case measures 2,048 bytes above its cache (a float per position the pass
        // keeps): 0.4% of tiny-llama's float32 cache, 1.4% of its int8 one
        within(
            &format!("{label} KV cache, int8"),
            kv,
            per_token * FILLED as u64,
            0.02,
        );
    }
    // The float path's default cache holds float16: half the exact path's bytes.
    for (label, dir) in [&cases[1], &cases[3]] {
        let exact = estimate(dir, &ComputeOptions::cpu()).unwrap();
        let half = estimate(dir, &ComputeOptions::cpu_half_kv()).unwrap();
        assert_eq!(half.weights_bytes, exact.weights_bytes, "{label}");
        let per_token = half.kv_bytes_per_token.unwrap();
        assert_eq!(2 * per_token, exact.kv_bytes_per_token.unwrap(), "{label}");
        let (_, kv) = measure(dir, &ComputeOptions::cpu_half_kv());
        // the 2,048 bytes above the cache: 0.8% of tiny-llama's float16 cache
        within(
            &format!("{label} KV cache, float16"),
            kv,
            per_token * FILLED as u64,
            0.02,
        );
    }
    let mut file_sizes = Vec::new();
    for (label, dir) in &cases {
        let need: MemoryNeed = estimate(dir, &ComputeOptions::cpu()).unwrap();
        assert_eq!(need.dtype, cortex_mlx::Dtype::Float32, "{label}");
        let (weights, kv) = measure(dir, &ComputeOptions::cpu());
        eprintln!(
            "{label}: weights {weights} measured vs {} estimated; KV for {FILLED} tokens {kv} vs {}",
            need.weights_bytes,
            need.kv_bytes_per_token.unwrap() * FILLED as u64
        );
        // weights: the rotary tables and similar buffers the model builds come on top
        within(
            &format!("{label} weights"),
            weights,
            need.weights_bytes,
            0.03,
        );
        within(
            &format!("{label} KV cache"),
            kv,
            need.kv_bytes_per_token.unwrap() * FILLED as u64,
            0.01,
        );
        let files: u64 = std::fs::read_dir(dir)
            .unwrap()
            .flatten()
            .filter(|e| e.path().extension().is_some_and(|x| x == "safetensors"))
            .map(|e| e.metadata().unwrap().len())
            .sum();
        file_sizes.push((files, need.weights_bytes));
    }
    // the bfloat16 checkpoint: half the float32 one on disk, the same in memory
    let (f32_file, f32_mem) = file_sizes[0];
    let (bf16_file, bf16_mem) = file_sizes[2];
    assert!(bf16_file < f32_file * 6 / 10, "{bf16_file} vs {f32_file}");
    assert_eq!(bf16_mem, f32_mem);
    let _ = std::fs::remove_dir_all(&scratch);
}
