//! `bitnet run`: generate text from a prompt, llama-cli style.

use std::io::{IsTerminal, Read, Write};
use std::path::{Path, PathBuf};

use anyhow::{Context, bail};
use bitnet_engine::{ChatMessage, Engine, GenerationParams, StopReason};
use clap::Args;

use crate::args::ModelArgs;
use crate::sampling::{self, SamplingArgs};

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
    /// The prompt (default: read from stdin when it is not a terminal).
    #[arg(short = 'p', long = "prompt")]
    pub prompt: Option<String>,
    /// Read the prompt from a file (`-` for stdin), as it is.
    #[arg(short = 'f', long = "file", conflicts_with = "prompt")]
    pub file: Option<PathBuf>,
    /// Number of tokens to generate; -1: until the end of the text or a
    /// full context.
    #[arg(short = 'n', long = "n-predict", default_value = "128", allow_negative_numbers = true, value_parser = sampling::n_predict)]
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

/// Reads all of a prompt source; `what` names it in errors.
fn read_text(source: &mut dyn Read, what: &str) -> anyhow::Result<String> {
    let mut bytes = Vec::new();
    source
        .read_to_end(&mut bytes)
        .with_context(|| format!("cannot read the prompt from {what}"))?;
    String::from_utf8(bytes).map_err(|e| {
        anyhow::anyhow!(
            "{what} is not valid UTF-8 (at byte {})",
            e.utf8_error().valid_up_to()
        )
    })
}

/// The prompt text: `-p`, `-f FILE`, `-f -` (stdin), or stdin when it is
/// not a terminal (and not empty).
fn prompt_text(args: &RunArgs) -> anyhow::Result<String> {
    let stdin = std::io::stdin();
    match (&args.prompt, &args.file) {
        (Some(p), _) => Ok(p.clone()),
        (None, Some(f)) if f == Path::new("-") => read_text(&mut stdin.lock(), "stdin"),
        (None, Some(f)) => {
            let mut file = std::fs::File::open(f)
                .with_context(|| format!("cannot read prompt file {}", f.display()))?;
            read_text(&mut file, &format!("prompt file {}", f.display()))
        }
        (None, None) if !stdin.is_terminal() => {
            let text = read_text(&mut stdin.lock(), "stdin")?;
            if text.is_empty() {
                bail!("no prompt: stdin is empty; give one with -p PROMPT, -f FILE or on stdin");
            }
            Ok(text)
        }
        (None, None) => {
            bail!("give a prompt with -p PROMPT, -f FILE, or on stdin (-f - or a pipe)")
        }
    }
}

pub fn run(args: RunArgs) -> anyhow::Result<()> {
    args.model.check_device()?;
    let text = prompt_text(&args)?;
    let (sampler, seed) = args.sampling.sampler();
    let t_load = std::time::Instant::now();
    let engine = args.model.load()?;
    let load_ms = t_load.elapsed().as_secs_f64() * 1e3;
    let (display, prompt) = prompt_tokens(&engine, &text, args.chat, args.system.as_deref())?;
    // Refused before anything is echoed (an empty prompt runs as BOS).
    if prompt.len() > engine.n_ctx() {
        return Err(bitnet_engine::Error::PromptTooLong {
            n_tokens: prompt.len(),
            n_ctx: engine.n_ctx(),
        }
        .into());
    }
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
    if out.stop_reason == StopReason::ContextFull {
        eprintln!(
            "\n(generation stopped: the context of {} tokens is full; -c/--ctx-size sets its size)",
            engine.n_ctx()
        );
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
