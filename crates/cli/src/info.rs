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

/// The tensor table of a safetensors file, read from its header alone (the
/// file may be gigabytes): (name, dtype, shape), sorted by name.
fn safetensors_header(path: &std::path::Path) -> anyhow::Result<Vec<(String, String, Vec<u64>)>> {
    use std::io::Read;
    let bad = |why: &str| anyhow::anyhow!("{}: invalid safetensors header: {why}", path.display());
    let mut f =
        std::fs::File::open(path).with_context(|| format!("cannot open {}", path.display()))?;
    let mut len = [0u8; 8];
    f.read_exact(&mut len)
        .map_err(|_| bad("shorter than 8 bytes"))?;
    let len = u64::from_le_bytes(len);
    let size = f.metadata().map(|m| m.len()).unwrap_or(0);
    if len > 100 << 20 || len + 8 > size {
        return Err(bad(&format!(
            "header length {len} does not fit the {size}-byte file"
        )));
    }
    let mut header = vec![0u8; len as usize];
    f.read_exact(&mut header).map_err(|_| bad("truncated"))?;
    let json: serde_json::Value =
        serde_json::from_slice(&header).map_err(|e| bad(&e.to_string()))?;
    let obj = json.as_object().ok_or_else(|| bad("not a JSON object"))?;
    let mut out: Vec<(String, String, Vec<u64>)> = obj
        .iter()
        .filter(|(k, _)| k.as_str() != "__metadata__")
        .map(|(k, v)| {
            let dtype = v["dtype"].as_str().unwrap_or("?").to_string();
            let shape = v["shape"]
                .as_array()
                .map(|a| a.iter().filter_map(|d| d.as_u64()).collect())
                .unwrap_or_default();
            (k.clone(), dtype, shape)
        })
        .collect();
    out.sort();
    Ok(out)
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
        println!("\n{}:", shard.display());
        for (name, dtype, shape) in safetensors_header(&shard)? {
            println!("  {name:<56} {dtype:<5} {shape:?}");
        }
    }
    Ok(())
}
