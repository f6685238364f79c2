//! bitnet.cpp's I2_S, TL1 and TL2 files of one set of weights
//! (`../shared/fixtures/tl-formats`): the three load to the same model and
//! give bit-identical logits, close to bitnet.cpp's own.

mod common;

use bitnet_threads::ThreadPool;
use common::*;

#[test]
fn i2_s_tl1_and_tl2_give_identical_logits() {
    let Some(shared) = shared_fixtures() else {
        return;
    };
    let dir = shared.join("tl-formats");
    let pool = ThreadPool::new(2);
    let prompts = std::fs::read_to_string(dir.join("prompts.tsv")).unwrap();
    let models: Vec<_> = ["i2_s", "tl1", "tl2"]
        .iter()
        .map(|f| (f, load(&dir.join(format!("bitnet-large-1L-{f}.gguf")))))
        .collect();
    for line in prompts.lines().filter(|l| !l.trim().is_empty()) {
        let mut parts = line.split('\t');
        let name = parts.next().unwrap();
        let ids: Vec<u32> = parts
            .next()
            .unwrap()
            .split_whitespace()
            .map(|t| t.parse().unwrap())
            .collect();
        let outs: Vec<Vec<f32>> = models
            .iter()
            .map(|(_, m)| all_logits(m, &pool, &ids))
            .collect();
        for (i, (f, _)) in models.iter().enumerate().skip(1) {
            assert!(
                outs[i]
                    .iter()
                    .zip(&outs[0])
                    .all(|(a, b)| a.to_bits() == b.to_bits()),
                "{name}: {f} logits differ from i2_s"
            );
        }
        // bitnet.cpp's last-position logits (f16 KV cache, one token per
        // decode): close, not equal.
        let vocab = 512;
        let last = &outs[0][outs[0].len() - vocab..];
        for f in ["i2_s", "tl2"] {
            let bytes =
                std::fs::read(dir.join(format!("logits/{f}.{name}.last_logits.f32"))).unwrap();
            let peer: Vec<f32> = bytes
                .chunks_exact(4)
                .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
                .collect();
            let rl2 = rel_l2(last, &peer);
            eprintln!(
                "{name} vs bitnet.cpp {f}: rel L2 {rl2:.2e}, max |Δ| {:.2e}",
                max_abs_diff(last, &peer)
            );
            assert!(rl2 < 3e-2, "{name}: rel L2 {rl2} vs bitnet.cpp {f}");
            assert_eq!(
                top_k(last, 1),
                top_k(&peer, 1),
                "{name}: argmax vs bitnet.cpp {f}"
            );
        }
    }
}
