//! A safetensors file from an untrusted repo: the header check that runs before MLX reads a
//! byte. Any file may be refused; none may panic, and the check must never read past the file.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;

fuzz_target!(|data: &[u8]| {
    thread_local! {
        static PATH: std::path::PathBuf = std::env::temp_dir()
            .join(format!("cortex-fuzz-{}.safetensors", std::process::id()));
    }
    PATH.with(|path| {
        let mut f = std::fs::File::create(path).expect("scratch file");
        f.write_all(data).expect("scratch write");
        drop(f);
        let _ = cortex_engine::safetensors::check_file(path);
    });
});
