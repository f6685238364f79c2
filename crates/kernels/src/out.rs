//! Shared output matrices written by several threads at disjoint rows.

use std::marker::PhantomData;

/// A `n_tokens × stride` row-major f32 output that threads fill at disjoint
/// (token, row) positions.
pub(crate) struct OutRows<'a> {
    ptr: *mut f32,
    n_tokens: usize,
    stride: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: OutRows is a view of a `&mut [f32]`; threads that share it write
// disjoint elements (each kernel owns a distinct set of output rows), which
// the callers guarantee.
unsafe impl Sync for OutRows<'_> {}

impl<'a> OutRows<'a> {
    pub(crate) fn new(out: &'a mut [f32], n_tokens: usize, stride: usize) -> OutRows<'a> {
        assert!(out.len() >= n_tokens * stride, "output buffer too small");
        OutRows {
            ptr: out.as_mut_ptr(),
            n_tokens,
            stride,
            _borrow: PhantomData,
        }
    }

    /// Writes element (t, r). Callers on different threads write different
    /// elements.
    #[inline(always)]
    pub(crate) fn write(&self, t: usize, r: usize, v: f32) {
        assert!(t < self.n_tokens && r < self.stride);
        // SAFETY: in bounds by the assert above and the check in `new`;
        // no other thread writes this element (see the Sync impl).
        unsafe { *self.ptr.add(t * self.stride + r) = v };
    }

    /// The number of tokens.
    #[allow(dead_code)]
    pub(crate) fn n_tokens(&self) -> usize {
        self.n_tokens
    }

    /// Raw pointer to element (t, r), for SIMD stores.
    #[allow(dead_code)]
    pub(crate) fn ptr(&self, t: usize, r: usize) -> *mut f32 {
        assert!(t < self.n_tokens && r <= self.stride);
        // SAFETY: the offset stays within (or one past) the borrowed slice.
        unsafe { self.ptr.add(t * self.stride + r) }
    }
}
