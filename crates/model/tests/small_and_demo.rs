//! small-bitnet (4096-token vocabulary, GQA 4:1) and demo-bitnet (trained)
//! against their transformers references, from the Hugging Face files and
//! from each GGUF that bitnet.cpp's own tools wrote.

mod common;

use std::path::Path;

use bitnet_threads::ThreadPool;
use common::*;

fn check_all(model_path: &Path, ref_dir: &Path, c: Criteria, label: &str) {
    let model = load(model_path);
    let pool = ThreadPool::new(2);
    let manifest = read_json(&ref_dir.join("manifest.json"));
    for p in manifest["prompts"].as_array().unwrap() {
        check_prompt(&model, &pool, ref_dir, p, c, label);
    }
}

fn check_hidden(model_path: &Path, ref_dir: &Path, prompt: &str) {
    let model = load(model_path);
    let pool = ThreadPool::new(2);
    let manifest = read_json(&ref_dir.join("manifest.json"));
    let p = manifest["prompts"].as_array().unwrap().iter().find(|p| p["name"] == prompt).unwrap();
    let ids = ids(&p["input_ids"]);
    let (shape, hidden) = read_npy(&ref_dir.join(format!("{prompt}.hidden_states.npy")));
    let states = hidden_states(&model, &pool, &ids);
    assert_eq!(states.len(), shape[0]);
    let per = shape[1] * shape[2];
    for (i, s) in states.iter().enumerate() {
        let d = max_abs_diff(s, &hidden[i * per..(i + 1) * per]);
        assert!(d < 1e-4, "{}: hidden state {i}: max |Δ| {d}", model_path.display());
    }
    let (_, all) = read_npy(&ref_dir.join(format!("{prompt}.all_logits.npy")));
    let d = max_abs_diff(&all_logits(&model, &pool, &ids), &all);
    assert!(d < 1e-3, "{}: all-position logits max |Δ| {d}", model_path.display());
}

#[test]
fn small_bitnet_hf() {
    let dir = repo_fixtures().join("small-bitnet");
    check_all(&dir, &dir.join("reference"), Criteria::REFERENCE, "small/hf");
    check_hidden(&dir, &dir.join("reference"), "fact");
}

#[test]
fn small_bitnet_i2_s() {
    let dir = repo_fixtures().join("small-bitnet");
    let file = dir.join("gguf/small-bitnet-i2_s.gguf");
    // I2_S stores 1/weight_scale and bitnet.cpp multiplies by it; the
    // reference divides by weight_scale. The 1-ulp differences this makes
    // reach a rounding tie on `chat` (max |Δ| 5e-2, rel L2 7e-3).
    let c = Criteria {
        tie_prompts: &["chat"],
        ..Criteria::REFERENCE
    };
    check_all(&file, &dir.join("reference"), c, "small/i2_s");
    check_hidden(&file, &dir.join("reference"), "fact");
}

// TQ1_0 and TQ2_0 store each matrix's scale as an f16 per 256-value block:
// 1/weight_scale rounded to f16 (relative error up to 3.7e-4, see
// gguf/weights_check.json). That is the file's own precision: this random
// model amplifies it to ~1e-2 relative in the logits (bitnet.cpp's own TQ
// runs differ from the reference by 2.5-3%, peers.json), so the files are held
// to the long-prompt criterion, greedy agreement where margins exceed 0.1, and
// top-8 membership for tokens more than 0.1 from the 8th logit.
const TQ: Criteria<'static> = Criteria {
    tight: 1e-3,
    tight_up_to: 0,
    margin: 0.1,
    tie_prompts: &[],
    top8_slack: 0.1,
};
#[test]
fn small_bitnet_tq2_0() {
    let dir = repo_fixtures().join("small-bitnet");
    check_all(&dir.join("gguf/small-bitnet-tq2_0.gguf"), &dir.join("reference"), TQ, "small/tq2_0");
}

#[test]
fn small_bitnet_tq1_0() {
    let dir = repo_fixtures().join("small-bitnet");
    check_all(&dir.join("gguf/small-bitnet-tq1_0.gguf"), &dir.join("reference"), TQ, "small/tq1_0");
}

#[test]
fn demo_bitnet_hf() {
    let dir = repo_fixtures().join("demo-bitnet");
    // `gpl` reaches exact rounding ties (e.g. 76.5 and -63.5 before an int8
    // quantisation): a 1-ulp difference in an attention sum flips one
    // (max |Δ| 3e-2, rel L2 2e-3); greedy still agrees.
    let c = Criteria {
        tie_prompts: &["gpl"],
        ..Criteria::REFERENCE
    };
    check_all(&dir, &dir.join("reference"), c, "demo/hf");
    check_hidden(&dir, &dir.join("reference"), "mit");
}

#[test]
fn demo_bitnet_i2_s() {
    let dir = repo_fixtures().join("demo-bitnet");
    let c = Criteria {
        tie_prompts: &["gpl"],
        ..Criteria::REFERENCE
    };
    check_all(&dir.join("gguf/demo-bitnet-i2_s.gguf"), &dir.join("reference"), c, "demo/i2_s");
}
