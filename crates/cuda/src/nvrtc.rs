//! Finding NVRTC at run time and compiling the kernel sources with it, with
//! an on-disk cache of the PTX per source, NVRTC version and architecture.
//!
//! Where NVRTC is looked for, in order:
//! 1. `BITNET_NVRTC_PATH`: the library file, or a folder holding
//!    `libnvrtc.so.13` / `libnvrtc.so.12`;
//! 2. the dynamic loader's own path (`LD_LIBRARY_PATH`, ldconfig);
//! 3. Python's site-packages (`$BITNET_PYTHON`, else `python3`):
//!    `nvidia/cuda_nvrtc/lib` (the `nvidia-cuda-nvrtc-cu12` wheel, also
//!    pulled in by PyTorch) and `nvidia/cu13/lib` (CUDA 13 wheels).
//!
//! A library found by path is opened here first (its `libnvrtc-builtins`
//! beside it too) and kept open; cudarc then opens it by its soname and gets
//! the same library, since the loader matches already-loaded sonames.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

use cudarc::nvrtc::{CompileError, CompileOptions, compile_ptx_with_opts};
use sha2::{Digest, Sha256};

use crate::error::{CudaError, Result};

/// Where NVRTC came from and which version it is.
#[derive(Clone, Debug)]
pub struct NvrtcInfo {
    /// The file opened by path, or `None` when the loader found it itself.
    pub path: Option<PathBuf>,
    /// NVRTC's (major, minor) version.
    pub version: (i32, i32),
}

static NVRTC: OnceLock<Result<NvrtcInfo, String>> = OnceLock::new();

/// Finds and opens NVRTC once per process.
pub fn nvrtc() -> Result<&'static NvrtcInfo> {
    NVRTC
        .get_or_init(locate)
        .as_ref()
        .map_err(|searched| CudaError::NoNvrtc {
            searched: searched.clone(),
        })
}

fn loader_has_it() -> bool {
    // SAFETY: tries to dlopen NVRTC by its sonames; opening NVIDIA's
    // library runs its initialisers, which have no preconditions.
    unsafe { cudarc::nvrtc::sys::is_culib_present() }
}

fn locate() -> Result<NvrtcInfo, String> {
    let mut searched = Vec::new();
    if let Some(p) = std::env::var_os("BITNET_NVRTC_PATH") {
        let p = PathBuf::from(p);
        searched.push(format!("BITNET_NVRTC_PATH={}", p.display()));
        if let Some(file) = library_in(&p) {
            return open_file(&file).map_err(|e| format!("{}: {e}", file.display()));
        }
    }
    searched.push("the loader path".into());
    if loader_has_it() {
        return Ok(NvrtcInfo {
            path: None,
            version: version(),
        });
    }
    for dir in python_site_dirs() {
        for sub in ["nvidia/cuda_nvrtc/lib", "nvidia/cu13/lib"] {
            let d = dir.join(sub);
            if let Some(file) = library_in(&d) {
                return open_file(&file).map_err(|e| format!("{}: {e}", file.display()));
            }
        }
        searched.push(format!("{}/nvidia", dir.display()));
    }
    Err(searched.join(", "))
}

/// The NVRTC library at `p`: the file itself, or inside the folder.
fn library_in(p: &Path) -> Option<PathBuf> {
    if p.is_file() {
        return Some(p.to_path_buf());
    }
    ["libnvrtc.so.13", "libnvrtc.so.12", "libnvrtc.so"]
        .iter()
        .map(|n| p.join(n))
        .find(|f| f.is_file())
}

fn open_file(file: &Path) -> Result<NvrtcInfo, String> {
    let dir = file.parent().unwrap_or(Path::new("."));
    // NVRTC opens its builtins library by soname: open it first by path.
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            if name.starts_with("libnvrtc-builtins.so") {
                // SAFETY: NVIDIA's builtins library; its initialisers have no
                // preconditions. Failure is harmless (NVRTC reports it).
                if let Ok(lib) = unsafe { libloading::Library::new(e.path()) } {
                    std::mem::forget(lib);
                }
            }
        }
    }
    // SAFETY: NVIDIA's NVRTC library; its initialisers have no
    // preconditions. It stays open for the life of the process.
    let lib = unsafe { libloading::Library::new(file) }.map_err(|e| e.to_string())?;
    std::mem::forget(lib);
    if !loader_has_it() {
        return Err("opened, but not under a soname cudarc looks for (libnvrtc.so.12/.13)".into());
    }
    Ok(NvrtcInfo {
        path: Some(file.to_path_buf()),
        version: version(),
    })
}

fn version() -> (i32, i32) {
    let (mut major, mut minor) = (0, 0);
    // SAFETY: NVRTC is loaded (checked by the callers); the function writes
    // two ints through valid pointers.
    unsafe { cudarc::nvrtc::sys::nvrtcVersion(&mut major, &mut minor) };
    (major, minor)
}

/// Python's site-packages folders (system and user), from `python3`.
fn python_site_dirs() -> Vec<PathBuf> {
    let python = std::env::var_os("BITNET_PYTHON").unwrap_or_else(|| "python3".into());
    let script = "import site,sys\nfor p in site.getsitepackages()+[site.getusersitepackages()]+sys.path: print(p)";
    let out = std::process::Command::new(python)
        .args(["-c", script])
        .stderr(std::process::Stdio::null())
        .output();
    let Ok(out) = out else { return Vec::new() };
    let mut dirs: Vec<PathBuf> = Vec::new();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let p = PathBuf::from(line.trim());
        if !line.trim().is_empty() && p.join("nvidia").is_dir() && !dirs.contains(&p) {
            dirs.push(p);
        }
    }
    dirs
}

/// The PTX of `source` for `sm_{cc}` (e.g. 80, 90), from the cache when an
/// identical compile is there, else from NVRTC (and then cached).
pub fn compile(module: &'static str, source: &str, cc: u32) -> Result<String> {
    compile_cached_in(cache_dir().as_deref(), module, source, cc)
}

/// [`compile`] with the cache in `dir` (`None`: no cache).
pub fn compile_cached_in(
    dir: Option<&Path>,
    module: &'static str,
    source: &str,
    cc: u32,
) -> Result<String> {
    let info = nvrtc()?;
    let arch = format!("sm_{cc}");
    let key = cache_key(source, info.version, &arch);
    let path = dir.map(|d| d.join(format!("{module}-{arch}-{key}.ptx")));
    if let Some(p) = &path
        && let Ok(ptx) = std::fs::read_to_string(p)
    {
        return Ok(ptx);
    }
    let ptx = compile_uncached(module, source, cc)?;
    if let Some(p) = &path {
        // A cache that cannot be written only costs the next start a compile.
        let _ = p.parent().map(std::fs::create_dir_all);
        let tmp = p.with_extension(format!("tmp{}", std::process::id()));
        if std::fs::write(&tmp, &ptx).is_ok() {
            let _ = std::fs::rename(&tmp, p);
        }
    }
    Ok(ptx)
}

/// Compiles without the cache (what the compile tests use).
pub fn compile_uncached(module: &'static str, source: &str, cc: u32) -> Result<String> {
    nvrtc()?;
    let arch = format!("sm_{cc}");
    let opts = CompileOptions {
        // No contraction into FMAs and IEEE division/sqrt: the f32 steps
        // that must match the CPU reference (scale rules, quantiser) round
        // as the CPU does.
        fmad: Some(false),
        prec_div: Some(true),
        prec_sqrt: Some(true),
        ftz: Some(false),
        arch: Some(static_arch(cc)),
        name: Some(format!("{module}.cu")),
        options: vec!["--std=c++17".into()],
        ..Default::default()
    };
    let ptx = compile_ptx_with_opts(source, opts).map_err(|e| CudaError::Compile {
        module,
        arch: arch.clone(),
        log: compile_log(&e),
    })?;
    Ok(ptx.to_src())
}

fn static_arch(cc: u32) -> &'static str {
    match cc {
        80 => "sm_80",
        86 => "sm_86",
        89 => "sm_89",
        90 => "sm_90",
        100 => "sm_100",
        120 => "sm_120",
        other => Box::leak(format!("sm_{other}").into_boxed_str()),
    }
}

fn compile_log(e: &CompileError) -> String {
    match e {
        CompileError::CompileError { log, .. } => {
            let log = log.to_string_lossy();
            log.lines()
                .filter(|l| !l.trim().is_empty())
                .take(8)
                .collect::<Vec<_>>()
                .join(" | ")
        }
        other => format!("{other:?}"),
    }
}

fn cache_key(source: &str, version: (i32, i32), arch: &str) -> String {
    let mut h = Sha256::new();
    h.update(source.as_bytes());
    h.update(format!("{version:?}{arch}").as_bytes());
    h.finalize()
        .iter()
        .take(8)
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// `$BITNET_CUDA_CACHE`, else `$XDG_CACHE_HOME/bitnet/cuda`, else
/// `~/.cache/bitnet/cuda`.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("BITNET_CUDA_CACHE") {
        return Some(PathBuf::from(d));
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))?;
    Some(base.join("bitnet").join("cuda"))
}
