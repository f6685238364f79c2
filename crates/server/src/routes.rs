//! The HTTP endpoints: parse and validate, start the generation (module
//! `generation`), and answer with one JSON body or a stream.

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
use bitnet_engine::batch::Batcher;
use bitnet_engine::{Engine, SequenceOptions};

use crate::ShutdownHandle;
use crate::api::{self, ChatBody, Common, CompletionBody, Defaults};
use crate::error::ApiError;
use crate::generation::{Generation, Input, chat_messages, collect, prompt_input};
use crate::logprobs::Formatter;
use crate::metrics::{Endpoint, Metrics};
use crate::request_log::{self, Record, RequestLog};
use crate::stream::{self, StreamKind, StreamMeta};

/// Everything the handlers share.
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

pub(crate) struct Inner {
    pub(crate) engine: Arc<Engine>,
    pub(crate) scheduler: Batcher,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) shutdown: ShutdownHandle,
    pub(crate) model_name: String,
    pub(crate) created: u64,
    pub(crate) n_ctx: usize,
    pub(crate) n_predict: Option<usize>,
    /// Slots plus queue places: the most sequences one request may start.
    pub(crate) capacity: usize,
    pub(crate) formatter: Formatter,
    pub(crate) max_body: usize,
    pub(crate) next_id: AtomicU64,
    /// Places for embedding requests in progress (slots plus queue).
    pub(crate) embedding_requests: tokio::sync::Semaphore,
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
            embedding_requests: tokio::sync::Semaphore::new(
                config.parallel.saturating_add(config.queue).max(1),
            ),
        }))
    }

    pub(crate) fn inner(&self) -> &Inner {
        &self.0
    }
}

/// The routes.
pub fn router(
    state: AppState,
    max_body: usize,
    log: RequestLog,
    policy: Arc<crate::guard::Policy>,
) -> Router {
    Router::new()
        .route("/v1/chat/completions", post(chat))
        .route("/chat/completions", post(chat))
        .route("/v1/completions", post(completions))
        .route("/completions", post(completions))
        .route("/v1/models", get(models))
        .route("/models", get(models))
        .route("/v1/models/{*id}", get(model))
        .route("/v1/embeddings", post(crate::embeddings::embeddings))
        .route("/embeddings", post(crate::embeddings::embeddings))
        .route("/generate", post(generate))
        .route("/health", get(health))
        .route("/metrics", get(metrics))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(
            policy,
            crate::guard::check,
        ))
        .layer(axum::middleware::from_fn_with_state(
            log,
            request_log::middleware,
        ))
        .with_state(state)
}

impl Inner {
    pub(crate) fn body(
        &self,
        body: Result<Bytes, BytesRejection>,
    ) -> Result<serde_json::Value, ApiError> {
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

    pub(crate) fn fail(&self, e: ApiError) -> Response {
        self.metrics.error(e.status.as_u16());
        e.into_response()
    }
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
        s.0.metrics.render(&crate::metrics::Current {
            queued: s.0.scheduler.queued(),
            running: s.0.scheduler.running(),
            kv_cache_usage: s.0.scheduler.kv_cache_usage(),
        }),
    )
        .into_response()
}

async fn not_found(uri: Uri) -> Response {
    ApiError::not_found(uri.path()).into_response()
}

async fn method_not_allowed() -> Response {
    ApiError::method_not_allowed().into_response()
}
