// A CPU kernel for MLX: x @ dequantize(w).T for affine 4- and 8-bit weights and few rows of x
// (decode). MLX's own CPU quantized matmul is generic, single-threaded code; decode on a CPU
// is dominated by it. This primitive unpacks with AVX2/FMA (when the CPU has them) and splits
// output rows across a small persistent thread pool. Numerics: per group, out += s * dot(q, x)
// + b * sum(x), the same affine form as MLX's kernel, accumulated in float32.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*, which it reports as used
// uninitialized once they are inlined (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"
#include "kernels.h"
#include "qdot.h"
#include "shim.h"

namespace mx = mlx::core;

namespace cortex_mlx {
namespace {

using kernels::gather_contiguous;
using kernels::have_avx2;
using kernels::have_avx512;
using kernels::run_kernel;
#if defined(__x86_64__)
using kernels::add_bias512;
using kernels::hsum;
using kernels::side1;
using kernels::side16;
using kernels::side8;
#endif
using kernels::SideElem;
using kernels::SideType;

struct Problem {
  const float* x;        // [m, k]
  const uint8_t* w;      // [n, k * bits / 8] bytes
  const float* scales;   // [n, k / group], when stored in float32
  const float* biases;   // [n, k / group]
  const float* xsums;    // [m, k / group]: sum of x over each group
  float* out;            // [m, n]
  int m, n, k, group, bits;
  kernels::SideType side = kernels::SideType::F32;
  const uint16_t* scales16 = nullptr;  // 16-bit scales and biases as stored (side F16/BF16): the
  const uint16_t* biases16 = nullptr;  // SIMD kernels read them, the others widen them per chunk
  const uint8_t* packed = nullptr;     // the weight repacked for qdot::rows16, if it has been
};

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

// M rows of x (M <= 4) against weight rows n0..n1. Per row and group: d = q . x over the
// group's unscaled weights (each unpacked slice shared by the M rows), then total += s_g * d;
// after the groups, the bias term sum_g b_g * xsum_g. The scale is applied once per group, not
// per weight, and the groups' dot products are independent, so the CPU overlaps them: only the
// one multiply-add per group is a chain (the old order, scale per slice into one accumulator,
// made every slice wait on the last). The arithmetic is the same whatever M is, so a sequence
// gets bit-identical results alone or inside a batch.
// 4-bit weights come in 16-weight slices (8 bytes): low nibbles are the even elements, high
// nibbles the odd ones; `p.x` is then permuted to match (permute_for_nibbles), so a slice is
// two vectors with no shuffles. Groups that are not a multiple of 16 use x as it is and unpack
// 8 weights at a time.
template <int M, SideType S>
__attribute__((target("avx2,fma,f16c"))) void rows_avx2_block(const Problem& p, int m0, int n0, int n1) {
  const Operands<M, S> o(p, m0);
  float* buf = S == SideType::F32 ? nullptr : scale_buffer(o.groups, 1);
  const int groups = o.groups;
  const auto& x = o.x;
  const auto& xs = o.xs;
  const bool slices16 = p.group % 16 == 0;
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i nibble = _mm256_set1_epi32(0xF);
  const __m128i lo4 = _mm_set1_epi8(0x0F);
  for (int r = n0; r < n1; ++r) {
    const uint8_t* wrow = o.w(r);
    const auto* srow = o.s(r);
    const auto* brow = o.b(r);
    __m256 total[M];
    for (int j = 0; j < M; ++j) total[j] = _mm256_setzero_ps();
    const float* sc = row_scales8<S>(srow, groups, buf);
    for (int g = 0; g < groups; ++g) {
      const int base = g * p.group;
      __m256 d[M];
      for (int j = 0; j < M; ++j) d[j] = _mm256_setzero_ps();
      if (p.bits == 4 && slices16) {
        const uint8_t* q = wrow + base / 2;
        for (int i = 0; i < p.group; i += 16) {
          const __m128i v = _mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i / 2));
          const __m256 even = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(v, lo4)));
          const __m256 odd = _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v, 4), lo4)));
          for (int j = 0; j < M; ++j) {
            d[j] = _mm256_fmadd_ps(even, _mm256_loadu_ps(x[j] + base + i), d[j]);
            d[j] = _mm256_fmadd_ps(odd, _mm256_loadu_ps(x[j] + base + i + 8), d[j]);
          }
        }
      } else if (p.bits == 4) {
        const uint8_t* q = wrow + base / 2;
        for (int i = 0; i < p.group; i += 8) {
          uint32_t word;
          std::memcpy(&word, q + i / 2, 4);
          const __m256 w = _mm256_cvtepi32_ps(
              _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(word)), shifts), nibble));
          for (int j = 0; j < M; ++j) d[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x[j] + base + i), d[j]);
        }
      } else {
        const uint8_t* q = wrow + base;
        for (int i = 0; i < p.group; i += 8) {
          const __m256 w =
              _mm256_cvtepi32_ps(_mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i))));
          for (int j = 0; j < M; ++j) d[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x[j] + base + i), d[j]);
        }
      }
      const __m256 s = _mm256_set1_ps(sc[g]);
      for (int j = 0; j < M; ++j) total[j] = _mm256_fmadd_ps(d[j], s, total[j]);
    }
    for (int j = 0; j < M; ++j) {
      __m256 bias = _mm256_setzero_ps();
      int g = 0;
      for (; g + 8 <= groups; g += 8) bias = _mm256_fmadd_ps(side8<S>(brow + g), _mm256_loadu_ps(xs[j] + g), bias);
      float tail = 0.f;
      // a fused multiply-add per term, spelled out: left to the compiler, the contraction of a * b + c
      // into a fused multiply-add differed between the float32 and the 16-bit instantiations
      for (; g < groups; ++g) tail = std::fma(side1<S>(brow + g), xs[j][g], tail);
      p.out[size_t(m0 + j) * p.n + r] = hsum(_mm256_add_ps(total[j], bias)) + tail;
    }
  }
}

// The same arithmetic 16 lanes wide, for CPUs with AVX-512: 4-bit slices of 32 weights (16
// bytes: 16 even elements, then 16 odd ones; x permuted to match), 8-bit slices of 16. Half the
// instructions per weight of the 8-lane kernel. Used when the group is a multiple of the slice.
template <int M, SideType S>
__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl"))) void rows_avx512_block(const Problem& p, int m0,
                                                                                         int n0, int n1) {
  const Operands<M, S> o(p, m0);
  float* buf = S == SideType::F32 ? nullptr : scale_buffer(o.groups, 1);
  const int groups = o.groups;
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
      const int base = g * p.group;
      __m512 d[M];
      for (int j = 0; j < M; ++j) d[j] = _mm512_setzero_ps();
      if (p.bits == 4) {
        const uint8_t* q = wrow + base / 2;
        for (int i = 0; i < p.group; i += 32) {
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
        for (int i = 0; i < p.group; i += 16) {
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
template <SideType S>
__attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl"))) void rows_avx512_one(const Problem& p, int m0,
                                                                                       int n0, int n1) {
  const Operands<1, S> o(p, m0);
  const int stride = scale_stride(o.groups);
  float* buf = S == SideType::F32 ? nullptr : scale_buffer(o.groups, 2);
  const int groups = o.groups;
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
      const int base = g * p.group;
      __m512 d0 = _mm512_setzero_ps(), d1 = _mm512_setzero_ps();
      if (p.bits == 4) {
        for (int i = 0; i < p.group; i += 32) {
          const __m512 xe = _mm512_loadu_ps(x + base + i), xo = _mm512_loadu_ps(x + base + i + 16);
          const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + (base + i) / 2));
          const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w1 + (base + i) / 2));
          d0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v0, lo4))), xe, d0);
          d1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v1, lo4))), xe, d1);
          d0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v0, 4), lo4))), xo, d0);
          d1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v1, 4), lo4))), xo, d1);
        }
      } else {
        for (int i = 0; i < p.group; i += 16) {
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
  if (r < n1) rows_avx512_block<1, S>(p, m0, r, n1);
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

template <SideType S>
struct QuantBlock {
  template <int M>
  static void run(const Problem& p, int m0, int n0, int n1) { rows_avx2_block<M, S>(p, m0, n0, n1); }
};
template <SideType S>
struct Quant512Block {
  template <int M>
  static void run(const Problem& p, int m0, int n0, int n1) {
    if constexpr (M == 1) {
      rows_avx512_one<S>(p, m0, n0, n1);
    } else {
      rows_avx512_block<M, S>(p, m0, n0, n1);
    }
  }
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

// The int8-activation path (qdot.h): activations quantized per weight group on this thread,
// in two int8 roundings (one rounding alone flipped 6% of SmolLM2's greedy tokens; two leave
// x's error about 127 times smaller), the integer dot kernels on the pool. Only for the shapes its kernels take (4/8 bits, groups of
// a multiple of 32); others run the float kernel.
bool run_int8(const Problem& p, bool force_scalar) {
  const qdot::Isa isa = force_scalar ? qdot::Isa::Scalar : qdot::best_isa();
  if (qdot::chunk_for(isa, p.bits, p.group) == 0) return false;
  thread_local qdot::Activations acts;
  qdot::quantize(p.x, p.m, p.k, p.group, p.bits, isa, acts);
  // Each row of x is kRoundings activation rows, which the kernels take like a batch: the
  // weights are read once; the row's result is the sum of its parts.
  thread_local std::vector<float> parts;
  parts.resize(size_t(acts.m) * p.n);
  const qdot::Problem q{&acts, p.w, p.scales, p.biases, parts.data(), p.n, p.bits, isa};
  if (p.side == kernels::SideType::F32) {
    kernels::parallel_for(p.n, [&q](int a, int b) { qdot::rows(q, a, b); });
  } else {
    // 16-bit scales and biases: widened per piece of rows, as run_rows does for the float kernels
    const kernels::Widen widen = force_scalar ? kernels::widen_portable : kernels::widen_simd;
    const size_t row_bytes = size_t(p.k) * p.bits / 8;
    kernels::parallel_for(p.n, [&](int n0, int n1) {
      kernels::with_wide_sides(p.scales16, p.biases16, p.side, p.k / p.group, n0, n1, widen,
                               [&](int a, int b, const float* s, const float* bi) {
                                 qdot::Problem piece = q;
                                 piece.w = q.w + size_t(a) * row_bytes;
                                 piece.scales = s;
                                 piece.biases = bi;
                                 piece.out = q.out + a;
                                 qdot::rows(piece, 0, b - a);
                               });
    });
  }
  for (int row = 0; row < p.m; ++row) {
    float* o = p.out + size_t(row) * p.n;
    const float* part = parts.data() + size_t(row) * qdot::kRoundings * p.n;
    std::copy(part, part + p.n, o);
    for (int k = 1; k < qdot::kRoundings; ++k) {
      for (int c = 0; c < p.n; ++c) o[c] += part[size_t(k) * p.n + c];
    }
  }
  return true;
}

// The int8 path on weights repacked 16 rows per vector (qdot::rows16): x quantized once for
// all the problems, their blocks of 16 rows numbered one after another across the pool.
void run_packed(std::vector<Problem>& ps, bool force_scalar) {
  const Problem& p = ps[0];
  thread_local qdot::Activations acts;
  qdot::quantize(p.x, p.m, p.k, p.group, p.bits, qdot::Isa::Scalar, acts, 8);
  std::vector<qdot::Problem16> qs;
  std::vector<int> first;  // each problem's first block in the numbering
  int blocks = 0;
  for (const auto& q : ps) {
    qs.push_back(qdot::Problem16{&acts, q.packed, q.out, q.n, q.n, q.bits});
    first.push_back(blocks);
    blocks += (q.n + qdot::kRows16 - 1) / qdot::kRows16;
  }
  kernels::parallel_for(blocks, [&](int b0, int b1) {
    for (size_t i = 0; i < qs.size(); ++i) {
      const int end = i + 1 < qs.size() ? first[i + 1] : blocks;
      const int lo = std::max(b0, first[i]), hi = std::min(b1, end);
      if (lo < hi) qdot::rows16(qs[i], lo - first[i], hi - first[i], force_scalar);
    }
  });
}

// x in the order of the SIMD kernels' unpacked 4-bit slices: in each run of `slice` values
// (16 or 32), the even-indexed ones, then the odd-indexed ones. `n` is a multiple of `slice`.
void permute_for_nibbles(const float* x, size_t n, int slice, float* out) {
  const int half = slice / 2;
  for (size_t c = 0; c < n; c += slice) {
    for (int t = 0; t < half; ++t) {
      out[c + t] = x[c + 2 * t];
      out[c + half + t] = x[c + 2 * t + 1];
    }
  }
}

// Several weights against the same rows of x (q/k/v, gate/up), their output rows numbered one
// after another: a chunk of rows may span two weights.
struct Batch {
  const Problem* ps;
  int count;
};

// K on weight rows n0..n1 of p. With a widening function W, 16-bit scales and biases are
// widened a piece of rows at a time (kernels::with_wide_sides), and K runs each piece as a
// problem of its own: the piece's packed rows, its widened floats, its output columns (the row
// stride stays p.n). Without one (nullptr), K reads them as stored.
template <void (*K)(const Problem&, int, int), kernels::Widen W>
void run_rows(const Problem& p, int n0, int n1) {
  if constexpr (W == nullptr) {
    return K(p, n0, n1);
  }
  if (p.side == kernels::SideType::F32) return K(p, n0, n1);
  const size_t row_bytes = size_t(p.k) * p.bits / 8;
  kernels::with_wide_sides(p.scales16, p.biases16, p.side, p.k / p.group, n0, n1, W,
                           [&p, row_bytes](int a, int b, const float* s, const float* bi) {
                             Problem piece = p;
                             piece.w = p.w + size_t(a) * row_bytes;
                             piece.scales = s;
                             piece.biases = bi;
                             piece.out = p.out + a;
                             piece.side = kernels::SideType::F32;
                             K(piece, 0, b - a);
                           });
}

template <void (*K)(const Problem&, int, int), kernels::Widen W>
void batch_rows(const Batch& b, int r0, int r1) {
  int off = 0;
  for (int i = 0; i < b.count; ++i) {
    const Problem& p = b.ps[i];
    const int lo = std::max(r0, off), hi = std::min(r1, off + p.n);
    if (lo < hi) run_rows<K, W>(p, lo - off, hi - off);
    off += p.n;
  }
}

// Runs the problems (which share x, m, k, group and bits) in one pool dispatch; x's group sums
// and its permutation for the 4-bit kernels are computed once for all of them.
void run_problems(std::vector<Problem>& ps, bool force_scalar, bool int8) {
  int total = 0;
  for (auto& q : ps) total += q.n;
  const Problem& p = ps[0];
  if (p.bits == 32) {
    run_kernel<Batch>(Batch{ps.data(), int(ps.size())}, total, AVX2_KERNEL((batch_rows<dense_rows_avx2, kernels::widen_simd>)),
                      batch_rows<dense_rows_scalar, kernels::widen_portable>, force_scalar);
    return;
  }
  if (int8 && p.packed != nullptr) {
    run_packed(ps, force_scalar);
    return;
  }
  if (int8 && run_int8(ps[0], force_scalar)) {
    for (size_t i = 1; i < ps.size(); ++i) run_int8(ps[i], force_scalar);
    return;
  }
  const int groups = p.k / p.group;
  thread_local std::vector<float> xsums;
  xsums.resize(size_t(p.m) * groups);
  for (int m = 0; m < p.m; ++m) {
    for (int g = 0; g < groups; ++g) {
      float s = 0.f;
      for (int i = 0; i < p.group; ++i) s += p.x[size_t(m) * p.k + g * p.group + i];
      xsums[size_t(m) * groups + g] = s;
    }
  }
  const float* x = p.x;
  const bool simd = have_avx2() && !force_scalar;
  // 16 lanes where the CPU has them and the group holds whole slices (32 4-bit or 16 8-bit weights)
  const bool wide = simd && have_avx512() && p.group % (p.bits == 4 ? 32 : 16) == 0;
  const int slice = wide ? 32 : 16;
  if (simd && p.bits == 4 && p.group % slice == 0) {
    thread_local std::vector<float> permuted;
    permuted.resize(size_t(p.m) * p.k);
    permute_for_nibbles(p.x, size_t(p.m) * p.k, slice, permuted.data());
    x = permuted.data();
  }
  for (auto& q : ps) {
    q.xsums = xsums.data();
    q.x = x;
  }
  run_kernel<Batch>(Batch{ps.data(), int(ps.size())}, total,
                    wide ? AVX2_KERNEL((batch_rows<rows_avx512, nullptr>)) : AVX2_KERNEL((batch_rows<rows_avx2, nullptr>)),
                    batch_rows<rows_scalar, kernels::widen_portable>, force_scalar);
}

// How scales and biases of dtype t are stored (push_quantized lets only these through).
kernels::SideType side_type(mx::Dtype t) {
  if (t == mx::float16) return kernels::SideType::F16;
  if (t == mx::bfloat16) return kernels::SideType::BF16;
  return kernels::SideType::F32;
}

// What a QGemv node computes after its matmuls.
enum class Epilogue : int { None = 0, SwiGlu = 1 };

// x @ W_i.T for one or more weights W_i (quantized: packed w, scales, biases; or dense float32
// when bits is 32), one output each; with the SwiGLU epilogue two weights (gate, up) and one
// output, silu(x @ gate.T) * (x @ up.T).
class QGemv : public mx::Primitive {
 public:
  QGemv(mx::Stream s, int group, int bits, int count, Epilogue epilogue, bool scalar, bool int8, bool packed)
      : mx::Primitive(s),
        group_(group),
        bits_(bits),
        count_(count),
        epilogue_(epilogue),
        scalar_(scalar),
        int8_(int8),
        packed_(packed) {}

  // inputs: x, then per weight w and, for quantized weights (bits 4 or 8), scales and biases,
  // and when packed (int8 activations) its qdot::rows16 blocks.
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    const auto& x = inputs[0];
    const int per = bits_ == 32 ? 1 : packed_ ? 4 : 3;
    for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) enc.set_input_array(in);
    for (auto& o : outputs) enc.set_output_array(o);
    const bool swiglu = epilogue_ == Epilogue::SwiGlu;
    std::vector<Problem> ps;
    for (int i = 0; i < count_; ++i) {
      const auto& w = inputs[1 + i * per];
      Problem p{x.data<float>(), w.data<uint8_t>(), nullptr, nullptr, nullptr, swiglu ? nullptr : outputs[i].data<float>(),
                int(x.size() / x.shape(-1)), int(w.shape(0)), int(x.shape(-1)), group_, bits_};
      if (packed_) p.packed = inputs[4 + i * per].data<uint8_t>();
      if (per >= 3) {
        const auto &sc = inputs[2 + i * per], &bi = inputs[3 + i * per];
        p.side = side_type(sc.dtype());
        if (p.side == kernels::SideType::F32) {
          p.scales = sc.data<float>();
          p.biases = bi.data<float>();
        } else {
          p.scales16 = sc.data<uint16_t>();
          p.biases16 = bi.data<uint16_t>();
        }
      }
      ps.push_back(p);
    }
    float* fused = swiglu ? outputs[0].data<float>() : nullptr;
    // x may be a view (transposed heads, a slice): gathered when its data is ready.
    enc.dispatch([ps = std::move(ps), fused, gather = !x.flags().row_contiguous, shape = x.shape(),
                  strides = x.strides(), scalar = scalar_, int8 = int8_]() mutable {
      thread_local std::vector<float> buf, gate, up;
      if (gather) {
        buf.resize(size_t(ps[0].m) * ps[0].k);
        gather_contiguous(ps[0].x, shape, strides, buf.data());
        for (auto& p : ps) p.x = buf.data();
      }
      const size_t outs = size_t(ps[0].m) * ps[0].n;
      if (fused != nullptr) {
        gate.resize(outs);
        up.resize(outs);
        ps[0].out = gate.data();
        ps[1].out = up.data();
      }
      run_problems(ps, scalar, int8);
      if (fused != nullptr) {
        // silu(g) = g * sigmoid(g), as MLX computes it
        for (size_t i = 0; i < outs; ++i) fused[i] = gate[i] * (1.f / (1.f + std::exp(-gate[i]))) * up[i];
      }
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("cortex qgemv runs on the CPU only");
  }

  const char* name() const override { return "CortexQGemv"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const QGemv&>(other);
    return group_ == o.group_ && bits_ == o.bits_ && count_ == o.count_ && epilogue_ == o.epilogue_ &&
           scalar_ == o.scalar_ && int8_ == o.int8_ && packed_ == o.packed_;
  }

 private:
  int group_, bits_, count_;
  Epilogue epilogue_;
  bool scalar_, int8_, packed_;
};

// Whether kernels made on this thread use the portable code only.
thread_local bool scalar_kernels = false;
// Whether quantized matmuls made on this thread quantize their activations to int8 (qdot.h).
thread_local bool int8_activations = false;

}  // namespace

void set_scalar_kernels(bool scalar) { scalar_kernels = scalar; }

void set_int8_activations(bool int8) { int8_activations = int8; }

rust::String int8_kernel_name() { return qdot::isa_name(qdot::best_isa()); }

bool cpu_has_avx2() { return have_avx2(); }

namespace kernels {

bool scalar_now() { return scalar_kernels; }

}  // namespace kernels

using kernels::weight_input;

mx::array as_f32(const mx::array& a, mx::Stream s) {
  return a.dtype() == mx::float32 ? a : mx::astype(a, mx::float32, s);
}

// The rows of x checked and made float32; the kernel divides by k, so rows may not be empty.
mx::array input_rows(const Array& x, mx::Stream s, const char* op) {
  if (x.inner.ndim() < 1 || x.inner.shape(-1) <= 0) throw std::invalid_argument(std::string(op) + ": the input rows are empty");
  return as_f32(x.inner, s);
}

// A dense [N, K] weight for x's K, as the kernel reads it.
void push_dense(std::vector<mx::array>& inputs, const mx::array& w, int64_t k, mx::Stream s) {
  if (w.ndim() != 2 || w.shape(1) != k) throw std::invalid_argument("gemv: weight [N, K] does not match the input size");
  inputs.push_back(weight_input(w, s, true));
}

// A quantized weight (packed w [N, K * bits / 32], scales and biases [N, K / group]) for x's K.
void push_quantized(std::vector<mx::array>& inputs, const mx::array& w, const mx::array& scales,
                    const mx::array& biases, int64_t k, int group_size, int bits, mx::Stream s) {
  if (bits != 4 && bits != 8) throw std::invalid_argument("qgemv supports 4 and 8 bits");
  // The kernel divides by the group size: it must be positive.
  if (group_size <= 0 || group_size % 8 != 0) {
    throw std::invalid_argument("qgemv needs a positive group size divisible by 8");
  }
  // Sizes in int64: packed words x 32 overflows int32 for a wide enough (hostile) weight.
  if (w.dtype() != mx::uint32 || w.ndim() != 2 || int64_t(w.shape(1)) * 32 / bits != k) {
    throw std::invalid_argument("qgemv: packed weight does not match the input size");
  }
  const auto n = w.shape(0);
  if (scales.ndim() != 2 || scales.shape(0) != n || int64_t(scales.shape(1)) * group_size != k ||
      biases.shape() != scales.shape()) {
    throw std::invalid_argument("qgemv: scales/biases do not match the weight");
  }
  // Scales and biases go in as stored when both are float32 or both the same 16-bit type (the
  // kernels widen those); any other pair is made float32 here.
  const auto t = scales.dtype();
  const bool as_stored = biases.dtype() == t && (t == mx::float32 || t == mx::float16 || t == mx::bfloat16);
  inputs.push_back(weight_input(w, s, false));
  inputs.push_back(weight_input(scales, s, !as_stored));
  inputs.push_back(weight_input(biases, s, !as_stored));
}

// The node for inputs (x, then the weights' arrays): one output per weight, or the SwiGLU of
// the two.
// `packed`: each quantized weight comes with its pack_rows16 blocks (the caller passes them
// only to nodes that take the int8 path).
std::vector<mx::array> gemv_node(std::vector<mx::array> inputs, int group, int bits, bool swiglu, mx::Stream s,
                                 bool packed = false) {
  const int per = bits == 32 ? 1 : packed ? 4 : 3;
  const int count = int(inputs.size() - 1) / per;
  if (count < 1) throw std::invalid_argument("qgemv: no weights");
  if (swiglu && count != 2) throw std::invalid_argument("qgemv: SwiGLU takes a gate and an up weight");
  std::vector<mx::Shape> shapes;
  for (int i = 0; i < (swiglu ? 1 : count); ++i) {
    shapes.push_back(inputs[0].shape());
    shapes.back().back() = inputs[1 + i * per].shape(0);
  }
  if (swiglu && inputs[1].shape(0) != inputs[1 + per].shape(0)) {
    throw std::invalid_argument("qgemv: SwiGLU's gate and up weights have different output sizes");
  }
  // int8 activations are decode's option (up to 8 rows); longer inputs (prefill) stay float.
  const int64_t rows = int64_t(inputs[0].size()) / inputs[0].shape(-1);
  const bool int8 = bits != 32 && int8_activations && rows <= 8;
  return mx::array::make_arrays(
      shapes, std::vector<mx::Dtype>(shapes.size(), mx::float32),
      std::make_shared<QGemv>(s, group, bits, count, swiglu ? Epilogue::SwiGlu : Epilogue::None, scalar_kernels, int8,
                              packed),
      std::move(inputs));
}

std::unique_ptr<ArrayList> as_list(std::vector<mx::array> arrays) {
  auto list = std::make_unique<ArrayList>();
  for (auto& a : arrays) {
    list->items.push_back(std::move(a));
    list->names.emplace_back();
  }
  return list;
}

ArrayPtr gemv_f32(const Array& x, const Array& w) {
  auto s = mx::default_stream(mx::Device::cpu);
  std::vector<mx::array> inputs{input_rows(x, s, "gemv")};
  push_dense(inputs, w.inner, x.inner.shape(-1), s);
  return std::make_unique<Array>(gemv_node(std::move(inputs), 0, 32, false, s)[0]);
}

ArrayPtr qgemv(const Array& x, const Array& w, const Array& scales, const Array& biases, int32_t group_size,
               int32_t bits) {
  auto s = mx::default_stream(mx::Device::cpu);
  std::vector<mx::array> inputs{input_rows(x, s, "qgemv")};
  push_quantized(inputs, w.inner, scales.inner, biases.inner, x.inner.shape(-1), group_size, bits, s);
  return std::make_unique<Array>(gemv_node(std::move(inputs), group_size, bits, false, s)[0]);
}

std::unique_ptr<ArrayList> gemv_many(const Array& x, const ArrayList& weights, int32_t group_size, int32_t bits,
                                     bool swiglu, bool packed) {
  auto s = mx::default_stream(mx::Device::cpu);
  std::vector<mx::array> inputs{input_rows(x, s, "qgemv")};
  const int64_t k = x.inner.shape(-1);
  const auto& w = weights.items;
  // The repacked blocks serve the int8 path only (up to 8 rows with int8 activations on);
  // otherwise they are left out of the node.
  const int64_t rows = int64_t(inputs[0].size()) / k;
  const bool use_packed = packed && bits != 32 && int8_activations && rows <= 8;
  if (bits == 32) {
    for (const auto& a : w) push_dense(inputs, a, k, s);
  } else {
    const size_t per = packed ? 4 : 3;
    if (w.size() % per != 0) {
      throw std::invalid_argument(packed ? "qgemv: weights come as (w, scales, biases, packed) quadruples"
                                         : "qgemv: weights come as (w, scales, biases) triples");
    }
    for (size_t i = 0; i < w.size(); i += per) {
      push_quantized(inputs, w[i], w[i + 1], w[i + 2], k, group_size, bits, s);
      if (!use_packed) continue;
      const int64_t block = qdot::rows16_block_bytes(int(k), group_size, bits);
      const int64_t blocks = (int64_t(w[i].shape(0)) + qdot::kRows16 - 1) / qdot::kRows16;
      if (block == 0 || w[i + 3].dtype() != mx::uint8 || int64_t(w[i + 3].size()) != blocks * block) {
        throw std::invalid_argument("qgemv: the packed blocks do not match the weight");
      }
      inputs.push_back(weight_input(w[i + 3], s, false));
    }
  }
  return as_list(gemv_node(std::move(inputs), group_size, bits, swiglu, s, use_packed));
}

ArrayPtr pack_rows16(const Array& w, const Array& scales, const Array& biases, int32_t group_size, int32_t bits) {
  auto s = mx::default_stream(mx::Device::cpu);
  if (w.inner.ndim() != 2 || w.inner.shape(0) <= 0) throw std::invalid_argument("pack_rows16: weight must be [N, K * bits / 32]");
  const int64_t k = int64_t(w.inner.shape(1)) * 32 / (bits > 0 ? bits : 1);
  const int64_t block = qdot::rows16_block_bytes(int(std::min<int64_t>(k, INT32_MAX)), group_size, bits);
  if (block == 0 || k > INT32_MAX) return nullptr;
  if (block > INT32_MAX) throw std::invalid_argument("pack_rows16: weight rows too wide");
  std::vector<mx::array> in;
  push_quantized(in, w.inner, scales.inner, biases.inner, k, group_size, bits, s);
  // float32 sides, row-contiguous, evaluated
  for (size_t i = 1; i < 3; ++i) in[i] = mx::contiguous(mx::astype(in[i], mx::float32, s), false, s);
  mx::eval(in);
  const int n = int(w.inner.shape(0));
  const int64_t blocks = (n + qdot::kRows16 - 1) / qdot::kRows16;
  mx::array out(mx::allocator::malloc(size_t(blocks * block)), mx::Shape{int(blocks), int(block)}, mx::uint8);
  qdot::pack_rows16(in[0].data<uint8_t>(), in[1].data<float>(), in[2].data<float>(), n, int(k), group_size, bits,
                    out.data<uint8_t>());
  return std::make_unique<Array>(std::move(out));
}

}  // namespace cortex_mlx
