//! Malformed and hostile input: every case returns a typed error naming the field, never panics
//! and never allocates according to an unchecked count.

mod common;

use std::time::{Duration, Instant};

use bitnet_gguf::ternary::{self, TlTiling};
use bitnet_gguf::{Array, Error, GgmlType, GgufFile, GgufWriter, TensorType, Value, ValueType};
use common::Bytes;

/// A small valid file whose last tensor ends exactly at the end of the file (32 bytes of F32, no
/// trailing padding), so that every strict prefix is invalid.
fn small_file() -> Vec<u8> {
    let mut w = GgufWriter::new();
    let md = w.metadata_mut();
    md.insert("general.architecture", Value::String("bitnet-b1.58".into()));
    md.insert("x.count", Value::U32(3));
    md.insert("x.flag", Value::Bool(true));
    md.insert(
        "x.tokens",
        Value::Array(Array {
            elem_type: ValueType::String,
            values: vec![Value::String("a".into()), Value::String("bc".into())],
        }),
    );
    md.insert(
        "x.nested",
        Value::Array(Array {
            elem_type: ValueType::Array,
            values: vec![Value::Array(Array {
                elem_type: ValueType::I16,
                values: vec![Value::I16(-2)],
            })],
        }),
    );
    w.add_tensor(
        "w",
        vec![128, 1],
        GgmlType::I2_S,
        ternary::encode_i2s(&[0; 128], 1, 128, 0.5).unwrap(),
    )
    .unwrap();
    w.add_tensor("n", vec![8], GgmlType::F32, vec![0; 32])
        .unwrap();
    let b = w.to_bytes().unwrap();
    let f = GgufFile::from_vec(b.clone()).unwrap();
    let last = f.tensor("n").unwrap();
    assert_eq!(f.data_offset() + last.offset + 32, b.len() as u64);
    b
}

#[test]
fn every_strict_prefix_is_an_error() {
    let b = small_file();
    assert!(b.len() > 200);
    for len in 0..b.len() {
        let r = GgufFile::from_vec(b[..len].to_vec());
        let e = r.expect_err(&format!("prefix of {len} bytes parsed"));
        assert!(
            matches!(
                e,
                Error::Truncated { .. }
                    | Error::CountTooLarge { .. }
                    | Error::TensorOutOfBounds { .. }
            ),
            "prefix {len}: {e:?}"
        );
    }
    assert!(GgufFile::from_vec(b).is_ok());
}

#[test]
fn truncation_names_the_field() {
    let b = small_file();
    let e = GgufFile::from_vec(b[..6].to_vec()).unwrap_err();
    assert!(
        matches!(e, Error::Truncated { ref what, offset: 4, needed: 4, available: 2 } if what == "version"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "file truncated while reading version at byte 4: need 4 bytes, 2 left"
    );
    // Cut inside the data section: the tensor that no longer fits is named.
    let e = GgufFile::from_vec(b[..b.len() - 1].to_vec()).unwrap_err();
    assert!(
        matches!(e, Error::TensorOutOfBounds { ref tensor, nbytes: 32, .. } if tensor == "n"),
        "{e:?}"
    );
}

#[test]
fn truncated_file_on_disk_names_the_path() {
    let dir = std::env::temp_dir().join(format!("bitnet-gguf-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("truncated.gguf");
    std::fs::write(&path, &small_file()[..40]).unwrap();
    let e = GgufFile::open(&path).unwrap_err();
    assert!(
        e.to_string().starts_with(&path.display().to_string()),
        "{e}"
    );
    assert!(matches!(e, Error::InFile { .. }));
    assert!(matches!(
        e.root(),
        Error::Truncated { .. } | Error::CountTooLarge { .. }
    ));
    let missing = dir.join("missing.gguf");
    let e = GgufFile::open(&missing).unwrap_err();
    assert!(
        matches!(e, Error::Io { ref path, op: "open", .. } if *path == missing),
        "{e:?}"
    );
    let empty = dir.join("empty.gguf");
    std::fs::write(&empty, b"").unwrap();
    let e = GgufFile::open(&empty).unwrap_err();
    assert!(matches!(e.root(), Error::Truncated { what, .. } if what == "magic"));
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn wrong_magic() {
    let mut b = small_file();
    b[..4].copy_from_slice(b"GGML");
    let e = GgufFile::from_vec(b).unwrap_err();
    assert!(matches!(e, Error::BadMagic { found } if &found == b"GGML"));
    assert!(e.to_string().contains("not a GGUF file"), "{e}");
}

#[test]
fn versions_1_and_99_are_rejected() {
    for v in [1u32, 99, 0] {
        let mut b = small_file();
        b[4..8].copy_from_slice(&v.to_le_bytes());
        let e = GgufFile::from_vec(b).unwrap_err();
        assert!(matches!(e, Error::UnsupportedVersion { version } if version == v));
        assert!(e.to_string().contains(&format!("version {v}")), "{e}");
    }
    // Version 2 is accepted and written back as version 2.
    let mut b = small_file();
    b[4..8].copy_from_slice(&2u32.to_le_bytes());
    let f = GgufFile::from_vec(b.clone()).unwrap();
    assert_eq!(f.version(), 2);
    assert_eq!(GgufWriter::from_file(&f).unwrap().to_bytes().unwrap(), b);
}

fn assert_instant(start: Instant) {
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "took {:?}",
        start.elapsed()
    );
}

#[test]
fn absurd_counts_fail_before_allocating() {
    // ~100-byte files claiming u64::MAX tensors / entries / elements / string bytes.
    let filler = Bytes::new().zeros(80);
    let cases: Vec<(Vec<u8>, &str)> = vec![
        (
            Bytes::header(3, u64::MAX, 0).raw(&filler.0).0,
            "tensor count",
        ),
        (
            Bytes::header(3, 0, u64::MAX).raw(&filler.0).0,
            "metadata entry count",
        ),
        (
            Bytes::header(3, 0, 1)
                .str("k")
                .u32(9)
                .u32(0)
                .u64(u64::MAX)
                .raw(&filler.0)
                .0,
            "element count of array 'k'",
        ),
        (
            Bytes::header(3, 0, 1)
                .str("k")
                .u32(9)
                .u32(8)
                .u64(1 << 40)
                .raw(&filler.0)
                .0,
            "element count of array 'k'",
        ),
        (
            Bytes::header(3, 0, 1).u64(u64::MAX).raw(&filler.0).0,
            "length of key of metadata entry #0",
        ),
        (
            Bytes::header(3, 0, 1)
                .str("k")
                .u32(8)
                .u64(81)
                .raw(&filler.0)
                .0,
            "length of value of metadata key 'k'",
        ),
        (
            Bytes::header(3, 1, 0).u64(1000).raw(&filler.0).0,
            "length of name of tensor #0",
        ),
    ];
    for (bytes, what_want) in cases {
        assert!(bytes.len() <= 140);
        let start = Instant::now();
        let e = GgufFile::from_vec(bytes).unwrap_err();
        assert_instant(start);
        match &e {
            Error::CountTooLarge { what, .. } => assert_eq!(what, what_want),
            other => panic!("{what_want}: {other:?}"),
        }
        assert!(e.to_string().contains(what_want), "{e}");
    }
    // Tensor count plausible on its own but not after the metadata: re-checked before allocating.
    let b = Bytes::header(3, 3, 1)
        .str("k")
        .u32(8)
        .str(&"x".repeat(60))
        .zeros(10);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::CountTooLarge { ref what, count: 3, .. } if what == "tensor count"),
        "{e:?}"
    );
}

#[test]
fn string_length_beyond_the_file() {
    let b = Bytes::header(3, 0, 1)
        .str("general.name")
        .u32(8)
        .u64(50)
        .raw(b"short");
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(
            e,
            Error::CountTooLarge {
                count: 50,
                max_possible: 5,
                offset: 48,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "length of value of metadata key 'general.name' at byte 48 is 50, but the rest of the file can hold at most 5"
    );
}

#[test]
fn five_dimensions() {
    let b = Bytes::header(3, 1, 0)
        .tensor("blk.0.attn_q.weight", &[1, 1, 1, 1, 1], 0, 0)
        .zeros(64);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::TooManyDims { ref tensor, n_dims: 5 } if tensor == "blk.0.attn_q.weight")
    );
    assert_eq!(
        e.to_string(),
        "tensor 'blk.0.attn_q.weight': 5 dimensions, at most 4 are allowed"
    );
}

#[test]
fn unknown_value_type() {
    let b = Bytes::header(3, 0, 1).str("x.odd").u32(13).u64(0);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::UnknownValueType { ref key, type_id: 13, offset: 37 } if key == "x.odd"),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "metadata key 'x.odd': unknown value type 13 at byte 37"
    );
    // The same inside an array.
    let b = Bytes::header(3, 0, 1).str("x.arr").u32(9).u32(77).u64(0);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(matches!(e, Error::UnknownValueType { ref key, type_id: 77, .. } if key == "x.arr"));
}

#[test]
fn unknown_tensor_type_parses_but_has_no_data() {
    let b = Bytes::header(3, 2, 0)
        .tensor("mystery", &[64, 2], 200, 0)
        .tensor("known", &[4], 0, 64)
        .pad(32)
        .zeros(80);
    let f = GgufFile::from_vec(b.0.clone()).unwrap();
    let t = f.tensor("mystery").unwrap();
    assert_eq!(t.ty, TensorType::Unknown(200));
    assert_eq!(t.raw_type, GgmlType(200));
    assert_eq!(t.nbytes, None);
    let e = f.tensor_data(t).unwrap_err();
    assert!(matches!(e, Error::UnknownTensorType { ref tensor, id: 200 } if tensor == "mystery"));
    assert_eq!(
        e.to_string(),
        "tensor 'mystery': ggml type id 200 is not known to this reader, its data size is unknown"
    );
    assert_eq!(f.tensor_data(f.tensor("known").unwrap()).unwrap().len(), 16);
    // Ids that bitnet.cpp or mainline assign but we do not decode are not fatal either.
    for id in [37u32, 16, 23, 40, u32::MAX] {
        let b = Bytes::header(3, 1, 0)
            .tensor("t", &[32], id, 0)
            .pad(32)
            .zeros(32);
        let f = GgufFile::from_vec(b.0).unwrap();
        assert_eq!(f.tensors()[0].ty, TensorType::Unknown(id));
    }
    // The unknown tensor's bytes (up to the next tensor) survive a rewrite.
    let f = GgufFile::from_vec(b.0.clone()).unwrap();
    assert_eq!(GgufWriter::from_file(&f).unwrap().to_bytes().unwrap(), b.0);
}

#[test]
fn tensor_data_beyond_the_end() {
    let b = Bytes::header(3, 1, 0)
        .tensor("big", &[16, 4], 0, 0)
        .pad(32)
        .zeros(255);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::TensorOutOfBounds { ref tensor, offset: 0, nbytes: 256, data_size: 255 } if tensor == "big"),
        "{e:?}"
    );
    // A ternary tensor whose byte size (M*K/4 + 32) does not fit.
    let b = Bytes::header(3, 1, 0)
        .tensor("blk.0.ffn_up.weight", &[128, 4], 36, 0)
        .pad(32)
        .zeros(128);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::TensorOutOfBounds { ref tensor, nbytes: 160, data_size: 128, .. } if tensor == "blk.0.ffn_up.weight"),
        "{e:?}"
    );
    // Offset near u64::MAX: no overflow, same error.
    let b = Bytes::header(3, 1, 0)
        .tensor("t", &[8], 0, u64::MAX - 31)
        .pad(32)
        .zeros(32);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(matches!(e, Error::TensorOutOfBounds { ref tensor, .. } if tensor == "t"));
}

#[test]
fn misaligned_offset() {
    let b = Bytes::header(3, 1, 0)
        .tensor("t", &[8], 0, 4)
        .pad(32)
        .zeros(64);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::MisalignedOffset { ref tensor, offset: 4, alignment: 32 } if tensor == "t")
    );
    assert_eq!(
        e.to_string(),
        "tensor 't': data offset 4 is not a multiple of the alignment 32"
    );
}

#[test]
fn duplicate_names_and_keys() {
    let b = Bytes::header(3, 2, 0)
        .tensor("t", &[8], 0, 0)
        .tensor("t", &[8], 0, 32)
        .pad(32)
        .zeros(64);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(matches!(e, Error::DuplicateTensor { ref name } if name == "t"));
    let b = Bytes::header(3, 0, 2)
        .str("k")
        .u32(0)
        .u8(1)
        .str("k")
        .u32(0)
        .u8(2);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(matches!(e, Error::DuplicateKey { ref key } if key == "k"));
}

#[test]
fn alignment_must_be_a_power_of_two_multiple_of_8() {
    // Write a valid file with general.alignment = 64 (u32), then patch the value in place: the
    // key is the first one, at byte 24, and its u32 value follows the key and the type id.
    let mut w = GgufWriter::new();
    w.metadata_mut().insert("general.alignment", Value::U32(64));
    w.add_tensor("t", vec![8], GgmlType::F32, vec![0; 32])
        .unwrap();
    let base = w.to_bytes().unwrap();
    let at = 24 + 8 + "general.alignment".len() + 4;
    assert_eq!(&base[at..at + 4], &64u32.to_le_bytes());
    for (v, ok) in [
        (24u32, false),
        (4, false),
        (0, false),
        (1 << 30, false),
        (8, true),
        (32, true),
        (64, true),
    ] {
        let mut b = base.clone();
        b[at..at + 4].copy_from_slice(&v.to_le_bytes());
        match GgufFile::from_vec(b) {
            Ok(f) => {
                assert!(ok, "alignment {v} accepted");
                assert_eq!(f.alignment(), u64::from(v));
            }
            Err(e) => {
                assert!(!ok, "alignment {v} rejected: {e}");
                assert!(matches!(e, Error::InvalidAlignment { value } if value == u64::from(v)));
                assert!(
                    e.to_string()
                        .starts_with(&format!("general.alignment = {v} is invalid")),
                    "{e}"
                );
            }
        }
    }
    // Any integer type is accepted; a string is a typed-metadata error naming the key.
    let mut w = GgufWriter::new();
    w.metadata_mut().insert("general.alignment", Value::U64(64));
    w.add_tensor("t", vec![8], GgmlType::F32, vec![0; 32])
        .unwrap();
    let f = GgufFile::from_vec(w.to_bytes().unwrap()).unwrap();
    assert_eq!((f.alignment(), f.data_offset() % 64), (64, 0));
    let b = Bytes::header(3, 0, 1)
        .str("general.alignment")
        .u32(8)
        .str("32");
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::MetadataType { ref key, .. } if key == "general.alignment"),
        "{e:?}"
    );
    // The writer refuses to write an invalid alignment.
    let mut w = GgufWriter::new();
    w.metadata_mut().insert("general.alignment", Value::U32(12));
    assert!(matches!(
        w.to_bytes().unwrap_err(),
        Error::InvalidAlignment { value: 12 }
    ));
}

#[test]
fn invalid_utf8_and_bool() {
    let b = Bytes::header(3, 0, 1)
        .u64(2)
        .raw(&[0xff, 0xfe])
        .u32(0)
        .u8(0);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::InvalidUtf8 { ref what, offset: 32 } if what == "key of metadata entry #0"),
        "{e:?}"
    );
    let b = Bytes::header(3, 0, 1).str("s").u32(8).u64(1).raw(&[0x80]);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::InvalidUtf8 { ref what, .. } if what == "value of metadata key 's'")
    );
    let b = Bytes::header(3, 1, 0)
        .u64(1)
        .raw(&[0xc3])
        .u32(1)
        .u64(8)
        .u32(0)
        .u64(0);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(matches!(e, Error::InvalidUtf8 { ref what, .. } if what == "name of tensor #0"));
    let b = Bytes::header(3, 0, 1).str("flag").u32(7).u8(2);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::InvalidBool { ref key, value: 2, offset: 40 } if key == "flag"),
        "{e:?}"
    );
}

#[test]
fn nesting_is_capped() {
    let mut b = Bytes::header(3, 0, 1).str("deep").u32(9);
    for _ in 0..20 {
        b = b.u32(9).u64(1);
    }
    let e = GgufFile::from_vec(b.zeros(16).0).unwrap_err();
    assert!(
        matches!(e, Error::ArrayNestingTooDeep { ref key, max_depth: 8 } if key == "deep"),
        "{e:?}"
    );
    // 8 levels are fine, and the writer refuses what the reader would refuse.
    let mut v = Value::U8(1);
    for depth in 1..=9 {
        v = Value::Array(Array {
            elem_type: v.value_type(),
            values: vec![v],
        });
        let mut w = GgufWriter::new();
        w.metadata_mut().insert("deep", v.clone());
        let r = w.to_bytes();
        assert_eq!(r.is_ok(), depth <= 8, "depth {depth}");
        if let Ok(bytes) = r {
            let f = GgufFile::from_vec(bytes).unwrap();
            assert_eq!(f.metadata().get("deep"), Some(&v));
        }
    }
}

#[test]
fn dimension_and_element_count_limits() {
    let b = Bytes::header(3, 1, 0)
        .tensor("t", &[1 << 32, 1 << 32], 0, 0)
        .zeros(32);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::ElementCountOverflow { ref tensor, ref ne } if tensor == "t" && ne == &[1 << 32, 1 << 32])
    );
    let b = Bytes::header(3, 1, 0)
        .tensor("t", &[u64::MAX], 0, 0)
        .zeros(32);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::InvalidDimension { ref tensor, dim: 0, value: u64::MAX } if tensor == "t")
    );
    // ne[0] not a multiple of the block size.
    let b = Bytes::header(3, 1, 0)
        .tensor("q", &[33, 2], 8, 0)
        .pad(32)
        .zeros(256);
    let e = GgufFile::from_vec(b.0).unwrap_err();
    assert!(
        matches!(e, Error::InvalidTensorShape { ref tensor, ref ty, .. } if tensor == "q" && ty == "Q8_0"),
        "{e:?}"
    );
}

#[test]
fn ternary_byte_size_must_match() {
    // Decoding with bytes that are not exactly the tensor's size.
    let good = ternary::encode_i2s(&[1; 256], 2, 128, 1.0).unwrap();
    for bad_len in [good.len() - 1, good.len() + 1, 0] {
        let mut d = good.clone();
        d.resize(bad_len, 0);
        let e =
            ternary::decode("blk.1.attn_k.weight", TensorType::I2_S, &d, 2, 128, None).unwrap_err();
        assert!(
            matches!(e, Error::TensorSizeMismatch { ref tensor, expected: 96, actual, .. } if tensor == "blk.1.attn_k.weight" && actual == bad_len as u64),
            "{e:?}"
        );
    }
    let tl = TlTiling {
        bm: 32,
        bk: 96,
        bm_sub: 32,
    };
    let good = ternary::encode_tl2(&vec![0; 32 * 288], 32, 288, 1.0, tl).unwrap();
    let e = ternary::decode("w", TensorType::TL2, &good[1..], 32, 288, Some(tl)).unwrap_err();
    assert!(
        matches!(e, Error::TensorSizeMismatch { ref ty, .. } if ty == "TL2"),
        "{e:?}"
    );
    let e = ternary::decode("w", TensorType::TQ1_0, &[0; 53], 1, 256, None).unwrap_err();
    assert!(matches!(
        e,
        Error::TensorSizeMismatch {
            expected: 54,
            actual: 53,
            ..
        }
    ));
    // The writer checks too, naming the tensor and type.
    let mut w = GgufWriter::new();
    let e = w
        .add_tensor(
            "blk.0.attn_q.weight",
            vec![128, 2],
            GgmlType::I2_S,
            vec![0; 95],
        )
        .unwrap_err();
    assert_eq!(
        e.to_string(),
        "tensor 'blk.0.attn_q.weight' (I2_S): expected 96 bytes, got 95"
    );
    let e = w
        .add_tensor("t", vec![288, 32], GgmlType(39), vec![0; 10])
        .unwrap_err();
    assert!(matches!(e, Error::TensorSizeMismatch { ref ty, .. } if ty == "TL2/MXFP4"));
}

#[test]
fn random_corruption_never_panics() {
    // Deterministic xorshift: flip bytes all over a valid file and parse; Ok or Err, no panic.
    let base = small_file();
    let mut s = 0x9e3779b97f4a7c15u64;
    let mut next = || {
        s ^= s << 13;
        s ^= s >> 7;
        s ^= s << 17;
        s
    };
    let mut errors = 0;
    for _ in 0..3000 {
        let mut b = base.clone();
        for _ in 0..1 + next() % 4 {
            let i = (next() % b.len() as u64) as usize;
            b[i] = next() as u8;
        }
        match GgufFile::from_vec(b) {
            Ok(f) => {
                for t in f.tensors() {
                    let _ = f.tensor_data(t);
                    if t.ty.is_ternary() {
                        let _ = ternary::decode_tensor(&f, t, None);
                    }
                }
            }
            Err(_) => errors += 1,
        }
    }
    assert!(errors > 100, "only {errors} corrupted files were rejected");
}
