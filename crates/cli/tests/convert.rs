//! `bitnet convert`: converted files load and generate what the Hugging Face
//! checkpoint generates, in every ternary type; `bitnet info` describes them.

mod common;

use std::path::Path;

use common::*;

/// Names of every prompt in a reference manifest.
fn prompt_names(manifest: &serde_json::Value) -> Vec<String> {
    manifest["prompts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["name"].as_str().unwrap().to_string())
        .collect()
}

/// Greedy tokens of `model` and of the reference manifest's prompt agree up
/// to the first step whose recorded top-1/top-2 margin is at most `margin`
/// (the rule of the model crate's reference tests).
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
        .position(|&m| m <= margin)
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

/// The logits `bitnet run` computes at the last position of `text`.
fn last_logits(model: &Path, text: &str, npy: &Path) -> Vec<f32> {
    ok(bitnet()
        .args(["run", "-m"])
        .arg(model)
        .args([
            "-p",
            text,
            "-n",
            "1",
            "--temp",
            "0",
            "--kv-type",
            "f32",
            "-t",
            "2",
        ])
        .arg("--logits-out")
        .arg(npy));
    read_npy_f32(npy)
}

fn rel_l2(a: &[f32], b: &[f32]) -> f32 {
    let num: f64 = a.iter().zip(b).map(|(x, y)| f64::from(x - y).powi(2)).sum();
    let den: f64 = b.iter().map(|y| f64::from(*y).powi(2)).sum();
    (num / den).sqrt() as f32
}

fn max_abs_diff(a: &[f32], b: &[f32]) -> f32 {
    assert_eq!(a.len(), b.len());
    a.iter()
        .zip(b)
        .map(|(x, y)| (x - y).abs())
        .fold(0.0, f32::max)
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
    let prompts = prompt_names(&manifest);
    assert_eq!(prompts.len(), 5);
    let dir = tempfile::tempdir().unwrap();
    // Every type, every prompt, the reference tests' margin rule: TQ files
    // store each scale as f16, but that f16 is the rounded reciprocal of the
    // checkpoint's bf16 `weight_scale`, which the loader recovers, so they
    // compute what the checkpoint computes.
    for ty in ["i2_s", "tq2_0", "tq1_0"] {
        let out = dir.path().join(format!("small-{ty}.gguf"));
        convert(&src, &out, &["--type", ty]);
        for prompt in &prompts {
            same_greedy(&out, &manifest, prompt, 1e-3);
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

/// small-bitnet with a separate output head: `lm_head.weight` is a copy of
/// the (bf16) embedding and `tie_word_embeddings` is false, so the model
/// computes exactly what the tied original does.
fn untied_small_bitnet(dir: &Path) {
    let src = repo_fixtures().join("small-bitnet");
    for f in [
        "tokenizer.json",
        "tokenizer_config.json",
        "special_tokens_map.json",
        "generation_config.json",
    ] {
        std::fs::copy(src.join(f), dir.join(f)).unwrap();
    }
    let bytes = std::fs::read(src.join("model.safetensors")).unwrap();
    let st = safetensors::SafeTensors::deserialize(&bytes).unwrap();
    assert!(st.tensor("lm_head.weight").is_err(), "small-bitnet is tied");
    let mut views: Vec<(String, safetensors::tensor::TensorView<'_>)> =
        st.tensors().into_iter().collect();
    views.push((
        "lm_head.weight".into(),
        st.tensor("model.embed_tokens.weight").unwrap(),
    ));
    safetensors::serialize_to_file(views, None, &dir.join("model.safetensors")).unwrap();
    let mut cfg = read_json(&src.join("config.json"));
    assert_eq!(cfg["tie_word_embeddings"], true);
    cfg["tie_word_embeddings"] = false.into();
    std::fs::write(dir.join("config.json"), cfg.to_string()).unwrap();
}

#[test]
fn head_type_sets_the_format_of_a_separate_head() {
    let manifest = read_json(&repo_fixtures().join("small-bitnet/reference/manifest.json"));
    let prompts = prompt_names(&manifest);
    let dir = tempfile::tempdir().unwrap();
    let hf = dir.path().join("small-untied");
    std::fs::create_dir(&hf).unwrap();
    untied_small_bitnet(&hf);
    // The untied checkpoint itself runs (its head is read from lm_head).
    for prompt in &prompts {
        same_greedy(&hf, &manifest, prompt, 1e-3);
    }
    for (head, want) in [
        ("f32", bitnet_gguf::GgmlType::F32),
        ("q8_0", bitnet_gguf::GgmlType::Q8_0),
    ] {
        let out = dir.path().join(format!("untied-head-{head}.gguf"));
        convert(&hf, &out, &["--type", "i2_s", "--head-type", head]);
        let file = bitnet_gguf::GgufFile::open(&out).unwrap();
        let output = file
            .tensor("output.weight")
            .unwrap_or_else(|| panic!("{head}: no separate output.weight"));
        assert_eq!(output.raw_type, want, "{head}: output.weight type");
        assert_eq!(output.ne, [256, 4096], "{head}: output.weight shape");
        let embd = file.tensor("token_embd.weight").unwrap();
        assert_eq!(
            embd.raw_type,
            bitnet_gguf::GgmlType::F16,
            "{head}: the embedding keeps --embd-type's default"
        );
        let npy = dir.path().join(format!("untied-head-{head}.npy"));
        let mut n_greedy = 0;
        for p in manifest["prompts"].as_array().unwrap() {
            let name = p["name"].as_str().unwrap();
            let reference = read_npy_f32(
                &repo_fixtures()
                    .join("small-bitnet/reference")
                    .join(p["last_logits_file"].as_str().unwrap()),
            );
            let logits = last_logits(&out, p["text"].as_str().unwrap(), &npy);
            let (d, rl2) = (
                max_abs_diff(&logits, &reference),
                rel_l2(&logits, &reference),
            );
            eprintln!("{head} head, {name}: max |Δlogit| {d:e}, rel L2 {rl2:e}");
            if want == bitnet_gguf::GgmlType::F32 {
                // The bf16 head values exactly: the reference tests'
                // criteria (1e-4; measured ~5e-6) and margin rule.
                assert!(d < 1e-4, "{head} head, {name}: max |Δlogit| {d}");
                same_greedy(&out, &manifest, name, 1e-3);
                n_greedy += 1;
            } else {
                // Q8_0 rounds each head weight to 8 bits per block of 32 and
                // the int8 head kernel quantises the activations likewise:
                // about 1% of a logit (measured max |Δ| 0.053 to 0.066, rel
                // L2 about 8e-3). So 0.1 max |Δ| and 2e-2 rel L2; greedy
                // tokens are compared while the recorded margin exceeds
                // twice the bound (a shift of at most d per logit moves a
                // top-1/top-2 gap by at most 2d), on the prompts with at
                // least 4 such steps.
                assert!(d < 0.1, "{head} head, {name}: max |Δlogit| {d}");
                assert!(rl2 < 2e-2, "{head} head, {name}: rel L2 {rl2}");
                let confident = p["greedy_margins"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .take_while(|m| m.as_f64().unwrap() > 0.2)
                    .count();
                if confident >= 4 {
                    same_greedy(&out, &manifest, name, 0.2);
                    n_greedy += 1;
                }
            }
        }
        assert!(
            n_greedy >= 2,
            "{head} head: only {n_greedy} greedy comparisons"
        );
    }
    // The tied original has no separate head to format.
    let tied = dir.path().join("tied.gguf");
    convert(
        &repo_fixtures().join("small-bitnet"),
        &tied,
        &["--head-type", "q8_0"],
    );
    let file = bitnet_gguf::GgufFile::open(&tied).unwrap();
    assert!(file.tensor("output.weight").is_none());
    assert_eq!(
        file.tensor("token_embd.weight").unwrap().raw_type,
        bitnet_gguf::GgmlType::F16,
        "--head-type must not change a tied embedding"
    );
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
