//! Hugging Face checkpoint variants built from the fixtures: a sharded
//! checkpoint (model.safetensors.index.json) and a ternary Llama (no
//! sub-norms, SwiGLU), whose GGUF conversion must permute Q/K for llama.cpp's
//! interleaved rotary embedding and still compute the same model; a packed
//! `autobitlinear` checkpoint (weight_scale multiplies) and an unknown
//! `linear_class`.

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bitnet_gguf::GgufFile;
use bitnet_kernels::DenseType;
use bitnet_model::convert::{self, ConvertOptions, TernaryFormat};
use bitnet_model::{HfCheckpoint, LoadOptions, Model, RopeStyle};
use bitnet_threads::ThreadPool;
use common::*;
use safetensors::SafeTensors;

/// Writes `tensors` (name -> view) into `dir` as the given shards.
fn write_shards(dir: &Path, st: &SafeTensors<'_>, shards: &[(&str, Vec<String>)]) {
    let mut index = serde_json::Map::new();
    for (file, names) in shards {
        let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = names
            .iter()
            .map(|n| (n.clone(), st.tensor(n).unwrap()))
            .collect();
        safetensors::serialize_to_file(views, None, &dir.join(file)).unwrap();
        for n in names {
            index.insert(n.clone(), serde_json::Value::String(file.to_string()));
        }
    }
    let json = serde_json::json!({ "metadata": {}, "weight_map": index });
    std::fs::write(dir.join("model.safetensors.index.json"), json.to_string()).unwrap();
}

#[test]
fn sharded_checkpoint_loads_to_the_same_model() {
    let src = repo_fixtures().join("demo-bitnet");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut names: Vec<String> = st.names().into_iter().map(str::to_string).collect();
    names.sort();
    let half = names.len() / 2;
    let dir = tempfile::tempdir().unwrap();
    std::fs::copy(src.join("config.json"), dir.path().join("config.json")).unwrap();
    write_shards(
        dir.path(),
        &st,
        &[
            ("model-00001-of-00002.safetensors", names[..half].to_vec()),
            ("model-00002-of-00002.safetensors", names[half..].to_vec()),
        ],
    );
    let pool = ThreadPool::new(2);
    let manifest = read_json(&src.join("reference/manifest.json"));
    let ids = ids(&manifest["prompts"][0]["input_ids"]);
    let whole = all_logits(&load(&src), &pool, &ids);
    let sharded = all_logits(&load(dir.path()), &pool, &ids);
    assert!(
        whole
            .iter()
            .zip(&sharded)
            .all(|(a, b)| a.to_bits() == b.to_bits())
    );
}

/// small-bitnet's weights as a ternary Llama: model_type llama, SiLU, no
/// sub-norms.
fn llama_variant(dir: &Path) {
    let src = repo_fixtures().join("small-bitnet");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let names: Vec<String> = st
        .names()
        .into_iter()
        .filter(|n| !n.contains("sub_norm"))
        .map(str::to_string)
        .collect();
    let views: HashMap<String, _> = names
        .iter()
        .map(|n| (n.clone(), st.tensor(n).unwrap()))
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let mut cfg = read_json(&src.join("config.json"));
    cfg["model_type"] = "llama".into();
    cfg["architectures"] = serde_json::json!(["LlamaForCausalLM"]);
    cfg["hidden_act"] = "silu".into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

#[test]
fn ternary_llama_from_hf_and_its_gguf_agree() {
    let dir = tempfile::tempdir().unwrap();
    llama_variant(dir.path());
    let pool = ThreadPool::new(2);
    let hf = load(dir.path());
    assert_eq!(hf.hparams().arch, bitnet_model::Arch::Llama);
    assert_eq!(hf.hparams().rope_style, RopeStyle::Neox);
    assert!(hf.weights().layers[0].attn_sub_norm.is_none());

    // BF16 embedding: the checkpoint's own values, so nothing but the
    // layout differs.
    let opts = ConvertOptions {
        ternary: TernaryFormat::I2S,
        embedding: DenseType::BF16,
        head: DenseType::F16,
        name: "small-llama".into(),
    };
    let converted = convert::from_hf(HfCheckpoint::open_dir(dir.path()).unwrap(), &opts).unwrap();
    let file = Arc::new(GgufFile::from_vec(converted.into_writer().to_bytes().unwrap()).unwrap());
    assert_eq!(file.architecture(), Some("llama"));
    // The file has llama.cpp's layout (Q/K rows permuted for interleaved
    // rotary pairs); the loader puts them back, so both compute the same.
    assert_eq!(
        bitnet_model::gguf_hparams(&file).unwrap().rope_style,
        RopeStyle::Interleaved
    );
    let load_opts = LoadOptions {
        kernels: kernels(),
        ..LoadOptions::default()
    };
    let gguf = Model::from_gguf(file, &load_opts).unwrap();

    let manifest = read_json(&repo_fixtures().join("small-bitnet/reference/manifest.json"));
    for p in manifest["prompts"].as_array().unwrap() {
        let ids = ids(&p["input_ids"]);
        let a = all_logits(&hf, &pool, &ids);
        let b = all_logits(&gguf, &pool, &ids);
        assert!(
            a.iter().zip(&b).all(|(x, y)| x.to_bits() == y.to_bits()),
            "{}: HF and GGUF llama logits differ by {}",
            p["name"],
            max_abs_diff(&a, &b)
        );
        assert_eq!(
            greedy(&hf, &pool, &ids, 8),
            greedy(&gguf, &pool, &ids, 8),
            "{}",
            p["name"]
        );
    }
}

/// small-bitnet as an `autobitlinear` checkpoint: the same packed codes, but
/// each `weight_scale` is the absmean itself (f32 `1 / w` of the original
/// bf16 reciprocal `w`), which the loader must multiply by instead of
/// dividing (REFERENCE.md §1.2).
fn autobitlinear_variant(dir: &Path, linear_class: &str) {
    let src = repo_fixtures().join("small-bitnet");
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let mut reciprocals: HashMap<String, Vec<u8>> = HashMap::new();
    for (name, view) in st.tensors() {
        if name.ends_with(".weight_scale") {
            assert_eq!(view.dtype(), safetensors::Dtype::BF16, "{name}");
            let w = half::bf16::from_le_bytes([view.data()[0], view.data()[1]]).to_f32();
            reciprocals.insert(name, (1.0f32 / w).to_le_bytes().to_vec());
        }
    }
    assert_eq!(reciprocals.len(), 14, "7 projections in each of 2 layers");
    let views: HashMap<String, safetensors::tensor::TensorView<'_>> = st
        .tensors()
        .into_iter()
        .map(|(name, view)| {
            let view = match reciprocals.get(&name) {
                Some(r) => safetensors::tensor::TensorView::new(
                    safetensors::Dtype::F32,
                    view.shape().to_vec(),
                    r,
                )
                .unwrap(),
                None => view,
            };
            (name, view)
        })
        .collect();
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let mut cfg = read_json(&src.join("config.json"));
    assert_eq!(cfg["quantization_config"]["linear_class"], "bitlinear");
    cfg["quantization_config"]["linear_class"] = linear_class.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

#[test]
fn packed_autobitlinear_multiplies_weight_scale() {
    let dir = tempfile::tempdir().unwrap();
    autobitlinear_variant(dir.path(), "autobitlinear");
    let src = repo_fixtures().join("small-bitnet");
    let pool = ThreadPool::new(2);
    let original = load(&src);
    let auto = load(dir.path());

    // The same codes; the multiplier is the reciprocal of the divisor.
    use bitnet_kernels::ScaleRule;
    for (l, (a, b)) in original
        .weights()
        .layers
        .iter()
        .zip(&auto.weights().layers)
        .enumerate()
    {
        for (what, ma, mb) in [
            ("qkv", &a.qkv, &b.qkv),
            ("wo", &a.wo, &b.wo),
            ("gate_up", &a.gate_up, &b.gate_up),
            ("down", &a.down, &b.down),
        ] {
            assert_eq!(ma.rule(), ScaleRule::Divide, "layer {l} {what}");
            assert_eq!(mb.rule(), ScaleRule::Multiply, "layer {l} {what}");
            assert_eq!(ma.unpack(), mb.unpack(), "layer {l} {what}: codes");
            for (sa, sb) in ma.scales().iter().zip(mb.scales()) {
                assert_eq!(sb.to_bits(), (1.0f32 / sa).to_bits(), "layer {l} {what}");
            }
        }
    }

    // Forward: `acc / s_x · (1/w)` and `acc / (w · s_x)` differ by an ulp or
    // two per BitLinear output (~1e-7 relative), which reaches the logits
    // (magnitude ~10) as ~1e-6: 1e-5 max |Δ| leaves a margin of several
    // times. Where such an ulp moves an activation across an exact .5 tie
    // (REFERENCE.md §5), an int8 changes by one and the logits move by ~1e-2
    // (measured on `long` and `multilingual`): those prompts get the
    // long-prompt criterion (relative L2 below 5e-2, same top-8).
    let tie_prompts = ["long", "multilingual"];
    let manifest = read_json(&src.join("reference/manifest.json"));
    let v = original.hparams().n_vocab;
    let mut n_tight = 0;
    for p in manifest["prompts"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let ids = ids(&p["input_ids"]);
        let a = all_logits(&original, &pool, &ids);
        let b = all_logits(&auto, &pool, &ids);
        let (a, b) = (&a[a.len() - v..], &b[b.len() - v..]);
        let (d, rl2) = (max_abs_diff(b, a), rel_l2(b, a));
        eprintln!(
            "autobitlinear {name}: {} tokens, max |Δ| {d:.3e}, rel L2 {rl2:.3e}",
            ids.len()
        );
        if tie_prompts.contains(&name) {
            assert!(rl2 < 5e-2, "{name}: rel L2 {rl2}");
        } else {
            assert!(d < 1e-5, "{name}: max |Δlogit| {d}");
            n_tight += 1;
        }
        if tie_prompts.contains(&name) {
            // A shift of at most `d` per logit can only swap tokens whose
            // logits lie within 2·d of each other: the rest of the top-8
            // must stay.
            let (ta, tb) = (top_k(a, 8), top_k(b, 8));
            let a8 = a[ta[7] as usize];
            for t in ta.iter().filter(|&&t| a[t as usize] > a8 + 2.0 * d) {
                assert!(tb.contains(t), "{name}: token {t} left the top-8 {tb:?}");
            }
            assert_eq!(ta[0], tb[0], "{name}: argmax");
        } else {
            assert_eq!(top_k(a, 8), top_k(b, 8), "{name}: top-8");
        }
        // The manifest's smallest margin is 0.02, far above these
        // differences: all 32 greedy tokens agree.
        assert_eq!(
            greedy(&original, &pool, &ids, 32),
            greedy(&auto, &pool, &ids, 32),
            "{name}: greedy tokens"
        );
    }
    assert_eq!(n_tight, 3);
}

#[test]
fn unknown_linear_class_is_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    autobitlinear_variant(dir.path(), "fancylinear");
    let opts = LoadOptions {
        kernels: kernels(),
        ..LoadOptions::default()
    };
    let err = match Model::load(dir.path(), &opts) {
        Ok(_) => panic!("a checkpoint with linear_class `fancylinear` loaded"),
        Err(e) => e.to_string(),
    };
    for needle in [
        "config.json",
        "quantization_config.linear_class",
        "fancylinear",
    ] {
        assert!(err.contains(needle), "error lacks {needle:?}: {err}");
    }
}
