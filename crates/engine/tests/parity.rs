//! Logit parity with mlx-lm: every tiny model of tests/fixtures/generated (random weights,
//! odd sizes, GQA, tied/untied, sharded, 4- and 8-bit MLX format) must give logits within
//! 1e-4 of mlx-lm's for a 64-token prompt and 16 decode steps through the KV cache.
mod common;

const TOL: f32 = 1e-4;

fn check_model(name: &str) {
    let model = cortex_engine::load(&common::fixtures().join(name))
        .unwrap_or_else(|e| panic!("{name}: {e}"));
    let reference = common::Reference::mlx_lm(name);
    let d = common::compare(&model, &reference, usize::MAX);
    assert!(
        d.prompt <= TOL,
        "{name}: prompt logits differ from mlx-lm by {}",
        d.prompt
    );
    for (i, step) in d.decode.iter().enumerate() {
        assert!(
            *step <= TOL,
            "{name}: decode step {i} logits differ from mlx-lm by {step}"
        );
    }
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
