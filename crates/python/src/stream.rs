//! `_native.Stream`: the events of one generation.

use bitnet_engine::batch::{Event, EventReceiver, Failure, RecvError};
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::errors::{bitnet_error, guard};

/// One generation's events, pulled by Python with a timeout.
#[pyclass(module = "bitnet._native", frozen)]
pub struct Stream {
    rx: EventReceiver,
    n_prompt: usize,
}

impl Stream {
    pub fn new(rx: EventReceiver, n_prompt: usize) -> Stream {
        Stream { rx, n_prompt }
    }
}

#[pymethods]
impl Stream {
    /// The next event, waiting at most `timeout` seconds (the GIL is
    /// released meanwhile): `("text", str)`, `("done", dict)`, or `None`
    /// when nothing came in time. A failed generation raises `BitNetError`.
    fn next<'py>(
        &self,
        py: Python<'py>,
        timeout: f64,
    ) -> PyResult<Option<(&'static str, Bound<'py, PyAny>)>> {
        guard(|| {
            let timeout = std::time::Duration::from_secs_f64(timeout.clamp(0.0, 3600.0));
            let event = py.detach(|| self.rx.recv_timeout(timeout));
            Ok(match event {
                // Log-probabilities are never asked for here; like a
                // timeout, the caller simply asks again.
                Err(RecvError::Timeout) | Ok(Event::Logprobs(_)) => None,
                Ok(Event::Text(text)) => Some(("text", text.into_pyobject(py)?.into_any())),
                Ok(Event::Done(o)) => {
                    let d = PyDict::new(py);
                    d.set_item("stop_reason", format!("{:?}", o.reason).to_lowercase())?;
                    d.set_item("finish_reason", o.reason.finish_reason())?;
                    d.set_item("prompt_tokens", o.prompt_tokens)?;
                    d.set_item("completion_tokens", o.completion_tokens)?;
                    d.set_item("prompt_ms", o.prompt_ms)?;
                    d.set_item("generation_ms", o.generation_ms)?;
                    Some(("done", d.into_any()))
                }
                Ok(Event::Failed(Failure::ShuttingDown)) => {
                    return Err(bitnet_error("the model was closed"));
                }
                Ok(Event::Failed(Failure::Internal(message))) => {
                    return Err(bitnet_error(message));
                }
                Ok(Event::Failed(Failure::OutOfMemory(message))) => {
                    return Err(pyo3::exceptions::PyMemoryError::new_err(message));
                }
                Err(RecvError::Disconnected) => {
                    return Err(bitnet_error(
                        "the engine stopped before the generation ended",
                    ));
                }
            })
        })
    }

    /// Prompt tokens of this generation.
    #[getter]
    fn n_prompt(&self) -> usize {
        self.n_prompt
    }

    /// Stops the generation (the engine drops it at its next step).
    fn cancel(&self) {
        self.rx.close();
    }
}
