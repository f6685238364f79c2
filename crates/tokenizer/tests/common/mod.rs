//! Shared test helpers: fixture locations, JSON loading, and a tiny GGUF metadata reader (test
//! only; the real reader lives in `bitnet-gguf`, which this crate must not depend on).
#![allow(dead_code)]

#[path = "../../../../test-support/fixtures.rs"]
mod fixtures;
#[allow(unused_imports)] // each test binary uses some of them
pub use fixtures::{repo_fixtures, shared_fixtures, shared_fixtures_dir};

use std::collections::HashMap;
use std::path::Path;

use bitnet_tokenizer::GgufVocab;

pub fn read_json(path: &Path) -> serde_json::Value {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_slice(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

pub fn ids(v: &serde_json::Value) -> Vec<u32> {
    v.as_array()
        .expect("id list")
        .iter()
        .map(|x| u32::try_from(x.as_u64().expect("id")).expect("u32 id"))
        .collect()
}

/// A GGUF metadata value.
#[derive(Debug, Clone, PartialEq)]
pub enum Value {
    U64(u64),
    I64(i64),
    F64(f64),
    Bool(bool),
    Str(String),
    Array(Vec<Value>),
}

impl Value {
    fn as_str(&self) -> Option<&str> {
        match self {
            Value::Str(s) => Some(s),
            _ => None,
        }
    }
    fn as_u32(&self) -> Option<u32> {
        match self {
            Value::U64(v) => u32::try_from(*v).ok(),
            Value::I64(v) => u32::try_from(*v).ok(),
            _ => None,
        }
    }
    fn as_i32(&self) -> Option<i32> {
        match self {
            Value::U64(v) => i32::try_from(*v).ok(),
            Value::I64(v) => i32::try_from(*v).ok(),
            _ => None,
        }
    }
    fn as_bool(&self) -> Option<bool> {
        match self {
            Value::Bool(b) => Some(*b),
            _ => None,
        }
    }
    fn as_array(&self) -> Option<&[Value]> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }
}

struct Reader<'a> {
    buf: &'a [u8],
    pos: usize,
}

impl Reader<'_> {
    fn take(&mut self, n: usize) -> Result<&[u8], String> {
        let end = self.pos.checked_add(n).ok_or("overflow")?;
        let s = self
            .buf
            .get(self.pos..end)
            .ok_or("unexpected end of file")?;
        self.pos = end;
        Ok(s)
    }
    fn u32(&mut self) -> Result<u32, String> {
        Ok(u32::from_le_bytes(
            self.take(4)?.try_into().map_err(|_| "u32")?,
        ))
    }
    fn u64(&mut self) -> Result<u64, String> {
        Ok(u64::from_le_bytes(
            self.take(8)?.try_into().map_err(|_| "u64")?,
        ))
    }
    fn string(&mut self) -> Result<String, String> {
        let n = usize::try_from(self.u64()?).map_err(|_| "string length")?;
        String::from_utf8(self.take(n)?.to_vec()).map_err(|e| e.to_string())
    }
    fn value(&mut self, ty: u32) -> Result<Value, String> {
        let le = |b: &[u8]| -> [u8; 8] {
            let mut a = [0u8; 8];
            a[..b.len()].copy_from_slice(b);
            a
        };
        Ok(match ty {
            0 => Value::U64(u64::from(self.take(1)?[0])),
            1 => Value::I64(i64::from(self.take(1)?[0] as i8)),
            2 => Value::U64(u64::from_le_bytes(le(self.take(2)?))),
            3 => Value::I64(i64::from(i16::from_le_bytes(
                self.take(2)?.try_into().map_err(|_| "i16")?,
            ))),
            4 => Value::U64(u64::from(self.u32()?)),
            5 => Value::I64(i64::from(self.u32()? as i32)),
            6 => Value::F64(f64::from(f32::from_bits(self.u32()?))),
            7 => Value::Bool(self.take(1)?[0] != 0),
            8 => Value::Str(self.string()?),
            9 => {
                let elem = self.u32()?;
                let n = self.u64()?;
                let mut items = Vec::new();
                for _ in 0..n {
                    items.push(self.value(elem)?);
                }
                Value::Array(items)
            }
            10 => Value::U64(self.u64()?),
            11 => Value::I64(self.u64()? as i64),
            12 => Value::F64(f64::from_bits(self.u64()?)),
            other => return Err(format!("unknown GGUF value type {other}")),
        })
    }
}

/// Reads the key/value metadata of a GGUF (v2/v3) file.
pub fn read_gguf_metadata(path: &Path) -> HashMap<String, Value> {
    let buf = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    parse_metadata(&buf).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn parse_metadata(buf: &[u8]) -> Result<HashMap<String, Value>, String> {
    let mut r = Reader { buf, pos: 0 };
    if r.take(4)? != b"GGUF" {
        return Err("not a GGUF file".into());
    }
    let version = r.u32()?;
    if version < 2 {
        return Err(format!("GGUF v{version} is not supported"));
    }
    let _n_tensors = r.u64()?;
    let n_kv = r.u64()?;
    let mut kv = HashMap::new();
    for _ in 0..n_kv {
        let key = r.string()?;
        let ty = r.u32()?;
        kv.insert(key, r.value(ty)?);
    }
    Ok(kv)
}

/// Fills a [`GgufVocab`] from GGUF metadata, as the model layer does.
pub fn gguf_vocab(kv: &HashMap<String, Value>) -> GgufVocab {
    let str_list = |key: &str| -> Option<Vec<String>> {
        kv.get(key).and_then(Value::as_array).map(|a| {
            a.iter()
                .map(|v| v.as_str().expect("string element").to_string())
                .collect()
        })
    };
    let u32_of = |key: &str| kv.get(key).and_then(Value::as_u32);
    GgufVocab {
        model: kv
            .get("tokenizer.ggml.model")
            .and_then(Value::as_str)
            .expect("tokenizer.ggml.model")
            .to_string(),
        pre: kv
            .get("tokenizer.ggml.pre")
            .and_then(Value::as_str)
            .map(str::to_string),
        tokens: str_list("tokenizer.ggml.tokens").expect("tokenizer.ggml.tokens"),
        token_types: kv
            .get("tokenizer.ggml.token_type")
            .and_then(Value::as_array)
            .map(|a| a.iter().map(|v| v.as_i32().expect("i32")).collect()),
        merges: str_list("tokenizer.ggml.merges"),
        scores: kv
            .get("tokenizer.ggml.scores")
            .and_then(Value::as_array)
            .map(|a| {
                a.iter()
                    .map(|v| match v {
                        Value::F64(f) => *f as f32,
                        other => panic!("score {other:?}"),
                    })
                    .collect()
            }),
        bos_id: u32_of("tokenizer.ggml.bos_token_id"),
        eos_id: u32_of("tokenizer.ggml.eos_token_id"),
        eot_id: u32_of("tokenizer.ggml.eot_token_id"),
        unk_id: u32_of("tokenizer.ggml.unknown_token_id"),
        pad_id: u32_of("tokenizer.ggml.padding_token_id"),
        add_bos: kv
            .get("tokenizer.ggml.add_bos_token")
            .and_then(Value::as_bool),
        add_space_prefix: kv
            .get("tokenizer.ggml.add_space_prefix")
            .and_then(Value::as_bool),
        chat_template: kv
            .get("tokenizer.chat_template")
            .and_then(Value::as_str)
            .map(str::to_string),
    }
}

pub fn gguf_vocab_from_file(path: &Path) -> GgufVocab {
    gguf_vocab(&read_gguf_metadata(path))
}
