// The decode and prompt attention kernels of src/attention.cc: the KV cache's element types
// and row format, what a kernel reads (Attn), and attention over the pool of kernel threads
// (AVX-512, 8-lane and portable code, in src/attention_kernels.cc).
#pragma once

#include <cstdint>
#include <cstring>
#include <type_traits>

namespace cortex_mlx::attn {

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


// One part of a row's positions when attend splits long rows (see kSplit in
// attention_kernels.cc): row b's positions start..start + n - 1, its Hq heads' outputs written
// normalized over the part to o ([Hq, D]) with each head's score max and exp-sum to ms
// ([Hq][2]), for attend to combine.
struct Part {
  int b, start, n;
  float* o;
  float* ms;
};

// Attention for one query per sequence over its cached keys and values.
struct Attn {
  const float* q;        // [B, Hq, D], RoPE applied
  const void* k;         // storage (float, Half or Q8 rows), see pos_stride / head_stride
  const void* v;
  const int32_t* table;  // [B, S]: slot of position j of sequence b; null: slot j is position j
  const int32_t* lens;   // [B]: keys of sequence b (its query sits at position lens[b] - 1)
  float* out;            // [B, Hq, D]
  int hq, hkv, d, s;
  int64_t pos_stride, head_stride;  // elements between slots, and between heads of a slot
  float scale, softcap;
  int window;            // 0: none; else the query sees its last `window` positions
  const Part* parts = nullptr;  // set by attend alone: the kernels' rows are these parts

  template <class T>
  const T* at(const void* base, int b, int j, int kvh) const {
    const int64_t slot = table != nullptr ? table[size_t(b) * s + j] : j;
    return static_cast<const T*>(base) + slot * pos_stride + kvh * head_stride;
  }
};

// The storage's element type, as a value.
enum class Elem { F32, F16, Q8 };

// Calls f with a value of the storage's element type: f(float{}), f(Half{}) or f(Q8{}).
template <class F>
void with_elem(Elem e, F&& f) {
  switch (e) {
    case Elem::F16: return f(Half{});
    case Elem::Q8: return f(Q8{});
    case Elem::F32: return f(float{});
  }
}

// Attention for r query rows (a.q [r, Hq, D], a.lens set) over storage of element type T
// (float, Half or Q8), on the kernel pool; `scalar`: the portable code.
template <class T>
void attend(const Attn& a, int r, bool scalar);

}  // namespace cortex_mlx::attn
