//! Streaming detokenization: chunks never split a character, and concatenate to `decode`.

mod common;

use std::sync::OnceLock;

use bitnet_tokenizer::{Error, StreamDecoder, Tokenizer};
use proptest::prelude::*;

fn small() -> &'static Tokenizer {
    static TOK: OnceLock<Tokenizer> = OnceLock::new();
    TOK.get_or_init(|| {
        Tokenizer::from_hf_dir(&common::repo_fixtures().join("small-bitnet")).expect("tokenizer")
    })
}

/// Streams `ids`, returning the chunks.
fn stream(t: &Tokenizer, ids: &[u32], skip_special: bool) -> Vec<String> {
    let mut s = StreamDecoder::new(t, skip_special);
    let mut chunks: Vec<String> = ids.iter().map(|&id| s.push(id).unwrap()).collect();
    chunks.push(s.finish());
    chunks
}

const TEXTS: &[&str] = &[
    "Hello, world!",
    "Grüße aus Köln! Ελληνικά, עברית, русский: ёж.",
    "東京は晴れ。日本語のテキストです。中文测试：你好，世界！한국어 문장입니다.",
    "👩🏽‍💻 👨‍👩‍👧‍👦 🇺🇸🇯🇵 🐍🦀✨ 👍🏽",
    "½≠∞ café—naïve ﬁ Ω ʼ",
    "हिन्दी वाक्य العربية نص",
    "mixed\ttabs\nand\r\nnewlines   and spaces ",
    "<|begin_of_text|>System: hi<|eot_id|>User: 😀<|eot_id|>Assistant: ",
    "\u{0}\u{1} control \u{7f}",
];

#[test]
fn multilingual_chunks_are_whole_characters() {
    let t = small();
    for text in TEXTS {
        let ids = t.encode(text, false, true).unwrap();
        let chunks = stream(t, &ids, false);
        for c in &chunks {
            assert!(!c.contains('\u{FFFD}'), "{text:?}: chunk {c:?}");
        }
        assert_eq!(chunks.concat(), *text);
        assert_eq!(chunks.concat(), t.decode(&ids, false).unwrap());
        // Byte-level tokens really do split characters here: some pushes return nothing.
        if text.contains('東') {
            assert!(chunks.iter().any(String::is_empty));
        }
        let skipped = stream(t, &ids, true).concat();
        assert_eq!(skipped, t.decode(&ids, true).unwrap());
    }
}

#[test]
fn emoji_with_zwj_is_held_back_until_complete() {
    let t = small();
    let text = "👩🏽‍💻";
    let ids = t.encode(text, false, true).unwrap();
    assert!(ids.len() > 4, "{ids:?}");
    let mut s = StreamDecoder::new(t, false);
    let mut got = String::new();
    for &id in &ids {
        let chunk = s.push(id).unwrap();
        // Every chunk is a run of whole characters of the text.
        assert!(text[got.len()..].starts_with(&chunk), "{chunk:?}");
        got.push_str(&chunk);
        assert!(s.pending_bytes().len() < 4);
    }
    assert_eq!(s.finish(), "");
    assert_eq!(got, text);
}

#[test]
fn invalid_bytes_become_replacement_characters() {
    let t = small();
    // Byte-level ids 0..256 are single bytes; find the tokens for 0xE6 0x9D (the first two bytes
    // of 東) and for "A".
    let byte_id = |b: u8| {
        (0..256u32)
            .find(|&id| t.token_bytes(id).unwrap() == [b])
            .unwrap()
    };
    let (e6, x9d, a) = (byte_id(0xE6), byte_id(0x9D), byte_id(b'A'));
    // Truncated sequence at the end: one U+FFFD at finish.
    let mut s = StreamDecoder::new(t, false);
    assert_eq!(s.push(a).unwrap(), "A");
    assert_eq!(s.push(e6).unwrap(), "");
    assert_eq!(s.push(x9d).unwrap(), "");
    assert_eq!(s.finish(), "\u{FFFD}");
    // Interrupted sequence: the replacement comes out as soon as it is certain.
    let mut s = StreamDecoder::new(t, false);
    assert_eq!(s.push(e6).unwrap(), "");
    assert_eq!(s.push(a).unwrap(), "\u{FFFD}A");
    assert_eq!(s.finish(), "");
    assert_eq!(t.decode(&[e6, a], false).unwrap(), "\u{FFFD}A");
}

#[test]
fn unknown_id_is_an_error_and_changes_nothing() {
    let t = small();
    let mut s = StreamDecoder::new(t, false);
    let e6 = (0..256u32).find(|&id| t.token_bytes(id).unwrap() == [0xE6]);
    let e6 = e6.unwrap();
    assert_eq!(s.push(e6).unwrap(), "");
    let err = s.push(4096).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TokenOutOfRange {
                id: 4096,
                vocab_size: 4096
            }
        ),
        "{err}"
    );
    assert_eq!(s.pending_bytes(), [0xE6]);
}

#[test]
fn llama3_multilingual_if_available() {
    let Some(shared) = common::shared_fixtures() else {
        return;
    };
    let t = Tokenizer::from_hf_dir(&shared.join("tiny-bitnet")).unwrap();
    for text in TEXTS {
        let ids = t.encode(text, true, true).unwrap();
        let chunks = stream(&t, &ids, true);
        assert!(chunks.iter().all(|c| !c.contains('\u{FFFD}')), "{text:?}");
        assert_eq!(chunks.concat(), t.decode(&ids, true).unwrap());
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    /// Any id sequence: the chunks concatenate to the lossy UTF-8 of all token bytes.
    #[test]
    fn random_ids_match_lossy_decoding(
        ids in prop::collection::vec(prop_oneof![0u32..256, 0u32..4096], 0..64),
        skip in any::<bool>(),
    ) {
        let t = small();
        let mut bytes = Vec::new();
        for &id in &ids {
            if !(skip && t.is_special(id)) {
                bytes.extend(t.token_bytes(id).unwrap());
            }
        }
        let expected = String::from_utf8_lossy(&bytes).into_owned();
        let streamed = stream(t, &ids, skip).concat();
        prop_assert_eq!(&streamed, &expected);
        prop_assert_eq!(t.decode(&ids, skip).unwrap(), expected);
    }

    /// Any text: encode, then stream back without a single replacement character.
    #[test]
    fn random_text_round_trips(text in "\\PC{0,40}") {
        let t = small();
        let ids = t.encode(&text, false, false).unwrap();
        let chunks = stream(t, &ids, false);
        for c in &chunks {
            let clean = !c.contains(char::REPLACEMENT_CHARACTER)
                || text.contains(char::REPLACEMENT_CHARACTER);
            prop_assert!(clean, "chunk {:?}", c);
        }
        prop_assert_eq!(chunks.concat(), text);
    }
}

/// A decoder can live in a struct without borrowing the tokenizer.
#[test]
fn decoder_can_be_owned() {
    struct Holder {
        decoder: StreamDecoder<'static>,
    }
    let t = Tokenizer::from_hf_dir(&common::repo_fixtures().join("small-bitnet")).unwrap();
    let ids = t.encode("東京 ok", false, true).unwrap();
    let mut h = Holder {
        decoder: StreamDecoder::new(&t, false),
    };
    drop(t);
    let mut out = String::new();
    for id in ids {
        out.push_str(&h.decoder.push(id).unwrap());
    }
    out.push_str(&h.decoder.finish());
    assert_eq!(out, "東京 ok");
}
