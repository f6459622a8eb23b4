// Integer-dot kernels (see qdot.h).
#include "qdot.h"

#include "kernels.h"

#include <algorithm>
#include <cmath>
#include <cstdlib>
#include <cstring>
#include <string>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC 12 reports its own AVX-512 intrinsics' "undefined" sources (cvtepi32_ps, inserti64x4,
// shuffle_f32x4) as maybe- or plainly uninitialized once they are inlined here; nothing here
// reads them.
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#pragma GCC diagnostic ignored "-Wuninitialized"
#endif

namespace cortex_mlx::qdot {
namespace {

// ---- activations ----

// Byte position of value i (0 <= i < chunk) of a 4-bit chunk: the kernels unpack a chunk's
// packed bytes into low nibbles (values 0, 2, 4, ...) then high nibbles (1, 3, 5, ...).
inline int nibble_order(int i, int chunk) { return (i % 2) * (chunk / 2) + i / 2; }

// ---- scalar (the reference every SIMD kernel agrees with) ----

template <int M>
void block_scalar(const Problem& p, int m0, int n0, int n1) {
  const Activations& a = *p.a;
  const int groups = a.k / a.group;
  const size_t row_bytes = size_t(a.k) * p.bits / 8;
  for (int r = n0; r < n1; ++r) {
    const uint8_t* w = p.w + size_t(r) * row_bytes;
    _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) {
      const int8_t* xq = a.q.data() + size_t(m0 + j) * a.k;
      const float* xs = a.scale.data() + size_t(m0 + j) * groups;
      const float* xsum = a.sum.data() + size_t(m0 + j) * groups;
      float acc = 0.f, bias = 0.f;
      for (int g = 0; g < groups; ++g) {
        int32_t d = 0;
        for (int i = 0; i < a.group; ++i) {
          const int idx = g * a.group + i;
          const int q = p.bits == 8 ? w[idx] : (w[idx / 2] >> ((idx % 2) * 4)) & 0xF;
          d += q * xq[idx];
        }
        acc += float(d) * (p.scales[size_t(r) * groups + g] * xs[g]);
        bias += p.biases[size_t(r) * groups + g] * xsum[g];
      }
      p.out[size_t(m0 + j) * p.n + r] = acc + bias;
    }
  }
}

#if defined(__x86_64__)
#define QDOT_X86 1

__attribute__((target("avx2,fma"))) inline float hsum8(__m256 v) {
  __m128 lo = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  lo = _mm_hadd_ps(lo, lo);
  lo = _mm_hadd_ps(lo, lo);
  return _mm_cvtss_f32(lo);
}

// The bias term and the store, shared by the 256-bit kernels: out = sum of t's lanes + sum_g
// b_g * xsum_g, the bias term in 8-wide multiply-adds (a scalar loop here was a serial chain of
// one add per group for every output, a third of the kernel's time).
__attribute__((target("avx2,fma"))) inline void store_row(const Problem& p, int row, int r, __m256 t) {
  const Activations& a = *p.a;
  const int groups = a.k / a.group;
  const float* b = p.biases + size_t(r) * groups;
  const float* xsum = a.sum.data() + size_t(row) * groups;
  int g = 0;
  for (; g + 8 <= groups; g += 8) t = _mm256_fmadd_ps(_mm256_loadu_ps(b + g), _mm256_loadu_ps(xsum + g), t);
  float tail = 0.f;
  for (; g < groups; ++g) tail += b[g] * xsum[g];
  p.out[size_t(row) * p.n + r] = hsum8(t) + tail;
}

// 32 weights of a chunk as unsigned bytes in the kernel's order: 4-bit [low nibbles of 16
// bytes | high nibbles], 8-bit as they are.
__attribute__((target("avx2"))) inline __m256i chunk32(const uint8_t* w, int bits) {
  if (bits == 8) return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w));
  const __m128i lo4 = _mm_set1_epi8(0x0F);
  return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(v, 4), lo4), _mm_and_si128(v, lo4));
}

// AVX2 without VNNI: vpmaddubsw (u8 x s8 pairs -> i16) then vpmaddwd into i32. 4-bit weights
// cannot saturate the i16 pairs (2 * 15 * 127); 8-bit ones are split into two nibbles first.
__attribute__((target("avx2"))) inline __m256i dot32_avx2(__m256i w, __m256i x, int bits) {
  const __m256i ones = _mm256_set1_epi16(1);
  if (bits == 4) return _mm256_madd_epi16(_mm256_maddubs_epi16(w, x), ones);
  const __m256i lo4 = _mm256_set1_epi8(0x0F);
  const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(w, 4), lo4), lo = _mm256_and_si256(w, lo4);
  return _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(hi, x), _mm256_set1_epi16(16)),
                          _mm256_madd_epi16(_mm256_maddubs_epi16(lo, x), ones));
}

// One kernel body for the 256-bit paths; DOT(acc, w, x) adds dot products into acc's lanes.
#define QDOT_BLOCK256(NAME, TARGET, DOT)                                                          \
  template <int M>                                                                              \
  __attribute__((target(TARGET))) void NAME(const Problem& p, int m0, int n0, int n1) {         \
    const Activations& a = *p.a;                                                                \
    const int groups = a.k / a.group;                                                           \
    const size_t row_bytes = size_t(a.k) * p.bits / 8;                                          \
    for (int r = n0; r < n1; ++r) {                                                             \
      const uint8_t* w = p.w + size_t(r) * row_bytes;                                           \
      const float* s = p.scales + size_t(r) * groups;                                           \
      __m256 t[M];                                                                              \
      _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) t[j] = _mm256_setzero_ps();                                   \
      for (int g = 0; g < groups; ++g) {                                                        \
        __m256i acc[M];                                                                         \
        _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) acc[j] = _mm256_setzero_si256();                            \
        for (int c = g * a.group; c < (g + 1) * a.group; c += 32) {                             \
          const __m256i wv = chunk32(w + size_t(c) * p.bits / 8, p.bits);                       \
          _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) {                                                         \
            const __m256i xv =                                                                  \
                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a.q.data() + size_t(m0 + j) * a.k + c)); \
            acc[j] = DOT(acc[j], wv, xv);                                                       \
          }                                                                                     \
        }                                                                                       \
        _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) {                                                           \
          const float sc = s[g] * a.scale[size_t(m0 + j) * groups + g];                        \
          t[j] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(acc[j]), _mm256_set1_ps(sc), t[j]);         \
        }                                                                                       \
      }                                                                                         \
      _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) store_row(p, m0 + j, r, t[j]);                         \
    }                                                                                           \
  }

#define DOT_AVX2(acc, w, x) _mm256_add_epi32(acc, dot32_avx2(w, x, p.bits))
// vpdpbusd takes any unsigned byte, so 8-bit weights need no split with VNNI.
#define DOT_AVXVNNI(acc, w, x) _mm256_dpbusd_avx_epi32(acc, w, x)
#define DOT_EVEX256(acc, w, x) _mm256_dpbusd_epi32(acc, w, x)

QDOT_BLOCK256(block_avx2, "avx2,fma", DOT_AVX2)
QDOT_BLOCK256(block_avxvnni, "avx2,fma,avxvnni", DOT_AVXVNNI)
QDOT_BLOCK256(block_evex256, "avx2,fma,avx512f,avx512vl,avx512vnni", DOT_EVEX256)

// AVX-512 VNNI, 64 values per chunk (group a multiple of 64).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) inline __m512i chunk64(const uint8_t* w, int bits) {
  if (bits == 8) return _mm512_loadu_si512(w);
  const __m256i v = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(w));
  const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(v), _mm256_srli_epi16(v, 4), 1);
  return _mm512_and_si512(both, _mm512_set1_epi8(0x0F));
}

// t + the bias term of weight row r (kernels::add_bias512).
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) inline __m512 bias512(const Problem& p, int r,
                                                                                   const float* xsum, int groups,
                                                                                   __m512 t) {
  return kernels::add_bias512(p.biases + size_t(r) * groups, xsum, groups, t);
}

// Two weight rows per pass (independent dependency chains), M activation rows each; the
// group's chunks unrolled for the group sizes models use.
template <int M, int BITS, int CHUNKS>
__attribute__((target("avx512f,avx512bw,avx512vl,avx512vnni"))) void block_avx512_t(const Problem& p, int m0, int n0,
                                                                                   int n1) {
  const Activations& a = *p.a;
  const int groups = a.k / a.group;
  const int chunks = CHUNKS > 0 ? CHUNKS : a.group / 64;
  const size_t row_bytes = size_t(a.k) * BITS / 8;
  const int8_t* xq[M];
  const float* xs[M];
  const float* xb[M];
  _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) {
    xq[j] = a.q.data() + size_t(m0 + j) * a.k;
    xs[j] = a.scale.data() + size_t(m0 + j) * groups;
    xb[j] = a.sum.data() + size_t(m0 + j) * groups;
  }
  int r = n0;
  for (; r + 2 <= n1; r += 2) {
    const uint8_t* w0 = p.w + size_t(r) * row_bytes;
    const uint8_t* w1 = w0 + row_bytes;
    const float* s0 = p.scales + size_t(r) * groups;
    const float* s1 = s0 + groups;
    __m512 t0[M], t1[M];
    _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) t0[j] = t1[j] = _mm512_setzero_ps();
    for (int g = 0; g < groups; ++g) {
      __m512i acc0[M], acc1[M];
      _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) acc0[j] = acc1[j] = _mm512_setzero_si512();
      for (int c = 0; c < chunks; ++c) {
        const size_t off = size_t(g) * a.group + size_t(c) * 64;
        const __m512i wv0 = chunk64(w0 + off * BITS / 8, BITS);
        const __m512i wv1 = chunk64(w1 + off * BITS / 8, BITS);
        _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) {
          const __m512i xv = _mm512_loadu_si512(xq[j] + off);
          acc0[j] = _mm512_dpbusd_epi32(acc0[j], wv0, xv);
          acc1[j] = _mm512_dpbusd_epi32(acc1[j], wv1, xv);
        }
      }
      _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) {
        const __m512 sx = _mm512_set1_ps(xs[j][g]);
        t0[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc0[j]), _mm512_mul_ps(_mm512_set1_ps(s0[g]), sx), t0[j]);
        t1[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc1[j]), _mm512_mul_ps(_mm512_set1_ps(s1[g]), sx), t1[j]);
      }
    }
    _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) {
      p.out[size_t(m0 + j) * p.n + r] = _mm512_reduce_add_ps(bias512(p, r, xb[j], groups, t0[j]));
      p.out[size_t(m0 + j) * p.n + r + 1] = _mm512_reduce_add_ps(bias512(p, r + 1, xb[j], groups, t1[j]));
    }
  }
  for (; r < n1; ++r) {
    const uint8_t* w0 = p.w + size_t(r) * row_bytes;
    const float* s0 = p.scales + size_t(r) * groups;
    __m512 t0[M];
    _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) t0[j] = _mm512_setzero_ps();
    for (int g = 0; g < groups; ++g) {
      __m512i acc0[M];
      _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) acc0[j] = _mm512_setzero_si512();
      for (int c = 0; c < chunks; ++c) {
        const size_t off = size_t(g) * a.group + size_t(c) * 64;
        const __m512i wv0 = chunk64(w0 + off * BITS / 8, BITS);
        _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) acc0[j] = _mm512_dpbusd_epi32(acc0[j], wv0, _mm512_loadu_si512(xq[j] + off));
      }
      _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) {
        const __m512 sx = _mm512_set1_ps(xs[j][g]);
        t0[j] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(acc0[j]), _mm512_mul_ps(_mm512_set1_ps(s0[g]), sx), t0[j]);
      }
    }
    _Pragma("GCC unroll 8") for (int j = 0; j < M; ++j) {
      p.out[size_t(m0 + j) * p.n + r] = _mm512_reduce_add_ps(bias512(p, r, xb[j], groups, t0[j]));
    }
  }
}

template <int M>
void block_avx512(const Problem& p, int m0, int n0, int n1) {
  const int chunks = p.a->group / 64;
  if (p.bits == 4) {
    if (chunks == 1) return block_avx512_t<M, 4, 1>(p, m0, n0, n1);
    if (chunks == 2) return block_avx512_t<M, 4, 2>(p, m0, n0, n1);
    return block_avx512_t<M, 4, 0>(p, m0, n0, n1);
  }
  if (chunks == 1) return block_avx512_t<M, 8, 1>(p, m0, n0, n1);
  if (chunks == 2) return block_avx512_t<M, 8, 2>(p, m0, n0, n1);
  block_avx512_t<M, 8, 0>(p, m0, n0, n1);
}

#endif

// Every activation row against weight rows n0..n1, in blocks of up to B activation rows
// through K<M>; the weight rows go in tiles small enough to stay in L1 while every block of
// activation rows passes over them, so a batch reads its weights from memory once.
template <int B, void (*K1)(const Problem&, int, int, int), void (*K2)(const Problem&, int, int, int),
          void (*K3)(const Problem&, int, int, int), void (*K4)(const Problem&, int, int, int)>
void by_blocks(const Problem& p, int n0, int n1) {
  constexpr int kTile = 16;
  const int m = p.a->m;
  for (int r0 = n0; r0 < n1; r0 += kTile) {
    const int r1 = std::min(n1, r0 + kTile);
    for (int m0 = 0; m0 < m; m0 += B) {
      switch (std::min(B, m - m0)) {
        case 1: K1(p, m0, r0, r1); break;
        case 2: K2(p, m0, r0, r1); break;
        case 3: K3(p, m0, r0, r1); break;
        default: K4(p, m0, r0, r1); break;
      }
    }
  }
}

}  // namespace

static bool supported(Isa isa) {
#ifdef QDOT_X86
  switch (isa) {
    case Isa::Avx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512vnni");
    case Isa::AvxVnni: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("avxvnni");
    case Isa::Avx2: return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case Isa::Scalar: return true;
  }
#endif
  return isa == Isa::Scalar;
}

Isa best_isa() {
  static const Isa isa = [] {
    const Isa all[] = {Isa::Avx512Vnni, Isa::AvxVnni, Isa::Avx2, Isa::Scalar};
    int from = 0;
    if (const char* cap = std::getenv("CORTEX_QDOT_ISA")) {
      for (int i = 0; i < 4; ++i) {
        if (std::string(cap) == isa_name(all[i])) from = i;
      }
    }
    for (int i = from; i < 4; ++i) {
      if (supported(all[i])) return all[i];
    }
    return Isa::Scalar;
  }();
  return isa;
}

const char* isa_name(Isa isa) {
  switch (isa) {
    case Isa::Avx512Vnni: return "avx512vnni";
    case Isa::AvxVnni: return "avxvnni";
    case Isa::Avx2: return "avx2";
    case Isa::Scalar: return "scalar";
  }
  return "scalar";
}

int chunk_for(Isa isa, int bits, int group) {
  if ((bits != 4 && bits != 8) || group <= 0 || group % 32 != 0) return 0;
  if (isa == Isa::Scalar) return group;  // natural order: any chunk works
  if (isa == Isa::Avx512Vnni && group % 64 == 0) return 64;
  return 32;
}

namespace {

// A group's sum in the order the SIMD code adds: 16 lanes, lane l summing values l, l + 16,
// l + 32, ... in turn, then halves folded onto halves (16 -> 8 -> 4 -> 2 -> 1). Groups here
// hold a multiple of 32 values.
float group_sum(const float* v, int group) {
  float acc[16];
  std::copy(v, v + 16, acc);
  for (int c = 16; c < group; c += 16) {
    for (int l = 0; l < 16; ++l) acc[l] += v[c + l];
  }
  for (int w = 8; w >= 1; w /= 2) {
    for (int l = 0; l < w; ++l) acc[l] += acc[l + w];
  }
  return acc[0];
}

// Rounds to the nearest integer, ties to even (as nearbyint does in the default rounding mode)
// for |x| < 2^22: the quantized values stay within +-127.5. Not a libm call.
inline float round_even(float x) {
  constexpr float kShift = 12582912.f;  // 1.5 * 2^23
  return (x + kShift) - kShift;
}

// One group's kRoundings passes, `rest` holding its values in storage order (it ends holding
// what the last pass left over): q rows `row_stride` bytes apart, scales `scale_stride` apart.
void round_group(float* rest, int group, int8_t* q, size_t q_stride, float* scale_out, size_t scale_stride) {
  for (int pass = 0; pass < kRoundings; ++pass) {
    float amax = 0.f;
    for (int i = 0; i < group; ++i) amax = std::max(amax, std::fabs(rest[i]));
    const float scale = amax / 127.f;
    const float inv = scale > 0.f ? 1.f / scale : 0.f;
    int8_t* qp = q + pass * q_stride;
    for (int i = 0; i < group; ++i) {
      const float r = round_even(rest[i] * inv);
      qp[i] = int8_t(int(r));
      rest[i] -= r * scale;
    }
    scale_out[pass * scale_stride] = scale;
  }
}

#ifdef QDOT_X86
// Halves folded onto halves, as group_sum does: 16 -> 8 -> 4 -> 2 -> 1 lanes.
__attribute__((target("avx512f"))) inline float fold_sum(__m512 acc) {
  const __m256 h8 = _mm256_add_ps(_mm512_castps512_ps256(acc),
                                  _mm512_castps512_ps256(_mm512_shuffle_f32x4(acc, acc, _MM_SHUFFLE(3, 2, 3, 2))));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
}

__attribute__((target("avx512f"))) inline float max_lanes(__m512 v) {
  const __m256 h8 = _mm256_max_ps(_mm512_castps512_ps256(v),
                                  _mm512_castps512_ps256(_mm512_shuffle_f32x4(v, v, _MM_SHUFFLE(3, 2, 3, 2))));
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}

// One group of NV * 16 values in registers: its sum, its values put in storage order (chunks of
// `chunk`: 8, 32 or 64, even positions then odd; 0: as they are), then round_group's passes
// with the same float operations per value, so the bytes and scales are the portable code's.
template <int NV>
__attribute__((target("avx512f"))) void group_avx512(const float* v, int chunk, int8_t* q, size_t q_stride,
                                                   float* scale_out, size_t scale_stride, float* sum) {
  __m512 x[NV], r[NV];
  for (int i = 0; i < NV; ++i) x[i] = _mm512_loadu_ps(v + 16 * i);
  __m512 acc = x[0];
  for (int i = 1; i < NV; ++i) acc = _mm512_add_ps(acc, x[i]);
  *sum = fold_sum(acc);
  const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
  const __m512i odd = _mm512_add_epi32(even, _mm512_set1_epi32(1));
  if (chunk == 8) {
    const __m512i in8 = _mm512_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7, 8, 10, 12, 14, 9, 11, 13, 15);
    for (int i = 0; i < NV; ++i) r[i] = _mm512_permutexvar_ps(in8, x[i]);
  } else if (chunk == 32) {
    for (int i = 0; i + 1 < NV; i += 2) {
      r[i] = _mm512_permutex2var_ps(x[i], even, x[i + 1]);
      r[i + 1] = _mm512_permutex2var_ps(x[i], odd, x[i + 1]);
    }
  } else if (chunk == 64) {
    for (int i = 0; i + 3 < NV; i += 4) {
      r[i] = _mm512_permutex2var_ps(x[i], even, x[i + 1]);
      r[i + 1] = _mm512_permutex2var_ps(x[i + 2], even, x[i + 3]);
      r[i + 2] = _mm512_permutex2var_ps(x[i], odd, x[i + 1]);
      r[i + 3] = _mm512_permutex2var_ps(x[i + 2], odd, x[i + 3]);
    }
  } else {
    for (int i = 0; i < NV; ++i) r[i] = x[i];
  }
  for (int pass = 0; pass < kRoundings; ++pass) {
    // |value| first: a NaN value leaves the max as it was, as std::max(amax, NaN) does
    __m512 vmax = _mm512_setzero_ps();
    for (int i = 0; i < NV; ++i) vmax = _mm512_max_ps(_mm512_abs_ps(r[i]), vmax);
    const float scale = max_lanes(vmax) / 127.f;
    const float inv = scale > 0.f ? 1.f / scale : 0.f;
    const __m512 vs = _mm512_set1_ps(scale), vi = _mm512_set1_ps(inv);
    int8_t* qp = q + pass * q_stride;
    for (int i = 0; i < NV; ++i) {
      const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(r[i], vi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      _mm512_mask_cvtepi32_storeu_epi8(qp + 16 * i, __mmask16(0xFFFF), _mm512_cvtps_epi32(n));
      r[i] = _mm512_sub_ps(r[i], _mm512_mul_ps(n, vs));
    }
    scale_out[pass * scale_stride] = scale;
  }
}

// group_avx512's twin for CPUs without AVX-512: NV * 8 values in 8-lane registers, the sum in
// two registers standing for the 16 lanes (even registers: lanes 0-7, odd: 8-15), the
// storage order from pairs of registers, then the same passes. Its target has no FMA, so no
// multiply and subtract is fused where the portable code rounds twice.
__attribute__((target("avx2"))) inline __m256 evens(__m256 a, __m256 b) {
  return _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(2, 0, 2, 0))), _MM_SHUFFLE(3, 1, 2, 0)));
}
__attribute__((target("avx2"))) inline __m256 odds(__m256 a, __m256 b) {
  return _mm256_castpd_ps(
      _mm256_permute4x64_pd(_mm256_castps_pd(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 1, 3, 1))), _MM_SHUFFLE(3, 1, 2, 0)));
}

template <int NV>
__attribute__((target("avx2"))) void group_avx2(const float* v, int chunk, int8_t* q, size_t q_stride, float* scale_out,
                                                size_t scale_stride, float* sum) {
  __m256 x[NV], r[NV];
  for (int i = 0; i < NV; ++i) x[i] = _mm256_loadu_ps(v + 8 * i);
  __m256 lo = x[0], hi = x[1];
  for (int i = 2; i < NV; i += 2) {
    lo = _mm256_add_ps(lo, x[i]);
    hi = _mm256_add_ps(hi, x[i + 1]);
  }
  const __m256 h8 = _mm256_add_ps(lo, hi);
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_movehl_ps(h4, h4));
  *sum = _mm_cvtss_f32(_mm_add_ss(h2, _mm_movehdup_ps(h2)));
  if (chunk == 8) {
    const __m256i in8 = _mm256_setr_epi32(0, 2, 4, 6, 1, 3, 5, 7);
    for (int i = 0; i < NV; ++i) r[i] = _mm256_permutevar8x32_ps(x[i], in8);
  } else if (chunk > 0) {
    const int per = chunk / 8;  // registers per chunk: its evens fill the first half
    for (int c = 0; c < NV; c += per) {
      for (int i = 0; i < per; i += 2) {
        r[c + i / 2] = evens(x[c + i], x[c + i + 1]);
        r[c + per / 2 + i / 2] = odds(x[c + i], x[c + i + 1]);
      }
    }
  } else {
    for (int i = 0; i < NV; ++i) r[i] = x[i];
  }
  const __m256 sign = _mm256_set1_ps(-0.0f);
  for (int pass = 0; pass < kRoundings; ++pass) {
    __m256 vmax = _mm256_setzero_ps();
    for (int i = 0; i < NV; ++i) vmax = _mm256_max_ps(_mm256_andnot_ps(sign, r[i]), vmax);
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    const float scale = _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h))) / 127.f;
    const float inv = scale > 0.f ? 1.f / scale : 0.f;
    const __m256 vs = _mm256_set1_ps(scale), vi = _mm256_set1_ps(inv);
    int8_t* qp = q + pass * q_stride;
    for (int i = 0; i < NV; ++i) {
      const __m256 n = _mm256_round_ps(_mm256_mul_ps(r[i], vi), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
      const __m256i w = _mm256_cvtps_epi32(n);
      const __m128i h16 = _mm_packs_epi32(_mm256_castsi256_si128(w), _mm256_extracti128_si256(w, 1));
      _mm_storel_epi64(reinterpret_cast<__m128i*>(qp + 8 * i), _mm_packs_epi16(h16, h16));
      r[i] = _mm256_sub_ps(r[i], _mm256_mul_ps(n, vs));
    }
    scale_out[pass * scale_stride] = scale;
  }
}
#endif

}  // namespace

void quantize(const float* x, int m, int k, int group, int bits, Isa isa, Activations& out, int chunk_override,
              bool portable) {
  const int groups = k / group;
  const int chunk = chunk_override > 0 ? chunk_override : chunk_for(isa, bits, group);
  const bool permute = bits == 4 && (chunk_override > 0 || isa != Isa::Scalar);
  out.m = m * kRoundings;
  out.k = k;
  out.group = group;
  out.chunk = chunk;
  out.q.resize(size_t(out.m) * k);
  out.scale.resize(size_t(out.m) * groups);
  out.sum.resize(size_t(out.m) * groups);
#ifdef QDOT_X86
  // registers hold groups of up to 128 values; larger ones take the portable code
  const bool simd = !portable && kernels::have_avx512() && group % 32 == 0 && group <= 128;
  const bool simd256 = !simd && !portable && kernels::have_avx2() && group % 32 == 0 && group <= 128 &&
                       (!permute || chunk == 8 || chunk % 16 == 0);
#else
  const bool simd = false, simd256 = false;
  (void)portable;
#endif
  // The portable code's storage position -> value of the group (the same for every group:
  // chunks divide groups), and its buffer of what is left to round.
  thread_local std::vector<int> from;
  thread_local std::vector<float> rest;
  if (!simd && !simd256) {
    from.resize(group);
    for (int i = 0; i < group; ++i) from[permute ? (i / chunk) * chunk + nibble_order(i % chunk, chunk) : i] = i;
    rest.resize(group);
  }
  for (int row = 0; row < m; ++row) {
    for (int g = 0; g < groups; ++g) {
      const float* v = x + size_t(row) * k + size_t(g) * group;
      const size_t first = size_t(row) * kRoundings;
      int8_t* q = out.q.data() + first * k + size_t(g) * group;
      float* scale = out.scale.data() + first * groups + g;
      float* sum = out.sum.data() + first * groups + g;
      if (simd) {
#ifdef QDOT_X86
        const int c = permute ? chunk : 0;
        switch (group) {
          case 32: group_avx512<2>(v, c, q, size_t(k), scale, size_t(groups), sum); break;
          case 64: group_avx512<4>(v, c, q, size_t(k), scale, size_t(groups), sum); break;
          case 96: group_avx512<6>(v, c, q, size_t(k), scale, size_t(groups), sum); break;
          case 128: group_avx512<8>(v, c, q, size_t(k), scale, size_t(groups), sum); break;
        }
#endif
      } else if (simd256) {
#ifdef QDOT_X86
        const int c = permute ? chunk : 0;
        switch (group) {
          case 32: group_avx2<4>(v, c, q, size_t(k), scale, size_t(groups), sum); break;
          case 64: group_avx2<8>(v, c, q, size_t(k), scale, size_t(groups), sum); break;
          case 96: group_avx2<12>(v, c, q, size_t(k), scale, size_t(groups), sum); break;
          case 128: group_avx2<16>(v, c, q, size_t(k), scale, size_t(groups), sum); break;
        }
#endif
      } else {
        for (int i = 0; i < group; ++i) rest[i] = v[from[i]];
        sum[0] = group_sum(v, group);
        round_group(rest.data(), group, q, size_t(k), scale, size_t(groups));
      }
      // The weights' bias term needs x's sum once: with the first rounding.
      for (int pass = 1; pass < kRoundings; ++pass) sum[pass * groups] = 0.f;
    }
  }
}

void rows(const Problem& p, int n0, int n1) {
  switch (p.isa) {
#ifdef QDOT_X86
    case Isa::Avx512Vnni:
      if (p.a->chunk == 64) {
        by_blocks<4, block_avx512<1>, block_avx512<2>, block_avx512<3>, block_avx512<4>>(p, n0, n1);
      } else {
        by_blocks<4, block_evex256<1>, block_evex256<2>, block_evex256<3>, block_evex256<4>>(p, n0, n1);
      }
      return;
    case Isa::AvxVnni:
      by_blocks<4, block_avxvnni<1>, block_avxvnni<2>, block_avxvnni<3>, block_avxvnni<4>>(p, n0, n1);
      return;
    case Isa::Avx2:
      by_blocks<4, block_avx2<1>, block_avx2<2>, block_avx2<3>, block_avx2<4>>(p, n0, n1);
      return;
#endif
    default:
      by_blocks<4, block_scalar<1>, block_scalar<2>, block_scalar<3>, block_scalar<4>>(p, n0, n1);
  }
}

}  // namespace cortex_mlx::qdot
