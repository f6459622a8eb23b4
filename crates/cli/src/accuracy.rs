//! `cortex bench MODEL --accuracy TEXT`: what the int8-activation path (cortex_engine::compute)
//! costs in accuracy. The text's tokens go through the model one at a time (decode, where int8
//! applies), teacher-forced, once on the exact float path and once with int8 activations; it
//! prints the top-1 agreement of the two paths over every position and each path's perplexity
//! on the text. bench/accuracy.sh runs it on the default model with bench/data/accuracy-text.txt.
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
    let int8 = pass(dir, &ComputeOptions::cpu_int8(), &tokens)?;
    let n = exact.top.len();
    let agree = exact
        .top
        .iter()
        .zip(&int8.top)
        .filter(|(a, b)| a == b)
        .count();
    let (ppl_exact, ppl_int8) = (perplexity(&exact), perplexity(&int8));
    let v = serde_json::json!({
        "model": dir.display().to_string(),
        "text": text.display().to_string(),
        "tokens": n,
        "int8_kernels": cortex_mlx::ops::int8_kernel_name(),
        "top1_agreement": agree as f64 / n as f64,
        "perplexity_float": ppl_exact,
        "perplexity_int8": ppl_int8,
        "perplexity_change": ppl_int8 / ppl_exact - 1.0,
        "float_tokens_per_s": n as f64 / exact.seconds,
        "int8_tokens_per_s": n as f64 / int8.seconds,
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
