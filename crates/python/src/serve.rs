//! `_native.serve`: `bitnet serve`'s HTTP server, in this process, on a
//! model already loaded.

use std::time::Duration;

use bitnet_server::{Server, ServerConfig};
use pyo3::prelude::*;

use crate::errors::{bitnet_error, guard};
use crate::model::{Model, POLL};

/// Serves `model` until Ctrl-C (or SIGTERM's `KeyboardInterrupt`), then
/// drains: running requests get `shutdown_timeout` seconds to finish.
#[pyfunction]
#[pyo3(signature = (model, *, host="127.0.0.1", port=8080, parallel=4, queue=64, model_name=None, shutdown_timeout=30.0))]
#[allow(clippy::too_many_arguments)]
pub fn serve(
    py: Python<'_>,
    model: &Model,
    host: &str,
    port: u16,
    parallel: usize,
    queue: usize,
    model_name: Option<String>,
    shutdown_timeout: f64,
) -> PyResult<()> {
    guard(|| {
        let engine = model.engine().clone();
        let name = model_name.unwrap_or_else(|| bitnet_server::model_name(None, engine.name()));
        let config = ServerConfig {
            host: host.to_string(),
            port,
            model_name: name.clone(),
            parallel,
            queue,
            shutdown_grace: Duration::from_secs_f64(shutdown_timeout.clamp(0.0, 86400.0)),
            ..ServerConfig::default()
        };
        let server = py
            .detach(|| Server::start(engine, config))
            .map_err(|e| bitnet_error(format!("cannot start the server: {e}")))?;
        eprintln!(
            "serving `{name}` on http://{} ({parallel} slots; OpenAI API under /v1, POST /generate); Ctrl-C stops",
            server.local_addr()
        );
        let mut interrupted = None;
        while !server.is_finished() {
            py.detach(|| std::thread::sleep(POLL * 5));
            if let Err(e) = py.check_signals() {
                if interrupted.is_some() {
                    server.shutdown();
                    break;
                }
                eprintln!(
                    "shutting down: finishing running requests (Ctrl-C again to cancel them)"
                );
                server.shutdown();
                interrupted = Some(e);
            }
        }
        py.detach(|| server.wait())
            .map_err(|e| bitnet_error(format!("the server stopped with an error: {e}")))?;
        eprintln!("server stopped");
        match interrupted {
            Some(e) => Err(e),
            None => Ok(()),
        }
    })
}
