//! Continuous batching under concurrency: 16 simultaneous streams give the
//! text each would get alone, a client that disconnects frees its slot at
//! once, a full server answers 503 with Retry-After, and shutdown ends
//! streams cleanly.

mod common;

use std::io::BufReader;
use std::time::{Duration, Instant};

use common::http;
use common::{TestServer, greedy};
use serde_json::json;

fn metric(addr: std::net::SocketAddr, name: &str) -> f64 {
    let text = http::get(addr, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

#[test]
fn sixteen_concurrent_streams_match_single_sequence_runs() {
    let reference = common::demo(None);
    // Prompts of very different lengths, so prefill chunks (8 tokens a step
    // while others decode) interleave with decoding.
    let prompts: Vec<String> = (0..16)
        .map(|i| match i % 4 {
            0 => format!("Permission is hereby granted, free of charge, to any person {i}"),
            1 => "THE SOFTWARE IS PROVIDED \"AS IS\", WITHOUT WARRANTY OF ANY KIND".repeat(1 + i / 4),
            2 => format!("Copyright (c) {} The Authors", 2000 + i),
            _ => "Redistribution and use in source and binary forms, with or without modification, are permitted provided that the following conditions are met: ".repeat(1 + i / 8),
        })
        .collect();
    let max_tokens = |i: usize| 6 + i;
    let want: Vec<(String, &str)> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| common::reference_text(&reference, p, &greedy(max_tokens(i))))
        .collect();
    drop(reference);

    // The server runs on two threads, the reference on one: results must
    // not depend on either the batch or the thread count.
    let server = TestServer::start(common::demo_threads(2), |c| {
        c.parallel = 16;
        c.prefill_chunk = 8;
    });
    let addr = server.addr;
    let handles: Vec<_> = prompts
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let body =
                json!({"prompt": p, "temperature": 0, "max_tokens": max_tokens(i), "stream": true});
            std::thread::spawn(move || http::post(addr, "/v1/completions", &body))
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        let r = h.join().expect("client thread");
        assert_eq!(r.status, 200, "{}", r.text());
        let (text, finish) = http::stream_text(&r.sse_data());
        assert_eq!(
            text, want[i].0,
            "stream {i} differs from its single-sequence run"
        );
        assert_eq!(finish.as_deref(), Some(want[i].1), "stream {i}");
    }
    // The sequences really were batched: more tokens than passes.
    let passes = metric(addr, "bitnet_forward_passes_total");
    let tokens = metric(addr, "bitnet_batch_tokens_total");
    assert!(tokens / passes > 2.0, "mean batch {tokens}/{passes}");
    assert_eq!(metric(addr, "bitnet_active_sequences"), 0.0);
    server.stop();
}

#[test]
fn a_disconnected_stream_frees_its_slot_at_once() {
    // One slot, no queue; a long context so the first stream is still
    // running while we test.
    let server = TestServer::start(common::demo(Some(4096)), |c| {
        c.parallel = 1;
        c.queue = 0;
    });
    let addr = server.addr;
    let long = json!({"prompt": "Permission", "max_tokens": 4000, "ignore_eos": true, "stream": true, "temperature": 0});
    let stream = http::send(
        addr,
        "POST",
        "/v1/completions",
        Some(long.to_string().as_bytes()),
        &[],
    );
    let mut reader = BufReader::new(stream);
    let (status, _) = http::read_head(&mut reader);
    assert_eq!(status, 200);
    let mut seen = 0;
    while seen < 3 {
        let chunk = http::read_chunk(&mut reader).expect("stream data");
        seen += http::sse_data(&String::from_utf8_lossy(&chunk)).len();
    }

    // The only slot is busy and there is no queue: 503 with Retry-After.
    let small = json!({"prompt": "Permission", "max_tokens": 4, "temperature": 0});
    let r = http::post(addr, "/v1/completions", &small);
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.header("retry-after"), Some("1"));
    assert_eq!(r.json()["error"]["code"], "server_overloaded");

    // Hang up mid-stream: the next request is admitted.
    drop(reader);
    let t0 = Instant::now();
    let r = loop {
        let r = http::post(addr, "/v1/completions", &small);
        if r.status != 503 || t0.elapsed() > Duration::from_secs(10) {
            break r;
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    assert_eq!(r.status, 200, "{}", r.text());
    eprintln!("slot freed {:?} after the disconnect", t0.elapsed());
    assert!(metric(addr, "bitnet_sequences_total{outcome=\"cancelled\"}") >= 1.0);
    server.stop();
}

#[test]
fn queued_requests_wait_for_a_slot() {
    let server = TestServer::start(common::demo(None), |c| {
        c.parallel = 1;
        c.queue = 3;
    });
    let addr = server.addr;
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let body =
                json!({"prompt": format!("Copyright {i}"), "max_tokens": 6, "temperature": 0});
            std::thread::spawn(move || http::post(addr, "/v1/completions", &body))
        })
        .collect();
    for h in handles {
        let r = h.join().expect("client");
        assert_eq!(r.status, 200, "{}", r.text());
    }
    server.stop();
}

#[test]
fn shutdown_ends_running_streams_cleanly() {
    let server = TestServer::start(common::demo(Some(4096)), |c| {
        c.parallel = 2;
        c.shutdown_grace = Duration::from_millis(100);
    });
    let addr = server.addr;
    let body = json!({"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 4000, "ignore_eos": true, "stream": true, "temperature": 0});
    let client = std::thread::spawn(move || http::post(addr, "/v1/chat/completions", &body));
    // Let it start.
    let t0 = Instant::now();
    while metric(addr, "bitnet_active_sequences") < 1.0 && t0.elapsed() < Duration::from_secs(10) {
        std::thread::sleep(Duration::from_millis(10));
    }
    server.server().shutdown();
    let r = client.join().expect("client");
    assert_eq!(r.status, 200);
    let data = r.sse_data();
    let (text, finish) = http::stream_text(&data);
    assert!(!text.is_empty());
    assert_eq!(finish.as_deref(), Some("stop"), "cancelled at shutdown");
    // New connections are refused once the server has stopped.
    server.stop();
    assert!(std::net::TcpStream::connect(addr).is_err());
}
