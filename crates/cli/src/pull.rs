//! `bitnet pull`: download a model from the Hugging Face Hub.

use anyhow::Context;
use bitnet_engine::{ModelLocation, resolve};
use bitnet_hub::Hub;
use clap::Args;

/// Arguments of `bitnet pull`.
#[derive(Args)]
pub struct PullArgs {
    /// Repository id, e.g. microsoft/bitnet-b1.58-2B-4T-gguf.
    #[arg(default_value = resolve::DEFAULT_REPO)]
    pub repo: String,
}

pub fn run(args: PullArgs) -> anyhow::Result<()> {
    if !Hub::looks_like_repo_id(&args.repo) {
        anyhow::bail!(
            "`{}` is not a Hugging Face repo id (expected owner/name)",
            args.repo
        );
    }
    let hub = Hub::from_env();
    let location = resolve::pull(&args.repo, &hub)
        .with_context(|| format!("cannot download {}", args.repo))?;
    let path = match &location {
        ModelLocation::Gguf(p) | ModelLocation::HfDir(p) => p.display().to_string(),
        ModelLocation::Builtin => "builtin".into(),
    };
    println!("{path}");
    Ok(())
}
