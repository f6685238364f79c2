//! Instruction-set levels and the capability tokens that prove them.
//!
//! A token can only be obtained through runtime detection, so a function that
//! takes one may use the corresponding `#[target_feature]` code soundly.

use std::fmt;

/// A kernel level, in order of preference: [`Isa::best`] takes the last one
/// the CPU supports. Each level implies AVX2's features, but not every
/// AVX-512 CPU has AVX-VNNI (Ice Lake and Zen 4 do not): that level is
/// simply not taken there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Isa {
    /// Portable Rust, no `std::arch`. Always available; the reference.
    Scalar,
    /// x86-64 AVX2 + FMA + F16C.
    Avx2,
    /// AVX2 with AVX-VNNI (`vpdpbusd` on 256-bit vectors, VEX-encoded), no
    /// AVX-512: Intel client cores since Alder Lake, Sapphire Rapids, Zen 5.
    AvxVnni,
    /// x86-64 AVX-512 F/BW/VL with VNNI (`vpdpbusd` on 512-bit vectors):
    /// Cascade Lake, Ice Lake, Sapphire Rapids, Zen 4 and later.
    Avx512,
}

impl Isa {
    /// All levels, from the most portable to the most specific.
    pub const ALL: [Isa; 4] = [Isa::Scalar, Isa::Avx2, Isa::AvxVnni, Isa::Avx512];

    /// The lower-case name used by the `BITNET_KERNEL` knob.
    pub fn name(self) -> &'static str {
        match self {
            Isa::Scalar => "scalar",
            Isa::Avx2 => "avx2",
            Isa::AvxVnni => "avxvnni",
            Isa::Avx512 => "avx512",
        }
    }

    /// Parses a knob value.
    pub fn from_name(s: &str) -> Option<Isa> {
        match s.trim().to_ascii_lowercase().as_str() {
            "scalar" | "generic" | "portable" => Some(Isa::Scalar),
            "avx2" => Some(Isa::Avx2),
            "avxvnni" | "avx-vnni" | "avx2vnni" => Some(Isa::AvxVnni),
            "avx512" | "avx512vnni" | "avx512-vnni" => Some(Isa::Avx512),
            _ => None,
        }
    }

    /// Whether this CPU can run kernels of this level.
    pub fn is_available(self) -> bool {
        match self {
            Isa::Scalar => true,
            Isa::Avx2 => Avx2::detect().is_some(),
            Isa::AvxVnni => AvxVnni::detect().is_some(),
            Isa::Avx512 => Avx512::detect().is_some(),
        }
    }

    /// The best level this CPU supports.
    pub fn best() -> Isa {
        Isa::ALL
            .into_iter()
            .rev()
            .find(|isa| isa.is_available())
            .unwrap_or(Isa::Scalar)
    }

    /// Whether `BITNET_KERNEL` (read once) leaves AVX-512 code allowed: for
    /// helpers outside the kernel table (packing) that must follow the knob.
    pub(crate) fn from_env_allows_avx512() -> bool {
        use std::sync::OnceLock;
        static ALLOWED: OnceLock<bool> = OnceLock::new();
        *ALLOWED.get_or_init(|| match std::env::var(crate::KERNEL_ENV) {
            Ok(v) if !v.trim().is_empty() && v.trim() != "auto" => {
                Isa::from_name(&v) == Some(Isa::Avx512)
            }
            _ => true,
        })
    }

    /// The levels this CPU supports, from the most portable.
    pub fn available() -> Vec<Isa> {
        Isa::ALL.into_iter().filter(|i| i.is_available()).collect()
    }
}

impl fmt::Display for Isa {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The CPU family (base plus extended) of an AMD processor; `None` on
/// other vendors and architectures. Kernels that read memory in ways whose
/// best choice was measured to differ between core generations ask it.
pub(crate) fn amd_family() -> Option<u32> {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::__cpuid;
        let vendor = __cpuid(0);
        if (vendor.ebx, vendor.edx, vendor.ecx) != (0x6874_7541, 0x6974_6e65, 0x444d_4163) {
            return None;
        }
        let eax = __cpuid(1).eax;
        let base = (eax >> 8) & 0xf;
        Some(if base == 0xf {
            base + ((eax >> 20) & 0xff)
        } else {
            base
        })
    }
    #[cfg(not(target_arch = "x86_64"))]
    None
}

/// Proof that the CPU supports AVX2, FMA and F16C.
#[derive(Clone, Copy, Debug)]
pub struct Avx2(());

impl Avx2 {
    /// Returns the token when the running CPU has the features.
    pub fn detect() -> Option<Avx2> {
        #[cfg(target_arch = "x86_64")]
        {
            if std::arch::is_x86_feature_detected!("avx2")
                && std::arch::is_x86_feature_detected!("fma")
                && std::arch::is_x86_feature_detected!("f16c")
            {
                return Some(Avx2(()));
            }
        }
        None
    }
}

/// Proof that the CPU supports AVX-VNNI (and everything [`Avx2`] proves).
#[derive(Clone, Copy, Debug)]
pub struct AvxVnni(());

impl AvxVnni {
    /// Returns the token when the running CPU has the features.
    pub fn detect() -> Option<AvxVnni> {
        #[cfg(target_arch = "x86_64")]
        {
            if Avx2::detect().is_some() && std::arch::is_x86_feature_detected!("avxvnni") {
                return Some(AvxVnni(()));
            }
        }
        None
    }
}

/// Proof that the CPU supports AVX-512 F/BW/VL/VNNI (and everything [`Avx2`]
/// proves).
#[derive(Clone, Copy, Debug)]
pub struct Avx512(());

impl Avx512 {
    /// Returns the token when the running CPU has the features.
    pub fn detect() -> Option<Avx512> {
        #[cfg(target_arch = "x86_64")]
        {
            if Avx2::detect().is_some()
                && std::arch::is_x86_feature_detected!("avx512f")
                && std::arch::is_x86_feature_detected!("avx512bw")
                && std::arch::is_x86_feature_detected!("avx512vl")
                && std::arch::is_x86_feature_detected!("avx512vnni")
            {
                return Some(Avx512(()));
            }
        }
        None
    }

    /// The AVX2 token implied by this one.
    pub fn avx2(self) -> Avx2 {
        Avx2(())
    }

    /// Whether this core runs 512-bit vector operations as two 256-bit
    /// halves: AMD family 19h, whose only AVX-512 cores are Zen 4 (Zen 3
    /// has none, Zen 5 is family 1Ah and has full-width units). There the
    /// lookup layout's GEMV decodes faster than the base-3 one (see
    /// `Kernels::ternary_layout`).
    pub fn in_halves(self) -> bool {
        amd_family() == Some(0x19)
    }
}
