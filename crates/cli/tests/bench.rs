//! `bitnet bench`: the JSON output has llama-bench's fields with the right
//! types, the markdown table its columns, and shapes that cannot fit are
//! refused with their sizes. (Timings are never asserted, only their
//! consistency: CPU time within threads × wall time.)

mod common;

use common::*;

#[test]
fn json_output_has_llama_bench_fields() {
    let out = ok(bitnet().args([
        "bench", "-m", "builtin", "-p", "8", "-n", "4", "-r", "1", "-t", "1", "-o", "json",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let tests = v.as_array().expect("a JSON array");
    assert_eq!(tests.len(), 2);
    let (pp, tg) = (&tests[0], &tests[1]);
    assert_eq!(
        (pp["n_prompt"].as_u64(), pp["n_gen"].as_u64()),
        (Some(8), Some(0))
    );
    assert_eq!(
        (tg["n_prompt"].as_u64(), tg["n_gen"].as_u64()),
        (Some(0), Some(4))
    );
    for t in tests {
        assert_eq!(t["n_threads"].as_u64(), Some(1));
        for key in ["model_size", "model_n_params", "peak_rss_bytes"] {
            assert!(t[key].as_u64().is_some_and(|n| n > 0), "{key}: {}", t[key]);
        }
        for key in ["avg_ts", "stddev_ts"] {
            assert!(t[key].as_f64().is_some(), "{key}: {}", t[key]);
        }
        assert!(t["avg_ts"].as_f64().unwrap() > 0.0);
        let samples = t["samples_ts"].as_array().unwrap();
        assert_eq!(samples.len(), 1);
        assert!(samples[0].as_f64().unwrap() > 0.0);
        assert!(t["model_type"].as_str().is_some_and(|s| !s.is_empty()));
        assert!(["scalar", "avx2", "avxvnni", "avx512"].contains(&t["kernel"].as_str().unwrap()));
    }
}

/// CPU seconds per token: one CPU-time sample per repetition, each within
/// what the pool's threads can burn in the repetition's wall time (this
/// process runs nothing else), and the reported mean consistent with them.
#[test]
fn cpu_time_per_token_is_reported_and_bounded() {
    let out = ok(bitnet().args([
        "bench", "-m", "builtin", "-p", "32", "-n", "16", "-r", "2", "-t", "1,2", "-o", "json",
    ]));
    let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
    let tests = v.as_array().expect("a JSON array");
    assert_eq!(tests.len(), 4);
    for t in tests {
        let threads = t["n_threads"].as_u64().unwrap() as f64;
        let n = (t["n_prompt"].as_u64().unwrap() + t["n_gen"].as_u64().unwrap()) as f64;
        let wall: Vec<f64> = t["samples_ns"]
            .as_array()
            .unwrap()
            .iter()
            .map(|s| s.as_u64().unwrap() as f64)
            .collect();
        let cpu: Vec<f64> = t["samples_cpu_ns"]
            .as_array()
            .expect("samples_cpu_ns")
            .iter()
            .map(|s| s.as_u64().unwrap() as f64)
            .collect();
        assert_eq!(cpu.len(), wall.len(), "{t}");
        for (c, w) in cpu.iter().zip(&wall) {
            assert!(*c > 0.0, "{t}");
            assert!(
                *c <= threads * w * 1.1 + 20e6,
                "cpu {c} ns > {threads} x wall {w} ns: {t}"
            );
        }
        let want = cpu.iter().sum::<f64>() / cpu.len() as f64 / n * 1e-9;
        let got = t["cpu_s_per_token"].as_f64().expect("cpu_s_per_token");
        assert!((got - want).abs() <= 1e-9 * want + 1e-15, "{got} vs {want}");
    }
}

#[test]
fn markdown_table_and_kernel_knob() {
    let out = ok(bitnet().env("BITNET_KERNEL", "scalar").args([
        "bench", "-m", "builtin", "-p", "4", "-n", "2", "-r", "1", "-t", "1,2",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert!(lines[0].contains("model") && lines[0].contains("t/s") && lines[0].contains("threads"));
    assert!(lines[0].contains("CPU s/tok"), "{stdout}");
    assert_eq!(lines.len(), 2 + 4, "{stdout}");
    assert!(lines[2].contains("pp4") && lines[3].contains("tg2") && lines[4].contains("pp4"));
    assert!(stdout.contains("CPU (scalar)"), "{stdout}");
    assert!(String::from_utf8_lossy(&out.stderr).contains("peak RSS"));
}

#[test]
fn bad_arguments_are_refused() {
    fails_with(
        bitnet().args(["bench", "--shape", "7q"]),
        &["unknown shape", "2b4t"],
    );
    fails_with(
        bitnet().args(["bench", "--shape", "2b4t", "--head-type", "q4_0"]),
        &["head type"],
    );
    // 100B parameters with a 64k-token f32 KV cache need far more than any
    // test machine has: refused before anything is built.
    fails_with(
        bitnet().args([
            "bench",
            "--shape",
            "100b",
            "-p",
            "65536",
            "--kv-type",
            "f32",
        ]),
        &["100b", "GiB", "available"],
    );
}

#[test]
fn built_in_shapes_run_with_each_head_type() {
    // The smallest real shape (1bitLLM bitnet_b1_58-large), random weights.
    let run = |head: &str| {
        let out = ok(bitnet().args([
            "bench",
            "--shape",
            "large",
            "--head-type",
            head,
            "-p",
            "16",
            "-n",
            "2",
            "-r",
            "1",
            "-t",
            "2",
            "-o",
            "json",
        ]));
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");
        let tests = v.as_array().expect("a JSON array").clone();
        assert_eq!(tests.len(), 2);
        assert_eq!(tests[0]["test"], "pp16");
        assert_eq!(tests[1]["test"], "tg2");
        for t in &tests {
            assert_eq!(t["n_threads"].as_u64(), Some(2));
            let model_type = t["model_type"].as_str().unwrap();
            assert!(model_type.contains("random large"), "{model_type}");
            assert!(
                model_type.contains(&format!("{} head", head.to_uppercase())),
                "{model_type}"
            );
            // Tokens/s is the test's tokens over its mean time.
            let n = (t["n_prompt"].as_u64().unwrap() + t["n_gen"].as_u64().unwrap()) as f64;
            let want = n / (t["avg_ns"].as_u64().unwrap() as f64 * 1e-9);
            let got = t["avg_ts"].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-6 * want, "{got} vs {want}");
            assert!(t["peak_rss_bytes"].as_u64().unwrap() > t["model_size"].as_u64().unwrap());
        }
        (
            tests[0]["model_size"].as_u64().unwrap(),
            tests[0]["model_n_params"].as_u64().unwrap(),
        )
    };
    let (f16, params) = run("f16");
    let (q8, params_q8) = run("q8_0");
    let (q6, params_q6) = run("q6_k");
    assert_eq!((params_q8, params_q6), (params, params));
    // Only the head differs: 2, 34/32 and 210/256 bytes per weight, so the
    // size differences stand in the ratio (2 − 34/32) : (2 − 210/256).
    let (d8, d6) = ((f16 - q8) as f64, (f16 - q6) as f64);
    let want = (2.0 - 34.0 / 32.0) / (2.0 - 210.0 / 256.0);
    assert!((d8 / d6 - want).abs() < 1e-9, "{d8} / {d6}");
}
