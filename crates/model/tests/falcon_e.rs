//! Falcon-E (tiiuae's BitNet Llama models) against `fixtures/falcon-e`: the
//! Hugging Face files as TII's `onebitllms` writes them, and the GGUFs
//! bitnet.cpp's pipeline makes of them (`convert-hf-to-gguf-bitnet.py
//! --outtype f32`, whose Llama path unpacks, divides by `weight_scale` and
//! permutes Q/K rows for llama.cpp's rotary order, then `llama-quantize
//! I2_S`, whose scale is the largest magnitude of each tensor), against
//! transformers' logits.

mod common;

use std::path::Path;
use std::sync::Arc;

use bitnet_gguf::{GgmlType, GgufFile, GgufWriter, Value};
use bitnet_kernels::{DenseType, ScaleRule};
use bitnet_model::convert::{self, ConvertOptions, TernaryFormat};
use bitnet_model::{Arch, FfnAct, LoadOptions, Model};
use bitnet_threads::ThreadPool;
use common::*;
use safetensors::SafeTensors;

fn bf16_at(bytes: &[u8], i: usize) -> f32 {
    half::bf16::from_le_bytes([bytes[2 * i], bytes[2 * i + 1]]).to_f32()
}

/// transformers' packed layout: bits 2i..2i+1 of `packed[r][k]` hold row
/// `i · rows/4 + r`.
fn unpack(packed: &[u8], packed_rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0; packed_rows * 4 * cols];
    for r in 0..packed_rows {
        for i in 0..4 {
            for k in 0..cols {
                let code = (packed[r * cols + k] >> (2 * i)) & 3;
                out[(i * packed_rows + r) * cols + k] = f32::from(code) - 1.0;
            }
        }
    }
    out
}

/// llama.cpp's Q/K permutation: row `h·d + j·d/2 + i` goes to `h·d + 2i + j`.
fn permute(w: &[f32], n_head: usize, cols: usize) -> Vec<f32> {
    let hd = w.len() / cols / n_head;
    let mut out = vec![0.0; w.len()];
    for h in 0..n_head {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let (new, old) = (h * hd + 2 * i + j, h * hd + j * (hd / 2) + i);
                out[new * cols..(new + 1) * cols].copy_from_slice(&w[old * cols..(old + 1) * cols]);
            }
        }
    }
    out
}

fn f32_bytes(v: &[f32]) -> Vec<u8> {
    v.iter().flat_map(|x| x.to_le_bytes()).collect()
}

/// The F32 GGUF bitnet.cpp's converter writes for a Llama BitNet checkpoint.
fn bitnet_cpp_f32_gguf(dir: &Path, hf: &Model) -> GgufFile {
    let bytes = std::fs::read(dir.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let hp = hf.hparams();
    let mut w = GgufWriter::new();
    w.metadata_mut()
        .insert("general.architecture", Value::String("llama".into()));
    w.metadata_mut().insert("general.file_type", Value::U32(0));
    convert::write_hparams(w.metadata_mut(), hp);
    let floats = |name: &str| -> (Vec<f32>, Vec<usize>) {
        let t = st.tensor(name).unwrap();
        let n = t.data().len() / 2;
        (
            (0..n).map(|i| bf16_at(t.data(), i)).collect(),
            t.shape().to_vec(),
        )
    };
    let mut add = |name: String, v: Vec<f32>, shape: &[usize]| {
        let dims = shape.iter().rev().map(|&d| d as u64).collect();
        w.add_tensor(name, dims, GgmlType::F32, f32_bytes(&v))
            .unwrap();
    };
    for (hf_name, gguf_name) in [
        ("model.embed_tokens.weight", "token_embd.weight"),
        ("lm_head.weight", "output.weight"),
        ("model.norm.weight", "output_norm.weight"),
    ] {
        let (v, shape) = floats(hf_name);
        add(gguf_name.into(), v, &shape);
    }
    for l in 0..hp.n_layer {
        for (hf_name, gguf_name) in [
            ("input_layernorm", "attn_norm"),
            ("post_attention_layernorm", "ffn_norm"),
        ] {
            let (v, shape) = floats(&format!("model.layers.{l}.{hf_name}.weight"));
            add(format!("blk.{l}.{gguf_name}.weight"), v, &shape);
        }
        for (hf_name, gguf_name, heads) in [
            ("self_attn.q_proj", "attn_q", Some(hp.n_head)),
            ("self_attn.k_proj", "attn_k", Some(hp.n_head_kv)),
            ("self_attn.v_proj", "attn_v", None),
            ("self_attn.o_proj", "attn_output", None),
            ("mlp.gate_proj", "ffn_gate", None),
            ("mlp.up_proj", "ffn_up", None),
            ("mlp.down_proj", "ffn_down", None),
        ] {
            let p = format!("model.layers.{l}.{hf_name}");
            let packed = st.tensor(&format!("{p}.weight")).unwrap();
            let (rows, cols) = (packed.shape()[0] * 4, packed.shape()[1]);
            let ws = bf16_at(st.tensor(&format!("{p}.weight_scale")).unwrap().data(), 0);
            // data_torch / weight_scale.float(), in f32.
            let mut v: Vec<f32> = unpack(packed.data(), rows / 4, cols)
                .into_iter()
                .map(|t| t / ws)
                .collect();
            if let Some(n) = heads {
                v = permute(&v, n, cols);
            }
            add(format!("blk.{l}.{gguf_name}.weight"), v, &[rows, cols]);
        }
    }
    GgufFile::from_vec(w.to_bytes().unwrap()).unwrap()
}

#[test]
fn falcon_e_from_hf_and_bitnet_cpp_ggufs_matches_transformers() {
    let dir = repo_fixtures().join("falcon-e");
    let manifest = read_json(&dir.join("reference/manifest.json"));
    assert_eq!(manifest["doubling_weight_scale_scales_output_by"], 0.5);
    let pool = ThreadPool::new(2);
    let hf = load(&dir);
    let hp = hf.hparams();
    assert_eq!(
        (hp.arch, hp.ffn_act, hp.tied_embeddings),
        (Arch::Llama, FfnAct::Silu, false)
    );
    let opts = LoadOptions {
        kernels: kernels(),
        ..LoadOptions::default()
    };
    let f32_file = Arc::new(bitnet_cpp_f32_gguf(&dir, &hf));
    let f32_model = Model::from_gguf(Arc::clone(&f32_file), &opts).unwrap();
    // llama-quantize I2_S: scale = max|w| of the F32 tensor (what our
    // converter writes for a float-ternary tensor). Embedding and head stay
    // F32 here so that only the ternary layout differs (bitnet.cpp rounds
    // them to F16).
    let i2s = convert::from_gguf(
        f32_file,
        &ConvertOptions {
            ternary: TernaryFormat::I2S,
            embedding: DenseType::F32,
            head: DenseType::F32,
            name: "falcon-e".into(),
        },
    )
    .unwrap();
    let i2s_file = Arc::new(GgufFile::from_vec(i2s.into_writer().to_bytes().unwrap()).unwrap());
    let i2s_model = Model::from_gguf(i2s_file, &opts).unwrap();
    for (what, model) in [
        ("hf", &hf),
        ("f32 gguf", &f32_model),
        ("i2_s gguf", &i2s_model),
    ] {
        // Every file recovers the checkpoint's bf16 divisors.
        for lw in &model.weights().layers {
            for m in [&lw.qkv, &lw.wo, &lw.gate_up, &lw.down] {
                assert_eq!(m.rule(), ScaleRule::Divide, "{what}");
            }
        }
        for p in manifest["prompts"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            let ids = ids(&p["input_ids"]);
            let ours = all_logits(model, &pool, &ids);
            let (_, reference) = read_npy(&dir.join(format!("reference/{name}.logits.npy")));
            let d = max_abs_diff(&ours, &reference);
            eprintln!(
                "falcon-e {what} {name}: {} tokens, max |Δ| {d:.2e}",
                ids.len()
            );
            assert!(d < 1e-4, "{what} {name}: max |Δlogit| {d}");
        }
    }
}
