//! Chat-template rendering: any template text (it comes from model files)
//! with messages of every role. It must end quickly: templates run under a
//! fuel limit.
#![no_main]

use bitnet_tokenizer::{ChatMessage, ChatTemplate};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(source) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(template) = ChatTemplate::new(source, "<s>", "</s>") else {
        return;
    };
    let messages = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi {{ there }} <|eot_id|>"),
        ChatMessage::new("assistant", "Hello."),
        ChatMessage::new("tool", "{\"x\": 1}"),
        ChatMessage::new("user", ""),
    ];
    let _ = template.render(&messages, true);
    let _ = template.render(&messages[1..2], false);
});
