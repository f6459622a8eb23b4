// Implementation of the cortex-mlx bridge: thin wrappers over MLX's C++ API.
// Dtype codes and op codes are shared with src/ffi.rs; keep both tables in sync.
#include "shim.h"

#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <sstream>
#include <stdexcept>

#include "cortex-mlx/src/ffi.rs.h"

namespace mx = mlx::core;

namespace cortex_mlx {
namespace {

const mx::Dtype kDtypes[] = {mx::bool_,  mx::uint8,   mx::uint16,  mx::uint32, mx::uint64,
                             mx::int8,   mx::int16,   mx::int32,   mx::int64,  mx::float16,
                             mx::float32, mx::bfloat16, mx::float64};

mx::Dtype to_dtype(uint8_t code) {
  if (code >= sizeof(kDtypes) / sizeof(kDtypes[0])) {
    throw std::invalid_argument("unknown dtype code " + std::to_string(code));
  }
  return kDtypes[code];
}

uint8_t from_dtype(mx::Dtype d) {
  for (uint8_t i = 0; i < sizeof(kDtypes) / sizeof(kDtypes[0]); ++i) {
    if (kDtypes[i] == d) return i;
  }
  throw std::invalid_argument("dtype not supported by the binding");
}

// Coordinates (slice starts, stops, strides): any int32 values.
mx::Shape to_shape(rust::Slice<const int32_t> s) { return mx::Shape(s.begin(), s.end()); }

// A shape from Rust, checked before MLX sees it: every dimension >= 0 (with `infer`, one -1 as
// reshape allows), and the element count times the widest element (8 bytes) within int64. MLX
// multiplies dimensions without overflow checks: [65536, 65536, 65536, 65536] is 0 elements
// to it.
mx::Shape checked_shape(rust::Slice<const int32_t> s, bool infer = false) {
  constexpr int64_t kMaxElements = INT64_MAX / 8;
  int64_t n = 1;
  bool inferred = false;
  for (auto d : s) {
    if (d == -1 && infer && !inferred) {
      inferred = true;
      continue;
    }
    if (d < 0) throw std::invalid_argument("negative dimension in shape");
    if (d != 0 && n > kMaxElements / d) throw std::invalid_argument("shape has too many elements");
    n *= d;
  }
  return mx::Shape(s.begin(), s.end());
}
std::vector<int> to_ints(rust::Slice<const int32_t> s) { return std::vector<int>(s.begin(), s.end()); }
ArrayPtr wrap(mx::array a) { return std::make_unique<Array>(std::move(a)); }
std::optional<mx::array> opt(const Array* a) {
  if (a == nullptr) return std::nullopt;
  return a->inner;
}

}  // namespace

ArrayPtr from_bytes(rust::Slice<const uint8_t> data, rust::Slice<const int32_t> shape, uint8_t dtype) {
  auto dt = to_dtype(dtype);
  auto sh = checked_shape(shape);
  size_t n = 1;
  for (auto d : sh) n *= static_cast<size_t>(d);  // no overflow: checked_shape bounds it
  if (data.size() > size_t(INT32_MAX)) {
    throw std::invalid_argument("from_bytes takes at most 2^31 - 1 bytes at a time");
  }
  if (n * dt.size() != data.size()) {
    throw std::invalid_argument("byte length " + std::to_string(data.size()) +
                                " does not match shape and dtype (" +
                                std::to_string(n * dt.size()) + " bytes expected)");
  }
  if (n == 0) {
    mx::array raw(data.begin(), mx::Shape{0}, mx::uint8);
    return wrap(mx::reshape(dt == mx::uint8 ? raw : mx::view(raw, dt), sh));
  }
  // An evaluated array holding a copy of the bytes: readers on the host (to_bytes, the
  // kernels' checks) need no eval, which would wait behind everything queued on the stream.
  // (Viewing a uint8 array as dt and reshaping it made two unevaluated nodes.)
  mx::array out(mx::allocator::malloc(data.size()), sh, dt);
  std::memcpy(out.data<uint8_t>(), data.data(), data.size());
  return wrap(std::move(out));
}

ArrayPtr full_f64(rust::Slice<const int32_t> shape, double value, uint8_t dtype) {
  auto dt = to_dtype(dtype);
  return wrap(mx::full(checked_shape(shape), mx::array(static_cast<float>(value)), dt));
}

ArrayPtr arange_f64(double start, double stop, double step, uint8_t dtype) {
  return wrap(mx::arange(start, stop, step, to_dtype(dtype)));
}

ArrayPtr clone_array(const Array& a) { return wrap(a.inner); }

bool is_available(const Array& a) { return a.inner.is_available(); }

rust::Vec<int32_t> shape(const Array& a) {
  rust::Vec<int32_t> out;
  for (auto d : a.inner.shape()) out.push_back(d);
  return out;
}

uint8_t dtype(const Array& a) { return from_dtype(a.inner.dtype()); }
size_t nbytes(const Array& a) { return a.inner.nbytes(); }

void copy_bytes(const Array& a, rust::Slice<uint8_t> out) {
  // Data already on the host (computed and available) is read as it is: an eval here would
  // wait behind everything queued on the stream, a whole forward pass when the caller builds
  // the next one ahead. (Arrays from from_bytes are evaluated already.)
  const bool ready = a.inner.is_available() && a.inner.flags().row_contiguous;
  auto c = ready ? a.inner : mx::contiguous(a.inner);
  if (!ready) c.eval();
  if (out.size() != c.nbytes()) throw std::invalid_argument("copy_bytes: the buffer does not hold the array");
  // One copy (a byte at a time through rust::Vec::push_back, reading a decode step's page
  // table back for every layer's checks took 1.5% of a batch-8 profile).
  if (c.nbytes() > 0) std::memcpy(out.data(), c.data<uint8_t>(), c.nbytes());
}

rust::String describe(const Array& a) {
  std::ostringstream os;
  os << "array(shape=[";
  for (size_t i = 0; i < a.inner.shape().size(); ++i) os << (i ? "," : "") << a.inner.shape()[i];
  os << "], dtype=" << a.inner.dtype() << ")";
  return rust::String(os.str());
}

ArrayPtr unary(uint8_t op, const Array& a) {
  const auto& x = a.inner;
  switch (op) {
    case 0: return wrap(mx::exp(x));
    case 1: return wrap(mx::log(x));
    case 2: return wrap(mx::sqrt(x));
    case 3: return wrap(mx::rsqrt(x));
    case 4: return wrap(mx::tanh(x));
    case 5: return wrap(mx::sigmoid(x));
    case 6: return wrap(mx::negative(x));
    case 7: return wrap(mx::abs(x));
    case 8: return wrap(mx::square(x));
    case 9: return wrap(mx::sin(x));
    case 10: return wrap(mx::cos(x));
    case 11: return wrap(mx::erf(x));
    case 12: return wrap(mx::log1p(x));
    case 13: return wrap(mx::floor(x));
    case 14: return wrap(mx::logical_not(x));
    case 15: return wrap(mx::stop_gradient(x));
    case 16: return wrap(mx::copy(x));
    case 17: return wrap(mx::round(x));
  }
  throw std::invalid_argument("unknown unary op code " + std::to_string(op));
}

ArrayPtr binary(uint8_t op, const Array& a, const Array& b) {
  const auto &x = a.inner, &y = b.inner;
  switch (op) {
    case 0: return wrap(mx::add(x, y));
    case 1: return wrap(mx::subtract(x, y));
    case 2: return wrap(mx::multiply(x, y));
    case 3: return wrap(mx::divide(x, y));
    case 4: return wrap(mx::maximum(x, y));
    case 5: return wrap(mx::minimum(x, y));
    case 6: return wrap(mx::power(x, y));
    case 7: return wrap(mx::equal(x, y));
    case 8: return wrap(mx::not_equal(x, y));
    case 9: return wrap(mx::less(x, y));
    case 10: return wrap(mx::less_equal(x, y));
    case 11: return wrap(mx::greater(x, y));
    case 12: return wrap(mx::greater_equal(x, y));
    case 13: return wrap(mx::logical_and(x, y));
    case 14: return wrap(mx::logical_or(x, y));
  }
  throw std::invalid_argument("unknown binary op code " + std::to_string(op));
}

ArrayPtr reduce(uint8_t op, const Array& a, rust::Slice<const int32_t> axes, bool keepdims) {
  auto ax = to_ints(axes);
  const auto& x = a.inner;
  switch (op) {
    case 0: return wrap(mx::sum(x, ax, keepdims));
    case 1: return wrap(mx::mean(x, ax, keepdims));
    case 2: return wrap(mx::max(x, ax, keepdims));
    case 3: return wrap(mx::min(x, ax, keepdims));
    case 4: return wrap(mx::logsumexp(x, ax, keepdims));
    case 5: return wrap(mx::prod(x, ax, keepdims));
  }
  throw std::invalid_argument("unknown reduce op code " + std::to_string(op));
}

ArrayPtr arg_reduce(uint8_t op, const Array& a, int32_t axis, bool keepdims) {
  if (op == 0) return wrap(mx::argmax(a.inner, axis, keepdims));
  if (op == 1) return wrap(mx::argmin(a.inner, axis, keepdims));
  throw std::invalid_argument("unknown arg-reduce op code " + std::to_string(op));
}

ArrayPtr astype(const Array& a, uint8_t dtype) { return wrap(mx::astype(a.inner, to_dtype(dtype))); }
ArrayPtr view(const Array& a, uint8_t dtype) { return wrap(mx::view(a.inner, to_dtype(dtype))); }
ArrayPtr reshape(const Array& a, rust::Slice<const int32_t> shape) {
  return wrap(mx::reshape(a.inner, checked_shape(shape, true)));
}
ArrayPtr transpose(const Array& a, rust::Slice<const int32_t> axes) {
  if (axes.empty()) return wrap(mx::transpose(a.inner));
  return wrap(mx::transpose(a.inner, to_ints(axes)));
}
ArrayPtr swapaxes(const Array& a, int32_t a1, int32_t a2) { return wrap(mx::swapaxes(a.inner, a1, a2)); }
ArrayPtr expand_dims(const Array& a, int32_t axis) { return wrap(mx::expand_dims(a.inner, axis)); }
ArrayPtr squeeze(const Array& a, rust::Slice<const int32_t> axes) {
  if (axes.empty()) return wrap(mx::squeeze(a.inner));
  return wrap(mx::squeeze(a.inner, to_ints(axes)));
}
ArrayPtr broadcast_to(const Array& a, rust::Slice<const int32_t> shape) {
  return wrap(mx::broadcast_to(a.inner, checked_shape(shape)));
}
ArrayPtr slice(const Array& a, rust::Slice<const int32_t> start, rust::Slice<const int32_t> stop,
               rust::Slice<const int32_t> strides) {
  return wrap(mx::slice(a.inner, to_shape(start), to_shape(stop), to_shape(strides)));
}
ArrayPtr slice_update(const Array& src, const Array& update, rust::Slice<const int32_t> start,
                      rust::Slice<const int32_t> stop, rust::Slice<const int32_t> strides) {
  return wrap(mx::slice_update(src.inner, update.inner, to_shape(start), to_shape(stop), to_shape(strides)));
}
ArrayPtr concatenate(const ArrayList& list, int32_t axis) { return wrap(mx::concatenate(list.items, axis)); }
ArrayPtr stack(const ArrayList& list, int32_t axis) { return wrap(mx::stack(list.items, axis)); }
ArrayPtr split_equal(const Array& a, int32_t parts, int32_t axis, size_t index) {
  auto pieces = mx::split(a.inner, parts, axis);
  if (index >= pieces.size()) throw std::out_of_range("split index out of range");
  return wrap(pieces[index]);
}
ArrayPtr take(const Array& a, const Array& indices, int32_t axis) {
  return wrap(mx::take(a.inner, indices.inner, axis));
}
ArrayPtr take_along_axis(const Array& a, const Array& indices, int32_t axis) {
  return wrap(mx::take_along_axis(a.inner, indices.inner, axis));
}
ArrayPtr put_along_axis(const Array& a, const Array& indices, const Array& values, int32_t axis) {
  return wrap(mx::put_along_axis(a.inner, indices.inner, values.inner, axis));
}
ArrayPtr where_(const Array& cond, const Array& a, const Array& b) {
  return wrap(mx::where(cond.inner, a.inner, b.inner));
}
ArrayPtr sort(const Array& a, int32_t axis, bool arg) {
  return wrap(arg ? mx::argsort(a.inner, axis) : mx::sort(a.inner, axis));
}
ArrayPtr partition(const Array& a, int32_t kth, int32_t axis, bool arg) {
  return wrap(arg ? mx::argpartition(a.inner, kth, axis) : mx::partition(a.inner, kth, axis));
}
ArrayPtr softmax(const Array& a, rust::Slice<const int32_t> axes, bool precise) {
  return wrap(mx::softmax(a.inner, to_ints(axes), precise));
}
ArrayPtr cumsum(const Array& a, int32_t axis, bool reverse, bool inclusive) {
  return wrap(mx::cumsum(a.inner, axis, reverse, inclusive));
}
ArrayPtr tri_mask(const Array& a, int32_t k, bool upper) {
  return wrap(upper ? mx::triu(a.inner, k) : mx::tril(a.inner, k));
}
ArrayPtr contiguous(const Array& a) { return wrap(mx::contiguous(a.inner)); }
ArrayPtr repeat(const Array& a, int32_t repeats, int32_t axis) { return wrap(mx::repeat(a.inner, repeats, axis)); }
ArrayPtr clip(const Array& a, double lo, double hi) {
  return wrap(mx::clip(a.inner, mx::array(lo, a.inner.dtype()), mx::array(hi, a.inner.dtype())));
}
ArrayPtr matmul(const Array& a, const Array& b) { return wrap(mx::matmul(a.inner, b.inner)); }
ArrayPtr addmm(const Array& c, const Array& a, const Array& b) {
  return wrap(mx::addmm(c.inner, a.inner, b.inner));
}

std::unique_ptr<ArrayList> quantize(const Array& w, int32_t group_size, int32_t bits) {
  auto out = std::make_unique<ArrayList>();
  out->items = mx::quantize(w.inner, group_size, bits, "affine");
  out->names = {"weight", "scales", "biases"};
  return out;
}
ArrayPtr dequantize(const Array& w, const Array& scales, const Array* biases, int32_t group_size,
                    int32_t bits, int32_t dtype) {
  std::optional<mx::Dtype> dt;
  if (dtype >= 0) dt = to_dtype(static_cast<uint8_t>(dtype));
  return wrap(mx::dequantize(w.inner, scales.inner, opt(biases), group_size, bits, "affine", std::nullopt, dt));
}
ArrayPtr quantized_matmul(const Array& x, const Array& w, const Array& scales, const Array* biases,
                          bool transpose, int32_t group_size, int32_t bits) {
  return wrap(mx::quantized_matmul(x.inner, w.inner, scales.inner, opt(biases), transpose, group_size, bits, "affine"));
}

ArrayPtr rms_norm(const Array& x, const Array* weight, float eps) {
  return wrap(mx::fast::rms_norm(x.inner, opt(weight), eps));
}
ArrayPtr layer_norm(const Array& x, const Array* weight, const Array* bias, float eps) {
  return wrap(mx::fast::layer_norm(x.inner, opt(weight), opt(bias), eps));
}
ArrayPtr rope(const Array& x, int32_t dims, bool traditional, float base, bool has_base, float scale,
              int32_t offset, const Array* freqs) {
  std::optional<float> b;
  if (has_base) b = base;
  return wrap(mx::fast::rope(x.inner, dims, traditional, b, scale, offset, opt(freqs)));
}
ArrayPtr rope_offsets(const Array& x, int32_t dims, bool traditional, float base, bool has_base,
                      float scale, const Array& offsets, const Array* freqs) {
  std::optional<float> b;
  if (has_base) b = base;
  return wrap(mx::fast::rope(x.inner, dims, traditional, b, scale, offsets.inner, opt(freqs)));
}
ArrayPtr sdpa(const Array& q, const Array& k, const Array& v, float scale, rust::Str mask_mode,
              const Array* mask) {
  return wrap(mx::fast::scaled_dot_product_attention(q.inner, k.inner, v.inner, scale,
                                                     std::string(mask_mode), opt(mask)));
}

ArrayPtr random_key(uint64_t seed) { return wrap(mx::random::key(seed)); }
ArrayPtr random_split(const Array& key, int32_t num) { return wrap(mx::random::split(key.inner, num)); }
ArrayPtr categorical(const Array& logits, int32_t axis, const Array* key) {
  return wrap(mx::random::categorical(logits.inner, axis, opt(key)));
}
ArrayPtr uniform(rust::Slice<const int32_t> shape, uint8_t dtype, const Array* key) {
  return wrap(mx::random::uniform(checked_shape(shape), to_dtype(dtype), opt(key)));
}

namespace {

// Waits for the work queued on every CPU stream (at exit; errors no longer matter then).
void drain_cpu_streams() {
  try {
    for (const auto& s : mx::get_streams()) {
      if (s.device == mx::Device::cpu) mx::synchronize(s);
    }
  } catch (...) {
  }
}

// MLX never joins its stream threads (it leaks its scheduler), so at exit they go on running
// queued tasks while exit handlers tear down what those tasks use: the CPU allocator's buffer
// cache (heap corruption), OpenBLAS's buffers and threads (a crash or hang in sgemm).
// `generate` leaves its last queued step unread when it stops, and `cortex run` exits right
// after. So the first eval registers drain_cpu_streams with atexit, after making the MLX
// statics it uses (the allocator, the stream list): handlers run in reverse order of
// registration, so the drain runs before those are destroyed and before the libraries'
// destructors.
void drain_at_exit() {
  static const bool registered = [] {
    (void)mx::get_active_memory();
    (void)mx::get_streams();
    return std::atexit(drain_cpu_streams) == 0;
  }();
  (void)registered;
}

}  // namespace

void eval(const ArrayList& list) {
  drain_at_exit();
  mx::eval(list.items);
}
void async_eval(const ArrayList& list) {
  drain_at_exit();
  mx::async_eval(list.items);
}
void eval_one(const Array& a) {
  drain_at_exit();
  mx::eval({a.inner});
}

std::unique_ptr<ArrayList> list_new() { return std::make_unique<ArrayList>(); }
void list_push(ArrayList& list, const Array& a, rust::Str name) {
  list.items.push_back(a.inner);
  list.names.emplace_back(name);
}
size_t list_len(const ArrayList& list) { return list.items.size(); }
ArrayPtr list_get(const ArrayList& list, size_t i) {
  if (i >= list.items.size()) throw std::out_of_range("array list index out of range");
  return wrap(list.items[i]);
}
rust::String list_name(const ArrayList& list, size_t i) {
  if (i >= list.names.size()) throw std::out_of_range("array list index out of range");
  return rust::String(list.names[i]);
}

std::unique_ptr<ArrayList> load_safetensors(rust::Str path, rust::Vec<rust::String>& meta_keys,
                                            rust::Vec<rust::String>& meta_values) {
  auto [arrays, meta] = mx::load_safetensors(std::string(path));
  auto out = std::make_unique<ArrayList>();
  for (auto& [name, arr] : arrays) {
    out->names.push_back(name);
    out->items.push_back(arr);
  }
  for (auto& [k, v] : meta) {
    meta_keys.push_back(rust::String(k));
    meta_values.push_back(rust::String(v));
  }
  return out;
}

void save_safetensors(rust::Str path, const ArrayList& arrays, rust::Slice<const rust::String> meta_keys,
                      rust::Slice<const rust::String> meta_values) {
  std::unordered_map<std::string, mx::array> map;
  for (size_t i = 0; i < arrays.items.size(); ++i) map.insert({arrays.names.at(i), arrays.items[i]});
  std::unordered_map<std::string, std::string> meta;
  for (size_t i = 0; i < meta_keys.size() && i < meta_values.size(); ++i) {
    meta[std::string(meta_keys[i])] = std::string(meta_values[i]);
  }
  mx::save_safetensors(std::string(path), std::move(map), std::move(meta));
}

std::unique_ptr<ArrayList> load_gguf(rust::Str path) {
  auto loaded = mx::load_gguf(std::string(path));
  auto out = std::make_unique<ArrayList>();
  for (auto& [name, arr] : loaded.first) {
    out->names.push_back(name);
    out->items.push_back(arr);
  }
  return out;
}

bool gpu_available() { return mx::is_available(mx::Device::gpu); }
bool default_device_is_gpu() { return mx::default_device() == mx::Device::gpu; }
void set_default_device(bool gpu) { mx::set_default_device(gpu ? mx::Device::gpu : mx::Device::cpu); }
size_t active_memory() { return mx::get_active_memory(); }
size_t peak_memory() { return mx::get_peak_memory(); }
size_t cache_memory() { return mx::get_cache_memory(); }
void reset_peak_memory() { mx::reset_peak_memory(); }
size_t set_memory_limit(size_t bytes) { return mx::set_memory_limit(bytes); }
size_t set_cache_limit(size_t bytes) { return mx::set_cache_limit(bytes); }
void clear_cache() { mx::clear_cache(); }
rust::String mlx_version() { return rust::String(mx::version()); }
void synchronize() { mx::synchronize(); }

}  // namespace cortex_mlx
