//! Server-sent events: the engine's events as OpenAI chunks, ending with
//! `data: [DONE]`.
//!
//! The stream owns the request's receiver; when the client disconnects,
//! hyper drops the body, the receiver goes with it, and the engine sees the
//! closed channel at its next step and frees the slot.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;
use tokio::sync::mpsc::error::TryRecvError;

use crate::api::{ChatChunk, ChunkChoice, Delta, TextChoice, TextCompletion, Usage};
use crate::error::ApiError;
use crate::jobs::Event;
use crate::request_log::Record;

/// Which chunk format.
#[derive(Clone, Copy)]
pub enum StreamKind {
    /// `chat.completion.chunk`.
    Chat,
    /// `text_completion`.
    Text,
}

/// What every chunk repeats.
pub struct StreamMeta {
    pub id: String,
    pub created: u64,
    pub model: String,
    pub include_usage: bool,
    pub kind: StreamKind,
}

impl StreamMeta {
    /// A chunk with `text` (and `role` for the first chat chunk), or the
    /// closing one with `finish`.
    fn chunk(&self, role: bool, text: Option<String>, finish: Option<&'static str>) -> SseEvent {
        // With include_usage, every chunk but the last carries `"usage": null`.
        let usage = self.include_usage.then_some(None);
        match self.kind {
            StreamKind::Chat => json_event(&ChatChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: vec![ChunkChoice {
                    index: 0,
                    delta: Delta {
                        role: role.then_some("assistant"),
                        content: text,
                    },
                    logprobs: None,
                    finish_reason: finish,
                }],
                usage,
            }),
            StreamKind::Text => json_event(&TextCompletion {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: vec![TextChoice {
                    text: text.unwrap_or_default(),
                    index: 0,
                    logprobs: None,
                    finish_reason: finish,
                }],
                usage,
            }),
        }
    }

    /// The last chunk: no choices, the usage.
    fn usage_chunk(&self, usage: Usage) -> SseEvent {
        match self.kind {
            StreamKind::Chat => json_event(&ChatChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: Vec::new(),
                usage: Some(Some(usage)),
            }),
            StreamKind::Text => json_event(&TextCompletion {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: Vec::new(),
                usage: Some(Some(usage)),
            }),
        }
    }
}

fn json_event<T: Serialize>(value: &T) -> SseEvent {
    match serde_json::to_string(value) {
        Ok(json) => SseEvent::default().data(json),
        Err(e) => error_event(&ApiError::internal(format!(
            "cannot serialize a chunk: {e}"
        ))),
    }
}

fn error_event(e: &ApiError) -> SseEvent {
    let json = serde_json::to_string(&e.body()).unwrap_or_else(|_| "{\"error\":{}}".into());
    SseEvent::default().data(json)
}

fn done() -> SseEvent {
    SseEvent::default().data("[DONE]")
}

enum Closing {
    Done(&'static str, Usage),
    Failed(ApiError),
}

enum Phase {
    Start,
    Body,
    Over,
}

/// The SSE response for a request's events.
pub fn sse(rx: UnboundedReceiver<Event>, meta: StreamMeta, record: Arc<Record>) -> Response {
    // The stream holds the request's log record: the line is written when
    // the stream ends or the client goes away.
    let events = stream::unfold(
        (rx, meta, Phase::Start, record),
        |(mut rx, meta, phase, record)| async move {
            let mut out = match phase {
                Phase::Start => {
                    let first = match meta.kind {
                        StreamKind::Chat => vec![meta.chunk(true, Some(String::new()), None)],
                        StreamKind::Text => Vec::new(),
                    };
                    return Some((first, (rx, meta, Phase::Body, record)));
                }
                Phase::Over => return None,
                Phase::Body => {
                    let mut text = String::new();
                    let mut end = None;
                    // Text that piled up while the client was slower than the
                    // engine goes out as one chunk.
                    let mut next = rx.recv().await;
                    loop {
                        match next {
                            Some(Event::Text(t)) => text.push_str(&t),
                            Some(Event::Done { reason, usage }) => {
                                end = Some(Closing::Done(reason.finish_reason(), usage));
                                break;
                            }
                            Some(Event::Error(e)) => {
                                end = Some(Closing::Failed(e));
                                break;
                            }
                            None => {
                                end = Some(Closing::Failed(ApiError::internal(
                                    "the engine stopped before the answer was complete",
                                )));
                                break;
                            }
                        }
                        match rx.try_recv() {
                            Ok(event) => next = Some(event),
                            Err(TryRecvError::Empty) => break,
                            Err(TryRecvError::Disconnected) => next = None,
                        }
                    }
                    let mut out = Vec::new();
                    if !text.is_empty() {
                        out.push(meta.chunk(false, Some(text), None));
                    }
                    match end {
                        None => return Some((out, (rx, meta, Phase::Body, record))),
                        Some(Closing::Done(finish, usage)) => {
                            out.push(meta.chunk(false, None, Some(finish)));
                            if meta.include_usage {
                                out.push(meta.usage_chunk(usage));
                            }
                        }
                        Some(Closing::Failed(e)) => out.push(error_event(&e)),
                    }
                    out
                }
            };
            out.push(done());
            Some((out, (rx, meta, Phase::Over, record)))
        },
    )
    .flat_map(|events| stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    Sse::new(events)
        .keep_alive(KeepAlive::default())
        .into_response()
}
