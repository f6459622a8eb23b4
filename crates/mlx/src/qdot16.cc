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
__attribute__((target("avx512f"))) inline __m512i word(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm512_set1_epi32(v);
}

// M activation rows (the first M of band `band`, each kRoundings int8 rows) against one block
// of 16 weight rows; PER: chunks per group (0: any, in a loop).
template <int M, int BITS, int PER>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void block_avx512(const Problem16& p, int band,
                                                                                   int blk) {
  const Bands& bd = *p.bands;
  const Block b(p, blk);
  constexpr int kWord = BITS == 4 ? 8 : 4, kChunkBytes = kBand * kRoundings * kWord;
  const int8_t* aq = bd.q.data() + size_t(band) * b.chunks * kChunkBytes;
  const float* side = bd.side.data() + size_t(band) * b.groups * Bands::kSideFloats;
  const int per = PER > 0 ? PER : b.per_group;
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  __m512 t[M];
  for (int j = 0; j < M; ++j) t[j] = _mm512_setzero_ps();
  for (int g = 0; g < b.groups; ++g) {
    __m512i acc[M][kRoundings];
    for (int j = 0; j < M; ++j) {
      for (int r = 0; r < kRoundings; ++r) acc[j][r] = _mm512_setzero_si512();
    }
    const uint8_t* w = b.w + size_t(g) * per * 64;
    const int8_t* ac = aq + size_t(g) * per * kChunkBytes;
#pragma GCC unroll 8
    for (int i = 0; i < per; ++i) {
      const __m512i v = _mm512_loadu_si512(w + size_t(i) * 64);
      // The same chunk of the next block, on the first band's pass: each block is read once
      // per band and only the first pass misses the cache, so the hardware prefetcher alone
      // leaves memory idle for the rest (8-bit weights: 1.9 -> 3.0 G dot products/s). The
      // later bands' passes prefetching the same lines again made 8 rows streamed from
      // memory slower than no prefetch at all (4-bit 8 x 1536 x 576: 67 us, none 59, the
      // first pass only 46).
      if (band == 0) _mm_prefetch(reinterpret_cast<const char*>(w + size_t(b.chunks) * 64 + size_t(i) * 64), _MM_HINT_T0);
      const int8_t* a = ac + size_t(i) * kChunkBytes;
      if constexpr (BITS == 4) {
        const __m512i even = _mm512_and_si512(v, lo4), odd = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
        for (int j = 0; j < M; ++j) {
          for (int r = 0; r < kRoundings; ++r) {
            const int8_t* x = a + (j * kRoundings + r) * kWord;
            acc[j][r] = _mm512_dpbusd_epi32(acc[j][r], even, word(x));
            acc[j][r] = _mm512_dpbusd_epi32(acc[j][r], odd, word(x + 4));
          }
        }
      } else {
        for (int j = 0; j < M; ++j) {
          for (int r = 0; r < kRoundings; ++r) {
            acc[j][r] = _mm512_dpbusd_epi32(acc[j][r], v, word(a + (j * kRoundings + r) * kWord));
          }
        }
      }
    }
    const __m512 s = _mm512_loadu_ps(b.scales + size_t(g) * kRows16);
    const __m512 bias = _mm512_loadu_ps(b.biases + size_t(g) * kRows16);
    const float* sd = side + size_t(g) * Bands::kSideFloats;
    for (int j = 0; j < M; ++j) {
      for (int r = 0; r < kRoundings; ++r) {
        t[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc[j][r]), _mm512_mul_ps(s, _mm512_set1_ps(sd[j * kRoundings + r])),
                               t[j]);
      }
      t[j] = _mm512_fmadd_ps(bias, _mm512_set1_ps(sd[kBand * kRoundings + j]), t[j]);
    }
  }
  const int rows = std::min(kRows16, p.n - blk * kRows16);
  const __mmask16 keep = __mmask16((1u << rows) - 1);
  for (int j = 0; j < M; ++j) {
    _mm512_mask_storeu_ps(p.out + size_t(band * kBand + j) * p.stride + size_t(blk) * kRows16, keep, t[j]);
  }
}

template <int BITS, int PER>
void blocks_avx512_per(const Problem16& p, int b0, int b1) {
  const int m = p.a->m / kRoundings;
  for (int blk = b0; blk < b1; ++blk) {
    for (int band = 0; band * kBand < m; ++band) {
      switch (std::min(kBand, m - band * kBand)) {
        case 1: block_avx512<1, BITS, PER>(p, band, blk); break;
        case 2: block_avx512<2, BITS, PER>(p, band, blk); break;
        case 3: block_avx512<3, BITS, PER>(p, band, blk); break;
        default: block_avx512<4, BITS, PER>(p, band, blk); break;
      }
    }
  }
}

// The group sizes models use get their chunk loop unrolled (4-bit: 32 -> 4 chunks, 64 -> 8;
// 8-bit: 32 -> 8).
template <int BITS>
void blocks_avx512(const Problem16& p, int b0, int b1) {
  switch (p.a->group * BITS / 32) {
    case 4: return blocks_avx512_per<BITS, 4>(p, b0, b1);
    case 8: return blocks_avx512_per<BITS, 8>(p, b0, b1);
    default: return blocks_avx512_per<BITS, 0>(p, b0, b1);
  }
}

// ---- AVX2 (no VNNI): the same blocks, 8 weight rows to a 256-bit vector ----
// vpmaddubsw multiplies a row's weight bytes by a broadcast activation word and adds pairs
// into 16-bit sums, which run up to 8 of them deep before vpmaddwd widens them into the
// row's 32-bit lane (a pair of 4-bit weights times int8 values is at most 2 * 15 * 127 = 3810,
// eight of them 30480 < 32767; 8-bit weights go in as two nibbles, their high half scaled by
// 16 as it widens). The integer dots are exact, so the float epilogue, per lane the same
// operations in the same order as block_avx512's, gives the same bits.
#define QDOT16_AVX2 __attribute__((target("avx2,fma")))

QDOT16_AVX2 inline __m256i word8(const int8_t* p) {
  int32_t v;
  std::memcpy(&v, p, 4);
  return _mm256_set1_epi32(v);
}

// Chunks whose 16-bit sums fit one accumulator before it widens: per chunk a 4-bit weight's
// accumulator takes two vpmaddubsw sums (even and odd nibbles), an 8-bit weight's low and high
// accumulators one each (see above).
template <int BITS>
constexpr int kFlush = BITS == 4 ? 4 : 8;

// M activation rows (rows j0 .. j0 + M of band `band`) against half `half` (rows 8 * half ..)
// of one block of 16 weight rows. kOneFlush: a group's chunks fit in one run of 16-bit sums
// (groups of 32), so the sums widen straight into the float epilogue and no 32-bit
// accumulators stay live across chunks (with them, GCC kept the two-row pass's 32-bit sums
// and outputs on the stack; with its loops over rows unrolled too, eight rows of a 4-bit
// layer went from half of vpmaddubsw's issue rate to two thirds).
template <int M, int BITS, bool kOneFlush>
QDOT16_AVX2 void half_avx2(const Problem16& p, int band, int j0, int blk, int half) {
  const Bands& bd = *p.bands;
  const Block b(p, blk);
  constexpr int kWord = BITS == 4 ? 8 : 4, kChunkBytes = kBand * kRoundings * kWord;
  const int8_t* ac = bd.q.data() + size_t(band) * b.chunks * kChunkBytes + j0 * kRoundings * kWord;
  const float* sd = bd.side.data() + size_t(band) * b.groups * Bands::kSideFloats;
  const uint8_t* w = b.w + half * 32;
  const float* sc = b.scales + half * 8;
  const float* bi = b.biases + half * 8;
  const __m256i lo4 = _mm256_set1_epi8(0x0F), ones = _mm256_set1_epi16(1), sixteen = _mm256_set1_epi16(16);
  const bool first = half == 0 && band == 0 && j0 == 0;  // the block's first pass
  // the next block's lines: its chunks, scales and biases (see block_avx512; here the biases'
  // and the scales' loads had been a third of one stream's kernel time, the weights' a
  // quarter, at a fraction of the machine's read bandwidth)
  const uint8_t* next = b.w + size_t(b.chunks) * 64;
  const float* next_sides = b.scales + size_t(b.groups) * kRows16 * 2;
  __m256 t[M];
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j) t[j] = _mm256_setzero_ps();
  for (int g = 0; g < b.groups; ++g, sc += kRows16, bi += kRows16, sd += Bands::kSideFloats) {
    if (first) {
      for (int i = 0; i < b.per_group; ++i) _mm_prefetch(reinterpret_cast<const char*>(next + size_t(i) * 64), _MM_HINT_T0);
      next += size_t(b.per_group) * 64;
      _mm_prefetch(reinterpret_cast<const char*>(next_sides + size_t(g) * kRows16), _MM_HINT_T0);
      _mm_prefetch(reinterpret_cast<const char*>(next_sides + size_t(b.groups + g) * kRows16), _MM_HINT_T0);
    }
    __m256i acc[M][kRoundings];
    for (int left = b.per_group; left > 0; left -= kFlush<BITS>) {
      __m256i lo[M][kRoundings], hi[M][kRoundings];
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j) {
#pragma GCC unroll 8
        for (int r = 0; r < kRoundings; ++r) lo[j][r] = hi[j][r] = _mm256_setzero_si256();
      }
      for (const uint8_t* end = w + size_t(std::min(left, kFlush<BITS>)) * 64; w < end; w += 64, ac += kChunkBytes) {
        const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
        const __m256i even = _mm256_and_si256(v, lo4), odd = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
#pragma GCC unroll 8
        for (int j = 0; j < M; ++j) {
#pragma GCC unroll 8
          for (int r = 0; r < kRoundings; ++r) {
            const int8_t* x = ac + (j * kRoundings + r) * kWord;
            if constexpr (BITS == 4) {
              lo[j][r] = _mm256_add_epi16(lo[j][r], _mm256_maddubs_epi16(even, word8(x)));
              lo[j][r] = _mm256_add_epi16(lo[j][r], _mm256_maddubs_epi16(odd, word8(x + 4)));
            } else {
              const __m256i xw = word8(x);
              lo[j][r] = _mm256_add_epi16(lo[j][r], _mm256_maddubs_epi16(even, xw));
              hi[j][r] = _mm256_add_epi16(hi[j][r], _mm256_maddubs_epi16(odd, xw));
            }
          }
        }
      }
#pragma GCC unroll 8
      for (int j = 0; j < M; ++j) {
#pragma GCC unroll 8
        for (int r = 0; r < kRoundings; ++r) {
          __m256i sum = _mm256_madd_epi16(lo[j][r], ones);
          if constexpr (BITS == 8) sum = _mm256_add_epi32(sum, _mm256_madd_epi16(hi[j][r], sixteen));
          acc[j][r] = kOneFlush || left == b.per_group ? sum : _mm256_add_epi32(acc[j][r], sum);
        }
      }
      if constexpr (kOneFlush) break;
    }
    const __m256 s = _mm256_loadu_ps(sc), bias = _mm256_loadu_ps(bi);
#pragma GCC unroll 8
    for (int j = 0; j < M; ++j) {
#pragma GCC unroll 8
      for (int r = 0; r < kRoundings; ++r) {
        t[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[j][r]),
                               _mm256_mul_ps(s, _mm256_set1_ps(sd[(j0 + j) * kRoundings + r])), t[j]);
      }
      t[j] = _mm256_fmadd_ps(bias, _mm256_set1_ps(sd[kBand * kRoundings + j0 + j]), t[j]);
    }
  }
  const int rows = std::min(8, p.n - blk * kRows16 - half * 8);
#pragma GCC unroll 8
  for (int j = 0; j < M; ++j) {
    float* out = p.out + size_t(band * kBand + j0 + j) * p.stride + size_t(blk) * kRows16 + half * 8;
    if (rows == 8) {
      _mm256_storeu_ps(out, t[j]);
    } else {
      alignas(32) float tmp[8];
      _mm256_store_ps(tmp, t[j]);
      std::copy(tmp, tmp + rows, out);
    }
  }
}

// Blocks b0..b1 for every activation row: per block, each half's 8 rows against the bands'
// rows, 4-bit four to a pass, 8-bit two (their high and low sums take twice the registers),
// the half's weights staying in L1 between the passes. (With groups over 32 the 32-bit
// accumulators spill a few registers at these counts, and the passes are still faster than
// with fewer rows: 8 rows of a 4-bit [1536, 576] layer at group 64, 203 -> 192 us.)
// A pass's rows never straddle a band: j starts each pass of 4 at a multiple of 4 (kBand) and
// each pass of 2 at a multiple of 2.
template <int BITS, bool kOneFlush>
void blocks_avx2_flush(const Problem16& p, int b0, int b1) {
  static_assert(kBand % 4 == 0);
  const int m = p.a->m / kRoundings;
  for (int blk = b0; blk < b1; ++blk) {
    for (int half = 0; half < 2 && blk * kRows16 + half * 8 < p.n; ++half) {
      int j = 0;
      if constexpr (BITS == 4) {
        for (; j + 4 <= m; j += 4) half_avx2<4, BITS, kOneFlush>(p, j / kBand, j % kBand, blk, half);
      }
      for (; j + 2 <= m; j += 2) half_avx2<2, BITS, kOneFlush>(p, j / kBand, j % kBand, blk, half);
      for (; j < m; ++j) half_avx2<1, BITS, kOneFlush>(p, j / kBand, j % kBand, blk, half);
    }
  }
}

template <int BITS>
void blocks_avx2(const Problem16& p, int b0, int b1) {
  if (p.a->group * BITS / 32 <= kFlush<BITS>) {
    blocks_avx2_flush<BITS, true>(p, b0, b1);
  } else {
    blocks_avx2_flush<BITS, false>(p, b0, b1);
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

void make_bands(const Activations& a, int bits, Bands& out) {
  const int m = a.m / kRoundings, bands = (m + kBand - 1) / kBand;
  const int chunks = a.k * bits / 32, groups = a.k / a.group;
  const int word = bits == 4 ? 8 : 4;  // a chunk's activations: 8 (4-bit) or 4 values of each row
  const size_t chunk_bytes = size_t(kBand) * kRoundings * word;
  out.q.assign(size_t(bands) * chunks * chunk_bytes, 0);
  out.side.assign(size_t(bands) * groups * Bands::kSideFloats, 0.f);
  for (int j = 0; j < m; ++j) {
    const int band = j / kBand, lane = j % kBand;
    int8_t* q = out.q.data() + size_t(band) * chunks * chunk_bytes;
    float* side = out.side.data() + size_t(band) * groups * Bands::kSideFloats;
    for (int r = 0; r < kRoundings; ++r) {
      const size_t row = size_t(j) * kRoundings + r;
      const int8_t* from = a.q.data() + row * a.k;
      int8_t* to = q + size_t(lane * kRoundings + r) * word;
      for (int c = 0; c < chunks; ++c) std::memcpy(to + c * chunk_bytes, from + size_t(c) * word, word);
      for (int g = 0; g < groups; ++g) {
        side[size_t(g) * Bands::kSideFloats + lane * kRoundings + r] = a.scale[row * groups + g];
      }
    }
    for (int g = 0; g < groups; ++g) {
      side[size_t(g) * Bands::kSideFloats + kBand * kRoundings + lane] = a.sum[size_t(j) * kRoundings * groups + g];
    }
  }
}

void rows16(const Problem16& p, int b0, int b1, bool portable) {
#if defined(__x86_64__)
  if (!portable && p.bands != nullptr && have_avx512_vnni()) {
    if (p.bits == 4) {
      blocks_avx512<4>(p, b0, b1);
    } else {
      blocks_avx512<8>(p, b0, b1);
    }
    return;
  }
  if (!portable && p.bands != nullptr && kernels::have_avx2()) {
    if (p.bits == 4) {
      blocks_avx2<4>(p, b0, b1);
    } else {
      blocks_avx2<8>(p, b0, b1);
    }
    return;
  }
#endif
  const int m = p.a->m / kRoundings;
  for (int blk = b0; blk < b1; ++blk) block_portable(p, 0, m, blk);
}

}  // namespace cortex_mlx::qdot
