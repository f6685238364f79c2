//! Describing a Hugging Face byte-level BPE tokenizer as GGUF
//! `tokenizer.ggml.*` metadata (for `bitnet convert`).

use serde_json::Value;

use crate::error::{Error, Result};
use crate::{GgufVocab, Inner, Tokenizer};

/// The Llama 3 split regex, as it appears in `tokenizer.json`.
const LLAMA3_REGEX_START: &str = "(?i:'s|'t|'re|'ve|'m|'ll|'d)";

impl Tokenizer {
    /// The GGUF description of this tokenizer, given the `tokenizer.json` it
    /// was loaded from (for the merges and the pre-tokenizer). Only
    /// byte-level BPE vocabularies (`gpt2` in GGUF) are supported.
    pub fn to_gguf_vocab(&self, tokenizer_json: &[u8]) -> Result<GgufVocab> {
        let file = "tokenizer.json";
        let json: Value = serde_json::from_slice(tokenizer_json).map_err(|source| Error::Json {
            file: file.into(),
            source,
        })?;
        let invalid = |field: &str, message: String| Error::InvalidField {
            source_name: file.into(),
            field: field.into(),
            message,
        };
        let model = &json["model"];
        if model["type"].as_str() != Some("BPE") {
            return Err(Error::Unsupported {
                what: "tokenizer model for GGUF export",
                value: model["type"].as_str().unwrap_or("(missing)").to_string(),
            });
        }
        let merges = model["merges"]
            .as_array()
            .ok_or_else(|| invalid("model.merges", "missing or not an array".into()))?
            .iter()
            .map(|m| match m {
                Value::String(s) => Ok(s.clone()),
                Value::Array(pair) if pair.len() == 2 => match (pair[0].as_str(), pair[1].as_str())
                {
                    (Some(a), Some(b)) => Ok(format!("{a} {b}")),
                    _ => Err(invalid("model.merges", "a pair is not two strings".into())),
                },
                _ => Err(invalid("model.merges", format!("unexpected entry {m}"))),
            })
            .collect::<Result<Vec<String>>>()?;
        let pre_json = json["pre_tokenizer"].to_string();
        let pre = if pre_json.contains(LLAMA3_REGEX_START) {
            "llama-bpe"
        } else if pre_json.contains("\"use_regex\":true") {
            "gpt-2"
        } else {
            "llama-bpe"
        };
        let inner = &self.inner;
        let mut tokens = Vec::with_capacity(inner.tokens.len());
        let mut types = Vec::with_capacity(inner.tokens.len());
        for (id, t) in inner.tokens.iter().enumerate() {
            match t {
                Some(t) => {
                    tokens.push(t.text.clone());
                    types.push(if t.special {
                        3
                    } else if t.added {
                        4
                    } else {
                        1
                    });
                }
                None => {
                    // A gap in the vocabulary: an unused placeholder.
                    tokens.push(format!("[PAD{id}]"));
                    types.push(5);
                }
            }
        }
        Ok(GgufVocab {
            model: "gpt2".into(),
            pre: Some(pre.into()),
            tokens,
            token_types: Some(types),
            merges: Some(merges),
            scores: None,
            bos_id: inner.bos_id,
            eos_id: gguf_eos(inner),
            eot_id: inner.eot_id,
            unk_id: inner.unk_id,
            pad_id: inner.pad_id,
            add_bos: Some(inner.add_bos),
            add_space_prefix: None,
            chat_template: inner.chat_template.as_ref().map(|t| t.source().to_string()),
        })
    }
}

/// The id to write as `tokenizer.ggml.eos_token_id`. GGUF names one EOS and
/// one end-of-turn token, and readers stop on both; a checkpoint may have
/// more stop ids (`generation_config.json` lists `<|end_of_text|>` and
/// `<|eot_id|>`, while `eos_token` is `<|eot_id|>`, the end-of-turn token).
/// So EOS is the first stop id that is not the end-of-turn token, and the
/// file keeps both (as bitnet.cpp's converter does: EOS `<|end_of_text|>`).
fn gguf_eos(inner: &Inner) -> Option<u32> {
    inner
        .stop_ids
        .iter()
        .copied()
        .find(|&id| Some(id) != inner.eot_id)
        .or(inner.eos_id)
}
