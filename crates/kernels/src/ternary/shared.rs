//! Many packed matrices in one buffer: a model's ternary weights, so that
//! huge pages cover all of them.
//!
//! Decoding streams every weight once per token, and with 4 KiB pages that
//! is a TLB miss every 64 cache lines. [`AlignedBytes`] puts buffers of
//! 2 MiB and more in huge pages, but a matrix of its own is covered only up
//! to its last whole 2 MiB: in 2B-4T the output projections (1.4 MB in the
//! lookup layout) not at all, the others 50–80 %, about 70 % of the weights
//! in all. One buffer for all of them leaves out only its last partial page.
//! On a Zen 2 (the 30 layers from DRAM, `examples/decode_probe.rs`, runs
//! alternating with per-matrix buffers) a decode step went from 13.97 to
//! 13.42 ms on two cores and from 26.8 to 25.7 ms on one (medians), and
//! `bench` tg64 on two threads from 43.3 to 44.4 tok/s with the Q8_0 head
//! (44.5 to 45.0 with Q6_K).
//!
//! The buffer is sized from the shapes up front and split into one slot per
//! matrix ([`SharedPacking::slots`]), which threads pack into in parallel
//! ([`PackSlot::pack`]); [`SharedPacking::finish`] then shares it among
//! the matrices. Nothing is packed twice or copied, and the buffer is first
//! touched by the threads that pack it (each zeroes its slot first):
//! zeroing 435 MB up front on one thread, huge-page faults included, made
//! loading 2B-4T 0.1–0.2 s slower.

use std::mem::MaybeUninit;
use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use super::{ScaleRule, Storage, TernaryLayout, TernaryMatrix, check_shape, pack_values};
use crate::aligned::{ALIGN, AlignedBytes};
use crate::error::{Error, Result};

/// One buffer for the packed bytes of matrices of known shapes.
#[derive(Debug)]
pub struct SharedPacking {
    /// Tells this packing's parts from another's (see `finish`).
    id: u64,
    layout: TernaryLayout,
    shapes: Vec<(usize, usize)>,
    ranges: Vec<Range<usize>>,
    buf: AlignedBytes,
}

/// The part of a [`SharedPacking`] that matrix `index` is packed into.
#[derive(Debug)]
pub struct PackSlot<'a> {
    id: u64,
    index: usize,
    layout: TernaryLayout,
    rows: usize,
    cols: usize,
    out: &'a mut [MaybeUninit<u8>],
}

/// A matrix packed into its slot, waiting for [`SharedPacking::finish`].
#[derive(Debug)]
pub struct PackedParts {
    id: u64,
    index: usize,
    scales: Vec<f32>,
    rule: ScaleRule,
}

impl SharedPacking {
    /// Space for matrices of `shapes` (`(rows, cols)`, in order) in
    /// `layout`, each at a 64-byte boundary.
    pub fn new(layout: TernaryLayout, shapes: &[(usize, usize)]) -> SharedPacking {
        let mut ranges = Vec::with_capacity(shapes.len());
        let mut end = 0;
        for &(rows, cols) in shapes {
            let start = end;
            end = start + layout.packed_bytes(rows, cols);
            ranges.push(start..end);
            end = end.next_multiple_of(ALIGN);
        }
        let buf = if end == 0 {
            AlignedBytes::zeroed(0)
        } else {
            // SAFETY: `end > 0`; `finish` reads the buffer only once every
            // slot has been packed, and the slots cover every byte.
            unsafe { AlignedBytes::uninit(end) }
        };
        static NEXT_ID: AtomicU64 = AtomicU64::new(0);
        SharedPacking {
            id: NEXT_ID.fetch_add(1, Ordering::Relaxed),
            layout,
            shapes: shapes.to_vec(),
            ranges,
            buf,
        }
    }

    /// One slot per matrix, in order (disjoint, so that threads can fill
    /// them in parallel). Each covers its matrix and the padding up to the
    /// next slot.
    pub fn slots(&mut self) -> Vec<PackSlot<'_>> {
        let mut slots = Vec::with_capacity(self.ranges.len());
        let mut rest = self.buf.as_uninit_mut();
        for (index, range) in self.ranges.iter().enumerate() {
            let span = range.len().next_multiple_of(ALIGN).min(rest.len());
            let (out, tail) = std::mem::take(&mut rest).split_at_mut(span);
            rest = tail;
            let (rows, cols) = self.shapes[index];
            slots.push(PackSlot {
                id: self.id,
                index,
                layout: self.layout,
                rows,
                cols,
                out,
            });
        }
        slots
    }

    /// The matrices, in the order of the shapes, sharing the buffer; `parts`
    /// must hold every slot's packing exactly once (in any order).
    pub fn finish(self, parts: Vec<PackedParts>) -> Result<Vec<TernaryMatrix>> {
        let n = self.ranges.len();
        let mut by_index: Vec<Option<PackedParts>> = (0..n).map(|_| None).collect();
        for p in parts {
            let index = p.index;
            if p.id != self.id || by_index.get(index).is_none_or(Option::is_some) {
                return Err(Error::Shape {
                    what: "shared packing parts",
                    expected: format!("each of {n} slots once"),
                    found: format!("slot {index} again, or another packing's"),
                });
            }
            by_index[index] = Some(p);
        }
        let parts = by_index
            .into_iter()
            .enumerate()
            .map(|(index, p)| {
                p.ok_or_else(|| Error::Shape {
                    what: "shared packing parts",
                    expected: format!("each of {n} slots once"),
                    found: format!("slot {index} missing"),
                })
            })
            .collect::<Result<Vec<_>>>()?;
        // Every slot has been packed (each part comes from `PackSlot::pack`,
        // which writes its whole slot): the buffer is initialised.
        let buf = Arc::new(self.buf);
        Ok(parts
            .into_iter()
            .enumerate()
            .map(|(index, p)| {
                let (rows, cols) = self.shapes[index];
                let data = Storage::Shared(Arc::clone(&buf), self.ranges[index].clone());
                TernaryMatrix::with_storage(self.layout, rows, cols, data, p.scales, p.rule)
            })
            .collect())
    }
}

impl PackSlot<'_> {
    /// Packs this slot's matrix: `rows × cols` values (row-major, each in
    /// `{-1, 0, 1}`) with one scale per row, as [`TernaryMatrix::pack_as`].
    pub fn pack(self, values: &[i8], scales: Vec<f32>, rule: ScaleRule) -> Result<PackedParts> {
        check_shape(self.rows, self.cols, values, &scales)?;
        let len = self.out.len();
        let raw = self.out.as_mut_ptr().cast::<u8>();
        // SAFETY: `raw` is valid for the slot's `len` bytes, which are
        // zeroed first and only then viewed as initialised bytes.
        let out = unsafe {
            std::ptr::write_bytes(raw, 0, len);
            std::slice::from_raw_parts_mut(raw, len)
        };
        let packed = self.layout.packed_bytes(self.rows, self.cols);
        pack_values(
            self.layout,
            self.rows,
            self.cols,
            values,
            &mut out[..packed],
        )?;
        Ok(PackedParts {
            id: self.id,
            index: self.index,
            scales,
            rule,
        })
    }

    /// Rows of the slot's matrix.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Columns of the slot's matrix.
    pub fn cols(&self) -> usize {
        self.cols
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(rows: usize, cols: usize, seed: usize) -> Vec<i8> {
        (0..rows * cols)
            .map(|i| ((i * 7 + seed * 13 + i / 5) % 3) as i8 - 1)
            .collect()
    }

    #[test]
    fn shared_matrices_equal_their_own_packings() {
        for layout in [
            TernaryLayout::Base3,
            TernaryLayout::TwoBit,
            TernaryLayout::Lut3,
        ] {
            let shapes = [(17, 50), (3, 7), (64, 100), (1, 1)];
            let mut packing = SharedPacking::new(layout, &shapes);
            let mut parts: Vec<PackedParts> = packing
                .slots()
                .into_iter()
                .zip(&shapes)
                .enumerate()
                .map(|(i, (slot, &(r, c)))| {
                    let scales = (0..r).map(|j| (i + j) as f32 + 0.5).collect();
                    slot.pack(&values(r, c, i), scales, ScaleRule::Multiply)
                        .unwrap()
                })
                .collect();
            parts.reverse();
            let mats = packing.finish(parts).unwrap();
            for (i, (m, &(r, c))) in mats.iter().zip(&shapes).enumerate() {
                let scales: Vec<f32> = (0..r).map(|j| (i + j) as f32 + 0.5).collect();
                let own = TernaryMatrix::pack_as(
                    layout,
                    r,
                    c,
                    &values(r, c, i),
                    scales.clone(),
                    ScaleRule::Multiply,
                )
                .unwrap();
                assert_eq!(m.data(), own.data(), "{layout:?} {r}x{c}");
                assert_eq!(m.data().as_ptr() as usize % ALIGN, 0);
                assert_eq!(m.unpack(), values(r, c, i));
                assert_eq!(m.scales(), &scales[..]);
                assert_eq!(m.size_bytes(), own.size_bytes());
            }
        }
    }

    #[test]
    fn bad_values_and_missing_parts_are_errors() {
        let shapes = [(2, 3), (2, 3)];
        let mut packing = SharedPacking::new(TernaryLayout::Lut3, &shapes);
        let mut slots = packing.slots().into_iter();
        let first = slots.next().unwrap();
        let err = first.pack(&[0, 1, 2, 0, 0, 0], vec![1.0; 2], ScaleRule::Multiply);
        assert!(matches!(err, Err(Error::NotTernary { index: 2, value: 2 })));
        let second = slots.next().unwrap();
        let err = second.pack(&[0; 5], vec![1.0; 2], ScaleRule::Multiply);
        assert!(matches!(err, Err(Error::Shape { .. })));
        let mut packing = SharedPacking::new(TernaryLayout::Lut3, &shapes);
        let one = packing.slots().into_iter().next().unwrap();
        let part = one
            .pack(&[0; 6], vec![1.0; 2], ScaleRule::Multiply)
            .unwrap();
        let err = packing.finish(vec![part]).unwrap_err();
        assert!(err.to_string().contains("slot 1 missing"), "{err}");
        let mut a = SharedPacking::new(TernaryLayout::Lut3, &shapes);
        let mut b = SharedPacking::new(TernaryLayout::Lut3, &shapes);
        let theirs: Vec<PackedParts> = b
            .slots()
            .into_iter()
            .map(|s| s.pack(&[0; 6], vec![1.0; 2], ScaleRule::Multiply).unwrap())
            .collect();
        drop(a.slots());
        let err = a.finish(theirs).unwrap_err();
        assert!(err.to_string().contains("another packing"), "{err}");
    }
}
