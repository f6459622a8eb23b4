// A decode step's attention on the CPU as one MLX primitive: for each sequence's one new
// token, RoPE on its query and key, the key and value written into the KV cache, and attention
// over the cached positions. MLX's own path for the same step is about twenty graph nodes per
// layer (head reshapes and transposes, RoPE, the cache update, SDPA's fallback ops, the merge),
// each with a fixed cost on the CPU stream; decode of a small model was bound by them.
//
// The cache comes in two layouts: one sequence's buffer [1, Hkv, capacity, D] (position j of
// head h at (h * capacity + j) * D), or a paged pool [slots, Hkv, D] shared by many sequences,
// each of which names its slots through a table; either holds float32 values, float16 ones
// (written rounded and saturating, read widened), or int8 rows (the int8 path's cache: each
// head's D values in blocks of 32 scaled by their largest magnitude, the blocks' float32
// scales stored after them, so a row of 64 is 72 bytes). The kernel writes the new
// rows into the storage it is given and returns that storage as two more outputs sharing its
// memory, so the cache never copies: only rows nobody has read yet change (see
// decode_attention's contract). The attention kernels both primitives run are in
// attention_kernels.cc; this file holds the primitives, RoPE and the cache writes.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <type_traits>
#include <vector>

#include "attention_kernels.h"
#include "kernels.h"
#include "mlx/backend/cpu/encoder.h"
#include "mlx/primitives.h"
#include "shim.h"

namespace mx = mlx::core;

namespace cortex_mlx {
namespace {

using attn::Attn;
using attn::attend;
using attn::Elem;
using attn::Half;
using attn::kQ8Block;
using attn::Q8;
using attn::row_width;
using attn::with_elem;
using kernels::Strided;

// Rotary embedding as MLX's fast::rope computes it: theta_i = (position * scale) * inv_freq[i]
// over the first `dims` features, pairs (i, i + dims/2), or (2i, 2i + 1) when traditional;
// the rotated features first multiplied by `input_scale`.
struct Rope {
  const float* inv_freq;  // [dims / 2]
  int dims;
  bool traditional;
  float scale, input_scale;

  // cos and sin of each pair's angle at `position`: cs[i] and cs[dims / 2 + i].
  void angles(int position, std::vector<float>& cs) const {
    const int half = dims / 2;
    cs.resize(size_t(2) * half);
    const float p = float(position) * scale;
    for (int i = 0; i < half; ++i) {
      const float theta = p * inv_freq[i];
      cs[i] = std::cos(theta);
      cs[half + i] = std::sin(theta);
    }
  }

  // Rotates `heads` heads of `d` features from src into dst (which may be src) by `angles`.
  void apply(const float* src, float* dst, int heads, int d, const std::vector<float>& cs) const {
    const int half = dims / 2;
    for (int h = 0; h < heads; ++h) {
      const float* x = src + size_t(h) * d;
      float* y = dst + size_t(h) * d;
      for (int i = 0; i < half; ++i) {
        const int i1 = traditional ? 2 * i : i, i2 = traditional ? 2 * i + 1 : i + half;
        const float a = x[i1] * input_scale, b = x[i2] * input_scale;
        y[i1] = a * cs[i] - b * cs[half + i];
        y[i2] = a * cs[half + i] + b * cs[i];
      }
      if (y != x) std::copy(x + dims, x + d, y + dims);
    }
  }
};

Elem elem_of(const mx::array& a) {
  return a.dtype() == mx::float16 ? Elem::F16 : a.dtype() == mx::int8 ? Elem::Q8 : Elem::F32;
}

// A storage array MLX left as a broadcast or a view, copied row-major before the write.
struct StorageCopy {
  const void* src;
  mx::Shape shape;
  mx::Strides strides;
  void* dst;
  Elem elem;
  void run() const {
    with_elem(elem, [this](auto t) {
      using T = decltype(t);
      kernels::gather_contiguous(static_cast<const T*>(src), shape, strides, static_cast<T*>(dst));
    });
  }
};

// Writes d features into a cache row: as they are, rounded to half (saturating), or as a Q8
// row (ops::kv_quantize_rows spells the same arithmetic in MLX ops, for the cache's other
// writes): per block, infinities clamped to the largest finite float, scale = the largest
// magnitude / 127, each value divided by it, rounded to nearest even and clamped to +-127 (a
// scale that rounded down, or a subnormal one, could give 128); an all-zero block keeps
// scale 0.
inline void store_row(const float* src, float* dst, int d) { std::memcpy(dst, src, sizeof(float) * d); }
inline void store_row(const float* src, Half* dst, int d) {
  for (int i = 0; i < d; ++i) dst[i] = kernels::float_to_half(src[i]);
}
inline void store_row(const float* src, Q8* dst, int d) {
  static constexpr float kMax = std::numeric_limits<float>::max();
  const auto finite = [](float x) { return std::min(std::max(x, -kMax), kMax); };
  for (int b0 = 0; b0 < d; b0 += kQ8Block) {
    const int b1 = std::min(d, b0 + kQ8Block);
    float amax = 0.f;
    for (int i = b0; i < b1; ++i) amax = std::max(amax, std::fabs(finite(src[i])));
    const float scale = amax / 127.f;
    const float div = scale > 0.f ? scale : 1.f;
    for (int i = b0; i < b1; ++i) {
      // NaN compares false both ways and is stored as 0
      const float r = std::nearbyint(finite(src[i]) / div);
      dst[i] = r >= -127.f && r <= 127.f ? Q8(r) : r > 127.f ? Q8(127) : r < -127.f ? Q8(-127) : Q8(0);
    }
    std::memcpy(dst + d + (b0 / kQ8Block) * sizeof scale, &scale, sizeof scale);
  }
}

// Whether keys and values are storage the prompt kernel reads: float32, or float16, both alike.
bool kernel_storage(const mx::array& keys, const mx::array& values) {
  return keys.dtype() == values.dtype() && (keys.dtype() == mx::float32 || keys.dtype() == mx::float16);
}

// Whether keys and values are storage the decode kernel reads: those, or Q8 rows.
bool decode_storage(const mx::array& keys, const mx::array& values) {
  return kernel_storage(keys, values) || (keys.dtype() == mx::int8 && values.dtype() == mx::int8);
}


// The new rows' RoPE and cache writes, then attention, for storage of element type T. The rows
// go to the pool in pairs (each writes its own slots and rotated query; a batch-8 step had
// spent 2.6% of its stream thread here, serial, while the worker waited).
template <class T>
void decode_step(Attn a, const Rope& rope, int r, const float* q, const float* k, const float* v, const int32_t* pos,
                 const int32_t* write, bool scalar) {
  thread_local std::vector<float> rotated;
  thread_local std::vector<int32_t> lens;
  rotated.resize(size_t(r) * a.hq * a.d);
  lens.resize(r);
  T* kst = static_cast<T*>(const_cast<void*>(a.k));
  T* vst = static_cast<T*>(const_cast<void*>(a.v));
  float* rot = rotated.data();
  int32_t* len = lens.data();
  kernels::parallel_for(
      r,
      [&](int r0, int r1) {
        thread_local std::vector<float> cs, krow;
        krow.resize(a.d);
        for (int row = r0; row < r1; ++row) {
          rope.angles(pos[row], cs);
          rope.apply(q + size_t(row) * a.hq * a.d, rot + size_t(row) * a.hq * a.d, a.hq, a.d, cs);
          const int64_t slot = write != nullptr ? write[row] : pos[row];
          for (int h = 0; h < a.hkv; ++h) {
            rope.apply(k + (size_t(row) * a.hkv + h) * a.d, krow.data(), 1, a.d, cs);
            store_row(krow.data(), kst + slot * a.pos_stride + h * a.head_stride, a.d);
            store_row(v + (size_t(row) * a.hkv + h) * a.d, vst + slot * a.pos_stride + h * a.head_stride, a.d);
          }
          len[row] = pos[row] + 1;
        }
      },
      2);
  a.q = rotated.data();
  a.lens = lens.data();
  attend<T>(a, r, scalar);
}

// inputs: q [R, Hq*D], k and v [R, Hkv*D] (any leading shape), keys and values (storage,
// float32 or float16), positions int32 [R], inv_freq float32 [dims / 2]; paged storage adds
// write slots int32 [R] and the table int32 [R, S]. outputs: attention [R, Hq*D] (q's shape),
// keys, values.
class DecodeAttention : public mx::Primitive {
 public:
  DecodeAttention(mx::Stream s, int head_dim, int rope_dims, bool traditional, float rope_scale, float input_scale,
                  float scale, float softcap, int window, bool scalar)
      : mx::Primitive(s),
        d_(head_dim),
        rope_dims_(rope_dims),
        traditional_(traditional),
        rope_scale_(rope_scale),
        input_scale_(input_scale),
        scale_(scale),
        softcap_(softcap),
        window_(window),
        scalar_(scalar) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    const auto &q = in[0], &k = in[1], &v = in[2], &positions = in[5], &inv_freq = in[6];
    const bool paged = in.size() == 9;
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& a : in) enc.set_input_array(a);
    out[0].set_data(mx::allocator::malloc(out[0].nbytes()));
    // The storage: shared, and written in place, when it is a plain buffer; a copy otherwise
    // (a broadcast or a view), made on the stream before the write.
    const Elem elem = elem_of(in[3]);
    std::vector<StorageCopy> copies;
    for (int i : {1, 2}) {
      const auto& src = in[2 + i];
      if (src.flags().row_contiguous && src.data_size() == src.size()) {
        out[i].copy_shared_buffer(src);
      } else {
        out[i].set_data(mx::allocator::malloc(out[i].nbytes()));
        copies.push_back({src.data<void>(), src.shape(), src.strides(), out[i].data<void>(), elem});
      }
    }
    for (auto& a : out) enc.set_output_array(a);
    const int r = int(positions.size());
    const int hq = int(q.shape(-1)) / d_, hkv = int(k.shape(-1)) / d_;
    const auto& keys = out[1];
    // elements per stored row: D, or for Q8 D and the blocks' scales
    const int64_t w = keys.shape(-1);
    Attn a{nullptr, keys.data<void>(), out[2].data<void>(),
           paged ? in[8].data<int32_t>() : nullptr, nullptr, out[0].data<float>(), hq, hkv, d_,
           paged ? int(in[8].shape(1)) : 0,
           // paged [slots, Hkv, W]; one sequence [1, Hkv, capacity, W]
           paged ? int64_t(hkv) * w : w, paged ? w : int64_t(keys.shape(2)) * w,
           scale_, softcap_, window_};
    const Rope rope{inv_freq.data<float>(), rope_dims_, traditional_, rope_scale_, input_scale_};
    // q, k and v as rows; views (Phi-3's slices of one qkv matmul) are gathered.
    enc.dispatch([a, rope, r, copies = std::move(copies), qr = Strided(q), kr = Strided(k), vr = Strided(v),
                  pos = positions.data<int32_t>(), write = paged ? in[7].data<int32_t>() : nullptr, scalar = scalar_,
                  elem]() mutable {
      for (const auto& c : copies) c.run();
      thread_local std::vector<float> qbuf, kbuf, vbuf;
      const float* q = qr.rows(qbuf);
      const float* k = kr.rows(kbuf);
      const float* v = vr.rows(vbuf);
      with_elem(elem, [&](auto t) { decode_step<decltype(t)>(a, rope, r, q, k, v, pos, write, scalar); });
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("cortex decode attention runs on the CPU only");
  }

  const char* name() const override { return "CortexDecodeAttention"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const DecodeAttention&>(other);
    return d_ == o.d_ && rope_dims_ == o.rope_dims_ && traditional_ == o.traditional_ &&
           rope_scale_ == o.rope_scale_ && input_scale_ == o.input_scale_ && scale_ == o.scale_ &&
           softcap_ == o.softcap_ && window_ == o.window_ && scalar_ == o.scalar_;
  }

 private:
  int d_, rope_dims_;
  bool traditional_;
  float rope_scale_, input_scale_, scale_, softcap_;
  int window_;
  bool scalar_;
};

// A prompt's attention: L query rows, RoPE applied, at positions q_start.. of one sequence,
// each over the keys at positions 0..its own (its last `window` when set), as decode attention
// computes one row (the same jobs and kernels, a row per query). MLX's CPU path builds it from
// two BLAS matmuls around a mask and a softmax whose exp is scalar off Apple silicon (with
// OpenBLAS's threads spinning meanwhile): a fifth of a 512-token prompt's time.
// inputs: q [L, Hq, D] (a view is gathered), keys and values [1, Hkv, S, D] (float32 or
// float16, any strides; rows with a strided last axis are gathered); output [L, Hq * D].
class PrefillAttention : public mx::Primitive {
 public:
  PrefillAttention(mx::Stream s, int head_dim, int q_start, float scale, float softcap, int window, bool scalar)
      : mx::Primitive(s),
        d_(head_dim),
        q_start_(q_start),
        scale_(scale),
        softcap_(softcap),
        window_(window),
        scalar_(scalar) {}

  void eval_cpu(const std::vector<mx::array>& in, std::vector<mx::array>& out) override {
    auto& enc = mx::cpu::get_command_encoder(stream());
    for (auto& a : in) enc.set_input_array(a);
    out[0].set_data(mx::allocator::malloc(out[0].nbytes()));
    enc.set_output_array(out[0]);
    const auto &q = in[0], &k = in[1], &v = in[2];
    const int r = int(q.shape(0)), hq = int(q.shape(1)), hkv = int(k.shape(1)), s = int(k.shape(2));
    const Elem elem = elem_of(k);
    const bool half = elem == Elem::F16;
    // keys and values as the kernel indexes them: position and head strides, unit last axis
    const bool direct = k.strides() == v.strides() && k.strides(3) == 1;
    StorageCopy ck{k.data<void>(), k.shape(), k.strides(), nullptr, elem};
    StorageCopy cv{v.data<void>(), v.shape(), v.strides(), nullptr, elem};
    Attn a{nullptr, k.data<void>(), v.data<void>(), nullptr, nullptr, out[0].data<float>(), hq, hkv, d_, s,
           direct ? int64_t(k.strides(2)) : int64_t(d_), direct ? int64_t(k.strides(1)) : int64_t(s) * d_,
           scale_, softcap_, window_};
    enc.dispatch([a, r, direct, ck, cv, qr = Strided(q), q_start = q_start_, scalar = scalar_, half]() mutable {
      thread_local std::vector<float> qbuf;
      thread_local std::vector<int32_t> lens;
      thread_local std::vector<uint8_t> kbuf, vbuf;
      a.q = qr.rows(qbuf);
      lens.resize(r);
      for (int i = 0; i < r; ++i) lens[i] = q_start + i + 1;
      a.lens = lens.data();
      if (!direct) {
        const size_t bytes = size_t(a.hkv) * a.s * a.d * (half ? 2 : 4);
        kbuf.resize(bytes);
        vbuf.resize(bytes);
        ck.dst = kbuf.data();
        cv.dst = vbuf.data();
        ck.run();
        cv.run();
        a.k = kbuf.data();
        a.v = vbuf.data();
      }
      if (half) {
        attend<Half>(a, r, scalar);
      } else {
        attend<float>(a, r, scalar);
      }
    });
  }

  void eval_gpu(const std::vector<mx::array>&, std::vector<mx::array>&) override {
    throw std::runtime_error("cortex prefill attention runs on the CPU only");
  }

  const char* name() const override { return "CortexPrefillAttention"; }

  bool is_equivalent(const mx::Primitive& other) const override {
    auto& o = static_cast<const PrefillAttention&>(other);
    return d_ == o.d_ && q_start_ == o.q_start_ && scale_ == o.scale_ && softcap_ == o.softcap_ &&
           window_ == o.window_ && scalar_ == o.scalar_;
  }

 private:
  int d_, q_start_;
  float scale_, softcap_;
  int window_;
  bool scalar_;
};

}  // namespace

ArrayPtr prefill_attention(const Array& q, const Array& keys, const Array& values, int32_t q_start, float scale,
                           float softcap, int32_t window) {
  const auto &qi = q.inner, &ks = keys.inner, &vs = values.inner;
  auto fail = [](const char* what) { throw std::invalid_argument(std::string("prefill_attention: ") + what); };
  if (qi.ndim() != 4 || qi.shape(0) != 1 || ks.ndim() != 4 || ks.shape(0) != 1 || ks.shape() != vs.shape() ||
      qi.shape(3) != ks.shape(3) || qi.shape(3) <= 0) {
    fail("q [1, Hq, L, D] and keys, values [1, Hkv, S, D] expected");
  }
  const int hq = qi.shape(1), hkv = ks.shape(1), l = qi.shape(2), s = ks.shape(2), d = qi.shape(3);
  if (hkv <= 0 || hq % hkv != 0) fail("query heads must be a multiple of KV heads");
  if (q_start < 0 || int64_t(q_start) + l > s) fail("the queries' positions must be among the keys'");
  if (qi.dtype() != mx::float32) fail("float32 queries expected");
  if (!kernel_storage(ks, vs)) fail("float32 or float16 keys and values expected, alike");
  auto st = mx::default_stream(mx::Device::cpu);
  // [1, Hq, L, D] -> [L, Hq, D]: the kernel's rows (a view, gathered when it runs)
  auto rows = mx::reshape(mx::transpose(qi, {0, 2, 1, 3}, st), {l, hq, d}, st);
  return std::make_unique<Array>(mx::array({1, l, hq * d}, mx::float32,
                                           std::make_shared<PrefillAttention>(st, d, q_start, scale, softcap, window,
                                                                              kernels::scalar_now()),
                                           {rows, ks, vs}));
}

std::unique_ptr<ArrayList> decode_attention(const Array& q, const Array& k, const Array& v, const Array& keys,
                                            const Array& values, const Array& positions, const Array& inv_freq,
                                            const Array* write, const Array* table, int32_t head_dim,
                                            int32_t rope_dims, bool traditional, float rope_scale,
                                            float input_scale, float scale, float softcap, int32_t window) {
  const auto &qi = q.inner, &ki = k.inner, &vi = v.inner, &ks = keys.inner, &vs = values.inner;
  const bool paged = table != nullptr;
  auto fail = [](const char* what) { throw std::invalid_argument(std::string("decode_attention: ") + what); };
  if (head_dim <= 0 || qi.ndim() < 1 || qi.shape(-1) % head_dim != 0 || ki.shape() != vi.shape() ||
      ki.ndim() < 1 || ki.shape(-1) % head_dim != 0 || ki.shape(-1) == 0) {
    fail("q [.., Hq * D] and k, v [.., Hkv * D] expected");
  }
  const int64_t rows = int64_t(qi.size()) / qi.shape(-1), hq = qi.shape(-1) / head_dim, hkv = ki.shape(-1) / head_dim;
  if (int64_t(ki.size()) / ki.shape(-1) != rows || int64_t(positions.inner.size()) != rows) {
    fail("q, k, v and positions must hold the same number of rows");
  }
  if (hq % hkv != 0) fail("query heads must be a multiple of KV heads");
  if (ks.shape() != vs.shape()) fail("keys and values must have one shape");
  if (!decode_storage(ks, vs)) fail("a float32, float16 or int8 cache expected, keys and values alike");
  // a stored row: D values, and a Q8 row's scale
  const int width = ks.dtype() == mx::int8 ? row_width<Q8>(head_dim) : head_dim;
  if (paged) {
    if (ks.ndim() != 3 || ks.shape(1) != hkv || ks.shape(2) != width) fail("a paged pool [slots, Hkv, W] expected");
    if (write == nullptr || int64_t(write->inner.size()) != rows || table->inner.ndim() != 2 ||
        table->inner.shape(0) != rows) {
      fail("write slots [R] and a table [R, S] expected");
    }
  } else if (ks.ndim() != 4 || ks.shape(0) != 1 || ks.shape(1) != hkv || ks.shape(3) != width || rows != 1) {
    fail("one sequence's cache [1, Hkv, capacity, W] and one row expected");
  }
  if (rope_dims < 0 || rope_dims % 2 != 0 || rope_dims > head_dim || int64_t(inv_freq.inner.size()) != rope_dims / 2) {
    fail("RoPE over an even number of features, at most head_dim, with dims / 2 frequencies");
  }
  const auto f32 = [](const mx::array& a) { return a.dtype() == mx::float32; };
  if (!f32(qi) || !f32(ki) || !f32(vi)) fail("float32 q, k and v expected");
  auto s = mx::default_stream(mx::Device::cpu);
  auto i32 = [&](const mx::array& a) {
    return kernels::weight_input(a.dtype() == mx::int32 ? a : mx::astype(a, mx::int32, s), s, false);
  };
  std::vector<mx::array> inputs{qi, ki, vi, ks, vs, i32(positions.inner), kernels::weight_input(inv_freq.inner, s, true)};
  if (paged) {
    inputs.push_back(i32(write->inner));
    inputs.push_back(i32(table->inner));
  }
  auto outs = mx::array::make_arrays(
      {qi.shape(), ks.shape(), vs.shape()}, {mx::float32, ks.dtype(), vs.dtype()},
      std::make_shared<DecodeAttention>(s, head_dim, rope_dims, traditional, rope_scale, input_scale, scale, softcap,
                                        window, kernels::scalar_now()),
      std::move(inputs));
  auto list = std::make_unique<ArrayList>();
  for (auto& a : outs) {
    list->items.push_back(std::move(a));
    list->names.emplace_back();
  }
  return list;
}

}  // namespace cortex_mlx
