// Integer-dot kernels for x @ dequantize(w).T with 4- and 8-bit affine weights (src/qgemv.cc
// runs them): the activations are quantized to int8 per weight group (two
// roundings: x, then what that left over), and each group's
// dot(q, x) becomes an exact integer dot product (VNNI's vpdpbusd: unsigned weight bytes times
// signed activation bytes), scaled once per group. A row's result does not depend on how many
// rows go through together.
#pragma once
#include <cstdint>
#include <vector>

namespace cortex_mlx::qdot {

// The instruction sets the kernels use, best first; chosen at run time (see best_isa).
enum class Isa { Avx512Vnni, AvxVnni, Avx2, Scalar };

// The best this CPU runs (CORTEX_QDOT_ISA=avx512vnni|avxvnni|avx2|scalar caps it, for tests
// and benchmarks of the slower paths).
Isa best_isa();
const char* isa_name(Isa isa);

// Rows of x quantized per group of `group` values: value i of a group is q[i] * scale[g]
// (scale = max |x| / 127, round to nearest even), `sum` holds the float sums of x per group
// (for the weights' bias term, kept exact). For 4-bit weights the bytes are stored in the
// order the kernel unpacks nibbles (even positions, then odd, per chunk); `chunk` says how
// many values one chunk spans.
struct Activations {
  int m = 0, k = 0, group = 0, chunk = 0;
  std::vector<int8_t> q;      // [m, k]
  std::vector<float> scale;   // [m, k / group]
  std::vector<float> sum;     // [m, k / group]
};

// The chunk (values per permuted block) the kernel for (isa, bits, group) reads; 0: none.
int chunk_for(Isa isa, int bits, int group);

// Each row of x becomes kRoundings rows of int8: the first rounds x, each next one rounds what
// the rows before it left over, at its own scale (x = q0 * scale0 + q1 * scale1 + a far smaller
// error). Only the first row carries x's group sums, so the bias term counts once.
constexpr int kRoundings = 2;
void quantize(const float* x, int m, int k, int group, int bits, Isa isa, Activations& out);

struct Problem {
  const Activations* a;
  const uint8_t* w;      // [n, k * bits / 8]
  const float* scales;   // [n, k / group]
  const float* biases;   // [n, k / group]
  float* out;            // [m, n]
  int n, bits;
  Isa isa;
};

// Output columns n0..n1 for every row of the activations.
void rows(const Problem& p, int n0, int n1);

}  // namespace cortex_mlx::qdot
