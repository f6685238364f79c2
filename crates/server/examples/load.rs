//! Load benchmark for `bitnet serve`: aggregate generated tokens/s and
//! request latency (p50/p99) for 1, 4 and 16 concurrent streaming clients.
//!
//! ```text
//! cargo run --release -p bitnet-server --example load -- [-m MODEL] [-t THREADS] [-c CTX]
//!     [--clients 1,4,16] [--requests 4] [--max-tokens 64] [--prompt TEXT] [--url HOST:PORT]
//! ```
//!
//! Without `--url` the server runs in-process (with `--parallel` equal to
//! the largest client count) on a free loopback port; with it, an already
//! running server is measured. Every request streams a completion of exactly
//! `--max-tokens` tokens (greedy, `ignore_eos`), so runs are comparable.

#[path = "../tests/common/http.rs"]
mod http;

use std::io::BufReader;
use std::net::{SocketAddr, ToSocketAddrs};
use std::time::{Duration, Instant};

use bitnet_engine::{Engine, EngineOptions, resolve};
use bitnet_server::{Server, ServerConfig};

struct Options {
    model: Option<String>,
    threads: usize,
    ctx: Option<usize>,
    clients: Vec<usize>,
    requests: usize,
    max_tokens: usize,
    prompt: String,
    url: Option<String>,
}

fn parse_args() -> Result<Options, String> {
    let mut o = Options {
        model: None,
        threads: 0,
        ctx: None,
        clients: vec![1, 4, 16],
        requests: 4,
        max_tokens: 64,
        prompt: "Permission is hereby granted, free of charge, to any person obtaining a copy"
            .into(),
        url: None,
    };
    let mut args = std::env::args().skip(1);
    while let Some(flag) = args.next() {
        let mut value = || args.next().ok_or_else(|| format!("{flag} needs a value"));
        let number = |v: String| v.parse::<usize>().map_err(|e| format!("{v}: {e}"));
        match flag.as_str() {
            "-m" | "--model" => o.model = Some(value()?),
            "-t" | "--threads" => o.threads = number(value()?)?,
            "-c" | "--ctx-size" => o.ctx = Some(number(value()?)?),
            "--clients" => {
                o.clients = value()?
                    .split(',')
                    .map(|s| number(s.trim().to_string()))
                    .collect::<Result<_, _>>()?
            }
            "--requests" => o.requests = number(value()?)?,
            "--max-tokens" => o.max_tokens = number(value()?)?,
            "--prompt" => o.prompt = value()?,
            "--url" => o.url = Some(value()?),
            "-h" | "--help" => {
                println!("see the header of crates/server/examples/load.rs");
                std::process::exit(0);
            }
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if o.clients.is_empty() || o.clients.contains(&0) || o.requests == 0 || o.max_tokens == 0 {
        return Err("clients, requests and max tokens must be positive".into());
    }
    Ok(o)
}

/// One request's measurements.
struct Sample {
    latency: Duration,
    first_token: Duration,
    tokens: usize,
}

/// Streams one completion and times it.
fn one_request(addr: SocketAddr, prompt: &str, max_tokens: usize) -> Result<Sample, String> {
    let body = serde_json::json!({
        "prompt": prompt, "max_tokens": max_tokens, "temperature": 0, "ignore_eos": true,
        "stream": true, "stream_options": {"include_usage": true},
    });
    let t0 = Instant::now();
    let stream = http::send(
        addr,
        "POST",
        "/v1/completions",
        Some(body.to_string().as_bytes()),
        &[],
    );
    let mut reader = BufReader::new(stream);
    let (status, _) = http::read_head(&mut reader);
    let mut buffer = String::new();
    let mut first_token = None;
    let mut tokens = None;
    while let Some(chunk) = http::read_chunk(&mut reader) {
        buffer.push_str(&String::from_utf8_lossy(&chunk));
        while let Some(end) = buffer.find("\n\n") {
            let event: String = buffer.drain(..end + 2).collect();
            for data in http::sse_data(&event) {
                if data == "[DONE]" {
                    continue;
                }
                let v: serde_json::Value =
                    serde_json::from_str(&data).map_err(|e| e.to_string())?;
                if let Some(e) = v.get("error") {
                    return Err(format!("HTTP {status}: {e}"));
                }
                if first_token.is_none()
                    && v["choices"][0]["text"]
                        .as_str()
                        .is_some_and(|t| !t.is_empty())
                {
                    first_token = Some(t0.elapsed());
                }
                if let Some(n) = v["usage"]["completion_tokens"].as_u64() {
                    tokens = Some(n as usize);
                }
            }
        }
    }
    if status != 200 {
        return Err(format!("HTTP {status}: {buffer}"));
    }
    let latency = t0.elapsed();
    Ok(Sample {
        latency,
        first_token: first_token.unwrap_or(latency),
        tokens: tokens.ok_or("no usage chunk")?,
    })
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let rank = (p / 100.0 * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}

fn main() {
    let o = match parse_args() {
        Ok(o) => o,
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    };
    let max_clients = o.clients.iter().copied().max().unwrap_or(1);
    let mut server = None;
    let addr = match &o.url {
        Some(url) => {
            let hostport = url.trim_start_matches("http://").trim_end_matches('/');
            match hostport.to_socket_addrs().ok().and_then(|mut a| a.next()) {
                Some(a) => a,
                None => {
                    eprintln!("error: cannot resolve {url}");
                    std::process::exit(2);
                }
            }
        }
        None => {
            let hub = bitnet_hub::Hub::from_env();
            let engine = resolve::resolve(o.model.as_deref(), &hub)
                .and_then(|r| {
                    Engine::load(
                        &r.location,
                        EngineOptions {
                            threads: o.threads,
                            n_ctx: o.ctx,
                            ..EngineOptions::default()
                        },
                    )
                })
                .unwrap_or_else(|e| {
                    eprintln!("error: cannot load the model: {e}");
                    std::process::exit(1);
                });
            eprintln!(
                "model: {} ({} threads, ctx {})",
                engine.name(),
                engine.pool().n_threads(),
                engine.n_ctx()
            );
            let config = ServerConfig {
                port: 0,
                model_name: "bench".into(),
                parallel: max_clients,
                queue: max_clients,
                ..ServerConfig::default()
            };
            let s = Server::start(engine, config).unwrap_or_else(|e| {
                eprintln!("error: {e}");
                std::process::exit(1);
            });
            let a = s.local_addr();
            server = Some(s);
            a
        }
    };
    // Warm up (first-touch of weights and caches).
    if let Err(e) = one_request(addr, &o.prompt, 4) {
        eprintln!("error: warm-up request failed: {e}");
        std::process::exit(1);
    }
    println!(
        "{:>7} {:>8} {:>10} {:>10} {:>10} {:>10} {:>10} {:>12}",
        "clients",
        "requests",
        "agg tok/s",
        "p50 s",
        "p99 s",
        "ttft p50",
        "ttft p99",
        "tok/s/client"
    );
    let mut single = None;
    for &clients in &o.clients {
        let t0 = Instant::now();
        let handles: Vec<_> = (0..clients)
            .map(|c| {
                let prompt = format!("{} {c}", o.prompt);
                let (requests, max_tokens) = (o.requests, o.max_tokens);
                std::thread::spawn(move || {
                    (0..requests)
                        .map(|_| one_request(addr, &prompt, max_tokens))
                        .collect::<Result<Vec<_>, _>>()
                })
            })
            .collect();
        let mut samples = Vec::new();
        for h in handles {
            match h.join() {
                Ok(Ok(s)) => samples.extend(s),
                Ok(Err(e)) => {
                    eprintln!("error: {e}");
                    std::process::exit(1);
                }
                Err(_) => std::process::exit(1),
            }
        }
        let wall = t0.elapsed().as_secs_f64();
        let tokens: usize = samples.iter().map(|s| s.tokens).sum();
        let mut lat: Vec<f64> = samples.iter().map(|s| s.latency.as_secs_f64()).collect();
        let mut ttft: Vec<f64> = samples
            .iter()
            .map(|s| s.first_token.as_secs_f64())
            .collect();
        lat.sort_by(f64::total_cmp);
        ttft.sort_by(f64::total_cmp);
        let agg = tokens as f64 / wall;
        if clients == 1 {
            single = Some(agg);
        }
        println!(
            "{clients:>7} {:>8} {agg:>10.1} {:>10.3} {:>10.3} {:>10.3} {:>10.3} {:>12.1}",
            samples.len(),
            percentile(&lat, 50.0),
            percentile(&lat, 99.0),
            percentile(&ttft, 50.0),
            percentile(&ttft, 99.0),
            agg / clients as f64,
        );
        if let Some(one) = single
            && clients > 1
        {
            println!("        {:.2}x the single-stream rate", agg / one);
        }
    }
    if let Some(s) = server {
        s.shutdown();
        let _ = s.wait();
    }
}
