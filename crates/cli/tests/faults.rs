//! Faults lose nothing: `bitnet pull` killed with SIGKILL mid-download
//! resumes where it stopped; `bitnet convert` killed, out of disk space or
//! writing to a place it cannot never leaves an output file that looks
//! complete.

mod common;
#[path = "../../hub/tests/common/mod.rs"]
mod hub_server;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;
use hub_server::{MockFile, MockHub, MockRepo, bytes};
use sha2::{Digest, Sha256};

const COMMIT: &str = "4444444444444444444444444444444444444444";

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

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let t0 = Instant::now();
    while !cond() {
        assert!(t0.elapsed() < Duration::from_secs(60), "timed out: {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn files_in(dir: &Path) -> Vec<PathBuf> {
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .map(|d| d.filter_map(|e| e.ok().map(|e| e.path())).collect())
        .unwrap_or_default();
    v.sort();
    v
}

#[test]
fn pull_resumes_after_sigkill() {
    let content = bytes(3 << 20, 7);
    let repo = MockRepo::new(
        "org/big",
        COMMIT,
        vec![MockFile::lfs("ggml-model-i2_s.gguf", content.clone())],
    );
    let hub = MockHub::start(vec![repo]);
    let home = tempfile::tempdir().unwrap();
    let blobs = home.path().join("hub/models--org--big/blobs");
    // The first download sends 1 MiB, then hangs: the client is killed
    // there, its partial blob on disk.
    let sent = 1 << 20;
    hub.set_behaviour(|b| b.stall_after = Some(sent));
    let mut child = online(&hub, home.path())
        .args(["pull", "org/big"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let incomplete = || {
        files_in(&blobs)
            .into_iter()
            .find(|p| p.extension().is_some_and(|e| e == "incomplete"))
    };
    wait_for("1 MiB in the .incomplete blob", || {
        incomplete()
            .and_then(|p| std::fs::metadata(p).ok())
            .is_some_and(|m| m.len() == sent as u64)
    });
    child.kill().unwrap();
    child.wait().unwrap();
    hub.set_behaviour(|b| b.stalling = false);
    // Nothing looks complete: no snapshot entry, only the partial blob.
    assert!(
        !home
            .path()
            .join("hub/models--org--big/snapshots")
            .join(COMMIT)
            .join("ggml-model-i2_s.gguf")
            .exists()
    );
    assert!(incomplete().is_some());

    hub.clear_log();
    let out = ok(online(&hub, home.path()).args(["pull", "org/big"]));
    let path = PathBuf::from(String::from_utf8(out.stdout).unwrap().trim());
    let got = std::fs::read(&path).unwrap();
    assert_eq!(Sha256::digest(&got), Sha256::digest(&content));
    // The second run asked only for the rest.
    let gets = hub.file_gets();
    assert_eq!(gets.len(), 1, "{gets:?}");
    assert_eq!(
        gets[0].range.as_deref(),
        Some(format!("bytes={sent}-").as_str())
    );
    assert!(incomplete().is_none());
}

/// A model big enough that writing it takes a while: the shared fixtures'
/// tiny-bitnet (its 128k-token embedding), else the repository's demo model.
fn convert_input() -> PathBuf {
    match shared_fixtures() {
        Some(dir) => dir.join("tiny-bitnet"),
        None => repo_fixtures().join("demo-bitnet"),
    }
}

#[test]
fn an_interrupted_convert_leaves_no_output_that_looks_complete() {
    let dir = tempfile::tempdir().unwrap();
    let reference = dir.path().join("reference.gguf");
    ok(bitnet()
        .arg("convert")
        .arg(convert_input())
        .arg("-o")
        .arg(&reference));
    let want = std::fs::read(&reference).unwrap();
    let mut interrupted_mid_write = 0;
    for round in 0..5 {
        let out = dir.path().join(format!("out-{round}.gguf"));
        let mut child = bitnet()
            .arg("convert")
            .arg(convert_input())
            .arg("-o")
            .arg(&out)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let pid = child.id();
        let temp = dir.path().join(format!(".out-{round}.gguf.partial-{pid}"));
        wait_for("the temporary output", || temp.exists() || out.exists());
        child.kill().unwrap();
        child.wait().unwrap();
        // Either the kill came first and there is no output, or the rename
        // did and the output is whole.
        if out.exists() {
            assert!(
                std::fs::read(&out).unwrap() == want,
                "round {round}: a partial output"
            );
        } else {
            interrupted_mid_write += 1;
        }
    }
    assert!(
        interrupted_mid_write > 0,
        "no kill landed mid-write in 5 rounds"
    );
}

#[test]
fn convert_with_the_disk_full_or_an_unwritable_target_leaves_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("full.gguf");
    // A file-size limit makes writes fail with EFBIG, as a full disk fails
    // them with ENOSPC (SIGXFSZ ignored so the write returns the error).
    let bin = env!("CARGO_BIN_EXE_bitnet");
    let script = format!(
        "trap '' XFSZ; ulimit -f 256; exec {bin} convert {} -o {}",
        repo_fixtures().join("demo-bitnet").display(),
        out.display()
    );
    let mut sh = Command::new("sh");
    sh.env("HF_HUB_OFFLINE", "1").args(["-c", &script]);
    let stderr = fails_with(&mut sh, &["full.gguf", "cannot write"]);
    assert!(
        stderr.contains("too large") || stderr.contains("space"),
        "{stderr}"
    );
    assert_eq!(files_in(dir.path()), Vec::<PathBuf>::new(), "left behind");

    // A target the process may not write (procfs refuses new files even to
    // root), and one whose directory does not exist.
    for target in [
        PathBuf::from("/proc/bitnet-test.gguf"),
        dir.path().join("no/such/dir/x.gguf"),
    ] {
        let name = target.file_name().unwrap().to_string_lossy().into_owned();
        fails_with(
            bitnet()
                .arg("convert")
                .arg(repo_fixtures().join("demo-bitnet"))
                .arg("-o")
                .arg(&target),
            &[&name, "cannot create"],
        );
    }
    assert_eq!(files_in(dir.path()), Vec::<PathBuf>::new());
}
