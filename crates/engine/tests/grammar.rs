//! Constrained decoding on the built-in demo model: whatever the sampler
//! draws, the output follows the grammar (a JSON schema, any JSON object,
//! Lark, a regular expression) and the sequence ends when the grammar is
//! complete.

use std::sync::Arc;
use std::time::Duration;

use bitnet_engine::batch::{self, BatchConfig, Event, NoObserver, Outcome};
use bitnet_engine::grammar::GrammarSpec;
use bitnet_engine::{
    Engine, EngineOptions, Error, GenerationParams, ModelLocation, SamplerConfig, SequenceOptions,
    StopReason,
};
use serde_json::{Value, json};

fn engine() -> Arc<Engine> {
    let opts = EngineOptions {
        threads: 1,
        n_ctx: Some(512),
        ..EngineOptions::default()
    };
    Arc::new(Engine::load(&ModelLocation::Builtin, opts).unwrap())
}

/// Generates `n` sequences with seeds 0.. through the batching thread.
fn generate(
    e: &Arc<Engine>,
    spec: &GrammarSpec,
    prompt: &str,
    n: u64,
    temperature: f32,
) -> Vec<(String, Outcome)> {
    let (b, _thread) =
        batch::spawn(Arc::clone(e), &BatchConfig::default(), Arc::new(NoObserver)).unwrap();
    let grammar = e.compile_grammar(spec).unwrap();
    let prompt = e.tokenize(prompt).unwrap();
    let receivers: Vec<_> = (0..n)
        .map(|seed| {
            let (tx, rx) = batch::channel();
            let params = GenerationParams {
                max_tokens: 200,
                sampler: SamplerConfig {
                    temperature,
                    top_k: 0,
                    top_p: 1.0,
                    min_p: 0.0,
                    seed,
                    ..SamplerConfig::default()
                },
                ..GenerationParams::default()
            };
            b.submit(batch::Job {
                prompt: prompt.clone(),
                params,
                options: SequenceOptions {
                    grammar: Some(grammar.clone()),
                    ..SequenceOptions::default()
                },
                sink: Box::new(tx),
                permit: b.admit().unwrap(),
            })
            .unwrap();
            rx
        })
        .collect();
    receivers
        .iter()
        .map(|rx| {
            let mut text = String::new();
            loop {
                match rx.recv_timeout(Duration::from_secs(120)).unwrap() {
                    Event::Text(t) => text.push_str(&t),
                    Event::Done(o) => return (text, o),
                    other => panic!("unexpected {other:?}"),
                }
            }
        })
        .collect()
}

#[test]
fn sampled_output_always_matches_the_json_schema() {
    let e = engine();
    let schema = json!({
        "type": "object",
        "properties": {
            "name": {"type": "string", "maxLength": 20},
            "count": {"type": "integer", "minimum": 0, "maximum": 99},
            "ok": {"type": "boolean"},
            "tags": {"type": "array", "items": {"enum": ["a", "b", "c"]}, "maxItems": 3}
        },
        "required": ["name", "count", "ok", "tags"],
        "additionalProperties": false
    });
    // Temperature 1.5 over the whole vocabulary: without the grammar the
    // licence-trained demo model writes no JSON at all.
    for (text, outcome) in generate(
        &e,
        &GrammarSpec::JsonSchema(schema),
        "Permission is hereby granted,",
        8,
        1.5,
    ) {
        assert_eq!(outcome.reason, StopReason::Eos, "complete: {text:?}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{err}: {text:?}"));
        let o = v.as_object().unwrap();
        let mut keys: Vec<&str> = o.keys().map(String::as_str).collect();
        keys.sort_unstable();
        assert_eq!(keys, ["count", "name", "ok", "tags"], "{text}");
        assert!(
            o["name"].as_str().is_some_and(|s| s.chars().count() <= 20),
            "{text}"
        );
        assert!(o["count"].as_u64().is_some_and(|c| c <= 99), "{text}");
        assert!(o["ok"].is_boolean(), "{text}");
        let tags = o["tags"].as_array().unwrap();
        assert!(
            tags.len() <= 3
                && tags
                    .iter()
                    .all(|t| ["a", "b", "c"].contains(&t.as_str().unwrap())),
            "{text}"
        );
        // The separators are fixed, `", "` and `": "`, with no other
        // whitespace.
        assert_eq!(text, dumps(&v));
    }
}

/// JSON with Python's `json.dumps` separators (keys in their order).
fn dumps(v: &Value) -> String {
    match v {
        Value::Array(items) => {
            let items: Vec<String> = items.iter().map(dumps).collect();
            format!("[{}]", items.join(", "))
        }
        Value::Object(o) => {
            let fields: Vec<String> = o
                .iter()
                .map(|(k, v)| format!("{}: {}", Value::from(k.as_str()), dumps(v)))
                .collect();
            format!("{{{}}}", fields.join(", "))
        }
        scalar => scalar.to_string(),
    }
}

#[test]
fn json_object_lark_and_regex_constrain_the_output() {
    let e = engine();
    for (text, outcome) in generate(&e, &GrammarSpec::JsonObject, "Copyright (c)", 4, 0.8) {
        // Within 200 tokens every answer is a complete object.
        assert_eq!(outcome.reason, StopReason::Eos, "{text:?}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{err}: {text:?}"));
        assert!(v.is_object(), "{text}");
    }
    let lark = GrammarSpec::Lark(
        "start: (\"yes\" | \"no\") \" because \" WORD\nWORD: /[a-z]{1,12}/\n".into(),
    );
    let answers = generate(&e, &lark, "Is this free software?", 6, 1.0);
    for (text, outcome) in &answers {
        let (head, word) = text
            .split_once(" because ")
            .unwrap_or_else(|| panic!("{text:?}"));
        assert!(head == "yes" || head == "no", "{text:?}");
        assert!(
            (1..=12).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_lowercase()),
            "{text:?}"
        );
        assert!(
            matches!(outcome.reason, StopReason::Eos),
            "{text:?} {outcome:?}"
        );
    }
    let regex = GrammarSpec::Regex("[0-9]{3}-[A-Z]{2}".into());
    for (text, outcome) in generate(&e, &regex, "Code:", 4, 1.0) {
        let b = text.as_bytes();
        assert!(
            b.len() == 6
                && b[..3].iter().all(u8::is_ascii_digit)
                && b[3] == b'-'
                && b[4..].iter().all(u8::is_ascii_uppercase),
            "{text:?}"
        );
        assert_eq!(outcome.reason, StopReason::Eos);
    }
}

#[test]
fn bad_grammars_are_refused_with_the_reason() {
    let e = engine();
    for spec in [
        GrammarSpec::Lark("start: undefined_rule\n".into()),
        GrammarSpec::JsonSchema(json!({"type": "no-such-type"})),
        GrammarSpec::Regex("(unclosed".into()),
    ] {
        match e.compile_grammar(&spec) {
            Err(Error::Grammar(message)) => assert!(!message.is_empty() && !message.contains('\n')),
            other => panic!("{spec:?}: {other:?}"),
        }
    }
}

#[test]
fn gbnf_grammars_as_llama_server_takes_them() {
    let e = engine();
    let record = r#"
# A record: a name and up to four tags, with a little whitespace
root   ::= "{" ws "\"name\":" ws string "," ws "\"tags\":" ws tags ws "}"
tags   ::= "[" ( string ( "," ws string ){0,3} )? "]"
string ::= "\"" ( [a-zA-Z0-9 .,\x2D] | "\\" ["\\] ){1,16} "\""
ws     ::= [ \t\n]{0,2}
"#;
    for (text, outcome) in generate(
        &e,
        &GrammarSpec::Gbnf(record.into()),
        "Copyright (c)",
        6,
        1.0,
    ) {
        assert_eq!(outcome.reason, StopReason::Eos, "{text:?}");
        let v: Value = serde_json::from_str(&text).unwrap_or_else(|err| panic!("{err}: {text:?}"));
        let name = v["name"].as_str().unwrap_or_else(|| panic!("{text}"));
        assert!((1..=16).contains(&name.chars().count()), "{text}");
        let tags = v["tags"].as_array().unwrap_or_else(|| panic!("{text}"));
        assert!(
            tags.len() <= 4 && tags.iter().all(Value::is_string),
            "{text}"
        );
    }
    let answer = GrammarSpec::Gbnf(
        "root ::= (\"yes\" | \"no\") \" because \" word\nword ::= [a-z]{1,12}\n".into(),
    );
    for (text, _) in generate(&e, &answer, "Is this free software?", 4, 1.0) {
        let (head, word) = text
            .split_once(" because ")
            .unwrap_or_else(|| panic!("{text:?}"));
        assert!(head == "yes" || head == "no", "{text:?}");
        assert!(
            (1..=12).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_lowercase()),
            "{text:?}"
        );
    }
    match e.compile_grammar(&GrammarSpec::Gbnf("root ::= \"open".into())) {
        Err(Error::Grammar(message)) => {
            assert!(message.contains("unterminated string"), "{message}")
        }
        other => panic!("{other:?}"),
    }
}
