//! The wire types: requests (lenient: optional fields, strings or parts,
//! nulls) and responses (strict: exactly OpenAI's fields).

use bitnet_engine::grammar::GrammarSpec;
use bitnet_engine::{GenerationParams, SamplerConfig};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::describe;
use crate::error::ApiError;
use crate::logprobs::{ChatLogprobs, TextLogprobs};

/// Parses a body into a JSON object.
pub fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    let value: Value = serde_json::from_slice(body).map_err(|e| {
        ApiError::invalid(format!(
            "We could not parse the JSON body of your request ({e}). The body must be a JSON object."
        ))
        .with_code("invalid_json")
    })?;
    if !value.is_object() {
        return Err(
            ApiError::invalid("The request body must be a JSON object.").with_code("invalid_json")
        );
    }
    Ok(value)
}

/// Reads a typed view of a JSON object; an error names the field and the
/// expected type in OpenAI's words (module `describe`).
pub fn from_value<'a, T: Deserialize<'a>>(value: &'a Value) -> Result<T, ApiError> {
    serde_path_to_error::deserialize(value)
        .map_err(|e| describe::deserialize_error(e.path(), &e.inner().to_string(), value))
}

/// `stop`: one string or a list.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Stop {
    /// One stop string.
    One(String),
    /// Several.
    Many(Vec<String>),
}

/// `stream_options`.
#[derive(Deserialize, Default)]
pub struct StreamOptions {
    /// Send a last chunk with the usage.
    #[serde(default)]
    pub include_usage: Option<bool>,
}

/// Fields every generation endpoint shares.
#[derive(Deserialize, Default)]
pub struct Common {
    pub model: Option<String>,
    pub stream: Option<bool>,
    pub stream_options: Option<StreamOptions>,
    pub max_tokens: Option<i64>,
    pub max_completion_tokens: Option<i64>,
    pub temperature: Option<f32>,
    pub top_p: Option<f32>,
    pub top_k: Option<u32>,
    pub min_p: Option<f32>,
    pub repeat_penalty: Option<f32>,
    pub presence_penalty: Option<f32>,
    pub frequency_penalty: Option<f32>,
    pub seed: Option<serde_json::Number>,
    pub stop: Option<Stop>,
    pub n: Option<i64>,
    pub ignore_eos: Option<bool>,
    pub logprobs: Option<Value>,
    pub top_logprobs: Option<Value>,
    pub logit_bias: Option<serde_json::Map<String, Value>>,
    pub best_of: Option<i64>,
    pub echo: Option<bool>,
    pub suffix: Option<String>,
    pub tools: Option<Vec<Value>>,
    pub response_format: Option<Value>,
    /// llama-server's grammar: GBNF, or llguidance's Lark syntax.
    pub grammar: Option<String>,
    /// llama-server's shorthand for a JSON-schema response format.
    pub json_schema: Option<Value>,
}

/// The most choices a request may ask for (OpenAI's limit).
pub const MAX_N: usize = 128;
/// The most alternatives a chat token's log-probability comes with.
pub const MAX_TOP_LOGPROBS: usize = 20;
/// The most alternatives a completion token's log-probability comes with.
pub const MAX_COMPLETION_LOGPROBS: usize = 5;

/// Which OpenAI endpoint a request came to (their fields differ).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Endpoint {
    /// `/v1/chat/completions`.
    Chat,
    /// `/v1/completions`.
    Completions,
}

fn wrong_type(name: &str, expected: &str, got: &Value) -> ApiError {
    let got = match got {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(n) if n.is_i64() || n.is_u64() => "an integer",
        Value::Number(_) => "a decimal number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    };
    ApiError::invalid_param(
        name,
        format!("Invalid type for '{name}': expected {expected}, but got {got} instead."),
    )
    .with_code("invalid_type")
}

/// An integer field within `lo..=hi`.
fn int_in(name: &str, v: &Value, lo: usize, hi: usize) -> Result<usize, ApiError> {
    let Some(i) = v.as_i64() else {
        return Err(wrong_type(name, "an integer", v));
    };
    if i < lo as i64 {
        return Err(describe::below_min(name, true, lo, i));
    }
    if i > hi as i64 {
        return Err(describe::above_max(name, true, hi, i));
    }
    Ok(i as usize)
}

/// `response_format`: `{"type": "text" | "json_object" | "json_schema"}`.
fn response_format(format: &Value) -> Result<Option<GrammarSpec>, ApiError> {
    let Some(object) = format.as_object() else {
        return Err(wrong_type("response_format", "an object", format));
    };
    let kind = match object.get("type") {
        Some(Value::String(kind)) => kind.as_str(),
        Some(v) => return Err(wrong_type("response_format.type", "a string", v)),
        None => {
            return Err(ApiError::invalid_param(
                "response_format.type",
                "Missing required parameter: 'response_format.type'.",
            )
            .with_code("missing_required_parameter"));
        }
    };
    match kind {
        "text" => Ok(None),
        // llama-server also takes a schema here.
        "json_object" => Ok(Some(match object.get("schema") {
            Some(schema) if !schema.is_null() => GrammarSpec::JsonSchema(schema.clone()),
            _ => GrammarSpec::JsonObject,
        })),
        "json_schema" => {
            let Some(json_schema) = object.get("json_schema").filter(|v| !v.is_null()) else {
                return Err(ApiError::invalid_param(
                    "response_format.json_schema",
                    "Missing required parameter: 'response_format.json_schema'.",
                )
                .with_code("missing_required_parameter"));
            };
            let Some(inner) = json_schema.as_object() else {
                return Err(wrong_type("response_format.json_schema", "an object", json_schema));
            };
            // Without a schema, any JSON object.
            Ok(Some(match inner.get("schema") {
                Some(schema) if !schema.is_null() => GrammarSpec::JsonSchema(schema.clone()),
                _ => GrammarSpec::JsonObject,
            }))
        }
        other => Err(ApiError::invalid_param(
            "response_format.type",
            format!(
                "Invalid value: '{other}'. Supported values are: 'text', 'json_object' and 'json_schema'."
            ),
        )
        .with_code("invalid_value")),
    }
}

/// Sampling defaults of an endpoint.
pub struct Defaults {
    /// Temperature when the request has none.
    pub temperature: f32,
}

impl Common {
    /// Whether to stream.
    pub fn stream(&self) -> bool {
        self.stream.unwrap_or(false)
    }

    /// Whether the stream ends with a usage chunk.
    pub fn include_usage(&self) -> bool {
        self.stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false)
    }

    /// The requested token limit, if any (`max_completion_tokens` wins).
    pub fn max_tokens(&self) -> Result<Option<usize>, ApiError> {
        let (name, value) = match (self.max_completion_tokens, self.max_tokens) {
            (Some(v), _) => ("max_completion_tokens", v),
            (None, Some(v)) => ("max_tokens", v),
            (None, None) => return Ok(None),
        };
        if value < 1 {
            return Err(describe::below_min(name, true, 1, value));
        }
        Ok(Some(usize::try_from(value).unwrap_or(usize::MAX)))
    }

    /// How many choices to generate (`n`, 1 to 128 as OpenAI allows).
    pub fn n(&self) -> Result<usize, ApiError> {
        match self.n {
            None => Ok(1),
            Some(n) if n < 1 => Err(describe::below_min("n", true, 1, n)),
            Some(n) if n > MAX_N as i64 => Err(describe::above_max("n", true, MAX_N, n)),
            Some(n) => Ok(n as usize),
        }
    }

    /// How many alternatives each token's log-probability comes with, or
    /// `None` when no log-probabilities are asked for. Chat takes
    /// `logprobs: true` and `top_logprobs` (0 to 20); completions take
    /// `logprobs` as that number (0 to 5).
    pub fn logprobs(&self, endpoint: Endpoint) -> Result<Option<usize>, ApiError> {
        let given = |v: &Option<Value>| !matches!(v, None | Some(Value::Null));
        match endpoint {
            Endpoint::Chat => {
                let on = match &self.logprobs {
                    None | Some(Value::Null) => false,
                    Some(Value::Bool(b)) => *b,
                    Some(v) => return Err(wrong_type("logprobs", "a boolean", v)),
                };
                let top = match &self.top_logprobs {
                    None | Some(Value::Null) => None,
                    Some(v) => Some(int_in("top_logprobs", v, 0, MAX_TOP_LOGPROBS)?),
                };
                match (on, top) {
                    (false, Some(_)) => Err(ApiError::invalid_param(
                        "top_logprobs",
                        "Invalid value for 'top_logprobs': 'logprobs' must be set to true when 'top_logprobs' is given.",
                    )
                    .with_code("invalid_value")),
                    (false, None) => Ok(None),
                    (true, top) => Ok(Some(top.unwrap_or(0))),
                }
            }
            Endpoint::Completions => {
                if given(&self.top_logprobs) {
                    return Err(ApiError::invalid_param(
                        "top_logprobs",
                        "Unrecognized request argument: 'top_logprobs' (completions take the number of alternatives in 'logprobs').",
                    )
                    .with_code("invalid_value"));
                }
                match &self.logprobs {
                    None | Some(Value::Null) => Ok(None),
                    Some(v) => Ok(Some(int_in("logprobs", v, 0, MAX_COMPLETION_LOGPROBS)?)),
                }
            }
        }
    }

    /// Rejects what we do not implement, so a client is never silently given
    /// something other than it asked for.
    pub fn reject_unsupported(&self) -> Result<(), ApiError> {
        let unsupported = |param: &str, what: &str| {
            Err(ApiError::invalid_param(
                param,
                format!("{what} is not supported by this server."),
            ))
        };
        if let Some(b) = self.best_of
            && b != 1
        {
            return unsupported("best_of", &format!("best_of={b} (only 1)"));
        }
        if self.logit_bias.as_ref().is_some_and(|m| !m.is_empty()) {
            return unsupported("logit_bias", "logit_bias");
        }
        if self.echo == Some(true) {
            return unsupported("echo", "echo");
        }
        if self.suffix.as_ref().is_some_and(|s| !s.is_empty()) {
            return unsupported("suffix", "suffix");
        }
        if self.tools.as_ref().is_some_and(|t| !t.is_empty()) {
            return unsupported("tools", "Tool calling");
        }
        Ok(())
    }

    /// What the output must follow, if anything: `response_format`
    /// (`json_object`, `json_schema`), or llama-server's `grammar` (GBNF,
    /// or Lark with or without its `%llguidance` header) or `json_schema`. Returns
    /// the field it came from too, for errors.
    pub fn constraint(&self) -> Result<Option<(GrammarSpec, &'static str)>, ApiError> {
        let mut found = Vec::new();
        if let Some(format) = self.response_format.as_ref().filter(|v| !v.is_null())
            && let Some(spec) = response_format(format)?
        {
            found.push((spec, "response_format"));
        }
        if let Some(grammar) = &self.grammar {
            if grammar.trim().is_empty() {
                return Err(ApiError::invalid_param(
                    "grammar",
                    "Invalid 'grammar': empty string. Expected a grammar (GBNF or Lark).",
                )
                .with_code("invalid_value"));
            }
            // llama-server's GBNF (`root ::= ...`), or Lark (llama.cpp marks
            // its llguidance grammars with a `%llguidance` header).
            let lark = grammar.trim_start().starts_with("%llguidance") || !grammar.contains("::=");
            let spec = if lark {
                GrammarSpec::Lark(grammar.clone())
            } else {
                GrammarSpec::Gbnf(grammar.clone())
            };
            found.push((spec, "grammar"));
        }
        if let Some(schema) = self.json_schema.as_ref().filter(|v| !v.is_null()) {
            found.push((GrammarSpec::JsonSchema(schema.clone()), "json_schema"));
        }
        if found.len() > 1 {
            return Err(ApiError::invalid_param(
                found[1].1,
                "Give only one of 'response_format', 'grammar' and 'json_schema'.",
            )
            .with_code("invalid_value"));
        }
        Ok(found.pop())
    }

    /// The generation parameters (`max_tokens` is filled in by the caller).
    pub fn params(
        &self,
        defaults: &Defaults,
        seed_fallback: u64,
    ) -> Result<GenerationParams, ApiError> {
        let range = |name: &str, v: Option<f32>, lo: f32, hi: f32| -> Result<(), ApiError> {
            match v {
                Some(x) if x < lo => Err(describe::below_min(name, false, lo, x)),
                Some(x) if x > hi => Err(describe::above_max(name, false, hi, x)),
                // NaN cannot come from JSON; anything else is in range.
                _ => Ok(()),
            }
        };
        range("temperature", self.temperature, 0.0, 2.0)?;
        range("top_p", self.top_p, 0.0, 1.0)?;
        range("min_p", self.min_p, 0.0, 1.0)?;
        range("presence_penalty", self.presence_penalty, -2.0, 2.0)?;
        range("frequency_penalty", self.frequency_penalty, -2.0, 2.0)?;
        range("repeat_penalty", self.repeat_penalty, 0.0, 10.0)?;
        let seed = match &self.seed {
            None => seed_fallback,
            Some(n) => match (n.as_u64(), n.as_i64()) {
                (Some(u), _) => u,
                // Negative seeds are valid for OpenAI; keep their bits.
                (None, Some(i)) => i as u64,
                _ => {
                    return Err(ApiError::invalid_param(
                        "seed",
                        format!(
                            "Invalid type for 'seed': expected an integer, but got a decimal number ({n}) instead."
                        ),
                    )
                    .with_code("invalid_type"));
                }
            },
        };
        let stop: Vec<String> = match &self.stop {
            None => Vec::new(),
            Some(Stop::One(s)) => vec![s.clone()],
            Some(Stop::Many(v)) => v.clone(),
        };
        if stop.len() > 16 {
            return Err(ApiError::invalid_param(
                "stop",
                "At most 16 stop strings are supported.",
            ));
        }
        let penalties = self.presence_penalty.unwrap_or(0.0) != 0.0
            || self.frequency_penalty.unwrap_or(0.0) != 0.0
            || self.repeat_penalty.unwrap_or(1.0) != 1.0;
        let sampler = SamplerConfig {
            temperature: self.temperature.unwrap_or(defaults.temperature),
            top_k: self.top_k.map_or(0, |k| k as usize),
            top_p: self.top_p.unwrap_or(1.0),
            min_p: self.min_p.unwrap_or(0.0),
            repeat_penalty: self.repeat_penalty.unwrap_or(1.0),
            // OpenAI's penalties look at all the text so far.
            repeat_last_n: if penalties { usize::MAX / 2 } else { 0 },
            frequency_penalty: self.frequency_penalty.unwrap_or(0.0),
            presence_penalty: self.presence_penalty.unwrap_or(0.0),
            seed,
        };
        Ok(GenerationParams {
            max_tokens: 0,
            sampler,
            stop,
            ignore_eos: self.ignore_eos.unwrap_or(false),
        })
    }
}

/// One chat message as clients send it.
#[derive(Deserialize)]
pub struct MessageIn {
    pub role: String,
    #[serde(default)]
    pub content: Option<Content>,
}

/// Message content: a string or a list of parts.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Content {
    /// Plain text.
    Text(String),
    /// `[{"type": "text", "text": ...}, ...]`.
    Parts(Vec<Part>),
}

/// One content part.
#[derive(Deserialize)]
pub struct Part {
    #[serde(rename = "type")]
    pub kind: String,
    #[serde(default)]
    pub text: Option<String>,
}

/// `POST /v1/chat/completions`.
#[derive(Deserialize)]
pub struct ChatBody {
    pub messages: Vec<MessageIn>,
}

/// A completion prompt: text, or token ids.
#[derive(Deserialize)]
#[serde(untagged)]
pub enum Prompt {
    /// One text.
    Text(String),
    /// Token ids.
    Tokens(Vec<u32>),
    /// Several texts (only one is accepted).
    Texts(Vec<String>),
    /// Several token lists (only one is accepted).
    TokenLists(Vec<Vec<u32>>),
}

/// `POST /v1/completions` and `POST /generate`.
#[derive(Deserialize)]
pub struct CompletionBody {
    pub prompt: Prompt,
}

/// Token counts.
#[derive(Serialize, Clone, Copy, Debug)]
pub struct Usage {
    pub prompt_tokens: usize,
    pub completion_tokens: usize,
    pub total_tokens: usize,
}

impl Usage {
    /// From the two counts.
    pub fn new(prompt_tokens: usize, completion_tokens: usize) -> Usage {
        Usage {
            prompt_tokens,
            completion_tokens,
            total_tokens: prompt_tokens + completion_tokens,
        }
    }
}

/// An assistant message.
#[derive(Serialize)]
pub struct MessageOut {
    pub role: &'static str,
    pub content: String,
}

/// A choice of a chat completion.
#[derive(Serialize)]
pub struct ChatChoice {
    pub index: u32,
    pub message: MessageOut,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: &'static str,
}

/// `chat.completion`.
#[derive(Serialize)]
pub struct ChatCompletion {
    pub id: String,
    pub object: &'static str,
    pub created: u64,
    pub model: String,
    pub choices: Vec<ChatChoice>,
    pub usage: Usage,
}

/// A streamed delta.
#[derive(Serialize, Default)]
pub struct Delta {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub content: Option<String>,
}

/// A choice of a chat chunk.
#[derive(Serialize)]
pub struct ChunkChoice {
    pub index: u32,
    pub delta: Delta,
    pub logprobs: Option<ChatLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// `chat.completion.chunk`.
#[derive(Serialize)]
pub struct ChatChunk<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<ChunkChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// A choice of a text completion (whole or streamed).
#[derive(Serialize)]
pub struct TextChoice {
    pub text: String,
    pub index: u32,
    pub logprobs: Option<TextLogprobs>,
    pub finish_reason: Option<&'static str>,
}

/// `text_completion` (a whole response or one chunk).
#[derive(Serialize)]
pub struct TextCompletion<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub model: &'a str,
    pub choices: Vec<TextChoice>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub usage: Option<Option<Usage>>,
}

/// `POST /generate`'s answer.
#[derive(Serialize)]
pub struct Generated {
    pub text: String,
    pub finish_reason: &'static str,
    pub stop_reason: bitnet_engine::StopReason,
    pub usage: Usage,
}

/// An entry of `/v1/models`.
#[derive(Serialize)]
pub struct ModelCard<'a> {
    pub id: &'a str,
    pub object: &'static str,
    pub created: u64,
    pub owned_by: &'static str,
}

/// `/v1/models`.
#[derive(Serialize)]
pub struct ModelList<'a> {
    pub object: &'static str,
    pub data: Vec<ModelCard<'a>>,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn common(json: Value) -> Result<Common, ApiError> {
        from_value(&json)
    }

    #[test]
    fn openai_defaults_and_fields() {
        let c =
            common(serde_json::json!({"stop": "END", "seed": -1, "top_p": 0.5})).expect("parse");
        let p = c.params(&Defaults { temperature: 1.0 }, 9).expect("params");
        assert_eq!(p.sampler.temperature, 1.0);
        assert_eq!(p.sampler.top_p, 0.5);
        assert_eq!((p.sampler.top_k, p.sampler.min_p), (0, 0.0));
        assert_eq!(p.sampler.seed, u64::MAX);
        assert_eq!(p.stop, vec!["END".to_string()]);
        assert_eq!(p.sampler.repeat_last_n, 0, "no penalties, no window");
        let unseeded = common(serde_json::json!({})).expect("parse");
        assert_eq!(
            unseeded
                .params(&Defaults { temperature: 0.0 }, 9)
                .expect("p")
                .sampler
                .seed,
            9
        );
    }

    #[test]
    fn max_completion_tokens_wins_and_must_be_positive() {
        let c = common(serde_json::json!({"max_tokens": 5, "max_completion_tokens": 7}))
            .expect("parse");
        assert_eq!(c.max_tokens().expect("ok"), Some(7));
        let zero = common(serde_json::json!({"max_tokens": 0})).expect("parse");
        assert_eq!(
            zero.max_tokens().expect_err("zero").param.as_deref(),
            Some("max_tokens")
        );
    }

    #[test]
    fn type_errors_name_the_field() {
        let err = common(serde_json::json!({"stream_options": {"include_usage": "yes"}})).err();
        let err = err.expect("type error");
        assert_eq!(err.status.as_u16(), 400);
        assert_eq!(err.param.as_deref(), Some("stream_options.include_usage"));
        assert!(parse_json(b"{").is_err() && parse_json(b"3").is_err());
    }
}
