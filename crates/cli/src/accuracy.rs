//! `cortex bench MODEL --accuracy TEXT`: what the faster paths (cortex_engine::compute) cost in
//! accuracy against the exact one (float32 activations and KV cache): the float path as it runs
//! by default (its KV cache in float16) and the int8-activation path (int8 activations in
//! decode's matmuls, int8 cache rows). The text's tokens go through the model one at a time
//! (decode, where int8 applies and the cache is read back), teacher-forced, once per path; it
//! prints each path's top-1 agreement with the exact one over every position and each path's
//! perplexity on the text. bench/accuracy.sh runs it on the default model with
//! bench/data/accuracy-text.txt.
use anyhow::{bail, Context, Result};
use cortex_engine::cache::SimpleKvCache;
use cortex_engine::ComputeOptions;
use std::path::Path;
use std::time::Instant;

/// One path's pass over the text: the top token and the log-probability of the text's next
/// token at every position.
struct Pass {
    top: Vec<u32>,
    logprob: Vec<f64>,
    seconds: f64,
}

fn pass(dir: &Path, options: &ComputeOptions, tokens: &[u32]) -> Result<Pass> {
    let model = cortex_engine::load_with(dir, options)?;
    let mut cache = SimpleKvCache::new(model.model.num_layers());
    let (mut top, mut logprob) = (Vec::new(), Vec::new());
    let start = Instant::now();
    for (i, &t) in tokens[..tokens.len() - 1].iter().enumerate() {
        let x = cortex_engine::generate::tokens_array(&[t])?;
        let logits = model.model.forward(&x, &mut cache)?.to_f32_vec()?;
        let best = (0..logits.len()).fold(0, |b, j| if logits[j] > logits[b] { j } else { b });
        let max = logits[best] as f64;
        let sum: f64 = logits.iter().map(|&l| (l as f64 - max).exp()).sum();
        let next = tokens[i + 1] as usize;
        top.push(best as u32);
        logprob.push(logits[next] as f64 - max - sum.ln());
    }
    Ok(Pass {
        top,
        logprob,
        seconds: start.elapsed().as_secs_f64(),
    })
}

fn perplexity(p: &Pass) -> f64 {
    (-p.logprob.iter().sum::<f64>() / p.logprob.len() as f64).exp()
}

pub fn run(dir: &Path, text: &Path, max_tokens: usize) -> Result<()> {
    let body =
        std::fs::read_to_string(text).with_context(|| format!("reading {}", text.display()))?;
    let tokenizer = cortex_tokenizer::Tokenizer::from_dir(dir)?;
    let mut tokens = tokenizer.encode(&body, false)?;
    tokens.truncate(max_tokens + 1);
    if tokens.len() < 2 {
        bail!("{} has fewer than two tokens", text.display());
    }
    let exact = pass(dir, &ComputeOptions::cpu(), &tokens)?;
    let half = pass(dir, &ComputeOptions::cpu_half_kv(), &tokens)?;
    let int8 = pass(dir, &ComputeOptions::cpu_int8(), &tokens)?;
    let n = exact.top.len();
    let ppl_exact = perplexity(&exact);
    // a path's figures beside the exact one's
    let against_exact = |p: &Pass| {
        let agree = exact.top.iter().zip(&p.top).filter(|(a, b)| a == b).count();
        let ppl = perplexity(p);
        serde_json::json!({
            "top1_agreement": agree as f64 / n as f64,
            "perplexity": ppl,
            "perplexity_change": ppl / ppl_exact - 1.0,
            "tokens_per_s": n as f64 / p.seconds,
        })
    };
    let v = serde_json::json!({
        "model": dir.display().to_string(),
        "text": text.display().to_string(),
        "tokens": n,
        "perplexity_exact": ppl_exact,
        "exact_tokens_per_s": n as f64 / exact.seconds,
        "float16_cache": against_exact(&half),
        "int8": against_exact(&int8),
        "int8_kernels": cortex_mlx::ops::int8_kernel_name(),
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
