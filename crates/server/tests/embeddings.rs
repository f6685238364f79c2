//! `POST /v1/embeddings` with the tiny Qwen3 BitNet embedding model of
//! `fixtures/embed`: the vectors match the transformers reference (texts in
//! one request, batched), token ids give the same vectors as their text,
//! base64 is the vector's little-endian f32 bytes, usage counts the tokens,
//! and bad requests get 400 naming the parameter.

mod common;

use std::path::Path;

use base64::Engine as _;
use bitnet_engine::{Engine, ModelLocation};
use common::TestServer;
use common::http;
use serde_json::{Value, json};

fn fixture_dir() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../fixtures/embed/qwen3")
}

fn embedding_engine(n_ctx: Option<usize>) -> Engine {
    common::load(&ModelLocation::HfDir(fixture_dir()), n_ctx)
}

fn reference() -> Vec<(String, Vec<u32>, Vec<f32>)> {
    let r: Value =
        serde_json::from_slice(&std::fs::read(fixture_dir().join("reference.json")).unwrap())
            .unwrap();
    r["texts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            let ids = t["input_ids"].as_array().unwrap();
            let v = t["embedding"].as_array().unwrap();
            (
                t["text"].as_str().unwrap().to_string(),
                ids.iter().map(|x| x.as_u64().unwrap() as u32).collect(),
                v.iter().map(|x| x.as_f64().unwrap() as f32).collect(),
            )
        })
        .collect()
}

fn floats(v: &Value) -> Vec<f32> {
    v.as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap() as f32)
        .collect()
}

fn cosine_distance(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len());
    let dot: f64 = a
        .iter()
        .zip(b)
        .map(|(x, y)| f64::from(*x) * f64::from(*y))
        .sum();
    let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
    1.0 - dot / (n(a) * n(b))
}

#[test]
fn embeddings_match_the_reference() {
    let reference = reference();
    let server = TestServer::start(embedding_engine(None), |c| c.model_name = "embed".into());
    let texts: Vec<&str> = reference.iter().map(|(t, _, _)| t.as_str()).collect();
    let r = http::post(server.addr, "/v1/embeddings", &json!({"input": texts}));
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert_eq!(body["object"], "list");
    assert_eq!(body["model"], "embed");
    let data = body["data"].as_array().unwrap();
    assert_eq!(data.len(), reference.len());
    let n_tokens: usize = reference.iter().map(|(_, ids, _)| ids.len()).sum();
    assert_eq!(body["usage"]["prompt_tokens"], n_tokens);
    assert_eq!(body["usage"]["total_tokens"], n_tokens);
    for (i, (d, (text, ids, want))) in data.iter().zip(&reference).enumerate() {
        assert_eq!(d["object"], "embedding");
        assert_eq!(d["index"], i);
        let got = floats(&d["embedding"]);
        let dist = cosine_distance(&got, want);
        assert!(dist <= 1e-4, "{text:?}: cosine distance {dist}");

        // The same text alone, and its token ids, give the same vector.
        let alone = http::post(server.addr, "/embeddings", &json!({"input": text}));
        assert_eq!(alone.status, 200, "{}", alone.text());
        assert_eq!(alone.json()["usage"]["prompt_tokens"], ids.len());
        let ids_r = http::post(server.addr, "/v1/embeddings", &json!({"input": ids}));
        assert_eq!(ids_r.status, 200, "{}", ids_r.text());
        let by_ids = floats(&ids_r.json()["data"][0]["embedding"]);
        assert!(cosine_distance(&by_ids, &got) <= 1e-6, "{text:?} by ids");
        assert!(cosine_distance(&floats(&alone.json()["data"][0]["embedding"]), &got) <= 1e-6);
    }

    // base64: the little-endian f32 bytes of the float answer.
    let text = &reference[0].0;
    let plain = http::post(server.addr, "/v1/embeddings", &json!({"input": [text]}));
    let encoded = http::post(
        server.addr,
        "/v1/embeddings",
        &json!({"input": [text], "encoding_format": "base64"}),
    );
    assert_eq!(encoded.status, 200, "{}", encoded.text());
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.json()["data"][0]["embedding"].as_str().unwrap())
        .unwrap();
    let decoded: Vec<f32> = bytes
        .chunks_exact(4)
        .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect();
    assert_eq!(decoded, floats(&plain.json()["data"][0]["embedding"]));
    server.stop();
}

#[test]
fn bad_embedding_requests_name_the_problem() {
    let server = TestServer::start(embedding_engine(Some(64)), |_| {});
    let cases = [
        (json!({"input": []}), "input", "empty list"),
        (json!({"input": ["ok", ""]}), "input", "'input[1]' is empty"),
        (json!({"input": [[5], []]}), "input", "'input[1]' is empty"),
        (json!({"input": [[1, 2, 99999]]}), "input", "out of range"),
        (
            json!({"input": "x", "encoding_format": "int8"}),
            "encoding_format",
            "'int8'",
        ),
        (
            json!({"input": "x", "dimensions": 64}),
            "dimensions",
            "128-dimensional",
        ),
        (json!({"inputs": "x"}), "input", "input"),
        (
            json!({"input": "hello world ".repeat(100)}),
            "input",
            "context",
        ),
    ];
    for (body, param, says) in cases {
        let r = http::post(server.addr, "/v1/embeddings", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["param"], param, "{body}: {e}");
        assert!(e["message"].as_str().unwrap().contains(says), "{body}: {e}");
    }
    let many: Vec<&str> = vec!["a"; 2049];
    let r = http::post(server.addr, "/v1/embeddings", &json!({"input": many}));
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["code"], "array_above_max_length");
    // An embedding model makes no text.
    let r = http::post(server.addr, "/v1/completions", &json!({"prompt": "hi"}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "model_not_supported");
    server.stop();
}

#[test]
fn a_language_model_makes_no_embeddings() {
    let server = TestServer::start(common::demo(Some(256)), |_| {});
    let r = http::post(server.addr, "/v1/embeddings", &json!({"input": "hello"}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "model_not_supported");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("not an embedding model")
    );
    server.stop();
}
