//! `bitnet perplexity`: llama-perplexity's measurement.
//!
//! Progress goes to stderr as llama-perplexity prints it: the number of
//! windows and the time per window with an estimate of the time left, then
//! `[i]ppl,` after every window, `ppl` being the running estimate over the
//! windows done (the last one is the final result). The result itself goes
//! to stdout.

use std::io::Write;
use std::path::PathBuf;
use std::time::Instant;

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
    args.model.check_device()?;
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
    let start = Instant::now();
    let mut stderr = std::io::stderr().lock();
    let ppl = engine
        .perplexity_with(&text, n_ctx, &mut |p| {
            report(&mut stderr, &p, n_ctx, start);
            true
        })
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

/// Progress after a window, on stderr (a closed stderr stops nothing).
fn report(
    out: &mut impl Write,
    p: &bitnet_engine::PerplexityProgress,
    n_ctx: usize,
    start: Instant,
) {
    if p.windows_done == 1 {
        let per_window = start.elapsed().as_secs_f64();
        let left = per_window * (p.windows - 1) as f64 / 60.0;
        let _ = writeln!(
            out,
            "perplexity: {} windows of {n_ctx} tokens, {per_window:.2} s per window - ETA {left:.2} minutes",
            p.windows
        );
    }
    let _ = write!(out, "[{}]{:.4},", p.windows_done, p.perplexity);
    if p.windows_done == p.windows {
        let _ = writeln!(out);
    }
    let _ = out.flush();
}
