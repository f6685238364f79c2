//! Writes a GGUF of a built-in shape with random I2_S weights, for measuring
//! load time and memory without downloading a model:
//!
//! ```text
//! cargo run --release -p bitnet-engine --example random_gguf -- 2b4t /tmp/2b4t-i2_s.gguf [f16|q8_0|q6_k] [TOKENIZER_DIR]
//! ```
//!
//! The file has the official 2B-4T GGUF's layout (I2_S projections with a
//! per-tensor scale, F32 norms, an F16 tied embedding unless another head
//! type is given). Without a tokenizer `bitnet bench -m FILE` runs it; given
//! a Hugging Face directory with a `tokenizer.json` of the shape's vocabulary
//! size (the Llama 3 one of `../shared/fixtures/tiny-bitnet` for 2b4t), its
//! vocabulary is written too, so `bitnet run` and `bitnet serve` can use it.

use std::path::PathBuf;
use std::time::Instant;

use bitnet_gguf::ternary::encode_i2s;
use bitnet_gguf::{GgmlType, GgufWriter, Value};
use bitnet_kernels::DenseType;
use bitnet_model::convert::dense_ggml;
use bitnet_model::random::Shape;
use bitnet_tokenizer::Tokenizer;
use half::f16;
use rayon::prelude::*;

fn rng_stream(seed: u64) -> impl FnMut() -> u64 {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0xD1B5_4A32_D192_ED03;
    move || {
        s = s.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

fn ternary(seed: u64, rows: usize, cols: usize) -> Vec<i8> {
    let mut v = vec![0i8; rows * cols];
    v.par_chunks_mut(cols * 64).enumerate().for_each(|(i, c)| {
        let mut next = rng_stream(seed ^ (i as u64) << 20);
        for x in c.iter_mut() {
            *x = ((next() as u8 as u16 * 3) >> 8) as i8 - 1;
        }
    });
    v
}

fn unit(next: &mut impl FnMut() -> u64) -> f32 {
    (next() >> 40) as f32 / (1u64 << 23) as f32 - 1.0
}

fn dense(seed: u64, ty: DenseType, rows: usize, cols: usize) -> Vec<u8> {
    let row_bytes = ty.row_bytes(cols).expect("whole blocks");
    let mut out = vec![0u8; rows * row_bytes];
    out.par_chunks_mut(row_bytes)
        .enumerate()
        .for_each(|(r, o)| {
            let mut next = rng_stream(seed ^ (r as u64) << 24);
            let row: Vec<f32> = (0..cols).map(|_| 0.05 * unit(&mut next)).collect();
            match ty {
                DenseType::F16 => {
                    for (b, v) in o.chunks_exact_mut(2).zip(&row) {
                        b.copy_from_slice(&f16::from_f32(*v).to_le_bytes());
                    }
                }
                _ => o.copy_from_slice(
                    &bitnet_kernels::dense::quantize(ty, &row).expect("whole blocks"),
                ),
            }
        });
    out
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: random_gguf SHAPE OUT.gguf [f16|q8_0|q6_k] [TOKENIZER_DIR]");
        std::process::exit(2);
    }
    let shape = Shape::from_name(&args[1]).ok_or("unknown shape")?;
    let out = PathBuf::from(&args[2]);
    let head = match args.get(3).map(String::as_str).unwrap_or("f16") {
        "f16" => DenseType::F16,
        "q8_0" => DenseType::Q8_0,
        "q6_k" => DenseType::Q6K,
        other => return Err(format!("unknown head type {other}").into()),
    };
    let hp = shape.hparams();
    let t = Instant::now();
    let mut w = GgufWriter::new();
    let arch = hp.arch.gguf_name();
    let md = w.metadata_mut();
    md.insert("general.architecture", Value::String(arch.into()));
    md.insert(
        "general.name",
        Value::String(format!("random {}", shape.name())),
    );
    bitnet_model::convert::write_hparams(md, &hp);
    if let Some(dir) = args.get(4).map(PathBuf::from) {
        let tokenizer = Tokenizer::from_hf_dir(&dir)?;
        if tokenizer.vocab_size() != hp.n_vocab {
            return Err(format!(
                "{} has {} tokens but the {} shape has {}",
                dir.display(),
                tokenizer.vocab_size(),
                shape.name(),
                hp.n_vocab
            )
            .into());
        }
        let json = std::fs::read(dir.join("tokenizer.json"))?;
        bitnet_engine::convert::write_vocab(&tokenizer.to_gguf_vocab(&json)?, md);
    }
    let d = hp.n_embd;
    let embd_ty = if hp.tied_embeddings {
        head
    } else {
        DenseType::F16
    };
    w.add_tensor(
        "token_embd.weight",
        vec![d as u64, hp.n_vocab as u64],
        dense_ggml(embd_ty),
        dense(1, embd_ty, hp.n_vocab, d),
    )?;
    if !hp.tied_embeddings {
        w.add_tensor(
            "output.weight",
            vec![d as u64, hp.n_vocab as u64],
            dense_ggml(head),
            dense(2, head, hp.n_vocab, d),
        )?;
    }
    let norm = |n: usize| -> Vec<u8> {
        (0..n)
            .flat_map(|i| (1.0f32 + 0.001 * (i % 7) as f32).to_le_bytes())
            .collect()
    };
    w.add_tensor("output_norm.weight", vec![d as u64], GgmlType::F32, norm(d))?;
    for l in 0..hp.n_layer {
        let mats = [
            ("attn_q", hp.q_dim(), d),
            ("attn_k", hp.kv_dim(), d),
            ("attn_v", hp.kv_dim(), d),
            ("attn_output", d, hp.q_dim()),
            ("ffn_gate", hp.n_ff, d),
            ("ffn_up", hp.n_ff, d),
            ("ffn_down", d, hp.n_ff),
        ];
        for (i, (name, rows, cols)) in mats.into_iter().enumerate() {
            let v = ternary((l * 8 + i) as u64 + 100, rows, cols);
            let scale = 1.0 / (2.0 * cols as f32 / 3.0).sqrt();
            let data = encode_i2s(&v, rows, cols, scale)?;
            w.add_tensor(
                format!("blk.{l}.{name}.weight"),
                vec![cols as u64, rows as u64],
                GgmlType::I2_S,
                data,
            )?;
        }
        w.add_tensor(
            format!("blk.{l}.attn_norm.weight"),
            vec![d as u64],
            GgmlType::F32,
            norm(d),
        )?;
        w.add_tensor(
            format!("blk.{l}.ffn_norm.weight"),
            vec![d as u64],
            GgmlType::F32,
            norm(d),
        )?;
        if hp.arch.has_sub_norms() {
            w.add_tensor(
                format!("blk.{l}.attn_sub_norm.weight"),
                vec![hp.q_dim() as u64],
                GgmlType::F32,
                norm(hp.q_dim()),
            )?;
            w.add_tensor(
                format!("blk.{l}.ffn_sub_norm.weight"),
                vec![hp.n_ff as u64],
                GgmlType::F32,
                norm(hp.n_ff),
            )?;
        }
    }
    w.write_file(&out)?;
    let size = std::fs::metadata(&out)?.len();
    eprintln!(
        "wrote {} ({:.2} GiB) in {:.1} s",
        out.display(),
        size as f64 / (1u64 << 30) as f64,
        t.elapsed().as_secs_f64()
    );
    Ok(())
}
