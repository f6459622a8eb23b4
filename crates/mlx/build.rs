//! Finds the MLX C++ SDK that MLX's PyPI wheels ship (mlx/include, mlx/lib/libmlx.{so,dylib}),
//! compiles the cxx shim against it and links libmlx with an rpath.
//!
//! Search order: `MLX_DIR` (the SDK root, the folder holding include/ and lib/, or its
//! share/cmake/MLX), then the project venv (`.venv` at the workspace root), then `python3 -m mlx
//! --cmake-dir`. `links = "mlx"` exports `DEP_MLX_LIB_DIR` (and `DEP_MLX_OPENBLAS`) so the build
//! scripts of binaries that depend on us can add the same rpath: rustc-link-arg does not propagate.
use std::path::{Path, PathBuf};
use std::process::Command;

fn sdk_root_from(p: &Path) -> Option<PathBuf> {
    // Accept the root itself or any folder below it (e.g. share/cmake/MLX).
    let mut cur = Some(p);
    while let Some(dir) = cur {
        if dir.join("include/mlx/mlx.h").exists() && dir.join("lib").exists() {
            return Some(dir.to_path_buf());
        }
        cur = dir.parent();
    }
    None
}

fn from_python(python: &str) -> Option<PathBuf> {
    let out = Command::new(python)
        .args(["-m", "mlx", "--cmake-dir"])
        .output()
        .ok()?;
    if !out.status.success() {
        return None;
    }
    let s = String::from_utf8(out.stdout).ok()?;
    sdk_root_from(Path::new(s.trim()))
}

fn find_sdk() -> PathBuf {
    if let Ok(dir) = std::env::var("MLX_DIR") {
        return sdk_root_from(Path::new(&dir))
            .unwrap_or_else(|| panic!("MLX_DIR={dir} holds no MLX SDK (include/mlx/mlx.h, lib/)"));
    }
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").unwrap());
    let venv_python = manifest.join("../../.venv/bin/python3");
    if venv_python.exists() {
        if let Some(p) = from_python(venv_python.to_str().unwrap()) {
            return p;
        }
    }
    if let Some(p) = from_python("python3") {
        return p;
    }
    panic!(
        "MLX C++ SDK not found. Run scripts/setup.sh (it installs the MLX wheel into .venv), \
         or set MLX_DIR to the folder holding include/mlx and lib/libmlx."
    );
}

/// Debian's OpenBLAS: linking it into every binary makes MLX's cblas calls resolve to it instead
/// of the reference BLAS the Linux wheel bundles (a level-1 dependency wins the symbol lookup
/// over libmlx's own level-2 one). Opt out with CORTEX_OPENBLAS=0.
fn find_openblas() -> Option<PathBuf> {
    if std::env::var("CORTEX_OPENBLAS").as_deref() == Ok("0") {
        return None;
    }
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() != Ok("linux") {
        return None;
    }
    let candidates = [
        "/usr/lib/x86_64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/aarch64-linux-gnu/openblas-pthread/libopenblas.so.0",
        "/usr/lib/x86_64-linux-gnu/libopenblas.so.0",
    ];
    candidates.iter().map(PathBuf::from).find(|p| p.exists())
}

fn main() {
    println!("cargo:rerun-if-env-changed=MLX_DIR");
    println!("cargo:rerun-if-env-changed=CORTEX_OPENBLAS");
    println!("cargo:rerun-if-changed=src/shim.cc");
    println!("cargo:rerun-if-changed=src/qgemv.cc");
    println!("cargo:rerun-if-changed=src/qgemv_rows.cc");
    println!("cargo:rerun-if-changed=src/qgemv_rows.h");
    println!("cargo:rerun-if-changed=src/pool.cc");
    println!("cargo:rerun-if-changed=src/kernels.cc");
    println!("cargo:rerun-if-changed=src/attention.cc");
    println!("cargo:rerun-if-changed=src/attention_kernels.cc");
    println!("cargo:rerun-if-changed=src/attention_kernels.h");
    println!("cargo:rerun-if-changed=src/norm.cc");
    println!("cargo:rerun-if-changed=src/kernels.h");
    println!("cargo:rerun-if-changed=src/qdot.cc");
    println!("cargo:rerun-if-changed=src/qdot16.cc");
    println!("cargo:rerun-if-changed=src/qdot.h");
    println!("cargo:rerun-if-changed=include/shim.h");
    let sdk = find_sdk();
    let include = sdk.join("include");
    let lib = sdk.join("lib");
    // The SDK's path is baked into the link line and the rpath. A target dir shared between
    // checkouts (CI caches one) would otherwise keep a path whose venv is gone: a missing file
    // makes cargo run this script again.
    println!(
        "cargo:rerun-if-changed={}",
        include.join("mlx/mlx.h").display()
    );
    for name in ["libmlx.so", "libmlx.dylib"] {
        if lib.join(name).exists() {
            println!("cargo:rerun-if-changed={}", lib.join(name).display());
        }
    }

    cxx_build::bridge("src/ffi.rs")
        .file("src/shim.cc")
        .file("src/qgemv.cc")
        .file("src/qgemv_rows.cc")
        .file("src/pool.cc")
        .file("src/kernels.cc")
        .file("src/attention.cc")
        .file("src/attention_kernels.cc")
        .file("src/norm.cc")
        .file("src/qdot.cc")
        .file("src/qdot16.cc")
        .include(&include)
        .include("include")
        .flag_if_supported("-std=c++20")
        .flag_if_supported("-Wno-deprecated-declarations")
        .flag_if_supported("-Wno-unused-parameter")
        .compile("cortex_mlx_shim");

    println!("cargo:rustc-link-search=native={}", lib.display());
    println!("cargo:rustc-link-lib=dylib=mlx");
    println!("cargo:rustc-link-arg=-Wl,-rpath,{}", lib.display());
    println!("cargo:lib_dir={}", lib.display());
    println!("cargo:include_dir={}", include.display());
    if let Some(blas) = find_openblas() {
        println!("cargo:rustc-link-arg=-Wl,--no-as-needed");
        println!("cargo:rustc-link-arg={}", blas.display());
        println!("cargo:rustc-link-arg=-Wl,--as-needed");
        println!("cargo:openblas={}", blas.display());
    }
}
