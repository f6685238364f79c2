//! The Hugging Face `tokenizers` backend: loading `tokenizer.json` and its companion
//! configuration files, and encoding through the library.

use serde_json::Value;

use crate::bytelevel::ByteMap;
use crate::chat::ChatTemplate;
use crate::error::{Error, Result};
use crate::{Backend, Inner, LazyPlain, TokenInfo, Tokenizer};

/// End-of-turn tokens recognised by name when no explicit id is given.
pub(crate) const EOT_NAMES: &[&str] = &["<|eot_id|>", "<|im_end|>", "<end_of_turn>", "<|end|>"];

/// A `tokenizers` tokenizer plus a lazily made copy that leaves special tokens unparsed.
pub(crate) struct HfBackend {
    tok: Box<tokenizers::Tokenizer>,
    plain: LazyPlain,
}

impl HfBackend {
    pub(crate) fn new(mut tok: tokenizers::Tokenizer, file: &str) -> Result<HfBackend> {
        // We add BOS ourselves and never truncate or pad.
        tok.with_truncation(None).map_err(|e| Error::Hf {
            file: file.to_string(),
            message: e.to_string(),
        })?;
        tok.with_padding(None);
        tok.set_encode_special_tokens(false);
        Ok(HfBackend {
            tok: Box::new(tok),
            plain: LazyPlain::new(),
        })
    }

    pub(crate) fn encode(&self, text: &str, parse_special: bool, out: &mut Vec<u32>) -> Result<()> {
        let tok: &tokenizers::Tokenizer = if parse_special {
            &self.tok
        } else {
            self.plain.get_or_init(|| {
                let mut plain = (*self.tok).clone();
                plain.set_encode_special_tokens(true);
                Box::new(plain)
            })
        };
        let encoding = tok.encode_fast(text, false).map_err(|e| Error::Encode {
            message: e.to_string(),
        })?;
        out.extend_from_slice(encoding.get_ids());
        Ok(())
    }

    pub(crate) fn token_to_id(&self, text: &str) -> Option<u32> {
        self.tok.token_to_id(text)
    }
}

/// The files of a Hugging Face tokenizer: (name for messages, bytes).
pub(crate) struct HfFiles<'a> {
    pub(crate) tokenizer: (String, &'a [u8]),
    pub(crate) config: Option<(String, &'a [u8])>,
    pub(crate) special_tokens_map: Option<(String, &'a [u8])>,
    pub(crate) generation_config: Option<(String, &'a [u8])>,
}

/// How the tokenizer.json decoder turns token strings into text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum DecodeKind {
    /// GPT-2 byte map.
    ByteLevel,
    /// SentencePiece-style: `'▁'` is a space, `<0xNN>` is a byte; `strip` drops the prefix space.
    Metaspace { strip: bool },
    /// Token strings are the text.
    Raw,
}

fn parse_json(name: &str, bytes: &[u8]) -> Result<Value> {
    serde_json::from_slice(bytes).map_err(|source| Error::Json {
        file: name.to_string(),
        source,
    })
}

/// A token given as `"<s>"` or `{"content": "<s>", ...}` (or absent / null).
fn token_field(file: &str, json: &Value, key: &str) -> Result<Option<String>> {
    match json.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Object(o)) => match o.get("content") {
            Some(Value::String(s)) => Ok(Some(s.clone())),
            _ => Err(invalid(file, key, "object without a string `content`")),
        },
        Some(other) => Err(invalid(
            file,
            key,
            &format!("expected a string or an object, found {other}"),
        )),
    }
}

fn invalid(file: &str, field: &str, message: &str) -> Error {
    Error::InvalidField {
        source_name: file.to_string(),
        field: field.to_string(),
        message: message.to_string(),
    }
}

/// `chat_template` is a string or a list of `{name, template}` (the "default" one is used).
fn chat_template_field(file: &str, json: &Value) -> Result<Option<String>> {
    match json.get("chat_template") {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(Value::Array(list)) => {
            let mut first = None;
            for entry in list {
                let name = entry.get("name").and_then(Value::as_str);
                let template = entry.get("template").and_then(Value::as_str);
                let Some(template) = template else {
                    return Err(invalid(
                        file,
                        "chat_template",
                        "list entry without `template`",
                    ));
                };
                if name == Some("default") {
                    return Ok(Some(template.to_string()));
                }
                first.get_or_insert_with(|| template.to_string());
            }
            Ok(first)
        }
        Some(_) => Err(invalid(
            file,
            "chat_template",
            "expected a string or a list of {name, template}",
        )),
    }
}

/// `eos_token_id` as an integer or a list of integers.
fn id_list_field(file: &str, json: &Value, key: &str) -> Result<Vec<u32>> {
    let as_id = |v: &Value| {
        v.as_u64()
            .and_then(|n| u32::try_from(n).ok())
            .ok_or_else(|| invalid(file, key, &format!("not a token id: {v}")))
    };
    match json.get(key) {
        None | Some(Value::Null) => Ok(Vec::new()),
        Some(Value::Array(list)) => list.iter().map(as_id).collect(),
        Some(v) => Ok(vec![as_id(v)?]),
    }
}

fn decode_kind(tok: &tokenizers::Tokenizer) -> DecodeKind {
    let Some(decoder) = tok.get_decoder() else {
        return DecodeKind::Raw;
    };
    let Ok(json) = serde_json::to_value(decoder) else {
        return DecodeKind::Raw;
    };
    let parts: Vec<&Value> = match json.get("decoders").and_then(Value::as_array) {
        Some(list) => list.iter().collect(),
        None => vec![&json],
    };
    let ty = |v: &Value| {
        v.get("type")
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    if parts.iter().any(|p| ty(p) == "ByteLevel") {
        return DecodeKind::ByteLevel;
    }
    let mut spm = false;
    let mut strip = false;
    for p in &parts {
        match ty(p).as_str() {
            "Metaspace" => {
                spm = true;
                let scheme = p.get("prepend_scheme").and_then(Value::as_str);
                let add_prefix = p.get("add_prefix_space").and_then(Value::as_bool);
                strip |= scheme.map_or(add_prefix.unwrap_or(true), |s| s != "never");
            }
            "Replace" => {
                let pattern = p.get("pattern").and_then(|v| v.get("String"));
                if pattern.and_then(Value::as_str) == Some("▁") {
                    spm = true;
                }
            }
            "ByteFallback" => spm = true,
            "Strip" => {
                let start = p.get("start").and_then(Value::as_u64).unwrap_or(0);
                let content = p.get("content").and_then(Value::as_str);
                strip |= start > 0 && content == Some(" ");
            }
            _ => {}
        }
    }
    if spm {
        DecodeKind::Metaspace { strip }
    } else {
        DecodeKind::Raw
    }
}

/// `<0xNN>` → the byte.
pub(crate) fn parse_byte_token(text: &str) -> Option<u8> {
    let hex = text.strip_prefix("<0x")?.strip_suffix('>')?;
    if hex.len() != 2 {
        return None;
    }
    u8::from_str_radix(hex, 16).ok()
}

/// SentencePiece piece → bytes: `'▁'` → `' '`.
pub(crate) fn unescape_spm(text: &str) -> Vec<u8> {
    text.replace('▁', " ").into_bytes()
}

/// A `TemplateProcessing` post-processor (alone or in a `Sequence`) must
/// define every special token its templates name, and its single-text
/// template may only hold sequence `A`: the tokenizers crate checks both
/// when it builds one, but not when it reads one, and then panics while
/// encoding (found by fuzzing).
fn check_templates(processor: &serde_json::Value) -> std::result::Result<(), String> {
    match processor["type"].as_str() {
        Some("Sequence") => {
            for p in processor["processors"].as_array().into_iter().flatten() {
                check_templates(p)?;
            }
        }
        Some("TemplateProcessing") => {
            let defined = processor["special_tokens"].as_object();
            for (name, single) in [("single", true), ("pair", false)] {
                for piece in processor[name].as_array().into_iter().flatten() {
                    if let Some(id) = piece["SpecialToken"]["id"].as_str()
                        && !defined.is_some_and(|d| d.contains_key(id))
                    {
                        return Err(format!(
                            "post_processor's {name} template names the special token {id:?}, \
                             which its special_tokens do not define"
                        ));
                    }
                    if single && piece["Sequence"]["id"].as_str().is_some_and(|id| id != "A") {
                        return Err(
                            "post_processor's single template refers to a second sequence".into(),
                        );
                    }
                }
            }
        }
        _ => {}
    }
    Ok(())
}

/// Ids no token has that a vocabulary may leave between its tokens.
const MAX_ID_HOLES: usize = 1 << 20;

pub(crate) fn load(files: HfFiles<'_>) -> Result<Tokenizer> {
    let (tok_name, tok_bytes) = (&files.tokenizer.0, files.tokenizer.1);
    // The file must be JSON before the tokenizers crate sees it, and that
    // crate panics on some malformed files (an invalid `\u` escape or a key
    // that is not UTF-8 inside a decoder, both found by fuzzing). Parsing to
    // a value checks every string's escapes and UTF-8, which skipping does
    // not; any panic left is caught and reported as the file's error.
    let json =
        serde_json::from_slice::<serde_json::Value>(tok_bytes).map_err(|source| Error::Json {
            file: tok_name.clone(),
            source,
        })?;
    check_templates(&json["post_processor"]).map_err(|message| Error::Hf {
        file: tok_name.clone(),
        message,
    })?;
    let hf = std::panic::catch_unwind(|| tokenizers::Tokenizer::from_bytes(tok_bytes))
        .map_err(|panic| Error::Hf {
            file: tok_name.clone(),
            message: format!(
                "the tokenizers library cannot read it: {}",
                panic
                    .downcast_ref::<String>()
                    .map(String::as_str)
                    .or_else(|| panic.downcast_ref::<&str>().copied())
                    .unwrap_or("malformed")
            ),
        })?
        .map_err(|e| Error::Hf {
            file: tok_name.clone(),
            message: e.to_string(),
        })?;

    let config = match &files.config {
        Some((name, bytes)) => Some((name.as_str(), parse_json(name, bytes)?)),
        None => None,
    };
    let special_map = match &files.special_tokens_map {
        Some((name, bytes)) => Some((name.as_str(), parse_json(name, bytes)?)),
        None => None,
    };
    let generation = match &files.generation_config {
        Some((name, bytes)) => Some((name.as_str(), parse_json(name, bytes)?)),
        None => None,
    };

    // Per-id table.
    let added = hf.get_added_tokens_decoder();
    let vocab = hf.get_vocab(true);
    let n = vocab.values().max().map_or(0, |&m| m as usize + 1);
    // Ids index a table: a few holes are fine, an id far past the tokens
    // defined is a broken file (and would need gigabytes).
    if n > vocab.len() + MAX_ID_HOLES {
        return Err(Error::Hf {
            file: tok_name.clone(),
            message: format!(
                "token ids run up to {} but only {} tokens are defined",
                n - 1,
                vocab.len()
            ),
        });
    }
    let kind = decode_kind(&hf);
    let byte_map = ByteMap::new();
    let mut tokens: Vec<Option<TokenInfo>> = vec![None; n];
    for (text, &id) in &vocab {
        let slot = &mut tokens[id as usize];
        if slot.is_some() {
            continue;
        }
        let info = if let Some(a) = added.get(&id) {
            TokenInfo {
                text: a.content.clone(),
                bytes: a.content.as_bytes().to_vec(),
                special: a.special,
                added: true,
            }
        } else {
            let bytes = match kind {
                DecodeKind::ByteLevel => byte_map.decode_token(text),
                DecodeKind::Metaspace { .. } => match parse_byte_token(text) {
                    Some(b) => vec![b],
                    None => unescape_spm(text),
                },
                DecodeKind::Raw => text.as_bytes().to_vec(),
            };
            TokenInfo {
                text: text.clone(),
                bytes,
                special: false,
                added: false,
            }
        };
        *slot = Some(info);
    }

    let lookup = |file: &str, field: &str, content: Option<String>| -> Result<Option<u32>> {
        match content {
            None => Ok(None),
            Some(c) => hf.token_to_id(&c).map(Some).ok_or_else(|| {
                invalid(
                    file,
                    field,
                    &format!("token {c:?} is not in the vocabulary"),
                )
            }),
        }
    };
    // BOS/EOS strings: tokenizer_config.json, then special_tokens_map.json.
    let mut bos_text = None;
    let mut eos_text = None;
    let mut bos_id = None;
    let mut eos_id = None;
    for (file, json) in config.iter().chain(special_map.iter()) {
        if bos_id.is_none() {
            let t = token_field(file, json, "bos_token")?;
            bos_id = lookup(file, "bos_token", t.clone())?;
            bos_text = t;
        }
        if eos_id.is_none() {
            let t = token_field(file, json, "eos_token")?;
            eos_id = lookup(file, "eos_token", t.clone())?;
            eos_text = t;
        }
    }
    // What the post-processor adds to an empty input tells whether (and which) BOS it prepends.
    let post_ids = hf
        .encode_fast("", true)
        .map(|e| e.get_ids().to_vec())
        .unwrap_or_default();
    let post_first = post_ids
        .first()
        .copied()
        .filter(|id| added.get(id).is_some_and(|a| a.special));
    if bos_id.is_none()
        && let Some((file, json)) = &generation
    {
        bos_id = id_list_field(file, json, "bos_token_id")?.first().copied();
    }
    if bos_id.is_none() {
        bos_id = post_first;
    }
    let mut generation_eos = Vec::new();
    if let Some((file, json)) = &generation {
        generation_eos = id_list_field(file, json, "eos_token_id")?;
    }
    if eos_id.is_none() {
        eos_id = generation_eos.first().copied();
    }
    let add_bos = match config.as_ref().and_then(|(_, c)| c.get("add_bos_token")) {
        Some(Value::Bool(b)) => *b,
        Some(Value::Null) | None => bos_id.is_some() && post_first == bos_id,
        Some(other) => {
            let file = config.as_ref().map_or("tokenizer_config.json", |(f, _)| f);
            return Err(invalid(
                file,
                "add_bos_token",
                &format!("expected a boolean, found {other}"),
            ));
        }
    };
    let eot_id = EOT_NAMES.iter().find_map(|name| {
        hf.token_to_id(name)
            .filter(|id| added.get(id).is_some_and(|a| a.special))
    });
    let pad_id = match &config {
        Some((file, json)) => {
            let t = token_field(file, json, "pad_token")?;
            t.and_then(|t| hf.token_to_id(&t))
        }
        None => None,
    };
    let unk_id = match &config {
        Some((file, json)) => {
            let t = token_field(file, json, "unk_token")?;
            t.and_then(|t| hf.token_to_id(&t))
        }
        None => None,
    };

    let stop_ids = dedup(eos_id.into_iter().chain(eot_id).chain(generation_eos));

    for id in bos_id.iter().chain(&eos_id).chain(&stop_ids) {
        if tokens.get(*id as usize).is_none_or(Option::is_none) {
            let file = generation.as_ref().map_or(tok_name.as_str(), |(f, _)| f);
            return Err(invalid(
                file,
                "eos_token_id",
                &format!("token id {id} is not in the vocabulary"),
            ));
        }
    }

    let text_of = |id: Option<u32>| {
        id.and_then(|i| tokens.get(i as usize))
            .and_then(Option::as_ref)
            .map(|t| t.text.clone())
    };
    let bos_text = bos_text.or_else(|| text_of(bos_id)).unwrap_or_default();
    let eos_text = eos_text.or_else(|| text_of(eos_id)).unwrap_or_default();
    let (chat_template, chat_template_error) = match &config {
        Some((file, json)) => match chat_template_field(file, json)? {
            Some(src) => {
                let name = format!("{file}:chat_template");
                match ChatTemplate::with_name(&name, &src, &bos_text, &eos_text) {
                    Ok(t) => (Some(t), None),
                    Err(e) => (None, Some(e)),
                }
            }
            None => (None, None),
        },
        None => (None, None),
    };

    let strip_space_prefix = matches!(kind, DecodeKind::Metaspace { strip: true });
    let backend = HfBackend::new(hf, tok_name)?;
    Ok(Tokenizer::from_inner(Inner {
        source: tok_name.clone(),
        backend: Backend::Hf(backend),
        tokens,
        bos_id,
        eos_id,
        eot_id,
        unk_id,
        pad_id,
        add_bos,
        stop_ids,
        chat_template,
        chat_template_error,
        strip_space_prefix,
    }))
}

/// Removes duplicates, keeping the first occurrence.
pub(crate) fn dedup(ids: impl IntoIterator<Item = u32>) -> Vec<u32> {
    let mut out: Vec<u32> = Vec::new();
    for id in ids {
        if !out.contains(&id) {
            out.push(id);
        }
    }
    out
}
