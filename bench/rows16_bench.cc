// The repacked int8 kernels alone (crates/mlx/src/qdot16.cc, rows16) on one thread: a 4-bit
// [1536, 576] layer (SmolLM2's gate), a 4-bit [576, 1536] one (its down projection) and the
// 8-bit [49152, 576] head, random weights, for 1, 2 and 8 rows of activations. Prints the best
// time of many runs and the kernel's vpmaddubsw issue rate as a fraction of one a cycle (what
// bench/port_throughput.cc measures on Zen 2), at the clock given (GHz, default 3.35); on a
// CPU with AVX-512 VNNI the kernel there runs instead and the fraction means nothing. The
// checksum changes only if the results do.
//
// From the repository root (one command; the venv is the project's):
//   MLX=$(ls -d .venv/lib/python3*/site-packages/mlx); g++ -std=c++20 -O2 -Icrates/mlx/src
//   -I$MLX/include bench/rows16_bench.cc crates/mlx/src/{qdot,qdot16,pool,kernels}.cc
//   -L$MLX/lib -lmlx -Wl,-rpath,$MLX/lib -o rows16_bench && ./rows16_bench [GROUP [GHZ]]
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <random>
#include <vector>

#include "qdot.h"

namespace q = cortex_mlx::qdot;

namespace {

struct Layer {
  int n, k, bits;
  std::vector<uint8_t> packed;
};

Layer make_layer(int n, int k, int bits, int group, std::mt19937& rng) {
  const int groups = k / group;
  std::vector<uint8_t> w(size_t(n) * k * bits / 8);
  for (auto& b : w) b = uint8_t(rng());
  std::uniform_real_distribution<float> side(-0.1f, 0.1f);
  std::vector<float> scales(size_t(n) * groups), biases(size_t(n) * groups);
  for (auto& s : scales) s = side(rng);
  for (auto& b : biases) b = side(rng);
  Layer l{n, k, bits, {}};
  l.packed.resize(size_t((n + q::kRows16 - 1) / q::kRows16) * q::rows16_block_bytes(k, group, bits));
  q::pack_rows16(w.data(), scales.data(), biases.data(), n, k, group, bits, l.packed.data());
  return l;
}

// Best seconds of `runs` calls for m rows of activations; adds the outputs to `checksum`.
double best_time(const Layer& l, int m, int group, int runs, double& checksum) {
  std::mt19937 rng(7);
  std::uniform_real_distribution<float> u(-1.f, 1.f);
  std::vector<float> x(size_t(m) * l.k);
  for (auto& v : x) v = u(rng);
  q::Activations a;
  q::quantize(x.data(), m, l.k, group, l.bits, q::Isa::Scalar, a, 8, false);
  q::Bands bands;
  q::make_bands(a, l.bits, bands);
  std::vector<float> out(size_t(m) * l.n);
  const q::Problem16 p{&a, l.packed.data(), out.data(), l.n, l.n, l.bits, &bands};
  const int blocks = (l.n + q::kRows16 - 1) / q::kRows16;
  double best = 1e30;
  for (int r = 0; r < runs; ++r) {
    const auto t0 = std::chrono::steady_clock::now();
    q::rows16(p, 0, blocks, false);
    best = std::min(best, std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count());
  }
  for (float v : out) checksum += v;
  return best;
}

}  // namespace

int main(int argc, char** argv) {
  const int group = argc > 1 ? std::atoi(argv[1]) : 32;
  const double ghz = argc > 2 ? std::atof(argv[2]) : 3.35;
  if (q::rows16_block_bytes(576, group, 4) == 0 || 1536 % group != 0) {
    std::puts("GROUP must be 32, 64 or 192 (a multiple of 32 dividing 576 and 1536)");
    return 1;
  }
  std::mt19937 rng(1);
  const Layer layers[] = {make_layer(1536, 576, 4, group, rng), make_layer(576, 1536, 4, group, rng),
                          make_layer(49152, 576, 8, group, rng)};
  double checksum = 0;
  std::printf("group %d, one thread, best of many runs\n", group);
  for (int m : {1, 2, 8}) {
    for (const Layer& l : layers) {
      const double t = best_time(l, m, group, l.n > 10000 ? 20 : 200, checksum);
      // per row and rounding, two vpmaddubsw per 32 weight bytes (4-bit: even and odd
      // nibbles; 8-bit: low and high)
      const double issued = double(l.n) * l.k * l.bits / 8 / 32 * 2 * m * q::kRoundings;
      std::printf("%d row%s [%5d, %4d] %d-bit: %9.1f us, %.2f of vpmaddubsw's rate\n", m, m == 1 ? " " : "s", l.n,
                  l.k, l.bits, t * 1e6, issued / (t * ghz * 1e9));
    }
  }
  std::printf("checksum %.6g\n", checksum);
  return 0;
}
