// Included by the build scripts of crates that depend on cortex-mlx (engine, hub, cli).
// Their binaries and tests must carry libmlx's rpath (and the OpenBLAS link) themselves:
// rustc-link-arg from cortex-mlx's build script does not reach dependents, so each re-emits
// what cortex-mlx exported through `links = "mlx"`.
fn link_like_cortex_mlx() {
    if let Ok(dir) = std::env::var("DEP_MLX_LIB_DIR") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,{dir}");
    }
    if let Ok(blas) = std::env::var("DEP_MLX_OPENBLAS") {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg={blas}");
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
    }
}
