//! The engine thread: admission, slots, and one batched forward pass per
//! step (see the crate documentation for the policy).

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bitnet_engine::{Engine, GenerationParams, SequenceState, StopReason};
use bitnet_model::{BatchToken, KvCache, Model, Scratch};
use tokio::sync::mpsc::UnboundedSender;

use crate::ServerConfig;
use crate::api::Usage;
use crate::error::ApiError;
use crate::metrics::Metrics;

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

/// A place in the system (queue or slot), returned when dropped.
pub struct Permit {
    metrics: Arc<Metrics>,
}

impl Drop for Permit {
    fn drop(&mut self) {
        self.metrics.inflight.fetch_sub(1, Ordering::SeqCst);
    }
}

/// A request for the engine.
pub struct Job {
    /// Prompt ids (non-empty, shorter than the context).
    pub prompt: Vec<u32>,
    /// What to generate.
    pub params: GenerationParams,
    /// Where the events go; closed = the client is gone.
    pub tx: UnboundedSender<Event>,
    /// Held until the sequence is freed.
    pub permit: Permit,
}

enum Command {
    Submit(Job),
    Shutdown(Duration),
}

/// The HTTP side's handle on the engine thread.
#[derive(Clone)]
pub struct Client {
    tx: mpsc::Sender<Command>,
    metrics: Arc<Metrics>,
    limit: usize,
}

impl Client {
    /// Takes a place, or fails with 503 when slots and queue are full.
    pub fn admit(&self) -> Result<Permit, ApiError> {
        let inflight = &self.metrics.inflight;
        let mut current = inflight.load(Ordering::SeqCst);
        loop {
            if current >= self.limit {
                return Err(ApiError::overloaded());
            }
            match inflight.compare_exchange(
                current,
                current + 1,
                Ordering::SeqCst,
                Ordering::SeqCst,
            ) {
                Ok(_) => {
                    return Ok(Permit {
                        metrics: Arc::clone(&self.metrics),
                    });
                }
                Err(now) => current = now,
            }
        }
    }

    /// Hands a job to the engine.
    pub fn submit(&self, job: Job) -> Result<(), ApiError> {
        self.tx
            .send(Command::Submit(job))
            .map_err(|_| ApiError::shutting_down())
    }

    /// Asks the engine to stop taking work and to end running sequences
    /// within `grace`.
    pub fn shutdown(&self, grace: Duration) {
        let _ = self.tx.send(Command::Shutdown(grace));
    }
}

/// Starts the engine thread.
pub fn spawn(
    engine: Arc<Engine>,
    config: &ServerConfig,
    metrics: Arc<Metrics>,
) -> std::io::Result<(Client, JoinHandle<()>)> {
    let (tx, rx) = mpsc::channel();
    let n_ctx = engine.n_ctx();
    let model: &Model = engine.model();
    let kv_type = engine.options().kv_type;
    let caches = (0..config.parallel)
        .map(|_| model.new_cache(n_ctx, kv_type))
        .collect();
    let scheduler = Scheduler {
        n_ctx,
        n_vocab: model.hparams().n_vocab,
        n_batch: engine.options().n_batch.max(1),
        prefill_chunk: config.prefill_chunk.max(1),
        engine,
        rx,
        metrics: Arc::clone(&metrics),
        slots: (0..config.parallel).map(|_| None).collect(),
        caches,
        waiting: VecDeque::new(),
        scratch: Scratch::new(),
        rr: 0,
        deadline: None,
        disconnected: false,
    };
    let handle = std::thread::Builder::new()
        .name("bitnet-engine".into())
        .spawn(move || scheduler.run())?;
    let client = Client {
        tx,
        limit: config.parallel + config.queue,
        metrics,
    };
    Ok((client, handle))
}

struct Running {
    tx: UnboundedSender<Event>,
    _permit: Permit,
    state: SequenceState,
    prompt: Vec<u32>,
    /// Prompt tokens in the cache.
    fed: usize,
    /// The last sampled token, to be fed next step.
    pending: Option<u32>,
}

struct Scheduler {
    engine: Arc<Engine>,
    rx: mpsc::Receiver<Command>,
    metrics: Arc<Metrics>,
    slots: Vec<Option<Running>>,
    caches: Vec<KvCache>,
    waiting: VecDeque<Job>,
    scratch: Scratch,
    n_ctx: usize,
    n_vocab: usize,
    n_batch: usize,
    prefill_chunk: usize,
    /// Where round-robin prefill starts next.
    rr: usize,
    /// Set by shutdown: running sequences are cancelled after it.
    deadline: Option<Instant>,
    disconnected: bool,
}

impl Scheduler {
    fn run(mut self) {
        loop {
            self.receive();
            self.drop_cancelled();
            if self.deadline.is_some_and(|d| Instant::now() >= d) {
                for i in 0..self.slots.len() {
                    self.finish(i, StopReason::Cancelled);
                }
            }
            self.admit();
            if self.slots.iter().all(Option::is_none) {
                if self.deadline.is_some() || (self.disconnected && self.waiting.is_empty()) {
                    return;
                }
                continue;
            }
            self.step();
        }
    }

    /// Takes commands: waits for one when there is nothing to do.
    fn receive(&mut self) {
        let idle = self.slots.iter().all(Option::is_none) && self.waiting.is_empty();
        if idle && self.deadline.is_none() && !self.disconnected {
            match self.rx.recv() {
                Ok(cmd) => self.command(cmd),
                Err(_) => self.disconnected = true,
            }
        }
        loop {
            match self.rx.try_recv() {
                Ok(cmd) => self.command(cmd),
                Err(mpsc::TryRecvError::Empty) => break,
                Err(mpsc::TryRecvError::Disconnected) => {
                    self.disconnected = true;
                    break;
                }
            }
        }
    }

    fn command(&mut self, cmd: Command) {
        match cmd {
            Command::Submit(job) if self.deadline.is_some() => {
                let _ = job.tx.send(Event::Error(ApiError::shutting_down()));
            }
            Command::Submit(job) => self.waiting.push_back(job),
            Command::Shutdown(grace) => {
                let at = Instant::now() + grace;
                self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
                for job in self.waiting.drain(..) {
                    let _ = job.tx.send(Event::Error(ApiError::shutting_down()));
                }
            }
        }
    }

    /// Frees the slots (and queue places) of clients that went away.
    fn drop_cancelled(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(|r| r.tx.is_closed()) {
                self.free(i, true);
            }
        }
        self.waiting.retain(|job| !job.tx.is_closed());
    }

    /// Moves waiting jobs into free slots, oldest first.
    fn admit(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].is_some() {
                continue;
            }
            let Some(job) = self.waiting.pop_front() else {
                return;
            };
            self.caches[i].clear();
            let state = SequenceState::new(self.engine.tokenizer(), &job.prompt, job.params);
            self.slots[i] = Some(Running {
                tx: job.tx,
                _permit: job.permit,
                state,
                prompt: job.prompt,
                fed: 0,
                pending: None,
            });
            self.metrics.active.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Ends the sequence in slot `i` with a final event, sent after the slot
    /// and the permit are released (so a client that sees the end can be
    /// admitted again at once).
    fn finish(&mut self, i: usize, reason: StopReason) {
        if let Some(r) = self.release(i, reason == StopReason::Cancelled) {
            let usage = Usage::new(r.prompt.len(), r.state.generated().len());
            let Running { tx, _permit, .. } = r;
            drop(_permit);
            let _ = tx.send(Event::Done { reason, usage });
        }
    }

    /// Frees slot `i` without a word (the client is gone).
    fn free(&mut self, i: usize, cancelled: bool) {
        self.release(i, cancelled);
    }

    fn release(&mut self, i: usize, cancelled: bool) -> Option<Running> {
        let r = self.slots[i].take()?;
        self.caches[i].clear();
        self.metrics.active.fetch_sub(1, Ordering::SeqCst);
        self.metrics.sequence_done(cancelled);
        Some(r)
    }

    /// One forward pass over every decoding sequence plus a share of prompt
    /// tokens.
    fn step(&mut self) {
        let mut batch = Vec::new();
        // Slots whose logits come back, in row order.
        let mut owners = Vec::new();
        for (i, slot) in self.slots.iter().enumerate() {
            if let Some(token) = slot.as_ref().and_then(|r| r.pending) {
                batch.push(batch_token(i, token, true));
                owners.push(i);
            }
        }
        let decoding = batch.len();
        let mut budget = if decoding > 0 {
            self.prefill_chunk
        } else {
            self.n_batch
        };
        let n = self.slots.len();
        let mut last_served = None;
        for k in 0..n {
            if budget == 0 {
                break;
            }
            let i = (self.rr + k) % n;
            let Some(r) = self.slots[i].as_mut() else {
                continue;
            };
            if r.pending.is_some() || r.fed >= r.prompt.len() {
                continue;
            }
            let take = budget.min(r.prompt.len() - r.fed);
            for j in r.fed..r.fed + take {
                batch.push(batch_token(i, r.prompt[j], j + 1 == r.prompt.len()));
            }
            r.fed += take;
            if r.fed == r.prompt.len() {
                owners.push(i);
            }
            budget -= take;
            last_served = Some(i);
        }
        if let Some(i) = last_served {
            self.rr = (i + 1) % n;
        }
        if batch.is_empty() {
            return;
        }

        let engine = &*self.engine;
        let forward =
            engine
                .model()
                .forward(engine.pool(), &batch, &mut self.caches, &mut self.scratch);
        let logits = match forward {
            Ok(logits) => logits,
            Err(e) => {
                let message = format!("forward pass failed: {e}");
                let mut seqs: Vec<usize> = batch.iter().map(|b| b.seq).collect();
                seqs.dedup();
                for i in seqs {
                    if let Some(Running { tx, _permit, .. }) = self.release(i, false) {
                        drop(_permit);
                        let _ = tx.send(Event::Error(ApiError::internal(message.clone())));
                    }
                }
                return;
            }
        };
        let mut generated = 0;
        let mut ended: Vec<(usize, Option<StopReason>)> = Vec::new();
        for (row, &i) in logits.chunks_exact(self.n_vocab).zip(&owners) {
            let room = self.caches[i].len() < self.n_ctx;
            let Some(r) = self.slots[i].as_mut() else {
                continue;
            };
            let step = r.state.step(row, room);
            generated += usize::from(step.token.is_some());
            if !step.text.is_empty() && r.tx.send(Event::Text(step.text)).is_err() {
                ended.push((i, None));
                continue;
            }
            r.pending = step.token;
            match step.finished {
                Some(reason) => ended.push((i, Some(reason))),
                // An unfinished step always has a token; without one the
                // sequence cannot go on.
                None if step.token.is_none() => ended.push((i, Some(StopReason::Cancelled))),
                None => {}
            }
        }
        self.metrics.step(batch.len() - decoding, generated);
        for (i, reason) in ended {
            match reason {
                Some(reason) => self.finish(i, reason),
                None => self.free(i, true),
            }
        }
    }
}

fn batch_token(seq: usize, token: u32, logits: bool) -> BatchToken {
    BatchToken { seq, token, logits }
}
