//! Constrained decoding: output that always parses.
//!
//! A [`Grammar`] decides, before each token is sampled, which tokens may
//! come next; the sequence's step sets every other logit to −∞ before the
//! sampler sees them, so whatever the sampler does, the output stays a
//! prefix of a sentence of the grammar and ends only where the grammar
//! allows an end. This is what OpenAI's `response_format` (`json_object`,
//! `json_schema`) and llama-server's `grammar` (GBNF) promise.
//!
//! The work is done by [`llguidance`], the library llama.cpp and vLLM use,
//! rather than a grammar engine of our own: turning a JSON schema into a
//! grammar is a large, subtle job (`$ref`, `anyOf`, string formats, numeric
//! ranges, `additionalProperties`), and computing the mask of a 128k-token
//! vocabulary in tens of microseconds takes a lexer over a token trie with
//! years of tuning behind it. What llguidance needs from us is the *token
//! trie*: every token's bytes ([`Tokenizer::token_bytes`]; special tokens
//! marked with a leading 0xFF byte so no text can produce them), the end
//! tokens, and a tokenizer for the text it forces. [`Grammars`] builds that
//! once per model (about 0.1 s for a 128k vocabulary) and compiles each
//! request's grammar against it.
//!
//! llama.cpp's GBNF is translated to Lark first (module `gbnf`): the two
//! write the same grammars differently.
//!
//! JSON schemas compile with fixed separators (`", "` and `": "`) and no
//! free whitespace between tokens: a model that may put any amount of
//! whitespace anywhere can, and weak models do, fill the whole budget with
//! newlines.

mod gbnf;

use std::fmt;
use std::sync::Arc;

use bitnet_tokenizer::Tokenizer;
use llguidance::api::TopLevelGrammar;
use llguidance::toktrie::{TokEnv, TokRxInfo, TokTrie, TokenizerEnv};
use llguidance::{Matcher, ParserFactory};

use crate::error::{Error, Result};

/// What the output must be.
#[derive(Clone, Debug, PartialEq)]
pub enum GrammarSpec {
    /// Any JSON object (`response_format: {"type": "json_object"}`).
    JsonObject,
    /// JSON matching a JSON schema.
    JsonSchema(serde_json::Value),
    /// A grammar in llguidance's Lark syntax.
    Lark(String),
    /// A grammar in llama.cpp's GBNF (translated to Lark: module `gbnf`).
    Gbnf(String),
    /// Text matching a regular expression (Rust `regex` syntax).
    Regex(String),
}

/// Compiles grammars for one model's vocabulary; built once, shared.
pub struct Grammars {
    factory: ParserFactory,
}

impl fmt::Debug for Grammars {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grammars")
            .field(
                "vocab_size",
                &self.factory.tok_env().tok_trie().vocab_size(),
            )
            .finish()
    }
}

/// The token trie and tokenizer llguidance works with.
struct Env {
    trie: TokTrie,
    tokenizer: Tokenizer,
    /// Whether `tokenizer.encode` gives back exactly the bytes it was
    /// given (byte-level BPE does; SentencePiece adds a leading space).
    canonical: bool,
}

impl TokenizerEnv for Env {
    fn tok_trie(&self) -> &TokTrie {
        &self.trie
    }

    fn tokenize_bytes(&self, s: &[u8]) -> Vec<u32> {
        if !self.canonical {
            return self.trie.greedy_tokenize(s);
        }
        self.trie.tokenize_with_greedy_fallback(s, |text| {
            self.tokenizer
                .encode(text, false, false)
                .unwrap_or_else(|_| self.trie.greedy_tokenize(text.as_bytes()))
        })
    }

    fn tokenize_is_canonical(&self) -> bool {
        self.canonical
    }
}

impl Grammars {
    /// The trie over `tokenizer`'s vocabulary, for a model with `n_vocab`
    /// logits (ids the tokenizer does not know can never be generated).
    pub fn new(tokenizer: &Tokenizer, n_vocab: usize) -> Result<Grammars> {
        let stop: Vec<u32> = tokenizer
            .stop_ids()
            .iter()
            .copied()
            .filter(|&id| (id as usize) < n_vocab)
            .collect();
        let Some(&eos) = stop.first() else {
            return Err(Error::Grammar(
                "the model has no end-of-sequence token, so a grammar cannot end".into(),
            ));
        };
        let words: Vec<Vec<u8>> = (0..n_vocab as u32)
            .map(|id| match tokenizer.token_bytes(id) {
                Ok(bytes) if tokenizer.is_special(id) => {
                    let mut marked = Vec::with_capacity(bytes.len() + 1);
                    marked.push(TokTrie::SPECIAL_TOKEN_MARKER);
                    marked.extend_from_slice(&bytes);
                    marked
                }
                Ok(bytes) => bytes,
                Err(_) => Vec::new(),
            })
            .collect();
        let info = TokRxInfo {
            vocab_size: n_vocab as u32,
            tok_eos: eos,
            tok_bos: tokenizer.bos_id(),
            tok_pad: tokenizer.pad_id(),
            tok_unk: tokenizer.unk_id(),
            tok_end_of_turn: tokenizer.eot_id(),
        };
        let trie = TokTrie::from(&info, &words).with_eos_tokens(&stop);
        let canonical = ["Hello, world!", " {\"a\": [1, 2.5]}\n", "ünïcödé"]
            .iter()
            .all(|text| {
                tokenizer
                    .encode(text, false, false)
                    .and_then(|ids| tokenizer.decode(&ids, false))
                    .is_ok_and(|back| back == *text)
            });
        let env: TokEnv = Arc::new(Env {
            trie,
            tokenizer: tokenizer.clone(),
            canonical,
        });
        let mut factory = ParserFactory::new_simple(&env)
            .map_err(|e| Error::Grammar(format!("cannot prepare the vocabulary: {e}")))?;
        factory.quiet();
        Ok(Grammars { factory })
    }

    /// Compiles `spec`; errors name what is wrong with it.
    pub fn compile(&self, spec: &GrammarSpec) -> Result<Grammar> {
        let grammar = match spec {
            GrammarSpec::JsonObject => TopLevelGrammar::from_json_schema(json_options(
                serde_json::json!({"type": "object"}),
            )),
            GrammarSpec::JsonSchema(schema) => {
                TopLevelGrammar::from_json_schema(json_options(schema.clone()))
            }
            GrammarSpec::Lark(text) => TopLevelGrammar::from_lark(text.clone()),
            GrammarSpec::Gbnf(text) => {
                TopLevelGrammar::from_lark(gbnf::to_lark(text).map_err(Error::Grammar)?)
            }
            GrammarSpec::Regex(rx) => TopLevelGrammar::from_regex(rx),
        };
        let parser = self
            .factory
            .create_parser(grammar)
            .map_err(|e| Error::Grammar(first_line(&e.to_string())))?;
        let matcher = Matcher::new(Ok(parser));
        if let Some(e) = matcher.get_error() {
            return Err(Error::Grammar(first_line(&e)));
        }
        Ok(Grammar {
            matcher: Box::new(matcher),
        })
    }
}

/// Fixed separators and no free whitespace, unless the schema sets its own
/// llguidance options.
fn json_options(mut schema: serde_json::Value) -> serde_json::Value {
    if let Some(object) = schema.as_object_mut()
        && !object.contains_key("x-guidance")
    {
        object.insert(
            "x-guidance".into(),
            serde_json::json!({
                "whitespace_flexible": false,
                "item_separator": ", ",
                "key_separator": ": ",
            }),
        );
    }
    schema
}

/// llguidance's messages can carry the whole grammar after the first line.
fn first_line(message: &str) -> String {
    message.lines().next().unwrap_or(message).trim().to_string()
}

/// A compiled grammar and how far a sequence has got in it. Clones are
/// independent (each sequence of an `n > 1` request gets one).
#[derive(Clone)]
pub struct Grammar {
    /// Boxed: a matcher is large (1.5 KB), and jobs move through channels.
    matcher: Box<Matcher>,
}

impl fmt::Debug for Grammar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grammar")
            .field("stopped", &self.matcher.is_stopped())
            .finish()
    }
}

impl Grammar {
    /// Writes `logits` into `out` with every token the grammar does not
    /// allow next set to −∞.
    pub fn mask(&mut self, logits: &[f32], out: &mut Vec<f32>) -> Result<()> {
        let allowed = self
            .matcher
            .compute_mask()
            .map_err(|e| Error::Grammar(first_line(&e.to_string())))?;
        out.clear();
        out.resize(logits.len(), f32::NEG_INFINITY);
        let mut any = false;
        for (w, &word) in allowed.as_slice().iter().enumerate() {
            if word == 0 {
                continue;
            }
            let base = w * 32;
            let mut bits = word;
            while bits != 0 {
                let i = base + bits.trailing_zeros() as usize;
                bits &= bits - 1;
                if let Some(&v) = logits.get(i) {
                    out[i] = v;
                    any = true;
                }
            }
        }
        if !any {
            return Err(Error::Grammar("the grammar allows no token here".into()));
        }
        Ok(())
    }

    /// Moves past `token`.
    pub fn advance(&mut self, token: u32) -> Result<()> {
        self.matcher
            .consume_token(token)
            .map_err(|e| Error::Grammar(first_line(&e.to_string())))
    }

    /// Whether the output is complete: the grammar allows nothing but an
    /// end token.
    pub fn is_complete(&self) -> bool {
        self.matcher.is_stopped() && !self.matcher.is_error()
    }
}
