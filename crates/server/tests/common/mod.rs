//! Shared test helpers: fixture models, an in-process server on a free
//! loopback port, and a small raw HTTP/1.1 client (so the tests see exactly
//! what goes over the wire).

#![allow(dead_code)]

#[path = "../../../../test-support/fixtures.rs"]
mod fixtures;
#[allow(unused_imports)] // each test binary uses some of them
pub use fixtures::{repo_fixtures, shared_fixtures, shared_fixtures_dir};

pub mod http;

use std::net::SocketAddr;
use std::time::Duration;

use bitnet_engine::{Engine, EngineOptions, GenerationParams, ModelLocation, SamplerConfig};
use bitnet_server::{Server, ServerConfig};

/// The tiny random model with the Llama 3 tokenizer, when present.
pub fn tiny_location() -> Option<ModelLocation> {
    let dir = shared_fixtures_dir().join("tiny-bitnet");
    let present = dir.join("config.json").is_file();
    // CI always has the shared fixtures: the Llama 3 tokenizer and chat
    // template must not silently drop out of the client tests there.
    assert!(
        present || std::env::var_os("CI").is_none(),
        "{} not found; CI is set, so the tiny model must be tested",
        dir.display()
    );
    present.then_some(ModelLocation::HfDir(dir))
}

/// Options for test engines: one thread (several test servers may run at
/// once on a small machine; results do not depend on the thread count).
pub fn options(n_ctx: Option<usize>) -> EngineOptions {
    EngineOptions {
        threads: 1,
        n_ctx,
        ..EngineOptions::default()
    }
}

/// Loads a model.
pub fn load(location: &ModelLocation, n_ctx: Option<usize>) -> Engine {
    Engine::load(location, options(n_ctx)).expect("load the model")
}

/// The built-in demo model.
pub fn demo(n_ctx: Option<usize>) -> Engine {
    load(&ModelLocation::Builtin, n_ctx)
}

/// The built-in demo model on `threads` threads.
pub fn demo_threads(threads: usize) -> Engine {
    let opts = EngineOptions {
        threads,
        ..options(None)
    };
    Engine::load(&ModelLocation::Builtin, opts).expect("load the model")
}

/// Greedy parameters.
pub fn greedy(max_tokens: usize) -> GenerationParams {
    GenerationParams {
        max_tokens,
        sampler: SamplerConfig::greedy(),
        ..GenerationParams::default()
    }
}

/// What `Engine::generate` gives for a plain-text prompt.
pub fn reference_text(
    engine: &Engine,
    prompt: &str,
    params: &GenerationParams,
) -> (String, &'static str) {
    let ids = engine.tokenize(prompt).expect("tokenize");
    let g = engine
        .generate(&ids, params, false, &mut |_| true)
        .expect("generate");
    (g.text, g.stop_reason.finish_reason())
}

/// What `Engine::generate` gives for a one-message chat.
pub fn reference_chat(
    engine: &Engine,
    user: &str,
    params: &GenerationParams,
) -> (String, &'static str, usize) {
    let rendered = engine
        .render_chat(&[bitnet_engine::ChatMessage::new("user", user)], true)
        .expect("render");
    let ids = engine.tokenize_chat(&rendered).expect("tokenize");
    let g = engine
        .generate(&ids, params, false, &mut |_| true)
        .expect("generate");
    (g.text, g.stop_reason.finish_reason(), ids.len())
}

/// A server that shuts down when dropped.
pub struct TestServer {
    server: Option<Server>,
    pub addr: SocketAddr,
    pub name: String,
}

impl TestServer {
    /// Starts `engine` on a free loopback port.
    pub fn start(engine: Engine, tweak: impl FnOnce(&mut ServerConfig)) -> TestServer {
        let mut config = ServerConfig {
            port: 0,
            model_name: "test-model".into(),
            shutdown_grace: Duration::from_secs(5),
            // The tests set their own limits, and read no request log
            // unless they ask for one.
            n_predict: None,
            log_format: bitnet_server::LogFormat::Off,
            ..ServerConfig::default()
        };
        tweak(&mut config);
        let name = config.model_name.clone();
        let server = Server::start(engine, config).expect("start the server");
        let addr = server.local_addr();
        TestServer {
            server: Some(server),
            addr,
            name,
        }
    }

    /// Shuts down and waits.
    pub fn stop(mut self) {
        self.stop_inner();
    }

    /// The running server.
    pub fn server(&self) -> &Server {
        self.server.as_ref().expect("running")
    }

    fn stop_inner(&mut self) {
        if let Some(server) = self.server.take() {
            server.shutdown();
            server.wait().expect("clean stop");
        }
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if std::thread::panicking() {
            if let Some(server) = self.server.take() {
                server.shutdown();
                server.shutdown();
                let _ = server.wait();
            }
        } else {
            self.stop_inner();
        }
    }
}
