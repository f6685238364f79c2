//! `--device` on the five commands that run a model: parsed the same way
//! everywhere, and on a machine without the NVIDIA driver `cuda` is a
//! one-line error naming it, before any model is resolved or built.

mod common;

use common::*;

fn commands() -> Vec<Vec<&'static str>> {
    vec![
        vec!["run", "-m", "builtin", "-p", "hi", "-n", "2"],
        vec!["chat", "-m", "builtin"],
        vec!["bench", "--shape", "2b4t", "-p", "8", "-n", "2"],
        vec!["perplexity", "-m", "builtin", "-f", "/nonexistent"],
        vec!["serve", "-m", "builtin", "--port", "0"],
    ]
}

#[test]
fn cuda_without_a_driver_is_one_line_naming_it_on_every_command() {
    if bitnet_cuda::device::driver_present() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "device: skipped: this machine has libcuda"
        );
        return;
    }
    for args in commands() {
        for device in ["cuda", "cuda:1"] {
            let stderr = fails_with(
                bitnet().args(&args).args(["--device", device]),
                &["no CUDA driver: libcuda.so.1 not found", "--device cpu"],
            );
            assert_eq!(stderr.trim_end().lines().count(), 1, "{args:?}: {stderr}");
        }
    }
}

#[test]
fn a_bad_device_is_a_usage_error() {
    for args in commands() {
        let out = bitnet().args(&args).args(["--device", "tpu"]).output();
        let out = out.unwrap_or_else(|e| panic!("cannot start bitnet: {e}"));
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(
            stderr.contains("expected 'cpu', 'cuda' or 'cuda:N'"),
            "{stderr}"
        );
    }
}

#[test]
fn cpu_is_the_default_and_accepted() {
    let out = ok(bitnet().args([
        "run", "-m", "builtin", "-p", "hi", "-n", "2", "--device", "cpu",
    ]));
    assert!(out.status.success());
}
