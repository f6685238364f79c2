//! `bitnet._native`: the Rust half of the `bitnet` Python package.
//!
//! # Shape
//!
//! The package users import is Python (`python/bitnet`): `BitNetModel` with
//! llama-cpp-python's method names and defaults, the OpenAI-shaped dicts,
//! argument checking, docstrings and `python -m bitnet`. Everything that
//! computes is here, a thin layer over [`bitnet_engine`], in the manner of
//! the `tokenizers` bindings:
//!
//! * [`model::Model`] loads a model the way the `bitnet` binary does
//!   (a GGUF path, a Hugging Face directory, a Hub repo id downloaded into
//!   the standard cache, or the built-in demo model) and starts one
//!   [`bitnet_engine::batch`] engine thread for it. Every generation is a
//!   job for that thread, so calls from several Python threads, and the
//!   prompts of one `generate_batch`, share each forward pass (continuous
//!   batching) exactly as the HTTP server's requests do. Whole-sequence
//!   logits and perplexity run on the same thread between steps.
//! * [`stream::Stream`] is one job's events. Python pulls them with a
//!   timeout, so the interpreter gets control back at least every few
//!   milliseconds: Ctrl-C raises `KeyboardInterrupt` in the caller, whose
//!   `finally` cancels the job (the engine drops it at its next step).
//! * [`serve`] runs `bitnet serve`'s server in-process on a loaded model.
//!
//! # Rules
//!
//! * The GIL is released ([`Python::detach`]) around all model work and
//!   every wait, so other Python threads run meanwhile.
//! * No Rust panic reaches Python: each entry point runs under
//!   `catch_unwind` ([`errors::guard`]) and a panic becomes `BitNetError`.
//! * Errors become the package's exception classes (`bitnet.BitNetError`
//!   and its subclasses, `FileNotFoundError`, `ValueError`), with the same
//!   messages the command line prints ([`errors`]).

mod errors;
mod model;
mod serve;
mod stream;

use pyo3::prelude::*;

/// The native module.
#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<model::Model>()?;
    m.add_class::<stream::Stream>()?;
    m.add_function(wrap_pyfunction!(serve::serve, m)?)?;
    m.add_function(wrap_pyfunction!(model::kernels_available, m)?)?;
    m.add_function(wrap_pyfunction!(model::device_error, m)?)?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
