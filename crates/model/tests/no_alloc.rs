//! Decoding allocates nothing once the buffers have grown: a counting
//! global allocator watches a run of single-token forward passes.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use bitnet_kernels::Isa;
use bitnet_model::{BatchToken, KvType, Scratch};
use bitnet_threads::ThreadPool;
use common::*;

struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: the caller's contract is the system allocator's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: as above.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if COUNTING.load(Ordering::Relaxed) {
            ALLOCS.fetch_add(1, Ordering::Relaxed);
        }
        // SAFETY: as above.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

#[test]
fn decoding_does_not_allocate() {
    let model = load(&repo_fixtures().join("demo-bitnet"));
    for kv in [KvType::F16, KvType::Q8, KvType::F32] {
        for threads in [1, 2] {
            let pool = ThreadPool::new(threads);
            let mut cache = model.new_cache(64, kv);
            let mut scratch = Scratch::new();
            let step = |cache: &mut bitnet_model::KvCache, scratch: &mut Scratch, token: u32| {
                let b = [BatchToken {
                    seq: 0,
                    token,
                    logits: true,
                }];
                model
                    .forward(&pool, &b, std::slice::from_mut(cache), scratch)
                    .unwrap()
                    .len()
            };
            // Warm-up: buffers (and any per-thread kernel scratch) grow here.
            for t in 0..4 {
                step(&mut cache, &mut scratch, t);
            }
            ALLOCS.store(0, Ordering::SeqCst);
            COUNTING.store(true, Ordering::SeqCst);
            for t in 4..20 {
                step(&mut cache, &mut scratch, t * 13);
            }
            COUNTING.store(false, Ordering::SeqCst);
            let n = ALLOCS.load(Ordering::SeqCst);
            // The scalar reference of the dense head product allocates its
            // per-token accumulators on each call (kernel crate); every
            // SIMD level and all of the model's own code allocate nothing.
            let allowed = if model.kernels().isa() == Isa::Scalar {
                16 * threads
            } else {
                0
            };
            assert!(
                n <= allowed,
                "{n} allocations in 16 decode steps ({kv:?}, {threads} threads)"
            );
        }
    }
}
