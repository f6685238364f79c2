//! A damaged model file is an error or a working model, never a panic: the
//! demo GGUF with random bytes overwritten (mostly in its header, where
//! counts, shapes, types and offsets live; some in the tensor data, where
//! ternary codes and scales live) is loaded and, when it loads, run.

use std::path::Path;

use bitnet_engine::{Engine, EngineOptions, GenerationParams, SamplerConfig};

/// A deterministic xorshift stream.
fn xorshift(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed;
    move || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    }
}

/// Loads the model at `path` and, when it loads, generates three tokens.
/// `Some(true)`: it ran; `Some(false)`: it was refused with a message;
/// `None`: it panicked.
fn load_and_run(path: &Path) -> Option<bool> {
    let opts = EngineOptions {
        threads: 1,
        n_ctx: Some(64),
        ..EngineOptions::default()
    };
    let params = GenerationParams {
        max_tokens: 3,
        sampler: SamplerConfig::greedy(),
        ..GenerationParams::default()
    };
    std::panic::catch_unwind(|| match Engine::load_path(path, opts) {
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
    })
    .ok()
}

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
    let mut next = xorshift(0x2545_f491_4f6c_dd1d);
    let (mut loaded, mut refused) = (0, 0);
    for round in 0..400 {
        let mut b = base.clone();
        for _ in 0..1 + next() % 3 {
            let i = if next().is_multiple_of(4) {
                (next() % b.len() as u64) as usize
            } else {
                (next() % header_len as u64) as usize
            };
            b[i] = next() as u8;
        }
        std::fs::write(&path, &b).unwrap();
        match load_and_run(&path) {
            Some(true) => loaded += 1,
            Some(false) => refused += 1,
            None => panic!("round {round}: a damaged file made the engine panic"),
        }
    }
    eprintln!("{loaded} damaged files loaded and ran, {refused} were refused");
    assert!(
        refused > 100 && loaded > 10,
        "{loaded} loaded, {refused} refused"
    );
}

#[test]
fn damaged_hugging_face_checkpoints_never_panic() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/demo-bitnet");
    let base = std::fs::read(src.join("model.safetensors")).unwrap();
    let header_len = 8 + u64::from_le_bytes(base[..8].try_into().unwrap()) as usize;
    let config = std::fs::read(src.join("config.json")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for f in ["tokenizer.json", "tokenizer_config.json"] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
    let (mut loaded, mut refused) = (0, 0);
    for round in 0..300 {
        let (mut st, mut cfg) = (base.clone(), config.clone());
        for _ in 0..1 + next() % 3 {
            match next() % 4 {
                // The config's digits: sizes that disagree with the tensors.
                0 => {
                    let digits: Vec<usize> = (0..cfg.len())
                        .filter(|&i| cfg[i].is_ascii_digit())
                        .collect();
                    let i = digits[(next() % digits.len() as u64) as usize];
                    cfg[i] = b'0' + (next() % 10) as u8;
                }
                1 => {
                    let i = (next() % st.len() as u64) as usize;
                    st[i] = next() as u8;
                }
                _ => {
                    let i = (next() % header_len as u64) as usize;
                    st[i] = next() as u8;
                }
            }
        }
        std::fs::write(dir.path().join("model.safetensors"), &st).unwrap();
        std::fs::write(dir.path().join("config.json"), &cfg).unwrap();
        match load_and_run(dir.path()) {
            Some(true) => loaded += 1,
            Some(false) => refused += 1,
            None => panic!("round {round}: a damaged checkpoint made the engine panic"),
        }
    }
    eprintln!("{loaded} damaged checkpoints loaded and ran, {refused} were refused");
    assert!(
        refused > 50 && loaded > 10,
        "{loaded} loaded, {refused} refused"
    );
}
