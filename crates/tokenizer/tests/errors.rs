//! Typed errors that name the file, field or token at fault.

mod common;

use std::path::PathBuf;

use bitnet_tokenizer::{Error, GgufVocab, Tokenizer};

fn small_dir() -> PathBuf {
    common::repo_fixtures().join("small-bitnet")
}

fn small_json() -> Vec<u8> {
    std::fs::read(small_dir().join("tokenizer.json")).unwrap()
}

/// A fresh scratch directory under the system temp dir.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!(
        "bitnet-tokenizer-test-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

#[test]
fn malformed_tokenizer_json_names_the_file() {
    let err = Tokenizer::from_hf_json(b"{\"model\": 42", None).unwrap_err();
    assert!(
        matches!(&err, Error::Json { file, .. } if file == "tokenizer.json"),
        "{err:?}"
    );
    let err = Tokenizer::from_hf_json(b"{\"model\": 42}", None).unwrap_err();
    assert!(
        matches!(&err, Error::Hf { file, .. } if file == "tokenizer.json"),
        "{err:?}"
    );
    assert!(err.to_string().starts_with("tokenizer.json: "), "{err}");

    let dir = scratch("malformed");
    std::fs::write(dir.join("tokenizer.json"), b"not json").unwrap();
    let err = Tokenizer::from_hf_dir(&dir).unwrap_err();
    let path = dir.join("tokenizer.json").display().to_string();
    assert!(
        matches!(&err, Error::Json { file, .. } if *file == path),
        "{err:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn missing_tokenizer_json_names_the_path() {
    let dir = scratch("missing");
    let err = Tokenizer::from_hf_dir(&dir).unwrap_err();
    assert!(
        matches!(&err, Error::Io { path, .. } if *path == dir.join("tokenizer.json")),
        "{err:?}"
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn malformed_config_names_the_file_and_field() {
    let err = Tokenizer::from_hf_json(&small_json(), Some(b"{oops")).unwrap_err();
    assert!(
        matches!(&err, Error::Json { file, .. } if file == "tokenizer_config.json"),
        "{err:?}"
    );
    let err = Tokenizer::from_hf_json(&small_json(), Some(br#"{"bos_token": 7}"#)).unwrap_err();
    assert!(
        matches!(&err, Error::InvalidField { source_name, field, .. }
            if source_name == "tokenizer_config.json" && field == "bos_token"),
        "{err:?}"
    );
    let err =
        Tokenizer::from_hf_json(&small_json(), Some(br#"{"eos_token": "<nope>"}"#)).unwrap_err();
    assert!(err.to_string().contains("<nope>"), "{err}");
}

#[test]
fn broken_chat_template_does_not_prevent_loading() {
    let config = br#"{"bos_token": "<|begin_of_text|>", "chat_template": "{% if %}"}"#;
    let t = Tokenizer::from_hf_json(&small_json(), Some(config)).unwrap();
    assert!(t.chat_template().is_none());
    let err = t.chat_template_error().unwrap();
    assert!(
        matches!(err, Error::TemplateSyntax { name, .. }
            if name == "tokenizer_config.json:chat_template"),
        "{err:?}"
    );
    assert_eq!(t.encode("hi", true, true).unwrap()[0], 4091);
}

#[test]
fn without_config_bos_comes_from_the_post_processor() {
    let t = Tokenizer::from_hf_json(&small_json(), None).unwrap();
    assert_eq!(t.bos_id(), Some(4091));
    assert!(t.add_bos());
    assert_eq!(t.eos_id(), None);
    assert!(t.chat_template().is_none());
    // The post-processor's BOS is not doubled: we add it ourselves.
    assert_eq!(t.encode("", true, true).unwrap(), [4091]);
    let t = Tokenizer::from_hf_json(&small_json(), Some(br#"{"add_bos_token": false}"#)).unwrap();
    assert!(!t.add_bos());
}

#[test]
fn out_of_range_ids() {
    let t = Tokenizer::from_hf_dir(&small_dir()).unwrap();
    let err = t.decode(&[1, 2, 5000], false).unwrap_err();
    assert!(
        matches!(
            err,
            Error::TokenOutOfRange {
                id: 5000,
                vocab_size: 4096
            }
        ),
        "{err:?}"
    );
    assert!(err.to_string().contains("5000"));
    assert!(t.token_bytes(4096).is_err());
    assert!(t.token_text(u32::MAX).is_none());
    assert!(!t.is_special(u32::MAX));
}

fn tiny_gpt2() -> GgufVocab {
    GgufVocab {
        model: "gpt2".into(),
        pre: Some("llama-bpe".into()),
        tokens: vec!["a".into(), "b".into(), "ab".into(), "<|eot_id|>".into()],
        token_types: Some(vec![1, 1, 1, 3]),
        merges: Some(vec!["a b".into()]),
        eos_id: Some(3),
        ..GgufVocab::default()
    }
}

#[test]
fn tiny_gpt2_vocabulary_works() {
    let t = Tokenizer::from_gguf_vocab(&tiny_gpt2()).unwrap();
    assert_eq!(t.encode("abab", false, true).unwrap(), [2, 2]);
    assert_eq!(t.encode("ab<|eot_id|>", false, true).unwrap(), [2, 3]);
    assert_eq!(t.stop_ids(), &[3]);
    assert_eq!(t.eot_id(), Some(3));
    assert!(!t.add_bos()); // no BOS id
}

#[test]
fn gguf_vocabulary_errors_name_the_field() {
    let field_of = |v: &GgufVocab| match Tokenizer::from_gguf_vocab(v).unwrap_err() {
        Error::InvalidField { field, .. } => field,
        other => panic!("unexpected error {other:?}"),
    };

    let mut v = tiny_gpt2();
    v.model = "bert".into();
    let err = Tokenizer::from_gguf_vocab(&v).unwrap_err();
    assert!(
        matches!(&err, Error::Unsupported { value, .. } if value == "bert"),
        "{err:?}"
    );

    let mut v = tiny_gpt2();
    v.token_types = Some(vec![1, 1]);
    assert_eq!(field_of(&v), "tokenizer.ggml.token_type");

    let mut v = tiny_gpt2();
    v.token_types = Some(vec![1, 1, 9, 3]);
    assert_eq!(field_of(&v), "tokenizer.ggml.token_type[2]");

    let mut v = tiny_gpt2();
    v.merges = Some(vec!["a b".into(), "ab".into()]);
    assert_eq!(field_of(&v), "tokenizer.ggml.merges[1]");

    let mut v = tiny_gpt2();
    v.merges = Some(vec!["b a".into()]); // "ba" is not a token
    assert_eq!(field_of(&v), "tokenizer.ggml.merges");

    let mut v = tiny_gpt2();
    v.merges = None;
    assert_eq!(field_of(&v), "tokenizer.ggml.merges");

    let mut v = tiny_gpt2();
    v.bos_id = Some(4);
    assert_eq!(field_of(&v), "tokenizer.ggml.bos_token_id");

    let mut v = tiny_gpt2();
    v.scores = Some(vec![0.0]);
    assert_eq!(field_of(&v), "tokenizer.ggml.scores");

    let mut v = tiny_gpt2();
    v.tokens.clear();
    v.token_types = None;
    assert_eq!(field_of(&v), "tokenizer.ggml.tokens");
}

/// Every input that ever made a fuzz target fail (fuzz/regressions) now
/// is refused with an error, and nothing panics on the way, not even a panic
/// the loader would catch: the fuzzer aborts on any panic, caught or not, so
/// a panic hook counts them here.
#[test]
fn fuzz_regressions_are_errors() {
    use std::sync::atomic::{AtomicUsize, Ordering};
    static PANICS: AtomicUsize = AtomicUsize::new(0);
    std::panic::set_hook(Box::new(|_| {
        PANICS.fetch_add(1, Ordering::SeqCst);
    }));
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/tokenizer_json");
    let mut n = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        let data = std::fs::read(&path).unwrap();
        let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
        let (tokenizer, rest) = data.split_at(split);
        let config = rest.get(1..).filter(|c| !c.is_empty());
        let result = bitnet_tokenizer::Tokenizer::from_hf_json(tokenizer, config).map(|_| ());
        assert!(result.is_err(), "{} accepted", path.display());
        assert_eq!(
            PANICS.load(Ordering::SeqCst),
            0,
            "{} panicked",
            path.display()
        );
        n += 1;
    }
    let _ = std::panic::take_hook();
    assert!(n >= 2);
}
