//! Reading the real fixture files: header facts, and byte-exact re-writing through GgufWriter.

mod common;

use std::path::Path;

use bitnet_gguf::{GgmlType, GgufFile, GgufWriter, TensorType, Value};

fn assert_rewrite_exact(path: &Path) -> GgufFile {
    let original = std::fs::read(path).unwrap();
    let f = GgufFile::open(path).unwrap();
    assert_eq!(f.bytes(), &original[..]);
    let w = GgufWriter::from_file(&f).unwrap();
    let out = w.to_bytes().unwrap();
    assert_eq!(out.len(), original.len(), "{}", path.display());
    if let Some(i) = out.iter().zip(&original).position(|(a, b)| a != b) {
        panic!("{}: first differing byte at {i}", path.display());
    }
    // The re-written file also parses to the same table.
    let g = GgufFile::from_vec(out).unwrap();
    assert_eq!(g.tensors(), f.tensors());
    assert_eq!(g.metadata(), f.metadata());
    f
}

#[test]
fn small_bitnet_files_have_the_documented_sha256_and_layout() {
    // sha256s from fixtures/small-bitnet/README.md.
    let want = [
        (
            "small-bitnet-i2_s.gguf",
            "2207a9f0587e3030bdafbe25927ad1319ee09867627414e58548b1b1145927eb",
            36,
            40,
        ),
        (
            "small-bitnet-tq2_0.gguf",
            "ec893eb3def369137e97e64d17dbbdfa64f02a9838a6c87f2d4aab893920656a",
            35,
            37,
        ),
        (
            "small-bitnet-tq1_0.gguf",
            "c796bf46ffbfe0ecedd784f9c90f92127bbeb921fdde0e57ce4fec47e094e1f6",
            34,
            36,
        ),
    ];
    for (name, sha, ty, ftype) in want {
        let path = common::repo_fixtures().join("small-bitnet/gguf").join(name);
        let f = GgufFile::open(&path).unwrap();
        assert_eq!(common::sha256_hex(f.bytes()), sha, "{name}");
        assert_eq!(f.path(), Some(path.as_path()));
        assert_eq!(f.version(), 3);
        assert_eq!(f.alignment(), 32);
        assert_eq!(f.data_offset(), 126_784);
        assert_eq!(f.metadata().len(), 25);
        assert_eq!(f.tensors().len(), 24);
        assert_eq!(f.architecture(), Some("bitnet-b1.58"));
        let md = f.metadata();
        assert_eq!(md.get_u64("general.file_type").unwrap(), Some(ftype));
        assert_eq!(md.get_u64("bitnet-b1.58.block_count").unwrap(), Some(2));
        assert_eq!(
            md.get_u64("bitnet-b1.58.attention.head_count_kv").unwrap(),
            Some(1)
        );
        assert_eq!(
            md.get_f32("bitnet-b1.58.rope.freq_base").unwrap(),
            Some(500_000.0)
        );
        assert_eq!(
            md.get_f32("bitnet-b1.58.attention.layer_norm_rms_epsilon")
                .unwrap(),
            Some(1e-5)
        );
        assert_eq!(md.get_str("tokenizer.ggml.model").unwrap(), Some("gpt2"));
        assert_eq!(md.get_str("tokenizer.ggml.pre").unwrap(), Some("llama-bpe"));
        assert_eq!(
            md.get_u64("tokenizer.ggml.bos_token_id").unwrap(),
            Some(4091)
        );
        assert_eq!(
            md.get_bool("tokenizer.ggml.add_bos_token").unwrap(),
            Some(true)
        );
        let tokens = md.get_str_array("tokenizer.ggml.tokens").unwrap().unwrap();
        assert_eq!(tokens.len(), 4096);
        assert_eq!(tokens[4091], "<|begin_of_text|>");
        let types = md
            .get_i64_array("tokenizer.ggml.token_type")
            .unwrap()
            .unwrap();
        assert_eq!(types.len(), 4096);
        assert_eq!((types[0], types[4093]), (1, 3));
        assert!(matches!(
            md.get("tokenizer.ggml.token_type"),
            Some(Value::Array(a)) if a.elem_type == bitnet_gguf::ValueType::I32
        ));
        let emb = f.tensor("token_embd.weight").unwrap();
        assert_eq!(
            (emb.ty, emb.ne.as_slice(), emb.offset),
            (TensorType::F16, &[256u64, 4096][..], 0)
        );
        assert_eq!(emb.nbytes, Some(256 * 4096 * 2));
        let q = f.tensor("blk.0.attn_q.weight").unwrap();
        assert_eq!(q.raw_type, GgmlType(ty));
        assert_eq!((q.rows(), q.cols(), q.n_elements()), (256, 256, 65_536));
        assert_eq!(f.tensor_data(q).unwrap().len() as u64, q.nbytes.unwrap());
        let norm = f.tensor("output_norm.weight").unwrap();
        assert_eq!(norm.ty, TensorType::F32);
        assert_eq!(f.tensor_data(norm).unwrap().len(), 256 * 4);
    }
}

#[test]
fn repo_fixtures_rewrite_byte_exact() {
    for path in common::repo_ggufs() {
        let f = assert_rewrite_exact(&path);
        assert!(f.tensors().iter().any(|t| t.ty.is_ternary()));
    }
}

#[test]
fn tl_formats_rewrite_byte_exact() {
    let Some(dir) = common::tl_formats("tl-formats byte-exact rewrite") else {
        return;
    };
    for (name, ty) in [
        ("bitnet-large-1L-i2_s.gguf", TensorType::I2_S),
        ("bitnet-large-1L-tl1.gguf", TensorType::TL1),
        ("bitnet-large-1L-tl2.gguf", TensorType::TL2),
    ] {
        let f = assert_rewrite_exact(&dir.join(name));
        assert_eq!(f.tensors().len(), 13);
        assert_eq!(f.architecture(), Some("bitnet"));
        let ternary: Vec<_> = f.tensors().iter().filter(|t| t.ty.is_ternary()).collect();
        assert_eq!(ternary.len(), 7, "{name}");
        assert!(ternary.iter().all(|t| t.ty == ty), "{name}");
    }
}

#[test]
fn release_keeps_data_readable() {
    let path = &common::repo_ggufs()[3];
    let f = GgufFile::open(path).unwrap();
    let t = f.tensor("token_embd.weight").unwrap();
    let range = f.tensor_range(t).unwrap();
    let before = common::sha256_hex(f.tensor_data(t).unwrap());
    f.release(range.clone());
    f.release(0..f.bytes().len());
    f.release(usize::MAX - 1..usize::MAX);
    assert_eq!(common::sha256_hex(f.tensor_data(t).unwrap()), before);
    let g = GgufFile::from_vec(std::fs::read(path).unwrap()).unwrap();
    g.release(range); // no-op for in-memory files
    assert_eq!(common::sha256_hex(g.tensor_data(t).unwrap()), before);
}
