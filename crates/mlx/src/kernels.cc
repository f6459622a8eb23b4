// What the CPU kernels share (kernels.h): CPU feature checks, widening 16-bit scales and
// biases, gathering strided inputs and preparing weights as the kernels read them.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

// GCC 12 reports its own AVX-512 intrinsics' "undefined" pass-through operands as maybe
// uninitialized once they are inlined (a known false positive, as in qdot.cc).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include "kernels.h"
#include "mlx/ops.h"

namespace cortex_mlx::kernels {

#if defined(__x86_64__)
bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
  return yes;
}

// CORTEX_QGEMV_ISA=avx2 keeps the float kernels at 8 lanes on an AVX-512 CPU (tests of the
// path other CPUs take, A/B benchmarks).
bool have_avx512() {
  static const bool yes = have_avx2() && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                          __builtin_cpu_supports("avx512vl") &&
                          std::string(std::getenv("CORTEX_QGEMV_ISA") ? std::getenv("CORTEX_QGEMV_ISA") : "") != "avx2";
  return yes;
}
#else
bool have_avx2() { return false; }
bool have_avx512() { return false; }
#endif


inline float bf16_to_float(uint16_t h) {
  const uint32_t bits = uint32_t(h) << 16;
  float f;
  std::memcpy(&f, &bits, 4);
  return f;
}

void widen_portable(const uint16_t* src, size_t n, SideType type, float* dst) {
  if (type == SideType::BF16) {
    for (size_t i = 0; i < n; ++i) dst[i] = bf16_to_float(src[i]);
  } else {
    for (size_t i = 0; i < n; ++i) dst[i] = half_to_float(src[i]);
  }
}

#if defined(__x86_64__)
__attribute__((target("avx2,f16c"))) void widen_x86(const uint16_t* src, size_t n, SideType type, float* dst) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m128i v = _mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i));
    const __m256 f = type == SideType::BF16 ? _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(v), 16))
                                            : _mm256_cvtph_ps(v);
    _mm256_storeu_ps(dst + i, f);
  }
  widen_portable(src + i, n - i, type, dst + i);
}

void widen_simd(const uint16_t* src, size_t n, SideType type, float* dst) {
  if (have_avx2()) {
    widen_x86(src, n, type, dst);
  } else {
    widen_portable(src, n, type, dst);
  }
}
#else
void widen_simd(const uint16_t* src, size_t n, SideType type, float* dst) { widen_portable(src, n, type, dst); }
#endif

namespace {

// exp for x <= 0; the floor as vmaxps takes it (x unless x is not above the floor, NaN too).
float exp_nonpositive(float x) {
  x = x > kExpFloor ? x : kExpFloor;
  const float n = std::nearbyint(x * kLog2e);
  float r = std::fma(-n, kLn2Hi, x);
  r = std::fma(-n, kLn2Lo, r);
  float p = kExpPoly[0];
  for (int i = 1; i < 6; ++i) p = std::fma(p, r, kExpPoly[i]);
  p = std::fma(p * r, r, r + 1.0f);
  const int32_t bits = (int32_t(n) + 127) << 23;
  float two_n;
  std::memcpy(&two_n, &bits, 4);
  return p * two_n;
}

float silu_mul_one(float g, float u) {
  const float e = exp_nonpositive(-std::fabs(g)), d = 1.0f + e;
  const float s = g >= 0.f ? 1.0f / d : e / d;
  return g * s * u;
}

#if defined(__x86_64__)
__attribute__((target("avx512f"))) inline __m512 exp_nonpositive512(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(kExpFloor));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(kLog2e)), _MM_FROUND_TO_NEAREST_INT);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Hi), x);
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(kLn2Lo), r);
  __m512 p = _mm512_set1_ps(kExpPoly[0]);
  for (int i = 1; i < 6; ++i) p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(kExpPoly[i]));
  p = _mm512_fmadd_ps(_mm512_mul_ps(p, r), r, _mm512_add_ps(r, _mm512_set1_ps(1.0f)));
  const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
  return _mm512_mul_ps(p, _mm512_castsi512_ps(e));
}

// 16 values at a time, the last few under a mask: every value takes the same operations.
__attribute__((target("avx512f"))) void silu_mul512(const float* gate, const float* up, float* out, size_t n) {
  const __m512 one = _mm512_set1_ps(1.0f), zero = _mm512_setzero_ps();
  for (size_t i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 g = _mm512_maskz_loadu_ps(m, gate + i), u = _mm512_maskz_loadu_ps(m, up + i);
    const __m512 e = exp_nonpositive512(_mm512_sub_ps(zero, _mm512_abs_ps(g))), d = _mm512_add_ps(one, e);
    const __m512 s = _mm512_mask_blend_ps(_mm512_cmp_ps_mask(g, zero, _CMP_GE_OQ), _mm512_div_ps(e, d),
                                          _mm512_div_ps(one, d));
    _mm512_mask_storeu_ps(out + i, m, _mm512_mul_ps(_mm512_mul_ps(g, s), u));
  }
}

// The same operations 8 values at a time, for CPUs without AVX-512 (the last few values take
// the portable code, which does the same operations one value at a time).
__attribute__((target("avx2,fma"))) size_t silu_mul256(const float* gate, const float* up, float* out, size_t n) {
  const __m256 one = _mm256_set1_ps(1.0f), zero = _mm256_setzero_ps();
  const __m256 sign = _mm256_set1_ps(-0.0f);
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 g = _mm256_loadu_ps(gate + i), u = _mm256_loadu_ps(up + i);
    const __m256 e = exp_nonpositive8(_mm256_or_ps(g, sign)), d = _mm256_add_ps(one, e);
    const __m256 s = _mm256_blendv_ps(_mm256_div_ps(e, d), _mm256_div_ps(one, d), _mm256_cmp_ps(g, zero, _CMP_GE_OQ));
    _mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(g, s), u));
  }
  return i;
}
#endif

}  // namespace

void silu_mul(const float* gate, const float* up, float* out, size_t n, bool portable) {
#if defined(__x86_64__)
  if (!portable && have_avx512()) return silu_mul512(gate, up, out, n);
  const size_t done = !portable && have_avx2() ? silu_mul256(gate, up, out, n) : 0;
#else
  const size_t done = 0;
#endif
  for (size_t i = done; i < n; ++i) out[i] = silu_mul_one(gate[i], up[i]);
}

mx::array weight_input(const mx::array& a, mx::Stream s, bool to_f32) {
  mx::array b = to_f32 && a.dtype() != mx::float32 ? mx::astype(a, mx::float32, s) : a;
  bool ready = b.status() != mx::array::Status::unscheduled && b.flags().row_contiguous;
  return ready ? b : mx::contiguous(b, false, s);
}

}  // namespace cortex_mlx::kernels
