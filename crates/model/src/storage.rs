//! Shared, immutable byte storage: memory-mapped files, bytes built into the
//! binary, or owned buffers, viewed through cheap range handles.

use std::ops::{Deref, Range};
use std::path::Path;
use std::sync::Arc;

use crate::error::{Error, Result};

/// Something that holds bytes for the lifetime of a model.
pub type Owner = Arc<dyn AsRef<[u8]> + Send + Sync>;

/// A range of bytes inside an [`Owner`], kept alive by the view.
#[derive(Clone)]
pub struct ByteView {
    owner: Owner,
    range: Range<usize>,
}

impl ByteView {
    /// A view of `range` in `owner` (checked).
    pub fn new(owner: Owner, range: Range<usize>) -> Option<ByteView> {
        let len = (*owner).as_ref().len();
        (range.start <= range.end && range.end <= len).then_some(ByteView { owner, range })
    }

    /// A view of all of `owner`.
    pub fn whole(owner: Owner) -> ByteView {
        let len = (*owner).as_ref().len();
        ByteView {
            owner,
            range: 0..len,
        }
    }

    /// A sub-range of this view (relative to its start).
    pub fn slice(&self, range: Range<usize>) -> Option<ByteView> {
        (range.start <= range.end && range.end <= self.range.len()).then(|| ByteView {
            owner: Arc::clone(&self.owner),
            range: self.range.start + range.start..self.range.start + range.end,
        })
    }

    /// The owner of the bytes.
    pub fn owner(&self) -> &Owner {
        &self.owner
    }
}

impl Deref for ByteView {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &(*self.owner).as_ref()[self.range.clone()]
    }
}

impl std::fmt::Debug for ByteView {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ByteView({:?})", self.range)
    }
}

struct Mapped(memmap2::Mmap);

impl AsRef<[u8]> for Mapped {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

/// Memory-maps a file read-only.
pub fn map_file(path: &Path) -> Result<Owner> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let file = std::fs::File::open(path).map_err(io)?;
    // SAFETY: the map is read-only. Like every mmap-based loader we rely on
    // the file not being truncated or rewritten while the model is loaded.
    let map = unsafe { memmap2::Mmap::map(&file) }.map_err(io)?;
    Ok(Arc::new(Mapped(map)))
}
