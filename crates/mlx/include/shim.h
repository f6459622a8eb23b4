// C++ side of the cortex-mlx bridge. Each function wraps one MLX call; MLX throws
// std::exception on bad input and cxx turns that into a Rust Err (never an abort).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "mlx/mlx.h"
#include "rust/cxx.h"

namespace cortex_mlx {

struct Array {
  mlx::core::array inner;
  explicit Array(mlx::core::array a) : inner(std::move(a)) {}
};

// An ordered list of arrays, optionally named: the bridge's way to pass vectors and maps.
struct ArrayList {
  std::vector<mlx::core::array> items;
  std::vector<std::string> names;
};

using ArrayPtr = std::unique_ptr<Array>;

// creation and inspection
ArrayPtr from_bytes(rust::Slice<const uint8_t> data, rust::Slice<const int32_t> shape, uint8_t dtype);
ArrayPtr full_f64(rust::Slice<const int32_t> shape, double value, uint8_t dtype);
ArrayPtr arange_f64(double start, double stop, double step, uint8_t dtype);
ArrayPtr clone_array(const Array& a);
bool is_available(const Array& a);
rust::Vec<int32_t> shape(const Array& a);
uint8_t dtype(const Array& a);
size_t nbytes(const Array& a);
// The array's row-major bytes into out, which holds exactly nbytes(a).
void copy_bytes(const Array& a, rust::Slice<uint8_t> out);
rust::String describe(const Array& a);

// element-wise, reductions, shape ops
ArrayPtr unary(uint8_t op, const Array& a);
ArrayPtr binary(uint8_t op, const Array& a, const Array& b);
ArrayPtr reduce(uint8_t op, const Array& a, rust::Slice<const int32_t> axes, bool keepdims);
ArrayPtr arg_reduce(uint8_t op, const Array& a, int32_t axis, bool keepdims);
ArrayPtr astype(const Array& a, uint8_t dtype);
ArrayPtr view(const Array& a, uint8_t dtype);
ArrayPtr reshape(const Array& a, rust::Slice<const int32_t> shape);
ArrayPtr transpose(const Array& a, rust::Slice<const int32_t> axes);
ArrayPtr swapaxes(const Array& a, int32_t a1, int32_t a2);
ArrayPtr expand_dims(const Array& a, int32_t axis);
ArrayPtr squeeze(const Array& a, rust::Slice<const int32_t> axes);
ArrayPtr broadcast_to(const Array& a, rust::Slice<const int32_t> shape);
ArrayPtr slice(const Array& a, rust::Slice<const int32_t> start, rust::Slice<const int32_t> stop,
               rust::Slice<const int32_t> strides);
ArrayPtr slice_update(const Array& src, const Array& update, rust::Slice<const int32_t> start,
                      rust::Slice<const int32_t> stop, rust::Slice<const int32_t> strides);
ArrayPtr concatenate(const ArrayList& list, int32_t axis);
ArrayPtr stack(const ArrayList& list, int32_t axis);
ArrayPtr split_equal(const Array& a, int32_t parts, int32_t axis, size_t index);
ArrayPtr take(const Array& a, const Array& indices, int32_t axis);
ArrayPtr take_along_axis(const Array& a, const Array& indices, int32_t axis);
ArrayPtr put_along_axis(const Array& a, const Array& indices, const Array& values, int32_t axis);
ArrayPtr where_(const Array& cond, const Array& a, const Array& b);
ArrayPtr sort(const Array& a, int32_t axis, bool arg);
ArrayPtr partition(const Array& a, int32_t kth, int32_t axis, bool arg);
ArrayPtr softmax(const Array& a, rust::Slice<const int32_t> axes, bool precise);
ArrayPtr cumsum(const Array& a, int32_t axis, bool reverse, bool inclusive);
ArrayPtr tri_mask(const Array& a, int32_t k, bool upper);
ArrayPtr contiguous(const Array& a);
ArrayPtr repeat(const Array& a, int32_t repeats, int32_t axis);
ArrayPtr clip(const Array& a, double lo, double hi);
ArrayPtr matmul(const Array& a, const Array& b);
ArrayPtr addmm(const Array& c, const Array& a, const Array& b);

// quantization
std::unique_ptr<ArrayList> quantize(const Array& w, int32_t group_size, int32_t bits);
ArrayPtr dequantize(const Array& w, const Array& scales, const Array* biases, int32_t group_size,
                    int32_t bits, int32_t dtype);
ArrayPtr quantized_matmul(const Array& x, const Array& w, const Array& scales, const Array* biases,
                          bool transpose, int32_t group_size, int32_t bits);

// x @ dequantize(w).T on the CPU for 4/8-bit affine weights (src/qgemv.cc)
ArrayPtr qgemv(const Array& x, const Array& w, const Array& scales, const Array& biases, int32_t group_size,
               int32_t bits);

// x @ w.T for a dense [N, K] weight on the CPU, few rows of x (src/qgemv.cc)
ArrayPtr gemv_f32(const Array& x, const Array& w);
ArrayPtr rms_norm_cpu(const Array& x, const Array& weight, float eps);
ArrayPtr silu_mul_cpu(const Array& gate, const Array& up);
ArrayPtr argmax_cpu(const Array& x);
std::unique_ptr<ArrayList> add_rms_norm_cpu(const Array& x, const Array& residual, const Array& weight, float eps);
// Several weights against the same x in one node (src/qgemv.cc): `weights` holds (w, scales,
// biases) triples, with `packed` (w, scales, biases, pack_rows16's blocks) quadruples, or dense
// [N, K] float32 weights when bits is 32. One output per weight, or with `swiglu` two weights
// (gate, up) and the one output silu(x @ gate.T) * (x @ up.T).
std::unique_ptr<ArrayList> gemv_many(const Array& x, const ArrayList& weights, int32_t group_size, int32_t bits,
                                     bool swiglu, bool packed);
// A quantized weight repacked 16 rows per vector for the int8 kernels (src/qdot.h, rows16);
// null when they do not take its bits and group size.
ArrayPtr pack_rows16(const Array& w, const Array& scales, const Array& biases, int32_t group_size, int32_t bits);
// A decode step's attention on the CPU (src/attention.cc): RoPE on each row's new query and
// key, the key and value written into the cache storage in place, attention over the cached
// positions. Storage is one sequence's [1, Hkv, capacity, D] (write and table null) or a paged
// pool [slots, Hkv, D] with write slots [R] and a slot table [R, S]. Returns the attention
// output (q's shape), then the keys and values storage (sharing the given memory).
ArrayPtr prefill_attention(const Array& q, const Array& keys, const Array& values, int32_t q_start, float scale,
                           float softcap, int32_t window);
std::unique_ptr<ArrayList> decode_attention(const Array& q, const Array& k, const Array& v, const Array& keys,
                                            const Array& values, const Array& positions, const Array& inv_freq,
                                            const Array* write, const Array* table, int32_t head_dim,
                                            int32_t rope_dims, bool traditional, float rope_scale,
                                            float input_scale, float scale, float softcap, int32_t window);
// Kernels made on the calling thread after this use the portable (non-AVX2) code when `scalar`.
void set_scalar_kernels(bool scalar);
// Whether this CPU runs the AVX2/FMA kernels.
bool cpu_has_avx2();
// Tests: every chunk of the kernel pool on a worker thread (kernels::set_pool_workers_only).
void set_pool_workers_only(bool only);
// qgemv nodes made on the calling thread after this quantize their activations to int8 per
// weight group and use integer dot products (src/qdot.h) when `int8`.
void set_int8_activations(bool int8);
// The instruction set the int8 kernels use on this CPU (avx512vnni, avxvnni, avx2, scalar).
rust::String int8_kernel_name();

// fast ops
ArrayPtr rms_norm(const Array& x, const Array* weight, float eps);
ArrayPtr layer_norm(const Array& x, const Array* weight, const Array* bias, float eps);
ArrayPtr rope(const Array& x, int32_t dims, bool traditional, float base, bool has_base,
              float scale, int32_t offset, const Array* freqs);
ArrayPtr rope_offsets(const Array& x, int32_t dims, bool traditional, float base, bool has_base,
                      float scale, const Array& offsets, const Array* freqs);
ArrayPtr sdpa(const Array& q, const Array& k, const Array& v, float scale, rust::Str mask_mode,
              const Array* mask);

// random
ArrayPtr random_key(uint64_t seed);
ArrayPtr random_split(const Array& key, int32_t num);
ArrayPtr categorical(const Array& logits, int32_t axis, const Array* key);
ArrayPtr uniform(rust::Slice<const int32_t> shape, uint8_t dtype, const Array* key);

// evaluation
void eval(const ArrayList& list);
void async_eval(const ArrayList& list);
void eval_one(const Array& a);

// lists
std::unique_ptr<ArrayList> list_new();
void list_push(ArrayList& list, const Array& a, rust::Str name);
size_t list_len(const ArrayList& list);
ArrayPtr list_get(const ArrayList& list, size_t i);
rust::String list_name(const ArrayList& list, size_t i);

// io
std::unique_ptr<ArrayList> load_safetensors(rust::Str path, rust::Vec<rust::String>& meta_keys,
                                            rust::Vec<rust::String>& meta_values);
void save_safetensors(rust::Str path, const ArrayList& arrays,
                      rust::Slice<const rust::String> meta_keys,
                      rust::Slice<const rust::String> meta_values);
std::unique_ptr<ArrayList> load_gguf(rust::Str path);

// devices and memory
bool gpu_available();
bool default_device_is_gpu();
void set_default_device(bool gpu);
size_t active_memory();
size_t peak_memory();
size_t cache_memory();
void reset_peak_memory();
size_t set_memory_limit(size_t bytes);
size_t set_cache_limit(size_t bytes);
void clear_cache();
rust::String mlx_version();
void synchronize();

}  // namespace cortex_mlx
