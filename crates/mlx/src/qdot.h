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
// `chunk` > 0 sets the chunk of the 4-bit order (the rows16 kernel takes 8) instead of the one
// chunk_for picks for isa. The SIMD code (AVX-512, else AVX2; unless `portable`) and the
// portable code give the same bytes and floats: group sums in one order (16 lanes, then halves
// folded), the same float operations per value.
void quantize(const float* x, int m, int k, int group, int bits, Isa isa, Activations& out, int chunk = 0,
              bool portable = false);

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

// ---- weights repacked 16 rows per vector (qdot16.cc) ----
// The kernels above spend a float epilogue (convert, scale, add) per weight row and group, and
// a horizontal sum per output. Repacked, the 16 lanes of a vector are 16 weight rows: a block
// of 16 rows holds, for each 4-byte chunk of a row (8 4-bit or 4 8-bit weights), the 16 rows'
// chunks side by side (64 bytes). Every block's chunks come first, then every block's scales
// and biases as float32 [groups][16] each (kept apart, the chunks stream through memory
// unbroken: with each block's scales right after its chunks, decode read half as fast).
// One vpdpbusd against an activation chunk broadcast does 4 multiply-adds for each of 16 rows,
// the epilogue runs once per 16 rows, and the 16 outputs are stored as they are. The
// activations are Activations with 4-bit chunks of 8 (quantize's `chunk`).
constexpr int kRows16 = 16;

// Bytes per block of 16 rows; 0 when the kernel does not take (bits, group).
int64_t rows16_block_bytes(int k, int group, int bits);

// Packs weight rows 0..n (MLX's layout: row r's k * bits / 8 bytes; float32 scales and biases
// [n, k / group]) into ceil(n / 16) blocks at out; the rows past n are zero.
void pack_rows16(const uint8_t* w, const float* scales, const float* biases, int n, int k, int group, int bits,
                 uint8_t* out);

// The activations as the SIMD rows16 kernels read them: rows in bands of kBand (the last
// band padded with zero rows), each band one stream the kernel walks with a single pointer:
// per chunk the band's rows' and roundings' activation words side by side ([chunk][row]
// [rounding][4-bit: even word, odd word]); then per group the rows' scales and sums
// ([group][row][rounding] scales, then [group][row] sums). With Activations' rows apart, the
// kernel kept a pointer per row and rounding and spent as many instructions moving them and
// its accumulators as it did on dot products.
constexpr int kBand = 4;
// (word: a chunk's activation bytes per row and rounding, 8 for 4-bit weights, 4 for 8-bit)
struct Bands {
  std::vector<int8_t> q;    // [bands][chunks][kBand][kRoundings][word]
  std::vector<float> side;  // [bands][groups][kSideFloats]
  static constexpr int kSideFloats = kBand * kRoundings + kBand;
};
void make_bands(const Activations& a, int bits, Bands& out);

struct Problem16 {
  const Activations* a;
  const uint8_t* packed;  // the blocks
  float* out;             // [a->m / kRoundings, stride]
  int n, stride, bits;
  const Bands* bands = nullptr;  // make_bands(*a, bits): the SIMD kernels need them
};

// Blocks b0..b1 (rows 16 * b0 .. min(n, 16 * b1)) for every row of x; AVX-512 VNNI when the
// CPU has it, else AVX2 (vpmaddubsw, 8 rows to a vector), when `portable` is false and
// p.bands is set, else portable code with the same float operations in the same order
// (bit-identical results).
void rows16(const Problem16& p, int b0, int b1, bool portable);

}  // namespace cortex_mlx::qdot
