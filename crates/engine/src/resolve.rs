//! Turning the `-m` argument into something loadable.
//!
//! `-m` accepts a GGUF file, a Hugging Face model directory, a Hub repo id
//! (`microsoft/bitnet-b1.58-2B-4T-gguf`, fetched into the standard HF cache
//! on first use), a short name of the seed examples (`bitnet-b1.58-2b`), or
//! `builtin`. Without `-m`, BitNet b1.58 2B-4T is used when
//! it is in the cache, else the demo model built into the binary.

use std::path::{Path, PathBuf};

use bitnet_hub::Hub;

use crate::error::{Error, Result};

/// The Hub repo of the official BitNet b1.58 2B-4T GGUF.
pub const DEFAULT_REPO: &str = "microsoft/bitnet-b1.58-2B-4T-gguf";
/// Its I2_S file.
pub const DEFAULT_FILE: &str = "ggml-model-i2_s.gguf";

/// Where a model's files are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ModelLocation {
    /// A GGUF file.
    Gguf(PathBuf),
    /// A Hugging Face model directory (config.json + safetensors).
    HfDir(PathBuf),
    /// The demo model built into the binary.
    Builtin,
}

/// A resolved model argument.
#[derive(Clone, Debug)]
pub struct Resolved {
    /// The files.
    pub location: ModelLocation,
    /// A one-line note for the user about what was chosen (for the default).
    pub note: Option<String>,
}

/// Hub files that make up a model directory.
fn is_model_file(name: &str) -> bool {
    name.ends_with(".safetensors")
        || matches!(
            name,
            "config.json"
                | "model.safetensors.index.json"
                | "tokenizer.json"
                | "tokenizer_config.json"
                | "special_tokens_map.json"
                | "generation_config.json"
        )
}

/// Picks the GGUF to use from a repo's file list: an I2_S file if there is
/// one, else the first `.gguf`.
pub fn choose_gguf(files: &[String]) -> Option<&str> {
    let ggufs: Vec<&str> = files
        .iter()
        .map(String::as_str)
        .filter(|f| f.ends_with(".gguf"))
        .collect();
    ggufs
        .iter()
        .find(|f| f.to_ascii_lowercase().contains("i2_s"))
        .or_else(|| ggufs.first())
        .copied()
}

/// Resolves a local path.
fn local(path: &Path, spec: &str) -> Result<ModelLocation> {
    if path.is_file() {
        return Ok(ModelLocation::Gguf(path.to_path_buf()));
    }
    if path.is_dir() {
        if path.join("config.json").is_file() {
            return Ok(ModelLocation::HfDir(path.to_path_buf()));
        }
        let mut ggufs: Vec<PathBuf> = std::fs::read_dir(path)
            .map_err(|e| Error::ModelSpec {
                spec: spec.into(),
                reason: e.to_string(),
            })?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "gguf"))
            .collect();
        ggufs.sort();
        let names: Vec<String> = ggufs
            .iter()
            .filter_map(|p| p.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        if let Some(name) = choose_gguf(&names) {
            return Ok(ModelLocation::Gguf(path.join(name)));
        }
        return Err(Error::ModelSpec {
            spec: spec.into(),
            reason: "directory has neither config.json nor a .gguf file".into(),
        });
    }
    Err(Error::ModelSpec {
        spec: spec.into(),
        reason: "no such file or directory".into(),
    })
}

/// `~` or `~/...` with the home directory in place of `~` (a quoted `-m`
/// reaches us unexpanded); `None` for anything else or without `HOME`.
fn expand_home(spec: &str) -> Option<PathBuf> {
    let rest = spec.strip_prefix('~')?;
    if !(rest.is_empty() || rest.starts_with('/')) {
        return None;
    }
    let home = std::env::var_os("HOME")?;
    Some(PathBuf::from(home).join(rest.trim_start_matches('/')))
}

/// The Hub repo a short model name stands for: the names the BitNet seed
/// examples use (`bitnet-b1.58-2b`, `bitnet-b1.58-2B-4T`, any case) are BitNet
/// b1.58 2B-4T's official GGUF.
pub fn short_name(spec: &str) -> Option<&'static str> {
    match spec.to_ascii_lowercase().as_str() {
        "bitnet-b1.58-2b" | "bitnet-b1.58-2b-4t" => Some(DEFAULT_REPO),
        _ => None,
    }
}

/// Resolves the `-m` argument (`None` = the default), downloading from the
/// Hub if needed. Anything that looks like a file (a model file's
/// extension, a leading `./`, `../`, `/` or `~`) is a local path: missing,
/// it is "no such file", never a Hub download.
pub fn resolve(spec: Option<&str>, hub: &Hub) -> Result<Resolved> {
    let Some(spec) = spec else {
        if let Some(path) = hub.cached_file(DEFAULT_REPO, "main", DEFAULT_FILE) {
            return Ok(Resolved {
                location: ModelLocation::Gguf(path),
                note: Some(format!("using {DEFAULT_REPO} from the Hugging Face cache")),
            });
        }
        return Ok(Resolved {
            location: ModelLocation::Builtin,
            note: Some(format!(
                "using the {}; for BitNet b1.58 2B-4T run `bitnet pull {DEFAULT_REPO}` (or pass -m {DEFAULT_REPO})",
                crate::builtin::NAME
            )),
        });
    };
    if spec == "builtin" || spec == "builtin:demo-bitnet" || spec == "demo" {
        return Ok(Resolved {
            location: ModelLocation::Builtin,
            note: None,
        });
    }
    let home = expand_home(spec);
    let path = home.as_deref().unwrap_or(Path::new(spec));
    if let Some(repo) = short_name(spec)
        && !path.exists()
    {
        return Ok(Resolved {
            location: fetch(repo, hub)?,
            note: None,
        });
    }
    if path.exists() || !Hub::looks_like_repo_id(spec) {
        return Ok(Resolved {
            location: local(path, spec)?,
            note: None,
        });
    }
    Ok(Resolved {
        location: fetch(spec, hub)?,
        note: None,
    })
}

/// Finds `repo` in the cache or downloads it.
pub fn fetch(repo: &str, hub: &Hub) -> Result<ModelLocation> {
    let cached = || {
        hub.cached_snapshot(repo, "main")
            .and_then(|dir| local(&dir, repo).ok())
    };
    if hub.is_offline() {
        return cached().ok_or_else(|| Error::ModelSpec {
            spec: repo.into(),
            reason: "offline (HF_HUB_OFFLINE) and not in the Hugging Face cache".into(),
        });
    }
    let info = match hub.list_files(repo, "main") {
        Ok(info) => info,
        // An unreachable Hub: a cached copy still works. A definite answer
        // (not found, gated) is not hidden by the cache.
        Err(e) if e.is_transient() => return cached().ok_or(Error::Hub(e)),
        Err(e) => return Err(Error::Hub(e)),
    };
    let names: Vec<String> = info.files.iter().map(|f| f.name.clone()).collect();
    if let Some(gguf) = choose_gguf(&names) {
        let path = hub.download_file(repo, "main", gguf)?;
        return Ok(ModelLocation::Gguf(path));
    }
    if names.iter().any(|n| n == "config.json") {
        let dir = hub.download_repo(repo, "main", &|n: &str| is_model_file(n))?;
        return Ok(ModelLocation::HfDir(dir));
    }
    Err(Error::ModelSpec {
        spec: repo.into(),
        reason: "the repository has neither a .gguf file nor config.json + safetensors".into(),
    })
}

/// Downloads a repo (`bitnet pull`): its preferred GGUF, or its model files.
pub fn pull(repo: &str, hub: &Hub) -> Result<ModelLocation> {
    fetch(repo, hub)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seed_short_names_are_the_official_gguf() {
        for name in ["bitnet-b1.58-2b", "bitnet-b1.58-2B-4T", "BitNet-b1.58-2B"] {
            assert_eq!(short_name(name), Some(DEFAULT_REPO), "{name}");
        }
        assert_eq!(short_name("bitnet-b1.58-3b"), None);
        // Offline, a short name is looked up in the cache under the repo.
        let cache = std::env::temp_dir().join(format!("bitnet-short-{}", std::process::id()));
        let hub = Hub::new("http://127.0.0.1:9".into(), cache).with_offline(true);
        let err = resolve(Some("bitnet-b1.58-2b"), &hub)
            .unwrap_err()
            .to_string();
        assert!(err.contains(DEFAULT_REPO), "{err}");
    }

    #[test]
    fn prefers_i2_s() {
        let files = vec![
            "README.md".to_string(),
            "ggml-model-f16.gguf".to_string(),
            "ggml-model-i2_s.gguf".to_string(),
        ];
        assert_eq!(choose_gguf(&files), Some("ggml-model-i2_s.gguf"));
        assert_eq!(choose_gguf(&files[..2]), Some("ggml-model-f16.gguf"));
        assert_eq!(choose_gguf(&files[..1]), None);
    }

    #[test]
    fn missing_files_are_not_hub_repos() {
        let cache = std::env::temp_dir().join("bitnet-resolve-test-cache");
        let hub = Hub::new("http://127.0.0.1:9".into(), cache).with_offline(true);
        for spec in [
            "out/tiny-tq1_0.gguf",
            "models/ggml-model-i2_s.gguf",
            "missing.gguf",
            "a/b/c.gguf",
            "./model",
            "~/bitnet-no-such-model.gguf",
        ] {
            let err = resolve(Some(spec), &hub).unwrap_err().to_string();
            assert!(err.contains("no such file"), "{spec}: {err}");
        }
        assert_eq!(
            expand_home("~/x.gguf"),
            std::env::var_os("HOME").map(|h| PathBuf::from(h).join("x.gguf"))
        );
        assert_eq!(expand_home("~user/x"), None);
    }
}
