//! Each op checked against a plain-Rust reference on small random inputs.
use cortex_mlx::fast::{self, Mask, Rope};
use cortex_mlx::{ops, random, Array, Dtype, Error};

/// Deterministic pseudo-random floats in [-1, 1) (xorshift), so references need no MLX.
fn rand_vec(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E3779B97F4A7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            ((s >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
        })
        .collect()
}

fn arr(data: &[f32], shape: &[i32]) -> Array {
    Array::from_slice(data, shape).unwrap()
}

fn assert_close(got: &[f32], want: &[f32], tol: f32) {
    assert_eq!(got.len(), want.len(), "length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "index {i}: got {g}, want {w}"
        );
    }
}

fn naive_matmul(a: &[f32], b: &[f32], m: usize, k: usize, n: usize) -> Vec<f32> {
    let mut out = vec![0.0; m * n];
    for i in 0..m {
        for j in 0..n {
            out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
        }
    }
    out
}

/// Every chunk of the kernel pool on a worker from here on (`ops::set_pool_workers_only`):
/// a kernel that set up state on the calling thread and read it by name inside its chunks
/// would then fail every time, not only when a worker happens to take one. Never switched off
/// again, so tests running beside each other cannot undo it for one another; results do not
/// depend on it.
fn workers_only() {
    ops::set_pool_workers_only(true);
}
#[test]
fn round_trip_and_dtypes() {
    let a = Array::from_slice(&[1i32, 2, 3, 4, 5, 6], &[2, 3]).unwrap();
    assert_eq!(a.shape(), vec![2, 3]);
    assert_eq!(a.dtype(), Dtype::Int32);
    assert_eq!(a.to_vec::<i32>().unwrap(), vec![1, 2, 3, 4, 5, 6]);
    let f = a.astype(Dtype::Bfloat16).unwrap();
    assert_eq!(f.dtype(), Dtype::Bfloat16);
    assert_eq!(f.nbytes(), 12);
    assert_eq!(f.to_f32_vec().unwrap(), vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0]);
    // bf16 bytes straight from a file: 1.0 is 0x3F80.
    let raw = Array::from_bytes(&[0x80, 0x3f, 0x00, 0xc0], &[2], Dtype::Bfloat16).unwrap();
    assert_eq!(raw.to_f32_vec().unwrap(), vec![1.0, -2.0]);
    // reading with the wrong element type is a typed error
    assert!(matches!(
        a.to_vec::<f32>(),
        Err(Error::DtypeMismatch { .. })
    ));
    assert!(Array::from_slice(&[1.0f32, 2.0], &[3]).is_err());
    assert_eq!(Array::scalar(7u32).unwrap().item::<u32>().unwrap(), 7);
    // arrays made from host data are evaluated already (their readers need no eval), empty
    // ones included; an op's result is not until it is evaluated
    assert!(a.is_available() && raw.is_available());
    let empty = Array::from_slice::<f32>(&[], &[0, 3]).unwrap();
    assert_eq!((empty.shape(), empty.size()), (vec![0, 3], 0));
    assert!(empty.to_vec::<f32>().unwrap().is_empty());
    let sum = a.add(&a).unwrap();
    assert!(!sum.is_available());
    assert_eq!(sum.to_vec::<i32>().unwrap(), vec![2, 4, 6, 8, 10, 12]);
}

#[test]
fn mlx_exceptions_become_errors() {
    let a = arr(&rand_vec(6, 1), &[2, 3]);
    let b = arr(&rand_vec(8, 2), &[2, 4]);
    let err = a.matmul(&b).unwrap_err();
    assert!(matches!(err, Error::Mlx { op: "matmul", .. }), "{err}");
    assert!(a.reshape(&[5]).is_err());
    assert!(
        cortex_mlx::load_safetensors(std::path::Path::new("/nonexistent/x.safetensors")).is_err()
    );
}

#[test]
fn elementwise_and_reductions() {
    let x = rand_vec(24, 3);
    let y = rand_vec(24, 4);
    let (a, b) = (arr(&x, &[4, 6]), arr(&y, &[4, 6]));
    let want: Vec<f32> = x.iter().zip(&y).map(|(p, q)| p * q + p.exp()).collect();
    let got = a.multiply(&b).unwrap().add(&a.exp().unwrap()).unwrap();
    assert_close(&got.to_vec::<f32>().unwrap(), &want, 1e-6);

    let sums: Vec<f32> = (0..4).map(|r| x[r * 6..r * 6 + 6].iter().sum()).collect();
    assert_close(
        &a.sum(&[1], false).unwrap().to_vec::<f32>().unwrap(),
        &sums,
        1e-6,
    );
    let maxes: Vec<f32> = (0..4)
        .map(|r| x[r * 6..r * 6 + 6].iter().cloned().fold(f32::MIN, f32::max))
        .collect();
    assert_close(
        &a.max(&[1], false).unwrap().to_vec::<f32>().unwrap(),
        &maxes,
        0.0,
    );
    let lse: Vec<f32> = (0..4)
        .map(|r| {
            x[r * 6..r * 6 + 6]
                .iter()
                .map(|v| v.exp())
                .sum::<f32>()
                .ln()
        })
        .collect();
    assert_close(
        &a.logsumexp(&[1], false).unwrap().to_vec::<f32>().unwrap(),
        &lse,
        1e-5,
    );
    let am: Vec<u32> = (0..4)
        .map(|r| {
            (0..6)
                .max_by(|&i, &j| x[r * 6 + i].total_cmp(&x[r * 6 + j]))
                .unwrap() as u32
        })
        .collect();
    assert_eq!(a.argmax(1, false).unwrap().to_vec::<u32>().unwrap(), am);

    let sm = a.softmax(&[-1], true).unwrap().to_vec::<f32>().unwrap();
    for r in 0..4 {
        let z: f32 = x[r * 6..r * 6 + 6].iter().map(|v| v.exp()).sum();
        let want: Vec<f32> = x[r * 6..r * 6 + 6].iter().map(|v| v.exp() / z).collect();
        assert_close(&sm[r * 6..r * 6 + 6], &want, 1e-6);
    }
    let cs = a.cumsum(1, false, true).unwrap().to_vec::<f32>().unwrap();
    assert!((cs[5] - sums[0]).abs() < 1e-5);
}

#[test]
fn matmul_matches_naive() {
    let (m, k, n) = (5, 7, 3);
    let x = rand_vec(m * k, 5);
    let w = rand_vec(k * n, 6);
    let got = arr(&x, &[m as i32, k as i32])
        .matmul(&arr(&w, &[k as i32, n as i32]))
        .unwrap();
    assert_close(
        &got.to_vec::<f32>().unwrap(),
        &naive_matmul(&x, &w, m, k, n),
        1e-5,
    );
    let bias = rand_vec(n, 7);
    let got = arr(&x, &[m as i32, k as i32])
        .addmm(&arr(&bias, &[n as i32]), &arr(&w, &[k as i32, n as i32]))
        .unwrap();
    let mut want = naive_matmul(&x, &w, m, k, n);
    for i in 0..m * n {
        want[i] += bias[i % n];
    }
    assert_close(&got.to_vec::<f32>().unwrap(), &want, 1e-5);
}

/// The affine quantizer: per group of `g` values, scale = (max-min)/(2^bits-1), bias = min.
#[test]
fn quantize_dequantize_and_qmm() {
    for &(bits, group) in &[
        (2, 32),
        (3, 32),
        (4, 32),
        (4, 64),
        (6, 64),
        (8, 64),
        (8, 128),
    ] {
        let (rows, cols) = (6usize, 256usize);
        let w = rand_vec(rows * cols, bits as u64 * 100 + group as u64);
        let wa = arr(&w, &[rows as i32, cols as i32]);
        let (q, s, b) = ops::quantize(&wa, group, bits).unwrap();
        assert_eq!(q.dtype(), Dtype::Uint32);
        assert_eq!(
            q.shape(),
            vec![rows as i32, (cols * bits as usize / 32) as i32]
        );
        assert_eq!(s.shape(), vec![rows as i32, (cols / group as usize) as i32]);
        let deq = ops::dequantize(&q, &s, Some(&b), group, bits, None)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        // each value is within one quantization step of the original (MLX nudges the scale so
        // the group's extreme value is exact, which can stretch the half-step bound)
        let svals = s.to_vec::<f32>().unwrap();
        let bvals = b.to_vec::<f32>().unwrap();
        for (i, (d, o)) in deq.iter().zip(&w).enumerate() {
            let step = svals[i / group as usize].abs();
            assert!(
                (d - o).abs() <= step + 1e-5,
                "bits {bits} group {group} idx {i}: {d} vs {o}"
            );
        }
        // for 4 and 8 bits, unpack the uint32 words by hand: value = q * scale + bias
        if bits == 4 || bits == 8 {
            let words = q.to_vec::<u32>().unwrap();
            let per_word = 32 / bits as usize;
            for i in 0..rows * cols {
                let qv =
                    (words[i / per_word] >> ((i % per_word) * bits as usize)) & ((1 << bits) - 1);
                let g = i / group as usize;
                assert!(
                    (qv as f32 * svals[g] + bvals[g] - deq[i]).abs() < 1e-5,
                    "packing at {i}"
                );
            }
        }
        // quantized_matmul equals x @ dequantized.T
        let x = rand_vec(3 * cols, 9);
        let xa = arr(&x, &[3, cols as i32]);
        let got = ops::quantized_matmul(&xa, &q, &s, Some(&b), true, group, bits).unwrap();
        let mut wt = vec![0.0; cols * rows];
        for r in 0..rows {
            for c in 0..cols {
                wt[c * rows + r] = deq[r * cols + c];
            }
        }
        assert_close(
            &got.to_vec::<f32>().unwrap(),
            &naive_matmul(&x, &wt, 3, cols, rows),
            1e-4,
        );
    }
    // a group size that does not divide the row is an error, not a crash
    let bad = arr(&rand_vec(2 * 48, 1), &[2, 48]);
    assert!(ops::quantize(&bad, 32, 4).is_err());
}

#[test]
fn norms_match_reference() {
    let (n, d) = (3usize, 10usize);
    let x = rand_vec(n * d, 11);
    let w = rand_vec(d, 12);
    let b = rand_vec(d, 13);
    let xa = arr(&x, &[n as i32, d as i32]);
    let got = fast::rms_norm(&xa, Some(&arr(&w, &[d as i32])), 1e-5)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let got_ln = fast::layer_norm(
        &xa,
        Some(&arr(&w, &[d as i32])),
        Some(&arr(&b, &[d as i32])),
        1e-5,
    )
    .unwrap()
    .to_vec::<f32>()
    .unwrap();
    for r in 0..n {
        let row = &x[r * d..(r + 1) * d];
        let ms = row.iter().map(|v| v * v).sum::<f32>() / d as f32;
        let want: Vec<f32> = row
            .iter()
            .zip(&w)
            .map(|(v, g)| v / (ms + 1e-5).sqrt() * g)
            .collect();
        assert_close(&got[r * d..(r + 1) * d], &want, 1e-5);
        let mean = row.iter().sum::<f32>() / d as f32;
        let var = row.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / d as f32;
        let want: Vec<f32> = (0..d)
            .map(|i| (row[i] - mean) / (var + 1e-5).sqrt() * w[i] + b[i])
            .collect();
        assert_close(&got_ln[r * d..(r + 1) * d], &want, 1e-4);
    }
}

fn array_bits(a: &Array) -> Vec<u32> {
    f32_bits(&a.to_vec::<f32>().unwrap())
}

/// A float32 array's values as f64 (for the f64 references).
fn array_f64(a: &Array) -> Vec<f64> {
    a.to_vec::<f32>()
        .unwrap()
        .iter()
        .map(|&x| x as f64)
        .collect()
}

/// SwiGLU's elementwise node (`ops::silu_mul_cpu`) against f64 silu(g) * u: sizes with a tail
/// past 16 lanes and of several chunks of the pool's work, gates far enough out that exp(-g)
/// would overflow; the portable code gives the same bits; views (the halves of a fused
/// gate_up output) are read as what they show; mismatched shapes are refused.
#[test]
fn cpu_silu_mul_matches_f64_on_every_code_path() {
    workers_only();
    let reference = |g: &[f32], u: &[f32]| -> Vec<f32> {
        g.iter()
            .zip(u)
            .map(|(&g, &u)| {
                let g = g as f64;
                (g / (1.0 + (-g).exp()) * u as f64) as f32
            })
            .collect()
    };
    for n in [37usize, 3 * 4096 + 21] {
        let mut g: Vec<f32> = rand_vec(n, 41 + n as u64)
            .iter()
            .map(|x| x * 12.0)
            .collect();
        g[..3].copy_from_slice(&[-120.0, 120.0, 0.0]);
        let u = rand_vec(n, 42);
        let (ga, ua) = (arr(&g, &[1, n as i32]), arr(&u, &[1, n as i32]));
        let simd = ops::silu_mul_cpu(&ga, &ua).unwrap();
        ops::set_scalar_kernels(true);
        let portable = ops::silu_mul_cpu(&ga, &ua).unwrap();
        ops::set_scalar_kernels(false);
        assert_eq!(simd.shape(), vec![1, n as i32]);
        assert_eq!(array_bits(&simd), array_bits(&portable), "n {n}");
        assert_close(&simd.to_vec::<f32>().unwrap(), &reference(&g, &u), 1e-5);
    }
    let (rows, d) = (3usize, 40usize);
    let yv = rand_vec(rows * 2 * d, 43);
    let y = arr(&yv, &[rows as i32, 2 * d as i32]);
    let (g, u) = (
        y.slice_axis(-1, 0, d as i32).unwrap(),
        y.slice_axis(-1, d as i32, 2 * d as i32).unwrap(),
    );
    let half = |from: usize| -> Vec<f32> {
        (0..rows)
            .flat_map(|r| yv[r * 2 * d + from..][..d].to_vec())
            .collect()
    };
    let got = ops::silu_mul_cpu(&g, &u).unwrap();
    assert_close(
        &got.to_vec::<f32>().unwrap(),
        &reference(&half(0), &half(d)),
        1e-5,
    );
    assert!(ops::silu_mul_cpu(&g, &y).is_err(), "shapes differ");
    // RMSNorm's rows split over the kernel pool: each row the bits it gets alone
    let (n, d) = (40i32, 64i32);
    let x = arr(&rand_vec((n * d) as usize, 44), &[n, d]);
    let w = arr(&rand_vec(d as usize, 45), &[d]);
    let all = ops::rms_norm_cpu(&x, &w, 1e-5).unwrap();
    for row in [0, 17, 39] {
        let one = |a: &Array| a.slice_axis(0, row, row + 1).unwrap();
        assert_eq!(
            array_bits(&ops::rms_norm_cpu(&one(&x), &w, 1e-5).unwrap()),
            array_bits(&one(&all)),
            "row {row}"
        );
    }
}

/// The argmax node gives MLX's argmax on every row: random rows of a tail past 16 lanes and of
/// a vocabulary's size, the maximum repeated (the first wins), NaNs (MLX takes the first NaN
/// as the largest), a row of -infinity and a NaN, a row of -infinity only; on the SIMD code
/// (AVX-512, or AVX2 on CPUs without it) and the portable code, and from bfloat16 logits.
#[test]
fn cpu_argmax_matches_mlx() {
    workers_only();
    for n in [37usize, 49_157] {
        let rows = 6usize;
        let mut x = rand_vec(rows * n, 51 + n as u64);
        let row = |r: usize| r * n;
        // row 1: the maximum three times; row 2: NaNs before and at the maximum's place
        for i in [n / 3, 5, n - 1] {
            x[row(1) + i] = 7.0;
        }
        x[row(2) + 2] = f32::NAN;
        x[row(2) + n / 2] = 9.0;
        x[row(2) + n / 2 + 1] = f32::NAN;
        // row 3: NaN first; row 4: -infinity and a NaN; row 5: -infinity only
        x[row(3)] = f32::NAN;
        x[row(3) + 4] = 50.0;
        x[row(4)..row(5)].fill(f32::NEG_INFINITY);
        x[row(4) + 3] = f32::NAN;
        x[row(5)..].fill(f32::NEG_INFINITY);
        let a = arr(&x, &[2, 3, n as i32]);
        let want = a.argmax(-1, false).unwrap().astype(Dtype::Uint32).unwrap();
        let want = want.to_vec::<u32>().unwrap();
        assert_eq!(want[1], 5, "MLX: the first maximum");
        assert_eq!(want[2], 2, "MLX: the first NaN");
        assert_eq!(want[3], 0, "MLX: the first NaN");
        assert_eq!(want[4], 3, "MLX: the first NaN");
        assert_eq!(want[5], 0, "MLX: all equal");
        for portable in [false, true] {
            ops::set_scalar_kernels(portable);
            let got = ops::argmax_cpu(&a).unwrap();
            ops::set_scalar_kernels(false);
            assert_eq!(got.shape(), vec![2, 3]);
            assert_eq!(
                got.to_vec::<u32>().unwrap(),
                want,
                "n {n}, portable {portable}"
            );
        }
        let bf16 = a.astype(Dtype::Bfloat16).unwrap();
        assert_eq!(
            ops::argmax_cpu(&bf16).unwrap().to_vec::<u32>().unwrap(),
            bf16.argmax(-1, false)
                .unwrap()
                .astype(Dtype::Uint32)
                .unwrap()
                .to_vec::<u32>()
                .unwrap(),
            "n {n}, bfloat16"
        );
    }
}

/// The CPU's one-node RMSNorm (and its residual-add form) against MLX's `fast::rms_norm` and an
/// add: close on every row (sizes with and without a tail past 16 lanes, a row of zeros, inputs
/// that are views), and a row's result is bit for bit the same alone or among other rows.
#[test]
fn cpu_rms_norm_matches_mlx_and_is_batch_invariant() {
    workers_only();
    let bits = |a: &Array| -> Vec<u32> {
        a.to_vec::<f32>()
            .unwrap()
            .iter()
            .map(|f| f.to_bits())
            .collect()
    };
    for (d, eps) in [(576usize, 1e-5f32), (37, 1e-6), (16, 1e-5)] {
        let n = 5usize;
        let mut xv = rand_vec(n * d, 21 + d as u64);
        xv[2 * d..3 * d].fill(0.0);
        let x = arr(&xv, &[1, n as i32, d as i32]);
        let r = arr(&rand_vec(n * d, 22), &[1, n as i32, d as i32]);
        let w = arr(&rand_vec(d, 23), &[d as i32]);
        let mlx = fast::rms_norm(&x, Some(&w), eps).unwrap();
        let ours = ops::rms_norm_cpu(&x, &w, eps).unwrap();
        assert_eq!(ours.shape(), x.shape());
        assert_close(
            &ours.to_vec::<f32>().unwrap(),
            &mlx.to_vec::<f32>().unwrap(),
            1e-5,
        );
        let (sum, normed) = ops::add_rms_norm_cpu(&x, &r, &w, eps).unwrap();
        let want_sum = x.add(&r).unwrap();
        assert_eq!(
            bits(&sum),
            bits(&want_sum),
            "d {d}: the residual sum is a plain add"
        );
        assert_eq!(
            bits(&normed),
            bits(&ops::rms_norm_cpu(&want_sum, &w, eps).unwrap()),
            "d {d}: the fused norm is the norm of the sum"
        );
        for row in 0..n as i32 {
            let one = |a: &Array| a.slice_axis(1, row, row + 1).unwrap();
            assert_eq!(
                bits(&ops::rms_norm_cpu(&one(&x), &w, eps).unwrap()),
                bits(&one(&ours)),
                "d {d}, row {row} alone"
            );
            let (s1, n1) = ops::add_rms_norm_cpu(&one(&x), &one(&r), &w, eps).unwrap();
            assert_eq!(bits(&s1), bits(&one(&sum)));
            assert_eq!(
                bits(&n1),
                bits(&one(&normed)),
                "d {d}, row {row} alone, fused"
            );
        }
        // a strided view: x stored column-major ([d, n]) and transposed back to [n, d]
        let cols: Vec<f32> = (0..d * n).map(|t| xv[(t % n) * d + t / n]).collect();
        let xt = arr(&cols, &[d as i32, n as i32])
            .transpose(&[1, 0])
            .unwrap();
        assert_eq!(
            bits(&ops::rms_norm_cpu(&xt, &w, eps).unwrap()),
            bits(&ours.reshape(&[n as i32, d as i32]).unwrap()),
            "d {d}: a strided input"
        );
    }
    let x = arr(&rand_vec(8, 1), &[2, 4]);
    assert!(ops::rms_norm_cpu(&x, &arr(&rand_vec(3, 2), &[3]), 1e-5).is_err());
    assert!(ops::add_rms_norm_cpu(
        &x,
        &arr(&rand_vec(4, 2), &[1, 4]),
        &arr(&rand_vec(4, 3), &[4]),
        1e-5
    )
    .is_err());
}

/// Non-traditional RoPE rotates (x[i], x[i + d/2]) by angle pos * base^(-2i/d).
#[test]
fn rope_matches_reference() {
    let (heads, seq, d) = (2usize, 5usize, 8usize);
    let x = rand_vec(heads * seq * d, 21);
    let xa = arr(&x, &[1, heads as i32, seq as i32, d as i32]);
    let offset = 3;
    let p = Rope {
        dims: d as i32,
        traditional: false,
        base: Some(10000.0),
        scale: 1.0,
        freqs: None,
    };
    let got = fast::rope(&xa, &p, offset)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let mut want = x.clone();
    for h in 0..heads {
        for s in 0..seq {
            let pos = (s + offset as usize) as f32;
            let base = (h * seq + s) * d;
            for i in 0..d / 2 {
                let theta = pos * 10000f32.powf(-2.0 * i as f32 / d as f32);
                let (a, b) = (x[base + i], x[base + i + d / 2]);
                want[base + i] = a * theta.cos() - b * theta.sin();
                want[base + i + d / 2] = a * theta.sin() + b * theta.cos();
            }
        }
    }
    assert_close(&got, &want, 1e-4);
    // explicit frequencies (what llama3 rope scaling passes) give the same result
    let inv: Vec<f32> = (0..d / 2)
        .map(|i| 10000f32.powf(2.0 * i as f32 / d as f32))
        .collect();
    let freqs = arr(&inv, &[(d / 2) as i32]);
    let p = Rope {
        dims: d as i32,
        traditional: false,
        base: None,
        scale: 1.0,
        freqs: Some(&freqs),
    };
    assert_close(
        &fast::rope(&xa, &p, offset)
            .unwrap()
            .to_vec::<f32>()
            .unwrap(),
        &want,
        1e-4,
    );
}

fn naive_attention(
    q: &[f32],
    k: &[f32],
    v: &[f32],
    lq: usize,
    lk: usize,
    d: usize,
    causal: bool,
) -> Vec<f32> {
    let scale = 1.0 / (d as f32).sqrt();
    let mut out = vec![0.0; lq * d];
    for i in 0..lq {
        let visible = if causal { lk - lq + i + 1 } else { lk };
        let scores: Vec<f32> = (0..visible)
            .map(|j| (0..d).map(|t| q[i * d + t] * k[j * d + t]).sum::<f32>() * scale)
            .collect();
        let m = scores.iter().cloned().fold(f32::MIN, f32::max);
        let z: f32 = scores.iter().map(|s| (s - m).exp()).sum();
        for (j, s) in scores.iter().enumerate() {
            let p = (s - m).exp() / z;
            for t in 0..d {
                out[i * d + t] += p * v[j * d + t];
            }
        }
    }
    out
}

#[test]
fn attention_causal_gqa_and_mask() {
    let (hq, hkv, lq, lk, d) = (4usize, 2usize, 3usize, 7usize, 16usize);
    let q = rand_vec(hq * lq * d, 31);
    let k = rand_vec(hkv * lk * d, 32);
    let v = rand_vec(hkv * lk * d, 33);
    let qa = arr(&q, &[1, hq as i32, lq as i32, d as i32]);
    let ka = arr(&k, &[1, hkv as i32, lk as i32, d as i32]);
    let va = arr(&v, &[1, hkv as i32, lk as i32, d as i32]);
    let scale = 1.0 / (d as f32).sqrt();
    let causal = fast::scaled_dot_product_attention(&qa, &ka, &va, scale, Mask::Causal).unwrap();
    let causal = causal.to_vec::<f32>().unwrap();
    // explicit boolean mask equal to the causal one
    let keep: Vec<u8> = (0..lq)
        .flat_map(|i| (0..lk).map(move |j| (j <= lk - lq + i) as u8))
        .collect();
    let mask = Array::from_slice(&keep, &[lq as i32, lk as i32])
        .unwrap()
        .astype(Dtype::Bool)
        .unwrap();
    let masked =
        fast::scaled_dot_product_attention(&qa, &ka, &va, scale, Mask::Array(&mask)).unwrap();
    let masked = masked.to_vec::<f32>().unwrap();
    for h in 0..hq {
        let g = h / (hq / hkv);
        let want = naive_attention(
            &q[h * lq * d..(h + 1) * lq * d],
            &k[g * lk * d..(g + 1) * lk * d],
            &v[g * lk * d..(g + 1) * lk * d],
            lq,
            lk,
            d,
            true,
        );
        assert_close(&causal[h * lq * d..(h + 1) * lq * d], &want, 1e-4);
        assert_close(&masked[h * lq * d..(h + 1) * lq * d], &want, 1e-4);
    }
}

#[test]
fn indexing_slicing_sorting() {
    let x: Vec<f32> = (0..12).map(|v| v as f32).collect();
    let a = arr(&x, &[3, 4]);
    let rows = a
        .take(&Array::from_slice(&[2i32, 0], &[2]).unwrap(), 0)
        .unwrap();
    assert_eq!(
        rows.to_vec::<f32>().unwrap(),
        vec![8., 9., 10., 11., 0., 1., 2., 3.]
    );
    let s = a.slice(&[1, 1], &[3, 4], &[1, 2]).unwrap();
    assert_eq!(s.to_vec::<f32>().unwrap(), vec![5., 7., 9., 11.]);
    let z = Array::zeros(&[3, 4], Dtype::Float32).unwrap();
    let u = z
        .slice_update(&arr(&[1., 2.], &[1, 2]), &[2, 1], &[3, 3], &[1, 1])
        .unwrap();
    assert_eq!(u.to_vec::<f32>().unwrap()[9..11], [1., 2.]);
    let c = ops::concatenate(&[a.clone(), a.clone()], 0).unwrap();
    assert_eq!(c.shape(), vec![6, 4]);
    let r = rand_vec(10, 41);
    let ra = arr(&r, &[10]);
    let mut sorted = r.clone();
    sorted.sort_by(|p, q| p.total_cmp(q));
    assert_eq!(ra.sort(0).unwrap().to_vec::<f32>().unwrap(), sorted);
    let idx = ra.argsort(0).unwrap().to_vec::<u32>().unwrap();
    assert_eq!(
        idx.iter().map(|&i| r[i as usize]).collect::<Vec<_>>(),
        sorted
    );
    let part = ra.partition(6, 0).unwrap().to_vec::<f32>().unwrap();
    assert!(part[..6].iter().all(|v| *v <= sorted[6]) && part[7..].iter().all(|v| *v >= sorted[6]));
    let tal = a
        .take_along_axis(&Array::from_slice(&[3i32, 0, 1], &[3, 1]).unwrap(), 1)
        .unwrap();
    assert_eq!(tal.to_vec::<f32>().unwrap(), vec![3., 4., 9.]);
    let m = Array::ones(&[3, 3], Dtype::Float32)
        .unwrap()
        .triu(1)
        .unwrap();
    assert_eq!(
        m.to_vec::<f32>().unwrap(),
        vec![0., 1., 1., 0., 0., 1., 0., 0., 0.]
    );
    let w = ops::where_(
        &a.greater(&Array::scalar(5.0f32).unwrap()).unwrap(),
        &a,
        &Array::scalar(-1.0f32).unwrap(),
    )
    .unwrap();
    assert_eq!(w.to_vec::<f32>().unwrap()[4..8], [-1., -1., 6., 7.]);
}

#[test]
fn seeded_random_is_reproducible() {
    let logits = arr(&[0.0, 2.0, 0.5, -1.0], &[1, 4])
        .broadcast_to(&[4000, 4])
        .unwrap();
    let draw = |seed| {
        random::categorical(&logits, -1, Some(&random::key(seed).unwrap()))
            .unwrap()
            .to_vec::<u32>()
            .unwrap()
    };
    let (a, b, c) = (draw(7), draw(7), draw(8));
    assert_eq!(a, b);
    assert_ne!(a, c);
    // empirical frequencies follow the softmax
    let z: f32 = [0.0f32, 2.0, 0.5, -1.0].iter().map(|v| v.exp()).sum();
    for (i, l) in [0.0f32, 2.0, 0.5, -1.0].iter().enumerate() {
        let freq = a.iter().filter(|&&x| x as usize == i).count() as f32 / 4000.0;
        assert!((freq - l.exp() / z).abs() < 0.03, "class {i}: {freq}");
    }
    let keys = random::split(&random::key(1).unwrap(), 3).unwrap();
    assert_eq!(keys.shape(), vec![3, 2]);
}

#[test]
fn safetensors_round_trip_with_metadata() {
    let dir = std::env::temp_dir().join(format!("cortex-mlx-st-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("t.safetensors");
    let mut tensors = std::collections::BTreeMap::new();
    tensors.insert(
        "a.weight".to_string(),
        arr(&rand_vec(12, 51), &[3, 4])
            .astype(Dtype::Bfloat16)
            .unwrap(),
    );
    tensors.insert(
        "b".to_string(),
        Array::from_slice(&[1u32, 2, 3], &[3]).unwrap(),
    );
    let meta = [("format".to_string(), "mlx".to_string())]
        .into_iter()
        .collect();
    cortex_mlx::save_safetensors(&path, &tensors, &meta).unwrap();
    let back = cortex_mlx::load_safetensors(&path).unwrap();
    assert_eq!(back.metadata.get("format").map(String::as_str), Some("mlx"));
    assert_eq!(back.tensors["a.weight"].dtype(), Dtype::Bfloat16);
    assert_eq!(
        back.tensors["a.weight"].to_bytes().unwrap(),
        tensors["a.weight"].to_bytes().unwrap()
    );
    assert_eq!(back.tensors["b"].to_vec::<u32>().unwrap(), vec![1, 2, 3]);
    // truncating the file gives an error, not an abort
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let truncated = cortex_mlx::load_safetensors(&path).and_then(|f| {
        ops::eval(f.tensors.values())?;
        Ok(f)
    });
    assert!(truncated.is_err());
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn memory_accounting() {
    cortex_mlx::reset_peak_memory();
    let a = Array::zeros(&[1024, 1024], Dtype::Float32).unwrap();
    a.eval().unwrap();
    assert!(cortex_mlx::active_memory() >= 4 << 20);
    assert!(cortex_mlx::peak_memory() >= 4 << 20);
    assert!(!cortex_mlx::mlx_version().is_empty());
}

/// Our CPU kernel agrees with MLX's quantized_matmul for every supported layout.
#[test]
fn qgemv_matches_quantized_matmul() {
    for &(bits, group) in &[(4, 32), (4, 64), (4, 128), (8, 32), (8, 64)] {
        for &m in &[1, 3, 8] {
            let (n, k) = (70usize, 256usize);
            let w = arr(&rand_vec(n * k, 7 + bits as u64), &[n as i32, k as i32]);
            let (q, s, b) = ops::quantize(&w, group, bits).unwrap();
            let x = arr(&rand_vec(m * k, 99), &[1, m as i32, k as i32]);
            let want = ops::quantized_matmul(&x, &q, &s, Some(&b), true, group, bits).unwrap();
            let got = ops::qgemv_cpu(&x, &q, &s, &b, group, bits).unwrap();
            assert_eq!(got.shape(), vec![1, m as i32, n as i32]);
            assert_close(
                &got.to_vec::<f32>().unwrap(),
                &want.to_vec::<f32>().unwrap(),
                1e-4,
            );
        }
    }
    let w = arr(&rand_vec(8 * 64, 1), &[8, 64]);
    let (q, s, b) = ops::quantize(&w, 32, 4).unwrap();
    let wrong = arr(&rand_vec(32, 2), &[1, 32]);
    assert!(
        ops::qgemv_cpu(&wrong, &q, &s, &b, 32, 4).is_err(),
        "mismatched input size is an error"
    );
    assert!(ops::qgemv_cpu(&arr(&rand_vec(64, 2), &[1, 64]), &q, &s, &b, 32, 3).is_err());
}

/// Groups that are not a multiple of 16 (the SIMD kernel's 4-bit slices) take the 8-at-a-time
/// unpack; against a plain-Rust reference, since MLX quantizes only to 32, 64 and 128.
#[test]
fn qgemv_takes_groups_of_any_multiple_of_8() {
    let (n, k) = (37usize, 120usize);
    for &(bits, group) in &[(4u32, 8usize), (4, 24), (4, 40), (8, 8), (8, 24)] {
        let per_word = (32 / bits) as usize;
        let levels = (1u32 << bits) - 1;
        let codes: Vec<u32> = rand_vec(n * k, 41 + bits as u64)
            .iter()
            .map(|v| ((v + 1.0) * 0.5 * levels as f32) as u32 % (levels + 1))
            .collect();
        let mut packed = vec![0u32; n * k / per_word];
        for (i, &c) in codes.iter().enumerate() {
            packed[i / per_word] |= c << (bits as usize * (i % per_word));
        }
        let groups = k / group;
        let scales: Vec<f32> = rand_vec(n * groups, 43)
            .iter()
            .map(|v| 0.01 + v.abs() * 0.1)
            .collect();
        let biases = rand_vec(n * groups, 44);
        for &m in &[1usize, 3, 5] {
            let x = rand_vec(m * k, 45 + m as u64);
            let got = ops::qgemv_cpu(
                &arr(&x, &[m as i32, k as i32]),
                &Array::from_slice(&packed, &[n as i32, (k / per_word) as i32]).unwrap(),
                &arr(&scales, &[n as i32, groups as i32]),
                &arr(&biases, &[n as i32, groups as i32]),
                group as i32,
                bits as i32,
            )
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
            let mut want = vec![0f32; m * n];
            for row in 0..m {
                for r in 0..n {
                    want[row * n + r] = (0..k)
                        .map(|i| {
                            let g = r * groups + i / group;
                            (scales[g] * codes[r * k + i] as f32 + biases[g]) * x[row * k + i]
                        })
                        .sum();
                }
            }
            assert_close(&got, &want, 1e-4);
        }
    }
}

/// A row's result does not depend on the rows beside it (batched decode must not change
/// what a sequence gets), for quantized and dense weights. One row takes the decode kernel
/// (two weight rows per pass, the odd last row alone), several rows the batch kernel; odd
/// weight counts and 8 bits cover its tail and its other unpack; groups of 32 and 64 (the
/// kernels' unrolled sizes) and 128 (the general loop).
#[test]
fn gemv_rows_are_batch_invariant() {
    let k = 256usize;
    for &(bits, n, group) in &[
        (4, 40usize, 32),
        (4, 41, 32),
        (8, 41, 32),
        (8, 69, 32),
        (4, 41, 64),
        (8, 41, 64),
        (4, 41, 128),
        (8, 41, 128),
    ] {
        let w = arr(&rand_vec(n * k, 3), &[n as i32, k as i32]);
        let (q, s, b) = ops::quantize(&w, group, bits).unwrap();
        let x = arr(&rand_vec(7 * k, 5), &[7, k as i32]);
        let all_q = ops::qgemv_cpu(&x, &q, &s, &b, group, bits)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        let all_d = ops::gemv_cpu(&x, &w).unwrap().to_vec::<f32>().unwrap();
        for r in 0..7 {
            let row = x.slice_axis(0, r, r + 1).unwrap();
            let one_q = ops::qgemv_cpu(&row, &q, &s, &b, group, bits)
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            let one_d = ops::gemv_cpu(&row, &w).unwrap().to_vec::<f32>().unwrap();
            let at = r as usize * n..(r as usize + 1) * n;
            assert_eq!(
                one_q,
                all_q[at.clone()],
                "{bits}-bit, group {group}, {n} rows: quantized row {r}"
            );
            assert_eq!(
                one_d, all_d[at],
                "{bits}-bit, group {group}, {n} rows: dense row {r}"
            );
        }
    }
}

/// Scales and biases stored in 16 bits (float16, bfloat16) go into the kernels as stored and
/// give bit for bit what the same values widened to float32 give: the SIMD and portable float
/// kernels (one row, blocks of rows), the int8 path, and a pair of mixed dtypes (made float32).
/// Some scales are float16's edge cases: subnormals, negative zero, its largest finite value.
#[test]
fn sixteen_bit_scales_give_the_widened_results() {
    // k = 640 in groups of 32: 20 groups, a full vector of 16 scales and a part of one
    for k in [256usize, 640] {
        sixteen_bit_scales_case(37, k);
    }
}

fn sixteen_bit_scales_case(n: usize, k: usize) {
    let x = arr(&rand_vec(9 * k, 81), &[9, k as i32]);
    let edge = [6.0e-8f32, 1.0e-6, -3.0e-5, -0.0, 65504.0, -2.5e-7];
    for &(bits, group) in &[(4, 32), (8, 64), (4, 128)] {
        let w = arr(&rand_vec(n * k, 80 + bits as u64), &[n as i32, k as i32]);
        let (q, s, b) = ops::quantize(&w, group, bits).unwrap();
        let mut sv = s.to_vec::<f32>().unwrap();
        for (i, v) in edge.iter().enumerate() {
            sv[i * 7] = *v;
        }
        let s = arr(&sv, &s.shape());
        for dt in [Dtype::Float16, Dtype::Bfloat16] {
            let (s16, b16) = (s.astype(dt).unwrap(), b.astype(dt).unwrap());
            let (s32, b32) = (
                s16.astype(Dtype::Float32).unwrap(),
                b16.astype(Dtype::Float32).unwrap(),
            );
            for (scalar, int8) in [(false, false), (true, false), (false, true), (true, true)] {
                ops::set_scalar_kernels(scalar);
                ops::set_int8_activations(int8);
                for rows in [1, 3, 9] {
                    let xr = x.slice_axis(0, 0, rows).unwrap();
                    let mm = |s: &Array, b: &Array| -> Vec<u32> {
                        let y = ops::qgemv_cpu(&xr, &q, s, b, group, bits).unwrap();
                        y.to_vec::<f32>()
                            .unwrap()
                            .iter()
                            .map(|f| f.to_bits())
                            .collect()
                    };
                    let want = mm(&s32, &b32);
                    let what = format!(
                        "{dt:?} {bits}-bit group {group}, k {k}, {rows} rows, scalar {scalar}, int8 {int8}"
                    );
                    assert_eq!(mm(&s16, &b16), want, "{what}");
                    assert_eq!(mm(&s16, &b32), want, "{what}, float32 biases");
                }
            }
            ops::set_scalar_kernels(false);
            ops::set_int8_activations(false);
        }
    }
}

#[cfg(target_arch = "x86_64")]
fn cpu_has_avx512() -> bool {
    std::is_x86_feature_detected!("avx512f")
        && std::is_x86_feature_detected!("avx512bw")
        && std::is_x86_feature_detected!("avx512vl")
}
#[cfg(not(target_arch = "x86_64"))]
fn cpu_has_avx512() -> bool {
    false
}

/// The float kernels at 16 lanes (AVX-512) and at 8 (AVX2, what other x86 CPUs run) give the
/// portable kernel's results up to summation order, and each is batch invariant (9 rows at once
/// = each row alone: blocks of 8 and 4 rows and the tail blocks), with float32, float16 and
/// bfloat16 scales; the 16-bit ones give exactly what the same values in float32 give. The
/// 8-lane run is a child process of this test binary with CORTEX_QGEMV_ISA=avx2.
#[test]
fn float_kernels_agree_across_instruction_sets() {
    let (n, k, m) = (37usize, 384usize, 9usize);
    // all rows at once, then each row alone, for every layout
    let run = || -> (Vec<f32>, Vec<f32>) {
        let x = arr(&rand_vec(m * k, 71), &[m as i32, k as i32]);
        let (mut all, mut alone) = (Vec::new(), Vec::new());
        for &(bits, group) in &[(4, 32), (4, 64), (4, 128), (8, 32), (8, 64), (8, 128)] {
            let w = arr(&rand_vec(n * k, 70 + bits as u64), &[n as i32, k as i32]);
            let (q, s, b) = ops::quantize(&w, group, bits).unwrap();
            // scales and biases as float32, as float16 and as bfloat16 (read as stored by the
            // SIMD kernels): the 16-bit ones give bit for bit what their values in float32 give
            for dt in [Dtype::Float32, Dtype::Float16, Dtype::Bfloat16] {
                let (s, b) = (s.astype(dt).unwrap(), b.astype(dt).unwrap());
                let mm = |x: &Array, s: &Array, b: &Array| {
                    ops::qgemv_cpu(x, &q, s, b, group, bits)
                        .unwrap()
                        .to_vec::<f32>()
                        .unwrap()
                };
                let got = mm(&x, &s, &b);
                if dt != Dtype::Float32 {
                    let (s32, b32) = (
                        s.astype(Dtype::Float32).unwrap(),
                        b.astype(Dtype::Float32).unwrap(),
                    );
                    let want = mm(&x, &s32, &b32);
                    let bits_of = |v: &[f32]| v.iter().map(|f| f.to_bits()).collect::<Vec<_>>();
                    assert_eq!(
                        bits_of(&got),
                        bits_of(&want),
                        "{dt:?} {bits}-bit group {group}"
                    );
                }
                all.extend(got);
                for r in 0..m as i32 {
                    alone.extend(mm(&x.slice_axis(0, r, r + 1).unwrap(), &s, &b));
                }
            }
        }
        (all, alone)
    };
    let to_bytes = |v: &[f32]| -> Vec<u8> { v.iter().flat_map(|f| f.to_le_bytes()).collect() };
    let from_bytes = |b: Vec<u8>| -> Vec<f32> {
        b.chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect()
    };
    if let Ok(path) = std::env::var("CORTEX_QGEMV_TEST_OUT") {
        let (all, alone) = run();
        std::fs::write(&path, to_bytes(&all)).unwrap();
        std::fs::write(format!("{path}.alone"), to_bytes(&alone)).unwrap();
        return;
    }
    ops::set_scalar_kernels(true);
    let (scalar, _) = run();
    ops::set_scalar_kernels(false);
    let (best, best_alone) = run();
    assert_close(&best, &scalar, 1e-5);
    assert_eq!(
        best, best_alone,
        "batch invariance, the CPU's widest kernel"
    );
    if !ops::cpu_has_avx2() {
        return;
    }
    let out = std::env::temp_dir().join(format!("cortex-qgemv-{}", std::process::id()));
    let status = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "float_kernels_agree_across_instruction_sets",
            "--test-threads",
            "1",
        ])
        .env("CORTEX_QGEMV_TEST_OUT", &out)
        .env("CORTEX_QGEMV_ISA", "avx2")
        .stdout(std::process::Stdio::null())
        .status()
        .unwrap();
    assert!(status.success(), "avx2 child failed");
    let avx2 = from_bytes(std::fs::read(&out).unwrap());
    let avx2_alone = from_bytes(std::fs::read(format!("{}.alone", out.display())).unwrap());
    let _ = std::fs::remove_file(&out);
    let _ = std::fs::remove_file(format!("{}.alone", out.display()));
    assert_close(&avx2, &scalar, 1e-5);
    assert_eq!(avx2, avx2_alone, "batch invariance, the 8-lane kernel");
    if cpu_has_avx512() {
        assert_ne!(
            avx2, best,
            "CORTEX_QGEMV_ISA=avx2 gave the 16-lane results: the switch was not taken"
        );
    }
}

/// Attention of one query over keys/values (rows of f64, already visible), scores scaled and
/// capped, softmax in f64: the reference for the decode kernels.
fn attend_f64(
    q: &[f64],
    keys: &[Vec<f64>],
    values: &[Vec<f64>],
    scale: f64,
    softcap: f64,
) -> Vec<f64> {
    let scores: Vec<f64> = keys
        .iter()
        .map(|k| {
            let x = q.iter().zip(k).map(|(a, b)| a * b).sum::<f64>() * scale;
            if softcap > 0.0 {
                softcap * (x / softcap).tanh()
            } else {
                x
            }
        })
        .collect();
    let m = scores.iter().cloned().fold(f64::MIN, f64::max);
    let e: Vec<f64> = scores.iter().map(|x| (x - m).exp()).collect();
    let sum: f64 = e.iter().sum();
    let mut out = vec![0.0; q.len()];
    for (w, v) in e.iter().zip(values) {
        for (o, x) in out.iter_mut().zip(v) {
            *o += w / sum * x;
        }
    }
    out
}

/// One decode case: rows of new q/k/v, storage, and how the kernel is asked to rotate.
struct DecodeCase {
    hq: usize,
    hkv: usize,
    d: usize,
    rope_dims: i32,
    traditional: bool,
    rope_scale: f32,
    input_scale: f32,
}

/// One paged decode step over `[keys, values, write, table]`, on the portable code when
/// `scalar`, evaluated: (output, keys, values).
fn run_paged(
    step: &ops::DecodeStep<'_>,
    [keys, values, write, table]: [&Array; 4],
    scalar: bool,
) -> (Array, Array, Array) {
    ops::set_scalar_kernels(scalar);
    let storage = ops::KvStorage::Paged {
        keys,
        values,
        write,
        table,
    };
    let r = ops::decode_attention(step, storage).unwrap();
    ops::set_scalar_kernels(false);
    ops::eval([&r.0, &r.1, &r.2]).unwrap();
    r
}

/// Each row's `width` positions in scattered slots of a pool of `slots` ([rows, width]), and
/// the slot its new token (at `positions[r]`) is written to.
fn scattered_slots(positions: &[i32], slots: usize, width: usize) -> (Vec<i32>, Vec<i32>) {
    let table: Vec<i32> = (0..positions.len() * width)
        .map(|i| ((i * 29 + 5) % slots) as i32)
        .collect();
    let write = (0..positions.len())
        .map(|r| table[r * width + positions[r] as usize])
        .collect();
    (table, write)
}

impl DecodeCase {
    /// Plain RoPE over every feature, no scaling.
    fn full_rope(hq: usize, hkv: usize, d: usize) -> DecodeCase {
        DecodeCase {
            hq,
            hkv,
            d,
            rope_dims: d as i32,
            traditional: false,
            rope_scale: 1.0,
            input_scale: 1.0,
        }
    }

    /// Random new rows for `rows` tokens (q [rows, Hq * D], k and v [rows, Hkv * D]), and
    /// RoPE's inverse frequencies over `rope_dims`.
    fn new_rows(&self, rows: usize, seed: u64) -> [Vec<f32>; 4] {
        let dims = self.rope_dims;
        [
            rand_vec(rows * self.hq * self.d, seed + 1),
            rand_vec(rows * self.hkv * self.d, seed + 2),
            rand_vec(rows * self.hkv * self.d, seed + 3),
            (0..dims / 2)
                .map(|j| 10000f32.powf(-2.0 * j as f32 / dims as f32))
                .collect(),
        ]
    }

    /// q, k and v rows as the kernel takes them: [1, rows, H * D].
    fn row_arrays(&self, q: &[f32], k: &[f32], v: &[f32], rows: usize) -> [Array; 3] {
        let (q_w, kv_w) = ((self.hq * self.d) as i32, (self.hkv * self.d) as i32);
        [
            arr(q, &[1, rows as i32, q_w]),
            arr(k, &[1, rows as i32, kv_w]),
            arr(v, &[1, rows as i32, kv_w]),
        ]
    }

    /// The kernel's step for these rows (q, k, v) at `positions`: this case's RoPE, and
    /// `scale`, `softcap` and `window`.
    fn step<'a>(
        &self,
        [q, k, v]: &'a [Array; 3],
        positions: &'a Array,
        inv_freq: &'a Array,
        (scale, softcap, window): (f32, f32, i32),
    ) -> ops::DecodeStep<'a> {
        ops::DecodeStep {
            q,
            k,
            v,
            positions,
            head_dim: self.d as i32,
            rope: ops::RopeTable {
                inv_freq,
                dims: self.rope_dims,
                traditional: self.traditional,
                scale: self.rope_scale,
                input_scale: self.input_scale,
            },
            scale,
            softcap,
            window,
        }
    }

    /// A paged step's output in f64: each row's query (rotated by MLX) attends over the keys
    /// and values `pools` hold at its slots (`table`, `width` per row) for the positions it
    /// sees (all up to its own, or its last `window`).
    fn paged_reference(
        &self,
        q: &[f32],
        inv: &[f32],
        positions: &[i32],
        (table, width): (&[i32], usize),
        (kp, vp): (&[f64], &[f64]),
        (scale, softcap, window): (f64, f64, i32),
    ) -> Vec<f32> {
        let (hq, hkv, d) = (self.hq, self.hkv, self.d);
        let mut want = Vec::new();
        for (r, &p) in positions.iter().enumerate() {
            let qr = self.mlx_rope(&q[r * hq * d..][..hq * d], hq, p, inv);
            let len = p as usize + 1;
            let start = if window > 0 {
                len.saturating_sub(window as usize)
            } else {
                0
            };
            for (h, qh) in qr.iter().enumerate() {
                let kvh = h / (hq / hkv);
                let row = |pool: &[f64], j: usize| {
                    let at = (table[r * width + j] as usize * hkv + kvh) * d;
                    pool[at..at + d].to_vec()
                };
                let ks: Vec<_> = (start..len).map(|j| row(kp, j)).collect();
                let vs: Vec<_> = (start..len).map(|j| row(vp, j)).collect();
                want.extend(attend_f64(qh, &ks, &vs, scale, softcap));
            }
        }
        want.iter().map(|&x| x as f32).collect()
    }

    /// `x` ([heads, d] for one token at `pos`) rotated by MLX's own fast::rope (the
    /// reference the kernel must match), as f64 rows.
    fn mlx_rope(&self, x: &[f32], heads: usize, pos: i32, inv: &[f32]) -> Vec<Vec<f64>> {
        let freqs: Vec<f32> = inv.iter().map(|f| 1.0 / f).collect();
        let freqs = arr(&freqs, &[freqs.len() as i32]);
        let mut x = x.to_vec();
        for h in 0..heads {
            for v in &mut x[h * self.d..][..self.rope_dims as usize] {
                *v *= self.input_scale;
            }
        }
        let rotated = fast::rope(
            &arr(&x, &[1, heads as i32, 1, self.d as i32]),
            &Rope {
                dims: self.rope_dims,
                traditional: self.traditional,
                base: None,
                scale: self.rope_scale,
                freqs: Some(&freqs),
            },
            pos,
        )
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
        rotated
            .chunks(self.d)
            .map(|c| c.iter().map(|&v| v as f64).collect())
            .collect()
    }
}

/// The fused decode step (RoPE, cache write, attention: `ops::decode_attention`) on a paged
/// pool equals MLX's RoPE followed by attention computed directly (f64) over each row's slots,
/// with GQA, partial and traditional RoPE, position scaling, Phi-3's input scale, sliding
/// windows and soft-capping; and the returned pool holds the new rows at their slots and
/// every other row unchanged.
#[test]
fn decode_attention_on_a_pool_matches_rope_then_direct_attention() {
    workers_only();
    let (rows, slots, width) = (3usize, 64usize, 20usize);
    let positions = [4i32, 16, 0];
    // each row's positions in scattered, distinct slots
    let table: Vec<i32> = (0..rows * width)
        .map(|i| ((i * 37 + 11) % slots) as i32)
        .collect();
    let write: Vec<i32> = (0..rows)
        .map(|r| table[r * width + positions[r] as usize])
        .collect();
    let cases = [
        (16, true, 1.0, 1.0, 0.0, 0),
        (8, false, 0.5, 1.0, 0.0, 4),
        (16, false, 1.0, 1.3, 2.5, 0),
        (12, true, 1.0, 1.0, 2.5, 6),
    ];
    for (i, &(rope_dims, traditional, rope_scale, input_scale, softcap, window)) in
        cases.iter().enumerate()
    {
        let c = DecodeCase {
            hq: 4,
            hkv: 2,
            d: 16,
            rope_dims,
            traditional,
            rope_scale,
            input_scale,
        };
        let (hq, hkv, d) = (c.hq, c.hkv, c.d);
        let seed = 10 * i as u64;
        let [q, k, v, inv] = c.new_rows(rows, seed);
        let kp = rand_vec(slots * hkv * d, seed + 4);
        let vp = rand_vec(slots * hkv * d, seed + 5);
        let inv_arr = arr(&inv, &[inv.len() as i32]);
        let [q_a, k_a, v_a] = c.row_arrays(&q, &k, &v, rows);
        let pos_a = Array::from_slice(&positions, &[rows as i32]).unwrap();
        let (out, keys, values) = ops::decode_attention(
            &ops::DecodeStep {
                q: &q_a,
                k: &k_a,
                v: &v_a,
                positions: &pos_a,
                head_dim: d as i32,
                rope: ops::RopeTable {
                    inv_freq: &inv_arr,
                    dims: rope_dims,
                    traditional,
                    scale: rope_scale,
                    input_scale,
                },
                scale: 0.3,
                softcap,
                window,
            },
            ops::KvStorage::Paged {
                keys: &arr(&kp, &[slots as i32, hkv as i32, d as i32]),
                values: &arr(&vp, &[slots as i32, hkv as i32, d as i32]),
                write: &Array::from_slice(&write, &[rows as i32]).unwrap(),
                table: &Array::from_slice(&table, &[rows as i32, width as i32]).unwrap(),
            },
        )
        .unwrap();
        assert_eq!(out.shape(), vec![1, rows as i32, (hq * d) as i32]);
        // the pool after the write: the new rows (k rotated) at their slots, the rest as it was
        let (mut kp_want, mut vp_want): (Vec<f64>, Vec<f64>) = (
            kp.iter().map(|&x| x as f64).collect(),
            vp.iter().map(|&x| x as f64).collect(),
        );
        for r in 0..rows {
            let kr = c.mlx_rope(&k[r * hkv * d..][..hkv * d], hkv, positions[r], &inv);
            for h in 0..hkv {
                let at = (write[r] as usize * hkv + h) * d;
                kp_want[at..at + d].copy_from_slice(&kr[h]);
                for j in 0..d {
                    vp_want[at + j] = v[(r * hkv + h) * d + j] as f64;
                }
            }
        }
        let f32s = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<_>>();
        assert_close(&keys.to_vec::<f32>().unwrap(), &f32s(&kp_want), 1e-5);
        assert_eq!(
            values.to_vec::<f32>().unwrap(),
            f32s(&vp_want),
            "values are copied as they are"
        );
        let want = c.paged_reference(
            &q,
            &inv,
            &positions,
            (&table, width),
            (&kp_want, &vp_want),
            (0.3, softcap as f64, window),
        );
        assert_close(&out.to_vec::<f32>().unwrap(), &want, 1e-5);
    }
}

/// Rows over more than 512 positions are attended in parts of 512, each normalized over its
/// part, then combined by their score maxima and sums (`attention_kernels.cc`, kSplit: one
/// sequence's few jobs then fill both threads). The result still equals attention computed
/// directly (f64), with a window that is itself split and with soft-capping, on the vector
/// code and the portable code; and each row gets the same bits alone as inside the batch
/// (rows of 1,301, 514, 701 and 41 positions, SmolLM2's head dimension and grouping).
#[test]
fn long_rows_are_attended_in_parts_and_stay_batch_invariant() {
    workers_only();
    let positions = [1300i32, 513, 700, 40];
    let rows = positions.len();
    // distinct slots for every row's every position: a row alone writes only its own
    let width = 1400usize;
    let slots = rows * width;
    let (table, write) = scattered_slots(&positions, slots, width);
    let c = DecodeCase::full_rope(6, 2, 64);
    let (hkv, d) = (c.hkv, c.d);
    for (i, (softcap, window)) in [(0.0f32, 0i32), (0.0, 900), (2.5, 0)]
        .into_iter()
        .enumerate()
    {
        let seed = 700 + 10 * i as u64;
        let [q, k, v, inv] = c.new_rows(rows, seed);
        let kp = rand_vec(slots * hkv * d, seed + 4);
        let vp = rand_vec(slots * hkv * d, seed + 5);
        let pool = |x: &[f32]| arr(x, &[slots as i32, hkv as i32, d as i32]);
        let inv_arr = arr(&inv, &[inv.len() as i32]);
        let step_of = |rs: std::ops::Range<usize>, scalar: bool| {
            let n = rs.len();
            let (qw, kw) = (c.hq * d, hkv * d);
            let arrays = c.row_arrays(
                &q[rs.start * qw..rs.end * qw],
                &k[rs.start * kw..rs.end * kw],
                &v[rs.start * kw..rs.end * kw],
                n,
            );
            let pos = Array::from_slice(&positions[rs.clone()], &[n as i32]).unwrap();
            let step = c.step(&arrays, &pos, &inv_arr, (0.125, softcap, window));
            let w = Array::from_slice(&write[rs.clone()], &[n as i32]).unwrap();
            let t = Array::from_slice(
                &table[rs.start * width..rs.end * width],
                &[n as i32, width as i32],
            )
            .unwrap();
            let (out, keys, values) = run_paged(&step, [&pool(&kp), &pool(&vp), &w, &t], scalar);
            (out.to_vec::<f32>().unwrap(), keys, values)
        };
        for scalar in [false, true] {
            let (out, keys, values) = step_of(0..rows, scalar);
            let want = c.paged_reference(
                &q,
                &inv,
                &positions,
                (&table, width),
                (&array_f64(&keys), &array_f64(&values)),
                (0.125, softcap as f64, window),
            );
            assert_close(&out, &want, 1e-5);
            let per = c.hq * d;
            for r in 0..rows {
                let (alone, _, _) = step_of(r..r + 1, scalar);
                assert_eq!(
                    f32_bits(&alone),
                    f32_bits(&out[r * per..(r + 1) * per]),
                    "case {i}, row {r} (scalar {scalar}): alone vs in the batch"
                );
            }
        }
    }
}

/// A float16 pool (the int8 path's cache): the step writes the new rows as MLX's astype to
/// float16 rounds them (to nearest even), except that magnitudes past the largest half
/// saturate at +-65504 instead of becoming infinite, subnormals included; and it attends over
/// the halves as over the same values in float32 (f64 reference), on the AVX-512 code (head
/// dimension 64, three query heads per KV head as SmolLM2), the 8-lane code (head dimension 8)
/// and the portable code.
#[test]
fn decode_attention_on_a_float16_pool_rounds_saturates_and_attends() {
    workers_only();
    let (rows, slots, width, hq, hkv) = (3usize, 48usize, 12usize, 6usize, 2usize);
    let positions = [4i32, 11, 0];
    let (table, write) = scattered_slots(&positions, slots, width);
    let half = |a: &Array| a.astype(Dtype::Float16).unwrap();
    let widened = |a: &Array| a.astype(Dtype::Float32).unwrap().to_vec::<f32>().unwrap();
    for d in [64usize, 8] {
        for scalar in [false, true] {
            let c = DecodeCase::full_rope(hq, hkv, d);
            let seed = d as u64 * 7 + scalar as u64;
            let [q, k, mut v, inv] = c.new_rows(rows, seed);
            // past the largest half, at its rounding edge, and subnormal
            v[..5].copy_from_slice(&[1.0e6, -70000.0, 65519.0, 3.0e-6, -1.0e-7]);
            let inv_arr = arr(&inv, &[inv.len() as i32]);
            let rows_a = c.row_arrays(&q, &k, &v, rows);
            let pos_a = Array::from_slice(&positions, &[rows as i32]).unwrap();
            let step = c.step(&rows_a, &pos_a, &inv_arr, (0.125, 0.0, 0));
            let shape = [slots as i32, hkv as i32, d as i32];
            let write_a = Array::from_slice(&write, &[rows as i32]).unwrap();
            let table_a = Array::from_slice(&table, &[rows as i32, width as i32]).unwrap();
            let run = |keys: &Array, values: &Array| {
                run_paged(&step, [keys, values, &write_a, &table_a], scalar)
            };
            // the same old rows in both pools: values a half holds
            let kp = half(&arr(&rand_vec(slots * hkv * d, seed + 4), &shape));
            let vp = half(&arr(&rand_vec(slots * hkv * d, seed + 5), &shape));
            let f32_pool = |a: &Array| a.astype(Dtype::Float32).unwrap();
            let (_, keys32, values32) = run(&f32_pool(&kp), &f32_pool(&vp));
            let (out, keys16, values16) = run(&kp, &vp);
            assert_eq!(keys16.dtype(), Dtype::Float16);
            let saturated = |a: &Array| widened(&half(&a.clip(-65504.0, 65504.0).unwrap()));
            let case = format!("head dim {d}, portable {scalar}");
            assert_eq!(widened(&keys16), saturated(&keys32), "{case}: keys");
            let got_v = widened(&values16);
            assert_eq!(got_v, saturated(&values32), "{case}: values");
            let at = |r: usize, h: usize| (write[r] as usize * hkv + h) * d;
            assert_eq!(
                got_v[at(0, 0)..][..3],
                [65504.0, -65504.0, 65504.0],
                "{case}"
            );
            let subnormal = widened(&half(&arr(&[3.0e-6], &[1])))[0];
            assert!(subnormal > 0.0 && subnormal < 6.1e-5);
            assert_eq!(got_v[at(0, 0) + 3], subnormal, "{case}: subnormal");
            let (kw, vw): (Vec<f64>, Vec<f64>) = (
                widened(&keys16).iter().map(|&x| x as f64).collect(),
                got_v.iter().map(|&x| x as f64).collect(),
            );
            let want = c.paged_reference(
                &q,
                &inv,
                &positions,
                (&table, width),
                (&kw, &vw),
                (0.125, 0.0, 0),
            );
            assert_close(&out.to_vec::<f32>().unwrap(), &want, 1e-5);
        }
    }
}

/// `ops::kv_quantize_rows` (the int8 KV cache's rows): per block of 32, the values over the
/// block's scale (largest magnitude / 127), rounded to nearest even, then the scales' four
/// bytes each; a zero block has scale 0; infinities count as the largest float; a scale that
/// rounds low (or is subnormal) still gives values within +-127; a row of 40 has a block of 32
/// and one of 8, each with its own scale. `kv_dequantize_rows` gives q * scale back.
#[test]
fn int8_kv_rows_quantize_and_dequantize() {
    let rows: [[f32; 4]; 4] = [
        [1.0, -0.5, 0.25, 0.0],
        [0.0; 4],
        [f32::INFINITY, 1.0, -2.0, f32::NEG_INFINITY],
        // 165, -40 and 100 times the smallest subnormal: the scale (165 / 127 of it) rounds
        // down to the smallest, and 165 would not fit
        [
            f32::from_bits(165),
            -f32::from_bits(40),
            0.0,
            f32::from_bits(100),
        ],
    ];
    let flat: Vec<f32> = rows.iter().flatten().copied().collect();
    let stored = ops::kv_quantize_rows(&arr(&flat, &[2, 2, 4])).unwrap();
    assert_eq!(stored.dtype(), Dtype::Int8);
    assert_eq!(stored.shape(), vec![2, 2, 8]);
    assert_eq!(ops::kv_row_width(Dtype::Int8, 4), 8);
    assert_eq!(ops::kv_row_width(Dtype::Float16, 4), 4);
    let bytes = stored.to_vec::<i8>().unwrap();
    let row = |r: usize| -> (Vec<i8>, f32) {
        let b = &bytes[r * 8..][..8];
        let scale = f32::from_ne_bytes([b[4] as u8, b[5] as u8, b[6] as u8, b[7] as u8]);
        (b[..4].to_vec(), scale)
    };
    // -0.5 * 127 = -63.5 rounds to even (-64); 0.25 * 127 = 31.75 -> 32
    assert_eq!(row(0), (vec![127, -64, 32, 0], 1.0 / 127.0));
    assert_eq!(row(1), (vec![0; 4], 0.0));
    assert_eq!(row(2), (vec![127, 0, 0, -127], f32::MAX / 127.0));
    assert_eq!(
        row(3),
        (vec![127, -40, 0, 100], f32::from_bits(1)),
        "the largest value saturates, not wraps"
    );
    let back = ops::kv_dequantize_rows(&stored, Dtype::Float32).unwrap();
    assert_eq!(back.shape(), vec![2, 2, 4]);
    let back = back.to_vec::<f32>().unwrap();
    for r in 0..4 {
        let (q, scale) = row(r);
        let want: Vec<f32> = q.iter().map(|&v| v as f32 * scale).collect();
        assert_eq!(back[r * 4..][..4], want[..], "row {r}");
    }
    // not int8 rows
    assert!(ops::kv_dequantize_rows(&arr(&flat, &[4, 4]), Dtype::Float32).is_err());

    // 40 values: 0..32 up to 31.0 (scale 31 / 127), then 8 of at most 0.5 (scale 0.5 / 127)
    let long: Vec<f32> = (0..40)
        .map(|i| {
            if i < 32 {
                i as f32
            } else {
                -0.5 / (i - 31) as f32
            }
        })
        .collect();
    assert_eq!(ops::kv_row_width(Dtype::Int8, 40), 48);
    let stored = ops::kv_quantize_rows(&arr(&long, &[1, 40])).unwrap();
    assert_eq!(stored.shape(), vec![1, 48]);
    let b = stored.to_vec::<i8>().unwrap();
    let scale = |k: usize| f32::from_ne_bytes(std::array::from_fn(|i| b[40 + 4 * k + i] as u8));
    assert_eq!((scale(0), scale(1)), (31.0 / 127.0, 0.5 / 127.0));
    assert_eq!((b[31], b[32]), (127, -127), "each block's largest is +-127");
    let want: Vec<i8> = long
        .iter()
        .enumerate()
        .map(|(i, &x)| (x / scale(i / 32)).round_ties_even() as i8)
        .collect();
    assert_eq!(b[..40], want[..]);
    let back = ops::kv_dequantize_rows(&stored, Dtype::Float32)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let want: Vec<f32> = (0..40).map(|i| b[i] as f32 * scale(i / 32)).collect();
    assert_eq!(back, want);
}

/// An int8 pool (the int8 path's cache, `ops::kv_quantize_rows` rows): the step writes the new
/// rows with the same bytes `kv_quantize_rows` gives for them (a zero row and a huge value
/// included) and leaves the rest as they were; and its output is the same bits as the step's
/// over a float32 pool holding the rows dequantized (`kv_dequantize_rows`: what a prompt's
/// attention reads), and within 1e-5 of f64 attention over those values. On the AVX-512 code
/// (head dimension 64, three query heads per KV head as SmolLM2; 48, a block of 32 and one of
/// 16), the 8-lane code (head dimension 8) and the portable code.
#[test]
fn decode_attention_on_an_int8_pool_writes_quantized_rows_and_attends_as_dequantized() {
    workers_only();
    let (rows, slots, width, hq, hkv) = (3usize, 48usize, 12usize, 6usize, 2usize);
    // three scratch slots past the tables' for the float32 run's writes
    let pool_slots = slots + rows;
    let positions = [4i32, 11, 0];
    let (table, write) = scattered_slots(&positions, slots, width);
    let scratch: Vec<i32> = (0..rows).map(|r| (slots + r) as i32).collect();
    let dequant = |a: &Array| ops::kv_dequantize_rows(a, Dtype::Float32).unwrap();
    for d in [64usize, 48, 8] {
        for scalar in [false, true] {
            let c = DecodeCase::full_rope(hq, hkv, d);
            let seed = d as u64 * 11 + scalar as u64;
            let [q, k, mut v, inv] = c.new_rows(rows, seed);
            // a huge value in row 0's first head, row 1's first head all zero
            v[2] = 1.0e30;
            v[hkv * d..][..d].fill(0.0);
            let inv_arr = arr(&inv, &[inv.len() as i32]);
            let rows_a = c.row_arrays(&q, &k, &v, rows);
            let pos_a = Array::from_slice(&positions, &[rows as i32]).unwrap();
            let step = c.step(&rows_a, &pos_a, &inv_arr, (0.125, 0.0, 0));
            let table_a = Array::from_slice(&table, &[rows as i32, width as i32]).unwrap();
            let run = |keys: &Array, values: &Array, write: &[i32]| {
                let write_a = Array::from_slice(write, &[rows as i32]).unwrap();
                run_paged(&step, [keys, values, &write_a, &table_a], scalar)
            };
            let shape = [pool_slots as i32, hkv as i32, d as i32];
            let quantized = |seed: u64| {
                let x = arr(&rand_vec(pool_slots * hkv * d, seed), &shape);
                ops::kv_quantize_rows(&x).unwrap()
            };
            let (kp, vp) = (quantized(seed + 4), quantized(seed + 5));
            let (out, keys8, values8) = run(&kp, &vp, &write);
            assert_eq!(keys8.dtype(), Dtype::Int8);
            let w = ops::kv_row_width(Dtype::Int8, d as i32) as usize;
            assert_eq!(keys8.shape(), vec![shape[0], shape[1], w as i32]);
            let case = format!("head dim {d}, portable {scalar}");
            // the new rows in float32 (k rotated), written to the scratch slots
            let (_, keys32, values32) = run(&dequant(&kp), &dequant(&vp), &scratch);
            let scratch_a = Array::from_slice(&scratch, &[rows as i32]).unwrap();
            let write_idx = Array::from_slice(&write, &[rows as i32, 1, 1]).unwrap();
            let expect = |old: &Array, new32: &Array| {
                let new = ops::kv_quantize_rows(&new32.take(&scratch_a, 0).unwrap()).unwrap();
                old.put_along_axis(&write_idx, &new, 0)
                    .unwrap()
                    .to_vec::<i8>()
                    .unwrap()
            };
            assert_eq!(
                keys8.to_vec::<i8>().unwrap(),
                expect(&kp, &keys32),
                "{case}: keys"
            );
            let got_v = values8.to_vec::<i8>().unwrap();
            assert_eq!(got_v, expect(&vp, &values32), "{case}: values");
            let zero_row = (write[1] as usize * hkv) * w;
            assert!(got_v[zero_row..][..w].iter().all(|&b| b == 0), "{case}");
            // attention over the same rows dequantized into a float32 pool (the new ones
            // included; this run writes its own to the scratch slots, which no row reads)
            let (kd, vd) = (dequant(&keys8), dequant(&values8));
            let (out32, _, _) = run(&kd, &vd, &scratch);
            let got = out.to_vec::<f32>().unwrap();
            assert_eq!(
                got,
                out32.to_vec::<f32>().unwrap(),
                "{case}: as dequantized"
            );
            let want = c.paged_reference(
                &q,
                &inv,
                &positions,
                (&table, width),
                (&array_f64(&kd), &array_f64(&vd)),
                (0.125, 0.0, 0),
            );
            assert_close(&got, &want, 1e-5);
        }
    }
}

/// A prompt's attention as one node (`ops::prefill_attention`) against attention computed
/// directly (f64): a chunk continuing at position 5 (each query sees the keys up to its own
/// position), GQA, sliding windows, soft-capping; keys and values as one sequence's buffer
/// sliced to the positions filled ([1, Hkv, capacity, D] -> S) and as the pool's gathered
/// rows transposed ([S, Hkv, D] -> [1, Hkv, S, D]) and with the features strided, in float32
/// and float16; on the AVX-512,
/// 8-lane and portable code (head dimensions 32 and 8).
#[test]
fn prefill_attention_matches_direct_attention() {
    workers_only();
    let (hq, hkv, l, q_start, cap) = (6usize, 2usize, 7usize, 5usize, 16usize);
    let s = q_start + l;
    for (d, window, softcap, scalar) in [
        (32usize, 0, 0.0f32, false),
        (32, 4, 0.0, false),
        (8, 0, 2.5, false),
        (32, 3, 2.5, true),
    ] {
        let seed = d as u64 + window as u64 * 3 + scalar as u64;
        let q = rand_vec(hq * l * d, seed + 1);
        let kb = rand_vec(hkv * cap * d, seed + 2);
        let vb = rand_vec(hkv * cap * d, seed + 3);
        let q_a = arr(&q, &[1, hq as i32, l as i32, d as i32]);
        // one sequence's buffer, the first S positions
        let buf = |x: &[f32]| {
            arr(x, &[1, hkv as i32, cap as i32, d as i32])
                .slice_axis(2, 0, s as i32)
                .unwrap()
        };
        // the first S positions stored with their axes (head, position, feature) in `order`,
        // viewed back as [1, Hkv, S, D] (`order` is its own inverse here)
        let stored = |x: &[f32], order: [usize; 3]| {
            let dims = [hkv, s, d];
            let shape = order.map(|a| dims[a]);
            let data: Vec<f32> = (0..hkv * s * d)
                .map(|t| {
                    let at = [
                        t / (shape[1] * shape[2]),
                        (t / shape[2]) % shape[1],
                        t % shape[2],
                    ];
                    let mut hji = [0; 3];
                    for (k, &a) in order.iter().enumerate() {
                        hji[a] = at[k];
                    }
                    x[(hji[0] * cap + hji[1]) * d + hji[2]]
                })
                .collect();
            arr(&data, &shape.map(|n| n as i32))
                .transpose(&order.map(|a| a as i32))
                .unwrap()
                .expand_dims(0)
                .unwrap()
        };
        // the pool's layout ([S, Hkv, D] rows), and features strided ([Hkv, D, S]: gathered)
        let pool = |x: &[f32]| stored(x, [1, 0, 2]);
        let columns = |x: &[f32]| stored(x, [0, 2, 1]);
        for layout in ["buffer", "pool", "columns"] {
            for dtype in [Dtype::Float32, Dtype::Float16] {
                let make = |x: &[f32]| {
                    let a = match layout {
                        "buffer" => buf(x),
                        "pool" => pool(x),
                        _ => columns(x),
                    };
                    a.astype(dtype).unwrap()
                };
                let (k_a, v_a) = (make(&kb), make(&vb));
                // the values the kernel sees
                let seen = |a: &Array| -> Vec<f64> {
                    a.astype(Dtype::Float32)
                        .unwrap()
                        .to_vec::<f32>()
                        .unwrap()
                        .iter()
                        .map(|&x| x as f64)
                        .collect()
                };
                let (kw, vw) = (seen(&k_a), seen(&v_a));
                ops::set_scalar_kernels(scalar);
                let out =
                    ops::prefill_attention(&q_a, &k_a, &v_a, q_start as i32, 0.3, softcap, window)
                        .unwrap();
                ops::set_scalar_kernels(false);
                assert_eq!(out.shape(), vec![1, l as i32, (hq * d) as i32]);
                let mut want = Vec::new();
                for i in 0..l {
                    let p = q_start + i;
                    let start = if window > 0 {
                        (p + 1).saturating_sub(window as usize)
                    } else {
                        0
                    };
                    for h in 0..hq {
                        let kvh = h / (hq / hkv);
                        let qh: Vec<f64> = q[(h * l + i) * d..][..d]
                            .iter()
                            .map(|&x| x as f64)
                            .collect();
                        let row = |w: &[f64], j: usize| w[(kvh * s + j) * d..][..d].to_vec();
                        let ks: Vec<_> = (start..=p).map(|j| row(&kw, j)).collect();
                        let vs: Vec<_> = (start..=p).map(|j| row(&vw, j)).collect();
                        want.extend(attend_f64(&qh, &ks, &vs, 0.3, softcap as f64));
                    }
                }
                let want: Vec<f32> = want.iter().map(|&x| x as f32).collect();
                assert_close(&out.to_vec::<f32>().unwrap(), &want, 1e-5);
            }
        }
    }
    // queries past the keys are refused
    let q = arr(&rand_vec(2 * 4 * 8, 1), &[1, 2, 4, 8]);
    let k = arr(&rand_vec(2 * 3 * 8, 2), &[1, 2, 3, 8]);
    assert!(ops::prefill_attention(&q, &k, &k, 0, 1.0, 0.0, 0).is_err());
}

/// One sequence's cache [1, Hkv, capacity, D]: the new token's key and value land at its
/// position, it attends to positions 0..=position, and the storage is written in place (the
/// array handed in sees the new row) unless it is a broadcast, which is copied first.
#[test]
fn decode_attention_on_one_sequence_writes_in_place_and_attends_its_prefix() {
    workers_only();
    let (hq, hkv, d, cap, pos) = (6usize, 2usize, 8usize, 24usize, 9i32);
    let c = DecodeCase {
        hq,
        hkv,
        d,
        rope_dims: 8,
        traditional: false,
        rope_scale: 1.0,
        input_scale: 1.0,
    };
    let inv: Vec<f32> = (0..4).map(|j| 500f32.powf(-(j as f32) / 4.0)).collect();
    let inv_arr = arr(&inv, &[4]);
    let (q, k, v) = (
        rand_vec(hq * d, 31),
        rand_vec(hkv * d, 32),
        rand_vec(hkv * d, 33),
    );
    let cache_k = rand_vec(hkv * cap * d, 34);
    let cache_v = rand_vec(hkv * cap * d, 35);
    let rows_a = c.row_arrays(&q, &k, &v, 1);
    let pos_a = Array::from_slice(&[pos], &[1]).unwrap();
    let step = c.step(&rows_a, &pos_a, &inv_arr, (0.5, 0.0, 0));
    let shape = [1, hkv as i32, cap as i32, d as i32];
    let (keys_in, values_in) = (arr(&cache_k, &shape), arr(&cache_v, &shape));
    keys_in.eval().unwrap();
    let sequence = |keys: &Array, values: &Array| {
        ops::decode_attention(&step, ops::KvStorage::Sequence { keys, values }).unwrap()
    };
    let (out, keys, values) = sequence(&keys_in, &values_in);
    ops::eval([&out, &keys, &values]).unwrap();
    let got_k = keys.to_vec::<f32>().unwrap();
    assert_eq!(keys_in.to_vec::<f32>().unwrap(), got_k, "written in place");
    let at = |h: usize, j: usize| (h * cap + j) * d;
    let kr = c.mlx_rope(&k, hkv, pos, &inv);
    let mut want_k: Vec<f64> = cache_k.iter().map(|&x| x as f64).collect();
    let mut want_v: Vec<f64> = cache_v.iter().map(|&x| x as f64).collect();
    for h in 0..hkv {
        want_k[at(h, pos as usize)..][..d].copy_from_slice(&kr[h]);
        for j in 0..d {
            want_v[at(h, pos as usize) + j] = v[h * d + j] as f64;
        }
    }
    let f32s = |x: &[f64]| x.iter().map(|&v| v as f32).collect::<Vec<_>>();
    assert_close(&got_k, &f32s(&want_k), 1e-5);
    assert_eq!(values.to_vec::<f32>().unwrap(), f32s(&want_v));
    let qr = c.mlx_rope(&q, hq, pos, &inv);
    let mut want = Vec::new();
    for (h, qh) in qr.iter().enumerate() {
        let kvh = h / (hq / hkv);
        let rows = |buf: &[f64]| {
            (0..=pos as usize)
                .map(|j| buf[at(kvh, j)..][..d].to_vec())
                .collect::<Vec<_>>()
        };
        want.extend(attend_f64(qh, &rows(&want_k), &rows(&want_v), 0.5, 0.0));
    }
    assert_close(&out.to_vec::<f32>().unwrap(), &f32s(&want), 1e-5);

    // A broadcast (zeros never written) is copied, not written through.
    let zero = Array::full(&[], 0.0, Dtype::Float32)
        .unwrap()
        .broadcast_to(&shape)
        .unwrap();
    let (_, keys, _) = sequence(&zero, &zero);
    let got = keys.to_vec::<f32>().unwrap();
    assert_eq!(
        got.iter().filter(|x| **x != 0.0).count(),
        hkv * d,
        "only the new row is set"
    );
    assert!(
        zero.to_vec::<f32>().unwrap().iter().all(|x| *x == 0.0),
        "the broadcast is untouched"
    );
}

/// Several matmuls of one x in one node (`gemv_many`: q/k/v, gate/up) give each matmul's own
/// result bit for bit (the same kernel per row, the rows only numbered across weights), for
/// 4- and 8-bit weights, dense ones and int8 activations; the SwiGLU epilogue gives
/// silu(gate) * up; mismatched weights are refused.
#[test]
fn gemv_many_equals_its_matmuls_one_by_one() {
    let (k, m) = (128usize, 3usize);
    let x = arr(&rand_vec(m * k, 41), &[m as i32, k as i32]);
    let dense: Vec<Array> = [40usize, 24, 40]
        .iter()
        .enumerate()
        .map(|(i, &n)| arr(&rand_vec(n * k, 42 + i as u64), &[n as i32, k as i32]))
        .collect();
    let vecs = |a: &[Array]| {
        a.iter()
            .map(|a| a.to_vec::<f32>().unwrap())
            .collect::<Vec<_>>()
    };
    for int8 in [false, true] {
        ops::set_int8_activations(int8);
        for (bits, group) in [(4, 32), (8, 64), (4, 64)] {
            let q: Vec<_> = dense
                .iter()
                .map(|w| ops::quantize(w, group, bits).unwrap())
                .collect();
            let triples: Vec<_> = q.iter().map(|(w, s, b)| (w, s, b)).collect();
            let one_by_one: Vec<Array> = q
                .iter()
                .map(|(w, s, b)| ops::qgemv_cpu(&x, w, s, b, group, bits).unwrap())
                .collect();
            let weights = ops::GemvWeights::Quantized {
                weights: &triples,
                packed: &[],
                group_size: group,
                bits,
            };
            let together = ops::gemv_many(&x, weights, false).unwrap();
            assert_eq!(
                vecs(&together),
                vecs(&one_by_one),
                "{bits}-bit, group {group}, int8 {int8}"
            );
            let pair = ops::GemvWeights::Quantized {
                weights: &[triples[0], triples[2]],
                packed: &[],
                group_size: group,
                bits,
            };
            let fused = ops::gemv_many(&x, pair, true).unwrap();
            assert_eq!(fused.len(), 1);
            let (g, u) = (&vecs(&one_by_one)[0], &vecs(&one_by_one)[2]);
            let want: Vec<f32> = g
                .iter()
                .zip(u)
                .map(|(g, u)| g / (1.0 + (-g).exp()) * u)
                .collect();
            assert_close(&fused[0].to_vec::<f32>().unwrap(), &want, 1e-6);
            let mismatched = ops::GemvWeights::Quantized {
                weights: &triples[..2],
                packed: &[],
                group_size: group,
                bits,
            };
            assert!(
                ops::gemv_many(&x, mismatched, true).is_err(),
                "SwiGLU of 40 and 24 outputs"
            );
        }
    }
    ops::set_int8_activations(false);
    let refs: Vec<&Array> = dense.iter().collect();
    let together = ops::gemv_many(&x, ops::GemvWeights::Dense(&refs), false).unwrap();
    let one_by_one: Vec<Array> = dense
        .iter()
        .map(|w| ops::gemv_cpu(&x, w).unwrap())
        .collect();
    assert_eq!(vecs(&together), vecs(&one_by_one), "dense");
    let short = arr(&rand_vec(8 * (k / 2), 49), &[8, (k / 2) as i32]);
    assert!(ops::gemv_many(&x, ops::GemvWeights::Dense(&[&dense[0], &short]), false).is_err());
}

/// Regression: MLX gives each thread its own stream, so the kernel's thread pool is entered
/// from several threads at once; it once mixed their jobs up. Each thread must get its own
/// answer.
#[test]
fn qgemv_is_correct_under_concurrent_callers() {
    let handles: Vec<_> = (0..4u64)
        .map(|t| {
            std::thread::spawn(move || {
                let (n, k) = (96usize, 128usize);
                let w = arr(&rand_vec(n * k, 1000 + t), &[n as i32, k as i32]);
                let (q, s, b) = ops::quantize(&w, 32, if t % 2 == 0 { 4 } else { 8 }).unwrap();
                let bits = if t % 2 == 0 { 4 } else { 8 };
                for i in 0..20 {
                    let x = arr(&rand_vec(k, t * 100 + i), &[1, k as i32]);
                    let want = ops::quantized_matmul(&x, &q, &s, Some(&b), true, 32, bits).unwrap();
                    let got = ops::qgemv_cpu(&x, &q, &s, &b, 32, bits).unwrap();
                    assert_close(
                        &got.to_vec::<f32>().unwrap(),
                        &want.to_vec::<f32>().unwrap(),
                        1e-4,
                    );
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn dense_gemv_matches_matmul() {
    for &(m, n, k) in &[(1usize, 33usize, 70usize), (4, 64, 256), (1, 5, 7)] {
        let x = rand_vec(m * k, 3);
        let w = rand_vec(n * k, 4);
        let got = ops::gemv_cpu(
            &arr(&x, &[m as i32, k as i32]),
            &arr(&w, &[n as i32, k as i32]),
        )
        .unwrap();
        let mut wt = vec![0.0; k * n];
        for r in 0..n {
            for c in 0..k {
                wt[c * n + r] = w[r * k + c];
            }
        }
        assert_close(
            &got.to_vec::<f32>().unwrap(),
            &naive_matmul(&x, &wt, m, k, n),
            1e-5,
        );
    }
    assert!(ops::gemv_cpu(
        &arr(&rand_vec(8, 1), &[1, 8]),
        &arr(&rand_vec(18, 1), &[2, 9])
    )
    .is_err());
}

/// Activations are often views (transposed heads, slices): the kernels gather them.
#[test]
fn gemv_kernels_accept_strided_inputs() {
    let (n, k, m) = (40usize, 64usize, 3usize);
    let w = arr(&rand_vec(n * k, 5), &[n as i32, k as i32]);
    let (q, s, b) = ops::quantize(&w, 32, 4).unwrap();
    let xt = arr(&rand_vec(k * m, 6), &[k as i32, m as i32]).t().unwrap(); // [m, k], strided
    let want = ops::quantized_matmul(&xt, &q, &s, Some(&b), true, 32, 4)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    let got = ops::qgemv_cpu(&xt, &q, &s, &b, 32, 4)
        .unwrap()
        .to_vec::<f32>()
        .unwrap();
    assert_close(&got, &want, 1e-4);
    let want = xt.matmul(&w.t().unwrap()).unwrap().to_vec::<f32>().unwrap();
    let got = ops::gemv_cpu(&xt, &w).unwrap().to_vec::<f32>().unwrap();
    assert_close(&got, &want, 1e-5);
}

/// The portable kernels (what a CPU without AVX2 runs, `set_scalar_kernels`) give the SIMD
/// (AVX2, AVX-512) kernels' results to rounding, for quantized, dense and attention kernels
/// alike; and the switch is really taken: the two differ in the last bits somewhere (FMA vs
/// separate multiply-add, another summation order).
#[test]
fn scalar_kernels_agree_with_the_simd_ones() {
    let run = |scalar: bool| -> Vec<f32> {
        ops::set_scalar_kernels(scalar);
        let (n, k, m) = (70usize, 256usize, 3usize);
        let w = arr(&rand_vec(n * k, 21), &[n as i32, k as i32]);
        let x = arr(&rand_vec(m * k, 22), &[m as i32, k as i32]);
        let mut out = Vec::new();
        for (bits, group) in [(4, 32), (8, 64)] {
            let (q, s, b) = ops::quantize(&w, group, bits).unwrap();
            out.extend(
                ops::qgemv_cpu(&x, &q, &s, &b, group, bits)
                    .unwrap()
                    .to_vec::<f32>()
                    .unwrap(),
            );
        }
        out.extend(ops::gemv_cpu(&x, &w).unwrap().to_vec::<f32>().unwrap());
        // head dimensions: one, four and eight 16-float vectors (AVX-512), and one that is not
        // a multiple of 16 (the AVX2 kernel on any x86 CPU); 1 to 6 query heads per KV head
        // (the AVX-512 kernel's value passes take up to 4, or 2 at 128 features, at a time);
        // 71 and 100 positions (scored in tiles of 64, the first with a tail of 3)
        let (b, width, slots) = (2i32, 100i32, 256i32);
        let table: Vec<i32> = (0..b * width).map(|i| (i * 7 + 3) % slots).collect();
        let inv = arr(&[1.0, 0.1, 0.01, 0.001], &[4]);
        let positions = Array::from_slice(&[70i32, 99], &[b]).unwrap();
        for (hq, hkv, d, softcap, window) in [
            (4i32, 2i32, 16i32, 0.0, 0),
            (4, 2, 16, 2.5, 6),
            (6, 2, 64, 0.0, 0),
            (8, 2, 64, 0.0, 0),
            (12, 2, 16, 0.0, 0),
            (6, 1, 128, 0.0, 0),
            (3, 3, 64, 0.0, 0),
            (3, 1, 40, 0.0, 0),
        ] {
            let (q, k, v) = (
                arr(&rand_vec((b * hq * d) as usize, 23), &[1, b, hq * d]),
                arr(&rand_vec((b * hkv * d) as usize, 26), &[1, b, hkv * d]),
                arr(&rand_vec((b * hkv * d) as usize, 27), &[1, b, hkv * d]),
            );
            let (att, keys, _) = ops::decode_attention(
                &ops::DecodeStep {
                    q: &q,
                    k: &k,
                    v: &v,
                    positions: &positions,
                    head_dim: d,
                    rope: ops::RopeTable {
                        inv_freq: &inv,
                        dims: 8,
                        traditional: false,
                        scale: 1.0,
                        input_scale: 1.0,
                    },
                    scale: 0.25,
                    softcap,
                    window,
                },
                ops::KvStorage::Paged {
                    keys: &arr(&rand_vec((slots * hkv * d) as usize, 24), &[slots, hkv, d]),
                    values: &arr(&rand_vec((slots * hkv * d) as usize, 25), &[slots, hkv, d]),
                    write: &Array::from_slice(&[table[70], table[width as usize + 99]], &[b])
                        .unwrap(),
                    table: &Array::from_slice(&table, &[b, width]).unwrap(),
                },
            )
            .unwrap();
            out.extend(att.to_vec::<f32>().unwrap());
            out.extend(keys.to_vec::<f32>().unwrap());
        }
        ops::set_scalar_kernels(false);
        out
    };
    let simd = run(false);
    let scalar = run(true);
    assert_close(&scalar, &simd, 1e-4);
    if ops::cpu_has_avx2() {
        assert!(
            simd.iter()
                .zip(&scalar)
                .any(|(a, b)| a.to_bits() != b.to_bits()),
            "scalar and AVX2 results are bit-identical: the scalar switch was not taken"
        );
    }
}

// ---- int8 activations (src/qdot.h) ----

/// qgemv with int8 activations for (bits, group) over m rows of x; restores the float setting.
fn qgemv_int8(x: &Array, w: &Array, group: i32, bits: i32) -> Vec<f32> {
    let (q, s, b) = ops::quantize(w, group, bits).unwrap();
    ops::set_int8_activations(true);
    let out = ops::qgemv_cpu(x, &q, &s, &b, group, bits);
    ops::set_int8_activations(false);
    out.unwrap().to_vec::<f32>().unwrap()
}

/// The int8 path differs from the float one by its activation rounding only: per group, x is
/// stored as q0 * amax/127 (off by at most amax/254) plus the rounding of that remainder at
/// its own scale (off by at most amax/254/254), and the bias term uses exact sums of x, so
/// each output moves by at most sum |s_g * q_i| * amax(group of i) / 64516 (plus float
/// rounding). One rounding alone, a wrong nibble order, scale or group would move it more.
#[test]
fn int8_activations_stay_within_their_rounding_bound() {
    for &(bits, group) in &[(4, 32), (4, 64), (4, 128), (8, 32), (8, 64), (8, 128)] {
        for &m in &[1usize, 3, 8] {
            let (n, k) = (70usize, 256usize);
            let w = arr(&rand_vec(n * k, 40 + bits as u64), &[n as i32, k as i32]);
            let xs = rand_vec(m * k, 41 + m as u64);
            let x = arr(&xs, &[m as i32, k as i32]);
            let (q, s, b) = ops::quantize(&w, group, bits).unwrap();
            let exact = ops::qgemv_cpu(&x, &q, &s, &b, group, bits)
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            // s_g * q_i: the dequantized weights without their group's bias
            let deq = ops::dequantize(&q, &s, Some(&b), group, bits, Some(Dtype::Float32))
                .unwrap()
                .to_vec::<f32>()
                .unwrap();
            let biases = b.to_vec::<f32>().unwrap();
            let got = qgemv_int8(&x, &w, group, bits);
            let g = group as usize;
            let mut moved = 0usize;
            for row in 0..m {
                let amax: Vec<f32> = xs[row * k..(row + 1) * k]
                    .chunks(g)
                    .map(|c| c.iter().fold(0f32, |a, v| a.max(v.abs())))
                    .collect();
                for col in 0..n {
                    let bound: f32 = (0..k)
                        .map(|i| {
                            let scaled = deq[col * k + i] - biases[col * (k / g) + i / g];
                            scaled.abs() * amax[i / g] / 64516.0
                        })
                        .sum::<f32>()
                        + 1e-4;
                    let (e, i8) = (exact[row * n + col], got[row * n + col]);
                    assert!(
                        (e - i8).abs() <= bound,
                        "bits {bits} group {group} row {row} col {col}: int8 {i8}, float {e}, bound {bound}"
                    );
                    moved += usize::from(e != i8);
                }
            }
            assert!(
                moved > 0,
                "bits {bits} group {group}: the int8 switch was not taken"
            );
        }
    }
}

/// int8 results of a row do not depend on the rows beside it, bit for bit.
#[test]
fn int8_rows_are_batch_invariant() {
    let (n, k) = (45usize, 256usize);
    let w = arr(&rand_vec(n * k, 50), &[n as i32, k as i32]);
    for &(bits, group) in &[(4, 64), (4, 32), (8, 64)] {
        let x = arr(&rand_vec(8 * k, 51), &[8, k as i32]);
        let all = qgemv_int8(&x, &w, group, bits);
        for r in 0..8 {
            let one = qgemv_int8(&x.slice_axis(0, r, r + 1).unwrap(), &w, group, bits);
            let at = r as usize * n..(r as usize + 1) * n;
            assert_eq!(one, all[at], "bits {bits} group {group} row {r}");
        }
    }
}

/// int8 activations are decode's option: a node of more than 8 rows (prefill) computes in
/// float32, bit for bit what the float kernel gives; 8 rows still take the int8 kernels.
#[test]
fn int8_activations_leave_prefill_rows_in_float() {
    let (n, k) = (24usize, 256usize);
    let w = arr(&rand_vec(n * k, 70), &[n as i32, k as i32]);
    let (q, s, b) = ops::quantize(&w, 64, 4).unwrap();
    let float = |x: &Array| {
        ops::qgemv_cpu(x, &q, &s, &b, 64, 4)
            .unwrap()
            .to_vec::<f32>()
            .unwrap()
    };
    let nine = arr(&rand_vec(9 * k, 71), &[9, k as i32]);
    assert_eq!(qgemv_int8(&nine, &w, 64, 4), float(&nine));
    let eight = nine.slice_axis(0, 0, 8).unwrap();
    assert_ne!(qgemv_int8(&eight, &w, 64, 4), float(&eight));
}

/// Every instruction set this CPU has (AVX-512 VNNI, AVX-VNNI, AVX2, scalar) gives the int8
/// results of the portable kernel, up to float summation order (the integer dots are exact).
/// Each runs in a child process of this test binary with CORTEX_QDOT_ISA capping the choice.
fn f32_bits(v: &[f32]) -> Vec<u32> {
    v.iter().map(|f| f.to_bits()).collect()
}

/// The int8 kernels on weights repacked 16 rows per vector (`pack_rows16`): the SIMD and the
/// portable code agree bit for bit, a row's result does not depend on the rows beside it or on
/// the other weights in its node, the results agree with the int8 kernels on MLX's layout up to
/// float summation order, and where the int8 path does not run (int8 off, more than 8 rows)
/// the blocks are ignored. 16-bit scales pack to the same blocks as their float32 values. The
/// SwiGLU epilogue's SIMD and portable code agree bit for bit too.
#[test]
fn packed_int8_kernels_agree_with_the_plain_layout() {
    workers_only();
    let (k, m) = (256usize, 9usize);
    let x = arr(&rand_vec(m * k, 91), &[m as i32, k as i32]);
    let mut floored = false; // some gate below exp's floor
    for &(bits, group, n) in &[
        (4, 32, 37usize),
        (4, 64, 16),
        (4, 128, 50),
        (8, 32, 37),
        (8, 64, 5),
    ] {
        let w = arr(&rand_vec(n * k, 90 + bits as u64), &[n as i32, k as i32]);
        let (q, s, b) = ops::quantize(&w, group, bits).unwrap();
        let p = ops::pack_rows16(&q, &s, &b, group, bits)
            .unwrap()
            .expect("packs");
        let (s16, b16) = (
            s.astype(Dtype::Float16).unwrap(),
            b.astype(Dtype::Float16).unwrap(),
        );
        let (s32, b32) = (
            s16.astype(Dtype::Float32).unwrap(),
            b16.astype(Dtype::Float32).unwrap(),
        );
        let from16 = ops::pack_rows16(&q, &s16, &b16, group, bits)
            .unwrap()
            .unwrap();
        let from32 = ops::pack_rows16(&q, &s32, &b32, group, bits)
            .unwrap()
            .unwrap();
        assert_eq!(
            from16.to_vec::<u8>().unwrap(),
            from32.to_vec::<u8>().unwrap()
        );
        let run = |x: &Array, packed: bool| -> Vec<f32> {
            let blocks = [&p];
            let weights = ops::GemvWeights::Quantized {
                weights: &[(&q, &s, &b)],
                packed: if packed { &blocks } else { &[] },
                group_size: group,
                bits,
            };
            let out = ops::gemv_many(x, weights, false).unwrap();
            out[0].to_vec::<f32>().unwrap()
        };
        let what = format!("{bits}-bit group {group}, {n} weight rows");
        ops::set_int8_activations(true);
        for rows in [1i32, 3, 6, 7, 8] {
            let xr = x.slice_axis(0, 0, rows).unwrap();
            let packed = run(&xr, true);
            assert_close(&packed, &run(&xr, false), 1e-5);
            ops::set_scalar_kernels(true);
            let portable = run(&xr, true);
            ops::set_scalar_kernels(false);
            assert_eq!(
                f32_bits(&packed),
                f32_bits(&portable),
                "{what}: portable code"
            );
            for r in 0..rows {
                let alone = run(&x.slice_axis(0, r, r + 1).unwrap(), true);
                let at = r as usize * n..(r as usize + 1) * n;
                assert_eq!(
                    f32_bits(&alone),
                    f32_bits(&packed[at]),
                    "{what}: row {r} alone"
                );
            }
            // beside another weight in one node
            let blocks = [&p, &p];
            let two = ops::GemvWeights::Quantized {
                weights: &[(&q, &s, &b), (&q, &s, &b)],
                packed: &blocks,
                group_size: group,
                bits,
            };
            for y in ops::gemv_many(&xr, two, false).unwrap() {
                assert_eq!(
                    f32_bits(&y.to_vec::<f32>().unwrap()),
                    f32_bits(&packed),
                    "{what}: in a pair"
                );
            }
            // The SwiGLU epilogue (gate = up = this weight) on x scaled so gates reach far
            // past exp's floor: the SIMD code and the portable code give the same bits (their
            // matmuls agree bit for bit, above), within float rounding of silu(g) * u.
            let top = packed.iter().fold(0f32, |m, g| m.max(g.abs()));
            let wide = Array::from_slice(&[150.0 / top], &[1])
                .unwrap()
                .multiply(&xr)
                .unwrap();
            let swiglu = || {
                let blocks = [&p, &p];
                let pair = ops::GemvWeights::Quantized {
                    weights: &[(&q, &s, &b), (&q, &s, &b)],
                    packed: &blocks,
                    group_size: group,
                    bits,
                };
                let out = ops::gemv_many(&wide, pair, true).unwrap();
                out[0].to_vec::<f32>().unwrap()
            };
            let simd = swiglu();
            ops::set_scalar_kernels(true);
            let portable = swiglu();
            ops::set_scalar_kernels(false);
            assert_eq!(f32_bits(&simd), f32_bits(&portable), "{what}: SwiGLU");
            let g = run(&wide, true);
            let want: Vec<f32> = g
                .iter()
                .map(|&g| (g as f64 * g as f64 / (1.0 + (-g as f64).exp())) as f32)
                .collect();
            floored |= g.iter().any(|&g| g < -87.3);
            assert_close(&simd, &want, 1e-6);
        }
        // 9 rows take the float kernels, int8 on or not
        let float = ops::qgemv_cpu(&x, &q, &s, &b, group, bits)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(f32_bits(&run(&x, true)), f32_bits(&float), "{what}: 9 rows");
        ops::set_int8_activations(false);
        let x1 = x.slice_axis(0, 0, 1).unwrap();
        let float1 = ops::qgemv_cpu(&x1, &q, &s, &b, group, bits)
            .unwrap()
            .to_vec::<f32>()
            .unwrap();
        assert_eq!(
            f32_bits(&run(&x1, true)),
            f32_bits(&float1),
            "{what}: int8 off"
        );
    }
    assert!(floored, "no gate reached exp's floor");
    // shapes the kernels do not take are not packed
    let w = arr(&rand_vec(16 * 128, 99), &[16, 128]);
    let (q, s, b) = ops::quantize(&w, 64, 2).unwrap();
    assert!(ops::pack_rows16(&q, &s, &b, 64, 2).unwrap().is_none());
}

/// The largest sums the packed int8 kernels meet: every weight but one a group at its top code
/// (15 or 255) times activations all at +-127. The AVX2 kernel adds products in 16-bit lanes
/// before widening them; these must neither wrap nor saturate: the SIMD code gives the
/// portable code's bits and the exact sum (each group: one weight 1, the rest 0, which MLX's
/// quantizer stores as the top code at a negative scale; times x = +-1).
#[test]
fn packed_int8_kernels_hold_the_largest_sums() {
    workers_only();
    let (n, k) = (24usize, 512usize);
    for &(bits, group) in &[(4, 32), (4, 64), (4, 128), (8, 32), (8, 64), (8, 128)] {
        let w: Vec<f32> = (0..n * k)
            .map(|i| if i % group == 0 { 1.0 } else { 0.0 })
            .collect();
        let (q, s, b) = ops::quantize(&arr(&w, &[n as i32, k as i32]), group as i32, bits).unwrap();
        let width = bits as u32;
        let top = (1u32 << width) - 1;
        let codes = q.to_vec::<u32>().unwrap();
        let at_top = codes
            .iter()
            .flat_map(|&word| (0..32 / width).map(move |i| (word >> (i * width)) & top))
            .filter(|&c| c == top)
            .count();
        assert_eq!(
            at_top,
            n * (k - k / group),
            "{bits}-bit group {group}: codes"
        );
        let p = ops::pack_rows16(&q, &s, &b, group as i32, bits)
            .unwrap()
            .expect("packs");
        for sign in [1.0f32, -1.0] {
            let x = arr(&vec![sign; 3 * k], &[3, k as i32]);
            let run = || {
                let blocks = [&p];
                let weights = ops::GemvWeights::Quantized {
                    weights: &[(&q, &s, &b)],
                    packed: &blocks,
                    group_size: group as i32,
                    bits,
                };
                ops::gemv_many(&x, weights, false).unwrap()[0]
                    .to_vec::<f32>()
                    .unwrap()
            };
            ops::set_int8_activations(true);
            let simd = run();
            ops::set_scalar_kernels(true);
            let portable = run();
            ops::set_scalar_kernels(false);
            ops::set_int8_activations(false);
            let what = format!("{bits}-bit group {group}, x = {sign}");
            assert_eq!(f32_bits(&simd), f32_bits(&portable), "{what}");
            let want = vec![sign * (k / group) as f32; 3 * n];
            assert_close(&simd, &want, 1e-5);
        }
    }
}

#[test]
fn int8_kernels_agree_across_instruction_sets() {
    let run = || -> Vec<f32> {
        let (n, k) = (37usize, 384usize);
        let x = arr(&rand_vec(5 * k, 61), &[5, k as i32]);
        let mut out = Vec::new();
        for &(bits, group) in &[(4, 32), (4, 64), (4, 128), (8, 32), (8, 64), (8, 128)] {
            let w = arr(&rand_vec(n * k, 60 + bits as u64), &[n as i32, k as i32]);
            out.extend(qgemv_int8(&x, &w, group, bits));
        }
        out
    };
    if let Ok(path) = std::env::var("CORTEX_QDOT_TEST_OUT") {
        let bytes: Vec<u8> = run().iter().flat_map(|v| v.to_le_bytes()).collect();
        std::fs::write(&path, bytes).unwrap();
        std::fs::write(format!("{path}.isa"), ops::int8_kernel_name()).unwrap();
        return;
    }
    ops::set_scalar_kernels(true);
    let scalar = run();
    ops::set_scalar_kernels(false);
    let best = ops::int8_kernel_name();
    let order = ["avx512vnni", "avxvnni", "avx2", "scalar"];
    let from = order.iter().position(|i| *i == best).unwrap();
    let dir = std::env::temp_dir().join(format!("cortex-qdot-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    for isa in &order[from..] {
        let out = dir.join(isa);
        let status = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "int8_kernels_agree_across_instruction_sets",
                "--test-threads",
                "1",
            ])
            .env("CORTEX_QDOT_TEST_OUT", &out)
            .env("CORTEX_QDOT_ISA", isa)
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "{isa}: child failed");
        let ran = std::fs::read_to_string(format!("{}.isa", out.display())).unwrap();
        let got: Vec<f32> = std::fs::read(&out)
            .unwrap()
            .chunks(4)
            .map(|c| f32::from_le_bytes(c.try_into().unwrap()))
            .collect();
        assert_close(&got, &scalar, 1e-5);
        // avxvnni is skipped by a CPU with AVX-512 VNNI but no AVX-VNNI: it runs avx2 then
        if *isa != "avxvnni" {
            assert_eq!(ran, *isa, "CORTEX_QDOT_ISA={isa} ran {ran}");
        }
    }
    let _ = std::fs::remove_dir_all(&dir);
}
