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
    end: Instant,
    /// (when a delta was read, tokens so far) for every delta.
    marks: Vec<(Instant, usize)>,
}

impl StreamRun {
    /// When the first token was read (the end, for a stream that produced none).
    fn first_token_at(&self) -> Instant {
        self.marks.first().map_or(self.end, |m| m.0)
    }

    /// Tokens read by `t`.
    fn tokens_by(&self, t: Instant) -> usize {
        self.marks
            .iter()
            .take_while(|(at, _)| *at <= t)
            .last()
            .map_or(0, |m| m.1)
    }

    fn tokens(&self) -> usize {
        self.marks.last().map_or(0, |m| m.1)
    }
}

/// A round of `n` streams started together.
struct Round {
    wall_s: f64,
    /// Generated tokens / wall time of the round.
    total_tokens_per_s: f64,
    /// The sum over streams of (tokens after the first / time after the first): the rate at
    /// which the streams decode together.
    decode_tokens_per_s: f64,
    /// `steady_rate` of the round.
    steady_decode_tokens_per_s: Option<f64>,
    ttft_ms: Vec<f64>,
}

/// Tokens per second over the window in which every stream was decoding: from the last
/// stream's first token to the first stream's end. That is batched decode alone;
/// `decode_tokens_per_s` also counts the steps in which early streams wait on the prefill of
/// late ones. None when there is no such window.
fn steady_rate(runs: &[StreamRun]) -> Option<f64> {
    let from = runs.iter().map(StreamRun::first_token_at).max()?;
    let to = runs.iter().map(|r| r.end).min()?;
    let secs = to.checked_duration_since(from)?.as_secs_f64();
    if secs <= 0.0 {
        return None;
    }
    let tokens: usize = runs
        .iter()
        .map(|r| r.tokens_by(to) - r.tokens_by(from))
        .sum();
    Some(tokens as f64 / secs)
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
    let mut streams: Vec<_> = streams.into_iter().map(|s| (s, Vec::new())).collect();
    let mut runs = Vec::with_capacity(n);
    while !streams.is_empty() {
        let mut idle = true;
        let mut i = 0;
        while i < streams.len() {
            let (s, marks) = &mut streams[i];
            match s.try_recv()? {
                Some(Event::Delta { tokens: t, .. }) => {
                    idle = false;
                    let so_far = marks.last().map_or(0, |m: &(Instant, usize)| m.1);
                    marks.push((Instant::now(), so_far + t.len()));
                }
                Some(Event::Done(c)) => {
                    idle = false;
                    if let Some(e) = c.error {
                        return Err(anyhow!("stream failed: {e}"));
                    }
                    runs.push(StreamRun {
                        end: Instant::now(),
                        marks: std::mem::take(marks),
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
    let total: usize = runs.iter().map(StreamRun::tokens).sum();
    let decode: f64 = runs
        .iter()
        .map(|r| {
            r.tokens().saturating_sub(1) as f64
                / r.end
                    .duration_since(r.first_token_at())
                    .as_secs_f64()
                    .max(1e-9)
        })
        .sum();
    Ok(Round {
        wall_s: wall,
        total_tokens_per_s: total as f64 / wall.max(1e-9),
        decode_tokens_per_s: decode,
        steady_decode_tokens_per_s: steady_rate(&runs),
        ttft_ms: runs
            .iter()
            .map(|r| r.first_token_at().duration_since(start).as_secs_f64() * 1e3)
            .collect(),
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
    let steady: Vec<f64> = rounds
        .iter()
        .filter_map(|r| r.steady_decode_tokens_per_s)
        .collect();
    serde_json::json!({
        "streams": n,
        "decode_tokens_per_s": med(|r| r.decode_tokens_per_s),
        "steady_decode_tokens_per_s": (!steady.is_empty()).then(|| percentile(&steady, 0.5)),
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
    let one = single["decode_tokens_per_s"]
        .as_f64()
        .unwrap_or(1.0)
        .max(1e-9);
    let ratio = many["decode_tokens_per_s"].as_f64().unwrap_or(0.0) / one;
    let steady_ratio = many["steady_decode_tokens_per_s"].as_f64().map(|s| s / one);
    let stats = engine.stats();
    let compute = args.compute();
    let v = serde_json::json!({
        "model": dir.display().to_string(),
        "activations": if compute.int8_activations() { "int8" } else { "float" },
        "kv_cache": crate::bench::kv_cache_label(
            compute.int8_activations(),
            compute.half_kv(),
            compute.dtype(None),
        ),
        "prompt_tokens": args.prompt_tokens,
        "gen_tokens": args.gen_tokens,
        "single": single,
        "concurrent": many,
        "decode_throughput_ratio": ratio,
        "steady_decode_ratio": steady_ratio,
        "kv_blocks_total": stats.total_blocks,
        "block_size": stats.block_size,
        "preemptions": stats.preemptions,
    });
    println!("{}", serde_json::to_string_pretty(&v)?);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(t0: Instant, end_ms: u64, marks: &[(u64, usize)]) -> StreamRun {
        let at = |ms: u64| t0 + Duration::from_millis(ms);
        StreamRun {
            end: at(end_ms),
            marks: marks.iter().map(|&(ms, n)| (at(ms), n)).collect(),
        }
    }

    /// Counts only what the streams produced while all of them were decoding.
    #[test]
    fn steady_rate_counts_the_window_where_every_stream_decodes() {
        let t0 = Instant::now();
        // a starts at 100 ms, b (after a's prefill) at 500 ms; a ends at 1500, b at 1900
        let a = run(
            t0,
            1500,
            &[(100, 1), (300, 5), (500, 9), (1000, 19), (1500, 29)],
        );
        let b = run(t0, 1900, &[(500, 1), (1000, 11), (1500, 21), (1900, 29)]);
        // window 500..1500 ms: a 29 - 9 = 20 tokens, b 21 - 1 = 20
        let rate = steady_rate(&[a, b]).unwrap();
        assert!((rate - 40.0).abs() < 1e-9, "{rate}");
        // no window in which both decode
        let c = run(t0, 400, &[(100, 1), (400, 7)]);
        let d = run(t0, 900, &[(600, 1), (900, 7)]);
        assert!(steady_rate(&[c, d]).is_none());
        assert!(steady_rate(&[]).is_none());
    }
}
