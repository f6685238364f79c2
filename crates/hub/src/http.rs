//! The small HTTP layer: a blocking `ureq` agent that never follows
//! redirects by itself (we follow them by hand, to read the Hub's metadata
//! from the first response, to keep `Range` across hops and to send the
//! token only to the Hub's own host), plus URL helpers.

use std::time::Duration;

use ureq::http::HeaderMap;

use crate::error::{Error, Result};

/// A response whose body has not been read yet.
pub(crate) type Response = ureq::http::Response<ureq::Body>;

/// Maximum number of redirects followed for one request.
pub(crate) const MAX_REDIRECTS: usize = 10;

/// Context of a request, used to build errors that name what was asked for.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Ctx<'a> {
    pub repo_id: &'a str,
    pub revision: &'a str,
    pub filename: Option<&'a str>,
}

#[derive(Clone)]
pub(crate) struct Client {
    agent: ureq::Agent,
    /// The same without the proxy from `HTTPS_PROXY` & co, for loopback hosts.
    local_agent: ureq::Agent,
    token: Option<String>,
    /// `scheme://host[:port]` of the endpoint, lower-cased.
    endpoint_origin: String,
}

impl Client {
    pub fn new(endpoint: &str, token: Option<String>) -> Client {
        let config = |proxy: bool| {
            let b = ureq::Agent::config_builder()
                .http_status_as_error(false)
                .max_redirects(0)
                .user_agent(concat!("bitnet-hub/", env!("CARGO_PKG_VERSION")))
                .timeout_connect(Some(Duration::from_secs(10)))
                .timeout_recv_response(Some(Duration::from_secs(60)))
                .timeout_per_read(Some(Duration::from_secs(60)));
            if proxy { b } else { b.proxy(None) }.build()
        };
        Client {
            agent: config(true).into(),
            local_agent: config(false).into(),
            token,
            endpoint_origin: origin(endpoint).to_ascii_lowercase(),
        }
    }

    /// Loopback URLs (a local mirror, the tests) never go through a proxy.
    fn agent_for(&self, url: &str) -> &ureq::Agent {
        if is_loopback(url) {
            &self.local_agent
        } else {
            &self.agent
        }
    }

    fn auth_header(&self, url: &str) -> Option<String> {
        let token = self.token.as_deref()?;
        (origin(url).eq_ignore_ascii_case(&self.endpoint_origin)).then(|| format!("Bearer {token}"))
    }

    /// One HEAD request, redirects not followed.
    pub fn head(&self, url: &str, ctx: Ctx<'_>) -> Result<Response> {
        let mut req = self
            .agent_for(url)
            .head(url)
            .header("Accept-Encoding", "identity");
        if let Some(auth) = self.auth_header(url) {
            req = req.header("Authorization", auth);
        }
        req.call().map_err(|e| network(ctx, url, e))
    }

    /// GET following redirects by hand; `Range: bytes={from}-` is sent on
    /// every hop when `from > 0`. Returns the final URL and response.
    pub fn get(&self, url: &str, range_from: u64, ctx: Ctx<'_>) -> Result<(String, Response)> {
        let mut url = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let mut req = self
                .agent_for(&url)
                .get(&url)
                .header("Accept-Encoding", "identity");
            if range_from > 0 {
                req = req.header("Range", format!("bytes={range_from}-"));
            }
            if let Some(auth) = self.auth_header(&url) {
                req = req.header("Authorization", auth);
            }
            let resp = req.call().map_err(|e| network(ctx, &url, e))?;
            if is_redirect(resp.status().as_u16()) {
                url = redirect_target(&url, resp.headers(), ctx)?;
                continue;
            }
            return Ok((url, resp));
        }
        Err(invalid(ctx, &url, "too many redirects"))
    }
}

pub(crate) fn is_redirect(status: u16) -> bool {
    matches!(status, 301 | 302 | 303 | 307 | 308)
}

/// Absolute URL of a redirect's `Location`.
pub(crate) fn redirect_target(url: &str, headers: &HeaderMap, ctx: Ctx<'_>) -> Result<String> {
    let loc = header(headers, "location")
        .ok_or_else(|| invalid(ctx, url, "redirect without a Location header"))?;
    Ok(join_url(url, loc))
}

pub(crate) fn header<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|v| !v.is_empty())
}

pub(crate) fn network(ctx: Ctx<'_>, url: &str, e: impl Into<crate::error::BoxError>) -> Error {
    Error::Network {
        repo_id: ctx.repo_id.to_string(),
        filename: ctx.filename.map(str::to_string),
        url: url.to_string(),
        source: e.into(),
    }
}

pub(crate) fn invalid(ctx: Ctx<'_>, url: &str, message: impl Into<String>) -> Error {
    Error::InvalidResponse {
        repo_id: ctx.repo_id.to_string(),
        filename: ctx.filename.map(str::to_string),
        url: url.to_string(),
        message: message.into(),
    }
}

/// Maps a non-success status to the matching error, using the Hub's
/// `X-Error-Code` / `X-Error-Message` headers when present.
pub(crate) fn status_error(status: u16, headers: &HeaderMap, url: &str, ctx: Ctx<'_>) -> Error {
    let code = header(headers, "x-error-code");
    let message = header(headers, "x-error-message").map(str::to_string);
    let repo_id = ctx.repo_id.to_string();
    let filename = ctx.filename.map(str::to_string);
    let url = url.to_string();
    match (code, status) {
        (Some("GatedRepo"), _) => Error::GatedRepo {
            repo_id,
            filename,
            url,
            status,
            message,
        },
        (Some("RepoNotFound"), _) => Error::RepoNotFound { repo_id, url },
        (Some("RevisionNotFound"), _) => Error::RevisionNotFound {
            repo_id,
            revision: ctx.revision.to_string(),
            url,
        },
        (Some("EntryNotFound"), _) | (None, 404) if filename.is_some() => Error::EntryNotFound {
            repo_id,
            revision: ctx.revision.to_string(),
            filename: filename.unwrap_or_default(),
            url,
        },
        (_, 404) => Error::RepoNotFound { repo_id, url },
        (_, 401 | 403) => Error::Unauthorized {
            repo_id,
            filename,
            url,
            status,
            message,
        },
        _ => Error::Http {
            repo_id,
            filename,
            url,
            status,
            message,
        },
    }
}

/// `scheme://authority` of an absolute URL (the whole string if it has no path).
pub(crate) fn origin(url: &str) -> &str {
    match url.find("://") {
        Some(i) => {
            let rest = &url[i + 3..];
            let end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
            &url[..i + 3 + end]
        }
        None => "",
    }
}

/// Is the URL's host `localhost`, `127.x.x.x` or `[::1]`?
pub(crate) fn is_loopback(url: &str) -> bool {
    let o = origin(url);
    let authority = o.split_once("://").map_or("", |(_, a)| a);
    let authority = authority.rsplit_once('@').map_or(authority, |(_, h)| h);
    let host = if authority.starts_with('[') {
        authority
            .split_once(']')
            .map_or(authority, |(h, _)| h)
            .trim_start_matches('[')
    } else {
        authority.split(':').next().unwrap_or("")
    };
    host.eq_ignore_ascii_case("localhost")
        || host == "::1"
        || host
            .parse::<std::net::Ipv4Addr>()
            .is_ok_and(|ip| ip.is_loopback())
}

/// Resolves a `Location` header against the URL of the request.
pub(crate) fn join_url(base: &str, loc: &str) -> String {
    if loc.contains("://") {
        return loc.to_string();
    }
    if let Some(rest) = loc.strip_prefix("//") {
        let scheme = base.split("://").next().unwrap_or("https");
        return format!("{scheme}://{rest}");
    }
    if loc.starts_with('/') {
        return format!("{}{loc}", origin(base));
    }
    let path_end = base.find(['?', '#']).unwrap_or(base.len());
    let without_query = &base[..path_end];
    let dir_end = without_query
        .rfind('/')
        .filter(|&i| i >= origin(base).len())
        .map(|i| i + 1);
    match dir_end {
        Some(i) => format!("{}{loc}", &without_query[..i]),
        None => format!("{without_query}/{loc}"),
    }
}

/// Is `loc` a relative reference on the same host (no scheme, no authority)?
pub(crate) fn is_relative(loc: &str) -> bool {
    !loc.contains("://") && !loc.starts_with("//")
}

/// Percent-encodes everything but RFC 3986 unreserved characters, and `/`
/// when `keep_slash`.
pub(crate) fn encode(s: &str, keep_slash: bool) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric()
            || matches!(b, b'-' | b'.' | b'_' | b'~')
            || (keep_slash && b == b'/')
        {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Normalizes an `ETag` value: drops a weak `W/` prefix and the quotes.
pub(crate) fn normalize_etag(etag: &str) -> String {
    let e = etag.trim();
    let e = e.strip_prefix("W/").unwrap_or(e);
    e.trim_matches('"').to_string()
}

/// Parses `Content-Range: bytes start-end/total` into `(start, total)`.
pub(crate) fn parse_content_range(v: &str) -> Option<(u64, Option<u64>)> {
    let rest = v.trim().strip_prefix("bytes")?.trim_start();
    let (range, total) = rest.split_once('/')?;
    let (start, _end) = range.split_once('-')?;
    let start = start.trim().parse().ok()?;
    let total = total.trim().parse().ok();
    Some((start, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn join() {
        let b = "https://hf.co/org/name/resolve/main/a/b.bin?x=1";
        assert_eq!(
            join_url(b, "https://cdn.x/blob?sig=1"),
            "https://cdn.x/blob?sig=1"
        );
        assert_eq!(join_url(b, "//cdn.x/blob"), "https://cdn.x/blob");
        assert_eq!(join_url(b, "/api/x"), "https://hf.co/api/x");
        assert_eq!(
            join_url(b, "c.bin"),
            "https://hf.co/org/name/resolve/main/a/c.bin"
        );
        assert_eq!(join_url("http://h:1", "x"), "http://h:1/x");
        assert!(is_relative("/a") && is_relative("a") && !is_relative("//h/a"));
    }

    #[test]
    fn loopback() {
        for u in [
            "http://127.0.0.1:8080/x",
            "http://localhost/",
            "http://[::1]:9/a",
            "http://127.1.2.3",
        ] {
            assert!(is_loopback(u), "{u}");
        }
        for u in [
            "https://huggingface.co/x",
            "http://10.0.0.1/",
            "http://127.0.0.1.evil.com/",
            "http://localhost.evil/",
        ] {
            assert!(!is_loopback(u), "{u}");
        }
    }

    #[test]
    fn origins() {
        assert_eq!(origin("http://127.0.0.1:80/a/b"), "http://127.0.0.1:80");
        assert_eq!(origin("https://hf.co"), "https://hf.co");
        assert_eq!(origin("https://hf.co?q"), "https://hf.co");
        assert_eq!(origin("/relative"), "");
    }

    #[test]
    fn encoding() {
        assert_eq!(encode("refs/pr/1", false), "refs%2Fpr%2F1");
        assert_eq!(encode("dir/my file+.bin", true), "dir/my%20file%2B.bin");
        assert_eq!(encode("é", true), "%C3%A9");
    }

    #[test]
    fn etags_and_ranges() {
        assert_eq!(normalize_etag("W/\"abc\""), "abc");
        assert_eq!(normalize_etag("\"abc\""), "abc");
        assert_eq!(normalize_etag("abc"), "abc");
        assert_eq!(
            parse_content_range("bytes 10-99/100"),
            Some((10, Some(100)))
        );
        assert_eq!(parse_content_range("bytes 10-99/*"), Some((10, None)));
        assert_eq!(parse_content_range("items 1-2/3"), None);
    }
}
