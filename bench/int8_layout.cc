// How fast could decode's 4-bit matmuls be with the weights repacked for integer dot products?
// An experiment for issue 13, not product code: it times, on one thread, the 210 4-bit matmuls
// of one SmolLM2-135M token (30 layers of q, k, v, o, gate, up, down; group 32; random
// weights, one row of activations) with
//   - the float kernel decode runs today (crates/mlx/src/qgemv.cc rows_avx512_one: per row and
//     group, unpack 32 nibbles to floats, two multiply-adds, the scale; two weight rows per pass),
//   - an int8 kernel on weights interleaved 16 rows per vector: lane j of a 64-byte chunk holds
//     4 packed bytes (8 weights) of row j, so one vpdpbusd against the activations' 4 bytes
//     broadcast does 4 multiply-adds for each of 16 rows, and the per-group float work
//     (convert, scale, add) runs once per 16 rows, whose outputs need no horizontal sum.
//     Activations are rounded to int8 twice per group of 32, as the int8 path does (x, then
//     what that left over).
// It prints both kernels' largest difference on one layer against its largest output, and the
// median and best milliseconds per token of matmuls over alternating passes.
//
//   g++ -O2 -std=c++20 bench/int8_layout.cc -o int8_layout && ./int8_layout [passes]
//
// Needs AVX-512 with VNNI (it says so and exits otherwise).
#include <immintrin.h>

// GCC 12 reports its own AVX-512 intrinsics' undefined upper halves as maybe-uninitialized once
// they are inlined (a known false positive; qgemv.cc does the same).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <vector>

namespace {

constexpr int kGroup = 32;

std::mt19937 rng(1);

// One layer [n, k]: MLX's packed 4-bit rows with float32 scales and biases per group, and the
// same weights interleaved 16 rows at a time: [n/16 blocks][k/8 chunks][16 rows][4 bytes],
// scales and biases as [n/16][groups][16].
struct Layer {
  int n, k;
  std::vector<uint8_t> w;
  std::vector<float> s, b;
  std::vector<uint8_t> wi;
  std::vector<float> si, bi;
};

Layer make_layer(int n, int k) {
  Layer l{n, k, {}, {}, {}, {}, {}, {}};
  const int groups = k / kGroup, blocks = (n + 15) / 16, chunks = k / 8;
  l.w.resize(size_t(n) * k / 2);
  for (auto& v : l.w) v = uint8_t(rng());
  l.s.resize(size_t(n) * groups);
  l.b.resize(size_t(n) * groups);
  for (auto& v : l.s) v = 0.01f + float(rng() % 1000) * 1e-5f;
  for (auto& v : l.b) v = -0.08f + float(rng() % 1000) * 1e-5f;
  l.wi.assign(size_t(blocks) * chunks * 64, 0);
  l.si.assign(size_t(blocks) * groups * 16, 0.f);
  l.bi.assign(size_t(blocks) * groups * 16, 0.f);
  for (int r = 0; r < n; ++r) {
    const int blk = r / 16, lane = r % 16;
    for (int c = 0; c < chunks; ++c) {
      std::memcpy(&l.wi[(size_t(blk) * chunks + c) * 64 + lane * 4], &l.w[size_t(r) * k / 2 + c * 4], 4);
    }
    for (int g = 0; g < groups; ++g) {
      l.si[(size_t(blk) * groups + g) * 16 + lane] = l.s[size_t(r) * groups + g];
      l.bi[(size_t(blk) * groups + g) * 16 + lane] = l.b[size_t(r) * groups + g];
    }
  }
  return l;
}

// One row of activations as both kernels take it.
struct Input {
  std::vector<float> permuted;  // per 32 values: the even-indexed ones, then the odd ones
  std::vector<float> sums;      // per group: sum of x
  // per chunk of 8 values: a dword of the even positions' int8s, then one of the odd ones;
  // first rounding, second rounding, and each one's scale per group
  std::vector<int32_t> q1, q2;
  std::vector<float> scale1, scale2;
};

Input make_input(const std::vector<float>& x) {
  const int k = int(x.size()), groups = k / kGroup;
  Input in;
  in.permuted.resize(k);
  for (int c = 0; c < k; c += 32) {
    for (int t = 0; t < 16; ++t) {
      in.permuted[c + t] = x[c + 2 * t];
      in.permuted[c + 16 + t] = x[c + 2 * t + 1];
    }
  }
  in.sums.assign(groups, 0.f);
  in.q1.resize(k / 4);
  in.q2.resize(k / 4);
  in.scale1.resize(groups);
  in.scale2.resize(groups);
  for (int g = 0; g < groups; ++g) {
    const float* xg = &x[size_t(g) * kGroup];
    float amax = 0.f, rmax = 0.f;
    for (int i = 0; i < kGroup; ++i) {
      in.sums[g] += xg[i];
      amax = std::max(amax, std::fabs(xg[i]));
    }
    const float s1 = amax > 0.f ? amax / 127.f : 1.f;
    int8_t a[kGroup], b[kGroup];
    float rest[kGroup];
    for (int i = 0; i < kGroup; ++i) {
      a[i] = int8_t(std::nearbyint(xg[i] / s1));
      rest[i] = xg[i] - float(a[i]) * s1;
      rmax = std::max(rmax, std::fabs(rest[i]));
    }
    const float s2 = rmax > 0.f ? rmax / 127.f : 1.f;
    for (int i = 0; i < kGroup; ++i) b[i] = int8_t(std::nearbyint(rest[i] / s2));
    in.scale1[g] = s1;
    in.scale2[g] = s2;
    for (int c = 0; c < kGroup / 8; ++c) {
      int8_t even1[4], odd1[4], even2[4], odd2[4];
      for (int t = 0; t < 4; ++t) {
        even1[t] = a[c * 8 + 2 * t];
        odd1[t] = a[c * 8 + 2 * t + 1];
        even2[t] = b[c * 8 + 2 * t];
        odd2[t] = b[c * 8 + 2 * t + 1];
      }
      const int at = 2 * (g * kGroup / 8 + c);
      std::memcpy(&in.q1[at], even1, 4);
      std::memcpy(&in.q1[at + 1], odd1, 4);
      std::memcpy(&in.q2[at], even2, 4);
      std::memcpy(&in.q2[at + 1], odd2, 4);
    }
  }
  return in;
}

// Today's decode kernel for one row of x (n even).
__attribute__((target("avx512f,avx512bw"))) void float_kernel(const Layer& l, const Input& in, float* out) {
  const int groups = l.k / kGroup;
  const __m128i lo4 = _mm_set1_epi8(0x0F);
  const float* x = in.permuted.data();
  for (int r = 0; r < l.n; r += 2) {
    const uint8_t* w0 = &l.w[size_t(r) * l.k / 2];
    const uint8_t* w1 = w0 + l.k / 2;
    const float* s0 = &l.s[size_t(r) * groups];
    const float* s1 = s0 + groups;
    __m512 t0 = _mm512_setzero_ps(), t1 = _mm512_setzero_ps();
    for (int g = 0; g < groups; ++g) {
      const int base = g * kGroup;
      const __m512 xe = _mm512_loadu_ps(x + base), xo = _mm512_loadu_ps(x + base + 16);
      const __m128i v0 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w0 + base / 2));
      const __m128i v1 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(w1 + base / 2));
      __m512 d0 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v0, lo4))), xe);
      __m512 d1 = _mm512_mul_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(v1, lo4))), xe);
      d0 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v0, 4), lo4))), xo, d0);
      d1 = _mm512_fmadd_ps(_mm512_cvtepi32_ps(_mm512_cvtepu8_epi32(_mm_and_si128(_mm_srli_epi16(v1, 4), lo4))), xo, d1);
      t0 = _mm512_fmadd_ps(d0, _mm512_set1_ps(s0[g]), t0);
      t1 = _mm512_fmadd_ps(d1, _mm512_set1_ps(s1[g]), t1);
    }
    const float* b0 = &l.b[size_t(r) * groups];
    const float* b1 = b0 + groups;
    for (int g = 0; g < groups; g += 16) {
      const __mmask16 m = groups - g >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (groups - g)) - 1);
      const __m512 xs = _mm512_maskz_loadu_ps(m, in.sums.data() + g);
      t0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, b0 + g), xs, t0);
      t1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, b1 + g), xs, t1);
    }
    out[r] = _mm512_reduce_add_ps(t0);
    out[r + 1] = _mm512_reduce_add_ps(t1);
  }
}

// The interleaved int8 kernel: 16 rows per pass, lanes = rows.
__attribute__((target("avx512f,avx512bw,avx512vnni"))) void int8_kernel(const Layer& l, const Input& in, float* out) {
  const int groups = l.k / kGroup, chunks = l.k / 8, blocks = (l.n + 15) / 16;
  const __m512i lo4 = _mm512_set1_epi8(0x0F);
  for (int blk = 0; blk < blocks; ++blk) {
    const uint8_t* wb = &l.wi[size_t(blk) * chunks * 64];
    const float* sb = &l.si[size_t(blk) * groups * 16];
    const float* bb = &l.bi[size_t(blk) * groups * 16];
    __m512 t = _mm512_setzero_ps();
    for (int g = 0; g < groups; ++g) {
      __m512i a1 = _mm512_setzero_si512(), a2 = _mm512_setzero_si512();
      for (int c = g * kGroup / 8; c < (g + 1) * kGroup / 8; ++c) {
        const __m512i v = _mm512_loadu_si512(wb + size_t(c) * 64);
        const __m512i even = _mm512_and_si512(v, lo4), odd = _mm512_and_si512(_mm512_srli_epi16(v, 4), lo4);
        a1 = _mm512_dpbusd_epi32(a1, even, _mm512_set1_epi32(in.q1[2 * c]));
        a1 = _mm512_dpbusd_epi32(a1, odd, _mm512_set1_epi32(in.q1[2 * c + 1]));
        a2 = _mm512_dpbusd_epi32(a2, even, _mm512_set1_epi32(in.q2[2 * c]));
        a2 = _mm512_dpbusd_epi32(a2, odd, _mm512_set1_epi32(in.q2[2 * c + 1]));
      }
      const __m512 sw = _mm512_loadu_ps(sb + g * 16);
      t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a1), _mm512_mul_ps(sw, _mm512_set1_ps(in.scale1[g])), t);
      t = _mm512_fmadd_ps(_mm512_cvtepi32_ps(a2), _mm512_mul_ps(sw, _mm512_set1_ps(in.scale2[g])), t);
      t = _mm512_fmadd_ps(_mm512_loadu_ps(bb + g * 16), _mm512_set1_ps(in.sums[g]), t);
    }
    const int rows = std::min(16, l.n - blk * 16);
    _mm512_mask_storeu_ps(out + blk * 16, __mmask16((1u << rows) - 1), t);
  }
}

}  // namespace

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx512f") || !__builtin_cpu_supports("avx512bw") ||
      !__builtin_cpu_supports("avx512vnni")) {
    std::puts("this CPU has no AVX-512 VNNI: nothing to compare");
    return 0;
  }
  const int passes = argc > 1 ? std::max(1, std::atoi(argv[1])) : 30;
  const int h = 576, kv = 192, inter = 1536;
  const std::pair<int, int> shapes[] = {{h, h}, {kv, h}, {kv, h}, {h, h}, {inter, h}, {inter, h}, {h, inter}};
  std::vector<Layer> layers;
  for (int i = 0; i < 30; ++i) {
    for (auto [n, k] : shapes) layers.push_back(make_layer(n, k));
  }
  std::vector<float> x(inter);
  for (auto& v : x) v = float(int(rng() % 2001) - 1000) * 1e-3f;
  const Input in576 = make_input(std::vector<float>(x.begin(), x.begin() + h)), in1536 = make_input(x);
  const auto& input = [&](const Layer& l) -> const Input& { return l.k == h ? in576 : in1536; };
  std::vector<float> a(inter), b(inter);
  const Layer& down = layers[6];
  float_kernel(down, input(down), a.data());
  int8_kernel(down, input(down), b.data());
  float diff = 0.f, top = 0.f;
  for (int i = 0; i < down.n; ++i) {
    diff = std::max(diff, std::fabs(a[i] - b[i]));
    top = std::max(top, std::fabs(a[i]));
  }
  std::printf("down projection: largest |float - int8| %.3g, largest |output| %.3g\n", diff, top);
  std::vector<double> times[2];
  for (int p = 0; p < passes + 2; ++p) {
    for (int kind : {p % 2, 1 - p % 2}) {
      const auto t0 = std::chrono::steady_clock::now();
      for (const auto& l : layers) {
        if (kind == 0) {
          float_kernel(l, input(l), a.data());
        } else {
          int8_kernel(l, input(l), a.data());
        }
      }
      if (p >= 2) times[kind].push_back(std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
    }
  }
  const char* names[2] = {"float, MLX layout (today)", "int8, 16 rows interleaved"};
  for (int kind = 0; kind < 2; ++kind) {
    auto& t = times[kind];
    std::sort(t.begin(), t.end());
    std::printf("%-27s %6.2f ms per token (best %.2f), one thread, %zu matmuls\n", names[kind], t[t.size() / 2] * 1e3,
                t[0] * 1e3, layers.size());
  }
  return 0;
}
