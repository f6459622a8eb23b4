//! `cortex bench`: prefill and decode throughput on a synthetic prompt, after one warm-up run;
//! with `--concurrency N`, the serving engine under N concurrent streams next to one stream.
use anyhow::Result;
use clap::Args;
use cortex_engine::generate::{Flow, GenerateParams, Generator};
use cortex_engine::SamplerParams;
use std::time::Instant;

#[derive(Args)]
pub struct BenchArgs {
    pub model: String,
    #[arg(long, default_value_t = 128)]
    pub prompt_tokens: usize,
    #[arg(long, default_value_t = 128)]
    pub gen_tokens: usize,
    /// Measured runs (the median is reported)
    #[arg(long, default_value_t = 3)]
    pub runs: usize,
    /// Run N streams at once through the serving engine (continuous batching) and report
    /// aggregate decode throughput and time-to-first-token percentiles, next to one stream.
    #[arg(long)]
    pub concurrency: Option<usize>,
    /// KV cache memory for --concurrency, in MiB (default: the engine's share of RAM)
    #[arg(long)]
    pub kv_memory: Option<usize>,
    /// Decode's activations on the CPU: float (the default) or int8 (integer dot products,
    /// VNNI where the CPU has it; its KV cache holds int8 rows). Same as CORTEX_INT8=1 for int8.
    #[arg(long, value_parser = ["int8", "float"])]
    pub activations: Option<String>,
    /// The float path's KV cache on the CPU: f16 (the default, half the bytes to read) or f32
    /// (exact, with float activations what the parity tests hold to mlx-lm). Same as
    /// CORTEX_KV=f32 for f32.
    #[arg(long, value_parser = ["f16", "f32"])]
    pub kv_cache: Option<String>,
    /// Instead of timing: the float16 cache's and the int8 path's accuracy against the exact
    /// path on this text (top-1 agreement and perplexity, teacher-forced, one token at a time)
    #[arg(long, value_name = "TEXT_FILE")]
    pub accuracy: Option<std::path::PathBuf>,
    /// Tokens of the --accuracy text to score
    #[arg(long, default_value_t = 2000)]
    pub accuracy_tokens: usize,
}

impl BenchArgs {
    /// The compute options the flags ask for (the device's defaults otherwise).
    pub fn compute(&self) -> cortex_engine::ComputeOptions {
        cortex_engine::ComputeOptions {
            int8_activations: self.activations.as_deref().map(|a| a == "int8"),
            half_kv: self.kv_cache.as_deref().map(|k| k == "f16"),
            ..Default::default()
        }
    }
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(0.0)
}

pub fn bench(args: BenchArgs) -> Result<()> {
    let dir = crate::resolve_model(&args.model)?;
    if let Some(text) = &args.accuracy {
        return crate::accuracy::run(&dir, text, args.accuracy_tokens.max(1));
    }
    if let Some(n) = args.concurrency {
        return crate::bench_serving::run(&dir, &args, n.max(1));
    }
    let t0 = Instant::now();
    let model = cortex_engine::load_with(&dir, &args.compute())?;
    // Deterministic prompt of ordinary token ids (skipping the first ids, often specials).
    let vocab = model.model.vocab_size() as u32;
    let prompt: Vec<u32> = (0..args.prompt_tokens as u32)
        .map(|i| 100 + (i * 7919) % (vocab - 200))
        .collect();
    let params = GenerateParams {
        max_tokens: args.gen_tokens,
        sampler: SamplerParams::greedy(),
        stop_token_ids: vec![],
        ..Default::default()
    };
    let generator = Generator::new(model.model.as_ref());
    // load to first token: includes the first (cold) prefill
    let (_, first) = generator.generate(
        &prompt[..prompt.len().min(16)],
        &GenerateParams {
            max_tokens: 1,
            ..params.clone()
        },
        |_| Flow::Continue,
    )?;
    let load_to_first_token_s = t0.elapsed().as_secs_f64();
    let _ = first;
    generator.generate(&prompt, &params, |_| Flow::Continue)?; // warm-up
    let (mut pre, mut dec, mut ttft) = (vec![], vec![], vec![]);
    for _ in 0..args.runs.max(1) {
        let (_, s) = generator.generate(&prompt, &params, |_| Flow::Continue)?;
        pre.push(s.prefill_tokens_per_s);
        dec.push(s.decode_tokens_per_s);
        ttft.push(s.ttft_ms);
    }
    let v = serde_json::json!({
        "model": dir.display().to_string(),
        "dtype": model.dtype.to_string(),
        "activations": activations_label(&model),
        "kv_cache": kv_cache_label(model.compute.int8_activations, model.compute.half_kv, model.dtype),
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "prefill_tokens_per_s": median(pre),
        "decode_tokens_per_s": median(dec),
        "ttft_ms": median(ttft),
        "load_s": model.load_time.as_secs_f64(),
        "load_to_first_token_s": load_to_first_token_s,
        "peak_memory_bytes": cortex_mlx::peak_memory(),
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

/// "int8", "float16" or the compute dtype ("float32"): what the KV cache stores
/// (`compute::kv_dtype`).
pub fn kv_cache_label(int8: bool, half_kv: bool, dtype: cortex_mlx::Dtype) -> String {
    if int8 {
        "int8".into()
    } else if half_kv && dtype == cortex_mlx::Dtype::Float32 {
        "float16".into()
    } else {
        dtype.to_string()
    }
}

/// "int8 (avx512vnni)" or "float": what decode's quantized matmuls ran.
pub fn activations_label(model: &cortex_engine::LoadedModel) -> String {
    if model.compute.int8_activations {
        format!("int8 ({})", cortex_mlx::ops::int8_kernel_name())
    } else {
        "float".into()
    }
}
