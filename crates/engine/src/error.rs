//! Errors of the engine crate.

/// Why a model could not be resolved, loaded or run.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Loading or running the model failed.
    #[error(transparent)]
    Model(#[from] bitnet_model::Error),
    /// The GGUF container is invalid.
    #[error(transparent)]
    Gguf(#[from] bitnet_gguf::Error),
    /// The tokenizer could not be built or used.
    #[error(transparent)]
    Tokenizer(#[from] bitnet_tokenizer::Error),
    /// Downloading or finding the model in the Hugging Face cache failed.
    #[error(transparent)]
    Hub(#[from] bitnet_hub::Error),
    /// The kernel level requested is not available.
    #[error(transparent)]
    Kernels(#[from] bitnet_kernels::Error),
    /// `--device cuda`: no driver, no GPU, no NVRTC, or no GPU forward pass
    /// in this build (one line naming which).
    #[error(transparent)]
    Device(#[from] bitnet_cuda::CudaError),
    /// The model argument names nothing we can load.
    #[error("model `{spec}`: {reason}")]
    ModelSpec {
        /// The argument as given.
        spec: String,
        /// Why it cannot be used.
        reason: String,
    },
    /// The prompt does not fit in the context.
    #[error(
        "the prompt has {n_tokens} tokens but the context holds {n_ctx}; use a larger -c/--ctx-size or a shorter prompt"
    )]
    PromptTooLong {
        /// Prompt length in tokens.
        n_tokens: usize,
        /// Context size.
        n_ctx: usize,
    },
    /// The prompt is empty and the model has no BOS token to start from.
    #[error("the prompt is empty and the model has no BOS token to start from")]
    EmptyPrompt,
    /// A request parameter is out of range.
    #[error("invalid {name}: {reason}")]
    InvalidArgument {
        /// Parameter name.
        name: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The caller stopped the work.
    #[error("cancelled")]
    Cancelled,
    /// The batching engine thread has stopped (shut down, or gone).
    #[error("the engine thread has stopped")]
    EngineStopped,
    /// Work run on the engine thread panicked; the thread goes on.
    #[error("internal error: the engine's work panicked (please report this)")]
    TaskPanicked,
    /// The chat template could not be applied.
    #[error("the model has no chat template")]
    NoChatTemplate,
    /// A grammar (JSON schema, Lark, regular expression) could not be
    /// compiled or followed.
    #[error("grammar: {0}")]
    Grammar(String),
}

/// Result with the engine [`Error`].
pub type Result<T> = std::result::Result<T, Error>;
