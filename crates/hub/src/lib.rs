//! Download models from the Hugging Face Hub into the standard HF cache.
//!
//! # The cache layout
//!
//! Files land where `huggingface_hub` (Python) and `hf-hub` (Rust) put them,
//! so a model fetched by any of these tools is found by the others:
//!
//! ```text
//! $HF_HUB_CACHE/models--{org}--{name}/
//!     blobs/<etag>                   the bytes, named by the Hub's etag
//!                                    (SHA-256 for LFS files, git blob id otherwise)
//!     blobs/<etag>.incomplete        a download in progress or interrupted
//!     refs/main                      the commit hash that `main` last resolved to
//!     snapshots/<commit>/<filename>  relative symlink to ../../blobs/<etag>
//! ```
//!
//! Content is stored once per etag, and a snapshot is a tree of symlinks, so
//! two revisions that share a file share its blob. A blob only appears under
//! its final name once it is complete (it is written as `.incomplete` and
//! renamed), so "the snapshot path resolves to a file" means "fully
//! downloaded". The cache root is `HF_HUB_CACHE`, else `$HF_HOME/hub`, else
//! `$XDG_CACHE_HOME/huggingface/hub`, else `~/.cache/huggingface/hub`.
//!
//! # The protocol
//!
//! `GET {endpoint}/api/models/{repo}/revision/{rev}` lists a repo's files and
//! the commit `rev` points to. For one file, a `HEAD` of
//! `{endpoint}/{repo}/resolve/{rev}/{file}` is sent *without* following
//! redirects: that first response carries `X-Repo-Commit`, the etag
//! (`X-Linked-Etag` for LFS files, whose `302` points to a CDN, else `ETag`)
//! and the size (`X-Linked-Size`, else `Content-Length`). Knowing the etag
//! before downloading tells us whether the blob is already cached, and where
//! a partial download lives. Then a `GET` fetches the bytes, following the
//! redirect; the token is only ever sent to the endpoint's own host.
//!
//! # Why our own client
//!
//! The `hf-hub` crate dropped resume in 1.0, and a multi-gigabyte model over
//! a flaky link needs it: an existing `.incomplete` file is continued with
//! `Range: bytes=N-` (a `206` appends; a `200` means the server ignored the
//! range, and the download restarts from zero), and a connection that breaks
//! after making progress is retried in the same call. Owning the client also
//! gives typed errors that name the repo, file and URL, a per-file lock so
//! that concurrent downloads of one blob do not corrupt it, a SHA-256 check
//! of LFS files against their etag, and a small dependency tree (a blocking
//! `ureq`). And the whole flow is tested against a local server that
//! emulates the Hub, with no network.
//!
//! # Offline mode
//!
//! With `HF_HUB_OFFLINE=1` (or [`Hub::with_offline`]) no request is made:
//! `refs/<revision>` gives the commit (a commit hash is used as is) and the
//! snapshot gives the file. The same fallback happens when the Hub cannot be
//! reached (connection failure, timeout, 5xx), so cached models keep working
//! on a plane. A definite answer from the Hub (404, 401) is not masked by
//! the cache. When the file is not cached, [`Error::NotCached`] says so, and
//! why the network was not used. A revision that is a commit hash whose
//! file is cached never touches the network at all.
//!
//! # Progress and proxies
//!
//! Each downloaded file gets an indicatif bar on stderr (bytes, rate, ETA),
//! hidden when stderr is not a terminal, with [`Hub::with_progress`]`(false)`
//! or `HF_HUB_DISABLE_PROGRESS_BARS=1`. `HTTPS_PROXY`/`NO_PROXY` are honoured,
//! except for loopback hosts, which are always reached directly.

mod cache;
mod download;
mod env;
mod error;
mod http;
mod progress;

use std::fs;
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use serde::Deserialize;

use crate::cache::{RepoCache, is_commit_hash, is_safe_component};
use crate::download::FileMeta;
use crate::http::{Client, Ctx, header, is_redirect, is_relative, normalize_etag};

pub use crate::env::DEFAULT_ENDPOINT;
pub use crate::error::{BoxError, Error, OfflineReason, Result};

/// The files of a repository at one commit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoInfo {
    /// The commit hash the revision resolved to.
    pub commit: String,
    pub files: Vec<RepoFile>,
}

/// One file of a repository.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RepoFile {
    /// Path in the repo, `/`-separated.
    pub name: String,
    /// Size in bytes, when the listing reports it.
    pub size: Option<u64>,
}

/// A client for the Hugging Face Hub bound to one endpoint and one cache.
#[derive(Clone)]
pub struct Hub {
    endpoint: String,
    cache_dir: PathBuf,
    token: Option<String>,
    offline: bool,
    progress: bool,
    max_retries: u32,
    client: OnceLock<Client>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("endpoint", &self.endpoint)
            .field("cache_dir", &self.cache_dir)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field("offline", &self.offline)
            .field("progress", &self.progress)
            .field("max_retries", &self.max_retries)
            .finish()
    }
}

#[derive(Deserialize)]
struct ApiRepoInfo {
    sha: Option<String>,
    #[serde(default)]
    siblings: Vec<ApiSibling>,
}

#[derive(Deserialize)]
struct ApiSibling {
    rfilename: String,
    size: Option<u64>,
    lfs: Option<ApiLfs>,
}

#[derive(Deserialize)]
struct ApiLfs {
    size: Option<u64>,
}

impl Hub {
    /// A client configured from the environment: `HF_ENDPOINT`, the cache
    /// directory (`HF_HUB_CACHE`, `HF_HOME`, `XDG_CACHE_HOME`), the token
    /// (`HF_TOKEN`, else the `$HF_HOME/token` file), `HF_HUB_OFFLINE` and
    /// `HF_HUB_DISABLE_PROGRESS_BARS`.
    pub fn from_env() -> Hub {
        let var = |k: &str| std::env::var(k).ok();
        let read = |p: &Path| fs::read_to_string(p).ok();
        let cfg = env::resolve(&var, env::home_dir().as_deref(), &read);
        Hub::new(cfg.endpoint, cfg.cache_dir)
            .with_token(cfg.token)
            .with_offline(cfg.offline)
            .with_progress(cfg.progress)
    }

    /// A client for `endpoint` (e.g. `https://huggingface.co`) storing files
    /// under `cache_dir`, with no token, online, progress bars on.
    pub fn new(endpoint: String, cache_dir: PathBuf) -> Hub {
        Hub {
            endpoint: endpoint.trim().trim_end_matches('/').to_string(),
            cache_dir,
            token: None,
            offline: false,
            progress: true,
            max_retries: 5,
            client: OnceLock::new(),
        }
    }

    /// Shows (`true`, the default) or hides the per-file progress bars. Bars
    /// are never drawn when stderr is not a terminal.
    pub fn with_progress(mut self, on: bool) -> Hub {
        self.progress = on;
        self
    }

    /// Sets the token sent as `Authorization: Bearer` to the endpoint's host.
    pub fn with_token(mut self, token: Option<String>) -> Hub {
        self.token = token.filter(|t| !t.trim().is_empty());
        self.client = OnceLock::new();
        self
    }

    /// Offline mode: answer from the cache only, never touching the network.
    pub fn with_offline(mut self, offline: bool) -> Hub {
        self.offline = offline;
        self
    }

    /// How many times a download that broke after making progress is resumed
    /// within one call (default 5).
    pub fn with_max_retries(mut self, n: u32) -> Hub {
        self.max_retries = n;
        self
    }

    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    pub fn is_offline(&self) -> bool {
        self.offline
    }

    /// The cache folder of a repo (`<cache>/models--{org}--{name}`), whether
    /// or not it exists.
    pub fn repo_cache_dir(&self, repo_id: &str) -> PathBuf {
        RepoCache::new(&self.cache_dir, repo_id).dir()
    }

    /// Is `s` shaped like a repo id: `org/name`, exactly one `/`, each part
    /// made of `[A-Za-z0-9._-]`, not starting with `.` (nor `-`), with no
    /// `--` or `..`, and not looking like a file: a name ending in a model
    /// file's extension (`models/ggml-model-i2_s.gguf`, `.safetensors`,
    /// `.bin`, ...) is a path. Callers check first whether `s` is an
    /// existing local path.
    pub fn looks_like_repo_id(s: &str) -> bool {
        repo_id_shape(s)
            && !s
                .split_once('/')
                .is_some_and(|(_, name)| has_file_extension(name))
    }

    /// Files of a repo at a revision, from the Hub. Offline (or when the Hub
    /// cannot be reached) the cached snapshot is listed instead, which only
    /// has the files downloaded so far.
    pub fn list_files(&self, repo_id: &str, revision: &str) -> Result<RepoInfo> {
        validate_repo_id(repo_id)?;
        validate_revision(repo_id, revision)?;
        if self.offline {
            return self.cached_listing(repo_id, revision, OfflineReason::OfflineMode);
        }
        match self.fetch_repo_info(repo_id, revision) {
            Err(e) if e.is_transient() => {
                self.cached_listing(repo_id, revision, OfflineReason::Unreachable(Box::new(e)))
            }
            r => r,
        }
    }

    /// Path of a cached file for repo@revision if it is fully downloaded (no
    /// network).
    pub fn cached_file(&self, repo_id: &str, revision: &str, filename: &str) -> Option<PathBuf> {
        validate_repo_id(repo_id).ok()?;
        validate_revision(repo_id, revision).ok()?;
        validate_filename(repo_id, filename).ok()?;
        let cache = RepoCache::new(&self.cache_dir, repo_id);
        let commit = cache.resolve_commit(revision)?;
        let path = cache.snapshot_file(&commit, filename);
        path.is_file().then_some(path)
    }

    /// Snapshot directory for repo@revision if it exists in the cache (no
    /// network). It holds the files downloaded so far at that commit.
    pub fn cached_snapshot(&self, repo_id: &str, revision: &str) -> Option<PathBuf> {
        validate_repo_id(repo_id).ok()?;
        validate_revision(repo_id, revision).ok()?;
        let cache = RepoCache::new(&self.cache_dir, repo_id);
        let dir = cache.snapshot_dir(&cache.resolve_commit(revision)?);
        dir.is_dir().then_some(dir)
    }

    /// Downloads one file (resuming a partial download; no download if the
    /// blob is complete) and returns its path in the snapshot.
    pub fn download_file(&self, repo_id: &str, revision: &str, filename: &str) -> Result<PathBuf> {
        validate_repo_id(repo_id)?;
        validate_revision(repo_id, revision)?;
        validate_filename(repo_id, filename)?;
        self.download_file_checked(repo_id, revision, filename)
    }

    /// Downloads the files of the repo that `filter` accepts (given the
    /// `/`-separated name) and returns the snapshot directory. Offline (or
    /// when the Hub cannot be reached) returns the cached snapshot, if any.
    pub fn download_repo(
        &self,
        repo_id: &str,
        revision: &str,
        filter: &dyn Fn(&str) -> bool,
    ) -> Result<PathBuf> {
        validate_repo_id(repo_id)?;
        validate_revision(repo_id, revision)?;
        let from_cache = |reason: OfflineReason| {
            self.cached_snapshot(repo_id, revision)
                .ok_or_else(|| self.not_cached(repo_id, revision, None, reason))
        };
        if self.offline {
            return from_cache(OfflineReason::OfflineMode);
        }
        let info = match self.fetch_repo_info(repo_id, revision) {
            Ok(info) => info,
            Err(e) if e.is_transient() => {
                return from_cache(OfflineReason::Unreachable(Box::new(e)));
            }
            Err(e) => return Err(e),
        };
        for file in info.files.iter().filter(|f| filter(&f.name)) {
            validate_filename(repo_id, &file.name)?;
            self.download_file_checked(repo_id, &info.commit, &file.name)?;
        }
        let cache = RepoCache::new(&self.cache_dir, repo_id);
        let dir = cache.snapshot_dir(&info.commit);
        fs::create_dir_all(&dir).map_err(|e| Error::io(&dir, e))?;
        cache.write_ref(revision, &info.commit)?;
        Ok(dir)
    }

    // ----- internals -----

    fn client(&self) -> &Client {
        self.client
            .get_or_init(|| Client::new(&self.endpoint, self.token.clone()))
    }

    fn download_file_checked(
        &self,
        repo_id: &str,
        revision: &str,
        filename: &str,
    ) -> Result<PathBuf> {
        if is_commit_hash(revision)
            && let Some(path) = self.cached_file(repo_id, revision, filename)
        {
            return Ok(path);
        }
        let not_cached = |reason: OfflineReason| {
            self.cached_file(repo_id, revision, filename)
                .ok_or_else(|| self.not_cached(repo_id, revision, Some(filename), reason))
        };
        if self.offline {
            return not_cached(OfflineReason::OfflineMode);
        }
        let ctx = Ctx {
            repo_id,
            revision,
            filename: Some(filename),
        };
        let meta = match self.file_metadata(ctx) {
            Ok(meta) => meta,
            Err(e) if e.is_transient() => {
                return not_cached(OfflineReason::Unreachable(Box::new(e)));
            }
            Err(e) => return Err(e),
        };
        let cache = RepoCache::new(&self.cache_dir, repo_id);
        let opts = download::Options {
            progress: self.progress,
            max_retries: self.max_retries,
        };
        download::fetch_blob(self.client(), &cache, &meta, ctx, &opts)?;
        let path = cache.link_snapshot(&meta.commit, filename, &meta.etag)?;
        cache.write_ref(revision, &meta.commit)?;
        Ok(path)
    }

    /// HEAD on the resolve URL, not following redirects to other hosts.
    fn file_metadata(&self, ctx: Ctx<'_>) -> Result<FileMeta> {
        let filename = ctx.filename.unwrap_or_default();
        let mut url = resolve_url(&self.endpoint, ctx.repo_id, ctx.revision, filename);
        for hop in 0..=http::MAX_REDIRECTS {
            let resp = self.client().head(&url, ctx)?;
            let status = resp.status().as_u16();
            let h = resp.headers();
            let commit = header(h, "x-repo-commit");
            let linked_etag = header(h, "x-linked-etag");
            let location = if is_redirect(status) {
                let loc = http::redirect_target(&url, h, ctx)?;
                // A relative redirect without metadata (renamed repo): follow it.
                if commit.is_none()
                    && linked_etag.is_none()
                    && header(h, "location").is_some_and(is_relative)
                {
                    url = loc;
                    continue;
                }
                Some(loc)
            } else if (200..300).contains(&status) {
                None
            } else {
                return Err(http::status_error(status, h, &url, ctx));
            };
            let commit = commit.ok_or_else(|| {
                http::invalid(
                    ctx,
                    &url,
                    "no X-Repo-Commit header (is this a Hugging Face Hub endpoint?)",
                )
            })?;
            let etag = linked_etag
                .or_else(|| header(h, "etag"))
                .map(normalize_etag)
                .ok_or_else(|| http::invalid(ctx, &url, "no ETag or X-Linked-Etag header"))?;
            if !is_safe_component(commit) || !is_safe_component(&etag) {
                return Err(http::invalid(
                    ctx,
                    &url,
                    format!("unusable commit {commit:?} or etag {etag:?}"),
                ));
            }
            let size = header(h, "x-linked-size")
                .or_else(|| {
                    location
                        .is_none()
                        .then(|| header(h, "content-length"))
                        .flatten()
                })
                .and_then(|v| v.parse().ok());
            let download_url = match location {
                Some(loc) => loc,
                // Pin the GET to the commit, so that a branch moving between
                // HEAD and GET cannot mix two versions.
                None if hop == 0 => resolve_url(&self.endpoint, ctx.repo_id, commit, filename),
                None => url.clone(),
            };
            return Ok(FileMeta {
                commit: commit.to_string(),
                etag,
                size,
                download_url,
            });
        }
        Err(http::invalid(ctx, &url, "too many redirects"))
    }

    fn fetch_repo_info(&self, repo_id: &str, revision: &str) -> Result<RepoInfo> {
        let ctx = Ctx {
            repo_id,
            revision,
            filename: None,
        };
        let url = format!(
            "{}/api/models/{repo_id}/revision/{}",
            self.endpoint,
            http::encode(revision, false)
        );
        let (url, resp) = self.client().get(&url, 0, ctx)?;
        let status = resp.status().as_u16();
        if status != 200 {
            return Err(http::status_error(status, resp.headers(), &url, ctx));
        }
        let body = resp
            .into_body()
            .into_with_config()
            .limit(256 << 20)
            .read_to_vec()
            .map_err(|e| http::network(ctx, &url, e))?;
        let info: ApiRepoInfo = serde_json::from_slice(&body)
            .map_err(|e| http::invalid(ctx, &url, format!("bad repo info JSON: {e}")))?;
        let commit = info
            .sha
            .filter(|s| is_safe_component(s))
            .ok_or_else(|| http::invalid(ctx, &url, "repo info has no usable \"sha\""))?;
        let files = info
            .siblings
            .into_iter()
            .map(|s| RepoFile {
                size: s.size.or(s.lfs.and_then(|l| l.size)),
                name: s.rfilename,
            })
            .collect();
        Ok(RepoInfo { commit, files })
    }

    fn cached_listing(
        &self,
        repo_id: &str,
        revision: &str,
        reason: OfflineReason,
    ) -> Result<RepoInfo> {
        let cache = RepoCache::new(&self.cache_dir, repo_id);
        match cache.resolve_commit(revision) {
            Some(commit) if cache.snapshot_dir(&commit).is_dir() => {
                let files = cache
                    .list_snapshot(&commit)
                    .into_iter()
                    .map(|(name, size)| RepoFile {
                        name,
                        size: Some(size),
                    })
                    .collect();
                Ok(RepoInfo { commit, files })
            }
            _ => Err(self.not_cached(repo_id, revision, None, reason)),
        }
    }

    fn not_cached(
        &self,
        repo_id: &str,
        revision: &str,
        filename: Option<&str>,
        reason: OfflineReason,
    ) -> Error {
        Error::NotCached {
            repo_id: repo_id.to_string(),
            revision: revision.to_string(),
            filename: filename.map(str::to_string),
            cache_dir: self.cache_dir.clone(),
            reason,
        }
    }
}

fn resolve_url(endpoint: &str, repo_id: &str, revision: &str, filename: &str) -> String {
    format!(
        "{endpoint}/{repo_id}/resolve/{}/{}",
        http::encode(revision, false),
        http::encode(filename, true)
    )
}

/// One part of a repo id, following the Hub's rules: `[A-Za-z0-9._-]`, at
/// most 96 characters, starting and ending with a letter, digit or `_`, no
/// `--` or `..`.
fn valid_repo_part(p: &str) -> bool {
    let edge_ok = |c: Option<char>| c.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_');
    !p.is_empty()
        && p.len() <= 96
        && p.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
        && edge_ok(p.chars().next())
        && edge_ok(p.chars().last())
        && !p.contains("--")
        && !p.contains("..")
}

/// `org/name` with both parts valid.
fn repo_id_shape(s: &str) -> bool {
    match s.split_once('/') {
        Some((org, name)) => valid_repo_part(org) && valid_repo_part(name),
        None => false,
    }
}

/// Extensions of the files a model is made of.
const FILE_EXTENSIONS: &[&str] = &[
    "gguf",
    "ggml",
    "safetensors",
    "bin",
    "pt",
    "pth",
    "ckpt",
    "json",
    "onnx",
];

/// Whether `name` ends in one of [`FILE_EXTENSIONS`] (any case).
fn has_file_extension(name: &str) -> bool {
    name.rsplit_once('.')
        .is_some_and(|(_, ext)| FILE_EXTENSIONS.iter().any(|e| ext.eq_ignore_ascii_case(e)))
}

/// Accepts `org/name` (even one that looks like a file name: the Hub allows
/// it when asked for explicitly), and also the Hub's legacy un-namespaced
/// `name`.
fn validate_repo_id(repo_id: &str) -> Result<()> {
    let ok = match repo_id.split_once('/') {
        Some(_) => repo_id_shape(repo_id),
        None => valid_repo_part(repo_id),
    };
    if ok {
        Ok(())
    } else {
        Err(Error::InvalidRepoId {
            repo_id: repo_id.to_string(),
        })
    }
}

/// Why a `/`-separated relative path cannot be used in the cache, if it cannot.
fn path_problem(p: &str) -> Option<&'static str> {
    if p.is_empty() {
        Some("it is empty")
    } else if p.starts_with('/') {
        Some("it is absolute")
    } else if p.contains(['\\', '\0']) {
        Some("it contains a backslash or NUL")
    } else if p.split('/').any(|c| c.is_empty() || c == "." || c == "..") {
        Some("it has an empty, '.' or '..' component")
    } else {
        None
    }
}

fn validate_filename(repo_id: &str, filename: &str) -> Result<()> {
    match path_problem(filename) {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidFilename {
            repo_id: repo_id.to_string(),
            filename: filename.to_string(),
            reason,
        }),
    }
}

fn validate_revision(repo_id: &str, revision: &str) -> Result<()> {
    match path_problem(revision) {
        None => Ok(()),
        Some(reason) => Err(Error::InvalidRevision {
            repo_id: repo_id.to_string(),
            revision: revision.to_string(),
            reason,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repo_id_shapes() {
        for ok in [
            "microsoft/bitnet-b1.58-2B-4T",
            "1bitLLM/bitnet_b1_58-large",
            "a/b",
            "_x/y_",
        ] {
            assert!(Hub::looks_like_repo_id(ok), "{ok}");
        }
        for bad in [
            "",
            "gpt2",
            "/abs/path",
            "./model",
            "../model",
            "a/b/c",
            "org/",
            "/name",
            ".org/name",
            "org/.name",
            "org/na me",
            "org/name.",
            "-org/name",
            "org/a--b",
            "org/a..b",
            "models/foo.gguf/",
            "C:\\models\\x",
            // Files, not repos: a model file's extension, a home directory.
            "out/tiny-tq1_0.gguf",
            "models/ggml-model-i2_s.gguf",
            "ckpt/model.safetensors",
            "ckpt/pytorch_model.BIN",
            "~/model",
            "~/models/x.gguf",
        ] {
            assert!(!Hub::looks_like_repo_id(bad), "{bad}");
        }
        // Dots elsewhere are fine in repo names.
        assert!(Hub::looks_like_repo_id("microsoft/bitnet-b1.58-2B-4T-gguf"));
        assert!(Hub::looks_like_repo_id("org/model.v2"));
        assert!(validate_repo_id("gpt2").is_ok());
        assert!(validate_repo_id("../x").is_err());
    }

    #[test]
    fn path_checks() {
        assert!(path_problem("model.gguf").is_none());
        assert!(path_problem("sub/dir/x.json").is_none());
        assert!(path_problem("refs/pr/1").is_none());
        for bad in [
            "",
            "/etc/passwd",
            "a/../b",
            "..",
            "a//b",
            "a/",
            "./a",
            "a\\b",
        ] {
            assert!(path_problem(bad).is_some(), "{bad}");
        }
    }

    #[test]
    fn resolve_urls() {
        assert_eq!(
            resolve_url("https://hf.co", "o/n", "refs/pr/1", "dir/a b.json"),
            "https://hf.co/o/n/resolve/refs%2Fpr%2F1/dir/a%20b.json"
        );
    }

    #[test]
    fn hub_and_error_are_send_sync() {
        fn check<T: Send + Sync + 'static>() {}
        check::<Hub>();
        check::<Error>();
    }

    #[test]
    fn debug_redacts_token() {
        let hub = Hub::new("http://x".into(), "/tmp".into()).with_token(Some("secret".into()));
        assert!(!format!("{hub:?}").contains("secret"));
    }
}
