// A CPU kernel for MLX: x @ dequantize(w).T for affine 4- and 8-bit weights and few rows of x
// (decode). MLX's own CPU quantized matmul is generic, single-threaded code; decode on a CPU
// is dominated by it. This primitive unpacks with AVX2/FMA (when the CPU has them) and splits
// output rows across a small persistent thread pool. Numerics: per group, out += s * dot(q, x)
// + b * sum(x), the same affine form as MLX's kernel, accumulated in float32.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

#if defined(__x86_64__)
#include <immintrin.h>
#endif

#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"
#include "shim.h"

namespace mx = mlx::core;

namespace cortex_mlx {
namespace {

inline void cpu_relax() {
#if defined(__x86_64__)
  _mm_pause();
#else
  std::this_thread::yield();
#endif
}

// Runs f(0..n) split into contiguous chunks, one per worker, and waits. Decode calls it a few
// hundred times per token, microseconds apart, so workers and the caller spin briefly before
// sleeping on a condition variable: a futex wake-up per call cost about a fifth of decode time.
class Pool {
 public:
  // Never destroyed: workers wait on the condition variable for the life of the process, and
  // destroying it at exit while they wait would block exit forever.
  static Pool& get() {
    static Pool* pool = new Pool;
    return *pool;
  }

  // Several MLX streams (one per thread that uses MLX) may call at once; the pool serves one
  // caller at a time and the others compute on their own thread rather than wait.
  void run(int n, const std::function<void(int, int)>& f) {
    std::unique_lock<std::mutex> serial(run_mu_, std::try_to_lock);
    int workers = std::min<int>(threads_.size() + 1, std::max(1, n / 16));
    if (workers <= 1 || !serial.owns_lock()) {
      f(0, n);
      return;
    }
    int chunk = (n + workers - 1) / workers;
    job_ = &f;
    chunk_ = chunk;
    n_ = n;
    active_ = workers - 1;
    pending_.store(workers - 1, std::memory_order_relaxed);
    {
      std::lock_guard<std::mutex> lk(mu_);
      generation_.fetch_add(1, std::memory_order_release);
    }
    cv_.notify_all();
    f(0, std::min(chunk, n));  // the caller takes the first chunk
    for (int i = 0; i < kSpins && pending_.load(std::memory_order_acquire) != 0; ++i) cpu_relax();
    if (pending_.load(std::memory_order_acquire) != 0) {
      std::unique_lock<std::mutex> lk(mu_);
      done_.wait(lk, [&] { return pending_.load(std::memory_order_acquire) == 0; });
    }
  }

 private:
  static constexpr int kSpins = 4000;

  Pool() {
    unsigned hw = std::max(1u, std::thread::hardware_concurrency());
    for (unsigned i = 0; i + 1 < hw && i < 15; ++i) {
      threads_.emplace_back([this, i] { loop(i + 1); });
      threads_.back().detach();
    }
  }

  void loop(int index) {
    unsigned long seen = 0;
    for (;;) {
      unsigned long g = generation_.load(std::memory_order_acquire);
      for (int i = 0; i < kSpins && g == seen; ++i) {
        cpu_relax();
        g = generation_.load(std::memory_order_acquire);
      }
      if (g == seen) {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_.load(std::memory_order_acquire) != seen; });
        g = generation_.load(std::memory_order_acquire);
      }
      seen = g;
      if (index > active_) continue;
      int start = index * chunk_, end = std::min(n_, start + chunk_);
      if (start < end) (*job_)(start, end);
      if (pending_.fetch_sub(1, std::memory_order_acq_rel) == 1) {
        std::lock_guard<std::mutex> lk(mu_);
        done_.notify_one();
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_;
  const std::function<void(int, int)>* job_ = nullptr;
  int chunk_ = 0, n_ = 0, active_ = 0;
  std::atomic<int> pending_{0};
  std::atomic<unsigned long> generation_{0};
};

struct Problem {
  const float* x;        // [m, k]
  const uint8_t* w;      // [n, k * bits / 8] bytes
  const float* scales;   // [n, k / group]
  const float* biases;   // [n, k / group]
  const float* xsums;    // [m, k / group]: sum of x over each group
  float* out;            // [m, n]
  int m, n, k, group, bits;
};

// One group: dot(q, x) for `group` packed values.
inline float dot_group_scalar(const uint8_t* q, const float* x, int group, int bits) {
  float acc = 0.f;
  if (bits == 8) {
    for (int i = 0; i < group; ++i) acc += float(q[i]) * x[i];
  } else {
    for (int i = 0; i < group; i += 2) {
      acc += float(q[i / 2] & 0xF) * x[i] + float(q[i / 2] >> 4) * x[i + 1];
    }
  }
  return acc;
}

#if defined(__x86_64__)
__attribute__((target("avx2,fma"))) inline float hsum(__m256 v) {
  __m128 lo = _mm256_castps256_ps128(v), hi = _mm256_extractf128_ps(v, 1);
  lo = _mm_add_ps(lo, hi);
  lo = _mm_hadd_ps(lo, lo);
  lo = _mm_hadd_ps(lo, lo);
  return _mm_cvtss_f32(lo);
}

// M rows of x (M <= 8) against weight rows n0..n1: each packed group of 8 weights is unpacked
// and scaled once and used for all M rows, so a batch of decode rows costs little more than
// one. Per row: out = sum over groups of (s * q) . x + b * sum(x); that arithmetic is the same
// whatever M is, so a sequence gets bit-identical results alone or inside a batch.
template <int M>
__attribute__((target("avx2,fma"))) void rows_avx2_block(const Problem& p, int m0, int n0, int n1) {
  const int groups = p.k / p.group;
  const int row_bytes = p.k * p.bits / 8;
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i nibble = _mm256_set1_epi32(0xF);
  const float* x[M];
  const float* xs[M];
  for (int j = 0; j < M; ++j) {
    x[j] = p.x + size_t(m0 + j) * p.k;
    xs[j] = p.xsums + size_t(m0 + j) * groups;
  }
  for (int r = n0; r < n1; ++r) {
    const uint8_t* wrow = p.w + size_t(r) * row_bytes;
    const float* srow = p.scales + size_t(r) * groups;
    const float* brow = p.biases + size_t(r) * groups;
    __m256 total[M];
    float bias_part[M];
    for (int j = 0; j < M; ++j) {
      total[j] = _mm256_setzero_ps();
      bias_part[j] = 0.f;
    }
    for (int g = 0; g < groups; ++g) {
      const int base = g * p.group;
      const __m256 sc = _mm256_set1_ps(srow[g]);
      if (p.bits == 4) {
        const uint8_t* q = wrow + base / 2;
        for (int i = 0; i < p.group; i += 8) {
          uint32_t word;
          std::memcpy(&word, q + i / 2, 4);
          __m256i v = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(word)), shifts), nibble);
          const __m256 w = _mm256_mul_ps(_mm256_cvtepi32_ps(v), sc);
          for (int j = 0; j < M; ++j) total[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x[j] + base + i), total[j]);
        }
      } else {
        const uint8_t* q = wrow + base;
        for (int i = 0; i < p.group; i += 8) {
          __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
          const __m256 w = _mm256_mul_ps(_mm256_cvtepi32_ps(v), sc);
          for (int j = 0; j < M; ++j) total[j] = _mm256_fmadd_ps(w, _mm256_loadu_ps(x[j] + base + i), total[j]);
        }
      }
      for (int j = 0; j < M; ++j) bias_part[j] += brow[g] * xs[j][g];
    }
    for (int j = 0; j < M; ++j) p.out[size_t(m0 + j) * p.n + r] = hsum(total[j]) + bias_part[j];
  }
}

// Dense float32: out[m, r] = dot(w[r], x[m]), M rows per pass over a weight row. Reading each
// weight row once is what makes decode fast: BLAS sgemm packs (copies) the whole matrix even
// for a single row of x.
template <int M>
__attribute__((target("avx2,fma"))) void dense_rows_avx2_block(const Problem& p, int m0, int n0, int n1) {
  const float* wf = reinterpret_cast<const float*>(p.w);
  const float* x[M];
  for (int j = 0; j < M; ++j) x[j] = p.x + size_t(m0 + j) * p.k;
  for (int r = n0; r < n1; ++r) {
    const float* wrow = wf + size_t(r) * p.k;
    __m256 a0[M], a1[M];
    for (int j = 0; j < M; ++j) a0[j] = a1[j] = _mm256_setzero_ps();
    int i = 0;
    for (; i + 16 <= p.k; i += 16) {
      const __m256 w0 = _mm256_loadu_ps(wrow + i), w1 = _mm256_loadu_ps(wrow + i + 8);
      for (int j = 0; j < M; ++j) {
        a0[j] = _mm256_fmadd_ps(w0, _mm256_loadu_ps(x[j] + i), a0[j]);
        a1[j] = _mm256_fmadd_ps(w1, _mm256_loadu_ps(x[j] + i + 8), a1[j]);
      }
    }
    for (int j = 0; j < M; ++j) {
      float acc = hsum(_mm256_add_ps(a0[j], a1[j]));
      for (int t = i; t < p.k; ++t) acc += wrow[t] * x[j][t];
      p.out[size_t(m0 + j) * p.n + r] = acc;
    }
  }
}

// All rows of x in blocks of up to B rows (K<M>::run handles M rows).
template <int B, template <int> class K>
void by_blocks(const Problem& p, int n0, int n1) {
  for (int m0 = 0; m0 < p.m; m0 += B) {
    switch (std::min(B, p.m - m0)) {
      case 1: K<1>::run(p, m0, n0, n1); break;
      case 2: K<2>::run(p, m0, n0, n1); break;
      case 3: K<3>::run(p, m0, n0, n1); break;
      case 4: K<4>::run(p, m0, n0, n1); break;
      case 5: K<(B > 4 ? 5 : 4)>::run(p, m0, n0, n1); break;
      case 6: K<(B > 4 ? 6 : 4)>::run(p, m0, n0, n1); break;
      case 7: K<(B > 4 ? 7 : 4)>::run(p, m0, n0, n1); break;
      default: K<B>::run(p, m0, n0, n1); break;
    }
  }
}

template <int M>
struct QuantBlock {
  static void run(const Problem& p, int m0, int n0, int n1) { rows_avx2_block<M>(p, m0, n0, n1); }
};
template <int M>
struct DenseBlock {
  static void run(const Problem& p, int m0, int n0, int n1) { dense_rows_avx2_block<M>(p, m0, n0, n1); }
};

void rows_avx2(const Problem& p, int n0, int n1) { by_blocks<8, QuantBlock>(p, n0, n1); }
void dense_rows_avx2(const Problem& p, int n0, int n1) { by_blocks<4, DenseBlock>(p, n0, n1); }

bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

void dense_rows_scalar(const Problem& p, int n0, int n1) {
  const float* wf = reinterpret_cast<const float*>(p.w);
  for (int r = n0; r < n1; ++r) {
    for (int m = 0; m < p.m; ++m) {
      float acc = 0.f;
      for (int i = 0; i < p.k; ++i) acc += wf[size_t(r) * p.k + i] * p.x[size_t(m) * p.k + i];
      p.out[size_t(m) * p.n + r] = acc;
    }
  }
}

void rows_scalar(const Problem& p, int n0, int n1) {
  const int groups = p.k / p.group;
  const int row_bytes = p.k * p.bits / 8;
  for (int r = n0; r < n1; ++r) {
    for (int m = 0; m < p.m; ++m) {
      const float* x = p.x + size_t(m) * p.k;
      float acc = 0.f;
      for (int g = 0; g < groups; ++g) {
        const uint8_t* q = p.w + size_t(r) * row_bytes + size_t(g) * p.group * p.bits / 8;
        float d = dot_group_scalar(q, x + g * p.group, p.group, p.bits);
        acc += p.scales[size_t(r) * groups + g] * d + p.biases[size_t(r) * groups + g] * p.xsums[size_t(m) * groups + g];
      }
      p.out[size_t(m) * p.n + r] = acc;
    }
  }
}

void run_dense(const Problem& p) {
  std::function<void(int, int)> f;
#if defined(__x86_64__)
  if (have_avx2()) {
    f = [&p](int a, int b) { dense_rows_avx2(p, a, b); };
  } else
#endif
  {
    f = [&p](int a, int b) { dense_rows_scalar(p, a, b); };
  }
  Pool::get().run(p.n, f);
}

void run_problem(const Problem& p) {
  if (p.bits == 32) {
    run_dense(p);
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
  Problem q = p;
  q.xsums = xsums.data();
  std::function<void(int, int)> f;
#if defined(__x86_64__)
  if (have_avx2()) {
    f = [&q](int a, int b) { rows_avx2(q, a, b); };
  } else
#endif
  {
    f = [&q](int a, int b) { rows_scalar(q, a, b); };
  }
  Pool::get().run(p.n, f);
}

// Row-major copy of a strided array (an activation MLX left as a view).
void gather_contiguous(const float* src, const mx::Shape& shape, const mx::Strides& strides, float* dst) {
  size_t total = 1;
  for (auto d : shape) total *= size_t(d);
  std::vector<int> idx(shape.size(), 0);
  for (size_t i = 0; i < total; ++i) {
    int64_t off = 0;
    for (size_t d = 0; d < shape.size(); ++d) off += int64_t(idx[d]) * strides[d];
    dst[i] = src[off];
    for (int d = int(shape.size()) - 1; d >= 0; --d) {
      if (++idx[d] < shape[d]) break;
      idx[d] = 0;
    }
  }
}

class QGemv : public mx::UnaryPrimitive {
 public:
  QGemv(mx::Stream s, int group, int bits) : mx::UnaryPrimitive(s), group_(group), bits_(bits) {}

  // inputs: x, w and, for quantized weights (bits 4 or 8), scales and biases; bits 32 means
  // w is a dense float32 [N, K] matrix.
  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    const auto &x = inputs[0], &w = inputs[1];
    const bool quantized = inputs.size() == 4;
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& in : inputs) enc.set_input_array(in);
    enc.set_output_array(out);
    Problem p{x.data<float>(), w.data<uint8_t>(), quantized ? inputs[2].data<float>() : nullptr,
              quantized ? inputs[3].data<float>() : nullptr, nullptr, out.data<float>(),
              int(x.size() / x.shape(-1)), int(w.shape(0)), int(x.shape(-1)), group_, bits_};
    if (x.flags().row_contiguous) {
      enc.dispatch([p]() { run_problem(p); });
    } else {
      // x is a view (transposed heads, a slice): gather it when its data is ready.
      enc.dispatch([p, shape = x.shape(), strides = x.strides()]() mutable {
        thread_local std::vector<float> buf;
        buf.resize(size_t(p.m) * p.k);
        gather_contiguous(p.x, shape, strides, buf.data());
        p.x = buf.data();
        run_problem(p);
      });
    }
  }

  void eval_gpu(const std::vector<mx::array>&, mx::array&) override {
    throw std::runtime_error("cortex qgemv runs on the CPU only");
  }

  const char* name() const override { return "CortexQGemv"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const QGemv&>(other);
    return group_ == o.group_ && bits_ == o.bits_;
  }

 private:
  int group_, bits_;
};

}  // namespace

// Inputs as the kernel reads them: float32, and row-contiguous for weights. Each MLX op here is
// a graph node evaluated on every call, so arrays that already qualify (evaluated weights) go
// in as they are; activations may stay views (the kernel gathers them).
mx::array as_f32(const mx::array& a, mx::Stream s) {
  return a.dtype() == mx::float32 ? a : mx::astype(a, mx::float32, s);
}

mx::array weight_input(const mx::array& a, mx::Stream s, bool to_f32) {
  mx::array b = to_f32 ? as_f32(a, s) : a;
  bool ready = b.status() != mx::array::Status::unscheduled && b.flags().row_contiguous;
  return ready ? b : mx::contiguous(b, false, s);
}

ArrayPtr gemv_f32(const Array& x, const Array& w) {
  auto k = x.inner.shape(-1);
  if (w.inner.ndim() != 2 || w.inner.shape(1) != k) {
    throw std::invalid_argument("gemv: weight [N, K] does not match the input size");
  }
  auto s = mx::default_stream(mx::Device::cpu);
  auto out_shape = x.inner.shape();
  out_shape.back() = w.inner.shape(0);
  std::vector<mx::array> inputs{as_f32(x.inner, s), weight_input(w.inner, s, true)};
  return std::make_unique<Array>(
      mx::array(out_shape, mx::float32, std::make_shared<QGemv>(s, 0, 32), std::move(inputs)));
}

ArrayPtr qgemv(const Array& x, const Array& w, const Array& scales, const Array& biases, int32_t group_size,
               int32_t bits) {
  if (bits != 4 && bits != 8) throw std::invalid_argument("qgemv supports 4 and 8 bits");
  if (group_size % 8 != 0) throw std::invalid_argument("qgemv needs a group size divisible by 8");
  auto k = x.inner.shape(-1);
  auto n = w.inner.shape(0);
  if (w.inner.dtype() != mx::uint32 || w.inner.ndim() != 2 || w.inner.shape(1) * 32 / bits != k) {
    throw std::invalid_argument("qgemv: packed weight does not match the input size");
  }
  if (scales.inner.shape(0) != n || scales.inner.shape(1) * group_size != k || biases.inner.shape() != scales.inner.shape()) {
    throw std::invalid_argument("qgemv: scales/biases do not match the weight");
  }
  auto s = mx::default_stream(mx::Device::cpu);
  auto out_shape = x.inner.shape();
  out_shape.back() = n;
  std::vector<mx::array> inputs{as_f32(x.inner, s), weight_input(w.inner, s, false),
                                weight_input(scales.inner, s, true), weight_input(biases.inner, s, true)};
  return std::make_unique<Array>(
      mx::array(out_shape, mx::float32, std::make_shared<QGemv>(s, group_size, bits), std::move(inputs)));
}

}  // namespace cortex_mlx
