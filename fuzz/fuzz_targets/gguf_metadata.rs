//! A GGUF file's metadata as read before import: the reader, the tensor-data bounds check, and
//! the tokenizer rebuilt from the metadata (vocabulary, merges, scores, chat template), then
//! used. Any input may be refused with an error; none may panic, hang or exhaust memory.
#![no_main]
use cortex_tokenizer::{gguf, ChatMessage, ChatOptions, Tokenizer};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(meta) = gguf::parse_metadata(data, data.len() as u64) else {
        return;
    };
    let _ = meta.check_tensor_data();
    let Ok(tok) = Tokenizer::from_gguf(&meta) else {
        return;
    };
    if let Ok(ids) = tok.encode("Hello, world! 123 😀", true) {
        let _ = tok.decode(&ids, false);
    }
    let chat = [ChatMessage::user("hi")];
    let opts = ChatOptions {
        add_generation_prompt: true,
        ..ChatOptions::default()
    };
    let _ = tok.apply_chat_template(&chat, &opts);
});
