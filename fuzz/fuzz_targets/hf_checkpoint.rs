//! A Hugging Face checkpoint: `config.json` and a safetensors file (header
//! and data), as the loader reads a model directory. The input is the two
//! files separated by the first NUL byte.
#![no_main]

use std::sync::Arc;

use bitnet_kernels::Kernels;
use bitnet_model::{HfCheckpoint, LoadOptions, Model};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let split = data.iter().position(|&b| b == 0).unwrap_or(data.len());
    let (config, rest) = data.split_at(split);
    let safetensors = rest.get(1..).unwrap_or_default().to_vec();
    let ckpt = HfCheckpoint {
        label: "fuzz".into(),
        config_json: config.to_vec(),
        shards: vec![("model.safetensors".into(), Arc::new(safetensors))],
    };
    let opts = LoadOptions {
        kernels: Kernels::best(),
        ..LoadOptions::default()
    };
    let _ = Model::from_hf(ckpt, &opts);
});
