//! A Hub (or something posing as one) cannot make the client write outside
//! its cache: file names from a repo listing that climb out (`../`), are
//! absolute, or have empty components are refused before any download.

mod common;

use bitnet_hub::{Error, Hub};
use common::{MockFile, MockHub, MockRepo};

#[test]
fn listed_names_that_escape_the_cache_are_refused() {
    for evil in [
        "../escape.json",
        "a/../../escape.json",
        "/etc/escape.json",
        "a//b.json",
    ] {
        let repo = MockRepo::new(
            "org/evil",
            "5555555555555555555555555555555555555555",
            vec![
                MockFile::regular("config.json", b"{}".to_vec()),
                MockFile::regular(evil, b"owned".to_vec()),
            ],
        );
        let hub_server = MockHub::start(vec![repo]);
        let root = tempfile::tempdir().unwrap();
        let cache = root.path().join("cache");
        let hub = Hub::new(hub_server.url.clone(), cache.clone()).with_progress(false);
        let err = hub
            .download_repo("org/evil", "main", &|_: &str| true)
            .unwrap_err();
        assert!(
            matches!(err, Error::InvalidFilename { .. }),
            "{evil}: {err:?}"
        );
        assert!(
            err.to_string().contains(evil.trim_start_matches('/'))
                || err.to_string().contains(evil),
            "{err}"
        );
        // Nothing was written anywhere under the temporary root but the cache.
        let escaped: Vec<_> = walk(root.path())
            .into_iter()
            .filter(|p| {
                p.file_name()
                    .is_some_and(|n| n == "escape.json" || n == "b.json")
            })
            .collect();
        assert!(escaped.is_empty(), "{evil}: wrote {escaped:?}");
        assert!(
            hub_server
                .file_gets()
                .iter()
                .all(|g| !g.path.contains("escape")),
            "{evil}: fetched"
        );
    }
}

fn walk(dir: &std::path::Path) -> Vec<std::path::PathBuf> {
    let mut out = Vec::new();
    if let Ok(entries) = std::fs::read_dir(dir) {
        for e in entries.flatten() {
            let p = e.path();
            if p.is_dir() {
                out.extend(walk(&p));
            } else {
                out.push(p);
            }
        }
    }
    out
}
