//! Log-probabilities in OpenAI's two wire formats.
//!
//! The engine reports each generated token's log-probability and its most
//! likely alternatives ([`bitnet_engine::TokenLogprobs`]: the log-softmax
//! of the raw logits, as vLLM reports by default). Chat wants, per token,
//! `{"token", "logprob", "bytes", "top_logprobs": [...]}` under
//! `logprobs.content`; the legacy completions endpoint wants four parallel
//! arrays (`tokens`, `token_logprobs`, `top_logprobs` as a `{token:
//! logprob}` map that always holds the sampled token too, `text_offset`).
//! A token's text is its bytes as UTF-8, with U+FFFD for a token that holds
//! only part of a character (its `bytes` are exact).

use bitnet_engine::{TokenLogprobs, Tokenizer};
use serde::Serialize;
use serde::ser::SerializeMap;

/// `choices[i].logprobs` of a chat completion or chunk.
#[derive(Serialize, Debug, Default)]
pub struct ChatLogprobs {
    pub content: Vec<ChatTokenLogprob>,
    pub refusal: Option<()>,
}

/// One token of `logprobs.content`.
#[derive(Serialize, Debug)]
pub struct ChatTokenLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
    pub top_logprobs: Vec<TopLogprob>,
}

/// One alternative of `top_logprobs`.
#[derive(Serialize, Debug)]
pub struct TopLogprob {
    pub token: String,
    pub logprob: f32,
    pub bytes: Vec<u8>,
}

/// `choices[i].logprobs` of a text completion or chunk.
#[derive(Serialize, Debug, Default)]
pub struct TextLogprobs {
    pub tokens: Vec<String>,
    pub token_logprobs: Vec<f32>,
    pub top_logprobs: Vec<TopMap>,
    pub text_offset: Vec<usize>,
}

/// `{token: logprob, ...}`, most likely first.
#[derive(Debug)]
pub struct TopMap(Vec<(String, f32)>);

impl Serialize for TopMap {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let mut map = s.serialize_map(Some(self.0.len()))?;
        for (k, v) in &self.0 {
            map.serialize_entry(k, v)?;
        }
        map.end()
    }
}

/// Turns token ids into their text and bytes.
#[derive(Clone)]
pub struct Formatter {
    tokenizer: Tokenizer,
}

impl Formatter {
    /// For a model's tokenizer.
    pub fn new(tokenizer: Tokenizer) -> Formatter {
        Formatter { tokenizer }
    }

    fn piece(&self, id: u32) -> (String, Vec<u8>) {
        let bytes = self.tokenizer.token_bytes(id).unwrap_or_default();
        (String::from_utf8_lossy(&bytes).into_owned(), bytes)
    }

    /// The chat form of `tokens`.
    pub fn chat(&self, tokens: &[TokenLogprobs]) -> ChatLogprobs {
        let content = tokens
            .iter()
            .map(|lp| {
                let (token, bytes) = self.piece(lp.token);
                let top_logprobs = lp
                    .top
                    .iter()
                    .map(|&(id, logprob)| {
                        let (token, bytes) = self.piece(id);
                        TopLogprob {
                            token,
                            logprob,
                            bytes,
                        }
                    })
                    .collect();
                ChatTokenLogprob {
                    token,
                    logprob: lp.logprob,
                    bytes,
                    top_logprobs,
                }
            })
            .collect();
        ChatLogprobs {
            content,
            refusal: None,
        }
    }

    /// The completions form of `tokens`; `offset` is the length (in
    /// characters) of the text before them, and is advanced past them.
    pub fn text(&self, tokens: &[TokenLogprobs], offset: &mut usize) -> TextLogprobs {
        let mut out = TextLogprobs::default();
        for lp in tokens {
            let (token, _) = self.piece(lp.token);
            let mut top: Vec<(String, f32)> = lp
                .top
                .iter()
                .map(|&(id, logprob)| (self.piece(id).0, logprob))
                .collect();
            // "The API will always return the logprob of the sampled token."
            if !lp.top.iter().any(|&(id, _)| id == lp.token) {
                top.push((token.clone(), lp.logprob));
            }
            out.text_offset.push(*offset);
            *offset += token.chars().count();
            out.tokens.push(token);
            out.token_logprobs.push(lp.logprob);
            out.top_logprobs.push(TopMap(top));
        }
        out
    }
}
