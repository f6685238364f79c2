//! Running BitNet models: the layer the command line, the server and the
//! Python bindings share.
//!
//! * [`resolve`] turns a `-m` argument into files: a GGUF, a Hugging Face
//!   directory, a Hub repo id fetched into the standard cache, or the demo
//!   model [`builtin`] into the binary, so every command works offline.
//! * [`Engine`] holds a loaded model, its tokenizer and a thread pool, and
//!   offers the single-sequence operations: generation with streaming text,
//!   and perplexity with llama-perplexity's procedure.
//! * [`SequenceState`] is everything one generated sequence needs besides
//!   the model (sampler, UTF-8-safe detokeniser, stop strings, limits), so a
//!   batching scheduler can drive many of them with one forward pass. On
//!   request ([`SequenceOptions`]) its step also reports each token's
//!   log-probabilities ([`TokenLogprobs`]) and masks the logits with a
//!   [`grammar`] before sampling, so the output always follows a JSON
//!   schema, a Lark grammar or a regular expression (llguidance).
//! * [`batch`] is that scheduler: one engine thread doing continuous
//!   batching for every caller, shared by the HTTP server and the Python
//!   package.

#![deny(missing_docs)]

pub mod batch;
pub mod bench;
pub mod builtin;
pub mod convert;
pub mod embed;
mod engine;
mod error;
pub mod grammar;
mod logprobs;
pub mod memory;
pub mod resolve;
mod sequence;
mod stop;

pub use engine::{
    Engine, EngineOptions, Generation, Perplexity, PerplexityProgress, Session, Timings,
    gguf_vocab, load_model, negative_log_likelihood,
};
pub use error::{Error, Result};
pub use logprobs::{TokenLogprobs, token_logprobs};
pub use resolve::{ModelLocation, Resolved};
pub use sequence::{GenerationParams, SequenceOptions, SequenceState, Step, StopReason};
pub use stop::StopMatcher;

pub use bitnet_cuda::{CudaError as DeviceError, DeviceSpec, device_error};
pub use bitnet_model::{KvType, Model};
pub use bitnet_sampling::SamplerConfig;
pub use bitnet_tokenizer::{ChatMessage, Tokenizer};
