//! A .gguf file from an untrusted repo, imported into MLX format: the tensor table check, MLX's
//! reader, renaming, Q/K un-permutation, the quantization config and the tokenizer rebuilt from
//! metadata. Any file may be refused with an error; none may panic or crash MLX, and a refused
//! import leaves nothing behind in the models folder.
#![no_main]
use libfuzzer_sys::fuzz_target;
use std::io::Write;
use std::path::PathBuf;

fn scratch() -> &'static PathBuf {
    static DIR: std::sync::OnceLock<PathBuf> = std::sync::OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("cortex-fuzz-gguf-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(dir.join("models")).expect("scratch folder");
        dir
    })
}

fuzz_target!(|data: &[u8]| {
    let dir = scratch();
    let src = dir.join("Model.gguf");
    let mut f = std::fs::File::create(&src).expect("scratch file");
    f.write_all(data).expect("scratch write");
    drop(f);
    let models = dir.join("models");
    match cortex_engine::gguf_import::import_or_reuse(&src, &models) {
        Ok(dest) => {
            assert!(
                dest.join("config.json").is_file(),
                "an import without config.json"
            );
            std::fs::remove_dir_all(&dest).expect("remove import");
        }
        Err(_) => {
            let left: Vec<_> = std::fs::read_dir(&models)
                .expect("models folder")
                .map(|e| e.map(|e| e.file_name()))
                .collect();
            assert!(left.is_empty(), "a failed import left {left:?}");
        }
    }
});
