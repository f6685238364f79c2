//! Hugging Face checkpoint variants built from the fixtures: a sharded
//! checkpoint (model.safetensors.index.json) and a ternary Llama (no
//! sub-norms, SwiGLU), whose GGUF conversion must permute Q/K for llama.cpp's
//! interleaved rotary embedding and still compute the same model.

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
