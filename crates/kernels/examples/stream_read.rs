//! Streaming-read bandwidth with several streams per thread:
//! `stream_read THREADS STREAMS [GIB]`. Each thread sums its contiguous
//! share of a GIB-sized buffer (default 1.5) as STREAMS equal parts read
//! side by side, 64 bytes of each in turn; prints the best and the median of
//! ten passes in GB/s. With one stream this is
//! `../shared/peers/tools/membw.c`; more streams show what a core's
//! prefetchers can keep in flight (the reason the AVX2 head and ternary
//! GEMVs read several rows at once). On the Zen 2 VM of issue 13, one core
//! read 15–16 GB/s with one stream and 20–25 with four, two cores 29–31 and
//! 31–45; which of those a run gets varies with the machine's load and the
//! buffer (some runs, 2 GiB ones among them, got no gain from more streams).

use std::time::Instant;

/// Words between the end of one part and the start of the next (65 cache
/// lines), so that the streams are never a power of two apart (where they
/// could fall into the same DRAM banks).
const GAP: usize = 520;

/// Wrapping sum of the `u64` lanes of `streams` equal parts of `words`,
/// 64 bytes of each part in turn (AVX2 loads, as `membw.c` built with
/// `-march=native`).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
fn sum_streams(words: &[u64], streams: usize) -> u64 {
    use std::arch::x86_64::*;
    let part = (words.len() / streams - GAP) / 8 * 8;
    let base = words.as_ptr();
    let mut acc = [_mm256_setzero_si256(); 2];
    let mut k = 0;
    while k < part {
        for s in 0..streams {
            // SAFETY: s·(part + GAP) + k + 8 ≤ streams·(part + GAP) ≤
            // words.len().
            unsafe {
                let p = base.add(s * (part + GAP) + k);
                acc[0] = _mm256_add_epi64(acc[0], _mm256_loadu_si256(p.cast()));
                acc[1] = _mm256_add_epi64(acc[1], _mm256_loadu_si256(p.add(4).cast()));
            }
        }
        k += 8;
    }
    let mut lanes = [0u64; 4];
    // SAFETY: `lanes` holds 32 bytes.
    unsafe { _mm256_storeu_si256(lanes.as_mut_ptr().cast(), _mm256_add_epi64(acc[0], acc[1])) };
    lanes.iter().fold(0, |a, &b| a.wrapping_add(b))
}

fn main() {
    assert!(is_x86_feature_detected!("avx2"), "stream_read needs AVX2");
    let a: Vec<String> = std::env::args().collect();
    let threads: usize = a.get(1).and_then(|s| s.parse().ok()).unwrap_or(1);
    let streams: usize = a.get(2).and_then(|s| s.parse().ok()).unwrap_or(1);
    let gib: f64 = a.get(3).and_then(|s| s.parse().ok()).unwrap_or(1.5);
    let n = (gib * (1u64 << 30) as f64) as usize / 8;
    let words: Vec<u64> = (0..n as u64).map(|i| i.wrapping_mul(0x9E37_79B9)).collect();
    let share = n / threads;
    let mut times = Vec::new();
    for _ in 0..10 {
        let t = Instant::now();
        let total = std::thread::scope(|scope| {
            let handles: Vec<_> = words
                .chunks(share)
                .take(threads)
                // SAFETY: AVX2 was detected above.
                .map(|w| scope.spawn(move || unsafe { sum_streams(w, streams) }))
                .collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("reader thread"))
                .fold(0u64, u64::wrapping_add)
        });
        std::hint::black_box(total);
        times.push(t.elapsed().as_secs_f64());
    }
    times.sort_by(f64::total_cmp);
    let bytes = ((share / streams - GAP) / 8 * 8 * streams * threads * 8) as f64;
    println!(
        "{threads} threads x {streams} streams: best {:.1} GB/s, median {:.1} GB/s",
        bytes / times[0] / 1e9,
        bytes / times[times.len() / 2] / 1e9
    );
}
