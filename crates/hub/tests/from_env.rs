//! `Hub::from_env`. The process environment is global, so this file holds a
//! single test: no other test of this binary runs concurrently with it.

mod common;

use std::fs;

use bitnet_hub::Hub;
use common::{COMMIT, GOOD_TOKEN, MockHub, repo_dir, standard_repo};

const VARS: &[&str] = &[
    "HF_ENDPOINT",
    "HF_HOME",
    "HF_HUB_CACHE",
    "HUGGINGFACE_HUB_CACHE",
    "HF_TOKEN",
    "HUGGING_FACE_HUB_TOKEN",
    "HF_TOKEN_PATH",
    "HF_HUB_OFFLINE",
    "HF_HUB_DISABLE_PROGRESS_BARS",
];

fn set(k: &str, v: Option<&str>) {
    // SAFETY: this binary has a single test, so no other thread reads or
    // writes the environment while it runs.
    unsafe {
        match v {
            Some(v) => std::env::set_var(k, v),
            None => std::env::remove_var(k),
        }
    }
}

#[test]
fn from_env_honours_hf_variables() {
    for k in VARS {
        set(k, None);
    }
    let mut repo = standard_repo();
    repo.gated = true;
    let server = MockHub::start(vec![repo.clone()]);
    let tmp = tempfile::tempdir().unwrap();
    let hf_home = tmp.path().join("hf-home");
    fs::create_dir_all(&hf_home).unwrap();
    fs::write(hf_home.join("token"), format!("{GOOD_TOKEN}\n")).unwrap();

    set("HF_ENDPOINT", Some(&format!("{}/", server.url)));
    set("HF_HOME", Some(hf_home.to_str().unwrap()));
    set("HF_HUB_DISABLE_PROGRESS_BARS", Some("1"));
    let hub = Hub::from_env();
    assert_eq!(hub.endpoint(), server.url);
    assert_eq!(hub.cache_dir(), hf_home.join("hub"));
    assert!(!hub.is_offline());

    // The token from $HF_HOME/token opens the gated repo.
    let path = hub
        .download_file("org/model", "main", "config.json")
        .unwrap();
    assert_eq!(
        path,
        repo_dir(&hf_home.join("hub"), "org/model")
            .join("snapshots")
            .join(COMMIT)
            .join("config.json")
    );
    assert!(
        server
            .requests()
            .iter()
            .all(|r| r.auth.as_deref() == Some(&format!("Bearer {GOOD_TOKEN}")))
    );

    // HF_TOKEN wins over the file.
    set("HF_TOKEN", Some("hf_wrong"));
    let err = Hub::from_env()
        .download_file("org/model", "main", "model.gguf")
        .unwrap_err();
    assert!(
        matches!(err, bitnet_hub::Error::GatedRepo { .. }),
        "{err:?}"
    );
    set("HF_TOKEN", None);

    // HF_HUB_CACHE wins over HF_HOME.
    let other = tmp.path().join("other-cache");
    set("HF_HUB_CACHE", Some(other.to_str().unwrap()));
    assert_eq!(Hub::from_env().cache_dir(), other);
    set("HF_HUB_CACHE", None);

    // HF_HUB_OFFLINE: cached file served, no request made.
    set("HF_HUB_OFFLINE", Some("1"));
    server.clear_log();
    let offline = Hub::from_env();
    assert!(offline.is_offline());
    assert_eq!(
        offline
            .download_file("org/model", "main", "config.json")
            .unwrap(),
        path
    );
    assert!(
        offline
            .download_file("org/model", "main", "model.gguf")
            .is_err()
    );
    assert!(server.requests().is_empty());

    for k in VARS {
        set(k, None);
    }
}
