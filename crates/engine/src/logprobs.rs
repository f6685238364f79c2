//! Log-probabilities of sampled tokens, as OpenAI's `logprobs` reports
//! them.
//!
//! They are the log-softmax of the model's *raw* logits — temperature 1,
//! before penalties, truncation (top-k/top-p/min-p) and grammar masks —
//! which is what vLLM reports by default: the model's own belief about each
//! token, whatever the sampler then did with it. They are computed only for
//! sequences that ask for them, in one pass over the vocabulary for the
//! normaliser (f64 sums: 128k terms) and one for the most likely tokens.

/// The log-probability of one generated token and of the most likely
/// alternatives at its position.
#[derive(Clone, Debug, PartialEq)]
pub struct TokenLogprobs {
    /// The token sampled.
    pub token: u32,
    /// Its log-probability.
    pub logprob: f32,
    /// The most likely tokens with their log-probabilities, most likely
    /// first (equal values: lower id first). As many as asked for, or the
    /// whole vocabulary if it is smaller.
    pub top: Vec<(u32, f32)>,
}

/// `log softmax(logits)` at `token`, and the `top_n` most likely tokens.
pub fn token_logprobs(logits: &[f32], token: u32, top_n: usize) -> TokenLogprobs {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f64 = logits.iter().map(|&v| f64::from(v - max).exp()).sum();
    let log_z = f64::from(max) + sum.ln();
    let logprob = |v: f32| (f64::from(v) - log_z) as f32;
    // The top_n largest, kept sorted: most candidates fail the first
    // comparison with the smallest kept value.
    let mut top: Vec<(u32, f32)> = Vec::with_capacity(top_n + 1);
    if top_n > 0 {
        for (id, &v) in logits.iter().enumerate() {
            if top.len() == top_n && top.last().is_some_and(|&(_, low)| v <= low) {
                continue;
            }
            // After every kept value >= v: ids are visited in increasing
            // order, so ties keep the lower id first.
            let at = top.partition_point(|&(_, kept)| kept >= v);
            top.insert(at, (id as u32, v));
            top.truncate(top_n);
        }
    }
    TokenLogprobs {
        token,
        logprob: logits
            .get(token as usize)
            .map_or(f32::NEG_INFINITY, |&v| logprob(v)),
        top: top.into_iter().map(|(id, v)| (id, logprob(v))).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The plain definition, in f64.
    fn reference(logits: &[f32]) -> Vec<f64> {
        let z: f64 = logits.iter().map(|&v| f64::from(v).exp()).sum();
        logits.iter().map(|&v| f64::from(v) - z.ln()).collect()
    }

    #[test]
    fn matches_the_definition_and_sorts_the_top() {
        let logits = [1.0f32, 3.0, -2.0, 3.0, 0.5, 2.0];
        let want = reference(&logits);
        let lp = token_logprobs(&logits, 4, 3);
        assert!((f64::from(lp.logprob) - want[4]).abs() < 1e-6);
        let ids: Vec<u32> = lp.top.iter().map(|&(id, _)| id).collect();
        assert_eq!(ids, [1, 3, 5], "ties keep the lower id first");
        for &(id, v) in &lp.top {
            assert!((f64::from(v) - want[id as usize]).abs() < 1e-6);
        }
        // Probabilities sum to one.
        let total: f64 = want.iter().map(|v| v.exp()).sum();
        assert!((total - 1.0).abs() < 1e-12);
        assert!(token_logprobs(&logits, 0, 0).top.is_empty());
        assert_eq!(token_logprobs(&logits, 0, 10).top.len(), 6);
    }

    #[test]
    fn large_logits_do_not_overflow() {
        let logits = [1000.0f32, 999.0, -1000.0];
        let lp = token_logprobs(&logits, 1, 1);
        let want = -(1.0f64 + (-1.0f64).exp()).ln() - 1.0;
        assert!((f64::from(lp.logprob) - want).abs() < 1e-6, "{lp:?}");
        assert_eq!(lp.top[0].0, 0);
    }
}
