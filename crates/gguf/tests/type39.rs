//! Type id 39 is TL2 in bitnet.cpp files and MXFP4 in mainline ggml files: the reader decides
//! per tensor from the file layout first, then from the shape, then from the metadata.

mod common;

use bitnet_gguf::{GgmlType, GgufFile, GgufWriter, TensorType, Value};

/// A file with one type-39 tensor `ne` holding `len` bytes, optionally followed by an F32 tensor,
/// and optional trailing bytes after the last tensor.
fn file(
    arch: Option<&str>,
    file_type: Option<u32>,
    ne: &[u64],
    len: usize,
    follower: bool,
    trailing: Option<Vec<u8>>,
) -> GgufFile {
    let mut w = GgufWriter::new();
    if let Some(a) = arch {
        w.metadata_mut()
            .insert("general.architecture", Value::String(a.into()));
    }
    if let Some(t) = file_type {
        w.metadata_mut().insert("general.file_type", Value::U32(t));
    }
    w.add_tensor("x", ne.to_vec(), GgmlType::TL2_OR_MXFP4, vec![0; len])
        .unwrap();
    if follower {
        w.add_tensor("next", vec![8], GgmlType::F32, vec![0; 32])
            .unwrap();
    }
    w.set_trailing_bytes(trailing);
    GgufFile::from_vec(w.to_bytes().unwrap()).unwrap()
}

#[test]
fn metadata_decides_when_both_sizes_fit() {
    // [64, 2]: MXFP4 = 4 blocks * 17 = 68 bytes, TL2 = pad32(48) + 32 = 96 bytes. As the last
    // tensor, padded to 96, both fit.
    assert_eq!(TensorType::MXFP4.nbytes(&[64, 2]), Some(68));
    assert_eq!(TensorType::TL2.nbytes(&[64, 2]), Some(96));
    let ty = |arch, ft| file(arch, ft, &[64, 2], 68, false, None).tensors()[0].ty;
    assert_eq!(ty(None, None), TensorType::MXFP4);
    assert_eq!(ty(Some("llama"), None), TensorType::MXFP4);
    assert_eq!(ty(Some("gpt-oss"), Some(38)), TensorType::MXFP4);
    assert_eq!(ty(Some("bitnet"), None), TensorType::TL2);
    assert_eq!(ty(Some("bitnet-b1.58"), None), TensorType::TL2);
    assert_eq!(ty(Some("bitnet-25"), None), TensorType::TL2);
    assert_eq!(ty(Some("llama"), Some(39)), TensorType::TL2);
    let f = file(Some("bitnet"), None, &[64, 2], 68, false, None);
    assert_eq!(f.tensors()[0].nbytes, Some(96));
    assert_eq!(f.tensors()[0].raw_type, GgmlType(39));
}

#[test]
fn the_layout_overrides_the_metadata() {
    // [256, 32]: MXFP4 = 32 * 8 * 17 = 4352 bytes, TL2 = 2048 + 32 = 2080 bytes.
    let (mx, tl2) = (4352, 2080);
    assert_eq!(TensorType::MXFP4.nbytes(&[256, 32]), Some(mx));
    assert_eq!(TensorType::TL2.nbytes(&[256, 32]), Some(tl2));
    // Followed by another tensor: the gap to its offset is the evidence.
    let f = file(
        Some("bitnet"),
        Some(39),
        &[256, 32],
        mx as usize,
        true,
        None,
    );
    assert_eq!(f.tensors()[0].ty, TensorType::MXFP4);
    assert_eq!(f.tensor_data(&f.tensors()[0]).unwrap().len(), mx as usize);
    let f = file(Some("llama"), None, &[256, 32], tl2 as usize, true, None);
    assert_eq!(f.tensors()[0].ty, TensorType::TL2);
    // Last tensor: the distance to the end of the file is the evidence.
    let f = file(Some("bitnet"), None, &[256, 32], mx as usize, false, None);
    assert_eq!(f.tensors()[0].ty, TensorType::MXFP4);
    let f = file(None, None, &[256, 32], tl2 as usize, false, None);
    assert_eq!(f.tensors()[0].ty, TensorType::TL2);
}

#[test]
fn the_shape_decides_when_the_layout_does_not() {
    // K = 48 is not a multiple of MXFP4's block of 32, so only TL2 is possible; trailing bytes
    // make neither size fill the room.
    assert_eq!(TensorType::MXFP4.nbytes(&[48, 32]), None);
    let tl2 = TensorType::TL2.nbytes(&[48, 32]).unwrap() as usize;
    let f = file(None, None, &[48, 32], tl2, false, Some(vec![0; 100]));
    assert_eq!(f.tensors()[0].ty, TensorType::TL2);
    // K = 32 with K < 256 still has a positive TL2 size (C arithmetic), so both shapes are valid
    // and, without layout evidence, the metadata decides.
    let f = file(None, None, &[32, 32], 32 * 17, false, Some(vec![0; 100]));
    assert_eq!(f.tensors()[0].ty, TensorType::MXFP4);
    let f = file(
        Some("bitnet"),
        None,
        &[32, 32],
        32 * 17,
        false,
        Some(vec![0; 100]),
    );
    assert_eq!(f.tensors()[0].ty, TensorType::TL2);
}

#[test]
fn real_tl2_file_resolves_to_tl2_even_without_metadata_hints() {
    let Some(dir) = common::tl_formats("type-39 resolution on the TL2 file") else {
        return;
    };
    let f = GgufFile::open(&dir.join("bitnet-large-1L-tl2.gguf")).unwrap();
    let mut w = GgufWriter::from_file(&f).unwrap();
    w.metadata_mut()
        .insert("general.architecture", Value::String("llama".into()));
    w.metadata_mut().insert("general.file_type", Value::U32(1));
    let g = GgufFile::from_vec(w.to_bytes().unwrap()).unwrap();
    let tl2: Vec<_> = g.tensors().iter().filter(|t| t.raw_type.0 == 39).collect();
    assert_eq!(tl2.len(), 7);
    assert!(tl2.iter().all(|t| t.ty == TensorType::TL2));
}
