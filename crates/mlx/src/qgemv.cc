// A CPU kernel for MLX: x @ dequantize(w).T for affine 4- and 8-bit weights and few rows of x
// (decode). MLX's own CPU quantized matmul is generic, single-threaded code; decode on a CPU
// is dominated by it. This primitive unpacks with AVX2/FMA (when the CPU has them) and splits
// output rows across a small persistent thread pool; the row kernels themselves are in
// qgemv_rows.cc, the int8-activation ones in qdot.cc and qdot16.cc. Numerics: per group, out += s * dot(q, x)
// + b * sum(x), the same affine form as MLX's kernel, accumulated in float32.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <string>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
// GCC 12's AVX-512 intrinsics start from _mm512_undefined_*, which it reports as used
// uninitialized once they are inlined (a known false positive).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
#endif
#endif

#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"
#include "kernels.h"
#include "qdot.h"
#include "qgemv_rows.h"
#include "shim.h"

namespace mx = mlx::core;

namespace cortex_mlx {
namespace {

using kernels::gather_contiguous;
using kernels::have_avx2;
using kernels::have_avx512;
using kernels::run_kernel;

using gemv_rows::Problem;
using gemv_rows::rows_scalar;
using gemv_rows::dense_rows_scalar;
#if defined(__x86_64__)
using gemv_rows::dense_rows_avx2;
using gemv_rows::rows_avx2;
using gemv_rows::rows_avx512;
#endif

// The int8-activation path (qdot.h): activations quantized per weight group on this thread,
// in two int8 roundings (one rounding alone flipped 6% of SmolLM2's greedy tokens; two leave
// x's error about 127 times smaller), the integer dot kernels on the pool. Only for the shapes its kernels take (4/8 bits, groups of
// a multiple of 32); others run the float kernel.
bool run_int8(const Problem& p, bool force_scalar) {
  const qdot::Isa isa = force_scalar ? qdot::Isa::Scalar : qdot::best_isa();
  if (qdot::chunk_for(isa, p.bits, p.group) == 0) return false;
  thread_local qdot::Activations acts;
  qdot::quantize(p.x, p.m, p.k, p.group, p.bits, isa, acts, 0, force_scalar);
  // Each row of x is kRoundings activation rows, which the kernels take like a batch: the
  // weights are read once; the row's result is the sum of its parts.
  thread_local std::vector<float> parts;
  parts.resize(size_t(acts.m) * p.n);
  const qdot::Problem q{&acts, p.w, p.scales, p.biases, parts.data(), p.n, p.bits, isa};
  if (p.side == kernels::SideType::F32) {
    kernels::parallel_for(p.n, [&q](int a, int b) { qdot::rows(q, a, b); });
  } else {
    // 16-bit scales and biases: widened per piece of rows, as run_rows does for the float kernels
    const kernels::Widen widen = force_scalar ? kernels::widen_portable : kernels::widen_simd;
    const size_t row_bytes = size_t(p.k) * p.bits / 8;
    kernels::parallel_for(p.n, [&](int n0, int n1) {
      kernels::with_wide_sides(p.scales16, p.biases16, p.side, p.k / p.group, n0, n1, widen,
                               [&](int a, int b, const float* s, const float* bi) {
                                 qdot::Problem piece = q;
                                 piece.w = q.w + size_t(a) * row_bytes;
                                 piece.scales = s;
                                 piece.biases = bi;
                                 piece.out = q.out + a;
                                 qdot::rows(piece, 0, b - a);
                               });
    });
  }
  for (int row = 0; row < p.m; ++row) {
    float* o = p.out + size_t(row) * p.n;
    const float* part = parts.data() + size_t(row) * qdot::kRoundings * p.n;
    std::copy(part, part + p.n, o);
    for (int k = 1; k < qdot::kRoundings; ++k) {
      for (int c = 0; c < p.n; ++c) o[c] += part[size_t(k) * p.n + c];
    }
  }
  return true;
}

// The int8 path on weights repacked 16 rows per vector (qdot::rows16): x quantized once for
// all the problems, their blocks of 16 rows numbered one after another across the pool.
void run_packed(std::vector<Problem>& ps, bool force_scalar) {
  const Problem& p = ps[0];
  thread_local qdot::Activations acts;
  thread_local qdot::Bands bands;
  qdot::quantize(p.x, p.m, p.k, p.group, p.bits, qdot::Isa::Scalar, acts, 8, force_scalar);
  if (!force_scalar) qdot::make_bands(acts, p.bits, bands);
  std::vector<qdot::Problem16> qs;
  std::vector<int> first;  // each problem's first block in the numbering
  int blocks = 0;
  for (const auto& q : ps) {
    qs.push_back(qdot::Problem16{&acts, q.packed, q.out, q.n, q.n, q.bits, force_scalar ? nullptr : &bands});
    first.push_back(blocks);
    blocks += (q.n + qdot::kRows16 - 1) / qdot::kRows16;
  }
  kernels::parallel_for(blocks, [&](int b0, int b1) {
    for (size_t i = 0; i < qs.size(); ++i) {
      const int end = i + 1 < qs.size() ? first[i + 1] : blocks;
      const int lo = std::max(b0, first[i]), hi = std::min(b1, end);
      if (lo < hi) qdot::rows16(qs[i], lo - first[i], hi - first[i], force_scalar);
    }
  });
}

// x in the order of the SIMD kernels' unpacked 4-bit slices: in each run of `slice` values
// (16 or 32), the even-indexed ones, then the odd-indexed ones. `n` is a multiple of `slice`.
void permute_for_nibbles(const float* x, size_t n, int slice, float* out) {
  const int half = slice / 2;
  for (size_t c = 0; c < n; c += slice) {
    for (int t = 0; t < half; ++t) {
      out[c + t] = x[c + 2 * t];
      out[c + half + t] = x[c + 2 * t + 1];
    }
  }
}

// Several weights against the same rows of x (q/k/v, gate/up), their output rows numbered one
// after another: a chunk of rows may span two weights.
struct Batch {
  const Problem* ps;
  int count;
};

// K on weight rows n0..n1 of p. With a widening function W, 16-bit scales and biases are
// widened a piece of rows at a time (kernels::with_wide_sides), and K runs each piece as a
// problem of its own: the piece's packed rows, its widened floats, its output columns (the row
// stride stays p.n). Without one (nullptr), K reads them as stored.
template <void (*K)(const Problem&, int, int), kernels::Widen W>
void run_rows(const Problem& p, int n0, int n1) {
  if constexpr (W == nullptr) {
    return K(p, n0, n1);
  }
  if (p.side == kernels::SideType::F32) return K(p, n0, n1);
  const size_t row_bytes = size_t(p.k) * p.bits / 8;
  kernels::with_wide_sides(p.scales16, p.biases16, p.side, p.k / p.group, n0, n1, W,
                           [&p, row_bytes](int a, int b, const float* s, const float* bi) {
                             Problem piece = p;
                             piece.w = p.w + size_t(a) * row_bytes;
                             piece.scales = s;
                             piece.biases = bi;
                             piece.out = p.out + a;
                             piece.side = kernels::SideType::F32;
                             K(piece, 0, b - a);
                           });
}

template <void (*K)(const Problem&, int, int), kernels::Widen W>
void batch_rows(const Batch& b, int r0, int r1) {
  int off = 0;
  for (int i = 0; i < b.count; ++i) {
    const Problem& p = b.ps[i];
    const int lo = std::max(r0, off), hi = std::min(r1, off + p.n);
    if (lo < hi) run_rows<K, W>(p, lo - off, hi - off);
    off += p.n;
  }
}

// Runs the problems (which share x, m, k, group and bits) in one pool dispatch; x's group sums
// and its permutation for the 4-bit kernels are computed once for all of them.
void run_problems(std::vector<Problem>& ps, bool force_scalar, bool int8) {
  int total = 0;
  for (auto& q : ps) total += q.n;
  const Problem& p = ps[0];
  if (p.bits == 32) {
    run_kernel<Batch>(Batch{ps.data(), int(ps.size())}, total, AVX2_KERNEL((batch_rows<dense_rows_avx2, kernels::widen_simd>)),
                      batch_rows<dense_rows_scalar, kernels::widen_portable>, force_scalar);
    return;
  }
  if (int8 && p.packed != nullptr) {
    run_packed(ps, force_scalar);
    return;
  }
  if (int8 && run_int8(ps[0], force_scalar)) {
    for (size_t i = 1; i < ps.size(); ++i) run_int8(ps[i], force_scalar);
    return;
  }
  const int groups = p.k / p.group;
  thread_local std::vector<float> xsums;
  xsums.resize(size_t(p.m) * groups);
  for (int m = 0; m < p.m; ++m) {
    for (int g = 0; g < groups; ++g) {
      float s = 0.f;
      for (int i = 0; i < p.group; ++i) s += p.x[size_t(m) * p.k + g * p.group + i];
      xsums[size_t(m) * groups + g] = s;
    }
  }
  const float* x = p.x;
  const bool simd = have_avx2() && !force_scalar;
  // 16 lanes where the CPU has them and the group holds whole slices (32 4-bit or 16 8-bit weights)
  const bool wide = simd && have_avx512() && p.group % (p.bits == 4 ? 32 : 16) == 0;
  const int slice = wide ? 32 : 16;
  if (simd && p.bits == 4 && p.group % slice == 0) {
    thread_local std::vector<float> permuted;
    permuted.resize(size_t(p.m) * p.k);
    permute_for_nibbles(p.x, size_t(p.m) * p.k, slice, permuted.data());
    x = permuted.data();
  }
  for (auto& q : ps) {
    q.xsums = xsums.data();
    q.x = x;
  }
  run_kernel<Batch>(Batch{ps.data(), int(ps.size())}, total,
                    wide ? AVX2_KERNEL((batch_rows<rows_avx512, nullptr>)) : AVX2_KERNEL((batch_rows<rows_avx2, nullptr>)),
                    batch_rows<rows_scalar, kernels::widen_portable>, force_scalar);
}

// How scales and biases of dtype t are stored (push_quantized lets only these through).
kernels::SideType side_type(mx::Dtype t) {
  if (t == mx::float16) return kernels::SideType::F16;
  if (t == mx::bfloat16) return kernels::SideType::BF16;
  return kernels::SideType::F32;
}

// What a QGemv node computes after its matmuls.
enum class Epilogue : int { None = 0, SwiGlu = 1 };

// x @ W_i.T for one or more weights W_i (quantized: packed w, scales, biases; or dense float32
// when bits is 32), one output each; with the SwiGLU epilogue two weights (gate, up) and one
// output, silu(x @ gate.T) * (x @ up.T).
class QGemv : public mx::Primitive {
 public:
  QGemv(mx::Stream s, int group, int bits, int count, Epilogue epilogue, bool scalar, bool int8, bool packed)
      : mx::Primitive(s),
        group_(group),
        bits_(bits),
        count_(count),
        epilogue_(epilogue),
        scalar_(scalar),
        int8_(int8),
        packed_(packed) {}

  // inputs: x, then per weight w and, for quantized weights (bits 4 or 8), scales and biases,
  // and when packed (int8 activations) its qdot::rows16 blocks.
  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    const auto& x = inputs[0];
    const int per = bits_ == 32 ? 1 : packed_ ? 4 : 3;
    for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) enc.set_input_array(in);
    for (auto& o : outputs) enc.set_output_array(o);
    const bool swiglu = epilogue_ == Epilogue::SwiGlu;
    std::vector<Problem> ps;
    for (int i = 0; i < count_; ++i) {
      const auto& w = inputs[1 + i * per];
      Problem p{x.data<float>(), w.data<uint8_t>(), nullptr, nullptr, nullptr, swiglu ? nullptr : outputs[i].data<float>(),
                int(x.size() / x.shape(-1)), int(w.shape(0)), int(x.shape(-1)), group_, bits_};
      if (packed_) p.packed = inputs[4 + i * per].data<uint8_t>();
      if (per >= 3) {
        const auto &sc = inputs[2 + i * per], &bi = inputs[3 + i * per];
        p.side = side_type(sc.dtype());
        if (p.side == kernels::SideType::F32) {
          p.scales = sc.data<float>();
          p.biases = bi.data<float>();
        } else {
          p.scales16 = sc.data<uint16_t>();
          p.biases16 = bi.data<uint16_t>();
        }
      }
      ps.push_back(p);
    }
    float* fused = swiglu ? outputs[0].data<float>() : nullptr;
    // x may be a view (transposed heads, a slice): gathered when its data is ready.
    enc.dispatch([ps = std::move(ps), fused, gather = !x.flags().row_contiguous, shape = x.shape(),
                  strides = x.strides(), scalar = scalar_, int8 = int8_]() mutable {
      thread_local std::vector<float> buf, gate, up;
      if (gather) {
        buf.resize(size_t(ps[0].m) * ps[0].k);
        gather_contiguous(ps[0].x, shape, strides, buf.data());
        for (auto& p : ps) p.x = buf.data();
      }
      const size_t outs = size_t(ps[0].m) * ps[0].n;
      if (fused != nullptr) {
        gate.resize(outs);
        up.resize(outs);
        ps[0].out = gate.data();
        ps[1].out = up.data();
      }
      run_problems(ps, scalar, int8);
      // silu(g) * u in 16 lanes (std::exp per value had been 2-3% of a batch-8 step, serial)
      if (fused != nullptr) kernels::silu_mul(gate.data(), up.data(), fused, outs, scalar);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("cortex qgemv runs on the CPU only");
  }

  const char* name() const override { return "CortexQGemv"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const QGemv&>(other);
    return group_ == o.group_ && bits_ == o.bits_ && count_ == o.count_ && epilogue_ == o.epilogue_ &&
           scalar_ == o.scalar_ && int8_ == o.int8_ && packed_ == o.packed_;
  }

 private:
  int group_, bits_, count_;
  Epilogue epilogue_;
  bool scalar_, int8_, packed_;
};

// Whether kernels made on this thread use the portable code only.
thread_local bool scalar_kernels = false;
// Whether quantized matmuls made on this thread quantize their activations to int8 (qdot.h).
thread_local bool int8_activations = false;

}  // namespace

void set_scalar_kernels(bool scalar) { scalar_kernels = scalar; }

void set_int8_activations(bool int8) { int8_activations = int8; }

rust::String int8_kernel_name() { return qdot::isa_name(qdot::best_isa()); }

bool cpu_has_avx2() { return have_avx2(); }

void set_pool_workers_only(bool only) { kernels::set_pool_workers_only(only); }

namespace kernels {

bool scalar_now() { return scalar_kernels; }

}  // namespace kernels

using kernels::weight_input;

mx::array as_f32(const mx::array& a, mx::Stream s) {
  return a.dtype() == mx::float32 ? a : mx::astype(a, mx::float32, s);
}

// The rows of x checked and made float32; the kernel divides by k, so rows may not be empty.
mx::array input_rows(const Array& x, mx::Stream s, const char* op) {
  if (x.inner.ndim() < 1 || x.inner.shape(-1) <= 0) throw std::invalid_argument(std::string(op) + ": the input rows are empty");
  return as_f32(x.inner, s);
}

// A dense [N, K] weight for x's K, as the kernel reads it.
void push_dense(std::vector<mx::array>& inputs, const mx::array& w, int64_t k, mx::Stream s) {
  if (w.ndim() != 2 || w.shape(1) != k) throw std::invalid_argument("gemv: weight [N, K] does not match the input size");
  inputs.push_back(weight_input(w, s, true));
}

// A quantized weight (packed w [N, K * bits / 32], scales and biases [N, K / group]) for x's K.
void push_quantized(std::vector<mx::array>& inputs, const mx::array& w, const mx::array& scales,
                    const mx::array& biases, int64_t k, int group_size, int bits, mx::Stream s) {
  if (bits != 4 && bits != 8) throw std::invalid_argument("qgemv supports 4 and 8 bits");
  // The kernel divides by the group size: it must be positive.
  if (group_size <= 0 || group_size % 8 != 0) {
    throw std::invalid_argument("qgemv needs a positive group size divisible by 8");
  }
  // Sizes in int64: packed words x 32 overflows int32 for a wide enough (hostile) weight.
  if (w.dtype() != mx::uint32 || w.ndim() != 2 || int64_t(w.shape(1)) * 32 / bits != k) {
    throw std::invalid_argument("qgemv: packed weight does not match the input size");
  }
  const auto n = w.shape(0);
  if (scales.ndim() != 2 || scales.shape(0) != n || int64_t(scales.shape(1)) * group_size != k ||
      biases.shape() != scales.shape()) {
    throw std::invalid_argument("qgemv: scales/biases do not match the weight");
  }
  // Scales and biases go in as stored when both are float32 or both the same 16-bit type (the
  // kernels widen those); any other pair is made float32 here.
  const auto t = scales.dtype();
  const bool as_stored = biases.dtype() == t && (t == mx::float32 || t == mx::float16 || t == mx::bfloat16);
  inputs.push_back(weight_input(w, s, false));
  inputs.push_back(weight_input(scales, s, !as_stored));
  inputs.push_back(weight_input(biases, s, !as_stored));
}

// The node for inputs (x, then the weights' arrays): one output per weight, or the SwiGLU of
// the two.
// `packed`: each quantized weight comes with its pack_rows16 blocks (the caller passes them
// only to nodes that take the int8 path).
std::vector<mx::array> gemv_node(std::vector<mx::array> inputs, int group, int bits, bool swiglu, mx::Stream s,
                                 bool packed = false) {
  const int per = bits == 32 ? 1 : packed ? 4 : 3;
  const int count = int(inputs.size() - 1) / per;
  if (count < 1) throw std::invalid_argument("qgemv: no weights");
  if (swiglu && count != 2) throw std::invalid_argument("qgemv: SwiGLU takes a gate and an up weight");
  std::vector<mx::Shape> shapes;
  for (int i = 0; i < (swiglu ? 1 : count); ++i) {
    shapes.push_back(inputs[0].shape());
    shapes.back().back() = inputs[1 + i * per].shape(0);
  }
  if (swiglu && inputs[1].shape(0) != inputs[1 + per].shape(0)) {
    throw std::invalid_argument("qgemv: SwiGLU's gate and up weights have different output sizes");
  }
  // int8 activations are decode's option (up to 8 rows); longer inputs (prefill) stay float.
  const int64_t rows = int64_t(inputs[0].size()) / inputs[0].shape(-1);
  const bool int8 = bits != 32 && int8_activations && rows <= 8;
  return mx::array::make_arrays(
      shapes, std::vector<mx::Dtype>(shapes.size(), mx::float32),
      std::make_shared<QGemv>(s, group, bits, count, swiglu ? Epilogue::SwiGlu : Epilogue::None, scalar_kernels, int8,
                              packed),
      std::move(inputs));
}

std::unique_ptr<ArrayList> as_list(std::vector<mx::array> arrays) {
  auto list = std::make_unique<ArrayList>();
  for (auto& a : arrays) {
    list->items.push_back(std::move(a));
    list->names.emplace_back();
  }
  return list;
}

ArrayPtr gemv_f32(const Array& x, const Array& w) {
  auto s = mx::default_stream(mx::Device::cpu);
  std::vector<mx::array> inputs{input_rows(x, s, "gemv")};
  push_dense(inputs, w.inner, x.inner.shape(-1), s);
  return std::make_unique<Array>(gemv_node(std::move(inputs), 0, 32, false, s)[0]);
}

ArrayPtr qgemv(const Array& x, const Array& w, const Array& scales, const Array& biases, int32_t group_size,
               int32_t bits) {
  auto s = mx::default_stream(mx::Device::cpu);
  std::vector<mx::array> inputs{input_rows(x, s, "qgemv")};
  push_quantized(inputs, w.inner, scales.inner, biases.inner, x.inner.shape(-1), group_size, bits, s);
  return std::make_unique<Array>(gemv_node(std::move(inputs), group_size, bits, false, s)[0]);
}

std::unique_ptr<ArrayList> gemv_many(const Array& x, const ArrayList& weights, int32_t group_size, int32_t bits,
                                     bool swiglu, bool packed) {
  auto s = mx::default_stream(mx::Device::cpu);
  std::vector<mx::array> inputs{input_rows(x, s, "qgemv")};
  const int64_t k = x.inner.shape(-1);
  const auto& w = weights.items;
  // The repacked blocks serve the int8 path only (up to 8 rows with int8 activations on);
  // otherwise they are left out of the node.
  const int64_t rows = int64_t(inputs[0].size()) / k;
  const bool use_packed = packed && bits != 32 && int8_activations && rows <= 8;
  if (bits == 32) {
    for (const auto& a : w) push_dense(inputs, a, k, s);
  } else {
    const size_t per = packed ? 4 : 3;
    if (w.size() % per != 0) {
      throw std::invalid_argument(packed ? "qgemv: weights come as (w, scales, biases, packed) quadruples"
                                         : "qgemv: weights come as (w, scales, biases) triples");
    }
    for (size_t i = 0; i < w.size(); i += per) {
      push_quantized(inputs, w[i], w[i + 1], w[i + 2], k, group_size, bits, s);
      if (!use_packed) continue;
      const int64_t block = qdot::rows16_block_bytes(int(k), group_size, bits);
      const int64_t blocks = (int64_t(w[i].shape(0)) + qdot::kRows16 - 1) / qdot::kRows16;
      if (block == 0 || w[i + 3].dtype() != mx::uint8 || int64_t(w[i + 3].size()) != blocks * block) {
        throw std::invalid_argument("qgemv: the packed blocks do not match the weight");
      }
      inputs.push_back(weight_input(w[i + 3], s, false));
    }
  }
  return as_list(gemv_node(std::move(inputs), group_size, bits, swiglu, s, use_packed));
}

ArrayPtr pack_rows16(const Array& w, const Array& scales, const Array& biases, int32_t group_size, int32_t bits) {
  auto s = mx::default_stream(mx::Device::cpu);
  if (w.inner.ndim() != 2 || w.inner.shape(0) <= 0) throw std::invalid_argument("pack_rows16: weight must be [N, K * bits / 32]");
  const int64_t k = int64_t(w.inner.shape(1)) * 32 / (bits > 0 ? bits : 1);
  const int64_t block = qdot::rows16_block_bytes(int(std::min<int64_t>(k, INT32_MAX)), group_size, bits);
  if (block == 0 || k > INT32_MAX) return nullptr;
  if (block > INT32_MAX) throw std::invalid_argument("pack_rows16: weight rows too wide");
  std::vector<mx::array> in;
  push_quantized(in, w.inner, scales.inner, biases.inner, k, group_size, bits, s);
  // float32 sides, row-contiguous, evaluated
  for (size_t i = 1; i < 3; ++i) in[i] = mx::contiguous(mx::astype(in[i], mx::float32, s), false, s);
  mx::eval(in);
  const int n = int(w.inner.shape(0));
  const int64_t blocks = (n + qdot::kRows16 - 1) / qdot::kRows16;
  mx::array out(mx::allocator::malloc(size_t(blocks * block)), mx::Shape{int(blocks), int(block)}, mx::uint8);
  qdot::pack_rows16(in[0].data<uint8_t>(), in[1].data<float>(), in[2].data<float>(), n, int(k), group_size, bits,
                    out.data<uint8_t>());
  return std::make_unique<Array>(std::move(out));
}

}  // namespace cortex_mlx
