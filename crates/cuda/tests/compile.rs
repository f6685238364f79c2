//! Every kernel module compiles with NVRTC for sm_80 (A100) and sm_90
//! (H100/H200), and the PTX has every entry point the host launches.

mod common;

use bitnet_cuda::nvrtc;
use bitnet_cuda::sources::MODULES;

fn compiles_for(cc: u32) {
    if !common::nvrtc_or_skip(&format!("kernels_compile_for_sm_{cc}")) {
        return;
    }
    let mut failures = Vec::new();
    for m in MODULES {
        match nvrtc::compile_uncached(m.name, &m.source(), cc) {
            Ok(ptx) => {
                for e in m.entry_points {
                    if !ptx.contains(&format!(".entry {e}(")) {
                        failures.push(format!("{}: no entry point {e} in the PTX", m.name));
                    }
                }
                assert!(
                    ptx.contains(&format!(".target sm_{cc}")),
                    "{}: wrong target",
                    m.name
                );
            }
            Err(e) => failures.push(e.to_string()),
        }
    }
    assert!(failures.is_empty(), "sm_{cc}:\n{}", failures.join("\n"));
    let v = nvrtc::nvrtc().map(|i| i.version).unwrap_or_default();
    common::say(&format!(
        "sm_{cc}: {} modules compiled with NVRTC {}.{}",
        MODULES.len(),
        v.0,
        v.1
    ));
}

#[test]
fn kernels_compile_for_sm_80() {
    compiles_for(80);
}

#[test]
fn kernels_compile_for_sm_90() {
    compiles_for(90);
}

#[test]
fn the_tensor_core_gemm_uses_mma_and_the_gemv_dp4a() {
    if !common::nvrtc_or_skip("the_tensor_core_gemm_uses_mma_and_the_gemv_dp4a") {
        return;
    }
    let m = bitnet_cuda::sources::module("ternary")
        .map(|m| m.source())
        .unwrap_or_default();
    let ptx = nvrtc::compile_uncached("ternary", &m, 80).unwrap_or_else(|e| panic!("{e}"));
    assert!(ptx.contains("mma.sync.aligned.m16n8k32.row.col.s32.s8.s8.s32"));
    assert!(ptx.contains("dp4a.s32.s32"));
}

#[test]
fn the_cache_returns_what_nvrtc_made() {
    if !common::nvrtc_or_skip("the_cache_returns_what_nvrtc_made") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("bitnet-cuda-cache-{}", std::process::id()));
    let m = &MODULES[2];
    let a = nvrtc::compile_cached_in(Some(&dir), m.name, &m.source(), 90);
    let a = a.unwrap_or_else(|e| panic!("{e}"));
    let files = std::fs::read_dir(&dir).map(|d| d.count()).unwrap_or(0);
    assert_eq!(files, 1, "one cached PTX file in {}", dir.display());
    let b = nvrtc::compile_cached_in(Some(&dir), m.name, &m.source(), 90);
    let b = b.unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(a, b);
    // A second compile reads the file, not NVRTC.
    let file = std::fs::read_dir(&dir)
        .ok()
        .and_then(|mut d| d.next())
        .and_then(|e| e.ok());
    let file = file.map(|e| e.path()).unwrap_or_default();
    std::fs::write(&file, "// from the cache").unwrap_or_else(|e| panic!("{e}"));
    let c = nvrtc::compile_cached_in(Some(&dir), m.name, &m.source(), 90);
    assert_eq!(c.ok().as_deref(), Some("// from the cache"));
    let _ = std::fs::remove_dir_all(&dir);
}
