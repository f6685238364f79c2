//! An OpenAI-compatible HTTP server for BitNet models, with continuous
//! batching.
//!
//! # Shape
//!
//! Two worlds meet here, and the design keeps them apart.
//!
//! * **The engine thread** is [`bitnet_engine::batch`]'s continuous-batching
//!   scheduler, the one the Python package uses too: one OS thread owns the
//!   model, its thread pool and one KV cache per slot (`--parallel` of
//!   them), and runs every active sequence through each forward pass
//!   together, with fair chunked prefill, bounded admission and immediate
//!   cancellation. Its module documentation gives the policy and why.
//! * **The HTTP side** (modules `routes`, `generation`, `stream`) is axum
//!   on a small tokio runtime. Handlers parse and validate, tokenise on tokio's *blocking*
//!   pool (a 1 MiB prompt through a BPE tokenizer is real work, and async
//!   workers must never compute), take a permit (`503` with `Retry-After`
//!   when slots and queue are full) and hand a job to the engine thread.
//!   Each job carries a tokio channel back (module `jobs`); the handler
//!   turns what arrives into an SSE stream or one JSON body. A client that
//!   disconnects drops its body and with it the channel, which the engine
//!   sees at its next step: the sequence is dropped and its slot freed.
//!
//! Nothing else is shared: the engine thread never awaits, the async
//! workers never touch the model.
//!
//! **Shutdown.** SIGINT/SIGTERM (or [`Server::shutdown`]) stops accepting
//! connections, answers queued requests with 503, lets running sequences
//! finish for a grace period and then cancels them; every stream still ends
//! with its final chunk and `data: [DONE]`. A second signal cancels at once.
//!
//! **Choices and log-probabilities.** A request with `n > 1` becomes `n`
//! independent sequences (seeds `seed`, `seed + 1`, ...) batched like any
//! others; their streamed chunks interleave by `index` and the usage counts
//! the prompt once. `logprobs` (module `logprobs`) are the log-softmax of
//! the raw logits, as vLLM reports them by default; the engine computes
//! them for the sequences that ask.
//!
//! **Limits and logs.** A sequence generates at most
//! [`ServerConfig::n_predict`] tokens (llama-server's `--n-predict`, 1024 by
//! default), so a request without `max_tokens` cannot hold a slot until the
//! context is full. Every request leaves one line in the request log
//! (module `request_log`: method, path, status, tokens, finish, time; text
//! or JSON), written when the request is truly over — for a stream, when it
//! ends or its client has gone and the engine has freed the slot.
//!
//! **Exposure.** The server listens on loopback unless told otherwise and
//! sends no CORS headers, so a web page from another origin cannot read its
//! answers. Request bodies are capped (1 MiB by default, 413 beyond).
//!
//! # Errors
//!
//! Every client mistake is a 4xx in OpenAI's shape,
//! `{"error": {"message", "type", "param", "code"}}` (module `error`); no
//! request data is unwrapped.

#![deny(missing_docs)]

mod api;
mod describe;
mod embeddings;
mod error;
mod generation;
mod guard;
mod histogram;
mod jobs;
mod listener;
mod logprobs;
mod metrics;
mod request_log;
mod routes;
mod stream;
mod validate;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::thread::JoinHandle;
use std::time::Duration;

use bitnet_engine::Engine;
use tokio::sync::watch;

pub use error::{ApiError, Error};
pub use request_log::{LogFormat, LogTarget};
pub use validate::{Refusal, check_request};

/// How to serve.
#[derive(Clone, Debug)]
pub struct ServerConfig {
    /// Address to listen on.
    pub host: String,
    /// Port (0 = any free port; see [`Server::local_addr`]).
    pub port: u16,
    /// The model's name: `/v1/models` lists it and responses show it when
    /// a request names no model. Requests may name any model (as with
    /// llama-server, the one loaded model answers to every name).
    pub model_name: String,
    /// Sequences decoded together (slots, each with its own KV cache).
    pub parallel: usize,
    /// Requests that may wait for a slot before new ones get 503.
    pub queue: usize,
    /// Largest accepted request body in bytes.
    pub max_body_bytes: usize,
    /// Prompt tokens per step while other sequences are decoding.
    pub prefill_chunk: usize,
    /// How long running sequences may go on after a shutdown request.
    pub shutdown_grace: Duration,
    /// Async worker threads of the HTTP runtime (they only parse and move
    /// bytes; compute is on the engine thread and tokenisation on tokio's
    /// blocking pool).
    pub http_threads: usize,
    /// The most tokens one sequence may generate (llama-server's
    /// `--n-predict`): the limit of requests that set none, and a cap on
    /// those that ask for more. `None`: until the context is full.
    pub n_predict: Option<usize>,
    /// The request log: one line per request.
    pub log_format: LogFormat,
    /// Where the request log goes (stderr by default).
    pub log_target: LogTarget,
    /// The key every route but `/health` requires (`Authorization: Bearer
    /// KEY`), if any.
    pub api_key: Option<String>,
    /// Origins whose web pages may call the API (CORS; `*` for any). Empty:
    /// no CORS headers at all, so browsers keep other origins out.
    pub cors_origins: Vec<String>,
    /// How long a request's head may take to arrive (and an idle
    /// keep-alive connection may stay open).
    pub header_timeout: Duration,
    /// How long a request's body may take to arrive.
    pub body_timeout: Duration,
    /// Connections open at once; more are answered 503 and closed.
    pub max_connections: usize,
}

/// [`ServerConfig::n_predict`]'s default: long enough for any ordinary
/// answer, short enough that a request without `max_tokens` cannot hold a
/// slot until the context is full.
pub const DEFAULT_N_PREDICT: usize = 1024;

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            host: "127.0.0.1".into(),
            port: 8080,
            model_name: "bitnet".into(),
            parallel: 4,
            queue: 64,
            max_body_bytes: 1 << 20,
            prefill_chunk: 256,
            shutdown_grace: Duration::from_secs(30),
            http_threads: 1,
            n_predict: Some(DEFAULT_N_PREDICT),
            log_format: LogFormat::Text,
            log_target: LogTarget::stderr(),
            api_key: None,
            cors_origins: Vec::new(),
            header_timeout: Duration::from_secs(10),
            body_timeout: Duration::from_secs(30),
            max_connections: 512,
        }
    }
}

/// The name `/v1/models` shows for a model argument: the file name without
/// `.gguf` for a file, the directory name for a directory, the repo id for a
/// Hub model, `demo-bitnet` for the built-in model.
pub fn model_name(spec: Option<&str>, engine_name: &str) -> String {
    let spec = spec.unwrap_or(engine_name);
    if spec == bitnet_engine::builtin::NAME
        || matches!(spec, "builtin" | "builtin:demo-bitnet" | "demo")
    {
        return "demo-bitnet".into();
    }
    let path = std::path::Path::new(spec);
    if path.exists() {
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| spec.to_string());
        return name
            .strip_suffix(".gguf")
            .map(str::to_string)
            .unwrap_or(name);
    }
    spec.to_string()
}

/// Triggers shutdown; cheap to clone.
#[derive(Clone)]
pub struct ShutdownHandle {
    inner: Arc<ShutdownInner>,
}

struct ShutdownInner {
    requested: AtomicBool,
    signal: watch::Sender<bool>,
    /// Set once the model is being served.
    scheduler: OnceLock<bitnet_engine::batch::Batcher>,
    grace: Duration,
}

impl ShutdownHandle {
    /// Starts a graceful shutdown; a second call cancels running sequences
    /// at once.
    pub fn shutdown(&self) {
        let again = self.inner.requested.swap(true, Ordering::SeqCst);
        let grace = if again {
            Duration::ZERO
        } else {
            self.inner.grace
        };
        if let Some(scheduler) = self.inner.scheduler.get() {
            scheduler.shutdown(grace);
        }
        self.inner.signal.send_replace(true);
    }

    /// Whether shutdown was requested.
    pub fn is_shutting_down(&self) -> bool {
        self.inner.requested.load(Ordering::SeqCst)
    }
}

/// A running server.
pub struct Server {
    addr: SocketAddr,
    config: ServerConfig,
    handle: ShutdownHandle,
    runtime: tokio::runtime::Handle,
    http: JoinHandle<Result<(), Error>>,
    routes: watch::Sender<Option<axum::Router>>,
    engine: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds the listener, starts the engine thread and the HTTP runtime, and
    /// returns at once ([`Server::bind`] then [`Server::serve`]).
    ///
    /// The engine may be shared (`Arc<Engine>`) with other users of the
    /// same model, such as a Python program that also generates directly.
    pub fn start(engine: impl Into<Arc<Engine>>, config: ServerConfig) -> Result<Server, Error> {
        let mut server = Server::bind(config)?;
        if let Err(e) = server.serve(engine) {
            server.shutdown();
            let _ = server.wait();
            return Err(e);
        }
        Ok(server)
    }

    /// Binds the listener and starts answering before there is a model:
    /// `/health` says `503 {"status": "loading"}` and every other route
    /// `503`, until [`Server::serve`] brings the model.
    pub fn bind(config: ServerConfig) -> Result<Server, Error> {
        if config.parallel == 0 {
            return Err(Error::Config("--parallel must be at least 1".into()));
        }
        if config.prefill_chunk == 0 {
            return Err(Error::Config(
                "the prefill chunk must be at least 1 token".into(),
            ));
        }
        if config.max_connections == 0 {
            return Err(Error::Config("--max-connections must be at least 1".into()));
        }
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(config.http_threads.max(1))
            .thread_name("bitnet-http")
            .enable_all()
            .build()
            .map_err(Error::Runtime)?;
        let addr_text = format!("{}:{}", config.host, config.port);
        let listener = runtime
            .block_on(tokio::net::TcpListener::bind(&addr_text))
            .map_err(|source| Error::Bind {
                addr: addr_text.clone(),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Bind {
            addr: addr_text,
            source,
        })?;
        let (signal, signal_rx) = watch::channel(false);
        let handle = ShutdownHandle {
            inner: Arc::new(ShutdownInner {
                requested: AtomicBool::new(false),
                signal,
                scheduler: OnceLock::new(),
                grace: config.shutdown_grace,
            }),
        };
        let (routes, routes_rx) = watch::channel(None);
        let limits = listener::Limits {
            header_timeout: config.header_timeout,
            max_connections: config.max_connections,
        };
        let hard_stop = config.shutdown_grace + Duration::from_secs(5);
        let rt_handle = runtime.handle().clone();
        let http = std::thread::Builder::new()
            .name("bitnet-http-main".into())
            .spawn(move || {
                runtime.block_on(async move {
                    let mut stop_rx = signal_rx.clone();
                    let deadline = async move {
                        let _ = stop_rx.wait_for(|v| *v).await;
                        tokio::time::sleep(hard_stop).await;
                    };
                    tokio::select! {
                        () = listener::serve(listener, routes_rx, limits, signal_rx) => Ok(()),
                        () = deadline => Ok(()),
                    }
                })
            })
            .map_err(Error::Thread)?;
        Ok(Server {
            addr,
            config,
            handle,
            runtime: rt_handle,
            http,
            routes,
            engine: None,
        })
    }

    /// Sets the model name (`/v1/models`) before [`Server::serve`].
    pub fn set_model_name(&mut self, name: &str) {
        self.config.model_name = name.to_string();
    }

    /// Serves `engine` on the bound listener: checks that every slot's KV
    /// cache fits in memory, starts the engine thread, and puts the routes
    /// in place.
    pub fn serve(&mut self, engine: impl Into<Arc<Engine>>) -> Result<(), Error> {
        let engine: Arc<Engine> = engine.into();
        let config = &self.config;
        if self.engine.is_some() {
            return Err(Error::Config("the server already serves a model".into()));
        }
        if self.handle.is_shutting_down() {
            return Err(Error::Config("the server is shutting down".into()));
        }
        // One KV cache per slot.
        engine
            .check_caches_fit(config.parallel)
            .map_err(|e| Error::Config(e.to_string()))?;
        let metrics = Arc::new(metrics::Metrics::new(config.parallel));
        let batch = bitnet_engine::batch::BatchConfig {
            parallel: config.parallel,
            queue: config.queue,
            prefill_chunk: config.prefill_chunk,
        };
        let (scheduler, engine_thread) =
            bitnet_engine::batch::spawn(Arc::clone(&engine), &batch, metrics.clone())
                .map_err(Error::Thread)?;
        let _ = self.handle.inner.scheduler.set(scheduler.clone());
        let state = routes::AppState::new(engine, scheduler, metrics, self.handle.clone(), config);
        let log = request_log::RequestLog {
            format: config.log_format,
            target: config.log_target.clone(),
        };
        let policy = Arc::new(guard::Policy {
            api_key: config.api_key.clone(),
            body_timeout: config.body_timeout,
            max_body: config.max_body_bytes,
        });
        let mut app = routes::router(state, config.max_body_bytes, log, policy);
        if let Some(cors) = guard::cors(&config.cors_origins) {
            app = app.layer(cors);
        }
        self.routes.send_replace(Some(app));
        self.engine = Some(engine_thread);
        Ok(())
    }

    /// The address the server listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }

    /// A handle that can trigger shutdown from elsewhere.
    pub fn shutdown_handle(&self) -> ShutdownHandle {
        self.handle.clone()
    }

    /// Starts a graceful shutdown (see [`ShutdownHandle::shutdown`]).
    pub fn shutdown(&self) {
        self.handle.shutdown();
    }

    /// Shuts down on SIGINT or SIGTERM (a second signal cancels running
    /// sequences at once).
    pub fn shutdown_on_signals(&self) {
        let handle = self.handle.clone();
        self.runtime.spawn(async move {
            loop {
                wait_for_signal().await;
                let first = !handle.is_shutting_down();
                if first {
                    eprintln!(
                        "shutting down: finishing running requests (signal again to cancel them)"
                    );
                }
                handle.shutdown();
                if !first {
                    break;
                }
            }
        });
    }

    /// Whether the server has stopped serving (after a shutdown, or a
    /// failure that [`Server::wait`] reports).
    pub fn is_finished(&self) -> bool {
        self.http.is_finished()
    }

    /// Waits until the server has stopped.
    pub fn wait(self) -> Result<(), Error> {
        let served = self.http.join().map_err(|_| Error::Panicked("HTTP"))?;
        // Whatever ended serving, the engine must stop too.
        self.handle.shutdown();
        if let Some(engine) = self.engine {
            engine.join().map_err(|_| Error::Panicked("engine"))?;
        }
        served
    }
}

#[cfg(unix)]
async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(not(unix))]
async fn wait_for_signal() {
    let _ = tokio::signal::ctrl_c().await;
}

#[cfg(test)]
mod tests {
    #[test]
    fn model_names() {
        assert_eq!(super::model_name(Some("builtin"), "x"), "demo-bitnet");
        assert_eq!(
            super::model_name(None, bitnet_engine::builtin::NAME),
            "demo-bitnet"
        );
        assert_eq!(
            super::model_name(Some("microsoft/bitnet-b1.58-2B-4T-gguf"), "x"),
            "microsoft/bitnet-b1.58-2B-4T-gguf"
        );
        let manifest = env!("CARGO_MANIFEST_DIR");
        assert_eq!(super::model_name(Some(manifest), "x"), "server");
    }
}
