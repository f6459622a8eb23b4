//! The converter against mlx_lm.convert (run at test time on the same input and options):
//! same tensor names, shapes, dtypes and bytes (bit-equal packed weights, scales, biases),
//! same config.json, format=mlx metadata; our engine's logits on our output equal its logits
//! on mlx_lm's output; mlx_lm loads our output. Plus the failure paths: cancellation mid-way
//! leaves nothing that looks finished, existing destination, bad quantization parameters,
//! already-quantized or unsupported sources, and sharding with a tiny shard limit.
use cortex_engine::cache::SimpleKvCache;
use cortex_hub::convert::{self, ConvertOptions, QuantizeOptions};
use cortex_hub::ConvertError;
use cortex_mlx::{Array, Dtype};
use serde_json::Value;
use std::collections::BTreeMap;
use std::ops::ControlFlow;
use std::path::{Path, PathBuf};
use std::process::Command;

fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn fixture(name: &str) -> PathBuf {
    let dir = root().join("tests/fixtures/generated").join(name);
    assert!(
        dir.join("config.json").exists(),
        "test fixtures missing: run `PYTHON=.venv/bin/python bash tests/fixtures/make_all.sh`"
    );
    dir
}

fn python() -> PathBuf {
    std::env::var_os("CORTEX_TEST_PYTHON")
        .map(PathBuf::from)
        .unwrap_or_else(|| root().join(".venv/bin/python"))
}

fn scratch(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("cortex-hub-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn no_progress(_: &convert::ConvertProgress) -> ControlFlow<()> {
    ControlFlow::Continue(())
}

fn run_ours(src: &Path, dest: &Path, opts: &ConvertOptions) -> convert::ConvertReport {
    convert::convert(src, dest, opts, &mut no_progress)
        .unwrap_or_else(|e| panic!("convert {}: {e}", src.display()))
}

fn run_mlx_lm(src: &Path, dest: &Path, q: Option<QuantizeOptions>, dtype: &str) {
    let mut cmd = Command::new(python());
    cmd.args(["-m", "mlx_lm", "convert", "--hf-path"])
        .arg(src)
        .arg("--mlx-path")
        .arg(dest)
        .args(["--dtype", dtype]);
    if let Some(q) = q {
        cmd.args(["-q", "--q-bits", &q.bits.to_string()])
            .args(["--q-group-size", &q.group_size.to_string()]);
    }
    let out = cmd.output().expect("run mlx_lm (set CORTEX_TEST_PYTHON)");
    assert!(
        out.status.success(),
        "mlx_lm convert failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

struct Tensors {
    arrays: BTreeMap<String, Array>,
    metadata: Vec<BTreeMap<String, String>>,
}

fn read_tensors(dir: &Path) -> Tensors {
    let mut arrays = BTreeMap::new();
    let mut metadata = Vec::new();
    for f in cortex_engine::weights::safetensors_files(dir).unwrap() {
        let st = cortex_mlx::load_safetensors(&f).unwrap();
        arrays.extend(st.tensors);
        metadata.push(st.metadata);
    }
    Tensors { arrays, metadata }
}

fn read_json(path: &Path) -> Value {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn logits(dir: &Path) -> Vec<f32> {
    let m = cortex_engine::load(dir).unwrap_or_else(|e| panic!("load {}: {e}", dir.display()));
    let tokens: Vec<i32> = (0..24).map(|i| (i * 37 + 5) % 250).collect();
    let x = Array::from_slice(&tokens, &[1, tokens.len() as i32]).unwrap();
    let mut cache = SimpleKvCache::new(m.model.num_layers());
    let y = m.model.forward(&x, &mut cache).unwrap();
    y.astype(Dtype::Float32).unwrap().to_f32_vec().unwrap()
}

fn assert_same_tensors(ours: &Path, theirs: &Path) {
    let (a, b) = (read_tensors(ours), read_tensors(theirs));
    let names = |t: &Tensors| t.arrays.keys().cloned().collect::<Vec<_>>();
    assert_eq!(names(&a), names(&b), "tensor names differ");
    for (name, x) in &a.arrays {
        let y = &b.arrays[name];
        assert_eq!(x.shape(), y.shape(), "{name}: shape");
        assert_eq!(x.dtype(), y.dtype(), "{name}: dtype");
        assert!(
            x.to_bytes().unwrap() == y.to_bytes().unwrap(),
            "{name}: bytes differ"
        );
    }
    for m in &a.metadata {
        assert_eq!(m.get("format").map(String::as_str), Some("mlx"));
    }
}

fn mlx_lm_loads(dir: &Path) {
    let code = "import sys; from pathlib import Path; from mlx_lm.utils import load_model; \
                load_model(Path(sys.argv[1])); print('ok')";
    let out = Command::new(python())
        .args(["-c", code])
        .arg(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "mlx_lm cannot load {}: {}",
        dir.display(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The whole parity check for one model and one set of options.
fn parity(model: &str, q: Option<QuantizeOptions>, dtype: &str) {
    let tag = match q {
        Some(q) => format!("{model}-q{}g{}-{dtype}", q.bits, q.group_size),
        None => format!("{model}-{dtype}"),
    };
    let dir = scratch(&tag);
    let (ours, theirs) = (dir.join("ours"), dir.join("theirs"));
    let src = fixture(model);
    let opts = ConvertOptions {
        quantize: q,
        dtype: Some(convert::parse_dtype(dtype).unwrap()),
        ..Default::default()
    };
    let report = run_ours(&src, &ours, &opts);
    run_mlx_lm(&src, &theirs, q, dtype);

    assert_same_tensors(&ours, &theirs);
    assert_eq!(
        read_json(&ours.join("config.json")),
        read_json(&theirs.join("config.json")),
        "{tag}: config.json differs"
    );
    let (ia, ib) = (
        read_json(&ours.join("model.safetensors.index.json")),
        read_json(&theirs.join("model.safetensors.index.json")),
    );
    assert_eq!(ia, ib, "{tag}: index differs");
    assert_eq!(report.shards, 1);
    let scales = read_tensors(&theirs)
        .arrays
        .keys()
        .filter(|k| k.ends_with(".scales"))
        .count();
    assert_eq!(report.quantized_layers, scales, "{tag}: quantized layers");
    for f in ["tokenizer.json", "tokenizer_config.json", "README.md"] {
        assert!(ours.join(f).exists(), "{tag}: {f} missing");
    }

    let (la, lb) = (logits(&ours), logits(&theirs));
    let d = la
        .iter()
        .zip(&lb)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0f32, f32::max);
    assert!(d <= 1e-5, "{tag}: logits differ by {d}");
    mlx_lm_loads(&ours);
    let _ = std::fs::remove_dir_all(&dir);
}

const Q4G64: QuantizeOptions = QuantizeOptions {
    bits: 4,
    group_size: 64,
};
const Q8G32: QuantizeOptions = QuantizeOptions {
    bits: 8,
    group_size: 32,
};

#[test]
fn llama_4bit_g64_matches_mlx_lm() {
    parity("tiny-llama", Some(Q4G64), "float32");
}

#[test]
fn llama_8bit_g32_matches_mlx_lm() {
    parity("tiny-llama", Some(Q8G32), "float32");
}

/// qwen3's sizes (96, 160) divide by 32 but not 64: every layer quantized at g32...
#[test]
fn qwen3_8bit_g32_bfloat16_matches_mlx_lm() {
    parity("tiny-qwen3", Some(Q8G32), "bfloat16");
}

#[test]
fn qwen3_4bit_g32_matches_mlx_lm() {
    parity(
        "tiny-qwen3",
        Some(QuantizeOptions {
            bits: 4,
            group_size: 32,
        }),
        "float32",
    );
}

/// ...while qwen2's (80, 176) divide by neither: nothing is quantized, yet the config carries
/// the quantization block, exactly as mlx_lm writes it.
#[test]
fn qwen2_4bit_g64_nothing_divisible_matches_mlx_lm() {
    parity("tiny-qwen2", Some(Q4G64), "float32");
}

#[test]
fn llama_float16_unquantized_matches_mlx_lm() {
    parity("tiny-llama", None, "float16");
}

#[test]
fn sharded_output_loads_and_matches_single_shard() {
    let dir = scratch("shards");
    let src = fixture("tiny-llama");
    let one = dir.join("one");
    let many = dir.join("many");
    let opts = ConvertOptions {
        quantize: Some(Q4G64),
        ..Default::default()
    };
    run_ours(&src, &one, &opts);
    let mut seen = Vec::new();
    let small = ConvertOptions {
        max_shard_bytes: 64 * 1024,
        ..opts.clone()
    };
    let report = convert::convert(&src, &many, &small, &mut |p| {
        seen.push((p.tensors_done, p.tensors_total, p.bytes_done, p.bytes_total));
        ControlFlow::Continue(())
    })
    .unwrap();
    assert!(report.shards >= 3, "only {} shards", report.shards);
    let index = read_json(&many.join("model.safetensors.index.json"));
    let mut files: Vec<String> = index["weight_map"]
        .as_object()
        .unwrap()
        .values()
        .map(|v| v.as_str().unwrap().to_string())
        .collect();
    files.sort();
    files.dedup();
    assert_eq!(files.len(), report.shards);
    let n = report.shards;
    for (i, f) in files.iter().enumerate() {
        assert_eq!(f, &format!("model-{:05}-of-{:05}.safetensors", i + 1, n));
    }
    assert!(!many.join("model.safetensors").exists());
    // progress is monotone and ends at the totals
    let last = *seen.last().unwrap();
    assert_eq!(last.0, last.1);
    assert_eq!(last.2, last.3);
    assert!(seen.windows(2).all(|w| w[0].0 < w[1].0 && w[0].2 <= w[1].2));

    assert_same_tensors(&many, &one);
    assert_eq!(logits(&many), logits(&one));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn cancelled_conversion_leaves_nothing_that_looks_finished() {
    let dir = scratch("cancel");
    let dest = dir.join("out");
    let mut calls = 0;
    let err = convert::convert(
        &fixture("tiny-llama"),
        &dest,
        &ConvertOptions {
            quantize: Some(Q4G64),
            max_shard_bytes: 32 * 1024,
            ..Default::default()
        },
        &mut |_| {
            calls += 1;
            if calls == 8 {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        },
    )
    .unwrap_err();
    assert!(matches!(err, ConvertError::Cancelled), "{err}");
    assert!(!dest.exists());
    let left: Vec<_> = std::fs::read_dir(&dir).unwrap().collect();
    assert!(left.is_empty(), "staging folder left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn refuses_an_existing_destination() {
    let dir = scratch("exists");
    let dest = dir.join("out");
    std::fs::create_dir_all(&dest).unwrap();
    std::fs::write(dest.join("keep.txt"), "mine").unwrap();
    let err = convert::convert(
        &fixture("tiny-llama"),
        &dest,
        &ConvertOptions::default(),
        &mut no_progress,
    )
    .unwrap_err();
    assert!(
        matches!(&err, ConvertError::DestinationExists { path } if path == &dest),
        "{err}"
    );
    assert_eq!(
        std::fs::read_to_string(dest.join("keep.txt")).unwrap(),
        "mine"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rejects_bad_quantization_parameters() {
    let dir = scratch("badq");
    for (bits, group_size) in [(7, 64), (16, 64), (1, 64), (4, 48), (4, 256)] {
        let err = convert::convert(
            &fixture("tiny-llama"),
            &dir.join("out"),
            &ConvertOptions {
                quantize: Some(QuantizeOptions { bits, group_size }),
                ..Default::default()
            },
            &mut no_progress,
        )
        .unwrap_err();
        assert!(
            matches!(err, ConvertError::InvalidQuantization { bits: b, group_size: g, .. }
                if b == bits && g == group_size),
            "{bits}/{group_size}: {err}"
        );
    }
    assert!(!dir.join("out").exists());
    assert!(matches!(
        convert::parse_dtype("int8"),
        Err(ConvertError::UnsupportedDtype { .. })
    ));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn rejects_quantized_missing_and_unsupported_sources() {
    let dir = scratch("badsrc");
    let opts = ConvertOptions::default();
    let err = convert::convert(
        &fixture("tiny-llama-q4"),
        &dir.join("a"),
        &opts,
        &mut no_progress,
    )
    .unwrap_err();
    assert!(
        matches!(err, ConvertError::AlreadyQuantized { .. }),
        "{err}"
    );

    let err =
        convert::convert(&dir.join("nope"), &dir.join("b"), &opts, &mut no_progress).unwrap_err();
    assert!(matches!(err, ConvertError::SourceMissing { .. }), "{err}");

    let bert = dir.join("bert");
    std::fs::create_dir_all(&bert).unwrap();
    std::fs::write(bert.join("config.json"), r#"{"model_type": "bert"}"#).unwrap();
    let err = convert::convert(&bert, &dir.join("c"), &opts, &mut no_progress).unwrap_err();
    match err {
        ConvertError::UnsupportedModelType {
            model_type,
            supported,
        } => {
            assert_eq!(model_type, "bert");
            assert!(supported.contains(&"llama".to_string()));
        }
        e => panic!("{e}"),
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn default_destination_names() {
    let src = Path::new("/x/SmolLM2-135M");
    let mut opts = ConvertOptions::default();
    assert_eq!(convert::default_dest_name(src, &opts), "SmolLM2-135M-mlx");
    opts.quantize = Some(Q4G64);
    assert_eq!(
        convert::default_dest_name(src, &opts),
        "SmolLM2-135M-mlx-4bit"
    );
}
