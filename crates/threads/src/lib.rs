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
//! * A job is published by bumping an epoch counter. Idle workers spin on that
//!   counter for a short while (the next matrix product usually follows within
//!   microseconds), then park on a condition variable so an idle engine costs
//!   no CPU.
//! * [`ThreadPool::run`] blocks until every worker has finished the job, so a
//!   job may borrow from the caller's stack: that is what makes the lifetime
//!   erasure inside sound.
//! * The pool does not split work itself. Jobs receive `(thread_index,
//!   n_threads)` and partition rows statically (the usual case: every worker
//!   gets an equal, contiguous block of rows, which keeps the memory streams
//!   of a memory-bound product apart), or claim chunks from a shared counter
//!   with [`ThreadPool::for_each_chunk`] when items cost unequal time.
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

struct Shared {
    n_threads: usize,
    /// Incremented once per published job.
    epoch: AtomicU64,
    /// The current job. Written only by the thread holding `run_lock`, before
    /// the epoch bump that publishes it; read by workers after they observe
    /// the bump.
    job: UnsafeCell<Option<*const Job>>,
    /// Workers that have not yet finished the current job.
    pending: AtomicUsize,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    sleep_lock: Mutex<()>,
    wake: Condvar,
    shutdown: AtomicBool,
    /// Set when a worker's share of the job panicked.
    panicked: Mutex<Option<Box<dyn std::any::Any + Send>>>,
}

// SAFETY: `job` is the only field that is not Sync by itself. It is written
// only while no worker can read it (before the epoch bump that publishes the
// job, and after every worker has reported completion through `pending`), and
// the pointee is `Sync`.
unsafe impl Sync for Shared {}
// SAFETY: the raw pointer in `job` refers to a `Sync` closure; moving the
// container between threads is fine for the same reason as above.
unsafe impl Send for Shared {}

/// A fixed set of worker threads that execute jobs in lock step with the
/// calling thread. See the crate documentation.
pub struct ThreadPool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
    /// Serialises `run` calls from different threads.
    run_lock: Mutex<()>,
}

impl ThreadPool {
    /// Creates a pool of `n_threads` threads in total, including the caller.
    /// `0` means the number of available CPUs.
    pub fn new(n_threads: usize) -> ThreadPool {
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
            sleepers: AtomicUsize::new(0),
            sleep_lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            panicked: Mutex::new(None),
        });
        let workers = (1..n_threads)
            .map(|index| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("bitnet-worker-{index}"))
                    .spawn(move || worker_loop(&shared, index))
                    .expect("failed to spawn a worker thread")
            })
            .collect();
        ThreadPool {
            shared,
            workers,
            run_lock: Mutex::new(()),
        }
    }

    /// The number of threads that execute each job (including the caller).
    pub fn n_threads(&self) -> usize {
        self.shared.n_threads
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
        let job_ref: &(dyn Fn(usize, usize) + Sync + '_) = &job;
        // SAFETY: we erase the lifetime of `job_ref`. The pointer is only
        // dereferenced by workers between observing the epoch bump below and
        // decrementing `pending`, and this function does not return (nor
        // unwind, see below) before `pending` is back to zero, so `job`
        // outlives every use.
        let job_ptr: *const Job = unsafe {
            std::mem::transmute::<&(dyn Fn(usize, usize) + Sync + '_), &'static Job>(job_ref)
        };
        // SAFETY: no worker reads `job` now: every worker finished the
        // previous job (pending was 0 when the previous run returned) and
        // none can observe a new epoch before the store below.
        unsafe { *self.shared.job.get() = Some(job_ptr) };
        self.shared.pending.store(n - 1, Ordering::SeqCst);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
        if self.shared.sleepers.load(Ordering::SeqCst) > 0 {
            let _lock = self
                .shared
                .sleep_lock
                .lock()
                .unwrap_or_else(|e| e.into_inner());
            self.shared.wake.notify_all();
        }
        let mine = catch_unwind(AssertUnwindSafe(|| job(0, n)));
        let mut spins = 0u32;
        while self.shared.pending.load(Ordering::Acquire) != 0 {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins % 1024 == 0 {
                // More threads than cores: let the worker we wait for run.
                std::thread::yield_now();
            }
        }
        // SAFETY: all workers are done with the job (pending == 0).
        unsafe { *self.shared.job.get() = None };
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

    /// Splits `0..n_items` into chunks of `chunk` items that threads claim
    /// dynamically from a shared counter, calling `f(thread_index, range)` for
    /// each chunk.
    pub fn for_each_chunk<F>(&self, n_items: usize, chunk: usize, f: F)
    where
        F: Fn(usize, std::ops::Range<usize>) + Sync,
    {
        let chunk = chunk.max(1);
        let next = AtomicUsize::new(0);
        self.run(|thread, _| {
            loop {
                let start = next.fetch_add(chunk, Ordering::Relaxed);
                if start >= n_items {
                    break;
                }
                f(thread, start..(start + chunk).min(n_items));
            }
        });
    }
}

impl Drop for ThreadPool {
    fn drop(&mut self) {
        self.shared.shutdown.store(true, Ordering::SeqCst);
        self.shared.epoch.fetch_add(1, Ordering::SeqCst);
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

fn worker_loop(shared: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let epoch = wait_for_epoch(shared, seen);
        seen = epoch;
        if shared.shutdown.load(Ordering::SeqCst) {
            return;
        }
        // SAFETY: the epoch bump we observed (SeqCst) happened after the job
        // pointer was stored, and the publisher keeps the closure alive until
        // we decrement `pending` below.
        let job = unsafe { *shared.job.get() };
        if let Some(job) = job {
            // SAFETY: see above; the pointee is a live `Sync` closure.
            let job = unsafe { &*job };
            if let Err(payload) = catch_unwind(AssertUnwindSafe(|| job(index, shared.n_threads))) {
                *shared.panicked.lock().unwrap_or_else(|e| e.into_inner()) = Some(payload);
            }
        }
        shared.pending.fetch_sub(1, Ordering::Release);
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
        if spins % 256 == 0 && start.elapsed() > SPIN_TIME {
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
