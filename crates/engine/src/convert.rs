//! `bitnet convert`: any loadable checkpoint to a GGUF file that bitnet.cpp
//! and llama.cpp read, with the tokenizer written as `tokenizer.ggml.*`
//! metadata.

use std::sync::Arc;

use bitnet_gguf::{Array, GgufFile, GgufWriter, Metadata, Value, ValueType};
use bitnet_model::HfCheckpoint;
use bitnet_model::convert::{self, ConvertOptions};
use bitnet_tokenizer::{GgufVocab, Tokenizer};

use crate::error::{Error, Result};
use crate::resolve::ModelLocation;

/// Converts the model at `location`.
pub fn convert(location: &ModelLocation, opts: &ConvertOptions) -> Result<GgufWriter> {
    let converted = match location {
        ModelLocation::Gguf(path) => {
            let file = Arc::new(GgufFile::open(path)?);
            let mut c = convert::from_gguf(Arc::clone(&file), opts)?;
            for (k, v) in file.metadata().iter() {
                if k.starts_with("tokenizer.") {
                    c.metadata_mut().insert(k, v.clone());
                }
            }
            c
        }
        ModelLocation::HfDir(dir) => {
            let json_path = dir.join("tokenizer.json");
            let json = std::fs::read(&json_path).map_err(|e| Error::ModelSpec {
                spec: json_path.display().to_string(),
                reason: e.to_string(),
            })?;
            let tokenizer = Tokenizer::from_hf_dir(dir)?;
            let vocab = tokenizer.to_gguf_vocab(&json)?;
            let mut c = convert::from_hf(HfCheckpoint::open_dir(dir)?, opts)?;
            write_vocab(&vocab, c.metadata_mut());
            c
        }
        ModelLocation::Builtin => {
            let tokenizer = crate::builtin::tokenizer()?;
            let vocab = tokenizer.to_gguf_vocab(crate::builtin::TOKENIZER)?;
            let mut c = convert::from_hf(crate::builtin::checkpoint(), opts)?;
            write_vocab(&vocab, c.metadata_mut());
            c
        }
    };
    Ok(converted.into_writer())
}

fn strings(v: &[String]) -> Value {
    Value::Array(Array {
        elem_type: ValueType::String,
        values: v.iter().map(|s| Value::String(s.clone())).collect(),
    })
}

/// Writes a tokenizer description as GGUF `tokenizer.ggml.*` keys.
pub fn write_vocab(v: &GgufVocab, md: &mut Metadata) {
    md.insert("tokenizer.ggml.model", Value::String(v.model.clone()));
    if let Some(pre) = &v.pre {
        md.insert("tokenizer.ggml.pre", Value::String(pre.clone()));
    }
    md.insert("tokenizer.ggml.tokens", strings(&v.tokens));
    if let Some(types) = &v.token_types {
        md.insert(
            "tokenizer.ggml.token_type",
            Value::Array(Array {
                elem_type: ValueType::I32,
                values: types.iter().map(|t| Value::I32(*t)).collect(),
            }),
        );
    }
    if let Some(merges) = &v.merges {
        md.insert("tokenizer.ggml.merges", strings(merges));
    }
    if let Some(scores) = &v.scores {
        md.insert(
            "tokenizer.ggml.scores",
            Value::Array(Array {
                elem_type: ValueType::F32,
                values: scores.iter().map(|s| Value::F32(*s)).collect(),
            }),
        );
    }
    for (key, id) in [
        ("tokenizer.ggml.bos_token_id", v.bos_id),
        ("tokenizer.ggml.eos_token_id", v.eos_id),
        ("tokenizer.ggml.eot_token_id", v.eot_id),
        ("tokenizer.ggml.unknown_token_id", v.unk_id),
        ("tokenizer.ggml.padding_token_id", v.pad_id),
    ] {
        if let Some(id) = id {
            md.insert(key, Value::U32(id));
        }
    }
    if let Some(add_bos) = v.add_bos {
        md.insert("tokenizer.ggml.add_bos_token", Value::Bool(add_bos));
        md.insert("tokenizer.ggml.add_eos_token", Value::Bool(false));
    }
    if let Some(tpl) = &v.chat_template {
        md.insert("tokenizer.chat_template", Value::String(tpl.clone()));
    }
}
