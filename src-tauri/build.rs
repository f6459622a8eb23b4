//! Embeds the built web UI (ui/dist, built here with npm when missing), links libmlx like the
//! other binaries (crates/mlx/link_dependent.rs) and declares the app's command permissions.
include!("../crates/mlx/link_dependent.rs");
include!("src/command_names.rs");

use std::path::Path;
use std::process::Command;

fn ensure_ui_built() {
    let ui = Path::new(env!("CARGO_MANIFEST_DIR")).join("../ui");
    println!("cargo:rerun-if-changed=../ui/dist/index.html");
    if ui.join("dist/index.html").exists() {
        return;
    }
    let npm = |args: &[&str]| {
        Command::new("npm")
            .args(args)
            .current_dir(&ui)
            .status()
            .map(|s| s.success())
            .unwrap_or(false)
    };
    let built = (ui.join("node_modules").exists() || npm(&["ci", "--no-audit", "--no-fund"]))
        && npm(&["run", "build"]);
    if !built {
        panic!(
            "the web UI is not built and `npm run build` in ui/ failed: \
             run `cd ui && npm ci && npm run build` (Node 20+), then build again"
        );
    }
}

fn main() {
    ensure_ui_built();
    link_like_cortex_mlx();
    // The .deb keeps the MLX wheel's layout under /usr/lib/CortexStream/mlx (libmlx.so finds
    // its bundled BLAS/LAPACK through its own $ORIGIN/../../mlx_cpu.libs), binary in /usr/bin.
    // macOS needs nothing here: tauri-build adds @executable_path/../Frameworks for the bundled
    // libmlx.dylib (a second copy of that rpath makes recent macOS refuse to start the app).
    if std::env::var("CARGO_CFG_TARGET_OS").as_deref() == Ok("linux") {
        println!("cargo:rustc-link-arg=-Wl,-rpath,$ORIGIN/../lib/CortexStream/mlx/lib");
    }
    let manifest = tauri_build::AppManifest::new().commands(COMMAND_NAMES);
    tauri_build::try_build(tauri_build::Attributes::new().app_manifest(manifest))
        .expect("tauri-build failed");
}
