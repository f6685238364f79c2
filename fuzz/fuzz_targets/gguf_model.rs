//! A whole GGUF model: hyper-parameters, every ternary codec (I2_S, TL1,
//! TL2, TQ1_0, TQ2_0) and dense type, repacking, and one forward pass of
//! whatever loads.
#![no_main]

use std::sync::Arc;

use bitnet_gguf::GgufFile;
use bitnet_kernels::Kernels;
use bitnet_model::{BatchToken, KvType, LoadOptions, Model, Scratch};
use bitnet_threads::ThreadPool;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(file) = GgufFile::from_vec(data.to_vec()) else {
        return;
    };
    let opts = LoadOptions {
        kernels: Kernels::best(),
        ..LoadOptions::default()
    };
    let Ok(model) = Model::from_gguf(Arc::new(file), &opts) else {
        return;
    };
    let hp = model.hparams();
    // Files that declare a large model load lazily but would take long to
    // run; loading them was the test.
    if model.n_params() > 50_000_000 || hp.n_vocab == 0 {
        return;
    }
    let pool = ThreadPool::new(1);
    let mut cache = model.new_cache(4, KvType::F16);
    let batch = [
        BatchToken { seq: 0, token: 0, logits: false },
        BatchToken { seq: 0, token: (hp.n_vocab - 1) as u32, logits: true },
    ];
    let _ = model.forward(&pool, &batch, std::slice::from_mut(&mut cache), &mut Scratch::new());
});
