//! Request errors in OpenAI's words.
//!
//! serde reports a bad field in Rust's terms (`invalid type: string "ten",
//! expected i64`, `data did not match any variant of untagged enum
//! Prompt`). A client wants what the OpenAI API says instead: the field, as
//! a path (`messages[0].content`), the JSON type it should have had and the
//! one it got — "Invalid type for 'max_tokens': expected an integer, but got
//! a string instead." This module turns one into the other. The expected
//! type comes from a table for the fields whose Rust type says little (the
//! string-or-array unions), else from serde's own `expected …` text; the
//! type that was sent is read from the request itself at the error's path.
//!
//! Range checks done after parsing use [`below_min`] and [`above_max`],
//! which word them as OpenAI does ("Invalid 'temperature': decimal above
//! maximum value. Expected a value <= 2, but got 3.5 instead.").

use std::fmt::Display;

use serde_json::Value;
use serde_path_to_error::{Path, Segment};

use crate::error::ApiError;

/// The client-facing error for a field serde could not read.
pub fn deserialize_error(path: &Path, inner: &str, request: &Value) -> ApiError {
    let mut param = path.to_string();
    if let Some(field) = missing_field(inner) {
        param = if param == "." {
            field.to_string()
        } else {
            format!("{param}.{field}")
        };
        return ApiError::invalid_param(&param, format!("Missing required parameter: '{param}'."))
            .with_code("missing_required_parameter");
    }
    let sent = value_at(request, path);
    let expected = expected_type(path, inner);
    let (message, code) = match sent {
        // The right JSON type, but a value the field cannot hold (a negative
        // count, a number too large).
        Some(v) if inner.starts_with("invalid value") => (
            format!("Invalid value for '{param}': expected {expected}, but got {v} instead."),
            "invalid_value",
        ),
        Some(v) => (
            format!(
                "Invalid type for '{param}': expected {expected}, but got {} instead.",
                json_type(v)
            ),
            "invalid_type",
        ),
        None => (
            format!("Invalid value for '{param}': expected {expected}."),
            "invalid_value",
        ),
    };
    let err = ApiError::invalid(message).with_code(code);
    if param == "." {
        err
    } else {
        err.with_param(&param)
    }
}

/// `Invalid 'name': integer below minimum value. ...` (`integer` says
/// whether the field is an integer or a decimal one).
pub fn below_min(name: &str, integer: bool, min: impl Display, got: impl Display) -> ApiError {
    out_of_range(name, integer, "below minimum", ">=", min, got)
}

/// `Invalid 'name': decimal above maximum value. ...`
pub fn above_max(name: &str, integer: bool, max: impl Display, got: impl Display) -> ApiError {
    out_of_range(name, integer, "above maximum", "<=", max, got)
}

fn out_of_range(
    name: &str,
    integer: bool,
    what: &str,
    op: &str,
    limit: impl Display,
    got: impl Display,
) -> ApiError {
    let kind = if integer { "integer" } else { "decimal" };
    let code = match (integer, op) {
        (true, ">=") => "integer_below_min_value",
        (true, _) => "integer_above_max_value",
        (false, ">=") => "decimal_below_min_value",
        (false, _) => "decimal_above_max_value",
    };
    ApiError::invalid_param(
        name,
        format!(
            "Invalid '{name}': {kind} {what} value. Expected a value {op} {limit}, but got {got} instead."
        ),
    )
    .with_code(code)
}

/// The field named by serde's "missing field `x`".
fn missing_field(inner: &str) -> Option<&str> {
    inner
        .strip_prefix("missing field `")
        .and_then(|rest| rest.split('`').next())
}

/// What the request holds at `path`.
fn value_at<'a>(request: &'a Value, path: &Path) -> Option<&'a Value> {
    let mut v = request;
    for segment in path.iter() {
        v = match segment {
            Segment::Seq { index } => v.get(index)?,
            Segment::Map { key } => v.get(key)?,
            Segment::Enum { .. } | Segment::Unknown => return None,
        };
    }
    Some(v)
}

/// A JSON value's type as OpenAI's messages name it.
fn json_type(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// The JSON type the field at `path` takes.
fn expected_type(path: &Path, inner: &str) -> String {
    let segments: Vec<&Segment> = path.iter().collect();
    let last_key = segments.iter().rev().find_map(|s| match s {
        Segment::Map { key } => Some(key.as_str()),
        _ => None,
    });
    let ends_in_index = matches!(segments.last(), Some(Segment::Seq { .. }));
    let known = match (last_key, ends_in_index) {
        (Some("prompt"), false) => Some(
            "a string, an array of strings, an array of integers or an array of arrays of integers",
        ),
        (Some("stop"), false) => Some("a string or an array of strings"),
        (Some("stop"), true) => Some("a string"),
        (Some("content"), false) => Some("a string or an array of content parts"),
        (Some("content"), true) => Some("an object (a content part)"),
        (Some("messages"), false) => Some("an array of objects"),
        (Some("messages"), true) => Some("an object"),
        _ => None,
    };
    if let Some(known) = known {
        return known.to_string();
    }
    let rust = inner.rsplit("expected ").next().unwrap_or(inner).trim();
    let word = |w: &str| rust.split(|c: char| !c.is_alphanumeric()).any(|t| t == w);
    if ["u8", "u16", "u32", "u64", "usize"].iter().any(|t| word(t)) {
        "a non-negative integer".into()
    } else if ["i8", "i16", "i32", "i64", "isize", "integer"]
        .iter()
        .any(|t| word(t))
    {
        "an integer".into()
    } else if ["f32", "f64"].iter().any(|t| word(t)) {
        "a number".into()
    } else if word("boolean") {
        "a boolean".into()
    } else if word("string") || word("char") {
        "a string".into()
    } else if word("sequence") {
        "an array".into()
    } else if word("map") || word("struct") {
        "an object".into()
    } else {
        rust.to_string()
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;
    use serde_json::json;

    use super::*;

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Body {
        max_tokens: Option<i64>,
        top_k: Option<u32>,
        temperature: Option<f32>,
        stream: Option<bool>,
        messages: Option<Vec<Message>>,
    }

    #[derive(Deserialize, Debug)]
    #[allow(dead_code)]
    struct Message {
        role: String,
    }

    fn error(v: Value) -> ApiError {
        let e = serde_path_to_error::deserialize::<_, Body>(&v).expect_err("must fail");
        deserialize_error(e.path(), &e.inner().to_string(), &v)
    }

    #[test]
    fn names_field_and_types_in_openai_words() {
        let e = error(json!({"max_tokens": "ten"}));
        assert_eq!(
            e.message,
            "Invalid type for 'max_tokens': expected an integer, but got a string instead."
        );
        assert_eq!(
            (e.param.as_deref(), e.code),
            (Some("max_tokens"), Some("invalid_type"))
        );
        let e = error(json!({"temperature": true}));
        assert_eq!(
            e.message,
            "Invalid type for 'temperature': expected a number, but got a boolean instead."
        );
        let e = error(json!({"stream": 1}));
        assert_eq!(
            e.message,
            "Invalid type for 'stream': expected a boolean, but got an integer instead."
        );
        let e = error(json!({"top_k": -3}));
        assert_eq!(
            e.message,
            "Invalid value for 'top_k': expected a non-negative integer, but got -3 instead."
        );
        let e = error(json!({"messages": "hi"}));
        assert_eq!(
            e.message,
            "Invalid type for 'messages': expected an array of objects, but got a string instead."
        );
        let e = error(json!({"messages": [{"role": "user"}, {"content": "x"}]}));
        assert_eq!(e.message, "Missing required parameter: 'messages[1].role'.");
        assert_eq!(e.param.as_deref(), Some("messages[1].role"));
        assert_eq!(e.code, Some("missing_required_parameter"));
    }

    #[test]
    fn range_errors() {
        assert_eq!(
            above_max("temperature", false, 2, 3.5).message,
            "Invalid 'temperature': decimal above maximum value. Expected a value <= 2, but got 3.5 instead."
        );
        let e = below_min("max_tokens", true, 1, 0);
        assert_eq!(
            e.message,
            "Invalid 'max_tokens': integer below minimum value. Expected a value >= 1, but got 0 instead."
        );
        assert_eq!(e.code, Some("integer_below_min_value"));
    }
}
