//! Bad input gets a clear error naming the problem and exit status 1: never
//! a panic, a hang or a huge allocation.

mod common;

use std::path::{Path, PathBuf};

use common::*;

fn demo_gguf() -> PathBuf {
    repo_fixtures().join("demo-bitnet/gguf/demo-bitnet-i2_s.gguf")
}

fn write(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, bytes).unwrap();
    p
}

fn run_model(model: &Path) -> std::process::Command {
    let mut c = bitnet();
    c.args(["run", "-p", "hello", "-n", "2", "-m"]).arg(model);
    c
}

/// Offset of the u32 type id of tensor `name` in a GGUF header.
fn tensor_type_offset(bytes: &[u8], name: &str) -> usize {
    let needle = [&(name.len() as u64).to_le_bytes()[..], name.as_bytes()].concat();
    let at = bytes
        .windows(needle.len())
        .position(|w| w == needle)
        .expect("tensor name in header");
    let dims_at = at + needle.len();
    let n_dims = u32::from_le_bytes(bytes[dims_at..dims_at + 4].try_into().unwrap()) as usize;
    dims_at + 4 + 8 * n_dims
}

#[test]
fn missing_file_is_named() {
    fails_with(
        &mut run_model(Path::new("/nonexistent/model.gguf")),
        &["/nonexistent/model.gguf", "no such file"],
    );
    // Relative paths that are also valid repo-id shapes are files when they
    // look like one: never a Hub lookup.
    for spec in [
        "out/tiny-tq1_0.gguf",
        "models/ggml-model-i2_s.gguf",
        "missing.gguf",
        "./model",
    ] {
        let stderr = fails_with(&mut run_model(Path::new(spec)), &[spec, "no such file"]);
        assert!(!stderr.contains("Hugging Face"), "{stderr}");
    }
}

#[test]
fn wrong_magic_and_tiny_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(
        dir.path(),
        "notgguf.gguf",
        b"PK\x03\x04 this is a zip, not a model",
    );
    fails_with(&mut run_model(&p), &["notgguf.gguf", "magic"]);
    // 100 bytes claiming 2^64-1 tensors: refused at once.
    let mut b = b"GGUF".to_vec();
    b.extend(3u32.to_le_bytes());
    b.extend(u64::MAX.to_le_bytes());
    b.extend(u64::MAX.to_le_bytes());
    b.resize(100, 0);
    let p = write(dir.path(), "absurd.gguf", &b);
    let start = std::time::Instant::now();
    fails_with(&mut run_model(&p), &["absurd.gguf"]);
    assert!(start.elapsed().as_secs() < 5);
}

#[test]
fn truncated_gguf_is_an_error() {
    let bytes = std::fs::read(demo_gguf()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    for cut in [10, 1000, 100_000, bytes.len() - 100] {
        let p = write(dir.path(), &format!("cut{cut}.gguf"), &bytes[..cut]);
        fails_with(&mut run_model(&p), &[&format!("cut{cut}.gguf")]);
    }
}

#[test]
fn unknown_tensor_type_names_the_tensor_and_the_id() {
    let mut bytes = std::fs::read(demo_gguf()).unwrap();
    let at = tensor_type_offset(&bytes, "blk.0.attn_k.weight");
    bytes[at..at + 4].copy_from_slice(&99u32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "type99.gguf", &bytes);
    fails_with(&mut run_model(&p), &["blk.0.attn_k.weight", "99"]);
}

#[test]
fn wrong_tensor_type_for_a_role_is_an_error() {
    // A norm weight declared as I2_S cannot be a norm.
    let mut bytes = std::fs::read(demo_gguf()).unwrap();
    let at = tensor_type_offset(&bytes, "output_norm.weight");
    bytes[at..at + 4].copy_from_slice(&36u32.to_le_bytes());
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "badnorm.gguf", &bytes);
    fails_with(&mut run_model(&p), &["output_norm.weight"]);
}

#[test]
fn missing_tensor_and_shape_mismatch() {
    let src = bitnet_gguf::GgufFile::open(&demo_gguf()).unwrap();
    let dir = tempfile::tempdir().unwrap();
    // Drop one tensor.
    let mut w = bitnet_gguf::GgufWriter::new();
    for (k, v) in src.metadata().iter() {
        w.metadata_mut().insert(k, v.clone());
    }
    for t in src
        .tensors()
        .iter()
        .filter(|t| t.name != "blk.2.ffn_up.weight")
    {
        w.add_tensor(
            t.name.clone(),
            t.ne.clone(),
            t.raw_type,
            src.tensor_data(t).unwrap().to_vec(),
        )
        .unwrap();
    }
    let p = dir.path().join("missing.gguf");
    w.write_file(&p).unwrap();
    fails_with(
        &mut run_model(&p),
        &["missing tensor", "blk.2.ffn_up.weight"],
    );
    // Metadata says a different FFN size than the tensors have.
    let mut w = bitnet_gguf::GgufWriter::from_file(&src).unwrap();
    w.metadata_mut().insert(
        "bitnet-b1.58.feed_forward_length",
        bitnet_gguf::Value::U32(512),
    );
    let p = dir.path().join("shape.gguf");
    w.write_file(&p).unwrap();
    fails_with(&mut run_model(&p), &["blk.0.ffn_", "has shape", "expected"]);
}

#[test]
fn hf_checkpoint_errors() {
    let src = repo_fixtures().join("demo-bitnet");
    let dir = tempfile::tempdir().unwrap();
    let copy = |name: &str| std::fs::copy(src.join(name), dir.path().join(name)).unwrap();
    for f in [
        "config.json",
        "tokenizer.json",
        "tokenizer_config.json",
        "generation_config.json",
    ] {
        copy(f);
    }
    // Truncated safetensors.
    let st = std::fs::read(src.join("model.safetensors")).unwrap();
    std::fs::write(dir.path().join("model.safetensors"), &st[..st.len() / 2]).unwrap();
    fails_with(
        &mut run_model(dir.path()),
        &["model.safetensors", "past the end", "truncated"],
    );
    // A tensor whose shape disagrees with its byte range.
    let n = u64::from_le_bytes(st[..8].try_into().unwrap()) as usize;
    let mut header: serde_json::Value = serde_json::from_slice(&st[8..8 + n]).unwrap();
    header["model.norm.weight"]["shape"] = serde_json::json!([255]);
    let header = serde_json::to_vec(&header).unwrap();
    let mut bad = (header.len() as u64).to_le_bytes().to_vec();
    bad.extend_from_slice(&header);
    bad.extend_from_slice(&st[8 + n..]);
    std::fs::write(dir.path().join("model.safetensors"), &bad).unwrap();
    fails_with(
        &mut run_model(dir.path()),
        &[
            "model.safetensors",
            "model.norm.weight",
            "[255]",
            "needs 510 bytes",
        ],
    );
    // Config disagreeing with the tensors.
    std::fs::write(dir.path().join("model.safetensors"), &st).unwrap();
    let cfg = std::fs::read_to_string(src.join("config.json")).unwrap();
    std::fs::write(
        dir.path().join("config.json"),
        cfg.replace("\"intermediate_size\": 768", "\"intermediate_size\": 1024"),
    )
    .unwrap();
    fails_with(
        &mut run_model(dir.path()),
        &["model.layers.0.mlp.", "has shape", "expected"],
    );
    // Malformed config.
    std::fs::write(dir.path().join("config.json"), "{\"hidden_size\": ").unwrap();
    fails_with(&mut run_model(dir.path()), &["config.json"]);
}

#[test]
fn prompt_longer_than_the_context() {
    let mut cmd = bitnet();
    cmd.args([
        "run",
        "-m",
        "builtin",
        "-c",
        "8",
        "-p",
        "Permission is hereby granted, free of charge, to any person",
    ]);
    fails_with(&mut cmd, &["tokens but the context holds 8"]);
    // Refused before the prompt is echoed.
    let out = cmd.output().unwrap();
    assert_eq!(String::from_utf8_lossy(&out.stdout), "");
}

/// Runs a command that clap must refuse as a usage error (exit status 2)
/// with a message containing every `needle`.
fn usage_error(args: &[&str], needles: &[&str]) {
    let out = bitnet().args(args).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
    for n in needles {
        assert!(
            stderr.contains(n),
            "{args:?}: stderr lacks {n:?}:\n{stderr}"
        );
    }
}

#[test]
fn out_of_range_sampling_values_name_the_range() {
    fn run<'a>(extra: &[&'a str]) -> Vec<&'a str> {
        [&["run", "-m", "builtin", "-p", "x"], extra].concat()
    }
    usage_error(&run(&["--top-p", "5"]), &["--top-p", "between 0 and 1"]);
    usage_error(&run(&["--top-p=-0.1"]), &["--top-p", "between 0 and 1"]);
    usage_error(&run(&["--min-p", "1.5"]), &["--min-p", "between 0 and 1"]);
    usage_error(
        &run(&["--repeat-penalty", "0"]),
        &["--repeat-penalty", "above 0"],
    );
    usage_error(&run(&["--temp", "nan"]), &["--temp", "finite"]);
    usage_error(&run(&["-n", "-3"]), &["--n-predict", "0 or more, or -1"]);
    usage_error(&run(&["--seed", "-2"]), &["--seed", "-1 for a random one"]);
    usage_error(
        &["chat", "-m", "builtin", "--top-p", "2"],
        &["between 0 and 1"],
    );
}

#[test]
fn invalid_utf8_prompt_file() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "prompt.txt", b"caf\xe9 latin-1");
    fails_with(
        bitnet().args(["run", "-m", "builtin", "-f"]).arg(&p),
        &["prompt.txt", "UTF-8"],
    );
    fails_with(
        bitnet().args(["perplexity", "-m", "builtin", "-f"]).arg(&p),
        &["prompt.txt", "UTF-8"],
    );
}

#[test]
fn unavailable_kernel_level_is_refused() {
    fails_with(
        bitnet()
            .env("BITNET_KERNEL", "neon")
            .args(["run", "-m", "builtin", "-p", "x", "-n", "1"]),
        &["neon", "available"],
    );
}

#[test]
fn context_too_big_for_memory_is_refused_up_front() {
    // Sizes whose KV cache no machine has, including one whose byte count
    // overflows: an error with the sizes, never an allocation failure.
    for (ctx, kv) in [
        ("2000000000", "f16"),
        ("100000000000", "f32"),
        ("36028797018963968", "q8"),
    ] {
        fails_with(
            bitnet().args([
                "run",
                "-m",
                "builtin",
                "-p",
                "x",
                "-n",
                "1",
                "-c",
                ctx,
                "--kv-type",
                kv,
            ]),
            &["context size", ctx, &format!("{kv} KV cache"), "available"],
        );
    }
    let dir = tempfile::tempdir().unwrap();
    let text = write(dir.path(), "text.txt", b"Permission is hereby granted");
    fails_with(
        bitnet()
            .args(["perplexity", "-m", "builtin", "-c", "2000000000", "-f"])
            .arg(&text),
        &["context size", "2000000000", "KV cache"],
    );
    // The server needs one cache per slot (one fits, 512 do not).
    fails_with(
        bitnet().args([
            "serve",
            "-m",
            "builtin",
            "--port",
            "0",
            "-c",
            "250000",
            "--parallel",
            "512",
        ]),
        &["250000 positions × 512 sequences", "--parallel"],
    );
}

#[test]
fn more_threads_than_cpus_are_capped_with_a_warning() {
    let cpus = std::thread::available_parallelism().unwrap().get();
    for asked in [cpus + 1, 1000, 100_000] {
        let out = ok(bitnet()
            .args(["run", "-m", "builtin", "-p", "x", "-n", "1"])
            .args(["-t", &asked.to_string()]));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains(&format!(
                "warning: -t {asked} is more than the {cpus} CPUs available; using {cpus} threads"
            )),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("| {cpus} threads")), "{stderr}");
    }
    let out = ok(bitnet().args(["run", "-m", "builtin", "-p", "x", "-n", "1", "-t", "1"]));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("warning"));
}

#[test]
fn inconsistent_hyper_parameters_name_the_real_key() {
    let dir = tempfile::tempdir().unwrap();
    // GGUF: 4 query heads over 3 kv heads.
    let mut bytes = std::fs::read(demo_gguf()).unwrap();
    let key = b"bitnet-b1.58.attention.head_count_kv";
    let at = bytes
        .windows(key.len())
        .position(|w| w == key)
        .expect("key in header")
        + key.len();
    assert_eq!(&bytes[at..at + 8], &[4, 0, 0, 0, 2, 0, 0, 0], "u32 2");
    bytes[at + 4] = 3;
    let gguf = write(dir.path(), "heads.gguf", &bytes);
    fails_with(
        &mut run_model(&gguf),
        &[
            "heads.gguf",
            "bitnet-b1.58.attention.head_count_kv",
            "multiple of 3",
        ],
    );
    // config.json: the same mistake.
    let hf = dir.path().join("hf");
    std::fs::create_dir(&hf).unwrap();
    let src = repo_fixtures().join("demo-bitnet");
    for f in [
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
    ] {
        std::fs::copy(src.join(f), hf.join(f)).unwrap();
    }
    let config = std::fs::read_to_string(src.join("config.json")).unwrap();
    let config = config.replace("\"num_key_value_heads\": 2", "\"num_key_value_heads\": 3");
    assert!(config.contains("\"num_key_value_heads\": 3"));
    std::fs::write(hf.join("config.json"), config).unwrap();
    fails_with(
        &mut run_model(&hf),
        &["config.json", "num_key_value_heads", "multiple of 3"],
    );
}

#[test]
fn an_error_is_said_once() {
    let dir = tempfile::tempdir().unwrap();
    let p = write(dir.path(), "notes.gguf", b"{\n  \"not\": \"a model\"\n}\n");
    let stderr = fails_with(&mut run_model(&p), &["notes.gguf", "magic"]);
    assert_eq!(stderr.matches("magic").count(), 1, "{stderr}");
}
