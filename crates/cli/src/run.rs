//! `bitnet run`: generate text from a prompt, llama-cli style.

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, bail};
use bitnet_engine::{ChatMessage, Engine, GenerationParams, SamplerConfig};
use clap::Args;

use crate::args::ModelArgs;

/// Sampling flags shared by `run` and `chat`.
#[derive(Args, Clone, Debug)]
pub struct SamplingArgs {
    /// Temperature (0 = greedy).
    #[arg(long = "temp", default_value_t = 0.8)]
    pub temp: f32,
    /// Top-k (0 = off).
    #[arg(long = "top-k", default_value_t = 40)]
    pub top_k: usize,
    /// Top-p (1.0 = off).
    #[arg(long = "top-p", default_value_t = 0.95)]
    pub top_p: f32,
    /// Min-p (0.0 = off).
    #[arg(long = "min-p", default_value_t = 0.05)]
    pub min_p: f32,
    /// Repetition penalty (1.0 = off).
    #[arg(long = "repeat-penalty", default_value_t = 1.0)]
    pub repeat_penalty: f32,
    /// Tokens the repetition penalty looks back over.
    #[arg(long = "repeat-last-n", default_value_t = 64)]
    pub repeat_last_n: usize,
    /// OpenAI-style presence penalty.
    #[arg(long = "presence-penalty", default_value_t = 0.0)]
    pub presence_penalty: f32,
    /// OpenAI-style frequency penalty.
    #[arg(long = "frequency-penalty", default_value_t = 0.0)]
    pub frequency_penalty: f32,
    /// Random seed (default: from the clock).
    #[arg(short = 's', long = "seed")]
    pub seed: Option<u64>,
}

impl SamplingArgs {
    /// The sampler configuration and the seed used.
    pub fn sampler(&self) -> anyhow::Result<(SamplerConfig, u64)> {
        let check = |name: &str, ok: bool| {
            if ok {
                Ok(())
            } else {
                Err(anyhow::anyhow!("invalid --{name}"))
            }
        };
        check("temp", self.temp.is_finite() && self.temp >= 0.0)?;
        check("top-p", (0.0..=1.0).contains(&self.top_p))?;
        check("min-p", (0.0..=1.0).contains(&self.min_p))?;
        check(
            "repeat-penalty",
            self.repeat_penalty.is_finite() && self.repeat_penalty > 0.0,
        )?;
        let seed = self.seed.unwrap_or_else(|| {
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos() as u64)
                .unwrap_or(0)
        });
        Ok((
            SamplerConfig {
                temperature: self.temp,
                top_k: self.top_k,
                top_p: self.top_p,
                min_p: self.min_p,
                repeat_penalty: self.repeat_penalty,
                repeat_last_n: self.repeat_last_n,
                frequency_penalty: self.frequency_penalty,
                presence_penalty: self.presence_penalty,
                seed,
            },
            seed,
        ))
    }
}

/// Output format of `run` and `perplexity`.
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum OutputFormat {
    /// Plain text for people (`run`: the prompt and the generated text,
    /// streamed).
    Text,
    /// One JSON object at the end.
    Json,
}

/// Arguments of `bitnet run`.
#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    /// The prompt.
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// Read the prompt from a file.
    #[arg(short = 'f', long = "file", conflicts_with = "prompt")]
    pub file: Option<PathBuf>,
    /// Number of tokens to generate.
    #[arg(short = 'n', long = "n-predict", default_value_t = 128)]
    pub n_predict: usize,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// Apply the model's chat template to the prompt (as the user message).
    #[arg(long = "chat")]
    pub chat: bool,
    /// System message for --chat.
    #[arg(long = "system", requires = "chat")]
    pub system: Option<String>,
    /// Stop when this string is generated (repeatable).
    #[arg(long = "stop")]
    pub stop: Vec<String>,
    /// Keep generating past end-of-sequence tokens.
    #[arg(long = "ignore-eos")]
    pub ignore_eos: bool,
    /// Output format.
    #[arg(long = "output-format", value_enum, default_value_t = OutputFormat::Text)]
    pub output_format: OutputFormat,
    /// Write the float32 logits at the last prompt position to this .npy file.
    #[arg(long = "logits-out")]
    pub logits_out: Option<PathBuf>,
    /// Do not echo the prompt in text output.
    #[arg(long = "no-display-prompt")]
    pub no_display_prompt: bool,
}

/// Tokenises the prompt text, optionally through the chat template.
pub fn prompt_tokens(
    engine: &Engine,
    text: &str,
    chat: bool,
    system: Option<&str>,
) -> anyhow::Result<(String, Vec<u32>)> {
    if !chat {
        return Ok((text.to_string(), engine.tokenize(text)?));
    }
    let mut messages = Vec::new();
    if let Some(s) = system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: s.into(),
        });
    }
    messages.push(ChatMessage {
        role: "user".into(),
        content: text.into(),
    });
    let rendered = engine.render_chat(&messages, true)?;
    let ids = engine.tokenize_chat(&rendered)?;
    Ok((rendered, ids))
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    let text = match (&args.prompt, &args.file) {
        (Some(p), _) => p.clone(),
        (None, Some(f)) => {
            let bytes = std::fs::read(f)
                .with_context(|| format!("cannot read prompt file {}", f.display()))?;
            String::from_utf8(bytes).map_err(|e| {
                anyhow::anyhow!(
                    "prompt file {} is not valid UTF-8 (at byte {})",
                    f.display(),
                    e.utf8_error().valid_up_to()
                )
            })?
        }
        (None, None) => bail!("give a prompt with -p PROMPT or -f FILE"),
    };
    let (sampler, seed) = args.sampling.sampler()?;
    let t_load = std::time::Instant::now();
    let engine = args.model.load()?;
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
    let (display, prompt) = prompt_tokens(&engine, &text, args.chat, args.system.as_deref())?;
    let params = GenerationParams {
        max_tokens: args.n_predict,
        sampler,
        stop: args.stop.clone(),
        ignore_eos: args.ignore_eos,
    };
    let json = args.output_format == OutputFormat::Json;
    let mut stdout = std::io::stdout().lock();
    if !json && !args.no_display_prompt && !args.chat {
        write!(stdout, "{display}")?;
        stdout.flush()?;
    }
    let out = {
        let mut on_text = |piece: &str| {
            if !json {
                let _ = write!(stdout, "{piece}");
                let _ = stdout.flush();
            }
            true
        };
        engine
            .generate(&prompt, &params, args.logits_out.is_some(), &mut on_text)
            .context("generation failed")?
    };
    if let (Some(path), Some(logits)) = (&args.logits_out, &out.prompt_logits) {
        crate::npy::write_f32(path, logits)?;
    }
    let t = &out.timings;
    if json {
        let out = serde_json::json!({
            "model": engine.name(),
            "kernel": engine.model().kernels().isa().name(),
            "prompt": display,
            "prompt_token_ids": out.prompt_tokens,
            "token_ids": out.tokens,
            "text": out.text,
            "stop_reason": out.stop_reason,
            "seed": seed,
            "load_ms": load_ms,
            "timings": t,
        });
        writeln!(stdout, "{out}")?;
    } else {
        writeln!(stdout)?;
        eprintln!(
            "\nload: {load_ms:.0} ms | prompt: {} tokens in {:.1} ms ({:.1} tok/s) | generation: {} tokens in {:.1} ms ({:.1} tok/s) | kernel {} | {} threads",
            t.prompt_n,
            t.prompt_ms,
            t.prompt_per_second,
            t.predicted_n,
            t.predicted_ms,
            t.predicted_per_second,
            engine.model().kernels().isa(),
            engine.pool().n_threads()
        );
    }
    Ok(())
}
