//! The on-disk cache layout shared with `huggingface_hub`:
//!
//! ```text
//! <cache>/models--{org}--{name}/
//!     blobs/<etag>                  file contents, named by etag
//!     blobs/<etag>.incomplete       partial download, resumed with Range
//!     refs/<revision>               commit hash that the revision pointed to
//!     snapshots/<commit>/<filename> relative symlink to ../../blobs/<etag>
//! <cache>/.locks/models--{org}--{name}/<etag>.lock
//! ```

use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::error::{Error, Result};

/// Paths of one repository inside the cache.
#[derive(Debug, Clone)]
pub(crate) struct RepoCache {
    root: PathBuf,
    folder: String,
}

impl RepoCache {
    pub fn new(cache_dir: &Path, repo_id: &str) -> RepoCache {
        RepoCache {
            root: cache_dir.to_path_buf(),
            folder: repo_folder_name(repo_id),
        }
    }

    pub fn dir(&self) -> PathBuf {
        self.root.join(&self.folder)
    }

    pub fn blob(&self, etag: &str) -> PathBuf {
        self.dir().join("blobs").join(etag)
    }

    pub fn incomplete(&self, etag: &str) -> PathBuf {
        self.dir().join("blobs").join(format!("{etag}.incomplete"))
    }

    pub fn lock_file(&self, etag: &str) -> PathBuf {
        self.root
            .join(".locks")
            .join(&self.folder)
            .join(format!("{etag}.lock"))
    }

    pub fn ref_file(&self, revision: &str) -> PathBuf {
        self.dir().join("refs").join(revision)
    }

    pub fn snapshot_dir(&self, commit: &str) -> PathBuf {
        self.dir().join("snapshots").join(commit)
    }

    pub fn snapshot_file(&self, commit: &str, filename: &str) -> PathBuf {
        let mut p = self.snapshot_dir(commit);
        p.extend(filename.split('/'));
        p
    }

    /// Commit that `revision` resolves to in the cache: the revision itself if
    /// it is a commit hash, else the content of `refs/<revision>`.
    pub fn resolve_commit(&self, revision: &str) -> Option<String> {
        if is_commit_hash(revision) {
            return Some(revision.to_string());
        }
        let s = fs::read_to_string(self.ref_file(revision)).ok()?;
        let s = s.trim();
        is_safe_component(s).then(|| s.to_string())
    }

    /// Records that `revision` points to `commit` (atomically).
    pub fn write_ref(&self, revision: &str, commit: &str) -> Result<()> {
        if revision == commit {
            return Ok(());
        }
        let path = self.ref_file(revision);
        if fs::read_to_string(&path).is_ok_and(|s| s.trim() == commit) {
            return Ok(());
        }
        let parent = parent_of(&path);
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let tmp = temp_sibling(&path);
        let res = fs::File::create(&tmp)
            .and_then(|mut f| f.write_all(commit.as_bytes()))
            .and_then(|()| fs::rename(&tmp, &path));
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(path, e));
        }
        Ok(())
    }

    /// Makes `snapshots/<commit>/<filename>` point to `blobs/<etag>`.
    pub fn link_snapshot(&self, commit: &str, filename: &str, etag: &str) -> Result<PathBuf> {
        let pointer = self.snapshot_file(commit, filename);
        let depth = filename.split('/').count();
        let mut target = PathBuf::new();
        for _ in 0..depth + 1 {
            target.push("..");
        }
        target.push("blobs");
        target.push(etag);

        if let Ok(existing) = fs::read_link(&pointer)
            && existing == target
        {
            return Ok(pointer);
        }
        let parent = parent_of(&pointer);
        fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
        let tmp = temp_sibling(&pointer);
        let res =
            make_link(&target, &self.blob(etag), &tmp).and_then(|()| fs::rename(&tmp, &pointer));
        if let Err(e) = res {
            let _ = fs::remove_file(&tmp);
            return Err(Error::io(pointer, e));
        }
        Ok(pointer)
    }

    /// Lists the files of a cached snapshot whose blobs are present, with
    /// their sizes, as `/`-separated names sorted by name.
    pub fn list_snapshot(&self, commit: &str) -> Vec<(String, u64)> {
        fn walk(dir: &Path, prefix: &str, out: &mut Vec<(String, u64)>) {
            let Ok(entries) = fs::read_dir(dir) else {
                return;
            };
            for entry in entries.flatten() {
                let Some(name) = entry.file_name().to_str().map(str::to_string) else {
                    continue;
                };
                if name.starts_with(".tmp-") {
                    continue;
                }
                let full = if prefix.is_empty() {
                    name.clone()
                } else {
                    format!("{prefix}/{name}")
                };
                // fs::metadata follows the symlink: broken links are skipped.
                match fs::metadata(entry.path()) {
                    Ok(m) if m.is_dir() => walk(&entry.path(), &full, out),
                    Ok(m) if m.is_file() => out.push((full, m.len())),
                    _ => {}
                }
            }
        }
        let mut out = Vec::new();
        walk(&self.snapshot_dir(commit), "", &mut out);
        out.sort();
        out
    }
}

/// `models--{org}--{name}` for `org/name`.
pub(crate) fn repo_folder_name(repo_id: &str) -> String {
    format!("models--{}", repo_id.replace('/', "--"))
}

/// A 40-hex-digit git commit hash.
pub(crate) fn is_commit_hash(s: &str) -> bool {
    s.len() == 40 && s.bytes().all(|b| b.is_ascii_hexdigit())
}

/// Safe as a single file name: non-empty, `[A-Za-z0-9._-]`, no leading dot.
pub(crate) fn is_safe_component(s: &str) -> bool {
    !s.is_empty()
        && !s.starts_with('.')
        && s.len() <= 255
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
}

fn parent_of(p: &Path) -> &Path {
    p.parent().unwrap_or(Path::new("."))
}

/// A unique temporary name next to `path` (same directory, so `rename` is atomic).
pub(crate) fn temp_sibling(path: &Path) -> PathBuf {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let name = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    parent_of(path).join(format!(".tmp-{}-{}-{name}", std::process::id(), n))
}

#[cfg(unix)]
fn make_link(target: &Path, _blob: &Path, link: &Path) -> io::Result<()> {
    std::os::unix::fs::symlink(target, link)
}

#[cfg(windows)]
fn make_link(target: &Path, blob: &Path, link: &Path) -> io::Result<()> {
    // Symlinks need developer mode or admin rights on Windows; like
    // huggingface_hub, fall back to a copy of the blob.
    std::os::windows::fs::symlink_file(target, link).or_else(|_| fs::copy(blob, link).map(|_| ()))
}

#[cfg(not(any(unix, windows)))]
fn make_link(_target: &Path, blob: &Path, link: &Path) -> io::Result<()> {
    fs::copy(blob, link).map(|_| ())
}
