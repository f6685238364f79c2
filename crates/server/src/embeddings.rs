//! `POST /v1/embeddings` (and `/embeddings`), as OpenAI and vLLM answer it,
//! for the BitNet embedding models.
//!
//! `input` is one text, a list of texts, one list of token ids or a list of
//! them (at most [`MAX_INPUTS`]). Texts are tokenised on tokio's blocking
//! pool as the model embeds them (BOS or end-of-text added per model); token
//! ids are embedded as given. The sequences then run through the model
//! together, on the engine thread between two generation steps, in groups
//! of at most [`GROUP_TOKENS`] tokens so that a large request neither holds
//! up running generations for long nor needs memory in proportion to its
//! size. `encoding_format: "base64"` (what the `openai` Python client asks
//! for by default) gives each vector's little-endian f32 bytes in base64.
//!
//! Requests in progress at once are capped at the slots plus queue places,
//! as generation is; more are answered 503.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use serde::{Deserialize, Serialize};

use crate::api;
use crate::error::ApiError;
use crate::metrics::Endpoint;
use crate::request_log::Record;
use crate::routes::{AppState, Inner};

/// The most inputs one request may carry (OpenAI's limit).
pub const MAX_INPUTS: usize = 2048;

/// The most tokens run through the model in one go (a sequence longer than
/// this runs alone).
pub const GROUP_TOKENS: usize = 8192;

/// `input`: text or token ids, one or many.
#[derive(Deserialize)]
#[serde(untagged)]
enum Input {
    Text(String),
    Tokens(Vec<u32>),
    Texts(Vec<String>),
    TokenLists(Vec<Vec<u32>>),
}

#[derive(Deserialize)]
struct Body {
    input: Input,
    #[serde(default)]
    model: Option<String>,
    #[serde(default)]
    encoding_format: Option<String>,
    #[serde(default)]
    dimensions: Option<u64>,
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Floats(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Usage {
    prompt_tokens: usize,
    total_tokens: usize,
}

#[derive(Serialize)]
struct EmbeddingList {
    object: &'static str,
    data: Vec<Embedding>,
    model: String,
    usage: Usage,
}

fn engine_error(e: bitnet_engine::Error) -> ApiError {
    match e {
        bitnet_engine::Error::PromptTooLong { .. } => {
            ApiError::invalid_param("input", e.to_string()).with_code("context_length_exceeded")
        }
        bitnet_engine::Error::EmptyPrompt
        | bitnet_engine::Error::InvalidArgument { .. }
        | bitnet_engine::Error::Tokenizer(_) => ApiError::invalid_param("input", e.to_string()),
        bitnet_engine::Error::EngineStopped => ApiError::shutting_down(),
        e => ApiError::internal(e.to_string()),
    }
}

/// The request's sequences, tokenised where they are texts.
async fn sequences(s: &Inner, input: Input) -> Result<Vec<Vec<u32>>, ApiError> {
    let count = match &input {
        // `[]` reads as an empty token list.
        Input::Tokens(ids) if ids.is_empty() => 0,
        Input::Text(_) | Input::Tokens(_) => 1,
        Input::Texts(v) => v.len(),
        Input::TokenLists(v) => v.len(),
    };
    if count == 0 {
        return Err(ApiError::invalid_param(
            "input",
            "'input' is an empty list; give at least one text.",
        ));
    }
    if count > MAX_INPUTS {
        return Err(ApiError::invalid_param(
            "input",
            format!("'input' has {count} items; at most {MAX_INPUTS} are allowed per request."),
        )
        .with_code("array_above_max_length"));
    }
    let texts = match input {
        Input::Tokens(ids) => return Ok(vec![ids]),
        Input::TokenLists(lists) => {
            if let Some(i) = lists.iter().position(Vec::is_empty) {
                return Err(ApiError::invalid_param(
                    "input",
                    format!("'input[{i}]' is empty; every token list must have at least one id."),
                ));
            }
            return Ok(lists);
        }
        Input::Text(t) => vec![t],
        Input::Texts(v) => v,
    };
    if let Some(i) = texts.iter().position(String::is_empty) {
        return Err(ApiError::invalid_param(
            "input",
            format!("'input[{i}]' is empty; every text must have at least one character."),
        ));
    }
    let engine = Arc::clone(&s.engine);
    tokio::task::spawn_blocking(move || {
        texts
            .iter()
            .map(|t| engine.embedding_tokens(t).map_err(engine_error))
            .collect::<Result<Vec<_>, _>>()
    })
    .await
    .map_err(|e| ApiError::internal(format!("tokenization failed: {e}")))?
}

/// Runs `seqs` through the model on the engine thread, group by group.
async fn embed(s: &Inner, seqs: Vec<Vec<u32>>) -> Result<Vec<Vec<f32>>, ApiError> {
    let mut groups: Vec<Vec<Vec<u32>>> = Vec::new();
    let mut group_tokens = 0;
    for seq in seqs {
        match groups.last_mut() {
            Some(group) if group_tokens + seq.len() <= GROUP_TOKENS => {
                group_tokens += seq.len();
                group.push(seq);
            }
            _ => {
                group_tokens = seq.len();
                groups.push(vec![seq]);
            }
        }
    }
    let mut vectors = Vec::new();
    for group in groups {
        let pending = s
            .scheduler
            .queue_task(move |engine| engine.embed_tokens(&group))
            .map_err(engine_error)?;
        let result = tokio::task::spawn_blocking(move || pending.wait())
            .await
            .map_err(|e| ApiError::internal(format!("embedding failed: {e}")))?;
        vectors.extend(result.and_then(|r| r).map_err(engine_error)?);
    }
    Ok(vectors)
}

fn base64_f32(v: &[f32]) -> String {
    let bytes: Vec<u8> = v.iter().flat_map(|x| x.to_le_bytes()).collect();
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

/// `POST /v1/embeddings`.
pub(crate) async fn embeddings(
    State(state): State<AppState>,
    Extension(record): Extension<Arc<Record>>,
    body: Result<Bytes, BytesRejection>,
) -> Response {
    let s = state.inner();
    s.metrics.request(Endpoint::Embeddings);
    let result = async {
        let value = s.body(body)?;
        let body: Body = api::from_value(&value)?;
        let base64 = match body.encoding_format.as_deref() {
            None | Some("float") => false,
            Some("base64") => true,
            Some(other) => {
                return Err(ApiError::invalid_param(
                    "encoding_format",
                    format!("Invalid 'encoding_format': '{other}'; use 'float' or 'base64'."),
                ));
            }
        };
        let Some(_) = s.engine.model().embedding() else {
            return Err(ApiError::invalid_param(
                "model",
                format!(
                    "{} is a language model, not an embedding model; it makes text \
                     (/v1/completions, /v1/chat/completions), not embeddings.",
                    s.model_name
                ),
            )
            .with_code("model_not_supported"));
        };
        let width = s.engine.model().hparams().n_embd;
        if let Some(d) = body.dimensions.filter(|&d| d != width as u64) {
            return Err(ApiError::invalid_param(
                "dimensions",
                format!("This model makes {width}-dimensional embeddings; it cannot give {d}."),
            ));
        }
        if s.shutdown.is_shutting_down() {
            return Err(ApiError::shutting_down());
        }
        let _permit = s
            .embedding_requests
            .try_acquire()
            .map_err(|_| ApiError::overloaded())?;
        let seqs = sequences(s, body.input).await?;
        let tokens = seqs.iter().map(Vec::len).sum();
        record.prompt(tokens);
        let vectors = embed(s, seqs).await?;
        let data = vectors
            .into_iter()
            .enumerate()
            .map(|(index, v)| Embedding {
                object: "embedding",
                index,
                embedding: if base64 {
                    Vector::Base64(base64_f32(&v))
                } else {
                    Vector::Floats(v)
                },
            })
            .collect();
        Ok(axum::Json(EmbeddingList {
            object: "list",
            data,
            model: match body.model {
                Some(name) if !name.is_empty() => name,
                _ => s.model_name.clone(),
            },
            usage: Usage {
                prompt_tokens: tokens,
                total_tokens: tokens,
            },
        })
        .into_response())
    };
    result.await.unwrap_or_else(|e| s.fail(e))
}
