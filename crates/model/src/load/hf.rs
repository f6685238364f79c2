//! Hugging Face checkpoints: `config.json` plus one or more safetensors files.
//!
//! Ternary projections come either packed (`uint8 [out/4, in]`, four codes per
//! byte along the output axis, with a `weight_scale` whose meaning
//! `quantization_config.linear_class` defines) or as float master weights that
//! are ternarised on load. Embeddings stay in their stored float format and
//! are read in place.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bitnet_kernels::{DenseType, ScaleRule};
use half::{bf16, f16};
use safetensors::Dtype;
use serde_json::Value;

use super::ternarize::{ternarize, unpack_hf};
use super::{Role, TensorSource, Ternary};
use crate::config::{Arch, EmbeddingSpec, FfnAct, HParams, Pooling, RopeStyle};
use crate::error::{Error, Result};
use crate::storage::{ByteView, Owner, map_file};
use crate::weights::DenseWeight;

/// The files of a Hugging Face checkpoint, already in memory or mapped.
pub struct HfCheckpoint {
    /// Label for messages (the directory).
    pub label: String,
    /// Contents of `config.json`.
    pub config_json: Vec<u8>,
    /// Safetensors shards: (file name, bytes).
    pub shards: Vec<(String, Owner)>,
}

impl HfCheckpoint {
    /// Opens `config.json` and `model.safetensors` (or the shards listed in
    /// `model.safetensors.index.json`) in `dir`.
    pub fn open_dir(dir: &Path) -> Result<HfCheckpoint> {
        let read = |p: PathBuf| std::fs::read(&p).map_err(|source| Error::Io { path: p, source });
        let config_json = read(dir.join("config.json"))?;
        let single = dir.join("model.safetensors");
        let index = dir.join("model.safetensors.index.json");
        let mut names: Vec<String> = Vec::new();
        if single.is_file() {
            names.push("model.safetensors".into());
        } else if index.is_file() {
            let file = index.display().to_string();
            let json: Value =
                serde_json::from_slice(&read(index.clone())?).map_err(|e| Error::Config {
                    file: file.clone(),
                    field: "(json)".into(),
                    reason: e.to_string(),
                })?;
            let map = json
                .get("weight_map")
                .and_then(Value::as_object)
                .ok_or_else(|| Error::Config {
                    file: file.clone(),
                    field: "weight_map".into(),
                    reason: "missing or not an object".into(),
                })?;
            for v in map.values() {
                let name = v.as_str().ok_or_else(|| Error::Config {
                    file: file.clone(),
                    field: "weight_map".into(),
                    reason: "values must be file names".into(),
                })?;
                if name.contains('/') || name.contains('\\') || name.starts_with('.') {
                    return Err(Error::Config {
                        file: file.clone(),
                        field: "weight_map".into(),
                        reason: format!("shard name `{name}` is not a plain file name"),
                    });
                }
                if !names.iter().any(|n| n == name) {
                    names.push(name.to_string());
                }
            }
        } else {
            return Err(Error::MissingTensor {
                file: dir.display().to_string(),
                tensor: "model.safetensors (or model.safetensors.index.json)".into(),
            });
        }
        let shards = names
            .into_iter()
            .map(|n| Ok((n.clone(), map_file(&dir.join(&n))?)))
            .collect::<Result<Vec<_>>>()?;
        Ok(HfCheckpoint {
            label: dir.display().to_string(),
            config_json,
            shards,
        })
    }
}

/// How packed `weight_scale` values are applied.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Quant {
    rule: ScaleRule,
}

fn cfg_err(file: &str, field: &str, reason: impl Into<String>) -> Error {
    Error::Config {
        file: file.to_string(),
        field: field.to_string(),
        reason: reason.into(),
    }
}

fn get_usize(cfg: &Value, file: &str, key: &str) -> Result<Option<usize>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_u64().map(|n| Some(n as usize)).ok_or_else(|| {
            cfg_err(
                file,
                key,
                format!("expected a non-negative integer, found {v}"),
            )
        }),
    }
}

fn need_usize(cfg: &Value, file: &str, key: &str) -> Result<usize> {
    get_usize(cfg, file, key)?.ok_or_else(|| cfg_err(file, key, "missing"))
}

fn get_f32(cfg: &Value, file: &str, key: &str) -> Result<Option<f32>> {
    match cfg.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v
            .as_f64()
            .map(|n| Some(n as f32))
            .ok_or_else(|| cfg_err(file, key, format!("expected a number, found {v}"))),
    }
}

/// Reads the hyper-parameters and the quantisation convention.
pub(crate) fn parse_config(json: &[u8], file: &str) -> Result<(HParams, Option<Quant>, Value)> {
    let cfg: Value =
        serde_json::from_slice(json).map_err(|e| cfg_err(file, "(json)", e.to_string()))?;
    if !cfg.is_object() {
        return Err(cfg_err(file, "(json)", "not a JSON object"));
    }
    let model_type = cfg.get("model_type").and_then(Value::as_str).unwrap_or("");
    let qc = cfg.get("quantization_config").filter(|v| !v.is_null());
    let quant_method = qc
        .and_then(|q| q.get("quant_method"))
        .and_then(Value::as_str);
    let quant = match (qc, quant_method) {
        (None, _) => None,
        (Some(_), Some("bitnet")) => {
            // transformers' BitNetQuantConfig defaults linear_class to
            // "bitlinear" when a checkpoint predates the field.
            let class = qc
                .and_then(|q| q.get("linear_class"))
                .and_then(Value::as_str)
                .unwrap_or("bitlinear");
            let rule = match class {
                "bitlinear" => ScaleRule::Divide,
                "autobitlinear" => ScaleRule::Multiply,
                other => {
                    return Err(cfg_err(
                        file,
                        "quantization_config.linear_class",
                        format!("unknown value `{other}` (expected bitlinear or autobitlinear)"),
                    ));
                }
            };
            Some(Quant { rule })
        }
        (Some(_), other) => {
            return Err(cfg_err(
                file,
                "quantization_config.quant_method",
                format!(
                    "`{}` is not a ternary (bitnet) quantisation",
                    other.unwrap_or("(missing)")
                ),
            ));
        }
    };
    let arch = match model_type {
        "bitnet" => Arch::BitnetB158,
        // BitNet embedding models (bf16 masters, quantised on load); a
        // plain float checkpoint of these backbones is refused when its
        // per-projection norms turn out to be missing.
        "qwen3" => Arch::Qwen3,
        "gemma3_text" => Arch::Gemma3,
        "llama" if quant.is_some() => Arch::Llama,
        "llama" => {
            return Err(Error::UnsupportedArch {
                file: file.to_string(),
                arch: "llama without a bitnet quantization_config (not a ternary model)".into(),
                supported: Arch::SUPPORTED,
            });
        }
        other => {
            return Err(Error::UnsupportedArch {
                file: file.to_string(),
                arch: other.to_string(),
                supported: Arch::SUPPORTED,
            });
        }
    };
    let act = cfg
        .get("hidden_activation")
        .or_else(|| cfg.get("hidden_act"))
        .and_then(Value::as_str);
    let ffn_act = match act {
        None => arch.default_ffn_act(),
        Some("relu2") => FfnAct::Relu2,
        Some("silu" | "swish") => FfnAct::Silu,
        Some("gelu_pytorch_tanh" | "gelu_new") => FfnAct::GeluTanh,
        Some(other) => {
            return Err(cfg_err(
                file,
                "hidden_act",
                format!("unsupported activation `{other}` (relu2, silu, gelu_pytorch_tanh)"),
            ));
        }
    };
    let n_embd = need_usize(&cfg, file, "hidden_size")?;
    let n_head = need_usize(&cfg, file, "num_attention_heads")?;
    if n_head == 0 {
        return Err(cfg_err(file, "num_attention_heads", "must be positive"));
    }
    let head_dim = get_usize(&cfg, file, "head_dim")?.unwrap_or(n_embd / n_head);
    let rope_theta = match get_f32(&cfg, file, "rope_theta")? {
        Some(t) => t,
        None => cfg
            .get("rope_parameters")
            .and_then(|p| p.get("rope_theta"))
            .and_then(Value::as_f64)
            .map(|t| t as f32)
            .unwrap_or(10000.0),
    };
    let hp = HParams {
        arch,
        n_embd,
        n_layer: need_usize(&cfg, file, "num_hidden_layers")?,
        n_head,
        n_head_kv: get_usize(&cfg, file, "num_key_value_heads")?.unwrap_or(n_head),
        head_dim,
        n_ff: need_usize(&cfg, file, "intermediate_size")?,
        n_vocab: need_usize(&cfg, file, "vocab_size")?,
        n_ctx_train: get_usize(&cfg, file, "max_position_embeddings")?.unwrap_or(2048),
        rms_eps: get_f32(&cfg, file, "rms_norm_eps")?.unwrap_or(1e-6),
        rope_theta,
        rope_dim: head_dim,
        rope_style: RopeStyle::Neox,
        ffn_act,
        tied_embeddings: cfg
            .get("tie_word_embeddings")
            .and_then(Value::as_bool)
            .unwrap_or(false),
    };
    Ok((hp, quant, cfg))
}

/// The embedding backbones' pooling (the BitNet embedding models pool the
/// last token; a checkpoint's sentence-transformers pooling files are not
/// read), end-of-text token (Qwen3's tokenizer appends `<|endoftext|>`) and
/// Gemma3's `query_pre_attn_scalar`.
fn embedding_spec(cfg: &Value, file: &str, hp: &HParams) -> Result<Option<EmbeddingSpec>> {
    if !hp.arch.is_embedding() {
        return Ok(None);
    }
    let scalar = get_f32(cfg, file, "query_pre_attn_scalar")?;
    if let Some(s) = scalar
        && !(s.is_finite() && s > 0.0)
    {
        return Err(cfg_err(
            file,
            "query_pre_attn_scalar",
            format!("{s} is not positive"),
        ));
    }
    Ok(Some(EmbeddingSpec {
        pooling: Pooling::Last,
        append_eos: hp.arch == Arch::Qwen3,
        query_pre_attn_scalar: if hp.arch == Arch::Gemma3 {
            scalar
        } else {
            None
        },
        sliding_window: if hp.arch == Arch::Gemma3 {
            sliding_window(cfg, file, hp)?
        } else {
            None
        },
    }))
}

/// Gemma3's sliding-window layers: `sliding_window` and `layer_types`
/// (`sliding_attention` / `full_attention`), or without `layer_types`,
/// `sliding_window_pattern` (every n-th layer global; 6 by default).
/// transformers gives sliding layers the RoPE base `rope_local_base_freq`;
/// one base for all layers is implemented, so a different one is refused.
fn sliding_window(cfg: &Value, file: &str, hp: &HParams) -> Result<Option<(usize, Vec<bool>)>> {
    let Some(w) = get_usize(cfg, file, "sliding_window")?.filter(|&w| w > 0) else {
        return Ok(None);
    };
    let layers: Vec<bool> = match cfg.get("layer_types").and_then(Value::as_array) {
        Some(types) => {
            if types.len() != hp.n_layer {
                return Err(cfg_err(
                    file,
                    "layer_types",
                    format!("{} entries for {} layers", types.len(), hp.n_layer),
                ));
            }
            types
                .iter()
                .map(|t| match t.as_str() {
                    Some("sliding_attention") => Ok(true),
                    Some("full_attention") => Ok(false),
                    _ => Err(cfg_err(
                        file,
                        "layer_types",
                        format!("unknown layer type {t}"),
                    )),
                })
                .collect::<Result<_>>()?
        }
        None => {
            let pattern = get_usize(cfg, file, "sliding_window_pattern")?
                .unwrap_or(6)
                .max(1);
            (0..hp.n_layer).map(|l| (l + 1) % pattern != 0).collect()
        }
    };
    if let Some(local) = get_f32(cfg, file, "rope_local_base_freq")?
        && local != hp.rope_theta
        && layers.iter().any(|&s| s)
    {
        return Err(cfg_err(
            file,
            "rope_local_base_freq",
            format!(
                "{local} differs from rope_theta {}: sliding-window layers with their own RoPE \
                 base are not implemented",
                hp.rope_theta
            ),
        ));
    }
    Ok(Some((w, layers)))
}

/// llama3-style RoPE scaling as per-frequency divisors, or `None`.
fn rope_scaling_factors(cfg: &Value, file: &str, hp: &HParams) -> Result<Option<Vec<f32>>> {
    let Some(rs) = cfg.get("rope_scaling").filter(|v| !v.is_null()) else {
        return Ok(None);
    };
    let kind = rs
        .get("rope_type")
        .or_else(|| rs.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("default");
    match kind {
        "default" => Ok(None),
        "llama3" => {
            let num = |k: &str| {
                rs.get(k)
                    .and_then(Value::as_f64)
                    .ok_or_else(|| cfg_err(file, &format!("rope_scaling.{k}"), "missing"))
            };
            let factor = num("factor")?;
            let low = num("low_freq_factor")?;
            let high = num("high_freq_factor")?;
            let orig = num("original_max_position_embeddings")?;
            let low_wavelen = orig / low;
            let high_wavelen = orig / high;
            let factors = (0..hp.rope_dim / 2)
                .map(|i| {
                    let inv =
                        1.0 / f64::from(hp.rope_theta).powf((2 * i) as f64 / hp.rope_dim as f64);
                    let wavelen = 2.0 * std::f64::consts::PI / inv;
                    let f = if wavelen < high_wavelen {
                        1.0
                    } else if wavelen > low_wavelen {
                        factor
                    } else {
                        let smooth = (orig / wavelen - low) / (high - low);
                        1.0 / ((1.0 - smooth) / factor + smooth)
                    };
                    f as f32
                })
                .collect();
            Ok(Some(factors))
        }
        other => Err(cfg_err(
            file,
            "rope_scaling",
            format!("unsupported rope scaling `{other}`"),
        )),
    }
}

struct Entry {
    shard: usize,
    dtype: Dtype,
    shape: Vec<usize>,
    range: std::ops::Range<usize>,
}

pub(crate) struct HfSource {
    label: String,
    shards: Vec<Owner>,
    tensors: HashMap<String, Entry>,
    quant: Option<Quant>,
    rope_factors: Option<Vec<f32>>,
    arch: Arch,
    embedding: Option<EmbeddingSpec>,
    /// `model.` for a causal-LM checkpoint; empty for a bare backbone
    /// (sentence-transformers and `AutoModel` checkpoints).
    prefix: &'static str,
}

impl HfSource {
    pub(crate) fn new(ckpt: HfCheckpoint) -> Result<(HfSource, HParams)> {
        let cfg_file = format!("{}/config.json", ckpt.label);
        let (mut hp, quant, cfg) = parse_config(&ckpt.config_json, &cfg_file)?;
        let mut tensors = HashMap::new();
        let mut shards = Vec::new();
        for (i, (name, owner)) in ckpt.shards.into_iter().enumerate() {
            let bytes: &[u8] = (*owner).as_ref();
            let file = format!("{}/{}", ckpt.label, name);
            let st =
                safetensors::SafeTensors::deserialize(bytes).map_err(|e| Error::Safetensors {
                    file: file.clone(),
                    reason: inconsistent_tensor(bytes).unwrap_or_else(|| e.to_string()),
                })?;
            for (tname, view) in st.tensors() {
                let start = view.data().as_ptr() as usize - bytes.as_ptr() as usize;
                let entry = Entry {
                    shard: i,
                    dtype: view.dtype(),
                    shape: view.shape().to_vec(),
                    range: start..start + view.data().len(),
                };
                if tensors.insert(tname.clone(), entry).is_some() {
                    return Err(Error::Safetensors {
                        file,
                        reason: format!("tensor `{tname}` appears in more than one shard"),
                    });
                }
            }
            shards.push(owner);
        }
        if !tensors.contains_key("lm_head.weight") {
            hp.tied_embeddings = true;
        }
        let prefix = if tensors.contains_key("embed_tokens.weight") {
            ""
        } else {
            "model."
        };
        if hp.arch.has_projection_norms() {
            let norm = format!("{prefix}layers.0.self_attn.q_proj.norm.weight");
            if !tensors.contains_key(&norm) {
                return Err(Error::UnsupportedArch {
                    file: cfg_file.clone(),
                    arch: format!(
                        "{} without per-projection norms (`{norm}`): not a BitNet model",
                        hp.arch.gguf_name()
                    ),
                    supported: Arch::SUPPORTED,
                });
            }
        }
        hp.validate(&cfg_file, crate::config::Keys::Hf)?;
        let rope_factors = rope_scaling_factors(&cfg, &cfg_file, &hp)?;
        Ok((
            HfSource {
                label: ckpt.label,
                shards,
                tensors,
                quant,
                rope_factors,
                arch: hp.arch,
                embedding: embedding_spec(&cfg, &cfg_file, &hp)?,
                prefix,
            },
            hp,
        ))
    }

    /// What the checkpoint adds as an embedding model, if it is one.
    pub(crate) fn embedding(&self) -> Option<&EmbeddingSpec> {
        self.embedding.as_ref()
    }

    fn entry(&self, name: &str) -> Result<&Entry> {
        self.tensors.get(name).ok_or_else(|| Error::MissingTensor {
            file: self.label.clone(),
            tensor: name.to_string(),
        })
    }

    fn bytes(&self, e: &Entry) -> &[u8] {
        &(*self.shards[e.shard]).as_ref()[e.range.clone()]
    }

    fn floats(&self, name: &str) -> Result<Vec<f32>> {
        let e = self.entry(name)?;
        let b = self.bytes(e);
        Ok(match e.dtype {
            Dtype::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            Dtype::F16 => b
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            Dtype::BF16 => b
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            other => {
                return Err(Error::TensorType {
                    file: self.label.clone(),
                    tensor: name.to_string(),
                    ty: format!("{other:?}"),
                    role: "a float tensor",
                });
            }
        })
    }
}

impl TensorSource for HfSource {
    fn file(&self) -> &str {
        &self.label
    }

    fn name(&self, role: Role, l: usize) -> String {
        let p = self.prefix;
        let layer = |s: &str| format!("{p}layers.{l}.{s}");
        let gemma = self.arch == Arch::Gemma3;
        let backbone = self.arch.has_projection_norms();
        match role {
            Role::TokenEmbd => format!("{p}embed_tokens.weight"),
            Role::OutputNorm => format!("{p}norm.weight"),
            Role::Output => "lm_head.weight".into(),
            Role::AttnNorm => layer("input_layernorm.weight"),
            Role::AttnQ => layer("self_attn.q_proj.weight"),
            Role::AttnK => layer("self_attn.k_proj.weight"),
            Role::AttnV => layer("self_attn.v_proj.weight"),
            Role::AttnOut => layer("self_attn.o_proj.weight"),
            Role::AttnSubNorm if backbone => layer("self_attn.o_proj.norm.weight"),
            Role::AttnSubNorm => layer("self_attn.attn_sub_norm.weight"),
            Role::FfnNorm if gemma => layer("pre_feedforward_layernorm.weight"),
            Role::FfnNorm => layer("post_attention_layernorm.weight"),
            Role::FfnGate => layer("mlp.gate_proj.weight"),
            Role::FfnUp => layer("mlp.up_proj.weight"),
            Role::FfnDown => layer("mlp.down_proj.weight"),
            Role::FfnSubNorm if backbone => layer("mlp.down_proj.norm.weight"),
            Role::FfnSubNorm => layer("mlp.ffn_sub_norm.weight"),
            Role::AttnQNormIn => layer("self_attn.q_proj.norm.weight"),
            Role::AttnKNormIn => layer("self_attn.k_proj.norm.weight"),
            Role::AttnVNormIn => layer("self_attn.v_proj.norm.weight"),
            Role::FfnGateNormIn => layer("mlp.gate_proj.norm.weight"),
            Role::FfnUpNormIn => layer("mlp.up_proj.norm.weight"),
            Role::AttnQNorm => layer("self_attn.q_norm.weight"),
            Role::AttnKNorm => layer("self_attn.k_norm.weight"),
            Role::PostAttnNorm => layer("post_attention_layernorm.weight"),
            Role::PostFfnNorm => layer("post_feedforward_layernorm.weight"),
        }
    }

    fn norm_offset(&self, role: Role) -> f32 {
        // Gemma3RMSNorm multiplies by (1 + w); the per-projection norms are
        // BitLinear's own, plain RMSNorms.
        let gemma_own = matches!(
            role,
            Role::AttnNorm
                | Role::FfnNorm
                | Role::PostAttnNorm
                | Role::PostFfnNorm
                | Role::OutputNorm
                | Role::AttnQNorm
                | Role::AttnKNorm
        );
        if self.arch == Arch::Gemma3 && gemma_own {
            1.0
        } else {
            0.0
        }
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let e = self.tensors.get(name)?;
        let mut shape = e.shape.clone();
        if e.dtype == Dtype::U8 && shape.len() == 2 {
            // Packed ternary: four rows per byte.
            shape[0] *= 4;
        }
        Some(shape)
    }

    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        self.floats(name)
    }

    fn dense(&self, name: &str) -> Result<DenseWeight> {
        let e = self.entry(name)?;
        let ty = match e.dtype {
            Dtype::F32 => DenseType::F32,
            Dtype::F16 => DenseType::F16,
            Dtype::BF16 => DenseType::BF16,
            other => {
                return Err(Error::TensorType {
                    file: self.label.clone(),
                    tensor: name.to_string(),
                    ty: format!("{other:?}"),
                    role: "an embedding or output matrix",
                });
            }
        };
        let bytes = ByteView::new(Arc::clone(&self.shards[e.shard]), e.range.clone())
            .expect("range comes from the parsed file");
        Ok(DenseWeight {
            ty,
            rows: e.shape[0],
            cols: e.shape[1],
            bytes,
        })
    }

    fn ternary(&self, name: &str) -> Result<Ternary> {
        let e = self.entry(name)?;
        let (rows, cols) = (e.shape[0], e.shape[1]);
        let data_err = |reason: String| Error::TensorData {
            file: self.label.clone(),
            tensor: name.to_string(),
            reason,
        };
        if e.dtype == Dtype::U8 {
            let quant = self.quant.ok_or_else(|| Error::Config {
                file: format!("{}/config.json", self.label),
                field: "quantization_config".into(),
                reason: format!(
                    "`{name}` is packed uint8, but without a bitnet quantization_config \
                     the meaning of weight_scale (divide or multiply) is unknown"
                ),
            })?;
            let values = unpack_hf(self.bytes(e), rows, cols)
                .map_err(|i| data_err(format!("packed code 3 (not ternary) at element {i}")))?;
            let scale_name =
                name.strip_suffix(".weight").unwrap_or(name).to_string() + ".weight_scale";
            let scale = self.floats(&scale_name)?;
            if scale.len() != 1 {
                let found = self.entry(&scale_name)?.shape.clone();
                return Err(Error::TensorShape {
                    file: self.label.clone(),
                    tensor: scale_name,
                    expected: vec![1],
                    found,
                });
            }
            Ok(Ternary {
                rows: rows * 4,
                cols,
                values,
                scales: vec![scale[0]; rows * 4],
                rule: quant.rule,
            })
        } else {
            let floats = self.floats(name)?;
            let (values, scale, rule) = ternarize(&floats);
            Ok(Ternary {
                rows,
                cols,
                values,
                scales: vec![scale; rows],
                rule,
            })
        }
    }

    fn rope_freq_factors(&self) -> Result<Option<Vec<f32>>> {
        Ok(self.rope_factors.clone())
    }
}

/// The first tensor of a safetensors header whose byte range disagrees with
/// its shape and type, or lies outside the file, described for an error
/// (the parser's own message names neither the tensor nor the sizes).
fn inconsistent_tensor(bytes: &[u8]) -> Option<String> {
    let n = usize::try_from(u64::from_le_bytes(bytes.get(..8)?.try_into().ok()?)).ok()?;
    let header: serde_json::Map<String, Value> =
        serde_json::from_slice(bytes.get(8..8usize.checked_add(n)?)?).ok()?;
    let data_len = bytes.len() - 8 - n;
    for (name, info) in &header {
        if name == "__metadata__" {
            continue;
        }
        let dtype = info.get("dtype")?.as_str()?;
        let width: usize = match dtype {
            "BOOL" | "U8" | "I8" | "F8_E5M2" | "F8_E4M3" => 1,
            "U16" | "I16" | "F16" | "BF16" => 2,
            "U32" | "I32" | "F32" => 4,
            "U64" | "I64" | "F64" => 8,
            _ => continue,
        };
        let shape: Option<Vec<usize>> = info
            .get("shape")?
            .as_array()?
            .iter()
            .map(|d| d.as_u64().and_then(|d| usize::try_from(d).ok()))
            .collect();
        let offsets = info.get("data_offsets")?.as_array()?;
        let (Some(start), Some(end)) = (
            offsets.first().and_then(Value::as_u64),
            offsets.get(1).and_then(Value::as_u64),
        ) else {
            continue;
        };
        let want = shape.as_ref().and_then(|s| {
            s.iter()
                .try_fold(width, |acc, &d| acc.checked_mul(d))
                .map(|b| b as u64)
        });
        if end < start || want != Some(end - start) {
            return Some(format!(
                "tensor `{name}`: shape {shape:?} of {dtype} needs {} bytes but its data offsets {start}..{end} hold {}",
                want.map_or_else(|| "too many".to_string(), |w| w.to_string()),
                end.saturating_sub(start)
            ));
        }
        if end > data_len as u64 {
            return Some(format!(
                "tensor `{name}`: data offsets {start}..{end} run past the end of the data ({data_len} bytes; truncated file?)"
            ));
        }
    }
    None
}
