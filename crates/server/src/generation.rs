//! From a parsed request to running sequences and back: what to tokenise,
//! admission of all `n` sequences or none, tokenisation and grammar
//! compilation on tokio's blocking pool, the token limit (context and
//! `--n-predict`), submission to the engine thread with consecutive seeds,
//! and gathering whole answers.

use std::sync::Arc;

use bitnet_engine::batch::{Job, Permit};
use bitnet_engine::grammar::Grammar;
use bitnet_engine::{ChatMessage, GenerationParams, SequenceOptions, TokenLogprobs};
use tokio::sync::mpsc;

use crate::api::{ChatBody, Common, Content, Prompt, Usage};
use crate::error::ApiError;
use crate::jobs::{Event, TokioSink};
use crate::request_log::Record;
use crate::routes::Inner;

/// What to tokenise.
pub enum Input {
    /// A conversation, through the chat template.
    Chat(Vec<ChatMessage>),
    /// Plain text.
    Text(String),
    /// Token ids.
    Ids(Vec<u32>),
}

impl Inner {
    /// Places for `n` sequences, all or none.
    fn admit(&self, n: usize) -> Result<Vec<Permit>, ApiError> {
        if self.shutdown.is_shutting_down() {
            return Err(ApiError::shutting_down());
        }
        if n > self.capacity {
            return Err(ApiError::invalid_param(
                "n",
                format!(
                    "Invalid 'n': this server runs at most {} sequences at once (slots plus queue places), but got {n}.",
                    self.capacity
                ),
            )
            .with_code("integer_above_max_value"));
        }
        (0..n)
            .map(|_| self.scheduler.admit())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|_| ApiError::overloaded())
    }

    /// Renders and tokenises on the blocking pool.
    async fn tokenize(&self, input: Input) -> Result<Vec<u32>, ApiError> {
        let engine = Arc::clone(&self.engine);
        let n_vocab = engine.model().hparams().n_vocab;
        let work = move || -> Result<Vec<u32>, ApiError> {
            let to_400 = |e: bitnet_engine::Error| ApiError::invalid(e.to_string());
            let mut ids = match input {
                Input::Chat(messages) => {
                    let text = engine.render_chat(&messages, true).map_err(to_400)?;
                    engine.tokenize_chat(&text).map_err(to_400)?
                }
                Input::Text(text) => engine.tokenize(&text).map_err(to_400)?,
                Input::Ids(ids) => {
                    if let Some(bad) = ids.iter().find(|&&id| id as usize >= n_vocab) {
                        return Err(ApiError::invalid_param(
                            "prompt",
                            format!("Token id {bad} is out of range (vocabulary size {n_vocab})."),
                        ));
                    }
                    ids
                }
            };
            if ids.is_empty() {
                let bos = engine.tokenizer().bos_id().ok_or_else(|| {
                    ApiError::invalid_param(
                        "prompt",
                        "The prompt is empty and the model has no BOS token.",
                    )
                })?;
                ids.push(bos);
            }
            Ok(ids)
        };
        tokio::task::spawn_blocking(work)
            .await
            .map_err(|e| ApiError::internal(format!("tokenization failed: {e}")))?
    }

    /// Compiles the request's grammar, if any, on the blocking pool (a
    /// large schema takes milliseconds; the first one also builds the
    /// vocabulary's token trie).
    pub(crate) async fn grammar(&self, common: &Common) -> Result<Option<Grammar>, ApiError> {
        let Some((spec, param)) = common.constraint()? else {
            return Ok(None);
        };
        let engine = Arc::clone(&self.engine);
        let compiled = tokio::task::spawn_blocking(move || engine.compile_grammar(&spec))
            .await
            .map_err(|e| ApiError::internal(format!("grammar compilation failed: {e}")))?;
        match compiled {
            Ok(grammar) => Ok(Some(grammar)),
            Err(bitnet_engine::Error::Grammar(message)) => Err(ApiError::invalid_param(
                param,
                format!("Invalid '{param}': {message}"),
            )
            .with_code("invalid_value")),
            Err(e) => Err(ApiError::internal(e.to_string())),
        }
    }

    /// Fits the token limit to the context and the server's cap
    /// (`--n-predict`): a request without a limit gets the endpoint's
    /// default or the cap, one that asks for more than the cap gets the cap
    /// (as llama-server does).
    fn limit(
        &self,
        n_prompt: usize,
        requested: Option<usize>,
        default: Option<usize>,
        param: &str,
    ) -> Result<usize, ApiError> {
        let n_ctx = self.n_ctx;
        let too_long = |message: String, param: &str| {
            Err(ApiError::invalid_param(param, message).with_code("context_length_exceeded"))
        };
        if n_prompt >= n_ctx {
            return too_long(
                format!(
                    "This model's maximum context length is {n_ctx} tokens. However, your prompt has {n_prompt} tokens, which leaves no room for a completion. Please shorten it."
                ),
                param,
            );
        }
        let room = n_ctx - n_prompt;
        let cap = self.n_predict.unwrap_or(usize::MAX);
        match requested {
            Some(m) if m > room => too_long(
                format!(
                    "This model's maximum context length is {n_ctx} tokens. However, you requested {} tokens ({n_prompt} in the prompt, {m} for the completion). Please reduce the prompt or the completion length.",
                    n_prompt.saturating_add(m)
                ),
                "max_tokens",
            ),
            Some(m) => Ok(m.min(cap)),
            None => Ok(default.unwrap_or(cap).min(cap).min(room)),
        }
    }

    /// Admits, tokenises and submits `job.n` sequences (seeds `seed`,
    /// `seed + 1`, ...); returns their event receivers, in choice order.
    pub(crate) async fn start(
        &self,
        record: &Arc<Record>,
        job: Generation,
    ) -> Result<Vec<mpsc::UnboundedReceiver<Event>>, ApiError> {
        let Generation {
            input,
            mut params,
            options,
            n,
            requested,
            default_max,
            prompt_param,
        } = job;
        if self.engine.model().embedding().is_some() {
            return Err(ApiError::invalid_param(
                "model",
                format!(
                    "{} is an embedding model: it makes embeddings (/v1/embeddings), not text.",
                    self.model_name
                ),
            )
            .with_code("model_not_supported"));
        }
        let permits = self.admit(n)?;
        let prompt = self.tokenize(input).await?;
        params.max_tokens = self.limit(prompt.len(), requested, default_max, prompt_param)?;
        record.prompt(prompt.len());
        let seed = params.sampler.seed;
        let mut receivers = Vec::with_capacity(n);
        for (i, permit) in permits.into_iter().enumerate() {
            let mut params = params.clone();
            params.sampler.seed = seed.wrapping_add(i as u64);
            let (tx, rx) = mpsc::unbounded_channel();
            self.scheduler
                .submit(Job {
                    prompt: prompt.clone(),
                    params,
                    options: options.clone(),
                    sink: Box::new(TokioSink {
                        tx,
                        record: Arc::clone(record),
                    }),
                    permit,
                })
                .map_err(|e| match e {
                    bitnet_engine::Error::EngineStopped => ApiError::shutting_down(),
                    e => ApiError::internal(e.to_string()),
                })?;
            receivers.push(rx);
        }
        Ok(receivers)
    }
}

/// A generation a handler asks for.
pub struct Generation {
    pub input: Input,
    pub params: GenerationParams,
    pub options: SequenceOptions,
    /// Choices (independent sequences).
    pub n: usize,
    /// `max_tokens`, if given.
    pub requested: Option<usize>,
    /// The endpoint's default limit.
    pub default_max: Option<usize>,
    /// The field a prompt too long for the context is blamed on.
    pub prompt_param: &'static str,
}

/// One whole choice.
pub struct Choice {
    pub text: String,
    pub reason: bitnet_engine::StopReason,
    pub logprobs: Vec<TokenLogprobs>,
}

/// Gathers one sequence's answer.
async fn collect_one(mut rx: mpsc::UnboundedReceiver<Event>) -> Result<(Choice, Usage), ApiError> {
    let mut text = String::new();
    let mut logprobs = Vec::new();
    while let Some(event) = rx.recv().await {
        match event {
            Event::Logprobs(lp) => logprobs.push(lp),
            Event::Text(t) => text.push_str(&t),
            Event::Done { reason, usage } => {
                let choice = Choice {
                    text,
                    reason,
                    logprobs,
                };
                return Ok((choice, usage));
            }
            Event::Error(e) => return Err(e),
        }
    }
    Err(ApiError::internal(
        "the engine stopped before the answer was complete",
    ))
}

/// Gathers every choice; the usage counts the prompt once.
pub async fn collect(
    receivers: Vec<mpsc::UnboundedReceiver<Event>>,
) -> Result<(Vec<Choice>, Usage), ApiError> {
    let answers =
        futures_util::future::try_join_all(receivers.into_iter().map(collect_one)).await?;
    let prompt = answers.first().map_or(0, |(_, u)| u.prompt_tokens);
    let completion = answers.iter().map(|(_, u)| u.completion_tokens).sum();
    let choices = answers.into_iter().map(|(c, _)| c).collect();
    Ok((choices, Usage::new(prompt, completion)))
}

pub fn chat_messages(body: ChatBody) -> Result<Vec<ChatMessage>, ApiError> {
    if body.messages.is_empty() {
        return Err(ApiError::invalid_param(
            "messages",
            "Invalid 'messages': empty array. Expected an array with minimum length 1, but got an empty array instead.",
        )
        .with_code("empty_array"));
    }
    let mut out = Vec::with_capacity(body.messages.len());
    for (i, m) in body.messages.into_iter().enumerate() {
        let role = match m.role.as_str() {
            "system" | "developer" => "system",
            "user" => "user",
            "assistant" => "assistant",
            "tool" => "tool",
            other => {
                return Err(ApiError::invalid_param(
                    &format!("messages[{i}].role"),
                    format!(
                        "Invalid value: '{other}'. Supported values are: 'system', 'developer', 'user', 'assistant' and 'tool'."
                    ),
                )
                .with_code("invalid_value"));
            }
        };
        let content = match m.content {
            None => String::new(),
            Some(Content::Text(t)) => t,
            Some(Content::Parts(parts)) => {
                let mut text = String::new();
                for (j, part) in parts.into_iter().enumerate() {
                    match (part.kind.as_str(), part.text) {
                        ("text", Some(t)) => text.push_str(&t),
                        (kind, _) => {
                            return Err(ApiError::invalid_param(
                                &format!("messages[{i}].content[{j}].type"),
                                format!(
                                    "Invalid value: '{kind}'. This model reads text only: the supported value is 'text' (with a 'text' field)."
                                ),
                            )
                            .with_code("invalid_value"));
                        }
                    }
                }
                text
            }
        };
        out.push(ChatMessage::new(role, content));
    }
    Ok(out)
}
/// The input of a completion prompt (one prompt only).
pub fn prompt_input(prompt: Prompt) -> Result<Input, ApiError> {
    let several = || ApiError::invalid_param("prompt", "Only one prompt per request is supported.");
    Ok(match prompt {
        Prompt::Text(t) => Input::Text(t),
        Prompt::Tokens(ids) => Input::Ids(ids),
        Prompt::Texts(mut v) if v.len() == 1 => Input::Text(v.remove(0)),
        Prompt::TokenLists(mut v) if v.len() == 1 => Input::Ids(v.remove(0)),
        Prompt::Texts(_) | Prompt::TokenLists(_) => return Err(several()),
    })
}
