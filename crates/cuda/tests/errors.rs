//! The one-line errors on a machine without the NVIDIA driver (this test
//! only asserts where libcuda is absent; elsewhere it checks the opposite).

use bitnet_cuda::{CudaError, DeviceSpec, device_error};

#[test]
fn cuda_without_a_driver_is_one_line_naming_it() {
    if bitnet_cuda::device::driver_present() {
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "cuda_without_a_driver_is_one_line_naming_it: skipped: this machine has libcuda"
        );
        return;
    }
    let e = device_error(DeviceSpec::Cuda(0))
        .map(|e| e.to_string())
        .unwrap_or_default();
    assert!(
        e.starts_with("no CUDA driver: libcuda.so.1 not found"),
        "{e}"
    );
    assert!(e.contains("--device cpu") && !e.contains('\n'), "{e}");
    assert!(matches!(
        bitnet_cuda::Gpu::open(1),
        Err(CudaError::NoDriver)
    ));
}

#[test]
fn cpu_is_never_an_error() {
    assert!(device_error(DeviceSpec::Cpu).is_none());
}
