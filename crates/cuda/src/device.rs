//! Opening a GPU: the driver library, the device, its compute capability,
//! and the kernel modules compiled for it (through the PTX cache).

use std::collections::HashMap;
use std::sync::Arc;

use cudarc::driver::{CudaContext, CudaFunction, CudaModule, CudaStream};
use cudarc::nvrtc::Ptx;

use crate::error::{CudaError, Result};
use crate::nvrtc;
use crate::sources::MODULES;

/// Whether the NVIDIA driver library (`libcuda.so.1`) can be opened.
pub fn driver_present() -> bool {
    // SAFETY: tries to dlopen libcuda by its sonames; opening NVIDIA's
    // driver library runs its initialisers, which have no preconditions.
    unsafe { cudarc::driver::sys::is_culib_present() }
}

/// An open GPU with every kernel module loaded.
pub struct Gpu {
    ctx: Arc<CudaContext>,
    stream: Arc<CudaStream>,
    ordinal: usize,
    name: String,
    cc: (i32, i32),
    modules: HashMap<&'static str, Arc<CudaModule>>,
}

impl std::fmt::Debug for Gpu {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "Gpu(cuda:{} {} sm_{}{})",
            self.ordinal, self.name, self.cc.0, self.cc.1
        )
    }
}

/// Checks what `--device cuda:N` needs, in the order a user would fix it:
/// the driver, the device, its generation, NVRTC. Returns the device count.
pub fn check(ordinal: usize) -> Result<usize> {
    if !driver_present() {
        return Err(CudaError::NoDriver);
    }
    let count = CudaContext::device_count()?.max(0) as usize;
    if ordinal >= count {
        return Err(CudaError::NoDevice { ordinal, count });
    }
    Ok(count)
}

impl Gpu {
    /// Opens device `ordinal` and compiles (or loads from the cache) every
    /// kernel module for its compute capability.
    pub fn open(ordinal: usize) -> Result<Gpu> {
        check(ordinal)?;
        let ctx = CudaContext::new(ordinal)?;
        let (major, minor) = ctx.compute_capability()?;
        if major < 8 {
            return Err(CudaError::TooOld {
                ordinal,
                major,
                minor,
            });
        }
        nvrtc::nvrtc()?;
        let cc = (major * 10 + minor) as u32;
        let mut modules = HashMap::new();
        for m in MODULES {
            let ptx = nvrtc::compile(m.name, &m.source(), cc)?;
            modules.insert(m.name, ctx.load_module(Ptx::from_src(ptx))?);
        }
        let stream = ctx.default_stream();
        let name = ctx.name()?;
        Ok(Gpu {
            ctx,
            stream,
            ordinal,
            name,
            cc: (major, minor),
            modules,
        })
    }

    /// The context.
    pub fn context(&self) -> &Arc<CudaContext> {
        &self.ctx
    }

    /// The stream every launch goes to.
    pub fn stream(&self) -> &Arc<CudaStream> {
        &self.stream
    }

    /// `"NVIDIA H100 80GB HBM3 (cuda:0, sm_90)"`.
    pub fn describe(&self) -> String {
        format!(
            "{} (cuda:{}, sm_{}{})",
            self.name, self.ordinal, self.cc.0, self.cc.1
        )
    }

    /// A kernel by module and name.
    pub fn function(&self, module: &str, name: &str) -> Result<CudaFunction> {
        let m = self
            .modules
            .get(module)
            .ok_or_else(|| CudaError::Invalid(format!("no kernel module {module}")))?;
        Ok(m.load_function(name)?)
    }
}
