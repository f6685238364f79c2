//! Writing a checkpoint as GGUF.
//!
//! Any checkpoint the loader reads (a Hugging Face directory with packed or
//! bf16-master weights, or another GGUF) can be written as a GGUF that
//! bitnet.cpp and llama.cpp read: ternary projections as I2_S (bitnet.cpp's
//! default), TQ1_0 or TQ2_0 (llama.cpp's), the embedding and a separate head
//! as F16, Q8_0 or Q6_K, norms as F32, with the hyper-parameter keys those
//! programs expect. Tokenizer metadata is the caller's business (this crate
//! knows nothing of tokenizers); [`Converted::metadata_mut`] takes it.
//!
//! Scales: GGUF ternary types multiply (`W = s · t`). A Hugging Face
//! `bitlinear` checkpoint divides by `weight_scale`, so `s = 1 / weight_scale`
//! (f32), which is what bitnet.cpp's converter writes.
//!
//! Llama-architecture files from Hugging Face get their Q and K rows
//! permuted for llama.cpp's interleaved ("norm") rotary embedding, as
//! llama.cpp's own converter does; `bitnet*` architectures keep the
//! rotate-half order.

use std::sync::Arc;

use bitnet_gguf::{GgmlType, GgufFile, GgufWriter, Metadata, Value};
use bitnet_kernels::{DenseType, ScaleRule, dense};

use crate::config::{Arch, HParams, RopeStyle};
use crate::error::{Error, Result};
use crate::load::hf::{HfCheckpoint, HfSource};
use crate::load::{self, Role, TensorSource, Ternary};

/// How ternary projections are stored.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TernaryFormat {
    /// bitnet.cpp I2_S: 2 bits per weight, one f32 scale per tensor.
    I2S,
    /// llama.cpp TQ1_0: 1.69 bits per weight, f16 scale per 256 values.
    TQ1_0,
    /// llama.cpp TQ2_0: 2.06 bits per weight, f16 scale per 256 values.
    TQ2_0,
}

impl TernaryFormat {
    /// Parses `i2_s`, `tq1_0`, `tq2_0`.
    pub fn from_name(s: &str) -> Option<TernaryFormat> {
        match s.to_ascii_lowercase().as_str() {
            "i2_s" | "i2s" => Some(TernaryFormat::I2S),
            "tq1_0" => Some(TernaryFormat::TQ1_0),
            "tq2_0" => Some(TernaryFormat::TQ2_0),
            _ => None,
        }
    }

    fn ggml(self) -> GgmlType {
        match self {
            TernaryFormat::I2S => GgmlType::I2_S,
            TernaryFormat::TQ1_0 => GgmlType::TQ1_0,
            TernaryFormat::TQ2_0 => GgmlType::TQ2_0,
        }
    }

    /// `general.file_type` (llama_ftype) in the bitnet.cpp fork.
    fn file_type(self) -> u32 {
        match self {
            TernaryFormat::I2S => 40,
            TernaryFormat::TQ1_0 => 36,
            TernaryFormat::TQ2_0 => 37,
        }
    }
}

/// What to write.
#[derive(Clone, Debug)]
pub struct ConvertOptions {
    /// Format of the ternary projections.
    pub ternary: TernaryFormat,
    /// Format of the token embedding (and of the head when it is tied).
    pub embedding: DenseType,
    /// Format of a separate output head.
    pub head: DenseType,
    /// `general.name`.
    pub name: String,
}

/// A converted model, ready to write.
pub struct Converted {
    writer: GgufWriter,
    hparams: HParams,
}

impl Converted {
    /// The hyper-parameters of the model.
    pub fn hparams(&self) -> &HParams {
        &self.hparams
    }

    /// Metadata, for adding tokenizer keys.
    pub fn metadata_mut(&mut self) -> &mut Metadata {
        self.writer.metadata_mut()
    }

    /// The writer.
    pub fn into_writer(self) -> GgufWriter {
        self.writer
    }
}

/// Converts a Hugging Face checkpoint.
pub fn from_hf(ckpt: HfCheckpoint, opts: &ConvertOptions) -> Result<Converted> {
    let (src, hp) = HfSource::new(ckpt)?;
    convert(&src, &hp, opts)
}

/// Converts (re-encodes) a GGUF file.
pub fn from_gguf(file: Arc<GgufFile>, opts: &ConvertOptions) -> Result<Converted> {
    let hp = load::gguf::hparams(&file)?;
    let src = load::gguf::GgufSource::new(file, Vec::new());
    convert(&src, &hp, opts)
}

fn u32_value(v: usize) -> Value {
    Value::U32(u32::try_from(v).unwrap_or(u32::MAX))
}

fn convert(src: &dyn TensorSource, hp: &HParams, opts: &ConvertOptions) -> Result<Converted> {
    if hp.arch.has_projection_norms() {
        return Err(Error::UnsupportedArch {
            file: src.file().to_string(),
            arch: format!(
                "{} embedding model: conversion is not implemented; bitnet.cpp's \
                 utils/convert-bitnet-embedding-to-gguf.py writes I2_S GGUFs this engine reads",
                hp.arch.gguf_name()
            ),
            supported: "bitnet-b1.58, bitnet, llama",
        });
    }
    let mut w = GgufWriter::new();
    {
        let md = w.metadata_mut();
        md.insert(
            "general.architecture",
            Value::String(hp.arch.gguf_name().into()),
        );
        md.insert("general.name", Value::String(opts.name.clone()));
        md.insert("general.file_type", Value::U32(opts.ternary.file_type()));
        md.insert("general.quantization_version", Value::U32(2));
        write_hparams(md, hp);
    }
    let gguf_name = |role, l| load::gguf::tensor_name(hp.arch, role, l);
    let file = src.file().to_string();
    let dense_out = |w: &mut GgufWriter, role: Role, ty: DenseType| -> Result<()> {
        let name = src.name(role, 0);
        let d = src.dense(&name)?;
        let data = if d.ty == ty {
            d.bytes.to_vec()
        } else {
            let m = d.matrix();
            let mut row = vec![0f32; d.cols];
            let mut out = Vec::with_capacity(ty.row_bytes(d.cols).unwrap_or(0) * d.rows);
            for r in 0..d.rows {
                m.dequantize_row(r, &mut row);
                out.extend(dense::quantize(ty, &row).map_err(|source| Error::Kernel {
                    tensor: name.clone(),
                    source,
                })?);
            }
            out
        };
        w.add_tensor(
            gguf_name(role, 0),
            vec![d.cols as u64, d.rows as u64],
            dense_ggml(ty),
            data,
        )?;
        Ok(())
    };
    let vector_out = |w: &mut GgufWriter, role: Role, l: usize| -> Result<()> {
        let v = src.vector(&src.name(role, l))?;
        let data: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
        w.add_tensor(
            gguf_name(role, l),
            vec![v.len() as u64],
            GgmlType::F32,
            data,
        )?;
        Ok(())
    };
    let permute = hp.arch == Arch::Llama && hp.rope_style == RopeStyle::Neox;
    let ternary_out = |w: &mut GgufWriter, role: Role, l: usize| -> Result<()> {
        let name = src.name(role, l);
        let mut t = src.ternary(&name)?;
        if permute && role == Role::AttnQ {
            permute_rows(&mut t, hp.n_head);
        } else if permute && role == Role::AttnK {
            permute_rows(&mut t, hp.n_head_kv);
        }
        let data = encode(&file, &name, &t, opts.ternary)?;
        w.add_tensor(
            gguf_name(role, l),
            vec![t.cols as u64, t.rows as u64],
            opts.ternary.ggml(),
            data,
        )?;
        Ok(())
    };
    dense_out(&mut w, Role::TokenEmbd, opts.embedding)?;
    for l in 0..hp.n_layer {
        vector_out(&mut w, Role::AttnNorm, l)?;
        for role in [Role::AttnQ, Role::AttnK, Role::AttnV] {
            ternary_out(&mut w, role, l)?;
        }
        if hp.arch.has_sub_norms() {
            vector_out(&mut w, Role::AttnSubNorm, l)?;
        }
        ternary_out(&mut w, Role::AttnOut, l)?;
        vector_out(&mut w, Role::FfnNorm, l)?;
        ternary_out(&mut w, Role::FfnGate, l)?;
        ternary_out(&mut w, Role::FfnUp, l)?;
        if hp.arch.has_sub_norms() {
            vector_out(&mut w, Role::FfnSubNorm, l)?;
        }
        ternary_out(&mut w, Role::FfnDown, l)?;
    }
    vector_out(&mut w, Role::OutputNorm, 0)?;
    if !hp.tied_embeddings {
        dense_out(&mut w, Role::Output, opts.head)?;
    }
    if let Some(f) = src.rope_freq_factors()? {
        let data: Vec<u8> = f.iter().flat_map(|x| x.to_le_bytes()).collect();
        w.add_tensor(
            "rope_freqs.weight",
            vec![f.len() as u64],
            GgmlType::F32,
            data,
        )?;
    }
    let mut hparams = hp.clone();
    if permute {
        hparams.rope_style = RopeStyle::Interleaved;
    }
    Ok(Converted { writer: w, hparams })
}

/// Writes the `{arch}.*` hyper-parameter keys bitnet.cpp and llama.cpp read.
pub fn write_hparams(md: &mut Metadata, hp: &HParams) {
    let arch = hp.arch.gguf_name();
    let key = |k: &str| format!("{arch}.{k}");
    md.insert(key("vocab_size"), u32_value(hp.n_vocab));
    md.insert(key("context_length"), u32_value(hp.n_ctx_train));
    md.insert(key("embedding_length"), u32_value(hp.n_embd));
    md.insert(key("block_count"), u32_value(hp.n_layer));
    md.insert(key("feed_forward_length"), u32_value(hp.n_ff));
    md.insert(key("rope.dimension_count"), u32_value(hp.rope_dim));
    md.insert(key("attention.head_count"), u32_value(hp.n_head));
    md.insert(key("attention.head_count_kv"), u32_value(hp.n_head_kv));
    md.insert(
        key("attention.layer_norm_rms_epsilon"),
        Value::F32(hp.rms_eps),
    );
    md.insert(key("rope.freq_base"), Value::F32(hp.rope_theta));
}

/// The GGUF tensor type of a dense matrix format.
pub fn dense_ggml(ty: DenseType) -> GgmlType {
    match ty {
        DenseType::F32 => GgmlType::F32,
        DenseType::F16 => GgmlType::F16,
        DenseType::BF16 => GgmlType::BF16,
        DenseType::Q8_0 => GgmlType::Q8_0,
        DenseType::Q6K => GgmlType::Q6_K,
    }
}

/// Reorders each head's rows from rotate-half pairs (i, i + d/2) to
/// interleaved pairs (2i, 2i + 1), as llama.cpp's converter does.
fn permute_rows(t: &mut Ternary, n_head: usize) {
    let hd = t.rows / n_head;
    let cols = t.cols;
    let old_values = t.values.clone();
    let old_scales = t.scales.clone();
    for h in 0..n_head {
        for i in 0..hd / 2 {
            for j in 0..2 {
                let new = h * hd + 2 * i + j;
                let old = h * hd + j * (hd / 2) + i;
                t.values[new * cols..(new + 1) * cols]
                    .copy_from_slice(&old_values[old * cols..(old + 1) * cols]);
                t.scales[new] = old_scales[old];
            }
        }
    }
}

/// The multiplier `s` (W = s · t) of each row.
fn multipliers(t: &Ternary) -> Vec<f32> {
    match t.rule {
        ScaleRule::Multiply => t.scales.clone(),
        ScaleRule::Divide => t.scales.iter().map(|s| 1.0 / s).collect(),
    }
}

fn encode(file: &str, name: &str, t: &Ternary, fmt: TernaryFormat) -> Result<Vec<u8>> {
    let scales = multipliers(t);
    let err = |reason: String| Error::TensorData {
        file: file.to_string(),
        tensor: name.to_string(),
        reason,
    };
    let uniform = scales.iter().all(|s| *s == scales[0]);
    match fmt {
        TernaryFormat::I2S => {
            if !uniform {
                return Err(err(
                    "I2_S holds one scale per tensor, but this tensor's rows have different scales"
                        .into(),
                ));
            }
            if !t.cols.is_multiple_of(128) {
                return Err(err(format!(
                    "I2_S needs a multiple of 128 columns, this tensor has {}",
                    t.cols
                )));
            }
            Ok(bitnet_gguf::ternary::encode_i2s(
                &t.values, t.rows, t.cols, scales[0],
            )?)
        }
        TernaryFormat::TQ1_0 | TernaryFormat::TQ2_0 => {
            if !t.cols.is_multiple_of(bitnet_gguf::ternary::TQ_BLOCK) {
                return Err(err(format!(
                    "{} needs a multiple of 256 columns, this tensor has {}; use I2_S",
                    if fmt == TernaryFormat::TQ1_0 {
                        "TQ1_0"
                    } else {
                        "TQ2_0"
                    },
                    t.cols
                )));
            }
            let enc = |v: &[i8], rows: usize, s: f32| {
                if fmt == TernaryFormat::TQ1_0 {
                    bitnet_gguf::ternary::encode_tq1_0(v, rows, t.cols, s)
                } else {
                    bitnet_gguf::ternary::encode_tq2_0(v, rows, t.cols, s)
                }
            };
            if uniform {
                return Ok(enc(&t.values, t.rows, scales[0])?);
            }
            let mut out = Vec::new();
            for (r, s) in scales.iter().enumerate() {
                out.extend(enc(&t.values[r * t.cols..(r + 1) * t.cols], 1, *s)?);
            }
            Ok(out)
        }
    }
}
