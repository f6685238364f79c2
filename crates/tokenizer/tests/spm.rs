//! SentencePiece ("llama" GGUF vocabularies): llama.cpp's bigram-merge algorithm.
//!
//! The expected ids were derived by hand from the algorithm (see the comments) and cross-checked
//! with an independent re-implementation of llama.cpp's `llm_tokenizer_spm_session`.

mod common;

use bitnet_tokenizer::{Error, GgufVocab, StreamDecoder, Tokenizer};
use common::{gguf_vocab_from_file, read_json, shared_fixtures};

/// The 512-token vocabulary of the `tl-formats` fixture (bitnet_b1_58-large style: `<unk>`,
/// `<s>`, `</s>`, 256 byte tokens, then merges with scores; no single-character tokens).
fn vocab512() -> Option<GgufVocab> {
    let json = read_json(&shared_fixtures()?.join("tl-formats/vocab512.json"));
    let tokens = json["tokens"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_str().unwrap().to_string())
        .collect();
    let scores = json["scores"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_f64().unwrap() as f32)
        .collect();
    let types = json["token_type"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t.as_i64().unwrap() as i32)
        .collect();
    Some(GgufVocab {
        model: "llama".into(),
        tokens,
        scores: Some(scores),
        token_types: Some(types),
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        add_bos: Some(true),
        ..GgufVocab::default()
    })
}

/// (text, ids without BOS, decoded ids). The vocabulary has no "▁" token, so a space that
/// cannot merge falls back to the bytes of "▁" (E2 96 81), which decode to "▁" itself, as in
/// llama.cpp.
const VOCAB512_CASES: &[(&str, &[u32], &str)] = &[
    // "▁the▁cat": ▁t(-1) → ▁th(-7) → ▁the(-19); at(-12) before ▁c(-15); "▁cat" is no token.
    ("the cat", &[278, 274, 271], "the cat"),
    // No "▁é"/"▁" token: both fall back to UTF-8 bytes (<0xNN> = 3 + NN).
    ("é", &[229, 153, 132, 198, 172], "▁é"),
    // "▁a▁▁b": ▁a(-4), ▁b(-30) merge first; the stale "▁▁" pair is skipped.
    ("a  b", &[263, 229, 153, 132, 289], "a▁ b"),
    ("ст", &[229, 153, 132, 464], "▁ст"),
    (
        "This is the begin of the code",
        &[498, 275, 338, 278, 367, 106, 262, 310, 278, 274, 356],
        "This is the begin of the code",
    ),
    (
        "Hello, world!",
        &[379, 295, 417, 47, 281, 272, 430, 36],
        "Hello, world!",
    ),
    ("  leading", &[259, 454, 328, 292], "  leading"),
    (
        "The Comment:\ttab",
        &[450, 461, 61, 12, 119, 370],
        "The Comment:\ttab",
    ),
    (
        "на столе",
        &[
            229, 153, 132, 477, 229, 153, 132, 464, 211, 193, 211, 190, 211, 184,
        ],
        "▁на▁столе",
    ),
    ("", &[], ""),
];

fn check_vocab512(t: &Tokenizer) {
    assert_eq!(t.vocab_size(), 512);
    assert!(t.add_bos());
    assert_eq!(t.bos_id(), Some(1));
    assert_eq!(t.stop_ids(), &[2]);
    for &(text, expected, decoded) in VOCAB512_CASES {
        assert_eq!(t.encode(text, false, true).unwrap(), expected, "{text:?}");
        let mut with_bos = vec![1];
        with_bos.extend_from_slice(expected);
        assert_eq!(t.encode(text, true, true).unwrap(), with_bos, "{text:?}");
        assert_eq!(t.decode(expected, false).unwrap(), decoded, "{text:?}");
        assert_eq!(t.decode(&with_bos, true).unwrap(), decoded, "{text:?}");
    }
    assert_eq!(t.token_bytes(278).unwrap(), b" the");
    assert_eq!(t.token_bytes(229).unwrap(), [0xE2]);
    assert_eq!(t.token_text(229).as_deref(), Some("<0xE2>"));
    assert!(t.is_special(0) && t.is_special(1) && t.is_special(2));
    assert!(!t.is_special(3) && !t.is_special(278));
    // "<s>" in the text is BOS only when special tokens are parsed.
    assert_eq!(t.encode("<s>the", false, true).unwrap(), [1, 278]);
    assert_ne!(t.encode("<s>the", false, false).unwrap()[0], 1);
}

#[test]
fn vocab512_json() {
    let Some(v) = vocab512() else { return };
    check_vocab512(&Tokenizer::from_gguf_vocab(&v).unwrap());
}

#[test]
fn vocab512_from_real_gguf() {
    let Some(shared) = shared_fixtures() else {
        return;
    };
    let path = shared.join("tl-formats/bitnet-large-1L-i2_s.gguf");
    let v = gguf_vocab_from_file(&path);
    assert_eq!(v.model, "llama");
    assert_eq!(v.tokens, vocab512().unwrap().tokens);
    check_vocab512(&Tokenizer::from_gguf_vocab(&v).unwrap());
}

/// A hand-made vocabulary:
/// 0 `<unk>`, 1 `<s>`, 2 `</s>`, 3 `<0x0A>`, 4 `<0xC3>`, 5 `<0xA9>`, 6 `▁`, 7 `a`, 8 `b`,
/// 9 `ab` (-4), 10 `▁a` (-5), 11 `▁ab` (-6), 12 `ba` (-0.5), 13 `<tool>` (user-defined).
fn handmade(add_space_prefix: Option<bool>, with_types: bool) -> Tokenizer {
    let tokens: Vec<String> = [
        "<unk>", "<s>", "</s>", "<0x0A>", "<0xC3>", "<0xA9>", "▁", "a", "b", "ab", "▁a", "▁ab",
        "ba", "<tool>",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    let scores = vec![
        0.0, 0.0, 0.0, 0.0, 0.0, 0.0, -1.0, -2.0, -3.0, -4.0, -5.0, -6.0, -0.5, 0.0,
    ];
    let types = vec![2, 3, 3, 6, 6, 6, 1, 1, 1, 1, 1, 1, 1, 4];
    Tokenizer::from_gguf_vocab(&GgufVocab {
        model: "llama".into(),
        tokens,
        scores: Some(scores),
        token_types: with_types.then_some(types),
        bos_id: Some(1),
        eos_id: Some(2),
        unk_id: Some(0),
        add_space_prefix,
        ..GgufVocab::default()
    })
    .unwrap()
}

#[test]
fn handmade_merges_by_score() {
    let t = handmade(None, true);
    // "▁ab": ab(-4) beats ▁a(-5); then "▁ab"(-6) joins the two.
    assert_eq!(t.encode("ab", false, true).unwrap(), [11]);
    // "▁aba": ba(-0.5) first, so "ab" can no longer form: ▁a + ba.
    assert_eq!(t.encode("aba", false, true).unwrap(), [10, 12]);
    assert_eq!(t.decode(&[10, 12], false).unwrap(), "aba");
    // Defaults: add_space_prefix and add_bos are on for SentencePiece.
    assert!(t.add_bos());
    assert_eq!(t.encode("ab", true, true).unwrap(), [1, 11]);
}

#[test]
fn handmade_space_prefix() {
    let without = handmade(Some(false), true);
    assert_eq!(without.encode("ab", false, true).unwrap(), [9]);
    assert_eq!(without.encode(" ab", false, true).unwrap(), [11]);
    assert_eq!(without.decode(&[11], false).unwrap(), " ab");
    let with = handmade(Some(true), true);
    assert_eq!(with.encode(" ab", false, true).unwrap(), [6, 11]);
    assert_eq!(with.decode(&[6, 11], false).unwrap(), " ab");
}

#[test]
fn handmade_byte_fallback_and_unknown() {
    let t = handmade(None, true);
    // é = C3 A9 has byte tokens; "▁é" is not a token, "▁" is.
    assert_eq!(t.encode("é", false, true).unwrap(), [6, 4, 5]);
    assert_eq!(t.decode(&[6, 4, 5], false).unwrap(), "é");
    assert_eq!(t.encode("a\n", false, true).unwrap(), [10, 3]);
    // 'x' has neither a token nor a byte token: <unk>.
    assert_eq!(t.encode("x", false, true).unwrap(), [6, 0]);
    assert_eq!(t.token_bytes(4).unwrap(), [0xC3]);
    assert_eq!(t.token_bytes(6).unwrap(), b" ");
}

#[test]
fn handmade_special_and_user_defined_tokens() {
    let t = handmade(None, true);
    // Text after a special token gets the space prefix again.
    assert_eq!(t.encode("<s>ab</s>", false, true).unwrap(), [1, 11, 2]);
    assert_eq!(t.decode(&[1, 11, 2], false).unwrap(), "<s>ab</s>");
    assert_eq!(t.decode(&[1, 11, 2], true).unwrap(), "ab");
    // Unparsed, "<s>" is text: '<', 's', '>' have no tokens and no byte tokens.
    assert_eq!(
        t.encode("<s>ab</s>", false, false).unwrap(),
        [6, 0, 0, 0, 9, 0, 0, 0, 0]
    );
    // User-defined tokens are always matched, and are not special.
    assert_eq!(t.encode("a<tool>b", false, false).unwrap(), [10, 13, 6, 8]);
    assert_eq!(t.decode(&[10, 13, 6, 8], true).unwrap(), "a<tool>b");
    assert!(!t.is_special(13));
}

#[test]
fn handmade_without_token_types() {
    // Types inferred: <0xNN> are bytes, BOS/EOS control, UNK unknown.
    let t = handmade(None, false);
    assert_eq!(t.encode("é", false, true).unwrap(), [6, 4, 5]);
    assert_eq!(t.encode("<s>ab", false, true).unwrap(), [1, 11]);
    assert!(t.is_special(0) && t.is_special(1) && t.is_special(2));
    assert_eq!(t.token_bytes(5).unwrap(), [0xA9]);
}

#[test]
fn handmade_streaming_matches_decode() {
    let t = handmade(None, true);
    for ids in [
        vec![1, 11, 2, 10, 12],
        vec![6, 4, 5, 6, 4],
        vec![11, 13, 6, 8, 3, 0],
        vec![4, 4, 5, 5],
    ] {
        for skip in [false, true] {
            let mut s = StreamDecoder::new(&t, skip);
            let mut out = String::new();
            for &id in &ids {
                out.push_str(&s.push(id).unwrap());
            }
            out.push_str(&s.finish());
            assert_eq!(out, t.decode(&ids, skip).unwrap(), "{ids:?} skip={skip}");
        }
    }
}

#[test]
fn missing_byte_token_without_unk_is_an_error() {
    let v = GgufVocab {
        model: "llama".into(),
        tokens: vec!["▁".into(), "a".into()],
        ..GgufVocab::default()
    };
    let t = Tokenizer::from_gguf_vocab(&v).unwrap();
    assert_eq!(t.encode("a", false, true).unwrap(), [0, 1]);
    let err = t.encode("é", false, true).unwrap_err();
    assert!(matches!(err, Error::ByteNotInVocab { byte: 0xC3 }), "{err}");
}
