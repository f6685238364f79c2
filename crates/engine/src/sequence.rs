//! The per-sequence state of generation: sampling, detokenisation and stop
//! conditions. The single-run generator and the server's batch scheduler
//! both drive a [`SequenceState`] with the logits the model produced for it.
//!
//! A step, in order: the grammar (if any) masks the logits, the sampler
//! draws from what is left, the log-probabilities (if asked for) are taken
//! from the *raw* logits, the grammar moves past the token, and the token's
//! text goes through the detokeniser and the stop strings.

use bitnet_sampling::{Sampler, SamplerConfig};
use bitnet_tokenizer::{StreamDecoder, Tokenizer};

use crate::grammar::Grammar;
use crate::logprobs::{TokenLogprobs, token_logprobs};
use crate::stop::StopMatcher;

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-sequence or end-of-turn token, or
    /// completed its grammar.
    Eos,
    /// A stop string appeared.
    StopString,
    /// `max_tokens` were generated.
    MaxTokens,
    /// The context is full.
    ContextFull,
    /// The caller cancelled.
    Cancelled,
}

impl StopReason {
    /// The OpenAI `finish_reason`.
    pub fn finish_reason(self) -> &'static str {
        match self {
            StopReason::Eos | StopReason::StopString | StopReason::Cancelled => "stop",
            StopReason::MaxTokens | StopReason::ContextFull => "length",
        }
    }
}

/// What to generate.
#[derive(Clone, Debug)]
pub struct GenerationParams {
    /// Maximum number of new tokens.
    pub max_tokens: usize,
    /// Sampling.
    pub sampler: SamplerConfig,
    /// Stop strings (not included in the output).
    pub stop: Vec<String>,
    /// Keep going past end-of-sequence tokens.
    pub ignore_eos: bool,
}

impl Default for GenerationParams {
    fn default() -> Self {
        GenerationParams {
            max_tokens: 128,
            sampler: SamplerConfig::default(),
            stop: Vec::new(),
            ignore_eos: false,
        }
    }
}

/// What a sequence reports and obeys besides [`GenerationParams`].
#[derive(Clone, Debug, Default)]
pub struct SequenceOptions {
    /// Report each generated token's log-probability and this many most
    /// likely alternatives ([`Step::logprobs`]; module `logprobs` says
    /// which probabilities these are). `None`: nothing.
    pub logprobs: Option<usize>,
    /// Tokens must keep the output within this grammar ([`crate::grammar`]);
    /// the sequence ends (as [`StopReason::Eos`]) when the grammar is
    /// complete. End tokens end it whatever `ignore_eos` says.
    pub grammar: Option<Grammar>,
}

/// The result of one step.
#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    /// The token sampled, if it belongs to the output (end tokens do not).
    pub token: Option<u32>,
    /// Text that became final with this step.
    pub text: String,
    /// Set when the sequence is done.
    pub finished: Option<StopReason>,
    /// The token's log-probabilities, when [`SequenceOptions::logprobs`]
    /// asks for them and the step produced an output token.
    pub logprobs: Option<TokenLogprobs>,
    /// Why the sequence cannot go on, when its grammar failed (`finished`
    /// is then set too).
    pub error: Option<String>,
}

/// Sampling, detokenisation and stop state of one sequence.
pub struct SequenceState {
    params: GenerationParams,
    options: SequenceOptions,
    /// The logits with the grammar's mask applied.
    masked: Vec<f32>,
    sampler: Sampler,
    decoder: StreamDecoder<'static>,
    stops: StopMatcher,
    tokenizer: Tokenizer,
    history: Vec<u32>,
    generated: Vec<u32>,
    text: String,
    finished: Option<StopReason>,
}

impl SequenceState {
    /// State for a sequence whose prompt is `prompt`.
    pub fn new(tokenizer: &Tokenizer, prompt: &[u32], params: GenerationParams) -> SequenceState {
        SequenceState::with_options(tokenizer, prompt, params, SequenceOptions::default())
    }

    /// [`SequenceState::new`] with [`SequenceOptions`].
    pub fn with_options(
        tokenizer: &Tokenizer,
        prompt: &[u32],
        params: GenerationParams,
        options: SequenceOptions,
    ) -> SequenceState {
        SequenceState {
            options,
            masked: Vec::new(),
            sampler: Sampler::new(params.sampler.clone()),
            decoder: StreamDecoder::new(tokenizer, true),
            stops: StopMatcher::new(&params.stop),
            tokenizer: tokenizer.clone(),
            history: prompt.to_vec(),
            generated: Vec::new(),
            text: String::new(),
            finished: (params.max_tokens == 0).then_some(StopReason::MaxTokens),
            params,
        }
    }

    /// Samples the next token from `logits`. `room` says whether the
    /// context can take the sampled token (if not, the sequence ends after
    /// emitting it).
    pub fn step(&mut self, logits: &[f32], room: bool) -> Step {
        if let Some(reason) = self.finished {
            return Step {
                token: None,
                text: String::new(),
                finished: Some(reason),
                logprobs: None,
                error: None,
            };
        }
        let token = match self.sample(logits) {
            Ok(token) => token,
            Err(e) => return self.fail(e),
        };
        let constrained = self.options.grammar.is_some();
        if (!self.params.ignore_eos || constrained) && self.tokenizer.stop_ids().contains(&token) {
            let text = self.flush();
            return self.finish(None, text, StopReason::Eos, None);
        }
        if let Some(grammar) = &mut self.options.grammar
            && let Err(e) = grammar.advance(token)
        {
            return self.fail(e);
        }
        let logprobs = self
            .options
            .logprobs
            .map(|n| token_logprobs(logits, token, n));
        self.history.push(token);
        self.generated.push(token);
        let piece = self.decoder.push(token).unwrap_or_default();
        let (mut text, hit) = self.stops.push(&piece);
        let complete = self
            .options
            .grammar
            .as_ref()
            .is_some_and(Grammar::is_complete);
        let reason = if hit {
            Some(StopReason::StopString)
        } else if complete {
            Some(StopReason::Eos)
        } else if self.generated.len() >= self.params.max_tokens {
            Some(StopReason::MaxTokens)
        } else if !room {
            Some(StopReason::ContextFull)
        } else {
            None
        };
        match reason {
            Some(StopReason::StopString) => {
                self.finish(Some(token), text, StopReason::StopString, logprobs)
            }
            Some(reason) => {
                text.push_str(&self.flush());
                self.finish(Some(token), text, reason, logprobs)
            }
            None => {
                self.text.push_str(&text);
                Step {
                    token: Some(token),
                    text,
                    finished: None,
                    logprobs,
                    error: None,
                }
            }
        }
    }

    /// The next token: drawn by the sampler, from the logits the grammar
    /// allows when there is one (then always one it allows: should the
    /// sampler ever pick a masked token, the most likely allowed one is
    /// taken instead).
    fn sample(&mut self, logits: &[f32]) -> crate::Result<u32> {
        let Some(grammar) = &mut self.options.grammar else {
            return Ok(self.sampler.sample(logits, &self.history));
        };
        grammar.mask(logits, &mut self.masked)?;
        let token = self.sampler.sample(&self.masked, &self.history);
        if self
            .masked
            .get(token as usize)
            .is_some_and(|v| v.is_finite())
        {
            return Ok(token);
        }
        let best = self
            .masked
            .iter()
            .enumerate()
            .fold((0, f32::NEG_INFINITY), |best, (i, &v)| {
                if v > best.1 { (i, v) } else { best }
            });
        Ok(best.0 as u32)
    }

    /// Ends the sequence because its grammar failed.
    fn fail(&mut self, e: crate::Error) -> Step {
        self.finished = Some(StopReason::Cancelled);
        Step {
            token: None,
            text: String::new(),
            finished: Some(StopReason::Cancelled),
            logprobs: None,
            error: Some(e.to_string()),
        }
    }

    fn flush(&mut self) -> String {
        let rest = self.decoder.finish();
        let (mut text, hit) = self.stops.push(&rest);
        if !hit {
            text.push_str(&self.stops.finish());
        }
        text
    }

    fn finish(
        &mut self,
        token: Option<u32>,
        text: String,
        reason: StopReason,
        logprobs: Option<TokenLogprobs>,
    ) -> Step {
        self.text.push_str(&text);
        self.finished = Some(reason);
        Step {
            token,
            text,
            finished: Some(reason),
            logprobs,
            error: None,
        }
    }

    /// Ends the sequence early (client gone, server shutting down).
    pub fn cancel(&mut self) {
        if self.finished.is_none() {
            self.finished = Some(StopReason::Cancelled);
        }
    }

    /// Whether the sequence is done, and why.
    pub fn finished(&self) -> Option<StopReason> {
        self.finished
    }

    /// The tokens generated so far (without end tokens).
    pub fn generated(&self) -> &[u32] {
        &self.generated
    }

    /// The text emitted so far.
    pub fn text(&self) -> &str {
        &self.text
    }
}
