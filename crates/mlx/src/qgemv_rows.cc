// The float matmul kernels of qgemv_rows.h. Numerics: per group, out += s * dot(q, x) +
// b * sum(x), the same affine form as MLX's kernel, accumulated in float32; every kernel does a
// row's arithmetic the same way whatever the block of rows, so results are batch-invariant.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*, which it reports as used
// uninitialized once they are inlined (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

#include "kernels.h"
#include "qgemv_rows.h"

namespace cortex_mlx::gemv_rows {

#if defined(__x86_64__)
using kernels::add_bias512;
using kernels::hsum;
using kernels::side1;
using kernels::side16;
using kernels::side8;
#endif
using kernels::SideElem;
using kernels::SideType;

// One group: dot(q, x) for `group` packed values.
inline float dot_group_scalar(const uint8_t* q, const float* x, int group, int bits) {
  float acc = 0.f;
  if (bits == 8) {
    for (int i = 0; i < group; ++i) acc += float(q[i]) * x[i];
  } else {
    for (int i = 0; i < group; i += 2) {
      acc += float(q[i / 2] & 0xF) * x[i] + float(q[i / 2] >> 4) * x[i + 1];
    }
  }
  return acc;
}

#if defined(__x86_64__)
// What a block of the quantized kernels reads: its M rows of x with their per-group sums, and
// for weight row r the packed values, scales and biases (stored as S).
template <int M, SideType S>
struct Operands {
  const Problem& p;
  const int groups;
  const float* x[M];
  const float* xs[M];
  Operands(const Problem& p, int m0) : p(p), groups(p.k / p.group) {
    for (int j = 0; j < M; ++j) {
      x[j] = p.x + size_t(m0 + j) * p.k;
      xs[j] = p.xsums + size_t(m0 + j) * groups;
    }
  }
  const uint8_t* w(int r) const { return p.w + size_t(r) * (size_t(p.k) * p.bits / 8); }
  const SideElem<S>* s(int r) const { return sides(p.scales, p.scales16) + size_t(r) * groups; }
  const SideElem<S>* b(int r) const { return sides(p.biases, p.biases16) + size_t(r) * groups; }

 private:
  static const SideElem<S>* sides(const float* f32, const uint16_t* f16) {
    if constexpr (S == SideType::F32) {
      return f32;
    } else {
      return f16;
    }
  }
};

// The scales of a weight row as float32, for a kernel's group loop: the stored floats
// themselves, or the row's 16-bit scales converted into buf (which holds a row rounded up to
// a whole vector).
template <SideType S>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline const float* row_scales16(const SideElem<S>* s, int groups,
                                                                                     float* buf) {
  if constexpr (S == SideType::F32) {
    return s;
  } else {
    for (int g = 0; g < groups; g += 16) _mm512_storeu_ps(buf + g, side16<S>(s + g, groups - g));
    return buf;
  }
}
template <SideType S>
__attribute__((target("avx2,f16c"))) inline const float* row_scales8(const SideElem<S>* s, int groups, float* buf) {
  if constexpr (S == SideType::F32) {
    return s;
  } else {
    int g = 0;
    for (; g + 8 <= groups; g += 8) _mm256_storeu_ps(buf + g, side8<S>(s + g));
    for (; g < groups; ++g) buf[g] = side1<S>(s + g);
    return buf;
  }
}

// Floats per row of converted scales: a row rounded up to a whole 16-lane vector.
inline int scale_stride(int groups) { return (groups + 15) / 16 * 16; }

// A thread's buffer for `rows` rows of converted scales.
inline float* scale_buffer(int groups, int rows) {
  thread_local std::vector<float> buf;
  buf.resize(size_t(scale_stride(groups)) * rows);
  return buf.data();
}

// The end of one output of the AVX2 kernels: hsum(total + the weights' bias term) (sum over
// groups of b[g] * xsum[g], 8 groups to a vector, the rest one at a time).
template <SideType S>
__attribute__((target("avx2,fma,f16c"))) inline float finish_avx2(__m256 total, const SideElem<S>* b, const float* xs,
                                                                  int groups) {
  __m256 bias = _mm256_setzero_ps();
  int g = 0;
  for (; g + 8 <= groups; g += 8) bias = _mm256_fmadd_ps(side8<S>(b + g), _mm256_loadu_ps(xs + g), bias);
  float tail = 0.f;
  // a fused multiply-add per term, spelled out: left to the compiler, the contraction of a * b + c
  // into a fused multiply-add differed between the float32 and the 16-bit instantiations
  for (; g < groups; ++g) tail = std::fma(side1<S>(b + g), xs[g], tail);
  return hsum(_mm256_add_ps(total, bias)) + tail;
}

// 4-bit weights in groups that are not a multiple of 16 (rows_avx2_fixed's slices): M rows of
// x (M <= 4), x as it is, 8 weights unpacked at a time from a 32-bit word; otherwise
// rows_avx2_fixed's arithmetic (d per group, total += s_g * d, then the bias term).
template <int M, SideType S>
__attribute__((target("avx2,fma,f16c"))) void rows_avx2_block(const Problem& p, int m0, int n0, int n1) {
  const Operands<M, S> o(p, m0);
  float* buf = S == SideType::F32 ? nullptr : scale_buffer(o.groups, 1);
  const int groups = o.groups;
  const int group = p.group;
  const auto& x = o.x;
  const auto& xs = o.xs;
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i nibble = _mm256_set1_epi32(0xF);
  for (int r = n0; r < n1; ++r) {
    const uint8_t* wrow = o.w(r);
    __m256 total[M];
    for (int j = 0; j < M; ++j) total[j] = _mm256_setzero_ps();
    const float* sc = row_scales8<S>(o.s(r), groups, buf);
    for (int g = 0; g < groups; ++g) {
      const int base = g * group;
      __m256 d[M];
      for (int j = 0; j < M; ++j) d[j] = _mm256_setzero_ps();
      const uint8_t* q = wrow + base / 2;
      for (int i = 0; i < group; i += 8) {
        uint32_t word;
        std::memcpy(&word, q + i / 2, 4);
        const __m256 w =
            _mm256_cvtepi32_ps(_mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(word)), shifts), nibble));
        for (int j = 0; j < M; ++j) d[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x[j] + base + i), d[j]);
      }
      const __m256 s = _mm256_set1_ps(sc[g]);
      for (int j = 0; j < M; ++j) total[j] = _mm256_fmadd_ps(d[j], s, total[j]);
    }
    for (int j = 0; j < M; ++j) p.out[size_t(m0 + j) * p.n + r] = finish_avx2<S>(total[j], o.b(r), xs[j], groups);
  }
}

// M rows of x (M <= 4) against weight rows n0..n1, R weight rows to a pass, in groups of G
// (32, 64 or 128, a constant so the group loops unroll; 0: p.group, any multiple of 16 for
// 4-bit weights and of 8 for 8-bit ones). Per row and group: d = q . x over the group's
// unscaled weights (each unpacked slice shared by the M rows), then total += s_g * d; after
// the groups, the bias term sum_g b_g * xsum_g. The scale is applied once per group, not per
// weight, and the groups' dot products are independent, so the CPU overlaps them: only the one
// multiply-add per group is a chain. The arithmetic is the same whatever M and R are, so a
// sequence gets bit-identical results alone or inside a batch.
// 4-bit weights come in 16-weight slices (8 bytes): low nibbles are the even elements, high
// nibbles the odd ones; `p.x` is then permuted to match (permute_for_nibbles), so a slice is
// one vpmovzxbd from memory (8 bytes into 8 lanes) split into its nibbles by an and and a
// shift, and two vectors of x with no shuffles.
// Until the twenty-first session this was the general kernel above, at 5.5 cycles per 16
// 4-bit weights for one row of x in L2 (one thread, SmolLM2's [1536, 576] gate): it issued 15
// instructions for them where the arithmetic needs 7 (index arithmetic, a run-time test of the
// bit width, a 16-bit scale converted per group). Here bits are a constant, a row's scales are
// converted 8 at a time before its groups, and one offset indexes every row. For one row of x
// two weight rows to a pass give the core two independent chains: 3.8 cycles (the converts,
// one a cycle on Zen 2, bound it at 2); four rows of x 22.2 -> 7.7. In decode the weights
// come from memory: each row prefetches a line kPrefetch bytes ahead (the 211 matmuls of a
// SmolLM2 token on weights from DRAM, two threads: 8.4 -> 5.9 ms; bench/gemv_rows_bench.cc).
constexpr int kPrefetch = 2048;
template <int M, int R, int BITS, SideType S, int G>
__attribute__((target("avx2,fma,f16c"))) void rows_avx2_fixed(const Problem& p, int m0, int n0, int n1) {
  static_assert(G % 16 == 0 && (BITS == 4 || BITS == 8));
  const int group = G > 0 ? G : p.group;
  const int group_bytes = group * BITS / 8;  // a row's bytes per group
  const int per_line = std::max(1, 64 / group_bytes);  // groups per cache line of a row
  const Operands<M, S> o(p, m0);
  const int groups = o.groups;
  const int stride = scale_stride(groups);
  float* buf = S == SideType::F32 ? nullptr : scale_buffer(groups, R);
  const __m256i lo4 = _mm256_set1_epi32(0xF);
  int r = n0;
  for (; r + R <= n1; r += R) {
    const uint8_t* w[R];
    const float* sc[R];
    __m256 total[M][R];
    for (int k = 0; k < R; ++k) {
      w[k] = o.w(r + k);
      sc[k] = row_scales8<S>(o.s(r + k), groups, S == SideType::F32 ? nullptr : buf + k * stride);
      for (int j = 0; j < M; ++j) total[j][k] = _mm256_setzero_ps();
    }
    const auto& x = o.x;
    // one offset into every row (x and weights) rather than a pointer per row to step: GCC
    // stepped four pointers in a vector register, through the stack
    for (int g = 0, line = 0; g < groups; ++g) {
      const size_t xo = size_t(g) * group, wo = size_t(g) * group_bytes;
      // a cache line kPrefetch bytes ahead of each row, one per 64 bytes the row advances (past
      // the last row's end that is harmless: prefetches do not fault)
      if (g == line) {
        line += per_line;
        for (int k = 0; k < R; ++k) {
          for (int c = 0; c < std::max(group_bytes, 64); c += 64) {
            _mm_prefetch(reinterpret_cast<const char*>(w[k] + wo + kPrefetch + c), _MM_HINT_T0);
          }
        }
      }
      __m256 d[M][R];
      for (int j = 0; j < M; ++j) {
        for (int k = 0; k < R; ++k) d[j][k] = _mm256_setzero_ps();
      }
      if constexpr (BITS == 4) {
#pragma GCC unroll 8
        for (int i = 0; i < group; i += 16) {
#pragma GCC unroll 4
          for (int k = 0; k < R; ++k) {
            const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(w[k] + wo + i / 2)));
            const __m256 even = _mm256_cvtepi32_ps(_mm256_and_si256(v, lo4)), odd = _mm256_cvtepi32_ps(_mm256_srli_epi32(v, 4));
#pragma GCC unroll 4
            for (int j = 0; j < M; ++j) {
              d[j][k] = _mm256_fmadd_ps(even, _mm256_loadu_ps(x[j] + xo + i), d[j][k]);
              d[j][k] = _mm256_fmadd_ps(odd, _mm256_loadu_ps(x[j] + xo + i + 8), d[j][k]);
            }
          }
        }
      } else {
#pragma GCC unroll 8
        for (int i = 0; i < group; i += 8) {
#pragma GCC unroll 4
          for (int k = 0; k < R; ++k) {
            const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(w[k] + wo + i));
            const __m256 q = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(v));
#pragma GCC unroll 4
            for (int j = 0; j < M; ++j) d[j][k] = _mm256_fmadd_ps(q, _mm256_loadu_ps(x[j] + xo + i), d[j][k]);
          }
        }
      }
#pragma GCC unroll 4
      for (int k = 0; k < R; ++k) {
        const __m256 s = _mm256_broadcast_ss(sc[k] + g);
#pragma GCC unroll 4
        for (int j = 0; j < M; ++j) total[j][k] = _mm256_fmadd_ps(d[j][k], s, total[j][k]);
      }
    }
#pragma GCC unroll 4
    for (int k = 0; k < R; ++k) {
#pragma GCC unroll 4
      for (int j = 0; j < M; ++j) {
        p.out[size_t(m0 + j) * p.n + r + k] = finish_avx2<S>(total[j][k], o.b(r + k), o.xs[j], groups);
      }
    }
  }
  if constexpr (R > 1) {
    if (r < n1) rows_avx2_fixed<M, 1, BITS, S, G>(p, m0, r, n1);
  }
}

// The same arithmetic 16 lanes wide, for CPUs with AVX-512: 4-bit slices of 32 weights (16
// bytes: 16 even elements, then 16 odd ones; x permuted to match), 8-bit slices of 16. Half the
// instructions per weight of the 8-lane kernel. Used when the group is a multiple of the slice.
template <int M, SideType S, int G>
__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl"))) void rows_avx512_block(const Problem& p, int m0,
                                                                                         int n0, int n1) {
  const Operands<M, S> o(p, m0);
  float* buf = S == SideType::F32 ? nullptr : scale_buffer(o.groups, 1);
  const int groups = o.groups;
  // the group size: a constant for the sizes models use, so the group loops unroll
  const int group = G > 0 ? G : p.group;
  const auto& x = o.x;
  const auto& xs = o.xs;
  const __m128i lo4 = _mm_set1_epi8(0x0F);
  for (int r = n0; r < n1; ++r) {
    const uint8_t* wrow = o.w(r);
    const auto* srow = o.s(r);
    const auto* brow = o.b(r);
    __m512 total[M];
    for (int j = 0; j < M; ++j) total[j] = _mm512_setzero_ps();
    const float* sc = row_scales16<S>(srow, groups, buf);
    for (int g = 0; g < groups; ++g) {
      const int base = g * group;
      __m512 d[M];
      for (int j = 0; j < M; ++j) d[j] = _mm512_setzero_ps();
      if (p.bits == 4) {
        const uint8_t* q = wrow + base / 2;
        for (int i = 0; i < group; i += 32) {
          const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i / 2));
          const __m512 even = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v, lo4)));
          const __m512 odd = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), lo4)));
          for (int j = 0; j < M; ++j) {
            d[j] = _mm512_fmadd_ps(even, _mm512_loadu_ps(x[j] + base + i), d[j]);
            d[j] = _mm512_fmadd_ps(odd, _mm512_loadu_ps(x[j] + base + i + 16), d[j]);
          }
        }
      } else {
        const uint8_t* q = wrow + base;
        for (int i = 0; i < group; i += 16) {
          const __m512 w = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(q + i))));
          for (int j = 0; j < M; ++j) d[j] = _mm512_fmadd_ps(w, _mm512_loadu_ps(x[j] + base + i), d[j]);
        }
      }
      const __m512 s = _mm512_set1_ps(sc[g]);
      for (int j = 0; j < M; ++j) total[j] = _mm512_fmadd_ps(d[j], s, total[j]);
    }
    for (int j = 0; j < M; ++j) {
      p.out[size_t(m0 + j) * p.n + r] = _mm512_reduce_add_ps(add_bias512<S>(brow, xs[j], groups, total[j]));
    }
  }
}

// One row of x (decode) against two weight rows per pass, each row's arithmetic exactly
// rows_avx512_block<1>'s (so results stay bit-identical alone or in a batch). With one row of
// x, a weight row's group sums form a single chain of multiply-adds (about 4 cycles each); two
// weight rows give the CPU two independent chains, and the slices of x are loaded once for both.
template <SideType S, int G>
__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl"))) void rows_avx512_one(const Problem& p, int m0,
                                                                                       int n0, int n1) {
  const Operands<1, S> o(p, m0);
  const int stride = scale_stride(o.groups);
  float* buf = S == SideType::F32 ? nullptr : scale_buffer(o.groups, 2);
  const int groups = o.groups;
  // the group size: a constant for the sizes models use, so the group loops unroll
  const int group = G > 0 ? G : p.group;
  const float* x = o.x[0];
  const float* xs = o.xs[0];
  const __m128i lo4 = _mm_set1_epi8(0x0F);
  int r = n0;
  for (; r + 2 <= n1; r += 2) {
    const uint8_t* w0 = o.w(r);
    const uint8_t* w1 = o.w(r + 1);
    const float* s0 = row_scales16<S>(o.s(r), groups, buf);
    const float* s1 = row_scales16<S>(o.s(r + 1), groups, buf + stride);
    __m512 t0 = _mm512_setzero_ps(), t1 = _mm512_setzero_ps();
    for (int g = 0; g < groups; ++g) {
      const int base = g * group;
      __m512 d0 = _mm512_setzero_ps(), d1 = _mm512_setzero_ps();
      if (p.bits == 4) {
        for (int i = 0; i < group; i += 32) {
          const __m512 xe = _mm512_loadu_ps(x + base + i), xo = _mm512_loadu_ps(x + base + i + 16);
          const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + (base + i) / 2));
          const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w1 + (base + i) / 2));
          d0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v0, lo4))), xe, d0);
          d1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v1, lo4))), xe, d1);
          d0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v0, 4), lo4))), xo, d0);
          d1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v1, 4), lo4))), xo, d1);
        }
      } else {
        for (int i = 0; i < group; i += 16) {
          const __m512 xv = _mm512_loadu_ps(x + base + i);
          const __m512 q0 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + base + i))));
          const __m512 q1 = _mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(w1 + base + i))));
          d0 = _mm512_fmadd_ps(q0, xv, d0);
          d1 = _mm512_fmadd_ps(q1, xv, d1);
        }
      }
      t0 = _mm512_fmadd_ps(d0, _mm512_set1_ps(s0[g]), t0);
      t1 = _mm512_fmadd_ps(d1, _mm512_set1_ps(s1[g]), t1);
    }
    p.out[size_t(m0) * p.n + r] = _mm512_reduce_add_ps(add_bias512<S>(o.b(r), xs, groups, t0));
    p.out[size_t(m0) * p.n + r + 1] = _mm512_reduce_add_ps(add_bias512<S>(o.b(r + 1), xs, groups, t1));
  }
  if (r < n1) rows_avx512_block<1, S, G>(p, m0, r, n1);
}

// Dense float32: out[m, r] = dot(w[r], x[m]), M rows per pass over a weight row. Reading each
// weight row once is what makes decode fast: BLAS sgemm packs (copies) the whole matrix even
// for a single row of x.
template <int M>
__attribute__((target("avx2,fma"))) void dense_rows_avx2_block(const Problem& p, int m0, int n0, int n1) {
  const float* wf = reinterpret_cast<const float*>(p.w);
  const float* x[M];
  for (int j = 0; j < M; ++j) x[j] = p.x + size_t(m0 + j) * p.k;
  for (int r = n0; r < n1; ++r) {
    const float* wrow = wf + size_t(r) * p.k;
    __m256 a0[M], a1[M];
    for (int j = 0; j < M; ++j) a0[j] = a1[j] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= p.k; i += 16) {
      const __m256 w0 = _mm256_loadu_ps(wrow + i), w1 = _mm256_loadu_ps(wrow + i + 8);
      for (int j = 0; j < M; ++j) {
        a0[j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[j] + i), a0[j]);
        a1[j] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[j] + i + 8), a1[j]);
      }
    }
    for (int j = 0; j < M; ++j) {
      float acc = hsum(_mm256_add_ps(a0[j], a1[j]));
      for (int t = i; t < p.k; ++t) acc += wrow[t] * x[j][t];
      p.out[size_t(m0 + j) * p.n + r] = acc;
    }
  }
}

// All rows of x in blocks of up to B rows (K::run<M> handles M rows).
template <int B, class K>
void by_blocks(const Problem& p, int n0, int n1) {
  for (int m0 = 0; m0 < p.m; m0 += B) {
    switch (std::min(B, p.m - m0)) {
      case 1: K::template run<1>(p, m0, n0, n1); break;
      case 2: K::template run<2>(p, m0, n0, n1); break;
      case 3: K::template run<3>(p, m0, n0, n1); break;
      case 4: K::template run<4>(p, m0, n0, n1); break;
      case 5: K::template run<(B > 4 ? 5 : 4)>(p, m0, n0, n1); break;
      case 6: K::template run<(B > 4 ? 6 : 4)>(p, m0, n0, n1); break;
      case 7: K::template run<(B > 4 ? 7 : 4)>(p, m0, n0, n1); break;
      default: K::template run<B>(p, m0, n0, n1); break;
    }
  }
}

// K::run_group<M, G> with the group size as the constant G for the sizes models use (32, 64),
// or G = 0 (the kernel reads p.group) for others.
template <class K, int M>
void by_group(const Problem& p, int m0, int n0, int n1) {
  switch (p.group) {
    case 32: return K::template run_group<M, 32>(p, m0, n0, n1);
    case 64: return K::template run_group<M, 64>(p, m0, n0, n1);
    case 128: return K::template run_group<M, 128>(p, m0, n0, n1);
    default: return K::template run_group<M, 0>(p, m0, n0, n1);
  }
}

template <SideType S>
struct QuantBlock {
  template <int M, int G>
  static void run_group(const Problem& p, int m0, int n0, int n1) {
    // one row of x takes 4-bit weight rows two to a pass (two chains); 8-bit ones (the head,
    // streamed from memory) and blocks of rows one at a time
    if (p.bits == 8) return rows_avx2_fixed<M, 1, 8, S, G>(p, m0, n0, n1);
    if (p.group % 16 == 0) return rows_avx2_fixed<M, M == 1 ? 2 : 1, 4, S, G>(p, m0, n0, n1);
    rows_avx2_block<M, S>(p, m0, n0, n1);
  }
  template <int M>
  static void run(const Problem& p, int m0, int n0, int n1) { by_group<QuantBlock, M>(p, m0, n0, n1); }
};
template <SideType S>
struct Quant512Block {
  template <int M, int G>
  static void run_group(const Problem& p, int m0, int n0, int n1) {
    if constexpr (M == 1) {
      rows_avx512_one<S, G>(p, m0, n0, n1);
    } else {
      rows_avx512_block<M, S, G>(p, m0, n0, n1);
    }
  }
  template <int M>
  static void run(const Problem& p, int m0, int n0, int n1) { by_group<Quant512Block, M>(p, m0, n0, n1); }
};
struct DenseBlock {
  template <int M>
  static void run(const Problem& p, int m0, int n0, int n1) { dense_rows_avx2_block<M>(p, m0, n0, n1); }
};

// The quantized kernels for p's scales as stored, in blocks of up to B rows.
template <int B, template <SideType> class K>
void by_side(const Problem& p, int n0, int n1) {
  switch (p.side) {
    case SideType::F32: by_blocks<B, K<SideType::F32>>(p, n0, n1); break;
    case SideType::F16: by_blocks<B, K<SideType::F16>>(p, n0, n1); break;
    case SideType::BF16: by_blocks<B, K<SideType::BF16>>(p, n0, n1); break;
  }
}

void rows_avx2(const Problem& p, int n0, int n1) { by_side<4, QuantBlock>(p, n0, n1); }
void rows_avx512(const Problem& p, int n0, int n1) { by_side<8, Quant512Block>(p, n0, n1); }
void dense_rows_avx2(const Problem& p, int n0, int n1) { by_blocks<4, DenseBlock>(p, n0, n1); }

#endif

void dense_rows_scalar(const Problem& p, int n0, int n1) {
  const float* wf = reinterpret_cast<const float*>(p.w);
  for (int r = n0; r < n1; ++r) {
    for (int m = 0; m < p.m; ++m) {
      float acc = 0.f;
      for (int i = 0; i < p.k; ++i) acc += wf[size_t(r) * p.k + i] * p.x[size_t(m) * p.k + i];
      p.out[size_t(m) * p.n + r] = acc;
    }
  }
}

void rows_scalar(const Problem& p, int n0, int n1) {
  const int groups = p.k / p.group;
  const int row_bytes = p.k * p.bits / 8;
  for (int r = n0; r < n1; ++r) {
    for (int m = 0; m < p.m; ++m) {
      const float* x = p.x + size_t(m) * p.k;
      float acc = 0.f;
      for (int g = 0; g < groups; ++g) {
        const uint8_t* q = p.w + size_t(r) * row_bytes + size_t(g) * p.group * p.bits / 8;
        float d = dot_group_scalar(q, x + g * p.group, p.group, p.bits);
        acc += p.scales[size_t(r) * groups + g] * d + p.biases[size_t(r) * groups + g] * p.xsums[size_t(m) * groups + g];
      }
      p.out[size_t(m) * p.n + r] = acc;
    }
  }
}
}  // namespace cortex_mlx::gemv_rows
