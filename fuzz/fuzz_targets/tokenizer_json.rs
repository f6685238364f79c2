//! A Hugging Face `tokenizer.json` with its `tokenizer_config.json`
//! (separated by the first NUL byte), then encoding and decoding with it.
#![no_main]

use bitnet_tokenizer::Tokenizer;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (tokenizer, rest) = data.split_at(split);
    let config = rest.get(1..).filter(|c| !c.is_empty());
    let Ok(tok) = Tokenizer::from_hf_json(tokenizer, config) else {
        return;
    };
    for text in ["Hello, wörld! 123", "<|begin_of_text|><|eot_id|>", "  \n\t💡"] {
        if let Ok(ids) = tok.encode(text, true, true) {
            let _ = tok.decode(&ids, false);
            let _ = tok.decode(&ids, true);
        }
    }
    if let Some(t) = tok.chat_template() {
        let _ = t.render(&[bitnet_tokenizer::ChatMessage::new("user", "hi")], true);
    }
});
