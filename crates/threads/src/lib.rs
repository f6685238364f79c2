//! A persistent thread pool for the inference hot loop.
//!
//! Decoding one token of a 2B-parameter ternary model runs a few hundred small
//! matrix products, each taking tens of microseconds. A general-purpose pool
//! (rayon) pays a cold wake-up and a fork/join per call that is comparable to
//! the work itself, so the hot loop uses this pool instead:
//!
//! * The workers are created once and live as long as the pool. The calling
//!   thread is worker 0 and always does its share, so `n_threads == 1` runs
//!   inline with no synchronisation at all.
//! * A job is published by advancing an epoch counter. Idle workers spin on
//!   that counter for a short while (the next matrix product usually follows
//!   within microseconds), then park on a condition variable so an idle
//!   engine costs no CPU.
//! * Two kinds of job. [`ThreadPool::run`] calls the job once on every
//!   thread and blocks until all have returned (static partitions:
//!   `(thread_index, n_threads)`). [`ThreadPool::for_each_chunk`] lets the
//!   threads claim chunks from a shared counter and returns as soon as every
//!   chunk is done, *without waiting for workers that never joined*: a worker
//!   that the OS has descheduled (another process on the core) would
//!   otherwise stall every product until it runs again, and the caller
//!   simply does its chunks instead. The products of the kernels crate all
//!   use it.
//! * Either way a job may borrow from the caller's stack, because the caller
//!   does not return while any worker can still reach the job: `run` waits
//!   for every worker, `for_each_chunk` closes a gate and waits for the
//!   workers that passed it (a worker announces itself in `active` before it
//!   reads the gate, so one of the two always sees the other). That is what
//!   makes the lifetime erasure inside sound.
//!
//! Allocation happens only at construction; running a job allocates nothing.

#![deny(missing_docs)]

use std::cell::UnsafeCell;
use std::panic::{AssertUnwindSafe, catch_unwind, resume_unwind};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long an idle worker spins before it parks.
const SPIN_TIME: Duration = Duration::from_micros(500);

type Job = dyn Fn(usize, usize) + Sync;

/// Bit 0 of an epoch: the job is elastic (`for_each_chunk`).
const ELASTIC: u64 = 1;

struct Shared {
    n_threads: usize,
    /// Advanced by 2 per published job (never 0 once a job was published);
    /// bit 0 tells the job's kind.
    epoch: AtomicU64,
    /// The current job. Written only by the thread holding `run_lock`, while
    /// no worker can read it (see `run` and `run_elastic`), before the epoch
    /// store that publishes it.
    job: UnsafeCell<Option<*const Job>>,
    /// Every-thread jobs: workers that have not yet finished.
    pending: AtomicUsize,
    /// Elastic jobs: the epoch whose job may still be entered (0: none).
    gate: AtomicU64,
    /// Elastic jobs: workers between announcing themselves and leaving.
    active: AtomicUsize,
    /// Workers that have started running `worker_loop`.
    started: AtomicUsize,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
    /// Set when a worker's share of the job panicked.
    panicked: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

// SAFETY: `job` is the only field that is not Sync by itself. It is written
// only while no worker can read it (before the epoch store that publishes
// the job, and after every worker that could reach it has reported through
// `pending` or `active`), and the pointee is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: the raw pointer in `job` refers to a `Sync` closure; moving the
// container between threads is fine for the same reason as above.
unsafe impl Send for Shared {}

/// A fixed set of worker threads that execute jobs together with the calling
/// thread. See the crate documentation.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serialises jobs published from different threads.
    run_lock: Mutex<()>,
}

impl ThreadPool {
    /// Creates a pool of `n_threads` threads in total, including the caller.
    /// `0` means the number of available CPUs.
    ///
    /// # Panics
    ///
    /// If the OS refuses to start a thread; [`ThreadPool::try_new`] returns
    /// that error instead.
    pub fn new(n_threads: usize) -> ThreadPool {
        match ThreadPool::try_new(n_threads) {
            Ok(pool) => pool,
            Err(e) => panic!("failed to start {n_threads} threads: {e}"),
        }
    }

    /// As [`ThreadPool::new`], but an OS refusal to start a thread (too many
    /// threads for its limits) is an error, with the threads already
    /// started stopped again.
    pub fn try_new(n_threads: usize) -> std::io::Result<ThreadPool> {
        let n_threads = if n_threads == 0 {
            available_cpus()
        } else {
            n_threads
        };
        let shared = Arc::new(Shared {
            n_threads,
            epoch: AtomicU64::new(0),
            job: UnsafeCell::new(None),
            pending: AtomicUsize::new(0),
            gate: AtomicU64::new(0),
            active: AtomicUsize::new(0),
            started: AtomicUsize::new(0),
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            panicked: Mutex::new(None),
        });
        let mut pool = ThreadPool {
            shared,
            workers: Vec::with_capacity(n_threads - 1),
            run_lock: Mutex::new(()),
        };
        for index in 1..n_threads {
            let shared = Arc::clone(&pool.shared);
            // On error, dropping `pool` stops and joins the workers so far.
            let worker = std::thread::Builder::new()
                .name(format!("bitnet-worker-{index}"))
                .spawn(move || worker_loop(&shared, index))?;
            pool.workers.push(worker);
        }
        // Wait until every worker runs: thread start-up (which allocates) is
        // over when `new` returns, even though elastic jobs never wait for a
        // worker that has not joined.
        wait_until(|| pool.shared.started.load(Ordering::Acquire) == n_threads - 1);
        Ok(pool)
    }

    /// The number of threads that execute each job (including the caller).
    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
    }

    /// Stores the job pointer and publishes it under a new epoch of the
    /// given kind; returns the epoch.
    ///
    /// # Safety
    /// The caller holds `run_lock`, no worker can currently read `job` (the
    /// previous job is fully retired), and the caller keeps `job` alive until
    /// it has retired this one (see `run` and `run_elastic`).
    unsafe fn publish(&self, job: &(dyn Fn(usize, usize) + Sync + '_), elastic: bool) -> u64 {
        let shared = &*self.shared;
        // SAFETY: lifetime erasure, sound by the caller's contract: the
        // pointer is only dereferenced while the job is not retired.
        let job_ptr: *const Job = unsafe {
            std::mem::transmute::<&(dyn Fn(usize, usize) + Sync + '_), &'static Job>(job)
        };
        // SAFETY: no worker reads `job` now (caller's contract).
        unsafe { *shared.job.get() = Some(job_ptr) };
        let epoch = (shared.epoch.load(Ordering::Relaxed) & !ELASTIC) + 2 + u64::from(elastic);
        if elastic {
            shared.gate.store(epoch, Ordering::SeqCst);
        } else {
            shared.pending.store(shared.n_threads - 1, Ordering::SeqCst);
        }
        shared.epoch.store(epoch, Ordering::SeqCst);
        if shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _lock = shared.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
            shared.wake.notify_all();
        }
        epoch
    }

    /// Re-raises a panic of the caller's share or of a worker's.
    fn propagate(&self, mine: std::thread::Result<()>) {
        if let Err(payload) = mine {
            resume_unwind(payload);
        }
        let worker_panic = self
            .shared
            .panicked
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(payload) = worker_panic {
            resume_unwind(payload);
        }
    }

    /// Runs `job(thread_index, n_threads)` once on every thread of the pool
    /// (the caller is thread 0) and returns when all calls have returned.
    ///
    /// A panic in any call is propagated to the caller after all threads have
    /// finished.
    pub fn run<F: Fn(usize, usize) + Sync>(&self, job: F) {
        let n = self.shared.n_threads;
        if n == 1 {
            job(0, 1);
            return;
        }
        let _guard = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: we hold the lock; the previous job was retired before its
        // publisher released it; this function does not return (or unwind,
        // see below) before `pending` is back to zero, so `job` outlives
        // every use.
        unsafe { self.publish(&job, false) };
        let mine = catch_unwind(AssertUnwindSafe(|| job(0, n)));
        wait_until(|| self.shared.pending.load(Ordering::Acquire) == 0);
        // SAFETY: every worker is done with the job (pending == 0); late
        // workers of earlier elastic jobs see a closed gate and never read it.
        unsafe { *self.shared.job.get() = None };
        self.propagate(mine);
    }

    /// Runs `job(thread_index, n_threads)` on the caller and on whichever
    /// workers join before the caller's own call returns; returns when the
    /// caller's call and every joined worker's call have returned. The job
    /// must therefore not need every thread (it claims work).
    fn run_elastic<F: Fn(usize, usize) + Sync>(&self, job: F) {
        let n = self.shared.n_threads;
        let _guard = self.run_lock.lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: as in `run`; this function does not return before the gate
        // is closed and no worker is inside it.
        unsafe { self.publish(&job, true) };
        let mine = catch_unwind(AssertUnwindSafe(|| job(0, n)));
        // Close the gate, then wait for the workers that got through it. A
        // worker increments `active` before it reads the gate (both SeqCst),
        // so either we see it here, or it sees the gate closed.
        self.shared.gate.store(0, Ordering::SeqCst);
        wait_until(|| self.shared.active.load(Ordering::SeqCst) == 0);
        // SAFETY: no worker is inside the gate and none can enter it.
        unsafe { *self.shared.job.get() = None };
        self.propagate(mine);
    }

    /// Splits `0..n_items` into chunks of `chunk` items that threads claim
    /// dynamically from a shared counter, calling `f(thread_index, range)` for
    /// each chunk. Returns when every chunk is done; workers that do not join
    /// in time (descheduled, parked) are not waited for.
    pub fn for_each_chunk<F>(&self, n_items: usize, chunk: usize, f: F)
    where
        F: Fn(usize, std::ops::Range<usize>) + Sync,
    {
        let chunk = chunk.max(1);
        let next = AtomicUsize::new(0);
        let claim = |thread: usize, _: usize| {
            loop {
                let start = next.fetch_add(chunk, Ordering::Relaxed);
                if start >= n_items {
                    break;
                }
                f(thread, start..(start + chunk).min(n_items));
            }
        };
        if self.shared.n_threads == 1 || n_items <= chunk {
            claim(0, 1);
        } else {
            self.run_elastic(claim);
        }
    }
}

/// Spins until `done()`, yielding now and then (more threads than cores: let
/// the thread we wait for run).
fn wait_until(done: impl Fn() -> bool) {
    let mut spins = 0u32;
    while !done() {
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(1024) {
            std::thread::yield_now();
        }
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.epoch.fetch_add(2, Ordering::SeqCst);
        {
            let _lock = self
                .shared
                .sleep_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        for worker in self.workers.drain(..) {
            let _ = worker.join();
        }
    }
}

impl std::fmt::Debug for ThreadPool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ThreadPool")
            .field("n_threads", &self.shared.n_threads)
            .finish()
    }
}

/// Runs the job published at `epoch` on this worker (`index`), catching a
/// panic into `shared.panicked`.
///
/// # Safety
/// The job pointer must be live: for an every-thread job, until this worker
/// decrements `pending`; for an elastic one, while it is inside the gate.
unsafe fn run_job(shared: &Shared, index: usize) {
    // SAFETY: the store of the job pointer happened before the epoch store
    // we observed (SeqCst), and the caller's contract keeps it live.
    let job = unsafe { *shared.job.get() };
    if let Some(job) = job {
        // SAFETY: see above; the pointee is a live `Sync` closure.
        let job = unsafe { &*job };
        if let Err(payload) = catch_unwind(AssertUnwindSafe(|| job(index, shared.n_threads))) {
            *shared.panicked.lock().unwrap_or_else(|e| e.into_inner()) = Some(payload);
        }
    }
}

fn worker_loop(shared: &Shared, index: usize) {
    shared.started.fetch_add(1, Ordering::Release);
    let mut seen = 0u64;
    loop {
        let epoch = wait_for_epoch(shared, seen);
        seen = epoch;
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        if epoch & ELASTIC == 0 {
            // SAFETY: the publisher waits for `pending` to reach zero before
            // it retires the job.
            unsafe { run_job(shared, index) };
            shared.pending.fetch_sub(1, Ordering::Release);
        } else {
            shared.active.fetch_add(1, Ordering::SeqCst);
            if shared.gate.load(Ordering::SeqCst) == epoch {
                // SAFETY: we are inside the gate: the publisher closes it and
                // then waits for `active` to reach zero before retiring.
                unsafe { run_job(shared, index) };
            }
            shared.active.fetch_sub(1, Ordering::SeqCst);
        }
    }
}

/// Spins, then parks, until the epoch differs from `seen`; returns it.
fn wait_for_epoch(shared: &Shared, seen: u64) -> u64 {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let epoch = shared.epoch.load(Ordering::SeqCst);
        if epoch != seen {
            return epoch;
        }
        std::hint::spin_loop();
        spins = spins.wrapping_add(1);
        if spins.is_multiple_of(256) && start.elapsed() > SPIN_TIME {
            break;
        }
    }
    let mut guard = shared.sleep_lock.lock().unwrap_or_else(|e| e.into_inner());
    shared.sleepers.fetch_add(1, Ordering::SeqCst);
    loop {
        let epoch = shared.epoch.load(Ordering::SeqCst);
        if epoch != seen {
            shared.sleepers.fetch_sub(1, Ordering::SeqCst);
            return epoch;
        }
        guard = shared.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
}

/// The number of CPUs this process may run on (at least 1).
pub fn available_cpus() -> usize {
    std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1)
}

/// Splits `0..n` into `parts` contiguous ranges of nearly equal size, each a
/// multiple of `align` items (except the last), and returns range `index`.
pub fn split_range(n: usize, parts: usize, index: usize, align: usize) -> std::ops::Range<usize> {
    let align = align.max(1);
    let units = n.div_ceil(align);
    let parts = parts.max(1);
    let base = units / parts;
    let extra = units % parts;
    let start_unit = index * base + index.min(extra);
    let end_unit = start_unit + base + usize::from(index < extra);
    (start_unit * align).min(n)..(end_unit * align).min(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicU64;

    #[test]
    fn every_thread_runs_once_per_job() {
        for n in 1..=4 {
            let pool = ThreadPool::new(n);
            for _ in 0..1000 {
                let hits: Vec<AtomicU64> = (0..n).map(|_| AtomicU64::new(0)).collect();
                pool.run(|i, total| {
                    assert_eq!(total, n);
                    hits[i].fetch_add(1, Ordering::Relaxed);
                });
                assert!(hits.iter().all(|h| h.load(Ordering::Relaxed) == 1));
            }
        }
    }

    #[test]
    fn jobs_borrow_the_callers_stack() {
        let pool = ThreadPool::new(3);
        let mut out = vec![0u32; 1000];
        let chunks: Vec<Mutex<&mut [u32]>> = out.chunks_mut(100).map(Mutex::new).collect();
        pool.for_each_chunk(chunks.len(), 1, |_, r| {
            for c in r {
                let mut chunk = chunks[c].lock().unwrap();
                for (j, v) in chunk.iter_mut().enumerate() {
                    *v = (c * 100 + j) as u32;
                }
            }
        });
        drop(chunks);
        assert!(out.iter().enumerate().all(|(i, &v)| v == i as u32));
    }

    #[test]
    fn parked_workers_wake_up() {
        let pool = ThreadPool::new(2);
        let sum = AtomicU64::new(0);
        pool.run(|i, _| {
            sum.fetch_add(i as u64 + 1, Ordering::Relaxed);
        });
        std::thread::sleep(Duration::from_millis(20));
        pool.run(|i, _| {
            sum.fetch_add(i as u64 + 1, Ordering::Relaxed);
        });
        assert_eq!(sum.load(Ordering::Relaxed), 6);
    }

    #[test]
    fn worker_panic_propagates_and_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.run(|i, _| {
                if i == 1 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let count = AtomicU64::new(0);
        pool.run(|_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 2);
    }

    #[test]
    fn chunks_finish_without_a_parked_worker() {
        // The worker parks after SPIN_TIME; the caller must not wait for it
        // to wake up before returning (it may, but the result is complete).
        let pool = ThreadPool::new(2);
        std::thread::sleep(Duration::from_millis(5));
        for round in 0..200 {
            let hits: Vec<AtomicU64> = (0..64).map(|_| AtomicU64::new(0)).collect();
            pool.for_each_chunk(64, 3, |_, r| {
                for i in r {
                    hits[i].fetch_add(1, Ordering::Relaxed);
                }
            });
            assert!(
                hits.iter().all(|h| h.load(Ordering::Relaxed) == 1),
                "round {round}"
            );
            if round % 50 == 0 {
                std::thread::sleep(Duration::from_millis(2));
            }
        }
    }

    #[test]
    fn elastic_and_every_thread_jobs_interleave() {
        let pool = ThreadPool::new(3);
        let total = AtomicU64::new(0);
        for i in 0..2000u64 {
            if i % 3 == 0 {
                pool.run(|_, _| {
                    total.fetch_add(1, Ordering::Relaxed);
                });
            } else {
                pool.for_each_chunk(10, 1, |_, r| {
                    total.fetch_add(r.len() as u64 * 10, Ordering::Relaxed);
                });
            }
        }
        let runs = (0..2000u64).filter(|i| i % 3 == 0).count() as u64;
        assert_eq!(
            total.load(Ordering::Relaxed),
            runs * 3 + (2000 - runs) * 100
        );
    }

    #[test]
    fn chunk_panic_propagates_and_pool_survives() {
        let pool = ThreadPool::new(2);
        let r = catch_unwind(AssertUnwindSafe(|| {
            pool.for_each_chunk(100, 1, |_, r| {
                if r.start == 57 {
                    panic!("boom");
                }
            })
        }));
        assert!(r.is_err());
        let count = AtomicU64::new(0);
        pool.for_each_chunk(100, 1, |_, _| {
            count.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(count.load(Ordering::Relaxed), 100);
    }

    #[test]
    fn split_range_covers_everything_once() {
        for n in [0, 1, 7, 16, 100, 2560] {
            for parts in 1..6 {
                for align in [1, 4, 16] {
                    let mut next = 0;
                    for i in 0..parts {
                        let r = split_range(n, parts, i, align);
                        assert_eq!(r.start, next);
                        if r.end < n {
                            assert_eq!(r.end % align, 0);
                        }
                        next = r.end;
                    }
                    assert_eq!(next, n);
                }
            }
        }
    }
}
