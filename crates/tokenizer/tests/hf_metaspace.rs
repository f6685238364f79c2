//! A SentencePiece-style `tokenizer.json` (Llama 2 layout: `▁` normalizer, BPE with byte
//! fallback, Replace/ByteFallback/Fuse/Strip decoder): token bytes and decoding.

use bitnet_tokenizer::{StreamDecoder, Tokenizer};

const TOKENIZER_JSON: &str = r#"{
  "version": "1.0", "truncation": null, "padding": null,
  "added_tokens": [
    {"id": 0, "content": "<unk>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 1, "content": "<s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true},
    {"id": 2, "content": "</s>", "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, "special": true}
  ],
  "normalizer": {"type": "Sequence", "normalizers": [
    {"type": "Prepend", "prepend": "▁"},
    {"type": "Replace", "pattern": {"String": " "}, "content": "▁"}
  ]},
  "pre_tokenizer": null,
  "post_processor": {
    "type": "TemplateProcessing",
    "single": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}}],
    "pair": [{"SpecialToken": {"id": "<s>", "type_id": 0}}, {"Sequence": {"id": "A", "type_id": 0}},
             {"Sequence": {"id": "B", "type_id": 1}}],
    "special_tokens": {"<s>": {"id": "<s>", "ids": [1], "tokens": ["<s>"]}}
  },
  "decoder": {"type": "Sequence", "decoders": [
    {"type": "Replace", "pattern": {"String": "▁"}, "content": " "},
    {"type": "ByteFallback"},
    {"type": "Fuse"},
    {"type": "Strip", "content": " ", "start": 1, "stop": 0}
  ]},
  "model": {
    "type": "BPE", "dropout": null, "unk_token": "<unk>", "continuing_subword_prefix": null,
    "end_of_word_suffix": null, "fuse_unk": true, "byte_fallback": true, "ignore_merges": false,
    "vocab": {"<unk>": 0, "<s>": 1, "</s>": 2, "<0xC3>": 3, "<0xA9>": 4, "▁": 5, "a": 6, "b": 7,
              "▁a": 8, "ab": 9, "▁ab": 10},
    "merges": ["▁ a", "a b", "▁a b"]
  }
}"#;

const CONFIG_JSON: &str = r#"{"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
  "add_bos_token": true}"#;

fn tok() -> Tokenizer {
    Tokenizer::from_hf_json(TOKENIZER_JSON.as_bytes(), Some(CONFIG_JSON.as_bytes())).unwrap()
}

#[test]
fn metadata() {
    let t = tok();
    assert_eq!(t.vocab_size(), 11);
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(t.eos_id(), Some(2));
    assert_eq!(t.unk_id(), Some(0));
    assert_eq!(t.stop_ids(), &[2]);
    assert!(t.add_bos());
    assert_eq!(t.token_bytes(10).unwrap(), b" ab");
    assert_eq!(t.token_bytes(3).unwrap(), [0xC3]);
    assert_eq!(t.token_text(10).as_deref(), Some("▁ab"));
}

#[test]
fn encode_and_decode() {
    let t = tok();
    assert_eq!(t.encode("ab", true, true).unwrap(), [1, 10]);
    assert_eq!(t.encode("é", false, true).unwrap(), [5, 3, 4]);
    // The prefix space is stripped again when decoding, as the Strip decoder does.
    assert_eq!(t.decode(&[1, 10], true).unwrap(), "ab");
    assert_eq!(t.decode(&[1, 10], false).unwrap(), "<s>ab");
    assert_eq!(t.decode(&[5, 3, 4], false).unwrap(), "é");
    assert_eq!(t.decode(&[10, 10], false).unwrap(), "ab ab");
    for (ids, skip) in [(vec![1, 10, 8, 2], true), (vec![5, 3, 4, 10], false)] {
        let mut s = StreamDecoder::new(&t, skip);
        let mut out: String = ids.iter().map(|&id| s.push(id).unwrap()).collect();
        out.push_str(&s.finish());
        assert_eq!(out, t.decode(&ids, skip).unwrap());
    }
}
