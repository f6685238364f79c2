//! `bitnet convert`: converted files load and generate what the Hugging Face
//! checkpoint generates, in every ternary type; `bitnet info` describes them.

mod common;

use std::path::Path;

use common::*;

/// Greedy tokens of `model` and of the reference manifest's prompt agree up
/// to the first step whose recorded top-1/top-2 margin is below `margin`.
fn same_greedy(model: &Path, manifest: &serde_json::Value, prompt: &str, margin: f64) {
    let p = manifest["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == prompt)
        .unwrap();
    let want = ids(&p["greedy_new_ids"]);
    let margins: Vec<f64> = p["greedy_margins"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m.as_f64().unwrap())
        .collect();
    let n = margins
        .iter()
        .position(|&m| m < margin)
        .unwrap_or(want.len());
    assert!(n >= 4, "{prompt}: too few confident steps to compare");
    let (prompt_ids, got) = greedy(model, p["text"].as_str().unwrap(), n);
    assert_eq!(
        prompt_ids,
        ids(&p["input_ids"]),
        "{}: prompt ids",
        model.display()
    );
    assert_eq!(
        got,
        want[..n],
        "{}: {prompt}: greedy tokens",
        model.display()
    );
}

fn convert(input: &Path, out: &Path, args: &[&str]) {
    ok(bitnet()
        .arg("convert")
        .arg(input)
        .arg("-o")
        .arg(out)
        .args(args));
}

#[test]
fn small_bitnet_converts_to_every_ternary_type() {
    let src = repo_fixtures().join("small-bitnet");
    let manifest = read_json(&src.join("reference/manifest.json"));
    let dir = tempfile::tempdir().unwrap();
    // TQ types round each scale to f16 (the file format's precision), so
    // they are compared only while the reference's margins exceed 0.1.
    let exact: &[&str] = &["fact", "bos_only", "multilingual"];
    let tq: &[&str] = &["multilingual", "long"];
    for (ty, margin, prompts) in [
        ("i2_s", 1e-3, exact),
        ("tq2_0", 0.1, tq),
        ("tq1_0", 0.1, tq),
    ] {
        let out = dir.path().join(format!("small-{ty}.gguf"));
        convert(&src, &out, &["--type", ty]);
        for &prompt in prompts {
            same_greedy(&out, &manifest, prompt, margin);
        }
        let info = ok(bitnet().arg("info").arg(&out));
        let text = String::from_utf8(info.stdout).unwrap();
        assert!(text.contains(&ty.to_ascii_uppercase()), "{text}");
        assert!(
            text.contains("blk.1.ffn_down.weight") && text.contains("tokenizer.ggml.merges"),
            "{text}"
        );
    }
}

#[test]
fn i2_s_conversion_reproduces_bitnet_cpp_tensor_bytes() {
    // bitnet.cpp wrote fixtures/small-bitnet/gguf/small-bitnet-i2_s.gguf from
    // the same weights: every ternary tensor's codes and scale must match.
    let src = repo_fixtures().join("small-bitnet");
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("small.gguf");
    convert(&src, &out, &["--type", "i2_s"]);
    let ours = bitnet_gguf::GgufFile::open(&out).unwrap();
    let theirs = bitnet_gguf::GgufFile::open(&src.join("gguf/small-bitnet-i2_s.gguf")).unwrap();
    let mut compared = 0;
    for t in theirs.tensors() {
        let mine = ours
            .tensor(&t.name)
            .unwrap_or_else(|| panic!("missing {}", t.name));
        assert_eq!(mine.ne, t.ne, "{}", t.name);
        assert_eq!(mine.raw_type, t.raw_type, "{}", t.name);
        let (a, b) = (
            ours.tensor_data(mine).unwrap(),
            theirs.tensor_data(t).unwrap(),
        );
        if t.raw_type == bitnet_gguf::GgmlType::I2_S {
            // Codes and the f32 scale; bitnet.cpp leaves stale bytes in the
            // rest of its 32-byte tail.
            let n = a.len() - 32;
            assert_eq!(a[..n + 4], b[..n + 4], "{}", t.name);
            compared += 1;
        } else {
            assert_eq!(a, b, "{}", t.name);
        }
    }
    assert_eq!(compared, 14);
}

#[test]
fn tiny_bitnet_converts_to_i2_s() {
    let Some(shared) = shared_fixtures() else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("tiny.gguf");
    convert(&shared.join("tiny-bitnet"), &out, &["--type", "i2_s"]);
    let manifest = read_json(&shared.join("reference/manifest.json"));
    for prompt in ["short", "code", "chat"] {
        same_greedy(&out, &manifest, prompt, 1e-3);
    }
    // TQ types need rows of 256 values; tiny-bitnet's are 128 wide.
    let bad = dir.path().join("tiny-tq.gguf");
    fails_with(
        bitnet()
            .arg("convert")
            .arg(shared.join("tiny-bitnet"))
            .arg("-o")
            .arg(&bad)
            .args(["--type", "tq2_0"]),
        &[
            "model.layers.0.self_attn.q_proj.weight",
            "multiple of 256 columns",
        ],
    );
}

#[test]
fn quantized_embedding_heads_load_and_agree() {
    let dir = tempfile::tempdir().unwrap();
    let manifest = read_json(&repo_fixtures().join("demo-bitnet/reference/manifest.json"));
    for embd in ["q8_0", "q6_k"] {
        let out = dir.path().join(format!("demo-{embd}.gguf"));
        convert(Path::new("builtin"), &out, &["--embd-type", embd]);
        // The trained model's margins are large: a quantised head keeps the
        // continuation while margins exceed 0.3.
        same_greedy(&out, &manifest, "mit", 0.3);
        same_greedy(&out, &manifest, "warranty", 0.3);
    }
}
