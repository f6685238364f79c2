//! Rows of one buffer handed to several threads.

use std::marker::PhantomData;

/// A `&mut [f32]` cut into rows of `width` that threads may write at
/// disjoint rows.
pub(crate) struct SharedRows<'a> {
    ptr: *mut f32,
    rows: usize,
    width: usize,
    _borrow: PhantomData<&'a mut [f32]>,
}

// SAFETY: the wrapper only hands out rows through the unsafe `row`, whose
// contract requires that no two threads hold the same row.
unsafe impl Sync for SharedRows<'_> {}

impl<'a> SharedRows<'a> {
    pub(crate) fn new(buf: &'a mut [f32], width: usize) -> SharedRows<'a> {
        SharedRows {
            ptr: buf.as_mut_ptr(),
            rows: buf.len() / width,
            width,
            _borrow: PhantomData,
        }
    }

    /// Row `i`.
    ///
    /// # Safety
    /// No other reference to row `i` may exist while the result lives.
    #[allow(clippy::mut_from_ref)]
    pub(crate) unsafe fn row(&self, i: usize) -> &mut [f32] {
        assert!(i < self.rows, "row out of range");
        // SAFETY: in bounds (checked above, `new` derived `rows` from the
        // buffer length); exclusivity is the caller's obligation.
        unsafe { std::slice::from_raw_parts_mut(self.ptr.add(i * self.width), self.width) }
    }
}
