//! Typed errors. Every variant that comes from a request names the repo,
//! the file (when there is one) and the URL, so that a message printed to a
//! user is enough to reproduce the failure by hand.

use std::path::PathBuf;

/// Boxed error used as the source of network failures.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Result alias of this crate.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong while resolving or downloading a file.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The repo id is not of the form `org/name` (or `name`) with `[A-Za-z0-9._-]`.
    #[error("invalid repo id {repo_id:?}: expected \"org/name\" made of [A-Za-z0-9._-]")]
    InvalidRepoId { repo_id: String },

    /// A filename is empty, absolute, or has `.`/`..`/empty components.
    #[error("invalid filename {filename:?} for {repo_id}: {reason}")]
    InvalidFilename {
        repo_id: String,
        filename: String,
        reason: &'static str,
    },

    /// A revision is empty or has `.`/`..`/empty components.
    #[error("invalid revision {revision:?} for {repo_id}: {reason}")]
    InvalidRevision {
        repo_id: String,
        revision: String,
        reason: &'static str,
    },

    /// The repository does not exist (the Hub also answers this for private
    /// repositories when no valid token is sent).
    #[error(
        "repository {repo_id} not found at {url} (if it is private, set HF_TOKEN to a token that can read it)"
    )]
    RepoNotFound { repo_id: String, url: String },

    /// The repository exists but the branch, tag or commit does not.
    #[error("revision {revision:?} not found in {repo_id} ({url})")]
    RevisionNotFound {
        repo_id: String,
        revision: String,
        url: String,
    },

    /// The repository and revision exist but the file does not.
    #[error("file {filename:?} not found in {repo_id} at revision {revision:?} ({url})")]
    EntryNotFound {
        repo_id: String,
        revision: String,
        filename: String,
        url: String,
    },

    /// The repository is gated: its terms must be accepted on the Hub and a
    /// token of an account that did so must be sent.
    #[error(
        "{} is gated (HTTP {status} from {url}): accept its conditions on the Hub and set HF_TOKEN{}",
        target(repo_id, filename.as_deref()),
        detail(message.as_deref())
    )]
    GatedRepo {
        repo_id: String,
        filename: Option<String>,
        url: String,
        status: u16,
        message: Option<String>,
    },

    /// 401/403 without a more precise reason: missing, invalid or
    /// insufficient token.
    #[error(
        "access to {} denied (HTTP {status} from {url}): set HF_TOKEN to a token that can read it{}",
        target(repo_id, filename.as_deref()),
        detail(message.as_deref())
    )]
    Unauthorized {
        repo_id: String,
        filename: Option<String>,
        url: String,
        status: u16,
        message: Option<String>,
    },

    /// Any other unexpected HTTP status.
    #[error(
        "HTTP {status} from {url} for {}{}",
        target(repo_id, filename.as_deref()),
        detail(message.as_deref())
    )]
    Http {
        repo_id: String,
        filename: Option<String>,
        url: String,
        status: u16,
        message: Option<String>,
    },

    /// The Hub (or the CDN it redirected to) could not be reached, or the
    /// connection broke mid-transfer. A partial download is kept as
    /// `blobs/<etag>.incomplete` and resumed by the next call.
    #[error("network error for {} at {url}: {source}", target(repo_id, filename.as_deref()))]
    Network {
        repo_id: String,
        filename: Option<String>,
        url: String,
        #[source]
        source: BoxError,
    },

    /// Offline (by `HF_HUB_OFFLINE` or because the network failed) and the
    /// requested file or snapshot is not in the cache.
    #[error(
        "{} at revision {revision:?} is not in the cache {} and {reason}",
        target(repo_id, filename.as_deref()),
        cache_dir.display()
    )]
    NotCached {
        repo_id: String,
        revision: String,
        filename: Option<String>,
        cache_dir: PathBuf,
        /// Why the network was not used.
        reason: OfflineReason,
    },

    /// The downloaded size differs from the size announced by the Hub.
    #[error(
        "size mismatch for {repo_id}/{filename} from {url}: expected {expected} bytes, got {actual}"
    )]
    SizeMismatch {
        repo_id: String,
        filename: String,
        url: String,
        expected: u64,
        actual: u64,
    },

    /// The SHA-256 of a downloaded LFS file differs from its etag.
    #[error(
        "checksum mismatch for {repo_id}/{filename} from {url}: expected sha256 {expected}, got {actual}"
    )]
    ChecksumMismatch {
        repo_id: String,
        filename: String,
        url: String,
        expected: String,
        actual: String,
    },

    /// The server answered something this client cannot use (missing
    /// `X-Repo-Commit`/`ETag`, malformed JSON, redirect loop, ...).
    #[error("invalid response from {url} for {}: {message}", target(repo_id, filename.as_deref()))]
    InvalidResponse {
        repo_id: String,
        filename: Option<String>,
        url: String,
        message: String,
    },

    /// A local file-system operation in the cache failed.
    #[error("I/O error on {}: {source}", path.display())]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// Why a request was answered from the cache only.
#[derive(Debug)]
#[non_exhaustive]
pub enum OfflineReason {
    /// `HF_HUB_OFFLINE` is set (or [`crate::Hub::with_offline`] was used).
    OfflineMode,
    /// The Hub could not be reached; this is the failure.
    Unreachable(Box<Error>),
}

impl std::fmt::Display for OfflineReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OfflineReason::OfflineMode => write!(f, "offline mode is on (HF_HUB_OFFLINE)"),
            OfflineReason::Unreachable(e) => write!(f, "the Hub could not be reached: {e}"),
        }
    }
}

impl Error {
    /// True for failures that mean "the Hub is unreachable right now"
    /// (connection/DNS/TLS/timeouts, 5xx and 429). These make the client fall
    /// back to the cache; definite answers such as 404 or 401 do not.
    pub fn is_transient(&self) -> bool {
        match self {
            Error::Network { .. } => true,
            Error::Http { status, .. } => *status >= 500 || *status == 429,
            _ => false,
        }
    }

    /// True for "does not exist" answers (repo, revision or file).
    pub fn is_not_found(&self) -> bool {
        matches!(
            self,
            Error::RepoNotFound { .. }
                | Error::RevisionNotFound { .. }
                | Error::EntryNotFound { .. }
        )
    }

    pub(crate) fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            path: path.into(),
            source,
        }
    }
}

fn target(repo_id: &str, filename: Option<&str>) -> String {
    match filename {
        Some(f) => format!("{repo_id}/{f}"),
        None => repo_id.to_string(),
    }
}

fn detail(message: Option<&str>) -> String {
    match message {
        Some(m) if !m.is_empty() => format!(" ({m})"),
        _ => String::new(),
    }
}
