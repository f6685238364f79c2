//! Downloading one blob into `blobs/<etag>`, resuming `blobs/<etag>.incomplete`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::cache::RepoCache;
use crate::error::{Error, Result};
use crate::http::{self, Client, Ctx, header, network, parse_content_range, status_error};
use crate::progress;

/// What the HEAD request told us about a file.
#[derive(Debug, Clone)]
pub(crate) struct FileMeta {
    pub commit: String,
    pub etag: String,
    pub size: Option<u64>,
    pub download_url: String,
}

pub(crate) struct Options {
    pub progress: bool,
    pub max_retries: u32,
}

const BUF_SIZE: usize = 256 * 1024;

/// An LFS etag is the SHA-256 of the content: 64 lowercase hex digits.
pub(crate) fn is_sha256(etag: &str) -> bool {
    etag.len() == 64 && etag.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

/// Makes sure `blobs/<meta.etag>` exists with the file's content.
///
/// Holds `.locks/.../<etag>.lock` for the duration, so that concurrent
/// processes (or threads) downloading the same blob do not interleave writes.
pub(crate) fn fetch_blob(
    client: &Client,
    cache: &RepoCache,
    meta: &FileMeta,
    ctx: Ctx<'_>,
    opts: &Options,
) -> Result<()> {
    let blob = cache.blob(&meta.etag);
    if blob.is_file() {
        return Ok(());
    }
    let lock_path = cache.lock_file(&meta.etag);
    create_parent(&lock_path)?;
    let lock = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(|e| Error::io(&lock_path, e))?;
    lock.lock().map_err(|e| Error::io(&lock_path, e))?;
    if blob.is_file() {
        // Another process finished it while we waited for the lock.
        return Ok(());
    }

    let part = cache.incomplete(&meta.etag);
    create_parent(&part)?;
    let mut file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(&part)
        .map_err(|e| Error::io(&part, e))?;

    let filename = ctx.filename.unwrap_or_default();
    let mut dl = Download {
        client,
        ctx,
        part: &part,
        file: &mut file,
        expected: meta.size,
        hasher: is_sha256(&meta.etag).then(Sha256::new),
        hashed: 0,
        url: meta.download_url.clone(),
        bar: progress::file_bar(opts.progress, filename, meta.size),
    };
    let res = dl
        .run(opts.max_retries)
        .and_then(|()| dl.verify(&meta.etag));
    let bar = dl.bar.clone();
    let dl_expected = dl.expected;
    drop(file);
    match res {
        Ok(()) => {
            fs::rename(&part, &blob).map_err(|e| Error::io(&blob, e))?;
            bar.finish();
            Ok(())
        }
        Err(e) => {
            bar.abandon();
            match fs::metadata(&part) {
                // Nothing worth resuming: do not leave an empty file behind.
                Ok(m) if m.len() == 0 => {
                    let _ = fs::remove_file(&part);
                    Err(e)
                }
                Ok(m) => Err(with_kept_bytes(e, m.len(), dl_expected)),
                Err(_) => Err(e),
            }
        }
    }
}

/// Adds "N of M bytes kept" to a network error's message.
fn with_kept_bytes(e: Error, kept: u64, total: Option<u64>) -> Error {
    match e {
        Error::Network {
            repo_id,
            filename,
            url,
            source,
        } => Error::Network {
            repo_id,
            filename,
            url,
            source: Box::new(Kept {
                inner: source,
                kept,
                total,
            }),
        },
        e => e,
    }
}

/// A network error after which a partial download was kept for resume.
#[derive(Debug)]
struct Kept {
    inner: crate::error::BoxError,
    kept: u64,
    total: Option<u64>,
}

impl std::fmt::Display for Kept {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({} ", self.inner, self.kept)?;
        if let Some(t) = self.total {
            write!(f, "of {t} ")?;
        }
        write!(f, "bytes kept; the next call resumes the download)")
    }
}

impl std::error::Error for Kept {}

struct Download<'a> {
    client: &'a Client,
    ctx: Ctx<'a>,
    part: &'a Path,
    file: &'a mut File,
    /// Total size, from the HEAD request or else from the first GET.
    expected: Option<u64>,
    /// SHA-256 of the first `hashed` bytes of the file, for LFS blobs.
    hasher: Option<Sha256>,
    hashed: u64,
    url: String,
    bar: indicatif::ProgressBar,
}

/// Outcome of one GET attempt that did not finish the file.
struct Failed {
    error: Box<Error>,
    /// Whether the attempt made progress (worth retrying right away).
    retry: bool,
}

impl Download<'_> {
    fn len(&self) -> Result<u64> {
        self.file
            .metadata()
            .map(|m| m.len())
            .map_err(|e| Error::io(self.part, e))
    }

    fn truncate(&mut self) -> Result<()> {
        self.file.set_len(0).map_err(|e| Error::io(self.part, e))?;
        self.bar.set_position(0);
        Ok(())
    }

    fn run(&mut self, max_retries: u32) -> Result<()> {
        let mut have = self.len()?;
        if self.expected.is_some_and(|e| have > e) {
            self.truncate()?;
            have = 0;
        }
        self.bar.set_position(have);
        let mut retries = 0;
        loop {
            match self.attempt() {
                Ok(()) => return Ok(()),
                Err(Failed { error, retry }) => {
                    if !retry || retries >= max_retries {
                        return Err(*error);
                    }
                    retries += 1;
                    std::thread::sleep(Duration::from_millis(100 << retries.min(5)));
                }
            }
        }
    }

    /// One GET from the current length of the partial file to the end.
    fn attempt(&mut self) -> std::result::Result<(), Failed> {
        let fatal = |error: Error| Failed {
            error: Box::new(error),
            retry: false,
        };
        let mut have = self.len().map_err(fatal)?;
        if self.expected == Some(have) {
            return Ok(());
        }
        let (url, resp) = self.get(have)?;
        let status = resp.status().as_u16();
        let headers = resp.headers();
        match status {
            206 => {
                let range = header(headers, "content-range").and_then(parse_content_range);
                match range {
                    Some((start, total)) if start == have => {
                        if let Some(total) = total {
                            self.check_total(total, &url).map_err(fatal)?;
                        }
                    }
                    _ => {
                        // Not the range we asked for: start over from 0.
                        self.truncate().map_err(fatal)?;
                        return Err(Failed {
                            error: Box::new(http::invalid(
                                self.ctx,
                                &url,
                                "unexpected Content-Range",
                            )),
                            retry: true,
                        });
                    }
                }
            }
            200 => {
                // The server ignored the Range header: the body is the whole file.
                if have > 0 {
                    self.truncate().map_err(fatal)?;
                    have = 0;
                }
                if let Some(total) = header(headers, "content-length").and_then(|v| v.parse().ok())
                {
                    self.check_total(total, &url).map_err(fatal)?;
                }
            }
            416 if have > 0 => {
                // Our partial file is at least as long as the file: it is stale.
                self.truncate().map_err(fatal)?;
                return Err(Failed {
                    error: Box::new(http::invalid(self.ctx, &url, "range not satisfiable")),
                    retry: true,
                });
            }
            _ => return Err(fatal(status_error(status, headers, &url, self.ctx))),
        }
        if let Some(total) = self.expected {
            progress::set_total(&self.bar, total);
        }
        self.sync_hash(have).map_err(fatal)?;
        self.file
            .seek(SeekFrom::Start(have))
            .map_err(|e| fatal(Error::io(self.part, e)))?;

        let mut reader = resp.into_body().into_reader();
        let mut buf = vec![0u8; BUF_SIZE];
        let mut received = 0u64;
        let read_error = loop {
            let n = match reader.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => break Some(e),
            };
            if let Some(total) = self.expected
                && have + n as u64 > total
            {
                let actual = have + n as u64;
                let _ = fs::remove_file(self.part);
                return Err(fatal(self.size_mismatch(&url, total, actual)));
            }
            self.file
                .write_all(&buf[..n])
                .map_err(|e| fatal(Error::io(self.part, e)))?;
            if let Some(h) = &mut self.hasher {
                h.update(&buf[..n]);
            }
            self.hashed += n as u64;
            have += n as u64;
            received += n as u64;
            self.bar.inc(n as u64);
        };
        self.file
            .flush()
            .map_err(|e| fatal(Error::io(self.part, e)))?;
        let error = match (read_error, self.expected) {
            (Some(e), _) => e,
            (None, Some(total)) if have < total => io::Error::new(
                io::ErrorKind::UnexpectedEof,
                format!("connection closed after {have} of {total} bytes"),
            ),
            (None, _) => return Ok(()),
        };
        Err(Failed {
            error: Box::new(network(self.ctx, &url, error)),
            retry: received > 0,
        })
    }

    fn get(&self, from: u64) -> std::result::Result<(String, http::Response), Failed> {
        self.client
            .get(&self.url, from, self.ctx)
            .map_err(|error| Failed {
                error: Box::new(error),
                retry: false,
            })
    }

    /// Records the total size announced by a GET, or fails if it contradicts
    /// the size announced before.
    fn check_total(&mut self, total: u64, url: &str) -> Result<()> {
        match self.expected {
            Some(e) if e != total => {
                let _ = fs::remove_file(self.part);
                Err(self.size_mismatch(url, e, total))
            }
            _ => {
                self.expected = Some(total);
                Ok(())
            }
        }
    }

    fn size_mismatch(&self, url: &str, expected: u64, actual: u64) -> Error {
        Error::SizeMismatch {
            repo_id: self.ctx.repo_id.to_string(),
            filename: self.ctx.filename.unwrap_or_default().to_string(),
            url: url.to_string(),
            expected,
            actual,
        }
    }

    /// Makes the hasher cover exactly the first `have` bytes of the file.
    fn sync_hash(&mut self, have: u64) -> Result<()> {
        if self.hasher.is_none() || self.hashed == have {
            return Ok(());
        }
        let mut h = Sha256::new();
        self.file
            .seek(SeekFrom::Start(0))
            .map_err(|e| Error::io(self.part, e))?;
        let mut buf = vec![0u8; BUF_SIZE];
        let mut left = have;
        while left > 0 {
            let want = left.min(BUF_SIZE as u64) as usize;
            let n = self
                .file
                .read(&mut buf[..want])
                .map_err(|e| Error::io(self.part, e))?;
            if n == 0 {
                break;
            }
            h.update(&buf[..n]);
            left -= n as u64;
        }
        self.hasher = Some(h);
        self.hashed = have - left;
        Ok(())
    }

    /// Final checks once the whole body has been received.
    fn verify(&mut self, etag: &str) -> Result<()> {
        let have = self.len()?;
        if let Some(total) = self.expected
            && total != have
        {
            let _ = fs::remove_file(self.part);
            return Err(self.size_mismatch(&self.url, total, have));
        }
        self.sync_hash(have)?;
        if let Some(h) = self.hasher.take() {
            let actual = hex(&h.finalize());
            if actual != etag {
                let _ = fs::remove_file(self.part);
                return Err(Error::ChecksumMismatch {
                    repo_id: self.ctx.repo_id.to_string(),
                    filename: self.ctx.filename.unwrap_or_default().to_string(),
                    url: self.url.clone(),
                    expected: etag.to_string(),
                    actual,
                });
            }
        }
        Ok(())
    }
}

fn create_parent(path: &Path) -> Result<()> {
    match path.parent() {
        Some(dir) => fs::create_dir_all(dir).map_err(|e| Error::io(dir, e)),
        None => Ok(()),
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
