//! Server-sent events: the engine's events as OpenAI chunks, ending with
//! `data: [DONE]`.
//!
//! The stream owns the request's receivers (one per choice, `n` of them);
//! when the client disconnects, hyper drops the body, the receivers go with
//! it, and the engine sees the closed channels at its next step and frees
//! the slots.
//!
//! The choices' events are merged as they come, so the chunks of `n > 1`
//! choices interleave, each with its `index`. Whatever piled up while the
//! client was slower than the engine goes out as one chunk per choice.
//! Each choice ends with its own chunk carrying `finish_reason`; after the
//! last, the usage chunk (when asked for: the prompt counted once, the
//! completions summed) and `[DONE]`.

use std::convert::Infallible;
use std::sync::Arc;

use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use bitnet_engine::TokenLogprobs;
use futures_util::FutureExt;
use futures_util::stream::{self, BoxStream, StreamExt};
use serde::Serialize;
use tokio::sync::mpsc::UnboundedReceiver;

use crate::api::{ChatChunk, ChunkChoice, Delta, TextChoice, TextCompletion, Usage};
use crate::error::ApiError;
use crate::jobs::Event;
use crate::logprobs::Formatter;
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
    /// Set when the request asked for log-probabilities.
    pub logprobs: Option<Formatter>,
}

/// What one chunk says about one choice.
struct Piece {
    index: usize,
    role: bool,
    text: Option<String>,
    logprobs: Vec<TokenLogprobs>,
    finish: Option<&'static str>,
}

impl StreamMeta {
    /// The chunk for `piece`. `offset` is the choice's text length so far
    /// (for completions' `text_offset`).
    fn chunk(&self, piece: Piece, offset: &mut usize) -> SseEvent {
        // With include_usage, every chunk but the last carries `"usage": null`.
        let usage = self.include_usage.then_some(None);
        let with_logprobs = self
            .logprobs
            .as_ref()
            .filter(|_| !piece.logprobs.is_empty());
        match self.kind {
            StreamKind::Chat => json_event(&ChatChunk {
                id: &self.id,
                object: "chat.completion.chunk",
                created: self.created,
                model: &self.model,
                choices: vec![ChunkChoice {
                    index: piece.index as u32,
                    delta: Delta {
                        role: piece.role.then_some("assistant"),
                        content: piece.text,
                    },
                    logprobs: with_logprobs.map(|f| f.chat(&piece.logprobs)),
                    finish_reason: piece.finish,
                }],
                usage,
            }),
            StreamKind::Text => json_event(&TextCompletion {
                id: &self.id,
                object: "text_completion",
                created: self.created,
                model: &self.model,
                choices: vec![TextChoice {
                    logprobs: with_logprobs.map(|f| f.text(&piece.logprobs, offset)),
                    text: piece.text.unwrap_or_default(),
                    index: piece.index as u32,
                    finish_reason: piece.finish,
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

/// The per-choice state of a stream.
#[derive(Default)]
struct ChoiceState {
    text: String,
    logprobs: Vec<TokenLogprobs>,
    finish: Option<&'static str>,
    /// Characters sent so far (`text_offset`).
    offset: usize,
    done: bool,
}

struct State {
    events: BoxStream<'static, (usize, Event)>,
    meta: StreamMeta,
    choices: Vec<ChoiceState>,
    usage: Usage,
    started: bool,
    over: bool,
    /// Held so the request is logged when the stream ends or is dropped.
    _record: Arc<Record>,
}

impl State {
    /// Takes one event; `Err` ends the stream with that error.
    fn take(&mut self, index: usize, event: Event) -> Result<(), ApiError> {
        let choice = &mut self.choices[index];
        match event {
            Event::Logprobs(lp) => choice.logprobs.push(lp),
            Event::Text(t) => choice.text.push_str(&t),
            Event::Done { reason, usage } => {
                choice.finish = Some(reason.finish_reason());
                choice.done = true;
                self.usage = Usage::new(
                    usage.prompt_tokens,
                    self.usage.completion_tokens + usage.completion_tokens,
                );
            }
            Event::Error(e) => return Err(e),
        }
        Ok(())
    }

    /// The chunks for what has piled up, choice by choice.
    fn flush(&mut self, order: &[usize], out: &mut Vec<SseEvent>) {
        for &index in order {
            let c = &mut self.choices[index];
            if !c.text.is_empty() || !c.logprobs.is_empty() {
                let piece = Piece {
                    index,
                    role: false,
                    text: Some(std::mem::take(&mut c.text)),
                    logprobs: std::mem::take(&mut c.logprobs),
                    finish: None,
                };
                out.push(self.meta.chunk(piece, &mut c.offset));
            }
            if let Some(finish) = c.finish.take() {
                let piece = Piece {
                    index,
                    role: false,
                    text: None,
                    logprobs: Vec::new(),
                    finish: Some(finish),
                };
                out.push(self.meta.chunk(piece, &mut c.offset));
            }
        }
    }

    /// The next batch of SSE events, or `None` once `[DONE]` went out.
    async fn next_events(&mut self) -> Option<Vec<SseEvent>> {
        if self.over {
            return None;
        }
        let mut out = Vec::new();
        if !self.started {
            self.started = true;
            if let StreamKind::Chat = self.meta.kind {
                for index in 0..self.choices.len() {
                    let piece = Piece {
                        index,
                        role: true,
                        text: Some(String::new()),
                        logprobs: Vec::new(),
                        finish: None,
                    };
                    out.push(self.meta.chunk(piece, &mut 0));
                }
                return Some(out);
            }
        }
        let mut order: Vec<usize> = Vec::new();
        let mut next = self.events.next().await;
        let failure = loop {
            let Some((index, event)) = next else {
                break Some(ApiError::internal(
                    "the engine stopped before the answer was complete",
                ));
            };
            if !order.contains(&index) {
                order.push(index);
            }
            if let Err(e) = self.take(index, event) {
                break Some(e);
            }
            if self.choices.iter().all(|c| c.done) {
                break None;
            }
            // Whatever else is ready goes into the same chunks.
            match self.events.next().now_or_never() {
                Some(event) => next = event,
                None => break None,
            }
        };
        self.flush(&order, &mut out);
        if let Some(e) = failure {
            out.push(error_event(&e));
        } else if !self.choices.iter().all(|c| c.done) {
            return Some(out);
        } else if self.meta.include_usage {
            out.push(self.meta.usage_chunk(self.usage));
        }
        out.push(done());
        self.over = true;
        Some(out)
    }
}

/// The SSE response for a request's choices (one receiver each).
pub fn sse(
    receivers: Vec<UnboundedReceiver<Event>>,
    meta: StreamMeta,
    record: Arc<Record>,
) -> Response {
    let n = receivers.len();
    let events = stream::select_all(receivers.into_iter().enumerate().map(|(index, rx)| {
        stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|e| (e, rx)) })
            .map(move |e| (index, e))
            .boxed()
    }))
    .boxed();
    let state = State {
        events,
        meta,
        choices: (0..n).map(|_| ChoiceState::default()).collect(),
        usage: Usage::new(0, 0),
        started: false,
        over: false,
        _record: record,
    };
    let body = stream::unfold(state, |mut state| async move {
        let events = state.next_events().await?;
        Some((events, state))
    })
    .flat_map(|events| stream::iter(events.into_iter().map(Ok::<_, Infallible>)));
    Sse::new(body)
        .keep_alive(KeepAlive::default())
        .into_response()
}
