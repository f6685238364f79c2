//! `bitnet embed`: JSON embeddings from `-p` and `-f`, from the Hugging Face
//! files and the I2_S GGUF of `fixtures/embed`, against their references.

mod common;

use common::*;

fn floats(v: &serde_json::Value) -> Vec<f64> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect()
}

fn cosine_distance(a: &[f64], b: &[f64]) -> f64 {
    let dot: f64 = a.iter().zip(b).map(|(x, y)| x * y).sum();
    let n = |v: &[f64]| v.iter().map(|x| x * x).sum::<f64>().sqrt();
    1.0 - dot / (n(a) * n(b))
}

#[test]
fn embeds_prompts_and_file_lines_as_json() {
    let dir = repo_fixtures().join("embed/qwen3");
    let reference = read_json(&dir.join("reference.json"));
    let texts = reference["texts"].as_array().unwrap();
    let first = texts[0]["text"].as_str().unwrap();
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("texts.txt");
    // Two texts and a blank line (skipped).
    let lines = format!(
        "{}\n\n{}\n",
        texts[1]["text"].as_str().unwrap(),
        texts[2]["text"].as_str().unwrap()
    );
    std::fs::write(&file, lines).unwrap();
    for model in [dir.clone(), dir.join("qwen3-i2_s.gguf")] {
        let out = ok(bitnet()
            .arg("embed")
            .arg("-m")
            .arg(&model)
            .args(["-t", "2", "-p", first, "-f"])
            .arg(&file));
        let json = json_stdout(&out);
        assert_eq!(json["dimensions"], 128);
        let data = json["data"].as_array().unwrap();
        assert_eq!(data.len(), 3);
        let key = if model.is_dir() {
            "embedding"
        } else {
            "gguf_embedding"
        };
        for (i, d) in data.iter().enumerate() {
            assert_eq!(d["index"], i);
            assert_eq!(d["text"], texts[i]["text"]);
            assert_eq!(
                d["n_tokens"].as_u64().unwrap() as usize,
                texts[i]["input_ids"].as_array().unwrap().len()
            );
            let dist = cosine_distance(&floats(&d["embedding"]), &floats(&texts[i][key]));
            assert!(dist <= 1e-4, "{} text {i}: {dist}", model.display());
        }
    }
}

#[test]
fn embed_errors_are_clear() {
    fails_with(
        bitnet()
            .args(["embed", "-m"])
            .arg(repo_fixtures().join("embed/qwen3")),
        &["nothing to embed", "-p"],
    );
    fails_with(
        bitnet()
            .args(["embed", "-p", "hello", "-m"])
            .arg(repo_fixtures().join("demo-bitnet")),
        &["not an embedding model"],
    );
    fails_with(
        bitnet()
            .args(["embed", "-f", "/nonexistent/texts.txt", "-m"])
            .arg(repo_fixtures().join("embed/qwen3")),
        &["cannot read", "/nonexistent/texts.txt"],
    );
}
