//! Metadata values and the ordered key/value table.

use std::collections::HashMap;
use std::fmt;

use crate::error::{Error, Result};

/// GGUF metadata value type ids (the `u32` written before each value).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Hash)]
#[repr(u32)]
pub enum ValueType {
    U8 = 0,
    I8 = 1,
    U16 = 2,
    I16 = 3,
    U32 = 4,
    I32 = 5,
    F32 = 6,
    Bool = 7,
    String = 8,
    Array = 9,
    U64 = 10,
    I64 = 11,
    F64 = 12,
}

impl ValueType {
    /// The type for an id read from a file, `None` for ids outside 0..=12.
    pub fn from_u32(id: u32) -> Option<ValueType> {
        use ValueType::*;
        Some(match id {
            0 => U8,
            1 => I8,
            2 => U16,
            3 => I16,
            4 => U32,
            5 => I32,
            6 => F32,
            7 => Bool,
            8 => String,
            9 => Array,
            10 => U64,
            11 => I64,
            12 => F64,
            _ => return None,
        })
    }

    /// The id written to files.
    pub fn id(self) -> u32 {
        self as u32
    }

    /// Lower-case name as used in messages (`u32`, `string`, `array`, ...).
    pub fn name(self) -> &'static str {
        use ValueType::*;
        match self {
            U8 => "u8",
            I8 => "i8",
            U16 => "u16",
            I16 => "i16",
            U32 => "u32",
            I32 => "i32",
            F32 => "f32",
            Bool => "bool",
            String => "string",
            Array => "array",
            U64 => "u64",
            I64 => "i64",
            F64 => "f64",
        }
    }

    /// Smallest number of bytes one value of this type occupies in a file. Used to reject counts
    /// that cannot fit in the remaining bytes before anything is allocated.
    pub(crate) fn min_encoded_size(self) -> u64 {
        use ValueType::*;
        match self {
            U8 | I8 | Bool => 1,
            U16 | I16 => 2,
            U32 | I32 | F32 => 4,
            U64 | I64 | F64 => 8,
            String => 8,
            Array => 12,
        }
    }

    fn is_integer(self) -> bool {
        use ValueType::*;
        matches!(self, U8 | I8 | U16 | I16 | U32 | I32 | U64 | I64)
    }
}

/// An array value. The declared element type is kept even for empty arrays so that a file can be
/// written back byte for byte.
#[derive(Clone, Debug, PartialEq)]
pub struct Array {
    pub elem_type: ValueType,
    pub values: Vec<Value>,
}

/// One metadata value.
#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    U8(u8),
    I8(i8),
    U16(u16),
    I16(i16),
    U32(u32),
    I32(i32),
    F32(f32),
    Bool(bool),
    String(String),
    Array(Array),
    U64(u64),
    I64(i64),
    F64(f64),
}

impl Value {
    /// The value's type id.
    pub fn value_type(&self) -> ValueType {
        match self {
            Value::U8(_) => ValueType::U8,
            Value::I8(_) => ValueType::I8,
            Value::U16(_) => ValueType::U16,
            Value::I16(_) => ValueType::I16,
            Value::U32(_) => ValueType::U32,
            Value::I32(_) => ValueType::I32,
            Value::F32(_) => ValueType::F32,
            Value::Bool(_) => ValueType::Bool,
            Value::String(_) => ValueType::String,
            Value::Array(_) => ValueType::Array,
            Value::U64(_) => ValueType::U64,
            Value::I64(_) => ValueType::I64,
            Value::F64(_) => ValueType::F64,
        }
    }

    /// The value as a signed 128-bit integer if it is of an integer type.
    pub fn as_i128(&self) -> Option<i128> {
        Some(match *self {
            Value::U8(v) => v.into(),
            Value::I8(v) => v.into(),
            Value::U16(v) => v.into(),
            Value::I16(v) => v.into(),
            Value::U32(v) => v.into(),
            Value::I32(v) => v.into(),
            Value::U64(v) => v.into(),
            Value::I64(v) => v.into(),
            _ => return None,
        })
    }

    /// The value as `f64` if it is a float or an integer.
    pub fn as_f64(&self) -> Option<f64> {
        match *self {
            Value::F32(v) => Some(v.into()),
            Value::F64(v) => Some(v),
            _ => self.as_i128().map(|v| v as f64),
        }
    }

    /// The string if this is a string value.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            Value::String(s) => Some(s),
            _ => None,
        }
    }

    /// The array if this is an array value.
    pub fn as_array(&self) -> Option<&Array> {
        match self {
            Value::Array(a) => Some(a),
            _ => None,
        }
    }

    /// Short description of the type for error messages, e.g. `string` or `array<i32>`.
    pub fn type_description(&self) -> String {
        match self {
            Value::Array(a) => format!("array<{}>", a.elem_type.name()),
            v => v.value_type().name().to_string(),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::U8(v) => write!(f, "{v}"),
            Value::I8(v) => write!(f, "{v}"),
            Value::U16(v) => write!(f, "{v}"),
            Value::I16(v) => write!(f, "{v}"),
            Value::U32(v) => write!(f, "{v}"),
            Value::I32(v) => write!(f, "{v}"),
            Value::F32(v) => write!(f, "{v}"),
            Value::Bool(v) => write!(f, "{v}"),
            Value::String(v) => write!(f, "{v:?}"),
            Value::U64(v) => write!(f, "{v}"),
            Value::I64(v) => write!(f, "{v}"),
            Value::F64(v) => write!(f, "{v}"),
            Value::Array(a) => {
                write!(f, "array<{}>[{}]", a.elem_type.name(), a.values.len())
            }
        }
    }
}

/// Ordered metadata table: iteration and writing follow insertion (file) order; lookups are
/// hashed.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Metadata {
    entries: Vec<(String, Value)>,
    index: HashMap<String, usize>,
}

fn type_error(key: &str, expected: &'static str, found: &Value) -> Error {
    Error::MetadataType {
        key: key.to_string(),
        expected,
        found: found.type_description(),
    }
}

impl Metadata {
    /// An empty table.
    pub fn new() -> Self {
        Self::default()
    }

    /// The value stored under `key`.
    pub fn get(&self, key: &str) -> Option<&Value> {
        self.index.get(key).map(|&i| &self.entries[i].1)
    }

    /// Whether `key` is present.
    pub fn contains_key(&self, key: &str) -> bool {
        self.index.contains_key(key)
    }

    /// Entries in insertion order.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &Value)> {
        self.entries.iter().map(|(k, v)| (k.as_str(), v))
    }

    /// Number of entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Replace the value of an existing key (keeping its position) or append a new entry.
    pub fn insert(&mut self, key: impl Into<String>, v: Value) {
        let key = key.into();
        match self.index.get(&key) {
            Some(&i) => self.entries[i].1 = v,
            None => {
                self.index.insert(key.clone(), self.entries.len());
                self.entries.push((key, v));
            }
        }
    }

    /// Remove an entry, returning its value. Later entries keep their relative order.
    pub fn remove(&mut self, key: &str) -> Option<Value> {
        let i = self.index.remove(key)?;
        let (_, v) = self.entries.remove(i);
        for idx in self.index.values_mut() {
            if *idx > i {
                *idx -= 1;
            }
        }
        Some(v)
    }

    /// Append a new entry; an existing key is an error (used by the reader).
    pub(crate) fn push_unique(&mut self, key: String, v: Value) -> Result<()> {
        if self.index.contains_key(&key) {
            return Err(Error::DuplicateKey { key });
        }
        self.index.insert(key.clone(), self.entries.len());
        self.entries.push((key, v));
        Ok(())
    }

    /// An unsigned integer; accepts every integer type holding a non-negative value.
    pub fn get_u64(&self, key: &str) -> Result<Option<u64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.as_i128().map(u64::try_from) {
            Some(Ok(x)) => Ok(Some(x)),
            Some(Err(_)) => Err(Error::MetadataType {
                key: key.to_string(),
                expected: "a non-negative integer",
                found: format!("{} value {v}", v.type_description()),
            }),
            None => Err(type_error(key, "an integer", v)),
        }
    }

    /// A signed integer; accepts every integer type whose value fits in `i64`.
    pub fn get_i64(&self, key: &str) -> Result<Option<i64>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v.as_i128().map(i64::try_from) {
            Some(Ok(x)) => Ok(Some(x)),
            Some(Err(_)) => Err(Error::MetadataType {
                key: key.to_string(),
                expected: "an integer that fits in i64",
                found: format!("{} value {v}", v.type_description()),
            }),
            None => Err(type_error(key, "an integer", v)),
        }
    }

    /// A float; accepts `f32`, `f64` (rounded) and integers (converted).
    pub fn get_f32(&self, key: &str) -> Result<Option<f32>> {
        let Some(v) = self.get(key) else {
            return Ok(None);
        };
        match v {
            Value::F32(x) => Ok(Some(*x)),
            other => match other.as_f64() {
                Some(x) => Ok(Some(x as f32)),
                None => Err(type_error(key, "a number", v)),
            },
        }
    }

    /// A boolean.
    pub fn get_bool(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Bool(b)) => Ok(Some(*b)),
            Some(v) => Err(type_error(key, "a bool", v)),
        }
    }

    /// A string.
    pub fn get_str(&self, key: &str) -> Result<Option<&str>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(v) => Err(type_error(key, "a string", v)),
        }
    }

    fn get_array(&self, key: &str, expected: &'static str) -> Result<Option<&Array>> {
        match self.get(key) {
            None => Ok(None),
            Some(Value::Array(a)) => Ok(Some(a)),
            Some(v) => Err(type_error(key, expected, v)),
        }
    }

    /// An array of strings.
    pub fn get_str_array(&self, key: &str) -> Result<Option<Vec<&str>>> {
        const EXPECTED: &str = "an array of strings";
        let Some(a) = self.get_array(key, EXPECTED)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(a.values.len());
        for v in &a.values {
            match v {
                Value::String(s) => out.push(s.as_str()),
                _ => {
                    return Err(Error::MetadataType {
                        key: key.to_string(),
                        expected: EXPECTED,
                        found: format!("array<{}>", a.elem_type.name()),
                    });
                }
            }
        }
        Ok(Some(out))
    }

    /// An array of integers of any integer element type, as `i64`.
    pub fn get_i64_array(&self, key: &str) -> Result<Option<Vec<i64>>> {
        const EXPECTED: &str = "an array of integers (fitting in i64)";
        let Some(a) = self.get_array(key, EXPECTED)? else {
            return Ok(None);
        };
        let bad = |found: String| Error::MetadataType {
            key: key.to_string(),
            expected: EXPECTED,
            found,
        };
        if !a.elem_type.is_integer() {
            return Err(bad(format!("array<{}>", a.elem_type.name())));
        }
        let mut out = Vec::with_capacity(a.values.len());
        for (i, v) in a.values.iter().enumerate() {
            match v.as_i128().map(i64::try_from) {
                Some(Ok(x)) => out.push(x),
                _ => return Err(bad(format!("element {i} = {v} ({})", v.type_description()))),
            }
        }
        Ok(Some(out))
    }

    /// An array of numbers (float or integer elements), as `f32`.
    pub fn get_f32_array(&self, key: &str) -> Result<Option<Vec<f32>>> {
        const EXPECTED: &str = "an array of numbers";
        let Some(a) = self.get_array(key, EXPECTED)? else {
            return Ok(None);
        };
        let mut out = Vec::with_capacity(a.values.len());
        for (i, v) in a.values.iter().enumerate() {
            match v {
                Value::F32(x) => out.push(*x),
                other => match other.as_f64() {
                    Some(x) => out.push(x as f32),
                    None => {
                        return Err(Error::MetadataType {
                            key: key.to_string(),
                            expected: EXPECTED,
                            found: format!("array<{}> (element {i})", a.elem_type.name()),
                        });
                    }
                },
            }
        }
        Ok(Some(out))
    }
}

impl<K: Into<String>> FromIterator<(K, Value)> for Metadata {
    fn from_iter<I: IntoIterator<Item = (K, Value)>>(iter: I) -> Self {
        let mut m = Metadata::new();
        for (k, v) in iter {
            m.insert(k, v);
        }
        m
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Metadata {
        let mut m = Metadata::new();
        m.insert("a.u8", Value::U8(7));
        m.insert("a.neg", Value::I32(-5));
        m.insert("a.big", Value::U64(u64::MAX));
        m.insert("a.f64", Value::F64(0.5));
        m.insert("a.str", Value::String("hi".into()));
        m.insert(
            "a.strs",
            Value::Array(Array {
                elem_type: ValueType::String,
                values: vec![Value::String("x".into()), Value::String("y".into())],
            }),
        );
        m.insert(
            "a.ints",
            Value::Array(Array {
                elem_type: ValueType::I16,
                values: vec![Value::I16(-3), Value::I16(4)],
            }),
        );
        m
    }

    #[test]
    fn typed_getters_convert_and_reject() {
        let m = sample();
        assert_eq!(m.get_u64("a.u8").unwrap(), Some(7));
        assert_eq!(m.get_u64("missing").unwrap(), None);
        assert_eq!(m.get_i64("a.neg").unwrap(), Some(-5));
        assert_eq!(m.get_f32("a.f64").unwrap(), Some(0.5));
        assert_eq!(m.get_f32("a.u8").unwrap(), Some(7.0));
        assert_eq!(m.get_str("a.str").unwrap(), Some("hi"));
        assert_eq!(m.get_str_array("a.strs").unwrap(), Some(vec!["x", "y"]));
        assert_eq!(m.get_i64_array("a.ints").unwrap(), Some(vec![-3, 4]));
        assert_eq!(m.get_f32_array("a.ints").unwrap(), Some(vec![-3.0, 4.0]));

        let e = m.get_u64("a.neg").unwrap_err();
        assert!(
            matches!(&e, Error::MetadataType { key, .. } if key == "a.neg"),
            "{e}"
        );
        assert_eq!(
            e.to_string(),
            "metadata key 'a.neg': expected a non-negative integer, found i32 value -5"
        );
        let e = m.get_i64("a.big").unwrap_err();
        assert!(e.to_string().contains("18446744073709551615"), "{e}");
        let e = m.get_str("a.u8").unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata key 'a.u8': expected a string, found u8"
        );
        let e = m.get_bool("a.strs").unwrap_err();
        assert_eq!(
            e.to_string(),
            "metadata key 'a.strs': expected a bool, found array<string>"
        );
        let e = m.get_i64_array("a.strs").unwrap_err();
        assert!(matches!(e, Error::MetadataType { ref found, .. } if found == "array<string>"));
        let e = m.get_str_array("a.ints").unwrap_err();
        assert!(matches!(e, Error::MetadataType { ref key, .. } if key == "a.ints"));
    }

    #[test]
    fn insert_replaces_in_place_and_remove_keeps_order() {
        let mut m = sample();
        m.insert("a.neg", Value::Bool(true));
        let keys: Vec<&str> = m.iter().map(|(k, _)| k).collect();
        assert_eq!(
            keys,
            [
                "a.u8", "a.neg", "a.big", "a.f64", "a.str", "a.strs", "a.ints"
            ]
        );
        assert_eq!(m.get_bool("a.neg").unwrap(), Some(true));
        assert_eq!(m.remove("a.big"), Some(Value::U64(u64::MAX)));
        assert_eq!(m.len(), 6);
        assert_eq!(m.get_str("a.str").unwrap(), Some("hi"));
        m.insert("z", Value::U8(1));
        assert_eq!(m.iter().last().map(|(k, _)| k), Some("z"));
        let e = m.push_unique("z".into(), Value::U8(2)).unwrap_err();
        assert_eq!(e.to_string(), "metadata key 'z' appears more than once");
    }
}
