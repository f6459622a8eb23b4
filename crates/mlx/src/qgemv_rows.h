// The float matmul kernels behind qgemv.cc's node (qgemv_rows.cc): rows of x against rows of
// an affine 4- or 8-bit weight (or a dense float32 one), AVX2 / AVX-512 / portable. Each runs
// weight rows n0..n1 of one problem; the node splits rows across the pool.
#pragma once
#include <cstdint>

#include "kernels.h"

namespace cortex_mlx::gemv_rows {

struct Problem {
  const float* x;        // [m, k]
  const uint8_t* w;      // [n, k * bits / 8] bytes
  const float* scales;   // [n, k / group], when stored in float32
  const float* biases;   // [n, k / group]
  const float* xsums;    // [m, k / group]: sum of x over each group
  float* out;            // [m, n]
  int m, n, k, group, bits;
  kernels::SideType side = kernels::SideType::F32;
  const uint16_t* scales16 = nullptr;  // 16-bit scales and biases as stored (side F16/BF16): the
  const uint16_t* biases16 = nullptr;  // SIMD kernels read them, the others widen them per chunk
  const uint8_t* packed = nullptr;     // the weight repacked for qdot::rows16, if it has been
};

// Weight rows n0..n1 of p, every row of x: quantized (16-bit scales and biases read as
// stored) and dense float32, portable code.
void rows_scalar(const Problem& p, int n0, int n1);
void dense_rows_scalar(const Problem& p, int n0, int n1);
#if defined(__x86_64__)
// The same with AVX2/FMA/F16C (blocks of 4 rows of x) and AVX-512 (blocks of 8; x permuted for
// 4-bit weights, see qgemv.cc's run_problems). The caller checks the CPU.
void rows_avx2(const Problem& p, int n0, int n1);
void rows_avx512(const Problem& p, int n0, int n1);
void dense_rows_avx2(const Problem& p, int n0, int n1);
#endif

}  // namespace cortex_mlx::gemv_rows
