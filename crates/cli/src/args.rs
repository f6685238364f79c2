//! Arguments shared by the subcommands that load a model.

use anyhow::Context;
use bitnet_engine::{DeviceSpec, Engine, EngineOptions, KvType, resolve};
use bitnet_hub::Hub;
use clap::Args;

/// Which model to load and how to run it.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// GGUF file, Hugging Face model directory, Hub repo id
    /// (e.g. microsoft/bitnet-b1.58-2B-4T-gguf) or `builtin`. Default:
    /// BitNet b1.58 2B-4T if it is in the Hugging Face cache, else the
    /// built-in demo model.
    #[arg(short = 'm', long = "model")]
    pub model: Option<String>,
    /// Threads to use (default: all CPUs; more than the CPUs is capped, as
    /// extra threads only wait for one another).
    #[arg(short = 't', long = "threads", default_value_t = 0)]
    pub threads: usize,
    /// Context size in tokens (default: the model's, at most 4096).
    #[arg(short = 'c', long = "ctx-size")]
    pub ctx_size: Option<usize>,
    /// Tokens per forward pass while processing the prompt.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    /// KV cache precision: f16 (default), f32 (the reference's precision,
    /// computed in its exact arithmetic) or q8 (int8 rows, a quarter of f32).
    #[arg(long = "kv-type", default_value = "f16", value_parser = parse_kv_type)]
    pub kv_type: KvType,
    /// Where to run: cpu (default), cuda (= cuda:0) or cuda:N.
    #[arg(long = "device", default_value = "cpu", value_parser = parse_device)]
    pub device: DeviceSpec,
}

/// `--device`: `cpu`, `cuda` or `cuda:N`.
pub fn parse_device(s: &str) -> Result<DeviceSpec, String> {
    s.parse::<DeviceSpec>().map_err(|e| e.to_string())
}

fn parse_kv_type(s: &str) -> Result<KvType, String> {
    KvType::from_name(s)
        .ok_or_else(|| format!("unknown KV cache type `{s}` (expected f16, f32 or q8)"))
}

impl ModelArgs {
    /// `-t`, capped at the CPU count with a warning.
    fn threads(&self) -> usize {
        let cpus = bitnet_threads::available_cpus();
        if self.threads > cpus {
            eprintln!(
                "warning: -t {} is more than the {cpus} CPUs available; using {cpus} threads",
                self.threads
            );
            return cpus;
        }
        self.threads
    }

    /// Engine options from the flags.
    pub fn engine_options(&self) -> EngineOptions {
        EngineOptions {
            threads: self.threads(),
            n_ctx: self.ctx_size,
            kv_type: self.kv_type,
            n_batch: self.batch_size,
            kernels: None,
            device: self.device,
        }
    }

    /// A GPU this build cannot use is one line saying what is missing
    /// (driver, GPU, NVRTC, or the GPU forward pass): checked before the
    /// model is resolved (which may download) or any input is read.
    pub fn check_device(&self) -> anyhow::Result<()> {
        match bitnet_cuda::device_error(self.device) {
            None => Ok(()),
            Some(e) => Err(e.into()),
        }
    }

    /// Resolves `-m` (downloading if needed), says which model was chosen
    /// when it was the default, and loads it.
    pub fn load(&self) -> anyhow::Result<Engine> {
        self.check_device()?;
        let hub = Hub::from_env();
        let resolved = resolve::resolve(self.model.as_deref(), &hub).with_context(|| {
            format!(
                "cannot find model `{}`",
                self.model.as_deref().unwrap_or("(default)")
            )
        })?;
        if let Some(note) = &resolved.note {
            eprintln!("{note}");
        }
        Engine::load(&resolved.location, self.engine_options()).with_context(|| {
            format!(
                "cannot load model `{}`",
                self.model.as_deref().unwrap_or("(default)")
            )
        })
    }
}
