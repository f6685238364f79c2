//! The scheduler seen from clients: hanging up frees a slot or a queue place
//! whatever state the request is in, and fair prefill keeps decoding streams
//! going while a long prompt is read in chunks.

mod common;

use std::io::BufReader;
use std::net::{SocketAddr, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use common::http;
use common::{TestServer, greedy};
use serde_json::{Value, json};

fn metric(addr: SocketAddr, name: &str) -> f64 {
    let text = http::get(addr, "/metrics").text();
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

fn health(addr: SocketAddr) -> Value {
    let r = http::get(addr, "/health");
    assert_eq!(r.status, 200, "{}", r.text());
    r.json()
}

/// Polls until `cond` holds, panicking with `what` after 20 s.
fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(
            t0.elapsed() < Duration::from_secs(20),
            "timed out waiting for {what}"
        );
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// A generation that runs for thousands of steps (seconds) unless cancelled.
fn long_body(stream: bool) -> Value {
    json!({"prompt": "Permission", "max_tokens": 4000, "ignore_eos": true, "temperature": 0, "stream": stream})
}

/// Sends a request and leaves the connection open.
fn open(addr: SocketAddr, path: &str, body: &Value) -> TcpStream {
    http::send(addr, "POST", path, Some(body.to_string().as_bytes()), &[])
}

/// Opens a stream and reads its head and `n` data events.
fn open_stream(addr: SocketAddr, body: &Value, n: usize) -> BufReader<TcpStream> {
    let mut reader = BufReader::new(open(addr, "/v1/completions", body));
    let (status, _) = http::read_head(&mut reader);
    assert_eq!(status, 200);
    let mut seen = 0;
    while seen < n {
        let chunk = http::read_chunk(&mut reader).expect("stream data");
        seen += http::sse_data(&String::from_utf8_lossy(&chunk)).len();
    }
    reader
}

const CANCELLED: &str = "bitnet_sequences_total{outcome=\"cancelled\"}";
const FINISHED: &str = "bitnet_sequences_total{outcome=\"finished\"}";
const GENERATED: &str = "bitnet_generated_tokens_total";

#[test]
fn a_non_streaming_client_that_hangs_up_is_cancelled_and_frees_its_slot() {
    let server = TestServer::start(common::demo(Some(4096)), |c| {
        c.parallel = 1;
        c.queue = 0;
    });
    let addr = server.addr;
    let client = open(addr, "/v1/completions", &long_body(false));
    // Mid-generation: in the slot, and some tokens out.
    wait_until("the request to start decoding", || {
        health(addr)["slots_busy"] == 1 && metric(addr, GENERATED) >= 5.0
    });
    let small = json!({"prompt": "Permission", "max_tokens": 4, "temperature": 0});
    let r = http::post(addr, "/v1/completions", &small);
    assert_eq!(r.status, 503, "the only slot is taken: {}", r.text());

    // Hang up while the answer is being computed.
    drop(client);
    wait_until("the sequence to end", || {
        metric(addr, CANCELLED) + metric(addr, FINISHED) >= 1.0
    });
    assert_eq!(health(addr)["slots_busy"], 0);
    // It was cancelled, not run to its end: the counter says so, and far
    // fewer than the 4000 requested tokens were generated.
    assert_eq!(metric(addr, CANCELLED), 1.0);
    assert_eq!(metric(addr, FINISHED), 0.0);
    let generated = metric(addr, GENERATED);
    assert!(
        generated < 4000.0,
        "{generated} tokens: not cancelled early"
    );

    // The next request is admitted and answered.
    let r = http::post(addr, "/v1/completions", &small);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(metric(addr, FINISHED), 1.0);
    assert_eq!(health(addr)["queue"], 0);
    server.stop();
}

#[test]
fn a_queued_stream_that_hangs_up_frees_its_queue_place() {
    let server = TestServer::start(common::demo(Some(4096)), |c| {
        c.parallel = 1;
        c.queue = 1;
    });
    let addr = server.addr;
    // A holds the only slot for thousands of steps.
    let a = open_stream(addr, &long_body(true), 2);
    // B waits in the only queue place.
    let queued = json!({"prompt": "Copyright", "max_tokens": 4, "temperature": 0, "stream": true});
    let mut b = BufReader::new(open(addr, "/v1/completions", &queued));
    let (status, _) = http::read_head(&mut b);
    assert_eq!(status, 200);
    wait_until("B to be queued", || health(addr)["queue"] == 1);
    let h = health(addr);
    assert_eq!(h["slots_busy"], 1, "{h}");
    // Slot and queue are full.
    let r = http::post(
        addr,
        "/v1/completions",
        &json!({"prompt": "x", "max_tokens": 1}),
    );
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "server_overloaded");

    // B hangs up before it ever reached a slot: its place is freed while A
    // is still running.
    drop(b);
    wait_until("B's queue place to be freed", || health(addr)["queue"] == 0);
    let h = health(addr);
    assert_eq!(h["slots_busy"], 1, "A still runs: {h}");
    assert_eq!(metric(addr, FINISHED), 0.0, "A has not finished");
    // B never ran, so it is not counted as a cancelled sequence.
    assert_eq!(metric(addr, CANCELLED), 0.0);

    // The freed place takes the next request.
    let mut c = BufReader::new(open(addr, "/v1/completions", &queued));
    let (status, _) = http::read_head(&mut c);
    assert_eq!(status, 200, "the queue place was not freed");
    wait_until("C to be queued", || health(addr)["queue"] == 1);
    // Once A hangs up, C runs and completes.
    drop(a);
    let mut text = String::new();
    while let Some(chunk) = http::read_chunk(&mut c) {
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let data = http::sse_data(&text);
    assert_eq!(data.last().map(String::as_str), Some("[DONE]"), "{data:?}");
    assert_eq!(metric(addr, CANCELLED), 1.0, "A was cancelled");
    assert_eq!(metric(addr, FINISHED), 1.0, "C finished");
    server.stop();
}

/// The text of the SSE data events in `chunk`.
fn chunk_text(chunk: &[u8]) -> String {
    let mut text = String::new();
    for d in http::sse_data(&String::from_utf8_lossy(chunk)) {
        if d == "[DONE]" {
            continue;
        }
        let v: Value = serde_json::from_str(&d).expect("chunk JSON");
        assert!(v.get("error").is_none(), "{v}");
        text.push_str(v["choices"][0]["text"].as_str().unwrap_or(""));
    }
    text
}

#[test]
fn a_decoding_stream_keeps_getting_tokens_while_a_long_prompt_is_prefilled() {
    const CHUNK: usize = 2;
    let reference = common::demo(Some(4096));
    let long_prompt = "Permission is hereby granted, free of charge, to any person obtaining a copy of this software. "
        .repeat(24);
    let n_prompt = reference.tokenize(&long_prompt).expect("tokenize").len();
    // Prefilling B while A decodes takes this many steps at least.
    let prefill_steps = n_prompt.div_ceil(CHUNK);
    assert!(prefill_steps >= 200, "{n_prompt} prompt tokens");
    let (want_b, _) = common::reference_text(&reference, &long_prompt, &greedy(4));
    // A's text as the engine releases it, one piece per decoding step that
    // yields text: how many bytes of A a client has tells how many steps A
    // has been served, however the server batched the pieces into events.
    let a_ids = reference.tokenize("Permission").expect("tokenize");
    let a_params = bitnet_engine::GenerationParams {
        ignore_eos: true,
        ..greedy(1500)
    };
    let mut a_ends = Vec::new();
    let mut want_a = String::new();
    reference
        .generate(&a_ids, &a_params, false, &mut |piece| {
            if !piece.is_empty() {
                want_a.push_str(piece);
                a_ends.push(want_a.len());
            }
            true
        })
        .expect("generate A");
    let a_steps = |bytes: usize| a_ends.partition_point(|&end| end <= bytes);
    drop(reference);

    let server = TestServer::start(common::demo(Some(4096)), |c| {
        c.parallel = 2;
        c.prefill_chunk = CHUNK;
    });
    let addr = server.addr;

    // A decodes; a reader thread counts the bytes of its text as they
    // arrive.
    let a_bytes = Arc::new(AtomicUsize::new(0));
    let stop = Arc::new(AtomicBool::new(false));
    let mut a = BufReader::new(open(addr, "/v1/completions", &long_body(true)));
    let (status, _) = http::read_head(&mut a);
    assert_eq!(status, 200);
    let reader = {
        let (a_bytes, stop) = (Arc::clone(&a_bytes), Arc::clone(&stop));
        std::thread::spawn(move || {
            let mut text = String::new();
            while let Some(chunk) = http::read_chunk(&mut a) {
                text.push_str(&chunk_text(&chunk));
                a_bytes.store(text.len(), Ordering::SeqCst);
                if stop.load(Ordering::SeqCst) {
                    // Hanging up cancels A.
                    return Some(text);
                }
            }
            None
        })
    };
    wait_until("A to be streaming", || {
        a_steps(a_bytes.load(Ordering::SeqCst)) >= 3
    });

    // B: a long prompt. Its response head comes once it is submitted, so
    // the window from its head to its first token is B's prefill.
    let body = json!({"prompt": long_prompt, "max_tokens": 4, "temperature": 0, "stream": true});
    let mut b = BufReader::new(open(addr, "/v1/completions", &body));
    let (status, _) = http::read_head(&mut b);
    assert_eq!(status, 200);
    let at_head = a_steps(a_bytes.load(Ordering::SeqCst));
    let mut b_text = String::new();
    let mut at_first = None;
    while let Some(chunk) = http::read_chunk(&mut b) {
        let text = chunk_text(&chunk);
        if !text.is_empty() && at_first.is_none() {
            at_first = Some(a_steps(a_bytes.load(Ordering::SeqCst)));
        }
        b_text.push_str(&text);
    }
    let during = at_first.expect("B produced text") - at_head;
    eprintln!(
        "A was served {during} steps between B's admission and B's first token; B's {n_prompt}-token prompt takes {prefill_steps} steps of {CHUNK}"
    );
    // Without fair prefill B's prompt would be read in one step, and A
    // would get a token or two (one step, plus the one running when B
    // came) before B's first. With it, A gets a token every step of B's
    // prefill; the margin absorbs the client's lag in reading A.
    assert!(
        during >= prefill_steps / 4,
        "A was served only {during} steps during the {prefill_steps} prefill steps of B"
    );
    // Chunked prefill changes nothing in B's result.
    assert_eq!(b_text, want_b);
    // A is still running: fair prefill did not starve or end it.
    assert_eq!(health(addr)["slots_busy"], 1);
    assert_eq!(metric(addr, CANCELLED), 0.0);
    stop.store(true, Ordering::SeqCst);
    let a_text = reader.join().expect("reader").expect("A ended early");
    // A's text, interleaved with B's prefill, is its single-sequence
    // greedy text.
    let n = a_text.len().min(want_a.len());
    assert_eq!(a_text.as_bytes()[..n], want_a.as_bytes()[..n]);
    server.stop();
}
