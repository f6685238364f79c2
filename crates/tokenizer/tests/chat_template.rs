//! Chat templates rendered with minijinja configured like `transformers`.

mod common;

use bitnet_tokenizer::{ChatMessage, ChatTemplate, Error};

fn fixture_template() -> String {
    let config =
        common::read_json(&common::repo_fixtures().join("small-bitnet/tokenizer_config.json"));
    config["chat_template"].as_str().unwrap().to_string()
}

fn msgs(pairs: &[(&str, &str)]) -> Vec<ChatMessage> {
    pairs
        .iter()
        .map(|(r, c)| ChatMessage::new(*r, *c))
        .collect()
}

#[test]
fn bitnet_2b4t_template() {
    let t = ChatTemplate::new(&fixture_template(), "<|begin_of_text|>", "<|eot_id|>").unwrap();
    let m = msgs(&[
        ("system", "You are a helpful assistant."),
        ("user", "What is 1.58-bit quantization?"),
    ]);
    assert_eq!(
        t.render(&m, true).unwrap(),
        "<|begin_of_text|>System: You are a helpful assistant.<|eot_id|>User: What is 1.58-bit \
         quantization?<|eot_id|>Assistant: "
    );
    // A multi-turn conversation; contents are trimmed; BOS only once.
    let m = msgs(&[("user", " hi\n"), ("assistant", "hello "), ("user", "bye")]);
    assert_eq!(
        t.render(&m, false).unwrap(),
        "<|begin_of_text|>User: hi<|eot_id|>Assistant: hello<|eot_id|>User: bye<|eot_id|>"
    );
    assert_eq!(t.render(&[], true).unwrap(), "Assistant: ");
    assert_eq!(t.name(), "chat_template");
    assert_eq!(t.source(), fixture_template());
}

const PY_TEMPLATE: &str = "\
{%- for m in messages -%}
  {%- if m.role.startswith('sys') -%}
    [{{ m.content.strip().upper() }}]
  {%- elif m['role'] == 'user' -%}
    <{{ m.content.strip() | replace('a', '4') }}>
  {%- else -%}
    {{ raise_exception('Unsupported role: ' + m.role) }}
  {%- endif -%}
{%- endfor -%}
{%- if add_generation_prompt %}{{ eos_token }}{% endif -%}";

#[test]
fn python_string_methods() {
    let t = ChatTemplate::new(PY_TEMPLATE, "<s>", "</s>").unwrap();
    let m = msgs(&[("system", "  be brief "), ("user", " say aha ")]);
    assert_eq!(t.render(&m, true).unwrap(), "[BE BRIEF]<s4y 4h4></s>");
    assert_eq!(t.render(&m, false).unwrap(), "[BE BRIEF]<s4y 4h4>");
}

#[test]
fn raise_exception_is_a_render_error() {
    let t = ChatTemplate::new(PY_TEMPLATE, "<s>", "</s>").unwrap();
    let err = t.render(&msgs(&[("tool", "x")]), true).unwrap_err();
    match &err {
        Error::TemplateRender { name, message } => {
            assert_eq!(name, "chat_template");
            assert!(message.contains("Unsupported role: tool"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(err.to_string().contains("chat_template"));
}

#[test]
fn syntax_error_names_the_template() {
    let err = ChatTemplate::with_name(
        "model/tokenizer_config.json:chat_template",
        "{% for m in messages %}{{ m.content }}",
        "",
        "",
    )
    .unwrap_err();
    match &err {
        Error::TemplateSyntax { name, message } => {
            assert_eq!(name, "model/tokenizer_config.json:chat_template");
            assert!(message.contains("syntax error"), "{message}");
        }
        other => panic!("unexpected error {other:?}"),
    }
    assert!(
        err.to_string()
            .contains("model/tokenizer_config.json:chat_template")
    );
    let err = ChatTemplate::new("{{ 1 + }}", "", "").unwrap_err();
    assert!(matches!(err, Error::TemplateSyntax { ref name, .. } if name == "chat_template"));
}

#[test]
fn tojson_is_python_json_dumps_without_html_escaping() {
    let t = ChatTemplate::new("{{ messages | tojson }}", "", "").unwrap();
    let m = msgs(&[("user", "<b>&'\"é")]);
    assert_eq!(
        t.render(&m, false).unwrap(),
        r#"[{"role": "user", "content": "<b>&'\"é"}]"#
    );
    let t = ChatTemplate::new("{{ {'b': [1, 2], 'a': none} | tojson(indent=2) }}", "", "").unwrap();
    assert_eq!(
        t.render(&[], false).unwrap(),
        "{\n  \"b\": [\n    1,\n    2\n  ],\n  \"a\": null\n}"
    );
    let t = ChatTemplate::new(
        "{{ {'b': {'d': 1, 'c': 2}, 'a': 'x'} | tojson(sort_keys=true) }}",
        "",
        "",
    )
    .unwrap();
    assert_eq!(
        t.render(&[], false).unwrap(),
        r#"{"a": "x", "b": {"c": 2, "d": 1}}"#
    );
}

#[test]
fn jinja_features_used_by_hf_templates() {
    // trim_blocks + lstrip_blocks, namespace, loop controls, dict .get, undefined → empty.
    let src = "\
{% set ns = namespace(n=0) %}
{% for m in messages %}
    {% if m.get('role') == 'stop' %}{% break %}{% endif %}
    {% set ns.n = ns.n + 1 %}
{{ loop.index }}:{{ m.content }}{{ tools }}
{% endfor %}
n={{ ns.n }}";
    let t = ChatTemplate::new(src, "", "").unwrap();
    let m = msgs(&[
        ("user", "a"),
        ("assistant", "b"),
        ("stop", "c"),
        ("user", "d"),
    ]);
    assert_eq!(t.render(&m, false).unwrap(), "1:a\n2:b\nn=2");
}

#[test]
fn strftime_now_gives_the_current_date() {
    let t = ChatTemplate::new("{{ strftime_now('%Y-%m-%d') }}", "", "").unwrap();
    let out = t.render(&[], false).unwrap();
    let parts: Vec<&str> = out.split('-').collect();
    assert_eq!(parts.len(), 3, "{out}");
    assert!(parts[0].parse::<u32>().unwrap() >= 2024, "{out}");
    assert_eq!(parts[1].len(), 2);
    assert_eq!(parts[2].len(), 2);
}

/// Templates come from model files: one that loops for ever or builds an
/// enormous string is stopped with an error, quickly.
#[test]
fn hostile_templates_end_with_an_error() {
    use bitnet_tokenizer::{ChatMessage, ChatTemplate};
    let messages = [ChatMessage::new("user", "hi")];
    let hostile = [
        "{% for i in range(100000) %}{% for j in range(100000) %}x{% endfor %}{% endfor %}",
        "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
    ];
    for source in hostile {
        let t0 = std::time::Instant::now();
        let template = ChatTemplate::new(source, "<s>", "</s>").unwrap();
        let result = template.render(&messages, true);
        assert!(
            result.is_err(),
            "{source}: rendered {} bytes",
            result.map(|s| s.len()).unwrap_or(0)
        );
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(20),
            "{source}: {:?}",
            t0.elapsed()
        );
    }
}

/// The fuel limit leaves real templates room: the demo model's (BitNet
/// b1.58 2B-4T's) template renders a 500-message conversation.
#[test]
fn long_conversations_render_within_the_fuel() {
    use bitnet_tokenizer::{ChatMessage, ChatTemplate};
    let config: serde_json::Value = serde_json::from_slice(
        &std::fs::read(
            std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("../../fixtures/demo-bitnet/tokenizer_config.json"),
        )
        .unwrap(),
    )
    .unwrap();
    let source = config["chat_template"].as_str().unwrap();
    let template = ChatTemplate::new(source, "<|begin_of_text|>", "<|eot_id|>").unwrap();
    let mut messages = vec![ChatMessage::new("system", "Be brief.")];
    for i in 0..500 {
        let role = if i % 2 == 0 { "user" } else { "assistant" };
        messages.push(ChatMessage::new(
            role,
            format!("message number {i} with some words in it"),
        ));
    }
    let text = template.render(&messages, true).unwrap();
    assert!(text.contains("message number 499"));
}

/// Every template that ever made the chat_template fuzz target fail
/// (fuzz/regressions) renders or fails within a second.
#[test]
fn fuzz_regressions_end_quickly() {
    use bitnet_tokenizer::{ChatMessage, ChatTemplate};
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../../fuzz/regressions/chat_template");
    let messages = [
        ChatMessage::new("system", "Be brief."),
        ChatMessage::new("user", "Hi"),
    ];
    let mut n = 0;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        let source = String::from_utf8_lossy(&std::fs::read(&path).unwrap()).into_owned();
        let t0 = std::time::Instant::now();
        if let Ok(template) = ChatTemplate::new(&source, "<s>", "</s>") {
            let _ = template.render(&messages, true);
        }
        assert!(
            t0.elapsed() < std::time::Duration::from_secs(1),
            "{}: {:?}",
            path.display(),
            t0.elapsed()
        );
        n += 1;
    }
    assert!(n >= 1);
}
