//! Binaries must carry libmlx's rpath (and the OpenBLAS link) themselves: rustc-link-arg from
//! cortex-mlx's build script does not reach dependents, so we re-emit what it exported.
fn main() {
    if let Ok(dir) = std::env::var("DEP_MLX_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    if let Ok(blas) = std::env::var("DEP_MLX_OPENBLAS") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg={blas}");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
