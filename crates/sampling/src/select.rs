//! One pass over the vocabulary: the largest logit, the first index of it,
//! and the `k` largest, written so the compiler vectorises the hot loops
//! (sixteen independent lanes, no data-dependent branch per element).

use std::cmp::Ordering;

const LANES: usize = 16;

/// The largest value, NaNs ignored (`-inf` when there is none), and
/// whether there may be a NaN (the values' sum is NaN: also when both
/// infinities occur, which only costs the caller a closer look).
pub(crate) fn max_and_nan(values: &[f32]) -> (f32, bool) {
    let mut acc = [f32::NEG_INFINITY; LANES];
    let mut sum = [0.0f32; LANES];
    let chunks = values.chunks_exact(LANES);
    let rest = chunks.remainder();
    for c in chunks {
        for j in 0..LANES {
            // `v > acc` is false for NaN, so a NaN never becomes the max.
            acc[j] = if c[j] > acc[j] { c[j] } else { acc[j] };
            sum[j] += c[j];
        }
    }
    for &v in rest {
        acc[0] = if v > acc[0] { v } else { acc[0] };
        sum[0] += v;
    }
    let max = acc
        .iter()
        .fold(f32::NEG_INFINITY, |m, &v| if v > m { v } else { m });
    (max, sum.iter().any(|s| s.is_nan()))
}

/// Index of the largest value, the first one on ties, NaNs ignored; 0 when
/// every value is NaN or `-inf`.
pub fn argmax(values: &[f32]) -> u32 {
    let (max, _) = max_and_nan(values);
    if max == f32::NEG_INFINITY {
        return 0;
    }
    values.iter().position(|&v| v == max).unwrap_or(0) as u32
}

/// The order candidates are ranked in: larger value first (IEEE total
/// order, so `0.0` before `-0.0`), then smaller token id.
pub(crate) fn rank(a: &(u32, f32), b: &(u32, f32)) -> Ordering {
    b.1.total_cmp(&a.1).then(a.0.cmp(&b.0))
}

/// `f32::total_cmp`'s key: an integer that sorts as the float does.
#[inline(always)]
pub(crate) fn order_key(v: f32) -> i32 {
    let bits = v.to_bits() as i32;
    bits ^ (((bits >> 31) as u32) >> 1) as i32
}

/// The `k` best candidates by [`rank`] (`0 < k < values.len()`), in no
/// particular order, into `out`.
///
/// A buffer of up to `2k` (at least 512) candidates is cut back to the best
/// `k` whenever it fills; the `k`-th best so far is then a threshold that
/// rejects the rest of the vocabulary sixteen values at a time. A value
/// equal to the threshold is rejected too: its id is larger than every id
/// already kept, so it ranks below the `k`-th.
pub(crate) fn top_k(values: &[f32], k: usize, out: &mut Vec<(u32, f32)>) {
    debug_assert!(k > 0 && k < values.len());
    let cap = (2 * k).max(512);
    out.clear();
    let mut threshold = i32::MIN;
    let mut have_threshold = false;
    let push = |out: &mut Vec<(u32, f32)>, i: usize, v: f32| {
        out.push((i as u32, v));
        if out.len() >= cap {
            out.select_nth_unstable_by(k - 1, rank);
            out.truncate(k);
            return Some(order_key(out[k - 1].1));
        }
        None
    };
    let mut base = 0;
    for c in values.chunks(LANES) {
        let any = !have_threshold
            || c.iter()
                .fold(false, |any, &v| any | (order_key(v) > threshold));
        if any {
            for (j, &v) in c.iter().enumerate() {
                if have_threshold && order_key(v) <= threshold {
                    continue;
                }
                if let Some(t) = push(out, base + j, v) {
                    threshold = t;
                    have_threshold = true;
                }
            }
        }
        base += c.len();
    }
    if out.len() > k {
        out.select_nth_unstable_by(k - 1, rank);
        out.truncate(k);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn reference_top_k(values: &[f32], k: usize) -> Vec<(u32, f32)> {
        let mut all: Vec<(u32, f32)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, v))
            .collect();
        all.sort_by(rank);
        all.truncate(k);
        all
    }

    proptest! {
        #[test]
        fn top_k_matches_a_full_sort(
            values in prop::collection::vec(
                prop_oneof![(-8i32..8).prop_map(|v| v as f32 * 0.5), -1e3f32..1e3, Just(-0.0f32), Just(f32::NEG_INFINITY)],
                2..3000),
            k_frac in 0.0f64..1.0,
        ) {
            let k = 1 + ((values.len() - 1) as f64 * k_frac) as usize;
            prop_assume!(k < values.len());
            let mut got = Vec::new();
            top_k(&values, k, &mut got);
            got.sort_by(rank);
            let want = reference_top_k(&values, k);
            prop_assert_eq!(got.iter().map(|c| c.0).collect::<Vec<_>>(), want.iter().map(|c| c.0).collect::<Vec<_>>());
        }

        #[test]
        fn argmax_is_the_first_maximum(values in prop::collection::vec(
            prop_oneof![(-4i32..4).prop_map(|v| v as f32), Just(f32::NAN), Just(f32::NEG_INFINITY)], 1..100)) {
            let mut best = 0usize;
            let mut best_v = f32::NEG_INFINITY;
            for (i, &v) in values.iter().enumerate() {
                if v > best_v {
                    best = i;
                    best_v = v;
                }
            }
            prop_assert_eq!(argmax(&values), best as u32);
        }
    }
}
