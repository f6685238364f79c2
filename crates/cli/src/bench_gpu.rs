//! `bitnet bench --device cuda[:N]`: prompt processing (ppN) and generation
//! (tgN) speed of the GPU forward pass, `bitnet_model::gpu::GpuModel`, for
//! one sequence (batch 1), in the CPU table's units. The engine itself does
//! not run on the GPU yet; this measures the kernels' forward pass alone.

use std::time::Instant;

use bitnet_engine::bench::{BenchModel, BenchOptions};
use bitnet_model::gpu::GpuModel;

/// What `--device cuda:N` needs before any weights are built: the driver,
/// the device, NVRTC. One line naming what is missing.
pub fn preflight(ordinal: usize) -> anyhow::Result<()> {
    bitnet_cuda::device::check(ordinal)?;
    bitnet_cuda::nvrtc::nvrtc()?;
    Ok(())
}

fn mean_sd(v: &[f64]) -> (f64, f64) {
    let n = v.len().max(1) as f64;
    let m = v.iter().sum::<f64>() / n;
    (
        m,
        (v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / n).sqrt(),
    )
}

/// Runs the ppN and tgN tests on GPU `ordinal` and prints a markdown table.
pub fn run(bm: &BenchModel, ordinal: usize, opts: &BenchOptions) -> anyhow::Result<()> {
    let max_p = opts.n_prompt.iter().copied().max().unwrap_or(0);
    let max_g = opts.n_gen.iter().copied().max().unwrap_or(0);
    let mut gpu = GpuModel::new(&bm.model, ordinal, max_p + max_g + 2, opts.kv_type)?;
    let device = gpu.gpu().describe();
    let n_vocab = bm.model.hparams().n_vocab as u64;
    let mut state = opts.seed | 1;
    let tokens: Vec<u32> = (0..max_p.max(1))
        .map(|_| {
            state = state
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            ((state >> 33) % n_vocab) as u32
        })
        .collect();
    println!("| model | device | test | t/s |");
    println!("| --- | --- | --- | ---: |");
    let reps = opts.reps.max(1);
    for &np in opts.n_prompt.iter().filter(|&&n| n > 0) {
        let mut rates = Vec::new();
        for rep in 0..=reps {
            gpu.clear();
            let t = Instant::now();
            gpu.forward_greedy(&bm.model, &tokens[..np])?;
            if rep > 0 {
                rates.push(np as f64 / t.elapsed().as_secs_f64());
            }
        }
        let (m, sd) = mean_sd(&rates);
        println!(
            "| {} | {device} | pp{np} | {m:.2} ± {sd:.2} |",
            bm.model_type
        );
    }
    for &ng in opts.n_gen.iter().filter(|&&n| n > 0) {
        let mut rates = Vec::new();
        for rep in 0..=reps {
            gpu.clear();
            let mut next = gpu.forward_greedy(&bm.model, &tokens[..1])?;
            let t = Instant::now();
            for _ in 0..ng {
                next = gpu.forward_greedy(&bm.model, &[next])?;
            }
            if rep > 0 {
                rates.push(ng as f64 / t.elapsed().as_secs_f64());
            }
        }
        let (m, sd) = mean_sd(&rates);
        println!(
            "| {} | {device} | tg{ng} | {m:.2} ± {sd:.2} |",
            bm.model_type
        );
    }
    Ok(())
}
