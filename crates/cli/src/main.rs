//! `bitnet`: run 1.58-bit LLMs on the CPU.
//!
//! One binary with the subcommands a llama.cpp user knows. Each lives in its
//! own module; this file only parses arguments and reports errors (with
//! their context chain) on stderr with a non-zero exit status.

mod args;
mod bench;
mod bench_gpu;
mod chat;
mod convert;
mod embed;
mod info;
mod npy;
mod perplexity;
mod pull;
mod run;
mod sampling;
mod serve;

use std::process::ExitCode;

use clap::{CommandFactory, Parser, Subcommand};

#[derive(Parser)]
#[command(
    name = "bitnet",
    version,
    about = "Fast inference for 1.58-bit (ternary) LLMs on the CPU"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate text from a prompt.
    Run(run::RunArgs),
    /// Chat interactively (applies the model's chat template).
    Chat(chat::ChatArgs),
    /// Measure prompt processing and generation speed (like llama-bench).
    Bench(bench::BenchArgs),
    /// Compute perplexity over a text file (like llama-perplexity).
    Perplexity(perplexity::PerplexityArgs),
    /// Embed texts with a BitNet embedding model (JSON output).
    Embed(embed::EmbedArgs),
    /// Convert a Hugging Face checkpoint to GGUF.
    Convert(convert::ConvertArgs),
    /// Serve an OpenAI-compatible HTTP API.
    Serve(serve::ServeArgs),
    /// Show a model's metadata and tensors.
    Info(info::InfoArgs),
    /// Download a model from the Hugging Face Hub into the local cache.
    Pull(pull::PullArgs),
    /// Print the shell completion script for bash, zsh, fish, elvish or
    /// powershell (e.g. `bitnet completions bash >
    /// ~/.local/share/bash-completion/completions/bitnet`).
    Completions {
        /// The shell.
        shell: clap_complete::Shell,
    },
}

fn main() -> ExitCode {
    // Output piped into `head` and closed early should end the program
    // quietly, as for any Unix tool, not make `println!` panic.
    #[cfg(unix)]
    // SAFETY: setting a signal disposition to the default at start-up,
    // before any other thread exists.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Run(a) => run::run(a),
        Command::Chat(a) => chat::run(a),
        Command::Bench(a) => bench::run(a),
        Command::Perplexity(a) => perplexity::run(a),
        Command::Embed(a) => embed::run(a),
        Command::Convert(a) => convert::run(a),
        Command::Serve(a) => serve::run(a),
        Command::Info(a) => info::run(a),
        Command::Pull(a) => pull::run(a),
        Command::Completions { shell } => {
            clap_complete::generate(shell, &mut Cli::command(), "bitnet", &mut std::io::stdout());
            Ok(())
        }
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", error_chain(&e));
            ExitCode::FAILURE
        }
    }
}

/// The error and its causes joined by `: `, leaving out a cause that the
/// message already quotes (library errors include their source's text, and
/// thiserror also reports it as the source).
fn error_chain(e: &anyhow::Error) -> String {
    let mut msg = e.to_string();
    for cause in e.chain().skip(1) {
        let text = cause.to_string();
        if !msg.contains(&text) {
            msg.push_str(": ");
            msg.push_str(&text);
        }
    }
    msg
}
