// The int8 kernels on weights repacked 16 rows per vector (see qdot.h, "rows16").
#include <algorithm>
#include <cmath>
#include <cstring>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC 12 reports its own AVX-512 intrinsics' "undefined" upper halves as maybe-uninitialized
// once they are inlined (a known false positive, as in qdot.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernels.h"
#include "qdot.h"

namespace cortex_mlx::qdot {
namespace {

// Where a block's parts are: its weight chunks among all blocks' chunks, then (after every
// block's chunks) its scales and biases [groups][16].
struct Block {
  const uint8_t* w;
  const float* scales;
  const float* biases;
  int chunks, groups, per_group;  // 4-byte chunks per row, groups, chunks per group
  Block(const Problem16& p, int blk) {
    const Activations& a = *p.a;
    chunks = a.k * p.bits / 32;
    groups = a.k / a.group;
    per_group = a.group * p.bits / 32;
    const size_t blocks = size_t(p.n + kRows16 - 1) / kRows16, weight_bytes = size_t(chunks) * 64;
    w = p.packed + size_t(blk) * weight_bytes;
    scales = reinterpret_cast<const float*>(p.packed + blocks * weight_bytes) + size_t(blk) * groups * kRows16 * 2;
    biases = scales + size_t(groups) * kRows16;
  }
};

// The activation chunk (4 int8s) that meets weight chunk c: for 4-bit, `odd` picks the
// odd-position half of the 8 values (quantize stores a chunk's even positions, then its odd).
inline int32_t act_chunk(const int8_t* q, int c, int bits, bool odd) {
  int32_t v;
  std::memcpy(&v, q + (bits == 4 ? size_t(c) * 8 + (odd ? 4 : 0) : size_t(c) * 4), 4);
  return v;
}

// The portable code: per row and group the exact integer dots, then the float operations of
// the SIMD kernel in its order (std::fma for each fused multiply-add), so results match it bit
// for bit.
void block_portable(const Problem16& p, int m0, int mcount, int blk) {
  const Activations& a = *p.a;
  const Block b(p, blk);
  const int rows = std::min(kRows16, p.n - blk * kRows16);
  for (int lane = 0; lane < rows; ++lane) {
    for (int j = m0; j < m0 + mcount; ++j) {
      float t = 0.f;
      for (int g = 0; g < b.groups; ++g) {
        const float s = b.scales[size_t(g) * kRows16 + lane];
        for (int r = 0; r < kRoundings; ++r) {
          const size_t row = size_t(j) * kRoundings + r;
          const int8_t* q = a.q.data() + row * a.k;
          int32_t acc = 0;
          for (int c = g * b.per_group; c < (g + 1) * b.per_group; ++c) {
            const uint8_t* wc = b.w + size_t(c) * 64 + lane * 4;
            for (int i = 0; i < 4; ++i) {
              if (p.bits == 4) {
                acc += int32_t(wc[i] & 0xF) * q[size_t(c) * 8 + i] + int32_t(wc[i] >> 4) * q[size_t(c) * 8 + 4 + i];
              } else {
                acc += int32_t(wc[i]) * q[size_t(c) * 4 + i];
              }
            }
          }
          t = std::fma(float(acc), s * a.scale[row * b.groups + g], t);
        }
        const float sum = a.sum[size_t(j) * kRoundings * b.groups + g];
        t = std::fma(b.biases[size_t(g) * kRows16 + lane], sum, t);
      }
      p.out[size_t(j) * p.stride + size_t(blk) * kRows16 + lane] = t;
    }
  }
}

#if defined(__x86_64__)
// M activation rows (each kRoundings int8 rows) against one block of 16 weight rows.
template <int M, int BITS>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void block_avx512(const Problem16& p, int m0,
                                                                                   int blk) {
  const Activations& a = *p.a;
  const Block b(p, blk);
  const int8_t* q[M][kRoundings];
  const float* xs[M][kRoundings];
  const float* sums[M];
  for (int j = 0; j < M; ++j) {
    for (int r = 0; r < kRoundings; ++r) {
      const size_t row = size_t(m0 + j) * kRoundings + r;
      q[j][r] = a.q.data() + row * a.k;
      xs[j][r] = a.scale.data() + row * b.groups;
    }
    sums[j] = a.sum.data() + size_t(m0 + j) * kRoundings * b.groups;
  }
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  __m512 t[M];
  for (int j = 0; j < M; ++j) t[j] = _mm512_setzero_ps();
  for (int g = 0; g < b.groups; ++g) {
    __m512i acc[M][kRoundings];
    for (int j = 0; j < M; ++j) {
      for (int r = 0; r < kRoundings; ++r) acc[j][r] = _mm512_setzero_si512();
    }
    for (int c = g * b.per_group; c < (g + 1) * b.per_group; ++c) {
      const __m512i v = _mm512_loadu_si512(b.w + size_t(c) * 64);
      // The same chunk of the next block: each block is read twice or more (once per 4
      // activation rows) and only the first pass misses the cache, so the hardware prefetcher
      // alone leaves memory idle for the rest (8-bit weights: 1.9 -> 3.0 G dot products/s).
      _mm_prefetch(reinterpret_cast<const char*>(b.w + size_t(b.chunks) * 64 + size_t(c) * 64), _MM_HINT_T0);
      if constexpr (BITS == 4) {
        const __m512i even = _mm512_and_si512(v, lo4), odd = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
        for (int j = 0; j < M; ++j) {
          for (int r = 0; r < kRoundings; ++r) {
            acc[j][r] = _mm512_dpbusd_epi32(acc[j][r], even, _mm512_set1_epi32(act_chunk(q[j][r], c, 4, false)));
            acc[j][r] = _mm512_dpbusd_epi32(acc[j][r], odd, _mm512_set1_epi32(act_chunk(q[j][r], c, 4, true)));
          }
        }
      } else {
        for (int j = 0; j < M; ++j) {
          for (int r = 0; r < kRoundings; ++r) {
            acc[j][r] = _mm512_dpbusd_epi32(acc[j][r], v, _mm512_set1_epi32(act_chunk(q[j][r], c, 8, false)));
          }
        }
      }
    }
    const __m512 s = _mm512_loadu_ps(b.scales + size_t(g) * kRows16);
    const __m512 bias = _mm512_loadu_ps(b.biases + size_t(g) * kRows16);
    for (int j = 0; j < M; ++j) {
      for (int r = 0; r < kRoundings; ++r) {
        t[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[j][r]), _mm512_mul_ps(s, _mm512_set1_ps(xs[j][r][g])), t[j]);
      }
      t[j] = _mm512_fmadd_ps(bias, _mm512_set1_ps(sums[j][g]), t[j]);
    }
  }
  const int rows = std::min(kRows16, p.n - blk * kRows16);
  const __mmask16 keep = __mmask16((1u << rows) - 1);
  for (int j = 0; j < M; ++j) {
    _mm512_mask_storeu_ps(p.out + size_t(m0 + j) * p.stride + size_t(blk) * kRows16, keep, t[j]);
  }
}

template <int BITS>
void blocks_avx512(const Problem16& p, int b0, int b1) {
  const int m = p.a->m / kRoundings;
  for (int blk = b0; blk < b1; ++blk) {
    for (int m0 = 0; m0 < m; m0 += 4) {
      switch (std::min(4, m - m0)) {
        case 1: block_avx512<1, BITS>(p, m0, blk); break;
        case 2: block_avx512<2, BITS>(p, m0, blk); break;
        case 3: block_avx512<3, BITS>(p, m0, blk); break;
        default: block_avx512<4, BITS>(p, m0, blk); break;
      }
    }
  }
}

bool have_avx512_vnni() {
  static const bool yes = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
  return yes;
}
#endif

}  // namespace

int64_t rows16_block_bytes(int k, int group, int bits) {
  if ((bits != 4 && bits != 8) || group <= 0 || group % 32 != 0 || k <= 0 || k % group != 0) return 0;
  const int64_t chunks = int64_t(k) * bits / 32, groups = k / group;
  return chunks * 64 + groups * kRows16 * 2 * int64_t(sizeof(float));
}

void pack_rows16(const uint8_t* w, const float* scales, const float* biases, int n, int k, int group, int bits,
                 uint8_t* out) {
  const int chunks = k * bits / 32, groups = k / group;
  const size_t row_bytes = size_t(k) * bits / 8;
  const int blocks = (n + kRows16 - 1) / kRows16;
  const size_t weight_bytes = size_t(chunks) * 64, side_floats = size_t(groups) * kRows16 * 2;
  float* sides = reinterpret_cast<float*>(out + size_t(blocks) * weight_bytes);
  // blocks on the kernel pool (a model's layers pack at load)
  kernels::parallel_for(blocks, [&](int b0, int b1) {
    std::memset(out + size_t(b0) * weight_bytes, 0, size_t(b1 - b0) * weight_bytes);
    std::fill(sides + size_t(b0) * side_floats, sides + size_t(b1) * side_floats, 0.f);
    for (int r = b0 * kRows16; r < std::min(n, b1 * kRows16); ++r) {
      uint8_t* b = out + size_t(r / kRows16) * weight_bytes;
      const int lane = r % kRows16;
      const uint8_t* row = w + size_t(r) * row_bytes;
      for (int c = 0; c < chunks; ++c) std::memcpy(b + size_t(c) * 64 + lane * 4, row + size_t(c) * 4, 4);
      float* s = sides + size_t(r / kRows16) * side_floats;
      float* bi = s + size_t(groups) * kRows16;
      for (int g = 0; g < groups; ++g) {
        s[size_t(g) * kRows16 + lane] = scales[size_t(r) * groups + g];
        bi[size_t(g) * kRows16 + lane] = biases[size_t(r) * groups + g];
      }
    }
  });
}

void rows16(const Problem16& p, int b0, int b1, bool portable) {
#if defined(__x86_64__)
  if (!portable && have_avx512_vnni()) {
    if (p.bits == 4) {
      blocks_avx512<4>(p, b0, b1);
    } else {
      blocks_avx512<8>(p, b0, b1);
    }
    return;
  }
#endif
  const int m = p.a->m / kRoundings;
  for (int blk = b0; blk < b1; ++blk) block_portable(p, 0, m, blk);
}

}  // namespace cortex_mlx::qdot
