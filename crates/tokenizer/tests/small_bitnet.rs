//! The 4096-token byte-level BPE tokenizer of the repository fixtures (`small-bitnet`,
//! `demo-bitnet`): reference prompt ids, the chat template, bitnet.cpp's tokenizer checks and
//! `valid.txt`, through both the `tokenizer.json` path and the GGUF-vocabulary path.

mod common;

use std::path::PathBuf;

use bitnet_tokenizer::{ChatMessage, Tokenizer};
use common::{gguf_vocab_from_file, ids, read_json, repo_fixtures};

fn dir(model: &str) -> PathBuf {
    repo_fixtures().join(model)
}

fn hf(model: &str) -> Tokenizer {
    Tokenizer::from_hf_dir(&dir(model)).expect("load tokenizer.json")
}

fn gguf(model: &str) -> Tokenizer {
    let path = dir(model).join(format!("gguf/{model}-i2_s.gguf"));
    Tokenizer::from_gguf_vocab(&gguf_vocab_from_file(&path)).expect("load GGUF vocabulary")
}

fn messages(v: &serde_json::Value) -> Vec<ChatMessage> {
    serde_json::from_value(v.clone()).expect("messages")
}

#[test]
fn hf_metadata() {
    let t = hf("small-bitnet");
    assert_eq!(t.vocab_size(), 4096);
    assert_eq!(t.bos_id(), Some(4091));
    // tokenizer_config.json's eos_token is <|eot_id|>; generation_config adds 4092.
    assert_eq!(t.eos_id(), Some(4093));
    assert_eq!(t.eot_id(), Some(4093));
    assert_eq!(t.stop_ids(), &[4093, 4092]);
    assert!(t.add_bos());
    for id in 4091..4096 {
        assert!(t.is_special(id), "{id}");
    }
    assert!(!t.is_special(0));
    assert!(!t.is_special(4096));
    assert_eq!(t.token_text(4093).as_deref(), Some("<|eot_id|>"));
    assert_eq!(t.token_text(220).as_deref(), Some("Ġ"));
    assert_eq!(t.token_bytes(220).unwrap(), b" ");
    assert_eq!(t.token_bytes(198).unwrap(), b"\n");
    assert_eq!(t.token_bytes(4093).unwrap(), b"<|eot_id|>");
    assert_eq!(t.token_to_id("<|eot_id|>"), Some(4093));
    assert!(t.token_text(4096).is_none());
    assert!(t.chat_template().is_some());
}

#[test]
fn gguf_metadata() {
    let t = gguf("small-bitnet");
    assert_eq!(t.vocab_size(), 4096);
    assert_eq!(t.bos_id(), Some(4091));
    assert_eq!(t.eos_id(), Some(4092));
    assert_eq!(t.eot_id(), Some(4093));
    assert_eq!(t.stop_ids(), &[4092, 4093]);
    assert!(t.add_bos());
    for id in 4091..4096 {
        assert!(t.is_special(id), "{id}");
    }
    assert!(!t.is_special(100));
    assert_eq!(t.token_bytes(220).unwrap(), b" ");
    let tmpl = t.chat_template().expect("tokenizer.chat_template");
    assert_eq!(tmpl.name(), "tokenizer.chat_template");
}

/// Every id's bytes and specialness agree between the two paths.
#[test]
fn hf_and_gguf_tables_agree() {
    let (a, b) = (hf("small-bitnet"), gguf("small-bitnet"));
    for id in 0..4096 {
        assert_eq!(a.token_text(id), b.token_text(id), "text of {id}");
        assert_eq!(
            a.token_bytes(id).unwrap(),
            b.token_bytes(id).unwrap(),
            "{id}"
        );
        assert_eq!(a.is_special(id), b.is_special(id), "{id}");
    }
}

fn check_manifest(model: &str) {
    let manifest = read_json(&dir(model).join("reference/manifest.json"));
    let prompts = manifest["prompts"].as_array().expect("prompts");
    let tokenizers = [("tokenizer.json", hf(model)), ("gguf", gguf(model))];
    let mut n_chat = 0;
    for p in prompts {
        let name = p["name"].as_str().unwrap();
        let text = p["text"].as_str().unwrap();
        let expected = ids(&p["input_ids"]);
        assert_eq!(expected.len() as u64, p["n_tokens"].as_u64().unwrap());
        for (path, t) in &tokenizers {
            match p["kind"].as_str().unwrap() {
                "text" => {
                    // Text prompts: BOS + the text's tokens.
                    let got = t.encode(text, t.add_bos(), true).unwrap();
                    assert_eq!(got, expected, "{model}/{name} via {path}");
                    assert_eq!(t.decode(&got, true).unwrap(), text, "{name} via {path}");
                }
                "chat" => {
                    n_chat += 1;
                    // The rendered template already starts with BOS: encode without adding one.
                    let rendered = t
                        .chat_template()
                        .unwrap()
                        .render(&messages(&p["messages"]), true)
                        .unwrap();
                    assert_eq!(rendered, text, "{model}/{name} via {path}");
                    assert_eq!(t.encode(&rendered, false, true).unwrap(), expected);
                    assert_eq!(t.decode(&expected, false).unwrap(), text);
                }
                other => panic!("unknown prompt kind {other}"),
            }
            // The reference greedy continuation decodes to the recorded text.
            let greedy = ids(&p["greedy_new_ids"]);
            assert_eq!(
                t.decode(&greedy, false).unwrap(),
                p["greedy_text"].as_str().unwrap(),
                "{model}/{name} greedy text via {path}"
            );
        }
    }
    if model == "small-bitnet" {
        assert_eq!(n_chat, 2);
    }
}

#[test]
fn small_bitnet_manifest_prompts() {
    check_manifest("small-bitnet");
}

#[test]
fn demo_bitnet_manifest_prompts() {
    check_manifest("demo-bitnet");
}

#[test]
fn chat_template_renders_2b4t_format() {
    let expected = "<|begin_of_text|>System: You are a helpful assistant.<|eot_id|>User: \
                    What is 1.58-bit quantization?<|eot_id|>Assistant: ";
    let msgs = [
        ChatMessage::new("system", "You are a helpful assistant."),
        ChatMessage::new("user", "  What is 1.58-bit quantization?\n"),
    ];
    for t in [hf("small-bitnet"), gguf("small-bitnet")] {
        let tmpl = t.chat_template().unwrap();
        assert_eq!(tmpl.render(&msgs, true).unwrap(), expected);
        assert_eq!(
            tmpl.render(&msgs, false).unwrap(),
            expected.strip_suffix("Assistant: ").unwrap()
        );
    }
}

#[test]
fn peers_tokenizer_check_both_paths() {
    let peers = read_json(&dir("small-bitnet").join("peers.json"));
    let checks = peers["tokenizer_check"].as_array().unwrap();
    assert!(!checks.is_empty());
    let tokenizers = [
        ("tokenizer.json", hf("small-bitnet")),
        ("gguf", gguf("small-bitnet")),
    ];
    let mut n = 0;
    for check in checks {
        for case in check["cases"].as_array().unwrap() {
            let text = case["text"].as_str().unwrap();
            let peer = ids(&case["peer_ids"]);
            assert_eq!(peer, ids(&case["hf_ids"]));
            for (path, t) in &tokenizers {
                // llama_tokenize(parse_special = true, no BOS).
                assert_eq!(
                    t.encode(text, false, true).unwrap(),
                    peer,
                    "{text:?} via {path}"
                );
                assert_eq!(t.decode(&peer, false).unwrap(), text);
            }
            n += 1;
        }
    }
    assert!(n >= 18, "only {n} cases");

    for check in peers["cli_tokenization_check"].as_array().unwrap() {
        let text = check["prompt_text_passed"].as_str().unwrap();
        let expected = ids(&check["cli_prompt_ids"]);
        for (path, t) in &tokenizers {
            // llama-cli adds BOS itself.
            assert_eq!(t.encode(text, true, true).unwrap(), expected, "{path}");
        }
    }
}

#[test]
fn special_strings_as_text_when_not_parsed() {
    for t in [hf("small-bitnet"), gguf("small-bitnet")] {
        let text = "a<|eot_id|>b";
        let parsed = t.encode(text, false, true).unwrap();
        assert!(parsed.contains(&4093));
        let plain = t.encode(text, false, false).unwrap();
        assert!(plain.iter().all(|&id| id < 4091), "{plain:?}");
        assert_eq!(t.decode(&plain, false).unwrap(), text);
        assert_eq!(t.decode(&parsed, true).unwrap(), "ab");
    }
}

#[test]
fn valid_txt_both_paths() {
    let text = std::fs::read_to_string(dir("demo-bitnet").join("valid.txt")).unwrap();
    let a = hf("demo-bitnet").encode(&text, false, false).unwrap();
    let b = gguf("demo-bitnet").encode(&text, false, false).unwrap();
    assert_eq!(a.len(), 27_060);
    assert_eq!(a, b);
    assert_eq!(hf("demo-bitnet").decode(&a, false).unwrap(), text);
}

#[test]
fn pre_tokenizer_profiles() {
    let path = dir("small-bitnet").join("gguf/small-bitnet-i2_s.gguf");
    let base = gguf_vocab_from_file(&path);
    assert!(base.pre_tokenizer_is_known());
    let text = "Hello   world!! 2048 DON'T\n\nx";
    let reference = gguf("small-bitnet").encode(text, false, true).unwrap();
    for (pre, known, same_as_llama3) in [
        (None, false, true),
        (Some("default"), false, true),
        (Some("something-new"), false, true),
        (Some("llama3"), true, true),
        (Some("falcon3"), true, true),
        (Some("gpt-2"), true, false),
        (Some("qwen2"), true, false),
    ] {
        let mut v = base.clone();
        v.pre = pre.map(str::to_string);
        assert_eq!(v.pre_tokenizer_is_known(), known, "{pre:?}");
        let t = Tokenizer::from_gguf_vocab(&v).unwrap();
        let ids = t.encode(text, false, true).unwrap();
        assert_eq!(t.decode(&ids, false).unwrap(), text, "{pre:?}");
        if same_as_llama3 {
            assert_eq!(ids, reference, "{pre:?}");
        } else {
            assert_ne!(ids, reference, "{pre:?}");
        }
    }
}

#[test]
fn from_hf_json_with_config() {
    let json = std::fs::read(dir("small-bitnet").join("tokenizer.json")).unwrap();
    let config = std::fs::read(dir("small-bitnet").join("tokenizer_config.json")).unwrap();
    let t = Tokenizer::from_hf_json(&json, Some(&config)).unwrap();
    assert_eq!(t.bos_id(), Some(4091));
    assert_eq!(t.eos_id(), Some(4093));
    // No generation_config.json here: only the config's EOS (which is the EOT token).
    assert_eq!(t.stop_ids(), &[4093]);
    assert_eq!(
        t.chat_template().unwrap().name(),
        "tokenizer_config.json:chat_template"
    );
    let clone = t.clone();
    std::thread::spawn(move || clone.encode("threads", true, true).unwrap())
        .join()
        .unwrap();
}

#[test]
fn from_hf_parts_reads_generation_config() {
    let read = |f: &str| std::fs::read(dir("demo-bitnet").join(f)).unwrap();
    let t = Tokenizer::from_hf_parts(
        &read("tokenizer.json"),
        Some(&read("tokenizer_config.json")),
        Some(&read("generation_config.json")),
    )
    .unwrap();
    assert_eq!(t.stop_ids(), &[4093, 4092]);
    assert_eq!(t.bos_id(), Some(4091));
    assert!(t.add_bos());
    let err = Tokenizer::from_hf_parts(&read("tokenizer.json"), None, Some(b"[1,")).unwrap_err();
    assert!(
        err.to_string().starts_with("generation_config.json"),
        "{err}"
    );
}
