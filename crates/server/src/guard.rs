//! Access control and slow-client defences that act on every request
//! before a handler sees it: the API key, the request body's deadline, and
//! CORS (off unless origins are given).

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderValue, Method, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::cors::{AllowOrigin, CorsLayer};

use crate::error::ApiError;

/// What the request guard checks.
pub struct Policy {
    /// The key every route but `/health` requires, if any.
    pub api_key: Option<String>,
    /// How long a request body may take to arrive.
    pub body_timeout: Duration,
    /// Largest accepted body.
    pub max_body: usize,
}

/// `a == b` in time that depends only on the lengths, so that a wrong key's
/// timing says nothing about how much of it was right.
fn same(a: &[u8], b: &[u8]) -> bool {
    if a.len() != b.len() {
        return false;
    }
    let diff = a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y));
    std::hint::black_box(diff) == 0
}

/// The key of `Authorization: Bearer KEY` (or OpenAI's `api-key` header).
fn presented(request: &Request) -> Option<&[u8]> {
    let headers = request.headers();
    if let Some(v) = headers.get(header::AUTHORIZATION) {
        let v = v.as_bytes();
        let prefix = b"Bearer ";
        return (v.len() >= prefix.len() && v[..prefix.len()].eq_ignore_ascii_case(prefix))
            .then(|| &v[prefix.len()..]);
    }
    headers.get("api-key").map(HeaderValue::as_bytes)
}

/// The middleware: checks the key, then reads the body within its deadline
/// (a client that sends headers and then trickles or stalls cannot hold a
/// connection and a handler for ever).
pub async fn check(State(policy): State<Arc<Policy>>, request: Request, next: Next) -> Response {
    if let Some(key) = &policy.api_key
        && request.uri().path() != "/health"
        && request.method() != Method::OPTIONS
        && !presented(&request).is_some_and(|k| same(k, key.as_bytes()))
    {
        let mut response = ApiError::unauthorized().into_response();
        response
            .headers_mut()
            .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
        return response;
    }
    let (parts, body) = request.into_parts();
    let read = axum::body::to_bytes(body, policy.max_body);
    let bytes = match tokio::time::timeout(policy.body_timeout, read).await {
        Err(_) => return ApiError::body_timeout(policy.body_timeout.as_secs()).into_response(),
        Ok(Err(_)) => return ApiError::body_too_large(policy.max_body).into_response(),
        Ok(Ok(bytes)) => bytes,
    };
    next.run(Request::from_parts(parts, Body::from(bytes)))
        .await
}

/// CORS for the given origins (`*` for any); `None` when there are none, so
/// that no CORS header is ever sent and browsers keep other origins out.
pub fn cors(origins: &[String]) -> Option<CorsLayer> {
    if origins.is_empty() {
        return None;
    }
    let allow = if origins.iter().any(|o| o == "*") {
        AllowOrigin::any()
    } else {
        AllowOrigin::list(
            origins
                .iter()
                .filter_map(|o| HeaderValue::from_str(o.trim_end_matches('/')).ok()),
        )
    };
    Some(
        CorsLayer::new()
            .allow_origin(allow)
            .allow_methods([Method::GET, Method::POST, Method::OPTIONS])
            .allow_headers([
                header::AUTHORIZATION,
                header::CONTENT_TYPE,
                header::HeaderName::from_static("api-key"),
            ])
            .max_age(Duration::from_secs(600)),
    )
}

#[cfg(test)]
mod tests {
    use super::same;

    #[test]
    fn keys_compare_exactly() {
        assert!(same(b"secret", b"secret"));
        assert!(!same(b"secret", b"secreT"));
        assert!(!same(b"secret", b"secret!"));
        assert!(!same(b"", b"x"));
    }
}
