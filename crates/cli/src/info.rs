//! `bitnet info`: what is in a model file.

use std::path::PathBuf;

use anyhow::Context;
use bitnet_gguf::{GgufFile, Value};
use clap::Args;

/// Arguments of `bitnet info`.
#[derive(Args)]
pub struct InfoArgs {
    /// A GGUF file or a Hugging Face model directory.
    pub model: PathBuf,
    /// Print every element of long arrays (default: the first few).
    #[arg(long)]
    pub full: bool,
}

fn show(v: &Value, full: bool) -> String {
    match v {
        Value::String(s) => format!("{s:?}"),
        Value::Array(a) => {
            let n = a.values.len();
            let shown = if full { n } else { n.min(8) };
            let items: Vec<String> = a.values[..shown].iter().map(|x| show(x, full)).collect();
            let more = if shown < n {
                format!(", ... ({n} {} in all)", a.elem_type.name())
            } else {
                String::new()
            };
            format!("[{}{more}]", items.join(", "))
        }
        other => other.to_string(),
    }
}

fn print_hparams(hp: &bitnet_model::HParams) {
    println!(
        "architecture: {:?} | hidden {} | layers {} | heads {} (kv {}) x {} | ffn {} ({:?}) | vocab {} | ctx {} | rope θ {} ({:?}) | eps {} | head {}",
        hp.arch,
        hp.n_embd,
        hp.n_layer,
        hp.n_head,
        hp.n_head_kv,
        hp.head_dim,
        hp.n_ff,
        hp.ffn_act,
        hp.n_vocab,
        hp.n_ctx_train,
        hp.rope_theta,
        hp.rope_style,
        hp.rms_eps,
        if hp.tied_embeddings {
            "tied to the embedding"
        } else {
            "separate"
        }
    );
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    if args.model.is_dir() {
        return hf_info(&args);
    }
    let file = GgufFile::open(&args.model)?;
    println!(
        "{}: GGUF v{}, alignment {}, {} metadata keys, {} tensors, data at byte {}",
        args.model.display(),
        file.version(),
        file.alignment(),
        file.metadata().len(),
        file.tensors().len(),
        file.data_offset()
    );
    match bitnet_model::gguf_hparams(&file) {
        Ok(hp) => print_hparams(&hp),
        Err(e) => println!("(not a model we can run: {e})"),
    }
    println!("\nmetadata:");
    for (k, v) in file.metadata().iter() {
        println!("  {k} = {}", show(v, args.full));
    }
    println!("\ntensors:");
    println!(
        "  {:<34} {:<8} {:<18} {:>12} {:>12}",
        "name", "type", "shape (ne)", "bytes", "offset"
    );
    let mut total = 0u64;
    for t in file.tensors() {
        let shape: Vec<String> = t.ne.iter().map(|d| d.to_string()).collect();
        let bytes = t.nbytes.map_or("?".to_string(), |b| b.to_string());
        total += t.nbytes.unwrap_or(0);
        println!(
            "  {:<34} {:<8} {:<18} {:>12} {:>12}",
            t.name,
            t.ty.name(),
            shape.join(" x "),
            bytes,
            t.offset
        );
    }
    println!("  total tensor bytes: {total}");
    Ok(())
}

fn hf_info(args: &InfoArgs) -> anyhow::Result<()> {
    let dir = &args.model;
    let config_path = dir.join("config.json");
    let config = std::fs::read(&config_path)
        .with_context(|| format!("cannot read {}", config_path.display()))?;
    println!("{}: Hugging Face checkpoint", dir.display());
    match bitnet_model::hf_hparams(&config, &config_path.display().to_string()) {
        Ok(hp) => print_hparams(&hp),
        Err(e) => println!("(not a model we can run: {e})"),
    }
    let json: serde_json::Value = serde_json::from_slice(&config)
        .with_context(|| format!("{} is not JSON", config_path.display()))?;
    println!("\nconfig.json:");
    if let Some(obj) = json.as_object() {
        for (k, v) in obj {
            println!("  {k} = {v}");
        }
    }
    let mut shards: Vec<PathBuf> = std::fs::read_dir(dir)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
        .collect();
    shards.sort();
    for shard in shards {
        let bytes =
            std::fs::read(&shard).with_context(|| format!("cannot read {}", shard.display()))?;
        let st = safetensors::SafeTensors::deserialize(&bytes)
            .map_err(|e| anyhow::anyhow!("{}: invalid safetensors: {e}", shard.display()))?;
        println!("\n{}:", shard.display());
        let mut names = st.names();
        names.sort();
        for name in names {
            let t = st.tensor(name)?;
            println!(
                "  {:<56} {:<5} {:?}",
                name,
                format!("{:?}", t.dtype()),
                t.shape()
            );
        }
    }
    Ok(())
}
