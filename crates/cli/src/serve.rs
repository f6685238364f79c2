//! `bitnet serve`: the OpenAI-compatible HTTP server (crate
//! `bitnet-server`).

use std::time::Duration;

use anyhow::Context;
use bitnet_server::{Server, ServerConfig};
use clap::Args;

use crate::args::ModelArgs;

/// Arguments of `bitnet serve`.
#[derive(Args, Debug)]
pub struct ServeArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// Address to listen on (loopback by default; 0.0.0.0 exposes the server
    /// to the network).
    #[arg(long, default_value = "127.0.0.1")]
    pub host: String,
    /// Port to listen on (0 = any free port).
    #[arg(long, default_value_t = 8080)]
    pub port: u16,
    /// Sequences decoded together; each gets a KV cache of the full context.
    #[arg(long, default_value_t = 4)]
    pub parallel: usize,
    /// Requests that may wait for a free slot; beyond that the server
    /// answers 503 with Retry-After.
    #[arg(long, default_value_t = 64)]
    pub queue: usize,
    /// The model name /v1/models shows and responses carry when a request
    /// names none (default: derived from -m). Requests may use any model
    /// name: the loaded model answers to all of them, as with llama-server.
    #[arg(long)]
    pub alias: Option<String>,
    /// Largest accepted request body, in bytes.
    #[arg(long, default_value_t = 1 << 20)]
    pub max_body: usize,
    /// Prompt tokens per step while other requests are decoding (smaller
    /// keeps their token latency lower while a long prompt is read).
    #[arg(long, default_value_t = 256)]
    pub prefill_chunk: usize,
    /// Seconds running requests may go on after SIGINT/SIGTERM before they
    /// are cancelled.
    #[arg(long, default_value_t = 30)]
    pub shutdown_timeout: u64,
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    let engine = args.model.load()?;
    let model_name = args
        .alias
        .clone()
        .unwrap_or_else(|| bitnet_server::model_name(args.model.model.as_deref(), engine.name()));
    let n_ctx = engine.n_ctx();
    let kv_bytes =
        bitnet_model::KvCache::bytes_for(engine.model().hparams(), n_ctx, engine.options().kv_type)
            * args.parallel;
    let config = ServerConfig {
        host: args.host.clone(),
        port: args.port,
        model_name: model_name.clone(),
        parallel: args.parallel,
        queue: args.queue,
        max_body_bytes: args.max_body,
        prefill_chunk: args.prefill_chunk,
        shutdown_grace: Duration::from_secs(args.shutdown_timeout),
        ..ServerConfig::default()
    };
    let server = Server::start(engine, config).context("cannot start the server")?;
    server.shutdown_on_signals();
    eprintln!(
        "serving `{model_name}` on http://{} ({} slots x {n_ctx} tokens of context, {:.0} MiB of KV cache; OpenAI API under /v1)",
        server.local_addr(),
        args.parallel,
        kv_bytes as f64 / (1u64 << 20) as f64,
    );
    server.wait().context("the server stopped with an error")?;
    eprintln!("server stopped");
    Ok(())
}
