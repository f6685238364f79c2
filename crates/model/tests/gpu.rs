//! The GPU forward pass against the CPU and the transformers references:
//! last-token logits within 1e-3 of the reference and greedy continuations
//! identical to the CPU's, from the demo fixture's GGUF and Hugging Face
//! files. Without a device every test prints "skipped: no CUDA device
//! (...)"; `BITNET_REQUIRE_GPU` (scripts/gpu-check) makes that a failure.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};

use bitnet_cuda::CudaError;
use bitnet_model::gpu::GpuModel;
use bitnet_model::{KvType, Model};
use bitnet_threads::ThreadPool;
use common::*;

/// `$BITNET_REPO/fixtures/demo-bitnet` (scripts/gpu-check runs this binary
/// in another checkout), else this repository's.
fn demo() -> PathBuf {
    let repo = std::env::var_os("BITNET_REPO").map(PathBuf::from);
    let repo = repo.unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../.."));
    repo.join("fixtures/demo-bitnet")
}

fn on_gpu(test: &str, model: &Model, ctx: usize, kv: KvType) -> Option<GpuModel> {
    match GpuModel::new(model, 0, ctx, kv) {
        Ok(g) => Some(g),
        Err(e @ (CudaError::NoDriver | CudaError::NoDevice { .. }))
            if std::env::var_os("BITNET_REQUIRE_GPU").is_none() =>
        {
            let _ = writeln!(std::io::stderr(), "{test}: skipped: no CUDA device ({e})");
            None
        }
        Err(e) => panic!("{test}: {e}"),
    }
}

fn max_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
}

fn logits_match_the_reference(path: &Path, label: &str) {
    let test = format!("gpu_logits_{label}");
    let model = load(path);
    let Some(mut gpu) = on_gpu(&test, &model, 2048, KvType::F32) else {
        return;
    };
    let refs = demo().join("reference");
    let manifest = read_json(&refs.join("manifest.json"));
    let pool = ThreadPool::new(2);
    for p in manifest["prompts"].as_array().into_iter().flatten() {
        let name = p["name"].as_str().unwrap_or("?");
        let ids = ids(&p["input_ids"]);
        gpu.clear();
        let got = gpu
            .forward(&model, &ids)
            .unwrap_or_else(|e| panic!("{test} {name}: {e}"));
        let (_, want) = read_npy(&refs.join(format!("{name}.last_logits.npy")));
        let d = max_diff(&got, &want);
        assert!(d <= 1e-3, "{test} {name}: max |GPU - reference| = {d}");
        let cpu = all_logits(&model, &pool, &ids);
        let cpu_last = &cpu[cpu.len() - got.len()..];
        let _ = writeln!(
            std::io::stderr(),
            "{test} {name}: vs reference {d:.2e}, vs CPU {:.2e}",
            max_diff(&got, cpu_last)
        );
    }
}

#[test]
fn gpu_logits_match_the_reference_from_the_gguf() {
    logits_match_the_reference(&demo().join("gguf/demo-bitnet-i2_s.gguf"), "gguf");
}

#[test]
fn gpu_logits_match_the_reference_from_the_hf_files() {
    logits_match_the_reference(&demo(), "hf");
}

#[test]
fn gpu_greedy_text_is_the_cpus() {
    let model = load(&demo().join("gguf/demo-bitnet-i2_s.gguf"));
    for kv in [KvType::F32, KvType::F16] {
        let Some(mut gpu) = on_gpu("gpu_greedy_text_is_the_cpus", &model, 2048, kv) else {
            return;
        };
        let pool = ThreadPool::new(2);
        let manifest = read_json(&demo().join("reference/manifest.json"));
        for p in manifest["prompts"].as_array().into_iter().flatten() {
            let ids = ids(&p["input_ids"]);
            let want = greedy(&model, &pool, &ids, 32);
            gpu.clear();
            let mut got = Vec::new();
            let mut next = gpu
                .forward_greedy(&model, &ids)
                .unwrap_or_else(|e| panic!("{e}"));
            while got.len() < want.len() {
                got.push(next);
                next = gpu
                    .forward_greedy(&model, &[next])
                    .unwrap_or_else(|e| panic!("{e}"));
            }
            assert_eq!(got, want, "{} with a {kv:?} KV cache", p["name"]);
        }
    }
}
