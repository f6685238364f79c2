//! The per-candidate arithmetic of the walk's first pass (weights and
//! buckets), compiled for the widest vectors the CPU has.
//!
//! The same Rust loop is compiled three times: for the portable target and,
//! on x86-64, inside functions that enable AVX2 or AVX-512. The arithmetic
//! is basic IEEE operations that the compiler never fuses or reorders, so
//! every width gives the same bits (the tests check it); only the speed
//! differs. `BITNET_KERNEL=scalar|avx2|avxvnni|avx512` forces a width, as for the
//! model's kernels.

use std::sync::OnceLock;

use crate::walk::{Level, Weight};

/// A vector width.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Width {
    /// The portable build (SSE2 on x86-64).
    Portable,
    /// AVX2: eight floats.
    #[cfg(target_arch = "x86_64")]
    Avx2,
    /// AVX-512: sixteen floats.
    #[cfg(target_arch = "x86_64")]
    Avx512,
}

impl Width {
    /// The widest this CPU runs, unless `BITNET_KERNEL` asks for less
    /// (read once).
    pub fn detect() -> Width {
        static CHOSEN: OnceLock<Width> = OnceLock::new();
        *CHOSEN.get_or_init(|| {
            let wanted = std::env::var("BITNET_KERNEL").unwrap_or_default();
            let best = Width::available().pop().unwrap_or(Width::Portable);
            match wanted.trim().to_ascii_lowercase().as_str() {
                "scalar" | "generic" | "portable" => Width::Portable,
                #[cfg(target_arch = "x86_64")]
                "avx2" | "avxvnni" | "avx-vnni" | "avx2vnni"
                    if Width::available().contains(&Width::Avx2) =>
                {
                    Width::Avx2
                }
                _ => best,
            }
        })
    }

    /// The widths this CPU runs, narrowest first.
    pub fn available() -> Vec<Width> {
        #[allow(unused_mut)]
        let mut all = vec![Width::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2") {
                all.push(Width::Avx2);
            }
            if std::arch::is_x86_feature_detected!("avx512f") {
                all.push(Width::Avx512);
            }
        }
        all
    }
}

/// For each value of `vs`: its weight under `t.0` into `t.1`, under `one.0`
/// into `one.1` if given, and its bucket at `level` into `bs`.
pub(crate) fn compute(
    width: Width,
    vs: &[f32],
    level: Level,
    t: (Weight, &mut [f32]),
    one: Option<(Weight, &mut [f32])>,
    bs: &mut [u16],
) {
    match width {
        Width::Portable => body(vs, level, t, one, bs),
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Width::Avx2` only comes from `Width::available`, which
        // checked that the CPU has AVX2.
        Width::Avx2 => unsafe { avx2(vs, level, t, one, bs) },
        #[cfg(target_arch = "x86_64")]
        // SAFETY: `Width::Avx512` only comes from `Width::available`, which
        // checked that the CPU has AVX-512 F.
        Width::Avx512 => unsafe { avx512(vs, level, t, one, bs) },
    }
}

#[inline(always)]
fn body(
    vs: &[f32],
    level: Level,
    t: (Weight, &mut [f32]),
    one: Option<(Weight, &mut [f32])>,
    bs: &mut [u16],
) {
    let (wt, ts) = t;
    for ((v, t), b) in vs.iter().zip(ts.iter_mut()).zip(bs.iter_mut()) {
        *t = wt.fast(*v);
        *b = level.bucket(*v) as u16;
    }
    if let Some((w1, ones)) = one {
        for (v, o) in vs.iter().zip(ones.iter_mut()) {
            *o = w1.fast(*v);
        }
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn avx2(
    vs: &[f32],
    level: Level,
    t: (Weight, &mut [f32]),
    one: Option<(Weight, &mut [f32])>,
    bs: &mut [u16],
) {
    body(vs, level, t, one, bs)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f")]
fn avx512(
    vs: &[f32],
    level: Level,
    t: (Weight, &mut [f32]),
    one: Option<(Weight, &mut [f32])>,
    bs: &mut [u16],
) {
    body(vs, level, t, one, bs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_width_gives_the_same_bits() {
        let mut rng = crate::Rng::new(5);
        let vs: Vec<f32> = (0..1000)
            .map(|i| match i % 97 {
                0 => f32::NEG_INFINITY,
                1 => -1e30,
                _ => (rng.next_f64() * 200.0 - 190.0) as f32,
            })
            .collect();
        let level = Level {
            top: 10.0,
            scale: 16.0,
        };
        let run = |width: Width| {
            let (mut ts, mut ones, mut bs) = (vec![0.0; 1000], vec![0.0; 1000], vec![0u16; 1000]);
            let wt = Weight { max: 10.0, t: 0.7 };
            let w1 = Weight { max: 10.0, t: 1.0 };
            compute(
                width,
                &vs,
                level,
                (wt, &mut ts),
                Some((w1, &mut ones)),
                &mut bs,
            );
            let bits = |x: &[f32]| x.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            (bits(&ts), bits(&ones), bs)
        };
        let want = run(Width::Portable);
        for width in Width::available() {
            assert_eq!(run(width), want, "{width:?}");
        }
    }
}
