//! `bitnet run`'s stop conditions and sampling flags, end to end: each
//! assertion compares against the model's own greedy run, so a flag that
//! were ignored would change the tokens.

mod common;

use common::*;
use serde_json::Value;

const PROMPT: &str = "Permission is hereby granted, free of charge,";

fn run_json(model: &str, extra: &[&str]) -> Value {
    json_stdout(&ok(bitnet()
        .args([
            "run",
            "-m",
            model,
            "-p",
            PROMPT,
            "-n",
            "24",
            "--output-format",
            "json",
        ])
        .args(extra)))
}

fn greedy(model: &str) -> Value {
    run_json(model, &["--temp", "0"])
}

#[test]
fn an_end_of_sequence_token_stops_generation_unless_ignored() {
    let want = greedy("builtin");
    let tokens = ids(&want["token_ids"]);
    assert_eq!(want["stop_reason"], "max_tokens");
    // A copy of the demo model whose generation_config lists the fourth
    // greedy token as an end-of-sequence id.
    let eos = tokens[3];
    assert!(!tokens[..3].contains(&eos));
    let dir = tempfile::tempdir().unwrap();
    let src = repo_fixtures().join("demo-bitnet");
    for f in [
        "config.json",
        "model.safetensors",
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
    ] {
        std::fs::copy(src.join(f), dir.path().join(f)).unwrap();
    }
    std::fs::write(
        dir.path().join("generation_config.json"),
        format!(r#"{{"bos_token_id": 4091, "eos_token_id": [4092, 4093, {eos}]}}"#),
    )
    .unwrap();
    let model = dir.path().to_str().unwrap();
    let stopped = greedy(model);
    assert_eq!(stopped["stop_reason"], "eos");
    assert_eq!(ids(&stopped["token_ids"]), tokens[..3]);
    let text = want["text"].as_str().unwrap();
    assert!(text.starts_with(stopped["text"].as_str().unwrap()));
    let ignored = run_json(model, &["--temp", "0", "--ignore-eos"]);
    assert_eq!(ignored["stop_reason"], "max_tokens");
    assert_eq!(ids(&ignored["token_ids"]), tokens);
}

#[test]
fn a_stop_string_ends_the_text_before_it() {
    let want = greedy("builtin");
    let text = want["text"].as_str().unwrap();
    let at = text.find("person").expect("the MIT licence continues");
    let stopped = run_json("builtin", &["--temp", "0", "--stop", "person"]);
    assert_eq!(stopped["stop_reason"], "stop_string");
    assert_eq!(stopped["text"].as_str().unwrap(), &text[..at]);
}

#[test]
fn truncating_samplers_at_their_limit_are_greedy() {
    // At temperature 1 these keep only the most likely token, so the seeded
    // samples must equal the greedy run; without the flag they do not.
    let want = ids(&greedy("builtin")["token_ids"]);
    let sampled = |flags: &[&str]| {
        let mut args = vec!["--temp", "1", "--seed", "7"];
        args.extend_from_slice(flags);
        ids(&run_json("builtin", &args)["token_ids"])
    };
    assert_ne!(
        sampled(&[]),
        want,
        "plain sampling should differ from greedy"
    );
    assert_eq!(sampled(&["--top-k", "1"]), want, "top-k 1");
    assert_eq!(sampled(&["--min-p", "1"]), want, "min-p 1");
    assert_eq!(sampled(&["--top-p", "0"]), want, "top-p 0");
}

#[test]
fn repeat_penalty_avoids_recent_tokens() {
    let plain = ids(&greedy("builtin")["token_ids"]);
    let penalised = run_json("builtin", &["--temp", "0", "--repeat-penalty", "1e6"]);
    let out = ids(&penalised["token_ids"]);
    assert_ne!(out, plain);
    // With an overwhelming penalty over the last 64 tokens (prompt
    // included), no token repeats one seen in that window.
    let prompt = ids(&penalised["prompt_token_ids"]);
    let mut seen: Vec<u32> = prompt.clone();
    for &t in &out {
        let window = &seen[seen.len().saturating_sub(64)..];
        assert!(!window.contains(&t), "token {t} repeated within the window");
        seen.push(t);
    }
}

#[test]
fn llama_cpp_spellings_of_negative_values() {
    // A temperature of 0 or below is greedy, however it is written.
    let want = ids(&greedy("builtin")["token_ids"]);
    for temp in [&["--temp", "-1"][..], &["--temp=-1"], &["--temp", "-0.5"]] {
        assert_eq!(
            ids(&run_json("builtin", temp)["token_ids"]),
            want,
            "{temp:?}"
        );
    }
    // `--seed -1` asks for a seed from the clock: a different one each run.
    let seeded = |seed: &str| {
        json_stdout(&ok(bitnet().args([
            "run",
            "-m",
            "builtin",
            "-p",
            PROMPT,
            "-n",
            "1",
            "--seed",
            seed,
            "--output-format",
            "json",
        ])))["seed"]
            .as_u64()
            .unwrap()
    };
    assert_eq!(seeded("7"), 7);
    assert_ne!(seeded("-1"), seeded("-1"));
    // `--repeat-last-n -1`: the penalty looks at the whole context.
    let out = run_json(
        "builtin",
        &[
            "--temp",
            "0",
            "--repeat-penalty",
            "1e6",
            "--repeat-last-n",
            "-1",
        ],
    );
    let mut seen = ids(&out["prompt_token_ids"]);
    for t in ids(&out["token_ids"]) {
        assert!(!seen.contains(&t), "token {t} repeated");
        seen.push(t);
    }
}

#[test]
fn n_minus_one_generates_until_the_context_is_full_and_says_so() {
    let out = ok(bitnet().args([
        "run",
        "-m",
        "builtin",
        "-p",
        PROMPT,
        "-n",
        "-1",
        "-c",
        "64",
        "--temp",
        "0",
        "--ignore-eos",
        "--output-format",
        "json",
    ]));
    let v = json_stdout(&out);
    assert_eq!(v["stop_reason"], "context_full");
    // The last token is sampled from the 64th position's logits.
    let prompt = ids(&v["prompt_token_ids"]).len();
    assert_eq!(ids(&v["token_ids"]).len(), 64 - prompt + 1);
    // The same tokens as a run asked for exactly that many.
    let n = (64 - prompt + 1).to_string();
    let same = json_stdout(&ok(bitnet().args([
        "run",
        "-m",
        "builtin",
        "-p",
        PROMPT,
        "-n",
        &n,
        "--temp",
        "0",
        "--ignore-eos",
        "--output-format",
        "json",
    ])));
    assert_eq!(same["stop_reason"], "max_tokens");
    assert_eq!(v["token_ids"], same["token_ids"]);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("generation stopped: the context of 64 tokens is full"),
        "{stderr}"
    );
    // Text output too, and the exit status stays 0.
    let out = ok(bitnet().args([
        "run", "-m", "builtin", "-p", PROMPT, "-n", "-1", "-c", "64", "--temp", "0",
    ]));
    assert!(String::from_utf8_lossy(&out.stderr).contains("context of 64 tokens is full"));
    // A limit reached first is not a full context.
    let out = ok(bitnet().args(["run", "-m", "builtin", "-p", PROMPT, "-n", "4", "-c", "64"]));
    assert!(!String::from_utf8_lossy(&out.stderr).contains("is full"));
}
