//! A request body checked as the handlers check it before the model is
//! involved: JSON, every field's type and range, the messages or prompt,
//! the sampling parameters and the constraint's kind. The `http_body` fuzz
//! target drives it (with the constraint then compiled against a
//! vocabulary), so that no body can panic the server's parsing.

use bitnet_engine::grammar::GrammarSpec;

use crate::api::{self, ChatBody, Common, CompletionBody, Defaults, Endpoint};
use crate::generation::{chat_messages, prompt_input};

/// Why a body is refused: the HTTP status and the error message a client
/// would get.
#[derive(Debug)]
pub struct Refusal {
    /// The HTTP status (400 for a bad body).
    pub status: u16,
    /// The message.
    pub message: String,
}

/// Checks a body for `path` (`/v1/chat/completions`, `/v1/completions` or
/// `/generate`); returns the constraint the output must follow, if any.
pub fn check_request(path: &str, body: &[u8]) -> Result<Option<GrammarSpec>, Refusal> {
    let refuse = |e: crate::error::ApiError| Refusal {
        status: e.status.as_u16(),
        message: e.message,
    };
    let value = api::parse_json(body).map_err(refuse)?;
    let common: Common = api::from_value(&value).map_err(refuse)?;
    common.reject_unsupported().map_err(refuse)?;
    let endpoint = if path.ends_with("chat/completions") {
        let chat: ChatBody = api::from_value(&value).map_err(refuse)?;
        chat_messages(chat).map_err(refuse)?;
        Endpoint::Chat
    } else {
        let completion: CompletionBody = api::from_value(&value).map_err(refuse)?;
        prompt_input(completion.prompt).map_err(refuse)?;
        Endpoint::Completions
    };
    common.logprobs(endpoint).map_err(refuse)?;
    common.n().map_err(refuse)?;
    common.max_tokens().map_err(refuse)?;
    common
        .params(&Defaults { temperature: 1.0 }, 0)
        .map_err(refuse)?;
    Ok(common.constraint().map_err(refuse)?.map(|(spec, _)| spec))
}
