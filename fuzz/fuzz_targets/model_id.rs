//! MODEL strings as clients send them: parsed into a hub model or a local reference. A hub
//! model's cache folder must be one plain path component (nothing a name can make escape the
//! cache), its revision must stay inside refs/, and its id must parse back to itself.
#![no_main]
use cortex_hub::{parse_model_ref, ModelRef};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(s) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(ModelRef::Hub(model)) = parse_model_ref(s) else {
        return;
    };
    let folder = model.cache_folder_name();
    assert!(
        !folder.contains(['/', '\\', '\0']) && folder != "." && folder != "..",
        "{s:?} -> cache folder {folder:?}"
    );
    if let Some(rev) = &model.revision {
        assert!(
            !rev.split(['/', '\\']).any(|c| c == ".." || c.is_empty()) && !rev.starts_with('/'),
            "{s:?} -> revision {rev:?}"
        );
    }
    let again = parse_model_ref(&model.to_string());
    assert_eq!(
        again,
        Ok(ModelRef::Hub(model.clone())),
        "{s:?} does not round-trip"
    );
});
