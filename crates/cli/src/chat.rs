//! `bitnet chat`: an interactive conversation in the terminal.
//!
//! At a terminal the input goes through rustyline: line editing, history
//! (Up/Down, this session), Ctrl-C clears the line, Ctrl-D quits. Piped
//! input is read line by line and each prompt is still printed, so a
//! transcript reads as a conversation. A message is one line; a line ending
//! in `\` continues on the next (as in llama.cpp), and text between two
//! lines of `"""` is one message (as in Ollama). A single word starting
//! with `/` is a command: `/help`, `/reset`, `/exit`. Ctrl-C while a reply
//! is being written stops that reply (what was written stays in the
//! conversation) and returns to the prompt.

use std::io::{BufRead, IsTerminal, Write};
use std::sync::atomic::{AtomicBool, Ordering};

use anyhow::Context;
use bitnet_engine::{ChatMessage, GenerationParams, StopReason};
use clap::Args;
use rustyline::DefaultEditor;
use rustyline::error::ReadlineError;

use crate::args::ModelArgs;
use crate::sampling::{self, SamplingArgs};

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
    /// Maximum tokens per reply; -1: until the end of the reply or a full
    /// context.
    #[arg(short = 'n', long = "n-predict", default_value = "512", allow_negative_numbers = true, value_parser = sampling::n_predict)]
    pub n_predict: usize,
}

const HELP: &str = "\
commands:
  /help          this list
  /reset         forget the conversation (the system message stays)
  /exit, /quit   leave (or Ctrl-D)
input:
  end a line with \\ to continue the message on the next line
  a line of \"\"\" starts a multi-line message; another one ends it
  Ctrl-C stops the reply being written (at the prompt: clears the line)";

/// Set by SIGINT; the reply being written checks it.
static INTERRUPTED: AtomicBool = AtomicBool::new(false);

#[cfg(unix)]
extern "C" fn on_sigint(_: libc::c_int) {
    INTERRUPTED.store(true, Ordering::SeqCst);
}

/// Makes SIGINT (Ctrl-C while a reply is written; at a rustyline prompt
/// the terminal is in raw mode and Ctrl-C is a key) stop the reply instead
/// of the process.
fn catch_interrupts() {
    #[cfg(unix)]
    // SAFETY: the handler only stores to an atomic, which is
    // async-signal-safe; the action is fully initialised (zeroed, then the
    // handler, flags and an empty mask) before it is installed.
    unsafe {
        let mut action: libc::sigaction = std::mem::zeroed();
        action.sa_sigaction = on_sigint as extern "C" fn(libc::c_int) as libc::sighandler_t;
        action.sa_flags = libc::SA_RESTART;
        libc::sigemptyset(&mut action.sa_mask);
        libc::sigaction(libc::SIGINT, &action, std::ptr::null_mut());
    }
}

/// Where messages come from.
enum Input {
    /// A terminal, through the line editor.
    Editor(Box<DefaultEditor>),
    /// A pipe or file, line by line.
    Plain(std::io::StdinLock<'static>),
}

/// What one read gave.
enum Read {
    Line(String),
    /// Ctrl-C at the prompt.
    Interrupted,
    Eof,
}

impl Input {
    fn new() -> anyhow::Result<Input> {
        if std::io::stdin().is_terminal() {
            let editor = DefaultEditor::new().context("cannot set up the line editor")?;
            Ok(Input::Editor(Box::new(editor)))
        } else {
            Ok(Input::Plain(std::io::stdin().lock()))
        }
    }

    /// One line, after showing `prompt`.
    fn line(&mut self, prompt: &str) -> anyhow::Result<Read> {
        match self {
            Input::Editor(editor) => match editor.readline(prompt) {
                Ok(line) => Ok(Read::Line(line)),
                Err(ReadlineError::Interrupted) => Ok(Read::Interrupted),
                Err(ReadlineError::Eof) => Ok(Read::Eof),
                Err(e) => Err(e).context("cannot read from the terminal"),
            },
            Input::Plain(stdin) => {
                let mut stdout = std::io::stdout();
                write!(stdout, "{prompt}")?;
                stdout.flush()?;
                let mut line = String::new();
                if stdin
                    .read_line(&mut line)
                    .context("cannot read from stdin")?
                    == 0
                {
                    return Ok(Read::Eof);
                }
                let line = line.strip_suffix('\n').unwrap_or(&line);
                Ok(Read::Line(
                    line.strip_suffix('\r').unwrap_or(line).to_string(),
                ))
            }
        }
    }

    /// The next message: a line, lines joined by a trailing `\`, or the
    /// lines between two `"""` lines.
    fn message(&mut self) -> anyhow::Result<Read> {
        let first = match self.line("> ")? {
            Read::Line(line) => line,
            other => return Ok(other),
        };
        let (mut text, more) = if first.trim() == "\"\"\"" {
            (String::new(), "\"\"\"")
        } else if let Some(start) = first.strip_suffix('\\') {
            (format!("{start}\n"), "\\")
        } else {
            return Ok(Read::Line(first));
        };
        loop {
            let line = match self.line(if matches!(self, Input::Plain(_)) {
                ""
            } else {
                "... "
            })? {
                Read::Line(line) => line,
                // Ctrl-C abandons the message; Ctrl-D sends what there is.
                Read::Interrupted => return Ok(Read::Interrupted),
                Read::Eof => return Ok(Read::Line(text)),
            };
            if more == "\"\"\"" {
                if line.trim() == "\"\"\"" {
                    return Ok(Read::Line(text.strip_suffix('\n').unwrap_or(&text).into()));
                }
                text.push_str(&line);
                text.push('\n');
            } else if let Some(start) = line.strip_suffix('\\') {
                text.push_str(start);
                text.push('\n');
            } else {
                text.push_str(&line);
                return Ok(Read::Line(text));
            }
        }
    }

    fn remember(&mut self, message: &str) {
        if let Input::Editor(editor) = self {
            let _ = editor.add_history_entry(message);
        }
    }
}

pub fn run(args: ChatArgs) -> anyhow::Result<()> {
    args.model.check_device()?;
    let (sampler, _) = args.sampling.sampler();
    let engine = args.model.load()?;
    if engine.tokenizer().chat_template().is_none() {
        anyhow::bail!("the model has no chat template; use `bitnet run` instead");
    }
    let system: Vec<ChatMessage> = args
        .system
        .iter()
        .map(|s| ChatMessage {
            role: "system".into(),
            content: s.clone(),
        })
        .collect();
    let mut messages = system.clone();
    let mut session = engine.new_session();
    let mut input = Input::new()?;
    let mut stdout = std::io::stdout();
    catch_interrupts();
    eprintln!(
        "chatting with {} (/help for commands, Ctrl-D or /exit to quit)",
        engine.name()
    );
    loop {
        writeln!(stdout)?;
        let message = match input.message()? {
            Read::Line(m) => m,
            Read::Interrupted => {
                eprintln!("(Ctrl-D or /exit to quit)");
                continue;
            }
            Read::Eof => break,
        };
        let word = message.trim();
        if word.is_empty() {
            continue;
        }
        input.remember(&message);
        if word.starts_with('/') && !word.contains(char::is_whitespace) {
            match word {
                "/help" | "/?" => eprintln!("{HELP}"),
                "/reset" | "/clear" => {
                    let forgotten = messages.len() - system.len();
                    messages.clone_from(&system);
                    session.clear();
                    eprintln!(
                        "(conversation reset: {forgotten} messages forgotten{})",
                        if system.is_empty() {
                            ""
                        } else {
                            "; the system message stays"
                        }
                    );
                }
                "/exit" | "/quit" | "/bye" => break,
                other => eprintln!("unknown command {other}; /help lists the commands"),
            }
            continue;
        }
        messages.push(ChatMessage {
            role: "user".into(),
            content: message,
        });
        let rendered = engine.render_chat(&messages, true)?;
        let prompt = engine.tokenize_chat(&rendered)?;
        let params = GenerationParams {
            max_tokens: args.n_predict,
            sampler: sampler.clone(),
            stop: Vec::new(),
            ignore_eos: false,
        };
        INTERRUPTED.store(false, Ordering::SeqCst);
        let mut on_text = |piece: &str| {
            let _ = write!(stdout, "{piece}");
            let _ = stdout.flush();
            !INTERRUPTED.load(Ordering::SeqCst)
        };
        match engine.generate_in(&mut session, &prompt, &params, false, &mut on_text) {
            Ok(out) => {
                match out.stop_reason {
                    StopReason::Cancelled => eprint!("\n(reply stopped)"),
                    StopReason::ContextFull => eprint!(
                        "\n(reply stopped: the context of {} tokens is full; /reset starts over)",
                        engine.n_ctx()
                    ),
                    _ => {}
                }
                messages.push(ChatMessage {
                    role: "assistant".into(),
                    content: out.text,
                });
            }
            Err(bitnet_engine::Error::PromptTooLong { n_tokens, n_ctx }) => {
                eprintln!(
                    "\n(the conversation has {n_tokens} tokens, more than the context of {n_ctx}; starting over)"
                );
                messages.clone_from(&system);
                session.clear();
            }
            Err(e) => return Err(e.into()),
        }
        writeln!(stdout)?;
    }
    writeln!(stdout)?;
    Ok(())
}
