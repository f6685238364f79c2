//! Building a [`Tokenizer`] from GGUF `tokenizer.ggml.*` metadata.
//!
//! This crate does not read GGUF files; the model layer copies the keys into a [`GgufVocab`].
//!
//! # Pre-tokenizer choice for `gpt2` vocabularies
//!
//! `tokenizer.ggml.pre` names llama.cpp's split-regex profile. Supported:
//!
//! | `pre` | regex | `ignore_merges` |
//! |---|---|---|
//! | `llama-bpe`, `llama3`, `llama-v3`, `falcon3`, `falcon-h1`, `pixtral` | Llama 3 | yes |
//! | `gpt-2`, `phi-2` | GPT-2 | no |
//! | `qwen2`, `deepseek-r1-qwen` | Qwen 2 | no |
//!
//! A missing, `default` or unknown `pre` falls back to the Llama 3 profile (with a
//! `ignore_merges`): every byte-level BitNet model (2B-4T, Llama3-8B-1.58, Falcon3-1.58bit) uses
//! it, and a wrong regex only changes how text is split into pre-tokens, never which texts can be
//! encoded. [`GgufVocab::pre_tokenizer_is_known`] tells whether the fallback was taken.

use tokenizers::AddedToken;
use tokenizers::models::bpe::{BPE, Vocab};
use tokenizers::pre_tokenizers::PreTokenizerWrapper;
use tokenizers::pre_tokenizers::byte_level::ByteLevel;
use tokenizers::pre_tokenizers::sequence::Sequence;
use tokenizers::pre_tokenizers::split::{Split, SplitPattern};
use tokenizers::{DecoderWrapper, SplitDelimiterBehavior};

use crate::bytelevel::ByteMap;
use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::hf::{EOT_NAMES, HfBackend, dedup, parse_byte_token, unescape_spm};
use crate::spm::{PartitionKind, SpmModel};
use crate::{Backend, Inner, TokenInfo, Tokenizer};

/// Tokenizer metadata from a GGUF file (`tokenizer.ggml.*` and `tokenizer.chat_template`),
/// filled in by the model layer.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GgufVocab {
    /// `tokenizer.ggml.model`: `"gpt2"` (byte-level BPE) or `"llama"` (SentencePiece). Others
    /// are [`Error::Unsupported`].
    pub model: String,
    /// `tokenizer.ggml.pre`: the split-regex profile of a `gpt2` vocabulary (`"llama-bpe"`, ...);
    /// see the module documentation for the values understood and the fallback.
    pub pre: Option<String>,
    /// `tokenizer.ggml.tokens`: id → token string.
    pub tokens: Vec<String>,
    /// `tokenizer.ggml.token_type`: 1 normal, 2 unknown, 3 control, 4 user-defined, 5 unused,
    /// 6 byte. Without it, `<0xNN>` tokens are bytes, the BOS/EOS/EOT/UNK/PAD ids control tokens,
    /// and the rest normal.
    pub token_types: Option<Vec<i32>>,
    /// `tokenizer.ggml.merges`: `"a b"` pairs, highest priority first (required for `gpt2`).
    pub merges: Option<Vec<String>>,
    /// `tokenizer.ggml.scores`: per-token scores (SentencePiece; all 0 when absent).
    pub scores: Option<Vec<f32>>,
    /// `tokenizer.ggml.bos_token_id`.
    pub bos_id: Option<u32>,
    /// `tokenizer.ggml.eos_token_id`.
    pub eos_id: Option<u32>,
    /// `tokenizer.ggml.eot_token_id`; when absent, a control token named `<|eot_id|>`,
    /// `<|im_end|>`, `<end_of_turn>` or `<|end|>` is used.
    pub eot_id: Option<u32>,
    /// `tokenizer.ggml.unknown_token_id`.
    pub unk_id: Option<u32>,
    /// `tokenizer.ggml.padding_token_id`.
    pub pad_id: Option<u32>,
    /// `tokenizer.ggml.add_bos_token`. Default: true for `llama`; for `gpt2`, true with a Llama 3
    /// pre-tokenizer profile and a BOS id, else false (llama.cpp's defaults).
    pub add_bos: Option<bool>,
    /// `tokenizer.ggml.add_space_prefix` (SentencePiece only; default true).
    pub add_space_prefix: Option<bool>,
    /// `tokenizer.chat_template`.
    pub chat_template: Option<String>,
}

impl GgufVocab {
    /// Whether [`GgufVocab::pre`] names a known pre-tokenizer profile (otherwise the Llama 3
    /// profile is used).
    pub fn pre_tokenizer_is_known(&self) -> bool {
        PreProfile::of(self.pre.as_deref()).1
    }
}

/// llama.cpp's token types.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum TokenType {
    Normal,
    Unknown,
    Control,
    UserDefined,
    Unused,
    Byte,
}

const LLAMA3_REGEX: &str = r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";
const GPT2_REGEX: &str = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)";
const QWEN2_REGEX: &str = r"(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum PreProfile {
    Llama3,
    Gpt2,
    Qwen2,
}

impl PreProfile {
    /// The profile and whether the name was recognised.
    fn of(pre: Option<&str>) -> (PreProfile, bool) {
        match pre {
            Some("llama-bpe" | "llama3" | "llama-v3" | "falcon3" | "falcon-h1" | "pixtral") => {
                (PreProfile::Llama3, true)
            }
            Some("gpt-2" | "phi-2") => (PreProfile::Gpt2, true),
            Some("qwen2" | "deepseek-r1-qwen") => (PreProfile::Qwen2, true),
            _ => (PreProfile::Llama3, false),
        }
    }

    fn regex(self) -> &'static str {
        match self {
            PreProfile::Llama3 => LLAMA3_REGEX,
            PreProfile::Gpt2 => GPT2_REGEX,
            PreProfile::Qwen2 => QWEN2_REGEX,
        }
    }

    fn ignore_merges(self) -> bool {
        self == PreProfile::Llama3
    }
}

const SOURCE: &str = "gguf";

fn invalid(field: impl Into<String>, message: impl Into<String>) -> Error {
    Error::InvalidField {
        source_name: SOURCE.into(),
        field: field.into(),
        message: message.into(),
    }
}

fn token_types(v: &GgufVocab) -> Result<Vec<TokenType>> {
    let n = v.tokens.len();
    match &v.token_types {
        Some(types) => {
            if types.len() != n {
                return Err(invalid(
                    "tokenizer.ggml.token_type",
                    format!("{} entries for {n} tokens", types.len()),
                ));
            }
            types
                .iter()
                .enumerate()
                .map(|(i, &t)| match t {
                    0 | 1 => Ok(TokenType::Normal),
                    2 => Ok(TokenType::Unknown),
                    3 => Ok(TokenType::Control),
                    4 => Ok(TokenType::UserDefined),
                    5 => Ok(TokenType::Unused),
                    6 => Ok(TokenType::Byte),
                    other => Err(invalid(
                        format!("tokenizer.ggml.token_type[{i}]"),
                        format!("unknown token type {other}"),
                    )),
                })
                .collect()
        }
        None => {
            let specials = [v.bos_id, v.eos_id, v.eot_id, v.pad_id];
            Ok(v.tokens
                .iter()
                .enumerate()
                .map(|(i, text)| {
                    let id = u32::try_from(i).ok();
                    if id.is_some() && id == v.unk_id {
                        TokenType::Unknown
                    } else if id.is_some() && specials.contains(&id) {
                        TokenType::Control
                    } else if v.model == "llama" && parse_byte_token(text).is_some() {
                        TokenType::Byte
                    } else {
                        TokenType::Normal
                    }
                })
                .collect())
        }
    }
}

pub(crate) fn load(v: &GgufVocab) -> Result<Tokenizer> {
    let n = v.tokens.len();
    if n == 0 {
        return Err(invalid("tokenizer.ggml.tokens", "empty vocabulary"));
    }
    if u32::try_from(n).is_err() {
        return Err(invalid("tokenizer.ggml.tokens", "too many tokens"));
    }
    for (field, id) in [
        ("tokenizer.ggml.bos_token_id", v.bos_id),
        ("tokenizer.ggml.eos_token_id", v.eos_id),
        ("tokenizer.ggml.eot_token_id", v.eot_id),
        ("tokenizer.ggml.unknown_token_id", v.unk_id),
        ("tokenizer.ggml.padding_token_id", v.pad_id),
    ] {
        if let Some(id) = id
            && id as usize >= n
        {
            return Err(invalid(
                field,
                format!("token id {id} is out of range (vocabulary size {n})"),
            ));
        }
    }
    if let Some(scores) = &v.scores
        && scores.len() != n
    {
        return Err(invalid(
            "tokenizer.ggml.scores",
            format!("{} entries for {n} tokens", scores.len()),
        ));
    }
    let types = token_types(v)?;

    let (backend, byte_level, add_bos_default, strip_space_prefix) = match v.model.as_str() {
        "gpt2" => {
            let (profile, _) = PreProfile::of(v.pre.as_deref());
            let tok = build_bpe(v, &types, profile)?;
            let add_bos_default = profile == PreProfile::Llama3 && v.bos_id.is_some();
            (
                Backend::Hf(HfBackend::new(tok, SOURCE)?),
                true,
                add_bos_default,
                false,
            )
        }
        "llama" => {
            let kinds: Vec<PartitionKind> = types
                .iter()
                .map(|t| match t {
                    TokenType::Control | TokenType::Unknown => PartitionKind::Special,
                    TokenType::UserDefined => PartitionKind::UserDefined,
                    _ => PartitionKind::None,
                })
                .collect();
            let add_space_prefix = v.add_space_prefix.unwrap_or(true);
            let spm = SpmModel::new(
                &v.tokens,
                v.scores.as_deref(),
                &kinds,
                v.unk_id,
                add_space_prefix,
            )?;
            (Backend::Spm(Box::new(spm)), false, true, add_space_prefix)
        }
        other => {
            return Err(Error::Unsupported {
                what: "GGUF tokenizer model (tokenizer.ggml.model)",
                value: other.to_string(),
            });
        }
    };

    let byte_map = ByteMap::new();
    let tokens: Vec<Option<TokenInfo>> = v
        .tokens
        .iter()
        .zip(&types)
        .map(|(text, &ty)| {
            let special = matches!(ty, TokenType::Control | TokenType::Unknown);
            let added = special || ty == TokenType::UserDefined;
            let bytes = if added {
                text.as_bytes().to_vec()
            } else if byte_level {
                byte_map.decode_token(text)
            } else if ty == TokenType::Byte {
                match parse_byte_token(text) {
                    Some(b) => vec![b],
                    None => text.as_bytes().to_vec(),
                }
            } else {
                unescape_spm(text)
            };
            Some(TokenInfo {
                text: text.clone(),
                bytes,
                special,
                added,
            })
        })
        .collect();

    let eot_id = v.eot_id.or_else(|| {
        EOT_NAMES.iter().find_map(|name| {
            v.tokens
                .iter()
                .zip(&types)
                .position(|(t, &ty)| t == name && ty == TokenType::Control)
                .and_then(|i| u32::try_from(i).ok())
        })
    });
    let stop_ids = dedup(v.eos_id.into_iter().chain(eot_id));
    let text_of = |id: Option<u32>| {
        id.and_then(|i| v.tokens.get(i as usize))
            .cloned()
            .unwrap_or_default()
    };
    let (chat_template, chat_template_error) = match &v.chat_template {
        Some(src) => match ChatTemplate::with_name(
            "tokenizer.chat_template",
            src,
            &text_of(v.bos_id),
            &text_of(v.eos_id),
        ) {
            Ok(t) => (Some(t), None),
            Err(e) => (None, Some(e)),
        },
        None => (None, None),
    };

    Ok(Tokenizer::from_inner(Inner {
        source: SOURCE.into(),
        backend,
        tokens,
        bos_id: v.bos_id,
        eos_id: v.eos_id,
        eot_id,
        unk_id: v.unk_id,
        pad_id: v.pad_id,
        add_bos: v.add_bos.unwrap_or(add_bos_default),
        stop_ids,
        chat_template,
        chat_template_error,
        strip_space_prefix,
    }))
}

/// A byte-level BPE `tokenizers::Tokenizer` equivalent to llama.cpp's for this vocabulary.
fn build_bpe(
    v: &GgufVocab,
    types: &[TokenType],
    profile: PreProfile,
) -> Result<tokenizers::Tokenizer> {
    let merges_in = v
        .merges
        .as_ref()
        .ok_or_else(|| invalid("tokenizer.ggml.merges", "missing (required for gpt2)"))?;
    let mut merges = Vec::with_capacity(merges_in.len());
    for (i, m) in merges_in.iter().enumerate() {
        // Split at the first space after the first character (as llama.cpp does).
        let first_len = m.chars().next().map_or(0, char::len_utf8);
        let split = m
            .get(first_len..)
            .and_then(|rest| rest.find(' '))
            .map(|p| p + first_len);
        let Some(pos) = split else {
            return Err(invalid(
                format!("tokenizer.ggml.merges[{i}]"),
                format!("{m:?} is not two tokens separated by a space"),
            ));
        };
        merges.push((m[..pos].to_string(), m[pos + 1..].to_string()));
    }
    let vocab: Vocab = v
        .tokens
        .iter()
        .enumerate()
        .map(|(i, t)| (t.clone(), i as u32))
        .collect();
    let bpe = BPE::builder()
        .vocab_and_merges(vocab, merges)
        .ignore_merges(profile.ignore_merges())
        .build()
        .map_err(|e| invalid("tokenizer.ggml.merges", e.to_string()))?;

    let mut tok = tokenizers::Tokenizer::new(bpe);
    let split = Split::new(
        SplitPattern::Regex(profile.regex().to_string()),
        SplitDelimiterBehavior::Isolated,
        false,
    )
    .map_err(|e| Error::Hf {
        file: SOURCE.into(),
        message: format!("pre-tokenizer regex: {e}"),
    })?;
    let pre = Sequence::new(vec![
        PreTokenizerWrapper::Split(split),
        PreTokenizerWrapper::ByteLevel(ByteLevel::new(false, true, false)),
    ]);
    tok.with_pre_tokenizer(Some(pre));
    tok.with_decoder(Some(DecoderWrapper::ByteLevel(ByteLevel::default())));

    let mut specials = Vec::new();
    let mut user_defined = Vec::new();
    for (text, ty) in v.tokens.iter().zip(types) {
        if text.is_empty() {
            continue;
        }
        match ty {
            TokenType::Control | TokenType::Unknown => {
                specials.push(AddedToken::from(text.clone(), true).normalized(false));
            }
            TokenType::UserDefined => {
                user_defined.push(AddedToken::from(text.clone(), false).normalized(false));
            }
            _ => {}
        }
    }
    tok.add_special_tokens(&specials);
    tok.add_tokens(&user_defined);
    Ok(tok)
}
