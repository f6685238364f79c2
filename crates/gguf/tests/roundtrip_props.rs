//! Property tests: writer → reader round trips for random metadata (every value type, nested
//! arrays, string arrays) and random tensors; encode → decode round trips for every ternary
//! format; decoders never panic on arbitrary bytes.

use bitnet_gguf::ternary::{
    self, TernaryScale, TlTiling, encode_i2s, encode_tl1, encode_tl2, encode_tq1_0, encode_tq2_0,
};
use bitnet_gguf::{Array, GgmlType, GgufFile, GgufWriter, TensorType, Value, ValueType};
use half::f16;
use proptest::prelude::*;

const SCALAR_TYPES: [ValueType; 12] = [
    ValueType::U8,
    ValueType::I8,
    ValueType::U16,
    ValueType::I16,
    ValueType::U32,
    ValueType::I32,
    ValueType::F32,
    ValueType::Bool,
    ValueType::String,
    ValueType::U64,
    ValueType::I64,
    ValueType::F64,
];

fn scalar(t: ValueType) -> BoxedStrategy<Value> {
    match t {
        ValueType::U8 => any::<u8>().prop_map(Value::U8).boxed(),
        ValueType::I8 => any::<i8>().prop_map(Value::I8).boxed(),
        ValueType::U16 => any::<u16>().prop_map(Value::U16).boxed(),
        ValueType::I16 => any::<i16>().prop_map(Value::I16).boxed(),
        ValueType::U32 => any::<u32>().prop_map(Value::U32).boxed(),
        ValueType::I32 => any::<i32>().prop_map(Value::I32).boxed(),
        ValueType::F32 => any::<u32>()
            .prop_map(|b| Value::F32(f32::from_bits(b)))
            .boxed(),
        ValueType::Bool => any::<bool>().prop_map(Value::Bool).boxed(),
        ValueType::String => ".{0,12}".prop_map(Value::String).boxed(),
        ValueType::U64 => any::<u64>().prop_map(Value::U64).boxed(),
        ValueType::I64 => any::<i64>().prop_map(Value::I64).boxed(),
        ValueType::F64 => any::<u64>()
            .prop_map(|b| Value::F64(f64::from_bits(b)))
            .boxed(),
        ValueType::Array => unreachable!(),
    }
}

/// A value of type `t`; arrays are homogeneous and nest at most 3 levels.
fn value_of(t: ValueType, depth: u32) -> BoxedStrategy<Value> {
    if t != ValueType::Array {
        return scalar(t);
    }
    let mut types = SCALAR_TYPES.to_vec();
    if depth < 2 {
        types.push(ValueType::Array);
    }
    prop::sample::select(types)
        .prop_flat_map(move |et| {
            prop::collection::vec(value_of(et, depth + 1), 0..5).prop_map(move |values| {
                Value::Array(Array {
                    elem_type: et,
                    values,
                })
            })
        })
        .boxed()
}

fn any_value() -> BoxedStrategy<Value> {
    let mut types = SCALAR_TYPES.to_vec();
    types.push(ValueType::Array);
    prop::sample::select(types)
        .prop_flat_map(|t| value_of(t, 0))
        .boxed()
}

/// Bitwise equality (NaN payloads included).
fn same(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::F32(x), Value::F32(y)) => x.to_bits() == y.to_bits(),
        (Value::F64(x), Value::F64(y)) => x.to_bits() == y.to_bits(),
        (Value::Array(x), Value::Array(y)) => {
            x.elem_type == y.elem_type
                && x.values.len() == y.values.len()
                && x.values.iter().zip(&y.values).all(|(p, q)| same(p, q))
        }
        _ => a == b,
    }
}

/// (raw type, ne, data) for a random tensor of a type with a known or unknown size.
fn tensor() -> impl Strategy<Value = (GgmlType, Vec<u64>, Vec<u8>)> {
    let kinds = prop::sample::select(vec![
        (GgmlType::F32, 1u64),
        (GgmlType::F16, 1),
        (GgmlType::BF16, 1),
        (GgmlType::Q8_0, 32),
        (GgmlType::Q4_K, 256),
        (GgmlType::TQ2_0, 256),
        (GgmlType::TQ1_0, 256),
        (GgmlType::I2_S, 128),
        (GgmlType(200), 1),
    ]);
    (kinds, 1u64..4, 1u64..4, 0usize..40).prop_flat_map(|((ty, blk), cols, rows, unknown_len)| {
        let ne = vec![cols * blk, rows];
        let len = match TensorType::from_ggml(ty, false).nbytes(&ne) {
            Some(n) => n as usize,
            None => unknown_len,
        };
        prop::collection::vec(any::<u8>(), len).prop_map(move |data| (ty, ne.clone(), data))
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    #[test]
    fn metadata_and_tensors_round_trip(
        kvs in prop::collection::vec(("[a-z_.]{1,10}", any_value()), 0..8),
        tensors in prop::collection::vec(tensor(), 0..5),
        alignment in prop::sample::select(vec![None, Some(8u32), Some(16), Some(64)]),
        version in prop::sample::select(vec![2u32, 3]),
    ) {
        let mut w = GgufWriter::new();
        w.set_version(version).unwrap();
        for (i, (k, v)) in kvs.iter().enumerate() {
            w.metadata_mut().insert(format!("{i}.{k}"), v.clone());
        }
        if let Some(a) = alignment {
            w.metadata_mut().insert("general.alignment", Value::U32(a));
        }
        for (i, (ty, ne, data)) in tensors.iter().enumerate() {
            w.add_tensor(format!("t{i}"), ne.clone(), *ty, data.clone()).unwrap();
        }
        let bytes = w.to_bytes().unwrap();
        let f = GgufFile::from_vec(bytes.clone()).unwrap();
        let align = u64::from(alignment.unwrap_or(32));
        prop_assert_eq!(f.version(), version);
        prop_assert_eq!(f.alignment(), align);
        prop_assert_eq!(f.data_offset() % align, 0);
        prop_assert_eq!(f.metadata().len(), w.metadata().len());
        for ((k1, v1), (k2, v2)) in f.metadata().iter().zip(w.metadata().iter()) {
            prop_assert_eq!(k1, k2);
            prop_assert!(same(v1, v2), "{}: {:?} vs {:?}", k1, v1, v2);
        }
        prop_assert_eq!(f.tensors().len(), tensors.len());
        for (i, (t, (ty, ne, data))) in f.tensors().iter().zip(&tensors).enumerate() {
            prop_assert_eq!(&t.name, &format!("t{i}"));
            prop_assert_eq!(t.raw_type, *ty);
            prop_assert_eq!(&t.ne, ne);
            prop_assert_eq!(t.offset % align, 0);
            match t.ty {
                TensorType::Unknown(id) => {
                    prop_assert_eq!(id, ty.0);
                    prop_assert!(f.tensor_data(t).is_err());
                }
                _ => prop_assert_eq!(f.tensor_data(t).unwrap(), &data[..]),
            }
        }
        // Reading and writing again reproduces the bytes.
        prop_assert_eq!(GgufWriter::from_file(&f).unwrap().to_bytes().unwrap(), bytes);
    }

    #[test]
    fn i2s_round_trip(rows in 1usize..6, blocks in 1usize..4, seed in any::<u64>(), scale in any::<u32>()) {
        let cols = 128 * blocks;
        let v = ternary_values(rows * cols, seed);
        let s = f32::from_bits(scale);
        let b = encode_i2s(&v, rows, cols, s).unwrap();
        prop_assert_eq!(Some(b.len() as u64), TensorType::I2_S.nbytes(&[cols as u64, rows as u64]));
        let d = ternary::decode("t", TensorType::I2_S, &b, rows, cols, None).unwrap();
        prop_assert_eq!(d.values, v);
        prop_assert!(matches!(d.scale, TernaryScale::PerTensor(x) if x.to_bits() == s.to_bits()));
    }

    #[test]
    fn tq_round_trip(rows in 1usize..4, blocks in 1usize..3, seed in any::<u64>(), scale in 1e-3f32..100.0, tq1 in any::<bool>()) {
        let cols = 256 * blocks;
        let v = ternary_values(rows * cols, seed);
        let (ty, b) = if tq1 {
            (TensorType::TQ1_0, encode_tq1_0(&v, rows, cols, scale).unwrap())
        } else {
            (TensorType::TQ2_0, encode_tq2_0(&v, rows, cols, scale).unwrap())
        };
        prop_assert_eq!(Some(b.len() as u64), ty.nbytes(&[cols as u64, rows as u64]));
        let d = ternary::decode("t", ty, &b, rows, cols, None).unwrap();
        prop_assert_eq!(&d.values, &v);
        let d16 = f16::from_f32(scale).to_f32();
        prop_assert_eq!(d.scale.clone(), TernaryScale::PerBlock { block: 256, scales: vec![d16; rows * blocks] });
        prop_assert_eq!(d.row_scales(), Some(vec![d16; rows]));
    }

    #[test]
    fn tl1_round_trip(
        bm_sub in prop::sample::select(vec![16usize, 32, 64]),
        a in 1usize..3, b in 1usize..3, c in 1usize..3, e in 1usize..4,
        seed in any::<u64>(), scale in any::<u32>(),
    ) {
        let by = 256 / bm_sub;
        let tiling = TlTiling { bm: bm_sub * a, bk: by * c, bm_sub };
        let (rows, cols) = (tiling.bm * b, tiling.bk * e);
        let v = ternary_values(rows * cols, seed);
        let s = f32::from_bits(scale);
        let bytes = encode_tl1(&v, rows, cols, s, tiling).unwrap();
        prop_assert_eq!(Some(bytes.len() as u64), TensorType::TL1.nbytes(&[cols as u64, rows as u64]));
        prop_assert!(bytes[..rows * cols / 4].iter().all(|&x| x >> 4 <= 8 && x & 15 <= 8));
        let d = ternary::decode("t", TensorType::TL1, &bytes, rows, cols, Some(tiling)).unwrap();
        prop_assert_eq!(d.values, v);
        prop_assert!(matches!(d.scale, TernaryScale::PerTensor(x) if x.to_bits() == s.to_bits()));
    }

    #[test]
    fn tl2_round_trip(
        a in 1usize..3, b in 1usize..3, c in 1usize..9, tiles in 1usize..5, pair_tiles in 0usize..4,
        seed in any::<u64>(), scale in any::<u32>(),
    ) {
        let tiling = TlTiling { bm: 32 * a, bk: 24 * c, bm_sub: 32 };
        // K = K3 + K2 with K2 < BK a multiple of 32.
        prop_assume!(32 * pair_tiles < tiling.bk);
        let (rows, cols) = (tiling.bm * b, tiling.bk * tiles + 32 * pair_tiles);
        let v = ternary_values(rows * cols, seed);
        let s = f32::from_bits(scale);
        let bytes = encode_tl2(&v, rows, cols, s, tiling).unwrap();
        prop_assert_eq!(Some(bytes.len() as u64), TensorType::TL2.nbytes(&[cols as u64, rows as u64]));
        let d = ternary::decode("t", TensorType::TL2, &bytes, rows, cols, Some(tiling)).unwrap();
        prop_assert_eq!(d.values, v);
        prop_assert!(matches!(d.scale, TernaryScale::PerTensor(x) if x.to_bits() == s.to_bits()));
    }

    #[test]
    fn decoders_never_panic_on_arbitrary_bytes(
        ty in prop::sample::select(vec![TensorType::I2_S, TensorType::TQ1_0, TensorType::TQ2_0, TensorType::TL1, TensorType::TL2]),
        rows in prop::sample::select(vec![0usize, 1, 32, 64]),
        cols in prop::sample::select(vec![0usize, 1, 96, 128, 256, 320]),
        bm in prop::sample::select(vec![0usize, 16, 32, 64]),
        bk in prop::sample::select(vec![0usize, 8, 16, 24, 96]),
        bm_sub in prop::sample::select(vec![0usize, 16, 32, 64, 128]),
        exact_len in any::<bool>(),
        seed in any::<u64>(),
    ) {
        let len = match ty.nbytes(&[cols as u64, rows as u64]) {
            Some(n) if exact_len => n as usize,
            _ => (seed % 700) as usize,
        };
        let data: Vec<u8> = (0..len).map(|i| (seed.wrapping_mul(i as u64 + 1) >> 13) as u8).collect();
        let tiling = TlTiling { bm, bk, bm_sub };
        if let Ok(d) = ternary::decode("t", ty, &data, rows, cols, Some(tiling)) {
            prop_assert_eq!(d.values.len(), rows * cols);
            prop_assert!(d.values.iter().all(|v| (-1..=1).contains(v)));
        }
    }
}

/// Deterministic pseudo-random ternary values.
fn ternary_values(n: usize, seed: u64) -> Vec<i8> {
    let mut s = seed | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s % 3) as i8 - 1
        })
        .collect()
}

#[test]
fn empty_unknown_tensor_sharing_an_offset_round_trips() {
    let mut w = GgufWriter::new();
    w.add_tensor("empty", vec![0], GgmlType(200), Vec::new())
        .unwrap();
    w.add_tensor("next", vec![8], GgmlType::F32, vec![7; 32])
        .unwrap();
    w.add_tensor("odd", vec![3], GgmlType(201), vec![1, 2, 3])
        .unwrap();
    let bytes = w.to_bytes().unwrap();
    let f = GgufFile::from_vec(bytes.clone()).unwrap();
    let offsets: Vec<u64> = f.tensors().iter().map(|t| t.offset).collect();
    assert_eq!(offsets, [0, 0, 32]);
    assert_eq!(bytes.len() as u64, f.data_offset() + 64);
    assert_eq!(
        GgufWriter::from_file(&f).unwrap().to_bytes().unwrap(),
        bytes
    );
}
