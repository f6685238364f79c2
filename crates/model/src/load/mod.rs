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
//! buffer ([`TensorSource::ternary_into`]; I2_S has a direct decoder) and
//! packed into its slot of one buffer for all ternary matrices
//! (`bitnet_kernels::SharedPacking`, which huge pages cover whole); once a
//! matrix is packed its source pages are released ([`TensorSource::release`]:
//! `madvise(DONTNEED)` on a memory-mapped GGUF), so the file's ternary
//! tensors and their repacked copies are never resident together. Peak
//! memory is the model plus one unpacked matrix per thread.

pub(crate) mod gguf;
pub(crate) mod hf;
pub(crate) mod ternarize;

use bitnet_kernels::{
    PackSlot, PackedParts, ScaleRule, SharedPacking, TernaryLayout, TernaryMatrix,
};
use rayon::prelude::*;

use crate::config::{HParams, RopeStyle};
use crate::error::{Error, Result};
use crate::weights::{BackboneWeights, DenseWeight, LayerWeights, Weights};

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
    // Embedding backbones (Qwen3, Gemma3).
    AttnQNormIn,
    AttnKNormIn,
    AttnVNormIn,
    FfnGateNormIn,
    FfnUpNormIn,
    AttnQNorm,
    AttnKNorm,
    PostAttnNorm,
    PostFfnNorm,
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
    /// How the file stored the multiplier scales of the ternary matrix
    /// `name`, when they may be a converter's rounding of a Hugging Face
    /// `bitlinear` checkpoint's bf16 divisor (see [`ternarize::bf16_divisor`]);
    /// `None` where scales are to be taken as they are.
    fn scale_precision(&self, _name: &str) -> Option<ternarize::StoredAs> {
        None
    }
    /// Says that tensor `name` will not be read again (its pages may go).
    fn release(&self, _name: &str) {}
    /// Optional RoPE frequency factors.
    fn rope_freq_factors(&self) -> Result<Option<Vec<f32>>> {
        Ok(None)
    }
    /// What is added to the norm weight of `role` to get the factor the
    /// normalised values are multiplied by: 1 for Gemma3's own norms in a
    /// Hugging Face checkpoint (`x · (1 + w)`; GGUF converters store
    /// `w + 1`).
    fn norm_offset(&self, _role: Role) -> f32 {
        0.0
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
    let mut v = src.vector(&name)?;
    let offset = src.norm_offset(role);
    if offset != 0.0 {
        v.iter_mut().for_each(|w| *w += offset);
    }
    Ok(v)
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
    slot: PackSlot<'_>,
) -> Result<Packed> {
    let cols = job.cols;
    let rows = slot.rows();
    let names: Vec<String> = job
        .parts
        .iter()
        .map(|&(role, _)| src.name(role, job.layer))
        .collect();
    let mut buf = buffers.take();
    if buf.len() < rows * cols {
        buf.resize(rows * cols, 0);
    }
    let result = fill_and_pack(src, job, &names, slot, &mut buf[..rows * cols]);
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

/// A matrix packed into its slot, and the bf16 divisors its multipliers
/// were rounded from, if every row has one (see [`choose_divisors`]).
struct Packed {
    parts: PackedParts,
    divisors: Option<Vec<f32>>,
}

fn fill_and_pack(
    src: &dyn TensorSource,
    job: &Job,
    names: &[String],
    slot: PackSlot<'_>,
    values: &mut [i8],
) -> Result<Packed> {
    let cols = job.cols;
    let rows = slot.rows();
    let mut scales = Vec::with_capacity(rows);
    let mut rules = Vec::with_capacity(job.parts.len());
    let mut precisions = Vec::with_capacity(job.parts.len());
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
        rules.push((r, part_rule));
        precisions.push((r, src.scale_precision(name)));
        scales.extend_from_slice(&s);
        if let (Some(head_dim), Role::AttnQ | Role::AttnK) = (job.unpermute, role) {
            let part = &mut values[offset * cols..(offset + r) * cols];
            unpermute_rows(part, &mut scales[offset..offset + r], cols, head_dim);
        }
        offset += r;
    }
    let rule = unify_rules(&mut scales, &rules);
    let divisors = if rule == ScaleRule::Multiply {
        group_divisors(&scales, &precisions)
    } else {
        None
    };
    let parts = slot
        .pack(values, scales, rule)
        .map_err(|source| Error::Kernel {
            tensor: names[0].clone(),
            source,
        })?;
    Ok(Packed { parts, divisors })
}

/// One rule for a fused matrix whose parts (`(rows, rule)` in order) may
/// have come with different ones: a file's scales are what they are, so
/// parts never disagree into an error. Where they differ, every part is
/// written as a multiplier (`1 / divisor` for a dividing part).
fn unify_rules(scales: &mut [f32], rules: &[(usize, ScaleRule)]) -> ScaleRule {
    let first = rules.first().map_or(ScaleRule::Multiply, |r| r.1);
    if rules.iter().all(|r| r.1 == first) {
        return first;
    }
    let mut offset = 0;
    for &(r, rule) in rules {
        if rule == ScaleRule::Divide {
            for s in &mut scales[offset..offset + r] {
                *s = 1.0 / *s;
            }
        }
        offset += r;
    }
    ScaleRule::Multiply
}

/// The bf16 divisors of a fused matrix's multipliers, when every part may
/// carry one and every row has one.
fn group_divisors(
    scales: &[f32],
    precisions: &[(usize, Option<ternarize::StoredAs>)],
) -> Option<Vec<f32>> {
    let mut out = Vec::with_capacity(scales.len());
    let mut offset = 0;
    for &(r, precision) in precisions {
        let stored = precision?;
        let mut last: Option<(f32, f32)> = None;
        for &s in &scales[offset..offset + r] {
            let w = match last {
                Some((prev, w)) if prev == s => w,
                _ => ternarize::bf16_divisor(s, stored)?,
            };
            last = Some((s, w));
            out.push(w);
        }
        offset += r;
    }
    Some(out)
}

/// Decides, for the whole file, how its multiplier scales are applied.
///
/// A GGUF's ternary scale always multiplies (`W = s · t`). But a file
/// converted from a Hugging Face `bitlinear` checkpoint holds `s` = the
/// rounding (to f32, or to f16 in TQ1_0/TQ2_0 blocks) of `1 / w` for a bf16
/// `weight_scale` `w`, and the checkpoint computes `acc / (w · s_x)`: using
/// `w` reproduces it bit for bit (and undoes the f16 rounding). Whether the
/// scales are such reciprocals is decided once for the file, from all its
/// matrices: a bf16 reciprocal rounds to a given f16 by chance about one
/// time in ten, so one tensor's guess says little, while every matrix of a
/// model matching by chance is out of the question. Any matrix without
/// divisors (a checkpoint whose scale is the absmean itself, as
/// `autobitlinear` ones are, or per-block scales of another origin) keeps
/// the file's multipliers everywhere. Either way the file loads.
/// `divisors[i]` belongs to `mats[i]`.
fn choose_divisors(mats: &mut [TernaryMatrix], divisors: Vec<Option<Vec<f32>>>) -> Result<()> {
    if mats.is_empty() || divisors.iter().any(Option::is_none) {
        return Ok(());
    }
    for (m, d) in mats.iter_mut().zip(divisors.into_iter().flatten()) {
        m.set_scales(d, ScaleRule::Divide)
            .map_err(|source| Error::Kernel {
                tensor: "(row scales)".into(),
                source,
            })?;
    }
    Ok(())
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

/// The norms of one block.
struct LayerNorms {
    attn: Vec<f32>,
    attn_sub: Option<Vec<f32>>,
    ffn: Vec<f32>,
    ffn_sub: Option<Vec<f32>>,
    backbone: Option<BackboneNorms>,
}

/// The extra norms of an embedding backbone's block.
struct BackboneNorms {
    qkv: [Vec<f32>; 3],
    gate_up: [Vec<f32>; 2],
    q_norm: Vec<f32>,
    k_norm: Vec<f32>,
    post: Option<[Vec<f32>; 2]>,
}

fn backbone_norms(src: &dyn TensorSource, hp: &HParams, l: usize) -> Result<BackboneNorms> {
    let d = hp.n_embd;
    Ok(BackboneNorms {
        qkv: [
            vector(src, Role::AttnQNormIn, l, d)?,
            vector(src, Role::AttnKNormIn, l, d)?,
            vector(src, Role::AttnVNormIn, l, d)?,
        ],
        gate_up: [
            vector(src, Role::FfnGateNormIn, l, d)?,
            vector(src, Role::FfnUpNormIn, l, d)?,
        ],
        q_norm: vector(src, Role::AttnQNorm, l, hp.head_dim)?,
        k_norm: vector(src, Role::AttnKNorm, l, hp.head_dim)?,
        post: if hp.arch.has_post_norms() {
            Some([
                vector(src, Role::PostAttnNorm, l, d)?,
                vector(src, Role::PostFfnNorm, l, d)?,
            ])
        } else {
            None
        },
    })
}

/// The matrices of block `layer`, in the order the assembly takes them:
/// fused QKV, output, fused gate/up, down; or, where every projection has
/// its own input norm, Q, K, V, output, gate, up, down.
fn layer_jobs(hp: &HParams, layer: usize, split: bool, unpermute: Option<usize>) -> Vec<Job> {
    let d = hp.n_embd;
    let job = |parts: Vec<(Role, usize)>, cols: usize| Job {
        layer,
        unpermute: if parts
            .iter()
            .any(|p| matches!(p.0, Role::AttnQ | Role::AttnK))
        {
            unpermute
        } else {
            None
        },
        parts,
        cols,
    };
    if split {
        vec![
            job(vec![(Role::AttnQ, hp.q_dim())], d),
            job(vec![(Role::AttnK, hp.kv_dim())], d),
            job(vec![(Role::AttnV, hp.kv_dim())], d),
            job(vec![(Role::AttnOut, d)], hp.q_dim()),
            job(vec![(Role::FfnGate, hp.n_ff)], d),
            job(vec![(Role::FfnUp, hp.n_ff)], d),
            job(vec![(Role::FfnDown, d)], hp.n_ff),
        ]
    } else {
        vec![
            job(
                vec![
                    (Role::AttnQ, hp.q_dim()),
                    (Role::AttnK, hp.kv_dim()),
                    (Role::AttnV, hp.kv_dim()),
                ],
                d,
            ),
            job(vec![(Role::AttnOut, d)], hp.q_dim()),
            job(vec![(Role::FfnGate, hp.n_ff), (Role::FfnUp, hp.n_ff)], d),
            job(vec![(Role::FfnDown, d)], hp.n_ff),
        ]
    }
}

/// Loads and checks every tensor the architecture needs.
/// The ternary matrices are packed in `layout` (the kernels' choice).
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
        norms.push(LayerNorms {
            attn: vector(src, Role::AttnNorm, l, d)?,
            attn_sub: sub_norms
                .then(|| vector(src, Role::AttnSubNorm, l, hp.q_dim()))
                .transpose()?,
            ffn: vector(src, Role::FfnNorm, l, d)?,
            ffn_sub: sub_norms
                .then(|| vector(src, Role::FfnSubNorm, l, hp.n_ff))
                .transpose()?,
            backbone: hp
                .arch
                .has_projection_norms()
                .then(|| backbone_norms(src, hp, l))
                .transpose()?,
        });
    }
    let unpermute = (hp.rope_style == RopeStyle::Interleaved).then_some(hp.head_dim);
    let split = hp.arch.has_projection_norms();
    let jobs: Vec<Job> = (0..hp.n_layer)
        .flat_map(|layer| layer_jobs(hp, layer, split, unpermute))
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
    // All ternary matrices in one buffer (huge pages cover all of them: see
    // `SharedPacking`), packed in place by parallel jobs.
    let shapes: Vec<(usize, usize)> = jobs
        .iter()
        .map(|j| (j.parts.iter().map(|p| p.1).sum(), j.cols))
        .collect();
    let mut packing = SharedPacking::new(layout, &shapes);
    let buffers = Buffers::default();
    let packed = packing
        .slots()
        .into_par_iter()
        .zip(jobs.par_iter())
        .with_max_len(1)
        .map(|(slot, job)| build_matrix(src, job, &buffers, slot))
        .collect::<Result<Vec<_>>>()?;
    let (parts, divisors): (Vec<_>, Vec<_>) =
        packed.into_iter().map(|p| (p.parts, p.divisors)).unzip();
    let mut matrices = packing.finish(parts).map_err(|source| Error::Kernel {
        tensor: "(ternary weights)".into(),
        source,
    })?;
    choose_divisors(&mut matrices, divisors)?;
    let mut mats = matrices.into_iter();
    let mut layers = Vec::with_capacity(hp.n_layer);
    for n in norms {
        let mut next = || mats.next().expect("every job built a matrix");
        let (qkv, k, v, wo, gate_up, up, down) = if split {
            let (q, k, v, o, g, u, dn) = (next(), next(), next(), next(), next(), next(), next());
            (q, Some(k), Some(v), o, g, Some(u), dn)
        } else {
            let (qkv, wo, gate_up, down) = (next(), next(), next(), next());
            (qkv, None, None, wo, gate_up, None, down)
        };
        let backbone = match (n.backbone, k, v, up) {
            (Some(b), Some(k), Some(v), Some(up)) => Some(Box::new(BackboneWeights {
                qkv_norms: b.qkv,
                k,
                v,
                gate_up_norms: b.gate_up,
                up,
                q_norm: b.q_norm,
                k_norm: b.k_norm,
                post_norms: b.post,
            })),
            _ => None,
        };
        layers.push(LayerWeights {
            attn_norm: n.attn,
            qkv,
            attn_sub_norm: n.attn_sub,
            wo,
            ffn_norm: n.ffn,
            gate_up,
            ffn_sub_norm: n.ffn_sub,
            down,
            backbone,
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

#[cfg(test)]
mod tests {
    use super::ternarize::{StoredAs, bf16_divisor};
    use super::*;

    /// A matrix of `scales.len()` rows and its divisors.
    fn packed(scales: &[f32], precision: Option<StoredAs>) -> (TernaryMatrix, Option<Vec<f32>>) {
        let rows = scales.len();
        let matrix = TernaryMatrix::pack(
            rows,
            4,
            &vec![1; rows * 4],
            scales.to_vec(),
            ScaleRule::Multiply,
        )
        .unwrap();
        (matrix, group_divisors(scales, &[(rows, precision)]))
    }

    /// `choose_divisors` over the given matrices; returns them.
    fn choose(built: Vec<(TernaryMatrix, Option<Vec<f32>>)>) -> Vec<TernaryMatrix> {
        let (mut mats, divisors): (Vec<_>, Vec<_>) = built.into_iter().unzip();
        choose_divisors(&mut mats, divisors).unwrap();
        mats
    }

    /// f16 block scales of an `autobitlinear` checkpoint (the absmean
    /// itself): some happen to be the f16 rounding of a bf16 reciprocal.
    #[test]
    fn one_tensor_matching_by_chance_changes_nothing() {
        let lucky = (1..2000)
            .map(|i| half::f16::from_f32(0.02 + i as f32 * 3.5e-5).to_f32())
            .find(|&s| bf16_divisor(s, StoredAs::F16).is_some())
            .unwrap();
        let unlucky = (1..2000)
            .map(|i| half::f16::from_f32(0.02 + i as f32 * 3.5e-5).to_f32())
            .find(|&s| bf16_divisor(s, StoredAs::F16).is_none())
            .unwrap();
        let mats = choose(vec![
            packed(&[lucky; 3], Some(StoredAs::F16)),
            packed(&[unlucky; 2], Some(StoredAs::F16)),
        ]);
        assert_eq!(mats[0].rule(), ScaleRule::Multiply);
        assert_eq!(mats[0].scales(), &[lucky; 3]);
        assert_eq!(mats[1].scales(), &[unlucky; 2]);
    }

    #[test]
    fn a_file_of_bf16_reciprocals_gets_its_divisors_back() {
        let w = [11.8125f32, 2.5];
        let mats = choose(vec![
            packed(&[1.0 / w[0]; 2], Some(StoredAs::F32)),
            packed(
                &[half::f16::from_f32(1.0 / w[1]).to_f32(); 2],
                Some(StoredAs::F16),
            ),
        ]);
        for (m, w) in mats.iter().zip(w) {
            assert_eq!(m.rule(), ScaleRule::Divide);
            assert_eq!(m.scales(), &[w; 2]);
        }
        // A source that does not allow it (no precision) keeps multipliers.
        let mats = choose(vec![packed(&[1.0 / w[0]; 2], None)]);
        assert_eq!(mats[0].rule(), ScaleRule::Multiply);
    }

    #[test]
    fn fused_parts_with_different_rules_become_multipliers() {
        let mut scales = vec![4.0, 4.0, 0.5, 0.25];
        let rule = unify_rules(
            &mut scales,
            &[(2, ScaleRule::Divide), (2, ScaleRule::Multiply)],
        );
        assert_eq!(rule, ScaleRule::Multiply);
        assert_eq!(scales, [0.25, 0.25, 0.5, 0.25]);
        let mut same = vec![4.0, 2.0];
        let rule = unify_rules(&mut same, &[(1, ScaleRule::Divide), (1, ScaleRule::Divide)]);
        assert_eq!((rule, same), (ScaleRule::Divide, vec![4.0, 2.0]));
    }
}
