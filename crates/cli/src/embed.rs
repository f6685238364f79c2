//! `bitnet embed`: text embeddings from a BitNet embedding model, as JSON.
//!
//! Texts come from `-p` (repeatable) and `-f FILE` (one text per line;
//! blank lines are skipped), in that order. The output is one JSON object:
//! `{"model", "dimensions", "data": [{"index", "text", "n_tokens",
//! "embedding"}], "seconds"}`, each embedding L2-normalised (as
//! `llama-embedding --embd-normalize 2` prints it).

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
}

pub fn run(args: EmbedArgs) -> anyhow::Result<()> {
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
