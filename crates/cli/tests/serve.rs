//! `bitnet serve` as a process: starts on a free port, answers, and stops
//! cleanly on SIGTERM.

mod common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::Stdio;

use common::*;

fn http(addr: &str, request: &str) -> String {
    let mut s = TcpStream::connect(addr).unwrap();
    s.write_all(request.as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    out
}

#[test]
fn serve_answers_and_stops_on_sigterm() {
    let mut child = bitnet()
        .args(["serve", "-m", "builtin", "--port", "0", "-t", "1"])
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    // The port is bound first (while the model loads, /health says 503),
    // then the model is served.
    let mut line = String::new();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("listening on 127.0.0.1:"), "{line:?}");
    line.clear();
    stderr.read_line(&mut line).unwrap();
    assert!(line.starts_with("serving `"), "{line:?}");
    let addr = line
        .split("http://")
        .nth(1)
        .and_then(|s| s.split_whitespace().next())
        .unwrap_or_else(|| panic!("no address in {line:?}"))
        .to_string();
    let health = http(
        &addr,
        "GET /health HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert!(health.starts_with("HTTP/1.1 200"), "{health}");
    let body = r#"{"prompt": "Permission is hereby granted, free of charge,", "max_tokens": 8}"#;
    let generated = http(
        &addr,
        &format!(
            "POST /generate HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        ),
    );
    assert!(
        generated.contains("to any person obtaining a copy"),
        "{generated}"
    );
    let bad = http(
        &addr,
        "POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 5\r\nConnection: close\r\n\r\n{oops",
    );
    assert!(
        bad.starts_with("HTTP/1.1 400") && bad.contains("\"error\""),
        "{bad}"
    );
    // Ask it to stop the way a service manager would.
    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = child.wait().unwrap();
    assert!(exit.success(), "server exit status {exit:?}");
}

// The server crate's raw HTTP/1.1 test client (status, headers, chunked
// bodies, server-sent events).
#[path = "../../server/tests/common/http.rs"]
mod wire;

use std::net::{SocketAddr, ToSocketAddrs};
use std::process::Child;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

const MIT: &str = "Permission is hereby granted, free of charge,";

/// A `bitnet serve` process, killed if a test fails before stopping it.
struct Serve {
    child: Child,
    stderr: BufReader<std::process::ChildStderr>,
    /// The banner line.
    banner: String,
    addr: SocketAddr,
}

impl Serve {
    fn start(args: &[&str]) -> Serve {
        let mut child = bitnet()
            .args(["serve", "-m", "builtin", "--port", "0", "-t", "1"])
            .args(args)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let mut banner = String::new();
        while !banner.contains("http://") {
            banner.clear();
            let n = stderr.read_line(&mut banner).unwrap();
            assert!(n > 0, "serve exited: {:?}", child.wait());
        }
        let addr = banner
            .split("http://")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|s| s.to_socket_addrs().ok()?.next())
            .unwrap_or_else(|| panic!("no address in {banner:?}"));
        Serve {
            child,
            stderr,
            banner,
            addr,
        }
    }

    fn signal(&self, name: &str) {
        let status = std::process::Command::new("kill")
            .args([name, &self.child.id().to_string()])
            .status()
            .unwrap();
        assert!(status.success());
    }

    /// Waits for the process to exit (at most `limit`) and returns its
    /// remaining stderr.
    fn exit_within(mut self, limit: Duration) -> (std::process::ExitStatus, String) {
        let t0 = Instant::now();
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                t0.elapsed() < limit,
                "serve still running {limit:?} after the signal"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut rest = String::new();
        self.stderr.read_to_string(&mut rest).unwrap();
        (status, rest)
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `bitnet run ... --output-format json` with greedy sampling.
fn run_json(args: &[&str]) -> Value {
    json_stdout(&ok(bitnet()
        .args(["run", "-m", "builtin", "-n", "24", "--temp", "0", "-t", "1"])
        .args(["--output-format", "json"])
        .args(args)))
}

fn finish_reason(stop_reason: &Value) -> &'static str {
    match stop_reason.as_str() {
        Some("eos" | "stop_string" | "cancelled") => "stop",
        Some("max_tokens" | "context_full") => "length",
        other => panic!("unknown stop reason {other:?}"),
    }
}

/// A loopback address other than the default, to see `--host` obeyed.
fn host() -> &'static str {
    if cfg!(target_os = "linux") {
        "127.0.0.2"
    } else {
        "127.0.0.1"
    }
}

#[test]
fn serve_answers_like_bitnet_run_and_obeys_host_ctx_and_parallel() {
    let user = "Who may use the software?";
    let plain = run_json(&["-p", MIT]);
    let chat = run_json(&["--chat", "-p", user]);
    let chat_system = run_json(&["--chat", "--system", "Be brief.", "-p", user]);

    let serve = Serve::start(&["--host", host(), "-c", "64", "--parallel", "2"]);
    let addr = serve.addr;
    // --host: it listens there and only there.
    assert_eq!(addr.ip().to_string(), host(), "{}", serve.banner);
    if host() != "127.0.0.1" {
        let default_host = SocketAddr::from(([127, 0, 0, 1], addr.port()));
        assert!(
            TcpStream::connect(default_host).is_err(),
            "listening on 127.0.0.1 too"
        );
    }
    // -c and --parallel, as the banner, /health and /metrics report them.
    assert!(
        serve.banner.contains("2 slots x 64 tokens"),
        "{}",
        serve.banner
    );
    let health = wire::get(addr, "/health").json();
    assert_eq!(health["slots"], 2, "{health}");
    assert_eq!(health["model"], "demo-bitnet");
    let metrics = wire::get(addr, "/metrics").text();
    assert!(metrics.lines().any(|l| l == "bitnet_slots 2"), "{metrics}");

    // Greedy completions equal `bitnet run`, token counts included.
    for stream in [false, true] {
        let r = wire::post(
            addr,
            "/v1/completions",
            &json!({"model": "demo-bitnet", "prompt": MIT, "temperature": 0, "max_tokens": 24, "stream": stream, "stream_options": if stream { json!({"include_usage": true}) } else { Value::Null }}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let (text, finish, usage) = if stream {
            let data = r.sse_data();
            let (text, finish) = wire::stream_text(&data);
            let last: Value = serde_json::from_str(&data[data.len() - 2]).expect("usage chunk");
            (text, finish, last["usage"].clone())
        } else {
            let j = r.json();
            let choice = &j["choices"][0];
            (
                choice["text"].as_str().expect("text").to_string(),
                choice["finish_reason"].as_str().map(str::to_string),
                j["usage"].clone(),
            )
        };
        assert_eq!(text, plain["text"].as_str().unwrap(), "stream: {stream}");
        assert_eq!(
            finish.as_deref(),
            Some(finish_reason(&plain["stop_reason"]))
        );
        assert_eq!(
            usage["prompt_tokens"],
            plain["prompt_token_ids"].as_array().unwrap().len()
        );
        assert_eq!(
            usage["completion_tokens"],
            plain["token_ids"].as_array().unwrap().len()
        );
    }

    // Greedy chat equals `bitnet run --chat` (same template, same answer).
    for (messages, want) in [
        (json!([{"role": "user", "content": user}]), &chat),
        (
            json!([{"role": "system", "content": "Be brief."}, {"role": "user", "content": user}]),
            &chat_system,
        ),
    ] {
        let r = wire::post(
            addr,
            "/v1/chat/completions",
            &json!({"messages": messages, "temperature": 0, "max_tokens": 24}),
        );
        assert_eq!(r.status, 200, "{}", r.text());
        let j = r.json();
        assert_eq!(j["choices"][0]["message"]["content"], want["text"]);
        assert_eq!(
            j["choices"][0]["finish_reason"],
            finish_reason(&want["stop_reason"])
        );
        assert_eq!(
            j["usage"]["prompt_tokens"],
            want["prompt_token_ids"].as_array().unwrap().len()
        );
        assert_eq!(
            j["usage"]["completion_tokens"],
            want["token_ids"].as_array().unwrap().len()
        );
    }

    // -c 64: a prompt plus max_tokens beyond 64 tokens is refused, one that
    // fits exactly is served.
    let n_prompt = plain["prompt_token_ids"].as_array().unwrap().len();
    let room = 64 - n_prompt;
    let r = wire::post(
        addr,
        "/v1/completions",
        &json!({"prompt": MIT, "max_tokens": room + 1}),
    );
    assert_eq!(r.status, 400, "{}", r.text());
    let e = &r.json()["error"];
    assert_eq!(e["code"], "context_length_exceeded", "{e}");
    assert_eq!(e["param"], "max_tokens");
    assert!(e["message"].as_str().unwrap().contains("64 tokens"), "{e}");
    let r = wire::post(
        addr,
        "/v1/completions",
        &json!({"prompt": MIT, "max_tokens": room, "temperature": 0, "ignore_eos": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["completion_tokens"], room);
    let long = "free of charge, ".repeat(20);
    let r = wire::post(addr, "/v1/completions", &json!({"prompt": long}));
    assert_eq!(r.status, 400, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "context_length_exceeded");

    serve.signal("-INT");
    let (status, rest) = serve.exit_within(Duration::from_secs(10));
    assert!(status.success(), "exit status {status:?}: {rest}");
    assert!(rest.contains("server stopped"), "{rest}");
}

/// Opens a long stream (thousands of tokens) and reads its head and first
/// data event.
fn open_long_stream(addr: SocketAddr) -> BufReader<TcpStream> {
    let body = json!({"prompt": "Permission", "max_tokens": 4000, "ignore_eos": true, "temperature": 0, "stream": true});
    let mut reader = BufReader::new(wire::send(
        addr,
        "POST",
        "/v1/completions",
        Some(body.to_string().as_bytes()),
        &[],
    ));
    let (status, _) = wire::read_head(&mut reader);
    assert_eq!(status, 200);
    read_events(&mut reader, 1);
    reader
}

/// Reads at least `n` SSE data events.
fn read_events(reader: &mut BufReader<TcpStream>, n: usize) -> Vec<String> {
    let mut data = Vec::new();
    while data.len() < n {
        let chunk = wire::read_chunk(reader).expect("stream data");
        data.extend(wire::sse_data(&String::from_utf8_lossy(&chunk)));
    }
    data
}

/// Reads a stream to its end.
fn read_rest(reader: &mut BufReader<TcpStream>) -> Vec<String> {
    let mut text = String::new();
    while let Some(chunk) = wire::read_chunk(reader) {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    wire::sse_data(&text)
}

#[test]
fn serve_runs_parallel_slots_queues_the_rest_and_ends_streams_on_sigint() {
    let serve = Serve::start(&[
        "-n",
        "-1",
        "-c",
        "4096",
        "--parallel",
        "2",
        "--queue",
        "1",
        "--shutdown-timeout",
        "1",
    ]);
    let addr = serve.addr;
    let health = || wire::get(addr, "/health").json();

    // --parallel 2: two streams decode at once ...
    let mut a = open_long_stream(addr);
    let mut b = open_long_stream(addr);
    let h = health();
    assert_eq!(
        (h["slots_busy"].as_u64(), h["queue"].as_u64()),
        (Some(2), Some(0)),
        "{h}"
    );
    // ... and a third request waits for a slot.
    let third = std::thread::spawn(move || {
        wire::post(
            addr,
            "/v1/completions",
            &json!({"prompt": MIT, "max_tokens": 4, "temperature": 0}),
        )
    });
    let t0 = Instant::now();
    while health()["queue"] != 1 {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "the third never queued"
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(health()["slots_busy"], 2);
    // --queue 1: a fourth is turned away.
    let r = wire::post(
        addr,
        "/v1/completions",
        &json!({"prompt": MIT, "max_tokens": 4}),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert!(r.header("retry-after").is_some());

    // Mid-stream, SIGINT.
    let before_a = read_events(&mut a, 3);
    serve.signal("-INT");
    let signalled = Instant::now();

    // The queued request is answered with 503 (shutting down).
    let r = third.join().expect("third client");
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "shutting_down");

    // Both streams end cleanly within the grace period: a final chunk with
    // a finish reason, then `data: [DONE]`, then the end of the body.
    for (name, reader, seen) in [("a", &mut a, before_a), ("b", &mut b, Vec::new())] {
        let mut data = seen;
        data.extend(read_rest(reader));
        let (text, finish) = wire::stream_text(&data);
        assert!(!text.is_empty(), "stream {name}");
        // Cut short by the shutdown ("stop"), not run to its 4000 tokens.
        assert_eq!(finish.as_deref(), Some("stop"), "stream {name}");
        let mut end = [0u8; 1];
        assert_eq!(
            reader.get_mut().read(&mut end).unwrap_or(0),
            0,
            "stream {name}: connection closed after the body"
        );
    }
    let (status, rest) = serve.exit_within(Duration::from_secs(15));
    eprintln!("serve exited {:?} after SIGINT", signalled.elapsed());
    assert!(status.success(), "exit status {status:?}: {rest}");
    assert!(
        rest.contains("shutting down") && rest.contains("server stopped"),
        "{rest}"
    );
    assert!(TcpStream::connect(addr).is_err(), "still listening");
}

#[test]
fn serve_logs_each_request_as_json_and_caps_generation_with_n_predict() {
    let mut serve = Serve::start(&["-n", "4", "--log-format", "json", "--alias", "my-model"]);
    assert!(
        serve.banner.contains("at most 4 generated tokens"),
        "{}",
        serve.banner
    );
    let addr = serve.addr;
    assert_eq!(
        wire::get(addr, "/v1/models").json()["data"][0]["id"],
        "my-model"
    );
    // No max_tokens: the server's -n is the limit.
    let r = wire::post(
        addr,
        "/v1/chat/completions",
        &json!({"model": "gpt-3.5-turbo", "messages": [{"role": "user", "content": "Hi"}], "ignore_eos": true}),
    );
    assert_eq!(r.status, 200, "{}", r.text());
    let j = r.json();
    assert_eq!(j["usage"]["completion_tokens"], 4, "{j}");
    assert_eq!(j["model"], "gpt-3.5-turbo");
    let mut lines = Vec::new();
    while lines.len() < 2 {
        let mut line = String::new();
        assert!(
            serve.stderr.read_line(&mut line).unwrap() > 0,
            "stderr closed"
        );
        lines.push(line);
    }
    let models: Value = serde_json::from_str(&lines[0]).expect("a JSON log line");
    assert_eq!(
        (models["method"].as_str(), models["path"].as_str()),
        (Some("GET"), Some("/v1/models"))
    );
    let chat: Value = serde_json::from_str(&lines[1]).expect("a JSON log line");
    assert_eq!(chat["path"], "/v1/chat/completions");
    assert_eq!(chat["status"], 200);
    assert_eq!(chat["prompt_tokens"], j["usage"]["prompt_tokens"]);
    assert_eq!(chat["completion_tokens"], 4);
    assert_eq!(chat["finish_reason"], "length");
    serve.signal("-TERM");
    let (status, _) = serve.exit_within(Duration::from_secs(10));
    assert!(status.success());
}

#[test]
fn serve_rejects_a_zero_n_predict_naming_the_valid_values() {
    let out = bitnet()
        .args(["serve", "-m", "builtin", "-n", "0"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("positive integer, or -1 for no limit"),
        "{err}"
    );
}
