//! TL1/TL2 tile sizes. They are not stored in GGUF files: bitnet.cpp's converter took them from
//! the `kernel_config.ini` that its code generator wrote for the model's (M, K) shapes, and the
//! byte order of the weights depends on them. A reader must know them out of band.

use crate::error::{Error, Result};

/// Tile sizes of one TL1/TL2 weight matrix.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub struct TlTiling {
    /// BM: rows per row tile (`bm` in kernel_config.ini).
    pub bm: usize,
    /// BK: columns per column tile (`bk` in kernel_config.ini).
    pub bk: usize,
    /// bm: rows per row sub-tile (`bmm` in kernel_config.ini; always 32 for TL2).
    pub bm_sub: usize,
}

/// Which lookup-table format.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
pub enum TlKind {
    Tl1,
    Tl2,
}

const fn t(bm: usize, bk: usize, bm_sub: usize) -> TlTiling {
    TlTiling { bm, bk, bm_sub }
}

/// TL1 presets: the `codegen_tl1.py` arguments in bitnet.cpp's `setup_env.py`, keyed by (M, K).
/// bitnet_b1_58-large, Llama3-8B-1.58 (also used for every Falcon model) and bitnet_b1_58-3B
/// (also used for BitNet-b1.58-2B-4T, whose own shapes then have no kernel).
const TL1_PRESETS: &[(usize, usize, TlTiling)] = &[
    // bitnet_b1_58-large
    (1536, 4096, t(256, 128, 32)),
    (1536, 1536, t(128, 64, 64)),
    (4096, 1536, t(256, 128, 32)),
    // Llama3-8B-1.58-100B-tokens
    (14336, 4096, t(256, 128, 32)),
    (4096, 14336, t(128, 64, 64)),
    (1024, 4096, t(256, 128, 32)),
    (4096, 4096, t(128, 64, 64)),
    // bitnet_b1_58-3B
    (3200, 8640, t(160, 64, 32)),
    (3200, 3200, t(320, 128, 64)),
    (8640, 3200, t(320, 64, 32)),
];

/// TL2 presets: the `codegen_tl2.py` arguments in `setup_env.py`, keyed by (M, K).
const TL2_PRESETS: &[(usize, usize, TlTiling)] = &[
    // bitnet_b1_58-large
    (1536, 4096, t(256, 96, 32)),
    (1536, 1536, t(128, 192, 32)),
    (4096, 1536, t(256, 96, 32)),
    // Llama3-8B-1.58-100B-tokens
    (14336, 4096, t(256, 96, 32)),
    (4096, 14336, t(128, 96, 32)),
    (1024, 4096, t(256, 96, 32)),
    (4096, 4096, t(128, 96, 32)),
    // bitnet_b1_58-3B
    (3200, 8640, t(160, 96, 32)),
    (3200, 3200, t(320, 96, 32)),
    (8640, 3200, t(320, 96, 32)),
];

/// The tiling bitnet.cpp's `setup_env.py` generates kernels with for an (M, K) weight shape, for
/// the models it ships presets for (bitnet_b1_58-large, bitnet_b1_58-3B, Llama3-8B-1.58 /
/// Falcon). `None` for any other shape (including BitNet-b1.58-2B-4T's, for which setup_env
/// generates the 3B shapes). The `preset_kernels/*/kernel_config_*.ini` files in bitnet.cpp are
/// overwritten by that code generation and are not used; some of them differ from these.
pub fn tl_preset(kind: TlKind, m: usize, k: usize) -> Option<TlTiling> {
    let table = match kind {
        TlKind::Tl1 => TL1_PRESETS,
        TlKind::Tl2 => TL2_PRESETS,
    };
    table
        .iter()
        .find(|&&(pm, pk, _)| pm == m && pk == k)
        .map(|&(_, _, tiling)| tiling)
}

/// Parse a bitnet.cpp `kernel_config.ini`: sections `[Kernels_N]` with keys `m`, `k`, `bm`,
/// `bk`, `bmm` (case-insensitive, `=` or `:`; `#`/`;` comments). Returns `(m, k, tiling)` per
/// section in file order.
pub fn parse_kernel_config(text: &str) -> Result<Vec<(usize, usize, TlTiling)>> {
    struct Section {
        line: usize,
        name: String,
        vals: [Option<usize>; 5],
    }
    const KEYS: [&str; 5] = ["m", "k", "bm", "bk", "bmm"];
    let err = |line: usize, reason: String| Error::KernelConfig { line, reason };
    let finish = |s: Section| -> Result<(usize, usize, TlTiling)> {
        let mut v = [0usize; 5];
        for (i, slot) in s.vals.iter().enumerate() {
            v[i] = slot.ok_or_else(|| {
                err(
                    s.line,
                    format!("section [{}] has no '{}' key", s.name, KEYS[i]),
                )
            })?;
        }
        Ok((v[0], v[1], t(v[2], v[3], v[4])))
    };

    let mut out = Vec::new();
    let mut cur: Option<Section> = None;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
            continue;
        }
        if let Some(rest) = line.strip_prefix('[') {
            let name = rest
                .strip_suffix(']')
                .ok_or_else(|| err(line_no, format!("malformed section header '{line}'")))?;
            if let Some(s) = cur.take() {
                out.push(finish(s)?);
            }
            cur = Some(Section {
                line: line_no,
                name: name.trim().to_string(),
                vals: [None; 5],
            });
            continue;
        }
        let Some((key, value)) = line.split_once(['=', ':']) else {
            return Err(err(
                line_no,
                format!("expected 'key = value', found '{line}'"),
            ));
        };
        let key = key.trim().to_ascii_lowercase();
        let value = value.trim();
        let section = cur
            .as_mut()
            .ok_or_else(|| err(line_no, format!("key '{key}' outside of any section")))?;
        let Some(slot) = KEYS.iter().position(|&k| k == key) else {
            // Unknown keys are tolerated: future codegen versions may add some.
            continue;
        };
        let n: usize = value.parse().map_err(|_| {
            err(
                line_no,
                format!("value of '{key}' is '{value}', not a non-negative integer"),
            )
        })?;
        if n == 0 {
            return Err(err(line_no, format!("value of '{key}' must not be 0")));
        }
        if section.vals[slot].replace(n).is_some() {
            return Err(err(
                line_no,
                format!("key '{key}' repeated in section [{}]", section.name),
            ));
        }
    }
    if let Some(s) = cur.take() {
        out.push(finish(s)?);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_codegen_output() {
        let text = "[Kernels_0]\nm = 1536\nk = 4096\nbm = 256\nbk = 128\nbmm = 32\n\n\
                    [Kernels_1]\nM = 1536\nK : 1536\nBM = 128\nbk = 64\nbmm = 64\n# trailing\n";
        let v = parse_kernel_config(text).unwrap();
        assert_eq!(
            v,
            vec![(1536, 4096, t(256, 128, 32)), (1536, 1536, t(128, 64, 64))]
        );
    }

    #[test]
    fn reports_line_and_reason() {
        let e = parse_kernel_config("[Kernels_0]\nm = 1536\nk = x\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "kernel_config.ini line 3: value of 'k' is 'x', not a non-negative integer"
        );
        let e = parse_kernel_config("[Kernels_0]\nm = 1\nk = 2\nbm = 3\nbk = 4\n").unwrap_err();
        assert_eq!(
            e.to_string(),
            "kernel_config.ini line 1: section [Kernels_0] has no 'bmm' key"
        );
        let e = parse_kernel_config("m = 1\n").unwrap_err();
        assert!(matches!(e, Error::KernelConfig { line: 1, .. }));
        let e = parse_kernel_config("[Kernels_0\n").unwrap_err();
        assert!(matches!(e, Error::KernelConfig { line: 1, .. }));
    }

    #[test]
    fn presets_fit_their_shapes() {
        for (kind, table) in [(TlKind::Tl1, TL1_PRESETS), (TlKind::Tl2, TL2_PRESETS)] {
            for &(m, k, tl) in table {
                assert_eq!(tl_preset(kind, m, k), Some(tl));
                assert_eq!(m % tl.bm, 0, "{kind:?} {m}x{k}");
                assert_eq!(tl.bm % tl.bm_sub, 0);
                match kind {
                    TlKind::Tl1 => assert_eq!(k % tl.bk, 0),
                    TlKind::Tl2 => {
                        assert_eq!(tl.bm_sub, 32);
                        assert_eq!((k % tl.bk) % 32, 0);
                    }
                }
            }
        }
        assert_eq!(tl_preset(TlKind::Tl2, 2560, 2560), None);
    }
}
