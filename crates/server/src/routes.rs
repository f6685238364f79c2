//! The HTTP endpoints: parse, validate, tokenise (on the blocking pool),
//! admit, hand over to the engine, and answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use axum::Router;
use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Extension, Path, State};
use axum::http::{StatusCode, Uri, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use bitnet_engine::batch::{Batcher, Job, Permit};
use bitnet_engine::grammar::Grammar;
use bitnet_engine::{ChatMessage, Engine, GenerationParams, SequenceOptions, TokenLogprobs};
use tokio::sync::mpsc;

use crate::ShutdownHandle;
use crate::api::{self, ChatBody, Common, CompletionBody, Defaults, Prompt, Usage};
use crate::error::ApiError;
use crate::jobs::{Event, TokioSink};
use crate::logprobs::Formatter;
use crate::metrics::{Endpoint, Metrics};
use crate::request_log::{self, Record, RequestLog};
use crate::stream::{self, StreamKind, StreamMeta};

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

struct Inner {
    engine: Arc<Engine>,
    scheduler: Batcher,
    metrics: Arc<Metrics>,
    shutdown: ShutdownHandle,
    model_name: String,
    created: u64,
    n_ctx: usize,
    n_predict: Option<usize>,
    /// Slots plus queue places: the most sequences one request may start.
    capacity: usize,
    formatter: Formatter,
    max_body: usize,
    next_id: AtomicU64,
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl AppState {
    /// The shared state.
    pub fn new(
        engine: Arc<Engine>,
        scheduler: Batcher,
        metrics: Arc<Metrics>,
        shutdown: ShutdownHandle,
        config: &crate::ServerConfig,
    ) -> AppState {
        AppState(Arc::new(Inner {
            n_ctx: engine.n_ctx(),
            n_predict: config.n_predict,
            capacity: config.parallel.saturating_add(config.queue),
            formatter: Formatter::new(engine.tokenizer().clone()),
            engine,
            scheduler,
            metrics,
            shutdown,
            model_name: config.model_name.clone(),
            created: unix_now(),
            max_body: config.max_body_bytes,
            next_id: AtomicU64::new(1),
        }))
    }
}

/// The routes.
pub fn router(state: AppState, max_body: usize, log: RequestLog) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/generate", post(generate))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            log,
            request_log::middleware,
        ))
        .with_state(state)
}

/// What to tokenise.
enum Input {
    Chat(Vec<ChatMessage>),
    Text(String),
    Ids(Vec<u32>),
}

impl Inner {
    fn body(&self, body: Result<Bytes, BytesRejection>) -> Result<serde_json::Value, ApiError> {
        match body {
            Ok(bytes) => api::parse_json(&bytes),
            Err(rejection) if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE => {
                Err(ApiError::body_too_large(self.max_body))
            }
            Err(rejection) => Err(ApiError::invalid(format!(
                "Could not read the request body: {rejection}"
            ))),
        }
    }

    /// The `model` a response names. As llama-server does, one loaded model
    /// answers to any name, so that clients with a fixed model name (such
    /// as `gpt-3.5-turbo`) work; the response repeats the name asked for,
    /// else the server's (`--alias`).
    fn response_model(&self, common: &Common) -> String {
        match &common.model {
            Some(name) if !name.is_empty() => name.clone(),
            _ => self.model_name.clone(),
        }
    }

    fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }

    /// A seed for requests without one: different per request.
    fn fresh_seed(&self, id: u64) -> u64 {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64);
        (id.wrapping_mul(0x9E37_79B9_7F4A_7C15)) ^ (nanos << 20) ^ self.created
    }

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
    async fn grammar(&self, common: &Common) -> Result<Option<Grammar>, ApiError> {
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
    async fn start(
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

    fn fail(&self, e: ApiError) -> Response {
        self.metrics.error(e.status.as_u16());
        e.into_response()
    }
}

/// A generation a handler asks for.
struct Generation {
    input: Input,
    params: GenerationParams,
    options: SequenceOptions,
    /// Choices (independent sequences).
    n: usize,
    /// `max_tokens`, if given.
    requested: Option<usize>,
    /// The endpoint's default limit.
    default_max: Option<usize>,
    /// The field a prompt too long for the context is blamed on.
    prompt_param: &'static str,
}

/// One whole choice.
struct Choice {
    text: String,
    reason: bitnet_engine::StopReason,
    logprobs: Vec<TokenLogprobs>,
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
async fn collect(
    receivers: Vec<mpsc::UnboundedReceiver<Event>>,
) -> Result<(Vec<Choice>, Usage), ApiError> {
    let answers =
        futures_util::future::try_join_all(receivers.into_iter().map(collect_one)).await?;
    let prompt = answers.first().map_or(0, |(_, u)| u.prompt_tokens);
    let completion = answers.iter().map(|(_, u)| u.completion_tokens).sum();
    let choices = answers.into_iter().map(|(c, _)| c).collect();
    Ok((choices, Usage::new(prompt, completion)))
}

fn chat_messages(body: ChatBody) -> Result<Vec<ChatMessage>, ApiError> {
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
            Some(api::Content::Text(t)) => t,
            Some(api::Content::Parts(parts)) => {
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

async fn chat(
    State(s): State<AppState>,
    Extension(record): Extension<Arc<Record>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let s = &*s.0;
    s.metrics.request(Endpoint::Chat);
    let result = async {
        let value = s.body(body)?;
        let common: Common = api::from_value(&value)?;
        let chat: ChatBody = api::from_value(&value)?;
        common.reject_unsupported()?;
        let messages = chat_messages(chat)?;
        let id = s.next_id();
        let logprobs = common.logprobs(api::Endpoint::Chat)?;
        let job = Generation {
            input: Input::Chat(messages),
            params: common.params(&Defaults { temperature: 1.0 }, s.fresh_seed(id))?,
            options: SequenceOptions {
                logprobs,
                grammar: s.grammar(&common).await?,
            },
            n: common.n()?,
            requested: common.max_tokens()?,
            default_max: None,
            prompt_param: "messages",
        };
        let receivers = s.start(&record, job).await?;
        let meta = StreamMeta {
            id: format!("chatcmpl-{id}"),
            created: unix_now(),
            model: s.response_model(&common),
            include_usage: common.include_usage(),
            kind: StreamKind::Chat,
            logprobs: logprobs.map(|_| s.formatter.clone()),
        };
        if common.stream() {
            record.streamed();
            return Ok(stream::sse(receivers, meta, Arc::clone(&record)));
        }
        let (choices, usage) = collect(receivers).await?;
        let choices = choices
            .into_iter()
            .enumerate()
            .map(|(i, c)| api::ChatChoice {
                index: i as u32,
                message: api::MessageOut {
                    role: "assistant",
                    content: c.text,
                },
                logprobs: meta.logprobs.as_ref().map(|f| f.chat(&c.logprobs)),
                finish_reason: c.reason.finish_reason(),
            })
            .collect();
        Ok(axum::Json(api::ChatCompletion {
            id: meta.id,
            object: "chat.completion",
            created: meta.created,
            model: meta.model,
            choices,
            usage,
        })
        .into_response())
    };
    result.await.unwrap_or_else(|e| s.fail(e))
}

fn prompt_input(prompt: Prompt) -> Result<Input, ApiError> {
    let several = || ApiError::invalid_param("prompt", "Only one prompt per request is supported.");
    Ok(match prompt {
        Prompt::Text(t) => Input::Text(t),
        Prompt::Tokens(ids) => Input::Ids(ids),
        Prompt::Texts(mut v) if v.len() == 1 => Input::Text(v.remove(0)),
        Prompt::TokenLists(mut v) if v.len() == 1 => Input::Ids(v.remove(0)),
        Prompt::Texts(_) | Prompt::TokenLists(_) => return Err(several()),
    })
}

async fn completions(
    State(s): State<AppState>,
    Extension(record): Extension<Arc<Record>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let s = &*s.0;
    s.metrics.request(Endpoint::Completions);
    let result = async {
        let value = s.body(body)?;
        let common: Common = api::from_value(&value)?;
        let body: CompletionBody = api::from_value(&value)?;
        common.reject_unsupported()?;
        let input = prompt_input(body.prompt)?;
        let id = s.next_id();
        let logprobs = common.logprobs(api::Endpoint::Completions)?;
        let job = Generation {
            input,
            params: common.params(&Defaults { temperature: 1.0 }, s.fresh_seed(id))?,
            options: SequenceOptions {
                logprobs,
                grammar: s.grammar(&common).await?,
            },
            n: common.n()?,
            requested: common.max_tokens()?,
            // OpenAI's default for this endpoint.
            default_max: Some(16),
            prompt_param: "prompt",
        };
        let receivers = s.start(&record, job).await?;
        let meta = StreamMeta {
            id: format!("cmpl-{id}"),
            created: unix_now(),
            model: s.response_model(&common),
            include_usage: common.include_usage(),
            kind: StreamKind::Text,
            logprobs: logprobs.map(|_| s.formatter.clone()),
        };
        if common.stream() {
            record.streamed();
            return Ok(stream::sse(receivers, meta, Arc::clone(&record)));
        }
        let (choices, usage) = collect(receivers).await?;
        let choices = choices
            .into_iter()
            .enumerate()
            .map(|(i, c)| api::TextChoice {
                logprobs: meta.logprobs.as_ref().map(|f| f.text(&c.logprobs, &mut 0)),
                text: c.text,
                index: i as u32,
                finish_reason: Some(c.reason.finish_reason()),
            })
            .collect();
        Ok(axum::Json(api::TextCompletion {
            id: &meta.id,
            object: "text_completion",
            created: meta.created,
            model: &meta.model,
            choices,
            usage: Some(Some(usage)),
        })
        .into_response())
    };
    result.await.unwrap_or_else(|e| s.fail(e))
}

/// The simple API: greedy unless asked otherwise, 128 tokens by default.
async fn generate(
    State(s): State<AppState>,
    Extension(record): Extension<Arc<Record>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let s = &*s.0;
    s.metrics.request(Endpoint::Generate);
    let result = async {
        let value = s.body(body)?;
        let common: Common = api::from_value(&value)?;
        let body: CompletionBody = api::from_value(&value)?;
        common.reject_unsupported()?;
        if common.stream() {
            return Err(ApiError::invalid_param(
                "stream",
                "/generate does not stream; use /v1/completions with \"stream\": true.",
            ));
        }
        let simple_only = |param: &str| {
            Err(ApiError::invalid_param(
                param,
                format!("/generate gives one plain answer; use /v1/completions for '{param}'."),
            ))
        };
        if common.n.is_some_and(|n| n != 1) {
            return simple_only("n");
        }
        if common.logprobs(api::Endpoint::Completions)?.is_some() {
            return simple_only("logprobs");
        }
        let input = prompt_input(body.prompt)?;
        let id = s.next_id();
        let job = Generation {
            input,
            params: common.params(&Defaults { temperature: 0.0 }, s.fresh_seed(id))?,
            options: SequenceOptions {
                logprobs: None,
                grammar: s.grammar(&common).await?,
            },
            n: 1,
            requested: common.max_tokens()?,
            default_max: Some(128),
            prompt_param: "prompt",
        };
        let receivers = s.start(&record, job).await?;
        let (mut choices, usage) = collect(receivers).await?;
        let choice = choices
            .pop()
            .ok_or_else(|| ApiError::internal("no answer"))?;
        Ok(axum::Json(api::Generated {
            text: choice.text,
            finish_reason: choice.reason.finish_reason(),
            stop_reason: choice.reason,
            usage,
        })
        .into_response())
    };
    result.await.unwrap_or_else(|e| s.fail(e))
}

async fn models(State(s): State<AppState>) -> Response {
    let s = &*s.0;
    axum::Json(api::ModelList {
        object: "list",
        data: vec![card(s)],
    })
    .into_response()
}

fn card(s: &Inner) -> api::ModelCard<'_> {
    api::ModelCard {
        id: &s.model_name,
        object: "model",
        created: s.created,
        owned_by: "bitnet-rs",
    }
}

async fn model(State(s): State<AppState>, Path(id): Path<String>) -> Response {
    let s = &*s.0;
    if id == s.model_name {
        axum::Json(card(s)).into_response()
    } else {
        ApiError::model_not_found(&id).into_response()
    }
}

async fn health(State(s): State<AppState>) -> Response {
    let s = &*s.0;
    let (status, text) = if s.shutdown.is_shutting_down() {
        (StatusCode::SERVICE_UNAVAILABLE, "shutting_down")
    } else {
        (StatusCode::OK, "ok")
    };
    let body = serde_json::json!({
        "status": text,
        "model": s.model_name,
        "slots": s.scheduler.slots(),
        "slots_busy": s.scheduler.running(),
        "queue": s.scheduler.queued(),
    });
    (status, axum::Json(body)).into_response()
}

async fn metrics(State(s): State<AppState>) -> Response {
    (
        [(
            header::CONTENT_TYPE,
            "text/plain; version=0.0.4; charset=utf-8",
        )],
        s.0.metrics
            .render(s.0.scheduler.queued(), s.0.scheduler.running()),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(uri.path()).into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}
