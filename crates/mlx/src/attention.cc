// A decode step's attention on the CPU as one MLX primitive: for each sequence's one new
// token, RoPE on its query and key, the key and value written into the KV cache, and attention
// over the cached positions. MLX's own path for the same step is about twenty graph nodes per
// layer (head reshapes and transposes, RoPE, the cache update, SDPA's fallback ops, the merge),
// each with a fixed cost on the CPU stream; decode of a small model was bound by them.
//
// The cache comes in two layouts: one sequence's buffer [1, Hkv, capacity, D] (position j of
// head h at (h * capacity + j) * D), or a paged pool [slots, Hkv, D] shared by many sequences,
// each of which names its slots through a table; either holds float32 values, float16 ones
// (written rounded and saturating, read widened), or int8 rows (the int8 path's cache: each
// head's D values in blocks of 32 scaled by their largest magnitude, the blocks' float32
// scales stored after them, so a row of 64 is 72 bytes). The kernel writes the new
// rows into the storage it is given and returns that storage as two more outputs sharing its
// memory, so the cache never copies: only rows nobody has read yet change (see
// decode_attention's contract).
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "kernels.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"
#include "shim.h"

namespace mx = mlx::core;

namespace cortex_mlx {
namespace {

using kernels::run_kernel;
using kernels::Strided;
#if defined(__x86_64__)
using kernels::hsum;
#endif

// The cache's element types: float32, IEEE half bits, or Q8 (the int8 path's cache: a row of
// D int8 values in blocks of kQ8Block, then each block's float32 scale, four bytes each; a
// value is q * its block's scale). Kernels read each value as float32 and then compute as for
// a float32 cache: a Q8 value is float(q) * scale, the bits ops::kv_dequantize_rows gives, so
// attention over a Q8 cache equals attention over its dequantized rows (the prompt kernel's
// input) exactly.
using Half = uint16_t;
using Q8 = int8_t;

// Values per Q8 scale. A whole row of 64 under one scale flipped 1.4% of SmolLM2's greedy
// tokens (bench/accuracy.sh); blocks of 32 flip about half as many, and keep a row's error
// the same whatever its head dimension.
constexpr int kQ8Block = 32;

// Scales of a Q8 row of d values (its last block may be short).
constexpr int q8_blocks(int d) { return (d + kQ8Block - 1) / kQ8Block; }

// Elements per stored row of D values: D, or for Q8 D and four bytes per block's scale.
template <class T>
constexpr int row_width(int d) {
  return std::is_same_v<T, Q8> ? d + q8_blocks(d) * int(sizeof(float)) : d;
}

// The scale of the block holding value i of a stored row of d values: 1 but for Q8 (times 1
// is exact: the other types' values are unchanged).
template <class T>
inline float block_scale(const T*, int, int) {
  return 1.f;
}
template <>
inline float block_scale<Q8>(const Q8* row, int d, int i) {
  float s;
  std::memcpy(&s, row + d + (i / kQ8Block) * sizeof s, sizeof s);
  return s;
}

// Attention for one query per sequence over its cached keys and values.
struct Attn {
  const float* q;        // [B, Hq, D], RoPE applied
  const void* k;         // storage (float or Half), see pos_stride / head_stride
  const void* v;
  const int32_t* table;  // [B, S]: slot of position j of sequence b; null: slot j is position j
  const int32_t* lens;   // [B]: keys of sequence b (its query sits at position lens[b] - 1)
  float* out;            // [B, Hq, D]
  int hq, hkv, d, s;
  int64_t pos_stride, head_stride;  // floats between slots, and between heads of a slot
  float scale, softcap;
  int window;            // 0: none; else the query sees its last `window` positions

  template <class T>
  const T* at(const void* base, int b, int j, int kvh) const {
    const int64_t slot = table != nullptr ? table[size_t(b) * s + j] : j;
    return static_cast<const T*>(base) + slot * pos_stride + kvh * head_stride;
  }
};

// What one (sequence, head) job reads: its query, the first visible position and how many.
struct Job {
  int b, kvh, start, n;
  const float* q;
  float* o;
  Job(const Attn& a, int job) : b(job / a.hq) {
    const int h = job % a.hq;
    kvh = h / (a.hq / a.hkv);
    const int len = a.lens[b];
    start = a.window > 0 ? std::max(0, len - a.window) : 0;
    n = len - start;
    q = a.q + (size_t(b) * a.hq + h) * a.d;
    o = a.out + (size_t(b) * a.hq + h) * a.d;
  }
  // Whether the query sees no position (its output is then zero).
  bool sees_nothing(const Attn& a) const {
    if (n <= 0) std::fill(o, o + a.d, 0.f);
    return n <= 0;
  }
};

inline float capped(const Attn& a, float x) { return a.softcap > 0.f ? a.softcap * std::tanh(x / a.softcap) : x; }

// One stored value as float32.
inline float widen(float x) { return x; }
inline float widen(Half x) { return kernels::half_to_float(x); }
inline float widen(Q8 x) { return float(x); }
// One stored value whose block's scale is `rs` (Q8's; the other types have none).
template <class T>
inline float value_of(T x, float rs) {
  if constexpr (std::is_same_v<T, Q8>) return widen(x) * rs;
  return widen(x);
}

#if defined(__x86_64__)
// exp for x <= 0 (scores minus their max), with kernels.h's constants.
using kernels::kExpFloor, kernels::kExpPoly, kernels::kLn2Hi, kernels::kLn2Lo, kernels::kLog2e;
__attribute__((target("avx2,fma"))) inline __m256 exp_avx2(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(kExpFloor));
  __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[i]));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}

// 8 stored values as float32.
__attribute__((target("avx2,f16c"))) inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
__attribute__((target("avx2,f16c"))) inline __m256 load8(const Half* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
__attribute__((target("avx2,f16c"))) inline __m256 load8(const Q8* p) {
  return _mm256_cvtepi32_ps(_mm256_cvtepi8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(p))));
}
// 8 stored values whose block's scale is `rs` (Q8's; the other types have none).
template <class T>
__attribute__((target("avx2,f16c"))) inline __m256 load8s(const T* p, float rs) {
  if constexpr (std::is_same_v<T, Q8>) return _mm256_mul_ps(load8(p), _mm256_set1_ps(rs));
  return load8(p);
}

template <class T>
__attribute__((target("avx2,fma,f16c"))) inline float dot_avx2(const float* a, const T* b, int d) {
  __m256 acc = _mm256_setzero_ps();
  int i = 0;
  for (; i + 8 <= d; i += 8) acc = _mm256_fmadd_ps(_mm256_loadu_ps(a + i), load8s(b + i, block_scale(b, d, i)), acc);
  float r = hsum(acc);
  for (; i < d; ++i) r += a[i] * value_of(b[i], block_scale(b, d, i));
  return r;
}

// Soft-caps a job's n scores in place; returns their max.
inline float cap_and_max(const Attn& a, float* sc, int n) {
  float mx = -INFINITY;
  for (int j = 0; j < n; ++j) {
    sc[j] = capped(a, sc[j]);
    mx = std::max(mx, sc[j]);
  }
  return mx;
}

// sc[j] = exp(sc[j] - mx) for the n scores; returns their sum.
__attribute__((target("avx2,fma"))) inline float exp_and_sum(float* sc, int n, float mx) {
  __m256 vsum = _mm256_setzero_ps();
  const __m256 vmax = _mm256_set1_ps(mx);
  int j = 0;
  for (; j + 8 <= n; j += 8) {
    __m256 e = exp_avx2(_mm256_sub_ps(_mm256_loadu_ps(sc + j), vmax));
    _mm256_storeu_ps(sc + j, e);
    vsum = _mm256_add_ps(vsum, e);
  }
  float sum = hsum(vsum);
  for (; j < n; ++j) {
    sc[j] = std::exp(sc[j] - mx);
    sum += sc[j];
  }
  return sum;
}

template <class T>
__attribute__((target("avx2,fma,f16c"))) void attn_jobs_avx2(const Attn& a, int j0, int j1) {
  thread_local std::vector<float> sc;
  for (int job = j0; job < j1; ++job) {
    const Job t(a, job);
    if (t.sees_nothing(a)) continue;
    sc.resize(t.n);
    for (int j = 0; j < t.n; ++j) {
      const T* kr = a.at<T>(a.k, t.b, t.start + j, t.kvh);
      sc[j] = dot_avx2(t.q, kr, a.d) * a.scale;
    }
    const auto vrow = [&](int u) { return a.at<T>(a.v, t.b, t.start + u, t.kvh); };
    const float sum = exp_and_sum(sc.data(), t.n, cap_and_max(a, sc.data(), t.n));
    const float inv = 1.f / sum;
    int i = 0;
    for (; i + 8 <= a.d; i += 8) {
      __m256 acc = _mm256_setzero_ps();
      for (int u = 0; u < t.n; ++u) {
        acc = _mm256_fmadd_ps(_mm256_set1_ps(sc[u]), load8s(vrow(u) + i, block_scale(vrow(u), a.d, i)), acc);
      }
      _mm256_storeu_ps(t.o + i, _mm256_mul_ps(acc, _mm256_set1_ps(inv)));
    }
    for (; i < a.d; ++i) {
      float acc = 0.f;
      for (int u = 0; u < t.n; ++u) acc += sc[u] * value_of(vrow(u)[i], block_scale(vrow(u), a.d, i));
      t.o[i] = acc * inv;
    }
  }
}

#define AVX512_ATTN __attribute__((target("avx512f,avx512bw,avx512vl,fma")))
// GCC 12 reports the undefined pass-through operand inside its own AVX-512 shuffle and
// extract intrinsics as "may be used uninitialized" once they are inlined (a false positive).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"

// The lane sums of four vectors, [sum a, sum b, sum c, sum d]: one transposing tree instead of
// four separate reductions.
AVX512_ATTN inline __m128 hsum4(__m512 a, __m512 b, __m512 c, __m512 d) {
  // per 128-bit lane: [a0 + a2, a1 + a3, b0 + b2, b1 + b3], and the same for c, d
  const __m512 ab = _mm512_add_ps(_mm512_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m512 cd = _mm512_add_ps(_mm512_shuffle_ps(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm512_shuffle_ps(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
  // per 128-bit lane: [a, b, c, d] summed over that lane's four values
  __m512 s = _mm512_add_ps(_mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                           _mm512_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
  // over the four 128-bit lanes
  s = _mm512_add_ps(s, _mm512_shuffle_f32x4(s, s, _MM_SHUFFLE(1, 0, 3, 2)));
  s = _mm512_add_ps(s, _mm512_shuffle_f32x4(s, s, _MM_SHUFFLE(2, 3, 0, 1)));
  return _mm512_castps512_ps128(s);
}

// 16 stored values as float32.
AVX512_ATTN inline __m512 load16(const float* p) { return _mm512_loadu_ps(p); }
AVX512_ATTN inline __m512 load16(const Half* p) {
  return _mm512_cvtph_ps(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
AVX512_ATTN inline __m512 load16(const Q8* p) {
  return _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))));
}
// 16 stored values whose block's scale is `rs` (Q8's; the other types have none). A block
// holds whole vectors of 16.
template <class T>
AVX512_ATTN inline __m512 load16s(const T* p, __m512 rs) {
  if constexpr (std::is_same_v<T, Q8>) return _mm512_mul_ps(load16(p), rs);
  return load16(p);
}

// A query's products with one key row `kr`, C vectors of 16 features summed lane by lane (the
// lanes still to be added up).
template <int C, class T>
AVX512_ATTN inline __m512 score_lanes(const __m512 (&q)[C], const T* kr, int d) {
  __m512 acc = _mm512_mul_ps(q[0], load16s(kr, _mm512_set1_ps(block_scale(kr, d, 0))));
  for (int c = 1; c < C; ++c) {
    acc = _mm512_fmadd_ps(q[c], load16s(kr + 16 * c, _mm512_set1_ps(block_scale(kr, d, 16 * c))), acc);
  }
  return acc;
}

// Head dimension 16 * C, one job per (sequence, KV head). The query heads that share a KV head
// (grouped-query attention) read the same keys and values: a job reads a tile of keys once for
// all of them (each key row loaded once for up to three heads: score_group), and each value
// row once for up to kValueHeads of them. Per query head: scores four positions at a time (one
// reduction tree for four dot products), then the softmax
// weights, then the values with every feature's accumulator in a register, one pass over the
// positions. (With a job per query head, each head read the keys and values again, and its value
// pass was C chains of multiply-adds, run at their latency; heads side by side give the CPU
// independent chains.) A head's operations and their order do not depend on its neighbours, so
// a sequence's results are the same alone or in a batch.

// Positions scored per tile (a multiple of 4, the scoring step): 64 keys of up to 128 features
// stay in L1 while every query head of the group scores them.
constexpr int kScoreTile = 64;

// P query heads' scores for positions j0..j1 of their job (j0 a multiple of 4; positions past
// the last multiple of 4 are in the job's last tile only, and are scored one by one). Each key
// row's slot is looked up and its vectors loaded once for all P heads (P * C query vectors,
// 4 * P sums and C key vectors in registers); a head's products and sums do not depend on P,
// so its scores are the same bits scored alone.
template <int C, int P, class T>
AVX512_ATTN inline void score_heads(const Attn& a, const Job* heads, int j0, int j1, float* sc, int n) {
  const Job& t = heads[0];
  __m512 q[P][C];
  for (int h = 0; h < P; ++h) {
    for (int c = 0; c < C; ++c) q[h][c] = _mm512_loadu_ps(heads[h].q + 16 * c);
  }
  const auto key = [&](int j) { return a.at<T>(a.k, t.b, t.start + j, t.kvh); };
  int j = j0;
  for (; j + 4 <= j1; j += 4) {
    __m512 acc[P][4];
    for (int u = 0; u < 4; ++u) {
      const T* kr = key(j + u);
      for (int c = 0; c < C; ++c) {
        const __m512 k = load16s(kr + 16 * c, _mm512_set1_ps(block_scale(kr, a.d, 16 * c)));
        for (int h = 0; h < P; ++h) {
          acc[h][u] = c == 0 ? _mm512_mul_ps(q[h][0], k) : _mm512_fmadd_ps(q[h][c], k, acc[h][u]);
        }
      }
    }
    for (int h = 0; h < P; ++h) {
      const __m128 dots = hsum4(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);
      _mm_storeu_ps(&sc[size_t(h) * n + j], _mm_mul_ps(dots, _mm_set1_ps(a.scale)));
    }
  }
  for (; j < j1; ++j) {
    for (int h = 0; h < P; ++h) sc[size_t(h) * n + j] = _mm512_reduce_add_ps(score_lanes<C, T>(q[h], key(j), a.d)) * a.scale;
  }
}

// A group's `count` query heads scored for positions j0..j1: three at a time where their
// vectors fit the registers (head dimension up to 64), then two, then one.
template <int C, class T>
AVX512_ATTN inline void score_group(const Attn& a, const Job* heads, int count, int j0, int j1, float* sc, int n) {
  int h = 0;
  if constexpr (C <= 4) {
    for (; h + 3 <= count; h += 3) score_heads<C, 3, T>(a, heads + h, j0, j1, sc + size_t(h) * n, n);
    for (; h + 2 <= count; h += 2) score_heads<C, 2, T>(a, heads + h, j0, j1, sc + size_t(h) * n, n);
  }
  for (; h < count; ++h) score_heads<C, 1, T>(a, heads + h, j0, j1, sc + size_t(h) * n, n);
}

// As many query heads per value pass as keep their accumulators in 16 registers.
template <int C>
constexpr int kValueHeads = C <= 4 ? 4 : C <= 8 ? 2 : 1;

// The value pass of H query heads of one group: head h's softmax weights are w[h * n ..], its
// sum's inverse inv[h], its output heads[h].o (heads share their sequence, KV head and
// positions).
template <int C, int H, class T>
AVX512_ATTN inline void value_heads(const Attn& a, const Job* heads, const float* w, const float* inv) {
  const Job& t = heads[0];
  const int n = t.n;
  const float* wh[H];
  __m512 acc[H][C];
  for (int h = 0; h < H; ++h) {
    wh[h] = w + size_t(h) * n;
    for (int c = 0; c < C; ++c) acc[h][c] = _mm512_setzero_ps();
  }
  for (int u = 0; u < n; ++u) {
    const T* vr = a.at<T>(a.v, t.b, t.start + u, t.kvh);
    __m512 v[C];
    for (int c = 0; c < C; ++c) v[c] = load16s(vr + 16 * c, _mm512_set1_ps(block_scale(vr, a.d, 16 * c)));
    for (int h = 0; h < H; ++h) {
      const __m512 wu = _mm512_set1_ps(wh[h][u]);
      for (int c = 0; c < C; ++c) acc[h][c] = _mm512_fmadd_ps(wu, v[c], acc[h][c]);
    }
  }
  for (int h = 0; h < H; ++h) {
    const __m512 iv = _mm512_set1_ps(inv[h]);
    for (int c = 0; c < C; ++c) _mm512_storeu_ps(heads[h].o + 16 * c, _mm512_mul_ps(acc[h][c], iv));
  }
}

// `count` query heads' value passes, H at a time, the rest fewer at a time.
template <int C, int H, class T>
AVX512_ATTN inline void value_passes(const Attn& a, const Job* heads, const float* w, const float* inv, int count) {
  if constexpr (H > 0) {
    int h = 0;
    for (; h + H <= count; h += H) value_heads<C, H, T>(a, heads + h, w + size_t(h) * heads[0].n, inv + h);
    if (h < count) value_passes<C, H - 1, T>(a, heads + h, w + size_t(h) * heads[0].n, inv + h, count - h);
  }
}

template <int C, class T>
AVX512_ATTN void attn_groups_avx512_d(const Attn& a, int j0, int j1) {
  const int per = a.hq / a.hkv;
  thread_local std::vector<Job> heads;
  thread_local std::vector<float> sc, inv;
  for (int job = j0; job < j1; ++job) {
    // the group's query heads: one sequence, one KV head, the same positions
    const int head0 = (job / a.hkv) * a.hq + (job % a.hkv) * per;
    heads.clear();
    for (int h = 0; h < per; ++h) heads.emplace_back(a, head0 + h);
    if (heads[0].sees_nothing(a)) {
      for (int h = 1; h < per; ++h) heads[h].sees_nothing(a);
      continue;
    }
    const int n = heads[0].n;
    sc.resize(size_t(per) * n);
    inv.resize(per);
    for (int t0 = 0; t0 < n; t0 += kScoreTile) {
      score_group<C, T>(a, heads.data(), per, t0, std::min(n, t0 + kScoreTile), sc.data(), n);
    }
    for (int h = 0; h < per; ++h) {
      float* s = sc.data() + size_t(h) * n;
      inv[h] = 1.f / exp_and_sum(s, n, cap_and_max(a, s, n));
    }
    value_passes<C, kValueHeads<C>, T>(a, heads.data(), sc.data(), inv.data(), per);
  }
}

using AttnJobs = void (*)(const Attn&, int, int);

// The AVX-512 kernel (jobs per KV head) for head dimensions 16 * C up to 128, and 256; nullptr
// for others.
template <class T>
AttnJobs attn_groups_avx512(int d) {
  switch (d % 16 == 0 ? d / 16 : 0) {
    case 1: return attn_groups_avx512_d<1, T>;
    case 2: return attn_groups_avx512_d<2, T>;
    case 3: return attn_groups_avx512_d<3, T>;
    case 4: return attn_groups_avx512_d<4, T>;
    case 5: return attn_groups_avx512_d<5, T>;
    case 6: return attn_groups_avx512_d<6, T>;
    case 7: return attn_groups_avx512_d<7, T>;
    case 8: return attn_groups_avx512_d<8, T>;
    case 16: return attn_groups_avx512_d<16, T>;
    default: return nullptr;
  }
}
#pragma GCC diagnostic pop
#endif

template <class T>
void attn_jobs_scalar(const Attn& a, int j0, int j1) {
  thread_local std::vector<float> sc;
  for (int job = j0; job < j1; ++job) {
    const Job t(a, job);
    std::fill(t.o, t.o + a.d, 0.f);
    if (t.n <= 0) continue;
    sc.resize(t.n);
    float mx = -INFINITY;
    for (int j = 0; j < t.n; ++j) {
      const T* kr = a.at<T>(a.k, t.b, t.start + j, t.kvh);
      float x = 0.f;
      for (int i = 0; i < a.d; ++i) x += t.q[i] * value_of(kr[i], block_scale(kr, a.d, i));
      sc[j] = capped(a, x * a.scale);
      mx = std::max(mx, sc[j]);
    }
    float sum = 0.f;
    for (int j = 0; j < t.n; ++j) sum += (sc[j] = std::exp(sc[j] - mx));
    for (int u = 0; u < t.n; ++u) {
      const T* vr = a.at<T>(a.v, t.b, t.start + u, t.kvh);
      for (int i = 0; i < a.d; ++i) t.o[i] += sc[u] * value_of(vr[i], block_scale(vr, a.d, i));
    }
    for (int i = 0; i < a.d; ++i) t.o[i] /= sum;
  }
}

// Rotary embedding as MLX's fast::rope computes it: theta_i = (position * scale) * inv_freq[i]
// over the first `dims` features, pairs (i, i + dims/2), or (2i, 2i + 1) when traditional;
// the rotated features first multiplied by `input_scale`.
struct Rope {
  const float* inv_freq;  // [dims / 2]
  int dims;
  bool traditional;
  float scale, input_scale;

  // cos and sin of each pair's angle at `position`: cs[i] and cs[dims / 2 + i].
  void angles(int position, std::vector<float>& cs) const {
    const int half = dims / 2;
    cs.resize(size_t(2) * half);
    const float p = float(position) * scale;
    for (int i = 0; i < half; ++i) {
      const float theta = p * inv_freq[i];
      cs[i] = std::cos(theta);
      cs[half + i] = std::sin(theta);
    }
  }

  // Rotates `heads` heads of `d` features from src into dst (which may be src) by `angles`.
  void apply(const float* src, float* dst, int heads, int d, const std::vector<float>& cs) const {
    const int half = dims / 2;
    for (int h = 0; h < heads; ++h) {
      const float* x = src + size_t(h) * d;
      float* y = dst + size_t(h) * d;
      for (int i = 0; i < half; ++i) {
        const int i1 = traditional ? 2 * i : i, i2 = traditional ? 2 * i + 1 : i + half;
        const float a = x[i1] * input_scale, b = x[i2] * input_scale;
        y[i1] = a * cs[i] - b * cs[half + i];
        y[i2] = a * cs[half + i] + b * cs[i];
      }
      if (y != x) std::copy(x + dims, x + d, y + dims);
    }
  }
};

// The storage's element type.
enum class Elem { F32, F16, Q8 };

Elem elem_of(const mx::array& a) {
  return a.dtype() == mx::float16 ? Elem::F16 : a.dtype() == mx::int8 ? Elem::Q8 : Elem::F32;
}

// A storage array MLX left as a broadcast or a view, copied row-major before the write.
struct StorageCopy {
  const void* src;
  mx::Shape shape;
  mx::Strides strides;
  void* dst;
  Elem elem;
  template <class T>
  void copy() const {
    kernels::gather_contiguous(static_cast<const T*>(src), shape, strides, static_cast<T*>(dst));
  }
  void run() const {
    switch (elem) {
      case Elem::F16: return copy<Half>();
      case Elem::Q8: return copy<Q8>();
      case Elem::F32: return copy<float>();
    }
  }
};

// Writes d features into a cache row: as they are, rounded to half (saturating), or as a Q8
// row (ops::kv_quantize_rows spells the same arithmetic in MLX ops, for the cache's other
// writes): per block, infinities clamped to the largest finite float, scale = the largest
// magnitude / 127, each value divided by it, rounded to nearest even and clamped to +-127 (a
// scale that rounded down, or a subnormal one, could give 128); an all-zero block keeps
// scale 0.
inline void store_row(const float* src, float* dst, int d) { std::memcpy(dst, src, sizeof(float) * d); }
inline void store_row(const float* src, Half* dst, int d) {
  for (int i = 0; i < d; ++i) dst[i] = kernels::float_to_half(src[i]);
}
inline void store_row(const float* src, Q8* dst, int d) {
  static constexpr float kMax = std::numeric_limits<float>::max();
  const auto finite = [](float x) { return std::min(std::max(x, -kMax), kMax); };
  for (int b0 = 0; b0 < d; b0 += kQ8Block) {
    const int b1 = std::min(d, b0 + kQ8Block);
    float amax = 0.f;
    for (int i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(finite(src[i])));
    const float scale = amax / 127.f;
    const float div = scale > 0.f ? scale : 1.f;
    for (int i = b0; i < b1; ++i) {
      // NaN compares false both ways and is stored as 0
      const float r = std::nearbyint(finite(src[i]) / div);
      dst[i] = r >= -127.f && r <= 127.f ? Q8(r) : r > 127.f ? Q8(127) : r < -127.f ? Q8(-127) : Q8(0);
    }
    std::memcpy(dst + d + (b0 / kQ8Block) * sizeof scale, &scale, sizeof scale);
  }
}

// Whether keys and values are storage the prompt kernel reads: float32, or float16, both alike.
bool kernel_storage(const mx::array& keys, const mx::array& values) {
  return keys.dtype() == values.dtype() && (keys.dtype() == mx::float32 || keys.dtype() == mx::float16);
}

// Whether keys and values are storage the decode kernel reads: those, or Q8 rows.
bool decode_storage(const mx::array& keys, const mx::array& values) {
  return kernel_storage(keys, values) || (keys.dtype() == mx::int8 && values.dtype() == mx::int8);
}

// Attention for r query rows (a.q [r, Hq, D], a.lens set) over storage of element type T, on
// the kernel pool.
template <class T>
void attend(const Attn& a, int r, bool scalar) {
#if defined(__x86_64__)
  // AVX-512: a job per (query row, KV head), each a few query heads' work, so chunks of two;
  // of one each when there are few (one sequence of SmolLM2 has three jobs: in chunks of two
  // they all ran on one thread while the other waited)
  if (const AttnJobs groups = kernels::have_avx512() && !scalar ? attn_groups_avx512<T>(a.d) : nullptr) {
    const int jobs = r * a.hkv;
    kernels::parallel_for(jobs, [&a, groups](int j0, int j1) { groups(a, j0, j1); }, jobs < 8 ? 1 : 2);
    return;
  }
#endif
  run_kernel<Attn>(a, r * a.hq, AVX2_KERNEL(attn_jobs_avx2<T>), attn_jobs_scalar<T>, scalar);
}

// The new rows' RoPE and cache writes, then attention, for storage of element type T. The rows
// go to the pool in pairs (each writes its own slots and rotated query; a batch-8 step had
// spent 2.6% of its stream thread here, serial, while the worker waited).
template <class T>
void decode_step(Attn a, const Rope& rope, int r, const float* q, const float* k, const float* v, const int32_t* pos,
                 const int32_t* write, bool scalar) {
  thread_local std::vector<float> rotated;
  thread_local std::vector<int32_t> lens;
  rotated.resize(size_t(r) * a.hq * a.d);
  lens.resize(r);
  T* kst = static_cast<T*>(const_cast<void*>(a.k));
  T* vst = static_cast<T*>(const_cast<void*>(a.v));
  float* rot = rotated.data();
  int32_t* len = lens.data();
  kernels::parallel_for(
      r,
      [&](int r0, int r1) {
        thread_local std::vector<float> cs, krow;
        krow.resize(a.d);
        for (int row = r0; row < r1; ++row) {
          rope.angles(pos[row], cs);
          rope.apply(q + size_t(row) * a.hq * a.d, rot + size_t(row) * a.hq * a.d, a.hq, a.d, cs);
          const int64_t slot = write != nullptr ? write[row] : pos[row];
          for (int h = 0; h < a.hkv; ++h) {
            rope.apply(k + (size_t(row) * a.hkv + h) * a.d, krow.data(), 1, a.d, cs);
            store_row(krow.data(), kst + slot * a.pos_stride + h * a.head_stride, a.d);
            store_row(v + (size_t(row) * a.hkv + h) * a.d, vst + slot * a.pos_stride + h * a.head_stride, a.d);
          }
          len[row] = pos[row] + 1;
        }
      },
      2);
  a.q = rotated.data();
  a.lens = lens.data();
  attend<T>(a, r, scalar);
}

// inputs: q [R, Hq*D], k and v [R, Hkv*D] (any leading shape), keys and values (storage,
// float32 or float16), positions int32 [R], inv_freq float32 [dims / 2]; paged storage adds
// write slots int32 [R] and the table int32 [R, S]. outputs: attention [R, Hq*D] (q's shape),
// keys, values.
class DecodeAttention : public mx::Primitive {
 public:
  DecodeAttention(mx::Stream s, int head_dim, int rope_dims, bool traditional, float rope_scale, float input_scale,
                  float scale, float softcap, int window, bool scalar)
      : mx::Primitive(s),
        d_(head_dim),
        rope_dims_(rope_dims),
        traditional_(traditional),
        rope_scale_(rope_scale),
        input_scale_(input_scale),
        scale_(scale),
        softcap_(softcap),
        window_(window),
        scalar_(scalar) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    const auto &q = in[0], &k = in[1], &v = in[2], &positions = in[5], &inv_freq = in[6];
    const bool paged = in.size() == 9;
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& a : in) enc.set_input_array(a);
    out[0].set_data(mx::allocator::malloc(out[0].nbytes()));
    // The storage: shared, and written in place, when it is a plain buffer; a copy otherwise
    // (a broadcast or a view), made on the stream before the write.
    const Elem elem = elem_of(in[3]);
    std::vector<StorageCopy> copies;
    for (int i : {1, 2}) {
      const auto& src = in[2 + i];
      if (src.flags().row_contiguous && src.data_size() == src.size()) {
        out[i].copy_shared_buffer(src);
      } else {
        out[i].set_data(mx::allocator::malloc(out[i].nbytes()));
        copies.push_back({src.data<void>(), src.shape(), src.strides(), out[i].data<void>(), elem});
      }
    }
    for (auto& a : out) enc.set_output_array(a);
    const int r = int(positions.size());
    const int hq = int(q.shape(-1)) / d_, hkv = int(k.shape(-1)) / d_;
    const auto& keys = out[1];
    // elements per stored row: D, or for Q8 D and the blocks' scales
    const int64_t w = keys.shape(-1);
    Attn a{nullptr, keys.data<void>(), out[2].data<void>(),
           paged ? in[8].data<int32_t>() : nullptr, nullptr, out[0].data<float>(), hq, hkv, d_,
           paged ? int(in[8].shape(1)) : 0,
           // paged [slots, Hkv, W]; one sequence [1, Hkv, capacity, W]
           paged ? int64_t(hkv) * w : w, paged ? w : int64_t(keys.shape(2)) * w,
           scale_, softcap_, window_};
    const Rope rope{inv_freq.data<float>(), rope_dims_, traditional_, rope_scale_, input_scale_};
    // q, k and v as rows; views (Phi-3's slices of one qkv matmul) are gathered.
    enc.dispatch([a, rope, r, copies = std::move(copies), qr = Strided(q), kr = Strided(k), vr = Strided(v),
                  pos = positions.data<int32_t>(), write = paged ? in[7].data<int32_t>() : nullptr, scalar = scalar_,
                  elem]() mutable {
      for (const auto& c : copies) c.run();
      thread_local std::vector<float> qbuf, kbuf, vbuf;
      const float* q = qr.rows(qbuf);
      const float* k = kr.rows(kbuf);
      const float* v = vr.rows(vbuf);
      switch (elem) {
        case Elem::F16: return decode_step<Half>(a, rope, r, q, k, v, pos, write, scalar);
        case Elem::Q8: return decode_step<Q8>(a, rope, r, q, k, v, pos, write, scalar);
        case Elem::F32: return decode_step<float>(a, rope, r, q, k, v, pos, write, scalar);
      }
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("cortex decode attention runs on the CPU only");
  }

  const char* name() const override { return "CortexDecodeAttention"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const DecodeAttention&>(other);
    return d_ == o.d_ && rope_dims_ == o.rope_dims_ && traditional_ == o.traditional_ &&
           rope_scale_ == o.rope_scale_ && input_scale_ == o.input_scale_ && scale_ == o.scale_ &&
           softcap_ == o.softcap_ && window_ == o.window_ && scalar_ == o.scalar_;
  }

 private:
  int d_, rope_dims_;
  bool traditional_;
  float rope_scale_, input_scale_, scale_, softcap_;
  int window_;
  bool scalar_;
};

// A prompt's attention: L query rows, RoPE applied, at positions q_start.. of one sequence,
// each over the keys at positions 0..its own (its last `window` when set), as decode attention
// computes one row (the same jobs and kernels, a row per query). MLX's CPU path builds it from
// two BLAS matmuls around a mask and a softmax whose exp is scalar off Apple silicon (with
// OpenBLAS's threads spinning meanwhile): a fifth of a 512-token prompt's time.
// inputs: q [L, Hq, D] (a view is gathered), keys and values [1, Hkv, S, D] (float32 or
// float16, any strides; rows with a strided last axis are gathered); output [L, Hq * D].
class PrefillAttention : public mx::Primitive {
 public:
  PrefillAttention(mx::Stream s, int head_dim, int q_start, float scale, float softcap, int window, bool scalar)
      : mx::Primitive(s),
        d_(head_dim),
        q_start_(q_start),
        scale_(scale),
        softcap_(softcap),
        window_(window),
        scalar_(scalar) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& a : in) enc.set_input_array(a);
    out[0].set_data(mx::allocator::malloc(out[0].nbytes()));
    enc.set_output_array(out[0]);
    const auto &q = in[0], &k = in[1], &v = in[2];
    const int r = int(q.shape(0)), hq = int(q.shape(1)), hkv = int(k.shape(1)), s = int(k.shape(2));
    const Elem elem = elem_of(k);
    const bool half = elem == Elem::F16;
    // keys and values as the kernel indexes them: position and head strides, unit last axis
    const bool direct = k.strides() == v.strides() && k.strides(3) == 1;
    StorageCopy ck{k.data<void>(), k.shape(), k.strides(), nullptr, elem};
    StorageCopy cv{v.data<void>(), v.shape(), v.strides(), nullptr, elem};
    Attn a{nullptr, k.data<void>(), v.data<void>(), nullptr, nullptr, out[0].data<float>(), hq, hkv, d_, s,
           direct ? int64_t(k.strides(2)) : int64_t(d_), direct ? int64_t(k.strides(1)) : int64_t(s) * d_,
           scale_, softcap_, window_};
    enc.dispatch([a, r, direct, ck, cv, qr = Strided(q), q_start = q_start_, scalar = scalar_, half]() mutable {
      thread_local std::vector<float> qbuf;
      thread_local std::vector<int32_t> lens;
      thread_local std::vector<uint8_t> kbuf, vbuf;
      a.q = qr.rows(qbuf);
      lens.resize(r);
      for (int i = 0; i < r; ++i) lens[i] = q_start + i + 1;
      a.lens = lens.data();
      if (!direct) {
        const size_t bytes = size_t(a.hkv) * a.s * a.d * (half ? 2 : 4);
        kbuf.resize(bytes);
        vbuf.resize(bytes);
        ck.dst = kbuf.data();
        cv.dst = vbuf.data();
        ck.run();
        cv.run();
        a.k = kbuf.data();
        a.v = vbuf.data();
      }
      if (half) {
        attend<Half>(a, r, scalar);
      } else {
        attend<float>(a, r, scalar);
      }
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("cortex prefill attention runs on the CPU only");
  }

  const char* name() const override { return "CortexPrefillAttention"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const PrefillAttention&>(other);
    return d_ == o.d_ && q_start_ == o.q_start_ && scale_ == o.scale_ && softcap_ == o.softcap_ &&
           window_ == o.window_ && scalar_ == o.scalar_;
  }

 private:
  int d_, q_start_;
  float scale_, softcap_;
  int window_;
  bool scalar_;
};

}  // namespace

ArrayPtr prefill_attention(const Array& q, const Array& keys, const Array& values, int32_t q_start, float scale,
                           float softcap, int32_t window) {
  const auto &qi = q.inner, &ks = keys.inner, &vs = values.inner;
  auto fail = [](const char* what) { throw std::invalid_argument(std::string("prefill_attention: ") + what); };
  if (qi.ndim() != 4 || qi.shape(0) != 1 || ks.ndim() != 4 || ks.shape(0) != 1 || ks.shape() != vs.shape() ||
      qi.shape(3) != ks.shape(3) || qi.shape(3) <= 0) {
    fail("q [1, Hq, L, D] and keys, values [1, Hkv, S, D] expected");
  }
  const int hq = qi.shape(1), hkv = ks.shape(1), l = qi.shape(2), s = ks.shape(2), d = qi.shape(3);
  if (hkv <= 0 || hq % hkv != 0) fail("query heads must be a multiple of KV heads");
  if (q_start < 0 || int64_t(q_start) + l > s) fail("the queries' positions must be among the keys'");
  if (qi.dtype() != mx::float32) fail("float32 queries expected");
  if (!kernel_storage(ks, vs)) fail("float32 or float16 keys and values expected, alike");
  auto st = mx::default_stream(mx::Device::cpu);
  // [1, Hq, L, D] -> [L, Hq, D]: the kernel's rows (a view, gathered when it runs)
  auto rows = mx::reshape(mx::transpose(qi, {0, 2, 1, 3}, st), {l, hq, d}, st);
  return std::make_unique<Array>(mx::array({1, l, hq * d}, mx::float32,
                                           std::make_shared<PrefillAttention>(st, d, q_start, scale, softcap, window,
                                                                              kernels::scalar_now()),
                                           {rows, ks, vs}));
}

std::unique_ptr<ArrayList> decode_attention(const Array& q, const Array& k, const Array& v, const Array& keys,
                                            const Array& values, const Array& positions, const Array& inv_freq,
                                            const Array* write, const Array* table, int32_t head_dim,
                                            int32_t rope_dims, bool traditional, float rope_scale,
                                            float input_scale, float scale, float softcap, int32_t window) {
  const auto &qi = q.inner, &ki = k.inner, &vi = v.inner, &ks = keys.inner, &vs = values.inner;
  const bool paged = table != nullptr;
  auto fail = [](const char* what) { throw std::invalid_argument(std::string("decode_attention: ") + what); };
  if (head_dim <= 0 || qi.ndim() < 1 || qi.shape(-1) % head_dim != 0 || ki.shape() != vi.shape() ||
      ki.ndim() < 1 || ki.shape(-1) % head_dim != 0 || ki.shape(-1) == 0) {
    fail("q [.., Hq * D] and k, v [.., Hkv * D] expected");
  }
  const int64_t rows = int64_t(qi.size()) / qi.shape(-1), hq = qi.shape(-1) / head_dim, hkv = ki.shape(-1) / head_dim;
  if (int64_t(ki.size()) / ki.shape(-1) != rows || int64_t(positions.inner.size()) != rows) {
    fail("q, k, v and positions must hold the same number of rows");
  }
  if (hq % hkv != 0) fail("query heads must be a multiple of KV heads");
  if (ks.shape() != vs.shape()) fail("keys and values must have one shape");
  if (!decode_storage(ks, vs)) fail("a float32, float16 or int8 cache expected, keys and values alike");
  // a stored row: D values, and a Q8 row's scale
  const int width = ks.dtype() == mx::int8 ? row_width<Q8>(head_dim) : head_dim;
  if (paged) {
    if (ks.ndim() != 3 || ks.shape(1) != hkv || ks.shape(2) != width) fail("a paged pool [slots, Hkv, W] expected");
    if (write == nullptr || int64_t(write->inner.size()) != rows || table->inner.ndim() != 2 ||
        table->inner.shape(0) != rows) {
      fail("write slots [R] and a table [R, S] expected");
    }
  } else if (ks.ndim() != 4 || ks.shape(0) != 1 || ks.shape(1) != hkv || ks.shape(3) != width || rows != 1) {
    fail("one sequence's cache [1, Hkv, capacity, W] and one row expected");
  }
  if (rope_dims < 0 || rope_dims % 2 != 0 || rope_dims > head_dim || int64_t(inv_freq.inner.size()) != rope_dims / 2) {
    fail("RoPE over an even number of features, at most head_dim, with dims / 2 frequencies");
  }
  const auto f32 = [](const mx::array& a) { return a.dtype() == mx::float32; };
  if (!f32(qi) || !f32(ki) || !f32(vi)) fail("float32 q, k and v expected");
  auto s = mx::default_stream(mx::Device::cpu);
  auto i32 = [&](const mx::array& a) {
    return kernels::weight_input(a.dtype() == mx::int32 ? a : mx::astype(a, mx::int32, s), s, false);
  };
  std::vector<mx::array> inputs{qi, ki, vi, ks, vs, i32(positions.inner), kernels::weight_input(inv_freq.inner, s, true)};
  if (paged) {
    inputs.push_back(i32(write->inner));
    inputs.push_back(i32(table->inner));
  }
  auto outs = mx::array::make_arrays(
      {qi.shape(), ks.shape(), vs.shape()}, {mx::float32, ks.dtype(), vs.dtype()},
      std::make_shared<DecodeAttention>(s, head_dim, rope_dims, traditional, rope_scale, input_scale, scale, softcap,
                                        window, kernels::scalar_now()),
      std::move(inputs));
  auto list = std::make_unique<ArrayList>();
  for (auto& a : outs) {
    list->items.push_back(std::move(a));
    list->names.emplace_back();
  }
  return list;
}

}  // namespace cortex_mlx
