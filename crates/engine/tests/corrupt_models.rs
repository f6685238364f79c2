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
    let mut s = 0x9e37_79b9_7f4a_7c15u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
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
        let opts = EngineOptions {
            threads: 1,
            n_ctx: Some(64),
            ..EngineOptions::default()
        };
        let outcome = std::panic::catch_unwind(|| match Engine::load_path(dir.path(), opts) {
            Ok(engine) => {
                if let Ok(prompt) = engine.tokenizer().encode("Permission is", true, false) {
                    let params = GenerationParams {
                        max_tokens: 3,
                        sampler: SamplerConfig::greedy(),
                        ..GenerationParams::default()
                    };
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
            Err(_) => panic!("round {round}: a damaged checkpoint made the engine panic"),
        }
    }
    eprintln!("{loaded} damaged checkpoints loaded and ran, {refused} were refused");
    assert!(
        refused > 50 && loaded > 10,
        "{loaded} loaded, {refused} refused"
    );
}
