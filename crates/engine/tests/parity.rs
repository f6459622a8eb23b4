//! Logit parity with mlx-lm: every tiny model of tests/fixtures/generated (random weights,
//! odd sizes, GQA, tied/untied, sharded, MLX format at 2, 3, 4, 5, 6 and 8 bits) must give logits within
//! 1e-4 of mlx-lm's for a 64-token prompt and 16 decode steps through the KV cache, on each
//! code path the engine has (cortex_engine::compute): the CPU path with its AVX2 kernels and
//! with its portable ones, and the GPU path (MLX's quantized matmul, padded attention) in
//! float32, here on MLX's CPU backend. The GPU path in bfloat16 is held to what mlx-lm itself
//! loses in bfloat16 (see `BF16_FACTOR`).
mod common;
use cortex_engine::{ComputeDtype, ComputeOptions};

const TOL: f32 = 1e-4;

/// Every float32 path: (label, options).
fn float32_paths() -> [(&'static str, ComputeOptions); 3] {
    [
        ("cpu path", ComputeOptions::cpu()),
        (
            "cpu path, scalar kernels",
            ComputeOptions {
                scalar_kernels: true,
                ..ComputeOptions::cpu()
            },
        ),
        ("gpu path", ComputeOptions::gpu(ComputeDtype::Float32)),
    ]
}

fn check_model(name: &str) {
    let reference = common::Reference::mlx_lm(name);
    for (path, options) in float32_paths() {
        let model = cortex_engine::load_with(&common::fixtures().join(name), &options)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let d = common::compare(&model, &reference, usize::MAX);
        assert!(
            d.prompt <= TOL,
            "{name} ({path}): prompt logits differ from mlx-lm by {}",
            d.prompt
        );
        for (i, step) in d.decode.iter().enumerate() {
            assert!(
                *step <= TOL,
                "{name} ({path}): decode step {i} logits differ from mlx-lm by {step}"
            );
        }
    }
    check_bf16(name, &reference);
}

/// The GPU path in bfloat16 against mlx-lm in float32. bfloat16 keeps 8 significant bits, so
/// logits move by far more than 1e-4 (0.04-0.25 on these models); how far depends on the
/// model. The yardstick is mlx-lm running the same model in bfloat16 on the same tokens
/// (refs/NAME.bf16.safetensors): ours may lose at most `BF16_FACTOR` times what it loses. The
/// two round at the same points where they run the same MLX ops (measured ratio 1.00 on most
/// fixtures) and differ where our layers are composed differently (0.85 on gemma3, 0.96 on
/// qwen2, 1.01 on gemma2); 1.5 leaves room for that and still fails a layer that computes in
/// the wrong precision (float16 overflow, an unrounded residual: 2x and more).
fn check_bf16(name: &str, reference: &common::Reference) {
    const BF16_FACTOR: f32 = 1.5;
    let theirs = common::Reference::mlx_lm_bf16(name);
    assert_eq!(
        theirs.prompt, reference.prompt,
        "{name}: bf16 reference tokens"
    );
    assert_eq!(
        theirs.decode, reference.decode,
        "{name}: bf16 reference tokens"
    );
    let mlx_lm_loss = common::max_abs_diff(&theirs.prompt_logits, &reference.prompt_logits).max(
        common::max_abs_diff(&theirs.decode_logits, &reference.decode_logits),
    );
    let model = cortex_engine::load_with(
        &common::fixtures().join(name),
        &ComputeOptions::gpu(ComputeDtype::Bfloat16),
    )
    .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(model.dtype, cortex_mlx::Dtype::Bfloat16);
    let d = common::compare(&model, reference, usize::MAX);
    let ours = d.decode.iter().copied().fold(d.prompt, f32::max);
    eprintln!(
        "{name}: bfloat16 gpu path vs mlx-lm float32: {ours:.4} (mlx-lm bfloat16: {mlx_lm_loss:.4}, ratio {:.2})",
        ours / mlx_lm_loss
    );
    assert!(
        mlx_lm_loss > 0.0,
        "{name}: mlx-lm's bfloat16 logits equal its float32 ones: the bf16 reference is not bf16"
    );
    assert!(
        ours <= BF16_FACTOR * mlx_lm_loss,
        "{name}: bfloat16 logits differ from mlx-lm's float32 by {ours}, over {BF16_FACTOR}x \
         what mlx-lm's own bfloat16 run loses ({mlx_lm_loss})"
    );
}

#[test]
fn llama_matches_mlx_lm() {
    check_model("tiny-llama");
}

#[test]
fn llama_sharded_matches_mlx_lm() {
    check_model("tiny-llama-sharded");
}

#[test]
fn llama_tied_head_dim_override_matches_mlx_lm() {
    check_model("tiny-llama-tied");
}

#[test]
fn mistral_alias_matches_mlx_lm() {
    check_model("tiny-mistral");
}

#[test]
fn mlx_format_4bit_matches_mlx_lm() {
    check_model("tiny-llama-q4");
}

#[test]
fn mlx_format_8bit_matches_mlx_lm() {
    check_model("tiny-llama-q8");
}

#[test]
fn mlx_format_2bit_matches_mlx_lm() {
    check_model("tiny-llama-q2");
}

#[test]
fn mlx_format_3bit_matches_mlx_lm() {
    check_model("tiny-llama-q3");
}

#[test]
fn mlx_format_5bit_matches_mlx_lm() {
    check_model("tiny-llama-q5");
}

#[test]
fn mlx_format_6bit_matches_mlx_lm() {
    check_model("tiny-llama-q6");
}

#[test]
fn qwen2_matches_mlx_lm() {
    check_model("tiny-qwen2");
}

#[test]
fn qwen3_matches_mlx_lm() {
    check_model("tiny-qwen3");
}

#[test]
fn phi3_matches_mlx_lm() {
    check_model("tiny-phi3");
}

#[test]
fn gemma2_matches_mlx_lm() {
    check_model("tiny-gemma2");
}

#[test]
fn gemma3_matches_mlx_lm() {
    check_model("tiny-gemma3");
}

#[test]
fn gemma1_matches_mlx_lm() {
    check_model("tiny-gemma");
}

/// A multimodal Gemma 3 checkpoint ("gemma3", config under text_config, tensors under
/// language_model., a vision tower): the text model runs, the vision weights are dropped.
#[test]
fn gemma3_multimodal_checkpoint_matches_mlx_lm() {
    check_model("tiny-gemma3-vlm");
}

#[test]
fn gemma3_six_layer_pattern_matches_mlx_lm() {
    check_model("tiny-gemma3-6layer");
}

// ---- the int8-activation path (cortex_engine::compute, opt-in on the CPU) ----

/// How far the logits of the tiny 4- and 8-bit models may move, as a fraction of the largest
/// logit, on the int8 path: decode's quantized matmuls round their activations to int8 per
/// group (twice: x, then its remainder) and the KV cache holds int8 rows. Measured
/// (eighteenth session): prompt 7.9e-3 (q4) and 7.1e-3 (q8), decode at most 6.5e-3 and 7.9e-3
/// over the 16 steps; with the float16 cache before it, decode moved by 1.9e-4 and 2.2e-4, so
/// the cache's rows are most of it (these fixtures' random keys and values have no structure
/// for a row's scale to follow). One rounding of the activations alone moved them by 0.06, a
/// wrong scale, group or bias term by the whole logit range.
const INT8_REL_TOL: f32 = 2e-2;
/// Above this top-2 margin (in logits) the greedy token must not flip.
const INT8_MARGIN: f32 = 0.01;
/// The same bound for the float path as it runs by default, its KV cache in float16 (each key
/// and value rounded once, a relative error up to 2^-11). Measured (twenty-second session):
/// prompt 3.3e-4 (tiny-llama), 2.6e-4 (q4), 2.4e-4 (q8); decode at most 2.7e-4, 3.9e-4 and
/// 2.6e-4 over the 16 steps, all above the exact path's 1e-4. A cache that kept fewer bits
/// than float16, or was read back at the wrong positions, moves them by far more.
const HALF_REL_TOL: f32 = 1e-3;

fn argmax(v: &[f32]) -> usize {
    (0..v.len()).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

/// The second-largest value's gap to the largest: how much rounding the top token survives.
fn margin(v: &[f32]) -> f32 {
    let top = argmax(v);
    let second = (0..v.len())
        .filter(|&i| i != top)
        .map(|i| v[i])
        .fold(f32::MIN, f32::max);
    v[top] - second
}

/// The prompt's then each decode step's logits with `options`, fed mlx-lm's decode tokens.
fn decode_logits(
    name: &str,
    options: &ComputeOptions,
    r: &common::Reference,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    let model = cortex_engine::load_with(&common::fixtures().join(name), options)
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    assert_eq!(
        model.compute.int8_activations,
        options.int8_activations == Some(true)
    );
    assert_eq!(model.compute.half_kv, options.half_kv == Some(true));
    common::logits(&model, r, usize::MAX)
}

/// With `options` (`path`: what it is called), the prompt's logits (more than 8 rows: float
/// matmuls, dequantize + BLAS, but attention over the path's KV cache) and each decode step's
/// stay within `tol` of mlx-lm's (relative to the largest logit), the greedy token is the same
/// wherever mlx-lm's top-2 margin is over INT8_MARGIN, and the path was really taken (the
/// logits differ from the exact path's).
fn check_close(name: &str, path: &str, options: &ComputeOptions, tol: f32) {
    let r = common::Reference::mlx_lm(name);
    let (prompt, steps) = decode_logits(name, options, &r);
    let (_, exact) = decode_logits(name, &ComputeOptions::cpu(), &r);
    let scale = r.prompt_logits.iter().fold(0f32, |m, x| m.max(x.abs()));
    let moved = common::max_abs_diff(&prompt, &r.prompt_logits) / scale;
    assert!(
        moved <= tol,
        "{name}: prompt logits moved by {moved} of the largest"
    );
    eprintln!("{name}: the {path} path's cache moves prompt logits by {moved:.2e} of the largest");
    let v = r.vocab();
    let mut worst = 0f32;
    for (i, got) in steps.iter().enumerate() {
        let want = &r.decode_logits[i * v..(i + 1) * v];
        let scale = want.iter().fold(0f32, |m, x| m.max(x.abs()));
        let moved = common::max_abs_diff(got, want) / scale;
        worst = worst.max(moved);
        assert!(
            moved <= tol,
            "{name}: decode step {i} moved by {moved} of the largest logit (over {tol})"
        );
        if margin(want) > INT8_MARGIN {
            assert_eq!(
                argmax(got),
                argmax(want),
                "{name}: decode step {i}'s greedy token"
            );
        }
    }
    eprintln!("{name}: the {path} path moves decode logits by at most {worst:.2e} of the largest");
    assert!(
        steps != exact,
        "{name}: {path} decode equals the exact path: the switch was not taken"
    );
}

#[test]
fn int8_activations_stay_close_to_mlx_lm_at_4_and_8_bits() {
    for name in ["tiny-llama-q4", "tiny-llama-q8"] {
        check_close(name, "int8", &ComputeOptions::cpu_int8(), INT8_REL_TOL);
    }
}

#[test]
fn the_float16_cache_stays_close_to_mlx_lm() {
    for name in ["tiny-llama", "tiny-llama-q4", "tiny-llama-q8"] {
        check_close(
            name,
            "float16-cache",
            &ComputeOptions::cpu_half_kv(),
            HALF_REL_TOL,
        );
    }
}
