//! `bitnet bench --device cuda[:N]`: prompt processing (ppN) and generation
//! (tgN) speed of the GPU forward pass, `bitnet_model::gpu::GpuModel`, for
//! one sequence (batch 1), in the CPU table's units. The engine itself does
//! not run on the GPU yet; this measures the kernels' forward pass alone.

use std::time::Instant;

use bitnet_engine::bench::{BenchModel, BenchOptions, mean_std};
use bitnet_model::gpu::GpuModel;
use bitnet_sampling::Rng;

/// What `--device cuda:N` needs before any weights are built: the driver,
/// the device, NVRTC. One line naming what is missing.
pub fn preflight(ordinal: usize) -> anyhow::Result<()> {
    bitnet_cuda::device::check(ordinal)?;
    bitnet_cuda::nvrtc::nvrtc()?;
    Ok(())
}

/// Tokens per second of `once` (which returns the tokens it processed and
/// when its timing began), over `reps` timed runs after one untimed
/// warm-up: mean and standard deviation.
fn rate(
    reps: usize,
    mut once: impl FnMut() -> anyhow::Result<(usize, Instant)>,
) -> anyhow::Result<(f64, f64)> {
    let mut rates = Vec::new();
    for rep in 0..=reps {
        let (n, start) = once()?;
        if rep > 0 {
            rates.push(n as f64 / start.elapsed().as_secs_f64());
        }
    }
    Ok(mean_std(&rates))
}

/// Runs the ppN and tgN tests on GPU `ordinal` and prints a markdown table.
pub fn run(bm: &BenchModel, ordinal: usize, opts: &BenchOptions) -> anyhow::Result<()> {
    let max_p = opts.n_prompt.iter().copied().max().unwrap_or(0);
    let max_g = opts.n_gen.iter().copied().max().unwrap_or(0);
    let mut gpu = GpuModel::new(&bm.model, ordinal, max_p + max_g + 2, opts.kv_type)?;
    let device = gpu.gpu().describe();
    let n_vocab = bm.model.hparams().n_vocab as u64;
    let mut rng = Rng::new(opts.seed);
    let tokens: Vec<u32> = (0..max_p.max(1))
        .map(|_| (rng.next_u64() % n_vocab) as u32)
        .collect();
    println!("| model | device | test | t/s |");
    println!("| --- | --- | --- | ---: |");
    let reps = opts.reps.max(1);
    for &np in opts.n_prompt.iter().filter(|&&n| n > 0) {
        let (m, sd) = rate(reps, || {
            gpu.clear();
            let t = Instant::now();
            gpu.forward_greedy(&bm.model, &tokens[..np])?;
            Ok((np, t))
        })?;
        println!(
            "| {} | {device} | pp{np} | {m:.2} ± {sd:.2} |",
            bm.model_type
        );
    }
    for &ng in opts.n_gen.iter().filter(|&&n| n > 0) {
        let (m, sd) = rate(reps, || {
            gpu.clear();
            let mut next = gpu.forward_greedy(&bm.model, &tokens[..1])?;
            let t = Instant::now();
            for _ in 0..ng {
                next = gpu.forward_greedy(&bm.model, &[next])?;
            }
            Ok((ng, t))
        })?;
        println!(
            "| {} | {device} | tg{ng} | {m:.2} ± {sd:.2} |",
            bm.model_type
        );
    }
    Ok(())
}
