//! `bitnet chat`: an interactive conversation in the terminal.

use std::io::{BufRead, Write};

use anyhow::Context;
use bitnet_engine::{ChatMessage, GenerationParams};
use clap::Args;

use crate::args::ModelArgs;
use crate::run::SamplingArgs;

/// Arguments of `bitnet chat`.
#[derive(Args)]
pub struct ChatArgs {
    #[command(flatten)]
    pub model: ModelArgs,
    #[command(flatten)]
    pub sampling: SamplingArgs,
    /// System message.
    #[arg(long = "system")]
    pub system: Option<String>,
    /// Maximum tokens per reply.
    #[arg(short = 'n', long = "n-predict", default_value_t = 512)]
    pub n_predict: usize,
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    let (sampler, _) = args.sampling.sampler()?;
    let engine = args.model.load()?;
    if engine.tokenizer().chat_template().is_none() {
        anyhow::bail!("the model has no chat template; use `bitnet run` instead");
    }
    let mut messages = Vec::new();
    if let Some(s) = &args.system {
        messages.push(ChatMessage {
            role: "system".into(),
            content: s.clone(),
        });
    }
    let mut session = engine.new_session();
    let stdin = std::io::stdin();
    let mut stdout = std::io::stdout();
    eprintln!(
        "chatting with {} (Ctrl-D or /exit to quit, /reset to start over)",
        engine.name()
    );
    loop {
        write!(stdout, "\n> ")?;
        stdout.flush()?;
        let mut line = String::new();
        if stdin
            .lock()
            .read_line(&mut line)
            .context("cannot read from stdin")?
            == 0
        {
            writeln!(stdout)?;
            return Ok(());
        }
        let line = line.trim();
        match line {
            "" => continue,
            "/exit" | "/quit" => return Ok(()),
            "/reset" => {
                messages.truncate(usize::from(args.system.is_some()));
                session.clear();
                continue;
            }
            _ => {}
        }
        messages.push(ChatMessage {
            role: "user".into(),
            content: line.to_string(),
        });
        let rendered = engine.render_chat(&messages, true)?;
        let prompt = engine.tokenize_chat(&rendered)?;
        let params = GenerationParams {
            max_tokens: args.n_predict,
            sampler: sampler.clone(),
            stop: Vec::new(),
            ignore_eos: false,
        };
        let mut on_text = |piece: &str| {
            let _ = write!(stdout, "{piece}");
            let _ = stdout.flush();
            true
        };
        match engine.generate_in(&mut session, &prompt, &params, false, &mut on_text) {
            Ok(out) => {
                messages.push(ChatMessage {
                    role: "assistant".into(),
                    content: out.text,
                });
            }
            Err(bitnet_engine::Error::PromptTooLong { n_tokens, n_ctx }) => {
                eprintln!(
                    "\n(the conversation has {n_tokens} tokens, more than the context of {n_ctx}; starting over)"
                );
                messages.truncate(usize::from(args.system.is_some()));
                session.clear();
            }
            Err(e) => return Err(e.into()),
        }
        writeln!(stdout)?;
    }
}
