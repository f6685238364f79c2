//! Walking a large candidate set in descending order of value without
//! sorting it.
//!
//! Top-p and the final draw both walk the candidates from the most likely
//! down, adding up their weights `exp((v − max) / t)` until the running sum
//! crosses a goal. Sorting a 128k-token vocabulary for that costs
//! milliseconds; this module needs one pass over it instead:
//!
//! 1. Each candidate falls into one of [`BUCKETS`] buckets by
//!    `(max − v) · 16` (a sixteenth of a logit each; the last bucket takes
//!    everything 64 below the maximum). That never decreases as `v` falls,
//!    so bucket order is descending-value order. The pass keeps each
//!    candidate's bucket and each bucket's sum of weights (at the chain's
//!    temperature, and at temperature 1 when top-p needs those).
//! 2. A walk goes through the bucket sums to the one bucket where the goal
//!    is crossed, gathers its members (a few hundred on a flat
//!    distribution), sorts them and walks them one by one. A bucket too big
//!    to sort cheaply is split again by its own value range.
//!
//! Top-p is such a walk at temperature 1; it ends on the last candidate the
//! nucleus keeps. Min-p keeps the candidates down to a value. Either way
//! the kept set is "every candidate that ranks at or above a cut", so the
//! draw walks the buckets above the cut's bucket plus the kept members of
//! that bucket. When the kept set is small (a peaked distribution), it is
//! handed back to be sorted and drawn from exactly as a small set is.
//!
//! The weights here use [`exp_neg`], accurate to about 2e-7 (relative);
//! the sums are kept in f64. Everything is basic IEEE arithmetic, so the
//! result is the same on every platform.

use std::cmp::Ordering;

use crate::exp::{MAGIC, exp_neg};
use crate::pass::{self, Width};
use crate::select::rank;

/// Sets at most this big are sorted and walked directly.
pub(crate) const LEAF: usize = 1024;
/// Buckets per level (bucket ids fit in a `u16`).
pub(crate) const BUCKETS: usize = 1024;
/// First-level buckets per unit of logit.
const PER_UNIT: f32 = 16.0;
/// Values handled per vectorised chunk.
const CHUNK: usize = 1024;
/// A candidate's bucket is capped here (the last bucket).
const LAST: f32 = (BUCKETS - 1) as f32;

/// Candidates: values with their token ids.
pub(crate) trait Items {
    fn len(&self) -> usize;
    fn get(&self, i: usize) -> (u32, f32);
    /// Copies the values `start..start + out.len()` into `out`.
    fn load(&self, start: usize, out: &mut [f32]);
}

/// The whole vocabulary: the id is the index.
impl Items for [f32] {
    fn len(&self) -> usize {
        <[f32]>::len(self)
    }
    fn get(&self, i: usize) -> (u32, f32) {
        (i as u32, self[i])
    }
    fn load(&self, start: usize, out: &mut [f32]) {
        out.copy_from_slice(&self[start..start + out.len()]);
    }
}

/// A subset of the vocabulary.
impl Items for [(u32, f32)] {
    fn len(&self) -> usize {
        <[(u32, f32)]>::len(self)
    }
    fn get(&self, i: usize) -> (u32, f32) {
        self[i]
    }
    fn load(&self, start: usize, out: &mut [f32]) {
        for (o, c) in out.iter_mut().zip(&self[start..]) {
            *o = c.1;
        }
    }
}

/// A candidate's weight: `exp((v − max) / t)`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Weight {
    pub max: f32,
    pub t: f32,
}

impl Weight {
    /// In f64 with the standard library's `exp`, for the sets small enough
    /// to sort.
    pub fn exact(self, v: f32) -> f64 {
        (f64::from(v - self.max) / f64::from(self.t)).exp()
    }

    /// With [`exp_neg`], for the bucketed path.
    #[inline(always)]
    pub fn fast(self, v: f32) -> f32 {
        exp_neg((v - self.max) * (1.0 / self.t))
    }
}

/// What a walk looks for: the first candidate at which the running sum of
/// weights, in [`rank`] order, passes `goal`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Target {
    /// The weight of the candidates passed so far.
    pub cum: f64,
    /// Where the walk stops.
    pub goal: f64,
    /// Whether reaching `goal` exactly is enough (top-p: the nucleus is the
    /// smallest set whose mass reaches `top_p`) or it must be exceeded (a
    /// draw of `u` in `[0, total)` takes the candidate whose span holds `u`).
    pub inclusive: bool,
}

impl Target {
    /// A draw at `u`, between 0 and the total weight.
    pub fn draw(u: f64) -> Target {
        Target {
            cum: 0.0,
            goal: u,
            inclusive: false,
        }
    }

    /// The top-p cut: `goal` is `top_p` times the total weight.
    pub fn nucleus(goal: f64) -> Target {
        Target {
            cum: 0.0,
            goal,
            inclusive: true,
        }
    }

    /// Whether a candidate (or bucket) of weight `w` holds the crossing; if
    /// not, it is passed (its weight added).
    pub fn crosses(&mut self, w: f64) -> bool {
        let next = self.cum + w;
        if next > self.goal || (self.inclusive && next == self.goal) {
            return true;
        }
        self.cum = next;
        false
    }

    /// Makes every later candidate pass, so a walk ends on the last one.
    fn exhaust(&mut self) {
        self.goal = f64::INFINITY;
        self.inclusive = false;
    }
}

/// What the bucketed chain needs to know.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Chain {
    /// The largest value (finite).
    pub max: f32,
    /// The temperature of the draw (> 0).
    pub temperature: f32,
    /// Top-p (1 = off).
    pub top_p: f32,
    /// The smallest value min-p keeps, if min-p is on.
    pub min_p_floor: Option<f32>,
}

/// A level of buckets: `bucket(v) = round(min((top − v) · scale, LAST))`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Level {
    pub top: f32,
    pub scale: f32,
}

impl Level {
    #[inline(always)]
    pub fn bucket(self, v: f32) -> u32 {
        let d = (self.top - v) * self.scale;
        // `d` is >= 0 or +inf (no NaN reaches here); rounded to the
        // nearest integer through MAGIC's bits (no float-to-int
        // conversion, which would not vectorise), still monotonic.
        let d = if d < LAST { d } else { LAST };
        (d + MAGIC).to_bits().wrapping_sub(MAGIC.to_bits())
    }
}

/// Scratch space of the bucketed chain.
#[derive(Clone, Debug)]
pub(crate) struct Walker {
    /// First-level bucket sums at the chain's temperature.
    mass_t: Box<[f64; BUCKETS]>,
    /// First-level bucket sums at temperature 1 (for top-p).
    mass_1: Box<[f64; BUCKETS]>,
    /// Bucket sums of a split bucket.
    sub_mass: Box<[f64; BUCKETS]>,
    /// Each candidate's first-level bucket.
    ids: Vec<u16>,
    chunk_v: Vec<f32>,
    chunk_t: Vec<f32>,
    chunk_1: Vec<f32>,
    members: Vec<(u32, f32)>,
    inner: Vec<(u32, f32)>,
    /// The kept members of the cut's bucket.
    partial: Vec<(u32, f32)>,
    leaf: usize,
    width: Width,
}

impl Default for Walker {
    fn default() -> Self {
        Walker::with_leaf(LEAF)
    }
}

impl Walker {
    /// A walker that sorts sets of up to `leaf` candidates directly (tests
    /// use a small one to exercise the buckets on small vocabularies).
    pub fn with_leaf(leaf: usize) -> Walker {
        Walker {
            mass_t: Box::new([0.0; BUCKETS]),
            mass_1: Box::new([0.0; BUCKETS]),
            sub_mass: Box::new([0.0; BUCKETS]),
            ids: Vec::new(),
            chunk_v: vec![0.0; CHUNK],
            chunk_t: vec![0.0; CHUNK],
            chunk_1: vec![0.0; CHUNK],
            members: Vec::new(),
            inner: Vec::new(),
            partial: Vec::new(),
            leaf,
            width: Width::detect(),
        }
    }

    /// Whether a set of `n` candidates is sorted and walked directly.
    pub fn is_leaf(&self, n: usize) -> bool {
        n <= self.leaf
    }

    /// Top-p, min-p and the draw at `r` (uniform in `[0, 1)`) over `set`
    /// (NaN-free). Returns the token, or `None` after putting the kept
    /// candidates into `kept` (unsorted) when there are few enough to sort.
    pub fn choose<I: Items + ?Sized>(
        &mut self,
        set: &I,
        chain: Chain,
        r: f64,
        kept: &mut Vec<(u32, f32)>,
    ) -> Option<u32> {
        let level = Level {
            top: chain.max,
            scale: PER_UNIT,
        };
        let wt = Weight {
            max: chain.max,
            t: chain.temperature,
        };
        let w1 = Weight {
            max: chain.max,
            t: 1.0,
        };
        let nucleus = chain.top_p < 1.0;
        let separate_1 = nucleus && chain.temperature != 1.0;
        self.first_pass(set, level, wt, separate_1.then_some(w1));
        // The cut: the last candidate, in rank order, that top-p and min-p
        // keep.
        let mut cut: Option<(u32, f32)> = None;
        if nucleus {
            let masses = if separate_1 {
                &*self.mass_1
            } else {
                &*self.mass_t
            };
            let total: f64 = masses.iter().sum();
            let mut target = Target::nucleus(f64::from(chain.top_p) * total);
            if let Some(b) = crossing(masses, &mut target, false) {
                gather(&self.ids, set, |x| x == b, &mut self.members);
                cut = self.settle(w1, &mut target);
            }
        }
        if let Some(v) = chain.min_p_floor {
            let floor = (u32::MAX, v);
            if cut.is_none_or(|c| rank(&floor, &c) == Ordering::Less) {
                cut = Some(floor);
            }
        }
        let Some(cut) = cut else {
            return Some(self.draw(set, wt, r, None));
        };
        let cut_bucket = level.bucket(cut.1) as u16;
        gather(&self.ids, set, |x| x == cut_bucket, &mut self.partial);
        self.partial.retain(|c| rank(c, &cut) != Ordering::Greater);
        let above: usize = self
            .ids
            .chunks(CHUNK)
            .map(|c| c.iter().map(|&x| u32::from(x < cut_bucket)).sum::<u32>() as usize)
            .sum();
        if self.is_leaf(above + self.partial.len()) {
            gather(&self.ids, set, |x| x < cut_bucket, kept);
            kept.extend_from_slice(&self.partial);
            return None;
        }
        Some(self.draw(set, wt, r, Some(cut_bucket)))
    }

    /// One pass over `set`: each candidate's bucket, and the buckets' sums
    /// of weights `wt` (and `w1`, if given).
    fn first_pass<I: Items + ?Sized>(
        &mut self,
        set: &I,
        level: Level,
        wt: Weight,
        w1: Option<Weight>,
    ) {
        self.mass_t.fill(0.0);
        self.mass_1.fill(0.0);
        let n = set.len();
        // Every id is written below; only a new length needs the resize.
        if self.ids.len() != n {
            self.ids.resize(n, 0);
        }
        let mut start = 0;
        while start < n {
            let len = CHUNK.min(n - start);
            let (vs, ts, ones, bs) = (
                &mut self.chunk_v[..len],
                &mut self.chunk_t[..len],
                &mut self.chunk_1[..len],
                &mut self.ids[start..start + len],
            );
            set.load(start, vs);
            let one = w1.map(|w| (w, &mut *ones));
            pass::compute(self.width, vs, level, (wt, &mut *ts), one, bs);
            if w1.is_some() {
                for ((&t, &o), &b) in ts.iter().zip(ones.iter()).zip(bs.iter()) {
                    let b = usize::from(b) % BUCKETS;
                    self.mass_t[b] += f64::from(t);
                    self.mass_1[b] += f64::from(o);
                }
            } else {
                for (&t, &b) in ts.iter().zip(bs.iter()) {
                    self.mass_t[usize::from(b) % BUCKETS] += f64::from(t);
                }
            }
            start += len;
        }
    }

    /// The draw at `r` over the first pass's buckets; with `cut_bucket`,
    /// only the buckets above it and the kept members of it (`partial`).
    fn draw<I: Items + ?Sized>(
        &mut self,
        set: &I,
        wt: Weight,
        r: f64,
        cut_bucket: Option<u16>,
    ) -> u32 {
        if let Some(cb) = cut_bucket {
            let cb = usize::from(cb);
            self.mass_t[cb] = self.partial.iter().map(|c| f64::from(wt.fast(c.1))).sum();
            self.mass_t[cb + 1..].fill(0.0);
        }
        let total: f64 = self.mass_t.iter().sum();
        let mut target = Target::draw(r * total);
        let Some(b) = crossing(&*self.mass_t, &mut target, true) else {
            return 0;
        };
        if cut_bucket == Some(b) {
            std::mem::swap(&mut self.members, &mut self.partial);
        } else {
            gather(&self.ids, set, |x| x == b, &mut self.members);
        }
        self.settle(wt, &mut target).map_or(0, |c| c.0)
    }

    /// The member (of `members`, in id order) at which `target` is crossed
    /// with weights `w`, or the last one if none is: splits a big set by
    /// its own value range until it is small enough to sort.
    fn settle(&mut self, w: Weight, target: &mut Target) -> Option<(u32, f32)> {
        for _ in 0..4 {
            if self.is_leaf(self.members.len()) {
                break;
            }
            let (lo, hi) = finite_range(&self.members);
            let scale = LAST / (hi - lo);
            if !(hi > lo && scale.is_finite()) {
                break;
            }
            let level = Level { top: hi, scale };
            self.sub_mass.fill(0.0);
            for c in &self.members {
                self.sub_mass[level.bucket(c.1) as usize] += f64::from(w.fast(c.1));
            }
            let Some(b) = crossing(&*self.sub_mass, target, true) else {
                break;
            };
            self.inner.clear();
            self.inner.extend(
                self.members
                    .iter()
                    .filter(|c| level.bucket(c.1) as u16 == b)
                    .copied(),
            );
            std::mem::swap(&mut self.members, &mut self.inner);
        }
        self.members.sort_unstable_by(rank);
        let last = *self.members.last()?;
        Some(
            self.members
                .iter()
                .find(|c| target.crosses(f64::from(w.fast(c.1))))
                .copied()
                .unwrap_or(last),
        )
    }
}

/// The bucket where `target` is crossed; when none is, the last non-empty
/// one if `fallback` (the target then ends on its last candidate), else
/// `None`.
fn crossing(masses: &[f64], target: &mut Target, fallback: bool) -> Option<u16> {
    let mut last = None;
    for (b, &m) in masses.iter().enumerate() {
        if m > 0.0 {
            last = Some(b as u16);
        }
        if target.crosses(m) {
            return Some(b as u16);
        }
    }
    if fallback {
        target.exhaust();
        return last;
    }
    None
}

/// The candidates of `set` whose bucket in `ids` passes `keep`, in id
/// order, into `out`.
fn gather<I: Items + ?Sized>(
    ids: &[u16],
    set: &I,
    keep: impl Fn(u16) -> bool,
    out: &mut Vec<(u32, f32)>,
) {
    const SPAN: usize = 32;
    out.clear();
    for (k, span) in ids.chunks(SPAN).enumerate() {
        // Most spans have no member: test them without branching first.
        if !span.iter().fold(false, |any, &x| any | keep(x)) {
            continue;
        }
        for (j, &x) in span.iter().enumerate() {
            if keep(x) {
                out.push(set.get(k * SPAN + j));
            }
        }
    }
}

/// The smallest finite and the largest value of `items` (NaN-free).
fn finite_range(items: &[(u32, f32)]) -> (f32, f32) {
    items
        .iter()
        .filter(|c| c.1.is_finite())
        .fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), c| {
            (lo.min(c.1), hi.max(c.1))
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    /// The chain done by sorting, with the same fast weights: the kept
    /// candidates' ids (in rank order) and the drawn token.
    fn sorted_chain(values: &[f32], chain: Chain, r: f64) -> (Vec<u32>, u32) {
        let mut all: Vec<(u32, f32)> = values
            .iter()
            .enumerate()
            .map(|(i, &v)| (i as u32, v))
            .collect();
        all.sort_by(rank);
        let w1 = Weight {
            max: chain.max,
            t: 1.0,
        };
        let mut keep = all.len();
        if chain.top_p < 1.0 {
            let total: f64 = all.iter().map(|c| f64::from(w1.fast(c.1))).sum();
            let mut target = Target::nucleus(f64::from(chain.top_p) * total);
            if let Some(i) = all
                .iter()
                .position(|c| target.crosses(f64::from(w1.fast(c.1))))
            {
                keep = i + 1;
            }
        }
        if let Some(floor) = chain.min_p_floor {
            let key = crate::select::order_key(floor);
            keep = keep.min(
                all.iter()
                    .take_while(|c| crate::select::order_key(c.1) >= key)
                    .count(),
            );
        }
        all.truncate(keep);
        let wt = Weight {
            max: chain.max,
            t: chain.temperature,
        };
        let total: f64 = all.iter().map(|c| f64::from(wt.fast(c.1))).sum();
        let mut target = Target::draw(r * total);
        let token = all
            .iter()
            .find(|c| target.crosses(f64::from(wt.fast(c.1))))
            .unwrap_or(&all[all.len() - 1])
            .0;
        (all.iter().map(|c| c.0).collect(), token)
    }

    proptest! {
        // Weights within e^-12 of the largest and at most 3000 of them: the
        // f64 sums of f32 weights are exact in any order, so the bucketed
        // chain must keep and draw exactly what a sorted one does.
        #[test]
        fn bucketed_chain_equals_a_sorted_chain(
            values in prop::collection::vec(
                prop_oneof![(0i32..24).prop_map(|v| -(v as f32) * 0.125), -2.9f32..0.0],
                1..3000),
            temperature in prop_oneof![Just(1.0f32), 0.25f32..1.0],
            r in 0.0f64..1.0,
            top_p in prop_oneof![Just(1.0f32), 0.0f32..1.0],
            min_p_floor in prop::option::of(-3.0f32..0.0),
            leaf in 1usize..64,
        ) {
            let max = values.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
            let chain = Chain { max, temperature, top_p, min_p_floor: min_p_floor.map(|f| f.min(max)) };
            let (want_kept, want_token) = sorted_chain(&values, chain, r);
            let mut walker = Walker::with_leaf(leaf);
            let mut kept = Vec::new();
            match walker.choose(values.as_slice(), chain, r, &mut kept) {
                Some(token) => prop_assert_eq!(token, want_token),
                None => {
                    kept.sort_by(rank);
                    prop_assert!(kept.len() <= leaf);
                    prop_assert_eq!(kept.iter().map(|c| c.0).collect::<Vec<_>>(), want_kept);
                }
            }
        }
    }
}
