//! BitNet embedding models (Qwen3 and Gemma3 backbones) against
//! `fixtures/embed` (made by `fixtures/embed/make_embed.py`): the Hugging
//! Face files against that script's own PyTorch reference, and the I2_S
//! GGUFs bitnet.cpp's `convert-bitnet-embedding-to-gguf.py` wrote against
//! the same reference run on the weights read back from them.

mod common;

use bitnet_model::{Arch, FfnAct, Pooling};
use bitnet_threads::ThreadPool;
use common::*;

/// `1 - cos(a, b)`.
fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    1.0 - dot / (n(a) * n(b))
}

fn floats(v: &serde_json::Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn check(name: &str, arch: Arch) {
    let dir = repo_fixtures().join("embed").join(name);
    let reference = read_json(&dir.join("reference.json"));
    let pool = ThreadPool::new(2);
    let texts = reference["texts"].as_array().unwrap();
    let seqs: Vec<Vec<u32>> = texts.iter().map(|t| ids(&t["input_ids"])).collect();
    for (what, path, key) in [
        ("hf", dir.clone(), "embedding"),
        (
            "i2_s gguf",
            dir.join(format!("{name}-i2_s.gguf")),
            "gguf_embedding",
        ),
    ] {
        let model = load(&path);
        let hp = model.hparams();
        let cfg = &reference["config"];
        assert_eq!(hp.arch, arch, "{what}");
        assert_eq!(hp.head_dim, cfg["head_dim"].as_u64().unwrap() as usize);
        assert_ne!(
            hp.head_dim,
            hp.n_embd / hp.n_head,
            "head_dim differs from hidden / heads"
        );
        let spec = model.embedding().expect("an embedding model");
        assert_eq!(spec.pooling, Pooling::Last, "{what}");
        assert_eq!(spec.append_eos, arch == Arch::Qwen3, "{what}");
        assert_eq!(
            hp.ffn_act,
            if arch == Arch::Gemma3 {
                FfnAct::GeluTanh
            } else {
                FfnAct::Silu
            }
        );
        // One batch of all texts, and each alone: the same vectors.
        let batched = model.embed(&pool, &seqs).unwrap();
        for (i, t) in texts.iter().enumerate() {
            let alone = model.embed(&pool, std::slice::from_ref(&seqs[i])).unwrap();
            assert_eq!(
                alone[0], batched[i],
                "{name} {what} text {i}: batch changes it"
            );
            let want = floats(&t[key]);
            let got = &batched[i];
            let norm: f64 = got.iter().map(|x| f64::from(*x).powi(2)).sum();
            assert!((norm - 1.0).abs() < 1e-5, "not L2-normalised: {norm}");
            let dist = cosine_distance(got, &want);
            eprintln!(
                "{name} {what} text {i} ({} tokens): cosine distance {dist:.2e}",
                seqs[i].len()
            );
            assert!(
                dist <= 1e-4,
                "{name} {what} text {i}: cosine distance {dist}"
            );
        }
    }
}

#[test]
fn qwen3_backbone_matches_the_reference() {
    check("qwen3", Arch::Qwen3);
}

#[test]
fn gemma3_backbone_matches_the_reference() {
    check("gemma3", Arch::Gemma3);
}

#[test]
fn a_float_qwen3_is_not_taken_for_a_bitnet_model() {
    let src = repo_fixtures().join("embed/qwen3");
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    let kept: Vec<(String, safetensors::tensor::TensorView<'_>)> = st
        .tensors()
        .into_iter()
        .filter(|(n, _)| !n.ends_with("proj.norm.weight"))
        .collect();
    safetensors::serialize_to_file(kept, None, &dir.path().join("model.safetensors")).unwrap();
    let err = match bitnet_model::Model::load(dir.path(), &bitnet_model::LoadOptions::default()) {
        Ok(_) => panic!("a Qwen3 without per-projection norms loaded"),
        Err(e) => e.to_string(),
    };
    assert!(
        err.contains("q_proj.norm.weight") && err.contains("not a BitNet model"),
        "{err}"
    );
}

#[test]
fn a_language_model_refuses_to_embed() {
    let model = load(&repo_fixtures().join("demo-bitnet"));
    let err = model.embed(&ThreadPool::new(1), &[vec![1, 2]]).unwrap_err();
    assert!(err.to_string().contains("not an embedding model"), "{err}");
}

#[test]
fn an_embedding_model_has_no_logits() {
    let model = load(&repo_fixtures().join("embed/gemma3"));
    let mut cache = model.new_cache(4, bitnet_model::KvType::F32);
    let batch = [bitnet_model::BatchToken {
        seq: 0,
        token: 1,
        logits: true,
    }];
    let err = model
        .forward(
            &ThreadPool::new(1),
            &batch,
            std::slice::from_mut(&mut cache),
            &mut bitnet_model::Scratch::new(),
        )
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("embedding model") && err.contains("bitnet embed"),
        "{err}"
    );
}
