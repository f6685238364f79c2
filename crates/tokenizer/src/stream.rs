//! Incremental detokenization that never splits a UTF-8 character.

use std::marker::PhantomData;

use crate::Tokenizer;
use crate::error::Result;

/// Turns a stream of token ids into text chunks.
///
/// Each [`push`](StreamDecoder::push) appends the token's bytes to a pending buffer and returns
/// the longest prefix of it that is complete UTF-8. An incomplete sequence at the end (at most
/// three bytes) waits for the next token; a sequence that can no longer become valid is replaced
/// by one U+FFFD per maximal invalid subpart, exactly as `String::from_utf8_lossy` would; and
/// [`finish`](StreamDecoder::finish) flushes what is left the same way. The concatenation of
/// all chunks therefore equals [`Tokenizer::decode`] of the same ids.
///
/// The lifetime is nominal: the decoder keeps its own handle on the tokenizer (a cheap `Arc`
/// clone), so `new` accepts any borrow and a `StreamDecoder<'static>` can live in a struct next to
/// (or without) the tokenizer.
#[derive(Debug, Clone)]
pub struct StreamDecoder<'a> {
    tok: Tokenizer,
    _borrow: PhantomData<&'a Tokenizer>,
    skip_special: bool,
    pending: Vec<u8>,
    /// Whether the previous token was an added/special token (or there was none yet).
    after_added: bool,
}

impl<'a> StreamDecoder<'a> {
    /// A decoder over `tok`; with `skip_special`, special tokens produce no text.
    pub fn new(tok: &Tokenizer, skip_special: bool) -> Self {
        StreamDecoder {
            tok: tok.clone(),
            _borrow: PhantomData,
            skip_special,
            pending: Vec::with_capacity(8),
            after_added: true,
        }
    }

    /// Feeds one id and returns the text that became complete (possibly empty). An id outside
    /// the vocabulary is an error and leaves the decoder unchanged.
    pub fn push(&mut self, id: u32) -> Result<String> {
        let piece = self.tok.piece(id, self.after_added, self.skip_special)?;
        let added = self.tok.info(id)?.added;
        self.pending.extend_from_slice(piece);
        self.after_added = added;
        Ok(self.drain_complete())
    }

    /// Returns the bytes still pending (an incomplete UTF-8 sequence) as text, with U+FFFD for
    /// them, and resets the decoder for a new sequence.
    pub fn finish(&mut self) -> String {
        let rest = String::from_utf8_lossy(&self.pending).into_owned();
        self.pending.clear();
        self.after_added = true;
        rest
    }

    /// Bytes held back because they do not yet form a complete character.
    pub fn pending_bytes(&self) -> &[u8] {
        &self.pending
    }

    fn drain_complete(&mut self) -> String {
        let mut out = String::new();
        let mut consumed = 0;
        while consumed < self.pending.len() {
            let rest = &self.pending[consumed..];
            match std::str::from_utf8(rest) {
                Ok(s) => {
                    out.push_str(s);
                    consumed = self.pending.len();
                }
                Err(e) => {
                    let valid = e.valid_up_to();
                    // The prefix up to `valid_up_to` is valid UTF-8 by definition.
                    out.push_str(std::str::from_utf8(&rest[..valid]).unwrap_or_default());
                    match e.error_len() {
                        Some(bad) => {
                            out.push(char::REPLACEMENT_CHARACTER);
                            consumed += valid + bad;
                        }
                        None => {
                            // Incomplete sequence at the end: wait for more bytes.
                            consumed += valid;
                            break;
                        }
                    }
                }
            }
        }
        self.pending.drain(..consumed);
        out
    }
}
