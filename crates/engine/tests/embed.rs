//! `Engine::embed` on the tiny BitNet embedding models of `fixtures/embed`:
//! the model's own tokenisation for embedding (Qwen3 appends
//! `<|endoftext|>`, Gemma3 prepends `<bos>`) gives the reference's ids, and
//! the vectors match the reference within 1e-4 cosine distance.

use std::path::{Path, PathBuf};

use bitnet_engine::{Engine, EngineOptions};
use serde_json::Value;

fn fixture(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures")
        .join(name)
}

fn engine(path: &Path) -> Engine {
    let opts = EngineOptions {
        threads: 2,
        ..EngineOptions::default()
    };
    Engine::load_path(path, opts).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    1.0 - dot / (n(a) * n(b))
}

#[test]
fn embeds_texts_as_the_reference_does() {
    for name in ["qwen3", "gemma3"] {
        let dir = fixture("embed").join(name);
        let reference: Value =
            serde_json::from_slice(&std::fs::read(dir.join("reference.json")).unwrap()).unwrap();
        let entries = reference["texts"].as_array().unwrap();
        let texts: Vec<&str> = entries
            .iter()
            .map(|t| t["text"].as_str().unwrap())
            .collect();
        let engine = engine(&dir);
        let vectors = engine.embed(&texts).unwrap();
        assert_eq!(vectors.len(), texts.len());
        for ((t, v), text) in entries.iter().zip(&vectors).zip(&texts) {
            let want_ids: Vec<u32> = t["input_ids"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_u64().unwrap() as u32)
                .collect();
            assert_eq!(
                engine.embedding_tokens(text).unwrap(),
                want_ids,
                "{name} {text:?}"
            );
            let want: Vec<f32> = t["embedding"]
                .as_array()
                .unwrap()
                .iter()
                .map(|x| x.as_f64().unwrap() as f32)
                .collect();
            let d = cosine_distance(v, &want);
            assert!(d <= 1e-4, "{name} {text:?}: cosine distance {d}");
        }
        assert!(vectors.iter().all(|v| v.len() == 128), "hidden size 128");
    }
}

#[test]
fn a_language_model_says_it_cannot_embed() {
    let engine = engine(&fixture("demo-bitnet"));
    let err = engine.embed(&["hello"]).unwrap_err().to_string();
    assert!(err.contains("not an embedding model"), "{err}");
}

#[test]
fn a_text_longer_than_the_context_is_refused() {
    let dir = fixture("embed").join("qwen3");
    let engine = Engine::load_path(
        &dir,
        EngineOptions {
            threads: 1,
            n_ctx: Some(8),
            ..EngineOptions::default()
        },
    )
    .unwrap();
    let err = engine
        .embed(&["a text that is certainly longer than eight tokens"])
        .unwrap_err()
        .to_string();
    assert!(err.contains("context holds 8"), "{err}");
}
