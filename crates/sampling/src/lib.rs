//! Choosing the next token from logits.
//!
//! The chain follows llama.cpp's default order: penalties (repetition,
//! frequency, presence) on the raw logits, then the truncations top-k, top-p
//! and min-p (on temperature-1 probabilities), then temperature, then a draw
//! from the resulting distribution: one uniform number `u`, and the token
//! whose span holds `u` when the candidates are laid end to end from the
//! most likely down (ties: smaller id first). A temperature of zero (or
//! below) means greedy: the highest penalised logit, the first one on ties.
//!
//! # Speed
//!
//! The chain's definition sorts the vocabulary; on a 128k-token vocabulary
//! that alone costs milliseconds, more than a tiny model's forward pass, and
//! a server request without `top_k` would pay it for every token. So the
//! chain is computed without sorting more than about a thousand candidates:
//!
//! * greedy is one vectorised pass for the maximum (`select`);
//! * top-k keeps a buffer of the best candidates and a threshold that
//!   rejects the rest sixteen values at a time (`select`);
//! * a set of at most 1024 candidates (`walk::LEAF`: top-k 40, a small
//!   vocabulary) is sorted and walked exactly as the definition says, in
//!   f64 with the standard `exp`;
//! * a larger one goes through `walk`: one pass puts every candidate into a
//!   bucket of a sixteenth of a logit and sums the buckets' weights, and
//!   top-p, min-p and the draw walk the bucket sums, sorting only the one
//!   bucket where each stops. Its weights come from a vectorised `exp`
//!   (`exp`, relative error 2e-7) compiled for AVX-512 or AVX2 when the CPU
//!   has them (`pass`; every width gives the same bits).
//!
//! The two paths compute the same function of `u`: only the last bits of
//! the large path's sums differ from a sorted walk's, so a draw could go to
//! the neighbouring token only when `u` falls within about 1e-7 of the
//! boundary between two tokens. The tests pin the token ids of seeded runs
//! made with the sort-based sampler of earlier versions, and compare
//! hundreds of seeded draws on 128k-token logits with a plain sorted
//! implementation of the chain: all equal.
//! `cargo bench -p bitnet-sampling --bench sampler` times every kind of
//! chain on a 128k-token vocabulary.
//!
//! The random numbers come from our own xoshiro256** generator seeded through
//! SplitMix64, not from `rand`: a seeded run must give the same tokens on
//! every platform and across dependency upgrades, which `rand`'s `StdRng`
//! does not promise. Each sampled (non-greedy) token takes exactly one
//! number from it.

#![deny(missing_docs)]

mod exp;
mod pass;
mod rng;
mod select;
mod walk;

pub use rng::Rng;
pub use select::argmax;

use walk::{Chain, Items, Walker, Weight};

/// Sampling parameters. The defaults are llama.cpp's.
#[derive(Clone, Debug, PartialEq)]
pub struct SamplerConfig {
    /// Softmax temperature; `<= 0` selects greedy decoding.
    pub temperature: f32,
    /// Keep the `top_k` most likely tokens (0 = all).
    pub top_k: usize,
    /// Keep the smallest set whose probability reaches `top_p` (1 = all).
    pub top_p: f32,
    /// Drop tokens less likely than `min_p` times the most likely (0 = off).
    pub min_p: f32,
    /// Divide positive (multiply negative) logits of recent tokens (1 = off).
    pub repeat_penalty: f32,
    /// How many recent tokens the penalties look at (0 = none).
    pub repeat_last_n: usize,
    /// OpenAI frequency penalty: subtract `count · f` (0 = off).
    pub frequency_penalty: f32,
    /// OpenAI presence penalty: subtract `p` from tokens seen once or more.
    pub presence_penalty: f32,
    /// Random seed.
    pub seed: u64,
}

impl Default for SamplerConfig {
    fn default() -> Self {
        SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 0.95,
            min_p: 0.05,
            repeat_penalty: 1.0,
            repeat_last_n: 64,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed: 0,
        }
    }
}

impl SamplerConfig {
    /// Greedy decoding with no penalties.
    pub fn greedy() -> SamplerConfig {
        SamplerConfig {
            temperature: 0.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            ..SamplerConfig::default()
        }
    }

    /// Whether the chain is plain argmax of the raw logits.
    pub fn is_greedy(&self) -> bool {
        self.temperature <= 0.0 && !self.has_penalties()
    }

    fn has_penalties(&self) -> bool {
        self.repeat_last_n > 0
            && (self.repeat_penalty != 1.0
                || self.frequency_penalty != 0.0
                || self.presence_penalty != 0.0)
    }
}

/// A stateful sampler (holds the random generator and scratch space).
#[derive(Clone, Debug)]
pub struct Sampler {
    cfg: SamplerConfig,
    rng: Rng,
    /// The logits with penalties applied (or NaNs replaced), when needed.
    adjusted: Vec<f32>,
    counts: Vec<(u32, u32)>,
    scratch: Scratch,
}

/// Scratch space of one draw.
#[derive(Clone, Debug, Default)]
struct Scratch {
    /// The top-k candidates, or a small vocabulary.
    set: Vec<(u32, f32)>,
    /// The candidates that survive top-p and min-p.
    kept: Vec<(u32, f32)>,
    weights: Vec<f64>,
    walker: Walker,
}

impl Sampler {
    /// A sampler with `cfg`, its generator seeded with `cfg.seed`.
    pub fn new(cfg: SamplerConfig) -> Sampler {
        Sampler {
            rng: Rng::new(cfg.seed),
            cfg,
            adjusted: Vec::new(),
            counts: Vec::new(),
            scratch: Scratch::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks the next token given the logits and the tokens so far (prompt
    /// and generated, oldest first; only the last `repeat_last_n` matter).
    ///
    /// NaN logits are never chosen. When the largest logit is `+inf`, or
    /// every logit is `-inf`, the choice is greedy.
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        if logits.is_empty() {
            return 0;
        }
        let penalised = self.cfg.has_penalties();
        if penalised {
            self.apply_penalties(logits, history);
        }
        if self.cfg.temperature <= 0.0 {
            return argmax(if penalised { &self.adjusted } else { logits });
        }
        // One random number per sampled token, whatever the chain does
        // with it, so the stream of later tokens does not depend on it.
        let r = self.rng.next_f64();
        let (max, nan) = select::max_and_nan(if penalised { &self.adjusted } else { logits });
        if nan {
            if !penalised {
                self.adjusted.clear();
                self.adjusted.extend_from_slice(logits);
            }
            for v in &mut self.adjusted {
                if v.is_nan() {
                    *v = f32::NEG_INFINITY;
                }
            }
        }
        let values = if penalised || nan {
            &self.adjusted
        } else {
            logits
        };
        if !max.is_finite() {
            return argmax(values);
        }
        choose(values, max, r, &self.cfg, &mut self.scratch)
    }

    /// Copies the logits into `adjusted` with the penalties applied to the
    /// tokens of the recent history.
    fn apply_penalties(&mut self, logits: &[f32], history: &[u32]) {
        let recent = &history[history.len().saturating_sub(self.cfg.repeat_last_n)..];
        self.counts.clear();
        for &id in recent {
            if (id as usize) >= logits.len() {
                continue;
            }
            match self.counts.iter_mut().find(|(t, _)| *t == id) {
                Some((_, c)) => *c += 1,
                None => self.counts.push((id, 1)),
            }
        }
        self.adjusted.clear();
        self.adjusted.extend_from_slice(logits);
        for &(id, count) in &self.counts {
            let v = &mut self.adjusted[id as usize];
            if *v > 0.0 {
                *v /= self.cfg.repeat_penalty;
            } else {
                *v *= self.cfg.repeat_penalty;
            }
            *v -= count as f32 * self.cfg.frequency_penalty + self.cfg.presence_penalty;
        }
    }
}

/// The draw from NaN-free `values` whose largest is the finite `max`, with
/// the uniform random number `r`.
fn choose(values: &[f32], max: f32, r: f64, cfg: &SamplerConfig, sc: &mut Scratch) -> u32 {
    let k = cfg.top_k;
    let top_k = k > 0 && k < values.len();
    if top_k {
        select::top_k(values, k, &mut sc.set);
    } else if sc.walker.is_leaf(values.len()) {
        sc.set.clear();
        sc.set
            .extend(values.iter().enumerate().map(|(i, &v)| (i as u32, v)));
    }
    if top_k || sc.walker.is_leaf(values.len()) {
        if sc.walker.is_leaf(sc.set.len()) {
            return choose_sorted(&mut sc.set, cfg, r, &mut sc.weights);
        }
        let set = std::mem::take(&mut sc.set);
        let id = choose_bucketed(set.as_slice(), max, r, cfg, sc);
        sc.set = set;
        return id;
    }
    choose_bucketed(values, max, r, cfg, sc)
}

/// The chain on a small set, by sorting it: the reference the bucketed
/// path follows, and the exact arithmetic of earlier versions.
fn choose_sorted(
    cands: &mut [(u32, f32)],
    cfg: &SamplerConfig,
    r: f64,
    weights: &mut Vec<f64>,
) -> u32 {
    cands.sort_unstable_by(select::rank);
    // Probabilities at temperature 1 for top-p and min-p (llama.cpp
    // applies the temperature after the truncations).
    let max = cands[0].1;
    let w1 = Weight { max, t: 1.0 };
    weights.clear();
    weights.extend(cands.iter().map(|c| w1.exact(c.1)));
    let total: f64 = weights.iter().sum();
    let mut keep = cands.len();
    if cfg.top_p < 1.0 {
        let mut cum = 0.0;
        for (i, w) in weights.iter().enumerate() {
            cum += w / total;
            if cum >= f64::from(cfg.top_p) {
                keep = keep.min(i + 1);
                break;
            }
        }
    }
    if cfg.min_p > 0.0 {
        let threshold = f64::from(cfg.min_p) * weights[0];
        let n = weights
            .iter()
            .take_while(|&&w| w >= threshold)
            .count()
            .max(1);
        keep = keep.min(n);
    }
    draw_sorted(&cands[..keep], max, cfg.temperature, r, weights)
}

/// Temperature, then the draw, over candidates sorted by rank.
fn draw_sorted(cands: &[(u32, f32)], max: f32, t: f32, r: f64, weights: &mut Vec<f64>) -> u32 {
    let wt = Weight { max, t };
    weights.clear();
    weights.extend(cands.iter().map(|c| wt.exact(c.1)));
    let total: f64 = weights.iter().sum();
    let mut u = r * total;
    for (c, p) in cands.iter().zip(weights.iter()) {
        if u < *p {
            return c.0;
        }
        u -= p;
    }
    cands[cands.len() - 1].0
}

/// The chain on a large set without sorting it (see [`walk`]).
fn choose_bucketed<I: Items + ?Sized>(
    set: &I,
    max: f32,
    r: f64,
    cfg: &SamplerConfig,
    sc: &mut Scratch,
) -> u32 {
    let chain = Chain {
        max,
        temperature: cfg.temperature,
        top_p: cfg.top_p,
        min_p_floor: (cfg.min_p > 0.0).then(|| min_p_floor(cfg.min_p, max)),
    };
    match sc.walker.choose(set, chain, r, &mut sc.kept) {
        Some(token) => token,
        None => {
            sc.kept.sort_unstable_by(select::rank);
            draw_sorted(&sc.kept, max, cfg.temperature, r, &mut sc.weights)
        }
    }
}

/// The smallest value that min-p keeps: the smallest `v` with
/// `exp(v − max) >= min_p` in the arithmetic of [`choose_sorted`] (`v −
/// max` in f32, then f64), found from the logarithm and settled by testing
/// the neighbouring floats.
fn min_p_floor(min_p: f32, max: f32) -> f32 {
    let min_p = f64::from(min_p.min(1.0));
    let keeps = |v: f32| f64::from(v - max).exp() >= min_p;
    let mut v = (f64::from(max) + min_p.ln()) as f32;
    while v > f32::NEG_INFINITY && keeps(v.next_down()) {
        v = v.next_down();
    }
    // `keeps(max)` holds, so this stops there at the latest.
    while !keeps(v) {
        v = v.next_up();
    }
    // -0.0 is kept with 0.0 and ranks just below it.
    if v == 0.0 { -0.0 } else { v }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn logits() -> Vec<f32> {
        vec![1.0, 3.0, 2.0, 3.0, -1.0, 0.5]
    }

    #[test]
    fn greedy_takes_the_first_maximum() {
        let mut s = Sampler::new(SamplerConfig::greedy());
        assert_eq!(s.sample(&logits(), &[]), 1);
        assert_eq!(argmax(&logits()), 1);
    }

    #[test]
    fn repetition_penalty_moves_greedy_choice() {
        let cfg = SamplerConfig {
            repeat_penalty: 2.0,
            ..SamplerConfig::greedy()
        };
        let mut s = Sampler::new(cfg);
        // Token 1 (3.0 -> 1.5) and 3 (3.0 -> 1.5) penalised: 2 (2.0) wins.
        assert_eq!(s.sample(&logits(), &[1, 3]), 2);
    }

    #[test]
    fn frequency_and_presence_penalties_subtract() {
        let cfg = SamplerConfig {
            frequency_penalty: 0.5,
            presence_penalty: 0.25,
            ..SamplerConfig::greedy()
        };
        let mut s = Sampler::new(cfg);
        // Token 1 seen twice: 3 - 1.0 - 0.25 = 1.75; token 3 wins.
        assert_eq!(s.sample(&logits(), &[1, 1]), 3);
    }

    #[test]
    fn top_k_one_is_greedy_and_seeded_runs_repeat() {
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 1,
            top_p: 1.0,
            min_p: 0.0,
            ..SamplerConfig::default()
        };
        let mut s = Sampler::new(cfg);
        for _ in 0..10 {
            assert_eq!(s.sample(&logits(), &[]), 1);
        }
        let cfg = SamplerConfig {
            seed: 42,
            ..SamplerConfig::default()
        };
        let a: Vec<u32> = {
            let mut s = Sampler::new(cfg.clone());
            (0..50).map(|_| s.sample(&logits(), &[])).collect()
        };
        let b: Vec<u32> = {
            let mut s = Sampler::new(cfg);
            (0..50).map(|_| s.sample(&logits(), &[])).collect()
        };
        assert_eq!(a, b);
        assert!(
            a.contains(&1) && a.contains(&3),
            "both tied tokens get drawn"
        );
    }

    #[test]
    fn frequencies_follow_the_softmax() {
        let l = [0.0f32, 1.0, 2.0];
        let cfg = SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            seed: 7,
            ..SamplerConfig::default()
        };
        let mut s = Sampler::new(cfg);
        let mut counts = [0u32; 3];
        let n = 100_000;
        for _ in 0..n {
            counts[s.sample(&l, &[]) as usize] += 1;
        }
        let z: f64 = l.iter().map(|&v| f64::from(v).exp()).sum();
        for i in 0..3 {
            let expect = f64::from(l[i]).exp() / z;
            let got = f64::from(counts[i]) / n as f64;
            assert!((got - expect).abs() < 0.01, "token {i}: {got} vs {expect}");
        }
    }

    #[test]
    fn top_p_and_min_p_truncate() {
        // Probabilities ~ [0.665, 0.245, 0.090]: top_p 0.6 keeps one token.
        let l = [2.0f32, 1.0, 0.0];
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 0.6,
            min_p: 0.0,
            ..SamplerConfig::default()
        });
        assert!((0..200).all(|_| s.sample(&l, &[]) == 0));
        // min_p 0.3: token 2 (0.135 of the max) is dropped, token 1 (0.37) kept.
        let mut s = Sampler::new(SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.3,
            seed: 3,
            ..SamplerConfig::default()
        });
        let draws: Vec<u32> = (0..500).map(|_| s.sample(&l, &[])).collect();
        assert!(draws.contains(&1) && !draws.contains(&2));
    }
}
