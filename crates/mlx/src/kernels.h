// What the CPU kernels (qgemv.cc: matmuls, attention.cc: decode attention) share: the thread
// pool, the CPU feature checks, the per-thread kernel choice and the input preparation.
#pragma once
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <functional>
#include <type_traits>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "mlx/array.h"
#include "mlx/stream.h"

namespace cortex_mlx::kernels {

namespace mx = mlx::core;

// Runs f on items 0..n split into contiguous chunks across the kernel pool and waits
// (pool.cc: spinning workers, chunks from a shared counter, one caller at a time, others run
// inline).
// Chunks hold at least `min_chunk` items (the default suits rows of a matmul: smaller pieces
// cost more in hand-offs than they gain in balance); with fewer than two chunks' worth, f runs
// on the caller alone.
void parallel_for(int n, const std::function<void(int, int)>& f, int min_chunk = 16);
// Tests: when `only`, callers of parallel_for with a worker to hand take no chunk themselves
// (they wait for the workers), so every kernel's chunks run on another thread than the one
// that set them up (process-wide; results must not change).
void set_pool_workers_only(bool only);

// Whether this CPU runs the AVX2/FMA/F16C kernels, and the 16-lane AVX-512 ones (F, BW, VL).
bool have_avx2();
bool have_avx512();

// Whether kernels made on this thread use the portable code only (set_scalar_kernels).
bool scalar_now();

// exp(x) for x <= 0, accurate to a few ulp: 2^n * e^r, r in [-ln2/2, ln2/2], e^r = 1 + r +
// r^2 * p(r) with p's coefficients below (highest first), ln2 split in two for the reduction.
// The SIMD versions (attention.cc, silu_mul) and the portable one share these.
constexpr float kExpPoly[] = {1.9875691500e-4f, 1.3981999507e-3f, 8.3334519073e-3f,
                              4.1665795894e-2f, 1.6666665459e-1f, 5.0000001201e-1f};
constexpr float kLn2Hi = 0.693359375f, kLn2Lo = -2.12194440e-4f, kExpFloor = -87.3f, kLog2e = 1.44269504088896341f;

// out[i] = silu(gate[i]) * up[i] for i < n (the SwiGLU of a fused gate/up matmul), the
// sigmoid from exp(-|gate|) so nothing overflows. AVX-512 (else AVX2, 8 values at a time)
// where the CPU has it and `portable` is false, else portable code with the same float
// operations in the same order (std::fma for each fused multiply-add): every value is the same
// bits either way, whatever n.
void silu_mul(const float* gate, const float* up, float* out, size_t n, bool portable);

// Row-major copy of a strided array (an input MLX left as a view or a broadcast).
template <class T>
void gather_contiguous(const T* src, const mx::Shape& shape, const mx::Strides& strides, T* dst) {
  size_t total = 1;
  for (auto d : shape) total *= size_t(d);
  std::vector<int> idx(shape.size(), 0);
  for (size_t i = 0; i < total; ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < shape.size(); ++d) off += int64_t(idx[d]) * strides[d];
    dst[i] = src[off];
    for (int d = int(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

// An input as MLX laid it out: row-major, or a view or broadcast to gather.
struct Strided {
  const float* data;
  mx::Shape shape;
  mx::Strides strides;
  bool contiguous;
  explicit Strided(const mx::array& a)
      : data(a.data<float>()), shape(a.shape()), strides(a.strides()), contiguous(a.flags().row_contiguous) {}
  void gather(float* dst) const { gather_contiguous(data, shape, strides, dst); }
  // Row-major data: the array's own, or a copy in `buf`.
  const float* rows(std::vector<float>& buf) const {
    if (contiguous) return data;
    size_t n = 1;
    for (auto s : shape) n *= size_t(s);
    buf.resize(n);
    gather(buf.data());
    return buf.data();
  }
};

// An input as a kernel reads it: float32 when `to_f32`, row-contiguous. Arrays that already
// qualify (evaluated weights) go in as they are; others get an MLX node that converts them.
mx::array weight_input(const mx::array& a, mx::Stream s, bool to_f32);

// How a quantized weight's scales and biases are stored. Checkpoints keep them in 16 bits
// (float16 or bfloat16; GGUF's blocks hold float16), and decode reads all of them for every
// token, so the kernels take them as stored: the SIMD float kernels convert them as they read
// them (side16/side8 below), the others widen a few rows at a time, just before use.
enum class SideType : int { F32, F16, BF16 };

// IEEE half to float, every case: normal, subnormal (renormalized), zero, infinity and NaN.
inline float half_to_float(uint16_t h) {
  const uint32_t sign = uint32_t(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1F, man = h & 0x3FF, bits;
  if (exp == 0x1F) {
    bits = sign | 0x7F800000u | (man << 13);
  } else if (exp != 0) {
    bits = sign | ((exp + 112) << 23) | (man << 13);
  } else if (man == 0) {
    bits = sign;
  } else {
    // man * 2^-24: shift the leading one up to the implicit bit, one exponent step per shift
    exp = 113;
    while ((man & 0x400) == 0) {
      man <<= 1;
      --exp;
    }
    bits = sign | (exp << 23) | ((man & 0x3FF) << 13);
  }
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

// Float to IEEE half, rounded to nearest even as MLX's astype rounds, but saturating: a
// magnitude of 65504 or more becomes +-65504, not infinity (a 16-bit KV cache holding an
// infinite key would turn its head's every score into NaN). NaN stays NaN.
inline uint16_t float_to_half(float f) {
  uint32_t x;
  std::memcpy(&x, &f, 4);
  const uint16_t sign = uint16_t((x >> 16) & 0x8000);
  const uint32_t ax = x & 0x7FFFFFFFu;
  if (ax > 0x7F800000u) return uint16_t(sign | 0x7E00);  // NaN
  if (ax >= 0x477FE000u) return uint16_t(sign | 0x7BFF);  // 65504 and up (infinity too)
  if (ax >= 0x38800000u) {
    // normal: drop 13 mantissa bits, rounding to nearest even (a carry bumps the exponent)
    const uint32_t rounded = ax + 0xFFFu + ((ax >> 13) & 1u);
    return uint16_t(sign | ((rounded - 0x38000000u) >> 13));
  }
  // subnormal (or zero): |f| / 2^-24 rounded to an integer, to nearest even; 1024 is the
  // smallest normal half, whose bits it also is
  float mag;
  std::memcpy(&mag, &ax, 4);
  return uint16_t(sign | uint16_t(std::nearbyint(mag * 16777216.0f)));
}

// n 16-bit values as float32 (exact, so both give the same floats): portable code, and
// F16C/AVX2 where the CPU has them (else the portable code).
void widen_portable(const uint16_t* src, size_t n, SideType type, float* dst);
void widen_simd(const uint16_t* src, size_t n, SideType type, float* dst);
using Widen = void (*)(const uint16_t*, size_t, SideType, float*);

// The element type of scales and biases stored as S.
template <SideType S>
using SideElem = std::conditional_t<S == SideType::F32, float, uint16_t>;

// Rows n0..n1 of a weight whose scales and biases are 16-bit, in pieces of rows whose scales
// and biases (widened into this thread's buffer) stay in cache: f(a, b, scales, biases) for
// each piece a..b, the floats of row a first.
template <class F>
void with_wide_sides(const uint16_t* scales, const uint16_t* biases, SideType type, int groups, int n0, int n1,
                     Widen widen, F&& f) {
  const int piece = groups >= 4096 ? 2 : (8192 / groups) & ~1;
  thread_local std::vector<float> buf;
  for (int a = n0; a < n1; a += piece) {
    const int b = std::min(n1, a + piece);
    const size_t count = size_t(b - a) * size_t(groups);
    buf.resize(2 * count);
    widen(scales + size_t(a) * groups, count, type, buf.data());
    widen(biases + size_t(a) * groups, count, type, buf.data() + count);
    f(a, b, static_cast<const float*>(buf.data()), static_cast<const float*>(buf.data() + count));
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_hadd_ps(lo, lo);
  lo = _mm_hadd_ps(lo, lo);
  return _mm_cvtss_f32(lo);
}
// exp for x <= 0 in 8 lanes (the constants above), shared by attention's softmax and SwiGLU.
__attribute__((target("avx2,fma"))) inline __m256 exp_nonpositive8(__m256 x) {
  x = _mm256_max_ps(x, _mm256_set1_ps(kExpFloor));
  const __m256 n = _mm256_round_ps(_mm256_mul_ps(x, _mm256_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m256 r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Hi), x);
  r = _mm256_fnmadd_ps(n, _mm256_set1_ps(kLn2Lo), r);
  __m256 p = _mm256_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm256_fmadd_ps(p, r, _mm256_set1_ps(kExpPoly[i]));
  p = _mm256_fmadd_ps(_mm256_mul_ps(p, r), r, _mm256_add_ps(r, _mm256_set1_ps(1.0f)));
  const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
  return _mm256_mul_ps(p, _mm256_castsi256_ps(e));
}
// The kernels read 16-bit scales and biases as stored, converting a vector at a time (the
// conversions are exact, so the results are those of the same values in float32).
// Up to 16 values of p (n of them; lanes past n are 0) as float32.
template <SideType S>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 side16(const SideElem<S>* p, int n) {
  const __mmask16 m = n >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << n) - 1);
  if constexpr (S == SideType::F32) {
    return _mm512_maskz_loadu_ps(m, p);
  } else {
    const __m256i v = _mm256_maskz_loadu_epi16(m, p);
    if constexpr (S == SideType::F16) return _mm512_cvtph_ps(v);
    return _mm512_castsi512_ps(_mm512_slli_epi32(_mm512_cvtepu16_epi32(v), 16));
  }
}
// Exactly 8 values of p as float32.
template <SideType S>
__attribute__((target("avx2,f16c"))) inline __m256 side8(const SideElem<S>* p) {
  if constexpr (S == SideType::F32) {
    return _mm256_loadu_ps(p);
  } else {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(p));
    if constexpr (S == SideType::F16) return _mm256_cvtph_ps(v);
    return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16));
  }
}
// One value of p as float32.
template <SideType S>
__attribute__((target("f16c"))) inline float side1(const SideElem<S>* p) {
  if constexpr (S == SideType::F32) {
    return *p;
  } else if constexpr (S == SideType::F16) {
    return _cvtsh_ss(*p);
  } else {
    return _mm_cvtss_f32(_mm_castsi128_ps(_mm_cvtsi32_si128(int(uint32_t(*p) << 16))));
  }
}

// t + the weights' bias term of one output, sum over groups of b[g] * xsum[g], spread over t's
// lanes (the caller's reduction adds them up). Shared by the float and int8 AVX-512 kernels.
template <SideType S = SideType::F32>
__attribute__((target("avx512f,avx512bw,avx512vl"))) inline __m512 add_bias512(const SideElem<S>* b, const float* xsum,
                                                                              int groups, __m512 t) {
  for (int g = 0; g < groups; g += 16) {
    const __mmask16 m = groups - g >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (groups - g)) - 1);
    t = _mm512_fmadd_ps(side16<S>(b + g, groups - g), _mm512_maskz_loadu_ps(m, xsum + g), t);
  }
  return t;
}
// A kernel compiled for AVX2; off x86 there is none and the portable one runs.
#define AVX2_KERNEL(f) f
#else
#define AVX2_KERNEL(f) nullptr
#endif

// Runs items 0..n on the pool with the AVX2 kernel where there is one and the CPU has it,
// else the portable one; both take (problem, first, end). `force_scalar`: the caller asked
// for the portable kernels (tests of the path a CPU without AVX2 takes); captured per
// primitive when its graph node is made.
template <class P>
void run_kernel(const P& p, int n, void (*avx)(const P&, int, int), void (*scalar)(const P&, int, int),
                bool force_scalar) {
  auto kernel = avx != nullptr && have_avx2() && !force_scalar ? avx : scalar;
  parallel_for(n, [&p, kernel](int a, int b) { kernel(p, a, b); });
}

}  // namespace cortex_mlx::kernels
