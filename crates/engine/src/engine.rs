//! A loaded model with its tokenizer and threads, and the single-sequence
//! operations on it: generation and perplexity.

use std::path::Path;
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use bitnet_cuda::DeviceSpec;
use bitnet_gguf::GgufFile;
use bitnet_kernels::Kernels;
use bitnet_model::{BatchToken, KvType, LoadOptions, Model, Scratch};
use bitnet_threads::ThreadPool;
use bitnet_tokenizer::{ChatMessage, GgufVocab, Tokenizer};

use crate::error::{Error, Result};
use crate::grammar::{Grammar, GrammarSpec, Grammars};
use crate::resolve::ModelLocation;
use crate::sequence::{GenerationParams, SequenceState, StopReason};

/// How to run a model.
#[derive(Clone, Debug)]
pub struct EngineOptions {
    /// Threads (0 = all CPUs).
    pub threads: usize,
    /// Context size in tokens (`None` = the model's training context, at most
    /// 4096).
    pub n_ctx: Option<usize>,
    /// KV cache precision.
    pub kv_type: KvType,
    /// Tokens per forward pass when processing a prompt.
    pub n_batch: usize,
    /// Kernels (`None` = `BITNET_KERNEL` or the best this CPU has).
    pub kernels: Option<&'static Kernels>,
    /// Where the forward pass runs (`--device`). A GPU is checked before
    /// the model is read: without a driver, a GPU or NVRTC, or (in this
    /// build) a GPU forward pass, loading fails with one line saying which.
    pub device: DeviceSpec,
}

impl Default for EngineOptions {
    fn default() -> Self {
        EngineOptions {
            threads: 0,
            n_ctx: None,
            kv_type: KvType::F16,
            n_batch: 512,
            kernels: None,
            device: DeviceSpec::Cpu,
        }
    }
}

/// Wall-clock timings of a generation, the way llama.cpp reports them.
#[derive(Clone, Debug, Default, serde::Serialize)]
pub struct Timings {
    /// Prompt tokens processed.
    pub prompt_n: usize,
    /// Milliseconds spent on the prompt.
    pub prompt_ms: f64,
    /// Prompt tokens per second.
    pub prompt_per_second: f64,
    /// Tokens generated.
    pub predicted_n: usize,
    /// Milliseconds spent generating.
    pub predicted_ms: f64,
    /// Generated tokens per second.
    pub predicted_per_second: f64,
}

/// The result of [`Engine::generate`].
#[derive(Clone, Debug)]
pub struct Generation {
    /// The prompt's token ids.
    pub prompt_tokens: Vec<u32>,
    /// The generated ids (without end tokens).
    pub tokens: Vec<u32>,
    /// The generated text.
    pub text: String,
    /// Why it stopped.
    pub stop_reason: StopReason,
    /// Logits at the last prompt position, if asked for.
    pub prompt_logits: Option<Vec<f32>>,
    /// Timings.
    pub timings: Timings,
}

/// The result of [`Engine::perplexity`].
#[derive(Clone, Debug, serde::Serialize)]
pub struct Perplexity {
    /// exp(mean negative log-likelihood).
    pub perplexity: f64,
    /// Tokens scored.
    pub n_tokens: usize,
    /// Windows evaluated.
    pub n_chunks: usize,
    /// Window size (BOS + ctx−1 tokens).
    pub n_ctx: usize,
    /// Mean negative log-likelihood in nats.
    pub mean_nll: f64,
    /// Sum of the negative log-likelihoods of each window.
    pub chunk_nll: Vec<f64>,
}

/// A conversation's KV cache, kept between calls so that a prompt which
/// extends the previous one (the next chat turn) only processes what is new.
pub struct Session {
    cache: bitnet_model::KvCache,
    scratch: Scratch,
    /// The tokens whose keys and values are in the cache.
    tokens: Vec<u32>,
}

impl Session {
    /// Tokens currently in the cache.
    pub fn tokens(&self) -> &[u32] {
        &self.tokens
    }

    /// Forgets everything.
    pub fn clear(&mut self) {
        self.cache.clear();
        self.tokens.clear();
    }
}

/// A model ready to run.
pub struct Engine {
    model: Arc<Model>,
    tokenizer: Tokenizer,
    pool: ThreadPool,
    opts: EngineOptions,
    n_ctx: usize,
    name: String,
    /// Built the first time a grammar is compiled.
    grammars: OnceLock<std::result::Result<Grammars, String>>,
}

/// Builds the tokenizer description from GGUF metadata.
pub fn gguf_vocab(file: &GgufFile) -> Result<GgufVocab> {
    let md = file.metadata();
    let model = md
        .get_str("tokenizer.ggml.model")?
        .ok_or_else(|| Error::ModelSpec {
            spec: file
                .path()
                .map(|p| p.display().to_string())
                .unwrap_or_default(),
            reason: "GGUF has no tokenizer (tokenizer.ggml.model missing)".into(),
        })?
        .to_string();
    let strings = |k: &str| -> Result<Option<Vec<String>>> {
        Ok(md
            .get_str_array(k)?
            .map(|v| v.into_iter().map(str::to_string).collect()))
    };
    let id =
        |k: &str| -> Result<Option<u32>> { Ok(md.get_u64(k)?.and_then(|v| u32::try_from(v).ok())) };
    Ok(GgufVocab {
        model,
        pre: md.get_str("tokenizer.ggml.pre")?.map(str::to_string),
        tokens: strings("tokenizer.ggml.tokens")?.unwrap_or_default(),
        token_types: md
            .get_i64_array("tokenizer.ggml.token_type")?
            .map(|v| v.into_iter().map(|x| x as i32).collect()),
        merges: strings("tokenizer.ggml.merges")?,
        scores: md.get_f32_array("tokenizer.ggml.scores")?,
        bos_id: id("tokenizer.ggml.bos_token_id")?,
        eos_id: id("tokenizer.ggml.eos_token_id")?,
        eot_id: id("tokenizer.ggml.eot_token_id")?,
        unk_id: id("tokenizer.ggml.unknown_token_id")?,
        pad_id: id("tokenizer.ggml.padding_token_id")?,
        add_bos: md.get_bool("tokenizer.ggml.add_bos_token")?,
        add_space_prefix: md.get_bool("tokenizer.ggml.add_space_prefix")?,
        chat_template: md.get_str("tokenizer.chat_template")?.map(str::to_string),
    })
}

/// Loads the model and tokenizer at `location`.
pub fn load_model(
    location: &ModelLocation,
    load: &LoadOptions,
) -> Result<(Model, Tokenizer, String)> {
    Ok(match location {
        // The tokenizer (a 128k-entry BPE takes a few hundred ms to build)
        // is built on its own thread while the weights are repacked.
        ModelLocation::Gguf(path) => {
            let file = Arc::new(GgufFile::open(path)?);
            let vocab = gguf_vocab(&file)?;
            let (model, tokenizer) = std::thread::scope(|s| {
                let tokenizer = s.spawn(|| Tokenizer::from_gguf_vocab(&vocab));
                let model = Model::from_gguf(Arc::clone(&file), load);
                (model, tokenizer.join())
            });
            let tokenizer = tokenizer.unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            (model?, tokenizer, path.display().to_string())
        }
        ModelLocation::HfDir(dir) => {
            let (model, tokenizer) = std::thread::scope(|s| {
                let tokenizer = s.spawn(|| Tokenizer::from_hf_dir(dir));
                let model = Model::load(dir, load);
                (model, tokenizer.join())
            });
            let tokenizer = tokenizer.unwrap_or_else(|p| std::panic::resume_unwind(p))?;
            (model?, tokenizer, dir.display().to_string())
        }
        ModelLocation::Builtin => {
            let tokenizer = crate::builtin::tokenizer()?;
            let model = Model::from_hf(crate::builtin::checkpoint(), load)?;
            (model, tokenizer, crate::builtin::NAME.to_string())
        }
    })
}

/// The most threads a pool may have (more is a typing mistake, and would
/// only exhaust the OS's thread limit).
pub const MAX_THREADS: usize = 1024;

impl Engine {
    /// Loads the model at `location`.
    pub fn load(location: &ModelLocation, opts: EngineOptions) -> Result<Engine> {
        check_device(opts.device)?;
        let kernels = match opts.kernels {
            Some(k) => k,
            None => Kernels::from_env()?,
        };
        let load = LoadOptions {
            kernels,
            ..LoadOptions::default()
        };
        let (model, tokenizer, name) = load_model(location, &load)?;
        Engine::new(model, tokenizer, name, opts)
    }

    /// Wraps an already loaded model.
    pub fn new(
        model: Model,
        tokenizer: Tokenizer,
        name: String,
        opts: EngineOptions,
    ) -> Result<Engine> {
        check_device(opts.device)?;
        let n_ctx = opts.n_ctx.unwrap_or(model.hparams().n_ctx_train.min(4096));
        if n_ctx == 0 {
            return Err(Error::InvalidArgument {
                name: "context size",
                reason: "must be at least 1".into(),
            });
        }
        if opts.n_batch == 0 {
            return Err(Error::InvalidArgument {
                name: "batch size",
                reason: "must be at least 1".into(),
            });
        }
        if opts.threads > MAX_THREADS {
            return Err(Error::InvalidArgument {
                name: "thread count",
                reason: format!("{} is more than the {MAX_THREADS} supported", opts.threads),
            });
        }
        crate::memory::check_kv_caches(&model, n_ctx, opts.kv_type, 1)?;
        let pool = ThreadPool::try_new(opts.threads).map_err(|e| Error::InvalidArgument {
            name: "thread count",
            reason: format!("could not start {} threads: {e}", opts.threads),
        })?;
        Ok(Engine {
            model: Arc::new(model),
            tokenizer,
            pool,
            n_ctx,
            name,
            opts,
            grammars: OnceLock::new(),
        })
    }

    /// Loads a GGUF file or HF directory directly (tests, tools).
    pub fn load_path(path: &Path, opts: EngineOptions) -> Result<Engine> {
        let location = if path.is_dir() {
            ModelLocation::HfDir(path.to_path_buf())
        } else {
            ModelLocation::Gguf(path.to_path_buf())
        };
        Engine::load(&location, opts)
    }

    /// Checks that `count` KV caches of the engine's context size fit in
    /// memory (a server's parallel sequences), else an error with the sizes.
    pub fn check_caches_fit(&self, count: usize) -> Result<()> {
        crate::memory::check_kv_caches(&self.model, self.n_ctx, self.opts.kv_type, count)
    }

    /// The model.
    pub fn model(&self) -> &Arc<Model> {
        &self.model
    }

    /// The tokenizer.
    pub fn tokenizer(&self) -> &Tokenizer {
        &self.tokenizer
    }

    /// The thread pool.
    pub fn pool(&self) -> &ThreadPool {
        &self.pool
    }

    /// Context size.
    pub fn n_ctx(&self) -> usize {
        self.n_ctx
    }

    /// The options.
    pub fn options(&self) -> &EngineOptions {
        &self.opts
    }

    /// Compiles a grammar for this model's vocabulary (the token trie is
    /// built on first use and kept).
    pub fn compile_grammar(&self, spec: &GrammarSpec) -> Result<Grammar> {
        let n_vocab = self.model.hparams().n_vocab;
        let grammars = self
            .grammars
            .get_or_init(|| {
                Grammars::new(&self.tokenizer, n_vocab).map_err(|e| match e {
                    Error::Grammar(message) => message,
                    e => e.to_string(),
                })
            })
            .as_ref()
            .map_err(|e| Error::Grammar(e.clone()))?;
        grammars.compile(spec)
    }

    /// A name for the model (path or built-in).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Tokenises a plain-text prompt, with BOS if the model wants one and
    /// the text does not already start with it (as a rendered chat prompt
    /// does).
    pub fn tokenize(&self, text: &str) -> Result<Vec<u32>> {
        let mut ids = self.tokenizer.encode(text, false, true)?;
        if let Some(bos) = self.tokenizer.bos_id()
            && self.tokenizer.add_bos()
            && ids.first() != Some(&bos)
        {
            ids.insert(0, bos);
        }
        Ok(ids)
    }

    /// Renders messages with the model's chat template.
    pub fn render_chat(
        &self,
        messages: &[ChatMessage],
        add_generation_prompt: bool,
    ) -> Result<String> {
        let template = self
            .tokenizer
            .chat_template()
            .ok_or(Error::NoChatTemplate)?;
        Ok(template.render(messages, add_generation_prompt)?)
    }

    /// Tokenises a rendered chat prompt (the template writes BOS itself
    /// when the model uses one; see [`Engine::tokenize`]).
    pub fn tokenize_chat(&self, rendered: &str) -> Result<Vec<u32>> {
        self.tokenize(rendered)
    }

    /// Runs a prompt through a fresh cache in batches; returns the logits at
    /// its last position.
    pub(crate) fn prefill(
        &self,
        prompt: &[u32],
        cache: &mut bitnet_model::KvCache,
        scratch: &mut Scratch,
    ) -> Result<Vec<f32>> {
        let mut logits = Vec::new();
        for (i, chunk) in prompt.chunks(self.opts.n_batch).enumerate() {
            let last_chunk = (i + 1) * self.opts.n_batch >= prompt.len();
            let batch: Vec<BatchToken> = chunk
                .iter()
                .enumerate()
                .map(|(j, &token)| BatchToken {
                    seq: 0,
                    token,
                    logits: last_chunk && j + 1 == chunk.len(),
                })
                .collect();
            let out =
                self.model
                    .forward(&self.pool, &batch, std::slice::from_mut(cache), scratch)?;
            if last_chunk {
                logits = out.to_vec();
            }
        }
        Ok(logits)
    }

    /// A fresh session with a cache of the engine's context size.
    pub fn new_session(&self) -> Session {
        Session {
            cache: self.model.new_cache(self.n_ctx, self.opts.kv_type),
            scratch: Scratch::new(),
            tokens: Vec::new(),
        }
    }

    /// Generates from `prompt` (token ids) in a fresh cache, calling
    /// `on_text` with each piece of text as it becomes final; `on_text`
    /// returns `false` to stop.
    pub fn generate(
        &self,
        prompt: &[u32],
        params: &GenerationParams,
        keep_prompt_logits: bool,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let mut session = self.new_session();
        self.generate_in(&mut session, prompt, params, keep_prompt_logits, on_text)
    }

    /// [`Engine::generate`] in `session`: the part of `prompt` that is
    /// already in the session's cache is not processed again.
    pub fn generate_in(
        &self,
        session: &mut Session,
        prompt: &[u32],
        params: &GenerationParams,
        keep_prompt_logits: bool,
        on_text: &mut dyn FnMut(&str) -> bool,
    ) -> Result<Generation> {
        let prompt: Vec<u32> = if prompt.is_empty() {
            vec![self.tokenizer.bos_id().ok_or(Error::EmptyPrompt)?]
        } else {
            prompt.to_vec()
        };
        if prompt.len() > self.n_ctx {
            return Err(Error::PromptTooLong {
                n_tokens: prompt.len(),
                n_ctx: self.n_ctx,
            });
        }
        // Reuse the common prefix, but always process at least one token so
        // there are logits to sample from.
        let reuse = session
            .tokens
            .iter()
            .zip(&prompt)
            .take_while(|(a, b)| a == b)
            .count()
            .min(prompt.len() - 1);
        session.cache.truncate(reuse);
        session.tokens.truncate(reuse);
        let Session {
            cache,
            scratch,
            tokens,
        } = session;
        let t0 = Instant::now();
        let mut logits = self.prefill(&prompt[reuse..], cache, scratch)?;
        tokens.extend_from_slice(&prompt[reuse..]);
        let prompt_ms = t0.elapsed().as_secs_f64() * 1e3;
        let prompt_logits = keep_prompt_logits.then(|| logits.clone());
        let mut state = SequenceState::new(&self.tokenizer, &prompt, params.clone());
        let t1 = Instant::now();
        let mut n_forward = 0usize;
        let reason = loop {
            let step = state.step(&logits, cache.len() < self.n_ctx);
            if !step.text.is_empty() && !on_text(&step.text) {
                state.cancel();
                break StopReason::Cancelled;
            }
            if let Some(reason) = step.finished {
                break reason;
            }
            let token = step.token.expect("an unfinished step has a token");
            let batch = [BatchToken {
                seq: 0,
                token,
                logits: true,
            }];
            logits.clear();
            logits.extend_from_slice(self.model.forward(
                &self.pool,
                &batch,
                std::slice::from_mut(cache),
                scratch,
            )?);
            tokens.push(token);
            n_forward += 1;
        };
        let predicted_ms = t1.elapsed().as_secs_f64() * 1e3;
        let per_second = |n: usize, ms: f64| if ms > 0.0 { n as f64 * 1e3 / ms } else { 0.0 };
        let generated = state.generated().to_vec();
        let processed = prompt.len() - reuse;
        Ok(Generation {
            timings: Timings {
                prompt_n: processed,
                prompt_ms,
                prompt_per_second: per_second(processed, prompt_ms),
                predicted_n: generated.len(),
                predicted_ms,
                predicted_per_second: per_second(n_forward.max(generated.len()), predicted_ms),
            },
            prompt_tokens: prompt,
            text: state.text().to_string(),
            tokens: generated,
            stop_reason: reason,
            prompt_logits,
        })
    }

    /// One forward pass of `tokens` (one sequence, appended to `cache`),
    /// with the logits of every position.
    fn forward_scoring<'s>(
        &self,
        tokens: &[u32],
        cache: &mut bitnet_model::KvCache,
        scratch: &'s mut Scratch,
    ) -> Result<&'s [f32]> {
        let batch: Vec<BatchToken> = tokens
            .iter()
            .map(|&token| BatchToken {
                seq: 0,
                token,
                logits: true,
            })
            .collect();
        Ok(self
            .model
            .forward(&self.pool, &batch, std::slice::from_mut(cache), scratch)?)
    }

    /// The logits at every position of `ids`, run in a fresh cache:
    /// `ids.len() × n_vocab` values, row-major.
    pub fn logits(&self, ids: &[u32]) -> Result<Vec<f32>> {
        if ids.is_empty() {
            return Err(Error::InvalidArgument {
                name: "token ids",
                reason: "need at least one token".into(),
            });
        }
        let n_vocab = self.model.hparams().n_vocab;
        if let Some(bad) = ids.iter().find(|&&id| id as usize >= n_vocab) {
            return Err(Error::InvalidArgument {
                name: "token ids",
                reason: format!("{bad} is out of range (vocabulary size {n_vocab})"),
            });
        }
        if ids.len() > self.n_ctx {
            return Err(Error::PromptTooLong {
                n_tokens: ids.len(),
                n_ctx: self.n_ctx,
            });
        }
        let mut cache = self.model.new_cache(ids.len(), self.opts.kv_type);
        let mut scratch = Scratch::new();
        let mut out = Vec::with_capacity(ids.len() * n_vocab);
        for chunk in ids.chunks(self.opts.n_batch) {
            out.extend_from_slice(self.forward_scoring(chunk, &mut cache, &mut scratch)?);
        }
        Ok(out)
    }

    /// Perplexity of `text` in llama-perplexity's manner: the text is
    /// tokenised without special tokens and cut into consecutive windows of
    /// `n_ctx − 1` tokens; each window runs as `[BOS] + window` in a fresh
    /// cache and every window token is scored (the first one from BOS alone).
    pub fn perplexity(&self, text: &str, n_ctx: usize) -> Result<Perplexity> {
        self.perplexity_with(text, n_ctx, &mut |_| true)
    }

    /// [`Engine::perplexity`], calling `progress` after every window with
    /// the windows done, the windows in all and the running estimate; it
    /// returns `false` to stop ([`Error::Cancelled`]).
    pub fn perplexity_with(
        &self,
        text: &str,
        n_ctx: usize,
        progress: &mut dyn FnMut(PerplexityProgress) -> bool,
    ) -> Result<Perplexity> {
        let bos = self.tokenizer.bos_id().ok_or(Error::InvalidArgument {
            name: "model",
            reason: "perplexity needs a BOS token to start each window".into(),
        })?;
        if n_ctx < 2 {
            return Err(Error::InvalidArgument {
                name: "context size",
                reason: "perplexity needs at least 2 positions".into(),
            });
        }
        let tokens = self.tokenizer.encode(text, false, false)?;
        if tokens.is_empty() {
            return Err(Error::InvalidArgument {
                name: "text",
                reason: "no tokens to score".into(),
            });
        }
        let vocab = self.model.hparams().n_vocab;
        crate::memory::check_kv_caches(&self.model, n_ctx, self.opts.kv_type, 1)?;
        let mut cache = self.model.new_cache(n_ctx, self.opts.kv_type);
        let mut scratch = Scratch::new();
        let mut chunk_nll = Vec::new();
        for window in tokens.chunks(n_ctx - 1) {
            cache.clear();
            let mut inputs = Vec::with_capacity(window.len() + 1);
            inputs.push(bos);
            inputs.extend_from_slice(&window[..window.len()]);
            // Position j predicts window[j]; the last input predicts nothing.
            let mut nll = 0.0f64;
            let mut start = 0;
            while start < window.len() {
                let end = (start + self.opts.n_batch).min(window.len());
                let logits = self.forward_scoring(&inputs[start..end], &mut cache, &mut scratch)?;
                for (i, row) in logits.chunks_exact(vocab).enumerate() {
                    nll += negative_log_likelihood(row, window[start + i]);
                }
                start = end;
            }
            chunk_nll.push(nll);
            let scored: usize = tokens.len().min(chunk_nll.len() * (n_ctx - 1));
            let running = (chunk_nll.iter().sum::<f64>() / scored as f64).exp();
            let go_on = progress(PerplexityProgress {
                windows_done: chunk_nll.len(),
                windows: tokens.len().div_ceil(n_ctx - 1),
                perplexity: running,
            });
            if !go_on {
                return Err(Error::Cancelled);
            }
        }
        let total: f64 = chunk_nll.iter().sum();
        let mean = total / tokens.len() as f64;
        Ok(Perplexity {
            perplexity: mean.exp(),
            n_tokens: tokens.len(),
            n_chunks: chunk_nll.len(),
            n_ctx,
            mean_nll: mean,
            chunk_nll,
        })
    }
}

/// Where a perplexity computation is (see [`Engine::perplexity_with`]).
#[derive(Clone, Copy, Debug)]
pub struct PerplexityProgress {
    /// Windows evaluated.
    pub windows_done: usize,
    /// Windows in all.
    pub windows: usize,
    /// The perplexity over the windows done.
    pub perplexity: f64,
}

/// `−log softmax(logits)[target]`, computed in f64.
pub fn negative_log_likelihood(logits: &[f32], target: u32) -> f64 {
    let max = logits.iter().fold(f32::NEG_INFINITY, |m, &v| m.max(v));
    let sum: f64 = logits.iter().map(|&v| f64::from(v - max).exp()).sum();
    f64::from(max) + sum.ln() - f64::from(logits[target as usize])
}

/// Refuses a device this build cannot run a model on, with one line: the
/// CPU always runs; a GPU goes through [`bitnet_cuda::open_for_model`],
/// which names the missing driver, GPU or NVRTC, or else (on a machine that
/// has all three) that this build has no GPU forward pass yet.
fn check_device(device: DeviceSpec) -> Result<()> {
    match bitnet_cuda::device_error(device) {
        None => Ok(()),
        Some(e) => Err(e.into()),
    }
}
