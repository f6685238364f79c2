//! Checkpoints whose `weight_scale` multiplies (`autobitlinear` / `offline`,
//! W = T × weight_scale, a different absmean in every tensor), from their
//! Hugging Face files and from I2_S, TQ1_0 and TQ2_0 conversions, against
//! `fixtures/scales` (made by `fixtures/scales/make_scales.py`).
//!
//! transformers runs that class as fake-quantised float products,
//! `F.linear(round(x·s)/s, T) · weight_scale`; an integer engine computes
//! `(Σ q·t) / s · weight_scale`. The two differ by the float sum's rounding
//! (~1e-7 relative), so the fixture also holds the integer arithmetic's
//! logits (the same transformers model with the product done exactly) and,
//! per prompt, the first int8 activation where the two runs round apart.
//! The engine must equal the integer arithmetic everywhere, and transformers
//! at every position before that flip.

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitnet_gguf::GgufFile;
use bitnet_kernels::{DenseType, ScaleRule};
use bitnet_model::convert::{self, ConvertOptions, TernaryFormat};
use bitnet_model::{HfCheckpoint, LoadOptions, Model};
use bitnet_threads::ThreadPool;
use common::*;

const VARIANTS: [&str; 2] = ["gqa4", "gqa2"];

fn dir(variant: &str) -> PathBuf {
    repo_fixtures().join("scales").join(variant)
}

fn convert_to(dir: &Path, fmt: TernaryFormat) -> Model {
    let opts = ConvertOptions {
        ternary: fmt,
        // The checkpoint's own embedding values: only the ternary layout
        // and the scales' home differ from the Hugging Face files.
        embedding: DenseType::BF16,
        head: DenseType::BF16,
        name: "scales".into(),
    };
    let converted = convert::from_hf(HfCheckpoint::open_dir(dir).unwrap(), &opts).unwrap();
    let bytes = converted.into_writer().to_bytes().unwrap();
    let file = Arc::new(GgufFile::from_vec(bytes).unwrap());
    let load_opts = LoadOptions {
        kernels: kernels(),
        ..LoadOptions::default()
    };
    Model::from_gguf(file, &load_opts).unwrap_or_else(|e| panic!("{fmt:?}: {e}"))
}

/// Whether some bf16 `w` has `f16(1 / w) == s`: the per-tensor guess that
/// used to make the loader refuse a TQ file whose fused tensors disagreed.
fn looks_like_bf16_reciprocal(s: f32) -> bool {
    let guess = half::bf16::from_f32(1.0 / s).to_bits();
    (guess - 2..=guess + 2).any(|b| {
        let w = half::bf16::from_bits(b).to_f32();
        half::f16::from_f32(1.0 / w).to_f32() == s
    })
}

/// Every matrix multiplies by the checkpoint's `weight_scale`.
fn check_scales(model: &Model, manifest: &serde_json::Value, what: &str) {
    let scales = &manifest["weight_scales"];
    for (l, lw) in model.weights().layers.iter().enumerate() {
        let p = |s: &str| scales[format!("model.layers.{l}.{s}")].as_f64().unwrap() as f32;
        let expect: [(&str, _, Vec<f32>); 4] = [
            (
                "qkv",
                &lw.qkv,
                [
                    vec![p("self_attn.q_proj"); model.hparams().q_dim()],
                    vec![p("self_attn.k_proj"); model.hparams().kv_dim()],
                    vec![p("self_attn.v_proj"); model.hparams().kv_dim()],
                ]
                .concat(),
            ),
            ("wo", &lw.wo, vec![p("self_attn.o_proj"); lw.wo.rows()]),
            (
                "gate_up",
                &lw.gate_up,
                [
                    vec![p("mlp.gate_proj"); model.hparams().n_ff],
                    vec![p("mlp.up_proj"); model.hparams().n_ff],
                ]
                .concat(),
            ),
            ("down", &lw.down, vec![p("mlp.down_proj"); lw.down.rows()]),
        ];
        for (name, m, want) in expect {
            assert_eq!(m.rule(), ScaleRule::Multiply, "{what} layer {l} {name}");
            assert_eq!(m.scales(), &want[..], "{what} layer {l} {name}");
        }
    }
}

#[test]
fn fixture_exercises_the_per_tensor_guess() {
    // Some tensors' scales are f16 roundings of a bf16 reciprocal by chance
    // and some are not, inside one fused Q/K/V group: the case the loader
    // used to refuse ("scale convention differs").
    let mut mixed_groups = 0;
    for v in VARIANTS {
        let manifest = read_json(&dir(v).join("reference/manifest.json"));
        let scales = manifest["weight_scales"].as_object().unwrap();
        let layers = manifest["config"]["num_hidden_layers"].as_u64().unwrap();
        for l in 0..layers {
            let guesses: Vec<bool> = ["q_proj", "k_proj", "v_proj"]
                .iter()
                .map(|p| {
                    let s = scales[&format!("model.layers.{l}.self_attn.{p}")]
                        .as_f64()
                        .unwrap() as f32;
                    assert!((0.02..0.09).contains(&s), "{v} {l} {p}: {s}");
                    assert_eq!(half::f16::from_f32(s).to_f32(), s, "exact in f16");
                    looks_like_bf16_reciprocal(s)
                })
                .collect();
            if guesses.iter().any(|&g| g) && guesses.iter().any(|&g| !g) {
                mixed_groups += 1;
            }
        }
    }
    assert!(mixed_groups > 0, "no Q/K/V group mixes the two guesses");
}

#[test]
fn multiplying_scales_match_integer_arithmetic_and_transformers_up_to_a_flip() {
    let pool = ThreadPool::new(2);
    let mut flips = 0;
    for v in VARIANTS {
        let d = dir(v);
        let manifest = read_json(&d.join("reference/manifest.json"));
        assert_eq!(
            manifest["scale_semantics"]["doubling_weight_scale_scales_output_by"],
            2.0
        );
        let models = [
            ("hf", load(&d)),
            ("i2_s", convert_to(&d, TernaryFormat::I2S)),
            ("tq1_0", convert_to(&d, TernaryFormat::TQ1_0)),
            ("tq2_0", convert_to(&d, TernaryFormat::TQ2_0)),
        ];
        let n_vocab = models[0].1.hparams().n_vocab;
        for (what, model) in &models {
            check_scales(model, &manifest, &format!("{v} {what}"));
            for p in manifest["prompts"].as_array().unwrap() {
                let name = p["name"].as_str().unwrap();
                let ids = ids(&p["input_ids"]);
                let ours = all_logits(model, &pool, &ids);
                let ref_dir = d.join("reference");
                let (_, tf) = read_npy(&ref_dir.join(format!("{name}.logits.npy")));
                let (_, int) = read_npy(&ref_dir.join(format!("{name}.int_logits.npy")));
                let d_int = max_abs_diff(&ours, &int);
                // The head's summation order alone (~1e-6).
                assert!(
                    d_int < 2e-5,
                    "{v} {what} {name}: vs integer arithmetic {d_int}"
                );
                let flip = &p["first_flip"];
                let clean = if flip.is_null() {
                    ids.len()
                } else {
                    // A flip is a rounding tie: x·s within a few ulps of
                    // k + 0.5, rounded to either side by the two runs.
                    let (a, b) = (
                        flip["x_times_s_transformers"].as_f64().unwrap(),
                        flip["x_times_s_integer"].as_f64().unwrap(),
                    );
                    let tie = (a.abs().floor() + 0.5) * a.signum();
                    assert!((a - tie).abs() < 1e-5 && (b - tie).abs() < 1e-5, "{flip}");
                    let q = (
                        flip["int8_transformers"].as_i64().unwrap(),
                        flip["int8_integer"].as_i64().unwrap(),
                    );
                    assert_eq!((q.0 - q.1).abs(), 1, "{flip}");
                    flips += 1;
                    flip["token"].as_u64().unwrap() as usize
                };
                let n = clean * n_vocab;
                let d_tf = max_abs_diff(&ours[..n], &tf[..n]);
                eprintln!(
                    "{v} {what} {name}: {} tokens, vs integer {d_int:.2e}, vs transformers {d_tf:.2e} \
                     over the {clean} tokens before any flip",
                    ids.len()
                );
                // The float products' rounding (~1e-7 relative) reaches the
                // logits (magnitude ~10) as a few 1e-6.
                assert!(d_tf < 2e-5, "{v} {what} {name}: vs transformers {d_tf}");
                if clean < ids.len() {
                    // From the flip on, transformers has moved away: the
                    // difference is the flip's, not ours.
                    let rest = max_abs_diff(&ours[n..], &tf[n..]);
                    assert!(
                        rest > 1e-3,
                        "{v} {what} {name}: flip left no trace ({rest})"
                    );
                }
            }
        }
    }
    // Both long prompts flip (2 variants x 4 formats).
    assert_eq!(flips, 8);
}
