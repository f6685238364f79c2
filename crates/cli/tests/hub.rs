//! `bitnet pull` and `bitnet run -m org/name` against a local server that
//! emulates the Hugging Face Hub: the cache layout, offline use, which files
//! of a repo are fetched, the default model, errors and resume.

mod common;
// The hub crate's mock Hub (its misbehaviour knobs stay unused here).
#[path = "../../hub/tests/common/mod.rs"]
mod hub_server;

use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::*;
use hub_server::{Logged, MockFile, MockHub, MockRepo, bytes};
use serde_json::Value;

const GGUF: &str = "ggml-model-i2_s.gguf";
const DEFAULT_REPO: &str = "microsoft/bitnet-b1.58-2B-4T-gguf";
const PROMPT: &str = "Permission is hereby granted, free of charge,";
const GGUF_COMMIT: &str = "1111111111111111111111111111111111111111";
const HF_COMMIT: &str = "2222222222222222222222222222222222222222";
const DEFAULT_COMMIT: &str = "3333333333333333333333333333333333333333";

/// The files of an HF model directory that `-m org/name` must fetch.
const HF_MODEL_FILES: [&str; 5] = [
    "config.json",
    "generation_config.json",
    "model.safetensors",
    "tokenizer.json",
    "tokenizer_config.json",
];

fn demo_dir() -> PathBuf {
    repo_fixtures().join("demo-bitnet")
}

fn demo_gguf() -> Vec<u8> {
    fs::read(demo_dir().join("gguf/demo-bitnet-i2_s.gguf")).unwrap()
}

/// A GGUF repo: the demo model as `ggml-model-i2_s.gguf` (LFS) and a README.
fn gguf_repo(id: &str, commit: &str) -> MockRepo {
    MockRepo::new(
        id,
        commit,
        vec![
            MockFile::lfs(GGUF, demo_gguf()),
            MockFile::regular("README.md", b"# demo\n".to_vec()),
        ],
    )
}

/// A transformers repo: the demo model's files, plus files that are not part
/// of the model and must not be fetched.
fn hf_repo() -> MockRepo {
    let mut files: Vec<MockFile> = HF_MODEL_FILES
        .iter()
        .map(|name| {
            let content = fs::read(demo_dir().join(name)).unwrap();
            if name.ends_with(".safetensors") {
                MockFile::lfs(name, content)
            } else {
                MockFile::regular(name, content)
            }
        })
        .collect();
    files.push(MockFile::regular("README.md", b"# demo\n".to_vec()));
    files.push(MockFile::lfs("train.bin", bytes(8 << 20, 7)));
    MockRepo::new("org/demo-hf", HF_COMMIT, files)
}

/// `bitnet` online against `hub`, with its cache under `home` (`HF_HOME`).
fn online(hub: &MockHub, home: &Path) -> Command {
    let mut c = bitnet();
    c.env_remove("HF_HUB_OFFLINE")
        .env_remove("HF_HUB_CACHE")
        .env_remove("HUGGINGFACE_HUB_CACHE")
        .env_remove("HF_TOKEN")
        .env("HF_HOME", home)
        .env("HF_ENDPOINT", &hub.url);
    c
}

/// `bitnet` with `HF_HUB_OFFLINE=1`; `HF_ENDPOINT` still points at `hub`,
/// so that any request it made would show in the log.
fn offline(hub: &MockHub, home: &Path) -> Command {
    let mut c = online(hub, home);
    c.env("HF_HUB_OFFLINE", "1");
    c
}

fn repo_dir(home: &Path, repo_id: &str) -> PathBuf {
    home.join("hub")
        .join(format!("models--{}", repo_id.replace('/', "--")))
}

fn sorted_names(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

/// `bitnet pull [repo]`: the path it prints.
fn pull(mut cmd: Command, repo: Option<&str>) -> PathBuf {
    let out = ok(cmd.arg("pull").args(repo));
    PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
}

/// Greedy `bitnet run` of the MIT prompt for 8 tokens with JSON output:
/// the JSON and stderr.
fn run_greedy(mut cmd: Command, model: Option<&str>) -> (Value, String) {
    cmd.arg("run");
    if let Some(m) = model {
        cmd.args(["-m", m]);
    }
    let out = ok(cmd
        .args(["-p", PROMPT, "-n", "8", "--temp", "0", "--ignore-eos"])
        .args(["--output-format", "json", "-t", "2"]));
    (
        json_stdout(&out),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// The first 8 greedy ids of the MIT prompt in the reference.
fn reference_ids() -> Vec<u32> {
    let manifest = read_json(&demo_dir().join("reference/manifest.json"));
    let mit = &manifest["prompts"][0];
    assert_eq!(mit["name"], "mit");
    assert_eq!(mit["text"], PROMPT);
    ids(&mit["greedy_new_ids"])[..8].to_vec()
}

fn assert_no_requests(hub: &MockHub) {
    let reqs = hub.requests();
    assert!(reqs.is_empty(), "the Hub was contacted: {reqs:?}");
}

/// The file a content GET fetched: `resolve/<rev>/<name>`, or the LFS file
/// whose `/blobs/<sha256>` it is.
fn fetched_name(repo: &MockRepo, req: &Logged) -> String {
    let path = req.path.split('?').next().unwrap();
    if let Some(etag) = path.strip_prefix("/blobs/") {
        return repo
            .files
            .iter()
            .find(|f| f.lfs && f.etag() == etag)
            .unwrap_or_else(|| panic!("unknown blob {path}"))
            .name
            .clone();
    }
    let prefix = format!("/{}/resolve/", repo.id);
    let rest = path
        .strip_prefix(&prefix)
        .unwrap_or_else(|| panic!("unexpected GET {path}"));
    rest.split_once('/').unwrap().1.to_string()
}

#[test]
fn pull_downloads_the_gguf_into_the_hf_cache_layout() {
    let repo = gguf_repo("org/demo-gguf", GGUF_COMMIT);
    let file = repo.file(GGUF).clone();
    let hub = MockHub::start(vec![repo]);
    let home = tempfile::tempdir().unwrap();

    let printed = pull(online(&hub, home.path()), Some("org/demo-gguf"));

    let dir = repo_dir(home.path(), "org/demo-gguf");
    let snapshot = dir.join("snapshots").join(GGUF_COMMIT);
    assert_eq!(printed, snapshot.join(GGUF));
    // The etag of an LFS file is the SHA-256 of its content.
    let sha = file.etag();
    assert_eq!(sha.len(), 64);
    assert_eq!(sorted_names(&dir.join("blobs")), [sha.as_str()]);
    assert_eq!(
        fs::read(dir.join("blobs").join(&sha)).unwrap(),
        file.content
    );
    // Only the GGUF, as a relative symlink to its blob.
    assert_eq!(sorted_names(&snapshot), [GGUF]);
    let link = snapshot.join(GGUF);
    assert!(fs::symlink_metadata(&link).unwrap().is_symlink());
    assert_eq!(
        fs::read_link(&link).unwrap(),
        Path::new("../../blobs").join(&sha)
    );
    assert_eq!(fs::read(&link).unwrap(), demo_gguf());
    assert_eq!(
        fs::read_to_string(dir.join("refs/main")).unwrap(),
        GGUF_COMMIT
    );
    let gets: Vec<String> = hub.file_gets().into_iter().map(|r| r.path).collect();
    assert_eq!(gets, [format!("/blobs/{sha}?sig=abc")]);

    // A second pull checks the Hub but downloads nothing.
    hub.clear_log();
    let again = pull(online(&hub, home.path()), Some("org/demo-gguf"));
    assert_eq!(again, printed);
    assert!(!hub.requests().is_empty(), "the second pull asked nothing");
    let gets = hub.file_gets();
    assert!(gets.is_empty(), "second pull downloaded: {gets:?}");
    assert_eq!(sorted_names(&dir.join("blobs")), [sha]);
}

#[test]
fn a_pulled_gguf_repo_runs_offline_without_contacting_the_hub() {
    let hub = MockHub::start(vec![gguf_repo("org/demo-gguf", GGUF_COMMIT)]);
    let home = tempfile::tempdir().unwrap();
    let path = pull(online(&hub, home.path()), Some("org/demo-gguf"));

    hub.clear_log();
    let (v, _) = run_greedy(offline(&hub, home.path()), Some("org/demo-gguf"));
    assert_no_requests(&hub);
    assert_eq!(v["model"], path.display().to_string());
    assert_eq!(ids(&v["token_ids"]), reference_ids());
}

#[test]
fn run_fetches_only_the_model_files_of_a_transformers_repo() {
    let repo = hf_repo();
    let hub = MockHub::start(vec![repo.clone()]);
    let home = tempfile::tempdir().unwrap();

    let (v, _) = run_greedy(online(&hub, home.path()), Some("org/demo-hf"));
    assert_eq!(ids(&v["token_ids"]), reference_ids());
    let snapshot = repo_dir(home.path(), "org/demo-hf")
        .join("snapshots")
        .join(HF_COMMIT);
    assert_eq!(v["model"], snapshot.display().to_string());

    let mut fetched: Vec<String> = hub
        .file_gets()
        .iter()
        .map(|r| fetched_name(&repo, r))
        .collect();
    fetched.sort();
    assert_eq!(fetched, HF_MODEL_FILES);
    let train = repo.file("train.bin").etag();
    for r in hub.requests() {
        assert!(
            !r.path.contains("train.bin") && !r.path.contains(&train) && !r.path.contains("README"),
            "asked for a file that is not part of the model: {r:?}"
        );
    }
    assert_eq!(sorted_names(&snapshot), HF_MODEL_FILES);
    for name in HF_MODEL_FILES {
        assert_eq!(
            fs::read(snapshot.join(name)).unwrap(),
            repo.file(name).content,
            "{name}"
        );
    }

    // And it is found in the cache offline.
    hub.clear_log();
    let (v, _) = run_greedy(offline(&hub, home.path()), Some("org/demo-hf"));
    assert_no_requests(&hub);
    assert_eq!(ids(&v["token_ids"]), reference_ids());
}

#[test]
fn the_default_model_is_the_builtin_demo_when_2b_4t_is_not_cached() {
    let hub = MockHub::start(vec![gguf_repo(DEFAULT_REPO, DEFAULT_COMMIT)]);
    let home = tempfile::tempdir().unwrap();

    let (v, stderr) = run_greedy(offline(&hub, home.path()), None);
    assert_no_requests(&hub);
    assert!(stderr.contains("built-in demo"), "{stderr}");
    assert!(
        stderr.contains(&format!("bitnet pull {DEFAULT_REPO}")),
        "{stderr}"
    );
    assert!(!v["model"].as_str().unwrap().contains("models--"), "{v}");
    assert_eq!(ids(&v["token_ids"]), reference_ids());
}

#[test]
fn the_default_model_is_2b_4t_from_the_cache_once_pulled() {
    let hub = MockHub::start(vec![gguf_repo(DEFAULT_REPO, DEFAULT_COMMIT)]);
    let home = tempfile::tempdir().unwrap();
    // `bitnet pull` with no argument pulls the default repo.
    let path = pull(online(&hub, home.path()), None);
    assert_eq!(
        path,
        repo_dir(home.path(), DEFAULT_REPO)
            .join("snapshots")
            .join(DEFAULT_COMMIT)
            .join(GGUF)
    );

    hub.clear_log();
    let (v, stderr) = run_greedy(offline(&hub, home.path()), None);
    assert_no_requests(&hub);
    assert!(
        stderr.contains(&format!("using {DEFAULT_REPO} from the Hugging Face cache")),
        "{stderr}"
    );
    assert!(!stderr.contains("built-in"), "{stderr}");
    assert_eq!(v["model"], path.display().to_string());
    assert_eq!(ids(&v["token_ids"]), reference_ids());
}

#[test]
fn pulling_a_missing_repo_fails_naming_it() {
    let hub = MockHub::start(vec![gguf_repo("org/demo-gguf", GGUF_COMMIT)]);
    let home = tempfile::tempdir().unwrap();
    fails_with(
        online(&hub, home.path()).args(["pull", "org/missing"]),
        &["org/missing", "not found"],
    );
    assert!(hub.file_gets().is_empty());
}

#[test]
fn running_an_uncached_repo_offline_fails_naming_it() {
    let hub = MockHub::start(vec![gguf_repo("org/notcached", GGUF_COMMIT)]);
    let home = tempfile::tempdir().unwrap();
    fails_with(
        offline(&hub, home.path()).args(["run", "-m", "org/notcached", "-p", "hi", "-n", "1"]),
        &["org/notcached", "not in the Hugging Face cache"],
    );
    assert_no_requests(&hub);
}

#[test]
fn pull_resumes_a_partial_download_with_a_range_request() {
    let repo = gguf_repo("org/demo-gguf", GGUF_COMMIT);
    let file = repo.file(GGUF).clone();
    let hub = MockHub::start(vec![repo]);
    let home = tempfile::tempdir().unwrap();
    let blobs = repo_dir(home.path(), "org/demo-gguf").join("blobs");
    let sha = file.etag();
    let half = file.content.len() / 2;
    fs::create_dir_all(&blobs).unwrap();
    fs::write(
        blobs.join(format!("{sha}.incomplete")),
        &file.content[..half],
    )
    .unwrap();

    pull(online(&hub, home.path()), Some("org/demo-gguf"));

    let gets = hub.file_gets();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(gets[0].path, format!("/blobs/{sha}?sig=abc"));
    assert_eq!(gets[0].range, Some(format!("bytes={half}-")));
    assert_eq!(sorted_names(&blobs), [sha.as_str()]);
    assert_eq!(fs::read(blobs.join(&sha)).unwrap(), file.content);
}
