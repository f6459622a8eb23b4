//! Helpers shared by the engine's integration tests.
#![allow(dead_code)]
use std::path::PathBuf;

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

/// tests/fixtures/generated, made by tests/fixtures/make_all.sh. Missing fixtures fail the
/// test with the command that makes them (never a silent pass).
pub fn fixtures() -> PathBuf {
    let dir = root().join("tests/fixtures/generated");
    assert!(
        dir.join("manifest.json").exists(),
        "test fixtures missing: run `PYTHON=.venv/bin/python bash tests/fixtures/make_all.sh` (scripts/test.sh does)"
    );
    dir
}

pub fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len(), "lengths differ");
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

/// Copies the fixture model `name` (tests/fixtures/generated/NAME) into `to`, which a test may
/// then damage.
pub fn copy_model(name: &str, to: &std::path::Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(fixtures().join(name)).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

pub fn scratch_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cortex-test-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// A logits reference (mlx-lm's or transformers'): a prompt, its logits at every position, and
/// decode tokens fed one at a time with the logits after each ([16, V] flattened).
pub struct Reference {
    pub prompt: Vec<u32>,
    pub prompt_logits: Vec<f32>,
    pub decode: Vec<i32>,
    pub decode_logits: Vec<f32>,
}

impl Reference {
    pub fn from_tensors(t: &std::collections::BTreeMap<String, cortex_mlx::Array>) -> Reference {
        let r = Reference {
            prompt: t["prompt_tokens"]
                .to_vec::<i32>()
                .unwrap()
                .iter()
                .map(|&x| x as u32)
                .collect(),
            prompt_logits: t["prompt_logits"].to_vec::<f32>().unwrap(),
            decode: t["decode_tokens"].to_vec::<i32>().unwrap(),
            decode_logits: t["decode_logits"].to_vec::<f32>().unwrap(),
        };
        assert!(
            r.prompt.len() >= 64 && r.decode.len() >= 16,
            "reference too short"
        );
        assert_eq!(
            r.decode_logits.len(),
            r.vocab() * r.decode.len(),
            "reference shapes disagree"
        );
        r
    }

    /// A reference file in the layout above (mlx-lm's, transformers', llama.cpp's).
    pub fn from_file(path: &std::path::Path) -> Reference {
        let st = cortex_mlx::load_safetensors(path)
            .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        Reference::from_tensors(&st.tensors)
    }

    /// tests/fixtures/generated/refs/<name>.safetensors (mlx-lm).
    pub fn mlx_lm(name: &str) -> Reference {
        let path = fixtures().join("refs").join(format!("{name}.safetensors"));
        Reference::from_tensors(&cortex_mlx::load_safetensors(&path).unwrap().tensors)
    }

    /// tests/fixtures/generated/refs/<name>.bf16.safetensors: mlx-lm in bfloat16, fed the same
    /// prompt and decode tokens as [`Reference::mlx_lm`].
    pub fn mlx_lm_bf16(name: &str) -> Reference {
        let path = fixtures()
            .join("refs")
            .join(format!("{name}.bf16.safetensors"));
        Reference::from_tensors(&cortex_mlx::load_safetensors(&path).unwrap().tensors)
    }

    pub fn vocab(&self) -> usize {
        self.prompt_logits.len() / self.prompt.len()
    }
}

/// Max |ours - reference| over the prompt logits, and per decode step, running `model` through
/// a fresh cache exactly as the reference was made.
pub struct Diffs {
    pub prompt: f32,
    pub decode: Vec<f32>,
}

/// `model`'s logits for the reference's prompt, then for each of its first `decode_steps`
/// decode tokens, through a fresh cache exactly as the reference was made.
pub fn logits(
    model: &cortex_engine::LoadedModel,
    r: &Reference,
    decode_steps: usize,
) -> (Vec<f32>, Vec<Vec<f32>>) {
    use cortex_engine::cache::{KvCache, SimpleKvCache};
    let mut cache = SimpleKvCache::new(model.model.num_layers());
    let forward = |x: &cortex_mlx::Array, cache: &mut SimpleKvCache| {
        model.model.forward(x, cache).unwrap().to_f32_vec().unwrap()
    };
    let prompt = forward(
        &cortex_engine::generate::tokens_array(&r.prompt).unwrap(),
        &mut cache,
    );
    let decode = r.decode[..decode_steps.min(r.decode.len())]
        .iter()
        .map(|&t| {
            forward(
                &cortex_mlx::Array::from_slice(&[t], &[1, 1]).unwrap(),
                &mut cache,
            )
        })
        .collect::<Vec<_>>();
    assert_eq!(
        cache.offset(),
        (r.prompt.len() + decode.len()) as i32,
        "cache length"
    );
    (prompt, decode)
}

pub fn compare(model: &cortex_engine::LoadedModel, r: &Reference, decode_steps: usize) -> Diffs {
    let (got, steps) = logits(model, r, decode_steps);
    let v = r.vocab();
    Diffs {
        prompt: max_abs_diff(&got, &r.prompt_logits),
        decode: steps
            .iter()
            .enumerate()
            .map(|(i, got)| max_abs_diff(got, &r.decode_logits[i * v..(i + 1) * v]))
            .collect(),
    }
}
