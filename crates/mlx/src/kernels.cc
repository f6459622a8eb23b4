// What the CPU kernels share (kernels.h): CPU feature checks, widening 16-bit scales and
// biases, gathering strided inputs and preparing weights as the kernels read them.
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
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

// Row-major copy of a strided array (an activation MLX left as a view).
void gather_contiguous(const float* src, const mx::Shape& shape, const mx::Strides& strides, float* dst) {
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

mx::array weight_input(const mx::array& a, mx::Stream s, bool to_f32) {
  mx::array b = to_f32 && a.dtype() != mx::float32 ? mx::astype(a, mx::float32, s) : a;
  bool ready = b.status() != mx::array::Status::unscheduled && b.flags().row_contiguous;
  return ready ? b : mx::contiguous(b, false, s);
}

}  // namespace cortex_mlx::kernels
