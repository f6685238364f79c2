//! Chat templates: Jinja, rendered with `minijinja` the way Hugging Face `transformers` renders
//! them.
//!
//! `transformers` compiles chat templates in a sandboxed Jinja2 environment with `trim_blocks`
//! and `lstrip_blocks`, the loop-controls extension (`break`/`continue`), a `raise_exception`
//! global, a `tojson` filter that does not HTML-escape (`json.dumps(..., ensure_ascii=False)`)
//! and a `strftime_now` global. Templates are written against Python objects, so they call
//! string methods such as `.strip()`, `.startswith()` or `.upper()`; `minijinja-contrib`'s
//! `pycompat` callback supplies those. Undefined variables render as empty strings (Jinja2's
//! default, lenient undefined).

use minijinja::value::{Kwargs, Value};
use minijinja::{Environment, ErrorKind, UndefinedBehavior};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One chat message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChatMessage {
    /// `system`, `user`, `assistant`, ...
    pub role: String,
    /// The text.
    pub content: String,
}

impl ChatMessage {
    /// A message with the given role and content.
    pub fn new(role: impl Into<String>, content: impl Into<String>) -> ChatMessage {
        ChatMessage {
            role: role.into(),
            content: content.into(),
        }
    }
}

/// A compiled chat template. `Send + Sync`, cheap enough to clone.
#[derive(Clone)]
pub struct ChatTemplate {
    name: String,
    source: String,
    bos_token: String,
    eos_token: String,
    env: Environment<'static>,
}

impl std::fmt::Debug for ChatTemplate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChatTemplate")
            .field("name", &self.name)
            .field("bos_token", &self.bos_token)
            .field("eos_token", &self.eos_token)
            .finish_non_exhaustive()
    }
}

/// The most instructions one rendering may run. The 2B-4T and Llama 3
/// templates render a 500-message conversation well within it (a test says
/// so); a fuzzed template that builds large strings in loops is stopped in a
/// fraction of a second.
pub const TEMPLATE_FUEL: u64 = 2_000_000;

impl ChatTemplate {
    /// Compiles `source` (named `chat_template` in errors). `bos_token` and `eos_token` are the
    /// strings the template sees as `bos_token` / `eos_token`.
    pub fn new(source: &str, bos_token: &str, eos_token: &str) -> Result<ChatTemplate> {
        ChatTemplate::with_name("chat_template", source, bos_token, eos_token)
    }

    /// Like [`ChatTemplate::new`], with the name errors use (e.g.
    /// `"model/tokenizer_config.json:chat_template"`).
    pub fn with_name(
        name: &str,
        source: &str,
        bos_token: &str,
        eos_token: &str,
    ) -> Result<ChatTemplate> {
        let mut env = Environment::new();
        // Templates come from model files: a hostile one must not hang or
        // exhaust the engine (found by the chat_template fuzz target).
        env.set_fuel(Some(TEMPLATE_FUEL));
        env.set_trim_blocks(true);
        env.set_lstrip_blocks(true);
        env.set_keep_trailing_newline(false);
        env.set_undefined_behavior(UndefinedBehavior::Lenient);
        env.set_unknown_method_callback(minijinja_contrib::pycompat::unknown_method_callback);
        env.add_function("raise_exception", raise_exception);
        env.add_function("strftime_now", strftime_now);
        env.add_filter("tojson", tojson);
        env.add_template_owned(name.to_string(), source.to_string())
            .map_err(|e| Error::TemplateSyntax {
                name: name.to_string(),
                message: describe(&e),
            })?;
        Ok(ChatTemplate {
            name: name.to_string(),
            source: source.to_string(),
            bos_token: bos_token.to_string(),
            eos_token: eos_token.to_string(),
            env,
        })
    }

    /// The template's name, as used in errors.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The Jinja source.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Renders the conversation. Template variables: `messages` (a list of `{role, content}`),
    /// `add_generation_prompt`, `bos_token`, `eos_token`.
    pub fn render(&self, messages: &[ChatMessage], add_generation_prompt: bool) -> Result<String> {
        let render_err = |e: minijinja::Error| Error::TemplateRender {
            name: self.name.clone(),
            message: describe(&e),
        };
        let template = self.env.get_template(&self.name).map_err(render_err)?;
        template
            .render(minijinja::context! {
                messages => Value::from_serialize(messages),
                add_generation_prompt => add_generation_prompt,
                bos_token => self.bos_token.as_str(),
                eos_token => self.eos_token.as_str(),
            })
            .map_err(render_err)
    }
}

/// The error with its chain of causes (minijinja puts the template line in the display).
fn describe(e: &minijinja::Error) -> String {
    let mut msg = e.to_string();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        msg.push_str(": ");
        msg.push_str(&s.to_string());
        source = s.source();
    }
    msg
}

/// `raise_exception(message)`: aborts rendering with the message.
fn raise_exception(message: String) -> std::result::Result<Value, minijinja::Error> {
    Err(minijinja::Error::new(ErrorKind::InvalidOperation, message))
}

/// `tojson(value, indent=None)` as Python's `json.dumps(value, ensure_ascii=False,
/// indent=indent)`: `", "` and `": "` separators, no HTML escaping, non-ASCII kept.
fn tojson(value: Value, kwargs: Kwargs) -> std::result::Result<Value, minijinja::Error> {
    let indent: Option<usize> = kwargs.get("indent")?;
    let sort_keys: Option<bool> = kwargs.get("sort_keys")?;
    kwargs.assert_all_used()?;
    let to_err = |e: serde_json::Error| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "cannot serialize to JSON")
            .with_source(e)
    };
    // Keys keep their insertion order unless `sort_keys=true` (serde_json's map is sorted).
    let sorted_json = match sort_keys {
        Some(true) => Some(sorted(serde_json::to_value(&value).map_err(to_err)?)),
        _ => None,
    };
    let mut out = Vec::new();
    match (indent, &sorted_json) {
        (Some(n), sorted) => {
            let pad = vec![b' '; n];
            let fmt = serde_json::ser::PrettyFormatter::with_indent(&pad);
            let mut ser = serde_json::Serializer::with_formatter(&mut out, fmt);
            match sorted {
                Some(j) => serde::Serialize::serialize(j, &mut ser),
                None => serde::Serialize::serialize(&value, &mut ser),
            }
            .map_err(to_err)?;
        }
        (None, sorted) => {
            let mut ser = serde_json::Serializer::with_formatter(&mut out, PythonFormatter);
            match sorted {
                Some(j) => serde::Serialize::serialize(j, &mut ser),
                None => serde::Serialize::serialize(&value, &mut ser),
            }
            .map_err(to_err)?;
        }
    }
    let text = String::from_utf8(out).map_err(|_| {
        minijinja::Error::new(ErrorKind::InvalidOperation, "JSON output is not UTF-8")
    })?;
    Ok(Value::from_safe_string(text))
}

/// Sorts object keys recursively (explicitly: serde_json's map may keep insertion order when
/// another crate enables its `preserve_order` feature).
fn sorted(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(map) => {
            let mut entries: Vec<_> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            serde_json::Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        serde_json::Value::Array(items) => {
            serde_json::Value::Array(items.into_iter().map(sorted).collect())
        }
        other => other,
    }
}

/// Compact JSON with Python's default separators.
struct PythonFormatter;

impl serde_json::ser::Formatter for PythonFormatter {
    fn begin_array_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_key<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        first: bool,
    ) -> std::io::Result<()> {
        if first {
            Ok(())
        } else {
            writer.write_all(b", ")
        }
    }

    fn begin_object_value<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
    ) -> std::io::Result<()> {
        writer.write_all(b": ")
    }
}

/// `strftime_now(format)`: the current UTC time formatted with a strftime subset (`%Y %m %d %H
/// %M %S %y %j %B %b %h %A %a %p %I %e %F %T %D %%`; other directives are kept verbatim).
fn strftime_now(format: String) -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    strftime(&format, secs)
}

/// Formats a Unix timestamp (UTC).
pub(crate) fn strftime(format: &str, unix_secs: u64) -> String {
    const MONTHS: [&str; 12] = [
        "January",
        "February",
        "March",
        "April",
        "May",
        "June",
        "July",
        "August",
        "September",
        "October",
        "November",
        "December",
    ];
    const DAYS: [&str; 7] = [
        "Thursday",
        "Friday",
        "Saturday",
        "Sunday",
        "Monday",
        "Tuesday",
        "Wednesday",
    ];
    let days = unix_secs / 86_400;
    let rem = unix_secs % 86_400;
    let (hour, minute, second) = (rem / 3600, rem % 3600 / 60, rem % 60);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    let leap = (year % 4 == 0 && year % 100 != 0) || year % 400 == 0;
    let cumulative = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];
    let month_idx = (month - 1) as usize;
    let yday = cumulative[month_idx] + day + i64::from(leap && month > 2);
    let weekday = DAYS[(days % 7) as usize];
    let month_name = MONTHS[month_idx];
    let hour12 = if hour % 12 == 0 { 12 } else { hour % 12 };

    let mut out = String::with_capacity(format.len() + 16);
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let Some(d) = chars.next() else {
            out.push('%');
            break;
        };
        match d {
            'Y' => out.push_str(&year.to_string()),
            'y' => out.push_str(&format!("{:02}", year.rem_euclid(100))),
            'm' => out.push_str(&format!("{month:02}")),
            'd' => out.push_str(&format!("{day:02}")),
            'e' => out.push_str(&format!("{day:>2}")),
            'H' => out.push_str(&format!("{hour:02}")),
            'I' => out.push_str(&format!("{hour12:02}")),
            'M' => out.push_str(&format!("{minute:02}")),
            'S' => out.push_str(&format!("{second:02}")),
            'p' => out.push_str(if hour < 12 { "AM" } else { "PM" }),
            'j' => out.push_str(&format!("{yday:03}")),
            'B' => out.push_str(month_name),
            'b' | 'h' => out.push_str(&month_name[..3]),
            'A' => out.push_str(weekday),
            'a' => out.push_str(&weekday[..3]),
            'F' => out.push_str(&format!("{year}-{month:02}-{day:02}")),
            'T' => out.push_str(&format!("{hour:02}:{minute:02}:{second:02}")),
            'D' => out.push_str(&format!("{month:02}/{day:02}/{:02}", year.rem_euclid(100))),
            '%' => out.push('%'),
            other => {
                out.push('%');
                out.push(other);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strftime_known_dates() {
        // 2024-02-29 13:05:09 UTC, a Thursday.
        let t = 1_709_211_909;
        assert_eq!(strftime("%Y-%m-%d %H:%M:%S", t), "2024-02-29 13:05:09");
        assert_eq!(strftime("%d %b %Y", t), "29 Feb 2024");
        assert_eq!(
            strftime("%A %B %j %I%p %%", t),
            "Thursday February 060 01PM %"
        );
        assert_eq!(strftime("%F %T", 0), "1970-01-01 00:00:00");
        assert_eq!(strftime("%a %e %Q", 0), "Thu  1 %Q");
    }
}
