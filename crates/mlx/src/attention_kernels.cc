// Attention over a KV cache for one query row per job (attention_kernels.h): a job's scores,
// softmax and values, in AVX-512 and AVX2 (a job per KV head, the query heads that share it
// together), 8-lane code per query head (head dimensions not a multiple of 8) and portable
// code. A row's operations and their order do not depend on its
// neighbours, so a sequence's results are the same alone or in a batch.
#include "attention_kernels.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

#include "kernels.h"

namespace cortex_mlx::attn {
namespace {

using kernels::run_kernel;
#if defined(__x86_64__)
using kernels::hsum;
#endif

// The positions row b sees: the first and how many.
inline std::pair<int, int> visible(const Attn& a, int b) {
  const int len = a.lens[b];
  const int start = a.window > 0 ? std::max(0, len - a.window) : 0;
  return {start, len - start};
}

// What one (row, head) job reads: its query, the first visible position and how many; where
// it writes its output, and (a part of a split row) its score max and exp-sum.
struct Job {
  int b, kvh, start, n;
  const float* q;
  float* o;
  float* ms = nullptr;
  Job(const Attn& a, int job) {
    const int row = job / a.hq, h = job % a.hq;
    kvh = h / (a.hq / a.hkv);
    if (a.parts != nullptr) {
      const Part& p = a.parts[row];
      b = p.b;
      start = p.start;
      n = p.n;
      o = p.o + size_t(h) * a.d;
      ms = p.ms + 2 * h;
    } else {
      b = row;
      std::tie(start, n) = visible(a, b);
      o = a.out + (size_t(b) * a.hq + h) * a.d;
    }
    q = a.q + (size_t(b) * a.hq + h) * a.d;
  }
  // A part's softmax max and sum, for attend to combine the parts.
  void keep(float mx, float sum) const {
    if (ms != nullptr) {
      ms[0] = mx;
      ms[1] = sum;
    }
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
    __m256 e = kernels::exp_nonpositive8(_mm256_sub_ps(_mm256_loadu_ps(sc + j), vmax));
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
    const float mx = cap_and_max(a, sc.data(), t.n);
    const float sum = exp_and_sum(sc.data(), t.n, mx);
    t.keep(mx, sum);
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

// The 8-lane kernel with jobs per (sequence, KV head), as the AVX-512 one below: a group's
// query heads score each key row as it is loaded (three heads at a time, four positions per
// step: twelve independent sums, their queries read from memory, where sixteen registers
// would not hold them), and share each value row's loads in the value pass. The job-per-head
// kernel above ran every score and value feature as one chain of multiply-adds at their
// latency, and read the keys and values once per query head.
#define AVX2_ATTN __attribute__((target("avx2,fma,f16c")))

// The lane sums of four vectors, [sum a, sum b, sum c, sum d].
AVX2_ATTN inline __m128 hsum4_256(__m256 a, __m256 b, __m256 c, __m256 d) {
  const __m256 ab = _mm256_add_ps(_mm256_shuffle_ps(a, b, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm256_shuffle_ps(a, b, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 cd = _mm256_add_ps(_mm256_shuffle_ps(c, d, _MM_SHUFFLE(1, 0, 1, 0)),
                                  _mm256_shuffle_ps(c, d, _MM_SHUFFLE(3, 2, 3, 2)));
  const __m256 s = _mm256_add_ps(_mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(2, 0, 2, 0)),
                                 _mm256_shuffle_ps(ab, cd, _MM_SHUFFLE(3, 1, 3, 1)));
  return _mm_add_ps(_mm256_castps256_ps128(s), _mm256_extractf128_ps(s, 1));
}

// P query heads' scores for positions j0..j1 of their job, head dimension 8 * C (C at run
// time: the queries come from memory). Four positions a step, the rest one by one; a head's
// products and sums do not depend on P.
template <int P, class T>
AVX2_ATTN inline void score_heads8(const Attn& a, const Job* heads, int j0, int j1, float* sc, int n) {
  const Job& t = heads[0];
  const int C = a.d / 8;
  const float* q[P];
  for (int h = 0; h < P; ++h) q[h] = heads[h].q;
  const auto key = [&](int j) { return a.at<T>(a.k, t.b, t.start + j, t.kvh); };
  int j = j0;
  for (; j + 4 <= j1; j += 4) {
    const T* kr[4] = {key(j), key(j + 1), key(j + 2), key(j + 3)};
    __m256 acc[P][4];
    for (int u = 0; u < 4; ++u) {
      const __m256 k = load8s(kr[u], block_scale(kr[u], a.d, 0));
      for (int h = 0; h < P; ++h) acc[h][u] = _mm256_mul_ps(_mm256_loadu_ps(q[h]), k);
    }
    for (int c = 1; c < C; ++c) {
      for (int u = 0; u < 4; ++u) {
        const __m256 k = load8s(kr[u] + 8 * c, block_scale(kr[u], a.d, 8 * c));
        for (int h = 0; h < P; ++h) acc[h][u] = _mm256_fmadd_ps(_mm256_loadu_ps(q[h] + 8 * c), k, acc[h][u]);
      }
    }
    for (int h = 0; h < P; ++h) {
      const __m128 dots = hsum4_256(acc[h][0], acc[h][1], acc[h][2], acc[h][3]);
      _mm_storeu_ps(&sc[size_t(h) * n + j], _mm_mul_ps(dots, _mm_set1_ps(a.scale)));
    }
  }
  for (; j < j1; ++j) {
    const T* kr = key(j);
    for (int h = 0; h < P; ++h) {
      __m256 acc = _mm256_mul_ps(_mm256_loadu_ps(q[h]), load8s(kr, block_scale(kr, a.d, 0)));
      for (int c = 1; c < C; ++c) {
        acc = _mm256_fmadd_ps(_mm256_loadu_ps(q[h] + 8 * c), load8s(kr + 8 * c, block_scale(kr, a.d, 8 * c)), acc);
      }
      sc[size_t(h) * n + j] = hsum(acc) * a.scale;
    }
  }
}

// The value pass of H query heads of one group, V vectors of features at a time (every
// head's accumulators for them in registers): per position, each value vector loaded once
// for the H heads.
template <int H, int V, class T>
AVX2_ATTN inline void value_heads8(const Attn& a, const Job* heads, const float* w, const float* inv) {
  const Job& t = heads[0];
  const int n = t.n;
  for (int c0 = 0; c0 < a.d / 8; c0 += V) {
    __m256 acc[H][V];
    for (int h = 0; h < H; ++h) {
      for (int c = 0; c < V; ++c) acc[h][c] = _mm256_setzero_ps();
    }
    for (int u = 0; u < n; ++u) {
      const T* vr = a.at<T>(a.v, t.b, t.start + u, t.kvh);
      __m256 v[V];
      for (int c = 0; c < V; ++c) v[c] = load8s(vr + 8 * (c0 + c), block_scale(vr, a.d, 8 * (c0 + c)));
      for (int h = 0; h < H; ++h) {
        const __m256 wu = _mm256_broadcast_ss(w + size_t(h) * n + u);
        for (int c = 0; c < V; ++c) acc[h][c] = _mm256_fmadd_ps(wu, v[c], acc[h][c]);
      }
    }
    for (int h = 0; h < H; ++h) {
      const __m256 iv = _mm256_set1_ps(inv[h]);
      for (int c = 0; c < V; ++c) _mm256_storeu_ps(heads[h].o + 8 * (c0 + c), _mm256_mul_ps(acc[h][c], iv));
    }
  }
}

// Positions scored per tile (a multiple of 4, the scoring step): 64 keys of up to 128 features
// stay in L1 while every query head of the group scores them.
constexpr int kScoreTile = 64;

// The job loop of the grouped kernels (AVX2 and AVX-512): a job is one row and KV head, its
// query heads (one sequence, the same positions) scored tile by tile (S::score), softmaxed,
// then their values summed (S::values). S's steps carry the instruction set.
template <class S, class T>
void attn_groups(const Attn& a, int j0, int j1) {
  const int per = a.hq / a.hkv;
  thread_local std::vector<Job> heads;
  thread_local std::vector<float> sc, inv;
  for (int job = j0; job < j1; ++job) {
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
      S::template score<T>(a, heads.data(), per, t0, std::min(n, t0 + kScoreTile), sc.data(), n);
    }
    for (int h = 0; h < per; ++h) {
      float* s = sc.data() + size_t(h) * n;
      const float mx = cap_and_max(a, s, n);
      const float sum = exp_and_sum(s, n, mx);
      heads[h].keep(mx, sum);
      inv[h] = 1.f / sum;
    }
    S::template values<T>(a, heads.data(), sc.data(), inv.data(), per);
  }
}

// The AVX2 steps, head dimension 8 * C, V dividing C (4 or 2 vectors per value pass, else 1):
// three query heads at a time, then two, then one.
template <int V>
struct Avx2Steps {
  template <class T>
  AVX2_ATTN static void score(const Attn& a, const Job* heads, int count, int j0, int j1, float* sc, int n) {
    int h = 0;
    for (; h + 3 <= count; h += 3) score_heads8<3, T>(a, heads + h, j0, j1, sc + size_t(h) * n, n);
    for (; h + 2 <= count; h += 2) score_heads8<2, T>(a, heads + h, j0, j1, sc + size_t(h) * n, n);
    for (; h < count; ++h) score_heads8<1, T>(a, heads + h, j0, j1, sc + size_t(h) * n, n);
  }
  template <class T>
  AVX2_ATTN static void values(const Attn& a, const Job* heads, const float* w, const float* inv, int count) {
    const int n = heads[0].n;
    int h = 0;
    for (; h + 3 <= count; h += 3) value_heads8<3, (V > 2 ? 2 : V), T>(a, heads + h, w + size_t(h) * n, inv + h);
    for (; h + 2 <= count; h += 2) value_heads8<2, V, T>(a, heads + h, w + size_t(h) * n, inv + h);
    for (; h < count; ++h) value_heads8<1, V, T>(a, heads + h, w + size_t(h) * n, inv + h);
  }
};

using AttnJobs = void (*)(const Attn&, int, int);

// The 8-lane grouped kernel for head dimensions that are a multiple of 8; nullptr for others.
template <class T>
AttnJobs attn_groups_avx2(int d) {
  if (d <= 0 || d % 8 != 0) return nullptr;
  const int c = d / 8;
  return c % 4 == 0   ? attn_groups<Avx2Steps<4>, T>
         : c % 2 == 0 ? attn_groups<Avx2Steps<2>, T>
                      : attn_groups<Avx2Steps<1>, T>;
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

// The AVX-512 steps, head dimension 16 * C.
template <int C>
struct Avx512Steps {
  template <class T>
  AVX512_ATTN static void score(const Attn& a, const Job* heads, int count, int j0, int j1, float* sc, int n) {
    score_group<C, T>(a, heads, count, j0, j1, sc, n);
  }
  template <class T>
  AVX512_ATTN static void values(const Attn& a, const Job* heads, const float* w, const float* inv, int count) {
    value_passes<C, kValueHeads<C>, T>(a, heads, w, inv, count);
  }
};

// The AVX-512 kernel (jobs per KV head) for head dimensions 16 * C up to 128, and 256; nullptr
// for others.
template <class T>
AttnJobs attn_groups_avx512(int d) {
  switch (d % 16 == 0 ? d / 16 : 0) {
    case 1: return attn_groups<Avx512Steps<1>, T>;
    case 2: return attn_groups<Avx512Steps<2>, T>;
    case 3: return attn_groups<Avx512Steps<3>, T>;
    case 4: return attn_groups<Avx512Steps<4>, T>;
    case 5: return attn_groups<Avx512Steps<5>, T>;
    case 6: return attn_groups<Avx512Steps<6>, T>;
    case 7: return attn_groups<Avx512Steps<7>, T>;
    case 8: return attn_groups<Avx512Steps<8>, T>;
    case 16: return attn_groups<Avx512Steps<16>, T>;
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
    t.keep(mx, sum);
    for (int u = 0; u < t.n; ++u) {
      const T* vr = a.at<T>(a.v, t.b, t.start + u, t.kvh);
      for (int i = 0; i < a.d; ++i) t.o[i] += sc[u] * value_of(vr[i], block_scale(vr, a.d, i));
    }
    for (int i = 0; i < a.d; ++i) t.o[i] /= sum;
  }
}

}  // namespace

// Rows of r jobs' worth, a job per (row, KV head) or (row, query head), on the pool.
template <class T>
void attend_rows(const Attn& a, int r, bool scalar) {
#if defined(__x86_64__)
  // The grouped kernels (AVX-512, else AVX2): a job per (query row, KV head), each a few query
  // heads' work, so chunks of two; of one each when there are few (one sequence of SmolLM2 has
  // three jobs: in chunks of two they all ran on one thread while the other waited)
  AttnJobs groups = kernels::have_avx512() && !scalar ? attn_groups_avx512<T>(a.d) : nullptr;
  if (groups == nullptr && kernels::have_avx2() && !scalar) groups = attn_groups_avx2<T>(a.d);
  if (groups != nullptr) {
    const int jobs = r * a.hkv;
    kernels::parallel_for(jobs, [&a, groups](int j0, int j1) { groups(a, j0, j1); }, jobs < 8 ? 1 : 2);
    return;
  }
#endif
  run_kernel<Attn>(a, r * a.hq, AVX2_KERNEL(attn_jobs_avx2<T>), attn_jobs_scalar<T>, scalar);
}

// Positions per part of a split row. A decode step of one sequence has a job per KV head (3
// for SmolLM2) for two threads, each job reading its rows' keys and values from memory; a row
// over more positions is split into parts of kSplit, each a row of its own for the kernels
// (normalized over its part, its heads' score max and exp-sum kept), and the parts are
// combined: out = sum_p w_p o_p / sum_p w_p, w_p = sum_p * exp(max_p - max). The split depends
// on the row's own positions only (not on the batch or the threads), so a sequence's results
// stay the same alone or in a batch; a prompt's rows are split as decode's are.
constexpr int kSplit = 512;

template <class T>
void attend(const Attn& a, int r, bool scalar) {
  int parts = 0;
  for (int b = 0; b < r; ++b) parts += std::max(1, (visible(a, b).second + kSplit - 1) / kSplit);
  if (parts == r) {
    attend_rows<T>(a, r, scalar);
    return;
  }
  thread_local std::vector<Part> part;
  thread_local std::vector<float> outs, ms;
  part.resize(parts);
  const size_t per = size_t(a.hq) * a.d;
  outs.resize(size_t(parts) * per);
  ms.resize(size_t(parts) * a.hq * 2);
  for (int b = 0, i = 0; b < r; ++b) {
    const auto [start, n] = visible(a, b);
    if (n <= kSplit) {
      // whole: straight into the output; its max and sum are not needed
      part[i] = Part{b, start, n, a.out + size_t(b) * per, ms.data() + size_t(i) * a.hq * 2};
      ++i;
      continue;
    }
    for (int j = 0; j < n; j += kSplit, ++i) {
      part[i] = Part{b, start + j, std::min(kSplit, n - j), outs.data() + size_t(i) * per, ms.data() + size_t(i) * a.hq * 2};
    }
  }
  Attn split = a;
  split.parts = part.data();
  attend_rows<T>(split, parts, scalar);
  // combine each split row's parts, a (row, head) per job (the workers see the vectors
  // through these pointers: a thread_local named in the lambda would be each worker's own)
  std::vector<int> first(r + 1, 0);
  for (int i = 0, b = 0; i < parts; ++i) {
    if (part[i].b != b) first[++b] = i;
  }
  first[r] = parts;
  const Part* pp = part.data();
  kernels::parallel_for(
      r * a.hq,
      [&a, &first, pp](int j0, int j1) {
        const Part* part = pp;
        for (int job = j0; job < j1; ++job) {
          const int b = job / a.hq, h = job % a.hq;
          const int p0 = first[b], p1 = first[b + 1];
          if (p1 - p0 < 2) continue;
          float mx = -INFINITY;
          for (int i = p0; i < p1; ++i) mx = std::max(mx, part[i].ms[2 * h]);
          float total = 0.f;
          float* o = a.out + (size_t(b) * a.hq + h) * a.d;
          std::fill(o, o + a.d, 0.f);
          for (int i = p0; i < p1; ++i) {
            const float w = part[i].ms[2 * h + 1] * std::exp(part[i].ms[2 * h] - mx);
            total += w;
            const float* src = part[i].o + size_t(h) * a.d;
            for (int c = 0; c < a.d; ++c) o[c] += w * src[c];
          }
          const float inv = 1.f / total;
          for (int c = 0; c < a.d; ++c) o[c] *= inv;
        }
      },
      4);
}

template void attend<float>(const Attn&, int, bool);
template void attend<Half>(const Attn&, int, bool);
template void attend<Q8>(const Attn&, int, bool);

}  // namespace cortex_mlx::attn
