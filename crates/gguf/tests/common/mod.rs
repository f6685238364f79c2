//! Helpers shared by the integration tests: fixture locations, hashing and a test-only unpacker
//! for the Hugging Face packed ternary checkpoints.
#![allow(dead_code)]

#[path = "../../../../test-support/fixtures.rs"]
mod fixtures;
#[allow(unused_imports)] // each test binary uses some of them
pub use fixtures::{repo_fixtures, shared_fixtures, shared_fixtures_dir};

use std::path::PathBuf;

use half::bf16;
use safetensors::{Dtype, SafeTensors};
use sha2::{Digest, Sha256};

/// `tl-formats/` in the shared fixtures, if present.
pub fn tl_formats(what: &str) -> Option<PathBuf> {
    let dir = shared_fixtures()?.join("tl-formats");
    if dir.join("manifest.json").is_file() {
        Some(dir)
    } else {
        eprintln!("note: {} missing; skipping {what}", dir.display());
        None
    }
}

pub fn sha256_hex(bytes: &[u8]) -> String {
    Sha256::digest(bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// sha256 of an int8 matrix's bytes.
pub fn sha256_i8(values: &[i8]) -> String {
    let bytes: Vec<u8> = values.iter().map(|&v| v as u8).collect();
    sha256_hex(&bytes)
}

/// A ternary matrix unpacked from an HF checkpoint: `[out, in]` row-major, plus `weight_scale`.
pub struct HfTernary {
    pub rows: usize,
    pub cols: usize,
    pub values: Vec<i8>,
    pub weight_scale: f32,
}

/// Unpack `<prefix>.weight` (uint8 `[out/4, in]`: bits 2i..2i+1 of packed[r, k] hold row
/// i·R + r, code − 1 = t; REFERENCE.md §1.1) and read `<prefix>.weight_scale` (bf16 `[1]`).
pub fn hf_ternary(st: &SafeTensors<'_>, prefix: &str) -> HfTernary {
    let w = st.tensor(&format!("{prefix}.weight")).unwrap();
    assert_eq!(w.dtype(), Dtype::U8, "{prefix}");
    let (r, cols) = (w.shape()[0], w.shape()[1]);
    let packed = w.data();
    let rows = 4 * r;
    let mut values = vec![0i8; rows * cols];
    for i in 0..4 {
        for pr in 0..r {
            for k in 0..cols {
                let code = (packed[pr * cols + k] >> (2 * i)) & 3;
                assert_ne!(code, 3, "{prefix}: HF code 3");
                values[(i * r + pr) * cols + k] = code as i8 - 1;
            }
        }
    }
    let s = st.tensor(&format!("{prefix}.weight_scale")).unwrap();
    assert_eq!(s.dtype(), Dtype::BF16);
    let d = s.data();
    let weight_scale = bf16::from_le_bytes([d[0], d[1]]).to_f32();
    HfTernary {
        rows,
        cols,
        values,
        weight_scale,
    }
}

/// HF tensor prefix of a GGUF ternary tensor name (`blk.3.attn_q.weight` →
/// `model.layers.3.self_attn.q_proj`).
pub fn hf_prefix(gguf_name: &str) -> String {
    let parts: Vec<&str> = gguf_name.split('.').collect();
    assert_eq!(parts.len(), 4, "{gguf_name}");
    assert_eq!((parts[0], parts[3]), ("blk", "weight"), "{gguf_name}");
    let module = match parts[2] {
        "attn_q" => "self_attn.q_proj",
        "attn_k" => "self_attn.k_proj",
        "attn_v" => "self_attn.v_proj",
        "attn_output" => "self_attn.o_proj",
        "ffn_gate" => "mlp.gate_proj",
        "ffn_up" => "mlp.up_proj",
        "ffn_down" => "mlp.down_proj",
        other => panic!("not a linear: {other}"),
    };
    format!("model.layers.{}.{module}", parts[1])
}

/// Every GGUF file in the repository's fixtures.
pub fn repo_ggufs() -> Vec<PathBuf> {
    let f = repo_fixtures();
    vec![
        f.join("small-bitnet/gguf/small-bitnet-i2_s.gguf"),
        f.join("small-bitnet/gguf/small-bitnet-tq1_0.gguf"),
        f.join("small-bitnet/gguf/small-bitnet-tq2_0.gguf"),
        f.join("demo-bitnet/gguf/demo-bitnet-i2_s.gguf"),
    ]
}

/// Little-endian byte builder for hand-made GGUF headers.
#[derive(Default, Clone)]
pub struct Bytes(pub Vec<u8>);

impl Bytes {
    pub fn new() -> Self {
        Self::default()
    }
    pub fn raw(mut self, b: &[u8]) -> Self {
        self.0.extend_from_slice(b);
        self
    }
    pub fn u8(self, v: u8) -> Self {
        self.raw(&[v])
    }
    pub fn u32(self, v: u32) -> Self {
        self.raw(&v.to_le_bytes())
    }
    pub fn u64(self, v: u64) -> Self {
        self.raw(&v.to_le_bytes())
    }
    pub fn str(self, s: &str) -> Self {
        self.u64(s.len() as u64).raw(s.as_bytes())
    }
    /// `GGUF`, version, tensor count, kv count.
    pub fn header(version: u32, n_tensors: u64, n_kv: u64) -> Self {
        Bytes::new()
            .raw(b"GGUF")
            .u32(version)
            .u64(n_tensors)
            .u64(n_kv)
    }
    /// A tensor-info record.
    pub fn tensor(self, name: &str, ne: &[u64], ty: u32, offset: u64) -> Self {
        let mut b = self.str(name).u32(ne.len() as u32);
        for &d in ne {
            b = b.u64(d);
        }
        b.u32(ty).u64(offset)
    }
    /// Zero-pad to a multiple of `a`.
    pub fn pad(mut self, a: usize) -> Self {
        let n = self.0.len().next_multiple_of(a);
        self.0.resize(n, 0);
        self
    }
    pub fn zeros(mut self, n: usize) -> Self {
        self.0.resize(self.0.len() + n, 0);
        self
    }
    pub fn len(&self) -> usize {
        self.0.len()
    }
}
