//! A growable, zero-initialised byte buffer aligned to 64 bytes (one cache
//! line, one AVX-512 register), for packed weights and activations.
//!
//! Buffers of 2 MiB and more (every packed matrix of a real model but the
//! smallest) are aligned to 2 MiB and, on Linux, advised into transparent
//! huge pages before their first touch (`madvise(MADV_HUGEPAGE)`, which
//! takes effect where the system's THP setting is `madvise` or `always`).
//! Decoding streams every weight once per token, and with 4 KiB pages that
//! is a TLB miss every 64 cache lines. Two Zen 2 cores, alternating runs:
//! the 30 ternary layers of 2B-4T from DRAM 14.4 → 13.8 ms (one core
//! 26.7 → 25.9 ms), tg64 with the int8 Q8_0 head 41.8 → 43.3 tok/s. The
//! resident size is unchanged: only whole 2 MiB pages inside the buffer
//! become huge pages.

use std::alloc::{Layout, alloc, alloc_zeroed, dealloc, handle_alloc_error};
use std::ptr::NonNull;

/// Alignment of every [`AlignedBytes`] buffer.
pub const ALIGN: usize = 64;

/// Buffers of at least this size are aligned to it and backed by huge pages
/// where the kernel allows.
const HUGE_PAGE: usize = 2 << 20;

/// An owned, 64-byte-aligned (2 MiB-aligned from 2 MiB), zero-initialised
/// byte buffer of fixed length.
pub struct AlignedBytes {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: AlignedBytes owns its allocation exclusively, like Vec<u8>.
unsafe impl Send for AlignedBytes {}
// SAFETY: shared access only hands out `&[u8]`, like Vec<u8>.
unsafe impl Sync for AlignedBytes {}

impl AlignedBytes {
    /// A zeroed buffer of `len` bytes.
    pub fn zeroed(len: usize) -> AlignedBytes {
        if len == 0 {
            // A non-null, aligned address that is never dereferenced.
            let ptr = NonNull::new(std::ptr::without_provenance_mut::<u8>(ALIGN))
                .expect("ALIGN is non-zero");
            return AlignedBytes { ptr, len: 0 };
        }
        let layout = Self::layout(len);
        if layout.align() == HUGE_PAGE {
            // SAFETY: every byte is written right away.
            let b = unsafe { AlignedBytes::uninit(len) };
            // SAFETY: `b` owns `len` writable bytes.
            unsafe { std::ptr::write_bytes(b.ptr.as_ptr(), 0, len) };
            return b;
        }
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc_zeroed(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        AlignedBytes { ptr, len }
    }

    /// A buffer of `len` bytes whose contents are not initialised
    /// (for a first touch spread over threads: see
    /// [`crate::SharedPacking`]); huge-page-advised as [`AlignedBytes::zeroed`].
    ///
    /// # Safety
    /// `len > 0`; every byte must be written (through
    /// [`AlignedBytes::as_uninit_mut`]) before the buffer is read.
    pub(crate) unsafe fn uninit(len: usize) -> AlignedBytes {
        let layout = Self::layout(len);
        // SAFETY: `layout` has a non-zero size.
        let raw = unsafe { alloc(layout) };
        let Some(ptr) = NonNull::new(raw) else {
            handle_alloc_error(layout)
        };
        #[cfg(target_os = "linux")]
        if layout.align() == HUGE_PAGE {
            // SAFETY: the range is this fresh, page-aligned allocation; the
            // advice only changes how the kernel backs it. Its result is
            // ignored on purpose: where THP is off the buffer keeps 4 KiB
            // pages and works the same.
            unsafe {
                libc::madvise(raw.cast(), len, libc::MADV_HUGEPAGE);
            }
        }
        AlignedBytes { ptr, len }
    }

    /// The bytes, possibly not yet initialised.
    pub(crate) fn as_uninit_mut(&mut self) -> &mut [std::mem::MaybeUninit<u8>] {
        // SAFETY: `ptr` is valid for `len` bytes (or dangling with len 0),
        // and `MaybeUninit<u8>` has no validity requirement.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast(), self.len) }
    }

    fn layout(len: usize) -> Layout {
        if len >= HUGE_PAGE {
            return Layout::from_size_align(len, HUGE_PAGE).expect("buffer size overflows isize");
        }
        Layout::from_size_align(len, ALIGN).expect("buffer size overflows isize")
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether the buffer is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The bytes.
    pub fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` is valid for `len` initialised bytes (zeroed at
        // allocation) for as long as `self` lives, or dangling with len 0.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes, mutably.
    pub fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` guarantees exclusivity.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr(), self.len) }
    }

    /// The bytes viewed as `i8`.
    pub fn as_i8(&self) -> &[i8] {
        // SAFETY: i8 and u8 have the same size and alignment, and every bit
        // pattern is valid for both.
        unsafe { std::slice::from_raw_parts(self.ptr.as_ptr().cast::<i8>(), self.len) }
    }

    /// The bytes viewed as `i8`, mutably.
    pub fn as_i8_mut(&mut self) -> &mut [i8] {
        // SAFETY: as in `as_i8`, with exclusivity from `&mut self`.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.as_ptr().cast::<i8>(), self.len) }
    }
}

impl Drop for AlignedBytes {
    fn drop(&mut self) {
        if self.len != 0 {
            // SAFETY: allocated in `zeroed` with this exact layout.
            unsafe { dealloc(self.ptr.as_ptr(), Self::layout(self.len)) };
        }
    }
}

impl Clone for AlignedBytes {
    fn clone(&self) -> Self {
        let mut copy = AlignedBytes::zeroed(self.len);
        copy.as_mut_slice().copy_from_slice(self.as_slice());
        copy
    }
}

impl std::fmt::Debug for AlignedBytes {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "AlignedBytes({} bytes)", self.len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aligned_and_zeroed() {
        for len in [
            0,
            1,
            63,
            64,
            1000,
            HUGE_PAGE - 1,
            HUGE_PAGE,
            3 * HUGE_PAGE + 5,
        ] {
            let b = AlignedBytes::zeroed(len);
            assert_eq!(b.len(), len);
            let align = if len >= HUGE_PAGE { HUGE_PAGE } else { ALIGN };
            assert_eq!(b.as_slice().as_ptr() as usize % align, 0, "{len} bytes");
            assert!(b.as_slice().iter().all(|&x| x == 0));
            let c = b.clone();
            assert_eq!(c.as_slice(), b.as_slice());
        }
    }
}
