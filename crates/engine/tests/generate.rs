//! The generation loop and sampler on a tiny model: greedy equals mlx-lm's greedy tokens,
//! seeds reproduce, top-k=1 and tiny top-p collapse to greedy, stop tokens and max_tokens end it.
mod common;
use cortex_engine::generate::{FinishReason, Flow, GenerateParams, Generator};
use cortex_engine::{LoadedModel, SamplerParams};
use cortex_mlx::load_safetensors;

fn tiny() -> (LoadedModel, Vec<u32>, Vec<u32>, Vec<f32>) {
    let fx = common::fixtures();
    let model = cortex_engine::load(&fx.join("tiny-llama")).unwrap();
    let refs = load_safetensors(&fx.join("refs/tiny-llama.safetensors"))
        .unwrap()
        .tensors;
    let ids = |k: &str| {
        refs[k]
            .to_vec::<i32>()
            .unwrap()
            .iter()
            .map(|&t| t as u32)
            .collect::<Vec<u32>>()
    };
    let margins = refs["decode_margin"].to_vec::<f32>().unwrap();
    (model, ids("prompt_tokens"), ids("decode_tokens"), margins)
}

fn run(model: &LoadedModel, prompt: &[u32], params: &GenerateParams) -> (Vec<u32>, FinishReason) {
    let (ids, stats) = Generator::new(model.model.as_ref())
        .generate(prompt, params, |_| Flow::Continue)
        .unwrap();
    assert_eq!(stats.completion_tokens, ids.len());
    assert_eq!(stats.prompt_tokens, prompt.len());
    (ids, stats.finish_reason)
}

fn params(max_tokens: usize, sampler: SamplerParams) -> GenerateParams {
    GenerateParams {
        max_tokens,
        sampler,
        stop_token_ids: vec![],
        prefill_step: 24,
    }
}

#[test]
fn greedy_matches_mlx_lm_with_chunked_prefill() {
    let (model, prompt, want, margins) = tiny();
    // compare up to the first step whose top-2 margin is within float noise
    let n = margins.iter().position(|m| *m < 1e-3).unwrap_or(want.len());
    assert!(n >= 8, "reference margins too small to compare ({n})");
    let (got, finish) = run(&model, &prompt, &params(n, SamplerParams::greedy()));
    assert_eq!(got, want[..n]);
    assert_eq!(finish, FinishReason::Length);
}

#[test]
fn seeds_reproduce_and_differ() {
    let (model, prompt, _, _) = tiny();
    let s = |seed| SamplerParams {
        temperature: 1.5,
        seed: Some(seed),
        ..Default::default()
    };
    let a = run(&model, &prompt, &params(24, s(1))).0;
    let b = run(&model, &prompt, &params(24, s(1))).0;
    let c = run(&model, &prompt, &params(24, s(2))).0;
    assert_eq!(a, b);
    assert_ne!(a, c);
}

#[test]
fn top_k_one_and_tiny_top_p_are_greedy() {
    let (model, prompt, _, _) = tiny();
    let greedy = run(&model, &prompt, &params(8, SamplerParams::greedy())).0;
    let k1 = SamplerParams {
        temperature: 1.0,
        top_k: 1,
        seed: Some(3),
        ..Default::default()
    };
    assert_eq!(run(&model, &prompt, &params(8, k1)).0, greedy);
    let p = SamplerParams {
        temperature: 1.0,
        top_p: 1e-6,
        seed: Some(4),
        ..Default::default()
    };
    assert_eq!(run(&model, &prompt, &params(8, p)).0, greedy);
    let m = SamplerParams {
        temperature: 1.0,
        min_p: 1.0,
        seed: Some(5),
        ..Default::default()
    };
    assert_eq!(run(&model, &prompt, &params(8, m)).0, greedy);
}

#[test]
fn stop_tokens_and_callback_end_generation() {
    let (model, prompt, _, _) = tiny();
    let greedy = run(&model, &prompt, &params(12, SamplerParams::greedy())).0;
    let stop = greedy[5];
    let first = greedy.iter().position(|t| *t == stop).unwrap();
    let mut p = params(12, SamplerParams::greedy());
    p.stop_token_ids = vec![stop];
    let (ids, finish) = run(&model, &prompt, &p);
    assert_eq!(finish, FinishReason::Stop);
    assert_eq!(ids, greedy[..first]);

    let mut seen = 0;
    let (ids, stats) = Generator::new(model.model.as_ref())
        .generate(&prompt, &params(12, SamplerParams::greedy()), |_| {
            seen += 1;
            if seen == 3 {
                Flow::Stop
            } else {
                Flow::Continue
            }
        })
        .unwrap();
    assert_eq!(ids.len(), 3);
    assert_eq!(stats.finish_reason, FinishReason::Cancelled);
    assert!(Generator::new(model.model.as_ref())
        .generate(&[], &params(4, SamplerParams::greedy()), |_| Flow::Continue)
        .is_err());
}
