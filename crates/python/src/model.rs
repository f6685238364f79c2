//! `_native.Model`: a loaded model and its engine thread.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use bitnet_engine::batch::{self, BatchConfig, Batcher, Job, NoObserver, Pending};
use bitnet_engine::resolve::{self, ModelLocation};
use bitnet_engine::{ChatMessage, Engine, EngineOptions, GenerationParams, KvType, SamplerConfig};
use bitnet_gguf::{GgufFile, Value};
use bitnet_hub::Hub;
use bitnet_kernels::{Isa, Kernels};
use numpy::{PyArray1, PyArrayMethods};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;

use crate::errors::{guard, load_error, raise, run_error};
use crate::stream::Stream;

/// How often a wait gives Python the chance to raise `KeyboardInterrupt`.
pub const POLL: Duration = Duration::from_millis(20);

/// A loaded model with its engine thread.
#[pyclass(module = "bitnet._native", frozen)]
pub struct Model {
    batcher: Batcher,
    engine: Arc<Engine>,
    path: Option<String>,
    metadata_json: String,
}

/// The kernel table for a `kernel=` argument (`None`: `BITNET_KERNEL` or
/// the best this CPU has).
fn kernels(kernel: Option<&str>) -> PyResult<&'static Kernels> {
    let available = || {
        Isa::available()
            .iter()
            .map(|i| i.name())
            .collect::<Vec<_>>()
            .join(", ")
    };
    match kernel {
        None | Some("auto") => {
            Kernels::from_env().map_err(|e| PyValueError::new_err(e.to_string()))
        }
        Some(name) => Isa::from_name(name)
            .and_then(Kernels::for_isa)
            .ok_or_else(|| {
                PyValueError::new_err(format!(
                    "kernel `{name}` is not available on this CPU (available: {}; or auto)",
                    available()
                ))
            }),
    }
}

/// The kernel levels this CPU can run, most portable first.
#[pyfunction]
pub fn kernels_available() -> Vec<&'static str> {
    Isa::available().iter().map(|i| i.name()).collect()
}

/// Why `device` (`"cpu"`, `"cuda"`, `"cuda:N"`) cannot run a model here,
/// in one line, or `None` when it can (the CPU). An unknown device name is a
/// `ValueError`. The same check as the command line's `--device`.
#[pyfunction]
pub fn device_error(device: &str) -> PyResult<Option<String>> {
    let spec: bitnet_engine::DeviceSpec = device
        .parse()
        .map_err(|e: bitnet_engine::DeviceError| PyValueError::new_err(e.to_string()))?;
    Ok(bitnet_engine::device_error(spec).map(|e| e.to_string()))
}

/// A GGUF metadata value as JSON (long arrays, such as the vocabulary, are
/// left out: `None`).
fn gguf_json(v: &Value) -> Option<serde_json::Value> {
    use serde_json::Value as J;
    Some(match v {
        Value::Array(a) if a.values.len() > 64 => return None,
        Value::Array(a) => J::Array(a.values.iter().filter_map(gguf_json).collect()),
        Value::String(s) => J::String(s.clone()),
        Value::Bool(b) => J::Bool(*b),
        other => match (other.as_i128(), other.as_f64()) {
            (Some(i), _) => i64::try_from(i).map_or_else(|_| J::String(i.to_string()), J::from),
            (None, Some(f)) => serde_json::Number::from_f64(f).map_or(J::Null, J::Number),
            _ => J::String(other.to_string()),
        },
    })
}

/// The model's metadata as a JSON object: the GGUF key-value pairs, or the
/// Hugging Face `config.json`.
fn metadata_json(location: &ModelLocation) -> String {
    let object = match location {
        ModelLocation::Gguf(path) => match GgufFile::open(path) {
            Ok(file) => serde_json::Value::Object(
                file.metadata()
                    .iter()
                    .filter_map(|(k, v)| Some((k.to_string(), gguf_json(v)?)))
                    .collect(),
            ),
            Err(_) => serde_json::Value::Null,
        },
        ModelLocation::HfDir(dir) => std::fs::read(dir.join("config.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::Value::Null),
        ModelLocation::Builtin => {
            serde_json::from_slice(&bitnet_engine::builtin::checkpoint().config_json)
                .unwrap_or(serde_json::Value::Null)
        }
    };
    object.to_string()
}

/// A seed for a request that gave none: different every call.
fn fresh_seed() -> u64 {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    (nanos ^ n.wrapping_mul(0x9E37_79B9_7F4A_7C15)).wrapping_add(std::process::id() as u64)
}

/// Waits for a task on the engine thread, letting Python raise
/// `KeyboardInterrupt` meanwhile (`on_interrupt` is called first).
fn wait<T: Send>(py: Python<'_>, mut pending: Pending<T>, on_interrupt: &dyn Fn()) -> PyResult<T> {
    loop {
        // The receiver is not `Sync`: it moves into the detached closure
        // and back.
        let (result, back) = py.detach(move || (pending.wait_timeout(POLL), pending));
        pending = back;
        if let Some(result) = result {
            return result.map_err(run_error);
        }
        if let Err(e) = py.check_signals() {
            on_interrupt();
            return Err(e);
        }
    }
}

#[pymethods]
impl Model {
    /// Resolves and loads `model` (downloading it from the Hub if needed)
    /// and starts its engine thread.
    #[new]
    #[pyo3(signature = (model, *, n_threads=None, n_ctx=None, kv_type="f16", kernel=None, n_parallel=8, n_batch=512, progress=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        model: &str,
        n_threads: Option<usize>,
        n_ctx: Option<usize>,
        kv_type: &str,
        kernel: Option<&str>,
        n_parallel: usize,
        n_batch: usize,
        progress: bool,
    ) -> PyResult<Model> {
        guard(|| {
            let kv_type = KvType::from_name(kv_type).ok_or_else(|| {
                PyValueError::new_err(format!(
                    "kv_type must be one of f16, f32 or q8, not `{kv_type}`"
                ))
            })?;
            if n_parallel == 0 {
                return Err(PyValueError::new_err("n_parallel must be at least 1"));
            }
            if n_batch == 0 {
                return Err(PyValueError::new_err("n_batch must be at least 1"));
            }
            let kernels = kernels(kernel)?;
            let opts = EngineOptions {
                threads: n_threads.unwrap_or(0),
                n_ctx: n_ctx.filter(|&n| n > 0),
                kv_type,
                n_batch,
                kernels: Some(kernels),
                device: Default::default(),
            };
            let spec = model.to_string();
            let (engine, location) = py
                .detach(|| {
                    let hub = Hub::from_env().with_progress(progress);
                    let location = resolve::resolve(Some(&spec), &hub)?.location;
                    let engine = Engine::load(&location, opts)?;
                    Ok::<_, Box<bitnet_engine::Error>>((engine, location))
                })
                .map_err(|e| load_error(*e, &spec))?;
            let engine = Arc::new(engine);
            let config = BatchConfig {
                parallel: n_parallel,
                queue: usize::MAX / 2,
                prefill_chunk: 256,
            };
            let (batcher, _thread) =
                batch::spawn(Arc::clone(&engine), &config, Arc::new(NoObserver)).map_err(|e| {
                    raise(
                        "BitNetError",
                        format!("cannot start the engine thread: {e}"),
                    )
                })?;
            let path = match &location {
                ModelLocation::Gguf(p) | ModelLocation::HfDir(p) => Some(p.display().to_string()),
                ModelLocation::Builtin => None,
            };
            Ok(Model {
                metadata_json: metadata_json(&location),
                batcher,
                engine,
                path,
            })
        })
    }

    /// A short name: the file or directory, or `builtin:demo-bitnet`.
    #[getter]
    fn name(&self) -> String {
        self.engine.name().to_string()
    }

    /// Where the model's files are (`None` for the built-in model).
    #[getter]
    fn path(&self) -> Option<String> {
        self.path.clone()
    }

    /// Context size in tokens.
    #[getter]
    fn n_ctx(&self) -> usize {
        self.engine.n_ctx()
    }

    /// Vocabulary size (rows of the logits).
    #[getter]
    fn n_vocab(&self) -> usize {
        self.engine.model().hparams().n_vocab
    }

    /// Threads of the compute pool.
    #[getter]
    fn n_threads(&self) -> usize {
        self.engine.pool().n_threads()
    }

    /// The kernel level running the model (`scalar`, `avx2`, `avxvnni`, `avx512`).
    #[getter]
    fn kernel(&self) -> &'static str {
        self.engine.model().kernels().isa().name()
    }

    /// The architecture as the file names it (`bitnet-b1.58`, ...).
    #[getter]
    fn architecture(&self) -> &'static str {
        self.engine.model().hparams().arch.gguf_name()
    }

    /// The model's metadata as JSON text.
    #[getter]
    fn metadata_json(&self) -> String {
        self.metadata_json.clone()
    }

    /// The token ids that end generation (EOS, EOT).
    #[getter]
    fn stop_ids(&self) -> Vec<u32> {
        self.engine.tokenizer().stop_ids().to_vec()
    }

    /// The BOS id, if the model has one.
    #[getter]
    fn bos_id(&self) -> Option<u32> {
        self.engine.tokenizer().bos_id()
    }

    /// Generations running on the engine thread now.
    #[getter]
    fn running(&self) -> usize {
        self.batcher.running()
    }

    /// Generations waiting for a slot.
    #[getter]
    fn queued(&self) -> usize {
        self.batcher.queued()
    }

    /// Whether the model has a chat template.
    #[getter]
    fn has_chat_template(&self) -> bool {
        self.engine.tokenizer().chat_template().is_some()
    }

    /// Token ids of `text`; `special` parses special-token text such as
    /// `<|eot_id|>`.
    #[pyo3(signature = (text, add_bos=true, special=true))]
    fn tokenize(
        &self,
        py: Python<'_>,
        text: &str,
        add_bos: bool,
        special: bool,
    ) -> PyResult<Vec<u32>> {
        guard(|| {
            let text = text.to_string();
            let engine = &self.engine;
            py.detach(|| {
                let tok = engine.tokenizer();
                let mut ids = tok.encode(&text, false, special)?;
                if add_bos
                    && let Some(bos) = tok.bos_id()
                    && ids.first() != Some(&bos)
                {
                    ids.insert(0, bos);
                }
                Ok(ids)
            })
            .map_err(|e: bitnet_tokenizer::Error| run_error(e.into()))
        })
    }

    /// The text of `ids`; `special` keeps special tokens' text.
    #[pyo3(signature = (ids, special=false))]
    fn detokenize(&self, py: Python<'_>, ids: Vec<i64>, special: bool) -> PyResult<String> {
        guard(|| {
            let ids = self.check_ids(&ids)?;
            let engine = &self.engine;
            py.detach(|| engine.tokenizer().decode(&ids, !special))
                .map_err(|e| run_error(e.into()))
        })
    }

    /// The prompt that the chat template renders for `messages` (pairs of
    /// role and content).
    #[pyo3(signature = (messages, add_generation_prompt=true))]
    fn render_chat(
        &self,
        messages: Vec<(String, String)>,
        add_generation_prompt: bool,
    ) -> PyResult<String> {
        guard(|| {
            let messages: Vec<ChatMessage> = messages
                .into_iter()
                .map(|(role, content)| ChatMessage::new(role, content))
                .collect();
            self.engine
                .render_chat(&messages, add_generation_prompt)
                .map_err(run_error)
        })
    }

    /// Logits at every position of `ids`, as a float32 array
    /// `[len(ids), n_vocab]`.
    fn logits<'py>(&self, py: Python<'py>, ids: Vec<i64>) -> PyResult<Bound<'py, PyAny>> {
        guard(|| {
            let ids = self.check_ids(&ids)?;
            let n = ids.len();
            let pending = self
                .batcher
                .queue_task(move |engine| engine.logits(&ids))
                .map_err(run_error)?;
            let logits = wait(py, pending, &|| {})?.map_err(run_error)?;
            let array = PyArray1::from_vec(py, logits);
            Ok(array.reshape([n, self.n_vocab()])?.into_any())
        })
    }

    /// L2-normalised embeddings of `texts` (an embedding model's pooled
    /// last hidden state), as a float32 array `[len(texts), dim]`.
    fn embed<'py>(&self, py: Python<'py>, texts: Vec<String>) -> PyResult<Bound<'py, PyAny>> {
        guard(|| {
            let n = texts.len();
            let pending = self
                .batcher
                .queue_task(move |engine| {
                    let refs: Vec<&str> = texts.iter().map(String::as_str).collect();
                    engine.embed(&refs)
                })
                .map_err(run_error)?;
            let vectors = wait(py, pending, &|| {})?.map_err(run_error)?;
            let dim = vectors.first().map_or(0, Vec::len);
            let flat: Vec<f32> = vectors.into_iter().flatten().collect();
            Ok(PyArray1::from_vec(py, flat).reshape([n, dim])?.into_any())
        })
    }

    /// Whether the model makes embeddings (and not text).
    #[getter]
    fn is_embedding(&self) -> bool {
        self.engine.model().embedding().is_some()
    }

    /// Perplexity of `text` in llama-perplexity's manner, with windows of
    /// `n_ctx` tokens (default: the model's context).
    #[pyo3(signature = (text, n_ctx=None))]
    fn perplexity(&self, py: Python<'_>, text: &str, n_ctx: Option<usize>) -> PyResult<f64> {
        guard(|| {
            let text = text.to_string();
            let n_ctx = n_ctx.unwrap_or_else(|| self.engine.n_ctx());
            let stop = Arc::new(AtomicBool::new(false));
            let flag = Arc::clone(&stop);
            let pending = self
                .batcher
                .queue_task(move |engine| {
                    engine.perplexity_with(&text, n_ctx, &mut |_| !flag.load(Ordering::Relaxed))
                })
                .map_err(run_error)?;
            let result = wait(py, pending, &|| stop.store(true, Ordering::Relaxed))?;
            Ok(result.map_err(run_error)?.perplexity)
        })
    }

    /// Starts generating from `ids`; the returned stream yields the text.
    #[pyo3(signature = (ids, *, max_tokens, temperature, top_k, top_p, min_p, repeat_penalty, seed, stop, ignore_eos=false))]
    #[allow(clippy::too_many_arguments)]
    fn submit(
        &self,
        ids: Vec<i64>,
        max_tokens: Option<i64>,
        temperature: f32,
        top_k: i64,
        top_p: f32,
        min_p: f32,
        repeat_penalty: f32,
        seed: Option<u64>,
        stop: Vec<String>,
        ignore_eos: bool,
    ) -> PyResult<Stream> {
        guard(|| {
            let mut prompt = self.check_ids(&ids)?;
            if prompt.is_empty() {
                let bos = self.engine.tokenizer().bos_id().ok_or_else(|| {
                    PyValueError::new_err("the prompt is empty and the model has no BOS token")
                })?;
                prompt.push(bos);
            }
            let n_ctx = self.engine.n_ctx();
            if prompt.len() >= n_ctx {
                return Err(raise(
                    "ContextLengthError",
                    format!(
                        "the prompt has {} tokens but the context holds {n_ctx}, which leaves no room for a completion; pass a larger n_ctx to from_pretrained or shorten the prompt",
                        prompt.len()
                    ),
                ));
            }
            let room = n_ctx - prompt.len();
            let max_tokens = match max_tokens {
                Some(m) if m >= 0 => (m as usize).min(room),
                _ => room,
            };
            let sampler = SamplerConfig {
                temperature,
                top_k: usize::try_from(top_k).unwrap_or(0),
                top_p,
                min_p,
                repeat_penalty,
                seed: seed.unwrap_or_else(fresh_seed),
                ..SamplerConfig::default()
            };
            let params = GenerationParams {
                max_tokens,
                sampler,
                stop: stop.into_iter().filter(|s| !s.is_empty()).collect(),
                ignore_eos,
            };
            let (sink, rx) = batch::channel();
            let permit = self
                .batcher
                .admit()
                .map_err(|e| raise("BitNetError", e.to_string()))?;
            let n_prompt = prompt.len();
            self.batcher
                .submit(Job {
                    prompt,
                    params,
                    options: Default::default(),
                    sink: Box::new(sink),
                    permit,
                })
                .map_err(run_error)?;
            Ok(Stream::new(rx, n_prompt))
        })
    }

    /// Stops the engine thread: running generations end, new ones fail.
    fn close(&self) {
        self.batcher.shutdown(Duration::ZERO);
    }
}

impl Model {
    /// `ids` as token ids of this model, or `ValueError`.
    fn check_ids(&self, ids: &[i64]) -> PyResult<Vec<u32>> {
        let n_vocab = self.engine.model().hparams().n_vocab;
        ids.iter()
            .map(|&id| {
                u32::try_from(id)
                    .ok()
                    .filter(|&t| (t as usize) < n_vocab)
                    .ok_or_else(|| {
                        PyValueError::new_err(format!(
                            "token id {id} is out of range (vocabulary size {n_vocab})"
                        ))
                    })
            })
            .collect()
    }

    /// The engine (for the server).
    pub fn engine(&self) -> &Arc<Engine> {
        &self.engine
    }
}
