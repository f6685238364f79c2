//! Sampling and length flags shared by `run` and `chat`, spelled as
//! llama.cpp spells them: negative numbers are values (`--temp -1`,
//! `-n -1`), a temperature of 0 or below is greedy, `-n -1` generates until
//! the end of the text or a full context, `--seed -1` picks a seed. A value
//! out of range is refused with the range it must be in.

use bitnet_engine::SamplerConfig;
use clap::Args;

/// Sampling flags.
#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature; 0 or below is greedy (always the most likely token).
    #[arg(long = "temp", default_value_t = 0.8, allow_negative_numbers = true, value_parser = finite)]
    pub temp: f32,
    /// Top-k: keep the k most likely tokens (0 = off).
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    /// Top-p, between 0 and 1: keep the most likely tokens whose
    /// probabilities add up to p (1 = off).
    #[arg(long = "top-p", default_value_t = 0.95, allow_negative_numbers = true, value_parser = unit_interval)]
    pub top_p: f32,
    /// Min-p, between 0 and 1: drop tokens less likely than p times the
    /// most likely one (0 = off).
    #[arg(long = "min-p", default_value_t = 0.05, allow_negative_numbers = true, value_parser = unit_interval)]
    pub min_p: f32,
    /// Repetition penalty, above 0 (1 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0, allow_negative_numbers = true, value_parser = positive)]
    pub repeat_penalty: f32,
    /// Tokens the penalties look back over (0 = none, -1 = the whole
    /// context).
    #[arg(long = "repeat-last-n", default_value = "64", allow_negative_numbers = true, value_parser = count_or_all)]
    pub repeat_last_n: usize,
    /// OpenAI-style presence penalty (0 = off; negative encourages
    /// repetition).
    #[arg(long = "presence-penalty", default_value_t = 0.0, allow_negative_numbers = true, value_parser = finite)]
    pub presence_penalty: f32,
    /// OpenAI-style frequency penalty (0 = off; negative encourages
    /// repetition).
    #[arg(long = "frequency-penalty", default_value_t = 0.0, allow_negative_numbers = true, value_parser = finite)]
    pub frequency_penalty: f32,
    /// Random seed (default or -1: from the clock).
    #[arg(short = 's', long = "seed", allow_negative_numbers = true, value_parser = seed)]
    pub seed: Option<Seed>,
}

/// A `--seed` value: a number, or `-1` for one from the clock.
#[derive(Clone, Copy, Debug)]
pub struct Seed(Option<u64>);

impl SamplingArgs {
    /// The sampler configuration and the seed used.
    pub fn sampler(&self) -> (SamplerConfig, u64) {
        let seed = self.seed.and_then(|s| s.0).unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        (
            SamplerConfig {
                temperature: self.temp,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: self.repeat_last_n,
                frequency_penalty: self.frequency_penalty,
                presence_penalty: self.presence_penalty,
                seed,
            },
            seed,
        )
    }
}

fn number<T: std::str::FromStr>(s: &str, what: &str) -> Result<T, String> {
    s.trim().parse().map_err(|_| format!("`{s}` is not {what}"))
}

fn finite(s: &str) -> Result<f32, String> {
    let v: f32 = number(s, "a number")?;
    if v.is_finite() {
        Ok(v)
    } else {
        Err("must be a finite number".into())
    }
}

fn unit_interval(s: &str) -> Result<f32, String> {
    let v: f32 = number(s, "a number")?;
    if (0.0..=1.0).contains(&v) {
        Ok(v)
    } else {
        Err("must be between 0 and 1".into())
    }
}

fn positive(s: &str) -> Result<f32, String> {
    let v: f32 = number(s, "a number")?;
    if v.is_finite() && v > 0.0 {
        Ok(v)
    } else {
        Err("must be a number above 0 (1 = off)".into())
    }
}

/// A count, or `-1` for no limit.
fn count_or_all(s: &str) -> Result<usize, String> {
    match number::<i64>(s, "a whole number")? {
        -1 => Ok(usize::MAX),
        n if n >= 0 => Ok(n as usize),
        _ => Err("must be 0 or more, or -1 for no limit".into()),
    }
}

fn seed(s: &str) -> Result<Seed, String> {
    if s.trim() == "-1" {
        return Ok(Seed(None));
    }
    number::<u64>(s, "a seed (0 to 2^64-1, or -1 for a random one)").map(|n| Seed(Some(n)))
}

/// `-n`: a token count, or `-1`/`-2` (llama.cpp's "until the end of the
/// text" and "until the context is full"; both end at whichever comes
/// first here, as there is no context shifting).
pub fn n_predict(s: &str) -> Result<usize, String> {
    match number::<i64>(s, "a whole number")? {
        -1 | -2 => Ok(usize::MAX),
        n if n >= 0 => Ok(n as usize),
        _ => Err(
            "must be 0 or more, or -1 to generate until the end of the text or a full context"
                .into(),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llama_cpp_spellings() {
        assert_eq!(n_predict("-1"), Ok(usize::MAX));
        assert_eq!(n_predict("-2"), Ok(usize::MAX));
        assert_eq!(n_predict("12"), Ok(12));
        assert!(n_predict("-3").unwrap_err().contains("-1"));
        assert_eq!(count_or_all("-1"), Ok(usize::MAX));
        assert!(seed("-1").unwrap().0.is_none());
        assert_eq!(seed("7").unwrap().0, Some(7));
        assert_eq!(finite("-1"), Ok(-1.0));
        assert!(unit_interval("5").unwrap_err().contains("between 0 and 1"));
        assert!(positive("0").unwrap_err().contains("above 0"));
    }
}
