//! The link to the engine thread ([`bitnet_engine::batch`]): a request's
//! events arrive on a tokio channel, already in the server's terms.

use std::sync::Arc;

use bitnet_engine::batch::{self, Failure, Sink};
use bitnet_engine::{StopReason, TokenLogprobs};
use tokio::sync::mpsc::UnboundedSender;

use crate::api::Usage;
use crate::error::ApiError;
use crate::request_log::Record;

/// What the engine tells a request.
#[derive(Debug)]
pub enum Event {
    /// A generated token's log-probabilities (when asked for).
    Logprobs(TokenLogprobs),
    /// Text that became final.
    Text(String),
    /// The sequence ended.
    Done {
        /// Why.
        reason: StopReason,
        /// Token counts.
        usage: Usage,
    },
    /// The request failed.
    Error(ApiError),
}

/// A [`Sink`] that forwards to a request's handler, and tells the
/// request's log record how the sequence ended (even when the handler is
/// gone: the engine reports a cancelled sequence too).
pub struct TokioSink {
    /// The handler's channel.
    pub tx: UnboundedSender<Event>,
    /// The request's log record.
    pub record: Arc<Record>,
}

impl Sink for TokioSink {
    fn send(&self, event: batch::Event) -> bool {
        let event = match event {
            batch::Event::Text(text) => Event::Text(text),
            batch::Event::Logprobs(lp) => Event::Logprobs(lp),
            batch::Event::Done(outcome) => {
                let finish = match outcome.reason {
                    StopReason::Cancelled if self.tx.is_closed() => "disconnected",
                    StopReason::Cancelled => "cancelled",
                    reason => reason.finish_reason(),
                };
                self.record.sequence_done(outcome.completion_tokens, finish);
                Event::Done {
                    reason: outcome.reason,
                    usage: Usage::new(outcome.prompt_tokens, outcome.completion_tokens),
                }
            }
            batch::Event::Failed(failure) => {
                self.record.sequence_done(0, "error");
                Event::Error(match failure {
                    Failure::ShuttingDown => ApiError::shutting_down(),
                    Failure::Internal(message) => ApiError::internal(message),
                    Failure::OutOfMemory(message) => ApiError::out_of_memory(message),
                })
            }
        };
        self.tx.send(event).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

impl batch::Observer for crate::metrics::Metrics {
    fn step(&self, prompt: usize, generated: usize) {
        crate::metrics::Metrics::step(self, prompt, generated);
    }

    fn sequence_done(&self, cancelled: bool) {
        crate::metrics::Metrics::sequence_done(self, cancelled);
    }

    fn first_token(&self, seconds: f64) {
        self.ttft.observe(seconds);
    }

    fn token_interval(&self, seconds: f64) {
        self.inter_token.observe(seconds);
    }

    fn request_latency(&self, seconds: f64) {
        self.request_latency.observe(seconds);
    }
}
