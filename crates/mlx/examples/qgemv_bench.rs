//! Times decode's quantized matmuls alone: the 211 matmuls of one SmolLM2-135M token (30
//! layers of q, k, v, o, gate, up, down in 4-bit, group 32, and the tied 8-bit head), one row
//! of activations (and a batch of 8 rows), random weights, float and int8 activations, scales and
//! biases in float32 and in float16 (the two timed in alternating passes). Prints milliseconds
//! per token of matmuls (median of the passes) and the weight bytes read per second.
//!
//!   cargo run --release -p cortex-mlx --example qgemv_bench [-- PASSES]
//!
//! Every matmul is its own graph node, evaluated in one batch per token, as decode does; the
//! difference to a whole decode step is everything that is not a matmul.
use cortex_mlx::{ops, random, Array, Dtype};
use std::time::Instant;

struct Layer {
    w: Array,
    /// scales and biases in float32, then in float16
    sides: [(Array, Array); 2],
    bits: i32,
}

fn layer(n: i32, k: i32, bits: i32, seed: u64) -> Layer {
    let key = random::key(seed).unwrap();
    let dense = random::uniform(&[n, k], Dtype::Float32, Some(&key))
        .unwrap()
        .add_scalar(-0.5)
        .unwrap();
    let (w, scales, biases) = ops::quantize(&dense, 32, bits).unwrap();
    let half = |a: &Array| a.astype(Dtype::Float16).unwrap();
    let (s16, b16) = (half(&scales), half(&biases));
    ops::eval([&w, &scales, &biases, &s16, &b16]).unwrap();
    Layer {
        w,
        sides: [(scales, biases), (s16, b16)],
        bits,
    }
}

fn main() {
    let passes: usize = std::env::args()
        .nth(1)
        .map_or(20, |a| a.parse().expect("PASSES"));
    let (h, kv, inter, vocab) = (576, 192, 1536, 49152);
    let mut layers = Vec::new();
    for l in 0..30u64 {
        for (i, (n, k)) in [
            (h, h),
            (kv, h),
            (kv, h),
            (h, h),
            (inter, h),
            (inter, h),
            (h, inter),
        ]
        .into_iter()
        .enumerate()
        {
            layers.push(layer(n, k, 4, l * 8 + i as u64));
        }
    }
    layers.push(layer(vocab, h, 8, 9999));
    let bytes = |v: usize| -> usize {
        layers
            .iter()
            .map(|l| l.w.nbytes() + l.sides[v].0.nbytes() + l.sides[v].1.nbytes())
            .sum()
    };
    println!(
        "{} matmuls per token, {:.1} MB of weights, scales and biases ({:.1} MB with 16-bit scales and biases)",
        layers.len(),
        bytes(0) as f64 / 1e6,
        bytes(1) as f64 / 1e6
    );
    // (rows of activations, int8): one stream in float and int8, a batch of 8 streams in float
    for (rows, int8) in [(1, false), (1, true), (8, false)] {
        let x576 =
            random::uniform(&[rows, h], Dtype::Float32, Some(&random::key(1).unwrap())).unwrap();
        let x1536 = random::uniform(
            &[rows, inter],
            Dtype::Float32,
            Some(&random::key(2).unwrap()),
        )
        .unwrap();
        ops::eval([&x576, &x1536]).unwrap();
        ops::set_int8_activations(int8);
        let mut times = [Vec::new(), Vec::new()];
        for pass in 0..passes + 2 {
            // the two side dtypes in alternating order, so drift on the machine hits both
            for v in [pass % 2, 1 - pass % 2] {
                let t = Instant::now();
                let outs: Vec<Array> = layers
                    .iter()
                    .map(|l| {
                        let x = if l.w.shape()[1] * 32 / l.bits == inter {
                            &x1536
                        } else {
                            &x576
                        };
                        let (s, b) = &l.sides[v];
                        ops::qgemv_cpu(x, &l.w, s, b, 32, l.bits).unwrap()
                    })
                    .collect();
                ops::eval(outs.iter()).unwrap();
                times[v].push(t.elapsed().as_secs_f64());
            }
        }
        for (v, times) in times.iter_mut().enumerate() {
            let mut measured = times.split_off(2); // two warm-up passes
            measured.sort_by(f64::total_cmp);
            let med = measured[measured.len() / 2];
            println!(
                "{} row{} {:<5} activations, {} scales: {:7.2} ms per token (min {:.2}), {:5.1} GB/s of weights",
                rows,
                if rows == 1 { " " } else { "s" },
                if int8 { "int8" } else { "float" },
                if v == 0 { "f32" } else { "f16" },
                med * 1e3,
                measured[0] * 1e3,
                bytes(v) as f64 / med / 1e9
            );
        }
    }
    ops::set_int8_activations(false);
}
