// The float matmul kernels alone (crates/mlx/src/qgemv_rows.cc, gemv_rows::rows_avx2: the
// default path's decode and short prefill on an AVX2 CPU), random weights with float16 scales
// and biases, groups of 32:
//   - one thread, best of many runs, on SmolLM2's gate [1536, 576] and down [576, 1536] in
//     4-bit (in L2 after the first run) and its 8-bit head [49152, 576] (streamed from memory),
//     for 1, 2, 4 and 8 rows of x: microseconds and cycles per 16 weights at the clock given
//     (GHz, default 3.35);
//   - one SmolLM2 token: the 211 matmuls of one row (30 layers of q, k, v, o, gate, up, down and
//     the head) on distinct weights (98 MB, so from memory, as in decode), split between two
//     threads as the kernel pool splits them: median and best of 30 tokens.
// The checksums change only if the results do (the kernels are bit-identical to each other).
//
// From the repository root (one command; the venv is the project's):
//   MLX=$(ls -d .venv/lib/python3*/site-packages/mlx); g++ -std=c++20 -O2 -Icrates/mlx/src
//   -I$MLX/include bench/gemv_rows_bench.cc crates/mlx/src/{qgemv_rows,pool,kernels}.cc
//   -L$MLX/lib -lmlx -Wl,-rpath,$MLX/lib -pthread -o gemv_rows_bench && ./gemv_rows_bench [GHZ]
#include <immintrin.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <thread>
#include <vector>

#include "qgemv_rows.h"

namespace g = cortex_mlx::gemv_rows;

namespace {

constexpr int kGroup = 32;

struct Layer {
  int n, k, bits;
  std::vector<uint8_t> w;
  std::vector<uint16_t> scales, biases;  // float16
};

__attribute__((target("f16c"))) Layer make_layer(int n, int k, int bits, std::mt19937& rng) {
  Layer l{n, k, bits, std::vector<uint8_t>(size_t(n) * k * bits / 8), {}, {}};
  for (size_t i = 0; i < l.w.size(); i += 4) {
    const uint32_t v = rng();
    std::memcpy(&l.w[i], &v, 4);
  }
  std::uniform_real_distribution<float> side(-0.1f, 0.1f);
  for (int i = 0; i < n * (k / kGroup); ++i) {
    l.scales.push_back(_cvtss_sh(side(rng), 0));
    l.biases.push_back(_cvtss_sh(side(rng), 0));
  }
  return l;
}

// m rows of x (and their group sums) for width k
struct Input {
  std::vector<float> x, sums;
  Input(int m, int k, std::mt19937& rng) : x(size_t(m) * k), sums(size_t(m) * k / kGroup) {
    std::uniform_real_distribution<float> u(-1.f, 1.f);
    for (auto& v : x) v = u(rng);
    for (auto& v : sums) v = u(rng);
  }
};

g::Problem problem(const Layer& l, const Input& in, int m, float* out) {
  g::Problem p{in.x.data(), l.w.data(), nullptr, nullptr, in.sums.data(), out, m, l.n, l.k, kGroup, l.bits};
  p.side = cortex_mlx::kernels::SideType::F16;
  p.scales16 = l.scales.data();
  p.biases16 = l.biases.data();
  return p;
}

double seconds_since(std::chrono::steady_clock::time_point t0) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
}

}  // namespace

int main(int argc, char** argv) {
  if (!__builtin_cpu_supports("avx2") || !__builtin_cpu_supports("fma") || !__builtin_cpu_supports("f16c")) {
    std::puts("gemv_rows_bench needs AVX2, FMA and F16C");
    return 1;
  }
  const double ghz = argc > 1 ? std::atof(argv[1]) : 3.35;
  std::mt19937 rng(1);
  double checksum = 0;
  const Layer shapes[] = {make_layer(1536, 576, 4, rng), make_layer(576, 1536, 4, rng), make_layer(49152, 576, 8, rng)};
  std::printf("one thread, best of many runs\n");
  for (int m : {1, 2, 4, 8}) {
    for (const Layer& l : shapes) {
      const Input in(m, l.k, rng);
      std::vector<float> out(size_t(m) * l.n);
      const g::Problem p = problem(l, in, m, out.data());
      double best = 1e30;
      for (int r = 0; r < (l.n > 10000 ? 20 : 300); ++r) {
        const auto t0 = std::chrono::steady_clock::now();
        g::rows_avx2(p, 0, l.n);
        best = std::min(best, seconds_since(t0));
      }
      for (float v : out) checksum += v;
      std::printf("%d row%s [%5d, %4d] %d-bit: %9.1f us, %6.2f cycles per 16 weights\n", m, m == 1 ? " " : "s", l.n, l.k,
                  l.bits, best * 1e6, best * ghz * 1e9 / (double(l.n) * l.k / 16));
    }
  }
  std::printf("checksum %.9g\n", checksum);

  std::vector<Layer> token;
  for (int layer = 0; layer < 30; ++layer) {
    for (auto [n, k] : {std::pair{576, 576}, {192, 576}, {192, 576}, {576, 576}, {1536, 576}, {1536, 576}, {576, 1536}}) {
      token.push_back(make_layer(n, k, 4, rng));
    }
  }
  token.push_back(make_layer(49152, 576, 8, rng));
  size_t bytes = 0;
  for (const Layer& l : token) bytes += l.w.size() + 2 * l.scales.size() * sizeof(uint16_t);
  const Input narrow(1, 576, rng), wide(1, 1536, rng);
  std::vector<std::vector<float>> outs;
  for (const Layer& l : token) outs.emplace_back(l.n);
  const auto half = [&](int part) {
    for (size_t i = 0; i < token.size(); ++i) {
      const Layer& l = token[i];
      const g::Problem p = problem(l, l.k == 1536 ? wide : narrow, 1, outs[i].data());
      g::rows_avx2(p, l.n * part / 2, l.n * (part + 1) / 2);
    }
  };
  std::vector<double> times;
  for (int t = 0; t < 30; ++t) {
    const auto t0 = std::chrono::steady_clock::now();
    std::thread other(half, 1);
    half(0);
    other.join();
    times.push_back(seconds_since(t0));
  }
  std::sort(times.begin(), times.end());
  checksum = 0;
  for (const auto& o : outs) {
    for (float v : o) checksum += v;
  }
  std::printf("one token, %zu matmuls, %.1f MB, two threads: median %.2f ms, best %.2f ms (checksum %.9g)\n",
              token.size(), bytes / 1e6, times[times.size() / 2] * 1e3, times[0] * 1e3, checksum);
  return 0;
}
