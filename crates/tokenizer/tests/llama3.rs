//! The Llama 3 tokenizer (128,256 tokens, the 2B-4T vocabulary) against
//! `fixtures/tokenizer/cases.json`. The 9 MB `tokenizer.json` lives in the shared fixtures
//! (`tiny-bitnet/`); without them the tests print a note and pass.

mod common;

use bitnet_tokenizer::{ChatMessage, StreamDecoder, Tokenizer};
use common::{ids, read_json, repo_fixtures, shared_fixtures};

fn llama3() -> Option<Tokenizer> {
    let dir = shared_fixtures()?.join("tiny-bitnet");
    Some(Tokenizer::from_hf_dir(&dir).expect("load tiny-bitnet tokenizer"))
}

#[test]
fn cases_json() {
    let Some(t) = llama3() else { return };
    let cases = read_json(&repo_fixtures().join("tokenizer/cases.json"));
    let cases = cases["cases"].as_array().unwrap();
    assert_eq!(cases.len(), 69);
    for case in cases {
        let text = case["text"].as_str().unwrap();
        let expected = ids(&case["ids"]);
        assert_eq!(t.encode(text, false, true).unwrap(), expected, "{text:?}");
        assert_eq!(
            t.encode(text, true, true).unwrap(),
            ids(&case["ids_with_bos"]),
            "{text:?} with BOS"
        );
        assert_eq!(t.decode(&expected, false).unwrap(), text, "{text:?}");

        // Streaming the same ids gives the same text, and never a broken character.
        let mut s = StreamDecoder::new(&t, false);
        let mut streamed = String::new();
        for &id in &expected {
            let chunk = s.push(id).unwrap();
            assert!(!chunk.contains('\u{FFFD}') || text.contains('\u{FFFD}'));
            streamed.push_str(&chunk);
        }
        streamed.push_str(&s.finish());
        assert_eq!(streamed, text);
    }
}

#[test]
fn metadata() {
    let Some(t) = llama3() else { return };
    assert_eq!(t.vocab_size(), 128_256);
    assert_eq!(t.bos_id(), Some(128_000));
    assert!(t.add_bos());
    // tokenizer_config eos_token = <|eot_id|>; generation_config eos = [128001, 128009].
    assert_eq!(t.eos_id(), Some(128_009));
    assert_eq!(t.eot_id(), Some(128_009));
    assert_eq!(t.stop_ids(), &[128_009, 128_001]);
    assert!(t.is_special(128_000) && t.is_special(128_255));
    assert!(!t.is_special(127_999));
    assert_eq!(
        t.token_text(128_011).as_deref(),
        Some("<|reserved_special_token_3|>")
    );
    assert_eq!(t.token_bytes(1917).unwrap(), b" world");
    let err = t.decode(&[9906, 128_256], false).unwrap_err();
    assert!(err.to_string().contains("128256"), "{err}");
}

#[test]
fn chat_template() {
    let Some(t) = llama3() else { return };
    let msgs = [
        ChatMessage::new("system", "You are a helpful assistant."),
        ChatMessage::new("user", "What is 1.58-bit quantization?"),
    ];
    let rendered = t.chat_template().unwrap().render(&msgs, true).unwrap();
    assert_eq!(
        rendered,
        "<|begin_of_text|>System: You are a helpful assistant.<|eot_id|>User: What is 1.58-bit \
         quantization?<|eot_id|>Assistant: "
    );
    let ids = t.encode(&rendered, false, true).unwrap();
    assert_eq!(ids[0], 128_000);
    assert_eq!(ids.iter().filter(|&&i| i == 128_009).count(), 2);
    assert_eq!(t.decode(&ids, false).unwrap(), rendered);
}
