//! `cortex bench MODEL --concurrency N`: the serving engine with N streams at once, each a
//! distinct synthetic prompt (no shared prefix to cache) generating exactly `gen_tokens`
//! tokens, measured next to a single stream on the same engine.
use crate::bench::BenchArgs;
use anyhow::{anyhow, Result};
use cortex_engine::serving::{EngineConfig, EngineHandle, Event, RequestParams};
use cortex_engine::SamplerParams;
use std::path::Path;
use std::time::{Duration, Instant};

/// One stream's measurements.
struct StreamRun {
    ttft: Duration,
    first_token_at: Instant,
    end: Instant,
    tokens: usize,
}

/// A round of `n` streams started together.
struct Round {
    wall_s: f64,
    /// Generated tokens / wall time of the round.
    total_tokens_per_s: f64,
    /// The sum over streams of (tokens after the first / time after the first): the rate at
    /// which the streams decode together.
    decode_tokens_per_s: f64,
    ttft_ms: Vec<f64>,
}

fn prompt(stream: usize, len: usize, vocab: u32) -> Vec<u32> {
    (0..len as u32)
        .map(|i| 100 + (i * 7919 + stream as u32 * 104_729) % (vocab - 200))
        .collect()
}

fn round(
    engine: &EngineHandle,
    args: &BenchArgs,
    n: usize,
    salt: usize,
    vocab: u32,
) -> Result<Round> {
    let params = RequestParams {
        max_tokens: args.gen_tokens,
        sampler: SamplerParams::greedy(),
        ignore_eos: true,
        ..Default::default()
    };
    let start = Instant::now();
    let streams = (0..n)
        .map(|i| engine.submit(prompt(salt + i, args.prompt_tokens, vocab), params.clone()))
        .collect::<cortex_engine::Result<Vec<_>>>()?;
    // one thread reads every stream (a thread per stream would wake once per token each and
    // take CPU from the engine on a small machine)
    let mut streams: Vec<_> = streams.into_iter().map(|s| (s, None, 0usize)).collect();
    let mut runs = Vec::with_capacity(n);
    while !streams.is_empty() {
        let mut idle = true;
        let mut i = 0;
        while i < streams.len() {
            let (s, first, tokens) = &mut streams[i];
            match s.try_recv()? {
                Some(Event::Delta { tokens: t, .. }) => {
                    idle = false;
                    first.get_or_insert_with(Instant::now);
                    *tokens += t.len();
                }
                Some(Event::Done(c)) => {
                    idle = false;
                    if let Some(e) = c.error {
                        return Err(anyhow!("stream failed: {e}"));
                    }
                    let end = Instant::now();
                    let first = first.unwrap_or(end);
                    runs.push(StreamRun {
                        ttft: first.duration_since(start),
                        first_token_at: first,
                        end,
                        tokens: *tokens,
                    });
                    streams.swap_remove(i);
                    continue;
                }
                None => {}
            }
            i += 1;
        }
        if idle {
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    let wall = start.elapsed().as_secs_f64();
    let total: usize = runs.iter().map(|r| r.tokens).sum();
    let decode: f64 = runs
        .iter()
        .map(|r| {
            r.tokens.saturating_sub(1) as f64
                / r.end
                    .duration_since(r.first_token_at)
                    .as_secs_f64()
                    .max(1e-9)
        })
        .sum();
    Ok(Round {
        wall_s: wall,
        total_tokens_per_s: total as f64 / wall.max(1e-9),
        decode_tokens_per_s: decode,
        ttft_ms: runs.iter().map(|r| r.ttft.as_secs_f64() * 1e3).collect(),
    })
}

fn percentile(v: &[f64], p: f64) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(|a, b| a.total_cmp(b));
    if v.is_empty() {
        return 0.0;
    }
    let i = ((v.len() - 1) as f64 * p).round() as usize;
    v[i]
}

fn summary(rounds: &[Round], n: usize) -> serde_json::Value {
    let med = |f: fn(&Round) -> f64| {
        let v: Vec<f64> = rounds.iter().map(f).collect();
        percentile(&v, 0.5)
    };
    let ttft: Vec<f64> = rounds.iter().flat_map(|r| r.ttft_ms.clone()).collect();
    serde_json::json!({
        "streams": n,
        "decode_tokens_per_s": med(|r| r.decode_tokens_per_s),
        "total_tokens_per_s": med(|r| r.total_tokens_per_s),
        "wall_s": med(|r| r.wall_s),
        "ttft_ms_p50": percentile(&ttft, 0.5),
        "ttft_ms_p90": percentile(&ttft, 0.9),
        "ttft_ms_p99": percentile(&ttft, 0.99),
    })
}

pub fn run(dir: &Path, args: &BenchArgs, n: usize) -> Result<()> {
    let config = EngineConfig {
        kv_memory_bytes: args.kv_memory.map(|m| m << 20),
        compute: args.compute(),
        ..Default::default()
    };
    let engine = EngineHandle::load(dir, config)?;
    let vocab = engine.tokenizer().vocab_size() as u32;
    if vocab < 300 {
        return Err(anyhow!(
            "the vocabulary is too small for the synthetic prompts"
        ));
    }
    // warm-up at the measured concurrency (allocates the pool, touches every weight)
    round(&engine, args, n, 10_000, vocab)?;
    let mut salt = 0;
    let mut measure = |streams: usize| -> Result<serde_json::Value> {
        let rounds = (0..args.runs.max(1))
            .map(|_| {
                salt += streams;
                round(&engine, args, streams, salt, vocab)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(summary(&rounds, streams))
    };
    let single = measure(1)?;
    let many = measure(n)?;
    let ratio = many["decode_tokens_per_s"].as_f64().unwrap_or(0.0)
        / single["decode_tokens_per_s"]
            .as_f64()
            .unwrap_or(1.0)
            .max(1e-9);
    let stats = engine.stats();
    let v = serde_json::json!({
        "model": dir.display().to_string(),
        "activations": if args.compute().int8_activations() { "int8" } else { "float" },
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "single": single,
        "concurrent": many,
        "decode_throughput_ratio": ratio,
        "kv_blocks_total": stats.total_blocks,
        "block_size": stats.block_size,
        "preemptions": stats.preemptions,
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}
