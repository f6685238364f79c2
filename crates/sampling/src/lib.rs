//! Choosing the next token from logits.
//!
//! The chain follows llama.cpp's default order: penalties (repetition,
//! frequency, presence) on the raw logits, then the truncations top-k, top-p
//! and min-p, then temperature, then a draw from the resulting distribution.
//! A temperature of zero (or below) means greedy: the highest penalised logit,
//! the first one on ties.
//!
//! The random numbers come from our own xoshiro256** generator seeded through
//! SplitMix64, not from `rand`: a seeded run must give the same tokens on
//! every platform and across dependency upgrades, which `rand`'s `StdRng`
//! does not promise.

#![deny(missing_docs)]

mod rng;

pub use rng::Rng;

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
    candidates: Vec<(u32, f32)>,
    penalised: Vec<(u32, f32)>,
}

impl Sampler {
    /// A sampler with `cfg`, its generator seeded with `cfg.seed`.
    pub fn new(cfg: SamplerConfig) -> Sampler {
        Sampler {
            rng: Rng::new(cfg.seed),
            cfg,
            candidates: Vec::new(),
            penalised: Vec::new(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SamplerConfig {
        &self.cfg
    }

    /// Picks the next token given the logits and the tokens so far (prompt
    /// and generated, oldest first; only the last `repeat_last_n` matter).
    pub fn sample(&mut self, logits: &[f32], history: &[u32]) -> u32 {
        if logits.is_empty() {
            return 0;
        }
        self.apply_penalties(logits, history);
        let value = |id: u32| {
            self.penalised
                .iter()
                .find(|(t, _)| *t == id)
                .map_or(logits[id as usize], |(_, v)| *v)
        };
        if self.cfg.temperature <= 0.0 {
            return argmax_with(logits, &self.penalised);
        }
        // Candidates, most likely first.
        self.candidates.clear();
        self.candidates.extend(
            logits
                .iter()
                .enumerate()
                .map(|(i, _)| (i as u32, value(i as u32))),
        );
        let desc = |a: &(u32, f32), b: &(u32, f32)| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0));
        let k = self.cfg.top_k;
        if k > 0 && k < self.candidates.len() {
            self.candidates.select_nth_unstable_by(k - 1, desc);
            self.candidates.truncate(k);
        }
        self.candidates.sort_unstable_by(desc);
        // Probabilities at temperature 1 for top-p and min-p (llama.cpp
        // applies the temperature after the truncations).
        let max = self.candidates[0].1;
        let weights: Vec<f64> = self
            .candidates
            .iter()
            .map(|&(_, v)| f64::from(v - max).exp())
            .collect();
        let total: f64 = weights.iter().sum();
        let mut keep = self.candidates.len();
        if self.cfg.top_p < 1.0 {
            let mut cum = 0.0;
            for (i, w) in weights.iter().enumerate() {
                cum += w / total;
                if cum >= f64::from(self.cfg.top_p) {
                    keep = keep.min(i + 1);
                    break;
                }
            }
        }
        if self.cfg.min_p > 0.0 {
            let threshold = f64::from(self.cfg.min_p) * weights[0];
            let n = weights
                .iter()
                .take_while(|&&w| w >= threshold)
                .count()
                .max(1);
            keep = keep.min(n);
        }
        self.candidates.truncate(keep);
        // Temperature, then draw.
        let t = f64::from(self.cfg.temperature);
        let probs: Vec<f64> = self
            .candidates
            .iter()
            .map(|&(_, v)| (f64::from(v - max) / t).exp())
            .collect();
        let total: f64 = probs.iter().sum();
        let mut u = self.rng.next_f64() * total;
        for (i, p) in probs.iter().enumerate() {
            if u < *p {
                return self.candidates[i].0;
            }
            u -= p;
        }
        self.candidates[self.candidates.len() - 1].0
    }

    /// Computes the penalised logits of the tokens in the recent history.
    fn apply_penalties(&mut self, logits: &[f32], history: &[u32]) {
        self.penalised.clear();
        if !self.cfg.has_penalties() {
            return;
        }
        let recent = &history[history.len().saturating_sub(self.cfg.repeat_last_n)..];
        let mut counts: Vec<(u32, u32)> = Vec::new();
        for &id in recent {
            if (id as usize) >= logits.len() {
                continue;
            }
            match counts.iter_mut().find(|(t, _)| *t == id) {
                Some((_, c)) => *c += 1,
                None => counts.push((id, 1)),
            }
        }
        for (id, count) in counts {
            let mut v = logits[id as usize];
            if v > 0.0 {
                v /= self.cfg.repeat_penalty;
            } else {
                v *= self.cfg.repeat_penalty;
            }
            v -= count as f32 * self.cfg.frequency_penalty + self.cfg.presence_penalty;
            self.penalised.push((id, v));
        }
    }
}

/// Index of the largest logit (the first one on ties).
pub fn argmax(logits: &[f32]) -> u32 {
    argmax_with(logits, &[])
}

fn argmax_with(logits: &[f32], overrides: &[(u32, f32)]) -> u32 {
    let mut best = 0usize;
    let mut best_v = f32::NEG_INFINITY;
    for (i, &v) in logits.iter().enumerate() {
        let v = overrides
            .iter()
            .find(|(t, _)| *t as usize == i)
            .map_or(v, |(_, o)| *o);
        if v > best_v {
            best = i;
            best_v = v;
        }
    }
    best as u32
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
