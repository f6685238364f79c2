//! Building [`Weights`] from a checkpoint.
//!
//! Each source format (GGUF, Hugging Face safetensors) implements
//! [`TensorSource`]: it names tensors by role and hands out norm vectors,
//! dense matrices and decoded ternary matrices. The builder here checks every
//! shape against the hyper-parameters, fuses Q/K/V and gate/up, and packs the
//! ternary matrices for the kernels.

pub(crate) mod gguf;
pub(crate) mod hf;
pub(crate) mod ternarize;

use bitnet_kernels::{ScaleRule, TernaryMatrix};

use crate::config::HParams;
use crate::error::{Error, Result};
use crate::weights::{DenseWeight, LayerWeights, Weights};

/// What a tensor is for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Role {
    TokenEmbd,
    OutputNorm,
    Output,
    AttnNorm,
    AttnQ,
    AttnK,
    AttnV,
    AttnOut,
    AttnSubNorm,
    FfnNorm,
    FfnGate,
    FfnUp,
    FfnDown,
    FfnSubNorm,
}

/// A decoded ternary matrix with its per-row scales.
pub(crate) struct Ternary {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<i8>,
    pub scales: Vec<f32>,
    pub rule: ScaleRule,
}

/// One checkpoint, seen by role.
pub(crate) trait TensorSource {
    /// The file (or directory) for error messages.
    fn file(&self) -> &str;
    /// The source's name of the tensor with `role` in `layer`.
    fn name(&self, role: Role, layer: usize) -> String;
    /// Shape, outermost first (`[rows, cols]` for a matrix), if present.
    fn shape(&self, name: &str) -> Option<Vec<usize>>;
    /// A 1-D float tensor as f32.
    fn vector(&self, name: &str) -> Result<Vec<f32>>;
    /// A dense matrix kept in its stored format.
    fn dense(&self, name: &str) -> Result<DenseWeight>;
    /// A ternary matrix, decoded.
    fn ternary(&self, name: &str) -> Result<Ternary>;
    /// Optional RoPE frequency factors.
    fn rope_freq_factors(&self) -> Result<Option<Vec<f32>>> {
        Ok(None)
    }
}

fn expect_shape(src: &dyn TensorSource, name: &str, expected: &[usize]) -> Result<()> {
    let found = src.shape(name).ok_or_else(|| Error::MissingTensor {
        file: src.file().to_string(),
        tensor: name.to_string(),
    })?;
    if found != expected {
        return Err(Error::TensorShape {
            file: src.file().to_string(),
            tensor: name.to_string(),
            expected: expected.to_vec(),
            found,
        });
    }
    Ok(())
}

fn vector(src: &dyn TensorSource, role: Role, layer: usize, len: usize) -> Result<Vec<f32>> {
    let name = src.name(role, layer);
    expect_shape(src, &name, &[len])?;
    src.vector(&name)
}

fn ternary(src: &dyn TensorSource, role: Role, layer: usize, rows: usize, cols: usize) -> Result<Ternary> {
    let name = src.name(role, layer);
    expect_shape(src, &name, &[rows, cols])?;
    let t = src.ternary(&name)?;
    if let Some(bad) = t.scales.iter().find(|s| !s.is_finite() || **s == 0.0) {
        return Err(Error::TensorData {
            file: src.file().to_string(),
            tensor: name,
            reason: format!("scale {bad} is not a finite non-zero number"),
        });
    }
    Ok(t)
}

/// Packs matrices that share an input into one, rows in order.
fn fuse(src: &dyn TensorSource, parts: Vec<(String, Ternary)>) -> Result<TernaryMatrix> {
    let (first_name, first) = &parts[0];
    let cols = first.cols;
    let rule = first.rule;
    if let Some((name, _)) = parts.iter().find(|(_, t)| t.rule != rule) {
        return Err(Error::TensorData {
            file: src.file().to_string(),
            tensor: name.clone(),
            reason: format!("scale convention differs from `{first_name}`"),
        });
    }
    let rows: usize = parts.iter().map(|(_, t)| t.rows).sum();
    let mut values = Vec::with_capacity(rows * cols);
    let mut scales = Vec::with_capacity(rows);
    for (_, t) in &parts {
        values.extend_from_slice(&t.values);
        scales.extend_from_slice(&t.scales);
    }
    TernaryMatrix::pack(rows, cols, &values, scales, rule).map_err(|source| Error::Kernel {
        tensor: first_name.clone(),
        source,
    })
}

fn single(src: &dyn TensorSource, role: Role, layer: usize, rows: usize, cols: usize) -> Result<TernaryMatrix> {
    let name = src.name(role, layer);
    let t = ternary(src, role, layer, rows, cols)?;
    fuse(src, vec![(name, t)])
}

/// Loads and checks every tensor the architecture needs.
pub(crate) fn build(src: &dyn TensorSource, hp: &HParams) -> Result<Weights> {
    let d = hp.n_embd;
    let embd_name = src.name(Role::TokenEmbd, 0);
    expect_shape(src, &embd_name, &[hp.n_vocab, d])?;
    let token_embd = src.dense(&embd_name)?;
    let output = if hp.tied_embeddings {
        None
    } else {
        let name = src.name(Role::Output, 0);
        expect_shape(src, &name, &[hp.n_vocab, d])?;
        Some(src.dense(&name)?)
    };
    let output_norm = vector(src, Role::OutputNorm, 0, d)?;
    let mut layers = Vec::with_capacity(hp.n_layer);
    for l in 0..hp.n_layer {
        let named = |role, t: Ternary| (src.name(role, l), t);
        let qkv = fuse(
            src,
            vec![
                named(Role::AttnQ, ternary(src, Role::AttnQ, l, hp.q_dim(), d)?),
                named(Role::AttnK, ternary(src, Role::AttnK, l, hp.kv_dim(), d)?),
                named(Role::AttnV, ternary(src, Role::AttnV, l, hp.kv_dim(), d)?),
            ],
        )?;
        let gate_up = fuse(
            src,
            vec![
                named(Role::FfnGate, ternary(src, Role::FfnGate, l, hp.n_ff, d)?),
                named(Role::FfnUp, ternary(src, Role::FfnUp, l, hp.n_ff, d)?),
            ],
        )?;
        let sub_norms = hp.arch.has_sub_norms();
        layers.push(LayerWeights {
            attn_norm: vector(src, Role::AttnNorm, l, d)?,
            qkv,
            attn_sub_norm: sub_norms
                .then(|| vector(src, Role::AttnSubNorm, l, hp.q_dim()))
                .transpose()?,
            wo: single(src, Role::AttnOut, l, d, hp.q_dim())?,
            ffn_norm: vector(src, Role::FfnNorm, l, d)?,
            gate_up,
            ffn_sub_norm: sub_norms
                .then(|| vector(src, Role::FfnSubNorm, l, hp.n_ff))
                .transpose()?,
            down: single(src, Role::FfnDown, l, d, hp.n_ff)?,
        });
    }
    let rope_freq_factors = src.rope_freq_factors()?;
    if let Some(f) = &rope_freq_factors {
        if f.len() != hp.rope_dim / 2 || f.iter().any(|v| !v.is_finite() || *v <= 0.0) {
            return Err(Error::TensorData {
                file: src.file().to_string(),
                tensor: "rope_freqs.weight".into(),
                reason: format!("expected {} positive factors", hp.rope_dim / 2),
            });
        }
    }
    Ok(Weights {
        token_embd,
        output_norm,
        output,
        rope_freq_factors,
        layers,
    })
}
