//! Picks the compute dtype by device. On x86 CPUs MLX emulates float16 in software (a 4-bit
//! model with float16 scales decodes ~40x slower than with float32), so the CPU runs float32;
//! GPUs (Metal, CUDA) run the half-precision type the checkpoint was trained in.
use cortex_mlx::Dtype;

pub fn compute_dtype(checkpoint_dtype: Option<Dtype>) -> Dtype {
    if let Ok(forced) = std::env::var("CORTEX_DTYPE") {
        if let Some(d) = Dtype::parse(&forced) {
            return d;
        }
    }
    if cortex_mlx::default_device_is_gpu() {
        match checkpoint_dtype {
            Some(Dtype::Float16) => Dtype::Float16,
            Some(Dtype::Float32) => Dtype::Float32,
            _ => Dtype::Bfloat16,
        }
    } else {
        Dtype::Float32
    }
}
