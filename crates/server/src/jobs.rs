//! The link to the engine thread ([`bitnet_engine::batch`]): a request's
//! events arrive on a tokio channel, already in the server's terms.

use bitnet_engine::StopReason;
use bitnet_engine::batch::{self, Failure, Sink};
use tokio::sync::mpsc::UnboundedSender;

use crate::api::Usage;
use crate::error::ApiError;

/// What the engine tells a request.
#[derive(Debug)]
pub enum Event {
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

/// A [`Sink`] that forwards to a request's handler.
pub struct TokioSink(pub UnboundedSender<Event>);

impl Sink for TokioSink {
    fn send(&self, event: batch::Event) -> bool {
        let event = match event {
            batch::Event::Text(text) => Event::Text(text),
            batch::Event::Done(outcome) => Event::Done {
                reason: outcome.reason,
                usage: Usage::new(outcome.prompt_tokens, outcome.completion_tokens),
            },
            batch::Event::Failed(Failure::ShuttingDown) => Event::Error(ApiError::shutting_down()),
            batch::Event::Failed(Failure::Internal(message)) => {
                Event::Error(ApiError::internal(message))
            }
        };
        self.0.send(event).is_ok()
    }

    fn is_closed(&self) -> bool {
        self.0.is_closed()
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
