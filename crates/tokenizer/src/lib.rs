//! Tokenization for BitNet b1.58 models: text ⇄ token ids, chat templates, and streaming
//! detokenization.
//!
//! # Design
//!
//! BitNet checkpoints come with their tokenizer in one of two forms, and this crate reads both
//! into one [`Tokenizer`]:
//!
//! * **A Hugging Face `tokenizer.json`** (safetensors checkpoints such as
//!   `microsoft/bitnet-b1.58-2B-4T`, whose tokenizer is Llama 3's byte-level BPE). We wrap the
//!   `tokenizers` crate instead of re-implementing it: `tokenizer.json` is a small language of
//!   normalizers, pre-tokenizers, models and post-processors, and the reference implementation of
//!   that language *is* this crate. Re-implementing it would mean chasing its corner cases
//!   (added-token matching, `ignore_merges`, regex semantics of Oniguruma) for no gain. We do not
//!   use it for decoding, though (see below).
//! * **GGUF `tokenizer.ggml.*` metadata** (bitnet.cpp's files), handed to us as a plain
//!   [`GgufVocab`]. For `model = "gpt2"` (byte-level BPE: 2B-4T, Llama3-8B-1.58, Falcon3) the
//!   vocabulary and merges are turned into a `tokenizers` BPE model with the pre-tokenizer split
//!   regex that `tokenizer.ggml.pre` names, `ignore_merges` as llama.cpp sets it, and the control
//!   tokens as special added tokens, so both paths share one well-tested BPE implementation and
//!   produce the same ids (checked against bitnet.cpp's own tokenization in the tests).
//! * For `model = "llama"` (SentencePiece: 1bitLLM `bitnet_b1_58-large` and friends) GGUF
//!   stores only pieces, scores and token types, and llama.cpp tokenizes them with its own
//!   greedy algorithm: repeatedly merge the adjacent pair whose concatenation is the
//!   highest-scoring piece, then fall back to `<0xNN>` byte tokens for what is left. Neither of
//!   the `tokenizers` models reproduces that exactly (its BPE ranks merge *rules*, its Unigram
//!   finds the best-scoring *segmentation* with Viterbi), and the algorithm is short, so it is
//!   written out by hand (module `spm`), following llama.cpp step by step.
//!
//! **Decoding is ours, for every backend.** At load time every token id gets its *bytes*: a
//! byte-level BPE token is mapped back through the GPT-2 byte↔unicode table, a SentencePiece
//! piece has `'▁'` turned into `' '`, a `<0xNN>` token is the byte `NN`, and a special token is
//! its text. Decoding is then "concatenate the bytes, then UTF-8" ([`Tokenizer::decode`],
//! invalid sequences become U+FFFD exactly as `String::from_utf8_lossy` does), and
//! [`Tokenizer::token_bytes`] exposes the same bytes to samplers and grammar engines. A string
//! decoder such as `tokenizers`' cannot serve streaming: one byte-level token may hold half a
//! character, which no `String` can. (`clean_up_tokenization_spaces` is deliberately not applied:
//! decoding stays lossless.)
//!
//! **Streaming keeps UTF-8 intact.** A byte-level token is not a string: a rare CJK character or
//! an emoji is often split over two to four tokens, and a ZWJ emoji sequence over many more.
//! [`StreamDecoder`] therefore appends each token's bytes to a small pending buffer and releases
//! only the longest prefix that is complete UTF-8. An incomplete trailing sequence (at most three
//! bytes) waits for the next token; a sequence that can no longer become valid is replaced by
//! U+FFFD at once; whatever is left at [`StreamDecoder::finish`] becomes U+FFFD. The streamed
//! chunks concatenate to exactly what [`Tokenizer::decode`] returns for the same ids, and no chunk
//! ever contains a replacement character that the full text does not.
//!
//! Chat templates are Jinja; [`ChatTemplate`] renders them with `minijinja` configured like
//! Hugging Face `transformers` (`trim_blocks`, `lstrip_blocks`, loop controls, Python string
//! methods, `raise_exception`, a `tojson` that does not HTML-escape, `strftime_now`).
//!
//! # Example
//!
//! ```
//! use bitnet_tokenizer::{ChatMessage, StreamDecoder, Tokenizer};
//!
//! let dir = concat!(env!("CARGO_MANIFEST_DIR"), "/../../fixtures/small-bitnet");
//! let tok = Tokenizer::from_hf_dir(std::path::Path::new(dir))?;
//! let text = "The largest planet in the solar system is";
//! let ids = tok.encode(text, tok.add_bos(), true)?;
//! assert_eq!(ids[..5], [4091, 2108, 1255, 1912, 258]);
//!
//! let template = tok.chat_template().expect("template");
//! let prompt = template.render(&[ChatMessage::new("user", "Hi!")], true)?;
//! assert_eq!(prompt, "<|begin_of_text|>User: Hi!<|eot_id|>Assistant: ");
//! let chat_ids = tok.encode(&prompt, false, true)?; // the template wrote BOS already
//! assert_eq!(chat_ids[0], 4091);
//!
//! let mut stream = StreamDecoder::new(&tok, true);
//! let mut streamed = String::new();
//! for &id in &ids {
//!     streamed.push_str(&stream.push(id)?);
//! }
//! streamed.push_str(&stream.finish());
//! assert_eq!(streamed, "The largest planet in the solar system is");
//! assert!(tok.stop_ids().contains(&4093)); // <|eot_id|>
//! # Ok::<(), bitnet_tokenizer::Error>(())
//! ```

mod bytelevel;
mod chat;
mod error;
mod gguf_export;
mod gguf_vocab;
mod hf;
mod spm;
mod stream;

use std::path::Path;
use std::sync::{Arc, OnceLock};

pub use chat::{ChatMessage, ChatTemplate};
pub use error::{Error, Result};
pub use gguf_vocab::GgufVocab;
pub use stream::StreamDecoder;

/// A loaded tokenizer. Cloning is cheap (the data is shared behind an [`Arc`]); the type is
/// `Send + Sync`.
#[derive(Clone)]
pub struct Tokenizer {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Tokenizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tokenizer")
            .field("source", &self.inner.source)
            .field("vocab_size", &self.inner.tokens.len())
            .field("bos_id", &self.inner.bos_id)
            .field("eos_id", &self.inner.eos_id)
            .field("stop_ids", &self.inner.stop_ids)
            .field("add_bos", &self.inner.add_bos)
            .finish_non_exhaustive()
    }
}

/// Everything a backend builder produces.
pub(crate) struct Inner {
    /// Where the tokenizer came from (for messages): a path or `gguf`.
    pub(crate) source: String,
    pub(crate) backend: Backend,
    /// Per id; `None` for ids with no token (gaps in a `tokenizer.json` vocabulary).
    pub(crate) tokens: Vec<Option<TokenInfo>>,
    pub(crate) bos_id: Option<u32>,
    pub(crate) eos_id: Option<u32>,
    pub(crate) eot_id: Option<u32>,
    pub(crate) unk_id: Option<u32>,
    pub(crate) pad_id: Option<u32>,
    pub(crate) add_bos: bool,
    pub(crate) stop_ids: Vec<u32>,
    pub(crate) chat_template: Option<ChatTemplate>,
    pub(crate) chat_template_error: Option<Error>,
    /// SentencePiece decoding: drop the `' '` that encoding prepends to text at the start of the
    /// input and after every special token.
    pub(crate) strip_space_prefix: bool,
}

/// What decoding needs to know about one token.
#[derive(Debug, Clone)]
pub(crate) struct TokenInfo {
    /// The vocabulary string.
    pub(crate) text: String,
    /// The bytes it contributes to generated text.
    pub(crate) bytes: Vec<u8>,
    /// Control/special token: skipped by `decode(.., skip_special = true)`.
    pub(crate) special: bool,
    /// Matched as a whole in the input before the model runs (special or user-defined/added).
    pub(crate) added: bool,
}

pub(crate) enum Backend {
    /// Hugging Face `tokenizers` (from `tokenizer.json`, or built from a GGUF `gpt2` vocabulary).
    Hf(hf::HfBackend),
    /// llama.cpp-style SentencePiece (GGUF `llama` vocabulary).
    Spm(Box<spm::SpmModel>),
}

impl Tokenizer {
    /// From a Hugging Face `tokenizer.json` (bytes) plus an optional `tokenizer_config.json`
    /// (bytes), which supplies the chat template, the BOS/EOS tokens and `add_bos_token`.
    /// Without `add_bos_token`, [`Tokenizer::add_bos`] is whether the post-processor prepends BOS.
    pub fn from_hf_json(
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<&[u8]>,
    ) -> Result<Tokenizer> {
        hf::load(hf::HfFiles {
            tokenizer: ("tokenizer.json".into(), tokenizer_json),
            config: tokenizer_config_json.map(|b| ("tokenizer_config.json".to_string(), b)),
            special_tokens_map: None,
            generation_config: None,
        })
    }

    /// From in-memory `tokenizer.json`, optional `tokenizer_config.json` and optional
    /// `generation_config.json` (whose `eos_token_id`s join [`Tokenizer::stop_ids`]), e.g. files
    /// embedded in a binary.
    pub fn from_hf_parts(
        tokenizer_json: &[u8],
        tokenizer_config_json: Option<&[u8]>,
        generation_config_json: Option<&[u8]>,
    ) -> Result<Tokenizer> {
        hf::load(hf::HfFiles {
            tokenizer: ("tokenizer.json".into(), tokenizer_json),
            config: tokenizer_config_json.map(|b| ("tokenizer_config.json".to_string(), b)),
            special_tokens_map: None,
            generation_config: generation_config_json
                .map(|b| ("generation_config.json".to_string(), b)),
        })
    }

    /// From a model directory: `tokenizer.json` (required), and if present
    /// `tokenizer_config.json`, `special_tokens_map.json` (BOS/EOS when the config lacks them)
    /// and `generation_config.json` (its `eos_token_id`s are added to [`Tokenizer::stop_ids`]).
    /// Errors name the file.
    pub fn from_hf_dir(dir: &Path) -> Result<Tokenizer> {
        let read = |name: &str, required: bool| -> Result<Option<(String, Vec<u8>)>> {
            let path = dir.join(name);
            match std::fs::read(&path) {
                Ok(bytes) => Ok(Some((path.display().to_string(), bytes))),
                Err(e) if !required && e.kind() == std::io::ErrorKind::NotFound => Ok(None),
                Err(source) => Err(Error::Io { path, source }),
            }
        };
        let tokenizer = read("tokenizer.json", true)?.ok_or_else(|| Error::Io {
            path: dir.join("tokenizer.json"),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        let config = read("tokenizer_config.json", false)?;
        let special = read("special_tokens_map.json", false)?;
        let generation = read("generation_config.json", false)?;
        hf::load(hf::HfFiles {
            tokenizer: (tokenizer.0.clone(), &tokenizer.1),
            config: borrow(&config),
            special_tokens_map: borrow(&special),
            generation_config: borrow(&generation),
        })
    }

    /// From GGUF tokenizer metadata (`tokenizer.ggml.*`), see [`GgufVocab`].
    pub fn from_gguf_vocab(v: &GgufVocab) -> Result<Tokenizer> {
        gguf_vocab::load(v)
    }

    pub(crate) fn from_inner(inner: Inner) -> Tokenizer {
        Tokenizer {
            inner: Arc::new(inner),
        }
    }

    /// Encodes `text`. With `add_bos`, BOS is prepended if the tokenizer has one (pass
    /// [`Tokenizer::add_bos`] to follow the model's preference). With `parse_special`, special
    /// token strings in the text (e.g. `"<|eot_id|>"`) become their ids; otherwise they are
    /// tokenized as ordinary text. No EOS is ever appended.
    pub fn encode(&self, text: &str, add_bos: bool, parse_special: bool) -> Result<Vec<u32>> {
        let mut ids = Vec::with_capacity(text.len() / 3 + 2);
        if add_bos && let Some(bos) = self.inner.bos_id {
            ids.push(bos);
        }
        match &self.inner.backend {
            Backend::Hf(hf) => hf.encode(text, parse_special, &mut ids)?,
            Backend::Spm(spm) => spm.encode(text, parse_special, &mut ids)?,
        }
        Ok(ids)
    }

    /// Decodes ids to text: the concatenated [`Tokenizer::token_bytes`] as UTF-8, with invalid
    /// sequences replaced by U+FFFD (lossless whenever the bytes are valid UTF-8). With
    /// `skip_special`, special tokens contribute nothing. For SentencePiece vocabularies the
    /// space that encoding prepends (at the start and after special tokens) is removed again.
    /// An id outside the vocabulary is an error naming the id.
    pub fn decode(&self, ids: &[u32], skip_special: bool) -> Result<String> {
        let mut bytes = Vec::with_capacity(ids.len() * 4);
        let mut after_added = true;
        for &id in ids {
            bytes.extend_from_slice(self.piece(id, after_added, skip_special)?);
            after_added = self.info(id)?.added;
        }
        Ok(match String::from_utf8(bytes) {
            Ok(s) => s,
            Err(e) => String::from_utf8_lossy(e.as_bytes()).into_owned(),
        })
    }

    /// The bytes token `id` contributes to generated text: byte-level BPE tokens through the
    /// GPT-2 byte map; SentencePiece pieces with `'▁'` as `' '` and `<0xNN>` as the byte; special
    /// and added tokens as their text.
    pub fn token_bytes(&self, id: u32) -> Result<Vec<u8>> {
        Ok(self.info(id)?.bytes.clone())
    }

    /// The vocabulary string of token `id` (e.g. `"Ġworld"`, `"▁the"`, `"<|eot_id|>"`).
    pub fn token_text(&self, id: u32) -> Option<String> {
        self.info(id).ok().map(|t| t.text.clone())
    }

    /// The id of a vocabulary string, if it is one.
    pub fn token_to_id(&self, text: &str) -> Option<u32> {
        match &self.inner.backend {
            Backend::Hf(hf) => hf.token_to_id(text),
            Backend::Spm(spm) => spm.token_to_id(text),
        }
    }

    /// Number of ids (the largest id plus one).
    pub fn vocab_size(&self) -> usize {
        self.inner.tokens.len()
    }

    /// The beginning-of-sequence token.
    pub fn bos_id(&self) -> Option<u32> {
        self.inner.bos_id
    }

    /// Whether prompts should start with BOS by default.
    pub fn add_bos(&self) -> bool {
        self.inner.add_bos
    }

    /// Every id that ends generation: EOS, the end-of-turn token (`<|eot_id|>`), and
    /// `generation_config.json`'s `eos_token_id`s; deduplicated, in that order.
    pub fn stop_ids(&self) -> &[u32] {
        &self.inner.stop_ids
    }

    /// The end-of-sequence token.
    pub fn eos_id(&self) -> Option<u32> {
        self.inner.eos_id
    }

    /// The end-of-turn token (`<|eot_id|>` and the like), if the vocabulary has one.
    pub fn eot_id(&self) -> Option<u32> {
        self.inner.eot_id
    }

    /// The unknown token (SentencePiece vocabularies).
    pub fn unk_id(&self) -> Option<u32> {
        self.inner.unk_id
    }

    /// The padding token, if known.
    pub fn pad_id(&self) -> Option<u32> {
        self.inner.pad_id
    }

    /// Whether `id` is a special (control) token. False for ids outside the vocabulary.
    pub fn is_special(&self, id: u32) -> bool {
        self.info(id).is_ok_and(|t| t.special)
    }

    /// The chat template, when the tokenizer came with one that compiles.
    pub fn chat_template(&self) -> Option<&ChatTemplate> {
        self.inner.chat_template.as_ref()
    }

    /// Why the tokenizer's chat template could not be used, when it came with one that does not
    /// compile (loading still succeeds; [`Tokenizer::chat_template`] is then `None`).
    pub fn chat_template_error(&self) -> Option<&Error> {
        self.inner.chat_template_error.as_ref()
    }

    pub(crate) fn info(&self, id: u32) -> Result<&TokenInfo> {
        self.inner
            .tokens
            .get(id as usize)
            .and_then(Option::as_ref)
            .ok_or(Error::TokenOutOfRange {
                id,
                vocab_size: self.inner.tokens.len(),
            })
    }

    /// The bytes `id` contributes in context: `after_added` says whether the previous token was
    /// an added/special token or this is the first token.
    pub(crate) fn piece(&self, id: u32, after_added: bool, skip_special: bool) -> Result<&[u8]> {
        let info = self.info(id)?;
        if info.special && skip_special {
            return Ok(&[]);
        }
        let bytes = &info.bytes[..];
        if self.inner.strip_space_prefix && after_added && !info.added {
            return Ok(bytes.strip_prefix(b" ").unwrap_or(bytes));
        }
        Ok(bytes)
    }
}

fn borrow(f: &Option<(String, Vec<u8>)>) -> Option<(String, &[u8])> {
    f.as_ref().map(|(n, b)| (n.clone(), &b[..]))
}

/// Lazily built second `tokenizers` instance that does not match special tokens.
pub(crate) type LazyPlain = OnceLock<Box<tokenizers::Tokenizer>>;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokenizer_is_send_sync_and_cheap_to_clone() {
        fn assert_send_sync<T: Send + Sync + Clone>() {}
        assert_send_sync::<Tokenizer>();
        assert_send_sync::<ChatTemplate>();
    }
}
