//! `bitnet embed`: text embeddings from a BitNet embedding model, as JSON.
//!
//! Texts come from `-p` (repeatable) and `-f FILE` (one text per line;
//! blank lines are skipped), in that order. The output is one JSON object:
//! `{"model", "dimensions", "data": [{"index", "text", "n_tokens",
//! "embedding"}], "seconds"}`, each embedding L2-normalised (as
//! `llama-embedding --embd-normalize 2` prints it).
//!
//! `--bench` measures instead: tokens per second embedding `--bench-texts`
//! texts of `--bench-tokens` random tokens, `-r` times, with the `-m` model
//! or a random model of a published shape (`--bench-shape qwen3-0.6b` for
//! bitnet-embedding-0.6b, `gemma3-270m` for -270m), as JSON.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::args::ModelArgs;

/// Arguments of `bitnet embed`.
#[derive(Args)]
pub struct EmbedArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// A text to embed (repeat for several).
    #[arg(short = 'p', long = "prompt")]
    pub prompts: Vec<String>,
    /// A UTF-8 file with one text per line.
    #[arg(short = 'f', long = "file")]
    pub file: Option<PathBuf>,
    /// Measure speed instead of embedding texts.
    #[arg(long = "bench")]
    pub bench: bool,
    /// Benchmark a random model of this shape (qwen3-0.6b, gemma3-270m)
    /// instead of the -m model.
    #[arg(long = "bench-shape", requires = "bench")]
    pub bench_shape: Option<String>,
    /// Benchmark: tokens per text.
    #[arg(long = "bench-tokens", default_value_t = 512)]
    pub bench_tokens: usize,
    /// Benchmark: texts per call.
    #[arg(long = "bench-texts", default_value_t = 4)]
    pub bench_texts: usize,
    /// Benchmark: repetitions.
    #[arg(short = 'r', long = "repetitions", default_value_t = 3)]
    pub repetitions: usize,
}

fn bench(args: &EmbedArgs) -> anyhow::Result<()> {
    let run = |model: &bitnet_model::Model, pool: &bitnet_threads::ThreadPool| {
        bitnet_engine::embed::bench_embedding(
            model,
            pool,
            args.bench_texts,
            args.bench_tokens,
            args.repetitions,
        )
        .context("benchmark failed")
    };
    let (name, result) = match &args.bench_shape {
        Some(shape) => {
            let hp = match shape.as_str() {
                "qwen3-0.6b" | "0.6b" => bitnet_model::HParams::bitnet_embedding_0_6b(),
                "gemma3-270m" | "270m" => bitnet_model::HParams::bitnet_embedding_270m(),
                other => {
                    anyhow::bail!("unknown embedding shape `{other}` (qwen3-0.6b, gemma3-270m)")
                }
            };
            let opts = bitnet_model::random::RandomOptions {
                kernels: bitnet_kernels::Kernels::from_env()?,
                ..Default::default()
            };
            let model =
                bitnet_model::Model::random(&hp, &opts).context("cannot build the model")?;
            let pool = bitnet_threads::ThreadPool::try_new(args.model.threads)
                .map_err(|e| anyhow::anyhow!("cannot start threads: {e}"))?;
            (format!("random {shape}"), run(&model, &pool)?)
        }
        None => {
            let engine = args.model.load()?;
            let result = run(engine.model(), engine.pool())?;
            (engine.name().to_string(), result)
        }
    };
    let mut v = serde_json::to_value(&result)?;
    v["model"] = serde_json::json!(name);
    v["peak_rss_bytes"] = serde_json::json!(bitnet_engine::memory::peak_rss());
    println!("{v}");
    Ok(())
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
    if args.bench {
        return bench(&args);
    }
    let mut texts = args.prompts.clone();
    if let Some(path) = &args.file {
        let bytes =
            std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        let content = String::from_utf8(bytes).map_err(|e| {
            anyhow::anyhow!(
                "{} is not valid UTF-8 (at byte {})",
                path.display(),
                e.utf8_error().valid_up_to()
            )
        })?;
        texts.extend(
            content
                .lines()
                .filter(|l| !l.trim().is_empty())
                .map(str::to_string),
        );
    }
    if texts.is_empty() {
        anyhow::bail!("nothing to embed: give -p TEXT or -f FILE");
    }
    let engine = args.model.load()?;
    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
    let n_tokens = refs
        .iter()
        .map(|t| engine.embedding_tokens(t).map(|ids| ids.len()))
        .collect::<Result<Vec<_>, _>>()
        .context("cannot embed")?;
    let start = std::time::Instant::now();
    let vectors = engine.embed(&refs).context("cannot embed")?;
    let secs = start.elapsed().as_secs_f64();
    let data: Vec<serde_json::Value> = texts
        .iter()
        .zip(&vectors)
        .zip(&n_tokens)
        .enumerate()
        .map(|(index, ((text, v), n))| {
            serde_json::json!({"index": index, "text": text, "n_tokens": n, "embedding": v})
        })
        .collect();
    let out = serde_json::json!({
        "model": engine.name(),
        "dimensions": vectors.first().map_or(0, Vec::len),
        "data": data,
        "seconds": secs,
    });
    println!("{out}");
    Ok(())
}
