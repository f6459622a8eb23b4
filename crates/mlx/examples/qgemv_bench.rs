//! Times decode's quantized matmuls alone: the 211 matmuls of one SmolLM2-135M token (30
//! layers of q, k, v, o, gate, up, down in 4-bit, group 32, and the tied 8-bit head), one row
//! of activations (and a batch of 8 rows), random weights: float activations with float32 and
//! float16 scales, int8 activations on MLX's layout and on the repacked one (`pack_rows16`),
//! pairs of them timed in alternating passes. Prints milliseconds per token of matmuls (median
//! of the passes) and the weight bytes read per second.
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
    /// the weight repacked for the int8 kernels
    packed: Array,
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
    let packed = ops::pack_rows16(&w, &scales, &biases, 32, bits)
        .unwrap()
        .expect("4- and 8-bit weights in groups of 32 pack");
    Layer {
        w,
        sides: [(scales, biases), (s16, b16)],
        packed,
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
    // How a pass runs the matmuls: the scales' dtype (0: float32, 1: float16), int8
    // activations, and the int8 kernels on the repacked layout (`pack_rows16`).
    #[derive(Clone, Copy)]
    struct Variant {
        sides: usize,
        int8: bool,
        packed: bool,
    }
    let name = |v: Variant| match (v.int8, v.packed) {
        (false, _) => format!("float, {} scales", ["f32", "f16"][v.sides]),
        (true, false) => format!("int8, {} scales", ["f32", "f16"][v.sides]),
        (true, true) => "int8, repacked".to_string(),
    };
    let bytes = |v: Variant| -> usize {
        layers
            .iter()
            .map(|l| match v.packed {
                true => l.packed.nbytes(),
                false => l.w.nbytes() + l.sides[v.sides].0.nbytes() + l.sides[v.sides].1.nbytes(),
            })
            .sum()
    };
    let (f32s, f16s) = (
        Variant {
            sides: 0,
            int8: false,
            packed: false,
        },
        Variant {
            sides: 1,
            int8: false,
            packed: false,
        },
    );
    let (int8, repacked) = (
        Variant {
            sides: 0,
            int8: true,
            packed: false,
        },
        Variant {
            sides: 0,
            int8: true,
            packed: true,
        },
    );
    println!(
        "{} matmuls per token, {:.1} MB of weights, scales and biases ({:.1} MB with 16-bit scales and biases, {:.1} MB repacked)",
        layers.len(),
        bytes(f32s) as f64 / 1e6,
        bytes(f16s) as f64 / 1e6,
        bytes(repacked) as f64 / 1e6
    );
    // Pairs of variants timed in alternating passes (so drift on the machine hits both), for one
    // row of activations (a stream's decode) and 8 (a batch of 8 streams).
    for (rows, pair) in [
        (1, [f32s, f16s]),
        (1, [int8, repacked]),
        (1, [f16s, repacked]),
        (8, [f16s, repacked]),
    ] {
        let x576 =
            random::uniform(&[rows, h], Dtype::Float32, Some(&random::key(1).unwrap())).unwrap();
        let x1536 = random::uniform(
            &[rows, inter],
            Dtype::Float32,
            Some(&random::key(2).unwrap()),
        )
        .unwrap();
        ops::eval([&x576, &x1536]).unwrap();
        let mut times = [Vec::new(), Vec::new()];
        for pass in 0..passes + 2 {
            for i in [pass % 2, 1 - pass % 2] {
                let v = pair[i];
                ops::set_int8_activations(v.int8);
                let t = Instant::now();
                let outs: Vec<Array> = layers
                    .iter()
                    .map(|l| {
                        let x = if l.w.shape()[1] * 32 / l.bits == inter {
                            &x1536
                        } else {
                            &x576
                        };
                        let (s, b) = &l.sides[v.sides];
                        let packed = [&l.packed];
                        let weights = ops::GemvWeights::Quantized {
                            weights: &[(&l.w, s, b)],
                            packed: if v.packed { &packed } else { &[] },
                            group_size: 32,
                            bits: l.bits,
                        };
                        ops::gemv_many(x, weights, false).unwrap().remove(0)
                    })
                    .collect();
                ops::eval(outs.iter()).unwrap();
                times[i].push(t.elapsed().as_secs_f64());
            }
        }
        for (i, times) in times.iter_mut().enumerate() {
            let mut measured = times.split_off(2); // two warm-up passes
            measured.sort_by(f64::total_cmp);
            let med = measured[measured.len() / 2];
            println!(
                "{} row{} {:<22} {:7.2} ms per token (min {:.2}), {:5.1} GB/s of weights",
                rows,
                if rows == 1 { " " } else { "s" },
                name(pair[i]),
                med * 1e3,
                measured[0] * 1e3,
                bytes(pair[i]) as f64 / med / 1e9
            );
        }
    }
    ops::set_int8_activations(false);
}
