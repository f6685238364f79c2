//! Structured output: `response_format` (`json_object`, `json_schema`) and
//! llama-server's `grammar` constrain every choice, whole or streamed,
//! whatever the temperature; bad schemas and grammars get a 400 that says
//! what is wrong.

mod common;

use std::sync::OnceLock;

use common::{TestServer, http};
use serde_json::{Value, json};

fn server() -> &'static TestServer {
    static SERVER: OnceLock<TestServer> = OnceLock::new();
    SERVER.get_or_init(|| TestServer::start(common::demo(None), |c| c.parallel = 3))
}

fn person_schema() -> Value {
    json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 16},
            "age": {"type": "integer", "minimum": 0, "maximum": 120},
            "licence": {"enum": ["MIT", "Apache-2.0", "GPL-3.0"]}
        },
        "required": ["name", "age", "licence"],
        "additionalProperties": false
    })
}

/// Checks a value against `person_schema`.
fn assert_person(text: &str) {
    let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
    let o = v
        .as_object()
        .unwrap_or_else(|| panic!("not an object: {text}"));
    assert_eq!(o.len(), 3, "{text}");
    assert!(
        o["name"].as_str().is_some_and(|s| s.chars().count() <= 16),
        "{text}"
    );
    assert!(o["age"].as_u64().is_some_and(|a| a <= 120), "{text}");
    assert!(
        ["MIT", "Apache-2.0", "GPL-3.0"].contains(&o["licence"].as_str().unwrap_or("")),
        "{text}"
    );
}

#[test]
fn json_schema_holds_for_every_choice_whole_and_streamed() {
    let a = server().addr;
    let body = json!({
        "messages": [{"role": "user", "content": "Who wrote the licence?"}],
        "temperature": 1.3, "seed": 1, "n": 3, "max_tokens": 120,
        "response_format": {"type": "json_schema", "json_schema": {"name": "person", "strict": true, "schema": person_schema()}}
    });
    let r = http::post(a, "/v1/chat/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    for c in j["choices"].as_array().unwrap() {
        assert_eq!(c["finish_reason"], "stop", "{c}");
        assert_person(c["message"]["content"].as_str().unwrap());
    }
    let mut streamed = body.clone();
    streamed["stream"] = json!(true);
    let chunks = http::sse_chunks(&http::post(a, "/v1/chat/completions", &streamed).sse_data());
    let mut texts = vec![String::new(); 3];
    for c in &chunks {
        let choice = &c["choices"][0];
        let i = choice["index"].as_u64().unwrap() as usize;
        texts[i].push_str(choice["delta"]["content"].as_str().unwrap_or(""));
    }
    for (i, text) in texts.iter().enumerate() {
        assert_eq!(
            text,
            j["choices"][i]["message"]["content"].as_str().unwrap(),
            "same seed, same text"
        );
        assert_person(text);
    }
}

#[test]
fn json_object_and_gbnf_or_lark_grammars_on_completions() {
    let a = server().addr;
    for seed in 0..3 {
        let r = http::post(
            a,
            "/v1/completions",
            &json!({"prompt": "Permission is hereby granted,", "temperature": 1.0, "seed": seed, "max_tokens": 200,
                    "response_format": {"type": "json_object"}}),
        );
        let j = r.json();
        let text = j["choices"][0]["text"].as_str().unwrap();
        assert_eq!(j["choices"][0]["finish_reason"], "stop", "{text:?}");
        let v: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("{e}: {text:?}"));
        assert!(v.is_object(), "{text}");
    }
    // llama-server's `grammar`: GBNF, or Lark (its `%llguidance` header is
    // optional), also on /generate.
    let gbnf = "root ::= \"Licence: \" name\nname ::= \"MIT\" | \"BSD\" | \"Apache\"\n";
    let lark = "%llguidance {}\nstart: \"Licence: \" NAME\nNAME: \"MIT\" | \"BSD\" | \"Apache\"\n";
    for (path, grammar) in [
        ("/v1/completions", gbnf),
        ("/v1/completions", lark),
        ("/generate", gbnf),
        ("/generate", lark.trim_start_matches("%llguidance {}\n")),
    ] {
        let r = http::post(
            a,
            path,
            &json!({"prompt": "The", "temperature": 1.0, "max_tokens": 20, "grammar": grammar}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        let text = j["choices"][0]["text"]
            .as_str()
            .or(j["text"].as_str())
            .unwrap();
        assert!(
            ["Licence: MIT", "Licence: BSD", "Licence: Apache"].contains(&text),
            "{path} {grammar:?}: {text:?}"
        );
    }
}

#[test]
fn bad_structured_requests_get_400_naming_the_problem() {
    let a = server().addr;
    let hello = json!([{"role": "user", "content": "hi"}]);
    let cases = [
        (
            json!({"messages": hello, "response_format": {"type": "xml"}}),
            "response_format.type",
            "Invalid value: 'xml'. Supported values are: 'text', 'json_object' and 'json_schema'.",
        ),
        (
            json!({"messages": hello, "response_format": {"type": "json_schema"}}),
            "response_format.json_schema",
            "Missing required parameter: 'response_format.json_schema'.",
        ),
        (
            json!({"messages": hello, "response_format": "json"}),
            "response_format",
            "Invalid type for 'response_format': expected an object, but got a string instead.",
        ),
        (
            json!({"messages": hello, "grammar": "start: x", "response_format": {"type": "json_object"}}),
            "grammar",
            "Give only one of 'response_format', 'grammar' and 'json_schema'.",
        ),
    ];
    for (body, param, message) in cases {
        let r = http::post(a, "/v1/chat/completions", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = &r.json()["error"];
        assert_eq!(
            (e["param"].as_str(), e["message"].as_str()),
            (Some(param), Some(message)),
            "{body}"
        );
    }
    // Schemas and grammars llguidance cannot compile: its reason, one line.
    for (body, param) in [
        (
            json!({"messages": hello, "response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "frog"}}}}),
            "response_format",
        ),
        (
            json!({"messages": hello, "grammar": "start: undefined_rule"}),
            "grammar",
        ),
        (
            json!({"messages": hello, "grammar": "root ::= [a-"}),
            "grammar",
        ),
    ] {
        let r = http::post(a, "/v1/chat/completions", &body);
        assert_eq!(r.status, 400, "{body}: {}", r.text());
        let e = &r.json()["error"];
        assert_eq!(e["param"], param);
        let message = e["message"].as_str().unwrap();
        assert!(
            message.starts_with(&format!("Invalid '{param}': ")) && !message.contains('\n'),
            "{message}"
        );
        eprintln!("{message}");
    }
    // tools keep their clear refusal.
    let r = http::post(
        a,
        "/v1/chat/completions",
        &json!({"messages": hello, "tools": [{"type": "function", "function": {"name": "f"}}]}),
    );
    assert_eq!(r.status, 400);
    assert_eq!(r.json()["error"]["param"], "tools");
}
