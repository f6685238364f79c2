//! Launch wrappers for the non-product kernels of a forward pass. Buffers
//! are `(slice, offset)` pairs in elements, so that Q, K and V can be read
//! out of one fused QKV product; every kernel bounds itself by the sizes
//! passed here, which the callers derive from the same buffers.

use cudarc::driver::{CudaSlice, DeviceRepr, LaunchConfig, PushKernelArg, ValidAsZeroBits};

use crate::device::Gpu;
use crate::error::{CudaError, Result};

/// An element type of the KV cache: `f32`, or `u16` holding f16 bits.
pub trait KvElem: DeviceRepr + ValidAsZeroBits + Default + Clone + Unpin {
    /// The suffix of its kernels (`kv_store_f32`, `attn_partial_f16`).
    const SUFFIX: &'static str;
}
impl KvElem for f32 {
    const SUFFIX: &'static str = "f32";
}
impl KvElem for u16 {
    const SUFFIX: &'static str = "f16";
}

/// Keys per split of the flash-decoding attention.
pub const SPLIT_KEYS: usize = 256;
/// The largest head the attention kernel holds in registers.
pub const MAX_HEAD_DIM: usize = 256;

fn i(n: usize) -> Result<i32> {
    i32::try_from(n).map_err(|_| CudaError::Invalid(format!("dimension {n} too large")))
}
fn u(n: usize) -> Result<u32> {
    u32::try_from(n.max(1)).map_err(|_| CudaError::Invalid(format!("dimension {n} too large")))
}
fn cfg(grid: (u32, u32, u32), block: u32) -> LaunchConfig {
    LaunchConfig {
        grid_dim: grid,
        block_dim: (block, 1, 1),
        shared_mem_bytes: 0,
    }
}

/// Shapes of one attention call.
#[derive(Clone, Copy, Debug)]
pub struct AttnShape {
    /// Query heads.
    pub n_heads: usize,
    /// KV heads (divides `n_heads`).
    pub n_kv_heads: usize,
    /// Values per head.
    pub head_dim: usize,
    /// Positions the cache holds.
    pub max_ctx: usize,
    /// Softmax scale.
    pub scale: f32,
    /// Sliding window (0 = none).
    pub window: usize,
}

impl Gpu {
    /// `out = rmsnorm(x) · w` over `rows` rows of `cols`.
    #[allow(clippy::too_many_arguments)]
    pub fn rmsnorm(
        &self,
        x: (&CudaSlice<f32>, usize, usize),
        w: &CudaSlice<f32>,
        out: (&mut CudaSlice<f32>, usize, usize),
        rows: usize,
        cols: usize,
        eps: f32,
    ) -> Result<()> {
        let f = self.function("norm", "rmsnorm")?;
        let (xv, (ov_slice, o_off, o_stride)) = (x.0.slice(x.1..), out);
        let mut ov = ov_slice.slice_mut(o_off..);
        let (c, xs, os) = (i(cols)?, i(x.2)?, i(o_stride)?);
        let mut b = self.stream().launch_builder(&f);
        b.arg(&xv)
            .arg(w)
            .arg(&mut ov)
            .arg(&c)
            .arg(&xs)
            .arg(&os)
            .arg(&eps);
        // SAFETY: matches rmsnorm(x, w, out, cols, x_stride, out_stride,
        // eps); rows rows of the given strides lie inside both buffers (the
        // callers size them), w holds cols floats.
        unsafe { b.launch(cfg((u(rows)?, 1, 1), 256)) }?;
        Ok(())
    }

    /// `y[..n] += x[..n]`.
    pub fn add(&self, y: &mut CudaSlice<f32>, x: &CudaSlice<f32>, n: usize) -> Result<()> {
        let f = self.function("norm", "add_inplace")?;
        let ni = i(n)?;
        let mut b = self.stream().launch_builder(&f);
        b.arg(y).arg(x).arg(&ni);
        // SAFETY: matches add_inplace(y, x, n); both hold at least n floats.
        unsafe { b.launch(cfg((u(n.div_ceil(256))?, 1, 1), 256)) }?;
        Ok(())
    }

    /// Rotary embedding in place on `n_heads` heads of each of `n_tokens`
    /// rows (`row_stride` apart, from `offset`); `style` 0 NeoX, 1
    /// interleaved; `inv_freq` holds `head_dim / 2` values.
    #[allow(clippy::too_many_arguments)]
    pub fn rope(
        &self,
        x: &mut CudaSlice<f32>,
        offset: usize,
        row_stride: usize,
        pos: &CudaSlice<i32>,
        inv_freq: &CudaSlice<f32>,
        n_tokens: usize,
        n_heads: usize,
        head_dim: usize,
        style: i32,
    ) -> Result<()> {
        let f = self.function("rope", "rope")?;
        let mut xv = x.slice_mut(offset..);
        let (nh, hd, rs) = (i(n_heads)?, i(head_dim)?, i(row_stride)?);
        let mut b = self.stream().launch_builder(&f);
        b.arg(&mut xv)
            .arg(pos)
            .arg(inv_freq)
            .arg(&nh)
            .arg(&hd)
            .arg(&hd)
            .arg(&rs)
            .arg(&style);
        // SAFETY: matches rope(x, pos, inv_freq, n_heads, head_dim, rope_dim,
        // row_stride, style); grid (heads, tokens) stays inside the rows.
        unsafe { b.launch(cfg((u(n_heads)?, u(n_tokens)?, 1), 64)) }?;
        Ok(())
    }

    /// Stores K and V of `n_tokens` (read from `qkv` at `k_off`/`v_off`,
    /// rows `stride` apart) at their positions in one layer's cache.
    #[allow(clippy::too_many_arguments)]
    pub fn kv_store<T: KvElem>(
        &self,
        qkv: &CudaSlice<f32>,
        (k_off, v_off, stride): (usize, usize, usize),
        cache: &mut (CudaSlice<T>, CudaSlice<T>),
        pos: &CudaSlice<i32>,
        n_tokens: usize,
        s: &AttnShape,
    ) -> Result<()> {
        let f = self.function("attention", &format!("kv_store_{}", T::SUFFIX))?;
        let (kv, vv) = (qkv.slice(k_off..), qkv.slice(v_off..));
        let (hd, st, mc) = (i(s.head_dim)?, i(stride)?, i(s.max_ctx)?);
        let mut b = self.stream().launch_builder(&f);
        b.arg(&kv)
            .arg(&vv)
            .arg(&mut cache.0)
            .arg(&mut cache.1)
            .arg(pos);
        b.arg(&hd).arg(&st).arg(&mc);
        // SAFETY: matches kv_store(k, v, kc, vc, pos, head_dim, src_stride,
        // max_ctx); the caches hold n_kv_heads · max_ctx · head_dim values and
        // every position is below max_ctx (checked by the caller).
        unsafe { b.launch(cfg((u(s.n_kv_heads)?, u(n_tokens)?, 1), 128)) }?;
        Ok(())
    }

    /// Attention of `n_tokens` queries (in `qkv` from offset 0, rows
    /// `q_stride` apart) over one layer's cache, causal to each token's
    /// position; `out` gets `n_tokens × n_heads · head_dim`.
    #[allow(clippy::too_many_arguments)]
    pub fn attention<T: KvElem>(
        &self,
        qkv: &CudaSlice<f32>,
        q_stride: usize,
        cache: &(CudaSlice<T>, CudaSlice<T>),
        pos: &CudaSlice<i32>,
        n_tokens: usize,
        max_pos: usize,
        s: &AttnShape,
        out: &mut CudaSlice<f32>,
    ) -> Result<()> {
        if s.head_dim > MAX_HEAD_DIM || s.n_kv_heads == 0 || !s.n_heads.is_multiple_of(s.n_kv_heads)
        {
            return Err(CudaError::Unsupported(format!(
                "attention with {} heads / {} KV heads of {}",
                s.n_heads, s.n_kv_heads, s.head_dim
            )));
        }
        let splits = (max_pos + 1).div_ceil(SPLIT_KEYS);
        let items = n_tokens * s.n_heads * splits;
        let st = self.stream();
        let mut po = st.alloc_zeros::<f32>(items * s.head_dim)?;
        let mut pm = st.alloc_zeros::<f32>(items)?;
        let mut pl = st.alloc_zeros::<f32>(items)?;
        let f = self.function("attention", &format!("attn_partial_{}", T::SUFFIX))?;
        let (nh, nkv, hd) = (i(s.n_heads)?, i(s.n_kv_heads)?, i(s.head_dim)?);
        let (qs, mc, sl, win) = (i(q_stride)?, i(s.max_ctx)?, i(SPLIT_KEYS)?, i(s.window)?);
        let mut b = st.launch_builder(&f);
        b.arg(qkv)
            .arg(&cache.0)
            .arg(&cache.1)
            .arg(pos)
            .arg(&mut po)
            .arg(&mut pm)
            .arg(&mut pl);
        b.arg(&nh)
            .arg(&nkv)
            .arg(&hd)
            .arg(&qs)
            .arg(&mc)
            .arg(&sl)
            .arg(&s.scale)
            .arg(&win);
        // SAFETY: matches attn_partial(...); the partial buffers hold
        // tokens × heads × splits entries (the grid), positions are below
        // max_ctx, head_dim ≤ 256 (checked above).
        unsafe { b.launch(cfg((u(s.n_heads)?, u(splits)?, u(n_tokens)?), 128)) }?;
        let f = self.function("attention", "attn_combine")?;
        let (ns, os) = (i(splits)?, i(s.n_heads * s.head_dim)?);
        let mut b = st.launch_builder(&f);
        b.arg(&po)
            .arg(&pm)
            .arg(&pl)
            .arg(out)
            .arg(&nh)
            .arg(&hd)
            .arg(&ns)
            .arg(&os);
        // SAFETY: matches attn_combine(po, pm, pl, out, n_heads, head_dim,
        // n_splits, out_stride); out holds n_tokens rows of n_heads · head_dim.
        unsafe { b.launch(cfg((u(s.n_heads)?, u(n_tokens)?, 1), 128)) }?;
        Ok(())
    }

    /// `out[t] = act(gate) · up` for the stacked gate/up rows (`2 · n_ff`
    /// wide); `kind` 0 SiLU, 1 squared ReLU.
    pub fn gated_act(
        &self,
        gate_up: &CudaSlice<f32>,
        out: &mut CudaSlice<f32>,
        n_tokens: usize,
        n_ff: usize,
        kind: i32,
    ) -> Result<()> {
        let f = self.function("ffn", "gated_act")?;
        let (nf, st) = (i(n_ff)?, i(2 * n_ff)?);
        let mut b = self.stream().launch_builder(&f);
        b.arg(gate_up)
            .arg(out)
            .arg(&nf)
            .arg(&st)
            .arg(&nf)
            .arg(&nf)
            .arg(&kind);
        // SAFETY: matches gated_act(gu, out, n_ff, stride, up_off,
        // out_stride, kind); gate_up holds n_tokens rows of 2 · n_ff, out
        // n_tokens rows of n_ff.
        unsafe {
            b.launch(cfg(
                (u(n_ff.div_ceil(256).min(1024))?, u(n_tokens)?, 1),
                256,
            ))
        }?;
        Ok(())
    }

    /// Logits `n_tokens × rows` from a head stored as `kind` ("f16",
    /// "q8_0", "q6_k") bytes and f32 inputs `cols` wide.
    #[allow(clippy::too_many_arguments)]
    pub fn head(
        &self,
        kind: &str,
        w: &CudaSlice<u8>,
        x: &CudaSlice<f32>,
        y: &mut CudaSlice<f32>,
        rows: usize,
        cols: usize,
        n_tokens: usize,
    ) -> Result<()> {
        let f = self.function("head", &format!("head_{kind}"))?;
        let (r, c, n) = (i(rows)?, i(cols)?, i(n_tokens)?);
        let mut b = self.stream().launch_builder(&f);
        b.arg(w)
            .arg(x)
            .arg(y)
            .arg(&r)
            .arg(&c)
            .arg(&n)
            .arg(&c)
            .arg(&r);
        // SAFETY: matches head_*(W, X, Y, rows, cols, n_tokens, x_stride,
        // y_stride); w holds rows rows of the format's bytes for cols
        // values, x n_tokens × cols, y n_tokens × rows.
        unsafe {
            b.launch(cfg(
                (u(rows.div_ceil(8))?, u(n_tokens.div_ceil(8))?, 1),
                256,
            ))
        }?;
        Ok(())
    }

    /// Index of the first maximum of each of `rows` rows of `n`.
    pub fn argmax(&self, x: &CudaSlice<f32>, rows: usize, n: usize) -> Result<Vec<i32>> {
        let f = self.function("head", "argmax")?;
        let mut out = self.stream().alloc_zeros::<i32>(rows)?;
        let ni = i(n)?;
        let mut b = self.stream().launch_builder(&f);
        b.arg(x).arg(&ni).arg(&mut out);
        // SAFETY: matches argmax(x, n, out); x holds rows × n, out rows.
        unsafe { b.launch(cfg((u(rows)?, 1, 1), 256)) }?;
        self.download(&out)
    }
}
