//! The tiny-bitnet reference manifest (`../shared/fixtures/reference/manifest.json`, Llama 3
//! vocabulary) tokenized by our tokenizer: the model tests take `input_ids` from the manifest, so
//! this is what proves that the ids the engine would feed are the reference's. Text prompts are
//! BOS + the text's tokens; the chat prompt is the rendered chat template (which starts with BOS)
//! encoded without adding another. The same for the bf16-master variant's prompts and tokenizer.

mod common;

use std::path::Path;

use bitnet_tokenizer::{ChatMessage, Tokenizer};
use common::{ids, read_json, shared_fixtures};

fn messages(v: &serde_json::Value) -> Vec<ChatMessage> {
    serde_json::from_value(v.clone()).expect("messages")
}

/// Checks every prompt of `prompts` against `t`; returns (text prompts, chat prompts) seen.
fn check_prompts(t: &Tokenizer, prompts: &[serde_json::Value], label: &str) -> (usize, usize) {
    let (mut n_text, mut n_chat) = (0, 0);
    for p in prompts {
        let name = p["name"].as_str().unwrap();
        let text = p["text"].as_str().unwrap();
        let expected = ids(&p["input_ids"]);
        assert_eq!(
            expected.len() as u64,
            p["n_tokens"].as_u64().unwrap(),
            "{label}/{name}: n_tokens"
        );
        assert_eq!(expected[0], 128_000, "{label}/{name}: starts with BOS");
        match p["kind"].as_str().unwrap() {
            "text" => {
                n_text += 1;
                let got = t.encode(text, t.add_bos(), true).unwrap();
                assert_eq!(got, expected, "{label}/{name}: input ids");
                assert_eq!(t.decode(&got, true).unwrap(), text, "{label}/{name}");
            }
            "chat" => {
                n_chat += 1;
                let rendered = t
                    .chat_template()
                    .expect("chat template")
                    .render(&messages(&p["messages"]), true)
                    .unwrap();
                assert_eq!(rendered, text, "{label}/{name}: rendered chat template");
                let got = t.encode(&rendered, false, true).unwrap();
                assert_eq!(got, expected, "{label}/{name}: input ids");
                assert_eq!(t.decode(&expected, false).unwrap(), text, "{label}/{name}");
            }
            other => panic!("{label}/{name}: unknown prompt kind {other}"),
        }
        if let Some(greedy) = p.get("greedy_new_ids") {
            assert_eq!(
                t.decode(&ids(greedy), false).unwrap(),
                p["greedy_text"].as_str().unwrap(),
                "{label}/{name}: greedy text"
            );
        }
    }
    (n_text, n_chat)
}

fn tokenizer(dir: &Path) -> Tokenizer {
    Tokenizer::from_hf_dir(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
}

#[test]
fn tiny_bitnet_manifest_prompts() {
    let Some(shared) = shared_fixtures() else {
        return;
    };
    let manifest = read_json(&shared.join("reference/manifest.json"));
    let prompts = manifest["prompts"].as_array().expect("prompts");
    let t = tokenizer(&shared.join("tiny-bitnet"));
    let (n_text, n_chat) = check_prompts(&t, prompts, "tiny-bitnet");
    // short, bos_only, long, multilingual, code; chat.
    assert_eq!((n_text, n_chat), (5, 1));
}

#[test]
fn tiny_bitnet_bf16_variant_prompts() {
    let Some(shared) = shared_fixtures() else {
        return;
    };
    let manifest = read_json(&shared.join("reference/manifest.json"));
    let prompts = manifest["bf16_variant"].as_array().expect("bf16_variant");
    let t = tokenizer(&shared.join("tiny-bitnet-bf16"));
    let (n_text, n_chat) = check_prompts(&t, prompts, "tiny-bitnet-bf16");
    assert_eq!((n_text, n_chat), (1, 1));
}
