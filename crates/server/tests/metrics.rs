//! `/metrics` carries, beside the server's own counters, the names that
//! Kubernetes LLM routing and dashboards read from vLLM, with values that
//! follow the requests served.

mod common;

use common::TestServer;
use common::http;
use serde_json::json;

fn value(text: &str, name: &str) -> f64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|v| v.trim().parse().ok()))
        .unwrap_or_else(|| panic!("{name} not in\n{text}"))
}

#[test]
fn vllm_gauges_and_latency_histograms_follow_the_requests() {
    let server = TestServer::start(common::demo(Some(256)), |_| {});
    let idle = http::get(server.addr, "/metrics").text();
    for gauge in [
        "vllm:num_requests_running ",
        "vllm:num_requests_waiting ",
        "vllm:kv_cache_usage_perc ",
    ] {
        assert_eq!(value(&idle, gauge), 0.0, "{gauge}");
    }
    assert_eq!(value(&idle, "vllm:time_to_first_token_seconds_count "), 0.0);

    let (requests, tokens) = (3, 12);
    for i in 0..requests {
        let body = json!({"prompt": format!("Permission is hereby granted {i}"), "max_tokens": tokens, "temperature": 0, "ignore_eos": true});
        let r = http::post(server.addr, "/v1/completions", &body);
        assert_eq!(r.status, 200, "{}", r.text());
        assert_eq!(r.json()["usage"]["completion_tokens"], tokens);
    }
    let text = http::get(server.addr, "/metrics").text();
    assert_eq!(
        value(&text, "vllm:time_to_first_token_seconds_count "),
        requests as f64
    );
    assert_eq!(
        value(&text, "vllm:e2e_request_latency_seconds_count "),
        requests as f64
    );
    // Every token after the first of each request is one interval.
    assert_eq!(
        value(&text, "vllm:inter_token_latency_seconds_count "),
        (requests * (tokens - 1)) as f64
    );
    assert_eq!(
        value(
            &text,
            "vllm:time_to_first_token_seconds_bucket{le=\"+Inf\"} "
        ),
        requests as f64
    );
    let ttft_sum = value(&text, "vllm:time_to_first_token_seconds_sum ");
    let e2e_sum = value(&text, "vllm:e2e_request_latency_seconds_sum ");
    assert!(ttft_sum > 0.0 && ttft_sum < e2e_sum, "{ttft_sum} {e2e_sum}");
    // Finished sequences leave the cache empty.
    assert_eq!(value(&text, "vllm:kv_cache_usage_perc "), 0.0);
    server.stop();
}

#[test]
fn kv_cache_usage_counts_the_positions_of_running_sequences() {
    let server = TestServer::start(common::demo(Some(256)), |c| c.parallel = 2);
    let addr = server.addr;
    let body = json!({"prompt": "Permission", "max_tokens": 200, "temperature": 0, "ignore_eos": true, "stream": true});
    let stream = http::send(
        addr,
        "POST",
        "/v1/completions",
        Some(body.to_string().as_bytes()),
        &[],
    );
    let t0 = std::time::Instant::now();
    let mut usage = 0.0;
    while t0.elapsed() < std::time::Duration::from_secs(20) {
        usage = value(
            &http::get(addr, "/metrics").text(),
            "vllm:kv_cache_usage_perc ",
        );
        if usage > 0.0 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(2));
    }
    // One sequence holds at most its prompt plus 200 tokens of 2 x 256.
    assert!(usage > 0.0 && usage <= 202.0 / 512.0, "{usage}");
    drop(stream);
    server.stop();
}
