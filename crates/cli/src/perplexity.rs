//! `bitnet perplexity`: llama-perplexity's measurement.

use std::path::PathBuf;

use anyhow::Context;
use clap::Args;

use crate::args::ModelArgs;
use crate::run::OutputFormat;

/// Arguments of `bitnet perplexity`.
#[derive(Args)]
pub struct PerplexityArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The text file to score (UTF-8).
    #[arg(short = 'f', long = "file")]
    pub file: PathBuf,
    /// Output format.
    #[arg(long = "output-format", value_enum, default_value_t = OutputFormat::Text)]
    pub output_format: OutputFormat,
}

pub fn run(args: PerplexityArgs) -> anyhow::Result<()> {
    let bytes = std::fs::read(&args.file)
        .with_context(|| format!("cannot read {}", args.file.display()))?;
    let text = String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{} is not valid UTF-8 (at byte {})",
            args.file.display(),
            e.utf8_error().valid_up_to()
        )
    })?;
    let engine = args.model.load()?;
    let n_ctx = args.model.ctx_size.unwrap_or(engine.n_ctx());
    let start = std::time::Instant::now();
    let ppl = engine
        .perplexity(&text, n_ctx)
        .context("perplexity failed")?;
    let secs = start.elapsed().as_secs_f64();
    match args.output_format {
        OutputFormat::Json => {
            let mut v = serde_json::to_value(&ppl)?;
            v["seconds"] = serde_json::json!(secs);
            v["tokens_per_second"] = serde_json::json!(ppl.n_tokens as f64 / secs.max(1e-9));
            println!("{v}");
        }
        OutputFormat::Text => {
            println!(
                "perplexity: {:.4} over {} tokens in {} windows of {} ({:.1} tok/s)",
                ppl.perplexity,
                ppl.n_tokens,
                ppl.n_chunks,
                ppl.n_ctx,
                ppl.n_tokens as f64 / secs.max(1e-9)
            );
        }
    }
    Ok(())
}
