//! `bitnet convert`: write a checkpoint as GGUF.

use std::path::PathBuf;

use anyhow::Context;
use bitnet_engine::{ModelLocation, resolve};
use bitnet_hub::Hub;
use bitnet_kernels::DenseType;
use bitnet_model::convert::{ConvertOptions, TernaryFormat};
use clap::Args;

/// Arguments of `bitnet convert`.
#[derive(Args)]
pub struct ConvertArgs {
    /// The checkpoint: a Hugging Face model directory, a GGUF file, a Hub
    /// repo id, or `builtin`.
    pub input: String,
    /// The GGUF file to write.
    #[arg(short = 'o', long = "outfile")]
    pub outfile: PathBuf,
    /// Ternary format: i2_s (bitnet.cpp), tq1_0 or tq2_0 (llama.cpp).
    #[arg(long = "type", default_value = "i2_s", value_parser = parse_ternary)]
    pub ternary: TernaryFormat,
    /// Format of the token embedding (and of the head when tied): f16, q8_0, q6_k, f32.
    #[arg(long = "embd-type", default_value = "f16", value_parser = parse_dense)]
    pub embd_type: DenseType,
    /// Format of a separate output head: f16, q8_0, q6_k, f32.
    #[arg(long = "head-type", default_value = "f16", value_parser = parse_dense)]
    pub head_type: DenseType,
    /// `general.name` (default: the input's name).
    #[arg(long)]
    pub name: Option<String>,
}

fn parse_ternary(s: &str) -> Result<TernaryFormat, String> {
    TernaryFormat::from_name(s)
        .ok_or_else(|| format!("unknown ternary type `{s}` (expected i2_s, tq1_0 or tq2_0)"))
}

/// Parses a dense type name.
pub fn parse_dense(s: &str) -> Result<DenseType, String> {
    match s.to_ascii_lowercase().as_str() {
        "f32" => Ok(DenseType::F32),
        "f16" => Ok(DenseType::F16),
        "bf16" => Ok(DenseType::BF16),
        "q8_0" => Ok(DenseType::Q8_0),
        "q6_k" => Ok(DenseType::Q6K),
        _ => Err(format!(
            "unknown type `{s}` (expected f16, q8_0, q6_k, bf16 or f32)"
        )),
    }
}

pub fn run(args: ConvertArgs) -> anyhow::Result<()> {
    let hub = Hub::from_env();
    let resolved = resolve::resolve(Some(&args.input), &hub)
        .with_context(|| format!("cannot find `{}`", args.input))?;
    let name = args
        .name
        .clone()
        .unwrap_or_else(|| match &resolved.location {
            ModelLocation::Gguf(p) | ModelLocation::HfDir(p) => p
                .file_stem()
                .map(|s| s.to_string_lossy().into_owned())
                .unwrap_or_else(|| "model".into()),
            ModelLocation::Builtin => "demo-bitnet".into(),
        });
    let opts = ConvertOptions {
        ternary: args.ternary,
        embedding: args.embd_type,
        head: args.head_type,
        name,
    };
    let start = std::time::Instant::now();
    let writer = bitnet_engine::convert::convert(&resolved.location, &opts)
        .with_context(|| format!("cannot convert `{}`", args.input))?;
    writer
        .write_file(&args.outfile)
        .with_context(|| format!("cannot write {}", args.outfile.display()))?;
    let size = std::fs::metadata(&args.outfile)
        .map(|m| m.len())
        .unwrap_or(0);
    eprintln!(
        "wrote {} ({:.1} MB, {} tensors) in {:.1} s",
        args.outfile.display(),
        size as f64 / 1e6,
        writer.tensor_count(),
        start.elapsed().as_secs_f64()
    );
    Ok(())
}
