//! llama.cpp's GBNF, translated to llguidance's Lark syntax.
//!
//! llama-server's `grammar` field takes GBNF (`root ::= "yes" | "no"`).
//! llguidance reads Lark; its Rust crate has no GBNF front end, but the two
//! describe the same context-free grammars, so a GBNF text is translated
//! token by token rather than compiled by a second grammar engine:
//!
//! * `name ::= ...` becomes `name: ...` on one line (a rule ends where the
//!   next `name ::=` starts; newlines, whitespace and `#` comments go);
//!   names get Lark's form (lower case, `_` for `-`, made unique), and
//!   `start: root` is added;
//! * `"..."` literals are decoded (`\n`, `\xHH`, `\uHHHH`, ...) and written
//!   as JSON strings, which Lark reads;
//! * `[a-z]`, `[^"\\]` become regular expressions with every character
//!   escaped as `\x{H}`, and `.` becomes `/(?s:.)/` (any character);
//! * `( | ) * + ?`, `{m}`, `{m,}`, `{m,n}` and token references `<...>`
//!   mean the same in both and are kept.

use std::collections::HashMap;
use std::fmt::Write;

/// One GBNF token.
#[derive(Debug, PartialEq)]
enum Tok {
    Name(String),
    Define,
    /// A decoded literal.
    Literal(String),
    /// A decoded character class: negated, ranges.
    Class(bool, Vec<(char, char)>),
    Any,
    /// Punctuation and repetition kept as written: `( ) | * + ?`, `{m,n}`,
    /// `<...>`.
    Keep(String),
}

/// Translates a GBNF grammar; errors say where it is malformed.
pub fn to_lark(gbnf: &str) -> Result<String, String> {
    let toks = lex(gbnf)?;
    let mut names: HashMap<&str, String> = HashMap::new();
    let mut taken: Vec<String> = vec!["start".into()];
    for t in &toks {
        if let Tok::Name(n) = t
            && !names.contains_key(n.as_str())
        {
            let mut base: String = n
                .chars()
                .map(|c| {
                    if c == '-' {
                        '_'
                    } else {
                        c.to_ascii_lowercase()
                    }
                })
                .collect();
            if !base.starts_with(|c: char| c.is_ascii_lowercase()) {
                base.insert_str(0, "r_");
            }
            let mut unique = base.clone();
            let mut k = 2;
            while taken.contains(&unique) {
                unique = format!("{base}_{k}");
                k += 1;
            }
            taken.push(unique.clone());
            names.insert(n, unique);
        }
    }
    let mut out = String::new();
    let mut defined = Vec::new();
    let mut i = 0;
    while i < toks.len() {
        let (Tok::Name(name), Some(Tok::Define)) = (&toks[i], toks.get(i + 1)) else {
            return Err(format!(
                "GBNF: expected a rule (`name ::= ...`) at {:?}",
                toks[i]
            ));
        };
        defined.push(name.as_str());
        let _ = write!(out, "{}:", names[name.as_str()]);
        i += 2;
        let mut empty = true;
        while i < toks.len()
            && !(matches!(toks[i], Tok::Name(_)) && toks.get(i + 1) == Some(&Tok::Define))
        {
            if toks[i] == Tok::Define {
                return Err(format!(
                    "GBNF: `::=` without a rule name in the rule for `{name}`"
                ));
            }
            out.push(' ');
            write_tok(&mut out, &toks[i], &names);
            empty = false;
            i += 1;
        }
        if empty {
            out.push_str(" \"\"");
        }
        out.push('\n');
    }
    if !defined.contains(&"root") {
        return Err("GBNF: the grammar has no `root` rule".into());
    }
    let _ = writeln!(out, "start: {}", names["root"]);
    Ok(out)
}

fn write_tok(out: &mut String, t: &Tok, names: &HashMap<&str, String>) {
    match t {
        Tok::Name(n) => out.push_str(&names[n.as_str()]),
        Tok::Define => {}
        Tok::Literal(s) => out.push_str(&serde_json::Value::from(s.as_str()).to_string()),
        Tok::Class(negated, ranges) => {
            out.push_str(if *negated { "/[^" } else { "/[" });
            for &(a, b) in ranges {
                let _ = write!(out, "\\x{{{:x}}}", a as u32);
                if b != a {
                    let _ = write!(out, "-\\x{{{:x}}}", b as u32);
                }
            }
            out.push_str("]/");
        }
        Tok::Any => out.push_str("/(?s:.)/"),
        Tok::Keep(s) => out.push_str(s),
    }
}

fn lex(src: &str) -> Result<Vec<Tok>, String> {
    let chars: Vec<char> = src.chars().collect();
    let mut toks = Vec::new();
    let mut i = 0;
    let at = |i: usize| {
        let line = chars[..i.min(chars.len())]
            .iter()
            .filter(|&&c| c == '\n')
            .count()
            + 1;
        format!("line {line}")
    };
    while i < chars.len() {
        let c = chars[i];
        match c {
            _ if c.is_whitespace() => i += 1,
            '#' => {
                while i < chars.len() && chars[i] != '\n' {
                    i += 1;
                }
            }
            ':' if chars[i..].starts_with(&[':', ':', '=']) => {
                toks.push(Tok::Define);
                i += 3;
            }
            '"' => {
                let mut s = String::new();
                i += 1;
                loop {
                    match chars.get(i) {
                        None => return Err(format!("GBNF: unterminated string ({})", at(i))),
                        Some('"') => break,
                        Some('\\') => {
                            let (ch, next) =
                                escape(&chars, i).map_err(|e| format!("{e} ({})", at(i)))?;
                            s.push(ch);
                            i = next;
                        }
                        Some(&ch) => {
                            s.push(ch);
                            i += 1;
                        }
                    }
                }
                i += 1;
                toks.push(Tok::Literal(s));
            }
            '[' => {
                i += 1;
                let negated = chars.get(i) == Some(&'^');
                if negated {
                    i += 1;
                }
                let mut ranges = Vec::new();
                loop {
                    let lo = match chars.get(i) {
                        None => {
                            return Err(format!("GBNF: unterminated character class ({})", at(i)));
                        }
                        Some(']') => break,
                        Some('\\') => {
                            let (ch, next) =
                                escape(&chars, i).map_err(|e| format!("{e} ({})", at(i)))?;
                            i = next;
                            ch
                        }
                        Some(&ch) => {
                            i += 1;
                            ch
                        }
                    };
                    let mut hi = lo;
                    if chars.get(i) == Some(&'-') && chars.get(i + 1).is_some_and(|&c| c != ']') {
                        i += 1;
                        hi = match chars[i] {
                            '\\' => {
                                let (ch, next) =
                                    escape(&chars, i).map_err(|e| format!("{e} ({})", at(i)))?;
                                i = next;
                                ch
                            }
                            ch => {
                                i += 1;
                                ch
                            }
                        };
                    }
                    if hi < lo {
                        return Err(format!(
                            "GBNF: character range {lo:?}-{hi:?} is reversed ({})",
                            at(i)
                        ));
                    }
                    ranges.push((lo, hi));
                }
                i += 1;
                if ranges.is_empty() {
                    return Err(format!("GBNF: empty character class ({})", at(i)));
                }
                toks.push(Tok::Class(negated, ranges));
            }
            '.' => {
                toks.push(Tok::Any);
                i += 1;
            }
            '(' | ')' | '|' | '*' | '+' | '?' => {
                toks.push(Tok::Keep(c.to_string()));
                i += 1;
            }
            '{' => {
                let end = chars[i..].iter().position(|&c| c == '}').map(|p| i + p);
                let Some(end) = end else {
                    return Err(format!("GBNF: unterminated repetition ({})", at(i)));
                };
                let inner: String = chars[i + 1..end]
                    .iter()
                    .filter(|c| !c.is_whitespace())
                    .collect();
                let valid = !inner.is_empty()
                    && inner.chars().all(|c| c.is_ascii_digit() || c == ',')
                    && inner.matches(',').count() <= 1;
                if !valid {
                    return Err(format!("GBNF: bad repetition {{{inner}}} ({})", at(i)));
                }
                let inner = if inner.starts_with(',') {
                    format!("0{inner}")
                } else {
                    inner
                };
                if inner == "0" || inner.ends_with(",0") {
                    return Err(format!("GBNF: a repetition of at most 0 ({})", at(i)));
                }
                toks.push(Tok::Keep(format!("{{{inner}}}")));
                i = end + 1;
            }
            '<' => {
                let end = chars[i..].iter().position(|&c| c == '>').map(|p| i + p);
                let Some(end) = end else {
                    return Err(format!("GBNF: unterminated token reference ({})", at(i)));
                };
                toks.push(Tok::Keep(chars[i..=end].iter().collect()));
                i = end + 1;
            }
            _ if c.is_ascii_alphanumeric() || c == '-' => {
                let start = i;
                while i < chars.len() && (chars[i].is_ascii_alphanumeric() || chars[i] == '-') {
                    i += 1;
                }
                toks.push(Tok::Name(chars[start..i].iter().collect()));
            }
            _ => return Err(format!("GBNF: unexpected {c:?} ({})", at(i))),
        }
    }
    Ok(toks)
}

/// The character escaped at `chars[i]` (a backslash) and where the text
/// goes on.
fn escape(chars: &[char], i: usize) -> Result<(char, usize), String> {
    let Some(&c) = chars.get(i + 1) else {
        return Err("GBNF: a backslash at the end".into());
    };
    let hex = |n: usize| -> Result<(char, usize), String> {
        let digits: String = chars
            .get(i + 2..i + 2 + n)
            .map(|d| d.iter().collect())
            .unwrap_or_default();
        u32::from_str_radix(&digits, 16)
            .ok()
            .filter(|_| digits.len() == n)
            .and_then(char::from_u32)
            .map(|ch| (ch, i + 2 + n))
            .ok_or_else(|| format!("GBNF: bad escape \\{c}{digits}"))
    };
    match c {
        'n' => Ok(('\n', i + 2)),
        'r' => Ok(('\r', i + 2)),
        't' => Ok(('\t', i + 2)),
        'x' => hex(2),
        'u' => hex(4),
        'U' => hex(8),
        other => Ok((other, i + 2)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn translates_rules_literals_classes_and_repetitions() {
        let gbnf = "# answers\nroot ::= answer ws-tail\nanswer ::= (\"yes\" | \"no\\n\")\n  [a-z0-9_-]{2,4} [^\"\\\\]* .\nws-tail ::= [ \\t]? \"\\x41\"{1,}\n";
        let lark = to_lark(gbnf).unwrap();
        assert_eq!(
            lark,
            "root: answer ws_tail\n\
             answer: ( \"yes\" | \"no\\n\" ) /[\\x{61}-\\x{7a}\\x{30}-\\x{39}\\x{5f}\\x{2d}]/ {2,4} /[^\\x{22}\\x{5c}]/ * /(?s:.)/\n\
             ws_tail: /[\\x{20}\\x{9}]/ ? \"A\" {1,}\n\
             start: root\n"
        );
    }

    #[test]
    fn names_become_unique_lark_names() {
        let lark =
            to_lark("root ::= start Start s-1\nstart ::= \"a\"\nStart ::= \"b\"\ns-1 ::= \"c\"\n")
                .unwrap();
        assert!(lark.starts_with("root: start_2 start_3 s_1\n"), "{lark}");
        assert!(lark.ends_with("start: root\n"));
    }

    #[test]
    fn malformed_grammars_say_where() {
        for (gbnf, needle) in [
            ("root ::= \"open", "unterminated string"),
            ("root ::= [a-", "unterminated character class"),
            ("value ::= \"x\"", "no `root` rule"),
            ("root ::= x{2", "unterminated repetition"),
            ("root ::= \"a\"\n\"b\" ::= c", "without a rule name"),
            ("\"b\" ::= c", "expected a rule"),
            ("root ::= [z-a]", "reversed"),
        ] {
            let e = to_lark(gbnf).unwrap_err();
            assert!(e.contains(needle), "{gbnf:?}: {e}");
        }
    }
}
