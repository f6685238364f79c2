//! `bitnet bench`: prompt-processing and generation speed, like llama-bench.
//!
//! `bitnet bench -m MODEL -p 128 -n 64 -t 1,2 -r 3` prints one markdown row
//! per (threads, test) with tokens/s as mean ± standard deviation over the
//! repetitions; `-o json` prints a JSON array with llama-bench's field names
//! instead. `--shape 2b4t` (or `large`, `3b`, `8b`, `100b`) measures a model
//! of that exact shape built in memory with seeded random weights, so no
//! download is needed; `--head-type` picks its embedding/head format. Load
//! time, time to first token and peak resident memory go to stderr (and the
//! peak into the JSON). Each row also gives the CPU seconds per token: the
//! user and system time of the whole process (`cpu_s_per_token` and
//! `samples_cpu_ns` in the JSON). The kernel level is the best the CPU has
//! unless `BITNET_KERNEL` says otherwise.

use anyhow::{Context, bail};
use bitnet_engine::bench::{self, BenchModel, BenchOptions, BenchResult};
use bitnet_engine::{KvType, memory, resolve};
use bitnet_hub::Hub;
use bitnet_kernels::Kernels;
use bitnet_model::random::Shape;
use clap::{Args, ValueEnum};

/// Output format.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Output {
    /// A markdown table (llama-bench's default).
    Md,
    /// A JSON array, one object per test.
    Json,
}

/// Arguments of `bitnet bench`.
#[derive(Args, Debug)]
pub struct BenchArgs {
    /// GGUF file, Hugging Face directory, Hub repo id or `builtin` (as for
    /// `bitnet run`). Default: BitNet b1.58 2B-4T if cached, else the demo.
    #[arg(short = 'm', long = "model", conflicts_with = "shape")]
    pub model: Option<String>,
    /// Benchmark a model of this shape with random weights instead of a file:
    /// 2b4t, large, 3b, 8b or 100b.
    #[arg(long = "shape")]
    pub shape: Option<String>,
    /// Embedding/head format for --shape: f16 (as the official 2B-4T file),
    /// q8_0 or q6_k.
    #[arg(long = "head-type", default_value = "f16", requires = "shape")]
    pub head_type: String,
    /// Prompt lengths to test (comma-separated; 0 = no pp test).
    #[arg(
        short = 'p',
        long = "n-prompt",
        value_delimiter = ',',
        default_value = "512"
    )]
    pub n_prompt: Vec<usize>,
    /// Generation lengths to test (comma-separated; 0 = no tg test).
    #[arg(
        short = 'n',
        long = "n-gen",
        value_delimiter = ',',
        default_value = "128"
    )]
    pub n_gen: Vec<usize>,
    /// Context depths (comma-separated): each test runs after this many
    /// tokens were put in the KV cache, untimed, as llama-bench's `-d`.
    #[arg(
        short = 'd',
        long = "n-depth",
        value_delimiter = ',',
        default_value = "0"
    )]
    pub n_depth: Vec<usize>,
    /// Thread counts to test (comma-separated; default: all CPUs).
    #[arg(short = 't', long = "threads", value_delimiter = ',')]
    pub threads: Vec<usize>,
    /// Repetitions of each test.
    #[arg(short = 'r', long = "repetitions", default_value_t = 5)]
    pub reps: usize,
    /// Most tokens per forward pass while processing a prompt.
    #[arg(short = 'b', long = "batch-size", default_value_t = 512)]
    pub batch_size: usize,
    /// KV cache precision: f16, q8 or f32.
    #[arg(long = "kv-type", default_value = "f16")]
    pub kv_type: String,
    /// Output format.
    #[arg(short = 'o', long = "output", value_enum, default_value_t = Output::Md)]
    pub output: Output,
    /// Seed of the random weights (--shape) and tokens.
    #[arg(long = "seed", default_value_t = 42)]
    pub seed: u64,
    /// Where to run: cpu (default), cuda (= cuda:0) or cuda:N. On a GPU
    /// the forward pass of one sequence is timed (ppN, tgN; no threads).
    #[arg(long = "device", default_value = "cpu", value_parser = crate::args::parse_device)]
    pub device: bitnet_engine::DeviceSpec,
}

fn mib(b: u64) -> String {
    format!("{:.0} MiB", b as f64 / (1u64 << 20) as f64)
}

pub fn run(args: BenchArgs) -> anyhow::Result<()> {
    // Before any weights are built or read: a GPU that cannot be used is
    // one line saying what is missing.
    let gpu = match args.device {
        bitnet_engine::DeviceSpec::Cpu => None,
        bitnet_engine::DeviceSpec::Cuda(n) => {
            crate::bench_gpu::preflight(n)?;
            Some(n)
        }
    };
    if gpu.is_some() && args.n_depth.iter().any(|&d| d > 0) {
        bail!("--n-depth is not supported with --device cuda yet");
    }
    let kv_type = KvType::from_name(&args.kv_type).with_context(|| {
        format!(
            "unknown KV cache type `{}` (expected f16, q8 or f32)",
            args.kv_type
        )
    })?;
    let opts = BenchOptions {
        n_prompt: args.n_prompt.clone(),
        n_gen: args.n_gen.clone(),
        n_depth: args.n_depth.clone(),
        threads: if args.threads.is_empty() {
            vec![bitnet_threads::available_cpus()]
        } else {
            args.threads.clone()
        },
        reps: args.reps,
        n_batch: args.batch_size,
        kv_type,
        seed: args.seed,
    };
    let kernels = Kernels::from_env().context("cannot select kernels")?;
    let bm: BenchModel = match &args.shape {
        Some(name) => {
            let Some(shape) = Shape::from_name(name) else {
                bail!("unknown shape `{name}` (expected one of {})", Shape::NAMES);
            };
            let Some(head) = bench::parse_head_type(&args.head_type) else {
                bail!(
                    "unknown head type `{}` (expected f16, q8_0 or q6_k)",
                    args.head_type
                );
            };
            eprintln!(
                "building {} ({}) with random weights, head {}...",
                shape.name(),
                shape.source(),
                head.name()
            );
            bench::build_shape(shape, head, args.seed, kernels, &opts)?
        }
        None => {
            let hub = Hub::from_env();
            let spec = args.model.as_deref();
            let resolved = resolve::resolve(spec, &hub)
                .with_context(|| format!("cannot find model `{}`", spec.unwrap_or("(default)")))?;
            if let Some(note) = &resolved.note {
                eprintln!("{note}");
            }
            bench::load_location(&resolved.location, kernels)
                .with_context(|| format!("cannot load model `{}`", spec.unwrap_or("(default)")))?
        }
    };
    if let Some(ordinal) = gpu {
        return crate::bench_gpu::run(&bm, ordinal, &opts);
    }
    let first = bench::first_token(&bm.model, opts.threads[0], kv_type)?;
    eprintln!(
        "model: {}\nkernel: {} | load {:.0} ms | first token {:.0} ms | weights {} | RSS {} (peak {})",
        bm.model.description(),
        kernels.isa().name(),
        bm.load_time.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        mib(bm.model.weights().size_bytes() as u64),
        mib(memory::current_rss().unwrap_or(0)),
        mib(memory::peak_rss().unwrap_or(0)),
    );
    let markdown = args.output == Output::Md;
    let width = bench::model_width(&bm.model_type);
    if markdown {
        println!("{}", bench::table_header(width));
    }
    let results: Vec<BenchResult> = bench::run(&bm, &opts, &mut |r| {
        if markdown {
            println!("{}", bench::table_row(r, width));
        }
    })?;
    if !markdown {
        println!("{}", serde_json::to_string_pretty(&results)?);
    }
    eprintln!("peak RSS: {}", mib(memory::peak_rss().unwrap_or(0)));
    Ok(())
}
