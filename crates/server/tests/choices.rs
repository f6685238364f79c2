//! `logprobs` (chat: `logprobs` + `top_logprobs`; completions: `logprobs`
//! as a count) and `n > 1`, whole and streamed, against the engine.

mod common;

use std::sync::OnceLock;

use bitnet_engine::{Engine, GenerationParams, SamplerConfig};
use common::http;
use common::{TestServer, greedy};
use serde_json::{Value, json};

const MIT: &str = "Permission is hereby granted, free of charge,";

struct Shared {
    server: TestServer,
    reference: Engine,
}

fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        server: TestServer::start(common::demo(None), |c| {
            c.parallel = 2;
            c.queue = 4;
        }),
        reference: common::demo(None),
    })
}

/// `log softmax(logits)` of each generated token, and the most likely
/// alternatives, from the logits of the whole sequence at once.
fn reference_logprobs(
    e: &Engine,
    prompt: &[u32],
    tokens: &[u32],
    top: usize,
) -> Vec<(f64, Vec<u32>)> {
    let n_vocab = e.model().hparams().n_vocab;
    let mut ids = prompt.to_vec();
    ids.extend(tokens);
    let logits = e.logits(&ids).expect("logits");
    tokens
        .iter()
        .enumerate()
        .map(|(k, &t)| {
            let row = &logits[(prompt.len() + k - 1) * n_vocab..][..n_vocab];
            let mut order: Vec<u32> = (0..n_vocab as u32).collect();
            order.sort_by(|&a, &b| row[b as usize].total_cmp(&row[a as usize]).then(a.cmp(&b)));
            order.truncate(top);
            (-bitnet_engine::negative_log_likelihood(row, t), order)
        })
        .collect()
}

fn piece(e: &Engine, id: u32) -> Vec<u8> {
    e.tokenizer().token_bytes(id).expect("token")
}

/// The chat `logprobs.content` entries of a response or of all its chunks.
fn chat_entries(r: &http::Response, stream: bool) -> Vec<Value> {
    assert_eq!(r.status, 200, "{}", r.text());
    if !stream {
        let j = r.json();
        return j["choices"][0]["logprobs"]["content"]
            .as_array()
            .expect("content")
            .clone();
    }
    let mut out = Vec::new();
    for c in http::sse_chunks(&r.sse_data()) {
        if let Some(content) = c["choices"][0]["logprobs"]["content"].as_array() {
            out.extend(content.iter().cloned());
        }
    }
    out
}

#[test]
fn chat_logprobs_are_the_raw_log_softmax_whole_and_streamed() {
    let s = shared();
    let e = &s.reference;
    let messages = [bitnet_engine::ChatMessage::new(
        "user",
        "What does the licence grant?",
    )];
    let prompt = e
        .tokenize_chat(&e.render_chat(&messages, true).unwrap())
        .unwrap();
    // Sampled at temperature 0.8 with a seed: the log-probabilities are
    // still those of the raw logits.
    let sampler = SamplerConfig {
        temperature: 0.8,
        top_k: 0,
        top_p: 1.0,
        min_p: 0.0,
        repeat_last_n: 0,
        seed: 11,
        ..SamplerConfig::default()
    };
    let g = e
        .generate(
            &prompt,
            &GenerationParams {
                max_tokens: 10,
                sampler,
                ..greedy(10)
            },
            false,
            &mut |_| true,
        )
        .unwrap();
    let want = reference_logprobs(e, &prompt, &g.tokens, 3);
    for stream in [false, true] {
        let r = http::post(
            s.server.addr,
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": "What does the licence grant?"}],
                    "temperature": 0.8, "seed": 11, "max_tokens": 10, "logprobs": true, "top_logprobs": 3, "stream": stream}),
        );
        let entries = chat_entries(&r, stream);
        assert_eq!(entries.len(), g.tokens.len(), "stream {stream}");
        for (k, ((entry, &id), (lp, top))) in entries.iter().zip(&g.tokens).zip(&want).enumerate() {
            let bytes = piece(e, id);
            assert_eq!(
                entry["token"],
                String::from_utf8_lossy(&bytes).as_ref(),
                "token {k}"
            );
            assert_eq!(entry["bytes"], json!(bytes), "token {k}");
            let got = entry["logprob"].as_f64().unwrap();
            assert!((got - lp).abs() < 1e-4, "token {k}: {got} vs {lp}");
            let alternatives = entry["top_logprobs"].as_array().unwrap();
            assert_eq!(alternatives.len(), 3);
            for (alt, &id) in alternatives.iter().zip(top) {
                assert_eq!(alt["bytes"], json!(piece(e, id)), "token {k}");
            }
            let values: Vec<f64> = alternatives
                .iter()
                .map(|a| a["logprob"].as_f64().unwrap())
                .collect();
            assert!(values.windows(2).all(|w| w[0] >= w[1]), "{values:?}");
        }
    }
    // logprobs: true alone gives no alternatives; without it, null.
    let r = http::post(
        s.server.addr,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3, "logprobs": true}),
    );
    let entries = chat_entries(&r, false);
    assert!(!entries.is_empty() && entries.iter().all(|e| e["top_logprobs"] == json!([])));
    let r = http::post(
        s.server.addr,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 3}),
    );
    assert!(r.json()["choices"][0]["logprobs"].is_null());
}

#[test]
fn completion_logprobs_give_tokens_offsets_and_top_maps() {
    let s = shared();
    let e = &s.reference;
    let prompt = e.tokenize(MIT).unwrap();
    let g = e
        .generate(&prompt, &greedy(12), false, &mut |_| true)
        .unwrap();
    let want = reference_logprobs(e, &prompt, &g.tokens, 2);
    let mut seen = Vec::new();
    for stream in [false, true] {
        let r = http::post(
            s.server.addr,
            "/v1/completions",
            &json!({"prompt": MIT, "temperature": 0, "max_tokens": 12, "logprobs": 2, "stream": stream}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let (mut tokens, mut values, mut tops, mut offsets, mut text) = (
            Vec::new(),
            Vec::new(),
            Vec::new(),
            Vec::new(),
            String::new(),
        );
        let choices: Vec<Value> = if stream {
            http::sse_chunks(&r.sse_data())
                .iter()
                .filter_map(|c| c["choices"].get(0).cloned())
                .collect()
        } else {
            vec![r.json()["choices"][0].clone()]
        };
        for c in choices {
            text.push_str(c["text"].as_str().unwrap_or(""));
            let lp = &c["logprobs"];
            if lp.is_null() {
                continue;
            }
            tokens.extend(
                lp["tokens"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|t| t.as_str().unwrap().to_string()),
            );
            values.extend(
                lp["token_logprobs"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_f64().unwrap()),
            );
            tops.extend(lp["top_logprobs"].as_array().unwrap().iter().cloned());
            offsets.extend(
                lp["text_offset"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_u64().unwrap() as usize),
            );
        }
        assert_eq!(text, g.text);
        assert_eq!(tokens.concat(), g.text, "the tokens spell the text");
        assert_eq!(tokens.len(), g.tokens.len());
        let mut at = 0;
        for k in 0..tokens.len() {
            assert_eq!(offsets[k], at, "text_offset {k}");
            at += tokens[k].chars().count();
            assert!((values[k] - want[k].0).abs() < 1e-4, "token {k}");
            // Greedy: the sampled token is the most likely, so the map holds
            // exactly the two alternatives, the first being the sample.
            let map = tops[k].as_object().unwrap();
            assert_eq!(map.len(), 2, "{map:?}");
            assert!((map[&tokens[k]].as_f64().unwrap() - values[k]).abs() < 1e-6);
            let second = String::from_utf8_lossy(&piece(e, want[k].1[1])).into_owned();
            assert!(map.contains_key(&second), "{map:?} lacks {second:?}");
        }
        seen.push(values);
    }
    // Streamed values equal whole ones (up to the last bits: the two runs
    // may share their batches with other tests' sequences).
    for (a, b) in seen[0].iter().zip(&seen[1]) {
        assert!((a - b).abs() < 1e-5, "{:?} vs {:?}", seen[0], seen[1]);
    }
}

/// The server's sampler for `{"temperature": 1, "seed": seed}`.
fn sampled(seed: u64, max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens,
        sampler: SamplerConfig {
            temperature: 1.0,
            top_k: 0,
            top_p: 1.0,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: 0,
            frequency_penalty: 0.0,
            presence_penalty: 0.0,
            seed,
        },
        ..GenerationParams::default()
    }
}

#[test]
fn n_choices_are_independent_samples_with_consecutive_seeds() {
    let s = shared();
    let e = &s.reference;
    let prompt = e.tokenize(MIT).unwrap();
    let want: Vec<bitnet_engine::Generation> = (0..3)
        .map(|i| {
            e.generate(&prompt, &sampled(5 + i, 8), false, &mut |_| true)
                .unwrap()
        })
        .collect();
    assert!(
        want[0].text != want[1].text || want[1].text != want[2].text,
        "seeds differ"
    );
    let body =
        json!({"prompt": MIT, "temperature": 1, "seed": 5, "max_tokens": 8, "n": 3, "logprobs": 0});
    let r = http::post(s.server.addr, "/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    let choices = j["choices"].as_array().unwrap();
    assert_eq!(choices.len(), 3);
    for (i, c) in choices.iter().enumerate() {
        assert_eq!(c["index"], i);
        assert_eq!(c["text"], want[i].text.as_str(), "choice {i}");
        assert_eq!(
            c["logprobs"]["tokens"].as_array().unwrap().len(),
            want[i].tokens.len()
        );
    }
    let completion: usize = want.iter().map(|g| g.tokens.len()).sum();
    assert_eq!(
        j["usage"]["prompt_tokens"],
        prompt.len(),
        "the prompt counts once"
    );
    assert_eq!(j["usage"]["completion_tokens"], completion);
    assert_eq!(j["usage"]["total_tokens"], prompt.len() + completion);

    // Streamed: chunks of the three choices interleave, each with its index
    // and its own finish, then one usage chunk.
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    streamed["stream_options"] = json!({"include_usage": true});
    let r = http::post(s.server.addr, "/v1/completions", &streamed);
    let chunks = http::sse_chunks(&r.sse_data());
    let mut texts = vec![String::new(); 3];
    let mut finishes = vec![Vec::new(); 3];
    let (usage, rest) = chunks.split_last().unwrap();
    for c in rest {
        let choices = c["choices"].as_array().unwrap();
        assert_eq!(choices.len(), 1, "{c}");
        let i = choices[0]["index"].as_u64().unwrap() as usize;
        texts[i].push_str(choices[0]["text"].as_str().unwrap());
        if let Some(f) = choices[0]["finish_reason"].as_str() {
            finishes[i].push(f.to_string());
        }
    }
    for i in 0..3 {
        assert_eq!(texts[i], want[i].text, "choice {i}");
        assert_eq!(
            finishes[i],
            [want[i].stop_reason.finish_reason()],
            "choice {i}"
        );
    }
    assert_eq!(usage["choices"], json!([]));
    assert_eq!(usage["usage"]["prompt_tokens"], prompt.len());
    assert_eq!(usage["usage"]["completion_tokens"], completion);
}

#[test]
fn chat_with_n_streams_a_role_chunk_per_choice() {
    let s = shared();
    let r = http::post(
        s.server.addr,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "max_tokens": 4, "n": 2, "stream": true}),
    );
    let chunks = http::sse_chunks(&r.sse_data());
    let roles: Vec<u64> = chunks
        .iter()
        .filter(|c| c["choices"][0]["delta"]["role"] == "assistant")
        .map(|c| c["choices"][0]["index"].as_u64().unwrap())
        .collect();
    assert_eq!(roles, [0, 1]);
    // Greedy: both choices say the same.
    let mut texts = [String::new(), String::new()];
    for c in &chunks {
        let i = c["choices"][0]["index"].as_u64().unwrap() as usize;
        texts[i].push_str(c["choices"][0]["delta"]["content"].as_str().unwrap_or(""));
    }
    assert_eq!(texts[0], texts[1]);
    assert!(!texts[0].is_empty());
    let whole = http::post(
        s.server.addr,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "temperature": 0, "max_tokens": 4, "n": 2}),
    )
    .json();
    assert_eq!(whole["choices"][1]["message"]["content"], texts[1].as_str());
}

#[test]
fn bad_n_and_logprobs_are_refused_in_openai_words() {
    let s = shared();
    let a = s.server.addr;
    let chat = "/v1/chat/completions";
    let hello = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            chat,
            json!({"messages": hello, "n": 0}),
            "n",
            "Invalid 'n': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        ),
        (
            chat,
            json!({"messages": hello, "n": 129}),
            "n",
            "Invalid 'n': integer above maximum value. Expected a value <= 128, but got 129 instead.",
        ),
        (
            chat,
            json!({"messages": hello, "n": 7}),
            "n",
            "Invalid 'n': this server runs at most 6 sequences at once (slots plus queue places), but got 7.",
        ),
        (
            chat,
            json!({"messages": hello, "logprobs": 2}),
            "logprobs",
            "Invalid type for 'logprobs': expected a boolean, but got an integer instead.",
        ),
        (
            chat,
            json!({"messages": hello, "top_logprobs": 2}),
            "top_logprobs",
            "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is given.",
        ),
        (
            chat,
            json!({"messages": hello, "logprobs": true, "top_logprobs": 21}),
            "top_logprobs",
            "Invalid 'top_logprobs': integer above maximum value. Expected a value <= 20, but got 21 instead.",
        ),
        (
            "/v1/completions",
            json!({"prompt": MIT, "logprobs": 6}),
            "logprobs",
            "Invalid 'logprobs': integer above maximum value. Expected a value <= 5, but got 6 instead.",
        ),
        (
            "/v1/completions",
            json!({"prompt": MIT, "logprobs": true}),
            "logprobs",
            "Invalid type for 'logprobs': expected an integer, but got a boolean instead.",
        ),
        (
            "/generate",
            json!({"prompt": MIT, "n": 2}),
            "n",
            "/generate gives one plain answer; use /v1/completions for 'n'.",
        ),
    ];
    for (path, body, param, message) in cases {
        let r = http::post(a, path, &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["param"], param, "{body}");
        assert_eq!(e["message"], message, "{body}");
    }
}
