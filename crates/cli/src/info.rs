//! `bitnet info`: what is in a model file.

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::Context;
use bitnet_engine::{ModelLocation, resolve};
use bitnet_gguf::{GgufFile, Value};
use bitnet_hub::Hub;
use bitnet_model::{FfnAct, RopeStyle};
use clap::Args;

/// Arguments of `bitnet info`.
#[derive(Args)]
pub struct InfoArgs {
    /// A GGUF file, a Hugging Face model directory, a Hub repo id or
    /// `builtin`, as for `-m`.
    pub model: String,
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

/// The hyper-parameters on one line, the architecture as the file names
/// it (`arch`: GGUF `general.architecture`, or Hugging Face `model_type`).
fn print_hparams(arch: &str, hp: &bitnet_model::HParams) {
    let act = match hp.ffn_act {
        FfnAct::Relu2 => "relu²",
        FfnAct::Silu => "silu",
        FfnAct::GeluTanh => "gelu (tanh)",
    };
    let rope = match hp.rope_style {
        RopeStyle::Neox => "neox",
        RopeStyle::Interleaved => "norm",
    };
    println!(
        "architecture: {arch} | hidden {} | layers {} | heads {} (kv {}) x {} | ffn {} ({act}) | vocab {} | ctx {} | rope θ {} ({rope}) | eps {} | head {}",
        hp.n_embd,
        hp.n_layer,
        hp.n_head,
        hp.n_head_kv,
        hp.head_dim,
        hp.n_ff,
        hp.n_vocab,
        hp.n_ctx_train,
        hp.rope_theta,
        hp.rms_eps,
        if hp.tied_embeddings {
            "tied to the embedding"
        } else {
            "separate"
        }
    );
}

pub fn run(args: InfoArgs) -> anyhow::Result<()> {
    let resolved = resolve::resolve(Some(&args.model), &Hub::from_env())
        .with_context(|| format!("cannot find model `{}`", args.model))?;
    match resolved.location {
        ModelLocation::Gguf(path) => gguf_info(&path, args.full),
        ModelLocation::HfDir(dir) => {
            let config_path = dir.join("config.json");
            let config = std::fs::read(&config_path)
                .with_context(|| format!("cannot read {}", config_path.display()))?;
            let mut shards: Vec<PathBuf> = std::fs::read_dir(&dir)
                .with_context(|| format!("cannot list {}", dir.display()))?
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "safetensors"))
                .collect();
            shards.sort();
            println!("{}: Hugging Face checkpoint", dir.display());
            hf_info(&config_path.display().to_string(), &config)?;
            for shard in shards {
                let mut f = std::fs::File::open(&shard)
                    .with_context(|| format!("cannot open {}", shard.display()))?;
                let size = f.metadata().map(|m| m.len()).unwrap_or(0);
                print_tensors(&shard.display().to_string(), &mut f, size)?;
            }
            Ok(())
        }
        ModelLocation::Builtin => {
            let ckpt = bitnet_engine::builtin::checkpoint();
            println!(
                "{}: Hugging Face checkpoint built into the binary",
                bitnet_engine::builtin::NAME
            );
            hf_info("config.json", &ckpt.config_json)?;
            for (name, bytes) in &ckpt.shards {
                let bytes: &[u8] = bytes.as_ref().as_ref();
                print_tensors(name, &mut std::io::Cursor::new(bytes), bytes.len() as u64)?;
            }
            Ok(())
        }
    }
}

fn gguf_info(path: &Path, full: bool) -> anyhow::Result<()> {
    let file = GgufFile::open(path)?;
    println!(
        "{}: GGUF v{}, alignment {}, {} metadata keys, {} tensors, data at byte {}",
        path.display(),
        file.version(),
        file.alignment(),
        file.metadata().len(),
        file.tensors().len(),
        file.data_offset()
    );
    let arch = match file.metadata().get("general.architecture") {
        Some(Value::String(s)) => s.clone(),
        _ => "(no general.architecture)".into(),
    };
    match bitnet_model::gguf_hparams(&file) {
        Ok(hp) => print_hparams(&arch, &hp),
        Err(e) => println!("(not a model we can run: {e})"),
    }
    println!("\nmetadata:");
    for (k, v) in file.metadata().iter() {
        println!("  {k} = {}", show(v, full));
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
/// file may be gigabytes): (name, dtype, shape), sorted by name. `size` is
/// the whole file's.
fn safetensors_header(
    label: &str,
    r: &mut dyn Read,
    size: u64,
) -> anyhow::Result<Vec<(String, String, Vec<u64>)>> {
    let bad = |why: &str| anyhow::anyhow!("{label}: invalid safetensors header: {why}");
    let mut len = [0u8; 8];
    r.read_exact(&mut len)
        .map_err(|_| bad("shorter than 8 bytes"))?;
    let len = u64::from_le_bytes(len);
    if len > 100 << 20 || len + 8 > size {
        return Err(bad(&format!(
            "header length {len} does not fit the {size}-byte file"
        )));
    }
    let mut header = vec![0u8; len as usize];
    r.read_exact(&mut header).map_err(|_| bad("truncated"))?;
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

fn print_tensors(label: &str, r: &mut dyn Read, size: u64) -> anyhow::Result<()> {
    println!("\n{label}:");
    for (name, dtype, shape) in safetensors_header(label, r, size)? {
        println!("  {name:<56} {dtype:<5} {shape:?}");
    }
    Ok(())
}

/// The hyper-parameters and `config.json` of a Hugging Face checkpoint.
fn hf_info(label: &str, config: &[u8]) -> anyhow::Result<()> {
    let json: serde_json::Value =
        serde_json::from_slice(config).with_context(|| format!("{label} is not JSON"))?;
    let arch = json["model_type"].as_str().unwrap_or("(no model_type)");
    match bitnet_model::hf_hparams(config, label) {
        Ok(hp) => print_hparams(arch, &hp),
        Err(e) => println!("(not a model we can run: {e})"),
    }
    println!("\nconfig.json:");
    if let Some(obj) = json.as_object() {
        for (k, v) in obj {
            println!("  {k} = {v}");
        }
    }
    Ok(())
}
