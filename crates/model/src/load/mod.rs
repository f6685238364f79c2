//! Building [`Weights`] from a checkpoint.
//!
//! Each source format (GGUF, Hugging Face safetensors) implements
//! [`TensorSource`]: it names tensors by role and hands out norm vectors,
//! dense matrices and decoded ternary matrices. The builder here checks every
//! shape against the hyper-parameters, fuses Q/K/V and gate/up, and packs the
//! ternary matrices for the kernels.
//!
//! # Load time and memory
//!
//! Repacking is the whole cost of loading (the dense embedding/head is read
//! in place), so the fused matrices are built in parallel with rayon, one
//! matrix per job. Each part is decoded straight into its rows of the fused
//! buffer ([`TensorSource::ternary_into`]; I2_S has a direct decoder), and
//! once a matrix is packed its source pages are released
//! ([`TensorSource::release`]: `madvise(DONTNEED)` on a memory-mapped GGUF),
//! so the file's ternary tensors and their repacked copies are never
//! resident together. Peak memory is the model plus one unpacked matrix per
//! thread.

pub(crate) mod gguf;
pub(crate) mod hf;
pub(crate) mod ternarize;

use bitnet_kernels::{ScaleRule, TernaryLayout, TernaryMatrix};
use rayon::prelude::*;

use crate::config::{HParams, RopeStyle};
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
pub(crate) trait TensorSource: Sync {
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
    /// Decodes the ternary matrix `name` (whose shape the caller checked)
    /// into `out` (`rows × cols` values); returns its row scales and rule.
    fn ternary_into(&self, name: &str, out: &mut [i8]) -> Result<(Vec<f32>, ScaleRule)> {
        let t = self.ternary(name)?;
        out.copy_from_slice(&t.values);
        Ok((t.scales, t.rule))
    }
    /// Says that tensor `name` will not be read again (its pages may go).
    fn release(&self, _name: &str) {}
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

fn check_scales(src: &dyn TensorSource, name: &str, scales: &[f32]) -> Result<()> {
    if let Some(bad) = scales.iter().find(|s| !s.is_finite() || **s == 0.0) {
        return Err(Error::TensorData {
            file: src.file().to_string(),
            tensor: name.to_string(),
            reason: format!("scale {bad} is not a finite non-zero number"),
        });
    }
    Ok(())
}

/// One packed matrix to build: parts (role, rows) stacked in order, sharing
/// `cols` inputs.
struct Job {
    layer: usize,
    parts: Vec<(Role, usize)>,
    cols: usize,
    /// Head dimension, when Q and K rows are stored in llama.cpp's
    /// interleaved rotary order and must be put back in rotate-half order.
    unpermute: Option<usize>,
}

/// Decodes the parts of `job` (their shapes already checked) into one buffer
/// and packs it (rows in order: fused Q/K/V or gate/up share one activation
/// quantisation).
fn build_matrix(
    src: &dyn TensorSource,
    job: &Job,
    buffers: &Buffers,
    layout: TernaryLayout,
) -> Result<TernaryMatrix> {
    let cols = job.cols;
    let rows: usize = job.parts.iter().map(|p| p.1).sum();
    let names: Vec<String> = job
        .parts
        .iter()
        .map(|&(role, _)| src.name(role, job.layer))
        .collect();
    let mut buf = buffers.take();
    if buf.len() < rows * cols {
        buf.resize(rows * cols, 0);
    }
    let result = fill_and_pack(src, job, &names, rows, &mut buf[..rows * cols], layout);
    buffers.put(buf);
    let m = result?;
    for name in &names {
        src.release(name);
    }
    Ok(m)
}

/// Unpacked-value buffers reused across matrices: a fresh multi-megabyte
/// buffer per matrix would fault in (and zero) ~2 GB of pages while loading
/// a 2B model. Dropped, with its buffers, when loading ends.
#[derive(Default)]
struct Buffers(std::sync::Mutex<Vec<Vec<i8>>>);

impl Buffers {
    fn take(&self) -> Vec<i8> {
        self.0
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop()
            .unwrap_or_default()
    }

    fn put(&self, buf: Vec<i8>) {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).push(buf);
    }
}

fn fill_and_pack(
    src: &dyn TensorSource,
    job: &Job,
    names: &[String],
    rows: usize,
    values: &mut [i8],
    layout: TernaryLayout,
) -> Result<TernaryMatrix> {
    let cols = job.cols;
    let mut scales = Vec::with_capacity(rows);
    let mut rule = None;
    let mut offset = 0;
    for (name, &(role, r)) in names.iter().zip(&job.parts) {
        let (s, part_rule) =
            src.ternary_into(name, &mut values[offset * cols..(offset + r) * cols])?;
        check_scales(src, name, &s)?;
        if s.len() != r {
            return Err(Error::TensorData {
                file: src.file().to_string(),
                tensor: name.clone(),
                reason: format!("{} row scales for {r} rows", s.len()),
            });
        }
        match rule {
            None => rule = Some(part_rule),
            Some(first) if first != part_rule => {
                return Err(Error::TensorData {
                    file: src.file().to_string(),
                    tensor: name.clone(),
                    reason: format!("scale convention differs from `{}`", names[0]),
                });
            }
            Some(_) => {}
        }
        scales.extend_from_slice(&s);
        if let (Some(head_dim), Role::AttnQ | Role::AttnK) = (job.unpermute, role) {
            let part = &mut values[offset * cols..(offset + r) * cols];
            unpermute_rows(part, &mut scales[offset..offset + r], cols, head_dim);
        }
        offset += r;
    }
    let rule = rule.unwrap_or(ScaleRule::Multiply);
    TernaryMatrix::pack_as(layout, rows, cols, values, scales, rule).map_err(|source| {
        Error::Kernel {
            tensor: names[0].clone(),
            source,
        }
    })
}

/// Puts Q or K rows stored in llama.cpp's order (rotary pairs `(2i, 2i+1)`
/// of each head, as its converter permutes them) back in the checkpoint's
/// rotate-half order (pairs `(i, i + d/2)`), so that every architecture runs
/// the same rotary code and a GGUF computes exactly what its checkpoint does.
fn unpermute_rows(values: &mut [i8], scales: &mut [f32], cols: usize, head_dim: usize) {
    let (old_values, old_scales) = (values.to_vec(), scales.to_vec());
    let half = head_dim / 2;
    for h in 0..scales.len() / head_dim {
        for i in 0..half {
            for j in 0..2 {
                let hf = h * head_dim + j * half + i;
                let gguf = h * head_dim + 2 * i + j;
                values[hf * cols..(hf + 1) * cols]
                    .copy_from_slice(&old_values[gguf * cols..(gguf + 1) * cols]);
                scales[hf] = old_scales[gguf];
            }
        }
    }
}

/// Loads and checks every tensor the architecture needs, packing the
/// ternary matrices in `layout` (the kernels' choice).
pub(crate) fn build(
    src: &dyn TensorSource,
    hp: &HParams,
    layout: TernaryLayout,
) -> Result<Weights> {
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
    // The small tensors first, so that a file missing one fails before the
    // expensive part.
    let sub_norms = hp.arch.has_sub_norms();
    let mut norms = Vec::with_capacity(hp.n_layer);
    for l in 0..hp.n_layer {
        norms.push((
            vector(src, Role::AttnNorm, l, d)?,
            sub_norms
                .then(|| vector(src, Role::AttnSubNorm, l, hp.q_dim()))
                .transpose()?,
            vector(src, Role::FfnNorm, l, d)?,
            sub_norms
                .then(|| vector(src, Role::FfnSubNorm, l, hp.n_ff))
                .transpose()?,
        ));
    }
    let jobs: Vec<Job> = (0..hp.n_layer)
        .flat_map(|layer| {
            [
                Job {
                    layer,
                    parts: vec![
                        (Role::AttnQ, hp.q_dim()),
                        (Role::AttnK, hp.kv_dim()),
                        (Role::AttnV, hp.kv_dim()),
                    ],
                    cols: d,
                    unpermute: (hp.rope_style == RopeStyle::Interleaved).then_some(hp.head_dim),
                },
                Job {
                    layer,
                    parts: vec![(Role::AttnOut, d)],
                    cols: hp.q_dim(),
                    unpermute: None,
                },
                Job {
                    layer,
                    parts: vec![(Role::FfnGate, hp.n_ff), (Role::FfnUp, hp.n_ff)],
                    cols: d,
                    unpermute: None,
                },
                Job {
                    layer,
                    parts: vec![(Role::FfnDown, d)],
                    cols: hp.n_ff,
                    unpermute: None,
                },
            ]
        })
        .collect();
    for job in &jobs {
        for &(role, rows) in &job.parts {
            expect_shape(src, &src.name(role, job.layer), &[rows, job.cols])?;
        }
    }
    // A Q8_0 head is repacked before the ternary matrices, and its file pages
    // dropped at once, so that the two copies of the head are resident
    // together only while nothing else is: peak memory stays within the
    // file's size. (A tied embedding faults back in only the rows it looks
    // up.)
    let head = output.as_ref().unwrap_or(&token_embd);
    let head_q8 = crate::weights::head_q8(head)?;
    if head_q8.is_some() {
        src.release(&src.name(
            if output.is_some() {
                Role::Output
            } else {
                Role::TokenEmbd
            },
            0,
        ));
    }
    let buffers = Buffers::default();
    let mut mats = jobs
        .par_iter()
        .with_max_len(1)
        .map(|job| build_matrix(src, job, &buffers, layout))
        .collect::<Result<Vec<_>>>()?
        .into_iter();
    let mut layers = Vec::with_capacity(hp.n_layer);
    for (attn_norm, attn_sub_norm, ffn_norm, ffn_sub_norm) in norms {
        let mut next = || mats.next().expect("four matrices per layer");
        let (qkv, wo, gate_up, down) = (next(), next(), next(), next());
        layers.push(LayerWeights {
            attn_norm,
            qkv,
            attn_sub_norm,
            wo,
            ffn_norm,
            gate_up,
            ffn_sub_norm,
            down,
        });
    }
    let rope_freq_factors = src.rope_freq_factors()?;
    if let Some(f) = &rope_freq_factors
        && (f.len() != hp.rope_dim / 2 || f.iter().any(|v| !v.is_finite() || *v <= 0.0))
    {
        return Err(Error::TensorData {
            file: src.file().to_string(),
            tensor: "rope_freqs.weight".into(),
            reason: format!("expected {} positive factors", hp.rope_dim / 2),
        });
    }
    Ok(Weights {
        token_embd,
        output_norm,
        output,
        head_q8,
        rope_freq_factors,
        layers,
    })
}
