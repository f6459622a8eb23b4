// RMSNorm on the CPU as one graph node, optionally with the residual add before it.
// MLX's fast::rms_norm has no CPU kernel: off the GPU it builds its fallback, about ten graph
// nodes (square, mean, add, rsqrt, multiplies, broadcasts) for each norm, and a decoder runs
// two norms and two residual adds per layer per token. Every node costs a trip through MLX's
// scheduler on the thread that evaluates and on the stream thread; for a small model in
// decode that overhead was a large part of a token's time.
// Numerics are the fallback's in float32: y = (x * rsqrt(mean(x^2) + eps)) * w, the sum of
// squares accumulated in 16 fixed lanes, so a row's result does not depend on the other rows.
// Rows go to the kernel pool in chunks (a prompt's hundreds of rows; decode's few run inline).
//
// Also here: SwiGLU's elementwise step, silu(gate) * up, as one node for what the prefill's MLP
// otherwise builds from MLX's sigmoid and two multiplies. Off Apple silicon MLX's CPU
// elementwise code is scalar (an exp and libm fma calls per value): it was a seventh of the
// stream thread's time in a batch of 8 prompts of 128 tokens.
//
// And greedy sampling's argmax over the vocabulary, which MLX's CPU code scans one value at a
// time on the stream thread (2.6% of a batch-8 decode step there).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <functional>
#include <stdexcept>
#include <string>
#include <vector>

#include "kernels.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"
#include "shim.h"

namespace mx = mlx::core;

namespace cortex_mlx {
namespace {

// One row: h = x + r when r is given (written to `sum`), then y = norm(h) * w.
void norm_row(const float* x, const float* r, const float* w, float eps, int d, float* sum, float* y) {
  const float* h = x;
  if (r != nullptr) {
    for (int i = 0; i < d; ++i) sum[i] = x[i] + r[i];
    h = sum;
  }
  constexpr int kLanes = 16;
  float lanes[kLanes] = {};
  int i = 0;
  for (; i + kLanes <= d; i += kLanes) {
    for (int l = 0; l < kLanes; ++l) lanes[l] += h[i + l] * h[i + l];
  }
  for (; i < d; ++i) lanes[i % kLanes] += h[i] * h[i];
  float ss = 0.f;
  for (float l : lanes) ss += l;
  const float inv = 1.f / std::sqrt(ss / float(d) + eps);
  for (int j = 0; j < d; ++j) y[j] = (h[j] * inv) * w[j];
}

// inputs: x, w, and with a residual r; outputs: y, and with a residual the sum x + r.
class RmsNormCpu : public mx::Primitive {
 public:
  RmsNormCpu(mx::Stream s, float eps, bool residual) : mx::Primitive(s), eps_(eps), residual_(residual) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    for (auto& o : outputs) o.set_data(mx::allocator::malloc(o.nbytes()));
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) enc.set_input_array(in);
    for (auto& o : outputs) enc.set_output_array(o);
    const auto& x = inputs[0];
    const int d = int(x.shape(-1));
    const int rows = d > 0 ? int(x.size() / size_t(d)) : 0;
    // An input may be a view (a slice, a broadcast): gathered when its data is ready.
    std::vector<kernels::Strided> ins{kernels::Strided(x), kernels::Strided(inputs[1])};
    if (residual_) ins.emplace_back(inputs[2]);
    float* y = outputs[0].data<float>();
    float* sum = residual_ ? outputs[1].data<float>() : nullptr;
    enc.dispatch([ins = std::move(ins), y, sum, rows, d, eps = eps_]() {
      thread_local std::vector<float> bufs[3];
      const float* p[3] = {};
      for (size_t i = 0; i < ins.size(); ++i) p[i] = ins[i].rows(bufs[i]);
      kernels::parallel_for(rows, [&](int r0, int r1) {
        for (int row = r0; row < r1; ++row) {
          const size_t at = size_t(row) * d;
          norm_row(p[0] + at, p[2] != nullptr ? p[2] + at : nullptr, p[1], eps, d,
                   sum != nullptr ? sum + at : nullptr, y + at);
        }
      });
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("cortex rms_norm runs on the CPU only");
  }

  const char* name() const override { return "CortexRmsNorm"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const RmsNormCpu&>(other);
    return eps_ == o.eps_ && residual_ == o.residual_;
  }

 private:
  float eps_;
  bool residual_;
};

// Values per chunk of SwiGLU's work on the pool (a multiple of 16: every chunk but the last
// runs whole vectors, and each value takes the same operations wherever it falls).
constexpr int kSiluChunk = 4096;

// A CPU-only node of one output whose one setting is whether it runs the portable code: `job`
// gets the evaluated inputs and the allocated output and returns the work for the stream.
class CpuNode : public mx::Primitive {
 public:
  CpuNode(mx::Stream s, bool portable, const char* name) : mx::Primitive(s), portable_(portable), name_(name) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    auto& out = outputs[0];
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) enc.set_input_array(in);
    enc.set_output_array(out);
    enc.dispatch(job(inputs, out));
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error(std::string(name_) + " runs on the CPU only");
  }

  const char* name() const override { return name_; }

  bool is_equivalent(const mx::Primitive& other) const override {
    const auto* o = dynamic_cast<const CpuNode*>(&other);
    return o != nullptr && std::string(o->name_) == name_ && o->portable_ == portable_;
  }

 protected:
  virtual std::function<void()> job(const std::vector<mx::array>& inputs, mx::array& out) const = 0;
  bool portable_;

 private:
  const char* name_;
};

// inputs: gate and up (one shape, float32, row-major); output: silu(gate) * up.
class SiluMulCpu : public CpuNode {
 public:
  SiluMulCpu(mx::Stream s, bool portable) : CpuNode(s, portable, "CortexSiluMul") {}

 protected:
  std::function<void()> job(const std::vector<mx::array>& inputs, mx::array& out) const override {
    return [g = inputs[0].data<float>(), u = inputs[1].data<float>(), o = out.data<float>(), n = out.size(),
            portable = portable_]() {
      const int chunks = int((n + kSiluChunk - 1) / kSiluChunk);
      kernels::parallel_for(
          chunks,
          [&](int c0, int c1) {
            const size_t a = size_t(c0) * kSiluChunk, b = std::min(n, size_t(c1) * kSiluChunk);
            kernels::silu_mul(g + a, u + a, o + a, b - a, portable);
          },
          1);
    };
  }
};

// The index MLX's argmax gives for one row of n values: NaN counts as larger than any number
// (the first NaN when the row has one), else the first maximum. Found as the maximum of the
// row and whether it holds a NaN (16 lanes where the CPU has AVX-512, else 8 with AVX2), then
// the first index holding that.
#if defined(__x86_64__)
// GCC 12 reports the "undefined" upper halves inside its own AVX-512 reduce intrinsic as
// uninitialized once it is inlined (a false positive, as in attention.cc and qdot.cc).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wuninitialized"
#pragma GCC diagnostic ignored "-Wmaybe-uninitialized"
__attribute__((target("avx512f"))) float row_max512(const float* x, int n, bool& nan) {
  __m512 best = _mm512_set1_ps(-INFINITY);
  __mmask16 nans = 0;
  for (int i = 0; i < n; i += 16) {
    const __mmask16 m = n - i >= 16 ? __mmask16(0xFFFF) : __mmask16((1u << (n - i)) - 1);
    const __m512 v = _mm512_maskz_loadu_ps(m, x + i);
    nans |= _mm512_mask_cmp_ps_mask(m, v, v, _CMP_UNORD_Q);
    // max_ps returns its second operand when either is NaN: NaNs are passed over
    best = _mm512_mask_max_ps(best, m, v, best);
  }
  nan = nans != 0;
  return _mm512_reduce_max_ps(best);
}
#pragma GCC diagnostic pop

// The same, 8 lanes: the whole vectors' maximum and NaNs; the caller scans the tail.
__attribute__((target("avx2"))) float row_max256(const float* x, int n, bool& nan) {
  __m256 best = _mm256_set1_ps(-INFINITY), nans = _mm256_setzero_ps();
  for (int i = 0; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    nans = _mm256_or_ps(nans, _mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    best = _mm256_max_ps(v, best);  // NaNs passed over, as above
  }
  nan = _mm256_movemask_ps(nans) != 0;
  __m128 h = _mm_max_ps(_mm256_castps256_ps128(best), _mm256_extractf128_ps(best, 1));
  h = _mm_max_ps(h, _mm_movehl_ps(h, h));
  return _mm_cvtss_f32(_mm_max_ss(h, _mm_movehdup_ps(h)));
}
#endif

uint32_t row_argmax(const float* x, int n, bool portable) {
  float best = -INFINITY;
  bool nan = false;
  int done = 0;  // values the SIMD code has taken; the rest one at a time
#if defined(__x86_64__)
  if (!portable && kernels::have_avx512()) {
    best = row_max512(x, n, nan);
    done = n;
  } else if (!portable && kernels::have_avx2()) {
    best = row_max256(x, n, nan);
    done = n - n % 8;
  }
#endif
  for (int i = done; i < n; ++i) {
    nan = nan || std::isnan(x[i]);
    best = x[i] > best ? x[i] : best;
  }
  for (int i = 0; i < n; ++i) {
    if (nan ? std::isnan(x[i]) : x[i] == best) return uint32_t(i);
  }
  return 0;  // every value -infinity
}

// input: x [.., n] float32 (row-major); output: uint32 [..], each row's argmax.
class ArgmaxCpu : public CpuNode {
 public:
  ArgmaxCpu(mx::Stream s, bool portable) : CpuNode(s, portable, "CortexArgmax") {}

 protected:
  std::function<void()> job(const std::vector<mx::array>& inputs, mx::array& out) const override {
    return [x = inputs[0].data<float>(), o = out.data<uint32_t>(), n = int(inputs[0].shape(-1)),
            rows = int(out.size()), portable = portable_]() {
      kernels::parallel_for(
          rows,
          [&](int r0, int r1) {
            for (int r = r0; r < r1; ++r) o[r] = row_argmax(x + size_t(r) * n, n, portable);
          },
          1);
    };
  }
};

mx::array f32(const mx::array& a, mx::Stream s) { return a.dtype() == mx::float32 ? a : mx::astype(a, mx::float32, s); }

std::vector<mx::array> norm_node(const Array& x, const Array* r, const Array& w, float eps) {
  auto s = mx::default_stream(mx::Device::cpu);
  const auto& xi = x.inner;
  if (xi.ndim() < 1 || xi.shape(-1) <= 0) throw std::invalid_argument("rms_norm: the input rows are empty");
  if (w.inner.ndim() != 1 || w.inner.shape(0) != xi.shape(-1)) {
    throw std::invalid_argument("rms_norm: the weight must be [D] for inputs [.., D]");
  }
  if (r != nullptr && r->inner.shape() != xi.shape()) {
    throw std::invalid_argument("rms_norm: the residual must have the input's shape");
  }
  std::vector<mx::array> inputs{f32(xi, s), kernels::weight_input(w.inner, s, true)};
  if (r != nullptr) inputs.push_back(f32(r->inner, s));
  const int outs = r != nullptr ? 2 : 1;
  return mx::array::make_arrays(std::vector<mx::Shape>(outs, xi.shape()), std::vector<mx::Dtype>(outs, mx::float32),
                                std::make_shared<RmsNormCpu>(s, eps, r != nullptr), std::move(inputs));
}

}  // namespace

ArrayPtr rms_norm_cpu(const Array& x, const Array& weight, float eps) {
  return std::make_unique<Array>(norm_node(x, nullptr, weight, eps)[0]);
}

ArrayPtr silu_mul_cpu(const Array& gate, const Array& up) {
  auto s = mx::default_stream(mx::Device::cpu);
  if (gate.inner.shape() != up.inner.shape()) throw std::invalid_argument("silu_mul: gate and up must have one shape");
  std::vector<mx::array> inputs{kernels::weight_input(gate.inner, s, true), kernels::weight_input(up.inner, s, true)};
  return std::make_unique<Array>(mx::array(gate.inner.shape(), mx::float32,
                                           std::make_shared<SiluMulCpu>(s, kernels::scalar_now()), std::move(inputs)));
}

ArrayPtr argmax_cpu(const Array& x) {
  auto s = mx::default_stream(mx::Device::cpu);
  const auto& xi = x.inner;
  if (xi.ndim() < 1 || xi.shape(-1) <= 0) throw std::invalid_argument("argmax: the rows are empty");
  mx::Shape shape(xi.shape().begin(), xi.shape().end() - 1);
  return std::make_unique<Array>(mx::array(shape, mx::uint32, std::make_shared<ArgmaxCpu>(s, kernels::scalar_now()),
                                           {kernels::weight_input(xi, s, true)}));
}

std::unique_ptr<ArrayList> add_rms_norm_cpu(const Array& x, const Array& residual, const Array& weight, float eps) {
  auto outs = norm_node(x, &residual, weight, eps);
  auto list = std::make_unique<ArrayList>();
  // the sum first, then its norm
  list->items.push_back(std::move(outs[1]));
  list->items.push_back(std::move(outs[0]));
  list->names.resize(2);
  return list;
}

}  // namespace cortex_mlx
