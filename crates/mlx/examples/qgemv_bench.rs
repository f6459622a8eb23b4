//! Times decode's quantized matmuls alone: the 211 matmuls of one SmolLM2-135M token (30
//! layers of q, k, v, o, gate, up, down in 4-bit, group 32, and the tied 8-bit head), one row
//! of activations (and a batch of 8 rows), random weights, float and int8 activations. Prints milliseconds per token
//! of matmuls (median of the passes) and the weight bytes read per second.
//!
//!   cargo run --release -p cortex-mlx --example qgemv_bench [-- PASSES]
//!
//! Every matmul is its own graph node, evaluated in one batch per token, as decode does; the
//! difference to a whole decode step is everything that is not a matmul.
use cortex_mlx::{ops, random, Array, Dtype};
use std::time::Instant;

struct Layer {
    w: Array,
    scales: Array,
    biases: Array,
    bits: i32,
}

fn layer(n: i32, k: i32, bits: i32, seed: u64) -> Layer {
    let key = random::key(seed).unwrap();
    let dense = random::uniform(&[n, k], Dtype::Float32, Some(&key))
        .unwrap()
        .add_scalar(-0.5)
        .unwrap();
    let (w, scales, biases) = ops::quantize(&dense, 32, bits).unwrap();
    ops::eval([&w, &scales, &biases]).unwrap();
    Layer {
        w,
        scales,
        biases,
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
    let bytes: usize = layers
        .iter()
        .map(|l| l.w.nbytes() + l.scales.nbytes() + l.biases.nbytes())
        .sum();
    println!(
        "{} matmuls per token, {:.1} MB of weights, scales and biases",
        layers.len(),
        bytes as f64 / 1e6
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
        let mut times = Vec::new();
        for _ in 0..passes + 2 {
            let t = Instant::now();
            let outs: Vec<Array> = layers
                .iter()
                .map(|l| {
                    let x = if l.w.shape()[1] * 32 / l.bits == inter {
                        &x1536
                    } else {
                        &x576
                    };
                    ops::qgemv_cpu(x, &l.w, &l.scales, &l.biases, 32, l.bits).unwrap()
                })
                .collect();
            ops::eval(outs.iter()).unwrap();
            times.push(t.elapsed().as_secs_f64());
        }
        let mut measured = times.split_off(2); // two warm-up passes
        measured.sort_by(f64::total_cmp);
        let med = measured[measured.len() / 2];
        println!(
            "{} row{} {:<5} activations: {:7.2} ms per token (min {:.2}), {:5.1} GB/s of weights",
            rows,
            if rows == 1 { " " } else { "s" },
            if int8 { "int8" } else { "float" },
            med * 1e3,
            measured[0] * 1e3,
            bytes as f64 / med / 1e9
        );
    }
    ops::set_int8_activations(false);
}
