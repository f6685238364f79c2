//! Rust errors as Python exceptions, and the panic guard.
//!
//! The exception classes are defined in Python (`bitnet/errors.py`), where
//! `ContextLengthError` can be both a `BitNetError` and a `ValueError`;
//! this module looks them up when it raises.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::Path;

use bitnet_engine::Error;
use pyo3::exceptions::{PyFileNotFoundError, PyKeyboardInterrupt, PyRuntimeError, PyValueError};
use pyo3::prelude::*;

/// The package's exception class `name` with `message` (a `RuntimeError`
/// if the Python half of the package cannot be imported).
pub fn raise(name: &str, message: impl Into<String>) -> PyErr {
    let message = message.into();
    Python::attach(|py| {
        let class = py
            .import("bitnet.errors")
            .and_then(|m| m.getattr(name))
            .ok();
        match class {
            Some(class) => match class.call1((message.clone(),)) {
                Ok(instance) => PyErr::from_value(instance),
                Err(e) => e,
            },
            None => PyRuntimeError::new_err(message),
        }
    })
}

/// `BitNetError(message)`.
pub fn bitnet_error(message: impl Into<String>) -> PyErr {
    raise("BitNetError", message)
}

/// Every cause of `e`, once each, as the command line prints them.
fn describe(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        let more = cause.to_string();
        if !text.contains(&more) {
            text.push_str(": ");
            text.push_str(&more);
        }
        source = cause.source();
    }
    text
}

/// An engine error raised while loading the model named `spec`.
pub fn load_error(e: Error, spec: &str) -> PyErr {
    let message = format!("cannot load model `{spec}`: {}", describe(&e));
    match e {
        Error::ModelSpec { .. } => {
            let remote = bitnet_hub::Hub::looks_like_repo_id(spec)
                || bitnet_engine::resolve::short_name(spec).is_some();
            if Path::new(spec).exists() {
                raise("ModelLoadError", message)
            } else if remote {
                // Offline and not cached, or a repo without a model in it.
                raise("DownloadError", message)
            } else {
                PyFileNotFoundError::new_err((2, message, spec.to_string()))
            }
        }
        Error::Hub(_) => raise("DownloadError", message),
        Error::Device(_) => raise("DeviceError", message),
        Error::Kernels(_) | Error::InvalidArgument { .. } => PyValueError::new_err(message),
        _ => raise("ModelLoadError", message),
    }
}

/// An engine error raised while running the model.
pub fn run_error(e: Error) -> PyErr {
    let message = describe(&e);
    match e {
        Error::PromptTooLong { .. } => raise("ContextLengthError", message),
        Error::EmptyPrompt | Error::InvalidArgument { .. } | Error::Tokenizer(_) => {
            PyValueError::new_err(message)
        }
        Error::Cancelled => PyKeyboardInterrupt::new_err(message),
        _ => bitnet_error(message),
    }
}

/// Runs `f`, turning a panic into `BitNetError` so that none reaches Python.
pub fn guard<T>(f: impl FnOnce() -> PyResult<T>) -> PyResult<T> {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(result) => result,
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            Err(bitnet_error(format!(
                "internal error (please report it): {what}"
            )))
        }
    }
}
