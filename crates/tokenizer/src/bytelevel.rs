//! The GPT-2 byte ↔ unicode map used by byte-level BPE vocabularies.
//!
//! Byte-level BPE stores every token as a string of "visible" characters: each byte of the
//! original UTF-8 text is mapped to one character. The 188 printable bytes `!`..=`~`,
//! `¡`..=`¬` and `®`..=`ÿ` map to the character with the same code point; the remaining 68 bytes
//! (controls, space, DEL, NBSP, soft hyphen, ...) map, in increasing byte order, to U+0100,
//! U+0101, ... So a space becomes `Ġ` (U+0120) and a newline `Ċ` (U+010A).

/// Highest code point produced by the map (U+0143), plus one.
const MAP_END: usize = 0x144;

/// Both directions of the map.
#[derive(Debug, Clone)]
pub(crate) struct ByteMap {
    /// Code point (< `MAP_END`) → byte, or `None` when the char is not produced by the map.
    char_to_byte: Vec<Option<u8>>,
}

impl ByteMap {
    pub(crate) fn new() -> Self {
        let mut char_to_byte = vec![None; MAP_END];
        let mut next_extra = 256usize;
        for b in 0..=255u8 {
            let printable = matches!(b, b'!'..=b'~' | 0xA1..=0xAC | 0xAE..=0xFF);
            let cp = if printable {
                usize::from(b)
            } else {
                let cp = next_extra;
                next_extra += 1;
                cp
            };
            char_to_byte[cp] = Some(b);
        }
        ByteMap { char_to_byte }
    }

    /// The byte a map character stands for.
    pub(crate) fn byte_of(&self, c: char) -> Option<u8> {
        self.char_to_byte.get(c as usize).copied().flatten()
    }

    /// Decodes a byte-level token string into raw bytes. As the `tokenizers` ByteLevel decoder
    /// does, a token containing any character outside the map is taken verbatim (its UTF-8
    /// bytes).
    pub(crate) fn decode_token(&self, token: &str) -> Vec<u8> {
        let mut out = Vec::with_capacity(token.len());
        for c in token.chars() {
            match self.byte_of(c) {
                Some(b) => out.push(b),
                None => return token.as_bytes().to_vec(),
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn well_known_entries() {
        let m = ByteMap::new();
        assert_eq!(m.byte_of('Ġ'), Some(b' '));
        assert_eq!(m.byte_of('Ċ'), Some(b'\n'));
        assert_eq!(m.byte_of('ĉ'), Some(b'\t'));
        assert_eq!(m.byte_of('A'), Some(b'A'));
        assert_eq!(m.byte_of('Ā'), Some(0x00));
        assert_eq!(m.byte_of('ł'), Some(0xA0));
        assert_eq!(m.byte_of('Ń'), Some(0xAD));
        assert_eq!(m.byte_of('ń'), None);
        assert_eq!(m.byte_of(' '), None);
        assert_eq!(m.decode_token("ĠHello"), b" Hello".to_vec());
        assert_eq!(m.decode_token("Ã©"), "é".as_bytes().to_vec());
        // Outside the map: verbatim.
        assert_eq!(m.decode_token("a b"), b"a b".to_vec());
    }

    #[test]
    fn map_is_a_bijection_on_bytes() {
        let m = ByteMap::new();
        let mut seen = [false; 256];
        for cp in 0..MAP_END {
            if let Some(b) = m.char_to_byte[cp] {
                assert!(!seen[usize::from(b)]);
                seen[usize::from(b)] = true;
            }
        }
        assert!(seen.iter().all(|&s| s));
    }
}
