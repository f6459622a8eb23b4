//! Sampling checked against the exact distributions it promises.
//!
//! Each filter's distribution is computed on the host in f64 from the logits (temperature, then
//! top-k, then min-p, then top-p, the order `Sampler::pick` documents); the sampler draws
//! many seeded tokens (one batch of identical rows, each row its own draw) and a chi-square test
//! at significance 1e-4 compares the counts with it. A token the filters exclude must never be
//! drawn at all. The draws are seeded, so every run sees the same counts.
//!
//! Penalties are checked for direction and amount as Hugging Face (repetition: divide a positive
//! logit, multiply a negative one, once per token seen in the prompt or the output) and OpenAI
//! (presence: minus alpha once per generated token; frequency: minus alpha per occurrence)
//! define them; log-probabilities against a host log_softmax, and end to end against mlx-lm's
//! reference logits.
mod common;
use cortex_engine::sampler::{self, Sampler};
use cortex_engine::serving::{EngineConfig, EngineHandle, Event, RequestParams};
use cortex_engine::{ComputeOptions, SamplerParams};
use cortex_mlx::Array;

/// Logits over a 12-token vocabulary: a clear favourite, a plateau, a long tail and a tie.
const LOGITS: [f32; 12] = [
    2.0, 1.2, 1.1, 1.1, 0.4, 0.0, -0.3, -0.9, -1.5, -2.2, -3.0, 0.9,
];
const DRAWS: usize = 40_000;

/// softmax(logits / t) in f64.
fn softmax(l: &[f64]) -> Vec<f64> {
    let m = l.iter().copied().fold(f64::NEG_INFINITY, f64::max);
    let e: Vec<f64> = l.iter().map(|x| (x - m).exp()).collect();
    let s: f64 = e.iter().sum();
    e.iter().map(|x| x / s).collect()
}

/// The distribution `p` promises: temperature, top-k (ties with the k-th kept), min-p (relative
/// to the most likely token), top-p (a token stays while the mass before it is below top_p).
fn exact(p: &SamplerParams) -> Vec<f64> {
    let mut l: Vec<f64> = LOGITS
        .iter()
        .map(|&x| x as f64 / p.temperature as f64)
        .collect();
    let ninf = f64::NEG_INFINITY;
    if p.top_k > 0 && p.top_k < l.len() {
        let mut sorted = l.clone();
        sorted.sort_by(|a, b| b.partial_cmp(a).unwrap());
        let kth = sorted[p.top_k - 1];
        l.iter_mut().filter(|x| **x < kth).for_each(|x| *x = ninf);
    }
    if p.min_p > 0.0 {
        let probs = softmax(&l);
        let top = probs.iter().copied().fold(0.0, f64::max);
        for (x, q) in l.iter_mut().zip(&probs) {
            if *q < p.min_p as f64 * top {
                *x = ninf;
            }
        }
    }
    if p.top_p < 1.0 {
        let probs = softmax(&l);
        let mut order: Vec<usize> = (0..l.len()).collect();
        order.sort_by(|&a, &b| probs[b].partial_cmp(&probs[a]).unwrap());
        let mut before = 0.0;
        let mut thr = f64::INFINITY;
        for &i in &order {
            if before < p.top_p as f64 {
                thr = thr.min(probs[i]);
            }
            before += probs[i];
        }
        for (x, q) in l.iter_mut().zip(&probs) {
            if *q < thr {
                *x = ninf;
            }
        }
    }
    softmax(&l)
}

/// Counts of DRAWS tokens drawn with `p` (seeded).
fn draw(p: &SamplerParams) -> Vec<usize> {
    let mut s = Sampler::new(p.clone()).unwrap();
    let v = LOGITS.len() as i32;
    let logits = Array::from_slice(&LOGITS, &[1, v])
        .unwrap()
        .broadcast_to(&[DRAWS as i32, v])
        .unwrap();
    let tokens = s.sample(&logits).unwrap().to_vec::<u32>().unwrap();
    let mut counts = vec![0; LOGITS.len()];
    for t in tokens {
        counts[t as usize] += 1;
    }
    counts
}

/// The chi-square critical value for `df` degrees of freedom at significance 1e-4
/// (Wilson-Hilferty; z = 3.719).
fn chi2_critical(df: usize) -> f64 {
    let df = df as f64;
    let a = 2.0 / (9.0 * df);
    df * (1.0 - a + 3.719 * a.sqrt()).powi(3)
}

fn check(label: &str, p: SamplerParams) {
    let want = exact(&p);
    let got = draw(&p);
    let n = DRAWS as f64;
    let mut chi2 = 0.0;
    let mut df = 0usize;
    let mut tv = 0.0;
    for (i, (&q, &c)) in want.iter().zip(&got).enumerate() {
        tv += (c as f64 / n - q).abs() / 2.0;
        if q == 0.0 {
            assert_eq!(
                c, 0,
                "{label}: token {i} is filtered out but was drawn {c} times"
            );
            continue;
        }
        chi2 += (c as f64 - n * q).powi(2) / (n * q);
        df += 1;
    }
    let crit = chi2_critical(df.saturating_sub(1).max(1));
    eprintln!(
        "{label}: chi2 {chi2:.1} (critical {crit:.1}, df {}), tv {tv:.4}",
        df.saturating_sub(1)
    );
    assert!(
        chi2 <= crit,
        "{label}: counts {got:?} do not follow {want:?} (chi2 {chi2:.1} > {crit:.1})"
    );
}

fn params(temperature: f32, top_k: usize, top_p: f32, min_p: f32, seed: u64) -> SamplerParams {
    SamplerParams {
        temperature,
        top_k,
        top_p,
        min_p,
        seed: Some(seed),
        ..SamplerParams::default()
    }
}

#[test]
fn temperature_draws_follow_the_softmax() {
    for (i, t) in [0.5, 1.0, 1.7].into_iter().enumerate() {
        check(
            &format!("temperature {t}"),
            params(t, 0, 1.0, 0.0, 11 + i as u64),
        );
    }
}

#[test]
fn top_k_keeps_exactly_the_k_best_and_their_ties() {
    // k = 3 ends inside the 1.1/1.1 tie: both stay (4 tokens)
    for (i, k) in [1, 3, 5].into_iter().enumerate() {
        check(
            &format!("top_k {k}"),
            params(1.0, k, 1.0, 0.0, 21 + i as u64),
        );
    }
}

#[test]
fn top_p_keeps_the_smallest_nucleus() {
    for (i, top_p) in [0.3, 0.6, 0.9].into_iter().enumerate() {
        check(
            &format!("top_p {top_p}"),
            params(1.0, 0, top_p, 0.0, 31 + i as u64),
        );
    }
}

#[test]
fn min_p_drops_tokens_below_a_share_of_the_best() {
    for (i, min_p) in [0.05, 0.2, 0.5].into_iter().enumerate() {
        check(
            &format!("min_p {min_p}"),
            params(1.0, 0, 1.0, min_p, 41 + i as u64),
        );
    }
}

#[test]
fn filters_combine_in_the_documented_order() {
    check("t 0.8, top_k 6, top_p 0.8", params(0.8, 6, 0.8, 0.0, 51));
    check("t 1.3, min_p 0.1, top_p 0.9", params(1.3, 0, 0.9, 0.1, 52));
    check(
        "t 1.0, top_k 8, min_p 0.05, top_p 0.95",
        params(1.0, 8, 0.95, 0.05, 53),
    );
}

#[test]
fn a_wrong_distribution_fails_the_check() {
    // The test's own power: temperature 1.0 draws judged against temperature 1.2's softmax.
    let drawn = draw(&params(1.0, 0, 1.0, 0.0, 61));
    let want = exact(&params(1.2, 0, 1.0, 0.0, 61));
    let n = DRAWS as f64;
    let chi2: f64 = want
        .iter()
        .zip(&drawn)
        .map(|(&q, &c)| (c as f64 - n * q).powi(2) / (n * q))
        .sum();
    assert!(chi2 > chi2_critical(LOGITS.len() - 1), "chi2 {chi2}");
}

/// `Sampler::process` on LOGITS after a prompt and some generated tokens.
fn processed(p: SamplerParams, prompt: &[u32], generated: &[u32]) -> Vec<f32> {
    let mut s = Sampler::with_prompt(p, prompt).unwrap();
    for &t in generated {
        s.observe(t);
    }
    let logits = Array::from_slice(&LOGITS, &[1, LOGITS.len() as i32]).unwrap();
    s.process(&logits).unwrap().to_vec::<f32>().unwrap()
}

#[test]
fn penalties_move_logits_in_the_defined_direction_and_amount() {
    let prompt = [0, 6];
    let generated = [1, 1, 1, 7];
    // repetition (Hugging Face): every token seen once or more, prompt included, once
    let r = 1.5;
    let got = processed(
        SamplerParams {
            repetition_penalty: r,
            ..SamplerParams::greedy()
        },
        &prompt,
        &generated,
    );
    for (i, (&g, &l)) in got.iter().zip(&LOGITS).enumerate() {
        let want = match i {
            0 | 1 => l / r, // positive: divided
            6 | 7 => l * r, // negative: multiplied
            _ => l,         // unseen
        };
        assert!(
            (g - want).abs() < 1e-6,
            "repetition: token {i}: {g} vs {want}"
        );
    }
    // presence and frequency (OpenAI): generated tokens only, frequency per occurrence
    let (pres, freq) = (0.5, 0.25);
    let got = processed(
        SamplerParams {
            presence_penalty: pres,
            frequency_penalty: freq,
            ..SamplerParams::greedy()
        },
        &prompt,
        &generated,
    );
    for (i, (&g, &l)) in got.iter().zip(&LOGITS).enumerate() {
        let count = generated.iter().filter(|&&t| t == i as u32).count() as f32;
        let want = l - count * freq - if count > 0.0 { pres } else { 0.0 };
        assert!(
            (g - want).abs() < 1e-6,
            "presence/frequency: token {i}: {g} vs {want}"
        );
    }
    // negative values reward repetition instead
    let got = processed(
        SamplerParams {
            presence_penalty: -1.0,
            ..SamplerParams::greedy()
        },
        &prompt,
        &generated,
    );
    assert!((got[1] - (LOGITS[1] + 1.0)).abs() < 1e-6);
    assert_eq!(got[0], LOGITS[0], "the prompt does not count for presence");
}

fn log_softmax(l: &[f32]) -> Vec<f64> {
    let m = l.iter().copied().fold(f32::NEG_INFINITY, f32::max) as f64;
    let lse = m + l.iter().map(|&x| (x as f64 - m).exp()).sum::<f64>().ln();
    l.iter().map(|&x| x as f64 - lse).collect()
}

#[test]
fn logprobs_are_the_log_softmax_of_the_logits() {
    let v = LOGITS.len() as i32;
    let logits = Array::from_slice(&LOGITS, &[1, v]).unwrap();
    let chosen = Array::from_slice(&[6u32], &[1]).unwrap();
    let (lp, top, top_lp) = sampler::logprobs(&logits, &chosen, 4).unwrap();
    let want = log_softmax(&LOGITS);
    assert!((lp.to_vec::<f32>().unwrap()[0] as f64 - want[6]).abs() < 1e-6);
    let top = top.to_vec::<u32>().unwrap();
    let top_lp = top_lp.to_vec::<f32>().unwrap();
    let mut best: Vec<usize> = (0..LOGITS.len()).collect();
    best.sort_by(|&a, &b| want[b].partial_cmp(&want[a]).unwrap());
    let mut got: Vec<(u32, f32)> = top.into_iter().zip(top_lp).collect();
    got.sort_by(|a, b| b.1.partial_cmp(&a.1).unwrap());
    assert_eq!(got[0].0 as usize, best[0]);
    // the 1.1/1.1 tie may come in either order
    for (t, l) in got {
        assert!((l as f64 - want[t as usize]).abs() < 1e-6, "token {t}");
        assert!(
            want[t as usize] >= want[best[3]] - 1e-12,
            "token {t} is not among the 4 best"
        );
    }
}

/// End to end: the logprobs the engine reports for the first generated token are
/// log_softmax of mlx-lm's logits at the prompt's last position.
#[test]
fn engine_logprobs_match_log_softmax_of_mlx_lm_logits() {
    let r = common::Reference::mlx_lm("tiny-llama");
    let v = r.vocab();
    let last = &r.prompt_logits[(r.prompt.len() - 1) * v..r.prompt.len() * v];
    let want = log_softmax(last);
    let engine = EngineHandle::load(
        &common::fixtures().join("tiny-llama"),
        EngineConfig {
            kv_memory_bytes: Some(16 << 20),
            // mlx-lm's float32 logits: the cache as computed
            compute: ComputeOptions::exact_cache(),
            ..Default::default()
        },
    )
    .unwrap();
    let params = RequestParams {
        max_tokens: 1,
        sampler: SamplerParams::greedy(),
        ignore_eos: true,
        logprobs: Some(5),
        ..Default::default()
    };
    let mut s = engine.submit(r.prompt.clone(), params).unwrap();
    let mut first = None;
    while let Some(ev) = s.blocking_recv() {
        if let Event::Delta { logprobs, .. } = ev {
            if first.is_none() {
                first = logprobs.into_iter().next();
            }
        }
    }
    let first = first.expect("a logprob for the first token");
    assert_eq!(first.token, r.decode[0] as u32, "greedy token");
    assert!((first.logprob as f64 - want[first.token as usize]).abs() < 1e-4);
    assert_eq!(first.top.len(), 5);
    for t in &first.top {
        assert!(
            (t.logprob as f64 - want[t.token as usize]).abs() < 1e-4,
            "token {}: {} vs {}",
            t.token,
            t.logprob,
            want[t.token as usize]
        );
    }
}
