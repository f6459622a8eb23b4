//! A chat template from an untrusted repo, compiled and rendered with a small conversation
//! (the input up to the first NUL is the template, the rest the last message's text). Any
//! template may fail to compile or render; none may panic, hang or exhaust memory.
#![no_main]
use cortex_tokenizer::{ChatMessage, ChatOptions, ChatTemplate, SpecialTokens};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let (source, last) = text.split_once('\0').unwrap_or((text, "hi"));
    let Ok(template) = ChatTemplate::compile(source) else {
        return;
    };
    let chat = [
        ChatMessage::system("be brief"),
        ChatMessage::user("hello"),
        ChatMessage::assistant("hi there"),
        ChatMessage::user(last),
    ];
    let special = SpecialTokens {
        bos: Some("<s>".into()),
        eos: Some("</s>".into()),
        ..SpecialTokens::default()
    };
    for add_generation_prompt in [false, true] {
        let opts = ChatOptions {
            add_generation_prompt,
            // a fixed clock: the same input renders the same way every run
            now: chrono::DateTime::from_timestamp(1_700_000_000, 0).map(|t| t.naive_utc()),
            ..ChatOptions::default()
        };
        let _ = template.render(&chat, &opts, &special);
    }
});
