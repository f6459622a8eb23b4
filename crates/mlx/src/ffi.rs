//! The raw cxx bridge. Nothing outside this crate sees it: `Array` and the op modules wrap every
//! call in a safe API. Every fallible function returns `Result` so MLX's C++ exceptions become
//! Rust errors instead of aborting the process.

// The bridge mirrors MLX signatures one to one (rope takes eight arguments).
#[allow(clippy::too_many_arguments)]
#[cxx::bridge(namespace = "cortex_mlx")]
pub(crate) mod bridge {
    unsafe extern "C++" {
        include!("shim.h");

        type Array;
        type ArrayList;

        fn from_bytes(data: &[u8], shape: &[i32], dtype: u8) -> Result<UniquePtr<Array>>;
        fn full_f64(shape: &[i32], value: f64, dtype: u8) -> Result<UniquePtr<Array>>;
        fn arange_f64(start: f64, stop: f64, step: f64, dtype: u8) -> Result<UniquePtr<Array>>;
        fn clone_array(a: &Array) -> UniquePtr<Array>;
        fn is_available(a: &Array) -> bool;
        fn shape(a: &Array) -> Vec<i32>;
        fn dtype(a: &Array) -> Result<u8>;
        fn nbytes(a: &Array) -> usize;
        fn copy_bytes(a: &Array, out: &mut [u8]) -> Result<()>;
        fn describe(a: &Array) -> String;

        fn unary(op: u8, a: &Array) -> Result<UniquePtr<Array>>;
        fn binary(op: u8, a: &Array, b: &Array) -> Result<UniquePtr<Array>>;
        fn reduce(op: u8, a: &Array, axes: &[i32], keepdims: bool) -> Result<UniquePtr<Array>>;
        fn arg_reduce(op: u8, a: &Array, axis: i32, keepdims: bool) -> Result<UniquePtr<Array>>;
        fn astype(a: &Array, dtype: u8) -> Result<UniquePtr<Array>>;
        fn view(a: &Array, dtype: u8) -> Result<UniquePtr<Array>>;
        fn reshape(a: &Array, shape: &[i32]) -> Result<UniquePtr<Array>>;
        fn transpose(a: &Array, axes: &[i32]) -> Result<UniquePtr<Array>>;
        fn swapaxes(a: &Array, a1: i32, a2: i32) -> Result<UniquePtr<Array>>;
        fn expand_dims(a: &Array, axis: i32) -> Result<UniquePtr<Array>>;
        fn squeeze(a: &Array, axes: &[i32]) -> Result<UniquePtr<Array>>;
        fn broadcast_to(a: &Array, shape: &[i32]) -> Result<UniquePtr<Array>>;
        fn slice(
            a: &Array,
            start: &[i32],
            stop: &[i32],
            strides: &[i32],
        ) -> Result<UniquePtr<Array>>;
        fn slice_update(
            src: &Array,
            update: &Array,
            start: &[i32],
            stop: &[i32],
            strides: &[i32],
        ) -> Result<UniquePtr<Array>>;
        fn concatenate(list: &ArrayList, axis: i32) -> Result<UniquePtr<Array>>;
        fn stack(list: &ArrayList, axis: i32) -> Result<UniquePtr<Array>>;
        fn split_equal(a: &Array, parts: i32, axis: i32, index: usize) -> Result<UniquePtr<Array>>;
        fn take(a: &Array, indices: &Array, axis: i32) -> Result<UniquePtr<Array>>;
        fn take_along_axis(a: &Array, indices: &Array, axis: i32) -> Result<UniquePtr<Array>>;
        fn put_along_axis(
            a: &Array,
            indices: &Array,
            values: &Array,
            axis: i32,
        ) -> Result<UniquePtr<Array>>;
        fn where_(cond: &Array, a: &Array, b: &Array) -> Result<UniquePtr<Array>>;
        fn sort(a: &Array, axis: i32, arg: bool) -> Result<UniquePtr<Array>>;
        fn partition(a: &Array, kth: i32, axis: i32, arg: bool) -> Result<UniquePtr<Array>>;
        fn softmax(a: &Array, axes: &[i32], precise: bool) -> Result<UniquePtr<Array>>;
        fn cumsum(a: &Array, axis: i32, reverse: bool, inclusive: bool)
            -> Result<UniquePtr<Array>>;
        fn tri_mask(a: &Array, k: i32, upper: bool) -> Result<UniquePtr<Array>>;
        fn contiguous(a: &Array) -> Result<UniquePtr<Array>>;
        fn repeat(a: &Array, repeats: i32, axis: i32) -> Result<UniquePtr<Array>>;
        fn clip(a: &Array, lo: f64, hi: f64) -> Result<UniquePtr<Array>>;
        fn matmul(a: &Array, b: &Array) -> Result<UniquePtr<Array>>;
        fn addmm(c: &Array, a: &Array, b: &Array) -> Result<UniquePtr<Array>>;

        fn quantize(w: &Array, group_size: i32, bits: i32) -> Result<UniquePtr<ArrayList>>;
        unsafe fn dequantize(
            w: &Array,
            scales: &Array,
            biases: *const Array,
            group_size: i32,
            bits: i32,
            dtype: i32,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn quantized_matmul(
            x: &Array,
            w: &Array,
            scales: &Array,
            biases: *const Array,
            transpose: bool,
            group_size: i32,
            bits: i32,
        ) -> Result<UniquePtr<Array>>;

        fn qgemv(
            x: &Array,
            w: &Array,
            scales: &Array,
            biases: &Array,
            group_size: i32,
            bits: i32,
        ) -> Result<UniquePtr<Array>>;

        fn gemv_f32(x: &Array, w: &Array) -> Result<UniquePtr<Array>>;
        fn rms_norm_cpu(x: &Array, weight: &Array, eps: f32) -> Result<UniquePtr<Array>>;
        fn silu_mul_cpu(gate: &Array, up: &Array) -> Result<UniquePtr<Array>>;
        fn argmax_cpu(x: &Array) -> Result<UniquePtr<Array>>;
        fn add_rms_norm_cpu(
            x: &Array,
            residual: &Array,
            weight: &Array,
            eps: f32,
        ) -> Result<UniquePtr<ArrayList>>;
        fn gemv_many(
            x: &Array,
            weights: &ArrayList,
            group_size: i32,
            bits: i32,
            swiglu: bool,
            packed: bool,
        ) -> Result<UniquePtr<ArrayList>>;
        fn pack_rows16(
            w: &Array,
            scales: &Array,
            biases: &Array,
            group_size: i32,
            bits: i32,
        ) -> Result<UniquePtr<Array>>;
        fn set_scalar_kernels(scalar: bool);
        fn cpu_has_avx2() -> bool;
        fn set_pool_workers_only(only: bool);
        fn set_int8_activations(int8: bool);
        fn int8_kernel_name() -> String;

        #[allow(clippy::too_many_arguments)]
        fn prefill_attention(
            q: &Array,
            keys: &Array,
            values: &Array,
            q_start: i32,
            scale: f32,
            softcap: f32,
            window: i32,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn decode_attention(
            q: &Array,
            k: &Array,
            v: &Array,
            keys: &Array,
            values: &Array,
            positions: &Array,
            inv_freq: &Array,
            write: *const Array,
            table: *const Array,
            head_dim: i32,
            rope_dims: i32,
            traditional: bool,
            rope_scale: f32,
            input_scale: f32,
            scale: f32,
            softcap: f32,
            window: i32,
        ) -> Result<UniquePtr<ArrayList>>;

        unsafe fn rms_norm(x: &Array, weight: *const Array, eps: f32) -> Result<UniquePtr<Array>>;
        unsafe fn layer_norm(
            x: &Array,
            weight: *const Array,
            bias: *const Array,
            eps: f32,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn rope(
            x: &Array,
            dims: i32,
            traditional: bool,
            base: f32,
            has_base: bool,
            scale: f32,
            offset: i32,
            freqs: *const Array,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn rope_offsets(
            x: &Array,
            dims: i32,
            traditional: bool,
            base: f32,
            has_base: bool,
            scale: f32,
            offsets: &Array,
            freqs: *const Array,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn sdpa(
            q: &Array,
            k: &Array,
            v: &Array,
            scale: f32,
            mask_mode: &str,
            mask: *const Array,
        ) -> Result<UniquePtr<Array>>;

        fn random_key(seed: u64) -> Result<UniquePtr<Array>>;
        fn random_split(key: &Array, num: i32) -> Result<UniquePtr<Array>>;
        unsafe fn categorical(
            logits: &Array,
            axis: i32,
            key: *const Array,
        ) -> Result<UniquePtr<Array>>;
        unsafe fn uniform(shape: &[i32], dtype: u8, key: *const Array) -> Result<UniquePtr<Array>>;

        fn eval(list: &ArrayList) -> Result<()>;
        fn async_eval(list: &ArrayList) -> Result<()>;
        fn eval_one(a: &Array) -> Result<()>;

        fn list_new() -> UniquePtr<ArrayList>;
        fn list_push(list: Pin<&mut ArrayList>, a: &Array, name: &str);
        fn list_len(list: &ArrayList) -> usize;
        fn list_get(list: &ArrayList, i: usize) -> Result<UniquePtr<Array>>;
        fn list_name(list: &ArrayList, i: usize) -> Result<String>;

        fn load_safetensors(
            path: &str,
            meta_keys: &mut Vec<String>,
            meta_values: &mut Vec<String>,
        ) -> Result<UniquePtr<ArrayList>>;
        fn save_safetensors(
            path: &str,
            arrays: &ArrayList,
            meta_keys: &[String],
            meta_values: &[String],
        ) -> Result<()>;
        fn load_gguf(path: &str) -> Result<UniquePtr<ArrayList>>;

        fn gpu_available() -> bool;
        fn default_device_is_gpu() -> bool;
        fn set_default_device(gpu: bool) -> Result<()>;
        fn active_memory() -> usize;
        fn peak_memory() -> usize;
        fn cache_memory() -> usize;
        fn reset_peak_memory();
        fn set_memory_limit(bytes: usize) -> usize;
        fn set_cache_limit(bytes: usize) -> usize;
        fn clear_cache();
        fn mlx_version() -> String;
        fn synchronize() -> Result<()>;
    }
}
