//! SentencePiece-style tokenization as llama.cpp does it for GGUF vocabularies with
//! `tokenizer.ggml.model = "llama"` (e.g. 1bitLLM `bitnet_b1_58-large`, vocabulary 32002).
//!
//! The algorithm, which this module reproduces step for step:
//!
//! 1. The text is split into special-token fragments and raw-text fragments (see
//!    [`SpmModel::encode`]). Every raw-text fragment that follows the start of the input or a
//!    special token gets a `' '` prepended when `add_space_prefix` is set; then every `' '`
//!    becomes `'▁'` (U+2581).
//! 2. A fragment starts as one symbol per UTF-8 character, linked in a list.
//! 3. Every adjacent pair whose concatenation is a vocabulary token goes into a priority queue,
//!    ordered by that token's score (higher first; ties: leftmost first).
//! 4. The best pair is popped and merged (stale pairs, whose symbols changed since they were
//!    queued, are skipped by comparing lengths), and the new symbol's pairs with its neighbours
//!    are queued. This repeats until the queue is empty.
//! 5. Each remaining symbol is emitted as its token; a symbol without a token (necessarily a
//!    single character: merged symbols are always tokens) is emitted as its UTF-8 bytes through
//!    the `<0xNN>` byte tokens, or the unknown token where a byte token is missing.
//!
//! llama.cpp also keeps a "reverse merge" table to re-split symbols that are not tokens; since
//! only pairs whose concatenation is a token are ever merged, that table is never consulted for
//! a symbol of two or more characters and is not needed here.

use std::cmp::Ordering;
use std::collections::{BinaryHeap, HashMap};

use crate::error::{Error, Result};

/// A token that is cut out of the text before the SentencePiece algorithm runs.
#[derive(Debug, Clone)]
struct PartitionToken {
    text: String,
    id: u32,
    /// Control and unknown tokens are matched only when special tokens are parsed; user-defined
    /// tokens always are.
    needs_parse_special: bool,
}

/// A SentencePiece ("llama") vocabulary ready for encoding.
#[derive(Debug, Clone)]
pub(crate) struct SpmModel {
    /// Token text → id. For duplicated strings the last id wins (as in llama.cpp).
    token_to_id: HashMap<String, u32>,
    scores: Vec<f32>,
    /// Byte → its `<0xNN>` token (or, for ASCII, a single-character token as a fallback).
    byte_tokens: [Option<u32>; 256],
    unk_id: Option<u32>,
    add_space_prefix: bool,
    /// Longest first, as llama.cpp partitions.
    partition_tokens: Vec<PartitionToken>,
}

/// How the vocabulary treats one token when encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PartitionKind {
    /// Ordinary vocabulary entry.
    None,
    /// Control or unknown token: cut out of the text only when special tokens are parsed.
    Special,
    /// User-defined token: always cut out of the text.
    UserDefined,
}

impl SpmModel {
    /// `kinds[i]` says whether token `i` is cut out of the text before tokenization.
    pub(crate) fn new(
        tokens: &[String],
        scores: Option<&[f32]>,
        kinds: &[PartitionKind],
        unk_id: Option<u32>,
        add_space_prefix: bool,
    ) -> Result<SpmModel> {
        let mut token_to_id = HashMap::with_capacity(tokens.len());
        for (id, text) in tokens.iter().enumerate() {
            token_to_id.insert(text.clone(), id_u32(id)?);
        }
        let scores = match scores {
            Some(s) => s.to_vec(),
            None => vec![0.0; tokens.len()],
        };
        let mut byte_tokens = [None; 256];
        for (b, slot) in byte_tokens.iter_mut().enumerate() {
            let hex = format!("<0x{b:02X}>");
            *slot = token_to_id.get(&hex).copied();
            if slot.is_none() && b < 0x80 {
                let single = char::from(b as u8).to_string();
                *slot = token_to_id.get(&single).copied();
            }
        }
        let mut partition_tokens = Vec::new();
        for (id, (text, kind)) in tokens.iter().zip(kinds).enumerate() {
            if text.is_empty() || *kind == PartitionKind::None {
                continue;
            }
            partition_tokens.push(PartitionToken {
                text: text.clone(),
                id: id_u32(id)?,
                needs_parse_special: *kind == PartitionKind::Special,
            });
        }
        partition_tokens.sort_by(|a, b| b.text.len().cmp(&a.text.len()).then(a.id.cmp(&b.id)));
        Ok(SpmModel {
            token_to_id,
            scores,
            byte_tokens,
            unk_id,
            add_space_prefix,
            partition_tokens,
        })
    }

    pub(crate) fn token_to_id(&self, text: &str) -> Option<u32> {
        self.token_to_id.get(text).copied()
    }

    /// Encodes `text` (without BOS), appending to `out`.
    pub(crate) fn encode(&self, text: &str, parse_special: bool, out: &mut Vec<u32>) -> Result<()> {
        let mut prev_special = true; // the start of the input counts as "after a special token"
        for fragment in self.partition(text, parse_special) {
            match fragment {
                Fragment::Token(id) => {
                    out.push(id);
                    prev_special = true;
                }
                Fragment::Text(raw) => {
                    let mut escaped = String::with_capacity(raw.len() + 3);
                    if self.add_space_prefix && prev_special {
                        escaped.push('▁');
                    }
                    for c in raw.chars() {
                        escaped.push(if c == ' ' { '▁' } else { c });
                    }
                    self.tokenize_fragment(&escaped, out)?;
                    prev_special = false;
                }
            }
        }
        Ok(())
    }

    /// Cuts special tokens out of the text, longest token first (llama.cpp's order).
    fn partition<'t>(&self, text: &'t str, parse_special: bool) -> Vec<Fragment<'t>> {
        let mut fragments = Vec::new();
        if !text.is_empty() {
            fragments.push(Fragment::Text(text));
        }
        for special in &self.partition_tokens {
            if special.needs_parse_special && !parse_special {
                continue;
            }
            if !fragments
                .iter()
                .any(|f| matches!(f, Fragment::Text(t) if t.contains(special.text.as_str())))
            {
                continue;
            }
            let mut next = Vec::with_capacity(fragments.len() + 2);
            for fragment in fragments {
                match fragment {
                    Fragment::Token(_) => next.push(fragment),
                    Fragment::Text(mut rest) => {
                        while let Some(pos) = rest.find(special.text.as_str()) {
                            if pos > 0 {
                                next.push(Fragment::Text(&rest[..pos]));
                            }
                            next.push(Fragment::Token(special.id));
                            rest = &rest[pos + special.text.len()..];
                        }
                        if !rest.is_empty() {
                            next.push(Fragment::Text(rest));
                        }
                    }
                }
            }
            fragments = next;
        }
        fragments
    }

    /// The bigram-merge loop over one escaped fragment.
    fn tokenize_fragment(&self, text: &str, out: &mut Vec<u32>) -> Result<()> {
        let mut symbols: Vec<Symbol> = Vec::with_capacity(text.len());
        for (i, (start, c)) in text.char_indices().enumerate() {
            symbols.push(Symbol {
                start,
                len: c.len_utf8(),
                prev: i.checked_sub(1),
                next: None,
            });
            if let Some(p) = i.checked_sub(1) {
                symbols[p].next = Some(i);
            }
        }
        if symbols.is_empty() {
            return Ok(());
        }

        let mut queue = BinaryHeap::new();
        for right in 1..symbols.len() {
            self.try_add_bigram(text, &symbols, Some(right - 1), Some(right), &mut queue);
        }
        while let Some(bigram) = queue.pop() {
            let (l, r) = (bigram.left, bigram.right);
            let (left_len, right_len) = (symbols[l].len, symbols[r].len);
            // Skip pairs whose symbols were merged into something else since they were queued.
            if left_len == 0 || right_len == 0 || left_len + right_len != bigram.size {
                continue;
            }
            symbols[l].len += right_len;
            symbols[r].len = 0;
            let after = symbols[r].next;
            symbols[l].next = after;
            if let Some(a) = after {
                symbols[a].prev = Some(l);
            }
            let before = symbols[l].prev;
            self.try_add_bigram(text, &symbols, before, Some(l), &mut queue);
            self.try_add_bigram(text, &symbols, Some(l), after, &mut queue);
        }

        let mut cursor = Some(0);
        while let Some(i) = cursor {
            let sym = &symbols[i];
            let piece = &text[sym.start..sym.start + sym.len];
            match self.token_to_id.get(piece) {
                Some(&id) => out.push(id),
                None => {
                    for &b in piece.as_bytes() {
                        match self.byte_tokens[usize::from(b)].or(self.unk_id) {
                            Some(id) => out.push(id),
                            None => return Err(Error::ByteNotInVocab { byte: b }),
                        }
                    }
                }
            }
            cursor = sym.next;
        }
        Ok(())
    }

    fn try_add_bigram(
        &self,
        text: &str,
        symbols: &[Symbol],
        left: Option<usize>,
        right: Option<usize>,
        queue: &mut BinaryHeap<Bigram>,
    ) {
        let (Some(left), Some(right)) = (left, right) else {
            return;
        };
        let start = symbols[left].start;
        let size = symbols[left].len + symbols[right].len;
        let Some(pair) = text.get(start..start + size) else {
            return;
        };
        if let Some(&id) = self.token_to_id.get(pair) {
            let score = self.scores.get(id as usize).copied().unwrap_or(0.0);
            queue.push(Bigram {
                score,
                left,
                right,
                size,
            });
        }
    }
}

fn id_u32(id: usize) -> Result<u32> {
    u32::try_from(id).map_err(|_| Error::InvalidField {
        source_name: "gguf".into(),
        field: "tokenizer.ggml.tokens".into(),
        message: format!("more than {} tokens", u32::MAX),
    })
}

enum Fragment<'t> {
    Text(&'t str),
    Token(u32),
}

/// One symbol of the linked list: a byte range of the fragment (`len == 0`: merged away).
#[derive(Debug, Clone, Copy)]
struct Symbol {
    start: usize,
    len: usize,
    prev: Option<usize>,
    next: Option<usize>,
}

/// A candidate merge of two adjacent symbols.
#[derive(Debug, Clone, Copy)]
struct Bigram {
    score: f32,
    left: usize,
    right: usize,
    size: usize,
}

impl Ord for Bigram {
    /// Max-heap order: the higher score is greater; on equal scores the leftmost pair is greater.
    fn cmp(&self, other: &Self) -> Ordering {
        self.score
            .total_cmp(&other.score)
            .then_with(|| other.left.cmp(&self.left))
    }
}

impl PartialOrd for Bigram {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl PartialEq for Bigram {
    fn eq(&self, other: &Self) -> bool {
        self.cmp(other) == Ordering::Equal
    }
}

impl Eq for Bigram {}

#[cfg(test)]
mod tests {
    use super::*;

    fn model(tokens: &[(&str, f32)], add_space_prefix: bool) -> SpmModel {
        let texts: Vec<String> = tokens.iter().map(|(t, _)| (*t).to_string()).collect();
        let scores: Vec<f32> = tokens.iter().map(|(_, s)| *s).collect();
        let kinds = vec![PartitionKind::None; texts.len()];
        SpmModel::new(&texts, Some(&scores), &kinds, None, add_space_prefix).unwrap()
    }

    #[test]
    fn merges_follow_scores_not_position() {
        // "abc": both "ab" and "bc" are tokens; "bc" scores higher, so it wins.
        let m = model(
            &[
                ("a", 0.0),
                ("b", 0.0),
                ("c", 0.0),
                ("ab", -2.0),
                ("bc", -1.0),
            ],
            false,
        );
        let mut out = Vec::new();
        m.encode("abc", false, &mut out).unwrap();
        assert_eq!(out, vec![0, 4]);
    }

    #[test]
    fn equal_scores_merge_leftmost_first() {
        let m = model(
            &[
                ("a", 0.0),
                ("b", 0.0),
                ("c", 0.0),
                ("ab", -1.0),
                ("bc", -1.0),
            ],
            false,
        );
        let mut out = Vec::new();
        m.encode("abc", false, &mut out).unwrap();
        assert_eq!(out, vec![3, 2]);
    }

    #[test]
    fn missing_byte_without_unk_is_an_error() {
        let m = model(&[("a", 0.0)], false);
        let mut out = Vec::new();
        let err = m.encode("aé", false, &mut out).unwrap_err();
        assert!(matches!(err, Error::ByteNotInVocab { byte: 0xC3 }), "{err}");
    }
}
