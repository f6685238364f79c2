//! The HTTP API over raw HTTP/1.1 with the built-in demo model: every
//! endpoint, greedy output equal to `Engine::generate`, and every kind of
//! bad input answered with a 4xx in OpenAI's error shape.

mod common;

use std::sync::OnceLock;

use bitnet_engine::{Engine, GenerationParams, SamplerConfig};
use common::http::{self, Response};
use common::{TestServer, greedy};
use serde_json::{Value, json};

const MIT: &str = "Permission is hereby granted, free of charge,";

struct Shared {
    server: TestServer,
    reference: Engine,
}

/// One server and one reference engine for the whole file.
fn shared() -> &'static Shared {
    static SHARED: OnceLock<Shared> = OnceLock::new();
    SHARED.get_or_init(|| Shared {
        server: TestServer::start(common::demo(None), |_| {}),
        reference: common::demo(None),
    })
}

fn addr() -> std::net::SocketAddr {
    shared().server.addr
}

/// Asserts OpenAI's error shape and returns the error object.
fn assert_error(r: &Response, status: u16) -> Value {
    assert_eq!(r.status, status, "body: {}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.contains("application/json")),
        "{:?}",
        r.headers
    );
    let body = r.json();
    let error = body
        .get("error")
        .unwrap_or_else(|| panic!("no error object: {body}"))
        .clone();
    assert!(
        error["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{error}"
    );
    assert!(error["type"].is_string(), "{error}");
    assert!(
        error.get("param").is_some() && error.get("code").is_some(),
        "{error}"
    );
    error
}

#[test]
fn health_models_and_metrics() {
    let a = addr();
    let h = http::get(a, "/health");
    assert_eq!(h.status, 200);
    assert_eq!(h.json()["status"], "ok");

    let models = http::get(a, "/v1/models").json();
    assert_eq!(models["object"], "list");
    assert_eq!(models["data"][0]["id"], "test-model");
    assert_eq!(models["data"][0]["object"], "model");
    assert_eq!(
        http::get(a, "/v1/models/test-model").json()["id"],
        "test-model"
    );
    assert_error(&http::get(a, "/v1/models/gpt-4"), 404);

    let r = http::post(a, "/generate", &json!({"prompt": MIT, "max_tokens": 3}));
    assert_eq!(r.status, 200, "{}", r.text());
    let m = http::get(a, "/metrics");
    assert_eq!(m.status, 200);
    assert!(
        m.header("content-type")
            .is_some_and(|v| v.starts_with("text/plain"))
    );
    let text = m.text();
    for name in [
        "bitnet_requests_total{endpoint=\"generate\"}",
        "bitnet_prompt_tokens_total",
        "bitnet_generated_tokens_total",
        "bitnet_queue_depth",
        "bitnet_generation_tokens_per_second",
        "# TYPE bitnet_requests_total counter",
    ] {
        assert!(text.contains(name), "{name} missing from\n{text}");
    }
    let generated: f64 = text
        .lines()
        .find_map(|l| l.strip_prefix("bitnet_generated_tokens_total "))
        .and_then(|v| v.parse().ok())
        .expect("generated tokens");
    assert!(generated >= 3.0);
}

#[test]
fn chat_completion_equals_engine_generate() {
    let s = shared();
    let user = "What does the licence grant?";
    let (want, finish, n_prompt) = common::reference_chat(&s.reference, user, &greedy(16));
    let r = http::post(
        s.server.addr,
        "/v1/chat/completions",
        &json!({"model": "test-model", "messages": [{"role": "user", "content": user}], "temperature": 0, "max_tokens": 16}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let body = r.json();
    assert!(
        body["id"]
            .as_str()
            .is_some_and(|id| id.starts_with("chatcmpl-"))
    );
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "test-model");
    assert!(body["created"].as_u64().is_some_and(|t| t > 1_600_000_000));
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(body["choices"][0]["message"]["content"], want.as_str());
    assert_eq!(body["choices"][0]["finish_reason"], finish);
    let usage = &body["usage"];
    assert_eq!(usage["prompt_tokens"], n_prompt);
    let completion = usage["completion_tokens"]
        .as_u64()
        .expect("completion tokens");
    assert_eq!(
        usage["total_tokens"].as_u64(),
        Some(n_prompt as u64 + completion)
    );
}

#[test]
fn chat_stream_equals_engine_generate_and_ends_with_usage() {
    let s = shared();
    let user = "Hello";
    let r = http::post(
        s.server.addr,
        "/v1/chat/completions",
        &json!({
            "model": "test-model",
            "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": [{"type": "text", "text": user}]}],
            "temperature": 0, "max_completion_tokens": 12, "stream": true,
            "stream_options": {"include_usage": true}
        }),
    );
    // The reference for exactly what was sent.
    let messages = [
        bitnet_engine::ChatMessage::new("system", "Be brief."),
        bitnet_engine::ChatMessage::new("user", user),
    ];
    let ids = s
        .reference
        .tokenize_chat(&s.reference.render_chat(&messages, true).expect("render"))
        .expect("ids");
    let g = s
        .reference
        .generate(&ids, &greedy(12), false, &mut |_| true)
        .expect("generate");

    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream"))
    );
    let data = r.sse_data();
    let chunks = http::sse_chunks(&data);
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let mut text = String::new();
    let mut finish_reason = None;
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["id"], chunks[0]["id"]);
        if let Some(choice) = c["choices"].get(0) {
            text.push_str(choice["delta"]["content"].as_str().unwrap_or(""));
            if let Some(f) = choice["finish_reason"].as_str() {
                finish_reason = Some(f.to_string());
            }
        }
    }
    assert_eq!(text, g.text);
    assert_eq!(
        finish_reason.as_deref(),
        Some(g.stop_reason.finish_reason())
    );
    let last = chunks.last().expect("chunks");
    assert_eq!(last["choices"].as_array().map(Vec::len), Some(0));
    assert_eq!(last["usage"]["prompt_tokens"], ids.len());
    assert_eq!(last["usage"]["completion_tokens"], g.tokens.len());
    // Every earlier chunk carries "usage": null.
    assert!(
        chunks[..chunks.len() - 1]
            .iter()
            .all(|c| c["usage"].is_null())
    );
}

#[test]
fn completions_whole_and_streamed_equal_engine_generate() {
    let s = shared();
    let (want, finish) = common::reference_text(&s.reference, MIT, &greedy(16));
    assert!(!want.is_empty());
    let body = json!({"model": "test-model", "prompt": MIT, "temperature": 0.0, "max_tokens": 16});
    let r = http::post(s.server.addr, "/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert!(j["id"].as_str().is_some_and(|id| id.starts_with("cmpl-")));
    assert_eq!(j["object"], "text_completion");
    assert_eq!(j["choices"][0]["text"], want.as_str());
    assert_eq!(j["choices"][0]["finish_reason"], finish);

    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let r = http::post(s.server.addr, "/v1/completions", &streamed);
    assert_eq!(r.status, 200);
    let mut text = String::new();
    for c in http::sse_chunks(&r.sse_data()) {
        assert_eq!(c["object"], "text_completion");
        assert!(c.get("usage").is_none(), "usage only when asked for");
        text.push_str(c["choices"][0]["text"].as_str().unwrap_or(""));
    }
    assert_eq!(text, want);

    // Token ids work as a prompt too.
    let ids = s.reference.tokenize(MIT).expect("ids");
    let r = http::post(
        s.server.addr,
        "/v1/completions",
        &json!({"prompt": ids, "temperature": 0, "max_tokens": 16}),
    );
    assert_eq!(r.json()["choices"][0]["text"], want.as_str());
}

#[test]
fn simple_generate_api() {
    let s = shared();
    let (want, finish) = common::reference_text(&s.reference, MIT, &greedy(20));
    let r = http::post(
        s.server.addr,
        "/generate",
        &json!({"prompt": MIT, "max_tokens": 20}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["text"], want.as_str());
    assert_eq!(j["finish_reason"], finish);
    assert!(
        j["usage"]["completion_tokens"]
            .as_u64()
            .is_some_and(|n| n > 0 && n <= 20)
    );
}

#[test]
fn stop_strings_cut_the_output_like_the_engine() {
    let s = shared();
    let (full, _) = common::reference_text(&s.reference, MIT, &greedy(16));
    // A stop string from the middle of the greedy text.
    let words: Vec<&str> = full.split_whitespace().collect();
    let stop = words[words.len() / 2].to_string();
    let params = GenerationParams {
        stop: vec![stop.clone(), "\u{0}never".into()],
        ..greedy(16)
    };
    let (want, finish) = common::reference_text(&s.reference, MIT, &params);
    assert_eq!(finish, "stop");
    assert!(want.len() < full.len());
    for stream in [false, true] {
        let r = http::post(
            s.server.addr,
            "/v1/completions",
            &json!({"prompt": MIT, "temperature": 0, "max_tokens": 16, "stop": [stop, "\u{0}never"], "stream": stream}),
        );
        assert_eq!(r.status, 200);
        let text = if stream {
            http::stream_text(&r.sse_data()).0
        } else {
            r.json()["choices"][0]["text"]
                .as_str()
                .expect("text")
                .to_string()
        };
        assert_eq!(text, want);
    }
}

/// The text of a completion or chat answer, whole or streamed.
fn answer_text(r: &Response, stream: bool) -> String {
    assert_eq!(r.status, 200, "{}", r.text());
    if !stream {
        let choice = &r.json()["choices"][0];
        return choice["text"]
            .as_str()
            .or(choice["message"]["content"].as_str())
            .expect("text")
            .to_string();
    }
    http::stream_text(&r.sse_data()).0
}

/// A word from the middle of `text`, to stop at.
fn middle_word(text: &str) -> String {
    let words: Vec<&str> = text.split_whitespace().collect();
    assert!(
        words.len() >= 3,
        "too little text to pick a stop word: {text:?}"
    );
    words[words.len() / 2].to_string()
}

#[test]
fn stop_as_a_single_string_cuts_like_the_engine() {
    let s = shared();
    let a = s.server.addr;
    // Completions.
    let (full, _) = common::reference_text(&s.reference, MIT, &greedy(16));
    let stop = middle_word(&full);
    let params = GenerationParams {
        stop: vec![stop.clone()],
        ..greedy(16)
    };
    let (want, finish) = common::reference_text(&s.reference, MIT, &params);
    assert_eq!(finish, "stop");
    assert!(want.len() < full.len() && !want.contains(&stop));
    for stream in [false, true] {
        let r = http::post(
            a,
            "/v1/completions",
            &json!({"prompt": MIT, "temperature": 0, "max_tokens": 16, "stop": stop, "stream": stream}),
        );
        assert_eq!(answer_text(&r, stream), want, "stream: {stream}");
        if !stream {
            assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
        }
    }

    // Chat.
    let user = "What does the licence grant?";
    let (full, _, _) = common::reference_chat(&s.reference, user, &greedy(24));
    let stop = middle_word(&full);
    let params = GenerationParams {
        stop: vec![stop.clone()],
        ..greedy(24)
    };
    let (want, finish, _) = common::reference_chat(&s.reference, user, &params);
    assert_eq!(finish, "stop");
    assert!(want.len() < full.len() && !want.contains(&stop));
    for stream in [false, true] {
        let r = http::post(
            a,
            "/v1/chat/completions",
            &json!({"messages": [{"role": "user", "content": user}], "temperature": 0, "max_tokens": 24, "stop": stop, "stream": stream}),
        );
        assert_eq!(answer_text(&r, stream), want, "stream: {stream}");
        if !stream {
            assert_eq!(r.json()["choices"][0]["finish_reason"], "stop");
        }
    }
}

#[test]
fn completions_stream_with_include_usage_ends_with_usage() {
    let s = shared();
    let ids = s.reference.tokenize(MIT).expect("ids");
    let g = s
        .reference
        .generate(&ids, &greedy(10), false, &mut |_| true)
        .expect("generate");
    let r = http::post(
        s.server.addr,
        "/v1/completions",
        &json!({"model": "test-model", "prompt": MIT, "temperature": 0, "max_tokens": 10, "stream": true, "stream_options": {"include_usage": true}}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert!(
        r.header("content-type")
            .is_some_and(|v| v.starts_with("text/event-stream"))
    );
    let data = r.sse_data();
    let chunks = http::sse_chunks(&data);
    assert!(chunks.len() >= 3, "text, finish and usage chunks: {data:?}");
    let (usage_chunk, rest) = chunks.split_last().expect("chunks");
    let mut text = String::new();
    for c in rest {
        assert_eq!(c["object"], "text_completion");
        assert_eq!(c["id"], chunks[0]["id"]);
        // Present and null on every chunk but the last.
        assert!(c.get("usage").is_some_and(Value::is_null), "{c}");
        text.push_str(c["choices"][0]["text"].as_str().expect("text"));
    }
    assert_eq!(text, g.text);
    let finish = &rest.last().expect("finish chunk")["choices"][0];
    assert_eq!(finish["finish_reason"], g.stop_reason.finish_reason());
    assert!(
        rest[..rest.len() - 1]
            .iter()
            .all(|c| c["choices"][0]["finish_reason"].is_null())
    );

    // The last chunk: no choices, the usage.
    assert_eq!(usage_chunk["object"], "text_completion");
    assert_eq!(usage_chunk["id"], chunks[0]["id"]);
    assert_eq!(usage_chunk["choices"].as_array().map(Vec::len), Some(0));
    let usage = &usage_chunk["usage"];
    assert_eq!(usage["prompt_tokens"], ids.len());
    assert_eq!(usage["completion_tokens"], g.tokens.len());
    assert_eq!(usage["total_tokens"], ids.len() + g.tokens.len());

    // include_usage: false is the same as leaving it out.
    let r = http::post(
        s.server.addr,
        "/v1/completions",
        &json!({"prompt": MIT, "temperature": 0, "max_tokens": 10, "stream": true, "stream_options": {"include_usage": false}}),
    );
    for c in http::sse_chunks(&r.sse_data()) {
        assert!(c.get("usage").is_none(), "{c}");
        assert_eq!(c["choices"].as_array().map(Vec::len), Some(1), "{c}");
    }
}

#[test]
fn seeded_sampling_is_reproducible_and_matches_the_engine() {
    let s = shared();
    let body = json!({"prompt": MIT, "temperature": 0.9, "top_p": 0.95, "seed": 42, "max_tokens": 12, "presence_penalty": 0.3, "frequency_penalty": 0.2});
    let a = http::post(s.server.addr, "/v1/completions", &body).json();
    let b = http::post(s.server.addr, "/v1/completions", &body).json();
    assert_eq!(a["choices"][0]["text"], b["choices"][0]["text"]);
    let params = GenerationParams {
        max_tokens: 12,
        sampler: SamplerConfig {
            temperature: 0.9,
            top_k: 0,
            top_p: 0.95,
            min_p: 0.0,
            repeat_penalty: 1.0,
            repeat_last_n: usize::MAX / 2,
            frequency_penalty: 0.2,
            presence_penalty: 0.3,
            seed: 42,
        },
        ..GenerationParams::default()
    };
    let (want, _) = common::reference_text(&s.reference, MIT, &params);
    assert_eq!(a["choices"][0]["text"], want.as_str());
}

#[test]
fn bad_input_gets_openai_errors() {
    let s = shared();
    let a = s.server.addr;
    let chat = "/v1/chat/completions";
    let hello = json!([{"role": "user", "content": "hi"}]);

    let e = assert_error(&http::post_raw(a, chat, b"{\"messages\": [}"), 400);
    assert_eq!(e["type"], "invalid_request_error");
    assert_error(&http::post_raw(a, chat, b"[1, 2]"), 400);
    assert_error(&http::post_raw(a, chat, b""), 400);
    assert_error(&http::post_raw(a, chat, &[0xff, 0xfe]), 400);

    let e = assert_error(
        &http::post(a, chat, &json!({"messages": hello, "temperature": "hot"})),
        400,
    );
    assert_eq!(e["param"], "temperature");
    let e = assert_error(&http::post(a, chat, &json!({"messages": "hi"})), 400);
    assert_eq!(e["param"], "messages");
    assert_error(
        &http::post(a, chat, &json!({"messages": hello, "max_tokens": "ten"})),
        400,
    );
    assert_error(
        &http::post(a, chat, &json!({"messages": [{"content": "no role"}]})),
        400,
    );
    assert_error(&http::post(a, chat, &json!({})), 400);
    assert_error(
        &http::post(a, "/v1/completions", &json!({"prompt": 12})),
        400,
    );
    assert_error(
        &http::post(a, "/v1/completions", &json!({"prompt": MIT, "stop": 3})),
        400,
    );

    let e = assert_error(&http::post(a, chat, &json!({"messages": []})), 400);
    assert_eq!(e["param"], "messages");
    assert_error(
        &http::post(
            a,
            chat,
            &json!({"messages": [{"role": "wizard", "content": "x"}]}),
        ),
        400,
    );
    assert_error(
        &http::post(
            a,
            chat,
            &json!({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]}),
        ),
        400,
    );

    // A prompt longer than the context (512 tokens for the demo model).
    let long = "free of charge, ".repeat(400);
    let e = assert_error(
        &http::post(a, "/v1/completions", &json!({"prompt": long})),
        400,
    );
    assert_eq!(e["code"], "context_length_exceeded");
    let e = assert_error(
        &http::post(
            a,
            chat,
            &json!({"messages": [{"role": "user", "content": long}]}),
        ),
        400,
    );
    assert_eq!(e["code"], "context_length_exceeded");
    // max_tokens beyond the context.
    let e = assert_error(
        &http::post(a, chat, &json!({"messages": hello, "max_tokens": 100_000})),
        400,
    );
    assert_eq!(e["code"], "context_length_exceeded");
    assert_eq!(e["param"], "max_tokens");
    assert_error(
        &http::post(a, "/generate", &json!({"prompt": MIT, "max_tokens": 600})),
        400,
    );

    for bad in [
        json!({"messages": hello, "max_tokens": 0}),
        json!({"messages": hello, "max_tokens": -5}),
        json!({"messages": hello, "n": 0}),
        json!({"messages": hello, "temperature": 3.5}),
        json!({"messages": hello, "top_p": 1.5}),
        json!({"messages": hello, "presence_penalty": 9}),
        json!({"messages": hello, "logprobs": "yes"}),
        json!({"messages": hello, "seed": 1.5}),
        json!({"messages": hello, "tools": [{"type": "function", "function": {"name": "f"}}]}),
        json!({"messages": hello, "response_format": {"type": "json_schema"}}),
    ] {
        assert_error(&http::post(a, chat, &bad), 400);
    }
    assert_error(
        &http::post(a, "/v1/completions", &json!({"prompt": ["a", "b"]})),
        400,
    );
    assert_error(
        &http::post(a, "/v1/completions", &json!({"prompt": [999_999]})),
        400,
    );
    assert_error(
        &http::post(a, "/generate", &json!({"prompt": MIT, "stream": true})),
        400,
    );

    assert_error(&http::get(a, "/v1/nothing"), 404);
    assert_error(&http::get(a, chat), 405);

    // Nulls and unknown fields are fine, as are penalties and a seed.
    let r = http::post(
        a,
        chat,
        &json!({"messages": hello, "temperature": null, "max_tokens": 2, "user": "me", "frequency_penalty": 0.5, "seed": -3, "n": 1}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    // The server is still healthy.
    assert_eq!(http::get(a, "/health").status, 200);
}

#[test]
fn any_model_name_is_served_and_echoed() {
    // As llama-server: clients with a fixed model name (gpt-3.5-turbo) work;
    // the answer is the loaded model's, and names the model asked for.
    let s = shared();
    let a = s.server.addr;
    let (want, _) = common::reference_text(&s.reference, MIT, &greedy(6));
    for (path, model) in [
        ("/v1/completions", json!("gpt-3.5-turbo")),
        ("/v1/completions", json!("test-model")),
    ] {
        let r = http::post(
            a,
            path,
            &json!({"model": model, "prompt": MIT, "temperature": 0, "max_tokens": 6}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["model"], model);
        assert_eq!(j["choices"][0]["text"], want.as_str());
    }
    let r = http::post(
        a,
        "/v1/chat/completions",
        &json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}], "max_tokens": 2, "stream": true}),
    );
    let chunks = http::sse_chunks(&r.sse_data());
    assert!(chunks.iter().all(|c| c["model"] == "gpt-4o"), "{chunks:?}");
    // Without a model the response names the server's (the alias).
    let r = http::post(
        a,
        "/v1/completions",
        &json!({"prompt": MIT, "max_tokens": 1}),
    );
    assert_eq!(r.json()["model"], "test-model");
    // /v1/models lists only what is loaded.
    let models = http::get(a, "/v1/models").json();
    assert_eq!(models["data"].as_array().map(Vec::len), Some(1));
}

#[test]
fn error_messages_name_field_and_type_in_openai_words() {
    let s = shared();
    let a = s.server.addr;
    let chat = "/v1/chat/completions";
    let hello = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            chat,
            json!({"messages": hello, "max_tokens": "ten"}),
            "max_tokens",
            "Invalid type for 'max_tokens': expected an integer, but got a string instead.",
        ),
        (
            "/v1/completions",
            json!({"prompt": 12}),
            "prompt",
            "Invalid type for 'prompt': expected a string, an array of strings, an array of integers or an array of arrays of integers, but got an integer instead.",
        ),
        (
            "/v1/completions",
            json!({"prompt": MIT, "stop": 3}),
            "stop",
            "Invalid type for 'stop': expected a string or an array of strings, but got an integer instead.",
        ),
        (
            chat,
            json!({"messages": [{"role": "user", "content": 5}]}),
            "messages[0].content",
            "Invalid type for 'messages[0].content': expected a string or an array of content parts, but got an integer instead.",
        ),
        (
            chat,
            json!({"messages": [{"content": "no role"}]}),
            "messages[0].role",
            "Missing required parameter: 'messages[0].role'.",
        ),
        (
            chat,
            json!({}),
            "messages",
            "Missing required parameter: 'messages'.",
        ),
        (
            chat,
            json!({"messages": hello, "temperature": "hot"}),
            "temperature",
            "Invalid type for 'temperature': expected a number, but got a string instead.",
        ),
        (
            chat,
            json!({"messages": hello, "stream": "yes"}),
            "stream",
            "Invalid type for 'stream': expected a boolean, but got a string instead.",
        ),
        (
            chat,
            json!({"messages": hello, "top_k": -1}),
            "top_k",
            "Invalid value for 'top_k': expected a non-negative integer, but got -1 instead.",
        ),
        (
            chat,
            json!({"messages": hello, "temperature": 3.5}),
            "temperature",
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3.5 instead.",
        ),
        (
            chat,
            json!({"messages": hello, "max_tokens": 0}),
            "max_tokens",
            "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead.",
        ),
    ];
    for (path, body, param, message) in cases {
        let e = assert_error(&http::post(a, path, &body), 400);
        assert_eq!(e["param"], param, "{body}");
        assert_eq!(e["message"], message, "{body}");
        let text = e["message"].as_str().unwrap_or_default();
        for rust in ["i64", "u32", "f32", "untagged", "struct", "sequence", "`"] {
            assert!(!text.contains(rust), "Rust internals in {text:?}");
        }
    }
}

#[test]
fn oversized_body_gets_413() {
    let server = TestServer::start(common::demo(None), |c| c.max_body_bytes = 4096);
    let big = json!({"prompt": "x".repeat(10_000), "max_tokens": 1});
    let e = assert_error(&http::post(server.addr, "/v1/completions", &big), 413);
    assert_eq!(e["code"], "request_too_large");
    let small = json!({"prompt": MIT, "max_tokens": 2});
    assert_eq!(
        http::post(server.addr, "/v1/completions", &small).status,
        200
    );
    server.stop();
}
