//! Running the `bitnet` binary in tests.

#![allow(dead_code)]

#[path = "../../../../test-support/fixtures.rs"]
mod fixtures;
#[allow(unused_imports)] // each test binary uses some of them
pub use fixtures::{repo_fixtures, shared_fixtures, shared_fixtures_dir};

use std::path::Path;
use std::process::{Command, Output};

use serde_json::Value;

pub fn bitnet() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_bitnet"));
    // Tests never touch the network or a user's cache.
    c.env("HF_HUB_OFFLINE", "1");
    c.env(
        "HF_HOME",
        std::env::temp_dir().join("bitnet-cli-tests-hf-home"),
    );
    c
}

/// Runs and returns the output; panics with stderr if it failed.
pub fn ok(cmd: &mut Command) -> Output {
    let out = cmd.output().expect("cannot start bitnet");
    assert!(
        out.status.success(),
        "bitnet failed: {:?}\nstderr:\n{}",
        cmd,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// Runs a command that must fail cleanly: non-zero exit, no panic, and an
/// error message containing every `needle`.
pub fn fails_with(cmd: &mut Command, needles: &[&str]) -> String {
    let out = cmd.output().expect("cannot start bitnet");
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(
        !out.status.success(),
        "expected failure: {cmd:?}\nstdout: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    assert_eq!(
        out.status.code(),
        Some(1),
        "exit status (2 = usage error, 101 = panic): {stderr}"
    );
    assert!(!stderr.contains("panicked"), "panic: {stderr}");
    for n in needles {
        assert!(stderr.contains(n), "stderr lacks {n:?}:\n{stderr}");
    }
    stderr
}

pub fn json_stdout(out: &Output) -> Value {
    let text = String::from_utf8_lossy(&out.stdout);
    serde_json::from_str(text.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {text}"))
}

pub fn read_json(path: &Path) -> Value {
    serde_json::from_slice(&std::fs::read(path).unwrap()).unwrap()
}

pub fn ids(v: &Value) -> Vec<u32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_u64().unwrap() as u32)
        .collect()
}

pub fn read_npy_f32(path: &Path) -> Vec<f32> {
    let bytes = std::fs::read(path).unwrap();
    assert_eq!(&bytes[..6], b"\x93NUMPY");
    let hlen = u16::from_le_bytes([bytes[8], bytes[9]]) as usize;
    bytes[10 + hlen..]
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

/// Greedy `run` with JSON output: (prompt ids, generated ids).
pub fn greedy(model: &Path, prompt: &str, n: usize) -> (Vec<u32>, Vec<u32>) {
    let out = ok(bitnet()
        .args(["run", "-m"])
        .arg(model)
        .args([
            "-p",
            prompt,
            "-n",
            &n.to_string(),
            "--temp",
            "0",
            "--ignore-eos",
            "--kv-type",
            "f32",
        ])
        .args(["--output-format", "json", "-t", "2"]));
    let v = json_stdout(&out);
    (ids(&v["prompt_token_ids"]), ids(&v["token_ids"]))
}
