//! The CUDA C sources, embedded in the binary, and their entry points.

/// Prepended to every module: reductions, the ternary decode, the scale rule.
const COMMON: &str = include_str!("kernels/common.cuh");

/// One compilation unit.
#[derive(Clone, Copy, Debug)]
pub struct Module {
    /// Its name (file stem; the cache file names start with it).
    pub name: &'static str,
    /// The source without the common prelude.
    body: &'static str,
    /// The `extern "C"` kernels it defines.
    pub entry_points: &'static [&'static str],
}

impl Module {
    /// The full source NVRTC compiles.
    pub fn source(&self) -> String {
        format!("{COMMON}\n{}", self.body)
    }
}

/// Every module of the forward pass.
pub const MODULES: &[Module] = &[
    Module {
        name: "ternary",
        body: include_str!("kernels/ternary.cu"),
        entry_points: &["ternary_gemv", "ternary_gemm"],
    },
    Module {
        name: "norm",
        body: include_str!("kernels/norm.cu"),
        entry_points: &["rmsnorm", "rmsnorm_quant", "add_inplace"],
    },
    Module {
        name: "rope",
        body: include_str!("kernels/rope.cu"),
        entry_points: &["rope"],
    },
    Module {
        name: "attention",
        body: include_str!("kernels/attention.cu"),
        entry_points: &[
            "kv_store_f32",
            "kv_store_f16",
            "attn_partial_f32",
            "attn_partial_f16",
            "attn_combine",
        ],
    },
    Module {
        name: "ffn",
        body: include_str!("kernels/ffn.cu"),
        entry_points: &["gated_act"],
    },
    Module {
        name: "head",
        body: include_str!("kernels/head.cu"),
        entry_points: &["head_f16", "head_q8_0", "head_q6_k", "argmax"],
    },
];

/// The module called `name`.
pub fn module(name: &str) -> Option<&'static Module> {
    MODULES.iter().find(|m| m.name == name)
}
