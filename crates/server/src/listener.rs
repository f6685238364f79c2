//! The accept loop: our own, over hyper, rather than `axum::serve`, for
//! what that helper does not offer:
//!
//! * **A deadline for the request head.** A client that connects and sends
//!   its headers slowly (or never) is cut off after `header_timeout`
//!   (hyper's `header_read_timeout`; it also bounds idle keep-alive).
//! * **A cap on open connections.** Beyond `max_connections`, a new
//!   connection is answered `503` at once and closed, instead of holding a
//!   socket and a task.
//! * **Serving before the model is loaded.** The routes arrive later
//!   through a `watch` channel; until then `/health` answers `503
//!   {"status": "loading"}` (what a Kubernetes startup probe waits for) and
//!   every other path `503` in OpenAI's shape.
//! * **Graceful shutdown.** On the signal the loop stops accepting, each
//!   connection finishes its response in flight and closes; the caller
//!   bounds the whole by its hard deadline.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::http::{Request, StatusCode};
use axum::response::{IntoResponse, Response};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, watch};
use tower::ServiceExt;

use crate::error::ApiError;

/// Limits of the accept loop.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// How long a request head may take to arrive.
    pub header_timeout: Duration,
    /// Connections open at once.
    pub max_connections: usize,
}

/// The answer while no routes are loaded.
fn loading(request: &Request<Incoming>) -> Response {
    if request.uri().path() == "/health" {
        let body = serde_json::json!({"status": "loading"});
        return (StatusCode::SERVICE_UNAVAILABLE, axum::Json(body)).into_response();
    }
    ApiError::loading().into_response()
}

/// Serves connections from `listener` until `stop` turns true.
pub async fn serve(
    listener: TcpListener,
    routes: watch::Receiver<Option<Router>>,
    limits: Limits,
    mut stop: watch::Receiver<bool>,
) {
    let slots = Arc::new(Semaphore::new(limits.max_connections.max(1)));
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            r = stop.wait_for(|v| *v) => {
                let _ = r.map(|_| ());
                break;
            }
        };
        let Ok((stream, _)) = accepted else {
            // Out of file descriptors, or a connection reset before it was
            // accepted: wait a little rather than spin.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        let _ = stream.set_nodelay(true);
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tokio::spawn(refuse(stream, limits.max_connections));
            continue;
        };
        let routes = routes.clone();
        let mut stop = stop.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |request: Request<Incoming>| {
                let router = routes.borrow().clone();
                async move {
                    Ok::<_, Infallible>(match router {
                        Some(router) => match router.oneshot(request.map(Body::new)).await {
                            Ok(response) => response,
                            Err(never) => match never {},
                        },
                        None => loading(&request),
                    })
                }
            });
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(limits.header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let stopping = tokio::select! {
                _ = connection.as_mut() => false,
                r = stop.wait_for(|v| *v) => r.is_ok(),
            };
            if stopping {
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            }
            drop(permit);
        });
    }
    // Connections in flight finish (the caller's deadline bounds them).
    let _ = slots
        .acquire_many(limits.max_connections.max(1) as u32)
        .await;
}

/// Answers a connection beyond the cap with a 503 and closes it.
async fn refuse(mut stream: tokio::net::TcpStream, limit: usize) {
    let error = ApiError::too_many_connections(limit);
    let body = serde_json::to_string(&error.body()).unwrap_or_default();
    let head = format!(
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nretry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = stream.write_all(head.as_bytes()).await;
        let _ = stream.write_all(body.as_bytes()).await;
        let _ = stream.shutdown().await;
    })
    .await;
}
