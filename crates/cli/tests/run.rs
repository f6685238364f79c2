//! `bitnet run` and `bitnet perplexity` against the reference outputs.

mod common;

use common::*;

#[test]
fn builtin_model_json_output_matches_the_reference() {
    let manifest = read_json(&repo_fixtures().join("demo-bitnet/reference/manifest.json"));
    let mit = &manifest["prompts"][0];
    assert_eq!(mit["name"], "mit");
    let dir = tempfile::tempdir().unwrap();
    let npy = dir.path().join("logits.npy");
    let out = ok(bitnet()
        .args(["run", "-m", "builtin", "-p", mit["text"].as_str().unwrap()])
        .args([
            "-n",
            "32",
            "--temp",
            "0",
            "--ignore-eos",
            "--kv-type",
            "f32",
            "--output-format",
            "json",
        ])
        .arg("--logits-out")
        .arg(&npy));
    let v = json_stdout(&out);
    assert_eq!(ids(&v["prompt_token_ids"]), ids(&mit["input_ids"]));
    assert_eq!(ids(&v["token_ids"]), ids(&mit["greedy_new_ids"]));
    assert_eq!(v["text"], mit["greedy_text"]);
    assert!(v["timings"]["predicted_per_second"].as_f64().unwrap() > 0.0);
    let logits = read_npy_f32(&npy);
    let reference =
        read_npy_f32(&repo_fixtures().join("demo-bitnet/reference/mit.last_logits.npy"));
    assert_eq!(logits.len(), 4096);
    let max = logits
        .iter()
        .zip(&reference)
        .map(|(a, b)| (a - b).abs())
        .fold(0.0f32, f32::max);
    assert!(max < 1e-3, "logits differ by {max}");
}

#[test]
fn text_output_echoes_the_prompt_and_streams_the_continuation() {
    let out = ok(bitnet().args([
        "run",
        "-p",
        "Permission is hereby granted, free of charge,",
        "-n",
        "12",
        "--temp",
        "0",
    ]));
    let stdout = String::from_utf8(out.stdout).unwrap();
    assert!(
        stdout.starts_with(
            "Permission is hereby granted, free of charge, to any person obtaining a copy"
        ),
        "{stdout}"
    );
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(
        stderr.contains("built-in demo-bitnet")
            && stderr.contains("bitnet pull microsoft/bitnet-b1.58-2B-4T-gguf"),
        "{stderr}"
    );
}

#[test]
fn chat_flag_applies_the_template() {
    let out = ok(bitnet()
        .args([
            "run",
            "-m",
            "builtin",
            "--chat",
            "--system",
            "Be brief.",
            "-p",
            "Hi",
        ])
        .args(["-n", "4", "--temp", "0", "--output-format", "json"]));
    let v = json_stdout(&out);
    assert_eq!(
        v["prompt"],
        "<|begin_of_text|>System: Be brief.<|eot_id|>User: Hi<|eot_id|>Assistant: "
    );
    let ids = ids(&v["prompt_token_ids"]);
    assert_eq!(ids[0], 4091, "one BOS, from the template");
    assert_eq!(ids.iter().filter(|&&t| t == 4091).count(), 1);
}

#[test]
fn seeded_sampling_is_reproducible() {
    let run = |seed: &str| {
        let out = ok(bitnet()
            .args([
                "run",
                "-m",
                "builtin",
                "-p",
                "Copyright",
                "-n",
                "24",
                "--temp",
                "1.0",
                "--seed",
                seed,
            ])
            .args(["--output-format", "json"]));
        ids(&json_stdout(&out)["token_ids"])
    };
    assert_eq!(run("7"), run("7"));
    assert_ne!(run("7"), run("8"));
}

#[test]
fn perplexity_reproduces_the_reference() {
    let demo = repo_fixtures().join("demo-bitnet");
    let out = ok(bitnet()
        .arg("perplexity")
        .arg("-m")
        .arg(demo.join("gguf/demo-bitnet-i2_s.gguf"))
        .arg("-f")
        .arg(demo.join("valid.txt"))
        .args(["-c", "256", "--kv-type", "f32", "--output-format", "json"]));
    let v = json_stdout(&out);
    assert_eq!(v["n_tokens"], 27060);
    let ppl = v["perplexity"].as_f64().unwrap();
    assert_eq!(format!("{ppl:.3}"), "8.706");
}

#[test]
fn interactive_chat_answers_like_run_chat_and_keeps_the_conversation() {
    use std::io::Write;
    use std::process::Stdio;
    let one_shot = |prompt: &str| {
        let out = ok(bitnet()
            .args([
                "run", "-m", "builtin", "--chat", "-p", prompt, "-n", "8", "--temp", "0",
            ])
            .args(["--output-format", "json"]));
        json_stdout(&out)["text"].as_str().unwrap().to_string()
    };
    let mut child = bitnet()
        .args(["chat", "-m", "builtin", "-n", "8", "--temp", "0"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"Copyright\n/reset\nCopyright\nand then?\n/exit\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8(out.stdout).unwrap();
    let replies: Vec<&str> = stdout
        .split("\n> ")
        .filter(|s| !s.trim().is_empty())
        .collect();
    let first = one_shot("Copyright");
    assert!(!first.trim().is_empty(), "the demo model answers something");
    // The first turn, and the same turn again after /reset, answer exactly
    // as a one-shot --chat run does.
    assert_eq!(replies[0].trim_end_matches('\n'), first, "{stdout}");
    assert_eq!(replies[1].trim_end_matches('\n'), first, "{stdout}");
    // A third reply exists (the follow-up turn, with history).
    assert_eq!(replies.len(), 3, "{stdout}");
}

#[test]
fn the_prompt_can_come_from_stdin() {
    use std::io::Write;
    use std::process::Stdio;
    let prompt = "Permission is hereby granted, free of charge,";
    let want = ok(bitnet().args([
        "run",
        "-m",
        "builtin",
        "-p",
        prompt,
        "-n",
        "8",
        "--temp",
        "0",
        "--output-format",
        "json",
    ]));
    let want = json_stdout(&want);
    for flags in [&[][..], &["-f", "-"]] {
        let mut child = bitnet()
            .args([
                "run",
                "-m",
                "builtin",
                "-n",
                "8",
                "--temp",
                "0",
                "--output-format",
                "json",
            ])
            .args(flags)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(prompt.as_bytes())
            .unwrap();
        let out = child.wait_with_output().unwrap();
        assert!(
            out.status.success(),
            "{flags:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = json_stdout(&out);
        assert_eq!(v["prompt"], prompt, "{flags:?}");
        assert_eq!(v["token_ids"], want["token_ids"], "{flags:?}");
    }
    // Nothing on stdin and no -p: an error that says how to give one.
    let out = bitnet()
        .args(["run", "-m", "builtin"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("no prompt: stdin is empty"));
}
