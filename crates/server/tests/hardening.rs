//! Access control and slow clients: the API key on every route but
//! `/health` (401 in OpenAI's shape), CORS only for the origins given,
//! deadlines for request heads and bodies, a cap on open connections, and
//! `/health` answering 503 until the model is loaded.

mod common;

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use bitnet_server::{Server, ServerConfig};
use common::TestServer;
use common::http;
use serde_json::json;

const KEY: &str = "sk-test-0123456789";

fn completion() -> serde_json::Value {
    json!({"prompt": "Permission", "max_tokens": 3, "temperature": 0})
}

#[test]
fn the_api_key_guards_every_route_but_health() {
    let server = TestServer::start(common::demo(Some(128)), |c| c.api_key = Some(KEY.into()));
    let a = server.addr;
    let bearer = format!("Bearer {KEY}");
    let body = completion().to_string();
    for (path, method, payload) in [
        ("/v1/completions", "POST", Some(body.as_bytes())),
        ("/v1/models", "GET", None),
        ("/metrics", "GET", None),
        ("/generate", "POST", Some(body.as_bytes())),
    ] {
        for headers in [
            vec![],
            vec![("Authorization", "Bearer wrong")],
            vec![("Authorization", "Bearer sk-test-012345678")],
            vec![("Authorization", KEY)],
        ] {
            let r = http::request(a, method, path, payload, &headers);
            assert_eq!(r.status, 401, "{path} {headers:?}: {}", r.text());
            let e = r.json();
            assert_eq!(e["error"]["code"], "invalid_api_key");
            assert_eq!(e["error"]["type"], "invalid_request_error");
            assert_eq!(r.header("www-authenticate"), Some("Bearer"));
        }
        let r = http::request(
            a,
            method,
            path,
            payload,
            &[("Authorization", bearer.as_str())],
        );
        assert_eq!(r.status, 200, "{path}: {}", r.text());
        // OpenAI's Azure-style header works too.
        let r = http::request(a, method, path, payload, &[("api-key", KEY)]);
        assert_eq!(r.status, 200, "{path}: {}", r.text());
    }
    assert_eq!(http::get(a, "/health").status, 200);
    server.stop();
}

fn preflight(addr: SocketAddr, origin: &str) -> http::Response {
    http::request(
        addr,
        "OPTIONS",
        "/v1/chat/completions",
        None,
        &[
            ("Origin", origin),
            ("Access-Control-Request-Method", "POST"),
            (
                "Access-Control-Request-Headers",
                "authorization, content-type",
            ),
        ],
    )
}

#[test]
fn cors_is_off_unless_origins_are_given() {
    let closed = TestServer::start(common::demo(Some(128)), |_| {});
    let r = preflight(closed.addr, "https://evil.example");
    assert!(
        r.header("access-control-allow-origin").is_none(),
        "{:?}",
        r.headers
    );
    let r = http::request(
        closed.addr,
        "POST",
        "/v1/completions",
        Some(completion().to_string().as_bytes()),
        &[("Origin", "https://evil.example")],
    );
    assert!(r.header("access-control-allow-origin").is_none());
    closed.stop();

    let open = TestServer::start(common::demo(Some(128)), |c| {
        c.cors_origins = vec!["https://app.example".into()];
        c.api_key = Some(KEY.into());
    });
    // The preflight carries no key (browsers never send one) and passes.
    let r = preflight(open.addr, "https://app.example");
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    assert!(
        r.header("access-control-allow-headers")
            .is_some_and(|h| h.contains("authorization"))
    );
    let r = preflight(open.addr, "https://evil.example");
    assert!(r.header("access-control-allow-origin").is_none());
    let bearer = format!("Bearer {KEY}");
    let r = http::request(
        open.addr,
        "POST",
        "/v1/completions",
        Some(completion().to_string().as_bytes()),
        &[
            ("Origin", "https://app.example"),
            ("Authorization", bearer.as_str()),
        ],
    );
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://app.example")
    );
    open.stop();
}

/// Reads until the server closes the connection (or 20 s pass).
fn read_to_close(mut s: TcpStream) -> (String, Duration) {
    let t0 = Instant::now();
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    (String::from_utf8_lossy(&out).into_owned(), t0.elapsed())
}

#[test]
fn slow_heads_and_bodies_are_cut_off() {
    let server = TestServer::start(common::demo(Some(128)), |c| {
        c.header_timeout = Duration::from_secs(1);
        c.body_timeout = Duration::from_secs(1);
    });
    // Headers that never end.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\n")
        .unwrap();
    let (_, waited) = read_to_close(s);
    assert!(waited < Duration::from_secs(5), "head: {waited:?}");
    // A body that stops halfway.
    let mut s = TcpStream::connect(server.addr).unwrap();
    s.write_all(
        b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n{\"prompt\":",
    )
    .unwrap();
    let (answer, waited) = read_to_close(s);
    assert!(waited < Duration::from_secs(5), "body: {waited:?}");
    assert!(answer.starts_with("HTTP/1.1 408"), "{answer}");
    assert!(answer.contains("request_timeout"), "{answer}");
    // The server still answers.
    assert_eq!(
        http::post(server.addr, "/v1/completions", &completion()).status,
        200
    );
    server.stop();
}

#[test]
fn connections_beyond_the_cap_get_503() {
    let server = TestServer::start(common::demo(Some(128)), |c| {
        c.max_connections = 2;
        c.header_timeout = Duration::from_secs(30);
    });
    let held: Vec<TcpStream> = (0..2)
        .map(|_| {
            let s = TcpStream::connect(server.addr).unwrap();
            s.set_nodelay(true).unwrap();
            s
        })
        .collect();
    std::thread::sleep(Duration::from_millis(200));
    let (answer, _) = read_to_close(TcpStream::connect(server.addr).unwrap());
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(answer.contains("too_many_connections"), "{answer}");
    drop(held);
    // Once they are gone, connections are served again.
    let t0 = Instant::now();
    loop {
        let r = http::get(server.addr, "/health");
        if r.status == 200 {
            break;
        }
        assert!(t0.elapsed() < Duration::from_secs(10), "{}", r.text());
        std::thread::sleep(Duration::from_millis(20));
    }
    server.stop();
}

#[test]
fn health_says_loading_until_the_model_is_served() {
    let config = ServerConfig {
        port: 0,
        shutdown_grace: Duration::from_secs(1),
        ..ServerConfig::default()
    };
    let mut server = Server::bind(config).unwrap();
    let a = server.local_addr();
    let r = http::get(a, "/health");
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["status"], "loading");
    let r = http::post(a, "/v1/completions", &completion());
    assert_eq!(r.status, 503);
    assert_eq!(r.json()["error"]["code"], "model_loading");
    assert_eq!(r.header("retry-after"), Some("1"));
    server.serve(common::demo(Some(128))).unwrap();
    let r = http::get(a, "/health");
    assert_eq!(r.status, 200, "{}", r.text());
    assert_eq!(http::post(a, "/v1/completions", &completion()).status, 200);
    server.shutdown();
    server.wait().unwrap();
}
