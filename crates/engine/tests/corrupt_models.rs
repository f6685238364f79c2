//! A damaged model file is an error or a working model, never a panic: the
//! demo GGUF with random bytes overwritten (mostly in its header, where
//! counts, shapes, types and offsets live; some in the tensor data, where
//! ternary codes and scales live) is loaded and, when it loads, run.

use std::path::Path;

use bitnet_engine::{Engine, EngineOptions, GenerationParams, SamplerConfig};

#[test]
fn damaged_gguf_files_never_panic() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fixtures/demo-bitnet/gguf/demo-bitnet-i2_s.gguf");
    let base = std::fs::read(src).unwrap();
    // Where the tensor data starts: past the metadata (the vocabulary
    // dominates it) and the tensor table.
    let header_len = bitnet_gguf::GgufFile::from_vec(base.clone())
        .unwrap()
        .data_offset() as usize;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("damaged.gguf");
    let mut s = 0x2545_f491_4f6c_dd1du64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let params = GenerationParams {
        max_tokens: 3,
        sampler: SamplerConfig::greedy(),
        ..GenerationParams::default()
    };
    let (mut loaded, mut refused) = (0, 0);
    for round in 0..400 {
        let mut b = base.clone();
        for _ in 0..1 + next() % 3 {
            let i = if next() % 4 == 0 {
                (next() % b.len() as u64) as usize
            } else {
                (next() % header_len as u64) as usize
            };
            b[i] = next() as u8;
        }
        std::fs::write(&path, &b).unwrap();
        let opts = EngineOptions {
            threads: 1,
            n_ctx: Some(64),
            ..EngineOptions::default()
        };
        let outcome = std::panic::catch_unwind(|| match Engine::load_path(&path, opts) {
            Ok(engine) => {
                if let Ok(prompt) = engine.tokenizer().encode("Permission is", true, false) {
                    let _ = engine.generate(&prompt, &params, false, &mut |_| true);
                }
                true
            }
            Err(e) => {
                assert!(!e.to_string().is_empty());
                false
            }
        });
        match outcome {
            Ok(true) => loaded += 1,
            Ok(false) => refused += 1,
            Err(_) => panic!("round {round}: a damaged file made the engine panic"),
        }
    }
    eprintln!("{loaded} damaged files loaded and ran, {refused} were refused");
    assert!(
        refused > 100 && loaded > 10,
        "{loaded} loaded, {refused} refused"
    );
}
