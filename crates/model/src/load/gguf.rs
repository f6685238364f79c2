//! GGUF files as written by bitnet.cpp (I2_S, TL1, TL2) and llama.cpp
//! (TQ1_0, TQ2_0), and float exports of ternary models.

use std::sync::Arc;

use bitnet_gguf::ternary::{TernaryScale, TlTiling};
use bitnet_gguf::{GgufFile, TensorInfo, TensorType};
use bitnet_kernels::{DenseType, ScaleRule};
use half::{bf16, f16};

use super::ternarize::{StoredAs, ternarize};
use super::{Role, TensorSource, Ternary};
use crate::config::{Arch, EmbeddingSpec, HParams, Pooling, RopeStyle};
use crate::error::{Error, Result};
use crate::storage::{ByteView, Owner};
use crate::weights::DenseWeight;

struct FileBytes(Arc<GgufFile>);

impl AsRef<[u8]> for FileBytes {
    fn as_ref(&self) -> &[u8] {
        self.0.bytes()
    }
}

pub(crate) struct GgufSource {
    file: Arc<GgufFile>,
    arch: Arch,
    owner: Owner,
    label: String,
    tiling: Vec<(usize, usize, TlTiling)>,
}

fn label(f: &GgufFile) -> String {
    f.path()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(GGUF in memory)".into())
}

/// Reads the hyper-parameters from `{arch}.*` metadata.
pub(crate) fn hparams(f: &GgufFile) -> Result<HParams> {
    let file = label(f);
    let md = f.metadata();
    let arch_name = f.architecture().ok_or_else(|| Error::Config {
        file: file.clone(),
        field: "general.architecture".into(),
        reason: "missing".into(),
    })?;
    let arch = Arch::from_gguf(arch_name).ok_or_else(|| Error::UnsupportedArch {
        file: file.clone(),
        arch: arch_name.to_string(),
        supported: Arch::SUPPORTED,
    })?;
    let key = |k: &str| format!("{arch_name}.{k}");
    let missing = |k: String| Error::Config {
        file: file.clone(),
        field: k,
        reason: "missing".into(),
    };
    let int = |k: &str| -> Result<Option<usize>> { Ok(md.get_u64(&key(k))?.map(|v| v as usize)) };
    let need = |k: &str| -> Result<usize> { int(k)?.ok_or_else(|| missing(key(k))) };
    let n_embd = need("embedding_length")?;
    let n_head = need("attention.head_count")?;
    let head_dim = match int("attention.key_length")? {
        Some(d) => d,
        None if n_head > 0 => n_embd / n_head,
        None => 0,
    };
    let n_vocab = match int("vocab_size")? {
        Some(v) => v,
        None => f
            .tensor("token_embd.weight")
            .and_then(|t| t.ne.get(1).copied())
            .map(|v| v as usize)
            .ok_or_else(|| missing(key("vocab_size")))?,
    };
    let hp = HParams {
        arch,
        n_embd,
        n_layer: need("block_count")?,
        n_head,
        n_head_kv: int("attention.head_count_kv")?.unwrap_or(n_head),
        head_dim,
        n_ff: need("feed_forward_length")?,
        n_vocab,
        n_ctx_train: int("context_length")?.unwrap_or(2048),
        rms_eps: md
            .get_f32(&key("attention.layer_norm_rms_epsilon"))?
            .ok_or_else(|| missing(key("attention.layer_norm_rms_epsilon")))?,
        rope_theta: md.get_f32(&key("rope.freq_base"))?.unwrap_or(10000.0),
        rope_dim: int("rope.dimension_count")?.unwrap_or(head_dim),
        rope_style: match arch {
            Arch::Llama => RopeStyle::Interleaved,
            Arch::BitnetB158 | Arch::Bitnet | Arch::Qwen3 | Arch::Gemma3 => RopeStyle::Neox,
        },
        ffn_act: arch.default_ffn_act(),
        tied_embeddings: f.tensor("output.weight").is_none(),
    };
    hp.validate(&file, crate::config::Keys::Gguf(arch_name))?;
    Ok(hp)
}

/// The embedding backbones' pooling (`{arch}.pooling_type`: 1 mean, 2 cls,
/// 3 last; absent, the last token, as the BitNet embedding models pool),
/// whether the tokenizer appends its end-of-text token
/// (`tokenizer.ggml.add_eos_token`; bitnet.cpp's converter sets it for
/// Qwen3), `{arch}.attention.query_pre_attn_scalar` (absent: llama.cpp
/// scales Gemma3 scores by `head_dim^-0.5`) and Gemma3's
/// `{arch}.attention.sliding_window` (absent, as bitnet.cpp's converter
/// leaves it: every layer attends to every position).
pub(crate) fn embedding_spec(f: &GgufFile, hp: &HParams) -> Result<Option<EmbeddingSpec>> {
    if !hp.arch.is_embedding() {
        return Ok(None);
    }
    let md = f.metadata();
    let arch = hp.arch.gguf_name();
    let pooling = match md.get_u64(&format!("{arch}.pooling_type"))? {
        None | Some(3) => Pooling::Last,
        Some(1) => Pooling::Mean,
        Some(2) => Pooling::Cls,
        Some(other) => {
            return Err(Error::Config {
                file: label(f),
                field: format!("{arch}.pooling_type"),
                reason: format!(
                    "{other} is not a pooling this engine implements (1 mean, 2 cls, 3 last)"
                ),
            });
        }
    };
    Ok(Some(EmbeddingSpec {
        pooling,
        append_eos: md
            .get_bool("tokenizer.ggml.add_eos_token")?
            .unwrap_or(hp.arch == Arch::Qwen3),
        query_pre_attn_scalar: md.get_f32(&format!("{arch}.attention.query_pre_attn_scalar"))?,
        // llama.cpp's Gemma3: a window from `attention.sliding_window`, on
        // five layers of every six.
        sliding_window: match md.get_u64(&format!("{arch}.attention.sliding_window"))? {
            Some(w) if hp.arch == Arch::Gemma3 && w > 0 => Some((
                w as usize,
                (0..hp.n_layer).map(|l| (l + 1) % 6 != 0).collect(),
            )),
            _ => None,
        },
    }))
}

impl GgufSource {
    pub(crate) fn new(file: Arc<GgufFile>, tiling: Vec<(usize, usize, TlTiling)>) -> GgufSource {
        GgufSource {
            arch: file
                .architecture()
                .and_then(Arch::from_gguf)
                .unwrap_or(Arch::BitnetB158),
            owner: Arc::new(FileBytes(Arc::clone(&file))),
            label: label(&file),
            file,
            tiling,
        }
    }

    fn info(&self, name: &str) -> Result<&TensorInfo> {
        self.file.tensor(name).ok_or_else(|| Error::MissingTensor {
            file: self.label.clone(),
            tensor: name.to_string(),
        })
    }

    fn type_err(&self, t: &TensorInfo, role: &'static str) -> Error {
        Error::TensorType {
            file: self.label.clone(),
            tensor: t.name.clone(),
            ty: t.ty.name(),
            role,
        }
    }

    fn floats(&self, t: &TensorInfo, role: &'static str) -> Result<Vec<f32>> {
        let b = self.file.tensor_data(t)?;
        Ok(match t.ty {
            TensorType::F32 => b
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect(),
            TensorType::F16 => b
                .chunks_exact(2)
                .map(|c| f16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            TensorType::BF16 => b
                .chunks_exact(2)
                .map(|c| bf16::from_le_bytes([c[0], c[1]]).to_f32())
                .collect(),
            _ => return Err(self.type_err(t, role)),
        })
    }

    /// Optional per-matrix scale tensor (`blk.N.attn_q.scale`), as mainline
    /// llama.cpp conversions of 1bitLLM models write it.
    fn extra_scale(&self, name: &str) -> Result<f32> {
        let base = name.strip_suffix(".weight").unwrap_or(name);
        match self.file.tensor(&format!("{base}.scale")) {
            None => Ok(1.0),
            Some(t) => {
                let v = self.floats(t, "a matrix scale")?;
                if v.len() != 1 {
                    return Err(Error::TensorShape {
                        file: self.label.clone(),
                        tensor: t.name.clone(),
                        expected: vec![1],
                        found: vec![v.len()],
                    });
                }
                Ok(v[0])
            }
        }
    }
}

impl TensorSource for GgufSource {
    fn file(&self) -> &str {
        &self.label
    }

    fn name(&self, role: Role, l: usize) -> String {
        tensor_name(self.arch, role, l)
    }

    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        let t = self.file.tensor(name)?;
        Some(t.ne.iter().rev().map(|&v| v as usize).collect())
    }

    fn vector(&self, name: &str) -> Result<Vec<f32>> {
        let t = self.info(name)?;
        self.floats(t, "a norm weight")
    }

    fn dense(&self, name: &str) -> Result<DenseWeight> {
        let t = self.info(name)?;
        let ty = match t.ty {
            TensorType::F32 => DenseType::F32,
            TensorType::F16 => DenseType::F16,
            TensorType::BF16 => DenseType::BF16,
            TensorType::Q8_0 => DenseType::Q8_0,
            TensorType::Q6_K => DenseType::Q6K,
            _ => {
                return Err(self.type_err(
                    t,
                    "an embedding or output matrix (F32, F16, BF16, Q8_0, Q6_K)",
                ));
            }
        };
        let data = self.file.tensor_data(t)?;
        let start = data.as_ptr() as usize - self.file.bytes().as_ptr() as usize;
        let bytes = ByteView::new(Arc::clone(&self.owner), start..start + data.len())
            .expect("tensor data lies inside the file");
        Ok(DenseWeight {
            ty,
            rows: t.rows() as usize,
            cols: t.cols() as usize,
            bytes,
        })
    }

    fn ternary(&self, name: &str) -> Result<Ternary> {
        let t = self.info(name)?;
        let (rows, cols) = (t.rows() as usize, t.cols() as usize);
        let extra = self.extra_scale(name)?;
        let (values, mut scales, rule) = if t.ty.is_ternary() {
            let data = self.file.tensor_data(t)?;
            let tiling = self
                .tiling
                .iter()
                .find(|(m, k, _)| *m == rows && *k == cols)
                .map(|(_, _, tl)| *tl);
            let decoded = bitnet_gguf::ternary::decode(name, t.ty, data, rows, cols, tiling)?;
            let scales = match &decoded.scale {
                TernaryScale::PerTensor(s) => vec![*s; rows],
                TernaryScale::PerBlock { .. } => decoded.row_scales().ok_or_else(|| Error::TensorData {
                    file: self.label.clone(),
                    tensor: name.to_string(),
                    reason: "block scales differ within a row: not a ternary tensor with one scale per matrix".into(),
                })?,
            };
            (decoded.values, scales, ScaleRule::Multiply)
        } else if matches!(t.ty, TensorType::F32 | TensorType::F16 | TensorType::BF16) {
            let (values, s, rule) = ternarize(&self.floats(t, "a ternary matrix")?);
            (values, vec![s; rows], rule)
        } else {
            return Err(self.type_err(
                t,
                "a ternary projection (I2_S, TL1, TL2, TQ1_0, TQ2_0 or float)",
            ));
        };
        apply_extra(&mut scales, rule, extra);
        Ok(Ternary {
            rows,
            cols,
            values,
            scales,
            rule,
        })
    }

    fn ternary_into(&self, name: &str, out: &mut [i8]) -> Result<(Vec<f32>, ScaleRule)> {
        let t = self.info(name)?;
        let (rows, cols) = (t.rows() as usize, t.cols() as usize);
        if t.ty == TensorType::I2_S && cols.is_multiple_of(I2S_BLOCK) && out.len() == rows * cols {
            let data = self.file.tensor_data(t)?;
            if let Some(scale) = decode_i2s_into(data, out) {
                let extra = self.extra_scale(name)?;
                let mut scales = vec![scale; rows];
                apply_extra(&mut scales, ScaleRule::Multiply, extra);
                return Ok((scales, ScaleRule::Multiply));
            }
            // A bad code or length: the full decoder names the element.
        }
        let t = self.ternary(name)?;
        out.copy_from_slice(&t.values);
        Ok((t.scales, t.rule))
    }

    fn scale_precision(&self, name: &str) -> Option<StoredAs> {
        let t = self.file.tensor(name)?;
        // A separate `.scale` tensor means the file's scales are not a
        // converter's rounding of one bf16 `weight_scale`.
        let base = name.strip_suffix(".weight").unwrap_or(name);
        if self.file.tensor(&format!("{base}.scale")).is_some() {
            return None;
        }
        // Float exports of ternary models (bitnet.cpp's F32 conversion
        // writes `T / weight_scale`) hold the multiplier in the float type.
        match t.ty {
            TensorType::F32 => Some(StoredAs::F32),
            TensorType::F16 => Some(StoredAs::F16),
            ty if ty.is_ternary() => Some(stored_as(ty)),
            _ => None,
        }
    }

    fn release(&self, name: &str) {
        if let Some(t) = self.file.tensor(name)
            && let Ok(range) = self.file.tensor_range(t)
        {
            self.file.release(range);
        }
    }

    fn rope_freq_factors(&self) -> Result<Option<Vec<f32>>> {
        match self.file.tensor("rope_freqs.weight") {
            None => Ok(None),
            Some(t) => Ok(Some(self.floats(t, "RoPE frequency factors")?)),
        }
    }
}

/// The GGUF name of the tensor with `role` in block `l` (llama.cpp's names;
/// the embedding backbones' as bitnet.cpp's
/// `convert-bitnet-embedding-to-gguf.py` writes them).
pub(crate) fn tensor_name(arch: Arch, role: Role, l: usize) -> String {
    let blk = |s: &str| format!("blk.{l}.{s}.weight");
    let backbone = arch.has_projection_norms();
    match role {
        Role::TokenEmbd => "token_embd.weight".into(),
        Role::OutputNorm => "output_norm.weight".into(),
        Role::Output => "output.weight".into(),
        Role::AttnNorm => blk("attn_norm"),
        Role::AttnQ => blk("attn_q"),
        Role::AttnK => blk("attn_k"),
        Role::AttnV => blk("attn_v"),
        Role::AttnOut => blk("attn_output"),
        Role::AttnSubNorm if backbone => blk("attn_output_norm_in"),
        Role::AttnSubNorm => blk("attn_sub_norm"),
        Role::FfnNorm => blk("ffn_norm"),
        Role::FfnGate => blk("ffn_gate"),
        Role::FfnUp => blk("ffn_up"),
        Role::FfnDown => blk("ffn_down"),
        Role::FfnSubNorm if backbone => blk("ffn_down_norm_in"),
        Role::FfnSubNorm => blk("ffn_sub_norm"),
        Role::AttnQNormIn => blk("attn_q_norm_in"),
        Role::AttnKNormIn => blk("attn_k_norm_in"),
        Role::AttnVNormIn => blk("attn_v_norm_in"),
        Role::FfnGateNormIn => blk("ffn_gate_norm_in"),
        Role::FfnUpNormIn => blk("ffn_up_norm_in"),
        Role::AttnQNorm => blk("attn_q_norm"),
        Role::AttnKNorm => blk("attn_k_norm"),
        Role::PostAttnNorm => blk("post_attention_norm"),
        Role::PostFfnNorm => blk("post_ffw_norm"),
    }
}

/// How a ternary type stores its scale.
fn stored_as(ty: TensorType) -> StoredAs {
    match ty {
        TensorType::TQ1_0 | TensorType::TQ2_0 => StoredAs::F16,
        _ => StoredAs::F32,
    }
}

/// Folds a separate per-matrix scale tensor into the row scales.
fn apply_extra(scales: &mut [f32], rule: ScaleRule, extra: f32) {
    if extra != 1.0 {
        match rule {
            ScaleRule::Multiply => scales.iter_mut().for_each(|s| *s *= extra),
            ScaleRule::Divide => scales.iter_mut().for_each(|s| *s /= extra),
        }
    }
}

/// Elements per I2_S block.
const I2S_BLOCK: usize = 128;

/// Decodes I2_S codes (the x86/file layout: byte `p` of each 32-byte block
/// holds elements `p`, `p+32`, `p+64`, `p+96` in bits 7..6, 5..4, 3..2,
/// 1..0, code `t + 1`) straight into `out` and returns the tensor scale, or
/// `None` if the length is wrong or a code is 3 (left to the checked decoder
/// to report). Written so that the compiler vectorises the inner loops.
fn decode_i2s_into(data: &[u8], out: &mut [i8]) -> Option<f32> {
    let n = out.len();
    if data.len() != n / 4 + 32 || !n.is_multiple_of(I2S_BLOCK) {
        return None;
    }
    let mut bad = 0u8;
    for (codes, vals) in data[..n / 4]
        .chunks_exact(32)
        .zip(out.chunks_exact_mut(I2S_BLOCK))
    {
        for (g, group) in vals.chunks_exact_mut(32).enumerate() {
            let shift = 6 - 2 * g as u32;
            for (v, &b) in group.iter_mut().zip(codes) {
                *v = ((b >> shift) & 3) as i8 - 1;
            }
        }
        for &b in codes {
            bad |= b & (b >> 1) & 0x55;
        }
    }
    if bad != 0 {
        return None;
    }
    let s = &data[n / 4..n / 4 + 4];
    Some(f32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn direct_i2s_decoder_matches_the_reference() {
        let (rows, cols) = (3, 256);
        let values: Vec<i8> = (0..rows * cols)
            .map(|i| ((i * 7 + i / 5) % 3) as i8 - 1)
            .collect();
        let data = bitnet_gguf::ternary::encode_i2s(&values, rows, cols, 0.75).unwrap();
        let mut out = vec![9i8; rows * cols];
        assert_eq!(decode_i2s_into(&data, &mut out), Some(0.75));
        assert_eq!(out, values);
        let mut bad = data.clone();
        bad[40] = 0b1111_0000;
        assert_eq!(decode_i2s_into(&bad, &mut out), None);
        assert_eq!(decode_i2s_into(&data[1..], &mut out), None);
    }
}
