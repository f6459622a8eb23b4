//! Logit parity with mlx-lm: every tiny model of tests/fixtures/generated (random weights,
//! odd sizes, GQA, tied/untied, sharded, 4- and 8-bit MLX format) must give logits within
//! 1e-4 of mlx-lm's for a 64-token prompt and 16 decode steps through the KV cache.
mod common;
use cortex_engine::cache::SimpleKvCache;
use cortex_engine::generate::tokens_array;
use cortex_mlx::{load_safetensors, Array};

const TOL: f32 = 1e-4;

fn check_model(name: &str) {
    let fx = common::fixtures();
    let model = cortex_engine::load(&fx.join(name)).unwrap_or_else(|e| panic!("{name}: {e}"));
    let refs = load_safetensors(&fx.join("refs").join(format!("{name}.safetensors")))
        .unwrap()
        .tensors;
    let prompt: Vec<u32> = refs["prompt_tokens"]
        .to_vec::<i32>()
        .unwrap()
        .iter()
        .map(|&t| t as u32)
        .collect();
    let want_prompt = refs["prompt_logits"].to_vec::<f32>().unwrap();
    let decode: Vec<i32> = refs["decode_tokens"].to_vec::<i32>().unwrap();
    let want_decode = refs["decode_logits"].to_vec::<f32>().unwrap();
    assert!(
        prompt.len() >= 64 && decode.len() >= 16,
        "{name}: reference too short"
    );

    let mut cache = SimpleKvCache::new(model.model.num_layers());
    let logits = model
        .model
        .forward(&tokens_array(&prompt).unwrap(), &mut cache)
        .unwrap();
    let got = logits.to_f32_vec().unwrap();
    let d = common::max_abs_diff(&got, &want_prompt);
    assert!(d <= TOL, "{name}: prompt logits differ from mlx-lm by {d}");

    let vocab = want_decode.len() / decode.len();
    for (i, &tok) in decode.iter().enumerate() {
        let x = Array::from_slice(&[tok], &[1, 1]).unwrap();
        let got = model
            .model
            .forward(&x, &mut cache)
            .unwrap()
            .to_f32_vec()
            .unwrap();
        let d = common::max_abs_diff(&got, &want_decode[i * vocab..(i + 1) * vocab]);
        assert!(
            d <= TOL,
            "{name}: decode step {i} logits differ from mlx-lm by {d}"
        );
    }
    assert_eq!(cache_len(&cache), (prompt.len() + decode.len()) as i32);
}

fn cache_len(c: &SimpleKvCache) -> i32 {
    use cortex_engine::cache::KvCache;
    c.offset()
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
