//! Throughput benchmarks measured the way `llama-bench` measures them.
//!
//! Each test runs on a fresh (cleared) KV cache and is timed from the first
//! forward pass to the last:
//!
//! * **ppN** (prompt processing): N random tokens in batches of up to
//!   `n_batch` (one batch by default), logits only for the last token;
//!   tokens/s = N / time.
//! * **tgN** (text generation): N random tokens decoded one at a time, each
//!   with logits, at positions 0..N; tokens/s = N / time. No sampling is
//!   timed, as in llama-bench.
//!
//! Before its repetitions each test runs once untimed (a tgN test warms up
//! with a single token, like llama-bench), so page faults and cold caches
//! stay out of the numbers. The result of a test is the mean and sample
//! standard deviation of the per-repetition tokens/s, with llama-bench's JSON
//! field names (`n_prompt`, `n_gen`, `n_threads`, `avg_ts`, `stddev_ts`,
//! `model_size`, `model_n_params`, `samples_ts`, ...) plus what matters for
//! a ternary engine: the kernel level that ran, the process's peak resident
//! memory and its CPU time per token (user + system time of the whole
//! process over each repetition, from `getrusage`, divided by the tokens:
//! the energy proxy; spinning pool threads count, as they burn power).
//!
//! Models come from a file (anything `-m` accepts) or from a built-in shape
//! filled with random weights ([`bitnet_model::random`]); a shape is checked
//! against the memory the machine has *before* it is built, and refused with
//! the sizes when it cannot fit.

use std::time::{Duration, Instant};

use bitnet_kernels::{DenseType, Kernels};
use bitnet_model::random::{MemoryEstimate, RandomOptions, Shape};
use bitnet_model::{BatchToken, KvCache, KvType, LoadOptions, Model, Scratch};
use bitnet_sampling::Rng;
use bitnet_threads::ThreadPool;
use serde::Serialize;

use crate::error::{Error, Result};
use crate::resolve::ModelLocation;

/// What to measure.
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// Prompt lengths (one ppN test each; 0 = none).
    pub n_prompt: Vec<usize>,
    /// Generation lengths (one tgN test each; 0 = none).
    pub n_gen: Vec<usize>,
    /// Context depths: every test runs once per depth, after that many
    /// tokens were put in the cache (untimed), as llama-bench's `-d`.
    pub n_depth: Vec<usize>,
    /// Thread counts (every test runs with each).
    pub threads: Vec<usize>,
    /// Timed repetitions per test.
    pub reps: usize,
    /// Most tokens per forward pass while processing a prompt.
    pub n_batch: usize,
    /// KV cache precision.
    pub kv_type: KvType,
    /// Seed of the random tokens.
    pub seed: u64,
}

impl Default for BenchOptions {
    fn default() -> Self {
        BenchOptions {
            n_prompt: vec![512],
            n_gen: vec![128],
            n_depth: vec![0],
            threads: vec![bitnet_threads::available_cpus()],
            reps: 5,
            n_batch: 512,
            kv_type: KvType::F16,
            seed: 42,
        }
    }
}

impl BenchOptions {
    /// Positions the longest test needs.
    pub fn max_ctx(&self) -> usize {
        let p = self.n_prompt.iter().copied().max().unwrap_or(0);
        let n = self.n_gen.iter().copied().max().unwrap_or(0);
        let d = self.n_depth.iter().copied().max().unwrap_or(0);
        d + p.max(n).max(1)
    }

    fn check(&self) -> Result<()> {
        let bad = |name, reason: &str| {
            Err(Error::InvalidArgument {
                name,
                reason: reason.into(),
            })
        };
        if self.reps == 0 {
            return bad("repetitions", "must be at least 1");
        }
        if self.n_batch == 0 {
            return bad("batch size", "must be at least 1");
        }
        if self.n_depth.is_empty() {
            return bad("depth", "give one or more context depths (0: none)");
        }
        if self.threads.is_empty() || self.threads.contains(&0) {
            return bad("threads", "give one or more thread counts of at least 1");
        }
        if self.n_prompt.iter().chain(&self.n_gen).all(|&n| n == 0) {
            return bad("tests", "nothing to measure: every -p and -n value is 0");
        }
        Ok(())
    }
}

/// One measured test, in llama-bench's JSON vocabulary.
#[derive(Clone, Debug, Serialize)]
pub struct BenchResult {
    /// Model description (architecture, parameters, head format).
    pub model_type: String,
    /// Bytes of the weights as they sit in memory.
    pub model_size: u64,
    /// Parameters.
    pub model_n_params: u64,
    /// Kernel level that ran (`scalar`, `avx2`, `avx512`).
    pub kernel: String,
    /// Threads.
    pub n_threads: usize,
    /// Most tokens per forward pass.
    pub n_batch: usize,
    /// KV cache precision.
    pub type_kv: String,
    /// Prompt tokens (ppN), else 0.
    pub n_prompt: usize,
    /// Generated tokens (tgN), else 0.
    pub n_gen: usize,
    /// Tokens already in the context when the test ran.
    pub n_depth: usize,
    /// `ppN` or `tgN`, with ` @ dD` for a depth D.
    pub test: String,
    /// Mean time per repetition, ns.
    pub avg_ns: u64,
    /// Sample standard deviation of the times, ns.
    pub stddev_ns: u64,
    /// Mean tokens/s over the repetitions.
    pub avg_ts: f64,
    /// Sample standard deviation of tokens/s.
    pub stddev_ts: f64,
    /// Time of each repetition, ns.
    pub samples_ns: Vec<u64>,
    /// Tokens/s of each repetition.
    pub samples_ts: Vec<f64>,
    /// Peak resident memory of the process so far (VmHWM), bytes; 0 where
    /// the OS does not say.
    pub peak_rss_bytes: u64,
    /// CPU time (user + system, all threads of the process) of each
    /// repetition, ns; empty where the OS does not say.
    pub samples_cpu_ns: Vec<u64>,
    /// Mean CPU seconds per token over the repetitions (0 where the OS does
    /// not say).
    pub cpu_s_per_token: f64,
}

/// CPU time (user + system) this process has used so far, all threads;
/// `None` where the OS does not say.
pub fn process_cpu_time() -> Option<Duration> {
    #[cfg(unix)]
    {
        let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
        // SAFETY: getrusage writes a whole `rusage` into the pointer, which
        // is valid for it; on failure the value is not read.
        let usage = unsafe {
            if libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr()) != 0 {
                return None;
            }
            usage.assume_init()
        };
        let time = |t: libc::timeval| {
            Duration::from_secs(t.tv_sec.max(0) as u64)
                + Duration::from_micros(t.tv_usec.max(0) as u64)
        };
        Some(time(usage.ru_utime) + time(usage.ru_stime))
    }
    #[cfg(not(unix))]
    None
}

/// A model ready to benchmark, with what the report says about it.
pub struct BenchModel {
    /// The model.
    pub model: Model,
    /// Description for the `model` column.
    pub model_type: String,
    /// How long building or loading took.
    pub load_time: Duration,
}

use crate::memory::{available_memory, peak_rss};

fn gib(b: usize) -> String {
    format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
}

/// Parses a head type name (`f16`, `q8_0`, `q6_k`, `bf16`, `f32`).
pub fn parse_head_type(s: &str) -> Option<DenseType> {
    match s.trim().to_ascii_lowercase().replace('-', "_").as_str() {
        "f16" => Some(DenseType::F16),
        "q8_0" | "q8" => Some(DenseType::Q8_0),
        "q6_k" | "q6k" => Some(DenseType::Q6K),
        "bf16" => Some(DenseType::BF16),
        "f32" => Some(DenseType::F32),
        _ => None,
    }
}

/// Memory `shape` needs for `opts` and how many matrices may be built at
/// once, or an error with the sizes when the machine does not have it
/// (checked against [`crate::memory::available_memory`] less 10 % and 512 MiB, which the
/// page cache and the rest of the system keep). Building one matrix at a
/// time is tried before refusing.
pub fn check_shape_fits(
    shape: Shape,
    head: DenseType,
    kernels: &Kernels,
    opts: &BenchOptions,
) -> Result<(MemoryEstimate, usize)> {
    let hp = shape.hparams();
    let cpus = bitnet_threads::available_cpus();
    let batch = opts.n_batch.min(opts.max_ctx());
    let layout = kernels.ternary_layout();
    let estimate = |build| {
        MemoryEstimate::new(
            &hp,
            layout,
            head,
            opts.max_ctx(),
            opts.kv_type,
            batch,
            build,
        )
    };
    let Some(avail) = available_memory() else {
        return Ok((estimate(cpus), cpus));
    };
    let usable = (avail as f64 * 0.9) as usize - (512usize << 20).min(avail as usize / 2);
    for build in [cpus, 1] {
        let est = estimate(build);
        if est.peak() <= usable {
            return Ok((est, build));
        }
    }
    let est = estimate(1);
    Err(Error::InvalidArgument {
        name: "shape",
        reason: format!(
            "`{}` needs about {} (ternary weights {} + {} embedding/head {} + KV cache {} + buffers {} + {} while building) \
             but only {} of the {} available here may be used (10 % + 0.5 GiB stay for the system); \
             try a smaller shape, --head-type q6_k, --kv-type q8, or fewer/shorter tests",
            shape.name(),
            gib(est.peak()),
            gib(est.ternary),
            head.name(),
            gib(est.dense),
            gib(est.kv_cache),
            gib(est.scratch + est.norms),
            gib(est.build),
            gib(usable),
            gib(avail as usize),
        ),
    })
}

fn human_bytes(b: u64) -> String {
    if b >= 1 << 30 {
        format!("{:.2} GiB", b as f64 / (1u64 << 30) as f64)
    } else {
        format!("{:.2} MiB", b as f64 / (1u64 << 20) as f64)
    }
}

fn human_params(n: u64) -> String {
    if n >= 1_000_000_000 {
        format!("{:.2}B", n as f64 / 1e9)
    } else {
        format!("{:.0}M", n as f64 / 1e6)
    }
}

fn describe(model: &Model, what: &str) -> String {
    format!(
        "{} {} {} head{}",
        model.hparams().arch.gguf_name(),
        human_params(model.n_params()),
        model.weights().head().ty.name(),
        what
    )
}

/// Builds `shape` with random weights after checking that it fits.
pub fn build_shape(
    shape: Shape,
    head: DenseType,
    seed: u64,
    kernels: &'static Kernels,
    opts: &BenchOptions,
) -> Result<BenchModel> {
    let (_, parallel_matrices) = check_shape_fits(shape, head, kernels, opts)?;
    let t = Instant::now();
    let model = Model::random(
        &shape.hparams(),
        &RandomOptions {
            seed,
            head_type: head,
            kernels,
            parallel_matrices,
        },
    )?;
    let load_time = t.elapsed();
    let model_type = describe(&model, &format!(" (random {})", shape.name()));
    Ok(BenchModel {
        model,
        model_type,
        load_time,
    })
}

/// Loads a model file (GGUF, Hugging Face directory or the built-in demo).
pub fn load_location(location: &ModelLocation, kernels: &'static Kernels) -> Result<BenchModel> {
    let t = Instant::now();
    let load = LoadOptions {
        kernels,
        ..LoadOptions::default()
    };
    // A benchmark needs no tokenizer: GGUF files and directories load the
    // model alone.
    let model = match location {
        ModelLocation::Gguf(path) | ModelLocation::HfDir(path) => Model::load(path, &load)?,
        ModelLocation::Builtin => crate::engine::load_model(location, &load)?.0,
    };
    let load_time = t.elapsed();
    let model_type = describe(&model, "");
    Ok(BenchModel {
        model,
        model_type,
        load_time,
    })
}

/// Mean and sample standard deviation.
pub fn mean_std(v: &[f64]) -> (f64, f64) {
    let n = v.len() as f64;
    let mean = v.iter().sum::<f64>() / n;
    if v.len() < 2 {
        return (mean, 0.0);
    }
    let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / (n - 1.0);
    (mean, var.sqrt())
}

struct Runner<'a> {
    model: &'a Model,
    pool: ThreadPool,
    cache: KvCache,
    scratch: Scratch,
    batch: Vec<BatchToken>,
    rng: Rng,
}

impl Runner<'_> {
    fn token(&mut self) -> u32 {
        (self.rng.next_u64() % self.model.hparams().n_vocab as u64) as u32
    }

    /// Empties the cache and fills it with `depth` tokens (untimed).
    fn fill(&mut self, depth: usize, n_batch: usize) -> Result<()> {
        self.cache.clear();
        self.feed(depth, n_batch)
    }

    /// Processes an `n`-token prompt after what the cache holds.
    fn prompt(&mut self, n: usize, n_batch: usize) -> Result<Duration> {
        let t = Instant::now();
        self.feed(n, n_batch)?;
        Ok(t.elapsed())
    }

    /// Feeds `n` random tokens in batches of at most `n_batch`, logits for
    /// the last one only.
    fn feed(&mut self, n: usize, n_batch: usize) -> Result<()> {
        let mut done = 0;
        while done < n {
            let m = n_batch.min(n - done);
            self.batch.clear();
            for i in 0..m {
                let token = self.token();
                self.batch.push(BatchToken {
                    seq: 0,
                    token,
                    logits: done + i + 1 == n,
                });
            }
            self.model.forward(
                &self.pool,
                &self.batch,
                std::slice::from_mut(&mut self.cache),
                &mut self.scratch,
            )?;
            done += m;
        }
        Ok(())
    }

    /// Decodes `n` tokens one at a time after what the cache holds.
    fn generate(&mut self, n: usize) -> Result<Duration> {
        let t = Instant::now();
        for _ in 0..n {
            let token = self.token();
            let b = [BatchToken {
                seq: 0,
                token,
                logits: true,
            }];
            self.model.forward(
                &self.pool,
                &b,
                std::slice::from_mut(&mut self.cache),
                &mut self.scratch,
            )?;
        }
        Ok(t.elapsed())
    }
}

/// Runs every test of `opts` on `bm` (for each thread count: the pp tests,
/// then the tg tests, as llama-bench orders them), calling `on_result` as
/// each finishes.
pub fn run(
    bm: &BenchModel,
    opts: &BenchOptions,
    on_result: &mut dyn FnMut(&BenchResult),
) -> Result<Vec<BenchResult>> {
    opts.check()?;
    let model = &bm.model;
    let mut cache = Some(model.new_cache(opts.max_ctx(), opts.kv_type));
    let mut scratch = Some(Scratch::new());
    let mut results = Vec::new();
    for &threads in &opts.threads {
        let mut r = Runner {
            model,
            pool: ThreadPool::new(threads),
            cache: cache
                .take()
                .expect("cache is returned after each thread count"),
            scratch: scratch
                .take()
                .expect("scratch is returned after each thread count"),
            batch: Vec::with_capacity(opts.n_batch),
            rng: Rng::new(opts.seed),
        };
        let tests = opts
            .n_prompt
            .iter()
            .filter(|&&n| n > 0)
            .map(|&n| (n, 0))
            .chain(opts.n_gen.iter().filter(|&&n| n > 0).map(|&n| (0, n)));
        let tests: Vec<(usize, usize, usize)> = tests
            .flat_map(|(p, g)| opts.n_depth.iter().map(move |&d| (p, g, d)))
            .collect();
        for (n_prompt, n_gen, depth) in tests {
            // Warm-up, untimed.
            r.fill(depth, opts.n_batch)?;
            if n_prompt > 0 {
                r.prompt(n_prompt, opts.n_batch)?;
            } else {
                r.generate(1)?;
            }
            let mut samples_ns = Vec::with_capacity(opts.reps);
            let mut samples_cpu_ns = Vec::with_capacity(opts.reps);
            for _ in 0..opts.reps {
                r.fill(depth, opts.n_batch)?;
                let cpu = process_cpu_time();
                let t = if n_prompt > 0 {
                    r.prompt(n_prompt, opts.n_batch)?
                } else {
                    r.generate(n_gen)?
                };
                samples_ns.push(t.as_nanos().max(1) as u64);
                if let (Some(a), Some(b)) = (cpu, process_cpu_time()) {
                    samples_cpu_ns.push(b.saturating_sub(a).as_nanos() as u64);
                }
            }
            if samples_cpu_ns.len() != samples_ns.len() {
                samples_cpu_ns.clear();
            }
            let n_tokens = (n_prompt + n_gen) as f64;
            let cpu_s_per_token = if samples_cpu_ns.is_empty() {
                0.0
            } else {
                samples_cpu_ns.iter().sum::<u64>() as f64 / samples_cpu_ns.len() as f64 / n_tokens
                    * 1e-9
            };
            let samples_ts: Vec<f64> = samples_ns
                .iter()
                .map(|&ns| n_tokens * 1e9 / ns as f64)
                .collect();
            let (avg_ts, stddev_ts) = mean_std(&samples_ts);
            let ns: Vec<f64> = samples_ns.iter().map(|&v| v as f64).collect();
            let (avg_ns, stddev_ns) = mean_std(&ns);
            let result = BenchResult {
                model_type: bm.model_type.clone(),
                model_size: model.weights().size_bytes() as u64,
                model_n_params: model.n_params(),
                kernel: model.kernels().isa().name().to_string(),
                n_threads: threads,
                n_batch: opts.n_batch,
                type_kv: opts.kv_type.name().to_string(),
                n_prompt,
                n_gen,
                n_depth: depth,
                test: test_name(n_prompt, n_gen, depth),
                avg_ns: avg_ns as u64,
                stddev_ns: stddev_ns as u64,
                avg_ts,
                stddev_ts,
                samples_ns,
                samples_ts,
                peak_rss_bytes: peak_rss().unwrap_or(0),
                samples_cpu_ns,
                cpu_s_per_token,
            };
            on_result(&result);
            results.push(result);
        }
        cache = Some(r.cache);
        scratch = Some(r.scratch);
    }
    Ok(results)
}

/// llama-bench's name of a test: `pp512`, `tg128`, `tg128 @ d4096`.
pub fn test_name(n_prompt: usize, n_gen: usize, depth: usize) -> String {
    let base = if n_prompt > 0 {
        format!("pp{n_prompt}")
    } else {
        format!("tg{n_gen}")
    };
    if depth > 0 {
        format!("{base} @ d{depth}")
    } else {
        base
    }
}

/// Times one single-token forward pass from an empty cache: with a
/// model that was just loaded, load time plus this is "time to first
/// token" (it includes the page faults of a lazily mapped file).
pub fn first_token(model: &Model, threads: usize, kv: KvType) -> Result<Duration> {
    let pool = ThreadPool::new(threads);
    let mut cache = model.new_cache(1, kv);
    let mut scratch = Scratch::new();
    let t = Instant::now();
    model.forward(
        &pool,
        &[BatchToken {
            seq: 0,
            token: 0,
            logits: true,
        }],
        std::slice::from_mut(&mut cache),
        &mut scratch,
    )?;
    Ok(t.elapsed())
}

/// Width of the model column for a model description: llama-bench's 40, or
/// more for a longer description (the built-in shapes' run to 43).
pub fn model_width(model_type: &str) -> usize {
    model_type.chars().count().max(40)
}

/// The markdown table's header (llama-bench's columns, then CPU seconds per
/// token), with a model column `model_width` wide (see [`model_width`]).
pub fn table_header(model_width: usize) -> String {
    format!(
        "| {:<mw$} | {:>10} | {:>8} | {:<14} | {:>7} | {:>13} | {:>20} | {:>9} |\n|{:-<dw$}|{:->12}|{:->10}|{:-<16}|{:->9}|{:->15}|{:->22}|{:->11}|",
        "model",
        "size",
        "params",
        "backend",
        "threads",
        "test",
        "t/s",
        "CPU s/tok",
        ":",
        ":",
        ":",
        ":",
        ":",
        ":",
        ":",
        ":",
        mw = model_width,
        dw = model_width + 2,
    )
}

/// One markdown row (model column `model_width` wide).
pub fn table_row(r: &BenchResult, model_width: usize) -> String {
    format!(
        "| {:<mw$} | {:>10} | {:>8} | {:<14} | {:>7} | {:>13} | {:>20} | {:>9} |",
        r.model_type,
        human_bytes(r.model_size),
        human_params(r.model_n_params),
        format!("CPU ({})", r.kernel),
        r.n_threads,
        r.test,
        format!("{:.2} ± {:.2}", r.avg_ts, r.stddev_ts),
        if r.samples_cpu_ns.is_empty() {
            "-".to_string()
        } else if r.cpu_s_per_token >= 1e-3 {
            format!("{:.4}", r.cpu_s_per_token)
        } else {
            format!("{:.2e}", r.cpu_s_per_token)
        },
        mw = model_width,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn demo_model_json_has_llama_bench_fields() {
        let kernels = Kernels::from_env().unwrap();
        let bm = load_location(&ModelLocation::Builtin, kernels).unwrap();
        let opts = BenchOptions {
            n_prompt: vec![8],
            n_gen: vec![4],
            threads: vec![1, 2],
            reps: 2,
            ..BenchOptions::default()
        };
        let mut seen = 0;
        let results = run(&bm, &opts, &mut |_| seen += 1).unwrap();
        assert_eq!(seen, 4);
        let json = serde_json::to_value(&results).unwrap();
        let arr = json.as_array().unwrap();
        assert_eq!(arr.len(), 4);
        for (o, (test, threads)) in arr
            .iter()
            .zip([("pp8", 1), ("tg4", 1), ("pp8", 2), ("tg4", 2)])
        {
            assert_eq!(o["test"], test);
            assert_eq!(o["n_threads"], threads);
            for key in [
                "n_prompt",
                "n_gen",
                "model_size",
                "model_n_params",
                "avg_ns",
                "stddev_ns",
                "peak_rss_bytes",
            ] {
                assert!(o[key].is_u64(), "{key}: {}", o[key]);
            }
            for key in ["avg_ts", "stddev_ts"] {
                assert!(o[key].is_f64(), "{key}");
            }
            assert!(o["avg_ts"].as_f64().unwrap() > 0.0);
            assert!(o["model_size"].as_u64().unwrap() > 0);
            assert!(o["model_n_params"].as_u64().unwrap() > 4_000_000);
            assert_eq!(o["samples_ts"].as_array().unwrap().len(), 2);
            assert!(o["kernel"].is_string() && o["model_type"].is_string());
        }
        assert_eq!(arr[0]["n_prompt"], 8);
        assert_eq!(arr[1]["n_gen"], 4);
        assert!(table_row(&results[0], 40).contains("pp8"));
        // CPU time per token: one sample per repetition, and the mean is
        // their mean over the tokens. (Bounds against the wall time are
        // checked in a process of its own, `cli/tests/bench.rs`: here other
        // tests run in the same process.)
        for (o, r) in arr.iter().zip(&results) {
            let samples = o["samples_cpu_ns"].as_array().unwrap();
            assert_eq!(samples.len(), 2);
            assert!(samples.iter().all(|s| s.as_u64().is_some_and(|n| n > 0)));
            let n = (r.n_prompt + r.n_gen) as f64;
            let want = r.samples_cpu_ns.iter().sum::<u64>() as f64 / 2.0 / n * 1e-9;
            let got = o["cpu_s_per_token"].as_f64().unwrap();
            assert!((got - want).abs() <= 1e-12 + 1e-9 * want, "{got} vs {want}");
        }
    }

    /// With `-d`, every test runs once per depth after that many tokens of
    /// context, and is named as llama-bench names it.
    #[test]
    fn depth_fills_the_cache_before_each_test() {
        let kernels = Kernels::from_env().unwrap();
        let bm = load_location(&ModelLocation::Builtin, kernels).unwrap();
        let opts = BenchOptions {
            n_prompt: vec![6],
            n_gen: vec![3],
            n_depth: vec![0, 5],
            threads: vec![1],
            reps: 1,
            ..BenchOptions::default()
        };
        assert_eq!(opts.max_ctx(), 11);
        let results = run(&bm, &opts, &mut |_| {}).unwrap();
        let names: Vec<(&str, usize)> = results
            .iter()
            .map(|r| (r.test.as_str(), r.n_depth))
            .collect();
        assert_eq!(
            names,
            [("pp6", 0), ("pp6 @ d5", 5), ("tg3", 0), ("tg3 @ d5", 5)]
        );
        let mut r = Runner {
            model: &bm.model,
            pool: ThreadPool::new(1),
            cache: bm.model.new_cache(opts.max_ctx(), opts.kv_type),
            scratch: Scratch::new(),
            batch: Vec::new(),
            rng: Rng::new(1),
        };
        for (depth, prompt, n_gen) in [(5, 0, 3), (5, 6, 0), (0, 6, 0)] {
            r.fill(depth, 2).unwrap();
            assert_eq!(r.cache.len(), depth);
            if prompt > 0 {
                r.prompt(prompt, 4).unwrap();
            } else {
                r.generate(n_gen).unwrap();
            }
            assert_eq!(r.cache.len(), depth + prompt + n_gen);
        }
        let no_depth = BenchOptions {
            n_depth: vec![],
            ..opts
        };
        let err = run(&bm, &no_depth, &mut |_| {}).unwrap_err().to_string();
        assert!(err.contains("depth"), "{err}");
    }

    /// The table stays aligned when a model description is longer than
    /// llama-bench's 40-character column (the 2B-4T shape with a Q6_K head
    /// is 42).
    #[test]
    fn long_model_names_keep_the_table_aligned() {
        let long = "bitnet-b1.58 2.41B Q6_K head (random 2b4t)";
        let r = BenchResult {
            model_type: long.into(),
            model_size: 758 << 20,
            model_n_params: 2_410_000_000,
            kernel: "avx512".into(),
            n_threads: 2,
            n_batch: 512,
            type_kv: "f16".into(),
            n_prompt: 0,
            n_gen: 64,
            n_depth: 4096,
            test: "tg64 @ d4096".into(),
            avg_ns: 1,
            stddev_ns: 0,
            avg_ts: 33.25,
            stddev_ts: 1.5,
            samples_ns: vec![1],
            samples_ts: vec![33.25],
            peak_rss_bytes: 0,
            samples_cpu_ns: vec![3_900_000_000],
            cpu_s_per_token: 0.0609,
        };
        let w = model_width(long);
        assert_eq!(w, 42);
        let header = table_header(w);
        let row = table_row(&r, w);
        let widths: Vec<usize> = header
            .lines()
            .chain([row.as_str()])
            .map(|l| l.chars().count())
            .collect();
        assert!(widths.iter().all(|&n| n == widths[0]), "{header}\n{row}");
        // Every column boundary in the same place.
        let bars = |l: &str| -> Vec<usize> {
            l.chars()
                .enumerate()
                .filter(|&(_, c)| c == '|')
                .map(|(i, _)| i)
                .collect()
        };
        assert_eq!(bars(&row), bars(header.lines().next().unwrap()));
        assert!(row.contains(long) && row.contains("0.0609"), "{row}");
    }

    #[test]
    fn huge_shapes_are_refused_with_sizes() {
        let opts = BenchOptions::default();
        if let Some(avail) = available_memory()
            && avail < 100 << 30
        {
            let err = check_shape_fits(
                Shape::B100,
                DenseType::F16,
                Kernels::best(),
                &BenchOptions {
                    n_prompt: vec![4096],
                    ..opts
                },
            )
            .unwrap_err()
            .to_string();
            assert!(
                err.contains("100b") && err.contains("GiB") && err.contains("ternary"),
                "{err}"
            );
        }
        assert!(parse_head_type("Q6_K") == Some(DenseType::Q6K));
    }
}
