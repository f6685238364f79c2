//! `bitnet serve`: the OpenAI-compatible HTTP server (crate
//! `bitnet-server`).

use std::time::Duration;

use anyhow::Context;
use bitnet_server::{LogFormat, Server, ServerConfig};
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
    /// The most tokens a request may generate: the limit of requests
    /// without max_tokens, and a cap on those that ask for more (as
    /// llama-server's -n). -1: until the context is full.
    #[arg(short = 'n', long = "n-predict", default_value_t = bitnet_server::DEFAULT_N_PREDICT as i64,
          allow_negative_numbers = true, value_parser = parse_n_predict)]
    pub n_predict: i64,
    /// The request log on stderr, one line per request: text, json (one
    /// object per line, for log shippers) or off.
    #[arg(long = "log-format", value_enum, default_value_t = LogFormatArg::Text)]
    pub log_format: LogFormatArg,
    /// Require this key on every route but /health (`Authorization: Bearer
    /// KEY`, as OpenAI clients send their api_key); 401 otherwise.
    #[arg(long = "api-key", conflicts_with = "api_key_file")]
    pub api_key: Option<String>,
    /// Read the API key from this file (keeps it out of the process list).
    #[arg(long = "api-key-file")]
    pub api_key_file: Option<std::path::PathBuf>,
    /// Let web pages from this origin call the API (CORS), e.g.
    /// https://app.example.com; repeat for several, `*` for any. Without
    /// it no CORS header is sent.
    #[arg(long = "cors-origin")]
    pub cors_origin: Vec<String>,
    /// Seconds a request's headers may take to arrive (and an idle
    /// keep-alive connection may stay open).
    #[arg(long = "header-timeout", default_value_t = 10)]
    pub header_timeout: u64,
    /// Seconds a request's body may take to arrive (408 beyond).
    #[arg(long = "body-timeout", default_value_t = 30)]
    pub body_timeout: u64,
    /// Connections open at once; more are answered 503 and closed.
    #[arg(long = "max-connections", default_value_t = 512)]
    pub max_connections: usize,
}

/// `--log-format`.
#[derive(Clone, Copy, Debug, clap::ValueEnum)]
pub enum LogFormatArg {
    Text,
    Json,
    Off,
}

fn parse_n_predict(s: &str) -> Result<i64, String> {
    match s.parse::<i64>() {
        Ok(n) if n == -1 || n >= 1 => Ok(n),
        _ => Err(format!(
            "`{s}` is not a token count: expected a positive integer, or -1 for no limit"
        )),
    }
}

/// The API key from --api-key or --api-key-file.
fn api_key(args: &ServeArgs) -> anyhow::Result<Option<String>> {
    let key = match (&args.api_key, &args.api_key_file) {
        (Some(k), _) => k.trim().to_string(),
        (None, Some(path)) => std::fs::read_to_string(path)
            .with_context(|| format!("cannot read the API key file {}", path.display()))?
            .trim()
            .to_string(),
        (None, None) => return Ok(None),
    };
    anyhow::ensure!(!key.is_empty(), "the API key is empty");
    Ok(Some(key))
}

pub fn run(args: ServeArgs) -> anyhow::Result<()> {
    args.model.check_device()?;
    let config = ServerConfig {
        host: args.host.clone(),
        port: args.port,
        model_name: args.alias.clone().unwrap_or_default(),
        parallel: args.parallel,
        queue: args.queue,
        max_body_bytes: args.max_body,
        prefill_chunk: args.prefill_chunk,
        shutdown_grace: Duration::from_secs(args.shutdown_timeout),
        n_predict: usize::try_from(args.n_predict).ok(),
        log_format: match args.log_format {
            LogFormatArg::Text => LogFormat::Text,
            LogFormatArg::Json => LogFormat::Json,
            LogFormatArg::Off => LogFormat::Off,
        },
        api_key: api_key(&args)?,
        cors_origins: args.cors_origin.clone(),
        header_timeout: Duration::from_secs(args.header_timeout.max(1)),
        body_timeout: Duration::from_secs(args.body_timeout.max(1)),
        max_connections: args.max_connections,
        ..ServerConfig::default()
    };
    // Listen first: while the model loads, /health answers 503 (a
    // Kubernetes startup probe waits for it) and signals stop the server.
    let mut server = Server::bind(config).context("cannot start the server")?;
    server.shutdown_on_signals();
    eprintln!(
        "listening on {}; loading the model (/health answers 503 until it is ready)",
        server.local_addr()
    );
    let engine = match args.model.load() {
        Ok(engine) => engine,
        Err(e) => {
            server.shutdown();
            let _ = server.wait();
            return Err(e);
        }
    };
    let model_name = args
        .alias
        .clone()
        .unwrap_or_else(|| bitnet_server::model_name(args.model.model.as_deref(), engine.name()));
    server.set_model_name(&model_name);
    let n_ctx = engine.n_ctx();
    let kv_bytes =
        bitnet_model::KvCache::bytes_for(engine.model().hparams(), n_ctx, engine.options().kv_type)
            * args.parallel;
    if let Err(e) = server.serve(engine) {
        server.shutdown();
        let _ = server.wait();
        return Err(e).context("cannot start the server");
    }
    let cap = match args.n_predict {
        -1 => "no limit on generated tokens".to_string(),
        n => format!("at most {n} generated tokens a request"),
    };
    eprintln!(
        "serving `{model_name}` on http://{} ({} slots x {n_ctx} tokens of context, {:.0} MiB of KV cache, {cap}; OpenAI API under /v1)",
        server.local_addr(),
        args.parallel,
        kv_bytes as f64 / (1u64 << 20) as f64,
    );
    server.wait().context("the server stopped with an error")?;
    eprintln!("server stopped");
    Ok(())
}
