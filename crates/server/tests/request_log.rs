//! The request log (one line per request, text or JSON) and the server's
//! cap on generated tokens (`n_predict`).

mod common;

use std::io::{BufReader, Write};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bitnet_server::{LogFormat, LogTarget};
use common::{TestServer, http};
use serde_json::{Value, json};

const MIT: &str = "Permission is hereby granted, free of charge,";

/// A server whose log lines are collected.
fn logged_server(
    format: LogFormat,
    n_predict: Option<usize>,
) -> (TestServer, Arc<Mutex<Vec<String>>>) {
    let lines = Arc::new(Mutex::new(Vec::new()));
    let sink = Arc::clone(&lines);
    // A context long enough for a stream the client leaves long before
    // its end.
    let server = TestServer::start(common::demo(Some(4096)), move |c| {
        c.log_format = format;
        c.log_target = LogTarget::new(move |line| sink.lock().unwrap().push(line.to_string()));
        c.n_predict = n_predict;
    });
    (server, lines)
}

/// Waits until `n` lines were logged and returns them.
fn wait_for_lines(lines: &Mutex<Vec<String>>, n: usize) -> Vec<String> {
    let t0 = Instant::now();
    loop {
        let now = lines.lock().unwrap().clone();
        if now.len() >= n {
            return now;
        }
        assert!(
            t0.elapsed() < Duration::from_secs(30),
            "{} of {n} log lines: {now:?}",
            now.len()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn one_json_line_per_request_with_tokens_status_and_time() {
    let (server, lines) = logged_server(LogFormat::Json, None);
    let a = server.addr;
    let whole = http::post(
        a,
        "/v1/completions",
        &json!({"prompt": MIT, "max_tokens": 5, "temperature": 0, "ignore_eos": true}),
    );
    let usage = whole.json()["usage"].clone();
    let log = wait_for_lines(&lines, 1);
    let v: Value = serde_json::from_str(&log[0]).expect("a JSON line");
    assert_eq!(v["method"], "POST");
    assert_eq!(v["path"], "/v1/completions");
    assert_eq!(v["status"], 200);
    assert_eq!(v["prompt_tokens"], usage["prompt_tokens"]);
    assert_eq!(v["completion_tokens"], 5);
    assert_eq!(v["finish_reason"], "length");
    assert_eq!(v["stream"], false);
    assert!(v["duration_ms"].as_f64().is_some_and(|ms| ms > 0.0), "{v}");
    assert!(
        v["time"]
            .as_str()
            .is_some_and(|t| t.ends_with('Z') && t.len() == 24),
        "{v}"
    );

    // A streamed chat logs when its stream has ended.
    let r = http::post(
        a,
        "/v1/chat/completions",
        &json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 7, "temperature": 0, "ignore_eos": true, "stream": true}),
    );
    assert_eq!(r.status, 200);
    let log = wait_for_lines(&lines, 2);
    let v: Value = serde_json::from_str(&log[1]).expect("JSON");
    assert_eq!(v["path"], "/v1/chat/completions");
    assert_eq!(
        (v["stream"].clone(), v["completion_tokens"].clone()),
        (json!(true), json!(7))
    );
    assert_eq!(v["finish_reason"], "length");

    // A client error, and a request that generates nothing.
    let bad = http::post(a, "/v1/completions", &json!({"prompt": 12}));
    assert_eq!(bad.status, 400);
    assert_eq!(http::get(a, "/health").status, 200);
    let log = wait_for_lines(&lines, 4);
    let v: Value = serde_json::from_str(&log[2]).expect("JSON");
    assert_eq!(
        (v["status"].clone(), v["path"].clone()),
        (json!(400), json!("/v1/completions"))
    );
    assert!(v.get("prompt_tokens").is_none(), "{v}");
    let v: Value = serde_json::from_str(&log[3]).expect("JSON");
    assert_eq!(
        (v["method"].clone(), v["path"].clone(), v["status"].clone()),
        (json!("GET"), json!("/health"), json!(200))
    );

    // A client that leaves mid-stream: logged once the engine has dropped
    // the sequence, with the tokens it generated.
    let body = json!({"prompt": "Permission", "max_tokens": 4000, "ignore_eos": true, "temperature": 0, "stream": true});
    let mut conn = http::send(
        a,
        "POST",
        "/v1/completions",
        Some(body.to_string().as_bytes()),
        &[],
    );
    {
        let mut reader = BufReader::new(&mut conn);
        let (status, _) = http::read_head(&mut reader);
        assert_eq!(status, 200);
        http::read_chunk(&mut reader).expect("first data");
    }
    let _ = conn.flush();
    drop(conn);
    let log = wait_for_lines(&lines, 5);
    let v: Value = serde_json::from_str(&log[4]).expect("JSON");
    assert_eq!(v["finish_reason"], "disconnected", "{v}");
    let n = v["completion_tokens"].as_u64().expect("count");
    assert!((1..4000).contains(&n), "{v}");
    assert_eq!(lines.lock().unwrap().len(), 5, "one line per request");
    server.stop();
}

#[test]
fn text_lines_read_like_an_access_log() {
    let (server, lines) = logged_server(LogFormat::Text, None);
    let r = http::post(
        server.addr,
        "/generate",
        &json!({"prompt": MIT, "max_tokens": 3, "ignore_eos": true}),
    );
    let prompt = r.json()["usage"]["prompt_tokens"].as_u64().unwrap();
    let line = wait_for_lines(&lines, 1).remove(0);
    // 2026-01-02T03:04:05.678Z POST /generate 200 prompt=9 generated=3 finish=length 0.012s
    let fields: Vec<&str> = line.split(' ').collect();
    assert_eq!(fields.len(), 8, "{line}");
    assert!(fields[0].ends_with('Z') && fields[0].len() == 24, "{line}");
    assert_eq!(
        &fields[1..7],
        &[
            "POST",
            "/generate",
            "200",
            &format!("prompt={prompt}"),
            "generated=3",
            "finish=length"
        ],
        "{line}"
    );
    assert!(
        fields[7]
            .strip_suffix('s')
            .and_then(|t| t.parse::<f64>().ok())
            .is_some(),
        "{line}"
    );
    server.stop();
}

#[test]
fn n_predict_caps_generation_and_is_the_default_limit() {
    let (server, _) = logged_server(LogFormat::Off, Some(5));
    let a = server.addr;
    let hello = json!([{"role": "user", "content": "Hi"}]);
    // No max_tokens: a chat would run to the end of the context; the cap
    // stops it.
    let r = http::post(
        a,
        "/v1/chat/completions",
        &json!({"messages": hello, "ignore_eos": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["usage"]["completion_tokens"], 5);
    assert_eq!(j["choices"][0]["finish_reason"], "length");
    // More than the cap is capped, as llama-server does; less is honoured.
    for (asked, got) in [(50, 5), (3, 3)] {
        let r = http::post(
            a,
            "/v1/completions",
            &json!({"prompt": MIT, "max_tokens": asked, "ignore_eos": true}),
        );
        assert_eq!(
            r.json()["usage"]["completion_tokens"],
            got,
            "max_tokens {asked}"
        );
    }
    server.stop();
}
