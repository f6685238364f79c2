//! Forward-pass benchmarks on a model of a real shape with random weights
//! (`bitnet_model::random`), measuring what the kernel benchmarks do not:
//! the whole decode step (kernels plus norms, RoPE, attention, KV cache and
//! the thread pool) and the attention's cost per KV cache type at a long
//! context.
//!
//! Run with `cargo bench -p bitnet-model --bench forward`. The model is the
//! 1bitLLM bitnet_b1_58-large shape (0.7B, 24 layers, MHA) so that it builds
//! in a second or two; `bitnet bench --shape 2b4t` measures the big one.

use std::sync::OnceLock;

use bitnet_model::random::{RandomOptions, Shape};
use bitnet_model::{BatchToken, KvCache, KvType, Model, Scratch};
use bitnet_threads::ThreadPool;
use divan::Bencher;

fn main() {
    divan::main();
}

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| {
        Model::random(&Shape::Large.hparams(), &RandomOptions::default()).expect("random model")
    })
}

/// A cache holding `ctx` positions of a random prompt.
fn filled(model: &Model, pool: &ThreadPool, ctx: usize, ty: KvType) -> KvCache {
    let mut cache = model.new_cache(ctx + 1, ty);
    let mut scratch = Scratch::new();
    let batch: Vec<BatchToken> = (0..ctx)
        .map(|i| BatchToken {
            seq: 0,
            token: (i * 7919 % 32000) as u32,
            logits: false,
        })
        .collect();
    for chunk in batch.chunks(256) {
        model
            .forward(pool, chunk, std::slice::from_mut(&mut cache), &mut scratch)
            .expect("prefill");
    }
    cache
}

fn decode_step(bencher: Bencher, threads: usize, ctx: usize, ty: KvType) {
    let model = model();
    let pool = ThreadPool::new(threads);
    let mut cache = filled(model, &pool, ctx, ty);
    let mut scratch = Scratch::new();
    let b = [BatchToken {
        seq: 0,
        token: 42,
        logits: true,
    }];
    bencher.bench_local(|| {
        cache.truncate(ctx);
        model
            .forward(&pool, &b, std::slice::from_mut(&mut cache), &mut scratch)
            .expect("decode")
            .len()
    });
}

/// One decode step after a 16-token prompt, per thread count.
#[divan::bench(args = [1, 2], sample_count = 30)]
fn decode(bencher: Bencher, threads: usize) {
    decode_step(bencher, threads, 16, KvType::F16);
}

/// One decode step at position 2048: the attention reads 24 layers × 2048
/// positions of keys and values (192 MiB in f16).
#[divan::bench(args = ["f32", "f16", "q8"], sample_count = 15)]
fn decode_at_2048(bencher: Bencher, kv: &str) {
    let ty = KvType::from_name(kv).expect("kv type");
    decode_step(bencher, 2, 2048, ty);
}

/// A 128-token prompt in one batch (per-token work spread over the pool).
#[divan::bench(args = [1, 2], sample_count = 10)]
fn prompt_128(bencher: Bencher, threads: usize) {
    let model = model();
    let pool = ThreadPool::new(threads);
    let mut cache = model.new_cache(128, KvType::F16);
    let mut scratch = Scratch::new();
    let batch: Vec<BatchToken> = (0..128)
        .map(|i| BatchToken {
            seq: 0,
            token: i * 31,
            logits: i == 127,
        })
        .collect();
    bencher.bench_local(|| {
        cache.clear();
        model
            .forward(
                &pool,
                &batch,
                std::slice::from_mut(&mut cache),
                &mut scratch,
            )
            .expect("prompt")
            .len()
    });
}
