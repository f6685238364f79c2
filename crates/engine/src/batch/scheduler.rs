//! The engine thread's loop: admission into slots, and one batched forward
//! pass per step (the policy is in the module above).

use std::collections::VecDeque;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use bitnet_model::{BatchToken, KvCache, Scratch};

use super::{BatchConfig, Command, Event, Failure, Job, Load, Observer, Outcome, Permit, Sink};
use crate::engine::Engine;
use crate::sequence::{SequenceState, StopReason};

struct Running {
    sink: Box<dyn Sink>,
    _permit: Permit,
    state: SequenceState,
    prompt: Vec<u32>,
    /// Prompt tokens in the cache.
    fed: usize,
    /// The last sampled token, to be fed next step.
    pending: Option<u32>,
    submitted: Instant,
    first_token: Option<Instant>,
    /// When the last token was sampled.
    last_token: Option<Instant>,
}

struct Waiting {
    job: Job,
    submitted: Instant,
}

pub(super) struct Scheduler {
    engine: Arc<Engine>,
    rx: mpsc::Receiver<Command>,
    load: Arc<Load>,
    observer: Arc<dyn Observer>,
    /// Occupied or free slots; `caches[i]` belongs to `slots[i]`. Both grow
    /// (to `parallel`) only when every existing slot is busy.
    slots: Vec<Option<Running>>,
    caches: Vec<KvCache>,
    parallel: usize,
    waiting: VecDeque<Waiting>,
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
    pub(super) fn new(
        engine: Arc<Engine>,
        config: &BatchConfig,
        rx: mpsc::Receiver<Command>,
        load: Arc<Load>,
        observer: Arc<dyn Observer>,
    ) -> Scheduler {
        Scheduler {
            n_ctx: engine.n_ctx(),
            n_vocab: engine.model().hparams().n_vocab,
            n_batch: engine.options().n_batch.max(1),
            prefill_chunk: config.prefill_chunk.max(1),
            parallel: config.parallel.max(1),
            engine,
            rx,
            load,
            observer,
            slots: Vec::new(),
            caches: Vec::new(),
            waiting: VecDeque::new(),
            scratch: Scratch::new(),
            rr: 0,
            deadline: None,
            disconnected: false,
        }
    }

    pub(super) fn run(mut self) {
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
            if let Err(panic) = catch_unwind(AssertUnwindSafe(|| self.step())) {
                self.fail_all(format!(
                    "the forward pass panicked: {}",
                    panic_message(&*panic)
                ));
            }
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
                job.sink.send(Event::Failed(Failure::ShuttingDown));
            }
            Command::Submit(job) => self.waiting.push_back(Waiting {
                job,
                submitted: Instant::now(),
            }),
            // A task that panics drops its result channel, which its caller
            // sees as an error; the thread goes on.
            Command::Run(task) => {
                let engine = &*self.engine;
                let _ = catch_unwind(AssertUnwindSafe(|| task(engine)));
            }
            Command::Shutdown(grace) => {
                let at = Instant::now() + grace;
                self.deadline = Some(self.deadline.map_or(at, |d| d.min(at)));
                for w in self.waiting.drain(..) {
                    w.job.sink.send(Event::Failed(Failure::ShuttingDown));
                }
            }
        }
    }

    /// Frees the slots (and queue places) of receivers that went away. The
    /// sink still gets its `Done` with [`StopReason::Cancelled`] and the
    /// tokens generated, for whoever keeps accounts beside the receiver.
    fn drop_cancelled(&mut self) {
        for i in 0..self.slots.len() {
            if self.slots[i].as_ref().is_some_and(|r| r.sink.is_closed()) {
                self.finish(i, StopReason::Cancelled);
            }
        }
        self.waiting.retain(|w| !w.job.sink.is_closed());
    }

    /// A free slot, adding one (with its cache) if all are busy, there may
    /// be more, and memory allows: `Ok(None)` means wait for a slot to free,
    /// an error that no slot exists and none can be made.
    fn free_slot(&mut self) -> Result<Option<usize>, String> {
        if let Some(i) = self.slots.iter().position(Option::is_none) {
            return Ok(Some(i));
        }
        if self.slots.len() >= self.parallel {
            return Ok(None);
        }
        let engine = &*self.engine;
        let opts = engine.options();
        if let Err(e) = crate::memory::check_kv_caches(engine.model(), self.n_ctx, opts.kv_type, 1)
        {
            return if self.slots.is_empty() {
                Err(format!("no memory for a sequence now: {e}"))
            } else {
                Ok(None)
            };
        }
        self.caches.push(
            engine
                .model()
                .new_cache(self.n_ctx, engine.options().kv_type),
        );
        self.slots.push(None);
        Ok(Some(self.slots.len() - 1))
    }

    /// Moves waiting jobs into free slots, oldest first.
    fn admit(&mut self) {
        while !self.waiting.is_empty() {
            let i = match self.free_slot() {
                Ok(Some(i)) => i,
                Ok(None) => return,
                Err(message) => {
                    for w in self.waiting.drain(..) {
                        w.job
                            .sink
                            .send(Event::Failed(Failure::OutOfMemory(message.clone())));
                    }
                    return;
                }
            };
            let Some(Waiting { job, submitted }) = self.waiting.pop_front() else {
                return;
            };
            self.caches[i].clear();
            let state = SequenceState::with_options(
                self.engine.tokenizer(),
                &job.prompt,
                job.params,
                job.options,
            );
            self.slots[i] = Some(Running {
                sink: job.sink,
                _permit: job.permit,
                state,
                prompt: job.prompt,
                fed: 0,
                pending: None,
                submitted,
                first_token: None,
                last_token: None,
            });
            self.load.active.fetch_add(1, Ordering::SeqCst);
        }
    }

    /// Ends the sequence in slot `i` with its outcome, sent after the slot
    /// and the permit are released (so a caller that sees the end can be
    /// admitted again at once).
    fn finish(&mut self, i: usize, reason: StopReason) {
        if let Some(r) = self.release(i, reason == StopReason::Cancelled) {
            let now = Instant::now();
            let first = r.first_token.unwrap_or(now);
            let ms = |d: Duration| d.as_secs_f64() * 1e3;
            if reason != StopReason::Cancelled {
                self.observer
                    .request_latency(now.duration_since(r.submitted).as_secs_f64());
            }
            let outcome = Outcome {
                reason,
                prompt_tokens: r.prompt.len(),
                completion_tokens: r.state.generated().len(),
                prompt_ms: ms(first.duration_since(r.submitted)),
                generation_ms: ms(now.duration_since(first)),
            };
            let Running { sink, _permit, .. } = r;
            drop(_permit);
            sink.send(Event::Done(outcome));
        }
    }

    /// Ends the sequence in slot `i` with a failure.
    fn fail(&mut self, i: usize, message: &str) {
        if let Some(Running { sink, _permit, .. }) = self.release(i, false) {
            drop(_permit);
            sink.send(Event::Failed(Failure::Internal(message.to_string())));
        }
    }

    fn fail_all(&mut self, message: String) {
        for i in 0..self.slots.len() {
            self.fail(i, &message);
        }
    }

    fn release(&mut self, i: usize, cancelled: bool) -> Option<Running> {
        let r = self.slots[i].take()?;
        let _ = self
            .load
            .kv_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                Some(n.saturating_sub(self.caches[i].len()))
            });
        self.caches[i].clear();
        self.load.active.fetch_sub(1, Ordering::SeqCst);
        self.observer.sequence_done(cancelled);
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
                    self.fail(i, &message);
                }
                return;
            }
        };
        let now = Instant::now();
        let mut generated = 0;
        let mut ended: Vec<(usize, StopReason)> = Vec::new();
        let mut failed: Vec<(usize, String)> = Vec::new();
        for (row, &i) in logits.chunks_exact(self.n_vocab).zip(&owners) {
            let room = self.caches[i].len() < self.n_ctx;
            let Some(r) = self.slots[i].as_mut() else {
                continue;
            };
            if r.first_token.is_none() {
                r.first_token = Some(now);
                self.observer
                    .first_token(now.duration_since(r.submitted).as_secs_f64());
            }
            let step = r.state.step(row, room);
            if let Some(message) = step.error {
                failed.push((i, message));
                continue;
            }
            if step.token.is_some() {
                generated += 1;
                if let Some(last) = r.last_token {
                    self.observer
                        .token_interval(now.duration_since(last).as_secs_f64());
                }
                r.last_token = Some(now);
            }
            let listening = match step.logprobs {
                Some(lp) => r.sink.send(Event::Logprobs(lp)),
                None => true,
            };
            if !listening || (!step.text.is_empty() && !r.sink.send(Event::Text(step.text))) {
                ended.push((i, StopReason::Cancelled));
                continue;
            }
            r.pending = step.token;
            match step.finished {
                Some(reason) => ended.push((i, reason)),
                // An unfinished step always has a token; without one the
                // sequence cannot go on.
                None if step.token.is_none() => ended.push((i, StopReason::Cancelled)),
                None => {}
            }
        }
        self.observer.step(batch.len() - decoding, generated);
        let held = self
            .slots
            .iter()
            .zip(&self.caches)
            .filter(|(slot, _)| slot.is_some())
            .map(|(_, cache)| cache.len())
            .sum();
        self.load.kv_tokens.store(held, Ordering::Relaxed);
        for (i, reason) in ended {
            self.finish(i, reason);
        }
        for (i, message) in failed {
            self.fail(i, &message);
        }
    }
}

fn batch_token(seq: usize, token: u32, logits: bool) -> BatchToken {
    BatchToken { seq, token, logits }
}

/// The text of a panic payload.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    if let Some(s) = payload.downcast_ref::<&str>() {
        (*s).to_string()
    } else if let Some(s) = payload.downcast_ref::<String>() {
        s.clone()
    } else {
        "unknown panic".to_string()
    }
}
