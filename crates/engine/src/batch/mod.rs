//! Continuous batching: one thread that owns the compute and runs every
//! live sequence through each forward pass together. The HTTP server and
//! the Python package both drive it, so they batch the same way.
//!
//! # Shape
//!
//! [`spawn`] starts the *engine thread*, an ordinary OS thread that owns a
//! [`crate::Engine`]'s model and thread pool and up to
//! [`BatchConfig::parallel`] *slots*, each with its own KV cache (created
//! the first time the slot is used, with room for the whole context). It
//! runs a loop of *steps*. Each step builds one batch — the next token of
//! every sequence that is decoding, plus a bounded helping of prompt tokens
//! from sequences that are still being prefilled — and calls
//! `Model::forward` once. Every logits row then goes to its sequence's
//! [`SequenceState`] (sampler, UTF-8-safe detokeniser, stop strings,
//! limits), exactly the object [`crate::Engine::generate`] drives for a
//! single sequence, and the text it releases goes to the job's [`Sink`].
//!
//! Callers hold a [`Batcher`], a cheap clonable handle: they take a
//! [`Permit`] ([`Batcher::admit`]), then [`Batcher::submit`] a [`Job`]
//! carrying the prompt ids, the generation parameters and a sink. The sink
//! is whatever suits the caller: the server wraps a tokio channel, the
//! Python package uses [`channel`], whose receiver waits with a timeout so
//! the caller can look at signals between tokens.
//!
//! # Policy
//!
//! **Why batch.** Decoding one token of a 2B ternary model reads every
//! weight once, and on a CPU that read — not the arithmetic — is the cost.
//! Sequences decoded in the same pass read the weights once between them,
//! so the aggregate rate grows with the batch until the arithmetic catches
//! up. The scheduler never runs sequences one after the other: every step
//! serves every active sequence, sequences join as soon as a slot is free,
//! and leave the moment they finish.
//!
//! **Fair prefill.** While any sequence is decoding, a step takes at most
//! [`BatchConfig::prefill_chunk`] prompt tokens, handed out round-robin
//! across the sequences being prefilled, so a long prompt cannot stall the
//! others. With nothing decoding, a step takes up to the engine's batch
//! size. The forward pass is per-token exact (each row goes through the
//! same kernels whatever else is in the batch), so chunking and batching
//! change no result: greedy output equals `Engine::generate`'s.
//!
//! **Admission.** At most `parallel` sequences run and at most `queue` more
//! wait; [`Batcher::admit`] refuses beyond that ([`Busy`]) instead of
//! letting the wait grow without bound. A permit is held from admission
//! until the sequence is freed, so the count cannot drift.
//!
//! **Cancellation.** Every step the engine asks each sink whether its
//! receiver is gone; such a sequence is dropped at once and its slot is
//! free for the next job. The sink still gets an [`Event::Done`] with
//! [`StopReason::Cancelled`] and the tokens generated, for accounts kept
//! beside the receiver (the server's request log).
//!
//! **Exclusive work.** [`Batcher::run`] runs a closure on the engine thread
//! between two steps (whole-sequence logits, perplexity), so everything
//! that computes shares one thread pool without contention.
//!
//! **Failure.** A forward pass that fails, or panics, ends the sequences in
//! that batch with [`Failure::Internal`]; the thread lives on. Shutdown
//! ([`Batcher::shutdown`]) answers queued jobs with
//! [`Failure::ShuttingDown`], lets running sequences finish for a grace
//! period and then cancels them.

mod channel;
mod scheduler;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

pub use channel::{EventReceiver, EventSender, RecvError, channel};

use crate::engine::Engine;
use crate::error::{Error, Result};
use crate::logprobs::TokenLogprobs;
use crate::sequence::{GenerationParams, SequenceOptions, StopReason};

/// How the engine thread batches.
#[derive(Clone, Debug)]
pub struct BatchConfig {
    /// Sequences decoded together (slots, each with its own KV cache).
    pub parallel: usize,
    /// Jobs that may wait for a slot before [`Batcher::admit`] refuses.
    pub queue: usize,
    /// Prompt tokens per step while other sequences are decoding.
    pub prefill_chunk: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        BatchConfig {
            parallel: 4,
            queue: 64,
            prefill_chunk: 256,
        }
    }
}

/// How a finished sequence went.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Outcome {
    /// Why it ended.
    pub reason: StopReason,
    /// Prompt tokens.
    pub prompt_tokens: usize,
    /// Tokens generated (without end tokens).
    pub completion_tokens: usize,
    /// Milliseconds from submission to the first sampled token (queueing
    /// and prompt processing).
    pub prompt_ms: f64,
    /// Milliseconds from the first sampled token to the end.
    pub generation_ms: f64,
}

/// Why a job ended without an [`Outcome`].
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum Failure {
    /// The engine is shutting down and took no more work.
    #[error("the engine is shutting down")]
    ShuttingDown,
    /// The forward pass failed.
    #[error("{0}")]
    Internal(String),
    /// No slot runs and memory for a new one's KV cache is not available
    /// now (other programs took it since the engine started).
    #[error("{0}")]
    OutOfMemory(String),
}

/// What the engine thread tells a job's owner.
#[derive(Clone, Debug, PartialEq)]
pub enum Event {
    /// A generated token's log-probabilities, sent (before the step's
    /// text) for every output token when [`Job::options`] asks for them.
    Logprobs(TokenLogprobs),
    /// Text that became final.
    Text(String),
    /// The sequence ended; nothing follows.
    Done(Outcome),
    /// The job failed; nothing follows.
    Failed(Failure),
}

/// Where a job's events go.
pub trait Sink: Send + 'static {
    /// Delivers `event`; `false` when the receiver is gone.
    fn send(&self, event: Event) -> bool;
    /// Whether the receiver is gone (the job is then dropped).
    fn is_closed(&self) -> bool;
}

/// Called by the engine thread as it works (the server's metrics).
pub trait Observer: Send + Sync {
    /// One forward pass: `prompt` prompt tokens processed, `generated`
    /// tokens sampled.
    fn step(&self, prompt: usize, generated: usize) {
        let _ = (prompt, generated);
    }
    /// A sequence left its slot (`cancelled`: its receiver went away or the
    /// engine shut down).
    fn sequence_done(&self, cancelled: bool) {
        let _ = cancelled;
    }
    /// A sequence sampled its first token, `seconds` after it was submitted
    /// (time to first token: queueing and prompt processing).
    fn first_token(&self, seconds: f64) {
        let _ = seconds;
    }
    /// A sequence sampled another token, `seconds` after its previous one.
    fn token_interval(&self, seconds: f64) {
        let _ = seconds;
    }
    /// A sequence finished (not cancelled), `seconds` after it was submitted.
    fn request_latency(&self, seconds: f64) {
        let _ = seconds;
    }
}

/// An [`Observer`] that ignores everything.
pub struct NoObserver;

impl Observer for NoObserver {}

/// Jobs admitted and sequences running, shared by the handles and the
/// engine thread.
#[derive(Default)]
struct Load {
    /// Admitted and not yet freed (waiting or running).
    inflight: AtomicUsize,
    /// In a slot.
    active: AtomicUsize,
    /// Positions held in the KV caches of running sequences.
    kv_tokens: AtomicUsize,
}

/// A place in the system (queue or slot), returned when dropped.
pub struct Permit {
    load: Arc<Load>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.load.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// Slots and queue are full.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("all {limit} places (slots and queue) are taken")]
pub struct Busy {
    /// Slots plus queue places.
    pub limit: usize,
}

/// A sequence to generate.
pub struct Job {
    /// Prompt ids: non-empty and shorter than the context.
    pub prompt: Vec<u32>,
    /// What to generate.
    pub params: GenerationParams,
    /// What to report and obey besides (log-probabilities, grammars).
    pub options: SequenceOptions,
    /// Where the events go.
    pub sink: Box<dyn Sink>,
    /// Held until the sequence is freed.
    pub permit: Permit,
}

type Task = Box<dyn FnOnce(&Engine) + Send>;

enum Command {
    Submit(Job),
    Run(Task),
    Shutdown(Duration),
}

/// A handle on the engine thread; cheap to clone. The thread ends once
/// every handle is dropped and its work is done.
#[derive(Clone)]
pub struct Batcher {
    tx: mpsc::Sender<Command>,
    load: Arc<Load>,
    engine: Arc<Engine>,
    limit: usize,
    parallel: usize,
}

impl Batcher {
    /// Takes a place, or fails when slots and queue are full.
    pub fn admit(&self) -> std::result::Result<Permit, Busy> {
        let inflight = &self.load.inflight;
        let mut current = inflight.load(Ordering::SeqCst);
        loop {
            if current >= self.limit {
                return Err(Busy { limit: self.limit });
            }
            match inflight.compare_exchange(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    return Ok(Permit {
                        load: Arc::clone(&self.load),
                    });
                }
                Err(now) => current = now,
            }
        }
    }

    /// Hands a job to the engine thread. A prompt that is empty or longer
    /// than the context is refused here; so is any job once the thread has
    /// stopped ([`Error::EngineStopped`]).
    pub fn submit(&self, job: Job) -> Result<()> {
        let n_ctx = self.engine.n_ctx();
        if job.prompt.is_empty() {
            return Err(Error::EmptyPrompt);
        }
        if job.prompt.len() > n_ctx {
            return Err(Error::PromptTooLong {
                n_tokens: job.prompt.len(),
                n_ctx,
            });
        }
        self.tx
            .send(Command::Submit(job))
            .map_err(|_| Error::EngineStopped)
    }

    /// Runs `task` on the engine thread between two steps and returns its
    /// result (blocking the caller until then).
    pub fn run<T, F>(&self, task: F) -> Result<T>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> T + Send + 'static,
    {
        self.queue_task(task)?.wait()
    }

    /// Queues `task` for the engine thread; its result is in the returned
    /// [`Pending`].
    pub fn queue_task<T, F>(&self, task: F) -> Result<Pending<T>>
    where
        T: Send + 'static,
        F: FnOnce(&Engine) -> T + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let task: Task = Box::new(move |engine| {
            let _ = tx.send(task(engine));
        });
        self.tx
            .send(Command::Run(task))
            .map_err(|_| Error::EngineStopped)?;
        Ok(Pending(rx))
    }

    /// Stops taking work; running sequences end within `grace`.
    pub fn shutdown(&self, grace: Duration) {
        let _ = self.tx.send(Command::Shutdown(grace));
    }

    /// The engine whose model this thread runs.
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }

    /// Jobs admitted but not yet in a slot.
    pub fn queued(&self) -> usize {
        self.load
            .inflight
            .load(Ordering::Relaxed)
            .saturating_sub(self.running())
    }

    /// Sequences in a slot.
    pub fn running(&self) -> usize {
        self.load.active.load(Ordering::Relaxed)
    }

    /// The number of slots.
    pub fn slots(&self) -> usize {
        self.parallel
    }

    /// The fraction of the KV cache in use: positions held by running
    /// sequences over slots × context (vLLM's `kv_cache_usage_perc`).
    pub fn kv_cache_usage(&self) -> f64 {
        let capacity = self.parallel * self.engine.n_ctx();
        self.load.kv_tokens.load(Ordering::Relaxed) as f64 / capacity.max(1) as f64
    }
}

/// The result of a task queued with [`Batcher::queue_task`].
pub struct Pending<T>(mpsc::Receiver<T>);

impl<T> Pending<T> {
    /// Waits for the result.
    pub fn wait(self) -> Result<T> {
        // A task that panicked drops its sender without a result.
        self.0.recv().map_err(|_| Error::TaskPanicked)
    }

    /// Waits at most `timeout`: `None` if the task is not done yet.
    pub fn wait_timeout(&self, timeout: Duration) -> Option<Result<T>> {
        match self.0.recv_timeout(timeout) {
            Ok(value) => Some(Ok(value)),
            Err(mpsc::RecvTimeoutError::Timeout) => None,
            Err(mpsc::RecvTimeoutError::Disconnected) => Some(Err(Error::TaskPanicked)),
        }
    }
}

/// Starts the engine thread for `engine`.
pub fn spawn(
    engine: Arc<Engine>,
    config: &BatchConfig,
    observer: Arc<dyn Observer>,
) -> std::io::Result<(Batcher, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let load = Arc::new(Load::default());
    let parallel = config.parallel.max(1);
    let thread =
        scheduler::Scheduler::new(Arc::clone(&engine), config, rx, Arc::clone(&load), observer);
    let handle = std::thread::Builder::new()
        .name("bitnet-engine".into())
        .spawn(move || thread.run())?;
    let batcher = Batcher {
        tx,
        load,
        engine,
        limit: parallel.saturating_add(config.queue),
        parallel,
    };
    Ok((batcher, handle))
}
