//! Ternary decoders against real files: the small-bitnet and demo GGUFs against their HF
//! checkpoints, and the tl-formats files (I2_S, TL1, TL2 written by bitnet.cpp) against
//! manifest.json. Also: re-encoding a decoded tensor reproduces the file's bytes.

mod common;

use std::path::Path;

use bitnet_gguf::ternary::{
    self, TernaryScale, TlKind, TlTiling, decode_tensor, encode_i2s, encode_tl1, encode_tl2,
    encode_tq1_0, encode_tq2_0, parse_kernel_config, tl_preset,
};
use bitnet_gguf::{GgufFile, TensorType};
use half::f16;
use safetensors::SafeTensors;
use serde_json::Value as Json;

/// Decode every ternary tensor of `gguf` and compare with the HF checkpoint in `model_dir`.
/// Returns the number of ternary tensors checked.
fn check_against_hf(model_dir: &Path, gguf: &Path, want_ty: TensorType) -> usize {
    let st_bytes = std::fs::read(model_dir.join("model.safetensors")).unwrap();
    let st = SafeTensors::deserialize(&st_bytes).unwrap();
    let f = GgufFile::open(gguf).unwrap();
    let mut checked = 0;
    for t in f.tensors().iter().filter(|t| t.ty.is_ternary()) {
        assert_eq!(t.ty, want_ty, "{}", t.name);
        let hf = common::hf_ternary(&st, &common::hf_prefix(&t.name));
        let d = decode_tensor(&f, t, None).unwrap();
        assert_eq!((d.rows, d.cols), (hf.rows, hf.cols), "{}", t.name);
        assert!(
            d.values == hf.values,
            "{}: ternary values differ from HF",
            t.name
        );
        // bitlinear: W = T / weight_scale, so the effective scale is 1/weight_scale.
        let want = 1.0f32 / hf.weight_scale;
        let data = f.tensor_data(t).unwrap();
        match &d.scale {
            TernaryScale::PerTensor(s) => {
                assert_eq!(s.to_bits(), want.to_bits(), "{}", t.name);
                // Re-encoding gives the same codes and scale; bytes 4..32 of the tail are
                // uninitialised memory in llama-quantize's output, so they are not compared.
                let enc = encode_i2s(&d.values, d.rows, d.cols, *s).unwrap();
                let n = d.rows * d.cols / 4 + 4;
                assert_eq!(&enc[..n], &data[..n], "{}", t.name);
                assert!(enc[n..].iter().all(|&b| b == 0));
            }
            TernaryScale::PerBlock { block, scales } => {
                assert_eq!(*block, 256);
                assert_eq!(scales.len(), d.rows * d.cols / 256);
                let d16 = f16::from_f32(want).to_f32();
                for &s in scales {
                    assert_eq!(s.to_bits(), d16.to_bits(), "{}", t.name);
                    assert!((s / want - 1.0).abs() <= 3.7e-4, "{}", t.name);
                }
                assert_eq!(d.row_scales(), Some(vec![d16; d.rows]));
                assert_eq!(d.tensor_scale(), Some(d16));
                // Re-encode with d = that f16; compare every byte (d only where the block is
                // not all zero, since llama.cpp writes d = 0 for all-zero blocks).
                let (enc, bb) = match want_ty {
                    TensorType::TQ1_0 => {
                        (encode_tq1_0(&d.values, d.rows, d.cols, d16).unwrap(), 54)
                    }
                    _ => (encode_tq2_0(&d.values, d.rows, d.cols, d16).unwrap(), 66),
                };
                assert_eq!(enc.len(), data.len());
                for (i, (e, g)) in enc.chunks(bb).zip(data.chunks(bb)).enumerate() {
                    let zero = d.values[i * 256..(i + 1) * 256].iter().all(|&v| v == 0);
                    let cmp = if zero { bb - 2 } else { bb };
                    assert_eq!(&e[..cmp], &g[..cmp], "{} block {i}", t.name);
                }
            }
        }
        checked += 1;
    }
    checked
}

#[test]
fn small_bitnet_ggufs_decode_to_the_hf_weights() {
    let dir = common::repo_fixtures().join("small-bitnet");
    for (file, ty) in [
        ("small-bitnet-i2_s.gguf", TensorType::I2_S),
        ("small-bitnet-tq2_0.gguf", TensorType::TQ2_0),
        ("small-bitnet-tq1_0.gguf", TensorType::TQ1_0),
    ] {
        // 2 layers x 7 linears.
        assert_eq!(
            check_against_hf(&dir, &dir.join("gguf").join(file), ty),
            14,
            "{file}"
        );
    }
}

#[test]
fn demo_bitnet_gguf_decodes_to_the_hf_weights() {
    let dir = common::repo_fixtures().join("demo-bitnet");
    let gguf = dir.join("gguf/demo-bitnet-i2_s.gguf");
    // 4 layers x 7 linears.
    assert_eq!(check_against_hf(&dir, &gguf, TensorType::I2_S), 28);
}

fn json_tiling(v: &Json) -> TlTiling {
    let g = |k: &str| v[k].as_u64().unwrap() as usize;
    TlTiling {
        bm: g("BM"),
        bk: g("BK"),
        bm_sub: g("bm"),
    }
}

#[test]
fn tl_formats_decode_to_the_manifest() {
    let Some(dir) = common::tl_formats("tl-formats decoding") else {
        return;
    };
    let manifest: Json =
        serde_json::from_str(&std::fs::read_to_string(dir.join("manifest.json")).unwrap()).unwrap();
    let ini = |name: &str| {
        parse_kernel_config(&std::fs::read_to_string(dir.join(name)).unwrap()).unwrap()
    };
    let ini_tl1 = ini("tl1_kernel_config.ini");
    let ini_tl2 = ini("tl2_kernel_config.ini");
    assert_eq!(ini_tl1.len(), 3);
    assert_eq!(ini_tl2.len(), 3);
    let from_ini = |table: &[(usize, usize, TlTiling)], m, k| {
        table
            .iter()
            .find(|e| e.0 == m && e.1 == k)
            .map(|e| e.2)
            .unwrap()
    };
    let entries = manifest["ternary_tensors"].as_array().unwrap();
    assert_eq!(entries.len(), 7);

    for (file, ty) in [
        ("bitnet-large-1L-i2_s.gguf", TensorType::I2_S),
        ("bitnet-large-1L-tl1.gguf", TensorType::TL1),
        ("bitnet-large-1L-tl2.gguf", TensorType::TL2),
    ] {
        let f = GgufFile::open(&dir.join(file)).unwrap();
        let facts = &manifest["files"][file];
        assert_eq!(
            f.data_offset(),
            facts["data_start"].as_u64().unwrap(),
            "{file}"
        );
        assert_eq!(
            f.bytes().len() as u64,
            facts["bytes"].as_u64().unwrap(),
            "{file}"
        );
        for ft in facts["tensors"].as_array().unwrap() {
            let t = f.tensor(ft["name"].as_str().unwrap()).unwrap();
            assert_eq!(t.raw_type.0 as u64, ft["ggml_type"].as_u64().unwrap());
            assert_eq!(t.offset, ft["offset_in_data"].as_u64().unwrap());
            assert_eq!(t.nbytes, ft["ggml_nbytes"].as_u64());
        }
        for other in manifest["other_tensors"].as_array().unwrap() {
            let t = f.tensor(other["name"].as_str().unwrap()).unwrap();
            assert_eq!(
                common::sha256_hex(f.tensor_data(t).unwrap()),
                other["sha256_rowmajor_le"].as_str().unwrap(),
                "{file} {}",
                t.name
            );
        }
        for e in entries {
            let name = e["name"].as_str().unwrap();
            let m = e["shape_MK"][0].as_u64().unwrap() as usize;
            let k = e["shape_MK"][1].as_u64().unwrap() as usize;
            let t = f.tensor(name).unwrap();
            assert_eq!(t.ty, ty, "{file} {name}");
            assert_eq!(t.ne, vec![k as u64, m as u64]);
            // The tiling: the manifest's, the shipped .ini's and our preset must all agree.
            let tiling = match ty {
                TensorType::TL1 => {
                    let t1 = json_tiling(&e["tl1_kernel_config"]);
                    assert_eq!(from_ini(&ini_tl1, m, k), t1);
                    assert_eq!(tl_preset(TlKind::Tl1, m, k), Some(t1));
                    Some(t1)
                }
                TensorType::TL2 => {
                    let t2 = json_tiling(&e["tl2_kernel_config"]);
                    assert_eq!(from_ini(&ini_tl2, m, k), t2);
                    assert_eq!(tl_preset(TlKind::Tl2, m, k), Some(t2));
                    Some(t2)
                }
                _ => None,
            };
            // tiling None = use the preset; the .ini tiling is identical (asserted above).
            let d = decode_tensor(&f, t, None).unwrap();
            assert_eq!((d.rows, d.cols), (m, k));
            assert_eq!(
                common::sha256_i8(&d.values),
                e["sha256_int8_rowmajor"].as_str().unwrap(),
                "{file} {name}"
            );
            let hex = e["scale_f32_hex"].as_str().unwrap();
            let bytes: Vec<u8> = (0..4)
                .map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).unwrap())
                .collect();
            let want_scale = f32::from_le_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]);
            assert_eq!(want_scale, e["scale"].as_f64().unwrap() as f32);
            let TernaryScale::PerTensor(s) = d.scale else {
                panic!("{file} {name}: expected a per-tensor scale");
            };
            assert_eq!(s.to_bits(), want_scale.to_bits(), "{file} {name}");
            for (row, key) in [
                (0, "row0_first16"),
                (1, "row1_first16"),
                (m - 1, "rowLast_first16"),
            ] {
                let want: Vec<i8> = e[key]
                    .as_array()
                    .unwrap()
                    .iter()
                    .map(|v| v.as_i64().unwrap() as i8)
                    .collect();
                assert_eq!(
                    &d.values[row * k..row * k + 16],
                    &want[..],
                    "{file} {name} {key}"
                );
            }
            // Re-encoding reproduces the tensor's bytes exactly (tails are zero in these files).
            let enc = match ty {
                TensorType::I2_S => encode_i2s(&d.values, m, k, s),
                TensorType::TL1 => encode_tl1(&d.values, m, k, s, tiling.unwrap()),
                _ => encode_tl2(&d.values, m, k, s, tiling.unwrap()),
            }
            .unwrap();
            assert!(
                enc == f.tensor_data(t).unwrap(),
                "{file} {name}: re-encoding differs"
            );
        }
    }
}

#[test]
fn tl_decoding_with_a_wrong_tiling_fails_or_differs() {
    // LAYOUT.md: with BM = 128 instead of 256, TL2 decodes to garbage. Our decoder must not
    // silently produce the right hash with the wrong tiling.
    let Some(dir) = common::tl_formats("tl-formats wrong tiling") else {
        return;
    };
    let f = GgufFile::open(&dir.join("bitnet-large-1L-tl2.gguf")).unwrap();
    let t = f.tensor("blk.0.ffn_up.weight").unwrap();
    let right = decode_tensor(&f, t, None).unwrap();
    let wrong = TlTiling {
        bm: 128,
        bk: 96,
        bm_sub: 32,
    };
    match decode_tensor(&f, t, Some(wrong)) {
        Ok(d) => assert_ne!(d.values, right.values),
        Err(e) => assert!(e.to_string().contains("blk.0.ffn_up.weight"), "{e}"),
    }
    // Decoding through the generic entry point with explicit bytes gives the same result.
    let again = ternary::decode(
        &t.name,
        t.ty,
        f.tensor_data(t).unwrap(),
        4096,
        1536,
        tl_preset(TlKind::Tl2, 4096, 1536),
    )
    .unwrap();
    assert_eq!(again, right);
}
