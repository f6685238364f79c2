//! A request that would need memory the machine no longer has gets 503 with
//! Retry-After, and the server lives on: KV caches are made when a slot is
//! first used, and each is checked against the memory available then.

mod common;

use common::TestServer;
use common::http;
use serde_json::json;

#[test]
fn a_request_beyond_the_memory_available_gets_503() {
    let server = TestServer::start(common::demo(Some(256)), |c| c.parallel = 2);
    let body = json!({"prompt": "Permission", "max_tokens": 4, "temperature": 0});
    // Memory runs out after the server started (BITNET_MEMORY_LIMIT stands
    // for other programs taking it). SAFETY: no other thread of this test
    // process reads the environment while it changes: the server is idle
    // (no request in flight), and this file holds one test.
    unsafe { std::env::set_var("BITNET_MEMORY_LIMIT", "1000") };
    let r = http::post(server.addr, "/v1/completions", &body);
    // SAFETY: as above; the request has been answered.
    unsafe { std::env::remove_var("BITNET_MEMORY_LIMIT") };
    assert_eq!(r.status, 503, "{}", r.text());
    assert_eq!(r.json()["error"]["code"], "insufficient_memory");
    assert!(
        r.json()["error"]["message"]
            .as_str()
            .unwrap()
            .contains("KV cache"),
        "{}",
        r.text()
    );
    assert!(r.header("retry-after").is_some());
    // With memory back, the same request is served.
    let r = http::post(server.addr, "/v1/completions", &body);
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(r.json()["usage"]["completion_tokens"], 4);
    server.stop();
}
