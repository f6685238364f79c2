//! The per-sequence state of generation: sampling, detokenisation and stop
//! conditions. The single-run generator and the server's batch scheduler
//! both drive a [`SequenceState`] with the logits the model produced for it.

use bitnet_sampling::{Sampler, SamplerConfig};
use bitnet_tokenizer::{StreamDecoder, Tokenizer};

use crate::logprobs::{TokenLogprobs, token_logprobs};
use crate::stop::StopMatcher;

/// Why generation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize)]
#[serde(rename_all = "snake_case")]
pub enum StopReason {
    /// The model produced an end-of-sequence or end-of-turn token.
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
}

/// Sampling, detokenisation and stop state of one sequence.
pub struct SequenceState {
    params: GenerationParams,
    options: SequenceOptions,
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
            };
        }
        let token = self.sampler.sample(logits, &self.history);
        if !self.params.ignore_eos && self.tokenizer.stop_ids().contains(&token) {
            let text = self.flush();
            return self.finish(None, text, StopReason::Eos, None);
        }
        let logprobs = self
            .options
            .logprobs
            .map(|n| token_logprobs(logits, token, n));
        self.history.push(token);
        self.generated.push(token);
        let piece = self.decoder.push(token).unwrap_or_default();
        let (mut text, hit) = self.stops.push(&piece);
        let reason = if hit {
            Some(StopReason::StopString)
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
                }
            }
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
