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
#include <algorithm>
#include <cmath>
#include <cstdint>
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

// inputs: gate and up (one shape, float32, row-major); output: silu(gate) * up.
class SiluMulCpu : public mx::Primitive {
 public:
  SiluMulCpu(mx::Stream s, bool portable) : mx::Primitive(s), portable_(portable) {}

  void eval_cpu(const std::vector<mx::array>& inputs, std::vector<mx::array>& outputs) override {
    auto& out = outputs[0];
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) enc.set_input_array(in);
    enc.set_output_array(out);
    enc.dispatch([g = inputs[0].data<float>(), u = inputs[1].data<float>(), o = out.data<float>(), n = out.size(),
                  portable = portable_]() {
      const int chunks = int((n + kSiluChunk - 1) / kSiluChunk);
      kernels::parallel_for(
          chunks,
          [&](int c0, int c1) {
            const size_t a = size_t(c0) * kSiluChunk, b = std::min(n, size_t(c1) * kSiluChunk);
            kernels::silu_mul(g + a, u + a, o + a, b - a, portable);
          },
          1);
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("cortex silu_mul runs on the CPU only");
  }

  const char* name() const override { return "CortexSiluMul"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    return portable_ == static_cast<const SiluMulCpu&>(other).portable_;
  }

 private:
  bool portable_;
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
