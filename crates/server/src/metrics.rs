//! Counters and gauges, rendered in Prometheus' text format.
//!
//! Everything is an atomic the HTTP side and the engine thread update
//! without locks, except the rate window (a short list of recent steps
//! behind a mutex the engine touches once per step).

use std::collections::VecDeque;
use std::fmt::Write;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use crate::histogram::{Histogram, INTER_TOKEN_BUCKETS, REQUEST_BUCKETS, TTFT_BUCKETS};

/// The endpoints that count requests.
#[derive(Clone, Copy)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
    /// `/generate`.
    Generate,
    /// `/v1/embeddings`.
    Embeddings,
}

const ENDPOINTS: [(&str, Endpoint); 4] = [
    ("chat_completions", Endpoint::Chat),
    ("completions", Endpoint::Completions),
    ("generate", Endpoint::Generate),
    ("embeddings", Endpoint::Embeddings),
];

/// How long the tokens/s gauges look back.
const WINDOW: Duration = Duration::from_secs(10);

/// The server's metrics.
pub struct Metrics {
    slots: usize,
    started: Instant,
    requests: [AtomicU64; 4],
    client_errors: AtomicU64,
    rejected: AtomicU64,
    server_errors: AtomicU64,
    finished: AtomicU64,
    cancelled: AtomicU64,
    prompt_tokens: AtomicU64,
    generated_tokens: AtomicU64,
    steps: AtomicU64,
    batch_tokens: AtomicU64,
    window: Mutex<VecDeque<(Instant, u64, u64)>>,
    /// Seconds from arrival to the first token.
    pub ttft: Histogram,
    /// Seconds between two tokens of a sequence.
    pub inter_token: Histogram,
    /// Seconds from arrival to the end of a finished request.
    pub request_latency: Histogram,
}

/// What the engine thread holds now, for the gauges.
pub struct Current {
    /// Requests waiting for a slot.
    pub queued: usize,
    /// Sequences in a slot.
    pub running: usize,
    /// Fraction of the slots' KV cache positions in use.
    pub kv_cache_usage: f64,
}

impl Metrics {
    /// Metrics for a server with `slots` slots.
    pub fn new(slots: usize) -> Metrics {
        Metrics {
            slots,
            started: Instant::now(),
            requests: Default::default(),
            client_errors: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            server_errors: AtomicU64::new(0),
            finished: AtomicU64::new(0),
            cancelled: AtomicU64::new(0),
            prompt_tokens: AtomicU64::new(0),
            generated_tokens: AtomicU64::new(0),
            steps: AtomicU64::new(0),
            batch_tokens: AtomicU64::new(0),
            window: Mutex::new(VecDeque::new()),
            ttft: Histogram::new(TTFT_BUCKETS),
            inter_token: Histogram::new(INTER_TOKEN_BUCKETS),
            request_latency: Histogram::new(REQUEST_BUCKETS),
        }
    }

    /// A request arrived.
    pub fn request(&self, endpoint: Endpoint) {
        self.requests[endpoint as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A request failed with `status`.
    pub fn error(&self, status: u16) {
        let counter = match status {
            503 => &self.rejected,
            400..=499 => &self.client_errors,
            _ => &self.server_errors,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// A sequence ended (`cancelled`: the client went away or shutdown).
    pub fn sequence_done(&self, cancelled: bool) {
        let counter = if cancelled {
            &self.cancelled
        } else {
            &self.finished
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }

    /// One forward pass: `prompt` prompt tokens processed, `generated` tokens
    /// sampled.
    pub fn step(&self, prompt: usize, generated: usize) {
        self.steps.fetch_add(1, Ordering::Relaxed);
        self.batch_tokens
            .fetch_add((prompt + generated) as u64, Ordering::Relaxed);
        self.prompt_tokens
            .fetch_add(prompt as u64, Ordering::Relaxed);
        self.generated_tokens
            .fetch_add(generated as u64, Ordering::Relaxed);
        let now = Instant::now();
        let mut w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        w.push_back((now, prompt as u64, generated as u64));
        while w
            .front()
            .is_some_and(|(t, _, _)| now.duration_since(*t) > WINDOW)
        {
            w.pop_front();
        }
    }

    /// Prompt and generated tokens per second over the recent window.
    pub fn rates(&self) -> (f64, f64) {
        let now = Instant::now();
        let w = self.window.lock().unwrap_or_else(|e| e.into_inner());
        let span = now
            .duration_since(self.started)
            .min(WINDOW)
            .as_secs_f64()
            .max(1e-3);
        let (mut p, mut g) = (0u64, 0u64);
        for (t, prompt, generated) in w.iter() {
            if now.duration_since(*t) <= WINDOW {
                p += prompt;
                g += generated;
            }
        }
        (p as f64 / span, g as f64 / span)
    }

    /// The Prometheus exposition, with what the engine holds `now`. Beside
    /// the `bitnet_*` metrics, the names that Kubernetes LLM routing and
    /// dashboards read from vLLM (`vllm:num_requests_running`, ...).
    pub fn render(&self, now: &Current) -> String {
        let (queued, running) = (now.queued, now.running);
        let mut out = String::new();
        let load = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let mut metric = |name: &str, kind: &str, help: &str, samples: &[(&str, String)]| {
            let _ = writeln!(out, "# HELP {name} {help}");
            let _ = writeln!(out, "# TYPE {name} {kind}");
            for (labels, value) in samples {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        let requests: Vec<(String, String)> = ENDPOINTS
            .iter()
            .map(|(label, e)| {
                (
                    format!("{{endpoint=\"{label}\"}}"),
                    load(&self.requests[*e as usize]).to_string(),
                )
            })
            .collect();
        let requests: Vec<(&str, String)> = requests
            .iter()
            .map(|(l, v)| (l.as_str(), v.clone()))
            .collect();
        metric(
            "bitnet_requests_total",
            "counter",
            "Generation requests received.",
            &requests,
        );
        metric(
            "bitnet_request_errors_total",
            "counter",
            "Requests answered with an error, by kind.",
            &[
                ("{kind=\"client\"}", load(&self.client_errors).to_string()),
                ("{kind=\"rejected\"}", load(&self.rejected).to_string()),
                ("{kind=\"server\"}", load(&self.server_errors).to_string()),
            ],
        );
        metric(
            "bitnet_sequences_total",
            "counter",
            "Sequences that left a slot, by outcome.",
            &[
                ("{outcome=\"finished\"}", load(&self.finished).to_string()),
                ("{outcome=\"cancelled\"}", load(&self.cancelled).to_string()),
            ],
        );
        metric(
            "bitnet_prompt_tokens_total",
            "counter",
            "Prompt tokens processed.",
            &[("", load(&self.prompt_tokens).to_string())],
        );
        metric(
            "bitnet_generated_tokens_total",
            "counter",
            "Tokens generated.",
            &[("", load(&self.generated_tokens).to_string())],
        );
        metric(
            "bitnet_forward_passes_total",
            "counter",
            "Batched forward passes (scheduler steps).",
            &[("", load(&self.steps).to_string())],
        );
        metric(
            "bitnet_batch_tokens_total",
            "counter",
            "Tokens in all forward passes (divide by passes for the mean batch).",
            &[("", load(&self.batch_tokens).to_string())],
        );
        metric(
            "bitnet_queue_depth",
            "gauge",
            "Requests waiting for a slot.",
            &[("", queued.to_string())],
        );
        metric(
            "bitnet_active_sequences",
            "gauge",
            "Sequences in a slot (prefilling or decoding).",
            &[("", running.to_string())],
        );
        metric(
            "bitnet_slots",
            "gauge",
            "Slots (--parallel).",
            &[("", self.slots.to_string())],
        );
        metric(
            "vllm:num_requests_running",
            "gauge",
            "Requests being decoded or prefilled (vLLM's name).",
            &[("", running.to_string())],
        );
        metric(
            "vllm:num_requests_waiting",
            "gauge",
            "Requests waiting for a slot (vLLM's name).",
            &[("", queued.to_string())],
        );
        metric(
            "vllm:kv_cache_usage_perc",
            "gauge",
            "Fraction of the KV cache positions in use, 0 to 1 (vLLM's name).",
            &[("", format!("{:.6}", now.kv_cache_usage))],
        );
        let (prompt_rate, gen_rate) = self.rates();
        metric(
            "bitnet_generation_tokens_per_second",
            "gauge",
            "Tokens generated per second over the last 10 s.",
            &[("", format!("{gen_rate:.3}"))],
        );
        metric(
            "bitnet_prompt_tokens_per_second",
            "gauge",
            "Prompt tokens processed per second over the last 10 s.",
            &[("", format!("{prompt_rate:.3}"))],
        );
        metric(
            "bitnet_uptime_seconds",
            "gauge",
            "Seconds since the server started.",
            &[("", format!("{:.3}", self.started.elapsed().as_secs_f64()))],
        );
        self.ttft.render(
            &mut out,
            "vllm:time_to_first_token_seconds",
            "Seconds from a request's arrival to its first token.",
        );
        self.inter_token.render(
            &mut out,
            "vllm:inter_token_latency_seconds",
            "Seconds between two tokens of a sequence.",
        );
        self.request_latency.render(
            &mut out,
            "vllm:e2e_request_latency_seconds",
            "Seconds from a request's arrival to its last token.",
        );
        out
    }
}
