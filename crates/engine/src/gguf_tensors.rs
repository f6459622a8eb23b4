//! GGUF tensor data -> MLX arrays, decoded here block by block.
//!
//! MLX's own GGUF reader (0.32) knows only F32, F16, Q4_0, Q4_1 and Q8_0: it refuses Q5_0, Q5_1
//! and Q5_K, and turns Q4_K into float16 with the wrong sub-block scales without an error. The
//! files people download are mostly K-quants (Q4_K_M = Q4_K with some Q6_K, Q5_K_M = Q5_K with
//! some Q6_K), so the importer reads every tensor itself:
//!
//! | GGML | MLX | per group of 32 |
//! |---|---|---|
//! | F32, F16, BF16 | dense float32 | |
//! | Q4_0 | affine 4-bit | scale d, bias -8d |
//! | Q4_1 | affine 4-bit | scale d, bias m |
//! | Q5_0 | affine 5-bit | scale d, bias -16d |
//! | Q5_1 | affine 5-bit | scale d, bias m |
//! | Q8_0 | affine 8-bit | scale d, bias -128d (q = int8 + 128) |
//! | Q4_K | affine 4-bit | scale d * sc[j], bias -dmin * m[j] (sub-block j of the 256-block) |
//! | Q5_K | affine 5-bit | as Q4_K, with the fifth bit from qh |
//! | Q6_K | affine 8-bit, requantized | min/max of the 32 dequantized values |
//!
//! Every mapping but Q6_K is exact: scales and biases are float32 (d * sc needs up to 17
//! significant bits, more than float16 has), so MLX's `scale * q + bias` gives ggml's own
//! dequantized values bit for bit (tests compare with PyPI `gguf`). Q6_K's 16-element
//! sub-blocks have no MLX counterpart (MLX's quantized matmul takes groups of 32, 64 or 128),
//! so its values are requantized to 8 bits per group of 32, which adds well under one Q6_K step
//! of error (measured in docs/MODELS.md). IQ and other types are a typed error.
//!
//! MLX packs a row's quantized values as one little-endian bit stream cut into u32 words; a
//! group of 32 values at `bits` bits is exactly `bits` words, so groups are packed one by one.
use crate::error::{EngineError, Result};
use cortex_mlx::Array;
use cortex_tokenizer::gguf::{self, GgufMetadata, GgufTensorInfo};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom};
use std::path::Path;

const F32: u32 = 0;
const F16: u32 = 1;
const Q4_0: u32 = 2;
const Q4_1: u32 = 3;
const Q5_0: u32 = 6;
const Q5_1: u32 = 7;
const Q8_0: u32 = 8;
const Q4_K: u32 = 12;
const Q5_K: u32 = 13;
const Q6_K: u32 = 14;
const BF16: u32 = 30;

/// GGML tensor types the importer reads, with their names.
pub const SUPPORTED_TYPES: &[(u32, &str)] = &[
    (F32, "F32"),
    (F16, "F16"),
    (BF16, "BF16"),
    (Q4_0, "Q4_0"),
    (Q4_1, "Q4_1"),
    (Q5_0, "Q5_0"),
    (Q5_1, "Q5_1"),
    (Q8_0, "Q8_0"),
    (Q4_K, "Q4_K"),
    (Q5_K, "Q5_K"),
    (Q6_K, "Q6_K"),
];

/// "F32, F16, ..." for messages.
pub fn supported_type_names() -> String {
    SUPPORTED_TYPES
        .iter()
        .map(|(_, n)| *n)
        .collect::<Vec<_>>()
        .join(", ")
}

/// One group of 32 values as MLX stores it.
struct Group {
    q: [u8; 32],
    scale: f32,
    bias: f32,
}

fn f16(b: &[u8]) -> f32 {
    let h = u16::from_le_bytes([b[0], b[1]]) as u32;
    let sign = (h & 0x8000) << 16;
    let exp = (h >> 10) & 0x1f;
    let frac = h & 0x3ff;
    let bits = match (exp, frac) {
        (0, 0) => sign,
        // subnormal: frac * 2^-24, exact in f32
        (0, f) => return sign_of(h) * f as f32 * (1.0 / 16_777_216.0),
        (0x1f, f) => sign | 0x7f80_0000 | (f << 13),
        (e, f) => sign | ((e + 112) << 23) | (f << 13),
    };
    f32::from_bits(bits)
}

fn sign_of(h: u32) -> f32 {
    if h & 0x8000 != 0 {
        -1.0
    } else {
        1.0
    }
}

/// Q4_0/Q5_0 style: low nibbles are elements 0..16, high nibbles 16..32; `qh` (if any) holds
/// the fifth bit of element j at bit j.
fn nibbles(qs: &[u8], qh: Option<u32>) -> [u8; 32] {
    let mut q = [0u8; 32];
    for j in 0..16 {
        q[j] = qs[j] & 0xf;
        q[j + 16] = qs[j] >> 4;
    }
    if let Some(qh) = qh {
        for (j, v) in q.iter_mut().enumerate() {
            *v |= (((qh >> j) & 1) as u8) << 4;
        }
    }
    q
}

/// K-quants' 6-bit sub-block scale and min `j` (0..8) from their 12 packed bytes.
fn scale_min_k4(j: usize, s: &[u8]) -> (f32, f32) {
    if j < 4 {
        ((s[j] & 63) as f32, (s[j + 4] & 63) as f32)
    } else {
        let sc = (s[j + 4] & 0xf) | ((s[j - 4] >> 6) << 4);
        let m = (s[j + 4] >> 4) | ((s[j] >> 6) << 4);
        (sc as f32, m as f32)
    }
}

/// The groups of one block of `ggml_type` (its bytes in `b`).
fn block_groups(ggml_type: u32, b: &[u8], out: &mut Vec<Group>) {
    match ggml_type {
        Q4_0 => {
            let d = f16(b);
            out.push(Group {
                q: nibbles(&b[2..18], None),
                scale: d,
                bias: -8.0 * d,
            });
        }
        Q4_1 => out.push(Group {
            q: nibbles(&b[4..20], None),
            scale: f16(b),
            bias: f16(&b[2..]),
        }),
        Q5_0 => {
            let d = f16(b);
            let qh = u32::from_le_bytes([b[2], b[3], b[4], b[5]]);
            out.push(Group {
                q: nibbles(&b[6..22], Some(qh)),
                scale: d,
                bias: -16.0 * d,
            });
        }
        Q5_1 => {
            let qh = u32::from_le_bytes([b[4], b[5], b[6], b[7]]);
            out.push(Group {
                q: nibbles(&b[8..24], Some(qh)),
                scale: f16(b),
                bias: f16(&b[2..]),
            });
        }
        Q8_0 => {
            let d = f16(b);
            let mut q = [0u8; 32];
            for (v, &x) in q.iter_mut().zip(&b[2..34]) {
                *v = x ^ 0x80; // int8 + 128
            }
            out.push(Group {
                q,
                scale: d,
                bias: -128.0 * d,
            });
        }
        Q4_K | Q5_K => {
            let (d, dmin) = (f16(b), f16(&b[2..]));
            let scales = &b[4..16];
            let (qh, qs) = if ggml_type == Q5_K {
                (Some(&b[16..48]), &b[48..176])
            } else {
                (None, &b[16..144])
            };
            for j in 0..8 {
                let (sc, m) = scale_min_k4(j, scales);
                let chunk = &qs[32 * (j / 2)..][..32];
                let mut q = [0u8; 32];
                for (l, v) in q.iter_mut().enumerate() {
                    *v = if j % 2 == 0 {
                        chunk[l] & 0xf
                    } else {
                        chunk[l] >> 4
                    };
                    if let Some(qh) = qh {
                        *v |= ((qh[l] >> j) & 1) << 4;
                    }
                }
                out.push(Group {
                    q,
                    scale: d * sc,
                    bias: -(dmin * m),
                });
            }
        }
        Q6_K => {
            let w = dequantize_q6_k(b);
            for g in w.chunks_exact(32) {
                out.push(requantize_8bit(g));
            }
        }
        _ => unreachable!("checked by the caller"),
    }
}

/// One Q6_K block's 256 values, as ggml computes them: d * sc[e / 16] * (q - 32).
fn dequantize_q6_k(b: &[u8]) -> [f32; 256] {
    let (ql, qh, sc) = (&b[..128], &b[128..192], &b[192..208]);
    let d = f16(&b[208..]);
    let mut w = [0f32; 256];
    for n in 0..2 {
        let (ql, qh) = (&ql[64 * n..], &qh[32 * n..]);
        for l in 0..32 {
            let q = [
                (ql[l] & 0xf) | ((qh[l] & 3) << 4),
                (ql[l + 32] & 0xf) | (((qh[l] >> 2) & 3) << 4),
                (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4),
                (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4),
            ];
            for (k, &q) in q.iter().enumerate() {
                let e = 128 * n + 32 * k + l;
                let s = sc[e / 16] as i8 as f32;
                w[e] = d * s * (q as i32 - 32) as f32;
            }
        }
    }
    w
}

/// 32 values on an 8-bit affine grid spanning their range.
fn requantize_8bit(w: &[f32]) -> Group {
    let lo = w.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = w.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let scale = (hi - lo) / 255.0;
    let mut q = [0u8; 32];
    if scale > 0.0 {
        for (v, &x) in q.iter_mut().zip(w) {
            *v = ((x - lo) / scale).round().clamp(0.0, 255.0) as u8;
        }
    }
    Group { q, scale, bias: lo }
}

/// Appends 32 values of `bits` bits as MLX packs them: `bits` little-endian u32 words.
fn pack(q: &[u8; 32], bits: u32, out: &mut Vec<u32>) {
    let (mut acc, mut filled) = (0u64, 0u32);
    for &v in q {
        acc |= (v as u64) << filled;
        filled += bits;
        if filled >= 32 {
            out.push(acc as u32);
            acc >>= 32;
            filled -= 32;
        }
    }
    debug_assert_eq!(filled, 0);
}

/// The MLX bit width a quantized GGML type lands in.
fn mlx_bits(ggml_type: u32) -> Option<u32> {
    match ggml_type {
        Q4_0 | Q4_1 | Q4_K => Some(4),
        Q5_0 | Q5_1 | Q5_K => Some(5),
        Q8_0 | Q6_K => Some(8),
        _ => None,
    }
}

/// A tensor's data as MLX arrays: `name` -> dense float32, or (for a quantized `x.weight`)
/// `x.weight` (packed uint32), `x.scales` and `x.biases` (float32), as MLX's reader names them.
fn convert(t: &GgufTensorInfo, data: &[u8], out: &mut BTreeMap<String, Array>) -> Result<()> {
    let bad = |detail: &str| EngineError::Gguf(format!("tensor {}: {detail}", t.name));
    if !SUPPORTED_TYPES.iter().any(|(id, _)| *id == t.ggml_type) {
        return Err(bad("unsupported type"));
    }
    let (block, block_bytes) = gguf::ggml_block(t.ggml_type)
        .map(|(b, n)| (b as usize, n as usize))
        .ok_or_else(|| bad("unsupported type"))?;
    // MLX order: outermost first
    let shape: Vec<i32> = t.shape.iter().rev().map(|&d| d as i32).collect();
    let cols = *t.shape.first().unwrap_or(&1) as usize;
    if !cols.is_multiple_of(block) || !data.len().is_multiple_of(block_bytes) {
        return Err(bad("rows are not whole blocks"));
    }
    let Some(bits) = mlx_bits(t.ggml_type) else {
        let values: Vec<f32> = match t.ggml_type {
            F32 => data
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            F16 => data.chunks_exact(2).map(f16).collect(),
            _ => data
                .chunks_exact(2)
                .map(|c| f32::from_bits((u16::from_le_bytes([c[0], c[1]]) as u32) << 16))
                .collect(),
        };
        out.insert(t.name.clone(), Array::from_slice(&values, &shape)?);
        return Ok(());
    };
    let blocks = data.len() / block_bytes;
    let groups_total = blocks * block / 32;
    let mut groups = Vec::with_capacity(8);
    let mut packed = Vec::with_capacity(groups_total * bits as usize);
    let (mut scales, mut biases) = (
        Vec::with_capacity(groups_total),
        Vec::with_capacity(groups_total),
    );
    for b in data.chunks_exact(block_bytes) {
        groups.clear();
        block_groups(t.ggml_type, b, &mut groups);
        for g in &groups {
            pack(&g.q, bits, &mut packed);
            scales.push(g.scale);
            biases.push(g.bias);
        }
    }
    let last = shape.len() - 1;
    let mut wshape = shape.clone();
    wshape[last] = (cols * bits as usize / 32) as i32;
    let mut sshape = shape;
    sshape[last] = (cols / 32) as i32;
    let base = t.name.strip_suffix(".weight").unwrap_or(&t.name);
    out.insert(
        format!("{base}.weight"),
        Array::from_slice(&packed, &wshape)?,
    );
    out.insert(
        format!("{base}.scales"),
        Array::from_slice(&scales, &sshape)?,
    );
    out.insert(
        format!("{base}.biases"),
        Array::from_slice(&biases, &sshape)?,
    );
    Ok(())
}

/// Every tensor of the GGUF file `src` (whose metadata is `meta`, already checked with
/// `check_tensor_data`: every tensor's bytes lie inside the file).
pub fn read_all(src: &Path, meta: &GgufMetadata) -> Result<BTreeMap<String, Array>> {
    let mut f = std::fs::File::open(src).map_err(EngineError::io(src))?;
    let mut out = BTreeMap::new();
    let mut data = Vec::new();
    for t in &meta.tensors {
        let len = t
            .byte_size()
            .ok_or_else(|| EngineError::Gguf(format!("tensor {}: unknown size", t.name)))?;
        f.seek(SeekFrom::Start(meta.data_offset + t.offset))
            .map_err(EngineError::io(src))?;
        data.resize(len as usize, 0);
        f.read_exact(&mut data).map_err(EngineError::io(src))?;
        convert(t, &data, &mut out)?;
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(x: f32) -> [u8; 2] {
        // exact for the values used here (small integers and halves)
        let bits = x.to_bits();
        let sign = ((bits >> 16) & 0x8000) as u16;
        let exp = ((bits >> 23) & 0xff) as i32 - 127 + 15;
        let frac = ((bits >> 13) & 0x3ff) as u16;
        let v = if x == 0.0 {
            sign
        } else {
            sign | ((exp as u16) << 10) | frac
        };
        v.to_le_bytes()
    }

    #[test]
    fn half_floats_convert_exactly() {
        for x in [0.0f32, 1.0, -2.5, 0.5, 65504.0, 6.1035156e-5] {
            assert_eq!(f16(&h(x)), x);
        }
        assert_eq!(f16(&[0x01, 0x00]), 5.9604645e-8, "smallest subnormal");
        assert_eq!(f16(&[0x01, 0x80]), -5.9604645e-8);
        assert!(f16(&[0x00, 0x7c]).is_infinite());
    }

    #[test]
    fn packing_follows_mlx_bit_streams() {
        // 0..31 at 5 bits: the words mx.quantize produced for q = 31 - i (see the research note)
        let mut q = [0u8; 32];
        for (i, v) in q.iter_mut().enumerate() {
            *v = 31 - i as u8;
        }
        let mut out = Vec::new();
        pack(&q, 5, &mut out);
        assert_eq!(
            out,
            [0x75be77df, 0x3a56d7c6, 0x35cf8465, 0xc74254b6, 0x00443214]
        );
        for bits in [2, 3, 4, 6, 8] {
            let mut q = [0u8; 32];
            for (i, v) in q.iter_mut().enumerate() {
                *v = (i as u8 * 7) & ((1 << bits) - 1) as u8;
            }
            let mut out = Vec::new();
            pack(&q, bits, &mut out);
            assert_eq!(out.len(), bits as usize);
            for (i, &v) in q.iter().enumerate() {
                let bit = i * bits as usize;
                let word = |k: usize| out.get(k).copied().unwrap_or(0) as u64;
                let two = word(bit / 32) | word(bit / 32 + 1) << 32;
                assert_eq!(((two >> (bit % 32)) & ((1 << bits) - 1)) as u8, v);
            }
        }
    }

    #[test]
    fn hand_made_blocks_decode_as_ggml_defines() {
        // Q5_0: d = 0.5, qs[0] = 0x21, qh bits 0 and 16: w[0] = 0.5 * (17 - 16), w[16] = 0.5 * (18 - 16)
        let mut b = vec![0u8; 22];
        b[..2].copy_from_slice(&h(0.5));
        b[2..6].copy_from_slice(&(1u32 | 1 << 16).to_le_bytes());
        b[6] = 0x21;
        let mut g = Vec::new();
        block_groups(Q5_0, &b, &mut g);
        let w = |g: &Group, i: usize| g.scale * g.q[i] as f32 + g.bias;
        assert_eq!((w(&g[0], 0), w(&g[0], 16), w(&g[0], 1)), (0.5, 1.0, -8.0));
        // Q4_K: d = 1, dmin = 0.5, sc0 = 3, m0 = 2, qs[0] = 0x95: w[0] = 3 * 5 - 0.5 * 2.
        // Sub-block 5: sc5 = 7 | 1 << 4 = 23, m5 = 4 | 2 << 4 = 36 (their high bits sit in
        // bytes 1 and 5); qs[64] = 0xa0 is chunk 2's first byte, whose high nibble (10) is
        // element 160, the first of sub-block 5: w[160] = 23 * 10 - 0.5 * 36.
        let mut b = vec![0u8; 144];
        b[..2].copy_from_slice(&h(1.0));
        b[2..4].copy_from_slice(&h(0.5));
        let s = &mut b[4..16];
        s[0] = 3;
        s[4] = 2;
        s[9] = 7 | 4 << 4; // low nibbles of sc5 and m5
        s[1] |= 1 << 6; // sc5 high bits: from s[5 - 4]
        s[5] |= 2 << 6; // m5 high bits: from s[5]
        b[16] = 0x95;
        b[16 + 64] = 0xa0;
        let mut g = Vec::new();
        block_groups(Q4_K, &b, &mut g);
        assert_eq!(g.len(), 8);
        assert_eq!(w(&g[0], 0), 14.0);
        assert_eq!(w(&g[5], 0), 23.0 * 10.0 - 0.5 * 36.0);
        // Q6_K: d = 1, sc[g] = g + 1, ql[0] = 0x21, ql[32] = 0x43, qh[0] = 0b11100100
        let mut b = vec![0u8; 210];
        b[0] = 0x21;
        b[32] = 0x43;
        b[128] = 0b1110_0100;
        for (i, s) in b[192..208].iter_mut().enumerate() {
            *s = i as u8 + 1;
        }
        b[208..210].copy_from_slice(&h(1.0));
        let v = dequantize_q6_k(&b);
        assert_eq!((v[0], v[32], v[64], v[96]), (-31.0, -39.0, 10.0, 140.0));
    }

    #[test]
    fn requantized_groups_stay_within_half_a_step() {
        let w: Vec<f32> = (0..32)
            .map(|i| ((i * 37 % 23) as f32 - 11.0) * 0.173)
            .collect();
        let g = requantize_8bit(&w);
        for (i, &x) in w.iter().enumerate() {
            let y = g.scale * g.q[i] as f32 + g.bias;
            assert!((x - y).abs() <= g.scale * 0.5 + 1e-6, "{x} vs {y}");
        }
        let flat = requantize_8bit(&[0.25; 32]);
        assert_eq!(flat.scale * flat.q[3] as f32 + flat.bias, 0.25);
    }
}
