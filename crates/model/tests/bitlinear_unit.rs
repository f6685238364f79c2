//! One BitLinear layer against transformers: `reference/bitlinear_unit.safetensors`
//! (REFERENCE.md §1.1, §2) reproduced through the engine's own code paths.
//!
//! The fixture's packed uint8 weight and bf16 `weight_scale` are placed in a
//! minimal Hugging Face checkpoint (as one layer's `gate_proj`), which
//! `Model::from_hf` decodes and repacks exactly as it does a real model. The
//! test then runs the kernels' activation quantiser and ternary product on
//! the fixture's input, at every kernel level this CPU has, and asserts:
//!
//! * the decoded ternary matrix equals the fixture's `ternary` (exact);
//! * the int8 activations and their scales equal `x_int8` and `x_scale`
//!   (exact: round half to even, `127 / amax` as PyTorch computes it);
//! * the integer dot products equal `Σ x_int8 · ternary` (exact);
//! * the outputs equal `y` bit for bit (REFERENCE.md §2 step 5: the reference
//!   divides the exact integer by `weight_scale · s_x`, which is what the
//!   loader's `bitlinear` rule does).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;

use bitnet_kernels::{Kernels, QuantizedActs, ScaleRule, TernaryMatrix};
use bitnet_model::storage::Owner;
use bitnet_model::{HfCheckpoint, LoadOptions, Model};
use bitnet_threads::ThreadPool;
use common::*;
use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};

/// The fixture's tensors, decoded.
struct Unit {
    packed: Vec<u8>,
    packed_shape: Vec<usize>,
    weight_scale_bf16: [u8; 2],
    ternary: Vec<i8>,
    x: Vec<f32>,
    x_int8: Vec<i8>,
    x_scale: Vec<f32>,
    y: Vec<f32>,
    tokens: usize,
    in_features: usize,
    out_features: usize,
}

fn f32s(b: &[u8]) -> Vec<f32> {
    b.chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

fn i8s(b: &[u8]) -> Vec<i8> {
    b.iter().map(|&v| v as i8).collect()
}

fn read_unit(shared: &Path) -> Unit {
    let path = shared.join("reference/bitlinear_unit.safetensors");
    let bytes = std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let st = SafeTensors::deserialize(&bytes).unwrap();
    let t = |name: &str, dtype: Dtype| {
        let v = st.tensor(name).unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(v.dtype(), dtype, "{name}");
        (v.shape().to_vec(), v.data().to_vec())
    };
    let (packed_shape, packed) = t("packed_weight", Dtype::U8);
    let (ws_shape, ws) = t("weight_scale", Dtype::BF16);
    assert_eq!(ws_shape, [1]);
    let (t_shape, ternary) = t("ternary", Dtype::I8);
    let (x_shape, x) = t("x", Dtype::F32);
    let (q_shape, x_int8) = t("x_int8", Dtype::I8);
    let (s_shape, x_scale) = t("x_scale", Dtype::F32);
    let (y_shape, y) = t("y", Dtype::F32);
    let (tokens, in_features) = (x_shape[0], x_shape[1]);
    let out_features = t_shape[0];
    assert_eq!(t_shape, [out_features, in_features]);
    assert_eq!(packed_shape, [out_features / 4, in_features]);
    assert_eq!(q_shape, x_shape);
    assert_eq!(s_shape, [tokens]);
    assert_eq!(y_shape, [tokens, out_features]);
    // The manifest describes the same case.
    let manifest = read_json(&shared.join("reference/manifest.json"));
    let m = &manifest["bitlinear_unit"];
    assert_eq!(m["in_features"].as_u64(), Some(in_features as u64));
    assert_eq!(m["out_features"].as_u64(), Some(out_features as u64));
    assert_eq!(m["tokens"].as_u64(), Some(tokens as u64));
    Unit {
        packed,
        packed_shape,
        weight_scale_bf16: [ws[0], ws[1]],
        ternary: i8s(&ternary),
        x: f32s(&x),
        x_int8: i8s(&x_int8),
        x_scale: f32s(&x_scale),
        y: f32s(&y),
        tokens,
        in_features,
        out_features,
    }
}

/// A one-layer 2B4T-style checkpoint whose `gate_proj` is the fixture's
/// packed weight and `weight_scale`; every other projection is all zeros
/// (code 1 in every position) with scale 1.
fn checkpoint(u: &Unit) -> HfCheckpoint {
    let (hidden, ffn) = (u.in_features, u.out_features);
    let (n_head, n_kv, vocab) = (4usize, 2usize, 8usize);
    let head_dim = hidden / n_head;
    let config = serde_json::json!({
        "architectures": ["BitNetForCausalLM"],
        "model_type": "bitnet",
        "hidden_size": hidden,
        "intermediate_size": ffn,
        "num_hidden_layers": 1,
        "num_attention_heads": n_head,
        "num_key_value_heads": n_kv,
        "vocab_size": vocab,
        "hidden_act": "relu2",
        "rms_norm_eps": 1e-5,
        "rope_theta": 500000.0,
        "max_position_embeddings": 64,
        "tie_word_embeddings": true,
        "quantization_config": {
            "quant_method": "bitnet",
            "linear_class": "bitlinear",
            "quantization_mode": "offline"
        }
    });
    let one_bf16 = half::bf16::from_f32(1.0).to_le_bytes().to_vec();
    let zeros_packed = |rows: usize, cols: usize| vec![0b0101_0101u8; rows / 4 * cols];
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let bf16_vec = |n: usize| one_bf16.repeat(n);
    tensors.push((
        "model.embed_tokens.weight".into(),
        Dtype::BF16,
        vec![vocab, hidden],
        bf16_vec(vocab * hidden),
    ));
    tensors.push((
        "model.norm.weight".into(),
        Dtype::BF16,
        vec![hidden],
        bf16_vec(hidden),
    ));
    let l = "model.layers.0";
    for (name, len) in [
        ("input_layernorm", hidden),
        ("post_attention_layernorm", hidden),
        ("self_attn.attn_sub_norm", n_head * head_dim),
        ("mlp.ffn_sub_norm", ffn),
    ] {
        tensors.push((
            format!("{l}.{name}.weight"),
            Dtype::BF16,
            vec![len],
            bf16_vec(len),
        ));
    }
    for (name, rows, cols) in [
        ("self_attn.q_proj", n_head * head_dim, hidden),
        ("self_attn.k_proj", n_kv * head_dim, hidden),
        ("self_attn.v_proj", n_kv * head_dim, hidden),
        ("self_attn.o_proj", hidden, n_head * head_dim),
        ("mlp.gate_proj", ffn, hidden),
        ("mlp.up_proj", ffn, hidden),
        ("mlp.down_proj", hidden, ffn),
    ] {
        let (data, scale) = if name == "mlp.gate_proj" {
            (u.packed.clone(), u.weight_scale_bf16.to_vec())
        } else {
            (zeros_packed(rows, cols), one_bf16.clone())
        };
        tensors.push((
            format!("{l}.{name}.weight"),
            Dtype::U8,
            vec![rows / 4, cols],
            data,
        ));
        tensors.push((
            format!("{l}.{name}.weight_scale"),
            Dtype::BF16,
            vec![1],
            scale,
        ));
    }
    let views: HashMap<String, TensorView<'_>> = tensors
        .iter()
        .map(|(n, d, s, b)| (n.clone(), TensorView::new(*d, s.clone(), b).unwrap()))
        .collect();
    let bytes = safetensors::serialize(views, None).unwrap();
    let owner: Owner = Arc::new(bytes);
    HfCheckpoint {
        label: "bitlinear-unit".into(),
        config_json: config.to_string().into_bytes(),
        shards: vec![("model.safetensors".into(), owner)],
    }
}

fn load_unit(u: &Unit, kernels: &'static Kernels) -> Model {
    let opts = LoadOptions {
        kernels,
        ..LoadOptions::default()
    };
    Model::from_hf(checkpoint(u), &opts).expect("load the one-layer checkpoint")
}

#[test]
fn bitlinear_unit_is_reproduced_exactly() {
    let Some(shared) = shared_fixtures() else {
        return;
    };
    let u = read_unit(&shared);
    let (t, k, n) = (u.tokens, u.in_features, u.out_features);
    assert_eq!(u.packed_shape, [n / 4, k]);
    let weight_scale = half::bf16::from_le_bytes(u.weight_scale_bf16).to_f32();

    // Integer sums from the fixture's own int8 activations and ternary matrix
    // (REFERENCE.md §2 step 4: exact integers).
    let want_acc: Vec<i32> = (0..t)
        .flat_map(|tok| {
            let (xq, w) = (&u.x_int8, &u.ternary);
            (0..n).map(move |r| {
                (0..k)
                    .map(|c| i32::from(xq[tok * k + c]) * i32::from(w[r * k + c]))
                    .sum()
            })
        })
        .collect();
    // Guard against a degenerate fixture: the sums must carry information.
    assert!(want_acc.iter().any(|&a| a != 0));

    let pool = ThreadPool::new(2);
    let levels = all_kernels();
    assert!(!levels.is_empty());
    for &kernels in &levels {
        let label = kernels.isa().name();
        let model = load_unit(&u, kernels);
        let gate_up = &model.weights().layers[0].gate_up;
        assert_eq!(gate_up.cols(), k, "{label}");
        assert_eq!(gate_up.rows(), 2 * n, "{label}: gate and up fused");

        // 1. The packed uint8 layout decodes to the fixture's ternary matrix,
        //    with the bf16 scale and the `bitlinear` (divide) rule.
        let decoded = gate_up.unpack();
        assert_eq!(
            decoded[..n * k],
            u.ternary[..],
            "{label}: decoded ternary weights"
        );
        assert!(
            decoded[n * k..].iter().all(|&v| v == 0),
            "{label}: up_proj rows"
        );
        assert_eq!(gate_up.rule(), ScaleRule::Divide, "{label}");
        assert!(
            gate_up.scales()[..n]
                .iter()
                .all(|s| s.to_bits() == weight_scale.to_bits()),
            "{label}: row scales {:?} vs weight_scale {weight_scale}",
            &gate_up.scales()[..n]
        );

        // 2. Per-token absmax int8 activations, round half to even.
        let mut acts = QuantizedActs::new();
        kernels.quantize(&u.x, t, k, &mut acts);
        for tok in 0..t {
            assert_eq!(
                acts.row(tok)[..k],
                u.x_int8[tok * k..(tok + 1) * k],
                "{label}: int8 activations of token {tok}"
            );
            assert_eq!(
                acts.scales()[tok].to_bits(),
                u.x_scale[tok].to_bits(),
                "{label}: activation scale of token {tok}: {} vs {}",
                acts.scales()[tok],
                u.x_scale[tok]
            );
            let sum: i32 = u.x_int8[tok * k..(tok + 1) * k]
                .iter()
                .map(|&v| i32::from(v))
                .sum();
            assert_eq!(acts.sums()[tok], sum, "{label}: Σq of token {tok}");
        }

        // 3. The scaled product: bit-identical to transformers' output.
        let mut out = vec![f32::NAN; t * 2 * n];
        kernels.ternary_matmul(&pool, gate_up, &acts, &mut out);
        for tok in 0..t {
            for r in 0..n {
                let (got, want) = (out[tok * 2 * n + r], u.y[tok * n + r]);
                assert_eq!(
                    got.to_bits(),
                    want.to_bits(),
                    "{label}: y[{tok}][{r}] = {got} vs reference {want}"
                );
            }
            assert!(
                out[tok * 2 * n + n..(tok + 1) * 2 * n]
                    .iter()
                    .all(|&v| v == 0.0),
                "{label}: zero up_proj rows"
            );
        }

        // 4. The integer dot products themselves: feed the int8 values as
        //    floats (amax 127, so the activation scale is exactly 1) to the
        //    decoded matrix repacked with unit multipliers, so each output is
        //    the integer sum converted to f32 (exact below 2^24).
        let ints: Vec<f32> = u.x_int8.iter().map(|&v| f32::from(v)).collect();
        let mut unit_acts = QuantizedActs::new();
        kernels.quantize(&ints, t, k, &mut unit_acts);
        assert!(
            unit_acts.scales().iter().all(|&s| s == 1.0),
            "{label}: scales {:?}",
            unit_acts.scales()
        );
        assert_eq!(unit_acts.data().len(), acts.data().len());
        for tok in 0..t {
            assert_eq!(unit_acts.row(tok), acts.row(tok), "{label}: requantised");
        }
        let unit = TernaryMatrix::pack(n, k, &decoded[..n * k], vec![1.0; n], ScaleRule::Multiply)
            .unwrap();
        let mut sums = vec![f32::NAN; t * n];
        kernels.ternary_matmul(&pool, &unit, &unit_acts, &mut sums);
        let got_acc: Vec<i32> = sums
            .iter()
            .map(|&v| {
                assert_eq!(v.fract(), 0.0, "{label}: non-integer sum {v}");
                v as i32
            })
            .collect();
        assert_eq!(got_acc, want_acc, "{label}: integer dot products");

        // The reference's formula on those integers gives `y` as well
        // (REFERENCE.md §2 step 5), so the scale step is the only float op.
        for tok in 0..t {
            for r in 0..n {
                let y =
                    ScaleRule::Divide.apply(want_acc[tok * n + r], u.x_scale[tok], weight_scale);
                assert_eq!(y.to_bits(), u.y[tok * n + r].to_bits(), "{label}: formula");
            }
        }
        eprintln!("{label}: bitlinear_unit reproduced bit for bit");
    }
}
