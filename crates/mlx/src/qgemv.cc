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

// Runs f(0..n) split into contiguous chunks, one per worker, and waits.
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
    {
      std::unique_lock<std::mutex> lk(mu_);
      job_ = &f;
      chunk_ = chunk;
      n_ = n;
      pending_ = workers - 1;
      active_ = workers - 1;
      ++generation_;
    }
    cv_.notify_all();
    f(0, std::min(chunk, n));  // the caller takes the first chunk
    std::unique_lock<std::mutex> lk(mu_);
    done_.wait(lk, [&] { return pending_ == 0; });
    job_ = nullptr;
  }

 private:
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
      const std::function<void(int, int)>* job;
      int start, end;
      {
        std::unique_lock<std::mutex> lk(mu_);
        cv_.wait(lk, [&] { return generation_ != seen; });
        seen = generation_;
        if (index > active_) continue;
        job = job_;
        start = index * chunk_;
        end = std::min(n_, start + chunk_);
      }
      if (start < end) (*job)(start, end);
      {
        std::lock_guard<std::mutex> lk(mu_);
        if (--pending_ == 0) done_.notify_one();
      }
    }
  }

  std::vector<std::thread> threads_;
  std::mutex mu_, run_mu_;
  std::condition_variable cv_, done_;
  const std::function<void(int, int)>* job_ = nullptr;
  int chunk_ = 0, n_ = 0, pending_ = 0, active_ = 0;
  unsigned long generation_ = 0;
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

__attribute__((target("avx2,fma"))) void rows_avx2(const Problem& p, int n0, int n1) {
  const int groups = p.k / p.group;
  const int row_bytes = p.k * p.bits / 8;
  const __m256i shifts = _mm256_setr_epi32(0, 4, 8, 12, 16, 20, 24, 28);
  const __m256i nibble = _mm256_set1_epi32(0xF);
  for (int r = n0; r < n1; ++r) {
    const uint8_t* wrow = p.w + size_t(r) * row_bytes;
    const float* srow = p.scales + size_t(r) * groups;
    const float* brow = p.biases + size_t(r) * groups;
    for (int m = 0; m < p.m; ++m) {
      const float* x = p.x + size_t(m) * p.k;
      const float* xs = p.xsums + size_t(m) * groups;
      __m256 total = _mm256_setzero_ps();
      float bias_part = 0.f;
      for (int g = 0; g < groups; ++g) {
        const float* xg = x + g * p.group;
        __m256 acc = _mm256_setzero_ps();
        if (p.bits == 4) {
          const uint8_t* q = wrow + g * p.group / 2;
          for (int i = 0; i < p.group; i += 8) {
            uint32_t word;
            std::memcpy(&word, q + i / 2, 4);
            __m256i v = _mm256_and_si256(_mm256_srlv_epi32(_mm256_set1_epi32(int(word)), shifts), nibble);
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(xg + i), acc);
          }
        } else {
          const uint8_t* q = wrow + g * p.group;
          for (int i = 0; i < p.group; i += 8) {
            __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(q + i)));
            acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(v), _mm256_loadu_ps(xg + i), acc);
          }
        }
        total = _mm256_fmadd_ps(acc, _mm256_set1_ps(srow[g]), total);
        bias_part += brow[g] * xs[g];
      }
      p.out[size_t(m) * p.n + r] = hsum(total) + bias_part;
    }
  }
}

bool have_avx2() {
  static const bool yes = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  return yes;
}
#endif

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

void run_problem(const Problem& p) {
  const int groups = p.k / p.group;
  std::vector<float> xsums(size_t(p.m) * groups);
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

class QGemv : public mx::UnaryPrimitive {
 public:
  QGemv(mx::Stream s, int group, int bits) : mx::UnaryPrimitive(s), group_(group), bits_(bits) {}

  void eval_cpu(const std::vector<mx::array>& inputs, mx::array& out) override {
    const auto &x = inputs[0], &w = inputs[1], &s = inputs[2], &b = inputs[3];
    out.set_data(mx::allocator::malloc(out.nbytes()));
    auto& enc = mx::cpu::get_command_encoder(stream());
    enc.set_input_array(x);
    enc.set_input_array(w);
    enc.set_input_array(s);
    enc.set_input_array(b);
    enc.set_output_array(out);
    Problem p{x.data<float>(), w.data<uint8_t>(), s.data<float>(), b.data<float>(), nullptr, out.data<float>(),
              int(x.size() / x.shape(-1)), int(w.shape(0)), int(x.shape(-1)), group_, bits_};
    enc.dispatch([p]() { run_problem(p); });
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
  auto f32 = [&](const mx::array& a) { return mx::contiguous(mx::astype(a, mx::float32, s), false, s); };
  auto out_shape = x.inner.shape();
  out_shape.back() = n;
  std::vector<mx::array> inputs{f32(x.inner), mx::contiguous(w.inner, false, s), f32(scales.inner),
                                f32(biases.inner)};
  return std::make_unique<Array>(
      mx::array(out_shape, mx::float32, std::make_shared<QGemv>(s, group_size, bits), std::move(inputs)));
}

}  // namespace cortex_mlx
