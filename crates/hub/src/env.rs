//! Resolution of the Hub settings from environment variables, following the
//! precedence rules of `huggingface_hub` so that both tools share one cache
//! and one token.
//!
//! The logic is a pure function of a variable lookup and the home directory,
//! so it is unit-tested without touching the process environment.

use std::path::{Path, PathBuf};

/// Default Hub endpoint.
pub const DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Settings read from the environment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct EnvConfig {
    pub endpoint: String,
    pub cache_dir: PathBuf,
    pub token: Option<String>,
    pub offline: bool,
    pub progress: bool,
}

/// Resolves the settings. `var` returns a variable's value (empty values
/// count as unset); `home` is the user's home directory; `read` reads the
/// token file.
pub(crate) fn resolve(
    var: &dyn Fn(&str) -> Option<String>,
    home: Option<&Path>,
    read: &dyn Fn(&Path) -> Option<String>,
) -> EnvConfig {
    let get = |k: &str| var(k).filter(|v| !v.trim().is_empty());
    let home_path = |p: String| expand_home(&p, home);

    let endpoint = get("HF_ENDPOINT")
        .map(|e| e.trim().trim_end_matches('/').to_string())
        .unwrap_or_else(|| DEFAULT_ENDPOINT.to_string());

    let hf_home = get("HF_HOME").map(home_path).unwrap_or_else(|| {
        let cache = get("XDG_CACHE_HOME").map(home_path).unwrap_or_else(|| {
            home.map(|h| h.join(".cache"))
                .unwrap_or_else(|| PathBuf::from(".cache"))
        });
        cache.join("huggingface")
    });

    let cache_dir = get("HF_HUB_CACHE")
        .or_else(|| get("HUGGINGFACE_HUB_CACHE"))
        .map(home_path)
        .unwrap_or_else(|| hf_home.join("hub"));

    let token = get("HF_TOKEN")
        .or_else(|| get("HUGGING_FACE_HUB_TOKEN"))
        .map(|t| t.trim().to_string())
        .or_else(|| {
            let path = get("HF_TOKEN_PATH")
                .map(home_path)
                .unwrap_or_else(|| hf_home.join("token"));
            read(&path)
                .map(|t| t.trim().to_string())
                .filter(|t| !t.is_empty())
        });

    let offline = get("HF_HUB_OFFLINE").is_some_and(|v| is_truthy(&v));
    let progress = !get("HF_HUB_DISABLE_PROGRESS_BARS").is_some_and(|v| is_truthy(&v));

    EnvConfig {
        endpoint,
        cache_dir,
        token,
        offline,
        progress,
    }
}

/// `huggingface_hub`'s notion of a true environment value.
pub(crate) fn is_truthy(v: &str) -> bool {
    matches!(
        v.trim().to_ascii_uppercase().as_str(),
        "1" | "ON" | "YES" | "TRUE"
    )
}

/// Expands a leading `~` like Python's `os.path.expanduser`.
fn expand_home(p: &str, home: Option<&Path>) -> PathBuf {
    match (p.strip_prefix('~'), home) {
        (Some(""), Some(h)) => h.to_path_buf(),
        (Some(rest), Some(h)) if rest.starts_with('/') || rest.starts_with('\\') => {
            h.join(&rest[1..])
        }
        _ => PathBuf::from(p),
    }
}

/// The user's home directory from `HOME` (or the platform's notion of it).
pub(crate) fn home_dir() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
        .or_else(std::env::home_dir)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(vars: &[(&str, &str)], token_file: Option<(&str, &str)>) -> EnvConfig {
        let map: HashMap<String, String> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        let var = move |k: &str| map.get(k).cloned();
        let read = move |p: &Path| match token_file {
            Some((path, content)) if Path::new(path) == p => Some(content.to_string()),
            _ => None,
        };
        resolve(&var, Some(Path::new("/home/u")), &read)
    }

    #[test]
    fn defaults() {
        let c = run(&[], None);
        assert_eq!(c.endpoint, "https://huggingface.co");
        assert_eq!(c.cache_dir, Path::new("/home/u/.cache/huggingface/hub"));
        assert_eq!(c.token, None);
        assert!(!c.offline);
        assert!(c.progress);
    }

    #[test]
    fn xdg_cache_home() {
        let c = run(&[("XDG_CACHE_HOME", "/xdg")], None);
        assert_eq!(c.cache_dir, Path::new("/xdg/huggingface/hub"));
    }

    #[test]
    fn hf_home_beats_xdg_and_hub_cache_beats_hf_home() {
        let c = run(&[("XDG_CACHE_HOME", "/xdg"), ("HF_HOME", "/hf")], None);
        assert_eq!(c.cache_dir, Path::new("/hf/hub"));
        let c = run(
            &[
                ("HF_HOME", "/hf"),
                ("HF_HUB_CACHE", "~/hubcache"),
                ("HUGGINGFACE_HUB_CACHE", "/legacy"),
            ],
            None,
        );
        assert_eq!(c.cache_dir, Path::new("/home/u/hubcache"));
        let c = run(&[("HUGGINGFACE_HUB_CACHE", "/legacy")], None);
        assert_eq!(c.cache_dir, Path::new("/legacy"));
    }

    #[test]
    fn endpoint_trailing_slash_and_empty_values() {
        let c = run(
            &[("HF_ENDPOINT", "http://127.0.0.1:9/"), ("HF_HOME", "")],
            None,
        );
        assert_eq!(c.endpoint, "http://127.0.0.1:9");
        assert_eq!(c.cache_dir, Path::new("/home/u/.cache/huggingface/hub"));
    }

    #[test]
    fn token_precedence() {
        let file = Some(("/hf/token", "file-token\n"));
        assert_eq!(
            run(&[("HF_HOME", "/hf")], file).token.as_deref(),
            Some("file-token")
        );
        assert_eq!(
            run(&[("HF_HOME", "/hf"), ("HF_TOKEN", " env-token ")], file)
                .token
                .as_deref(),
            Some("env-token")
        );
        assert_eq!(
            run(&[("HUGGING_FACE_HUB_TOKEN", "legacy")], file)
                .token
                .as_deref(),
            Some("legacy")
        );
        assert_eq!(
            run(
                &[("HF_HOME", "/elsewhere"), ("HF_TOKEN_PATH", "/hf/token")],
                file
            )
            .token
            .as_deref(),
            Some("file-token")
        );
        assert_eq!(
            run(&[("HF_HOME", "/hf")], Some(("/hf/token", "  \n"))).token,
            None
        );
    }

    #[test]
    fn offline_and_progress_flags() {
        for v in ["1", "true", "ON", "yes"] {
            assert!(run(&[("HF_HUB_OFFLINE", v)], None).offline, "{v}");
        }
        for v in ["0", "false", "no", ""] {
            assert!(!run(&[("HF_HUB_OFFLINE", v)], None).offline, "{v}");
        }
        assert!(!run(&[("HF_HUB_DISABLE_PROGRESS_BARS", "1")], None).progress);
    }
}
